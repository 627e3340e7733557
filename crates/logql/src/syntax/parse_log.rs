//! Stream selectors, pipelines and log range expressions.

use miru_model::{MatchOp, Matcher};

use super::ParseError;
use super::ast::*;
use super::lexer::Tok;
use super::parser::Parser;

type LogRange = (LogExpr, Option<Unwrap>, Option<(i64, i64)>);

impl Parser<'_> {
    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name = self.ident()?;
        let op = match self.peek() {
            Tok::Eq => MatchOp::Equal,
            Tok::Neq => MatchOp::NotEqual,
            Tok::Re => MatchOp::Regex,
            Tok::Nre => MatchOp::NotRegex,
            _ => return Err(self.unexpected("=, !=, =~ or !~")),
        };
        self.next();
        let value = self.string()?;
        self.make_matcher(&name, op, &value)
    }

    pub(super) fn make_matcher(
        &self,
        name: &str,
        op: MatchOp,
        value: &str,
    ) -> Result<Matcher, ParseError> {
        Matcher::new(name, op, value).map_err(|e| self.err(&format!("error parsing regexp: {e}")))
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "{")?;
        let mut out = Vec::new();
        while self.peek() != &Tok::RBrace {
            out.push(self.matcher()?);
            match self.peek() {
                Tok::Comma => {
                    self.next();
                    if self.peek() == &Tok::RBrace {
                        return Err(self.unexpected("IDENTIFIER"));
                    }
                }
                Tok::RBrace => {}
                _ => return Err(self.unexpected(", or }")),
            }
        }
        self.next();
        Ok(out)
    }

    /// A selector and its pipeline.
    pub(super) fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let mut log = LogExpr {
            matchers,
            stages: Vec::new(),
        };
        let mut unwrap = None;
        self.pipeline(&mut log, &mut unwrap)?;
        if unwrap.is_some() {
            return Err(self.err("syntax error: unwrap needs a range aggregation"));
        }
        Ok(log)
    }

    /// `{..} | stages [range] [offset] [| unwrap ...]`, possibly in
    /// parentheses; the range is `None` if absent.
    pub(super) fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let (mut log, mut unwrap, mut range) = if self.peek() == &Tok::LParen {
            self.next();
            self.enter()?;
            let inner = self.log_range()?;
            self.depth -= 1;
            self.expect(Tok::RParen, ")")?;
            inner
        } else {
            let matchers = self.selector()?;
            (
                LogExpr {
                    matchers,
                    stages: Vec::new(),
                },
                None,
                None,
            )
        };
        self.pipeline(&mut log, &mut unwrap)?;
        if self.peek() == &Tok::LBracket {
            if range.is_some() {
                return Err(self.unexpected(")"));
            }
            self.next();
            let r = self.duration()?;
            self.expect(Tok::RBracket, "]")?;
            let mut offset = 0;
            if self.is_ident("offset") {
                self.next();
                offset = self.duration()?;
            }
            range = Some((r, offset));
            self.pipeline(&mut log, &mut unwrap)?;
        }
        Ok((log, unwrap, range))
    }

    /// Pipeline stages until something that is not one.
    fn pipeline(
        &mut self,
        log: &mut LogExpr,
        unwrap: &mut Option<Unwrap>,
    ) -> Result<(), ParseError> {
        loop {
            let op = match self.peek() {
                Tok::PipeEq => LineOp::Contains,
                Tok::Neq => LineOp::NotContains,
                Tok::PipeRe => LineOp::Regex,
                Tok::Nre => LineOp::NotRegex,
                Tok::PipePattern => LineOp::Pattern,
                Tok::NotPattern => LineOp::NotPattern,
                Tok::Pipe => {
                    self.next();
                    self.pipe_stage(log, unwrap)?;
                    continue;
                }
                _ => return Ok(()),
            };
            if unwrap.is_some() {
                return Err(self.unexpected("label filter"));
            }
            self.next();
            let f = self.line_filter(op)?;
            log.stages.push(Stage::LineFilter(f));
        }
    }

    fn filter_value(&mut self, op: LineOp) -> Result<FilterValue, ParseError> {
        if self.is_ident("ip") {
            self.next();
            self.expect(Tok::LParen, "(")?;
            let p = self.string()?;
            self.expect(Tok::RParen, ")")?;
            if !matches!(op, LineOp::Contains | LineOp::NotContains) {
                return Err(
                    self.err("ip: invalid operation: ip() is only supported with |= and !=")
                );
            }
            if crate::pipeline::ip::IpPattern::parse(&p).is_none() {
                return Err(self.err(&format!("ip: invalid pattern: {p:?}")));
            }
            return Ok(FilterValue::Ip(p));
        }
        let s = self.string()?;
        match op {
            LineOp::Regex | LineOp::NotRegex => {
                if let Err(e) = regex::Regex::new(&s) {
                    return Err(self.err(&format!("error parsing regexp: {e}")));
                }
            }
            LineOp::Pattern | LineOp::NotPattern => {
                crate::pipeline::pattern::Pattern::parse_filter(&s).map_err(|e| self.err(&e))?;
            }
            _ => {}
        }
        Ok(FilterValue::Str(s))
    }

    fn line_filter(&mut self, op: LineOp) -> Result<LineFilter, ParseError> {
        let mut values = vec![self.filter_value(op)?];
        while self.is_ident("or") && matches!(self.peek_at(1), Tok::Str(_) | Tok::Ident(_)) {
            if let Tok::Ident(s) = self.peek_at(1)
                && s != "ip"
            {
                break;
            }
            self.next();
            values.push(self.filter_value(op)?);
        }
        Ok(LineFilter { op, values })
    }

    fn pipe_stage(
        &mut self,
        log: &mut LogExpr,
        unwrap: &mut Option<Unwrap>,
    ) -> Result<(), ParseError> {
        let kw = match self.peek() {
            Tok::Ident(s) => s.clone(),
            Tok::LParen => String::new(),
            _ => return Err(self.unexpected("parser, formatter or label filter")),
        };
        let is_filter = matches!(
            self.peek_at(1),
            Tok::Eq
                | Tok::Neq
                | Tok::Re
                | Tok::Nre
                | Tok::Gt
                | Tok::Gte
                | Tok::Lt
                | Tok::Lte
                | Tok::EqEq
        ) || kw.is_empty();
        if let Some(u) = unwrap.as_mut() {
            if !is_filter {
                return Err(self.unexpected("label filter"));
            }
            let f = self.label_filter_or()?;
            u.post_filters.push(f);
            return Ok(());
        }
        if is_filter {
            let f = self.label_filter_or()?;
            log.stages.push(Stage::LabelFilter(f));
            return Ok(());
        }
        let kw_pos = self.pos();
        self.next();
        let stage = match kw.as_str() {
            "json" => Stage::Json(self.json_params()?),
            "logfmt" => self.logfmt()?,
            "unpack" => Stage::Unpack,
            "decolorize" => Stage::Decolorize,
            "regexp" => {
                let s = self.string()?;
                crate::pipeline::regexp::check(&s).map_err(|e| self.err(&e))?;
                Stage::Regexp(s)
            }
            "pattern" => {
                let s = self.string()?;
                crate::pipeline::pattern::Pattern::parse(&s).map_err(|e| self.err(&e))?;
                Stage::Pattern(s)
            }
            "line_format" => {
                let s = self.string()?;
                crate::pipeline::template::Template::parse(&s).map_err(|e| self.err(&e))?;
                Stage::LineFormat(s)
            }
            "label_format" => Stage::LabelFormat(self.label_fmts()?),
            "drop" => Stage::Drop(self.named_matchers()?),
            "keep" => Stage::Keep(self.named_matchers()?),
            "unwrap" => {
                *unwrap = Some(self.unwrap_expr()?);
                return Ok(());
            }
            _ => {
                self.i -= 1;
                let _ = kw_pos;
                return Err(self.unexpected("parser, formatter or label filter"));
            }
        };
        log.stages.push(stage);
        Ok(())
    }

    fn json_params(&mut self) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        while let Tok::Ident(_) = self.peek() {
            if self.peek_at(1) != &Tok::Eq {
                break;
            }
            let name = self.ident()?;
            self.next();
            let path = self.string()?;
            crate::pipeline::json::parse_path(&path)
                .map_err(|e| self.err(&format!("cannot parse expression [{path}]: {e}")))?;
            out.push((name, path));
            if self.peek() != &Tok::Comma {
                break;
            }
            self.next();
        }
        Ok(out)
    }

    fn logfmt(&mut self) -> Result<Stage, ParseError> {
        let (mut strict, mut keep_empty) = (false, false);
        while let Tok::Flag(f) = self.peek().clone() {
            match f.as_str() {
                "strict" => strict = true,
                "keep-empty" => keep_empty = true,
                _ => return Err(self.unexpected("--strict or --keep-empty")),
            }
            self.next();
        }
        let mut params = Vec::new();
        while let Tok::Ident(name) = self.peek().clone() {
            self.next();
            let key = if self.peek() == &Tok::Eq {
                self.next();
                self.string()?
            } else {
                name.clone()
            };
            params.push((name, key));
            if self.peek() != &Tok::Comma {
                break;
            }
            self.next();
        }
        Ok(Stage::Logfmt {
            strict,
            keep_empty,
            params,
        })
    }

    fn label_fmts(&mut self) -> Result<Vec<LabelFmt>, ParseError> {
        let mut out = Vec::new();
        loop {
            let dst = self.ident()?;
            self.expect(Tok::Eq, "=")?;
            match self.next() {
                Tok::Ident(src) => out.push(LabelFmt::Rename { dst, src }),
                Tok::Str(template) => {
                    crate::pipeline::template::Template::parse(&template)
                        .map_err(|e| self.err(&e))?;
                    out.push(LabelFmt::Template { dst, template });
                }
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("STRING or IDENTIFIER"));
                }
            }
            if self.peek() != &Tok::Comma {
                return Ok(out);
            }
            self.next();
        }
    }

    fn named_matchers(&mut self) -> Result<Vec<NamedMatcher>, ParseError> {
        let mut out = Vec::new();
        loop {
            if matches!(self.peek_at(1), Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre) {
                out.push(NamedMatcher::Matcher(self.matcher()?));
            } else {
                out.push(NamedMatcher::Name(self.ident()?));
            }
            if self.peek() != &Tok::Comma {
                return Ok(out);
            }
            self.next();
        }
    }

    fn unwrap_expr(&mut self) -> Result<Unwrap, ParseError> {
        let conv = match self.peek() {
            Tok::Ident(s) if self.peek_at(1) == &Tok::LParen => match s.as_str() {
                "bytes" => Some(Conversion::Bytes),
                "duration" | "duration_seconds" => Some(Conversion::Duration),
                _ => return Err(self.unexpected("bytes or duration")),
            },
            _ => None,
        };
        let label = if conv.is_some() {
            self.next();
            self.next();
            let l = self.ident()?;
            self.expect(Tok::RParen, ")")?;
            l
        } else {
            self.ident()?
        };
        Ok(Unwrap {
            label,
            conversion: conv.unwrap_or(Conversion::Float),
            post_filters: Vec::new(),
        })
    }
}
