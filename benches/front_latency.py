#!/usr/bin/env python3
"""The floor of each front: the round trip of `SELECT 1`, one client at a time.

    python benches/front_latency.py --binary target/quick-release/hourglass [--calls 300]

Starts the server on a fresh data root on loopback, then for each front
connects once and times `--calls` calls of `SELECT 1` (after 20 untimed
ones), one after the other:

  postgres  psycopg 3, simple protocol, one connection
  flightsql ADBC's FlightSQL driver (arrow-go), one connection: execute + fetch
  http      a keep-alive HTTP connection, POST /query (JSON)

and prints the median, the 90th percentile and the maximum in milliseconds.
The Python clients come from tests/python/requirements.txt (tests/run
installs them in $CARGO_TARGET_DIR/python-venv).
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from loopback import free_port  # noqa: E402 - ports below the ephemeral range, as the tests choose them


def wait_for_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def timed(call, calls):
    for _ in range(20):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)], samples[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    http_port, pg_port, flight_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as root:
        server = subprocess.Popen(
            [args.binary, "--root", os.path.join(root, "data"), "--http-host", "127.0.0.1",
             "--http-port", str(http_port), "--pg-port", str(pg_port), "--flightsql-port", str(flight_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            for port in (http_port, pg_port, flight_port):
                wait_for_port(port, deadline)
            results = {}

            import psycopg
            with psycopg.connect(host="127.0.0.1", port=pg_port, dbname="default", user="bench",
                                 autocommit=True) as conn:
                cur = conn.cursor()
                results["postgres (psycopg, simple protocol)"] = timed(
                    lambda: cur.execute("SELECT 1", prepare=False).fetchall(), args.calls)

            import adbc_driver_flightsql.dbapi as flightsql
            conn = flightsql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True)
            cur = conn.cursor()

            def flight_call():
                cur.execute("SELECT 1")
                cur.fetchall()

            results["flightsql (ADBC)"] = timed(flight_call, args.calls)
            cur.close()
            conn.close()

            connection = http.client.HTTPConnection("127.0.0.1", http_port)
            body = json.dumps({"query": "SELECT 1"})

            def http_call():
                connection.request("POST", "/query", body, {"Content-Type": "application/json"})
                connection.getresponse().read()

            results["http (POST /query)"] = timed(http_call, args.calls)
            for front, (median, p90, worst) in results.items():
                print(f"{front:38} median {median:6.2f} ms  p90 {p90:6.2f} ms  max {worst:6.2f} ms")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
