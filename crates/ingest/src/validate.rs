//! Checks a decoded batch against the tenant's limits. Invalid series are
//! removed and reported; the valid rest is kept, so the caller can store it
//! and answer 400 with the first error, as Mimir does (partial ingestion).

use miru_model::{METRIC_NAME, SeriesWrite, WriteBatch};

use crate::limits::{NameValidation, TenantLimits};

/// Why a series, sample or exemplar was rejected. The name of each variant
/// is the `reason` label of the rejected-samples metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingMetricName,
    InvalidMetricName,
    InvalidLabelName,
    MaxLabelNamesPerSeries,
    LabelNameTooLong,
    LabelValueTooLong,
    TooFarInFuture,
    TooOld,
    InvalidExemplar,
    MetadataTooLong,
    InvalidNativeHistogram,
    MaxNativeHistogramBuckets,
    NativeHistogramsDisabled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingMetricName => "missing_metric_name",
            Reason::InvalidMetricName => "metric_name_invalid",
            Reason::InvalidLabelName => "label_invalid",
            Reason::MaxLabelNamesPerSeries => "max_label_names_per_series",
            Reason::LabelNameTooLong => "label_name_too_long",
            Reason::LabelValueTooLong => "label_value_too_long",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::TooOld => "too_old",
            Reason::InvalidExemplar => "exemplar_invalid",
            Reason::MetadataTooLong => "metadata_too_long",
            Reason::InvalidNativeHistogram => "invalid_native_histogram",
            Reason::MaxNativeHistogramBuckets => "max_native_histogram_buckets",
            Reason::NativeHistogramsDisabled => "native_histograms_disabled",
        }
    }
}

/// What validation dropped: counts per reason and the first message.
#[derive(Debug, Default, Clone)]
pub struct Rejections {
    pub counts: Vec<(Reason, u64)>,
    pub first_message: Option<String>,
    /// Native histogram samples dropped because the tenant has them turned
    /// off: discarded without an error, as in Mimir.
    pub silent: u64,
}

impl Rejections {
    pub fn add(&mut self, reason: Reason, n: u64, message: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        if self.first_message.is_none() {
            self.first_message = Some(message());
        }
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.counts.push((reason, n)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// Longest exemplar label set, in characters, as Prometheus enforces.
const MAX_EXEMPLAR_LABELS_CHARS: usize = 128;

/// Validates `batch` in place: removes what is invalid and returns why.
pub fn validate_batch(batch: &mut WriteBatch, limits: &TenantLimits, now_ms: i64) -> Rejections {
    let mut rej = Rejections::default();
    let future_limit = now_ms.saturating_add((limits.creation_grace_period_s as i64) * 1000);
    let past_limit = (limits.past_grace_period_s > 0)
        .then(|| now_ms.saturating_sub(limits.past_grace_period_s as i64 * 1000));
    if !limits.native_histograms_ingestion_enabled {
        for s in &mut batch.series {
            // Dropped without failing the request, as Mimir does; counted
            // apart from errors (see `Rejections::silent`).
            rej.silent += s.histograms.len() as u64;
            s.histograms.clear();
        }
    }
    let mut index = 0usize;
    batch.series.retain_mut(|s| {
        let i = index;
        index += 1;
        if let Err((reason, msg)) = check_series(s, limits) {
            let n = (s.samples.len() + s.histograms.len()).max(1) as u64;
            rej.add(reason, n, || format!("series {i} ({}): {msg}", s.labels));
            return false;
        }
        s.samples.retain(|x| {
            if x.timestamp_ms > future_limit {
                rej.add(Reason::TooFarInFuture, 1, || {
                    format!(
                        "series {i} ({}): sample timestamp {} is too far in the future (more than {}s after now)",
                        s.labels, x.timestamp_ms, limits.creation_grace_period_s
                    )
                });
                false
            } else if past_limit.is_some_and(|p| x.timestamp_ms < p) {
                rej.add(Reason::TooOld, 1, || {
                    format!(
                        "series {i} ({}): sample timestamp {} is too old (more than {}s before now)",
                        s.labels, x.timestamp_ms, limits.past_grace_period_s
                    )
                });
                false
            } else {
                true
            }
        });
        let labels = &s.labels;
        s.histograms.retain(|h| {
            let problem = if h.timestamp_ms > future_limit {
                Some((
                    Reason::TooFarInFuture,
                    format!(
                        "native histogram sample timestamp {} is too far in the future (more than {}s after now)",
                        h.timestamp_ms, limits.creation_grace_period_s
                    ),
                ))
            } else if past_limit.is_some_and(|p| h.timestamp_ms < p) {
                Some((
                    Reason::TooOld,
                    format!(
                        "native histogram sample timestamp {} is too old (more than {}s before now)",
                        h.timestamp_ms, limits.past_grace_period_s
                    ),
                ))
            } else if let Err(e) = h.histogram.validate() {
                Some((
                    Reason::InvalidNativeHistogram,
                    format!(
                        "invalid native histogram sample at timestamp {}: {e}",
                        h.timestamp_ms
                    ),
                ))
            } else {
                let buckets = h.histogram.positive_buckets.len() + h.histogram.negative_buckets.len();
                (limits.max_native_histogram_buckets > 0
                    && buckets > limits.max_native_histogram_buckets)
                    .then(|| {
                        (
                            Reason::MaxNativeHistogramBuckets,
                            format!(
                                "native histogram sample at timestamp {} has {buckets} buckets, over the limit of {} (max_native_histogram_buckets)",
                                h.timestamp_ms, limits.max_native_histogram_buckets
                            ),
                        )
                    })
            };
            match problem {
                Some((reason, p)) => {
                    rej.add(reason, 1, || format!("series {i} ({labels}): {p}"));
                    false
                }
                None => true,
            }
        });
        s.exemplars.retain(|e| {
            let chars: usize = e
                .labels
                .iter()
                .map(|l| l.name.chars().count() + l.value.chars().count())
                .sum();
            let problem = if e.timestamp_ms == 0 {
                Some("exemplar has no timestamp".to_string())
            } else if chars > MAX_EXEMPLAR_LABELS_CHARS {
                Some(format!(
                    "exemplar labels have {chars} characters, over the limit of {MAX_EXEMPLAR_LABELS_CHARS}"
                ))
            } else {
                e.labels
                    .iter()
                    .find(|l| !valid_label_name(&l.name, limits.name_validation_scheme))
                    .map(|l| format!("exemplar label name {:?} is invalid", &*l.name))
            };
            match problem {
                Some(p) => {
                    rej.add(Reason::InvalidExemplar, 1, || format!("series {i} ({labels}): {p}"));
                    false
                }
                None => true,
            }
        });
        !s.samples.is_empty() || !s.histograms.is_empty() || !s.exemplars.is_empty()
    });
    batch.metadata.retain(|m| {
        let len = m.metric_family.len().max(m.help.len()).max(m.unit.len());
        if limits.max_metadata_length > 0 && len > limits.max_metadata_length {
            rej.add(Reason::MetadataTooLong, 1, || {
                format!(
                    "metadata for {:?} is {len} bytes long, over the limit of {}",
                    m.metric_family, limits.max_metadata_length
                )
            });
            false
        } else {
            !m.metric_family.is_empty()
        }
    });
    rej
}

fn check_series(s: &SeriesWrite, limits: &TenantLimits) -> Result<(), (Reason, String)> {
    let scheme = limits.name_validation_scheme;
    let name = match s.labels.metric_name() {
        None | Some("") => {
            return Err((
                Reason::MissingMetricName,
                "sample missing metric name".into(),
            ));
        }
        Some(n) => n,
    };
    if !valid_metric_name(name, scheme) {
        return Err((
            Reason::InvalidMetricName,
            format!("invalid metric name {name:?}"),
        ));
    }
    if limits.max_label_names_per_series > 0 && s.labels.len() > limits.max_label_names_per_series {
        return Err((
            Reason::MaxLabelNamesPerSeries,
            format!(
                "series has too many labels (actual: {}, limit: {})",
                s.labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for l in s.labels.iter() {
        if &*l.name != METRIC_NAME && !valid_label_name(&l.name, scheme) {
            return Err((
                Reason::InvalidLabelName,
                format!("invalid label name {:?}", &*l.name),
            ));
        }
        if limits.max_label_name_length > 0 && l.name.len() > limits.max_label_name_length {
            return Err((
                Reason::LabelNameTooLong,
                format!(
                    "label name {:?} is {} bytes long, over the limit of {}",
                    truncate(&l.name),
                    l.name.len(),
                    limits.max_label_name_length
                ),
            ));
        }
        if limits.max_label_value_length > 0 && l.value.len() > limits.max_label_value_length {
            return Err((
                Reason::LabelValueTooLong,
                format!(
                    "value of label {:?} is {} bytes long, over the limit of {}",
                    &*l.name,
                    l.value.len(),
                    limits.max_label_value_length
                ),
            ));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

pub fn valid_metric_name(name: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
    }
}

pub fn valid_label_name(name: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::{Labels, Sample};

    fn series(pairs: &[(&str, &str)], ts: i64) -> SeriesWrite {
        SeriesWrite {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: vec![Sample {
                timestamp_ms: ts,
                value: 1.0,
            }],
            histograms: vec![],
            exemplars: vec![],
        }
    }

    #[test]
    fn drops_invalid_keeps_valid() {
        let now = 1_000_000_000;
        let mut b = WriteBatch {
            series: vec![
                series(&[("__name__", "ok"), ("a", "b")], now),
                series(&[("a", "b")], now),
                series(&[("__name__", "1bad")], now),
                series(&[("__name__", "ok"), ("1x", "b")], now),
                series(&[("__name__", "ok")], now + 3_600_000),
            ],
            ..Default::default()
        };
        let rej = validate_batch(&mut b, &TenantLimits::default(), now);
        assert_eq!(b.series.len(), 1);
        assert_eq!(rej.total(), 4);
        let msg = rej.first_message.unwrap();
        assert!(
            msg.contains("series 1") && msg.contains("missing metric name"),
            "{msg}"
        );
    }

    #[test]
    fn limits_label_count_and_length() {
        let l = TenantLimits {
            max_label_names_per_series: 2,
            max_label_value_length: 3,
            past_grace_period_s: 60,
            ..TenantLimits::default()
        };
        let now = 10_000_000;
        for (s, reason) in [
            (
                series(&[("__name__", "a"), ("b", "1"), ("c", "1")], now),
                Reason::MaxLabelNamesPerSeries,
            ),
            (
                series(&[("__name__", "a"), ("b", "1234")], now),
                Reason::LabelValueTooLong,
            ),
            (series(&[("__name__", "a")], now - 61_000), Reason::TooOld),
        ] {
            let mut b = WriteBatch {
                series: vec![s],
                ..Default::default()
            };
            let rej = validate_batch(&mut b, &l, now);
            assert_eq!(rej.counts, vec![(reason, 1)]);
            assert!(b.series.is_empty());
        }
    }

    #[test]
    fn name_schemes() {
        assert!(valid_metric_name("a:b_c", NameValidation::Legacy));
        assert!(!valid_metric_name("a.b", NameValidation::Legacy));
        assert!(valid_metric_name("a.b", NameValidation::Utf8));
        assert!(!valid_label_name("a:b", NameValidation::Legacy));
        assert!(!valid_label_name("", NameValidation::Utf8));
    }
}
