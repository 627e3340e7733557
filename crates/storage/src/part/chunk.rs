//! Encoding of one series' samples inside a part block (format in
//! `docs/formats/metrics-part-v2.md`, section "series chunk").
//!
//! Timestamps are delta-of-delta varints. Values are turned into decimal
//! integers with one shared exponent when that round-trips exactly (most
//! scraped values are counters, integers or short decimals), then stored as
//! delta or delta-of-delta varints, whichever is smaller; values that do not
//! round-trip fall back to XOR with the previous value. Non-finite values
//! (NaN, stale markers, infinities) are kept bit-exact as exceptions. The
//! block holding many chunks is then zstd-compressed.

use miru_model::Sample;

use crate::codec::{CodecError, Reader, put_uvarint, put_varint, unzigzag, uvarint_len, zigzag};

const VALUES_XOR: u8 = 0;
const VALUES_DECIMAL_DELTA: u8 = 1;
const VALUES_DECIMAL_DOD: u8 = 2;

/// Largest decimal exponent tried when looking for an exact integer form.
const MAX_DECIMAL_SCALE: i32 = 12;
/// Integers above this are not exactly representable as f64 anyway.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Appends the encoding of `samples` (sorted by time, unique) to `out`.
pub(crate) fn encode(samples: &[Sample], out: &mut Vec<u8>) {
    debug_assert!(
        samples
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms),
        "BUG: chunk samples not strictly increasing"
    );
    put_uvarint(out, samples.len() as u64);
    if samples.is_empty() {
        return;
    }
    encode_timestamps(samples, out);
    encode_values(samples, out);
}

fn encode_timestamps(samples: &[Sample], out: &mut Vec<u8>) {
    let mut prev = samples[0].timestamp_ms;
    put_varint(out, prev);
    let mut prev_delta = 0i64;
    for (i, s) in samples.iter().enumerate().skip(1) {
        let delta = s.timestamp_ms.wrapping_sub(prev);
        if i == 1 {
            put_varint(out, delta);
        } else {
            put_varint(out, delta.wrapping_sub(prev_delta));
        }
        prev_delta = delta;
        prev = s.timestamp_ms;
    }
}

fn encode_values(samples: &[Sample], out: &mut Vec<u8>) {
    let exceptions: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| is_exception(s.value))
        .map(|(i, _)| i)
        .collect();
    if let Some((scale, ints)) = decimal_form(samples) {
        let delta_len: usize = ints
            .windows(2)
            .map(|w| uvarint_len(zigzag(w[1].wrapping_sub(w[0]))))
            .sum();
        let dod_len: usize = ints
            .windows(3)
            .map(|w| {
                uvarint_len(zigzag(
                    (w[2].wrapping_sub(w[1])).wrapping_sub(w[1].wrapping_sub(w[0])),
                ))
            })
            .sum();
        let use_dod = ints.len() > 2 && dod_len < delta_len;
        out.push(if use_dod {
            VALUES_DECIMAL_DOD
        } else {
            VALUES_DECIMAL_DELTA
        });
        put_varint(out, i64::from(scale));
        put_exceptions(samples, &exceptions, out);
        put_varint(out, ints[0]);
        let mut prev_delta = 0i64;
        for i in 1..ints.len() {
            let delta = ints[i].wrapping_sub(ints[i - 1]);
            if use_dod && i > 1 {
                put_varint(out, delta.wrapping_sub(prev_delta));
            } else {
                put_varint(out, delta);
            }
            prev_delta = delta;
        }
    } else {
        out.push(VALUES_XOR);
        let mut prev = 0u64;
        for s in samples {
            let bits = s.value.to_bits();
            out.extend_from_slice(&(bits ^ prev).to_le_bytes());
            prev = bits;
        }
    }
}

/// Values the decimal form cannot carry bit-exactly: NaNs (stale markers
/// among them), infinities and -0.0 (an integer has no negative zero).
fn is_exception(v: f64) -> bool {
    !v.is_finite() || v.to_bits() == (-0.0f64).to_bits()
}

fn put_exceptions(samples: &[Sample], exceptions: &[usize], out: &mut Vec<u8>) {
    put_uvarint(out, exceptions.len() as u64);
    let mut prev = 0usize;
    for &i in exceptions {
        put_uvarint(out, (i - prev) as u64);
        out.extend_from_slice(&samples[i].value.to_bits().to_le_bytes());
        prev = i;
    }
}

/// Finds the smallest scale `k` such that every finite value equals
/// `m / 10^k` for an integer `m`, and returns the integers. Non-finite
/// values take the previous integer (they are stored as exceptions).
fn decimal_form(samples: &[Sample]) -> Option<(i32, Vec<i64>)> {
    let mut scale = 0i32;
    for s in samples.iter().filter(|s| !is_exception(s.value)) {
        while !exact_at(s.value, scale) {
            scale += 1;
            if scale > MAX_DECIMAL_SCALE {
                return None;
            }
        }
    }
    let p = 10f64.powi(scale);
    let mut ints = Vec::with_capacity(samples.len());
    let mut prev = 0i64;
    for s in samples {
        if !is_exception(s.value) {
            let m = (s.value * p).round();
            if m.abs() > MAX_EXACT_INT || (m / p).to_bits() != s.value.to_bits() {
                return None;
            }
            prev = m as i64;
        }
        ints.push(prev);
    }
    Some((scale, ints))
}

fn exact_at(v: f64, scale: i32) -> bool {
    let p = 10f64.powi(scale);
    let m = (v * p).round();
    // Bits, not `==`: -0.0 must not become +0.0.
    m.abs() <= MAX_EXACT_INT && (m / p).to_bits() == v.to_bits()
}

/// Reads the integers of values `0..hi` (deltas, or deltas of deltas with
/// `DOD`) and stores values `lo..hi` at `scale` in `values[..hi - lo]`. As
/// for timestamps, the first varint is the first integer and the first
/// delta is the first delta-of-delta added to zero, so the loop does not
/// branch on the position.
fn decimal_values<const DOD: bool>(
    r: &mut Reader<'_>,
    scale: i64,
    lo: usize,
    hi: usize,
    values: &mut [Sample],
) -> Result<(), CodecError> {
    let p = 10f64.powi(scale as i32);
    let mut m = r.varint()?;
    let mut delta = 0i64;
    #[inline(always)]
    fn advance<const DOD: bool>(
        r: &mut Reader<'_>,
        m: &mut i64,
        delta: &mut i64,
    ) -> Result<i64, CodecError> {
        let d = r.varint()?;
        *delta = if DOD { delta.wrapping_add(d) } else { d };
        *m = m.wrapping_add(*delta);
        Ok(*m)
    }
    for _ in 0..lo {
        advance::<DOD>(r, &mut m, &mut delta)?;
    }
    let Some((first, rest)) = values[..hi - lo].split_first_mut() else {
        return Ok(());
    };
    first.value = at_scale(m, scale, p);
    // Eight values at once while their varints are one byte each.
    let mut chunks = rest.chunks_exact_mut(8);
    for eight in &mut chunks {
        if let Some(w) = r.eight_small_varints() {
            r.skip_bytes(8);
            for (k, v) in eight.iter_mut().enumerate() {
                let d = unzigzag((w >> (8 * k)) & 0x7f);
                delta = if DOD { delta.wrapping_add(d) } else { d };
                m = m.wrapping_add(delta);
                v.value = at_scale(m, scale, p);
            }
        } else {
            for v in eight {
                v.value = at_scale(advance::<DOD>(r, &mut m, &mut delta)?, scale, p);
            }
        }
    }
    for v in chunks.into_remainder() {
        v.value = at_scale(advance::<DOD>(r, &mut m, &mut delta)?, scale, p);
    }
    Ok(())
}

/// The value of integer `m` at decimal `scale` (`p` = 10^scale). Integers
/// (scale 0, most counters) need no division: x / 1.0 is x, bit for bit.
#[inline(always)]
fn at_scale(m: i64, scale: i64, p: f64) -> f64 {
    if scale == 0 { m as f64 } else { m as f64 / p }
}

/// The timestamp after `t`, given the running delta.
#[inline(always)]
fn next_timestamp(r: &mut Reader<'_>, t: i64, delta: &mut i64) -> Result<i64, CodecError> {
    let at = r.pos();
    *delta = delta.wrapping_add(r.varint()?);
    let next = t.wrapping_add(*delta);
    if next <= t {
        return Err(CodecError::Range {
            what: "timestamp not after the previous one",
            at,
            value: next as u64,
        });
    }
    Ok(next)
}

/// Decodes one chunk, appending samples within `[mint, maxt]` to `out`.
/// Returns the number of samples the chunk holds.
pub(crate) fn decode(
    r: &mut Reader<'_>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<usize, CodecError> {
    let base = out.len();
    let res = decode_onto(r, mint, maxt, out);
    if res.is_err() {
        // Nothing of a corrupt chunk stays behind.
        out.truncate(base);
    }
    res
}

fn decode_onto(
    r: &mut Reader<'_>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<usize, CodecError> {
    // Every sample takes at least one byte, so a count larger than what is
    // left is corrupt; checking it first keeps allocations bounded.
    let n = r.len("sample count", r.remaining())?;
    if n == 0 {
        return Ok(0);
    }
    // Timestamps are strictly increasing (the format says so; anything else
    // is corrupt), so the samples in `[mint, maxt]` are one run `lo..hi`.
    // Only that run is stored, the timestamps after it are skipped without
    // decoding, and values are read only up to `hi` and converted only
    // from `lo`: a short window over a long chunk (an instant query over a
    // compacted part) costs little more than the window. The two phases
    // (before the window, in it) are loops of their own, and the first
    // delta is the first delta-of-delta added to zero, so neither loop
    // branches on the sample's position.
    let base = out.len();
    let mut t = r.varint()?;
    let mut delta = 0i64;
    let mut i = 0usize;
    let mut lo = n;
    let mut hi = n;
    loop {
        if t > maxt {
            hi = i;
            r.skip_varints(n - i - 1)?;
            break;
        }
        if t >= mint {
            lo = i;
            break;
        }
        i += 1;
        if i == n {
            break;
        }
        t = next_timestamp(r, t, &mut delta)?;
    }
    if lo < n {
        // Room for the rest of the window, estimated from the spacing when
        // it is known (scrapes are regular), instead of growing the vector
        // sample by sample; never more than the chunk holds.
        let left = if delta > 0 {
            usize::try_from(maxt.saturating_sub(t) / delta).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        };
        out.reserve((n - lo).min(left.saturating_add(1)));
        out.push(Sample {
            timestamp_ms: t,
            value: 0.0,
        });
        loop {
            i += 1;
            if i == n {
                break;
            }
            // Eight timestamps at once while their varints are one byte
            // each (regular scrapes: deltas of deltas within ±63 ms) and
            // all eight are in the window; else one at a time, which also
            // reports what is wrong.
            if n - i >= 8
                && let Some(w) = r.eight_small_varints()
            {
                let (mut tt, mut dd, mut increasing) = (t, delta, true);
                let mut eight = [Sample {
                    timestamp_ms: 0,
                    value: 0.0,
                }; 8];
                for (k, s) in eight.iter_mut().enumerate() {
                    dd = dd.wrapping_add(unzigzag((w >> (8 * k)) & 0x7f));
                    let next = tt.wrapping_add(dd);
                    increasing &= next > tt;
                    tt = next;
                    s.timestamp_ms = tt;
                }
                if increasing && tt <= maxt {
                    r.skip_bytes(8);
                    out.extend_from_slice(&eight);
                    (t, delta) = (tt, dd);
                    i += 7;
                    continue;
                }
            }
            t = next_timestamp(r, t, &mut delta)?;
            if t > maxt {
                hi = i;
                r.skip_varints(n - i - 1)?;
                break;
            }
            out.push(Sample {
                timestamp_ms: t,
                value: 0.0,
            });
        }
    }
    if lo >= hi {
        return Ok(n);
    }
    let values = &mut out[base..];
    match r.u8()? {
        VALUES_XOR => {
            let mut prev = 0u64;
            for i in 0..hi {
                prev ^= r.u64_le()?;
                if i >= lo {
                    values[i - lo].value = f64::from_bits(prev);
                }
            }
        }
        enc @ (VALUES_DECIMAL_DELTA | VALUES_DECIMAL_DOD) => {
            let at = r.pos();
            let scale = r.varint()?;
            if !(0..=i64::from(MAX_DECIMAL_SCALE)).contains(&scale) {
                return Err(CodecError::Range {
                    what: "decimal scale",
                    at,
                    value: scale as u64,
                });
            }
            let n_exc = r.len("exception count", n.min(r.remaining() / 8))?;
            let mut exceptions = Vec::with_capacity(n_exc);
            let mut idx = 0usize;
            for _ in 0..n_exc {
                idx = idx.saturating_add(r.len("exception index", n)?);
                exceptions.push((idx, f64::from_bits(r.u64_le()?)));
            }
            if enc == VALUES_DECIMAL_DOD {
                decimal_values::<true>(r, scale, lo, hi, values)?;
            } else {
                decimal_values::<false>(r, scale, lo, hi, values)?;
            }
            for (i, v) in exceptions {
                if (lo..hi).contains(&i) {
                    values[i - lo].value = v;
                }
            }
        }
        other => {
            return Err(CodecError::Range {
                what: "value encoding",
                at: r.pos() - 1,
                value: u64::from(other),
            });
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn round_trip(samples: &[Sample]) -> Vec<Sample> {
        let mut buf = Vec::new();
        encode(samples, &mut buf);
        let mut out = Vec::new();
        let mut r = Reader::new(&buf);
        decode(&mut r, i64::MIN, i64::MAX, &mut out).unwrap();
        assert!(r.is_empty());
        out
    }

    fn same_bits(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.timestamp_ms == y.timestamp_ms && x.value.to_bits() == y.value.to_bits()
            })
    }

    #[test]
    fn counters_compress_small() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample {
                timestamp_ms: 1_700_000_000_000 + i * 15_000,
                value: (1000 + i * 37) as f64,
            })
            .collect();
        let mut buf = Vec::new();
        encode(&samples, &mut buf);
        // One byte per timestamp and per value before zstd; regular
        // series then compress to a small fraction of a byte per sample.
        assert!(buf.len() <= 2 * samples.len() + 16, "{} bytes", buf.len());
        let z = zstd::bulk::compress(&buf, 3).unwrap();
        assert!(z.len() * 3 < samples.len(), "{} bytes after zstd", z.len());
        assert!(same_bits(&round_trip(&samples), &samples));
    }

    #[test]
    fn special_values_are_bit_exact() {
        let vals = [
            1.5,
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            f64::INFINITY,
            -0.25,
            0.1,
            1e300,
        ];
        let samples: Vec<Sample> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                timestamp_ms: i as i64,
                value: v,
            })
            .collect();
        assert!(same_bits(&round_trip(&samples), &samples));
        assert!(same_bits(&round_trip(&samples[..3]), &samples[..3]));
        let zeros: Vec<Sample> = [0.0, -0.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                timestamp_ms: i as i64,
                value: v,
            })
            .collect();
        assert!(
            same_bits(&round_trip(&zeros), &zeros),
            "-0.0 must round-trip"
        );
    }

    #[test]
    fn corrupt_count_does_not_allocate() {
        // 2^28 samples announced in a 5-byte chunk (found by the fuzzer).
        let mut out = Vec::new();
        let r = decode(
            &mut Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            i64::MIN,
            i64::MAX,
            &mut out,
        );
        assert!(r.is_err());
    }

    proptest! {
        #[test]
        fn any_series_round_trips(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in proptest::collection::vec((1i64..100_000, any::<f64>()), 0..200),
            decimals in proptest::collection::vec(-1_000_000i64..1_000_000, 0..50),
        ) {
            let mut t = start;
            let mut samples: Vec<Sample> = steps.iter().map(|&(d, v)| { t += d; Sample { timestamp_ms: t, value: v } }).collect();
            prop_assert!(same_bits(&round_trip(&samples), &samples));
            for (i, d) in decimals.iter().enumerate() {
                samples.push(Sample { timestamp_ms: t + 1 + i as i64, value: *d as f64 / 100.0 });
            }
            let samples: Vec<Sample> = samples.into_iter().filter(|s| s.value.is_finite()).collect();
            prop_assert!(same_bits(&round_trip(&samples), &samples));
        }

        #[test]
        fn a_window_decodes_to_the_samples_in_it(
            values in proptest::collection::vec(prop_oneof![
                (-1_000_000i64..1_000_000).prop_map(|d| d as f64 / 100.0),
                any::<f64>(),
            ], 1..120),
            lo in 0i64..130,
            len in 0i64..130,
            prefix in proptest::collection::vec(any::<u8>(), 0..3),
            jitter in proptest::collection::vec(0i64..40_000, 120),
        ) {
            // Regular spacing (one-byte deltas of deltas) or, in some
            // cases, gaps of up to 40 s (deltas of several bytes).
            let spaced = jitter[0] % 2 == 0;
            let mut t = 0i64;
            let times: Vec<i64> = (0..values.len()).map(|i| { t += if spaced { 1 + jitter[i] } else { 10 }; t }).collect();
            // Values as drawn (mostly the XOR form), or decimals only
            // (the delta forms), with two places or none.
            let form = jitter[1] % 4;
            let value = |i: usize, v: f64| match form {
                0 => v,
                1 => (jitter[i] as f64 - 20_000.0) * (i as f64 + 1.0) / 100.0,
                2 => (jitter[i] * (i as i64 + 1)) as f64,
                // A counter with small steps: one-byte varints.
                _ => (jitter[..=i].iter().map(|j| j % 50).sum::<i64>()) as f64 / 10.0,
            };
            let samples: Vec<Sample> = values.iter().zip(&times).enumerate()
                .map(|(i, (&v, &t))| Sample { timestamp_ms: t, value: value(i, v) })
                .collect();
            let mut buf = Vec::new();
            encode(&samples, &mut buf);
            let at = |k: i64| times.get(k as usize).copied().unwrap_or(t + k);
            let (mint, maxt) = (at(lo) - 5, at(lo + len));
            // Appends after what `out` already holds.
            let mut out: Vec<Sample> = prefix.iter().map(|&b| Sample { timestamp_ms: -1, value: b as f64 }).collect();
            let n = decode(&mut Reader::new(&buf), mint, maxt, &mut out).unwrap();
            prop_assert_eq!(n, samples.len());
            let want: Vec<Sample> = prefix.iter().map(|&b| Sample { timestamp_ms: -1, value: b as f64 })
                .chain(samples.iter().copied().filter(|s| s.timestamp_ms >= mint && s.timestamp_ms <= maxt))
                .collect();
            prop_assert!(same_bits(&out, &want));
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            let _ = decode(&mut Reader::new(&b), i64::MIN, i64::MAX, &mut out);
        }
    }
}
