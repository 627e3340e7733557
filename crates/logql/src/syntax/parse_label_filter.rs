//! Label filter expressions: `a="x" and (b > 5s or c=~"y")`, with `,` and
//! plain juxtaposition meaning `and`, and typed literals (number,
//! duration, bytes, `ip()`).

use miru_model::MatchOp;

use super::ParseError;
use super::ast::*;
use super::lexer::Tok;
use super::literals::{parse_go_float, parse_query_bytes, parse_query_duration};
use super::parser::Parser;

impl Parser<'_> {
    /// `a or b`, where `and` (also `,` and plain juxtaposition) binds tighter.
    pub(super) fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_and()?;
        while self.is_ident("or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            if self.is_ident("and") || self.peek() == &Tok::Comma {
                self.next();
            } else if !(matches!(self.peek(), Tok::LParen)
                || matches!(self.peek(), Tok::Ident(s) if s != "or" && s != "offset"))
            {
                break;
            }
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.peek() == &Tok::LParen {
            self.next();
            self.enter()?;
            let f = self.label_filter_or()?;
            self.depth -= 1;
            self.expect(Tok::RParen, ")")?;
            return Ok(f);
        }
        let name = self.ident()?;
        let op_tok = self.next();
        let cmp = match op_tok {
            Tok::Eq | Tok::EqEq => CmpOp::Eq,
            Tok::Neq => CmpOp::Neq,
            Tok::Gt => CmpOp::Gt,
            Tok::Gte => CmpOp::Gte,
            Tok::Lt => CmpOp::Lt,
            Tok::Lte => CmpOp::Lte,
            Tok::Re | Tok::Nre => {
                let op = if op_tok == Tok::Re {
                    MatchOp::Regex
                } else {
                    MatchOp::NotRegex
                };
                if !matches!(self.peek(), Tok::Str(_)) {
                    return Err(self.unexpected("STRING"));
                }
                let v = self.string()?;
                return Ok(LabelFilter::Matcher(self.make_matcher(&name, op, &v)?));
            }
            _ => {
                self.i -= 1;
                return Err(self.unexpected("comparison operator"));
            }
        };
        match self.peek().clone() {
            Tok::Str(v) if matches!(op_tok, Tok::Eq | Tok::Neq) => {
                self.next();
                let op = if cmp == CmpOp::Eq {
                    MatchOp::Equal
                } else {
                    MatchOp::NotEqual
                };
                Ok(LabelFilter::Matcher(self.make_matcher(&name, op, &v)?))
            }
            Tok::Ident(s) if s == "ip" && matches!(op_tok, Tok::Eq | Tok::Neq) => {
                self.next();
                self.expect(Tok::LParen, "(")?;
                let pattern = self.string()?;
                self.expect(Tok::RParen, ")")?;
                if crate::pipeline::ip::IpPattern::parse(&pattern).is_none() {
                    return Err(self.err(&format!("ip: invalid pattern: {pattern:?}")));
                }
                Ok(LabelFilter::Ip {
                    name,
                    negate: op_tok == Tok::Neq,
                    pattern,
                })
            }
            Tok::Num(_) | Tok::Sub | Tok::Add => self.typed_filter(name, cmp),
            _ => Err(self.unexpected("literal")),
        }
    }

    fn typed_filter(&mut self, name: String, op: CmpOp) -> Result<LabelFilter, ParseError> {
        let neg = match self.peek() {
            Tok::Sub => {
                self.next();
                true
            }
            Tok::Add => {
                self.next();
                false
            }
            _ => false,
        };
        let Tok::Num(raw) = self.peek().clone() else {
            return Err(self.unexpected("NUMBER"));
        };
        let sign = if neg { -1.0 } else { 1.0 };
        let f = if let Some(v) = parse_go_float(&raw) {
            LabelFilter::Number {
                name,
                op,
                value: sign * v,
            }
        } else if let Some(ns) = parse_query_duration(&raw) {
            LabelFilter::Duration {
                name,
                op,
                value: sign * ns / 1e9,
            }
        } else if let Some(b) = parse_query_bytes(&raw) {
            LabelFilter::Bytes {
                name,
                op,
                value: sign * b,
            }
        } else if raw.bytes().all(|c| c.is_ascii_digit())
            || raw.len() > 1
                && matches!(
                    &raw.as_bytes()[..2],
                    b"0x" | b"0X" | b"0o" | b"0b" | b"0O" | b"0B"
                )
        {
            return Err(self.err(&format!("unable to parse literal as a float: {raw}")));
        } else {
            return Err(self.unexpected(""));
        };
        self.next();
        Ok(f)
    }
}
