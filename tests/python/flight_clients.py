#!/usr/bin/env python3
"""Drives HourglassDB's FlightSQL front with real Python clients.

    python flight_clients.py --flight-port 8082 --http-port 7971

In order:
  influxdb3-python writes line protocol over HTTP (its v2 write API) into the
  database `py`, then queries it over Flight (a DoGet with a JSON ticket), with
  and without query parameters; InfluxQL is refused with a clear message.
  ADBC (adbc-driver-flightsql) queries with and without parameters, lists the
  database through adbc_get_objects and adbc_get_table_schema, appends Arrow
  rows with adbc_ingest (a dictionary column becomes a tag) and reads them back.
  pyarrow.flight logs in with the handshake and runs a FlightSQL statement
  built by hand (GetFlightInfo, then DoGet on the one endpoint).

    python flight_clients.py --flight-port 8082 --http-port 7971 --user u --password p

logs in with ADBC's username and password instead (the server must have that
user, and `cpu` in `py` the three rows above), and checks that a wrong
password is refused.

Each check prints `ok <client> <what>`. On the first failure it prints the
client, the step and what was expected against what came back, and exits 1.
"""

import argparse
import datetime as dt
import sys

import pyarrow as pa
import pyarrow.flight as flight

UTC = dt.timezone.utc
DATABASE = "py"
LINES = (
    "cpu,host=a,region=eu usage=1.5,n=3i 1700000000000000000\n"
    "cpu,host=b,region=us usage=2.5,n=4i 1700000060000000000\n"
    "cpu,host=c,region=us usage=3.5,n=5i 1700000120000000000"
)


def check(client, what, got, expected):
    if got != expected:
        print(f"FAIL {client} {what}:\n  expected {expected!r}\n  got      {got!r}")
        sys.exit(1)
    print(f"ok {client} {what}")


def expect_error(client, what, call, needle):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - any client error type will do
        if needle in str(error):
            print(f"ok {client} {what}")
            return
        print(f"FAIL {client} {what}: the error does not mention {needle!r}: {error}")
        sys.exit(1)
    print(f"FAIL {client} {what}: no error")
    sys.exit(1)


def influxdb3(http_port, flight_port):
    from influxdb_client_3 import SYNCHRONOUS, InfluxDBClient3, write_client_options

    client = InfluxDBClient3(
        host=f"http://127.0.0.1:{http_port}",
        token="unused",
        database=DATABASE,
        query_port_overwrite=flight_port,
        write_client_options=write_client_options(write_options=SYNCHRONOUS),
    )
    client.write(record=LINES)
    table = client.query("SELECT host, usage, n FROM cpu ORDER BY host")
    check("influxdb3", "query after write", table.to_pylist(), [
        {"host": "a", "usage": 1.5, "n": 3},
        {"host": "b", "usage": 2.5, "n": 4},
        {"host": "c", "usage": 3.5, "n": 5},
    ])
    table = client.query(
        "SELECT host FROM cpu WHERE region = $region AND n > $n ORDER BY host",
        query_parameters={"region": "us", "n": 4},
    )
    check("influxdb3", "query parameters", table.column("host").to_pylist(), ["c"])
    expect_error("influxdb3", "influxql refused", lambda: client.query("SELECT * FROM cpu", language="influxql"),
                 "InfluxQL is not supported")
    client.close()


def adbc(flight_port):
    import adbc_driver_flightsql.dbapi as flightsql

    conn = flightsql.connect(
        f"grpc://127.0.0.1:{flight_port}",
        db_kwargs={"adbc.flight.sql.rpc.call_header.database": DATABASE},
        autocommit=True,
    )
    cur = conn.cursor()
    cur.execute("SELECT host, usage, time FROM cpu ORDER BY time")
    rows = cur.fetchall()
    check("adbc", "query", [(h, u) for h, u, _ in rows], [("a", 1.5), ("b", 2.5), ("c", 3.5)])
    check("adbc", "timestamps", rows[0][2], dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))
    cur.execute("SELECT host FROM cpu WHERE usage > ? ORDER BY host", parameters=(2.0,))
    check("adbc", "query with a parameter", cur.fetchall(), [("b",), ("c",)])
    # The optimizer makes these columns nullable after FlightInfo announced
    # the schema (first_value for DISTINCT ON, a filled count): ADBC refuses a
    # stream whose schema is not the one announced.
    cur.execute("SELECT DISTINCT ON (host) host, usage FROM cpu ORDER BY host, time DESC")
    check("adbc", "DISTINCT ON", cur.fetchall(), [("a", 1.5), ("b", 2.5), ("c", 3.5)])
    cur.execute("SELECT date_bin_gapfill(INTERVAL '1 second', time) AS t, count(*) AS n FROM cpu "
                "WHERE time >= '2023-11-14T22:13:19Z' AND time < '2023-11-14T22:13:21Z' GROUP BY 1 ORDER BY 1")
    check("adbc", "gap-filled count", [n for _, n in cur.fetchall()], [None, 1])

    info = conn.adbc_get_info()
    check("adbc", "get_info vendor", info["vendor_name"], "HourglassDB")
    objects = conn.adbc_get_objects(depth="columns", catalog_filter=DATABASE).read_all().to_pylist()
    public = [s for c in objects for s in c["catalog_db_schemas"] if s["db_schema_name"] == "public"]
    tables = {t["table_name"]: [col["column_name"] for col in t["table_columns"]] for t in public[0]["db_schema_tables"]}
    # Tags first, then fields in the order of their first write, then time.
    check("adbc", "get_objects columns of cpu", tables.get("cpu"), ["host", "region", "usage", "n", "time"])
    schema = conn.adbc_get_table_schema("cpu", catalog_filter=DATABASE, db_schema_filter="public")
    check("adbc", "get_table_schema", [(f.name, str(f.type)) for f in schema][-1], ("time", "timestamp[ns, tz=UTC]"))

    readings = pa.table({
        "time": pa.array([dt.datetime(2024, 1, 1, h, tzinfo=UTC) for h in range(3)], pa.timestamp("us", tz="UTC")),
        "sensor": pa.array(["s1", "s2", "s1"]).dictionary_encode(),
        "celsius": pa.array([20.5, 21.0, 19.5]),
    })
    written = cur.adbc_ingest("readings", readings, mode="create_append")
    check("adbc", "ingest rows", written, 3)
    cur.execute("SELECT sensor, celsius FROM readings ORDER BY time")
    check("adbc", "ingested rows read back", cur.fetchall(), [("s1", 20.5), ("s2", 21.0), ("s1", 19.5)])
    cur.execute("DESCRIBE readings")
    kinds = {row[0]: row[3] for row in cur.fetchall()}
    check("adbc", "dictionary column is a tag", kinds["sensor"], "tag")
    expect_error("adbc", "ingest mode create on an existing table",
                 lambda: cur.adbc_ingest("readings", readings, mode="create"), "already exists")
    cur.close()
    conn.close()


def adbc_login(flight_port, user, password):
    """ADBC with a user name and password: its driver (arrow-go) sends them as
    Basic credentials in base64 without padding, then uses the token it gets."""
    import adbc_driver_flightsql.dbapi as flightsql

    conn = flightsql.connect(
        f"grpc://127.0.0.1:{flight_port}",
        db_kwargs={"username": user, "password": password,
                   "adbc.flight.sql.rpc.call_header.database": DATABASE},
        autocommit=True,
    )
    cur = conn.cursor()
    cur.execute("SELECT count(*) AS n FROM cpu")
    check("adbc", "a query after logging in with a password", cur.fetchall(), [(3,)])
    cur.close()
    conn.close()

    def wrong_password():
        bad = flightsql.connect(f"grpc://127.0.0.1:{flight_port}",
                                db_kwargs={"username": user, "password": password + "-wrong"}, autocommit=True)
        try:
            bad.cursor().execute("SELECT 1")
        finally:
            bad.close()

    expect_error("adbc", "a wrong password", wrong_password, "UNAUTHENTICATED")


def any_command(name, query):
    """A FlightSQL command packed in protobuf Any, built by hand: field 1 (string)."""
    def field(number, payload):
        key = bytes([(number << 3) | 2])
        size, out = len(payload), b""
        while True:
            byte = size & 0x7F
            size >>= 7
            out += bytes([byte | (0x80 if size else 0)])
            if not size:
                return key + out + payload
    inner = field(1, query.encode())
    return field(1, f"type.googleapis.com/arrow.flight.protocol.sql.{name}".encode()) + field(2, inner)


def pyarrow_flight(flight_port):
    client = flight.FlightClient(f"grpc://127.0.0.1:{flight_port}")
    header = client.authenticate_basic_token(b"anyone", b"anything")
    check("pyarrow.flight", "handshake gives a bearer token", header[0], b"authorization")
    options = flight.FlightCallOptions(headers=[header, (b"database", DATABASE.encode())])
    descriptor = flight.FlightDescriptor.for_command(any_command("CommandStatementQuery",
                                                                 "SELECT host, n FROM cpu ORDER BY host"))
    info = client.get_flight_info(descriptor, options)
    check("pyarrow.flight", "one endpoint", len(info.endpoints), 1)
    check("pyarrow.flight", "announced schema", info.schema.names, ["host", "n"])
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    check("pyarrow.flight", "statement rows", table.to_pylist(),
          [{"host": "a", "n": 3}, {"host": "b", "n": 4}, {"host": "c", "n": 5}])
    client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flight-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--user", help="log in with ADBC as this user (only that check runs)")
    parser.add_argument("--password", help="the user's password")
    args = parser.parse_args()
    if args.user:
        adbc_login(args.flight_port, args.user, args.password)
        return
    influxdb3(args.http_port, args.flight_port)
    adbc(args.flight_port)
    pyarrow_flight(args.flight_port)


if __name__ == "__main__":
    main()
