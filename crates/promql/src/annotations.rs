//! Warnings and infos as Prometheus words them. Each ends with the position
//! of the sub-expression that caused it.

use std::collections::BTreeSet;

use crate::position::Pos;

#[derive(Debug, Default)]
pub(crate) struct Annotations {
    warnings: BTreeSet<String>,
    infos: BTreeSet<String>,
}

impl Annotations {
    pub(crate) fn warn(&mut self, msg: impl std::fmt::Display, pos: Pos) {
        self.warnings
            .insert(format!("PromQL warning: {msg} ({pos})"));
    }

    pub(crate) fn info(&mut self, msg: impl std::fmt::Display, pos: Pos) {
        self.infos.insert(format!("PromQL info: {msg} ({pos})"));
    }

    /// Adds the annotations of `other` (raised by work done elsewhere).
    pub(crate) fn merge(&mut self, other: Annotations) {
        self.warnings.extend(other.warnings);
        self.infos.extend(other.infos);
    }

    pub(crate) fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (
            self.warnings.into_iter().collect(),
            self.infos.into_iter().collect(),
        )
    }
}

/// Go's `%g` (and `%v`) of a float64: the shortest digits that round-trip,
/// in exponent form when the decimal exponent is below -4 or at least 6
/// (`1e+06`, `1.5e-05`), plainly otherwise.
pub(crate) fn fmt_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_g;

    #[test]
    fn formats_like_go() {
        for (v, s) in [
            (0.0, "0"),
            (-0.5, "-0.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-300, "1.5e-300"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(fmt_g(v), s, "{v}");
        }
    }
}
