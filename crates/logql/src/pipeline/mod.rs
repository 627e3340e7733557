//! The log pipeline: each stage of a parsed [`LogExpr`] compiled once, then
//! run per line over (line, [`LabelSet`]) to keep or drop it and extract
//! labels. One module per stage kind; the formatters are here.

pub mod detect;
pub(crate) mod ip;
pub(crate) mod json;
pub(crate) mod label_filter;
pub mod labels;
pub(crate) mod line_filter;
pub(crate) mod logfmt;
pub(crate) mod pattern;
pub(crate) mod regexp;
pub(crate) mod template;

use std::borrow::Cow;
use std::sync::OnceLock;

use labels::LabelSet;
use line_filter::CompiledLineFilter;
use logfmt::Logfmt;
use pattern::Pattern;
use template::{Ctx, Template};

use crate::syntax::ast::{LabelFmt, LogExpr, NamedMatcher, Stage};

const TEMPLATE_ERR: &str = "TemplateFormatErr";

enum LabelFmtC {
    Rename { dst: String, src: String },
    Template { dst: String, t: Template },
}

enum CStage {
    Line(CompiledLineFilter),
    JsonAll,
    JsonPaths(Vec<(String, Vec<json::PathPart>)>),
    Logfmt(Logfmt),
    Regexp(regex::Regex),
    Pattern(Pattern),
    Unpack,
    Label(label_filter::Compiled),
    LineFormat(Template),
    LabelFormat(Vec<LabelFmtC>),
    Drop(Vec<NamedMatcher>),
    Keep(Vec<NamedMatcher>),
    Decolorize,
}

/// A compiled pipeline.
pub struct Pipeline {
    stages: Vec<CStage>,
}

fn ansi() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"[\x1b\x{9b}][\[\]()#;?]*(?:(?:(?:[a-zA-Z\d]*(?:;[a-zA-Z\d]*)*)?\x07)|(?:(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PRZcf-ntqry=><~]))",
        )
        .expect("BUG: static ANSI regex")
    })
}

impl Pipeline {
    pub fn new(stages: &[Stage]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(stages.len());
        for s in stages {
            out.push(match s {
                Stage::LineFilter(f) => CStage::Line(CompiledLineFilter::new(f)?),
                Stage::Json(params) if params.is_empty() => CStage::JsonAll,
                Stage::Json(params) => {
                    let mut p = Vec::with_capacity(params.len());
                    for (name, path) in params {
                        let parsed = json::parse_path(path)
                            .map_err(|e| format!("cannot parse expression [{path}]: {e}"))?;
                        p.push((name.clone(), parsed));
                    }
                    CStage::JsonPaths(p)
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => CStage::Logfmt(Logfmt {
                    strict: *strict,
                    keep_empty: *keep_empty,
                    params: params.clone(),
                }),
                Stage::Regexp(r) => CStage::Regexp(regexp::check(r)?),
                Stage::Pattern(p) => CStage::Pattern(Pattern::parse(p)?),
                Stage::Unpack => CStage::Unpack,
                Stage::LabelFilter(f) => CStage::Label(label_filter::compile(f)?),
                Stage::LineFormat(t) => CStage::LineFormat(Template::parse(t)?),
                Stage::LabelFormat(fmts) => {
                    let mut v = Vec::with_capacity(fmts.len());
                    for f in fmts {
                        v.push(match f {
                            LabelFmt::Rename { dst, src } => LabelFmtC::Rename {
                                dst: dst.clone(),
                                src: src.clone(),
                            },
                            LabelFmt::Template { dst, template } => LabelFmtC::Template {
                                dst: dst.clone(),
                                t: Template::parse(template)?,
                            },
                        });
                    }
                    CStage::LabelFormat(v)
                }
                Stage::Drop(m) => CStage::Drop(m.clone()),
                Stage::Keep(m) => CStage::Keep(m.clone()),
                Stage::Decolorize => CStage::Decolorize,
            });
        }
        Ok(Pipeline { stages: out })
    }

    /// A pipeline for the stages of `log`.
    pub fn for_log(log: &LogExpr) -> Result<Self, String> {
        Self::new(&log.stages)
    }

    /// Whether every stage is a line filter: such a pipeline neither
    /// changes the line nor reads or sets a label, so whether it keeps an
    /// entry depends on the line alone and the entry's labels are its
    /// stream's and structured metadata.
    pub fn only_filters_lines(&self) -> bool {
        self.stages.iter().all(|s| matches!(s, CStage::Line(_)))
    }

    /// Whether the line filters keep `line`; for a pipeline that
    /// [`only_filters_lines`](Self::only_filters_lines), the same answer as
    /// [`process`](Self::process) without copying the line.
    pub fn keeps_line(&self, line: &str) -> bool {
        self.stages.iter().all(|s| match s {
            CStage::Line(f) => f.keep(line),
            _ => true,
        })
    }

    /// Runs the stages over one line; `false` drops it. The line is copied
    /// only by a stage that changes it.
    pub fn process(&self, ts_ns: i64, line: &mut Cow<'_, str>, labels: &mut LabelSet) -> bool {
        for s in &self.stages {
            match s {
                CStage::Line(f) => {
                    if !f.keep(line) {
                        return false;
                    }
                }
                CStage::JsonAll => json::apply_all(line, labels),
                CStage::JsonPaths(p) => json::apply_paths(line, p, labels),
                CStage::Logfmt(l) => l.apply(line, labels),
                CStage::Regexp(r) => regexp::apply(r, line, labels),
                CStage::Pattern(p) => {
                    for (name, value) in p.captures(line) {
                        labels.add_parsed(name, value);
                    }
                }
                CStage::Unpack => json::unpack(line, labels),
                CStage::Label(f) => {
                    if !f.keep(labels) {
                        return false;
                    }
                }
                CStage::LineFormat(t) => {
                    let snapshot = labels.clone();
                    let get = |n: &str| snapshot.get_any(n).map(str::to_string);
                    match t.render(&Ctx {
                        get: &get,
                        line,
                        ts_ns,
                    }) {
                        Ok(s) => *line = Cow::Owned(s),
                        Err(e) => labels.set_error(TEMPLATE_ERR, e),
                    }
                }
                CStage::LabelFormat(fmts) => label_format(fmts, ts_ns, line, labels),
                CStage::Drop(ms) => {
                    for m in ms {
                        match m {
                            NamedMatcher::Name(n) => labels.remove(n),
                            NamedMatcher::Matcher(m) => {
                                if labels.get_any(&m.name).is_some_and(|v| m.matches_value(v)) {
                                    labels.remove(&m.name);
                                }
                            }
                        }
                    }
                }
                CStage::Keep(ms) => labels.retain(|name, value| {
                    ms.iter().any(|m| match m {
                        NamedMatcher::Name(n) => n == name,
                        NamedMatcher::Matcher(m) => m.name == name && m.matches_value(value),
                    })
                }),
                CStage::Decolorize => {
                    if line.contains(['\x1b', '\u{9b}']) {
                        *line = Cow::Owned(ansi().replace_all(line, "").into_owned());
                    }
                }
            }
        }
        true
    }
}

fn label_format(fmts: &[LabelFmtC], ts_ns: i64, line: &str, labels: &mut LabelSet) {
    // Templates read the labels as they were before the stage.
    let snapshot = labels.clone();
    for f in fmts {
        match f {
            LabelFmtC::Rename { dst, src } => {
                if let Some(v) = snapshot.get(src) {
                    let v = v.to_string();
                    labels.remove(src);
                    labels.set(dst, &v);
                }
            }
            LabelFmtC::Template { dst, t } => {
                let get = |n: &str| snapshot.get_any(n).map(str::to_string);
                match t.render(&Ctx {
                    get: &get,
                    line,
                    ts_ns,
                }) {
                    Ok(v) => labels.set(dst, &v),
                    Err(e) => labels.set_error(TEMPLATE_ERR, e),
                }
            }
        }
    }
}

/// What a log selector tells a source besides its matchers: the hints of
/// its pipeline, computed once per query and lent to every request.
pub struct SelectionHints {
    lines: Vec<String>,
    labels: Vec<(String, String)>,
}

impl SelectionHints {
    pub fn of(log: &LogExpr) -> Self {
        SelectionHints {
            lines: line_filter_hints(log),
            labels: label_filter_hints(log),
        }
    }

    /// The request for `log`'s streams over `[start_ns, end_ns)`.
    pub fn request<'a>(
        &'a self,
        log: &'a LogExpr,
        start_ns: i64,
        end_ns: i64,
        lines_needed: bool,
    ) -> crate::source::SelectRequest<'a> {
        crate::source::SelectRequest {
            matchers: &log.matchers,
            start_ns,
            end_ns,
            line_filters: &self.lines,
            label_equals: &self.labels,
            lines_needed,
        }
    }
}

/// Pairs every entry of the result carries as a stream label or as
/// structured metadata: `name="value"` label filters (alone or joined by
/// `and`/`,`) before any stage that adds, renames or drops labels. A
/// source may use them to skip data; the pipeline applies them anyway.
fn label_filter_hints(log: &LogExpr) -> Vec<(String, String)> {
    use crate::syntax::ast::LabelFilter;
    fn equalities(f: &LabelFilter, out: &mut Vec<(String, String)>) {
        match f {
            LabelFilter::And(a, b) => {
                equalities(a, out);
                equalities(b, out);
            }
            // Internal labels (`__error__`) are set by earlier stages.
            LabelFilter::Matcher(m)
                if m.op == miru_model::MatchOp::Equal
                    && !m.value.is_empty()
                    && !m.name.starts_with("__") =>
            {
                out.push((m.name.to_string(), m.value.to_string()));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for s in &log.stages {
        match s {
            Stage::LineFilter(_) => {}
            Stage::LabelFilter(f) => equalities(f, &mut out),
            _ => break,
        }
    }
    out
}

/// Literal substrings every line must contain: the single-operand `|=`
/// filters that come before any stage that can change the line.
fn line_filter_hints(log: &LogExpr) -> Vec<String> {
    use crate::syntax::ast::{FilterValue, LineOp};
    let mut out = Vec::new();
    for s in &log.stages {
        match s {
            Stage::LineFilter(f) => {
                if let (LineOp::Contains, [FilterValue::Str(v)]) = (f.op, f.values.as_slice())
                    && !v.is_empty()
                {
                    out.push(v.clone());
                }
            }
            Stage::LineFormat(_) | Stage::Unpack | Stage::Decolorize => break,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod hint_tests {
    use super::*;
    use crate::syntax::ast::Expr;

    fn log_expr(q: &str) -> LogExpr {
        match crate::parse(q).unwrap() {
            Expr::Log(l) => l,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hints_come_only_from_filters_before_label_changing_stages() {
        let l = log_expr(
            r#"{app="a"} |= "needle" | trace_id="t1", user="u" | level=~"e.*" or x="y" | json | status="500" |= "after""#,
        );
        assert_eq!(line_filter_hints(&l), vec!["needle", "after"]);
        assert_eq!(
            label_filter_hints(&l),
            vec![
                ("trace_id".into(), "t1".into()),
                ("user".into(), "u".into())
            ]
        );
        let l = log_expr(r#"{app="a"} | logfmt | trace_id="t1""#);
        assert!(label_filter_hints(&l).is_empty());
        let l = log_expr(r#"{app="a"} | __error__="" | x!="1" | y="""#);
        assert!(label_filter_hints(&l).is_empty());
        let l = log_expr(r#"{app="a"} |= "a" or "b" | line_format "{{.x}}" |= "c""#);
        assert!(line_filter_hints(&l).is_empty());
    }
}
