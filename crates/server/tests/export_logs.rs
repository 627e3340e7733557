//! `miru export logs` over parts a running server wrote: the selected
//! entries come out exactly once as JSON lines and as Parquet (read back by
//! DuckDB), an interrupted export continues where it stopped, and wrong
//! arguments get a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::external::duckdb_json;
use crate::harness::{Server, client};

const DAY_NS: i64 = 86_400_000_000_000;
const MIN_NS: i64 = 60_000_000_000;

/// One pushed entry: stream app label, timestamp, line, user_id metadata.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    ts: i64,
    app: String,
    line: String,
    user: Option<String>,
}

fn push(s: &Server, tenant: &str, entries: &[Entry]) {
    let streams: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = vec![json!(e.ts.to_string()), json!(e.line)];
            if let Some(u) = &e.user {
                v.push(json!({ "user_id": u }));
            }
            json!({"stream": {"app": e.app, "env": "prod"}, "values": [v]})
        })
        .collect();
    let r = client()
        .post(s.url("/loki/api/v1/push"))
        .header("X-Scope-OrgID", tenant)
        .header("Content-Type", "application/json")
        .body(json!({ "streams": streams }).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
}

fn flush(s: &Server) {
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
}

fn entries(app: &str, from_ns: i64, n: i64, tag: &str) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            ts: from_ns + i * MIN_NS,
            app: app.into(),
            line: format!("level=info msg=\"{tag} {i}\" app={app} \"quoted\\\" é\""),
            user: (i % 3 == 0).then(|| format!("u{i}")),
        })
        .collect()
}

fn export(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_miru"))
        .arg("export")
        .arg("logs")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("running miru export logs")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "export failed: {err}");
    err
}

fn fails_with(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "export should fail ({what}): {err}");
    assert!(err.contains(what), "expected {what:?} in: {err}");
}

/// The JSON lines of an export, as entries (checking every field's shape).
fn read_jsonl(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["labels"]["env"], "prod", "{l}");
            let ts = v["timestamp"].as_str().unwrap();
            assert!(ts.ends_with('Z') && ts.len() == 30, "RFC 3339 ns: {ts}");
            let md = v["structured_metadata"].as_object().unwrap();
            Entry {
                ts: rfc3339_ns(ts),
                app: v["labels"]["app"].as_str().unwrap().into(),
                line: v["line"].as_str().unwrap().into(),
                user: md.get("user_id").map(|u| u.as_str().unwrap().to_string()),
            }
        })
        .collect()
}

/// Parses `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (days from civil, H. Hinnant).
fn rfc3339_ns(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1_000_000_000 + n(20..29)
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort();
    v
}

/// Keys of the tenant's logs parts in the order export reads them.
fn part_keys(objects: &Path, tenant: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let logs = objects.join(tenant).join("logs");
    for day in std::fs::read_dir(&logs).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            let name = f.file_name().into_string().unwrap();
            if name.ends_with(".parquet") {
                let day = day.file_name().into_string().unwrap();
                let id = name.splitn(6, '_').nth(5).unwrap().to_string();
                keys.push((day.clone(), id, format!("{tenant}/logs/{day}/{name}")));
            }
        }
    }
    keys.sort();
    keys.into_iter().map(|k| k.2).collect()
}

#[test]
fn export_logs_jsonl_and_parquet_restartable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let data = dir.path().join("data");
    let now = crate::harness::now_ms() * 1_000_000;
    // Yesterday's midnight (UTC): entries on both sides land in two parts.
    let midnight = (now - DAY_NS).div_euclid(DAY_NS) * DAY_NS;
    let day1 = entries("api", midnight - 30 * MIN_NS, 30, "d1");
    let day2 = entries("api", midnight, 40, "d2");
    let db = entries("db", midnight, 10, "db");
    let later = entries("api", midnight + 60 * MIN_NS, 20, "later");
    push(&s, "team-a", &day1);
    push(&s, "team-a", &day2);
    push(&s, "team-a", &db);
    push(&s, "other", &entries("api", midnight, 5, "other"));
    flush(&s);
    push(&s, "team-a", &later);
    flush(&s);
    let keys = part_keys(&data.join("objects"), "team-a");
    assert_eq!(keys.len(), 3, "{keys:?}");

    // The range starts inside day 1 and ends inside `later`.
    let from = day1[10].ts;
    let to = later[15].ts;
    let want: Vec<Entry> = day1[10..]
        .iter()
        .chain(&day2)
        .chain(&later[..15])
        .cloned()
        .collect();
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let out = dir.path().join("api.jsonl");
    let out_s = out.to_str().unwrap();
    let base = [
        "--tenant",
        "team-a",
        "--selector",
        r#"{app="api"}"#,
        "--from",
        &from_s,
        "--to",
        &to_s,
    ];
    let jsonl_args: Vec<&str> = base.iter().copied().chain(["--out", out_s]).collect();
    let err = ok(&export(&data, &jsonl_args));
    assert!(
        err.contains("exported 75 entries from 3 of 3 parts"),
        "{err}"
    );
    let full = std::fs::read(&out).unwrap();
    let got = read_jsonl(&out);
    assert_eq!(got.len(), want.len());
    assert_eq!(sorted(got), sorted(want.clone()));
    assert!(!progress_file(&out).exists());

    // A finished export is not overwritten by accident.
    fails_with(&export(&data, &jsonl_args), "already exists");

    // An export killed after its first part: the output holds the first
    // part's lines and a torn one; the progress file says part 1 is done.
    let first_part_lines = 20; // day1[10..]
    let cut: usize = full
        .split_inclusive(|&b| b == b'\n')
        .take(first_part_lines)
        .map(<[u8]>::len)
        .sum();
    let mut torn = full[..cut].to_vec();
    torn.extend_from_slice(b"{\"timestamp\":\"2026-");
    std::fs::write(&out, &torn).unwrap();
    let progress = json!({
        "version": 1, "tenant": "team-a", "selector": r#"{app="api"}"#,
        "format": "jsonl", "from": from_s, "to": to_s, "from_ns": from, "to_ns": to,
        "done": [keys[0]], "out_bytes": cut, "entries": first_part_lines,
    });
    std::fs::write(progress_file(&out), progress.to_string()).unwrap();
    // Other arguments do not continue somebody else's export ...
    let other: Vec<&str> = [
        "--tenant", "team-a", "--from", &from_s, "--to", &to_s, "--out", out_s,
    ]
    .to_vec();
    fails_with(&export(&data, &other), "other arguments");
    // ... the same ones do, without the torn line and without repeating
    // part 1.
    let err = ok(&export(&data, &jsonl_args));
    assert!(
        err.contains("exported 75 entries from 2 of 3 parts (1 resumed"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), full);
    assert!(!progress_file(&out).exists());
    // --restart starts over.
    let restart: Vec<&str> = jsonl_args.iter().copied().chain(["--restart"]).collect();
    ok(&export(&data, &restart));
    assert_eq!(sorted(read_jsonl(&out)), sorted(want.clone()));

    // Tenants are apart; no selector means every stream.
    let other_out = dir.path().join("other.jsonl");
    let o = export(
        &data,
        &[
            "--tenant",
            "other",
            "--from",
            "now-7d",
            "--out",
            other_out.to_str().unwrap(),
        ],
    );
    ok(&o);
    let got = read_jsonl(&other_out);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|e| e.line.contains("other")));

    // Parquet: one file per source part under date=YYYY-MM-DD/, the part
    // schema, readable by DuckDB as is.
    let pq = dir.path().join("api-parquet");
    let pq_args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--format", "parquet", "--out", pq.to_str().unwrap()])
        .collect();
    ok(&export(&data, &pq_args));
    let files = parquet_files(&pq);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| {
        let day = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        day.starts_with("date=")
    }));
    read_back_with_duckdb(&pq, &want);

    // Entries still in the head: --flush asks the server to cut them first.
    let fresh = entries("api", midnight + 120 * MIN_NS, 3, "fresh");
    push(&s, "team-a", &fresh);
    let head_out = dir.path().join("head.jsonl");
    let url = s.url("");
    let head_args = [
        "--tenant",
        "team-a",
        "--selector",
        r#"{app="api"}"#,
        "--from",
        &(fresh[0].ts).to_string(),
        "--out",
        head_out.to_str().unwrap(),
    ];
    let err = ok(&export(&data, &head_args));
    assert!(err.contains("exported 0 entries"), "{err}");
    assert!(
        err.contains("--flush"),
        "the note says how to include the head: {err}"
    );
    let with_flush: Vec<&str> = head_args
        .iter()
        .copied()
        .chain(["--restart", "--flush", url.trim_end_matches('/')])
        .collect();
    ok(&export(&data, &with_flush));
    assert_eq!(sorted(read_jsonl(&head_out)), sorted(fresh));

    // Wrong arguments: a clear message, nothing written.
    let bad = dir.path().join("bad.jsonl");
    let bad_s = bad.to_str().unwrap();
    fails_with(
        &export(
            &data,
            &[
                "--from",
                "now-1h",
                "--selector",
                r#"{app="api"} |= "x""#,
                "--out",
                bad_s,
            ],
        ),
        "only a stream selector",
    );
    fails_with(
        &export(&data, &["--from", "now", "--to", "now-1h", "--out", bad_s]),
        "--to must be after --from",
    );
    fails_with(
        &export(&data, &["--from", "yesterday", "--out", bad_s]),
        "--from",
    );
    fails_with(
        &export(
            &dir.path().join("nope"),
            &["--from", "now-1h", "--out", bad_s],
        ),
        "no object store directory",
    );
    assert!(!bad.exists());
}

fn progress_file(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.progress", out.display()))
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        if d.path().is_dir() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn read_back_with_duckdb(dir: &Path, want: &[Entry]) {
    let script = r#"
import sys, duckdb, json
rows = duckdb.sql(f"""
  select epoch_ns(timestamp), labels['app'], line, structured_metadata['user_id']
  from read_parquet('{sys.argv[1]}/*/*.parquet')""").fetchall()
print(json.dumps(rows))
"#;
    let Some(rows) = duckdb_json(script, dir.to_str().unwrap()) else {
        return;
    };
    let got: Vec<Entry> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Entry {
            ts: r[0].as_i64().unwrap(),
            app: r[1].as_str().unwrap().into(),
            line: r[2].as_str().unwrap().into(),
            user: r[3].as_str().map(String::from),
        })
        .collect();
    assert_eq!(sorted(got), sorted(want.to_vec()));
}
