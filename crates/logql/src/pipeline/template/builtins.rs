//! The functions a template can call.

use super::funcs::{TVal, from_json, printf};
use super::{Ctx, err};

const FUNCS: &[&str] = &[
    "__line__",
    "__timestamp__",
    "ToLower",
    "ToUpper",
    "lower",
    "upper",
    "title",
    "Title",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trimSpace",
    "TrimSpace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "replace",
    "Replace",
    "substr",
    "trunc",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "repeat",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "default",
    "printf",
    "print",
    "len",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "int",
    "float64",
    "fromJson",
    "count",
    "alignLeft",
    "alignRight",
    "indent",
    "nindent",
    "unixEpoch",
    "unixEpochMillis",
    "unixEpochNanos",
    "index",
];

/// Largest string a single call may build.
const MAX_GROWTH: usize = 16 << 20;

pub(crate) fn exists(name: &str) -> bool {
    FUNCS.contains(&name)
}

fn arity(name: &str, args: &[TVal], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(err(&format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

pub(super) fn call(name: &str, a: &[TVal], ctx: &Ctx<'_>) -> Result<TVal, String> {
    let s = |i: usize| a.get(i).map(TVal::text).unwrap_or_default();
    let fixed = |n: usize| arity(name, a, n);
    let num2 = |f: fn(f64, f64) -> f64| -> Result<TVal, String> {
        fixed(2)?;
        Ok(TVal::Float(f(a[0].float(), a[1].float())))
    };
    let int2 = |f: fn(i64, i64) -> Option<i64>| -> Result<TVal, String> {
        fixed(2)?;
        f(a[0].int(), a[1].int())
            .map(TVal::Int)
            .ok_or_else(|| err(&format!("error calling {name}: integer divide by zero")))
    };
    // Output of a call is bounded: growth ≈ text length × replacement length.
    let grows = |text: usize, by: usize| -> Result<(), String> {
        if text.saturating_add(1).saturating_mul(by.max(1)) > MAX_GROWTH {
            return Err(err(&format!("error calling {name}: result too large")));
        }
        Ok(())
    };
    match name {
        "replace" => grows(s(2).len(), s(1).len())?,
        "regexReplaceAll" | "regexReplaceAllLiteral" => grows(s(1).len(), s(2).len())?,
        _ => {}
    }
    if name == "Replace" {
        grows(s(0).len(), s(2).len())?;
    }
    if name == "repeat" {
        grows(
            s(1).len(),
            usize::try_from(a.first().map_or(0, TVal::int)).unwrap_or(0),
        )?;
    }
    Ok(match name {
        "__line__" => TVal::Str(ctx.line.to_string()),
        "__timestamp__" | "unixEpochNanos" if a.is_empty() => TVal::Int(ctx.ts_ns),
        "ToLower" | "lower" => TVal::Str(s(0).to_lowercase()),
        "ToUpper" | "upper" => TVal::Str(s(0).to_uppercase()),
        "title" | "Title" => {
            let t = s(0);
            let mut out = String::with_capacity(t.len());
            let mut start = true;
            for c in t.chars() {
                out.extend(if start {
                    c.to_uppercase().collect::<Vec<_>>()
                } else {
                    vec![c]
                });
                start = c.is_whitespace();
            }
            TVal::Str(out)
        }
        "trim" | "trimSpace" | "TrimSpace" => TVal::Str(s(0).trim().to_string()),
        "trimAll" => TVal::Str(s(1).trim_matches(|c| s(0).contains(c)).to_string()),
        "Trim" => TVal::Str(s(0).trim_matches(|c| s(1).contains(c)).to_string()),
        "TrimLeft" => TVal::Str(s(0).trim_start_matches(|c| s(1).contains(c)).to_string()),
        "TrimRight" => TVal::Str(s(0).trim_end_matches(|c| s(1).contains(c)).to_string()),
        "trimPrefix" => TVal::Str(
            s(1).strip_prefix(&s(0))
                .map_or_else(|| s(1), str::to_string),
        ),
        "trimSuffix" => TVal::Str(
            s(1).strip_suffix(&s(0))
                .map_or_else(|| s(1), str::to_string),
        ),
        "TrimPrefix" => TVal::Str(
            s(0).strip_prefix(&s(1))
                .map_or_else(|| s(0), str::to_string),
        ),
        "TrimSuffix" => TVal::Str(
            s(0).strip_suffix(&s(1))
                .map_or_else(|| s(0), str::to_string),
        ),
        "replace" => TVal::Str(s(2).replace(&s(0), &s(1))),
        "Replace" => TVal::Str(s(0).replacen(
            &s(1),
            &s(2),
            a.get(3).map_or(usize::MAX, |n| {
                usize::try_from(n.int()).unwrap_or(usize::MAX)
            }),
        )),
        "substr" => {
            let chars: Vec<char> = s(2).chars().collect();
            let (st, en) = (
                a.first().map_or(0, TVal::int),
                a.get(1).map_or(0, TVal::int),
            );
            let st = usize::try_from(st).unwrap_or(0).min(chars.len());
            let en = if en < 0 {
                chars.len()
            } else {
                usize::try_from(en).unwrap_or(0).min(chars.len())
            };
            TVal::Str(if st < en {
                chars[st..en].iter().collect()
            } else {
                String::new()
            })
        }
        "trunc" => {
            let n = a.first().map_or(0, TVal::int);
            let chars: Vec<char> = s(1).chars().collect();
            let n = usize::try_from(n.unsigned_abs())
                .unwrap_or(usize::MAX)
                .min(chars.len());
            TVal::Str(if a.first().map_or(0, TVal::int) >= 0 {
                chars[..n].iter().collect()
            } else {
                chars[chars.len() - n..].iter().collect()
            })
        }
        "contains" => TVal::Bool(s(1).contains(&s(0))),
        "hasPrefix" => TVal::Bool(s(1).starts_with(&s(0))),
        "hasSuffix" => TVal::Bool(s(1).ends_with(&s(0))),
        "repeat" => TVal::Str(
            s(1).repeat(
                usize::try_from(a.first().map_or(0, TVal::int))
                    .unwrap_or(0)
                    .min(10_000),
            ),
        ),
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            fixed(3)?;
            let re =
                regex::Regex::new(&s(0)).map_err(|e| err(&format!("error calling {name}: {e}")))?;
            let text = s(1);
            let rep = s(2);
            TVal::Str(if name == "regexReplaceAll" {
                re.replace_all(&text, rep.as_str()).into_owned()
            } else {
                re.replace_all(&text, regex::NoExpand(&rep)).into_owned()
            })
        }
        "default" => {
            let given = a.get(1).filter(|v| v.truthy()).cloned();
            given.unwrap_or_else(|| a.first().cloned().unwrap_or(TVal::Nil))
        }
        "printf" => TVal::Str(printf(a)),
        "print" => TVal::Str(a.iter().map(TVal::text).collect::<Vec<_>>().join("")),
        "len" => TVal::Int(match a.first() {
            Some(TVal::List(l)) => l.len() as i64,
            Some(TVal::Map(m)) => m.len() as i64,
            Some(v) => v.text().len() as i64,
            None => 0,
        }),
        "count" => TVal::Int(if s(0).is_empty() {
            0
        } else {
            s(1).matches(&s(0)).count() as i64
        }),
        "eq" => TVal::Bool(a.len() > 1 && a[1..].iter().any(|o| a[0].equals(o))),
        "ne" => TVal::Bool(a.len() == 2 && !a[0].equals(&a[1])),
        "lt" | "le" | "gt" | "ge" => {
            fixed(2)?;
            let ord = match (&a[0], &a[1]) {
                (TVal::Str(x), TVal::Str(y)) => x.cmp(y),
                (x, y) => x
                    .float()
                    .partial_cmp(&y.float())
                    .unwrap_or(std::cmp::Ordering::Equal),
            };
            use std::cmp::Ordering::*;
            TVal::Bool(match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            })
        }
        "and" => a
            .iter()
            .find(|v| !v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(TVal::Nil),
        "or" => a
            .iter()
            .find(|v| v.truthy())
            .or(a.last())
            .cloned()
            .unwrap_or(TVal::Nil),
        "not" => TVal::Bool(!a.first().is_some_and(|v| v.truthy())),
        "add" => TVal::Int(a.iter().fold(0i64, |x, v| x.wrapping_add(v.int()))),
        "mul" => TVal::Int(a.iter().fold(1i64, |x, v| x.wrapping_mul(v.int()))),
        "sub" => int2(|x, y| Some(x.wrapping_sub(y)))?,
        "div" => int2(|x, y| x.checked_div(y))?,
        "mod" => int2(|x, y| x.checked_rem(y))?,
        "addf" => TVal::Float(a.iter().map(TVal::float).sum()),
        "mulf" => TVal::Float(a.iter().map(TVal::float).product()),
        "subf" => num2(|x, y| x - y)?,
        "divf" => num2(|x, y| x / y)?,
        "max" => TVal::Int(a.iter().map(TVal::int).max().unwrap_or(0)),
        "min" => TVal::Int(a.iter().map(TVal::int).min().unwrap_or(0)),
        "maxf" => TVal::Float(a.iter().map(TVal::float).fold(f64::NEG_INFINITY, f64::max)),
        "minf" => TVal::Float(a.iter().map(TVal::float).fold(f64::INFINITY, f64::min)),
        "ceil" => TVal::Float(a.first().map_or(0.0, TVal::float).ceil()),
        "floor" => TVal::Float(a.first().map_or(0.0, TVal::float).floor()),
        "round" => {
            let p = a.get(1).map_or(0, TVal::int).clamp(0, 15) as i32;
            let m = 10f64.powi(p);
            TVal::Float((a.first().map_or(0.0, TVal::float) * m).round() / m)
        }
        "int" => TVal::Int(a.first().map_or(0, TVal::int)),
        "float64" => TVal::Float(a.first().map_or(0.0, TVal::float)),
        "fromJson" => {
            serde_json::from_str::<serde_json::Value>(&s(0)).map_or(TVal::Nil, |v| from_json(&v))
        }
        "alignLeft" | "alignRight" => {
            let n = usize::try_from(a.first().map_or(0, TVal::int))
                .unwrap_or(0)
                .min(10_000);
            let t: Vec<char> = s(1).chars().collect();
            let fitted: String = if t.len() >= n {
                t[..n].iter().collect()
            } else if name == "alignLeft" {
                format!("{:<n$}", s(1))
            } else {
                format!("{:>n$}", s(1))
            };
            TVal::Str(fitted)
        }
        "indent" | "nindent" => {
            let pad = " ".repeat(
                usize::try_from(a.first().map_or(0, TVal::int))
                    .unwrap_or(0)
                    .min(1000),
            );
            let body = s(1)
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            TVal::Str(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "unixEpoch" => TVal::Int(ctx.ts_ns.div_euclid(1_000_000_000)),
        "unixEpochMillis" => TVal::Int(ctx.ts_ns.div_euclid(1_000_000)),
        "unixEpochNanos" => TVal::Int(ctx.ts_ns),
        "index" => a
            .iter()
            .skip(1)
            .fold(a.first().cloned().unwrap_or(TVal::Nil), |acc, k| {
                match (&acc, k) {
                    (TVal::List(l), k) => usize::try_from(k.int())
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .unwrap_or(TVal::Nil),
                    (acc, k) => acc.field(&k.text(), ctx),
                }
            }),
        _ => return Err(err(&format!("function {name:?} not defined"))),
    })
}
