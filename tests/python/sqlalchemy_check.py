"""SQLAlchemy's PostgreSQL inspector against the Postgres front: the
queries Superset sends when it lists a database's schemas, tables and
columns (SQLAlchemy's own pg_catalog queries, through psycopg2).
tests/it/clients.rs runs it with a measurement `cpu` (tag host, float
usage, integer n) in database `bi`.

usage: sqlalchemy_check.py PORT USER PASSWORD
"""

import sys

import sqlalchemy as sa

PORT, USER, PASSWORD = sys.argv[1:4]


def check(description, ok, detail=""):
    if not ok:
        print(f"FAILED: {description}: {detail}")
        sys.exit(1)
    print(f"ok sqlalchemy {description}")


engine = sa.create_engine(f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{PORT}/bi")
with engine.connect() as connection:
    inspector = sa.inspect(connection)
    schemas = inspector.get_schema_names()
    check("lists the schemas", "public" in schemas, schemas)
    tables = inspector.get_table_names()
    check("lists the measurements as tables", tables == ["cpu"], tables)
    connection.execute(sa.text("CREATE VIEW busy AS SELECT host, usage FROM cpu WHERE usage > 2"))
    views = sa.inspect(connection).get_view_names()
    check("lists the schema's views, not information_schema's", views == ["busy"], views)
    columns = {c["name"]: c for c in inspector.get_columns("cpu")}
    check("reads the columns", sorted(columns) == ["host", "n", "time", "usage"], sorted(columns))
    kinds = {name: type(c["type"]).__name__ for name, c in columns.items()}
    check("reads the columns' PostgreSQL types",
          kinds == {"host": "TEXT", "usage": "DOUBLE_PRECISION", "n": "BIGINT", "time": "TIMESTAMP"}, kinds)
    check("reads time as timezone-aware and not nullable",
          columns["time"]["type"].timezone and not columns["time"]["nullable"], columns["time"])
    check("finds no primary key", inspector.get_pk_constraint("cpu")["constrained_columns"] == [],
          inspector.get_pk_constraint("cpu"))
    check("finds no unique constraint", inspector.get_unique_constraints("cpu") == [])
    check("finds no foreign key", inspector.get_foreign_keys("cpu") == [])
    check("finds no index", inspector.get_indexes("cpu") == [], inspector.get_indexes("cpu"))
    # What Superset does when a dataset is added: reflect the table whole.
    table = sa.Table("cpu", sa.MetaData(), autoload_with=connection)
    check("reflects the table", [c.name for c in table.columns] == ["host", "usage", "n", "time"],
          [c.name for c in table.columns])
    query = sa.select(table.c.host, sa.func.count()).group_by(table.c.host).order_by(table.c.host)
    check("runs SQLAlchemy's own query on it", [tuple(r) for r in connection.execute(query)] == [("a", 1), ("b", 1)])
    rows = connection.execute(sa.text("SELECT host, avg(usage) AS usage FROM cpu GROUP BY host ORDER BY host")).all()
    check("runs a chart's query", [tuple(r) for r in rows] == [("a", 1.5), ("b", 3.0)], rows)
