//! The Go `text/template` subset of `line_format` and `label_format`:
//! text, `{{ pipelines }}` over `.label` fields, variables, string and
//! number literals, function calls and `|` chains, `if`/`else if`/`else`,
//! `range` and `with`, and `{{-`/`-}}` trimming. Functions are in
//! `funcs.rs`; error texts follow Go's (`unclosed action`, `function "x"
//! not defined`).

mod builtins;
mod funcs;
mod lex;

use lex::{ATok, lex_action};

pub(crate) use funcs::TVal;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Lit(TVal),
    Func(String),
    Sub(Box<Pipe>),
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    nodes: Vec<Node>,
}

/// What a template can read while it runs.
pub(crate) struct Ctx<'a> {
    pub(crate) get: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) line: &'a str,
    pub(crate) ts_ns: i64,
}

/// Bounds that keep hostile templates from overflowing the stack or
/// running for long.
const MAX_NESTING: usize = 50;
const MAX_OUTPUT: usize = 1 << 20;
const MAX_STEPS: usize = 100_000;

enum Item {
    Text(String),
    Action(Vec<ATok>),
}

fn err(msg: &str) -> String {
    format!("template: line:1: {msg}")
}

fn split(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        let mut body = &rest[open + 2..];
        if body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n") {
            text.truncate(text.trim_end().len());
            body = &body[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        let (toks, consumed, trim_right) = lex_action(body).map_err(|e| err(&e))?;
        items.push(Item::Action(toks));
        rest = &body[consumed..];
        if trim_right {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        items.push(Item::Text(rest.to_string()));
    }
    Ok(items)
}

struct Parser {
    items: std::vec::IntoIter<Item>,
    depth: usize,
}

enum End {
    Eof,
    Close,
    Else(Vec<ATok>),
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, End), String> {
        let mut out = Vec::new();
        while let Some(item) = self.items.next() {
            let toks = match item {
                Item::Text(t) => {
                    out.push(Node::Text(t));
                    continue;
                }
                Item::Action(t) => t,
            };
            match toks.first() {
                Some(ATok::Ident(k)) if k == "end" => return Ok((out, End::Close)),
                Some(ATok::Ident(k)) if k == "else" => {
                    return Ok((out, End::Else(toks[1..].to_vec())));
                }
                Some(ATok::Ident(k)) if k == "if" || k == "with" || k == "range" => {
                    let kw = k.clone();
                    let node = self.control(&kw, &toks[1..])?;
                    out.push(node);
                }
                None => {}
                _ => out.push(Node::Action(parse_pipe(&toks, 0)?)),
            }
        }
        Ok((out, End::Eof))
    }

    fn control(&mut self, kw: &str, toks: &[ATok]) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(err("template nested too deeply"));
        }
        let pipe = parse_pipe(toks, 0)?;
        let (body, end) = self.list()?;
        let els = match end {
            End::Eof => return Err(err(&format!("unexpected EOF in {kw}"))),
            End::Close => Vec::new(),
            End::Else(rest) if rest.is_empty() => {
                let (els, end) = self.list()?;
                if !matches!(end, End::Close) {
                    return Err(err(&format!("expected end in {kw}")));
                }
                els
            }
            End::Else(rest) => {
                // `else if ...` nests a new `if` that consumes the `end`.
                let Some(ATok::Ident(k2)) = rest.first() else {
                    return Err(err("unexpected token after else"));
                };
                let k2 = k2.clone();
                vec![self.control(&k2, &rest[1..])?]
            }
        };
        self.depth -= 1;
        Ok(match kw {
            "if" => Node::If(pipe, body, els),
            "with" => Node::With(pipe, body, els),
            _ => Node::Range(pipe, body, els),
        })
    }
}

fn parse_pipe(toks: &[ATok], depth: usize) -> Result<Pipe, String> {
    if depth > MAX_NESTING {
        return Err(err("template nested too deeply"));
    }
    let mut i = 0;
    let mut decl = Vec::new();
    // `$x := ...` or `$k, $v := ...`
    let assign = toks
        .iter()
        .position(|t| matches!(t, ATok::Declare | ATok::Assign));
    if let Some(a) = assign {
        for t in &toks[..a] {
            match t {
                ATok::Var(v, f) if f.is_empty() => decl.push(v.clone()),
                ATok::Comma => {}
                _ => return Err(err("unexpected token in declaration")),
            }
        }
        i = a + 1;
    }
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            ATok::Pipe => {
                if cur.is_empty() {
                    return Err(err("missing command"));
                }
                cmds.push(std::mem::take(&mut cur));
            }
            ATok::LParen => {
                let mut depth = 0;
                let start = i + 1;
                let mut j = i;
                while j < toks.len() {
                    match toks[j] {
                        ATok::LParen => depth += 1,
                        ATok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= toks.len() {
                    return Err(err("unclosed left paren"));
                }
                cur.push(Arg::Sub(Box::new(parse_pipe(&toks[start..j], depth + 1)?)));
                i = j;
            }
            ATok::RParen => return Err(err("unexpected right paren")),
            ATok::Dot(f) => cur.push(Arg::Dot(f.clone())),
            ATok::Var(v, f) => cur.push(Arg::Var(v.clone(), f.clone())),
            ATok::Str(s) => cur.push(Arg::Lit(TVal::Str(s.clone()))),
            ATok::Num(n) => cur.push(Arg::Lit(n.clone())),
            ATok::Ident(name) => match name.as_str() {
                "true" => cur.push(Arg::Lit(TVal::Bool(true))),
                "false" => cur.push(Arg::Lit(TVal::Bool(false))),
                "nil" => cur.push(Arg::Lit(TVal::Nil)),
                n if builtins::exists(n) => cur.push(Arg::Func(n.to_string())),
                n => return Err(err(&format!("function {n:?} not defined"))),
            },
            ATok::Comma | ATok::Declare | ATok::Assign => return Err(err("unexpected token")),
        }
        i += 1;
    }
    if cur.is_empty() {
        return Err(err("missing value for command"));
    }
    cmds.push(cur);
    Ok(Pipe { decl, cmds })
}

impl Template {
    pub(crate) fn parse(src: &str) -> Result<Self, String> {
        let mut p = Parser {
            items: split(src)?.into_iter(),
            depth: 0,
        };
        let (nodes, end) = p.list()?;
        match end {
            End::Eof => Ok(Template { nodes }),
            End::Close => Err(err("unexpected {{end}}")),
            End::Else(_) => Err(err("unexpected {{else}}")),
        }
    }

    pub(crate) fn render(&self, ctx: &Ctx<'_>) -> Result<String, String> {
        let mut out = String::new();
        let mut vars: Vec<(String, TVal)> = Vec::new();
        let dot = TVal::Labels;
        run(&self.nodes, ctx, &dot, &mut vars, &mut out, 0, &mut 0)?;
        Ok(out)
    }
}

fn run(
    nodes: &[Node],
    ctx: &Ctx<'_>,
    dot: &TVal,
    vars: &mut Vec<(String, TVal)>,
    out: &mut String,
    depth: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > MAX_NESTING {
        return Err(err("exceeded maximum template depth"));
    }
    // Every call and node costs a step, so empty loops are bounded too.
    *budget += 1;
    if *budget > MAX_STEPS {
        return Err(err("template output too large"));
    }
    for n in nodes {
        *budget += 1;
        if out.len() > MAX_OUTPUT || *budget > MAX_STEPS {
            return Err(err("template output too large"));
        }
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = funcs::eval_pipe(p, ctx, dot, vars)?;
                if p.decl.is_empty() {
                    out.push_str(&v.to_text());
                }
            }
            Node::If(p, body, els) | Node::With(p, body, els) => {
                let v = funcs::eval_pipe(p, ctx, dot, vars)?;
                let mark = vars.len();
                if v.truthy() {
                    let inner = if matches!(n, Node::With(..)) { &v } else { dot };
                    run(body, ctx, inner, vars, out, depth + 1, budget)?;
                } else {
                    run(els, ctx, dot, vars, out, depth + 1, budget)?;
                }
                vars.truncate(mark);
            }
            Node::Range(p, body, els) => {
                let mut q = p.clone();
                let names = std::mem::take(&mut q.decl);
                let v = funcs::eval_pipe(&q, ctx, dot, vars)?;
                let items = v.items();
                if items.is_empty() {
                    run(els, ctx, dot, vars, out, depth + 1, budget)?;
                }
                for (k, item) in items {
                    let mark = vars.len();
                    match names.as_slice() {
                        [v1] => vars.push((v1.clone(), item.clone())),
                        [k1, v1] => {
                            vars.push((k1.clone(), k));
                            vars.push((v1.clone(), item.clone()));
                        }
                        _ => {}
                    }
                    run(body, ctx, &item, vars, out, depth + 1, budget)?;
                    vars.truncate(mark);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> Result<String, String> {
        let t = Template::parse(src)?;
        let get = |n: &str| match n {
            "level" => Some("error".to_string()),
            "msg" => Some("hello".to_string()),
            "n" => Some("1500".to_string()),
            _ => None,
        };
        t.render(&Ctx {
            get: &get,
            line: "the line",
            ts_ns: 0,
        })
    }

    #[test]
    fn renders() {
        assert_eq!(render("L={{.level}}").unwrap(), "L=error");
        assert_eq!(render("{{.level | upper}}").unwrap(), "ERROR");
        assert_eq!(render("V={{.missing}}").unwrap(), "V=");
        assert_eq!(render(r#"{{ printf "[%s]" .msg }}"#).unwrap(), "[hello]");
        assert_eq!(render("{{ div .n 1000 }}").unwrap(), "1");
        assert_eq!(
            render(r#"{{ if eq .level "error" }}E{{ else }}O{{ end }}"#).unwrap(),
            "E"
        );
        assert_eq!(render("{{ __line__ }}").unwrap(), "the line");
        assert_eq!(render("a {{- .msg -}} b").unwrap(), "ahellob");
        assert!(
            render("{{ nosuchfunc }}")
                .unwrap_err()
                .contains("not defined")
        );
        assert!(render("{{").unwrap_err().contains("unclosed action"));
        assert!(
            Template::parse(r#"{{ range $q := fromJson .qs }} {{ $q.query }} {{end}}"#).is_ok()
        );
    }
}
