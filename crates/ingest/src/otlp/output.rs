//! Assembles the translated batch: merges samples of the same series, keeps
//! one metadata entry per family and collects what was rejected and why.

use std::collections::{HashMap, HashSet};

use miru_model::{
    Exemplar, HistogramSample, Labels, MetricMetadata, Sample, SeriesWrite, WriteBatch,
};

use super::metrics::OtlpTranslation;

/// Messages beyond this many are only counted in `error_message`.
const MAX_MESSAGES: usize = 10;

/// Collects series (merging points of the same series), metadata and
/// rejections.
#[derive(Default)]
pub(super) struct Output {
    batch: WriteBatch,
    index: HashMap<Labels, usize>,
    families: HashSet<String>,
    rejected: i64,
    messages: Vec<String>,
    omitted_messages: usize,
}

impl Output {
    fn series(&mut self, labels: Labels) -> &mut SeriesWrite {
        let i = *self.index.entry(labels).or_insert_with_key(|labels| {
            self.batch.series.push(SeriesWrite {
                labels: labels.clone(),
                samples: Vec::new(),
                histograms: Vec::new(),
                exemplars: Vec::new(),
            });
            self.batch.series.len() - 1
        });
        &mut self.batch.series[i]
    }

    pub(super) fn push(&mut self, labels: Labels, sample: Sample, exemplars: Vec<Exemplar>) {
        let series = self.series(labels);
        series.samples.push(sample);
        series.exemplars.extend(exemplars);
    }

    pub(super) fn push_histogram(
        &mut self,
        labels: Labels,
        sample: HistogramSample,
        exemplars: Vec<Exemplar>,
    ) {
        let series = self.series(labels);
        series.histograms.push(sample);
        series.exemplars.extend(exemplars);
    }

    /// Like `push`, but skips a sample at a timestamp the series has
    /// (resources with identical attributes share one `target_info`).
    pub(super) fn push_unique(&mut self, labels: Labels, sample: Sample) {
        let series = self.series(labels);
        if !series
            .samples
            .iter()
            .any(|s| s.timestamp_ms == sample.timestamp_ms)
        {
            series.samples.push(sample);
        }
    }

    /// Keeps the first metadata of each family.
    pub(super) fn metadata(&mut self, m: MetricMetadata) {
        if self.families.insert(m.metric_family.clone()) {
            self.batch.metadata.push(m);
        }
    }

    pub(super) fn reject(&mut self, points: usize, message: String) {
        self.rejected = self
            .rejected
            .saturating_add(i64::try_from(points).unwrap_or(i64::MAX));
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        } else {
            self.omitted_messages += 1;
        }
    }

    pub(super) fn finish(self) -> OtlpTranslation {
        let mut error_message = self.messages.join("; ");
        if self.omitted_messages > 0 {
            error_message.push_str(&format!("; and {} more problems", self.omitted_messages));
        }
        OtlpTranslation {
            batch: self.batch,
            rejected_points: self.rejected,
            error_message,
        }
    }
}

pub(super) fn dropped(n: usize) -> String {
    if n == 1 {
        "1 data point dropped".into()
    } else {
        format!("{n} data points dropped")
    }
}
