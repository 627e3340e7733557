//! From the `promql-parser` syntax tree to the tree the evaluator walks:
//! durations in milliseconds, `@ start()`/`end()` resolved, matchers
//! compiled into `miru_model::Matcher`, parentheses gone, positions attached
//! for annotations, and step-invariant parts marked (as Prometheus'
//! `PreprocessExpr` does) so they are evaluated once per query.

use std::time::{Duration, SystemTime};

use miru_model::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    self as pp, AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality,
};

use crate::QueryError;
use crate::position::{CallSite, Pos, call_sites, parse_error_position, raw_byte_strings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl ValueType {
    pub(crate) fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Alternatives (`{a="1" or b="2"}`); a series matches if it matches
    /// every matcher of one set. Usually exactly one set.
    pub(crate) matcher_sets: Vec<Vec<Matcher>>,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }
    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
    /// Arithmetic changes what the metric means, so its name goes.
    pub(crate) fn changes_schema(self) -> bool {
        matches!(
            self,
            BinOp::Add
                | BinOp::Sub
                | BinOp::Mul
                | BinOp::Div
                | BinOp::Mod
                | BinOp::Pow
                | BinOp::Atan2
        )
    }
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Lt => "<",
            BinOp::Ge => ">=",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

#[derive(Debug, Clone)]
pub(crate) struct Matching {
    pub(crate) card: Card,
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub(crate) on: bool,
    pub(crate) labels: Vec<String>,
    /// Labels copied from the "one" side with `group_left/right(...)`.
    pub(crate) include: Vec<String>,
    pub(crate) fill_lhs: Option<f64>,
    pub(crate) fill_rhs: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Binary {
    pub(crate) op: BinOp,
    pub(crate) lhs: Node,
    pub(crate) rhs: Node,
    pub(crate) matching: Matching,
    pub(crate) return_bool: bool,
    pub(crate) pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

impl AggOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::CountValues => "count_values",
            AggOp::Quantile => "quantile",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Agg {
    pub(crate) op: AggOp,
    pub(crate) expr: Node,
    pub(crate) param: Option<Node>,
    /// Sorted; for `by` the labels kept, for `without` the labels dropped.
    pub(crate) grouping: Vec<String>,
    pub(crate) without: bool,
    pub(crate) pos: Pos,
    pub(crate) expr_pos: Pos,
    pub(crate) param_pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) name: &'static str,
    pub(crate) args: Vec<Node>,
    pub(crate) return_type: ValueType,
    pub(crate) pos: Pos,
    pub(crate) arg_pos: Vec<Pos>,
}

#[derive(Debug, Clone)]
pub(crate) struct Subquery {
    pub(crate) expr: Node,
    pub(crate) range_ms: i64,
    pub(crate) step_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    Str(String),
    Vector(Selector),
    Matrix {
        sel: Selector,
        range_ms: i64,
    },
    Subquery(Box<Subquery>),
    Call(Box<Call>),
    Agg(Box<Agg>),
    Neg(Box<Node>),
    Binary(Box<Binary>),
    /// Evaluated once at the first step and repeated for all steps.
    StepInvariant(Box<Node>),
}

impl Node {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Node::Number(_) => ValueType::Scalar,
            Node::Str(_) => ValueType::String,
            Node::Vector(_) | Node::Agg(_) => ValueType::Vector,
            Node::Matrix { .. } | Node::Subquery(_) => ValueType::Matrix,
            Node::Call(c) => c.return_type,
            Node::Neg(n) | Node::StepInvariant(n) => n.value_type(),
            Node::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar
                    && b.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
        }
    }

    /// The node without step-invariance wrappers.
    pub(crate) fn unwrapped(&self) -> &Node {
        match self {
            Node::StepInvariant(n) => n.unwrapped(),
            n => n,
        }
    }
}

/// Functions whose result depends on the evaluation time even when their
/// arguments do not (Prometheus' `AtModifierUnsafeFunctions`).
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

pub(crate) struct Planner<'q> {
    query: &'q str,
    sites: Vec<CallSite>,
    next_site: usize,
    raw_strings: Vec<(String, String)>,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    default_step_ms: i64,
    /// `@` given to every selector and outermost subquery without one (or
    /// with `@ start()`/`@ end()`): Prometheus' step-invariance test.
    pin_at_ms: Option<i64>,
    subquery_depth: usize,
}

pub(crate) fn parse_error(query: &str, msg: &str) -> QueryError {
    let (line, col) = parse_error_position(query);
    QueryError::Parse {
        message: format!("{line}:{col}: parse error: {msg}"),
    }
}

/// Parses and plans a query evaluated from `start_ms` to `end_ms`; with
/// `pin_at_ms`, selectors and outermost subqueries lacking an `@` get
/// `@ pin_at_ms` (see [`Planner`]).
pub(crate) fn plan(
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    default_step_ms: i64,
    pin_at_ms: Option<i64>,
) -> Result<Node, QueryError> {
    if query.trim().is_empty() {
        return Err(QueryError::Parse {
            message: "1:1: parse error: no expression found in input".into(),
        });
    }
    let expr = crate::parse(query).map_err(|e| parse_error(query, &e))?;
    let mut p = Planner {
        query,
        sites: call_sites(query),
        next_site: 0,
        raw_strings: raw_byte_strings(query),
        start_ms,
        end_ms,
        step_ms,
        default_step_ms,
        pin_at_ms,
        subquery_depth: 0,
    };
    let node = p.convert(&expr)?;
    let (node, _, wrap) = wrap_invariant(node);
    Ok(if wrap {
        Node::StepInvariant(Box::new(node))
    } else {
        node
    })
}

/// Whether the query calls, outside any subquery, a function whose value
/// depends on the evaluation time even for step-invariant arguments
/// (`time()`, `timestamp()`, ...). Prometheus' test runner skips its `@`
/// re-evaluations of such queries.
pub(crate) fn calls_at_unsafe(query: &str) -> Result<bool, QueryError> {
    fn walk(e: &Expr) -> bool {
        match e {
            Expr::Call(c) => {
                AT_UNSAFE.contains(&c.func.name) || c.args.args.iter().any(|a| walk(a))
            }
            Expr::Aggregate(a) => walk(&a.expr) || a.param.as_deref().is_some_and(walk),
            Expr::Binary(b) => walk(&b.lhs) || walk(&b.rhs),
            Expr::Paren(p) => walk(&p.expr),
            Expr::Unary(u) => walk(&u.expr),
            // Inside a subquery nothing is pinned or inspected.
            Expr::Subquery(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => false,
        }
    }
    let expr = crate::parse(query).map_err(|e| parse_error(query, &e))?;
    Ok(walk(&expr))
}

fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => dur_ms(d).saturating_neg(),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => dur_ms(&e.duration()).saturating_neg(),
    }
}

fn label_list(l: &promql_parser::label::Labels) -> Vec<String> {
    l.labels.to_vec()
}

impl Planner<'_> {
    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start_ms),
            Some(AtModifier::End) => Some(self.end_ms),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// The `@` of a selector or subquery, pinned when asked to.
    fn effective_at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match (self.pin_at_ms, at) {
            (Some(pin), None | Some(AtModifier::Start) | Some(AtModifier::End))
                if self.subquery_depth == 0 =>
            {
                Some(pin)
            }
            _ => self.at_ms(at),
        }
    }

    fn take_site(&mut self, name: &str) -> Option<CallSite> {
        let from = self.next_site;
        for i in from..self.sites.len() {
            if self.sites[i].name.eq_ignore_ascii_case(name) {
                self.next_site = i + 1;
                return Some(self.sites[i].clone());
            }
        }
        None
    }

    fn selector(&self, vs: &pp::VectorSelector) -> Result<Selector, QueryError> {
        let conv = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, QueryError> {
            ms.iter()
                .map(|m| {
                    let op = match m.op {
                        PMatchOp::Equal => MatchOp::Equal,
                        PMatchOp::NotEqual => MatchOp::NotEqual,
                        PMatchOp::Re(_) => MatchOp::Regex,
                        PMatchOp::NotRe(_) => MatchOp::NotRegex,
                    };
                    Matcher::new(&m.name, op, &m.value)
                        .map_err(|e| parse_error(self.query, &e.to_string()))
                })
                .collect()
        };
        let mut base = conv(&vs.matchers.matchers)?;
        if let Some(name) = &vs.name
            && !base.iter().any(|m| m.name == miru_model::METRIC_NAME)
        {
            base.push(Matcher::equal(miru_model::METRIC_NAME, name));
        }
        let mut sets = Vec::new();
        if vs.matchers.or_matchers.is_empty() {
            sets.push(base);
        } else {
            for group in &vs.matchers.or_matchers {
                let mut g = conv(group)?;
                if let Some(name) = &vs.name
                    && !g.iter().any(|m| m.name == miru_model::METRIC_NAME)
                {
                    g.push(Matcher::equal(miru_model::METRIC_NAME, name));
                }
                sets.push(g);
            }
        }
        Ok(Selector {
            matcher_sets: sets,
            offset_ms: offset_ms(&vs.offset),
            at_ms: self.effective_at(&vs.at),
        })
    }

    fn convert(&mut self, e: &Expr) -> Result<Node, QueryError> {
        Ok(match e {
            Expr::NumberLiteral(n) => Node::Number(n.val),
            Expr::StringLiteral(s) => Node::Str(
                self.raw_strings
                    .iter()
                    .find(|(parsed, _)| *parsed == s.val)
                    .map(|(_, kept)| kept.clone())
                    .unwrap_or_else(|| s.val.clone()),
            ),
            Expr::Paren(p) => self.convert(&p.expr)?,
            Expr::Unary(u) => {
                let inner = self.convert(&u.expr)?;
                match inner {
                    Node::Number(v) => Node::Number(-v),
                    other => Node::Neg(Box::new(other)),
                }
            }
            Expr::VectorSelector(vs) => Node::Vector(self.selector(vs)?),
            Expr::MatrixSelector(ms) => Node::Matrix {
                sel: self.selector(&ms.vs)?,
                range_ms: dur_ms(&ms.range),
            },
            Expr::Subquery(sq) => {
                let at_ms = self.effective_at(&sq.at);
                self.subquery_depth += 1;
                let expr = self.convert(&sq.expr);
                self.subquery_depth -= 1;
                let expr = expr?;
                let step_ms = sq
                    .step
                    .as_ref()
                    .map(dur_ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(self.default_step_ms.max(1));
                Node::Subquery(Box::new(Subquery {
                    expr,
                    range_ms: dur_ms(&sq.range),
                    step_ms,
                    offset_ms: offset_ms(&sq.offset),
                    at_ms,
                }))
            }
            Expr::Binary(b) => self.binary(b)?,
            Expr::Aggregate(a) => self.aggregate(a)?,
            Expr::Call(c) => self.call(c)?,
            Expr::Extension(_) => {
                return Err(parse_error(self.query, "unsupported extension expression"));
            }
        })
    }

    fn binary(&mut self, b: &pp::BinaryExpr) -> Result<Node, QueryError> {
        let op = match b.op.to_string().to_ascii_lowercase().as_str() {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            other => {
                return Err(parse_error(
                    self.query,
                    &format!("binary operator {other:?} is not supported"),
                ));
            }
        };
        let lhs = self.convert(&b.lhs)?;
        let rhs = self.convert(&b.rhs)?;
        let mut matching = Matching {
            card: if op.is_set() {
                Card::ManyToMany
            } else {
                Card::OneToOne
            },
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
            fill_lhs: None,
            fill_rhs: None,
        };
        let mut return_bool = false;
        if let Some(m) = &b.modifier {
            return_bool = m.return_bool;
            match &m.matching {
                Some(LabelModifier::Include(l)) => {
                    matching.on = true;
                    matching.labels = label_list(l);
                }
                Some(LabelModifier::Exclude(l)) => matching.labels = label_list(l),
                None => {}
            }
            if !op.is_set() {
                match &m.card {
                    VectorMatchCardinality::ManyToOne(l) => {
                        matching.card = Card::ManyToOne;
                        matching.include = label_list(l);
                    }
                    VectorMatchCardinality::OneToMany(l) => {
                        matching.card = Card::OneToMany;
                        matching.include = label_list(l);
                    }
                    _ => {}
                }
            }
            matching.fill_lhs = m.fill_values.lhs;
            matching.fill_rhs = m.fill_values.rhs;
        }
        Ok(Node::Binary(Box::new(Binary {
            op,
            lhs,
            rhs,
            matching,
            return_bool,
            pos: Pos::default(),
        })))
    }

    fn aggregate(&mut self, a: &pp::AggregateExpr) -> Result<Node, QueryError> {
        let name = a.op.to_string().to_ascii_lowercase();
        let op = match name.as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "count" => AggOp::Count,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "group" => AggOp::Group,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "count_values" => AggOp::CountValues,
            "quantile" => AggOp::Quantile,
            "limitk" => AggOp::Limitk,
            "limit_ratio" => AggOp::LimitRatio,
            other => {
                return Err(parse_error(
                    self.query,
                    &format!("aggregation {other:?} is not supported"),
                ));
            }
        };
        let site = self.take_site(&name);
        let param = match &a.param {
            Some(p) => Some(self.convert(p)?),
            None => None,
        };
        let expr = self.convert(&a.expr)?;
        let (mut grouping, without) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (label_list(l), false),
            Some(LabelModifier::Exclude(l)) => (label_list(l), true),
            None => (Vec::new(), false),
        };
        grouping.sort();
        grouping.dedup();
        let (pos, param_pos, expr_pos) = match &site {
            Some(s) => {
                let first = s.args.first().copied().unwrap_or(s.start);
                let second = s.args.get(1).copied().unwrap_or(first);
                if param.is_some() {
                    (s.start, first, second)
                } else {
                    (s.start, first, first)
                }
            }
            None => Default::default(),
        };
        Ok(Node::Agg(Box::new(Agg {
            op,
            expr,
            param,
            grouping,
            without,
            pos,
            expr_pos,
            param_pos,
        })))
    }

    fn call(&mut self, c: &pp::Call) -> Result<Node, QueryError> {
        let name = c.func.name;
        // Evaluation-context functions are constants for one query; fold
        // them as Prometheus does so that callers stay step-invariant.
        let step_s = if self.start_ms == self.end_ms {
            0.0
        } else {
            self.step_ms as f64 / 1000.0
        };
        match name {
            "start" => return Ok(Node::Number(self.start_ms as f64 / 1000.0)),
            "end" => return Ok(Node::Number(self.end_ms as f64 / 1000.0)),
            "range" => return Ok(Node::Number((self.end_ms - self.start_ms) as f64 / 1000.0)),
            "step" => return Ok(Node::Number(step_s)),
            _ => {}
        }
        let site = self.take_site(name);
        let mut args = Vec::with_capacity(c.args.args.len());
        for a in &c.args.args {
            args.push(self.convert(a)?);
        }
        let return_type = match c.func.return_type {
            pp::value::ValueType::Scalar => ValueType::Scalar,
            pp::value::ValueType::String => ValueType::String,
            pp::value::ValueType::Matrix => ValueType::Matrix,
            pp::value::ValueType::Vector => ValueType::Vector,
        };
        let (pos, mut arg_pos) = match site {
            Some(s) => (s.start, s.args),
            None => (Pos::default(), Vec::new()),
        };
        arg_pos.resize(args.len().max(arg_pos.len()), pos);
        Ok(Node::Call(Box::new(Call {
            name,
            args,
            return_type,
            pos,
            arg_pos,
        })))
    }
}

/// Wraps the largest step-invariant sub-trees (Prometheus'
/// `preprocessExprHelper`). Returns the node, whether it is step-invariant,
/// and whether a caller should wrap it.
fn wrap_invariant(node: Node) -> (Node, bool, bool) {
    match node {
        Node::Vector(sel) => {
            let inv = sel.at_ms.is_some();
            (Node::Vector(sel), inv, inv)
        }
        Node::Matrix { sel, range_ms } => {
            let inv = sel.at_ms.is_some();
            (Node::Matrix { sel, range_ms }, inv, false)
        }
        Node::Number(v) => (Node::Number(v), true, false),
        Node::Str(s) => (Node::Str(s), true, false),
        Node::Neg(inner) => {
            let (n, inv, wrap) = wrap_invariant(*inner);
            (Node::Neg(Box::new(n)), inv, wrap)
        }
        Node::StepInvariant(inner) => (Node::StepInvariant(inner), true, false),
        Node::Agg(mut a) => {
            // Prometheus only looks at the aggregated expression here.
            let expr = std::mem::replace(&mut a.expr, Node::Number(0.0));
            let (n, inv, wrap) = wrap_invariant(expr);
            a.expr = n;
            (Node::Agg(a), inv, wrap)
        }
        Node::Binary(mut b) => {
            let lhs = std::mem::replace(&mut b.lhs, Node::Number(0.0));
            let rhs = std::mem::replace(&mut b.rhs, Node::Number(0.0));
            let (l, linv, lwrap) = wrap_invariant(lhs);
            let (r, rinv, rwrap) = wrap_invariant(rhs);
            if linv && rinv {
                b.lhs = l;
                b.rhs = r;
                return (Node::Binary(b), true, true);
            }
            b.lhs = if lwrap {
                Node::StepInvariant(Box::new(l))
            } else {
                l
            };
            b.rhs = if rwrap {
                Node::StepInvariant(Box::new(r))
            } else {
                r
            };
            (Node::Binary(b), false, false)
        }
        Node::Call(mut c) => {
            let mut inv = !AT_UNSAFE.contains(&c.name);
            let mut timestamp_safe = c.name == "timestamp";
            let args = std::mem::take(&mut c.args);
            let mut out = Vec::with_capacity(args.len());
            let mut wraps = Vec::with_capacity(args.len());
            for a in args {
                let is_vs = matches!(a, Node::Vector(_));
                let (n, ainv, awrap) = wrap_invariant(a);
                inv = inv && ainv;
                if !ainv || !is_vs {
                    timestamp_safe = false;
                }
                out.push(n);
                wraps.push(awrap);
            }
            if inv || timestamp_safe {
                c.args = out;
                return (Node::Call(c), true, true);
            }
            c.args = out
                .into_iter()
                .zip(wraps)
                .map(|(n, w)| {
                    if w {
                        Node::StepInvariant(Box::new(n))
                    } else {
                        n
                    }
                })
                .collect();
            (Node::Call(c), false, false)
        }
        Node::Subquery(mut sq) => {
            let expr = std::mem::replace(&mut sq.expr, Node::Number(0.0));
            let (n, inv, _) = wrap_invariant(expr);
            sq.expr = if inv {
                Node::StepInvariant(Box::new(n))
            } else {
                n
            };
            let inv = sq.at_ms.is_some();
            (Node::Subquery(sq), inv, false)
        }
    }
}
