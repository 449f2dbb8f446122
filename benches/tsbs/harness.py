#!/usr/bin/env python3
"""The TSBS devops cpu-only benchmark of HourglassDB, side by side with DuckDB and
InfluxDB 1.x in the same run, on the same data. `benches/tsbs/run` is the one
command (it builds, installs the peers and the Python clients, then calls this);
docs/benchmarks.md says what each step measures.

Steps: generate the data (cached), load it into a fresh HourglassDB over HTTP,
wait until every row is in Parquet, compact, measure the bytes; run every query
type over the Postgres wire, FlightSQL and HTTP, and in DuckDB over the Parquet
files the catalog lists, checking every HourglassDB answer against DuckDB's;
load the same file into InfluxDB and run the InfluxQL queries; write a Markdown
and a JSON report. Exit status 1 when any answer differs or any step failed.
"""

import argparse
import atexit
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402
import queries  # noqa: E402
from peers import (Cluster, DuckFront, FlightFront, Hourglass, HttpFront, InfluxDB, InfluxFront,  # noqa: E402
                   PostgresFront, Redis, http_request, peak_rss_bytes, wait_until)

PROFILES = {
    # name: (hosts, hours, hot runs of a light type, hot runs of a heavy type)
    "smoke": (100, 1, 3, 2),
    "small": (4000, 4, 10, 3),
    "day": (4000, 24, 10, 3),
}
FRONTS = {"postgres": PostgresFront, "flightsql": FlightFront, "http": HttpFront}
DATABASE = "benchmark"


def log(message):
    print(f"[tsbs {datetime.datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(
        prog="benches/tsbs/run",
        description="TSBS devops cpu-only: HourglassDB against DuckDB and InfluxDB 1.x on one machine.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("profile", nargs="?", default="smoke", choices=sorted(PROFILES) + ["custom"],
                   help="smoke: 100 hosts × 1 h (36 k rows); small: 4,000 hosts × 4 h (5.76 M rows); "
                        "day: 4,000 hosts × 24 h (34.56 M rows, 12 GB of line protocol)")
    p.add_argument("--hosts", type=int, help="hosts (TSBS scale); overrides the profile's")
    p.add_argument("--hours", type=float, help="hours of data; overrides the profile's")
    p.add_argument("--seed", type=int, default=123, help="seed of the data and of the query parameters")
    p.add_argument("--binary", required=True, help="the hourglass server binary")
    p.add_argument("--tool", required=True, help="the hourglass-tsbs binary (generator and loader)")
    p.add_argument("--data-dir", required=True, help="where generated data is kept between runs")
    p.add_argument("--out", required=True, help="directory for report.md, report.json and the server logs")
    p.add_argument("--workers", type=int, default=2, help="concurrent load connections")
    p.add_argument("--batch", type=int, default=5000, help="lines per write request")
    p.add_argument("--gzip", action="store_true", help="send gzipped bodies (compressed before the clock starts)")
    p.add_argument("--endpoint", default="/write", choices=["/write", "/api/v3/write_lp"],
                   help="HourglassDB's write endpoint")
    p.add_argument("--runs", type=int, help="hot runs of every query type (default: the profile's)")
    p.add_argument("--types", help="comma-separated query types to run (default: all fifteen)")
    p.add_argument("--fronts", default="postgres,flightsql,http", help="HourglassDB fronts to query")
    p.add_argument("--no-influxdb", action="store_true", help="leave InfluxDB out")
    p.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 1,
                   help="DuckDB's threads (HourglassDB uses one per CPU)")
    p.add_argument("--keep-root", action="store_true",
                   help="keep HourglassDB's data root (in --out) after the run, to query or profile it")
    p.add_argument("--readers", type=int, default=1,
                   help="query a cluster of this many readers that spread each query over each other "
                        "(distributed queries): the data is loaded over a Redis catalog (redis-server, started "
                        "here) and a shared directory layer, and the fronts query the first reader")
    p.add_argument("--distributed-min-bytes", default="0",
                   help="with --readers: the readers' HOURGLASS_DISTRIBUTED_MIN_BYTES (0: every query is spread)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="an extra argument for the HourglassDB server (repeatable), e.g. --server-arg=--query-partitions=2")
    return p.parse_args()


def generate(args, hosts, hours):
    os.makedirs(args.data_dir, exist_ok=True)
    path = os.path.join(args.data_dir, f"cpu-{hosts}hosts-{hours:g}h-seed{args.seed}.lp")
    manifest_path = path + ".json"
    if os.path.exists(path) and os.path.exists(manifest_path):
        manifest = json.load(open(manifest_path))
        if os.path.getsize(path) == manifest["bytes"]:
            log(f"data: reusing {path}")
            return path, manifest
    log(f"data: generating {hosts} hosts × {hours:g} h into {path}")
    subprocess.run([args.tool, "generate", "--hosts", str(hosts), "--hours", str(hours),
                    "--seed", str(args.seed), "--out", path], check=True)
    return path, json.load(open(manifest_path))


def load(tool, url, path, args):
    command = [tool, "load", "--url", url, "--file", path, "--workers", str(args.workers),
               "--batch", str(args.batch)] + (["--gzip"] if args.gzip else [])
    run = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    report = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    if run.returncode != 0:
        report.setdefault("errors", 1)
    return report


def live_files(root, cluster=None):
    """The Parquet files the catalog lists for cpu, their bytes and rows: every
    hour's metadata.json on the data root, or with `cluster` (its Redis and its
    layer's directory) every hour's hash in Redis."""
    files, size, rows = [], 0, 0
    if cluster is not None:
        redis, layer = cluster
        table = os.path.join(layer, DATABASE, "cpu")
        key = "hourglass:{" + DATABASE + "/cpu}"
        entries = []
        for hour in redis.command("ZRANGE", f"{key}:partitions", "0", "-1") or []:
            listed = redis.command("HGETALL", f"{key}:files:{hour}") or []
            entries += [json.loads(value) for value in listed[1::2]]
    else:
        table = os.path.join(root, DATABASE, "cpu")
        entries = [entry for metadata in sorted(glob.glob(os.path.join(table, "date=*", "hour=*", "metadata.json")))
                   for entry in json.load(open(metadata)).get("files", [])]
    for entry in entries:
        path = os.path.join(table, entry["path"])
        if not os.path.exists(path):
            raise RuntimeError(f"the catalog lists {path}, which does not exist")
        files.append(path)
        size += entry["size_bytes"]
        rows += entry["row_count"]
    return sorted(files), size, rows


def directory_bytes(path):
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


# The columns that hold timestamps in the answers of DuckDB, the reference.
TIME_COLUMNS = {"time", "minute", "hour"}


def run_query_type(kind, instances, front_name, make_front, check_against, outcome):
    """Runs instance 0 cold (first query on a new process or connection) and the
    rest hot; checks instance 0's answer against DuckDB's when given."""
    front = make_front()
    try:
        seconds, rows = front.timed(instances[0].duckdb if front_name == "duckdb" else instances[0].sql)
        hot = [front.timed(q.duckdb if front_name == "duckdb" else q.sql)[0] for q in instances[1:]]
        outcome["cold_ms"] = seconds * 1000
        outcome["hot_ms"] = statistics.median(hot) * 1000 if hot else None
        outcome["hot_runs"] = len(hot)
        outcome["rows"] = rows
        if check_against is not None:
            got = front.fetch(instances[0].sql)
            problem = compare.compare(check_against, got, TIME_COLUMNS)
            outcome["check"] = "equal" if problem is None else f"DIFFERS: {problem}"
            outcome["rows"] = len(got.rows)
        return front.fetch(instances[0].duckdb) if front_name == "duckdb" else None
    finally:
        front.close()


def scan_tasks(plan):
    """How a distributed query's scan split over the readers, from its EXPLAIN
    ANALYZE VERBOSE (the crate's per-task metrics): for each task of the leaf
    stage (each on its own reader while there are no more tasks than readers),
    the file ranges it read, the rows it returned and the bytes it scanned, as
    DataFusion prints them."""
    import re
    tasks = []
    for line in (plan.get("Plan with Full Metrics") or "").splitlines():
        found = re.search(r"\bt(\d+): DataSourceExec: file_groups=\{(.*?)\}, projection", line)
        if not found:
            continue
        metrics = dict(re.findall(r"\b(output_rows|bytes_scanned)=\{\d+:([^}]*)\}", line))
        tasks.append({"task": int(found.group(1)), "file_ranges": found.group(2).count(".parquet:"),
                      "rows": metrics.get("output_rows"), "bytes_scanned": metrics.get("bytes_scanned")})
    return tasks


def fmt_ms(value):
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def main():
    args = parse_args()
    hosts, hours, light_runs, heavy_runs = PROFILES.get(args.profile, (None, None, 10, 3))
    hosts = args.hosts or hosts
    hours = args.hours or hours
    if hosts is None or hours is None:
        sys.exit("the custom profile needs --hosts and --hours")
    os.makedirs(args.out, exist_ok=True)
    fronts = [f for f in args.fronts.split(",") if f]
    for f in fronts:
        if f not in FRONTS:
            sys.exit(f"unknown front {f}; the fronts are {', '.join(FRONTS)}")
    types = args.types.split(",") if args.types else queries.QUERY_TYPES
    for t in types:
        if t not in queries.QUERY_TYPES:
            sys.exit(f"unknown query type {t}; the types are {', '.join(queries.QUERY_TYPES)}")
    failures = []
    report = {
        "profile": args.profile, "hosts": hosts, "hours": hours, "seed": args.seed,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "load": {}, "storage": {}, "queries": {}, "failures": failures,
    }

    data_path, manifest = generate(args, hosts, hours)
    report["data"] = manifest
    work = tempfile.mkdtemp(prefix="hourglass-tsbs-", dir=args.out)
    root = os.path.join(work, "hourglass")
    server_log = os.path.join(args.out, "hourglass.log")
    # A cluster's processes share a Redis catalog and a directory layer (one
    # machine: the directory is as shared as a bucket).
    redis, layer, shared_args = None, None, []
    if args.readers > 1:
        redis = Redis(os.path.join(work, "redis"), os.path.join(args.out, "redis.log")).start()
        atexit.register(redis.stop)  # whatever step fails on the way
        layer = os.path.join(work, "lake")
        shared_args = ["--metadata-type", "redis", "--metadata-url", redis.url(),
                       "--layer", f"name=lake,type=fs,url={layer},global=true"]
        report["cluster"] = {"readers": args.readers, "distributed_min_bytes": args.distributed_min_bytes}

    # --- Load into HourglassDB --------------------------------------------------
    # Replaced files are deleted after 1 s (the grace, and no query runs during the
    # load), so that the whole root measures what a settled server keeps.
    server = Hourglass(args.binary, root, server_log,
                       ["--file-grace-s", "1", "--query-timeout-s", "1", *shared_args, *args.server_arg]).start()
    try:
        log(f"load: HourglassDB {args.endpoint}, {args.workers} workers, batch {args.batch}, gzip {args.gzip}")
        url = f"http://127.0.0.1:{server.http_port}{args.endpoint}?db={DATABASE}"
        ours = load(args.tool, url, data_path, args)
        report["load"]["hourglass"] = ours
        if ours.get("errors"):
            failures.append(f"HourglassDB load: {ours.get('first_error')}")
        log("load: waiting until every row is in Parquet")
        persisting = time.monotonic()
        wait_until(lambda: (lambda m: m.get("hourglass_buffered_bytes", 1) == 0
                            and m.get("hourglass_persisted_rows_total", 0) >= manifest["rows"])(server.metrics()),
                   "every row in Parquet", 3600, server.process)
        ours["persisted_after_load_s"] = time.monotonic() - persisting
        log("compact: POST /admin/compact")
        compacting = time.monotonic()
        status, body = http_request(server.http_port, "POST", "/admin/compact", timeout=7200)
        if status != 200:
            failures.append(f"compaction answered {status}: {body[:300]!r}")
        # A second run deletes what the first replaced (their grace is over).
        time.sleep(2.5)
        http_request(server.http_port, "POST", "/admin/compact", timeout=7200)
        ours["compaction_s"] = time.monotonic() - compacting
        ours["server_peak_rss_bytes"] = peak_rss_bytes(server.process.pid)
    finally:
        server.stop()
    files, parquet_bytes, listed_rows = live_files(root, (redis, layer) if redis else None)
    root_bytes = directory_bytes(root) + (directory_bytes(layer) if layer else 0)
    report["storage"] = {
        "rows": listed_rows, "files": len(files), "parquet_bytes": parquet_bytes, "root_bytes": root_bytes,
        "parquet_bytes_per_row": parquet_bytes / max(listed_rows, 1), "root_bytes_per_row": root_bytes / max(listed_rows, 1),
    }
    if listed_rows != manifest["rows"]:
        failures.append(f"the catalog lists {listed_rows} rows where {manifest['rows']} were acknowledged")
    log(f"storage: {len(files)} files, {parquet_bytes / listed_rows if listed_rows else 0:.2f} bytes a row")

    # --- Queries -------------------------------------------------------------------
    generator = queries.Generator(args.seed, hosts, manifest["start_ns"], manifest["end_ns"] - manifest["interval_ns"])
    instances = {}
    for kind in types:
        runs = args.runs or (heavy_runs if kind in queries.HEAVY_TYPES else light_runs)
        instances[kind] = [generator.query(kind) for _ in range(runs + 1)]
    report["windows_shortened_to_the_data"] = sorted(generator.shortened)
    select_one = [queries.Query("SELECT 1", "SELECT 1", "SELECT 1", None) for _ in range(21)]

    all_kinds = ["SELECT 1"] + types
    for kind in all_kinds:
        report["queries"][kind] = {"sql": (select_one if kind == "SELECT 1" else instances[kind])[0].sql}
    # DuckDB first: its answers are what every front is checked against.
    expected = {}
    for kind in all_kinds:
        outcome = report["queries"][kind].setdefault("duckdb", {})
        try:
            expected[kind] = run_query_type(kind, select_one if kind == "SELECT 1" else instances[kind], "duckdb",
                                            lambda: DuckFront(files, args.duckdb_threads), None, outcome)
        except Exception as error:  # noqa: BLE001 - reported, and the run fails
            outcome["error"] = str(error)
            failures.append(f"DuckDB {kind}: {error}")
    if args.readers > 1:
        probe = (instances.get("double-groupby-all")
                 or [queries.Query("probe", "SELECT hostname, max(usage_user) FROM cpu GROUP BY hostname", None, None)])[0]
        server = Cluster(args.binary, [os.path.join(work, f"reader-{i}") for i in range(args.readers)],
                         [os.path.join(args.out, f"reader-{i}.log") for i in range(args.readers)],
                         [*shared_args, "--distributed-min-bytes", args.distributed_min_bytes, *args.server_arg],
                         probe.sql, DATABASE)
    else:
        server = Hourglass(args.binary, root, server_log, args.server_arg)
    try:
        if args.readers > 1:
            # One cluster for every query type: "cold" is then the type's first
            # query on running readers.
            server.start()
        for front_name in fronts:
            for kind in all_kinds:
                log(f"query: {front_name} {kind}")
                # Each query type starts on a fresh server process: its first query is cold.
                if args.readers <= 1:
                    server.start()
                outcome = report["queries"][kind].setdefault(front_name, {})
                try:
                    run_query_type(kind, select_one if kind == "SELECT 1" else instances[kind], front_name,
                                   lambda: FRONTS[front_name](server, DATABASE), expected.get(kind), outcome)
                    if outcome.get("check", "equal") != "equal":
                        failures.append(f"{front_name} {kind}: {outcome['check']}")
                except Exception as error:  # noqa: BLE001 - reported, and the run fails
                    outcome["error"] = str(error)
                    failures.append(f"{front_name} {kind}: {error}")
                finally:
                    if args.readers <= 1:
                        server.stop()
                if kind not in expected:
                    outcome["check"] = "no DuckDB answer"
        if args.readers > 1:
            for kind in [k for k in ("double-groupby-all", "lastpoint") if k in instances]:
                log(f"explain analyze: {kind} over {args.readers} readers")
                try:
                    plan = server.explain(instances[kind][0].sql, analyze=True)
                    tasks = scan_tasks(plan)
                    report["cluster"].setdefault("explain_analyze", {})[kind] = {"plan": plan, "tasks": tasks}
                    if not tasks:
                        failures.append(f"EXPLAIN ANALYZE {kind}: not spread over the readers")
                except Exception as error:  # noqa: BLE001 - reported, and the run fails
                    failures.append(f"EXPLAIN ANALYZE {kind}: {error}")
    finally:
        server.stop()
        if redis is not None:
            redis.stop()

    # --- InfluxDB ------------------------------------------------------------------
    if not args.no_influxdb:
        influx = InfluxDB(os.path.join(work, "influxdb"), os.path.join(args.out, "influxdb.log"))
        try:
            influx.start()
            influx.query(f"CREATE DATABASE {DATABASE}")
            log(f"load: InfluxDB /write, {args.workers} workers, batch {args.batch}, gzip {args.gzip}")
            theirs = load(args.tool, f"http://127.0.0.1:{influx.http_port}/write?db={DATABASE}&precision=ns",
                          data_path, args)
            theirs["server_peak_rss_bytes"] = peak_rss_bytes(influx.process.pid)
            report["load"]["influxdb"] = theirs
            if theirs.get("errors"):
                failures.append(f"InfluxDB load: {theirs.get('first_error')}")
            influx.stop()
            report["storage"]["influxdb_bytes"] = directory_bytes(os.path.join(work, "influxdb"))
            for kind in types:
                log(f"query: influxdb {kind}")
                influx.start()
                outcome = report["queries"][kind].setdefault("influxdb", {})
                outcome["influxql"] = instances[kind][0].influxql
                try:
                    front = InfluxFront(influx, DATABASE)
                    cold, rows = front.timed(instances[kind][0].influxql)
                    hot = [front.timed(q.influxql)[0] for q in instances[kind][1:]]
                    front.close()
                    outcome.update(cold_ms=cold * 1000, hot_ms=statistics.median(hot) * 1000 if hot else None,
                                   rows=rows, hot_runs=len(hot))
                except Exception as error:  # noqa: BLE001 - InfluxQL has limits; reported, not fatal
                    outcome["error"] = str(error)
                influx.stop()
        except Exception as error:  # noqa: BLE001
            failures.append(f"InfluxDB: {error}")
            traceback.print_exc()
        finally:
            influx.stop()

    if args.keep_root:
        shutil.rmtree(os.path.join(work, "influxdb"), ignore_errors=True)
        report["kept_root"] = root
        log(f"kept HourglassDB's data root: {root}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    markdown = render(report, fronts)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    if failures:
        print("\n" + "!" * 78 + "\nFAILED: " + "\n        ".join(failures) + "\n" + "!" * 78, file=sys.stderr)
        sys.exit(1)
    log(f"done; the report is in {args.out}/report.md and report.json")


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = int(open("/proc/meminfo").readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    import duckdb
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_bytes": memory, "kernel": platform.release(),
            "python": platform.python_version(), "duckdb": duckdb.__version__, "commit": commit}


def render(report, fronts):
    lines = []
    m = report["machine"]
    lines.append(f"## TSBS cpu-only, `{report['profile']}`: {report['hosts']} hosts × {report['hours']:g} h = "
                 f"{report['data']['rows']:,} rows, seed {report['seed']}")
    lines.append("")
    lines.append(f"{m['cpus']} CPUs ({m['cpu']}), {m['memory_bytes'] / 2**30:.0f} GiB, Linux {m['kernel']}, "
                 f"commit {m['commit']}, DuckDB {m['duckdb']}; started {report['started']}.")
    lines.append("")
    ours = report["load"].get("hourglass", {})
    theirs = report["load"].get("influxdb", {})
    st = report["storage"]
    lines.append("| Load | Rows/s acknowledged | Seconds | 503 retries | Errors | Peak RSS | Bytes a row |")
    lines.append("|---|---|---|---|---|---|---|")
    if ours:
        lines.append(f"| HourglassDB ({ours.get('workers')} workers, batch {ours.get('batch')}, "
                     f"gzip {'on' if ours.get('gzip') else 'off'}) | {ours.get('rows_per_s', 0):,.0f} | "
                     f"{ours.get('seconds', 0):.1f} | {ours.get('retries')} | {ours.get('errors')} | "
                     f"{(ours.get('server_peak_rss_bytes') or 0) / 2**20:,.0f} MiB | "
                     f"{st.get('parquet_bytes_per_row', 0):.2f} (Parquet), {st.get('root_bytes_per_row', 0):.2f} (root) |")
    if theirs:
        influx_bpr = st.get("influxdb_bytes", 0) / max(report["data"]["rows"], 1)
        lines.append(f"| InfluxDB 1.x (same) | {theirs.get('rows_per_s', 0):,.0f} | {theirs.get('seconds', 0):.1f} | "
                     f"{theirs.get('retries')} | {theirs.get('errors')} | "
                     f"{(theirs.get('server_peak_rss_bytes') or 0) / 2**20:,.0f} MiB | {influx_bpr:.2f} (data dir) |")
        if ours.get("rows_per_s") and theirs.get("rows_per_s"):
            lines.append("")
            lines.append(f"Ingest ratio HourglassDB / InfluxDB: **{ours['rows_per_s'] / theirs['rows_per_s']:.2f}×**.")
    lines.append("")
    lines.append(f"Every row in Parquet {ours.get('persisted_after_load_s', 0):.1f} s after the last acknowledgement; "
                 f"compaction took {ours.get('compaction_s', 0):.1f} s; {st.get('files')} live files.")
    lines.append("")
    header = ["Query"]
    for f in fronts:
        header += [f"{f} cold", f"{f} hot"]
    header += ["DuckDB cold", "DuckDB hot", "postgres / DuckDB", "InfluxDB hot", "Rows", "Check"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for kind, q in report["queries"].items():
        row = [kind]
        for f in fronts:
            o = q.get(f, {})
            row += ["error" if "error" in o else fmt_ms(o.get("cold_ms")),
                    "error" if "error" in o else fmt_ms(o.get("hot_ms"))]
        d = q.get("duckdb", {})
        row += [fmt_ms(d.get("cold_ms")), fmt_ms(d.get("hot_ms"))]
        pg = q.get("postgres", {}).get("hot_ms")
        row.append(f"{pg / d['hot_ms']:.2f}" if pg and d.get("hot_ms") else "–")
        i = q.get("influxdb", {})
        row.append("error" if "error" in i else fmt_ms(i.get("hot_ms")) if i else "–")
        row.append(str(d.get("rows", "–")))
        checks = {q.get(f, {}).get("check") for f in fronts}
        row.append("equal" if checks == {"equal"} else "**" + "; ".join(sorted(str(c) for c in checks)) + "**")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Milliseconds; cold = the first query after the process started (DuckDB: a new connection); "
                 "hot = the median of the next runs. The page cache is warm throughout.")
    if report.get("windows_shortened_to_the_data"):
        lines.append(f"Windows longer than the data were shortened to it: "
                     f"{', '.join(report['windows_shortened_to_the_data'])}.")
    cluster = report.get("cluster")
    if cluster:
        lines.append("")
        lines.append(f"Queried on a cluster of {cluster['readers']} readers over a Redis catalog, each query "
                     f"spread over all of them past {cluster['distributed_min_bytes']} bytes scanned; "
                     f"the fronts query the first.")
        for kind, analyzed in cluster.get("explain_analyze", {}).items():
            lines.append("")
            lines.append(f"How `{kind}`'s scan split over the readers (EXPLAIN ANALYZE VERBOSE, one task per reader):")
            lines.append("")
            lines.append("| Task | File ranges | Rows | Bytes scanned |")
            lines.append("|---|---|---|---|")
            for task in analyzed["tasks"]:
                lines.append(f"| t{task['task']} | {task['file_ranges']} | {task['rows']} | {task['bytes_scanned']} |")
    errors = [(k, s, o["error"]) for k, q in report["queries"].items() for s, o in q.items()
              if isinstance(o, dict) and "error" in o]
    if errors:
        lines.append("")
        lines.append("Errors:")
        for kind, system, error in errors:
            lines.append(f"- {system} {kind}: {error.splitlines()[0][:300]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["self-test"]:
        compare.self_test()
        sys.exit(0)
    main()
