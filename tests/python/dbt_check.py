#!/usr/bin/env python3
"""Runs the dbt project tests/dbt against HourglassDB's Postgres front with dbt-postgres.

    python dbt_check.py --host 127.0.0.1 --port 5432 --database d --project tests/dbt
    python dbt_check.py --host 127.0.0.1 --port 5432 --database d --after-restart

The caller first writes these rows over HTTP into the database (they are also
printed, one a line, by `python dbt_check.py --print-fixture`):

    cpu,host=a,region=eu usage=1.5,n=3i 1699999800000000000
    cpu,host=b,region=us usage=4,n=1i 1700000400000000000
    cpu,host=a,region=eu usage=2.5,n=4i 1700001600000000000
    cpu,host=a,region=eu usage=3,n=5i 1700003100000000000
    cpu,host=b,region=us usage=5,n=2i 1700003700000000000
    cpu,host=c,region=us usage=0.5,n=7i 1700004600000000000
    cpu,host=b,region=us usage=6.25,n=6i 1700005500000000000
    cpu,host=c,region=us usage=1.25,n=8i 1700006460000000000
    cpu,host=a,region=eu usage=2,n=9i 1700009999000000000

That is hosts a (eu), b and c (us) over the hours 2023-11-14T22:00Z, 23:00Z and
2023-11-15T00:00Z. Every usage is a binary fraction, so every mean the models
compute is exact and is compared with ==.

Then it runs `dbt debug` and `dbt run` with the venv's `dbt` (beside this
Python), which builds in schema `analytics`: the table hourly_cpu (per host
and hour), the view cpu_by_region over it, and the table region_summary over
the view. It checks with psycopg2 that pg_tables and pg_views list exactly those
three relations in `analytics` (no __dbt_tmp or __dbt_backup left behind), and
that each holds exactly the rows computed here from the fixture, with their
Postgres types. It runs `dbt run` a second time, which takes dbt's path for
relations that exist (rename to __dbt_backup, rename the new one in, drop the
backup cascade), checks that this path was taken, and checks the contents
again. With --after-restart it runs no dbt and only checks the relations and
their contents (the caller restarts the server in between, to prove that they
persist).

dbt's target/ and logs/ go to a work directory (--work-dir, else
$HOURGLASS_DBT_WORK_DIR, else a new temporary directory that is removed when
every check holds), never into the checkout. dbt talks only to the server:
usage statistics and version checks are off, and HTTP(S) goes to a proxy
address on 127.0.0.1 that nothing listens on.

Exit status 0 when every check holds. On the first failure it prints the
step, what was expected against what came back, and for a failed dbt command
dbt's own output and each SQL statement the server refused with its error
(from dbt's debug log), and exits 1. --trace prints every statement dbt sent
with its outcome.
"""

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

UTC = dt.timezone.utc
SCHEMA = "analytics"
MODELS = ["hourly_cpu", "cpu_by_region", "region_summary"]
TABLES = ["hourly_cpu", "region_summary"]  # materialized='table'
VIEWS = ["cpu_by_region"]  # materialized='view'
# A run over relations that exist renames each table out of the way first.
BACKUP_RENAME = re.compile(r'alter table\s+"{db}"\."analytics"\."{name}"\s+rename to\s+"{name}__dbt_backup"', re.I)
DBT_TIMEOUT = 300  # seconds for one dbt command
OIDS = {"text": 25, "float8": 701, "int8": 20, "timestamptz": 1184}


def fixture_lines():
    """The line-protocol lines of the docstring."""
    return [line.strip() for line in __doc__.splitlines() if line.startswith("    cpu,")]


def parse_fixture():
    """The docstring's lines as (host, region, usage, n, time) tuples."""
    rows = []
    for line in fixture_lines():
        series, fields, ns = line.split(" ")
        tags = dict(kv.split("=") for kv in series.split(",")[1:])
        values = dict(kv.split("=") for kv in fields.split(","))
        time = dt.datetime.fromtimestamp(int(ns) // 1_000_000_000, UTC)
        rows.append((tags["host"], tags["region"], float(values["usage"]), int(values["n"].rstrip("i")), time))
    return rows


def hour_of(time):
    return time.replace(minute=0, second=0, microsecond=0)


def expected_relations(rows):
    """What each model holds for the fixture, as the rows that CHECKS' queries return."""
    per_host_hour = defaultdict(list)
    for host, region, usage, n, time in rows:
        per_host_hour[(host, region, hour_of(time))].append((usage, n))
    hourly = sorted(
        (host, region, hour, sum(u for u, _ in vals) / len(vals), len(vals), sum(n for _, n in vals))
        for (host, region, hour), vals in per_host_hour.items()
    )
    per_region_hour = defaultdict(list)
    for host, region, hour, avg_usage, samples, _ in hourly:
        per_region_hour[(region, hour)].append((avg_usage, samples))
    by_region = sorted(
        (region, hour, len(vals), sum(s for _, s in vals), max(a for a, _ in vals))
        for (region, hour), vals in per_region_hour.items()
    )
    per_region = defaultdict(list)
    for region, hour, hosts, samples, max_avg in by_region:
        per_region[region].append((hour, samples, max_avg))
    summary = sorted(
        (region, len(vals), sum(s for _, s, _ in vals), max(m for _, _, m in vals),
         min(h for h, _, _ in vals), max(h for h, _, _ in vals))
        for region, vals in per_region.items()
    )
    return {"hourly_cpu": hourly, "cpu_by_region": by_region, "region_summary": summary}


# Each model: the query that reads it back (ordered like expected_relations) and its column types.
CHECKS = {
    "hourly_cpu": (
        "SELECT host, region, hour, avg_usage, samples, n_total FROM analytics.hourly_cpu ORDER BY host, hour",
        ("text", "text", "timestamptz", "float8", "int8", "int8"),
    ),
    "cpu_by_region": (
        "SELECT region, hour, hosts, samples, max_avg_usage FROM analytics.cpu_by_region ORDER BY region, hour",
        ("text", "timestamptz", "int8", "int8", "float8"),
    ),
    "region_summary": (
        "SELECT region, hours, samples, peak_avg_usage, first_hour, last_hour FROM analytics.region_summary"
        " ORDER BY region",
        ("text", "int8", "int8", "float8", "timestamptz", "timestamptz"),
    ),
}
PY_TYPES = {"text": str, "float8": float, "int8": int, "timestamptz": dt.datetime}


class StepFailed(Exception):
    pass


def expect(what, actual, expected):
    if actual != expected:
        raise StepFailed(f"{what}:\n  expected {expected!r}\n  actual   {actual!r}")


def expect_rows(what, actual, expected, types):
    """Rows equal `expected`, every value has its column's Python type, and every
    datetime is timezone-aware."""
    actual = [tuple(row) for row in actual]
    if actual != expected:
        lines = [f"{what}: rows differ", "  expected:"] + [f"    {r!r}" for r in expected]
        lines += ["  actual:"] + [f"    {r!r}" for r in actual]
        raise StepFailed("\n".join(lines))
    want = tuple(PY_TYPES[t] for t in types)
    for row in actual:
        expect(f"{what}: Python types of {row!r}", tuple(type(v) for v in row), want)
        for v in row:
            if isinstance(v, dt.datetime) and v.utcoffset() is None:
                raise StepFailed(f"{what}: {v!r} is a naive datetime; expected a timezone-aware one")


def query(cur, when, sql, params=None):
    """cur.execute, with a server error turned into StepFailed naming the statement."""
    import psycopg2

    try:
        cur.execute(sql, params)
    except psycopg2.Error as exc:
        raise StepFailed(f"{when}: {sql}\n  {type(exc).__name__} (SQLSTATE {exc.pgcode}): "
                         f"{str(exc).strip()}") from exc


# ---------------------------------------------------------------- dbt's debug log

LOG_ENTRY = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \[\w+\s*\] \[[^\]]*\]: ", re.M)
COMMENT = re.compile(r"^/\*.*?\*/\s*", re.S)


def statements_in_log(text):
    """[(connection, sql, outcome)] for each statement dbt logged: outcome is
    'ok <status>', 'ERROR <server message>', or 'sent' when the log shows neither
    (dbt logs no status for ROLLBACK and COMMIT)."""
    entries = [e.strip() for e in LOG_ENTRY.split(text) if e.strip()]
    found = []
    for entry in entries:
        m = re.match(r"On ([^:]+): (.*)", entry, re.S)
        if m and m.group(2).strip() != "Close":
            found.append([m.group(1), COMMENT.sub("", m.group(2).strip()), "sent"])
        elif entry.startswith("SQL status: ") and found and found[-1][2] == "sent":
            found[-1][2] = "ok " + entry[len("SQL status: "):].split(" in ")[0]
        elif "Postgres error: " in entry and found and found[-1][2] == "sent":
            found[-1][2] = "ERROR " + entry.split("Postgres error: ", 1)[1].strip()
    return [tuple(s) for s in found]


def format_statement(conn, sql, outcome):
    body = "\n".join("      " + line for line in sql.splitlines())
    return f"  [{conn}] {outcome}\n{body}"


# ---------------------------------------------------------------- the run


class Checker:
    def __init__(self, args, work_dir):
        self.args = args
        self.work_dir = work_dir
        self.log_file = work_dir / "logs" / "dbt.log"
        self.dbt = Path(sys.executable).parent / "dbt"
        self.expected = expected_relations(parse_fixture())
        self.last_log = ""
        self.passed = 0

    def ok(self, what):
        print(f"ok   {what}", flush=True)
        self.passed += 1

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_") and k.lower() not in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        dead_proxy = "http://127.0.0.1:9"  # discard port: any HTTP dbt tries fails here, locally
        env.update({
            "HOURGLASS_DBT_HOST": self.args.host,
            "HOURGLASS_DBT_PORT": str(self.args.port),
            "HOURGLASS_DBT_DATABASE": self.args.database,
            "HOURGLASS_DBT_USER": self.args.user,
            "HOURGLASS_DBT_PASSWORD": self.args.password or "",
            "DBT_TARGET_PATH": str(self.work_dir / "target"),
            "DBT_LOG_PATH": str(self.work_dir / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            "DBT_VERSION_CHECK": "false",
            "DBT_USE_COLORS": "false",
            "DBT_PARTIAL_PARSE": "false",
            "HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy, "ALL_PROXY": dead_proxy,
            "http_proxy": dead_proxy, "https_proxy": dead_proxy, "all_proxy": dead_proxy,
            "NO_PROXY": "", "no_proxy": "",
        })
        return env

    def dbt_command(self, *command):
        """Runs `dbt <command>` on the project; raises StepFailed with dbt's output
        and the refused statements unless it exits 0."""
        if not self.dbt.exists():
            raise StepFailed(f"no dbt beside {sys.executable}: install tests/python/requirements.txt")
        start = self.log_file.stat().st_size if self.log_file.exists() else 0
        argv = [str(self.dbt), *command, "--project-dir", str(self.args.project),
                "--profiles-dir", str(self.args.project)]
        try:
            proc = subprocess.run(argv, env=self.env(), cwd=self.work_dir, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=DBT_TIMEOUT)
            output, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output, code = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), None
        self.last_log = ""
        if self.log_file.exists():
            with open(self.log_file, encoding="utf-8", errors="replace") as fh:
                fh.seek(start)
                self.last_log = fh.read()
        statements = statements_in_log(self.last_log)
        if self.args.trace:
            print(f"---- statements of `dbt {' '.join(command)}`")
            for s in statements:
                print(format_statement(*s))
        if code != 0:
            refused = [s for s in statements if s[2].startswith("ERROR")]
            why = f"exited {code}" if code is not None else f"did not finish in {DBT_TIMEOUT} s"
            lines = [f"`{' '.join(argv)}` {why}", "---- dbt's output", output.rstrip(), "----"]
            if refused:
                lines.append("statements the server refused:")
                lines += [format_statement(*s) for s in refused]
            lines.append(f"dbt's debug log: {self.log_file}")
            raise StepFailed("\n".join(lines))
        return output

    def check_run_results(self, what):
        """target/run_results.json: every model ran, with status success."""
        path = self.work_dir / "target" / "run_results.json"
        results = json.loads(path.read_text())["results"]
        got = sorted((r["unique_id"].split(".")[-1], r["status"]) for r in results)
        expect(f"{what}: models and status in {path}", got, sorted((m, "success") for m in MODELS))

    def connect(self):
        import psycopg2

        try:
            conn = psycopg2.connect(host=self.args.host, port=self.args.port, dbname=self.args.database,
                                    user=self.args.user, password=self.args.password, connect_timeout=10,
                                    application_name="dbt_check")
        except psycopg2.Error as exc:
            raise StepFailed(f"connect to {self.args.host}:{self.args.port}/{self.args.database}: {exc}") from exc
        conn.autocommit = True
        return conn

    def check_relations(self, when):
        """pg_tables and pg_views list exactly the models in analytics, and each
        holds exactly its expected rows with its column types."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            query(cur, when, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (SCHEMA,))
            expect(f"{when}: tables in pg_tables for schema {SCHEMA}", [r[0] for r in cur.fetchall()],
                   sorted(TABLES))
            query(cur, when, "SELECT viewname FROM pg_views WHERE schemaname = %s ORDER BY viewname", (SCHEMA,))
            expect(f"{when}: views in pg_views for schema {SCHEMA}", [r[0] for r in cur.fetchall()], sorted(VIEWS))
            self.ok(f"{when}: pg_tables lists {', '.join(TABLES)}; pg_views lists {', '.join(VIEWS)}")
            for model in MODELS:
                sql, types = CHECKS[model]
                query(cur, when, sql)
                expect(f"{when}: column type OIDs of {SCHEMA}.{model}", [d.type_code for d in cur.description],
                       [OIDS[t] for t in types])
                expect_rows(f"{when}: {SCHEMA}.{model}", cur.fetchall(), self.expected[model], types)
                self.ok(f"{when}: {SCHEMA}.{model} holds its {len(self.expected[model])} expected rows")
        finally:
            conn.close()

    def run(self):
        if self.args.after_restart:
            self.check_relations("after restart")
            return
        out = self.dbt_command("debug")
        if "All checks passed!" not in out:
            raise StepFailed(f"dbt debug exited 0 without 'All checks passed!':\n{out}")
        self.ok("dbt debug")
        self.dbt_command("run")
        self.check_run_results("first dbt run")
        self.ok("first dbt run: 3 models built")
        self.check_relations("after the first run")
        self.dbt_command("run")
        self.check_run_results("second dbt run")
        for table in TABLES:
            pattern = re.compile(BACKUP_RENAME.pattern.format(db=re.escape(self.args.database), name=table), re.I)
            if not pattern.search(self.last_log):
                raise StepFailed(f"second dbt run: dbt did not rename the existing {table} to {table}__dbt_backup,"
                                 f" so it did not see it as existing (pg_tables); statements sent:\n"
                                 + "\n".join(format_statement(*s) for s in statements_in_log(self.last_log)))
        self.ok("second dbt run: 3 models rebuilt over the existing ones (rename to __dbt_backup, drop cascade)")
        self.check_relations("after the second run")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--database", default="d")
    parser.add_argument("--user", default="dbt", help="any name while the server has no users")
    parser.add_argument("--password", default=None)
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent.parent / "dbt",
                        help="the dbt project (default: tests/dbt)")
    parser.add_argument("--work-dir", type=Path, default=os.environ.get("HOURGLASS_DBT_WORK_DIR") or None,
                        help="where dbt writes target/ and logs/ (default: a new temporary directory)")
    parser.add_argument("--after-restart", action="store_true",
                        help="run no dbt: only check the relations a previous run built")
    parser.add_argument("--trace", action="store_true", help="print every statement dbt sent and its outcome")
    parser.add_argument("--print-fixture", action="store_true",
                        help="print the fixture's line protocol and exit")
    args = parser.parse_args()
    if args.print_fixture:
        print("\n".join(fixture_lines()))
        return 0
    if args.port is None:
        parser.error("--port is required")
    args.project = args.project.resolve()
    if not (args.project / "dbt_project.yml").is_file():
        parser.error(f"no dbt_project.yml in {args.project}")

    # --after-restart runs no dbt, so it needs no work directory.
    temporary = args.work_dir is None and not args.after_restart
    if temporary:
        work_dir = Path(tempfile.mkdtemp(prefix="hourglass-dbt-"))
    else:
        work_dir = (args.work_dir or Path(tempfile.gettempdir())).resolve()
    if work_dir == args.project or args.project in work_dir.parents:
        parser.error(f"--work-dir {work_dir} is inside the project {args.project}")
    if not args.after_restart:
        work_dir.mkdir(parents=True, exist_ok=True)

    checker = Checker(args, work_dir)
    try:
        checker.run()
    except StepFailed as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        if not args.after_restart:
            print(f"(dbt's files are kept in {work_dir})", file=sys.stderr)
        return 1
    if temporary:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"dbt_check: all {checker.passed} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
