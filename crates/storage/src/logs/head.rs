//! The in-memory log head of one tenant: its streams, the entries appended
//! since the last cut (queryable at once) and the cut generations waiting
//! to be written as Parquet parts.

use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::civil::rfc3339_nanos as ts_text;
use miru_model::{Labels, LogEntry, LogStreamWrite, Matcher, TenantId, format_stream_labels};

use super::{LogAppendLimits, LogAppendResult, LogRejectReason};
use crate::head::HashMap;
use crate::part::PartName;
use crate::wal::RecordBuf;

/// Per-stream state kept while the stream is in the head.
#[derive(Debug)]
struct StreamState {
    labels: Labels,
    /// Newest timestamp accepted, the base of the out-of-order window.
    max_ts: i64,
    /// Line at `max_ts`, to accept an identical resend as a no-op.
    last_line: String,
    /// Wall-clock second of the last append, for idle-stream removal.
    last_append_s: u64,
    /// Entries appended since the last cut, in arrival order.
    active: Vec<LogEntry>,
}

/// The entries of one stream in a frozen generation, sorted by
/// (timestamp, line) with exact duplicates removed.
#[derive(Debug)]
pub(crate) struct FrozenStream {
    /// `format_stream_labels(labels)`; generations are sorted by it.
    pub(crate) key: String,
    pub(crate) labels: Labels,
    pub(crate) entries: Vec<LogEntry>,
}

/// Log entries cut from the head for one UTC day, waiting to become a
/// part. Immutable and shared with queries until written.
#[derive(Debug)]
pub(crate) struct FrozenLogs {
    /// The WAL segment current at the cut (as for metric generations).
    pub(crate) segment: u64,
    pub(crate) day_start_ms: i64,
    pub(crate) streams: Vec<FrozenStream>,
    pub(crate) min_ts_ns: i64,
    pub(crate) max_ts_ns: i64,
}

impl LogAppendResult {
    fn reject(&mut self, reason: LogRejectReason, n: u64, message: impl FnOnce() -> String) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.rejected.push((reason, n)),
        }
        if self.first_error.is_none() {
            self.first_error = Some((reason, message()));
        }
    }
}

#[derive(Debug)]
pub(crate) struct LogHead {
    tenant: TenantId,
    by_labels: HashMap<Labels, u32>,
    streams: HashMap<u32, StreamState>,
    next_id: u32,
    active_entries: usize,
    active_bytes: usize,
    frozen: Vec<Arc<FrozenLogs>>,
}

impl LogHead {
    pub(crate) fn new(tenant: TenantId) -> Self {
        LogHead {
            tenant,
            by_labels: HashMap::default(),
            streams: HashMap::default(),
            next_id: 0,
            active_entries: 0,
            active_bytes: 0,
            frozen: Vec::new(),
        }
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn active_bytes(&self) -> usize {
        self.active_bytes
    }

    fn stream_id(&mut self, labels: &Labels, now_s: u64) -> u32 {
        if let Some(&id) = self.by_labels.get(labels) {
            return id;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.by_labels.insert(labels.clone(), id);
        self.streams.insert(
            id,
            StreamState {
                labels: labels.clone(),
                max_ts: i64::MIN,
                last_line: String::new(),
                last_append_s: now_s,
                active: Vec::new(),
            },
        );
        id
    }

    /// Applies validated streams: new streams past the limit, entries
    /// older than the out-of-order window and identical resends of the
    /// newest entry are left out. Returns the WAL record of what was
    /// accepted.
    pub(crate) fn append(
        &mut self,
        writes: Vec<LogStreamWrite>,
        limits: &LogAppendLimits,
        now_s: u64,
    ) -> (RecordBuf, LogAppendResult) {
        let mut out = LogAppendResult::default();
        // Accepted entries move into their stream's `active` list; the WAL
        // record is encoded from there (stream id, index range), so no
        // line is copied.
        let mut accepted: Vec<(u32, std::ops::Range<usize>)> = Vec::with_capacity(writes.len());
        for w in writes {
            if w.entries.is_empty() {
                continue;
            }
            if !self.by_labels.contains_key(&w.labels)
                && limits.max_streams > 0
                && self.streams.len() as u64 >= limits.max_streams
            {
                let n = w.entries.len() as u64;
                out.reject(LogRejectReason::StreamLimit, n, || {
                    format!(
                        "maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your administrator to see if the limit can be increased, user: '{}' (limit: {})",
                        format_stream_labels(&w.labels),
                        self.tenant,
                        limits.max_streams
                    )
                });
                continue;
            }
            let id = self.stream_id(&w.labels, now_s);
            let s = self
                .streams
                .get_mut(&id)
                .expect("BUG: stream id without state");
            s.last_append_s = now_s;
            let mut kept = Vec::with_capacity(w.entries.len());
            for e in w.entries {
                if s.max_ts != i64::MIN && e.timestamp_ns == s.max_ts && e.line == s.last_line {
                    out.entries_deduplicated += 1;
                    continue;
                }
                let oldest = s.max_ts.saturating_sub(limits.out_of_order_window_ns);
                if s.max_ts != i64::MIN && e.timestamp_ns < oldest {
                    out.reject(LogRejectReason::TooFarBehind, 1, || {
                        format!(
                            "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}' for stream: {}",
                            ts_text(e.timestamp_ns),
                            ts_text(e.timestamp_ns),
                            ts_text(oldest),
                            format_stream_labels(&s.labels)
                        )
                    });
                    continue;
                }
                if e.timestamp_ns >= s.max_ts {
                    s.max_ts = e.timestamp_ns;
                    s.last_line.clone_from(&e.line);
                }
                out.entries_accepted += 1;
                out.bytes_accepted += e.line.len() as u64;
                kept.push(e);
            }
            if kept.is_empty() {
                continue;
            }
            self.active_entries += kept.len();
            self.active_bytes += kept.iter().map(entry_bytes).sum::<usize>();
            // A stream may come twice in one push: each range is its own.
            accepted.push((id, s.active.len()..s.active.len() + kept.len()));
            s.active.extend(kept);
        }
        let mut rec = RecordBuf::default();
        let refs: Vec<(&Labels, &[LogEntry])> = accepted
            .iter()
            .map(|(id, range)| {
                let s = &self.streams[id];
                (&s.labels, &s.active[range.clone()])
            })
            .collect();
        rec.logs(&self.tenant, &refs);
        (rec, out)
    }

    /// Replays logged entries; limits were applied when they were logged.
    pub(crate) fn replay(&mut self, w: LogStreamWrite, now_s: u64) {
        let id = self.stream_id(&w.labels, now_s);
        let s = self
            .streams
            .get_mut(&id)
            .expect("BUG: stream id without state");
        for e in &w.entries {
            if e.timestamp_ns >= s.max_ts {
                s.max_ts = e.timestamp_ns;
                s.last_line.clone_from(&e.line);
            }
        }
        self.active_entries += w.entries.len();
        self.active_bytes += w.entries.iter().map(entry_bytes).sum::<usize>();
        s.active.extend(w.entries);
    }

    /// Moves the active entries into frozen generations, one per UTC day.
    pub(crate) fn cut(&mut self, segment: u64) {
        if self.active_entries == 0 {
            return;
        }
        let mut days: BTreeMap<i64, Vec<FrozenStream>> = BTreeMap::new();
        for s in self.streams.values_mut() {
            if s.active.is_empty() {
                continue;
            }
            let mut by_day: BTreeMap<i64, Vec<LogEntry>> = BTreeMap::new();
            for e in s.active.drain(..) {
                by_day
                    .entry(PartName::day_of(e.timestamp_ns.div_euclid(1_000_000)))
                    .or_default()
                    .push(e);
            }
            let key = format_stream_labels(&s.labels);
            for (day, mut entries) in by_day {
                sort_dedup_entries(&mut entries);
                days.entry(day).or_default().push(FrozenStream {
                    key: key.clone(),
                    labels: s.labels.clone(),
                    entries,
                });
            }
        }
        self.active_entries = 0;
        self.active_bytes = 0;
        for (day_start_ms, mut streams) in days {
            streams.sort_by(|a, b| a.key.cmp(&b.key));
            let min_ts_ns = streams.iter().map(|s| s.entries[0].timestamp_ns).min();
            let max_ts_ns = streams
                .iter()
                .filter_map(|s| s.entries.last())
                .map(|e| e.timestamp_ns)
                .max();
            self.frozen.push(Arc::new(FrozenLogs {
                segment,
                day_start_ms,
                streams,
                min_ts_ns: min_ts_ns.unwrap_or(0),
                max_ts_ns: max_ts_ns.unwrap_or(0),
            }));
        }
    }

    pub(crate) fn frozen(&self) -> Vec<Arc<FrozenLogs>> {
        self.frozen.clone()
    }

    pub(crate) fn drop_frozen(&mut self, f: &Arc<FrozenLogs>) {
        self.frozen.retain(|g| !Arc::ptr_eq(g, f));
    }

    pub(crate) fn oldest_frozen_segment(&self) -> Option<u64> {
        self.frozen.iter().map(|f| f.segment).min()
    }

    /// Forgets streams with nothing in memory that saw no write for
    /// `idle_s`; they no longer count against the stream limit.
    pub(crate) fn remove_idle_streams(&mut self, now_s: u64, idle_s: u64) -> usize {
        let in_frozen: std::collections::HashSet<&Labels> = self
            .frozen
            .iter()
            .flat_map(|f| f.streams.iter().map(|s| &s.labels))
            .collect();
        let idle: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                s.active.is_empty()
                    && now_s.saturating_sub(s.last_append_s) >= idle_s
                    && !in_frozen.contains(&s.labels)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            if let Some(s) = self.streams.remove(id) {
                self.by_labels.remove(&s.labels);
            }
        }
        idle.len()
    }

    /// Entries in `[start_ns, end_ns)` of the streams matching every
    /// matcher, from the active entries and the unwritten generations,
    /// by stream (entries unsorted; the caller sorts and deduplicates).
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        hints: &super::LogReadHints,
        scanned: &mut super::part_read::Scanned,
    ) -> Vec<(Labels, Vec<LogEntry>)> {
        let scanned = std::cell::RefCell::new(scanned);
        let wanted = |labels: &Labels, e: &LogEntry| {
            if e.timestamp_ns < start_ns || e.timestamp_ns >= end_ns {
                return false;
            }
            scanned.borrow_mut().add(&e.line);
            hints.admits(labels, &e.line, |k, v| {
                e.structured_metadata.iter().any(|(a, b)| a == k && b == v)
            })
        };
        let mut out: HashMap<Labels, Vec<LogEntry>> = HashMap::default();
        for s in self.streams.values() {
            if s.active.is_empty() || !miru_model::matches_all(matchers, &s.labels) {
                continue;
            }
            let entries: Vec<LogEntry> = s
                .active
                .iter()
                .filter(|e| wanted(&s.labels, e))
                .map(|e| copy_entry(e, hints.skip_lines))
                .collect();
            if !entries.is_empty() {
                out.entry(s.labels.clone()).or_default().extend(entries);
            }
        }
        for f in &self.frozen {
            if f.max_ts_ns < start_ns || f.min_ts_ns >= end_ns {
                continue;
            }
            for s in &f.streams {
                if !miru_model::matches_all(matchers, &s.labels) {
                    continue;
                }
                let entries: Vec<LogEntry> = s
                    .entries
                    .iter()
                    .filter(|e| wanted(&s.labels, e))
                    .map(|e| copy_entry(e, hints.skip_lines))
                    .collect();
                if !entries.is_empty() {
                    out.entry(s.labels.clone()).or_default().extend(entries);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Per stream in memory (active and frozen generations apart), the
    /// entries in `[start_ns, end_ns)`: count, line bytes, first and last
    /// timestamp.
    pub(crate) fn chunk_stats(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<super::LogChunkStats> {
        let stat = |labels: &Labels, entries: &mut dyn Iterator<Item = &LogEntry>| {
            let mut c = super::LogChunkStats {
                labels: labels.clone(),
                min_ts_ns: i64::MAX,
                max_ts_ns: i64::MIN,
                entries: 0,
                line_bytes: 0,
            };
            for e in entries.filter(|e| e.timestamp_ns >= start_ns && e.timestamp_ns < end_ns) {
                c.entries += 1;
                c.line_bytes += e.line.len() as u64;
                c.min_ts_ns = c.min_ts_ns.min(e.timestamp_ns);
                c.max_ts_ns = c.max_ts_ns.max(e.timestamp_ns);
            }
            (c.entries > 0).then_some(c)
        };
        let mut out = Vec::new();
        for s in self.streams.values() {
            if miru_model::matches_all(matchers, &s.labels) {
                out.extend(stat(&s.labels, &mut s.active.iter()));
            }
        }
        for f in &self.frozen {
            if f.max_ts_ns < start_ns || f.min_ts_ns >= end_ns {
                continue;
            }
            for s in &f.streams {
                if miru_model::matches_all(matchers, &s.labels) {
                    out.extend(stat(&s.labels, &mut s.entries.iter()));
                }
            }
        }
        out
    }

    /// Label sets of the head's streams matching the matchers that have
    /// entries in memory overlapping `[start_ns, end_ns)`.
    pub(crate) fn stream_labels(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<Labels> {
        let mut out: Vec<Labels> = self
            .streams
            .values()
            .filter(|s| {
                s.active
                    .iter()
                    .any(|e| e.timestamp_ns >= start_ns && e.timestamp_ns < end_ns)
                    && miru_model::matches_all(matchers, &s.labels)
            })
            .map(|s| s.labels.clone())
            .collect();
        for f in &self.frozen {
            if f.max_ts_ns < start_ns || f.min_ts_ns >= end_ns {
                continue;
            }
            out.extend(
                f.streams
                    .iter()
                    .filter(|s| miru_model::matches_all(matchers, &s.labels))
                    .map(|s| s.labels.clone()),
            );
        }
        out
    }
}

/// Memory an entry holds, roughly: its strings plus fixed overhead.
pub(crate) fn entry_bytes(e: &LogEntry) -> usize {
    48 + e.line.len()
        + e.structured_metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
}

/// Sorts by (timestamp, line) and drops entries equal in both, keeping the
/// first: Loki stores an identical line at an identical time once.
pub(crate) fn sort_dedup_entries(entries: &mut Vec<LogEntry>) {
    entries.sort_by(|a, b| {
        a.timestamp_ns
            .cmp(&b.timestamp_ns)
            .then_with(|| a.line.cmp(&b.line))
    });
    entries.dedup_by(|a, b| a.timestamp_ns == b.timestamp_ns && a.line == b.line);
}

/// A copy of an entry for a query, without its line when the query does
/// not read lines.
fn copy_entry(e: &LogEntry, skip_line: bool) -> LogEntry {
    if skip_line {
        LogEntry {
            timestamp_ns: e.timestamp_ns,
            line: String::new(),
            structured_metadata: e.structured_metadata.clone(),
        }
    } else {
        e.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, line: &str) -> LogEntry {
        LogEntry {
            timestamp_ns: ts,
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    fn limits() -> LogAppendLimits {
        LogAppendLimits {
            max_streams: 2,
            out_of_order_window_ns: 3_600_000_000_000,
        }
    }

    fn write(app: &str, entries: Vec<LogEntry>) -> LogStreamWrite {
        LogStreamWrite {
            labels: Labels::from_pairs([("app", app)]),
            entries,
        }
    }

    #[test]
    fn append_applies_stream_limit_window_and_resend_dedup() {
        let mut h = LogHead::new(TenantId::anonymous());
        let hour = 3_600_000_000_000i64;
        let t0 = 10 * hour;
        let (rec, out) = h.append(
            vec![
                write("a", vec![entry(t0, "x"), entry(t0 - hour / 2, "older ok")]),
                write("b", vec![entry(t0, "y")]),
                write("c", vec![entry(t0, "z")]),
            ],
            &limits(),
            1,
        );
        assert_eq!(out.entries_accepted, 3);
        assert_eq!(out.rejected, vec![(LogRejectReason::StreamLimit, 1)]);
        assert!(out.first_error.unwrap().1.contains(r#"{app="c"}"#));
        assert_eq!(rec.records.len(), 1);
        let (_, out) = h.append(
            vec![write(
                "a",
                vec![entry(t0, "x"), entry(t0 - 2 * hour, "too old")],
            )],
            &limits(),
            2,
        );
        assert_eq!(out.entries_accepted, 0);
        assert_eq!(out.entries_deduplicated, 1);
        assert_eq!(out.rejected, vec![(LogRejectReason::TooFarBehind, 1)]);
        let msg = out.first_error.unwrap().1;
        assert!(msg.contains("entry too far behind"), "{msg}");
        assert!(msg.contains("1970-01-01T08:00:00.000000000Z"), "{msg}");
        let got = h.select(
            &[Matcher::equal("app", "a")],
            0,
            i64::MAX,
            &super::super::LogReadHints::default(),
            &mut Default::default(),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 2);
    }

    #[test]
    fn a_stream_sent_twice_in_one_push_is_logged_once_per_entry() {
        let mut h = LogHead::new(TenantId::anonymous());
        let (rec, out) = h.append(
            vec![
                write("a", vec![entry(1, "x")]),
                write("a", vec![entry(2, "y")]),
            ],
            &limits(),
            1,
        );
        assert_eq!(out.entries_accepted, 2);
        let (kind, payload) = &rec.records[0];
        let crate::wal::Record::Logs { streams, .. } =
            crate::wal::decode_record(*kind, payload).unwrap()
        else {
            panic!("not a log record");
        };
        let lines: Vec<&str> = streams
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, ["x", "y"]);
    }

    #[test]
    fn cut_splits_by_day_sorted_and_deduplicated() {
        let mut h = LogHead::new(TenantId::anonymous());
        let day = 86_400_000_000_000i64;
        h.replay(
            write(
                "a",
                vec![
                    entry(day + 5, "b"),
                    entry(day - 1, "late"),
                    entry(day + 5, "a"),
                ],
            ),
            1,
        );
        h.replay(write("a", vec![entry(day + 5, "a")]), 1);
        h.cut(7);
        let f = h.frozen();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].day_start_ms, 0);
        assert_eq!(f[1].day_start_ms, 86_400_000);
        let lines: Vec<&str> = f[1].streams[0]
            .entries
            .iter()
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, ["a", "b"]);
        assert_eq!(f[1].segment, 7);
        assert_eq!(
            h.select(
                &[],
                day,
                day + 6,
                &super::super::LogReadHints::default(),
                &mut Default::default(),
            )
            .iter()
            .map(|s| s.1.len())
            .sum::<usize>(),
            2
        );
        h.drop_frozen(&f[0]);
        h.drop_frozen(&f[1]);
        assert_eq!(h.remove_idle_streams(100, 10), 1);
        assert_eq!(h.stream_count(), 0);
    }
}
