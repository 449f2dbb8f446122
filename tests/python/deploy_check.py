"""Checks the deployment pieces without a container engine (none runs on the
machines that test this project): compose/docker-compose.yml and
compose/grafana.yml are parsed; the server is started as the compose file
starts it (its environment, with the data directory and ports moved to a
temporary directory and free loopback ports); its published fronts are
reached with the settings of the provisioned Grafana data sources; data from
the TSBS generator is written; and every query of the provisioned dashboard
is run, its Grafana macros and variables expanded as each data source
expands them, on the front that data source uses.

usage: deploy_check.py REPO HOURGLASS_BINARY HOURGLASS_TSBS_BINARY

Prints one line per check; exits non-zero with the reason on the first that
fails. tests/it/deploy.rs runs it.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import yaml

REPO, BINARY, TSBS = sys.argv[1:4]
COMPOSE = os.path.join(REPO, "compose")
FROM, TO = "2016-01-01T00:00:00Z", "2016-01-01T06:00:00Z"
INTERVAL = "5m"
HOSTS = 5


def check(description, ok, detail=""):
    if not ok:
        raise AssertionError(f"{description}: {detail}")
    print(f"ok {description}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_yaml(*path):
    with open(os.path.join(COMPOSE, *path)) as f:
        return yaml.safe_load(f)


def environment(service):
    """A compose service's environment as a dict (it may be a list or a map)."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service):
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def wait_http(url, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except Exception:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {deadline_s} s")


def expand(sql, datasource_type, hosts):
    """The query as Grafana sends it, for the dashboard's time range."""
    sql = sql.replace("${host:sqlstring}", ",".join(f"'{h}'" for h in hosts))
    sql = sql.replace("$__interval", INTERVAL)
    if datasource_type == "grafana-postgresql-datasource":
        # Grafana's PostgreSQL macros (TimescaleDB off).
        sql = re.sub(r"\$__timeFilter\(([^)]*)\)", lambda m: f"{m[1]} BETWEEN '{FROM}' AND '{TO}'", sql)
        seconds = 300
        sql = re.sub(r"\$__timeGroupAlias\(([^,]*),[^)]*\)",
                     lambda m: f"floor(extract(epoch from {m[1]})/{seconds})*{seconds} AS \"time\"", sql)
    else:
        # The plugin SDK's macros (the FlightSQL plugin).
        sql = re.sub(r"\$__timeFilter\(([^)]*)\)", lambda m: f"{m[1]} >= '{FROM}' AND {m[1]} <= '{TO}'", sql)
    leftover = re.findall(r"\$\{?\w+", sql)
    check(f"every macro of a {datasource_type} query is expanded", not leftover, leftover)
    return sql


def main():
    compose = load_yaml("docker-compose.yml")
    service = compose["services"]["hourglassdb"]
    ports = container_ports(service)
    check("docker-compose.yml publishes HTTP (and the UI), Postgres and FlightSQL", {7971, 5432, 8082} <= ports, ports)
    with open(os.path.join(REPO, "Dockerfile")) as f:
        dockerfile = f.read()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    check("the image runs as an unprivileged user", users and users[-1] not in ("root", "0"), users)

    grafana = load_yaml("grafana.yml")["services"]["grafana"]
    grafana_env = environment(grafana)
    host = re.sub(r"\$\{HOURGLASS_HOST:-([^}]*)\}", r"\1", grafana_env["HOURGLASS_HOST"])
    database = re.sub(r"\$\{HOURGLASS_DATABASE:-([^}]*)\}", r"\1", grafana_env["HOURGLASS_DATABASE"])
    check("Grafana's data sources point at the hourglassdb service", host == "hourglassdb", host)
    sources = {d["uid"]: d for d in load_yaml("grafana", "provisioning", "datasources", "hourglassdb.yml")["datasources"]}
    postgres_source = sources["hourglassdb-postgres"]
    flight_source = sources["hourglassdb-flightsql"]
    check("the Postgres data source uses the Postgres port",
          postgres_source["url"] == "$HOURGLASS_HOST:5432" and postgres_source["type"] == "grafana-postgresql-datasource",
          postgres_source)
    check("the FlightSQL data source uses the FlightSQL port and names the database",
          flight_source["jsonData"]["host"] == "$HOURGLASS_HOST:8082"
          and flight_source["jsonData"]["metadata"] == [{"database": "$HOURGLASS_DATABASE"}], flight_source)
    providers = load_yaml("grafana", "provisioning", "dashboards", "hourglassdb.yml")["providers"]
    check("the dashboards are provisioned from the mounted folder",
          providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
          and "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"], providers)

    # The server as the compose file starts it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIGAPI_", "HOURGLASS_", "HTTP_", "PG_", "FLIGHTSQL_"))}
    root = tempfile.mkdtemp(prefix="hourglass-compose-")
    for key, value in environment(service).items():
        env[key] = value.replace("/data", root)
    http_port, pg_port, flight_port = free_port(), free_port(), free_port()
    env.update({"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(http_port), "PG_PORT": str(pg_port),
                "FLIGHTSQL_PORT": str(flight_port)})
    log = open(os.path.join(root, "server.log"), "w")
    server = subprocess.Popen([BINARY], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/health")
        check("the web UI is served at /", wait_http(f"http://127.0.0.1:{http_port}/") == 200)

        # Data from the benchmark's generator.
        lines = os.path.join(root, "cpu.lp")
        subprocess.run([TSBS, "generate", "--hosts", str(HOSTS), "--hours", "2", "--out", lines],
                       check=True, capture_output=True)
        with open(lines, "rb") as f:
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/write?db={database}", data=f.read())
        with urllib.request.urlopen(request, timeout=60) as response:
            check("the generator's rows are written", response.status == 204, response.status)

        # The fronts as the data sources reach them.
        pg = psycopg.connect(host="127.0.0.1", port=pg_port, dbname=database, user=postgres_source["user"],
                             password=postgres_source["secureJsonData"]["password"], autocommit=True)
        flight = flightsql.connect(
            f"grpc://127.0.0.1:{flight_port}",
            db_kwargs={"adbc.flight.sql.rpc.call_header.database": database,
                       "adbc.flight.sql.authorization_header": f"Bearer {flight_source['jsonData']['token']}"},
            autocommit=True)

        with open(os.path.join(COMPOSE, "grafana", "dashboards", "hourglassdb-tsbs-cpu.json")) as f:
            dashboard = json.load(f)
        check("the dashboard's time range is the generator's", dashboard["time"]["from"].startswith("2016-01-01T00:00"))
        variable = dashboard["templating"]["list"][0]
        hosts = [row[0] for row in pg.execute(variable["query"]).fetchall()]
        check("the host variable lists the generator's hosts", len(hosts) == HOSTS, hosts)

        # Both macros' ranges include their end: 06:00 is a bucket too.
        buckets = 6 * 60 // 5 + 1
        for panel in dashboard["panels"]:
            target = panel["targets"][0]
            kind = target["datasource"]["type"]
            sql = expand(target.get("rawSql") or target.get("queryText"), kind, hosts)
            if kind == "grafana-postgresql-datasource":
                rows = pg.execute(sql).fetchall()
            else:
                cursor = flight.cursor()
                cursor.execute(sql)
                rows = cursor.fetchall()
                cursor.close()
            title = panel["title"]
            # $__interval is the panel's minimum (5m) whenever the automatic
            # one (range / width, about 20 s here) is smaller.
            check(f"panel '{title}' sets the interval the check expands", panel.get("interval") == INTERVAL, panel)
            check(f"panel '{title}' answers", len(rows) > 0, sql)
            if "gaps" in title:
                # One row per bucket of the six hours and host, though the data covers two.
                check(f"panel '{title}' fills every bucket", len(rows) == buckets * HOSTS, (len(rows), sql))
                nulls = sum(row[2] is None for row in rows)
                if "carried forward" in title:
                    check(f"panel '{title}' carries the last value over every gap", nulls == 0, nulls)
                else:
                    # Two hours of data: 24 buckets each; interpolation fills
                    # between points and leaves the 49 after the last empty.
                    check(f"panel '{title}' interpolates inside the data only", nulls == (buckets - 24) * HOSTS, nulls)
            if "Last values" in title:
                check(f"panel '{title}' has one row per host", len(rows) == HOSTS, rows)
        flight.close()
        pg.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}")
        sys.exit(1)
