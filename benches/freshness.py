#!/usr/bin/env python3
"""How fresh a reader is: from a writer's 204 to the row in another process's count(*).

    python benches/freshness.py [--layer s3|local] [--samples 40] [--save-timeout-s S]

Starts, on 127.0.0.1 on free ports, with everything under a new temporary
directory:

  redis     /usr/bin/redis-server (Debian's), --save '' --appendonly yes
            --appendfsync always: the shared catalog (docs/scale-out.md)
  seaweedfs `weed server -filer -s3` (--layer s3, the default): the global
            layer, an S3 bucket made with `weed shell`, as tests/it/support.rs
            starts it; with --layer local the global layer is a directory instead
  writer    hourglass --mode writeonly, its own root
  reader    hourglass --mode readonly, its own root

Both hourglass processes run with the Redis catalog and the one global layer;
only --save-timeout-s (GIGAPI_SAVE_TIMEOUT_S) is passed on, when given, and
every other setting is the default (HOURGLASS_*, GIGAPI_* and the other
variables the server reads are removed from its environment). The script waits
for `GET /ready` on both, then writes one untimed row and waits for the reader
to see it (the table's creation, and the first upload to a new S3 bucket, are
not what is measured).

Then, --samples times, at a random moment (a pause uniform in 0 to 1.5 s
before each): writes one row with its own field value to the writer,

    POST /write?db=default    fresh,probe=p v=<i>i <now in ns>

takes the time when the 204 arrives, and asks the reader every 10 ms

    POST /query?db=default    {"query": "SELECT count(*) AS n FROM fresh WHERE v = <i>"}

until n = 1. The delay is from the 204 to the answer with n = 1, so it
includes up to one poll interval and one query's round trip. A sample whose
row is not seen within --deadline-s (30 s) is a failure.

Prints the median, the 90th percentile and the maximum in milliseconds, with
the layer and the settings used. Exits 1 if any sample failed, 2 if the
cluster did not start or one of its processes died, 130 on Ctrl-C.

Everything started is stopped at the end, also on an error or Ctrl-C: the
hourglass processes first (SIGTERM), then SeaweedFS (SIGKILL, as the tests
stop it), then Redis (SIGTERM). The temporary directory, with every process's
log (writer.log, reader.log, redis/redis.log, seaweedfs/weed.log), is removed
after a clean run and kept (its path printed) after a failure or with --keep.

Binaries: --binary (default $CARGO_TARGET_DIR/quick-release/hourglass, built by
`cargo build --profile quick-release`) and --weed (default
$CARGO_TARGET_DIR/python-venv/bin/weed, which tests/run installs), with
CARGO_TARGET_DIR defaulting to ~/.cache/hourglassdb/target as in tests/run.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/hourglassdb/target")
BUCKET = "hourglass"
ACCESS_KEY, SECRET_KEY = "hourglass-bench-key", "hourglass-bench-secret"
# Settings the server reads from its environment besides GIGAPI_* and HOURGLASS_*.
SERVER_ENV = ["HTTP_PORT", "HTTP_HOST", "HTTP_BASIC_AUTH_USERNAME", "HTTP_BASIC_AUTH_PASSWORD", "FLIGHTSQL_PORT",
              "FLIGHTSQL_ENABLE", "PG_PORT", "PG_ENABLE", "LOGLEVEL"]
PROXY_ENV = ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]


class Failure(Exception):
    """The cluster could not be started or stopped working; the message says which log to read."""


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from loopback import free_ports  # noqa: E402 - ports below the ephemeral range, as the tests choose them


class Processes:
    """The processes this script started, each in a session of its own (so that a
    Ctrl-C in the terminal reaches only this script, which stops them in order),
    and files they leave outside the temporary directory."""

    def __init__(self):
        self.started = []  # (name, Popen, log path, seconds to wait after SIGTERM)
        self.leftovers = []

    def start(self, name, argv, log, grace_s, cwd=None, env=None):
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((name, process, log, grace_s))
        return process

    def check(self):
        for name, process, log, _ in self.started:
            if process.poll() is not None:
                raise Failure(f"{name} exited with status {process.returncode}; see {log}")

    def stop_all(self):
        """SIGTERM to each process group, latest started first; SIGKILL past its grace
        time, or at once for a grace time of 0. False if one that got SIGTERM did not
        exit with status 0 (its log says why)."""
        clean = True
        for name, process, log, grace_s in reversed(self.started):
            # Signalled only while not reaped: until then its pid (its group's id) is still ours.
            if process.poll() is None and grace_s:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    print(f"freshness: {name} did not stop within {grace_s} s of SIGTERM: SIGKILL", file=sys.stderr)
                    clean = False
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            elif grace_s and process.returncode != 0:
                print(f"freshness: {name} exited with status {process.returncode}; see {log}", file=sys.stderr)
                clean = False
        self.started.clear()
        for path in self.leftovers:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        return clean


def wait_until(what, deadline_s, processes, ready, log_hint):
    deadline = time.monotonic() + deadline_s
    while True:
        processes.check()
        if ready():
            return
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {deadline_s} s waiting for {what}; see {log_hint}")
        time.sleep(0.05)


def answers(port, request, expect):
    """True if a fresh connection to `port` sent `request` answers with bytes starting with `expect`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            reply = b""
            while len(reply) < len(expect):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.startswith(expect)
    except OSError:
        return False


def http_status(port, path):
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        return status
    except (OSError, http.client.HTTPException):
        return None


class Client:
    """One keep-alive HTTP connection to a server, reopened after an error."""

    def __init__(self, port):
        self.port = port
        self.connection = None

    def post(self, path, body, content_type):
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.connection.request("POST", path, body, {"Content-Type": content_type})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise

    def close(self):
        if self.connection is not None:
            self.connection.close()


def start_redis(processes, directory):
    os.makedirs(directory)
    (port,) = free_ports(1)
    processes.start("redis-server", [
        "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
        "--appendfsync", "always", "--dir", directory, "--protected-mode", "yes", "--daemonize", "no",
    ], os.path.join(directory, "redis.log"), grace_s=10, cwd=directory)
    wait_until("Redis to answer PING", 20, processes, lambda: answers(port, b"PING\r\n", b"+PONG"),
               os.path.join(directory, "redis.log"))
    return f"redis://127.0.0.1:{port}/0"


def start_seaweedfs(processes, weed, directory):
    """`weed server` with master, volume server, filer and S3 gateway, every port
    given (its default gRPC ports, HTTP port + 10000, may be taken), one identity
    without Admin in s3.json, and the bucket made with `weed shell`."""
    os.makedirs(os.path.join(directory, "data"))
    log = os.path.join(directory, "weed.log")
    ports = free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    with open(os.path.join(directory, "s3.json"), "w") as f:
        json.dump({"identities": [{
            "name": "hourglass",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Read", "List", "Tagging", "Write"],
        }]}, f)
    env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV}
    # weed reads *.toml from its working directory: `directory`, which has none. It is stopped
    # with SIGKILL, as the tests stop it: on SIGTERM it waits for its own gRPC streams
    # to close, for more than 10 s.
    processes.start("weed", [
        weed, "-logtostderr", f"-logdir={directory}", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-dir={os.path.join(directory, 'data')}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-filer", "-s3", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        f"-s3.config={os.path.join(directory, 's3.json')}",
        # Small volumes, not preallocated: a few MB of disk, not gigabytes.
        "-master.volumeSizeLimitMB=64", "-volume.max=16", "-master.volumePreallocate=false",
        f"-filer.localSocket={os.path.join(directory, 'filer.sock')}",
        f"-s3.localSocket={os.path.join(directory, 's3.sock')}",
    ], log, grace_s=0, cwd=directory, env=env)
    # weed makes its gRPC Unix sockets in /tmp whatever the flags say.
    processes.leftovers += [f"/tmp/seaweedfs-{server}-grpc-{port}.sock" for server, port in
                            (("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc))]
    deadline_s = 60
    wait_until("the S3 port to answer", deadline_s, processes,
               lambda: answers(s3, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", b"HTTP/1."), log)

    def create_bucket():
        try:
            shell = subprocess.run(
                [weed, "-logtostderr", f"-logdir={directory}", "shell", f"-master=127.0.0.1:{master}.{master_grpc}"],
                input=f"s3.bucket.create -name {BUCKET}\n", capture_output=True, text=True, cwd=directory, env=env,
                timeout=20)
        except subprocess.TimeoutExpired:
            return False
        text = shell.stdout + shell.stderr
        return f"created bucket {BUCKET}" in text or "already exists" in text

    wait_until(f"`weed shell` to make the bucket {BUCKET}", deadline_s, processes, create_bucket, log)
    url = f"s3://127.0.0.1:{s3}/{BUCKET}/lake?secure=false&url-style=path"
    return f"name=lake,type=s3,url={url},auth-key={ACCESS_KEY},auth-secret={SECRET_KEY}"


def start_hourglass(processes, binary, tmp, mode, shared_args):
    name = {"writeonly": "writer", "readonly": "reader"}[mode]
    (port,) = free_ports(1)
    log = os.path.join(tmp, f"{name}.log")
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("GIGAPI_", "HOURGLASS_")) or k in SERVER_ENV or k in PROXY_ENV)}
    processes.start(name, [
        binary, "--root", os.path.join(tmp, name), "--mode", mode, *shared_args,
        "--http-host", "127.0.0.1", "--http-port", str(port), "--pg-enable", "false", "--flightsql-enable", "false",
    ], log, grace_s=60, cwd=tmp, env=env)
    return port, log


def sample(writer, reader, value, poll_s, deadline_s):
    """Writes the row with v = `value`; returns (seconds from its 204 until the reader
    counts it, None) or (None, why it was not seen)."""
    status, body = writer.post("/write?db=default", f"fresh,probe=p v={value}i {time.time_ns()}", "text/plain")
    if status != 204:
        return None, f"the write was answered {status}: {body[:300]!r}"
    acked = time.perf_counter()
    query = json.dumps({"query": f"SELECT count(*) AS n FROM fresh WHERE v = {value}"})
    last, next_poll = "no answer yet", acked
    while True:
        try:
            status, body = reader.post("/query?db=default", query, "application/json")
        except (OSError, http.client.HTTPException) as error:
            status, body = None, repr(error).encode()
        now = time.perf_counter()
        if status == 200:
            n = json.loads(body)["results"][0]["n"]
            if n == 1:
                return now - acked, None
            if n > 1:
                return None, f"the reader counts {n} rows with v = {value}"
            last = "n = 0"
        else:
            last = f"the query was answered {status}: {body[:300]!r}"
        if now - acked > deadline_s:
            return None, f"not seen within {deadline_s} s (last: {last})"
        next_poll = max(next_poll + poll_s, now)
        time.sleep(max(0.0, next_poll - time.perf_counter()))


def percentiles(delays_ms):
    delays_ms = sorted(delays_ms)
    return statistics.median(delays_ms), delays_ms[int(len(delays_ms) * 0.9)], delays_ms[-1]


def run(args, tmp, processes):
    redis_url = start_redis(processes, os.path.join(tmp, "redis"))
    if args.layer == "s3":
        started = time.monotonic()
        layer = start_seaweedfs(processes, args.weed, os.path.join(tmp, "seaweedfs"))
        print(f"SeaweedFS ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    else:
        lake = os.path.join(tmp, "lake")
        os.makedirs(lake)
        layer = f"name=lake,type=fs,url=file://{lake}"
    shared_args = ["--metadata-type", "redis", "--metadata-url", redis_url, "--layer", f"{layer},global=true"]
    if args.save_timeout_s is not None:
        shared_args += ["--save-timeout-s", str(args.save_timeout_s)]
    writer_port, writer_log = start_hourglass(processes, args.binary, tmp, "writeonly", shared_args)
    reader_port, reader_log = start_hourglass(processes, args.binary, tmp, "readonly", shared_args)
    for port, log in ((writer_port, writer_log), (reader_port, reader_log)):
        wait_until(f"GET /ready on port {port} to answer 200", 60, processes,
                   lambda: http_status(port, "/ready") == 200, log)

    writer, reader = Client(writer_port), Client(reader_port)
    try:
        _, why = sample(writer, reader, 0, args.poll_ms / 1000, 120)
        if why:
            raise Failure(f"the untimed first row: {why}; see {writer_log} and {reader_log}")
        rng = random.Random(args.seed)
        delays_ms, failures = [], []
        for i in range(1, args.samples + 1):
            time.sleep(rng.uniform(0, 1.5))
            processes.check()
            delay, why = sample(writer, reader, i, args.poll_ms / 1000, args.deadline_s)
            if why:
                failures.append(f"sample {i}: {why}")
                print(f"sample {i:3}: FAILED: {why}", file=sys.stderr)
            else:
                delays_ms.append(delay * 1000)
                if args.verbose:
                    print(f"sample {i:3}: {delay * 1000:7.1f} ms", file=sys.stderr)
    finally:
        writer.close()
        reader.close()

    save = f"{args.save_timeout_s} s" if args.save_timeout_s is not None else "default (1 s)"
    print(f"layer            {args.layer}" + (" (SeaweedFS S3 on loopback)" if args.layer == "s3"
                                              else " (a directory on local disk)"))
    print("catalog          Redis on loopback (appendfsync always)")
    print(f"save timeout     {save}; catalog poll: default (100 ms)")
    print(f"samples          {len(delays_ms)} of {args.samples} seen; reader polled every {args.poll_ms} ms; "
          f"deadline {args.deadline_s} s; seed {args.seed}")
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(args.binary)))
    print(f"binary           {args.binary} (built {built})")
    print(f"load average     {os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} CPUs)")
    if delays_ms:
        median, p90, worst = percentiles(delays_ms)
        print(f"204 -> visible   median {median:7.1f} ms  p90 {p90:7.1f} ms  max {worst:7.1f} ms")
    for failure in failures:
        print(f"failed           {failure}")
    return not failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", choices=["s3", "local"], default="s3",
                        help="the global layer: SeaweedFS's S3 (default) or a local directory")
    parser.add_argument("--samples", type=int, default=40, help="timed rows (default 40)")
    parser.add_argument("--save-timeout-s", type=float, default=None,
                        help="passed to both processes (default: not passed, the server's 1 s)")
    parser.add_argument("--binary", default=os.path.join(TARGET_DIR, "quick-release", "hourglass"),
                        help="the hourglass binary (default %(default)s)")
    parser.add_argument("--weed", default=os.path.join(TARGET_DIR, "python-venv", "bin", "weed"),
                        help="SeaweedFS's weed binary, for --layer s3 (default %(default)s)")
    parser.add_argument("--deadline-s", type=float, default=30, help="per-sample deadline (default 30)")
    parser.add_argument("--poll-ms", type=float, default=10, help="reader poll interval (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pauses (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory even after a clean run")
    parser.add_argument("--verbose", "-v", action="store_true", help="print each sample's delay on stderr")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    for path in [args.binary, "/usr/bin/redis-server"] + ([args.weed] if args.layer == "s3" else []):
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is not an executable file")

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    tmp = tempfile.mkdtemp(prefix="hourglass-freshness-")
    processes = Processes()
    ok = False
    status = 2
    try:
        ok = run(args, tmp, processes)
        status = 0 if ok else 1
    except Failure as failure:
        print(f"freshness: {failure}", file=sys.stderr)
    except KeyboardInterrupt:
        print("freshness: interrupted", file=sys.stderr)
        status = 130
    finally:
        # A second Ctrl-C must not leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        ok = processes.stop_all() and ok
        if ok and not args.keep:
            shutil.rmtree(tmp)
        else:
            print(f"freshness: logs and data kept in {tmp}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
