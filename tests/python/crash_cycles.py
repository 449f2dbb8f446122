#!/usr/bin/env python3
"""kill -9 cycles: writers on every front, a SIGKILL at a random moment, a
restart, and a count of what survived.

    python tests/python/crash_cycles.py --binary target/release/hourglass --cycles 100

Each cycle starts writers on the three fronts at once (line protocol over
HTTP, Postgres `COPY ... FROM STDIN` with psycopg, FlightSQL bulk ingest with
ADBC), lets them run for a random time while the server persists every
100 ms and merges every second, kills the server with SIGKILL, and restarts
it on the same data. Every row has its own key (front, writer, v), so after
each restart the rows present can be checked against the rows acknowledged:
none lost. Queries and merges keep one row per key (tags and time), so a row
stored twice shows only in the files: after the last cycle the server is
stopped and every Parquet file the catalog lists is read, and no key may be
in them twice. A row whose write was cut off unacknowledged may be
there or not; both are correct.

After every cycle it prints one line: how long the server lived, what it had
persisted and merged in that life, the rows acknowledged so far per front,
the rows present, and the rows lost and duplicated. After the last cycle it
compares every acknowledged key with the keys present. It exits 0 only if
nothing was lost or duplicated.

The server binds 127.0.0.1 on free ports; its data and log go to --root (a
temporary directory unless given), which is kept when a cycle fails.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loopback import free_port  # noqa: E402 - shared with the benchmarks

DATABASE = "crash"
TABLE = "cycles"
# 2023-11-14T22:13:20Z; a writer's rows are 1 ms apart.
BASE_MS = 1_700_000_000_000
ROWS_PER_WRITE = 400
FRONTS = ("http", "copy", "flight")


class PortTaken(Exception):
    """The server exited at start because one of its ports was taken."""


class Server:
    """The server under test, restarted on the same root and ports."""

    def __init__(self, binary, root, log_level="info", extra_args=(), save_timeout_s=0.1):
        self.binary = binary
        # Short by default, so that kills land in the middle of persists.
        self.save_timeout_s = save_timeout_s
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.root = root
        self.http_port, self.pg_port, self.flight_port = free_port(), free_port(), free_port()
        self.log_path = os.path.join(root, "server.log")
        self.process = None
        self.started_once = False

    def start(self, attempts=3):
        """Starts the server and waits for /health. A first start whose port
        another process took in the meantime is tried on new ports; a restart
        keeps its ports, as clients expect."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except PortTaken:
                if self.started_once or attempt + 1 == attempts:
                    raise SystemExit(f"the server could not listen on its ports; see {self.log_path}")
                self.http_port, self.pg_port, self.flight_port = free_port(), free_port(), free_port()

    def _start_once(self):
        log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIGAPI_", "HOURGLASS_", "HTTP_"))}
        env["LOGLEVEL"] = self.log_level
        self.process = subprocess.Popen(
            [self.binary, "--root", os.path.join(self.root, "data"),
             "--http-host", "127.0.0.1", "--http-port", str(self.http_port),
             "--pg-port", str(self.pg_port), "--flightsql-port", str(self.flight_port),
             "--save-timeout-s", str(self.save_timeout_s), "--merge-timeout-s", "1", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.log_path, "rb") as f:
                    f.seek(log_offset)
                    said = f.read().decode(errors="replace")
                if "cannot listen on" in said:
                    raise PortTaken()
                raise SystemExit(f"the server exited during start-up ({self.process.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=1) as response:
                    if response.status == 200:
                        self.started_once = True
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise SystemExit(f"the server did not answer /health within 120 s; see {self.log_path}")

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def metric(self, name):
        try:
            with urllib.request.urlopen(self.url("/metrics"), timeout=2) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return int(float(line.split()[1]))
        except (urllib.error.URLError, OSError):
            pass
        return None

    def query(self, sql):
        request = urllib.request.Request(
            self.url(f"/query?db={DATABASE}"), data=json.dumps({"query": sql}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())["results"]


class Acknowledged:
    """The values each writer had acknowledged, and the next value of each."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}
        self.next = {}

    def take(self, key, count):
        with self.lock:
            first = self.next.get(key, 0)
            self.next[key] = first + count
            return first

    def add(self, key, first, count):
        with self.lock:
            self.values.setdefault(key, []).append((first, count))

    def rows(self, front=None):
        with self.lock:
            return sum(c for (f, _), ranges in self.values.items() if front in (None, f) for _, c in ranges)

    def arrays(self):
        with self.lock:
            return {key: pa.array([v for first, count in ranges for v in range(first, first + count)], pa.int64())
                    for key, ranges in self.values.items()}


def http_writer(server, writer, acked, stop):
    key = ("http", writer)
    while not stop.is_set():
        first = acked.take(key, ROWS_PER_WRITE)
        body = "".join(f"{TABLE},front=http,writer={writer} v={v}i {BASE_MS + v}\n"
                       for v in range(first, first + ROWS_PER_WRITE)).encode()
        request = urllib.request.Request(server.url(f"/write?db={DATABASE}&precision=ms"), data=body)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 204:
                    acked.add(key, first, ROWS_PER_WRITE)
        except urllib.error.HTTPError as error:
            if error.code not in (429, 503, 507):
                return
            time.sleep(0.02)
        except (urllib.error.URLError, OSError):
            return


def copy_writer(server, writer, acked, stop):
    import psycopg
    key = ("copy", writer)
    try:
        connection = psycopg.connect(host="127.0.0.1", port=server.pg_port, dbname=DATABASE, user="crash",
                                     autocommit=True, connect_timeout=10)
    except psycopg.Error:
        return
    with connection:
        while not stop.is_set():
            first = acked.take(key, ROWS_PER_WRITE)
            try:
                with connection.cursor() as cursor:
                    with cursor.copy(f"COPY {TABLE} (front, writer, v, time) FROM STDIN") as copy:
                        for v in range(first, first + ROWS_PER_WRITE):
                            ms = BASE_MS + v
                            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000))
                            copy.write(f"copy\t{writer}\t{v}\t{stamp}.{ms % 1000:03d}+00\n")
                acked.add(key, first, ROWS_PER_WRITE)
            except psycopg.Error:
                return


def flight_writer(server, writer, acked, stop):
    import adbc_driver_flightsql.dbapi as flightsql
    key = ("flight", writer)
    try:
        connection = flightsql.connect(f"grpc://127.0.0.1:{server.flight_port}", autocommit=True,
                                       db_kwargs={"adbc.flight.sql.rpc.call_header.database": DATABASE})
        cursor = connection.cursor()
    except Exception:  # noqa: BLE001 - a server that is gone refuses in its own way
        return
    try:
        while not stop.is_set():
            first = acked.take(key, ROWS_PER_WRITE)
            values = list(range(first, first + ROWS_PER_WRITE))
            rows = pa.table({
                "front": pa.array(["flight"] * ROWS_PER_WRITE).dictionary_encode(),
                "writer": pa.array([writer] * ROWS_PER_WRITE).dictionary_encode(),
                "v": pa.array(values, pa.int64()),
                "time": pa.array([BASE_MS + v for v in values], pa.timestamp("ms", tz="UTC")),
            })
            try:
                cursor.adbc_ingest(TABLE, rows, mode="append")
            except Exception:  # noqa: BLE001
                return
            acked.add(key, first, ROWS_PER_WRITE)
    finally:
        try:
            cursor.close()
            connection.close()
        except Exception:  # noqa: BLE001
            pass


WRITERS = {"http": http_writer, "copy": copy_writer, "flight": flight_writer}


def present_counts(server):
    """Rows present per (front, writer). Queries keep one row per key, so a
    key stored twice shows only in the files (`stored_copies`)."""
    return {(r["front"], r["writer"]): r["n"] for r in server.query(
        f"SELECT front, writer, count(*) AS n FROM {TABLE} WHERE front <> 'init' GROUP BY front, writer")}


def stored_copies(root):
    """Keys (front, writer, v) in the Parquet files the catalog lists, read
    from disk after the server stopped, and how many of them are there more
    than once: `(keys, keys stored twice or more)`, without the init row.
    Queries and merges deduplicate rows with the same tags and time, so only
    the files can show a row stored twice."""
    import glob
    import pyarrow.parquet as pq
    table_dir = os.path.join(root, "data", DATABASE, TABLE)
    tables = []
    for metadata in glob.glob(os.path.join(table_dir, "date=*", "hour=*", "metadata.json")):
        with open(metadata) as f:
            listed = json.load(f)["files"]
        for entry in listed:
            rows = pq.read_table(os.path.join(table_dir, entry["path"]), columns=["front", "writer", "v"])
            tables.append(rows.cast(pa.schema([("front", pa.string()), ("writer", pa.string()), ("v", pa.int64())])))
    if not tables:
        return 0, 0
    rows = pa.concat_tables(tables)
    rows = rows.filter(pc.not_equal(rows["front"], "init"))
    copies = rows.group_by(["front", "writer", "v"]).aggregate([([], "count_all")])
    return copies.num_rows, pc.sum(pc.greater(copies["count_all"], 1)).as_py() or 0


def lost_keys(server, acked):
    """Acknowledged values not present, per writer (reads every key back)."""
    lost = {}
    for (front, writer), wanted in acked.arrays().items():
        rows = server.query(f"SELECT v FROM {TABLE} WHERE front = '{front}' AND writer = '{writer}'")
        present = pa.array([r["v"] for r in rows], pa.int64())
        missing = pc.sum(pc.invert(pc.is_in(wanted, value_set=present))).as_py() or 0
        if missing:
            lost[(front, writer)] = missing
    return lost


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the hourglass binary")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--writers", type=int, default=1, help="writers per front")
    parser.add_argument("--min-life-s", type=float, default=0.3, help="shortest time before a kill")
    parser.add_argument("--max-life-s", type=float, default=3.0, help="longest time before a kill")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill times (default: random)")
    parser.add_argument("--root", help="where the data and the log go (default: a temporary directory)")
    parser.add_argument("--log-level", default="info", help="the server's LOGLEVEL (debug names every file)")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    root = args.root or tempfile.mkdtemp(prefix="hourglass-crash-cycles-")
    os.makedirs(root, exist_ok=True)
    print(f"seed {seed}; data and log under {root}", flush=True)

    server = Server(args.binary, root, args.log_level)
    try:
        return run(args, rng, root, server)
    finally:
        server.stop()


def run(args, rng, root, server):
    """The cycles and the checks; the caller stops the server whatever happens."""
    server.start()
    # The table, with its tags and field, before COPY and ingest name them.
    init = f"{TABLE},front=init,writer=w0 v=0i {BASE_MS}\n".encode()
    urllib.request.urlopen(urllib.request.Request(server.url(f"/write?db={DATABASE}&precision=ms"), data=init))

    acked = Acknowledged()
    failed = False
    started = time.monotonic()
    for cycle in range(1, args.cycles + 1):
        stop = threading.Event()
        threads = [threading.Thread(target=WRITERS[front], args=(server, f"w{i}", acked, stop), daemon=True)
                   for front in FRONTS for i in range(args.writers)]
        for thread in threads:
            thread.start()
        life = rng.uniform(args.min_life_s, args.max_life_s)
        time.sleep(life)
        persisted, merged = server.metric("hourglass_persisted_files_total"), server.metric("hourglass_merges_total")
        server.kill9()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if any(thread.is_alive() for thread in threads):
            raise SystemExit(f"cycle {cycle}: a writer still runs 60 s after the kill")
        server.start()
        counts = present_counts(server)
        present = sum(counts.values())
        short = sum(max(0, sum(c for _, c in acked.values.get(key, [])) - counts.get(key, 0))
                    for key in acked.values)
        per_front = ", ".join(f"{front} {acked.rows(front):,}" for front in FRONTS)
        print(f"cycle {cycle}: killed after {life:.2f} s (files persisted {persisted}, merges {merged}); "
              f"acknowledged {acked.rows():,} ({per_front}); present {present:,}; "
              f"lost at least {short:,}", flush=True)
        if short:
            failed = True
            break

    lost = lost_keys(server, acked)
    counts = present_counts(server)
    # Shut down cleanly (the buffer is persisted), then count copies per key
    # in the files themselves.
    server.stop()
    in_files, twice = stored_copies(root)
    print(f"after {cycle} cycles in {time.monotonic() - started:.0f} s: acknowledged {acked.rows():,} rows, "
          f"present {sum(counts.values()):,} ({in_files:,} in the listed files after shutdown), "
          f"lost {sum(lost.values()):,}, duplicated {twice:,}", flush=True)
    if in_files != sum(counts.values()):
        print(f"FAIL: {sum(counts.values()):,} rows answered queries but {in_files:,} are in the listed files")
        failed = True
    if lost or twice or failed:
        print(f"FAIL: lost {lost}, duplicated {twice}; the data and log are kept under {root}")
        return 1
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
