//! Per-entry checks a Loki distributor makes before storing: label limits,
//! timestamps too old or too new, line and structured metadata size.
//! Invalid entries (or whole streams, for label problems) are dropped and
//! counted; the rest of the request is stored, and the first error is
//! what the 400 says, as Loki answers.

use miru_model::civil::rfc3339_nanos as ts;
use miru_model::{LogStreamWrite, format_stream_labels};

use crate::limits::TenantLimits;

/// Why an entry was dropped (Loki's `discarded_samples` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    MaxLabelNamesPerSeries,
    LabelNameTooLong,
    LabelValueTooLong,
    GreaterThanMaxSampleAge,
    TooFarInFuture,
    LineTooLong,
    StructuredMetadataTooLarge,
    StructuredMetadataTooMany,
}

impl LogReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LogReason::MaxLabelNamesPerSeries => "max_label_names_per_series",
            LogReason::LabelNameTooLong => "label_name_too_long",
            LogReason::LabelValueTooLong => "label_value_too_long",
            LogReason::GreaterThanMaxSampleAge => "greater_than_max_sample_age",
            LogReason::TooFarInFuture => "too_far_in_future",
            LogReason::LineTooLong => "line_too_long",
            LogReason::StructuredMetadataTooLarge => "structured_metadata_too_large",
            LogReason::StructuredMetadataTooMany => "structured_metadata_too_many",
        }
    }
}

/// What validation dropped.
#[derive(Debug, Default)]
pub struct LogValidation {
    /// Entries dropped, by reason.
    pub counts: Vec<(LogReason, u64)>,
    /// Bytes of the dropped lines.
    pub dropped_bytes: u64,
    pub first_error: Option<String>,
}

impl LogValidation {
    fn drop(&mut self, reason: LogReason, n: u64, bytes: u64, message: impl FnOnce() -> String) {
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.counts.push((reason, n)),
        }
        self.dropped_bytes += bytes;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    pub fn dropped(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

fn label_problem(w: &LogStreamWrite, l: &TenantLimits) -> Option<(LogReason, String)> {
    let stream = || format_stream_labels(&w.labels);
    if l.max_label_names_per_series > 0 && w.labels.len() > l.max_label_names_per_series {
        return Some((
            LogReason::MaxLabelNamesPerSeries,
            format!(
                "stream '{}' has {} label names; limit {} (max_label_names_per_series)",
                stream(),
                w.labels.len(),
                l.max_label_names_per_series
            ),
        ));
    }
    for lb in w.labels.iter() {
        if l.max_label_name_length > 0 && lb.name.len() > l.max_label_name_length {
            return Some((
                LogReason::LabelNameTooLong,
                format!(
                    "stream '{}' has label name too long: '{}' (max_label_name_length={})",
                    stream(),
                    lb.name,
                    l.max_label_name_length
                ),
            ));
        }
        if l.max_label_value_length > 0 && lb.value.len() > l.max_label_value_length {
            return Some((
                LogReason::LabelValueTooLong,
                format!(
                    "stream '{}' has label value too long: '{}' (max_label_value_length={})",
                    stream(),
                    lb.value,
                    l.max_label_value_length
                ),
            ));
        }
    }
    None
}

/// Drops what the limits refuse, in place; empty streams are removed.
pub fn validate_streams(
    streams: &mut Vec<LogStreamWrite>,
    l: &TenantLimits,
    now_ns: i64,
) -> LogValidation {
    let mut v = LogValidation::default();
    let oldest = l
        .reject_old_samples
        .then(|| now_ns.saturating_sub(l.reject_old_samples_max_age_s as i64 * 1_000_000_000));
    let newest = now_ns.saturating_add(l.creation_grace_period_s as i64 * 1_000_000_000);
    for w in streams.iter_mut() {
        if let Some((reason, msg)) = label_problem(w, l) {
            let bytes = w.entries.iter().map(|e| e.line.len() as u64).sum();
            v.drop(reason, w.entries.len() as u64, bytes, || msg);
            w.entries.clear();
            continue;
        }
        let labels = &w.labels;
        w.entries.retain_mut(|e| {
            let bytes = e.line.len() as u64;
            if let Some(oldest) = oldest
                && e.timestamp_ns < oldest
            {
                v.drop(LogReason::GreaterThanMaxSampleAge, 1, bytes, || {
                    format!(
                        "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                        format_stream_labels(labels),
                        ts(e.timestamp_ns),
                        ts(oldest)
                    )
                });
                return false;
            }
            if e.timestamp_ns > newest {
                v.drop(LogReason::TooFarInFuture, 1, bytes, || {
                    format!(
                        "entry for stream '{}' has timestamp too new: {}",
                        format_stream_labels(labels),
                        ts(e.timestamp_ns)
                    )
                });
                return false;
            }
            if l.max_line_size > 0 && e.line.len() > l.max_line_size {
                if l.max_line_size_truncate {
                    let mut cut = l.max_line_size;
                    while !e.line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    e.line.truncate(cut);
                } else {
                    v.drop(LogReason::LineTooLong, 1, bytes, || {
                        format!(
                            "Max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes (max_line_size)",
                            l.max_line_size,
                            format_stream_labels(labels),
                            e.line.len()
                        )
                    });
                    return false;
                }
            }
            let md = &e.structured_metadata;
            if l.max_structured_metadata_entries_count > 0
                && md.len() > l.max_structured_metadata_entries_count
            {
                v.drop(LogReason::StructuredMetadataTooMany, 1, bytes, || {
                    format!(
                        "stream '{}' has too many structured metadata labels: '{}', limit: '{}'",
                        format_stream_labels(labels),
                        md.len(),
                        l.max_structured_metadata_entries_count
                    )
                });
                return false;
            }
            let md_bytes: usize = md.iter().map(|(k, v)| k.len() + v.len()).sum();
            if l.max_structured_metadata_size > 0 && md_bytes > l.max_structured_metadata_size {
                v.drop(LogReason::StructuredMetadataTooLarge, 1, bytes, || {
                    format!(
                        "stream '{}' has structured metadata too large: '{}' bytes, limit: '{}' bytes",
                        format_stream_labels(labels),
                        md_bytes,
                        l.max_structured_metadata_size
                    )
                });
                return false;
            }
            true
        });
    }
    streams.retain(|w| !w.entries.is_empty());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::{Labels, LogEntry};

    fn entry(ts: i64, line: &str) -> LogEntry {
        LogEntry {
            timestamp_ns: ts,
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    #[test]
    fn drops_only_what_the_limits_refuse() {
        let now = 1_795_305_600_000_000_000i64;
        let day = 86_400_000_000_000i64;
        let l = TenantLimits {
            max_line_size: 10,
            ..TenantLimits::default()
        };
        let mut streams = vec![
            LogStreamWrite {
                labels: Labels::from_pairs([("app", "a")]),
                entries: vec![
                    entry(now, "ok"),
                    entry(now - 8 * day, "too old"),
                    entry(now + day, "too new"),
                    entry(now, "far too long a line"),
                ],
            },
            LogStreamWrite {
                labels: Labels::from_pairs([("app", "x".repeat(3000))]),
                entries: vec![entry(now, "long label")],
            },
        ];
        let v = validate_streams(&mut streams, &l, now);
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].entries.len(), 1);
        assert_eq!(v.dropped(), 4);
        let first = v.first_error.unwrap();
        assert!(first.contains("timestamp too old"), "{first}");
        let truncating = TenantLimits {
            max_line_size: 4,
            max_line_size_truncate: true,
            ..TenantLimits::default()
        };
        let mut s = vec![LogStreamWrite {
            labels: Labels::from_pairs([("app", "a")]),
            entries: vec![entry(now, "héllo")],
        }];
        assert_eq!(validate_streams(&mut s, &truncating, now).dropped(), 0);
        assert_eq!(s[0].entries[0].line, "hél");
    }
}
