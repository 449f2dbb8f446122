"""The fifteen TSBS devops cpu-only query types, with TSBS's parameter rules, in
the three dialects the harness speaks: HourglassDB's SQL (DataFusion), DuckDB's
SQL, and InfluxQL.

The SQL follows "Portable SQL" in ../shared/reference/tsbs.md (TSBS's
TimescaleDB queries on a denormalised table); the InfluxQL is TSBS's own
(databases/influx/devops.go).
"""

import datetime
import random

FIELDS = [
    "usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
    "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice",
]

HOUR_NS = 3_600_000_000_000

# name: (metrics, hosts (0 = all), window in hours); see tsbs.md §1.3.
SINGLE_GROUPBY = {
    "single-groupby-1-1-1": (1, 1, 1),
    "single-groupby-1-1-12": (1, 1, 12),
    "single-groupby-1-8-1": (1, 8, 1),
    "single-groupby-5-1-1": (5, 1, 1),
    "single-groupby-5-1-12": (5, 1, 12),
    "single-groupby-5-8-1": (5, 8, 1),
}
CPU_MAX_ALL = {"cpu-max-all-1": 1, "cpu-max-all-8": 8}
DOUBLE_GROUPBY = {"double-groupby-1": 1, "double-groupby-5": 5, "double-groupby-all": 10}
HIGH_CPU = {"high-cpu-1": 1, "high-cpu-all": 0}

QUERY_TYPES = (
    list(SINGLE_GROUPBY) + list(CPU_MAX_ALL) + list(DOUBLE_GROUPBY) + list(HIGH_CPU)
    + ["groupby-orderby-limit", "lastpoint"]
)
# Types that read most of the data: fewer runs by default, as TSBS users do.
HEAVY_TYPES = {"double-groupby-1", "double-groupby-5", "double-groupby-all", "high-cpu-all",
               "groupby-orderby-limit", "lastpoint"}


class Query:
    """One query instance: its text for each system."""

    def __init__(self, kind, sql, duckdb, influxql):
        self.kind = kind
        self.sql = sql
        self.duckdb = duckdb
        self.influxql = influxql


def _grouped(select, where, groups, order="", limit=""):
    """The same grouped query for HourglassDB, which groups and orders by the
    aliases, and for DuckDB, which takes their positions (they come first)."""
    ordinals = ", ".join(str(i + 1) for i in range(len(groups)))
    ours = f"SELECT {select} FROM cpu WHERE {where} GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}{order}{limit}"
    duck = f"SELECT {select} FROM cpu WHERE {where} GROUP BY {ordinals} ORDER BY {ordinals}{order}{limit}"
    return ours, duck


def _literal(ns):
    """A timestamp literal every dialect reads as UTC, microsecond precision as TSBS."""
    moment = datetime.datetime.fromtimestamp(ns // 1000 / 1e6, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Generator:
    """Draws parameters as TSBS does: a window uniform in [start, end + 1 s - d), and
    distinct hosts uniform over host_0..host_{n-1}. A window longer than the data
    (12 h on the 1 h `smoke` data) is shortened to the data's span, and the
    report says so."""

    def __init__(self, seed, hosts, start_ns, end_ns):
        self.rng = random.Random(seed)
        self.hosts = hosts
        self.start_ns = start_ns
        self.end_ns = end_ns + 1_000_000_000  # TSBS: --timestamp-end = data end + 1 s
        self.shortened = set()

    def window(self, kind, hours):
        length = hours * HOUR_NS
        span = self.end_ns - self.start_ns
        if length >= span:
            self.shortened.add(kind)
            return self.start_ns, self.end_ns
        start = self.start_ns + self.rng.randrange(0, span - length)
        start -= start % 1000
        return start, start + length

    def pick_hosts(self, n):
        return [f"host_{i}" for i in self.rng.sample(range(self.hosts), min(n, self.hosts))]

    def query(self, kind):
        if kind in SINGLE_GROUPBY:
            metrics, hosts, hours = SINGLE_GROUPBY[kind]
            return self._groupby_hosts(kind, FIELDS[:metrics], hosts, hours, "minute", "1m")
        if kind in CPU_MAX_ALL:
            return self._groupby_hosts(kind, FIELDS, CPU_MAX_ALL[kind], 8, "hour", "1h")
        if kind in DOUBLE_GROUPBY:
            return self._double_groupby(kind, FIELDS[:DOUBLE_GROUPBY[kind]])
        if kind in HIGH_CPU:
            return self._high_cpu(kind, HIGH_CPU[kind])
        if kind == "groupby-orderby-limit":
            return self._groupby_orderby_limit(kind)
        if kind == "lastpoint":
            return Query(
                kind,
                "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC",
                "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC",
                'SELECT * from cpu group by "hostname" order by time desc limit 1',
            )
        raise ValueError(f"unknown query type {kind}")

    def _groupby_hosts(self, kind, fields, n_hosts, hours, unit, influx_unit):
        start, end = self.window(kind, hours)
        hosts = self.pick_hosts(n_hosts)
        aggregates = ", ".join(f"max({f}) AS max_{f}" for f in fields)
        in_list = ", ".join(f"'{h}'" for h in hosts)
        where = f"hostname IN ({in_list}) AND time >= '{_literal(start)}' AND time < '{_literal(end)}'"
        sql, duck = _grouped(f"date_trunc('{unit}', time) AS {unit}, {aggregates}", where, [unit])
        influx_hosts = " or ".join(f"hostname = '{h}'" for h in hosts)
        influx = (f"SELECT {', '.join(f'max({f})' for f in fields)} from cpu where ({influx_hosts}) "
                  f"and time >= '{_literal(start)}' and time < '{_literal(end)}' group by time({influx_unit})")
        return Query(kind, sql, duck, influx)

    def _double_groupby(self, kind, fields):
        start, end = self.window(kind, 12)
        aggregates = ", ".join(f"avg({f}) AS mean_{f}" for f in fields)
        where = f"time >= '{_literal(start)}' AND time < '{_literal(end)}'"
        sql, duck = _grouped(f"date_trunc('hour', time) AS hour, hostname, {aggregates}", where, ["hour", "hostname"])
        influx = (f"SELECT {', '.join(f'mean({f})' for f in fields)} from cpu "
                  f"where time >= '{_literal(start)}' and time < '{_literal(end)}' group by time(1h),hostname")
        return Query(kind, sql, duck, influx)

    def _high_cpu(self, kind, n_hosts):
        start, end = self.window(kind, 12)
        where = f"usage_user > 90.0 AND time >= '{_literal(start)}' AND time < '{_literal(end)}'"
        influx_where = f"usage_user > 90.0 and time >= '{_literal(start)}' and time < '{_literal(end)}'"
        if n_hosts:
            hosts = self.pick_hosts(n_hosts)
            where += f" AND hostname IN ({', '.join(repr(h) for h in hosts)})"
            influx_where = f"usage_user > 90.0 and ({' or '.join(f'hostname = {h!r}' for h in hosts)}) and " \
                           f"time >= '{_literal(start)}' and time < '{_literal(end)}'"
        sql = f"SELECT * FROM cpu WHERE {where}"
        return Query(kind, sql, sql, f"SELECT * from cpu where {influx_where}")

    def _groupby_orderby_limit(self, kind):
        _, end = self.window(kind, 1)
        sql, duck = _grouped("date_trunc('minute', time) AS minute, max(usage_user)",
                             f"time < '{_literal(end)}'", ["minute"], order=" DESC", limit=" LIMIT 5")
        influx = f"SELECT max(usage_user) from cpu WHERE time < '{_literal(end)}' group by time(1m) limit 5"
        return Query(kind, sql, duck, influx)
