#!/usr/bin/env python3
"""Drives HourglassDB's Postgres front with real Python clients.

    python pg_clients.py --host 127.0.0.1 --port 5432 --database d

The caller first writes these rows over HTTP into the database:

    cpu,host=a,region=eu usage=1.5,n=3i 1700000000000000000
    cpu,host=b,region=us usage=2.5,n=4i 1700000060000000000
    cpu,host=c,region=us usage=3.5,n=5i 1700000120000000000

Then, for psycopg 3, asyncpg and psycopg2 in turn, this script connects, reads
with parameters, filters on timestamptz parameters, writes rows (INSERT with
parameters, executemany, COPY FROM STDIN) under a host name of its own, and
reads them back, checking exact values and Python types. The rows written here
have region 'py' and fixed times, so no check sees another client's rows and a
second run against the same database gives the same result (same tags and
time: last write wins).

Exit status 0 when every check holds. On the first failure it prints the
client, the step and what was expected against what came back, and exits 1.
"""

import argparse
import asyncio
import datetime as dt
import inspect
import io
import sys

UTC = dt.timezone.utc
PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def at(seconds, micros=0):
    """The instant `seconds` (plus `micros` µs) after the Unix epoch, as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(seconds, UTC) + dt.timedelta(microseconds=micros)


# The rows the caller wrote, by host: (region, usage, n, time).
FIXTURE = {
    "a": ("eu", 1.5, 3, at(1_700_000_000)),  # 2023-11-14T22:13:20Z
    "b": ("us", 2.5, 4, at(1_700_000_060)),  # 2023-11-14T22:14:20Z
    "c": ("us", 3.5, 5, at(1_700_000_120)),  # 2023-11-14T22:15:20Z
}

# Statements with DB-API placeholders; asyncpg gets them numbered ($1, $2, ...).
SELECT_BY_REGION = "SELECT host, usage, n, time FROM cpu WHERE region = %s AND n >= %s ORDER BY host"
EXPECTED_BY_REGION = [("b", 2.5, 4, FIXTURE["b"][3]), ("c", 3.5, 5, FIXTURE["c"][3])]
SELECT_AT = "SELECT host, region FROM cpu WHERE time = %s"
SELECT_BETWEEN = "SELECT host FROM cpu WHERE time >= %s AND time < %s AND region <> 'py' ORDER BY host"
INSERT = "INSERT INTO cpu (host, region, usage, n, time) VALUES (%s, %s, %s, %s, %s)"
READ_BACK = "SELECT host, region, usage, n, time FROM cpu WHERE host = %s ORDER BY time"
COLUMNS = ["host", "region", "usage", "n", "time"]

SELECT_TYPES = (str, float, int, dt.datetime)
ROW_TYPES = (str, str, float, int, dt.datetime)
OIDS = {"text": 25, "float8": 701, "int8": 20, "timestamptz": 1184}


def numbered(sql):
    """'... %s ... %s' -> '... $1 ... $2' for asyncpg."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


def csv_lines(rows):
    return "".join(f"{h},{r},{u},{n},{t.isoformat()}\n" for h, r, u, n, t in rows)


class StepFailed(Exception):
    pass


def expect(what, actual, expected):
    if actual != expected:
        raise StepFailed(f"{what}:\n  expected {expected!r}\n  actual   {actual!r}")


def expect_rows(actual, expected, types):
    """Rows equal `expected`, every value has exactly its column's Python type, and
    every datetime is timezone-aware."""
    actual = [tuple(row) for row in actual]
    expect("rows", actual, expected)
    for row in actual:
        expect(f"Python types of {row!r}", tuple(type(v) for v in row), types)
        for v in row:
            if isinstance(v, dt.datetime) and v.utcoffset() is None:
                raise StepFailed(f"{v!r} is a naive datetime; expected a timezone-aware one")


class Client:
    """One client's checks: `steps()` lists them in order; each has a docstring."""

    name = ""

    def __init__(self, args):
        self.args = args
        base = 1_700_001_000  # the rows this client writes; microseconds check precision
        self.mine = {
            "insert": [(self.name, "py", 10.25, 100, at(base, 123_456))],
            "many": [
                (self.name, "py", 11.5, 101, at(base + 60, 1)),
                (self.name, "py", -12.75, 102, at(base + 120, 999_999)),
            ],
            "copy": [
                (self.name, "py", 13.0, 103, at(base + 180)),
                (self.name, "py", 14.125, 104, at(base + 240, 500_000)),
            ],
        }
        self.conn = None

    def expected_read_back(self):
        return sorted((row for rows in self.mine.values() for row in rows), key=lambda row: row[4])


class DbApiClient(Client):
    """Checks psycopg 3 and psycopg2 share: both take %s parameters and run every
    statement inside BEGIN ... COMMIT (autocommit off, their default)."""

    def select_with_parameters(self):
        """region = %s AND n >= %s returns hosts b and c with str, float, int, aware datetime."""
        cur = self.conn.cursor()
        cur.execute(SELECT_BY_REGION, ("us", 4))
        expect_rows(cur.fetchall(), EXPECTED_BY_REGION, SELECT_TYPES)
        expect("column type OIDs", [d.type_code for d in cur.description],
               [OIDS[t] for t in ("text", "float8", "int8", "timestamptz")])

    def timestamptz_parameter(self):
        """time = %s with an aware datetime in +02:00 finds host b; a time range finds b and c."""
        cur = self.conn.cursor()
        cur.execute(SELECT_AT, (FIXTURE["b"][3].astimezone(PLUS_2),))
        expect("rows at b's time", cur.fetchall(), [("b", "us")])
        cur.execute(SELECT_BETWEEN, (FIXTURE["b"][3], at(1_700_000_121)))
        expect("rows in [b's time, c's time + 1 s)", cur.fetchall(), [("b",), ("c",)])

    def insert_with_parameters(self):
        """INSERT ... VALUES (%s, ...) writes one row and reports it."""
        cur = self.conn.cursor()
        cur.execute(INSERT, self.mine["insert"][0])
        expect("rowcount", cur.rowcount, 1)
        expect("status", cur.statusmessage, "INSERT 0 1")
        self.conn.commit()

    def read_back(self):
        """SELECT ... WHERE host = %s returns exactly the rows this client wrote, in time order."""
        cur = self.conn.cursor()
        cur.execute(READ_BACK, (self.name,))
        expect_rows(cur.fetchall(), self.expected_read_back(), ROW_TYPES)
        self.conn.commit()


class Psycopg3(DbApiClient):
    name = "psycopg3"

    def __init__(self, args):
        super().__init__(args)
        base = 1_700_001_000
        self.mine["binary"] = [(self.name, "py", 16.0, 107, at(base + 420, 42))]

    def steps(self):
        return [self.connect, self.select_with_parameters, self.binary_prepared_select,
                self.timestamptz_parameter, self.insert_with_parameters, self.executemany,
                self.copy_from_stdin, self.binary_copy_from_stdin, self.copy_to_stdout, self.read_back]

    def connect(self):
        """Connect (psycopg 3 uses the extended protocol with server-side parameters)."""
        import psycopg

        self.conn = psycopg.connect(host=self.args.host, port=self.args.port, dbname=self.args.database,
                                    user=self.args.user, password=self.args.password, connect_timeout=10)

    def binary_prepared_select(self):
        """The select again with %b (binary) parameters, binary results and a named
        prepared statement, executed twice."""
        cur = self.conn.cursor(binary=True)
        for _ in range(2):
            cur.execute(SELECT_BY_REGION.replace("%s", "%b"), ("us", 4), prepare=True)
            expect_rows(cur.fetchall(), EXPECTED_BY_REGION, SELECT_TYPES)

    def executemany(self):
        """cursor.executemany of two rows (psycopg 3 runs it in pipeline mode)."""
        cur = self.conn.cursor()
        cur.executemany(INSERT, self.mine["many"])
        expect("rowcount", cur.rowcount, 2)
        self.conn.commit()

    def copy_from_stdin(self):
        """cursor.copy('COPY cpu (...) FROM STDIN') with write_row: text format."""
        cur = self.conn.cursor()
        with cur.copy("COPY cpu (host, region, usage, n, time) FROM STDIN") as copy:
            for row in self.mine["copy"]:
                copy.write_row(row)
        expect("rowcount", cur.rowcount, 2)
        self.conn.commit()

    def binary_copy_from_stdin(self):
        """cursor.copy('... FROM STDIN (FORMAT BINARY)') with set_types: binary format."""
        cur = self.conn.cursor()
        with cur.copy("COPY cpu (host, region, usage, n, time) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "float8", "int8", "timestamptz"])
            for row in self.mine["binary"]:
                copy.write_row(row)
        expect("rowcount", cur.rowcount, 1)
        self.conn.commit()

    def copy_to_stdout(self):
        """cursor.copy('COPY (SELECT ...) TO STDOUT') read back as rows of text."""
        cur = self.conn.cursor()
        with cur.copy("COPY (SELECT host, n FROM cpu WHERE region = 'us' ORDER BY host) TO STDOUT") as copy:
            rows = list(copy.rows())
        expect("rows", rows, [("b", "4"), ("c", "5")])
        self.conn.commit()

    def close(self):
        if self.conn is not None:
            self.conn.close()


class Psycopg2(DbApiClient):
    name = "psycopg2"

    def steps(self):
        return [self.connect, self.select_with_parameters, self.timestamptz_parameter,
                self.insert_with_parameters, self.executemany, self.execute_values,
                self.copy_expert, self.read_back]

    def connect(self):
        """Connect (psycopg2 quotes parameters into the SQL text and uses the simple protocol)."""
        import psycopg2

        self.conn = psycopg2.connect(host=self.args.host, port=self.args.port, dbname=self.args.database,
                                     user=self.args.user, password=self.args.password, connect_timeout=10)

    def executemany(self):
        """cursor.executemany of one row (psycopg2 runs one INSERT per row)."""
        cur = self.conn.cursor()
        cur.executemany(INSERT, self.mine["many"][:1])
        expect("rowcount", cur.rowcount, 1)
        self.conn.commit()

    def execute_values(self):
        """psycopg2.extras.execute_values: one INSERT ... VALUES (...), (...) statement."""
        import psycopg2.extras

        cur = self.conn.cursor()
        psycopg2.extras.execute_values(cur, INSERT.split(" VALUES ")[0] + " VALUES %s", self.mine["many"][1:])
        expect("rowcount", cur.rowcount, 1)
        self.conn.commit()

    def copy_expert(self):
        """cursor.copy_expert('COPY cpu (...) FROM STDIN WITH (FORMAT csv)')."""
        cur = self.conn.cursor()
        cur.copy_expert("COPY cpu (host, region, usage, n, time) FROM STDIN WITH (FORMAT csv)",
                        io.StringIO(csv_lines(self.mine["copy"])))
        expect("rowcount", cur.rowcount, 2)
        self.conn.commit()

    def close(self):
        if self.conn is not None:
            self.conn.close()


class Asyncpg(Client):
    name = "asyncpg"

    def __init__(self, args):
        super().__init__(args)
        base = 1_700_001_000
        self.mine["binary"] = [
            (self.name, "py", 15.5, 105, at(base + 300, 250_000)),
            (self.name, "py", -1e-300, -106, at(base + 360, 7)),
        ]

    def steps(self):
        return [self.connect, self.unknown_database, self.select_with_parameters, self.prepared_statement_types,
                self.timestamptz_parameter, self.insert_with_parameters, self.executemany,
                self.copy_to_table_csv, self.copy_records_to_table, self.copy_from_query, self.read_back]

    async def connect(self):
        """Connect (asyncpg uses the extended protocol, binary parameters and results)."""
        import asyncpg

        self.conn = await asyncpg.connect(host=self.args.host, port=self.args.port, database=self.args.database,
                                          user=self.args.user, password=self.args.password, timeout=10,
                                          command_timeout=30)

    async def select_with_parameters(self):
        """region = $1 AND n >= $2 returns hosts b and c with str, float, int, aware datetime."""
        got = await self.conn.fetch(numbered(SELECT_BY_REGION), "us", 4)
        expect_rows(got, EXPECTED_BY_REGION, SELECT_TYPES)

    async def prepared_statement_types(self):
        """A prepared statement describes its parameters and columns with their Postgres types."""
        stmt = await self.conn.prepare(numbered(SELECT_BY_REGION))
        expect("parameter types", [t.name for t in stmt.get_parameters()], ["text", "int8"])
        expect("column types", [a.type.name for a in stmt.get_attributes()],
               ["text", "float8", "int8", "timestamptz"])
        expect_rows(await stmt.fetch("us", 4), EXPECTED_BY_REGION, SELECT_TYPES)

    async def timestamptz_parameter(self):
        """time = $1 with an aware datetime in +02:00 finds host b; a time range finds b and c."""
        got = await self.conn.fetch(numbered(SELECT_AT), FIXTURE["b"][3].astimezone(PLUS_2))
        expect("rows at b's time", [tuple(r) for r in got], [("b", "us")])
        got = await self.conn.fetch(numbered(SELECT_BETWEEN), FIXTURE["b"][3], at(1_700_000_121))
        expect("rows in [b's time, c's time + 1 s)", [tuple(r) for r in got], [("b",), ("c",)])

    async def insert_with_parameters(self):
        """INSERT ... VALUES ($1, ...) writes one row and reports it."""
        expect("status", await self.conn.execute(numbered(INSERT), *self.mine["insert"][0]), "INSERT 0 1")

    async def executemany(self):
        """executemany of two rows inside `async with conn.transaction()` (BEGIN ... COMMIT)."""
        async with self.conn.transaction():
            await self.conn.executemany(numbered(INSERT), self.mine["many"])

    async def copy_to_table_csv(self):
        """copy_to_table(format='csv'): COPY "cpu"(...) FROM STDIN (FORMAT csv) with a byte stream."""
        status = await self.conn.copy_to_table("cpu", source=io.BytesIO(csv_lines(self.mine["copy"]).encode()),
                                               columns=COLUMNS, format="csv")
        expect("status", status, "COPY 2")

    async def copy_records_to_table(self):
        """copy_records_to_table: COPY "cpu"(...) FROM STDIN (FORMAT binary), values in
        each column's binary form, through the WAL like every write."""
        status = await self.conn.copy_records_to_table("cpu", records=self.mine["binary"], columns=COLUMNS)
        expect("status", status, "COPY 2")
        expect("a query after it", await self.conn.fetchval("SELECT count(*) FROM cpu WHERE host = $1", "a"), 1)

    async def copy_from_query(self):
        """copy_from_query: COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER) gives the
        header and the rows as PostgreSQL writes them."""
        out = io.BytesIO()
        status = await self.conn.copy_from_query(
            "SELECT host, usage, time FROM cpu WHERE region <> 'py' ORDER BY host", output=out,
            format="csv", header=True)
        expect("status", status, "COPY 3")
        expect("CSV", out.getvalue().decode(), "host,usage,time\n"
               "a,1.5,2023-11-14 22:13:20+00\nb,2.5,2023-11-14 22:14:20+00\nc,3.5,2023-11-14 22:15:20+00\n")

    async def unknown_database(self):
        """Connecting to a database that does not exist fails with 3D000, and the
        connection is closed without a ReadyForQuery (asyncpg would report a protocol error)."""
        import asyncpg

        try:
            conn = await asyncpg.connect(host=self.args.host, port=self.args.port, database="no_such_database",
                                         user=self.args.user, password=self.args.password, timeout=10)
        except asyncpg.InvalidCatalogNameError as exc:
            expect("SQLSTATE", exc.sqlstate, "3D000")
        else:
            await conn.close()
            raise StepFailed("connecting to no_such_database succeeded")

    async def read_back(self):
        """SELECT ... WHERE host = $1 returns exactly the rows this client wrote, in time order."""
        got = await self.conn.fetch(numbered(READ_BACK), self.name)
        expect_rows(got, self.expected_read_back(), ROW_TYPES)

    async def close(self):
        if self.conn is not None:
            await self.conn.close()


CLIENTS = {"psycopg3": Psycopg3, "asyncpg": Asyncpg, "psycopg2": Psycopg2}


def run_client(cls, args):
    """Runs one client's steps in order. Returns how many held, or raises StepFailed
    naming the client and the first step that did not."""
    client = cls(args)
    loop = asyncio.new_event_loop()

    def call(fn):
        result = fn()
        return loop.run_until_complete(result) if inspect.iscoroutine(result) else result

    passed = 0
    try:
        for step in client.steps():
            try:
                call(step)
            except Exception as exc:  # noqa: BLE001 - an assertion or any client error fails the step
                if isinstance(exc, StepFailed):
                    detail = str(exc)
                else:
                    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
                    detail = f"{type(exc).__module__}.{type(exc).__name__}" + (
                        f" (SQLSTATE {state})" if state else "") + f": {exc}"
                doc = " ".join(inspect.getdoc(step).split())
                raise StepFailed(f"{client.name}: step {step.__name__} failed\n  ({doc})\n{detail}") from exc
            print(f"ok   {client.name:9} {step.__name__}")
            passed += 1
    finally:
        try:
            call(client.close)
        except Exception:  # noqa: BLE001 - closing after a failure must not hide it
            pass
        loop.close()
    return passed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--user", default="hourglass", help="any name while the server has no users")
    parser.add_argument("--password", default=None)
    parser.add_argument("--client", action="append", choices=list(CLIENTS),
                        help="run only this client (repeatable); default: all three")
    args = parser.parse_args()

    passed = 0
    for name in args.client or list(CLIENTS):
        try:
            passed += run_client(CLIENTS[name], args)
        except StepFailed as failure:
            print(f"FAIL {failure}", file=sys.stderr)
            return 1
    print(f"pg_clients: all {passed} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
