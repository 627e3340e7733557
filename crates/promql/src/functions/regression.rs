//! The least-squares fit behind `deriv` and `predict_linear`, computed as
//! Prometheus does (compensated sums in sample order), with the sums over
//! the sample times split out: series scraped together share them, so a
//! range query computes them once per step and timestamp set, not once per
//! series (same floats, same order of operations: same results, bit for bit).

use std::borrow::Cow;

use super::kahan_inc;

/// The sums over a window's sample times for one intercept time: the `x`
/// of every sample (seconds from the intercept) and the compensated sums
/// of `x` and `x²`.
#[derive(Debug, Clone)]
pub(crate) struct TimeSums {
    intercept: i64,
    times: Vec<i64>,
    xs: Vec<f64>,
    sx: f64,
    cx: f64,
    sx2: f64,
    cx2: f64,
}

impl TimeSums {
    pub(crate) fn new(samples: &[(i64, f64)], intercept: i64) -> Self {
        let (mut sx, mut cx, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
        let mut xs = Vec::with_capacity(samples.len());
        for &(t, _) in samples {
            let x = (t - intercept) as f64 / 1e3;
            (sx, cx) = kahan_inc(x, sx, cx);
            (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
            xs.push(x);
        }
        TimeSums {
            intercept,
            times: samples.iter().map(|s| s.0).collect(),
            xs,
            sx,
            cx,
            sx2,
            cx2,
        }
    }

    fn fits(&self, samples: &[(i64, f64)], intercept: i64) -> bool {
        self.intercept == intercept
            && self.times.len() == samples.len()
            && self.times.iter().zip(samples).all(|(t, s)| *t == s.0)
    }
}

/// Least-squares fit of `samples` (at least one); returns the slope and
/// the value at `intercept_time`.
#[cfg(test)]
pub(crate) fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    fit(samples, &TimeSums::new(samples, intercept_time))
}

/// The least-squares fit of `samples` (at least one) whose times gave `t`:
/// the slope and the value at `t`'s intercept time.
pub(crate) fn fit(samples: &[(i64, f64)], t: &TimeSums) -> (f64, f64) {
    debug_assert_eq!(samples.len(), t.xs.len());
    let mut v = ValueSums::default();
    for (&(_, y), &x) in samples.iter().zip(&t.xs) {
        v.add(y, x);
    }
    finish(samples, &v, t)
}

/// How many windows [`fit_many`] computes at once.
pub(crate) const FIT_LANES: usize = 4;

/// The fits of [`FIT_LANES`] windows of one series, each given as the
/// range of its samples in `samples` and the time sums of their times:
/// the same sums in the same order as [`fit`] computes for each window
/// alone, so the same bits. A window's chain of compensated additions is
/// latency-bound (each addition waits for the one before); run side by
/// side, the windows' chains overlap in the processor. Consecutive steps'
/// windows mostly share their samples, so one pass reads each sample once
/// for all of them.
pub(crate) fn fit_many(
    samples: &[(i64, f64)],
    windows: [(usize, usize); FIT_LANES],
    t: [&TimeSums; FIT_LANES],
) -> [(f64, f64); FIT_LANES] {
    let mut v = Lanes::default();
    let lo = windows.iter().map(|w| w.0).min().unwrap_or(0);
    let hi = windows.iter().map(|w| w.1).max().unwrap_or(0);
    // Every window holds the samples `[all_lo, all_hi)`: there, no test
    // of which window a sample belongs to.
    let all_lo = windows.iter().map(|w| w.0).max().unwrap_or(0);
    let all_hi = windows.iter().map(|w| w.1).min().unwrap_or(0).max(all_lo);
    let some = |j: usize, v: &mut Lanes| {
        for k in 0..FIT_LANES {
            let (a, b) = windows[k];
            if a <= j && j < b {
                v.add_one(k, samples[j].1, t[k].xs[j - a]);
            }
        }
    };
    for j in lo..all_lo {
        some(j, &mut v);
    }
    if all_lo < all_hi {
        let n = all_hi - all_lo;
        let xs: [&[f64]; FIT_LANES] =
            std::array::from_fn(|k| &t[k].xs[all_lo - windows[k].0..][..n]);
        for (i, &(_, y)) in samples[all_lo..all_hi].iter().enumerate() {
            v.add_all(y, std::array::from_fn(|k| xs[k][i]));
        }
    }
    for j in all_hi..hi {
        some(j, &mut v);
    }
    std::array::from_fn(|k| {
        let sums = ValueSums {
            sy: v.sy[k],
            cy: v.cy[k],
            sxy: v.sxy[k],
            cxy: v.cxy[k],
        };
        finish(&samples[windows[k].0..windows[k].1], &sums, t[k])
    })
}

/// [`ValueSums`] of [`FIT_LANES`] windows, laid out lane by lane so that
/// the compiler can keep each sum of all windows in vector registers.
#[derive(Debug, Default)]
struct Lanes {
    sy: [f64; FIT_LANES],
    cy: [f64; FIT_LANES],
    sxy: [f64; FIT_LANES],
    cxy: [f64; FIT_LANES],
}

impl Lanes {
    #[inline(always)]
    fn add_one(&mut self, k: usize, y: f64, x: f64) {
        (self.sy[k], self.cy[k]) = kahan_inc(y, self.sy[k], self.cy[k]);
        (self.sxy[k], self.cxy[k]) = kahan_inc(x * y, self.sxy[k], self.cxy[k]);
    }

    // Lane-indexed loops over fixed-size arrays: the shape the compiler
    // turns into vector instructions.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn add_all(&mut self, y: f64, x: [f64; FIT_LANES]) {
        for k in 0..FIT_LANES {
            (self.sy[k], self.cy[k]) = kahan_inc(y, self.sy[k], self.cy[k]);
        }
        for k in 0..FIT_LANES {
            (self.sxy[k], self.cxy[k]) = kahan_inc(x[k] * y, self.sxy[k], self.cxy[k]);
        }
    }
}

/// The compensated sums of a window's values `y` and of `x * y`.
#[derive(Debug, Default, Clone, Copy)]
struct ValueSums {
    sy: f64,
    cy: f64,
    sxy: f64,
    cxy: f64,
}

impl ValueSums {
    #[inline(always)]
    fn add(&mut self, y: f64, x: f64) {
        (self.sy, self.cy) = kahan_inc(y, self.sy, self.cy);
        (self.sxy, self.cxy) = kahan_inc(x * y, self.sxy, self.cxy);
    }
}

/// The fit from a window's sums, as Prometheus finishes it (a constant
/// window has slope 0).
fn finish(samples: &[(i64, f64)], v: &ValueSums, t: &TimeSums) -> (f64, f64) {
    debug_assert_eq!(samples.len(), t.xs.len());
    let init_y = samples[0].1;
    // Prometheus clears its flag at the first later value `!= init_y`.
    if samples[1..].iter().all(|s| s.1 == init_y) {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    // A count of ones, summed one by one as Prometheus does: exact.
    let n = samples.len() as f64;
    let sx = t.sx + t.cx;
    let sy = v.sy + v.cy;
    let sxy = v.sxy + v.cxy;
    let sx2 = t.sx2 + t.cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// Most sample times a [`TimeSumsCache`] keeps (16 bytes each): beyond
/// this, new windows are computed without being kept.
const CACHE_MAX_TIMES: usize = 1 << 18;

/// One [`TimeSums`] per step of a range query, from the last series whose
/// window at that step had other times, for the series after it.
#[derive(Debug, Default)]
pub(crate) struct TimeSumsCache {
    steps: Vec<Option<TimeSums>>,
    times: usize,
    /// The sample times of the series before (see
    /// [`TimeSumsCache::begin_series`]).
    last_series: Vec<i64>,
    /// Whether the current series has exactly `last_series`' times.
    same_times: bool,
}

impl TimeSumsCache {
    /// Starts a series whose float samples are `floats`. Series scraped
    /// together have the same times throughout: one comparison of the
    /// whole series then stands for every step's (a step's window, found
    /// from the times, is the same as the series before had there, and so
    /// is what that series left in the step's slot: sums that fit it, or
    /// none).
    pub(crate) fn begin_series(&mut self, floats: &[(i64, f64)]) {
        self.same_times = self.last_series.len() == floats.len()
            && self.last_series.iter().zip(floats).all(|(t, s)| *t == s.0);
        if !self.same_times {
            self.last_series.clear();
            self.last_series.extend(floats.iter().map(|s| s.0));
        }
    }

    /// The time sums for `samples` (a window of the series begun last) at
    /// step `step` with `intercept`.
    pub(crate) fn get(
        &mut self,
        step: usize,
        samples: &[(i64, f64)],
        intercept: i64,
    ) -> Cow<'_, TimeSums> {
        if self.steps.len() <= step {
            self.steps.resize(step + 1, None);
        }
        let same_times = self.same_times;
        if self.steps[step].as_ref().is_some_and(|t| {
            if same_times {
                t.intercept == intercept && t.times.len() == samples.len()
            } else {
                t.fits(samples, intercept)
            }
        }) {
            return Cow::Borrowed(self.steps[step].as_ref().expect("BUG: slot checked"));
        }
        let slot = &mut self.steps[step];
        let fresh = TimeSums::new(samples, intercept);
        let kept = slot.take().map_or(0, |t| t.times.len());
        self.times -= kept;
        if self.times + samples.len() > CACHE_MAX_TIMES {
            return Cow::Owned(fresh);
        }
        self.times += samples.len();
        Cow::Borrowed(slot.insert(fresh))
    }

    /// Makes step `step` hold the time sums for `samples` and `intercept`,
    /// for [`TimeSumsCache::kept`]; false when the cache has no room for
    /// them (then [`TimeSumsCache::get`] computes them each time).
    pub(crate) fn keep(&mut self, step: usize, samples: &[(i64, f64)], intercept: i64) -> bool {
        matches!(self.get(step, samples, intercept), Cow::Borrowed(_))
    }

    /// The time sums [`TimeSumsCache::keep`] kept for `step`.
    pub(crate) fn kept(&self, step: usize) -> &TimeSums {
        self.steps[step]
            .as_ref()
            .expect("BUG: time sums not kept for this step")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regression_slope() {
        let samples = vec![(0, 1.0), (1000, 3.0), (2000, 5.0)];
        let (slope, intercept) = linear_regression(&samples, 0);
        assert!((slope - 2.0).abs() < 1e-12);
        assert!((intercept - 1.0).abs() < 1e-12);
    }

    /// The fit as Prometheus writes it (and as miru did before the time
    /// sums were split out): all four sums in one loop.
    fn reference(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
        let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let init_y = samples[0].1;
        let mut const_y = true;
        for (i, &(t, v)) in samples.iter().enumerate() {
            if const_y && i > 0 && v != init_y {
                const_y = false;
            }
            n += 1.0;
            let x = (t - intercept_time) as f64 / 1e3;
            (sx, cx) = kahan_inc(x, sx, cx);
            (sy, cy) = kahan_inc(v, sy, cy);
            (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
            (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
        }
        if const_y {
            if init_y.is_infinite() {
                return (f64::NAN, f64::NAN);
            }
            return (0.0, init_y);
        }
        sx += cx;
        sy += cy;
        sxy += cxy;
        sx2 += cx2;
        let cov = sxy - sx * sy / n;
        let var = sx2 - sx * sx / n;
        let slope = cov / var;
        (slope, sy / n - slope * sx / n)
    }

    proptest! {
        /// Four windows at once give each window's bits of the one-loop
        /// fit, however the windows overlap (or not).
        #[test]
        fn windows_fitted_together_give_the_same_bits(
            values in prop::collection::vec(prop_oneof![
                6 => -1e12f64..1e12,
                1 => Just(5.0),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NAN),
            ], 1..80),
            bounds in prop::collection::vec((0usize..80, 1usize..40), FIT_LANES),
            intercepts in prop::collection::vec(0i64..2_000_000, FIT_LANES),
        ) {
            let samples: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64 * 15_000, *v))
                .collect();
            let windows: [(usize, usize); FIT_LANES] = std::array::from_fn(|k| {
                let a = bounds[k].0 % samples.len();
                (a, (a + bounds[k].1).min(samples.len()))
            });
            let sums: Vec<TimeSums> = (0..FIT_LANES)
                .map(|k| TimeSums::new(&samples[windows[k].0..windows[k].1], intercepts[k]))
                .collect();
            let got = fit_many(&samples, windows, std::array::from_fn(|k| &sums[k]));
            for k in 0..FIT_LANES {
                let (a, b) = reference(&samples[windows[k].0..windows[k].1], intercepts[k]);
                prop_assert_eq!(a.to_bits(), got[k].0.to_bits(), "window {}", k);
                prop_assert_eq!(b.to_bits(), got[k].1.to_bits(), "window {}", k);
            }
        }

        /// `predict_linear` and `deriv` over range queries (series that
        /// share their times, series that do not, gaps, NaN and infinite
        /// values, several threads) give at every step the bits of the
        /// one-loop fit over that step's window.
        #[test]
        fn range_queries_give_each_windows_fit(
            series in prop::collection::vec((
                0i64..2,
                prop::collection::vec((any::<bool>(), prop_oneof![
                    8 => -1e9f64..1e9,
                    1 => Just(3.0),
                    1 => Just(f64::INFINITY),
                    1 => Just(f64::NAN),
                ]), 1..60),
            ), 1..8),
            range_s in 1i64..20,
            step_s in 1i64..5,
            parallelism in 1usize..3,
        ) {
            let mut src = crate::MemorySource::new();
            let mut raw = Vec::new();
            for (i, (offset, points)) in series.iter().enumerate() {
                let labels = miru_model::Labels::from_pairs([
                    ("__name__", "m".to_string()),
                    ("i", format!("{i:02}")),
                ]);
                let samples: Vec<(i64, f64)> = points
                    .iter()
                    .enumerate()
                    .filter(|(_, (keep, _))| *keep)
                    .map(|(k, (_, v))| (offset * 1000 + k as i64 * 15_000, *v))
                    .collect();
                for &(t, v) in &samples {
                    src.add_float(&labels, t, v);
                }
                // The functions drop the metric name.
                let labels = miru_model::Labels::from_pairs([("i", format!("{i:02}"))]);
                raw.push((labels, samples));
            }
            let (start, end, step) = (0, 60 * 15_000, step_s * 15_000);
            let range = range_s * 15_000;
            let engine = crate::Engine::new(crate::EngineOptions {
                parallelism,
                ..crate::EngineOptions::default()
            });
            let ctx = crate::QueryContext::default();
            for f in ["predict_linear", "deriv"] {
                let q = if f == "deriv" {
                    format!("deriv(m[{}s])", range / 1000)
                } else {
                    format!("predict_linear(m[{}s], 100)", range / 1000)
                };
                let got = engine.range(&src, &q, start, end, step, &ctx).unwrap();
                let crate::Value::Matrix(got) = got.value else {
                    panic!("{q}: not a matrix");
                };
                let mut want = Vec::new();
                for (labels, samples) in &raw {
                    let mut points = Vec::new();
                    let mut ts = start;
                    while ts <= end {
                        let w: Vec<(i64, f64)> = samples
                            .iter()
                            .copied()
                            .filter(|s| s.0 > ts - range && s.0 <= ts)
                            .collect();
                        if w.len() >= 2 {
                            let v = if f == "deriv" {
                                reference(&w, w[0].0).0
                            } else {
                                let (slope, intercept) = reference(&w, ts);
                                slope * 100.0 + intercept
                            };
                            points.push((ts, v.to_bits()));
                        }
                        ts += step;
                    }
                    if !points.is_empty() {
                        want.push((labels.clone(), points));
                    }
                }
                let got: Vec<_> = got
                    .iter()
                    .map(|s| {
                        let points = s.floats.iter().map(|p| (p.0, p.1.to_bits())).collect();
                        (s.labels.clone(), points)
                    })
                    .collect();
                prop_assert_eq!(got, want, "{}", q);
            }
        }

        /// Through the cache, series sharing or not sharing times with the
        /// one before give the bits of the one-loop fit.
        #[test]
        fn cached_time_sums_give_the_same_bits(
            series in prop::collection::vec(
                (0i64..3, prop::collection::vec(-1e12f64..1e12, 1..40)), 1..20),
            intercept in 0i64..100_000,
        ) {
            let mut cache = TimeSumsCache::default();
            for (offset, values) in series {
                let samples: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (offset * 1000 + i as i64 * 15_000, *v))
                    .collect();
                cache.begin_series(&samples);
                let (a, b) = reference(&samples, intercept);
                let (c, d) = fit(&samples, &cache.get(0, &samples, intercept));
                prop_assert_eq!(a.to_bits(), c.to_bits());
                prop_assert_eq!(b.to_bits(), d.to_bits());
            }
        }
    }
}
