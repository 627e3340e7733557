//! Label filters with Loki's typed comparisons and error rules: a string
//! matcher reads `__error__` and absent labels as ""; a number, duration
//! or bytes filter drops a line without the label, and on a value that
//! does not convert records `LabelFilterErr` (the first failure owns the
//! details) and keeps the line; `ip()` keeps a line that already failed.

use super::ip::IpPattern;
use super::labels::LabelSet;
use crate::syntax::ast::{CmpOp, LabelFilter};
use crate::syntax::literals::{go_duration_error, parse_bytes, parse_go_duration, parse_go_float};

pub(crate) const LABEL_FILTER_ERR: &str = "LabelFilterErr";

pub(crate) enum Compiled {
    And(Box<Compiled>, Box<Compiled>),
    Or(Box<Compiled>, Box<Compiled>),
    Matcher(miru_model::Matcher),
    Typed {
        name: String,
        op: CmpOp,
        value: f64,
        kind: Kind,
    },
    Ip {
        name: String,
        negate: bool,
        pattern: IpPattern,
    },
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Number,
    Duration,
    Bytes,
}

pub(crate) fn compile(f: &LabelFilter) -> Result<Compiled, String> {
    Ok(match f {
        LabelFilter::And(a, b) => Compiled::And(Box::new(compile(a)?), Box::new(compile(b)?)),
        LabelFilter::Or(a, b) => Compiled::Or(Box::new(compile(a)?), Box::new(compile(b)?)),
        LabelFilter::Matcher(m) => Compiled::Matcher(m.clone()),
        LabelFilter::Number { name, op, value } => Compiled::Typed {
            name: name.clone(),
            op: *op,
            value: *value,
            kind: Kind::Number,
        },
        LabelFilter::Duration { name, op, value } => Compiled::Typed {
            name: name.clone(),
            op: *op,
            value: *value,
            kind: Kind::Duration,
        },
        LabelFilter::Bytes { name, op, value } => Compiled::Typed {
            name: name.clone(),
            op: *op,
            value: *value,
            kind: Kind::Bytes,
        },
        LabelFilter::Ip {
            name,
            negate,
            pattern,
        } => Compiled::Ip {
            name: name.clone(),
            negate: *negate,
            pattern: IpPattern::parse(pattern)
                .ok_or_else(|| format!("ip: invalid pattern: {pattern:?}"))?,
        },
    })
}

fn convert(kind: Kind, v: &str) -> Result<f64, String> {
    match kind {
        Kind::Number => parse_go_float(v)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {v:?}: invalid syntax")),
        Kind::Duration => parse_go_duration(v)
            .map(|ns| ns / 1e9)
            .map_err(|e| go_duration_error(v, e)),
        Kind::Bytes => parse_bytes(v),
    }
}

impl Compiled {
    pub(crate) fn keep(&self, labels: &mut LabelSet) -> bool {
        match self {
            // Both sides always run (an error on the right still counts).
            Compiled::And(a, b) => {
                let l = a.keep(labels);
                let r = b.keep(labels);
                l && r
            }
            Compiled::Or(a, b) => a.keep(labels) || b.keep(labels),
            Compiled::Matcher(m) => m.matches_value(labels.get_any(&m.name).unwrap_or("")),
            Compiled::Typed {
                name,
                op,
                value,
                kind,
            } => {
                let Some(v) = labels.get(name) else {
                    return false;
                };
                match convert(*kind, v) {
                    Ok(x) => op.apply(x, *value),
                    Err(e) => {
                        labels.set_error(LABEL_FILTER_ERR, e);
                        true
                    }
                }
            }
            Compiled::Ip {
                name,
                negate,
                pattern,
            } => {
                if labels.has_error() {
                    return true;
                }
                let Some(v) = labels.get(name) else {
                    return false;
                };
                pattern.matches_in(v) != *negate
            }
        }
    }
}
