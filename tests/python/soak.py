#!/usr/bin/env python3
"""Soak: many writers and readers against one server for a while, then a count.

    python tests/python/soak.py --binary target/release/hourglass --seconds 600

Writers on the three fronts (line protocol over HTTP, Postgres `COPY ... FROM
STDIN`, FlightSQL bulk ingest; 64 in all by default) and readers over HTTP and
Postgres (16 by default) run at once against one server with small bounds
(--max-buffer-mib of write buffer, --query-memory-mib for queries). It checks
that:

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


def http_writer(server, writer, acked, stop, tally):
    key = ("http", writer)
    while not stop.is_set():
        first = acked.take(key, cc.ROWS_PER_WRITE)
        body = "".join(f"{cc.TABLE},front=http,writer={writer} v={v}i {cc.BASE_MS + v}\n"
                       for v in range(first, first + cc.ROWS_PER_WRITE)).encode()
        request = urllib.request.Request(server.url(f"/write?db={cc.DATABASE}&precision=ms"), data=body)
        if http_call(request, 60, tally, "write"):
            acked.add(key, first, cc.ROWS_PER_WRITE)
            tally.add("write ok")


def copy_writer(server, writer, acked, stop, tally):
    key = ("copy", writer)

    def load(connection):
        first = acked.take(key, cc.ROWS_PER_WRITE)
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY {cc.TABLE} (front, writer, v, time) FROM STDIN") as copy:
                for v in range(first, first + cc.ROWS_PER_WRITE):
                    ms = cc.BASE_MS + v
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000))
                    copy.write(f"copy\t{writer}\t{v}\t{stamp}.{ms % 1000:03d}+00\n")
        acked.add(key, first, cc.ROWS_PER_WRITE)
        tally.add("write ok")

    pg_loop(server, stop, tally, "copy", load)


def flight_writer(server, writer, acked, stop, tally):
    import adbc_driver_flightsql.dbapi as flightsql
    import pyarrow as pa
    key = ("flight", writer)
    connection = flightsql.connect(f"grpc://127.0.0.1:{server.flight_port}", autocommit=True,
                                   db_kwargs={"adbc.flight.sql.rpc.call_header.database": cc.DATABASE})
    cursor = connection.cursor()
    try:
        while not stop.is_set():
            first = acked.take(key, cc.ROWS_PER_WRITE)
            values = list(range(first, first + cc.ROWS_PER_WRITE))
            rows = pa.table({
                "front": pa.array(["flight"] * cc.ROWS_PER_WRITE).dictionary_encode(),
                "writer": pa.array([writer] * cc.ROWS_PER_WRITE).dictionary_encode(),
                "v": pa.array(values, pa.int64()),
                "time": pa.array([cc.BASE_MS + v for v in values], pa.timestamp("ms", tz="UTC")),
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


QUERIES = [
    f"SELECT count(*) AS n FROM {cc.TABLE}",
    f"SELECT front, writer, max(v) AS top FROM {cc.TABLE} GROUP BY front, writer ORDER BY front, writer",
    f"SELECT date_bin(INTERVAL '1 second', time) AS s, count(*) AS n FROM {cc.TABLE} GROUP BY 1 ORDER BY 1 DESC LIMIT 5",
    f"SELECT * FROM {cc.TABLE} ORDER BY time DESC LIMIT 100",
]


def http_reader(server, reader, stop, tally):
    import json
    i = reader
    while not stop.is_set():
        sql = QUERIES[i % len(QUERIES)]
        i += 1
        request = urllib.request.Request(server.url(f"/query?db={cc.DATABASE}"),
                                         data=json.dumps({"query": sql}).encode(),
                                         headers={"Content-Type": "application/json"})
        if http_call(request, 120, tally, "query"):
            tally.add("query ok")


def pg_reader(server, reader, stop, tally):
    queries = iter(QUERIES[(reader + n) % len(QUERIES)] for n in range(1 << 62))

    def query(connection):
        connection.execute(next(queries)).fetchall()
        tally.add("query ok")

    pg_loop(server, stop, tally, "query", query)


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
    server = cc.Server(args.binary, root, extra_args=bounds + args.server_arg)
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
        threads.append(threading.Thread(target=kind, args=(server, r, stop, tally), daemon=True))
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
    for thread in threads:
        thread.join(timeout=120)

    lost = cc.lost_keys(server, acked)
    counts = ", ".join(f"{front} {acked.rows(front):,}" for front in cc.FRONTS)
    print(f"acknowledged {acked.rows():,} ({counts}); lost {sum(lost.values())}; peak rss {peak:.0f} MiB "
          f"(bound {max_rss:.0f}); {dict(sorted(tally.counts.items()))}", flush=True)
    for failure in tally.failures:
        print(f"failure: {failure}", flush=True)
    server.stop()
    clean = server.process.returncode == 0
    ok = not lost and not tally.failures and peak <= max_rss and clean and acked.rows() > 0
    print("soak passed" if ok else f"soak FAILED (clean stop: {clean})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
