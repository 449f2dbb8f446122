#!/usr/bin/env python3
"""Soak: many writers and readers against one server for a while, then a count.

    python tests/python/soak.py --binary target/release/hourglass --seconds 600

Writers on the three fronts (line protocol over HTTP, Postgres `COPY ... FROM
STDIN`, FlightSQL bulk ingest; 64 in all by default) and readers over HTTP and
Postgres (16 by default) run at once against one server with small bounds
(--max-buffer-mib of write buffer, --query-memory-mib for queries). Rows
are timed near now, as a live source writes them (each writer's rows a
microsecond apart at least, so none share a key). Most readers ask what a
dashboard asks, the last --window-s seconds; --whole-table-readers of them
(2) read the whole table, as a report would. The server persists every
--save-timeout-s (its default, 1 s). It checks that:

- every error a client gets is backpressure: HTTP 429/503 with Retry-After,
  SQLSTATE class 53, gRPC RESOURCE_EXHAUSTED or UNAVAILABLE; anything else is
  a failure, and so is a connection the server drops;
- the server's resident memory, sampled every half second, stays under the
  bound (--max-rss-mib; by default the two configured bounds plus 512 MiB for
  the rest of the process);
- at the end every acknowledged row is there (each has its own key), and
  the server stops cleanly.

It prints the rows acknowledged per front, the queries answered, the errors
by kind and the peak memory, and exits 0 only if every check holds. The
server binds 127.0.0.1 on free ports; its data and log go to --root.
"""

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crash_cycles as cc  # noqa: E402 - the server, writers and counts are shared


class Tally:
    """Counts of what clients saw, by kind, and the failures in full."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def fail(self, what):
        with self.lock:
            self.counts["failure"] = self.counts.get("failure", 0) + 1
            if len(self.failures) < 20:
                self.failures.append(what)


def http_call(request, timeout, tally, label):
    """Sends `request`; true if it succeeded. A 429/503 with Retry-After is
    counted as backpressure, anything else as a failure."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return True
    except urllib.error.HTTPError as error:
        if error.code in (429, 503) and error.headers.get("Retry-After"):
            tally.add(f"{label} {error.code}")
            time.sleep(0.05)
        else:
            tally.fail(f"http {label} {error.code}: {error.read()[:200]!r}")
            time.sleep(0.2)
    except (urllib.error.URLError, OSError) as error:
        tally.fail(f"http {label}: {error}")
        time.sleep(0.2)
    return False


def pg_loop(server, stop, tally, label, work):
    """Runs `work(connection)` until `stop`, on one Postgres connection made
    again if the server drops it. SQLSTATE class 53 is backpressure."""
    import psycopg
    connection = None
    while not stop.is_set():
        try:
            if connection is None:
                connection = psycopg.connect(host="127.0.0.1", port=server.pg_port, dbname=cc.DATABASE,
                                             user="soak", autocommit=True, connect_timeout=30)
            work(connection)
        except psycopg.Error as error:
            state = getattr(error, "sqlstate", None) or ""
            if state.startswith("53"):
                tally.add(f"{label} {state}")
                time.sleep(0.05)
            else:
                tally.fail(f"pg {label} {state}: {error}")
                time.sleep(0.2)
            if connection is not None and connection.closed:
                connection = None
    if connection is not None:
        connection.close()


class WriterClock:
    """Times of one writer's rows, in microseconds: near now, as a live
    source writes them, and each later than the last, so no two rows of a
    writer share a time (a row's key is its series and its time)."""

    def __init__(self):
        self.last = 0

    def take(self, count):
        first = max(self.last + 1, time.time_ns() // 1000)
        self.last = first + count - 1
        return first


def http_writer(server, writer, acked, stop, tally):
    key, clock = ("http", writer), WriterClock()
    while not stop.is_set():
        first = acked.take(key, cc.ROWS_PER_WRITE)
        at = clock.take(cc.ROWS_PER_WRITE)
        body = "".join(f"{cc.TABLE},front=http,writer={writer} v={first + i}i {at + i}\n"
                       for i in range(cc.ROWS_PER_WRITE)).encode()
        request = urllib.request.Request(server.url(f"/write?db={cc.DATABASE}&precision=us"), data=body)
        if http_call(request, 60, tally, "write"):
            acked.add(key, first, cc.ROWS_PER_WRITE)
            tally.add("write ok")


def copy_writer(server, writer, acked, stop, tally):
    key, clock = ("copy", writer), WriterClock()

    def load(connection):
        first = acked.take(key, cc.ROWS_PER_WRITE)
        at = clock.take(cc.ROWS_PER_WRITE)
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY {cc.TABLE} (front, writer, v, time) FROM STDIN") as copy:
                for i in range(cc.ROWS_PER_WRITE):
                    us = at + i
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us // 1_000_000))
                    copy.write(f"copy\t{writer}\t{first + i}\t{stamp}.{us % 1_000_000:06d}+00\n")
        acked.add(key, first, cc.ROWS_PER_WRITE)
        tally.add("write ok")

    pg_loop(server, stop, tally, "copy", load)


def flight_writer(server, writer, acked, stop, tally):
    import adbc_driver_flightsql.dbapi as flightsql
    import pyarrow as pa
    key, clock = ("flight", writer), WriterClock()
    connection = flightsql.connect(f"grpc://127.0.0.1:{server.flight_port}", autocommit=True,
                                   db_kwargs={"adbc.flight.sql.rpc.call_header.database": cc.DATABASE})
    cursor = connection.cursor()
    try:
        while not stop.is_set():
            first = acked.take(key, cc.ROWS_PER_WRITE)
            at = clock.take(cc.ROWS_PER_WRITE)
            rows = pa.table({
                "front": pa.array(["flight"] * cc.ROWS_PER_WRITE).dictionary_encode(),
                "writer": pa.array([writer] * cc.ROWS_PER_WRITE).dictionary_encode(),
                "v": pa.array(range(first, first + cc.ROWS_PER_WRITE), pa.int64()),
                "time": pa.array(range(at, at + cc.ROWS_PER_WRITE), pa.timestamp("us", tz="UTC")),
            })
            try:
                cursor.adbc_ingest(cc.TABLE, rows, mode="append")
                acked.add(key, first, cc.ROWS_PER_WRITE)
                tally.add("write ok")
            except Exception as error:  # noqa: BLE001 - ADBC raises its own classes
                text = str(error)
                if "RESOURCE_EXHAUSTED" in text.upper() or "UNAVAILABLE" in text.upper():
                    tally.add("ingest backpressure")
                    time.sleep(0.05)
                else:
                    tally.fail(f"flight ingest: {text[:300]}")
                    time.sleep(0.2)
    finally:
        cursor.close()
        connection.close()


# What a dashboard asks: the last --window-s seconds.
RECENT_QUERIES = [
    f"SELECT date_bin(INTERVAL '1 second', time) AS s, count(*) AS n FROM {cc.TABLE} "
    f"WHERE time >= now() - INTERVAL '{{window}} seconds' GROUP BY 1 ORDER BY 1",
    f"SELECT front, writer, max(v) AS top FROM {cc.TABLE} WHERE time >= now() - INTERVAL '{{window}} seconds' "
    f"GROUP BY front, writer ORDER BY front, writer",
    f"SELECT * FROM {cc.TABLE} WHERE time >= now() - INTERVAL '{{window}} seconds' ORDER BY time DESC LIMIT 100",
]
# What a report asks: the whole table, tens of millions of rows after a few minutes.
WHOLE_TABLE_QUERIES = [
    f"SELECT count(*) AS n FROM {cc.TABLE}",
    f"SELECT front, writer, max(v) AS top FROM {cc.TABLE} GROUP BY front, writer ORDER BY front, writer",
]


def reader_queries(reader, args, stop):
    """The queries one reader sends until `stop`: the first
    --whole-table-readers readers read the whole table once every
    --report-every-s, as a scheduled report does; the others the last
    --window-s seconds, one query after another."""
    n = reader
    while not stop.is_set():
        if reader < args.whole_table_readers:
            if n > reader and stop.wait(args.report_every_s):
                return
            yield WHOLE_TABLE_QUERIES[n % len(WHOLE_TABLE_QUERIES)]
        else:
            yield RECENT_QUERIES[n % len(RECENT_QUERIES)].format(window=int(args.window_s))
        n += 1


# A client waits as long as the server lets a query run
# (HOURGLASS_QUERY_TIMEOUT_S, 300 s by default) and a little more.
QUERY_CLIENT_TIMEOUT_S = 330


def http_reader(server, queries, label, stop, tally):
    import json
    for sql in queries:
        request = urllib.request.Request(server.url(f"/query?db={cc.DATABASE}"),
                                         data=json.dumps({"query": sql}).encode(),
                                         headers={"Content-Type": "application/json"})
        if http_call(request, QUERY_CLIENT_TIMEOUT_S, tally, label):
            tally.add(f"{label} ok")


def pg_reader(server, queries, label, stop, tally):
    def query(connection):
        sql = next(queries, None)
        if sql is not None:
            connection.execute(sql).fetchall()
            tally.add(f"{label} ok")

    pg_loop(server, stop, tally, label, query)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# What the server says it holds, printed with each report, to tell where memory goes.
STATE_METRICS = {
    "buffered": "hourglass_buffered_bytes",
    "held by writes": "hourglass_write_held_bytes",
    "last values": "hourglass_last_value_cache_bytes",
    "running": "hourglass_queries_running",
    "queued": "hourglass_queries_queued",
    "files persisted": "hourglass_persisted_files_total",
    "merged away": "hourglass_merged_files_total",
}


def server_state(server):
    """The server's own figures for what it holds (bytes in MiB)."""
    parts = []
    for label, name in STATE_METRICS.items():
        value = server.metric(name)
        if value is None:
            continue
        parts.append(f"{label} {value / 2**20:.0f} MiB" if name.endswith("_bytes") else f"{label} {value}")
    return ", ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the hourglass binary")
    parser.add_argument("--seconds", type=float, default=600, help="how long the load runs")
    parser.add_argument("--writers", type=int, default=64, help="writers in all: half HTTP, a quarter each COPY and FlightSQL")
    parser.add_argument("--readers", type=int, default=16, help="readers in all: half HTTP, half Postgres")
    parser.add_argument("--whole-table-readers", type=int, default=2,
                        help="readers that read the whole table; the others read the last --window-s of data")
    parser.add_argument("--report-every-s", type=float, default=60,
                        help="how often each whole-table reader asks")
    parser.add_argument("--window-s", type=int, default=10,
                        help="how many seconds back the other readers read")
    parser.add_argument("--save-timeout-s", type=float, default=1,
                        help="the server's --save-timeout-s (the crash test runs at 0.1)")
    parser.add_argument("--max-buffer-mib", type=int, default=128, help="the server's --max-buffer-bytes")
    parser.add_argument("--query-memory-mib", type=int, default=512, help="the server's --query-memory-bytes")
    parser.add_argument("--max-rss-mib", type=float, default=None,
                        help="the bound on resident memory (default: both bounds plus 512)")
    parser.add_argument("--root", help="where the data and the log go (default: a temporary directory)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for the server, e.g. --server-arg=--no-merges (repeatable)")
    args = parser.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="hourglass-soak-")
    os.makedirs(root, exist_ok=True)
    max_rss = args.max_rss_mib or (args.max_buffer_mib + args.query_memory_mib + 512)
    print(f"data and log under {root}; {args.writers} writers, {args.readers} readers, {args.seconds:.0f} s",
          flush=True)

    bounds = ["--max-buffer-bytes", f"{args.max_buffer_mib}MiB",
              "--flush-buffer-bytes", f"{max(1, args.max_buffer_mib // 4)}MiB",
              "--query-memory-bytes", f"{args.query_memory_mib}MiB"]
    server = cc.Server(args.binary, root, extra_args=bounds + args.server_arg, save_timeout_s=args.save_timeout_s)
    try:
        return run(args, server, max_rss)
    finally:
        server.stop()


def run(args, server, max_rss):
    server.start()
    acked, tally, stop = cc.Acknowledged(), Tally(), threading.Event()
    threads = []
    for w in range(args.writers):
        kind = (http_writer, http_writer, copy_writer, flight_writer)[w % 4]
        threads.append(threading.Thread(target=kind, args=(server, str(w), acked, stop, tally), daemon=True))
    for r in range(args.readers):
        kind = (http_reader, pg_reader)[r % 2]
        queries = reader_queries(r, args, stop)
        label = "report" if r < args.whole_table_readers else "query"
        threads.append(threading.Thread(target=kind, args=(server, queries, label, stop, tally), daemon=True))
    for thread in threads:
        thread.start()
    peak = 0.0
    started = time.monotonic()
    next_report = started + 30
    while time.monotonic() - started < args.seconds:
        peak = max(peak, rss_mib(server.process.pid))
        if server.process.poll() is not None:
            tally.fail(f"the server exited ({server.process.returncode})")
            break
        if time.monotonic() >= next_report:
            next_report += 30
            print(f"{time.monotonic() - started:5.0f} s: acknowledged {acked.rows():,}, rss {peak:.0f} MiB peak, "
                  f"{dict(sorted(tally.counts.items()))}; {server_state(server)}", flush=True)
        time.sleep(0.5)
    stop.set()
    # Queries in flight end within the server's time limit; none is cut off.
    deadline = time.monotonic() + QUERY_CLIENT_TIMEOUT_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))

    lost = cc.lost_keys(server, acked)
    counts = ", ".join(f"{front} {acked.rows(front):,}" for front in cc.FRONTS)
    print(f"acknowledged {acked.rows():,} ({counts}); lost {sum(lost.values())}; peak rss {peak:.0f} MiB "
          f"(bound {max_rss:.0f}); {dict(sorted(tally.counts.items()))}", flush=True)
    failures = list(tally.failures)
    for failure in failures:
        print(f"failure: {failure}", flush=True)
    server.stop()
    clean = server.process.returncode == 0
    # Refusals are backpressure, but a run where every query was refused shows nothing.
    answered = tally.counts.get("query ok", 0) > 0 or args.readers <= args.whole_table_readers
    reported = tally.counts.get("report ok", 0) > 0 or min(args.readers, args.whole_table_readers) == 0
    ok = not lost and not failures and peak <= max_rss and clean and acked.rows() > 0 and answered and reported
    print("soak passed" if ok else f"soak FAILED (clean stop: {clean}, queries answered: {answered}, "
          f"reports answered: {reported})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
