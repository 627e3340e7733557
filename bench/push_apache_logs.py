# Pushes ../shared/data's Apache access logs as three streams (plain, JSON, logfmt),
# JSON pushes of 1,000 lines, timestamps 1 h ago + 100 ms apart. usage: bench/push_apache_logs.py http://127.0.0.1:9009/loki/api/v1/push
import json, os, sys, time, urllib.request
base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "logs", "apache-access-semicomplete") + "/"
url = sys.argv[1]
t0 = int((time.time() - 3600) * 1e9)
raw = 0
for fmt, name in [("plain", "apache_logs"), ("json", "apache_logs.jsonl"), ("logfmt", "apache_logs.logfmt")]:
    lines = [l.rstrip("\n") for l in open(base + name, encoding="utf-8", errors="replace") if l.strip()]
    raw += sum(len(l.encode()) for l in lines)
    for i in range(0, len(lines), 1000):
        values = [[str(t0 + (i + j) * 100_000_000), l] for j, l in enumerate(lines[i:i + 1000])]
        body = json.dumps({"streams": [{"stream": {"job": "apache", "format": fmt}, "values": values}]}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json", "X-Scope-OrgID": "apache"})
        assert urllib.request.urlopen(req).status == 204
print("raw line bytes", raw)
