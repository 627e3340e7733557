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
    let (mut n, mut sy, mut cy, mut sxy, mut cxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = samples[0].1;
    let mut const_y = true;
    for (i, (&(_, v), &x)) in samples.iter().zip(&t.xs).enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let sx = t.sx + t.cx;
    let sy = sy + cy;
    let sxy = sxy + cxy;
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
}

impl TimeSumsCache {
    /// The time sums for `samples` at step `step` with `intercept`.
    pub(crate) fn get(
        &mut self,
        step: usize,
        samples: &[(i64, f64)],
        intercept: i64,
    ) -> Cow<'_, TimeSums> {
        if self.steps.len() <= step {
            self.steps.resize(step + 1, None);
        }
        if self.steps[step]
            .as_ref()
            .is_some_and(|t| t.fits(samples, intercept))
        {
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
                let (a, b) = reference(&samples, intercept);
                let (c, d) = fit(&samples, &cache.get(0, &samples, intercept));
                prop_assert_eq!(a.to_bits(), c.to_bits());
                prop_assert_eq!(b.to_bits(), d.to_bits());
            }
        }
    }
}
