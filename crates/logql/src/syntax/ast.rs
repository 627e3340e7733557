//! The parsed form of a LogQL query. Regexes and templates stay as text
//! here; the pipeline compiles them (and the parser checks that they do).

use miru_model::Matcher;

#[derive(Debug, Clone)]
pub enum Expr {
    /// A log query: stream selector plus pipeline.
    Log(LogExpr),
    Metric(MetricExpr),
}

#[derive(Debug, Clone)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Regex,
    NotRegex,
    Pattern,
    NotPattern,
}

impl LineOp {
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            LineOp::NotContains | LineOp::NotRegex | LineOp::NotPattern
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Str(String),
    Ip(String),
}

/// `|= "a" or "b"`: a line passes a positive filter if any operand
/// matches, a negative one if none does.
#[derive(Debug, Clone)]
pub struct LineFilter {
    pub op: LineOp,
    pub values: Vec<FilterValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Neq => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// String comparison (`=`, `!=`, `=~`, `!~`).
    Matcher(Matcher),
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    /// Value in seconds.
    Duration {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Ip {
        name: String,
        negate: bool,
        pattern: String,
    },
}

#[derive(Debug, Clone)]
pub enum LabelFmt {
    /// `dst=src`.
    Rename { dst: String, src: String },
    /// `dst="{{template}}"`.
    Template { dst: String, template: String },
}

/// `drop a, b="v"` / `keep a, b="v"`: a name alone, or a name with a
/// matcher on its value.
#[derive(Debug, Clone)]
pub enum NamedMatcher {
    Name(String),
    Matcher(Matcher),
}

#[derive(Debug, Clone)]
pub enum Stage {
    LineFilter(LineFilter),
    /// `json` with `label="path"` parameters (none: every field).
    Json(Vec<(String, String)>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        /// `label` or `label="key"`.
        params: Vec<(String, String)>,
    },
    Regexp(String),
    Pattern(String),
    Unpack,
    LabelFilter(LabelFilter),
    LineFormat(String),
    LabelFormat(Vec<LabelFmt>),
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
    Decolorize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    Float,
    Bytes,
    Duration,
}

#[derive(Debug, Clone)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    /// Label filters after the unwrap, applied to the sample's labels.
    pub post_filters: Vec<LabelFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
}

impl RangeOp {
    pub fn name(self) -> &'static str {
        match self {
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "rate" => RangeOp::Rate,
            "rate_counter" => RangeOp::RateCounter,
            "count_over_time" => RangeOp::CountOverTime,
            "bytes_rate" => RangeOp::BytesRate,
            "bytes_over_time" => RangeOp::BytesOverTime,
            "absent_over_time" => RangeOp::AbsentOverTime,
            "sum_over_time" => RangeOp::SumOverTime,
            "avg_over_time" => RangeOp::AvgOverTime,
            "min_over_time" => RangeOp::MinOverTime,
            "max_over_time" => RangeOp::MaxOverTime,
            "stddev_over_time" => RangeOp::StddevOverTime,
            "stdvar_over_time" => RangeOp::StdvarOverTime,
            "quantile_over_time" => RangeOp::QuantileOverTime,
            "first_over_time" => RangeOp::FirstOverTime,
            "last_over_time" => RangeOp::LastOverTime,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// A range aggregation over a log selection: `op(param, log [range] offset) by (...)`.
#[derive(Debug, Clone)]
pub struct RangeAgg {
    pub op: RangeOp,
    pub param: Option<f64>,
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    pub range_ns: i64,
    pub offset_ns: i64,
    pub grouping: Option<Grouping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
    ApproxTopk,
}

impl VectorOp {
    pub(crate) fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "sum" => VectorOp::Sum,
            "avg" => VectorOp::Avg,
            "min" => VectorOp::Min,
            "max" => VectorOp::Max,
            "count" => VectorOp::Count,
            "stddev" => VectorOp::Stddev,
            "stdvar" => VectorOp::Stdvar,
            "topk" => VectorOp::Topk,
            "bottomk" => VectorOp::Bottomk,
            "sort" => VectorOp::Sort,
            "sort_desc" => VectorOp::SortDesc,
            "approx_topk" => VectorOp::ApproxTopk,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl BinOp {
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    /// `on(...)` when true, `ignoring(...)` otherwise.
    pub on: bool,
    pub labels: Vec<String>,
    pub card: Card,
    /// `group_left(...)` / `group_right(...)` labels.
    pub include: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range(Box<RangeAgg>),
    Vector {
        op: VectorOp,
        param: Option<f64>,
        inner: Box<MetricExpr>,
        grouping: Option<Grouping>,
    },
    Binary {
        op: BinOp,
        return_bool: bool,
        matching: Option<VectorMatching>,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
    Literal(f64),
    /// `vector(n)`.
    VectorLit(f64),
    LabelReplace {
        inner: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        regex: String,
    },
}

impl MetricExpr {
    /// Whether the expression is a scalar (literals and their arithmetic).
    pub fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Literal(_) => true,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }
}
