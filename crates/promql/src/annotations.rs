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

    pub(crate) fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (
            self.warnings.into_iter().collect(),
            self.infos.into_iter().collect(),
        )
    }
}

/// Go's `%g` for the numbers that appear in annotation texts.
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
    let exp = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    if !(-4..21).contains(&exp) {
        let s = format!("{v:e}");
        // Rust prints `1e21`, Go `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else {
        format!("{v}")
    }
}
