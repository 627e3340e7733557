//! Values and functions of the template subset (the Go builtins and the
//! sprig/Loki functions LogQL documents that need no clock or locale).

use super::builtins::call;
use super::{Arg, Ctx, Pipe, err};

#[derive(Debug, Clone)]
pub(crate) enum TVal {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<TVal>),
    Map(Vec<(String, TVal)>),
    /// The dot of the template: the line's labels.
    Labels,
}

pub(super) fn from_json(v: &serde_json::Value) -> TVal {
    match v {
        serde_json::Value::Null => TVal::Nil,
        serde_json::Value::Bool(b) => TVal::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| TVal::Float(n.as_f64().unwrap_or(f64::NAN)), TVal::Int),
        serde_json::Value::String(s) => TVal::Str(s.clone()),
        serde_json::Value::Array(a) => TVal::List(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            TVal::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

fn go_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f.is_nan() {
        return "NaN".into();
    }
    let s = format!("{f}");
    if f.abs() >= 1e21 { format!("{f:e}") } else { s }
}

impl TVal {
    pub(crate) fn to_text(&self) -> String {
        match self {
            TVal::Nil => "<no value>".into(),
            TVal::Bool(b) => b.to_string(),
            TVal::Int(i) => i.to_string(),
            TVal::Float(f) => go_float(*f),
            TVal::Str(s) => s.clone(),
            TVal::List(l) => {
                let parts: Vec<String> = l.iter().map(|v| v.to_text()).collect();
                format!("[{}]", parts.join(" "))
            }
            TVal::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.to_text()))
                    .collect();
                format!("map[{}]", parts.join(" "))
            }
            TVal::Labels => "map[]".into(),
        }
    }

    pub(crate) fn truthy(&self) -> bool {
        match self {
            TVal::Nil => false,
            TVal::Bool(b) => *b,
            TVal::Int(i) => *i != 0,
            TVal::Float(f) => *f != 0.0,
            TVal::Str(s) => !s.is_empty(),
            TVal::List(l) => !l.is_empty(),
            TVal::Map(m) => !m.is_empty(),
            TVal::Labels => true,
        }
    }

    pub(crate) fn items(&self) -> Vec<(TVal, TVal)> {
        match self {
            TVal::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (TVal::Int(i as i64), v.clone()))
                .collect(),
            TVal::Map(m) => m
                .iter()
                .map(|(k, v)| (TVal::Str(k.clone()), v.clone()))
                .collect(),
            TVal::Int(n) => (0..(*n).clamp(0, 10_000))
                .map(|i| (TVal::Int(i), TVal::Int(i)))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn field(&self, name: &str, ctx: &Ctx<'_>) -> TVal {
        match self {
            TVal::Labels => TVal::Str((ctx.get)(name).unwrap_or_default()),
            TVal::Map(m) => m
                .iter()
                .find(|(k, _)| k == name)
                .map_or(TVal::Nil, |(_, v)| v.clone()),
            _ => TVal::Nil,
        }
    }

    pub(super) fn text(&self) -> String {
        match self {
            TVal::Str(s) => s.clone(),
            TVal::Nil => String::new(),
            TVal::Int(i) => i.to_string(),
            TVal::Float(f) => go_float(*f),
            TVal::Bool(b) => b.to_string(),
            _ => String::new(),
        }
    }

    pub(super) fn float(&self) -> f64 {
        match self {
            TVal::Int(i) => *i as f64,
            TVal::Float(f) => *f,
            TVal::Bool(b) => f64::from(u8::from(*b)),
            TVal::Str(s) => s.trim().parse().unwrap_or(0.0),
            _ => 0.0,
        }
    }

    pub(super) fn int(&self) -> i64 {
        match self {
            TVal::Int(i) => *i,
            TVal::Str(s) => s
                .trim()
                .parse::<i64>()
                .unwrap_or_else(|_| s.trim().parse::<f64>().map_or(0, |f| f as i64)),
            v => v.float() as i64,
        }
    }

    pub(super) fn equals(&self, o: &TVal) -> bool {
        match (self, o) {
            (TVal::Int(_) | TVal::Float(_), TVal::Int(_) | TVal::Float(_)) => {
                self.float() == o.float()
            }
            (TVal::Nil, TVal::Nil) => true,
            _ => self.text() == o.text(),
        }
    }
}

fn lookup(v: TVal, path: &[String], ctx: &Ctx<'_>) -> TVal {
    path.iter().fold(v, |acc, f| acc.field(f, ctx))
}

fn eval_arg(
    a: &Arg,
    ctx: &Ctx<'_>,
    dot: &TVal,
    vars: &mut Vec<(String, TVal)>,
) -> Result<TVal, String> {
    Ok(match a {
        Arg::Dot(path) => lookup(dot.clone(), path, ctx),
        Arg::Var(name, path) => {
            let base = if name.is_empty() {
                TVal::Labels
            } else {
                vars.iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| err(&format!("undefined variable: ${name}")))?
            };
            lookup(base, path, ctx)
        }
        Arg::Lit(v) => v.clone(),
        Arg::Func(f) => call(f, &[], ctx)?,
        Arg::Sub(p) => eval_pipe(p, ctx, dot, vars)?,
    })
}

pub(crate) fn eval_pipe(
    p: &Pipe,
    ctx: &Ctx<'_>,
    dot: &TVal,
    vars: &mut Vec<(String, TVal)>,
) -> Result<TVal, String> {
    let mut prev: Option<TVal> = None;
    for cmd in &p.cmds {
        let (head, rest) = cmd.split_first().ok_or_else(|| err("empty command"))?;
        let v = match head {
            Arg::Func(f) => {
                let mut args = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    args.push(eval_arg(a, ctx, dot, vars)?);
                }
                args.extend(prev.take());
                call(f, &args, ctx)?
            }
            a => {
                if !rest.is_empty() || prev.is_some() {
                    return Err(err("can't give argument to non-function"));
                }
                eval_arg(a, ctx, dot, vars)?
            }
        };
        prev = Some(v);
    }
    let v = prev.unwrap_or(TVal::Nil);
    if let Some(name) = p.decl.first() {
        vars.push((name.clone(), v.clone()));
    }
    Ok(v)
}

pub(super) fn printf(args: &[TVal]) -> String {
    let Some((fmt, rest)) = args.split_first() else {
        return String::new();
    };
    let fmt = fmt.text();
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut ai = rest.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = it.peek() {
            if n.is_ascii_digit() || n == '.' || n == '-' || n == '+' {
                spec.push(n);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else { break };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = ai.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let prec: Option<usize> = spec.split_once('.').and_then(|(_, p)| p.parse().ok());
        let s = match verb {
            'd' => a.int().to_string(),
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6).min(100), a.float()),
            'q' => format!("{:?}", a.text()),
            'x' => match a {
                TVal::Int(i) => format!("{i:x}"),
                _ => a.text().bytes().map(|b| format!("{b:02x}")).collect(),
            },
            _ => a.text(),
        };
        let width: usize = spec
            .split('.')
            .next()
            .and_then(|w| w.trim_start_matches(['-', '+']).parse().ok())
            .unwrap_or(0usize)
            .min(10_000);
        if spec.starts_with('-') {
            out.push_str(&format!("{s:<width$}"));
        } else {
            out.push_str(&format!("{s:>width$}"));
        }
    }
    out
}
