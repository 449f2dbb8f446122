"""The processes and clients of a benchmark run: HourglassDB (its three fronts),
DuckDB in process on HourglassDB's own Parquet files, and InfluxDB 1.x from
Debian's package. Every server is started by the harness on loopback, on ports
it chose, and stopped by it; nothing else is touched."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from compare import Result


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))
from loopback import free_port  # noqa: E402 - ports below the ephemeral range, as the tests choose them


def wait_until(check, what, timeout_s, process=None):
    """Polls `check` until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout_s} s")
        time.sleep(0.05)


def http_request(port, method, path, body=None, timeout=600, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def stop_process(process, timeout_s):
    """SIGTERM to a process we started, then SIGKILL if it has not exited in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def peak_rss_bytes(pid):
    """VmHWM: the most memory the process ever had resident."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class Hourglass:
    """A HourglassDB server on a data root, on free loopback ports."""

    def __init__(self, binary, root, log_path, extra_args=()):
        self.binary = binary
        self.root = root
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.process = None

    def start(self):
        self.http_port, self.pg_port, self.flight_port = free_port(), free_port(), free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary, "--root", self.root, "--http-host", "127.0.0.1",
             "--http-port", str(self.http_port), "--pg-port", str(self.pg_port),
             "--flightsql-port", str(self.flight_port), *self.extra_args],
            stdout=log, stderr=log, env={**os.environ, "LOGLEVEL": os.environ.get("LOGLEVEL", "warn")},
        )
        log.close()
        wait_until(lambda: http_request(self.http_port, "GET", "/ready", timeout=2)[0] == 200,
                   "HourglassDB /ready", 120, self.process)
        return self

    def metrics(self):
        status, body = http_request(self.http_port, "GET", "/metrics", timeout=10)
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def stop(self):
        stop_process(self.process, 120)


class Redis:
    """Debian's redis-server on a free loopback port, its data in `directory`:
    the shared catalog of a `--readers N` run."""

    def __init__(self, directory, log_path):
        self.directory = directory
        self.log_path = log_path
        self.process = None

    def start(self):
        import socket
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
             "--save", "", "--appendonly", "no"], stdout=log, stderr=log)
        log.close()

        def answers():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        wait_until(answers, "redis-server PING", 30, self.process)
        return self

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args):
        """One command over RESP; the reply as Python values (bulk strings as str)."""
        import socket
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            request = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
            s.sendall(request.encode())
            reader = s.makefile("rb")

            def reply():
                line = reader.readline().decode().rstrip("\r\n")
                kind, rest = line[0], line[1:]
                if kind == "+":
                    return rest
                if kind == "-":
                    raise RuntimeError(f"Redis: {rest}")
                if kind == ":":
                    return int(rest)
                if kind == "$":
                    if int(rest) < 0:
                        return None
                    data = reader.read(int(rest) + 2)
                    return data[:-2].decode()
                if kind == "*":
                    return [reply() for _ in range(int(rest))] if int(rest) >= 0 else None
                raise RuntimeError(f"Redis: unexpected reply {line!r}")
            return reply()

    def stop(self):
        stop_process(self.process, 30)


class Cluster:
    """`count` readers over one Redis catalog and one storage layer, which
    spread each query over each other (distributed queries); the first one,
    the coordinator, takes the queries, so the fronts use its ports."""

    def __init__(self, binary, roots, log_paths, shared_args, probe_sql, database):
        self.readers = [Hourglass(binary, root, log, ["--mode", "readonly", *shared_args])
                        for root, log in zip(roots, log_paths)]
        self.probe_sql = probe_sql
        self.database = database

    def start(self):
        for reader in self.readers:
            reader.start()
        coordinator = self.readers[0]
        self.http_port, self.pg_port, self.flight_port = (
            coordinator.http_port, coordinator.pg_port, coordinator.flight_port)
        self.process = coordinator.process
        want = f"tasks={len(self.readers)}"

        def every_reader_a_worker():
            try:
                return want in self.explain(self.probe_sql)
            except (RuntimeError, ValueError):  # a reader not ready yet
                return False
        # The readers find each other through their heartbeats, within seconds.
        wait_until(every_reader_a_worker, f"every reader a worker ({want})", 60, coordinator.process)
        return self

    def explain(self, sql, analyze=False):
        """The coordinator's EXPLAIN (ANALYZE) of `sql`, as text."""
        body = json.dumps({"query": f"EXPLAIN {'ANALYZE VERBOSE ' if analyze else ''}{sql}"})
        status, answer = http_request(self.http_port, "POST", f"/query?db={urllib.parse.quote(self.database)}",
                                      body=body, headers={"Content-Type": "application/json"}, timeout=3600)
        if status != 200:
            raise RuntimeError(f"EXPLAIN answered {status}: {answer[:300]!r}")
        return {row.get("plan_type"): row.get("plan") for row in json.loads(answer)["results"]} if analyze else \
            "\n".join(str(row.get("plan", "")) for row in json.loads(answer)["results"])

    def stop(self):
        for reader in self.readers:
            reader.stop()


class PostgresFront:
    """psycopg 3. The timed path receives every row into libpq (simple protocol,
    text) without turning them into Python objects, so the time is the server's
    and the wire's, not the Python client's."""

    name = "postgres"

    def __init__(self, server, database):
        import psycopg
        self.ok = (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK)
        self.conn = psycopg.connect(host="127.0.0.1", port=server.pg_port, dbname=database,
                                    user="bench", autocommit=True)

    def timed(self, sql):
        started = time.perf_counter()
        result = self.conn.pgconn.exec_(sql.encode())
        elapsed = time.perf_counter() - started
        if result.status not in self.ok:
            raise RuntimeError(result.error_message.decode(errors="replace"))
        return elapsed, result.ntuples

    def fetch(self, sql):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return Result([d.name for d in cur.description], cur.fetchall())

    def close(self):
        self.conn.close()


def arrow_result(table):
    import pyarrow as pa
    columns = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type):
            scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[column.type.unit]
            column = [None if v is None else v * scale
                      for v in column.cast(pa.timestamp(column.type.unit)).cast(pa.int64()).to_pylist()]
        elif pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type).to_pylist()
        else:
            column = column.to_pylist()
        columns.append(column)
    return Result(table.column_names, list(zip(*columns)) if columns else [])


class FlightFront:
    """ADBC's FlightSQL driver; a query is GetFlightInfo then DoGet, every batch
    received as Arrow."""

    name = "flightsql"

    def __init__(self, server, database):
        import adbc_driver_flightsql.dbapi as flightsql
        self.conn = flightsql.connect(
            f"grpc://127.0.0.1:{server.flight_port}",
            db_kwargs={"adbc.flight.sql.rpc.call_header.database": database}, autocommit=True)

    def _table(self, sql):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def timed(self, sql):
        started = time.perf_counter()
        table = self._table(sql)
        return time.perf_counter() - started, table.num_rows

    def fetch(self, sql):
        return arrow_result(self._table(sql))

    def close(self):
        self.conn.close()


class HttpFront:
    """`POST /query` in its default JSON format over one keep-alive connection;
    the timed path reads the whole body."""

    name = "http"

    def __init__(self, server, database):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=3600)
        self.path = f"/query?db={urllib.parse.quote(database)}"

    def _post(self, sql):
        self.conn.request("POST", self.path, body=json.dumps({"query": sql}),
                          headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:500].decode(errors='replace')}")
        return body

    def timed(self, sql):
        started = time.perf_counter()
        body = self._post(sql)
        elapsed = time.perf_counter() - started
        return elapsed, None  # counting rows would parse the JSON; fetch() does

    def fetch(self, sql):
        rows = json.loads(self._post(sql))["results"]
        names = list(rows[0].keys()) if rows else []
        return Result(names, [tuple(r.values()) for r in rows])

    def close(self):
        self.conn.close()


class DuckFront:
    """DuckDB in process, over the Parquet files HourglassDB's catalog lists."""

    name = "duckdb"

    def __init__(self, files, threads):
        import duckdb
        self.conn = duckdb.connect(config={"threads": threads})
        self.conn.execute("SET TimeZone = 'UTC'")
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # hive_partitioning off: the date= and hour= directories are not columns of ours.
        self.conn.execute(f"CREATE VIEW cpu AS SELECT * FROM read_parquet([{listing}], hive_partitioning = false)")

    def timed(self, sql):
        started = time.perf_counter()
        table = self.conn.sql(sql).to_arrow_table()
        return time.perf_counter() - started, table.num_rows

    def fetch(self, sql):
        return arrow_result(self.conn.sql(sql).to_arrow_table())

    def close(self):
        self.conn.close()


INFLUXDB_CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
  logging-enabled = false
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  cache-max-memory-size = "4g"
  index-version = "inmem"
  trace-logging-enabled = false
[coordinator]
  query-timeout = "0s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
  max-row-limit = 0
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""


def influxd_binary():
    return shutil.which("influxd") or ("/usr/bin/influxd" if os.path.exists("/usr/bin/influxd") else None)


class InfluxDB:
    """InfluxDB 1.x on loopback, its data under `directory`."""

    def __init__(self, directory, log_path):
        self.directory = directory
        self.log_path = log_path
        self.process = None

    def start(self):
        binary = influxd_binary()
        if binary is None:
            raise RuntimeError("influxd is not installed (Debian package influxdb)")
        self.http_port, rpc_port = free_port(), free_port()
        os.makedirs(self.directory, exist_ok=True)
        config = os.path.join(self.directory, "influxdb.conf")
        with open(config, "w") as f:
            f.write(INFLUXDB_CONFIG.format(dir=self.directory, http_port=self.http_port, rpc_port=rpc_port))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([binary, "-config", config], stdout=log, stderr=log)
        log.close()
        wait_until(lambda: http_request(self.http_port, "GET", "/ping", timeout=2)[0] == 204,
                   "InfluxDB /ping", 120, self.process)
        return self

    def query(self, q, database=None):
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        status, body = http_request(self.http_port, "POST", "/query",
                                    body=urllib.parse.urlencode(params),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"InfluxDB {status}: {body[:300]!r}")
        answer = json.loads(body)
        for result in answer.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxDB: {result['error']}")
        return answer

    def stop(self):
        stop_process(self.process, 60)


class InfluxFront:
    """InfluxQL over InfluxDB's HTTP API, one keep-alive connection."""

    name = "influxdb"

    def __init__(self, influx, database):
        self.conn = http.client.HTTPConnection("127.0.0.1", influx.http_port, timeout=3600)
        self.database = database

    def timed(self, influxql):
        body = urllib.parse.urlencode({"q": influxql, "db": self.database, "epoch": "ns"})
        started = time.perf_counter()
        self.conn.request("POST", "/query", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        answer = json.loads(data)
        if response.status != 200 or any("error" in r for r in answer.get("results", [])):
            raise RuntimeError(f"InfluxDB {response.status}: {data[:300]!r}")
        rows = sum(len(s.get("values", [])) for r in answer.get("results", []) for s in r.get("series", []))
        return elapsed, rows

    def close(self):
        self.conn.close()
