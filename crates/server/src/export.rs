//! `miru export logs`: copies a tenant's log entries out of the object
//! store as JSON lines or Parquet, reading the parts directly (no server
//! needed, nothing materialised: one part at a time, batch by batch).
//!
//! Restartable at part granularity: after each part the output is synced
//! and a progress file records the parts done (and, for JSON lines, the
//! output's length then). Running the same command again continues from
//! there; `--restart` starts over. Output formats:
//! `docs/formats/logs-export-v1.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use miru_logql::syntax::ast::Expr;
use miru_model::{Matcher, TenantId};
use miru_storage::PartEntry;
use miru_storage::logs::{ExportParquetWriter, ExportRow, LogArchive};
use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per entry, in one file (`-`: standard output).
    Jsonl,
    /// Parquet files with the logs part schema, one per source part, in a
    /// directory laid out as `date=YYYY-MM-DD/…`.
    Parquet,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportLogsArgs {
    /// Tenant whose logs to export (`anonymous` when multi-tenancy is off).
    #[arg(long, default_value = "anonymous")]
    pub tenant: String,
    /// Start of the range, inclusive: RFC 3339, Unix seconds or
    /// nanoseconds, `now` or `now-<duration>` (e.g. `now-24h`).
    #[arg(long)]
    pub from: String,
    /// End of the range, exclusive (same forms as --from).
    #[arg(long, default_value = "now")]
    pub to: String,
    /// Stream selector, e.g. `{app="api", env=~"prod|staging"}`; every
    /// stream when absent.
    #[arg(long)]
    pub selector: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// A file for jsonl (`-`: standard output), a directory for parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// Discard an unfinished export to the same --out (or a finished one)
    /// and start over.
    #[arg(long)]
    pub restart: bool,
    /// Ask this miru server (e.g. http://127.0.0.1:9009) to flush its
    /// in-memory head first, so that entries newer than its last flush are
    /// in parts too.
    #[arg(long)]
    pub flush: Option<String>,
    /// zstd level of Parquet output.
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
}

/// What the progress file says: the arguments (a rerun must match them)
/// and how far the export got.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Progress {
    version: u32,
    tenant: String,
    selector: Option<String>,
    format: ExportFormat,
    from: String,
    to: String,
    /// `--from`/`--to` as resolved by the first run (`now` moves).
    from_ns: i64,
    to_ns: i64,
    /// Keys of the parts done, in order.
    done: Vec<String>,
    /// Length of the JSON lines output after the last part done.
    out_bytes: u64,
    entries: u64,
}

/// `now`, `now-<duration>`, or a Loki time (RFC 3339, seconds, ns).
fn parse_time(s: &str, now_ns: i64) -> anyhow::Result<i64> {
    if s == "now" {
        return Ok(now_ns);
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d = crate::duration::parse_duration(ago).map_err(anyhow::Error::msg)?;
        return Ok(now_ns.saturating_sub(d.as_nanos().min(i64::MAX as u128) as i64));
    }
    crate::http::loki::parse_loki_time_ns(s).map_err(anyhow::Error::msg)
}

fn parse_selector(s: Option<&str>) -> anyhow::Result<Vec<Matcher>> {
    let Some(s) = s else { return Ok(Vec::new()) };
    match miru_logql::parse(s) {
        Ok(Expr::Log(l)) if l.stages.is_empty() => Ok(l.matchers),
        Ok(_) => {
            bail!("--selector {s:?}: only a stream selector such as {{app=\"api\"}} is allowed")
        }
        Err(e) => bail!("--selector {s:?}: {e}"),
    }
}

fn progress_path(args: &ExportLogsArgs) -> PathBuf {
    match args.format {
        ExportFormat::Jsonl => {
            let mut p = args.out.clone().into_os_string();
            p.push(".progress");
            p.into()
        }
        ExportFormat::Parquet => args.out.join(".miru-export.progress"),
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new
/// content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Where an export starts: a fresh progress, or the one a previous run
/// left when it was given the same arguments.
fn start_or_resume(args: &ExportLogsArgs, now_ns: i64) -> anyhow::Result<Progress> {
    let fresh = Progress {
        version: 1,
        tenant: args.tenant.clone(),
        selector: args.selector.clone(),
        format: args.format,
        from: args.from.clone(),
        to: args.to.clone(),
        from_ns: parse_time(&args.from, now_ns).context("--from")?,
        to_ns: parse_time(&args.to, now_ns).context("--to")?,
        done: Vec::new(),
        out_bytes: 0,
        entries: 0,
    };
    if fresh.to_ns <= fresh.from_ns {
        bail!("--to must be after --from");
    }
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout {
        if args.format == ExportFormat::Parquet {
            bail!("--format parquet writes a directory: give --out a path");
        }
        return Ok(fresh);
    }
    let progress_file = progress_path(args);
    let old = match fs::read(&progress_file) {
        Ok(b) => Some(serde_json::from_slice::<Progress>(&b).with_context(|| {
            format!(
                "{} is not a progress file of this miru; remove it or pass --restart",
                progress_file.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context(format!("reading {}", progress_file.display())),
    };
    if args.restart {
        match args.format {
            ExportFormat::Jsonl => remove_if_exists(&args.out)?,
            ExportFormat::Parquet => {
                if args.out.exists() {
                    fs::remove_dir_all(&args.out)
                        .with_context(|| format!("removing {}", args.out.display()))?;
                }
            }
        }
        remove_if_exists(&progress_file)?;
        return Ok(fresh);
    }
    match old {
        Some(old) => {
            let same = (&old.tenant, &old.selector, old.format, &old.from, &old.to)
                == (
                    &fresh.tenant,
                    &fresh.selector,
                    fresh.format,
                    &fresh.from,
                    &fresh.to,
                );
            if !same {
                bail!(
                    "{} belongs to an export with other arguments (tenant {:?}, selector {:?}, from {:?}, to {:?}); rerun it with those or pass --restart",
                    progress_file.display(),
                    old.tenant,
                    old.selector.as_deref().unwrap_or("(all streams)"),
                    old.from,
                    old.to
                );
            }
            Ok(old)
        }
        None if args.out.exists() => bail!(
            "{} already exists (a finished export?); pass --restart to overwrite it",
            args.out.display()
        ),
        None => Ok(fresh),
    }
}

fn remove_if_exists(p: &Path) -> anyhow::Result<()> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context(format!("removing {}", p.display())),
    }
}

/// One entry as a JSON line (`docs/formats/logs-export-v1.md`).
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    labels: Pairs<'a>,
    structured_metadata: Pairs<'a>,
    line: &'a str,
}

struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn write_json_line(w: &mut impl Write, r: &ExportRow<'_>) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *w,
        &JsonLine {
            timestamp: miru_model::civil::rfc3339_nanos(r.timestamp_ns),
            labels: Pairs(&r.labels),
            structured_metadata: Pairs(&r.structured_metadata),
            line: r.line,
        },
    )?;
    w.write_all(b"\n")
}

/// The Parquet output of one part: `date=YYYY-MM-DD/<part file>` under --out.
fn parquet_out(dir: &Path, part: &PartEntry) -> PathBuf {
    let key = part.name.key();
    let mut segs = key.rsplit('/');
    let file = segs.next().unwrap_or("part.parquet");
    let day = segs.next().unwrap_or("unknown-day");
    dir.join(format!("date={day}")).join(file)
}

/// Progress bar on a terminal, a line every few seconds otherwise.
struct Meter {
    started: Instant,
    last: Instant,
    tty: bool,
    total_parts: usize,
    total_bytes: u64,
}

impl Meter {
    fn show(&mut self, parts: usize, bytes: u64, entries: u64, force: bool) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if !force && self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let frac = bytes as f64 / self.total_bytes.max(1) as f64;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "{}  {parts}/{} parts  {:.1}/{:.1} MB of parts  {entries} entries  {:.0} entries/s",
            crate::loadgen::progress_bar(frac),
            self.total_parts,
            bytes as f64 / 1e6,
            self.total_bytes as f64 / 1e6,
            entries as f64 / secs,
        );
        if self.tty {
            eprint!("\r{line}  ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Runs `miru export logs`.
pub async fn run_export_logs(args: ExportLogsArgs, cfg: &Config) -> anyhow::Result<()> {
    let tenant = TenantId::new(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let matchers = parse_selector(args.selector.as_deref())?;
    if let Some(url) = &args.flush {
        flush_server(url).await?;
    }
    let now_ns = crate::http::loki::now_ns();
    let mut progress = start_or_resume(&args, now_ns)?;
    if let miru_storage::ObjectStoreConfig::Filesystem { path } = &cfg.storage.object_store {
        let dir = path.clone().unwrap_or_else(|| cfg.data_dir.join("objects"));
        if !dir.is_dir() {
            bail!(
                "no object store directory {} (is --data-dir or --config.file right?)",
                dir.display()
            );
        }
    }
    let store = miru_storage::build_object_store(&cfg.storage.object_store, &cfg.data_dir)
        .context("configuring the object store")?;
    let archive = LogArchive::new(store);
    let parts = archive
        .parts(&tenant, progress.from_ns, progress.to_ns)
        .await
        .context("listing the tenant's logs parts")?;
    let resumed = progress.done.len();
    let mut meter = Meter {
        started: Instant::now(),
        last: Instant::now() - Duration::from_secs(60),
        tty: std::io::stderr().is_terminal(),
        total_parts: parts.len(),
        total_bytes: parts.iter().map(|p| p.size).sum(),
    };
    let to_stdout = args.out.as_os_str() == "-";
    let progress_file = progress_path(&args);
    let mut jsonl: Option<BufWriter<Box<dyn WriteSync>>> = match args.format {
        ExportFormat::Jsonl if to_stdout => Some(BufWriter::new(Box::new(Stdout))),
        ExportFormat::Jsonl => {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&args.out)
                .with_context(|| format!("opening {}", args.out.display()))?;
            // Whatever a crash left after the last part done is dropped.
            f.set_len(progress.out_bytes)?;
            f.seek(SeekFrom::End(0))?;
            Some(BufWriter::with_capacity(1 << 20, Box::new(f)))
        }
        ExportFormat::Parquet => {
            fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            None
        }
    };
    let mut bytes_done = 0u64;
    let mut fetched = 0u64;
    let mut parts_done = 0;
    for part in &parts {
        let key = part.name.key();
        if progress.done.contains(&key) {
            bytes_done += part.size;
            parts_done += 1;
            continue;
        }
        let mut read = archive
            .read_part(part, &matchers, progress.from_ns, progress.to_ns)
            .await
            .with_context(|| format!("reading {key}"))?;
        match &mut jsonl {
            Some(w) => {
                while let Some(b) = read.batches.next().await {
                    let b = b.with_context(|| format!("reading {key}"))?;
                    for r in b.rows() {
                        write_json_line(w, &r).context("writing the output")?;
                    }
                    progress.entries += b.num_rows() as u64;
                    meter.show(parts_done, bytes_done, progress.entries, false);
                }
                w.flush().context("writing the output")?;
                w.get_ref().sync().context("syncing the output")?;
                if !to_stdout {
                    progress.out_bytes = fs::metadata(&args.out)?.len();
                }
            }
            None => {
                let out = parquet_out(&args.out, part);
                let mut writer = None;
                while let Some(b) = read.batches.next().await {
                    let b = b.with_context(|| format!("reading {key}"))?;
                    if writer.is_none() {
                        writer = Some(new_parquet(&out, &args, &progress)?);
                    }
                    if let Some(w) = &mut writer {
                        w.write(&b)?;
                    }
                    progress.entries += b.num_rows() as u64;
                    meter.show(parts_done, bytes_done, progress.entries, false);
                }
                if let Some(w) = writer {
                    finish_parquet(w, &out)?;
                }
            }
        }
        fetched += read.bytes_fetched.load(Ordering::Relaxed);
        bytes_done += part.size;
        parts_done += 1;
        progress.done.push(key);
        if !to_stdout {
            write_atomically(&progress_file, &serde_json::to_vec(&progress)?)
                .with_context(|| format!("writing {}", progress_file.display()))?;
        }
        meter.show(parts_done, bytes_done, progress.entries, false);
    }
    meter.show(parts_done, bytes_done, progress.entries, true);
    if meter.tty {
        eprintln!();
    }
    if !to_stdout {
        remove_if_exists(&progress_file)?;
    }
    eprintln!(
        "exported {} entries from {} of {} parts ({} resumed; {:.1} MB fetched of {:.1} MB) to {} in {:.1}s",
        progress.entries,
        parts.len() - resumed,
        parts.len(),
        resumed,
        fetched as f64 / 1e6,
        meter.total_bytes as f64 / 1e6,
        args.out.display(),
        meter.started.elapsed().as_secs_f64()
    );
    let flushed_before = now_ns.saturating_sub(cfg.storage.flush_interval.as_nanos() as i64);
    if args.flush.is_none() && progress.to_ns > flushed_before {
        eprintln!(
            "note: entries newer than a running server's last flush (up to storage.flush-interval = {:?} ago) are still in its head, not in parts; pass --flush http://HOST:PORT to flush them first",
            cfg.storage.flush_interval
        );
    }
    Ok(())
}

/// An output that can be made durable.
trait WriteSync: Write {
    fn sync(&self) -> std::io::Result<()>;
}

impl WriteSync for File {
    fn sync(&self) -> std::io::Result<()> {
        self.sync_data()
    }
}

struct Stdout;

impl Write for Stdout {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl WriteSync for Stdout {
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tmp_of(out: &Path) -> PathBuf {
    let mut t = out.as_os_str().to_owned();
    t.push(".tmp");
    t.into()
}

fn new_parquet(
    out: &Path,
    args: &ExportLogsArgs,
    p: &Progress,
) -> anyhow::Result<ExportParquetWriter<BufWriter<File>>> {
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = tmp_of(out);
    let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let about = [
        ("tenant", p.tenant.clone()),
        ("selector", p.selector.clone().unwrap_or_default()),
        ("from_ns", p.from_ns.to_string()),
        ("to_ns", p.to_ns.to_string()),
    ];
    Ok(ExportParquetWriter::new(
        BufWriter::with_capacity(1 << 20, f),
        args.zstd_level,
        &about,
    )?)
}

/// Footer, sync, then the final name: a file under its final name is whole.
fn finish_parquet(w: ExportParquetWriter<BufWriter<File>>, out: &Path) -> anyhow::Result<()> {
    let f = w
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the output")?;
    f.sync_all().context("syncing the output")?;
    fs::rename(tmp_of(out), out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}

async fn flush_server(url: &str) -> anyhow::Result<()> {
    let url = format!("{}/ingester/flush", url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("POST {url}: {status}: {body}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_accept_now_relative_and_loki_forms() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("now-1h", now).unwrap(), now - 3_600_000_000_000);
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn selector_must_be_a_bare_stream_selector() {
        assert!(parse_selector(None).unwrap().is_empty());
        assert_eq!(parse_selector(Some(r#"{app="api"}"#)).unwrap().len(), 1);
        let e = parse_selector(Some(r#"{app="api"} |= "x""#)).unwrap_err();
        assert!(e.to_string().contains("only a stream selector"), "{e}");
        assert!(parse_selector(Some("{app=")).is_err());
    }

    #[test]
    fn parquet_output_is_partitioned_by_day() {
        let key = "t/logs/1970-01-01/L0_1_2_3_abc.parquet";
        let part = PartEntry {
            name: miru_storage::part::PartName::parse(key).unwrap(),
            size: 1,
        };
        assert_eq!(
            parquet_out(Path::new("/x"), &part),
            Path::new("/x/date=1970-01-01/L0_1_2_3_abc.parquet")
        );
    }
}
