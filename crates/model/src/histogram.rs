//! Native histograms, as Prometheus defines them (sparse exponential buckets,
//! or custom bucket bounds with schema -53).
//!
//! miru keeps every native histogram sample as a float histogram with
//! absolute bucket counts: integer histograms from remote write are
//! converted on ingest (exact for counts below 2^53), so storage, query and
//! the API deal with one shape only. Prometheus' query engine does the same
//! conversion before evaluating.

/// Schema of native histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// How the counters of a histogram relate to those of the previous sample
/// in the series (Prometheus' `CounterResetHint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

impl CounterResetHint {
    /// The numbering of remote write 1.0/2.0 and of miru's formats.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Reset,
            2 => Self::NotReset,
            3 => Self::Gauge,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Reset => 1,
            Self::NotReset => 2,
            Self::Gauge => 3,
        }
    }
}

/// A run of consecutive buckets: `offset` buckets after the end of the
/// previous span (or from index 0 for the first span), `length` buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketSpan {
    pub offset: i32,
    pub length: u32,
}

/// One native histogram value with absolute (not delta-encoded) bucket counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom bounds.
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<BucketSpan>,
    pub positive_buckets: Vec<f64>,
    pub negative_spans: Vec<BucketSpan>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only); +Inf is implicit.
    pub custom_values: Vec<f64>,
}

/// What is wrong with a histogram that does not describe itself consistently.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("histogram schema {0} is out of range (-4..8, or -53 for custom buckets)")]
    BadSchema(i32),
    #[error("{side} spans cover {spans} buckets but {buckets} bucket counts are given")]
    SpanMismatch {
        side: &'static str,
        spans: usize,
        buckets: usize,
    },
    #[error("histogram with custom buckets must have no negative buckets")]
    CustomNegative,
    #[error("custom bucket bounds must be strictly increasing and finite")]
    CustomBoundsOrder,
    #[error("histogram with schema {0} must have no custom bucket bounds")]
    UnexpectedCustomValues(i32),
    #[error("{side} span offset {offset} is negative after the first span")]
    NegativeOffset { side: &'static str, offset: i32 },
    #[error("custom bucket index {index} is beyond the {bounds} bounds given (+Inf included)")]
    CustomIndexOutOfRange { index: i64, bounds: usize },
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Checks what Prometheus checks before it stores a histogram.
    pub fn validate(&self) -> Result<(), HistogramError> {
        if self.uses_custom_buckets() {
            if !self.negative_buckets.is_empty() || !self.negative_spans.is_empty() {
                return Err(HistogramError::CustomNegative);
            }
            if self.custom_values.iter().any(|v| !v.is_finite())
                || self.custom_values.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(HistogramError::CustomBoundsOrder);
            }
        } else {
            if !(-4..=8).contains(&self.schema) {
                return Err(HistogramError::BadSchema(self.schema));
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::UnexpectedCustomValues(self.schema));
            }
        }
        check_spans(
            "positive",
            &self.positive_spans,
            self.positive_buckets.len(),
        )?;
        check_spans(
            "negative",
            &self.negative_spans,
            self.negative_buckets.len(),
        )?;
        if self.uses_custom_buckets() {
            // Bucket i covers (custom_values[i-1], custom_values[i]]; index
            // len(custom_values) is the +Inf bucket.
            let mut idx: i64 = 0;
            for s in &self.positive_spans {
                idx += s.offset as i64 + s.length as i64;
            }
            if idx > self.custom_values.len() as i64 + 1 {
                return Err(HistogramError::CustomIndexOutOfRange {
                    index: idx - 1,
                    bounds: self.custom_values.len() + 1,
                });
            }
        }
        Ok(())
    }

    /// Bucket indexes and counts of one side, in order.
    pub fn positive_bucket_iter(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        bucket_iter(&self.positive_spans, &self.positive_buckets)
    }

    pub fn negative_bucket_iter(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        bucket_iter(&self.negative_spans, &self.negative_buckets)
    }
}

fn check_spans(
    side: &'static str,
    spans: &[BucketSpan],
    buckets: usize,
) -> Result<(), HistogramError> {
    let covered: usize = spans.iter().map(|s| s.length as usize).sum();
    if covered != buckets {
        return Err(HistogramError::SpanMismatch {
            side,
            spans: covered,
            buckets,
        });
    }
    if let Some(s) = spans.iter().skip(1).find(|s| s.offset < 0) {
        return Err(HistogramError::NegativeOffset {
            side,
            offset: s.offset,
        });
    }
    Ok(())
}

fn bucket_iter<'a>(
    spans: &'a [BucketSpan],
    counts: &'a [f64],
) -> impl Iterator<Item = (i32, f64)> + 'a {
    let mut idx = 0i32;
    let mut pos = 0usize;
    spans.iter().flat_map(move |s| {
        idx += s.offset;
        let start = idx;
        idx += s.length as i32;
        let from = pos;
        pos += s.length as usize;
        (0..s.length as usize).map(move |k| (start + k as i32, counts[from + k]))
    })
}

/// One bucket with its bounds, as Prometheus' API lists them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

impl Bucket {
    /// Prometheus' API `boundary_rule`: 0 = (lower, upper], 1 = [lower,
    /// upper), 2 = (lower, upper), 3 = [lower, upper].
    pub fn boundary_rule(&self) -> u8 {
        match (self.lower_inclusive, self.upper_inclusive) {
            (false, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (true, true) => 3,
        }
    }
}

/// Upper bound of exponential bucket `index` for `schema` (Prometheus'
/// `getBound`): base^index with base = 2^(2^-schema). The largest bucket
/// ends at f64::MAX rather than +Inf.
pub fn exponential_bucket_bound(index: i32, schema: i32) -> f64 {
    let v = if schema <= 0 {
        let exp = i64::from(index) << (-schema).min(62);
        if exp >= 1024 {
            return f64::MAX;
        }
        2f64.powi(exp.max(-1100) as i32)
    } else {
        let per_doubling = 1i64 << schema;
        let whole = i64::from(index).div_euclid(per_doubling);
        let frac = i64::from(index).rem_euclid(per_doubling);
        if whole >= 1024 && frac == 0 {
            return f64::MAX;
        }
        (frac as f64 / per_doubling as f64).exp2() * 2f64.powi(whole.clamp(-1100, 1100) as i32)
    };
    if v.is_infinite() { f64::MAX } else { v }
}

impl FloatHistogram {
    /// Every bucket with a non-zero count, from the most negative to the
    /// most positive: negative buckets, the zero bucket, positive buckets.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        if self.uses_custom_buckets() {
            for (i, count) in self.positive_bucket_iter() {
                if count == 0.0 {
                    continue;
                }
                let bound = |k: i32| -> f64 {
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| self.custom_values.get(k).copied())
                        .unwrap_or(if k < 0 {
                            f64::NEG_INFINITY
                        } else {
                            f64::INFINITY
                        })
                };
                out.push(Bucket {
                    lower: bound(i - 1),
                    upper: bound(i),
                    lower_inclusive: false,
                    upper_inclusive: true,
                    count,
                });
            }
            return out;
        }
        let mut negative: Vec<(i32, f64)> = self.negative_bucket_iter().collect();
        negative.reverse();
        for (i, count) in negative {
            if count != 0.0 {
                out.push(Bucket {
                    lower: -exponential_bucket_bound(i, self.schema),
                    upper: -exponential_bucket_bound(i - 1, self.schema),
                    lower_inclusive: true,
                    upper_inclusive: false,
                    count,
                });
            }
        }
        if self.zero_count != 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for (i, count) in self.positive_bucket_iter() {
            if count != 0.0 {
                out.push(Bucket {
                    lower: exponential_bucket_bound(i - 1, self.schema),
                    upper: exponential_bucket_bound(i, self.schema),
                    lower_inclusive: false,
                    upper_inclusive: true,
                    count,
                });
            }
        }
        out
    }
}

/// Turns delta-encoded integer bucket counts (remote write's integer
/// histograms) into absolute float counts.
pub fn deltas_to_absolute(deltas: &[i64]) -> Vec<f64> {
    let mut acc: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            acc = acc.wrapping_add(*d);
            acc as f64
        })
        .collect()
}

/// One native histogram sample; timestamps are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub timestamp_ms: i64,
    pub histogram: std::sync::Arc<FloatHistogram>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(spans: Vec<BucketSpan>, buckets: Vec<f64>) -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            positive_spans: spans,
            positive_buckets: buckets,
            ..Default::default()
        }
    }

    #[test]
    fn spans_must_cover_buckets() {
        let ok = h(
            vec![
                BucketSpan {
                    offset: -2,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            vec![1.0, 2.0, 3.0],
        );
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            ok.positive_bucket_iter().collect::<Vec<_>>(),
            vec![(-2, 1.0), (-1, 2.0), (3, 3.0)]
        );
        let bad = h(
            vec![BucketSpan {
                offset: 0,
                length: 2,
            }],
            vec![1.0],
        );
        assert!(matches!(
            bad.validate(),
            Err(HistogramError::SpanMismatch { .. })
        ));
        let neg = h(
            vec![
                BucketSpan {
                    offset: 0,
                    length: 1,
                },
                BucketSpan {
                    offset: -1,
                    length: 1,
                },
            ],
            vec![1.0, 1.0],
        );
        assert!(matches!(
            neg.validate(),
            Err(HistogramError::NegativeOffset { .. })
        ));
    }

    #[test]
    fn schema_and_custom_bounds() {
        let mut x = h(vec![], vec![]);
        x.schema = 9;
        assert_eq!(x.validate(), Err(HistogramError::BadSchema(9)));
        x.schema = CUSTOM_BUCKETS_SCHEMA;
        x.custom_values = vec![1.0, 0.5];
        assert_eq!(x.validate(), Err(HistogramError::CustomBoundsOrder));
        x.custom_values = vec![0.5, 1.0];
        x.positive_spans = vec![BucketSpan {
            offset: 0,
            length: 3,
        }];
        x.positive_buckets = vec![1.0, 2.0, 3.0];
        assert_eq!(x.validate(), Ok(()));
        x.positive_spans = vec![BucketSpan {
            offset: 1,
            length: 3,
        }];
        assert!(matches!(
            x.validate(),
            Err(HistogramError::CustomIndexOutOfRange { .. })
        ));
    }

    #[test]
    fn bucket_bounds_follow_the_schema() {
        assert_eq!(exponential_bucket_bound(0, 0), 1.0);
        assert_eq!(exponential_bucket_bound(1, 0), 2.0);
        assert_eq!(exponential_bucket_bound(-1, 0), 0.5);
        assert_eq!(exponential_bucket_bound(1, -1), 4.0);
        assert_eq!(exponential_bucket_bound(2, 1), 2.0);
        assert!((exponential_bucket_bound(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert!((exponential_bucket_bound(-1, 1) - 1.0 / std::f64::consts::SQRT_2).abs() < 1e-15);
        assert_eq!(exponential_bucket_bound(1024, 0), f64::MAX);
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![1.0, 0.0],
            negative_spans: vec![BucketSpan {
                offset: 1,
                length: 1,
            }],
            negative_buckets: vec![3.0],
            ..Default::default()
        };
        let b = h.buckets();
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].lower, b[0].upper, b[0].boundary_rule()),
            (-2.0, -1.0, 1)
        );
        assert_eq!(
            (b[1].lower, b[1].upper, b[1].boundary_rule()),
            (-0.001, 0.001, 3)
        );
        assert_eq!(
            (b[2].lower, b[2].upper, b[2].boundary_rule(), b[2].count),
            (0.5, 1.0, 0, 1.0)
        );
        let c = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0, 5.0],
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1.0, 2.0, 3.0],
            ..Default::default()
        };
        let b = c.buckets();
        assert_eq!((b[0].lower, b[0].upper), (f64::NEG_INFINITY, 1.0));
        assert_eq!((b[2].lower, b[2].upper), (5.0, f64::INFINITY));
    }

    #[test]
    fn deltas() {
        assert_eq!(deltas_to_absolute(&[2, 1, -3, 4]), vec![2.0, 3.0, 0.0, 4.0]);
    }
}
