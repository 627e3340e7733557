//! Line filters: substrings (memchr), regexes, patterns and `ip()`.

use memchr::memmem;

use super::ip::IpPattern;
use super::pattern::Pattern;
use crate::syntax::ast::{FilterValue, LineFilter, LineOp};

enum Matcher {
    Substr(Box<memmem::Finder<'static>>),
    Regex(regex::Regex),
    Pattern(Pattern),
    Ip(IpPattern),
}

pub(crate) struct CompiledLineFilter {
    negative: bool,
    alts: Vec<Matcher>,
}

impl CompiledLineFilter {
    pub(crate) fn new(f: &LineFilter) -> Result<Self, String> {
        let mut alts = Vec::with_capacity(f.values.len());
        for v in &f.values {
            alts.push(match (f.op, v) {
                (_, FilterValue::Ip(p)) => Matcher::Ip(
                    IpPattern::parse(p).ok_or_else(|| format!("ip: invalid pattern: {p:?}"))?,
                ),
                (LineOp::Contains | LineOp::NotContains, FilterValue::Str(s)) => {
                    Matcher::Substr(Box::new(memmem::Finder::new(s.as_bytes()).into_owned()))
                }
                (LineOp::Regex | LineOp::NotRegex, FilterValue::Str(s)) => Matcher::Regex(
                    regex::Regex::new(s).map_err(|e| format!("error parsing regexp: {e}"))?,
                ),
                (LineOp::Pattern | LineOp::NotPattern, FilterValue::Str(s)) => {
                    Matcher::Pattern(Pattern::parse_filter(s)?)
                }
            });
        }
        Ok(CompiledLineFilter {
            negative: f.op.is_negative(),
            alts,
        })
    }

    pub(crate) fn keep(&self, line: &str) -> bool {
        let any = self.alts.iter().any(|m| match m {
            Matcher::Substr(f) => f.find(line.as_bytes()).is_some(),
            Matcher::Regex(r) => r.is_match(line),
            Matcher::Pattern(p) => p.test(line),
            Matcher::Ip(p) => p.matches_in(line),
        });
        any != self.negative
    }
}
