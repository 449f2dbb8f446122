"""Result sets from different clients, made comparable: every timestamp as
nanoseconds since the epoch in UTC, every number as a float, columns matched by
name where both sides have the same names (else by position), rows compared as
multisets (TSBS's ordering differs between systems), floats within 1e-9
relative."""

import datetime
import math

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Result:
    """Column names and rows of plain Python values."""

    def __init__(self, names, rows):
        self.names = list(names)
        self.rows = [tuple(r) for r in rows]


def timestamp_ns(value):
    """A datetime, an RFC 3339 string or a PostgreSQL timestamp text as epoch ns."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        fraction_ns = 0
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        # Python parses at most microseconds; keep the nanoseconds aside.
        if "." in text:
            head, rest = text.split(".", 1)
            digits = rest[:len(rest) - len(rest.lstrip("0123456789"))]
            zone = rest[len(digits):]
            fraction_ns = int((digits + "000000000")[:9])
            text = head + zone
        if len(text) >= 3 and (text[-3] in "+-") and text[-2:].isdigit() and ":" not in text[-3:]:
            text += ":00"  # PostgreSQL's "+00"
        moment = datetime.datetime.fromisoformat(text)
        return timestamp_ns(moment) + fraction_ns
    if isinstance(value, int):
        return value
    raise TypeError(f"not a timestamp: {value!r}")


def _normal(value, is_time):
    if value is None:
        return None
    if is_time:
        return timestamp_ns(value)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, str):
        return float(value)  # Decimal
    return value


def _close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _sort_key(row):
    return tuple((0, "") if v is None else (1, f"{v:.6e}") if isinstance(v, float) else (2, str(v)) for v in row)


def compare(expected, got, time_columns):
    """None when `got` holds the same rows as `expected`, else what differs.
    `time_columns` names the expected columns that hold timestamps."""
    if not got.names and not got.rows:
        # An HTTP JSON answer without rows has no column names to compare.
        return None if not expected.rows else f"no rows where {len(expected.rows)} were expected"
    if len(expected.names) != len(got.names):
        return f"{len(got.names)} columns where {len(expected.names)} were expected ({got.names} vs {expected.names})"
    if sorted(expected.names) == sorted(got.names) and expected.names != got.names:
        order = [got.names.index(n) for n in expected.names]
        got_rows = [tuple(r[i] for i in order) for r in got.rows]
    else:
        got_rows = got.rows
    is_time = [n in time_columns for n in expected.names]
    want = sorted((tuple(_normal(v, t) for v, t in zip(r, is_time)) for r in expected.rows), key=_sort_key)
    have = sorted((tuple(_normal(v, t) for v, t in zip(r, is_time)) for r in got_rows), key=_sort_key)
    if len(want) != len(have):
        return f"{len(have)} rows where {len(want)} were expected"
    for i, (w, h) in enumerate(zip(want, have)):
        if len(w) != len(h) or not all(_close(a, b) for a, b in zip(w, h)):
            return f"row {i} (sorted) is {h} where {w} was expected"
    return None


def self_test():
    """The comparison itself: it must tell equal results from different ones."""
    names = ["time", "hostname", "max"]
    t = datetime.datetime(2016, 1, 1, 0, 1, tzinfo=datetime.timezone.utc)
    expected = Result(names, [(t, "host_1", 5), (t, "host_2", 7.25)])
    same = Result(names, [("2016-01-01T00:01:00.000000000Z", "host_2", 7.25), ("2016-01-01 00:01:00+00", "host_1", 5.0)])
    assert compare(expected, same, {"time"}) is None, compare(expected, same, {"time"})
    by_name = Result(["hostname", "max", "time"], [("host_1", 5, t), ("host_2", 7.25 + 1e-12, t)])
    assert compare(expected, by_name, {"time"}) is None
    for wrong in (
        Result(names, [(t, "host_1", 5)]),  # a row missing
        Result(names, [(t, "host_1", 5), (t, "host_2", 7.26)]),  # a value
        Result(names, [(t, "host_1", 5), (t, "host_3", 7.25)]),  # a tag
        Result(names, [(t, "host_1", 5), (t + datetime.timedelta(seconds=10), "host_2", 7.25)]),  # a time
        Result(names, [(t, "host_1", 5), (t, "host_2", None)]),  # a null
        Result(names[:2], [(t, "host_1"), (t, "host_2")]),  # a column
    ):
        assert compare(expected, wrong, {"time"}) is not None, wrong.rows
    assert compare(expected, Result([], []), {"time"}) is not None  # no rows at all
    assert compare(Result(names, []), Result([], []), {"time"}) is None
    assert timestamp_ns("2016-01-01T00:00:10.000000001Z") == 1_451_606_410_000_000_001
    print("compare: self-test passed")
