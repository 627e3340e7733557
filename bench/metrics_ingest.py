#!/usr/bin/env python3
"""Side-by-side metrics ingestion benchmark: miru vs VictoriaMetrics vs Prometheus.

One command (see docs/benchmarks.md): installs the peers from Debian if missing,
builds miru in release mode, then for each system in turn (order rotated per
round) starts it on 127.0.0.1 in its own temp dir, feeds it the same
deterministic workload with `miru loadgen metrics` (remote write 1.0), and
measures, from /proc, server CPU seconds per million samples, samples/s
accepted, RSS per active series; then runs a fixed dashboard + alert PromQL
suite (instant and range, several repetitions: latency median and p90, and
each result compared with Prometheus'); then flushes/compacts the way each
system persists data and measures bytes per sample at rest. Writes the tables
to docs/benchmarks.md (sections between the BEGIN/END markers).
Loopback only; every run is bounded by --max-duration.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRU = os.path.join(ROOT, "target", "release", "miru")
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK  # utime + stime


def rss_bytes(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def du(path):
    total = 0
    for dp, _, files in os.walk(path):
        for fn in files:
            try:
                total += os.lstat(os.path.join(dp, fn)).st_size
            except FileNotFoundError:
                pass
    return total


def http(method, url, timeout=600):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, proc, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            http("GET", url, timeout=2); return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def wait_idle(pid, max_wait=180.0, window=2.0, busy=0.05):
    """Waits until the process uses under `busy` of a core over `window`
    seconds (its background flushes and merges done), at most `max_wait`
    seconds; returns the seconds waited. Every system gets the same rule, so
    queries measure a settled store, not one still merging what it was sent."""
    t0 = time.time()
    while time.time() - t0 < max_wait:
        c0 = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - c0) / window < busy:
            break
    return time.time() - t0


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:
        return f"unknown ({e})"


class Peer:
    name = ""
    def __init__(self, tmp):
        self.tmp = tmp; self.port = free_port(); self.proc = None
        self.log = open(os.path.join(tmp, "server.log"), "w")
    def start(self):
        self.proc = subprocess.Popen(self.cmd(), stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp)
        wait_http(self.ready_url(), self.proc)
    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(30)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()


class Miru(Peer):
    name = "miru"
    def cmd(self):
        return [MIRU, "--data-dir", os.path.join(self.tmp, "data"), "--listen", f"127.0.0.1:{self.port}",
                "--grpc-listen", f"127.0.0.1:{free_port()}", "--log.level", "warn"]
    def ready_url(self): return f"http://127.0.0.1:{self.port}/ready"
    def write_url(self): return f"http://127.0.0.1:{self.port}/api/v1/push"
    def series_url(self): return f"http://127.0.0.1:{self.port}/api/v1/series"
    def persist(self):
        http("POST", f"http://127.0.0.1:{self.port}/ingester/flush")
        http("POST", f"http://127.0.0.1:{self.port}/miru/api/v1/admin/compact?full=true")
        time.sleep(35)  # replaced parts are deleted after a 30 s grace period
        return du(os.path.join(self.tmp, "data", "objects")), "parts on the object store after flush + full compaction (`POST /miru/api/v1/admin/compact?full=true`, the counterpart of VictoriaMetrics force_merge) and the 30 s grace before replaced parts are deleted; WAL trimmed"
    def version(self): return version([MIRU, "--version"])


class VictoriaMetrics(Peer):
    name = "VictoriaMetrics"
    def cmd(self):
        return ["victoria-metrics", f"-storageDataPath={os.path.join(self.tmp, 'vm')}", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y", "-loggerLevel=ERROR", "-search.disableCache",
                "-search.maxSeries=100000000", "-search.maxUniqueTimeseries=100000000"]
    def ready_url(self): return f"http://127.0.0.1:{self.port}/health"
    def write_url(self): return f"http://127.0.0.1:{self.port}/api/v1/write"
    def series_url(self): return f"http://127.0.0.1:{self.port}/api/v1/series"
    def persist(self):
        http("GET", f"http://127.0.0.1:{self.port}/internal/force_flush")
        month = datetime.datetime.utcnow().strftime("%Y_%m")
        http("GET", f"http://127.0.0.1:{self.port}/internal/force_merge?partition_prefix={month}")
        time.sleep(5)  # force_merge returns before the merge ends on 1.79
        prev = -1
        for _ in range(60):
            cur = du(os.path.join(self.tmp, "vm"))
            if cur == prev: break
            prev = cur; time.sleep(2)
        return du(os.path.join(self.tmp, "vm")), "whole -storageDataPath (data + indexdb) after force_flush + force_merge"
    def version(self):
        # The Debian build prints nothing for -version; take the package's.
        return "victoria-metrics " + version(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"])


class Prometheus(Peer):
    name = "Prometheus"
    def cmd(self):
        cfg = os.path.join(self.tmp, "prometheus.yml")
        with open(cfg, "w") as f: f.write("global: {}\n")
        return ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(self.tmp, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver", "--web.enable-admin-api",
                "--storage.tsdb.retention.time=100y", "--log.level=error"]
    def ready_url(self): return f"http://127.0.0.1:{self.port}/-/ready"
    def write_url(self): return f"http://127.0.0.1:{self.port}/api/v1/write"
    def series_url(self): return f"http://127.0.0.1:{self.port}/api/v1/series"
    def persist(self):
        _, body = http("POST", f"http://127.0.0.1:{self.port}/api/v1/admin/tsdb/snapshot")
        snap = json.loads(body)["data"]["name"]
        return du(os.path.join(self.tmp, "tsdb", "snapshots", snap)), "TSDB snapshot (head written as a block), WAL excluded"
    def version(self): return version(["prometheus", "--version"])


# Dashboard and alert queries over the loadgen workload (node_exporter,
# kube-state-metrics and HTTP-service shapes).
QUERY_SUITE = [
    'sum by (mode) (rate(node_cpu_seconds_total[5m]))',
    '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
    'sum by (job) (rate(http_requests_total[5m]))',
    'sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))',
    'histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))',
    'topk(10, sum by (instance) (rate(http_requests_total[5m])))',
    'sum by (namespace) (increase(kube_pod_container_status_restarts_total[1h]))',
    'count by (phase) (kube_pod_status_phase == 1)',
    '1 - node_filesystem_avail_bytes / node_filesystem_size_bytes > 0.8',
    'predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600) < 0',
    'absent(up{job="node"})',
    'max_over_time(sum by (job) (rate(http_requests_total[1m]))[30m:1m])',
]


def base_url(peer):
    return f"http://127.0.0.1:{peer.port}"


def query_suite(peer, end_s, reps):
    """Runs each query instant (at end_s) and range (last hour, step 60s) `reps`
    times; returns {(kind, query): (latencies_s, normalised_result)}."""
    out = {}
    for q in QUERY_SUITE:
        for kind, path, params in [
            ("instant", "/api/v1/query", {"query": q, "time": end_s}),
            ("range", "/api/v1/query_range", {"query": q, "start": end_s - 3600, "end": end_s, "step": 60}),
        ]:
            lat, result = [], None
            for _ in range(reps):
                data = urllib.parse.urlencode(params).encode()
                req = urllib.request.Request(f"{base_url(peer)}{path}", data=data, method="POST",
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        body = json.loads(r.read())
                except urllib.error.HTTPError as e:
                    body = {"status": "error", "error": e.read().decode(errors="replace")[:300]}
                lat.append(time.perf_counter() - t)
                result = normalise(body)
            out[(kind, q)] = (lat, result)
    return out


def normalise(body):
    if body.get("status") != "success":
        return ("error", body.get("error", ""))
    data = body["data"]
    if data["resultType"] == "scalar":
        return ("scalar", [((), [(data["result"][0], float(data["result"][1]))])])
    series = []
    for s in data["result"]:
        pts = s.get("values") or [s["value"]]
        series.append((tuple(sorted(s["metric"].items())), [(p[0], float(p[1])) for p in pts]))
    series.sort()
    return (data["resultType"], series)


def same_result(a, b):
    return first_difference(a, b) is None


def first_difference(a, b):
    """Where result a first differs from b, in words (for the report); None
    when they are equal (values within a relative 1e-9, NaN equal to NaN)."""
    if a[0] != b[0] or a[0] == "error":
        return f"{a[0]} vs {b[0]}"
    if len(a[1]) != len(b[1]):
        return f"{len(a[1])} vs {len(b[1])} series"
    for (la, pa), (lb, pb) in zip(a[1], b[1]):
        if la != lb:
            return f"series {dict(la)} vs {dict(lb)}"
        if len(pa) != len(pb):
            return f"{dict(la)}: {len(pa)} vs {len(pb)} points"
        for i, ((ta, va), (tb, vb)) in enumerate(zip(pa, pb)):
            if ta != tb:
                return f"{dict(la)}: point {i} at {ta} vs {tb}"
            if va != vb and not (va != va and vb != vb) and abs(va - vb) > 1e-9 * max(abs(va), abs(vb), 1e-9):
                return f"{dict(la)}: point {i} of {len(pa)} (t={ta}) {va!r} vs {vb!r}"
    return None


def series_count(peer):
    """Series visible through the series API over the last 3 hours (-1 if the query fails)."""
    now = time.time()
    q = urllib.parse.urlencode({"match[]": '{__name__=~".+"}', "start": now - 3 * 3600, "end": now + 600})
    try:
        _, body = http("GET", f"{peer.series_url()}?{q}")
        return len(json.loads(body)["data"])
    except Exception as e:
        print(f"{peer.name}: series query failed: {e}", file=sys.stderr)
        return -1


def span_seconds(span):
    """Seconds in a duration such as 2h, 90m or 30s."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(float(span[:-1]) * units[span[-1]])


def run_one(cls, args):
    tmp = tempfile.mkdtemp(prefix=f"bench-{cls.name}-")
    p = cls(tmp)
    try:
        p.start()
        time.sleep(1)
        cpu0 = cpu_seconds(p.proc.pid)
        lg = subprocess.run([MIRU, "loadgen", "metrics", "--url", p.write_url(), "--series", str(args.series),
                             "--span", args.span, "--start", str(args.start_s), "--interval", "15s",
                             "--batch", str(args.batch), "--concurrency", str(args.concurrency), "--seed", "42",
                             "--max-duration", args.max_duration, "--json"], capture_output=True, text=True)
        if lg.returncode != 0:
            raise RuntimeError(f"loadgen failed: {lg.stderr[-2000:]}")
        summary = json.loads(lg.stdout.strip().splitlines()[-1])
        cpu1 = cpu_seconds(p.proc.pid)
        peak = rss_bytes(p.proc.pid, "VmHWM")
        # Steady RSS: at least 10 s after the load and once the server is
        # idle (same rule as for the queries), so that a merge or a cut
        # still running at 10 s does not decide the figure.
        time.sleep(10)
        settle_s = wait_idle(p.proc.pid)
        steady = rss_bytes(p.proc.pid)
        n = series_count(p)
        # Every system holds the same samples (same seed, same absolute
        # start), so the same query window gives comparable answers.
        end_s = (args.start_s + span_seconds(args.span)) // 60 * 60
        queries = query_suite(p, end_s, args.query_reps) if args.query_reps > 0 else {}
        size, method = p.persist()
        acc = summary["accepted_samples"]
        return {
            "system": p.name, "version": p.version(), "accepted": acc, "sent": summary["sent_samples"],
            "errors": summary["errors"], "elapsed_s": summary["elapsed_s"], "samples_per_s": summary["samples_per_s"],
            "cpu_s_per_M": (cpu1 - cpu0) / (acc / 1e6) if acc else float("nan"),
            "peak_rss": peak, "steady_rss": steady, "rss_per_series": steady / args.series,
            "series_seen": n, "bytes_at_rest": size, "bytes_per_sample": size / acc if acc else float("nan"),
            "persist_method": method, "queries": queries, "settle_s": settle_s,
        }
    finally:
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_peers():
    missing = [pkg for pkg, exe in [("prometheus", "prometheus"), ("victoria-metrics", "victoria-metrics")] if not shutil.which(exe)]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for svc in ["prometheus", "victoria-metrics"]:  # Debian starts them as services; stop to free CPU
        subprocess.run(["systemctl", "stop", svc], capture_output=True)
        subprocess.run(["pkill", "-x", svc], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--span", default="2h")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-duration", default="30m")
    ap.add_argument("--systems", default="miru,VictoriaMetrics,Prometheus")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--query-reps", type=int, default=5, help="repetitions of each suite query (0 skips the query phase)")
    args = ap.parse_args()
    # One absolute start for every run: the window ends a minute before the
    # first run starts, so no system ever receives samples from its future.
    # 7 s off the minute grid, so no sample sits exactly on the start of a
    # query window: there Prometheus 2.x (closed windows) and 3.x
    # (left-open, which miru follows) differ by design.
    args.start_s = int(time.time()) // 60 * 60 - 60 - span_seconds(args.span) + 7
    ensure_peers()
    subprocess.run(["cargo", "build", "--release", "-p", "miru"], cwd=ROOT, check=True)
    classes = [c for c in (Miru, VictoriaMetrics, Prometheus) if c.name in args.systems.split(",")]
    results = {c.name: [] for c in classes}
    for r in range(args.rounds):
        order = classes[r % len(classes):] + classes[:r % len(classes)]
        for c in order:
            print(f"round {r + 1}: {c.name} ...", file=sys.stderr, flush=True)
            res = run_one(c, args)
            print(json.dumps({k: v for k, v in res.items() if k != "queries"}), file=sys.stderr, flush=True)
            results[c.name].append(res)
    table = render(results, args)
    print(table)
    qtable = render_queries(results, args)
    if qtable:
        print(qtable)
    if not args.no_write:
        write_section(args.out, table)
        if qtable:
            write_section(args.out, qtable, "metrics-query")


def med(rs, k):
    return statistics.median(r[k] for r in rs)


def render(results, args):
    load = os.getloadavg()
    cmd = "python3 bench/metrics_ingest.py " + " ".join(sys.argv[1:])
    lines = [
        f"Run {datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')}, `{cmd}`.",
        f"Machine: {os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        f"Workload: `miru loadgen metrics --series {args.series} --span {args.span} --interval 15s --seed 42` "
        f"(node_exporter, kube-state-metrics and HTTP-service shapes), remote write 1.0, batches of {args.batch} samples, "
        f"{args.concurrency} requests in flight, each scrape sent whole before the next. Medians of {args.rounds} round(s), order rotated per round. "
        "Steady RSS is read at least 10 s after the load, once the server is idle (under 5 % of a core over 2 s).",
        "",
        "| system | version | samples accepted | samples/s | server CPU s per 1M samples | peak RSS | steady RSS per active series | bytes/sample at rest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        if not rs: continue
        lines.append(f"| {name} | {rs[0]['version']} | {int(med(rs, 'accepted')):,} | {med(rs, 'samples_per_s'):,.0f} | "
                     f"{med(rs, 'cpu_s_per_M'):.2f} | {med(rs, 'peak_rss') / 2**20:,.0f} MiB | {med(rs, 'rss_per_series'):,.0f} B | "
                     f"{med(rs, 'bytes_per_sample'):.3f} |")
    if "miru" in results and results["miru"]:
        m = results["miru"]
        lines += ["", "Ratios, miru ÷ peer (lower is better for CPU, RSS and bytes; higher for samples/s):", ""]
        for name, rs in results.items():
            if name == "miru" or not rs: continue
            lines.append(f"- vs {name}: samples/s ×{med(m, 'samples_per_s') / med(rs, 'samples_per_s'):.2f}, "
                         f"CPU/1M ×{med(m, 'cpu_s_per_M') / med(rs, 'cpu_s_per_M'):.2f}, "
                         f"RSS/series ×{med(m, 'rss_per_series') / med(rs, 'rss_per_series'):.2f}, "
                         f"bytes/sample ×{med(m, 'bytes_per_sample') / med(rs, 'bytes_per_sample'):.2f}")
    lines += ["", "How bytes at rest are measured:", ""]
    for name, rs in results.items():
        if rs: lines.append(f"- {name}: {rs[0]['persist_method']}; series visible afterwards: {rs[0]['series_seen']:,}; rejected requests: {rs[0]['errors'] or 'none'}")
    return "\n".join(lines)


def pooled(rounds, key):
    """Latencies of one (kind, query) over every round of a system."""
    return [x for r in rounds for x in r["queries"].get(key, ([], None))[0]]


def settled(results):
    """How long each system took to go idle before its queries, per round."""
    return "; ".join(f"{name} " + ", ".join(f"{r.get('settle_s', 0):.0f} s" for r in rs)
                     for name, rs in results.items() if rs)


def render_queries(results, args):
    """Latency per system over the suite (median and p90 of all runs of all
    queries, instant and range apart), and result equality with Prometheus."""
    if not any(rs and rs[0]["queries"] for rs in results.values()):
        return None
    cmd = "python3 bench/metrics_ingest.py " + " ".join(sys.argv[1:])
    lines = [
        f"Same run as above (`{cmd}`), after ingestion, once each server is idle (under 5 % of a core over 2 s: its "
        f"background flushes and merges done; waited {settled(results)}), before flushing: {len(QUERY_SUITE)} dashboard and alert queries "
        f"(listed in `bench/metrics_ingest.py`, `QUERY_SUITE`), each as an instant query at the end of the data and as a "
        f"range query over the last hour at a 60 s step, {args.query_reps} times in a row, one at a time, over HTTP POST, in each of the {args.rounds} round(s) (latencies of all rounds pooled).",
        "",
        "Every system holds the same samples (same seed, same absolute start time), so answers are compared "
        "point by point with Prometheus' (relative tolerance 1e-9). Samples sit 7 s off the minute grid so that "
        "none falls exactly on a window's start, where Prometheus 2.x (closed windows) and 3.x (left-open, "
        "followed by miru) differ by design. VictoriaMetrics computes `rate`/`increase` without Prometheus' "
        "extrapolation, so it is expected to differ there.",
        "",
        "| system | instant median | instant p90 | range median | range p90 | suite total (median per query, summed) | results equal to Prometheus |",
        "|---|---|---|---|---|---|---|",
    ]
    prom = results.get("Prometheus") or []
    per_system = {}
    for name, rs in results.items():
        if not rs or not rs[0]["queries"]: continue
        # Latencies of every round pooled; results from the first round.
        qs = {key: (pooled(rs, key), res) for key, (_, res) in rs[0]["queries"].items()}
        inst = sorted(x for (k, _), (lat, _) in qs.items() if k == "instant" for x in lat)
        rng = sorted(x for (k, _), (lat, _) in qs.items() if k == "range" for x in lat)
        total = sum(statistics.median(lat) for lat, _ in qs.values())
        pct = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
        if prom and prom[0]["queries"]:
            pq = prom[0]["queries"]
            equal = sum(1 for key, (_, res) in qs.items() if key in pq and same_result(res, pq[key][1]))
            eq = f"{equal}/{len(qs)}"
        else:
            eq = "n/a"
        errors = [f"{k} `{q}`: {res[1][:120]}" for (k, q), (_, res) in qs.items() if res[0] == "error"]
        per_system[name] = (statistics.median(inst), statistics.median(rng), total, errors)
        lines.append(f"| {name} | {statistics.median(inst) * 1000:.1f} ms | {pct(inst, 0.9) * 1000:.1f} ms | "
                     f"{statistics.median(rng) * 1000:.1f} ms | {pct(rng, 0.9) * 1000:.1f} ms | {total * 1000:.0f} ms | {eq} |")
    if "miru" in per_system:
        m = per_system["miru"]
        lines += ["", "Ratios, miru ÷ peer (lower is better):", ""]
        for name, v in per_system.items():
            if name == "miru": continue
            lines.append(f"- vs {name}: instant median ×{m[0] / v[0]:.2f}, range median ×{m[1] / v[1]:.2f}, suite total ×{m[2] / v[2]:.2f}")
    for name, v in per_system.items():
        for e in v[3]:
            lines.append(f"- {name} error: {e}")
    if prom and "miru" in results and results["miru"] and prom[0]["queries"]:
        pq = prom[0]["queries"]
        diffs = [f"{k} `{q}` (first difference, miru vs Prometheus: {first_difference(res, pq[(k, q)][1])})"
                 for (k, q), (_, res) in results["miru"][0]["queries"].items()
                 if (k, q) in pq and not same_result(res, pq[(k, q)][1])]
        if diffs:
            lines += ["", "miru results that differ from Prometheus': " + "; ".join(diffs)]
    names = [n for n in per_system]
    lines += ["", "Per query, median of the runs (ms), " + " / ".join(names) + ":", "",
              "| query | instant | range |", "|---|---|---|"]
    for q in QUERY_SUITE:
        cells = []
        for kind in ("instant", "range"):
            ms = [pooled(results[n], (kind, q)) for n in names]
            cells.append(" / ".join(f"{statistics.median(m) * 1000:.1f}" if m else "–" for m in ms))
        cell = q.replace("|", "\\|")
        lines.append(f"| `{cell}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def write_section(path, table, name="metrics-ingest"):
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f: f.write(text)


if __name__ == "__main__":
    import urllib.parse
    main()
