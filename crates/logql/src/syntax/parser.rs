//! Recursive descent over the token list: metric expressions (binary
//! operators by precedence, aggregations, functions). Log selectors and
//! pipelines are in `parse_log.rs`.

use super::ParseError;
use super::ast::*;
use super::lexer::{Tok, Token, lex};
use super::literals::{parse_go_float, parse_query_duration};

/// Parses and validates a LogQL query.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = lex(src)?;
    let mut p = Parser {
        src,
        toks: tokens,
        i: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected(""));
    }
    Ok(e)
}

pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
    /// Nesting depth, bounded so that hostile input cannot overflow the stack.
    pub(super) depth: usize,
}

const MAX_DEPTH: usize = 200;

fn precedence(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Ident(s) if s == "or" => (BinOp::Or, 1),
        Tok::Ident(s) if s == "and" => (BinOp::And, 2),
        Tok::Ident(s) if s == "unless" => (BinOp::Unless, 2),
        Tok::EqEq => (BinOp::Eq, 3),
        Tok::Neq => (BinOp::Neq, 3),
        Tok::Gt => (BinOp::Gt, 3),
        Tok::Gte => (BinOp::Gte, 3),
        Tok::Lt => (BinOp::Lt, 3),
        Tok::Lte => (BinOp::Lte, 3),
        Tok::Add => (BinOp::Add, 4),
        Tok::Sub => (BinOp::Sub, 4),
        Tok::Mul => (BinOp::Mul, 5),
        Tok::Div => (BinOp::Div, 5),
        Tok::Mod => (BinOp::Mod, 5),
        Tok::Pow => (BinOp::Pow, 6),
        _ => return None,
    })
}

impl Parser<'_> {
    pub(super) fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    pub(super) fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.i + n).map_or(&Tok::Eof, |t| &t.tok)
    }

    pub(super) fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |t| t.pos)
    }

    pub(super) fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    pub(super) fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == name)
    }

    pub(super) fn err(&self, msg: &str) -> ParseError {
        ParseError::at(self.src, self.pos(), msg)
    }

    /// `syntax error: unexpected X[, expecting Y]` at the current token.
    pub(super) fn unexpected(&self, expecting: &str) -> ParseError {
        let mut msg = format!("syntax error: unexpected {}", self.peek().describe());
        if !expecting.is_empty() {
            msg.push_str(", expecting ");
            msg.push_str(expecting);
        }
        self.err(&msg)
    }

    pub(super) fn expect(&mut self, t: Tok, name: &str) -> Result<(), ParseError> {
        if self.peek() == &t {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(name))
        }
    }

    pub(super) fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("IDENTIFIER")),
        }
    }

    pub(super) fn string(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("STRING")),
        }
    }

    pub(super) fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("expression nested too deeply"));
        }
        Ok(())
    }

    /// Binary expressions by precedence climbing; `^` is right-associative.
    pub(super) fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = precedence(self.peek()) {
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos();
            self.next();
            let mut return_bool = false;
            if self.is_ident("bool") {
                self.next();
                return_bool = true;
            }
            let matching = self.vector_matching()?;
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(op, return_bool, matching, lhs, rhs, op_pos)?;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn binary(
        &self,
        op: BinOp,
        return_bool: bool,
        matching: Option<VectorMatching>,
        lhs: Expr,
        rhs: Expr,
        pos: usize,
    ) -> Result<Expr, ParseError> {
        let at = |m: &str| ParseError::at(self.src, pos, m);
        let (Expr::Metric(l), Expr::Metric(r)) = (lhs, rhs) else {
            return Err(at(
                "unexpected type for left leg of binary operation (log): a metric query is expected",
            ));
        };
        if op.is_set() {
            if l.is_scalar() {
                return Err(at(
                    "unexpected literal for left leg of logical/set binary operation (or, and, unless)",
                ));
            }
            if r.is_scalar() {
                return Err(at(
                    "unexpected literal for right leg of logical/set binary operation (or, and, unless)",
                ));
            }
        }
        if return_bool && !op.is_comparison() {
            return Err(at("bool modifier can only be used on comparison operators"));
        }
        Ok(Expr::Metric(MetricExpr::Binary {
            op,
            return_bool,
            matching,
            lhs: Box::new(l),
            rhs: Box::new(r),
        }))
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "(")?;
        let mut out = Vec::new();
        while self.peek() != &Tok::RParen {
            out.push(self.ident()?);
            if self.peek() == &Tok::Comma {
                self.next();
            } else if self.peek() != &Tok::RParen {
                return Err(self.unexpected(", or )"));
            }
        }
        self.next();
        Ok(out)
    }

    fn vector_matching(&mut self) -> Result<Option<VectorMatching>, ParseError> {
        let on = if self.is_ident("on") {
            true
        } else if self.is_ident("ignoring") {
            false
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        let mut m = VectorMatching {
            on,
            labels,
            card: Card::OneToOne,
            include: Vec::new(),
        };
        if self.is_ident("group_left") || self.is_ident("group_right") {
            m.card = if self.is_ident("group_left") {
                Card::ManyToOne
            } else {
                Card::OneToMany
            };
            self.next();
            if self.peek() == &Tok::LParen {
                m.include = self.label_list()?;
            }
        }
        Ok(Some(m))
    }

    /// A sign is allowed only directly on a number literal.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if matches!(self.peek(), Tok::Sub | Tok::Add) {
            let neg = self.next() == Tok::Sub;
            let Tok::Num(_) = self.peek() else {
                return Err(self.unexpected("NUMBER"));
            };
            let v = self.number()?;
            return Ok(Expr::Metric(MetricExpr::Literal(if neg { -v } else { v })));
        }
        self.primary()
    }

    pub(super) fn number(&mut self) -> Result<f64, ParseError> {
        match self.peek().clone() {
            Tok::Num(s) => {
                let v = parse_go_float(&s)
                    .ok_or_else(|| self.err(&format!("unable to parse literal as a float: {s}")))?;
                self.next();
                Ok(v)
            }
            _ => Err(self.unexpected("NUMBER")),
        }
    }

    pub(super) fn duration(&mut self) -> Result<i64, ParseError> {
        match self.peek().clone() {
            Tok::Num(s) => {
                let v = parse_query_duration(&s)
                    .ok_or_else(|| self.err(&format!("not a valid duration string: {s:?}")))?;
                self.next();
                Ok(v as i64)
            }
            _ => Err(self.unexpected("DURATION")),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::Num(_) => Ok(Expr::Metric(MetricExpr::Literal(self.number()?))),
            Tok::LBrace => Ok(Expr::Log(self.log_expr()?)),
            Tok::LParen => {
                self.next();
                let e = self.expr(0)?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                if let Some(op) = RangeOp::from_name(&name) {
                    self.next();
                    return Ok(Expr::Metric(self.range_agg(op)?));
                }
                if let Some(op) = VectorOp::from_name(&name) {
                    self.next();
                    return Ok(Expr::Metric(self.vector_agg(op)?));
                }
                match name.as_str() {
                    "vector" => {
                        self.next();
                        self.expect(Tok::LParen, "(")?;
                        let v = self.number()?;
                        self.expect(Tok::RParen, ")")?;
                        Ok(Expr::Metric(MetricExpr::VectorLit(v)))
                    }
                    "label_replace" => {
                        self.next();
                        self.label_replace()
                    }
                    _ => Err(self.unexpected("")),
                }
            }
            _ => Err(self.unexpected("")),
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = if self.is_ident("by") {
            false
        } else if self.is_ident("without") {
            true
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        Ok(Some(Grouping { without, labels }))
    }

    fn range_agg(&mut self, op: RangeOp) -> Result<MetricExpr, ParseError> {
        let start = self.pos();
        self.expect(Tok::LParen, "(")?;
        let param = if op == RangeOp::QuantileOverTime {
            let v = self.number()?;
            self.expect(Tok::Comma, ",")?;
            Some(v)
        } else {
            None
        };
        self.enter()?;
        let (log, unwrap, range) = self.log_range()?;
        self.depth -= 1;
        self.expect(Tok::RParen, ")")?;
        let grouping = self.grouping()?;
        let at = |m: &str| ParseError::at(self.src, start, m);
        let Some((range_ns, offset_ns)) = range else {
            return Err(at("syntax error: a range vector needs a range like [5m]"));
        };
        let name = op.name();
        use RangeOp::*;
        if grouping.is_some()
            && !matches!(
                op,
                AvgOverTime
                    | StddevOverTime
                    | StdvarOverTime
                    | QuantileOverTime
                    | MaxOverTime
                    | MinOverTime
                    | FirstOverTime
                    | LastOverTime
            )
        {
            return Err(at(&format!("grouping not allowed for {name} aggregation")));
        }
        let needs_unwrap = !matches!(
            op,
            Rate | CountOverTime | BytesRate | BytesOverTime | AbsentOverTime
        );
        match (&unwrap, needs_unwrap) {
            (Some(_), false) if !matches!(op, Rate | AbsentOverTime) => {
                return Err(at(&format!("invalid aggregation {name} with unwrap")));
            }
            (None, true) => {
                return Err(at(&format!("invalid aggregation {name} without unwrap")));
            }
            _ => {}
        }
        Ok(MetricExpr::Range(Box::new(RangeAgg {
            op,
            param,
            log,
            unwrap,
            range_ns,
            offset_ns,
            grouping,
        })))
    }

    fn vector_agg(&mut self, op: VectorOp) -> Result<MetricExpr, ParseError> {
        let start = self.pos();
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "(")?;
        let first = self.expr(0)?;
        let (param, inner) = if self.peek() == &Tok::Comma {
            self.next();
            let inner = self.expr(0)?;
            let Expr::Metric(MetricExpr::Literal(p)) = first else {
                return Err(ParseError::at(
                    self.src,
                    start,
                    "syntax error: unexpected expression as aggregation parameter",
                ));
            };
            (Some(p), inner)
        } else {
            (None, first)
        };
        self.expect(Tok::RParen, ")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        let at = |m: &str| ParseError::at(self.src, start, m);
        let Expr::Metric(inner) = inner else {
            return Err(at(
                "unexpected type for vector aggregation (log): a metric query is expected",
            ));
        };
        let takes_param = matches!(
            op,
            VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk
        );
        let name = format!("{op:?}").to_lowercase();
        match (takes_param, param) {
            (true, None) => return Err(at(&format!("parameter required for operation {name}"))),
            (true, Some(p)) if p.fract() != 0.0 || p < 1.0 => {
                return Err(at(&format!(
                    "invalid parameter ({name}(k, ...)): k must be an integer greater than 0, got {p}"
                )));
            }
            (false, Some(_)) => {
                return Err(at(&format!("unsupported parameter for operation {name}")));
            }
            _ => {}
        }
        if op == VectorOp::ApproxTopk && grouping.is_some() {
            return Err(at("grouping not allowed for approx_topk aggregation"));
        }
        Ok(MetricExpr::Vector {
            op,
            param,
            inner: Box::new(inner),
            grouping,
        })
    }

    fn label_replace(&mut self) -> Result<Expr, ParseError> {
        self.expect(Tok::LParen, "(")?;
        let inner = self.expr(0)?;
        let mut args = Vec::new();
        for _ in 0..4 {
            self.expect(Tok::Comma, ",")?;
            args.push(self.string()?);
        }
        self.expect(Tok::RParen, ")")?;
        let Expr::Metric(inner) = inner else {
            return Err(self.err("label_replace needs a metric query"));
        };
        let [dst, replacement, src, regex] = <[String; 4]>::try_from(args)
            .map_err(|_| self.err("label_replace takes 5 arguments"))?;
        if let Err(e) = regex::Regex::new(&format!("^(?s:{regex})$")) {
            return Err(self.err(&format!(
                "invalid regex in label_replace: error parsing regexp: {e}"
            )));
        }
        Ok(Expr::Metric(MetricExpr::LabelReplace {
            inner: Box::new(inner),
            dst,
            replacement,
            src,
            regex,
        }))
    }
}
