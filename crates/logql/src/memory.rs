use std::collections::BTreeMap;

use miru_model::{Labels, LogEntry, matches_all};

use crate::source::{LogSource, SelectRequest, SourceError, StreamIter};

/// An in-memory [`LogSource`] for tests and the conformance runner.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    streams: BTreeMap<Labels, Vec<LogEntry>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry; entries of a stream are kept in timestamp order
    /// (equal timestamps in insertion order).
    pub fn push(&mut self, labels: &Labels, entry: LogEntry) {
        let v = self.streams.entry(labels.clone()).or_default();
        let at = v.partition_point(|e| e.timestamp_ns <= entry.timestamp_ns);
        v.insert(at, entry);
    }

    pub fn clear(&mut self) {
        self.streams.clear();
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

impl LogSource for MemorySource {
    fn select(&self, req: &SelectRequest<'_>) -> Result<StreamIter<'_>, SourceError> {
        let req = *req;
        let matchers = req.matchers.to_vec();
        let hints = req.line_filters.to_vec();
        let label_hints = req.label_equals.to_vec();
        Ok(Box::new(self.streams.iter().filter_map(
            move |(labels, entries)| {
                if !matches_all(&matchers, labels) {
                    return None;
                }
                let lo = entries.partition_point(|e| e.timestamp_ns < req.start_ns);
                let hi = entries.partition_point(|e| e.timestamp_ns < req.end_ns);
                let picked: Vec<LogEntry> = entries
                    .get(lo..hi.max(lo))
                    .unwrap_or_default()
                    .iter()
                    .filter(|e| hints.iter().all(|h| e.line.contains(h.as_str())))
                    // As storage does: a hinted pair is a stream label or
                    // structured metadata, so the corpus checks the hints.
                    .filter(|e| {
                        label_hints.iter().all(|(k, v)| {
                            labels.get(k) == Some(v.as_str())
                                || e.structured_metadata.iter().any(|(a, b)| a == k && b == v)
                        })
                    })
                    .map(|e| match req.lines_needed {
                        true => e.clone(),
                        // As storage may: the corpus then checks that
                        // queries that say so never read a line.
                        false => LogEntry {
                            line: String::new(),
                            ..e.clone()
                        },
                    })
                    .collect();
                (!picked.is_empty()).then(|| Ok((labels.clone(), picked)))
            },
        )))
    }
}
