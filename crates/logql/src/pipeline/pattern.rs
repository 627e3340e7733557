//! Loki's pattern syntax: literals and `<name>` captures (`<_>` unnamed).
//! A capture ends at the next literal's first occurrence; the last one
//! takes the rest of the line.

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    /// `None` for `<_>`.
    Cap(Option<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    parts: Vec<Part>,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl Pattern {
    fn tokenize(s: &str) -> Result<Vec<Part>, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            if rest.starts_with('<')
                && let Some(end) = rest.find('>')
                && is_name(&rest[1..end])
            {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                if matches!(parts.last(), Some(Part::Cap(_))) {
                    return Err("found consecutive capture".into());
                }
                let name = &rest[1..end];
                parts.push(Part::Cap((name != "_").then(|| name.to_string())));
                rest = &rest[end + 1..];
                continue;
            }
            let ch = rest.chars().next().unwrap_or(' ');
            lit.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(parts)
    }

    /// A parser stage pattern: at least one named capture, no duplicates.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let parts = Self::tokenize(s)?;
        let names: Vec<&String> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Cap(Some(n)) => Some(n),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required".into());
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("duplicate capture name ({n})"));
            }
        }
        Ok(Pattern { parts })
    }

    /// A line filter pattern (`|>`): only `<_>` captures.
    pub(crate) fn parse_filter(s: &str) -> Result<Self, String> {
        let parts = Self::tokenize(s)?;
        if parts.iter().any(|p| matches!(p, Part::Cap(Some(_)))) {
            return Err(
                "invalid pattern: named captures are not allowed in pattern line filters".into(),
            );
        }
        Ok(Pattern { parts })
    }

    /// Values of the named captures, in order, as far as the line matches.
    pub(crate) fn captures<'a>(&self, line: &'a str) -> Vec<(&str, &'a str)> {
        let mut out = Vec::new();
        if line.is_empty() {
            return out;
        }
        let mut parts = &self.parts[..];
        let mut rest = line;
        if let Some(Part::Lit(l)) = parts.first() {
            if !rest.starts_with(l.as_str()) {
                return out;
            }
            rest = &rest[l.len()..];
            parts = &parts[1..];
        }
        while let Some(Part::Cap(name)) = parts.first() {
            let Some(Part::Lit(l)) = parts.get(1) else {
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return out;
            };
            parts = &parts[2..];
            match rest.find(l.as_str()) {
                None => {
                    if let Some(n) = name {
                        out.push((n.as_str(), rest));
                    }
                    return out;
                }
                Some(i) => {
                    if let Some(n) = name {
                        out.push((n.as_str(), &rest[..i]));
                    }
                    rest = &rest[i + l.len()..];
                }
            }
        }
        out
    }

    /// Whether the whole line matches.
    pub(crate) fn test(&self, line: &str) -> bool {
        if line.is_empty() || self.parts.is_empty() {
            return false;
        }
        let mut parts = &self.parts[..];
        let mut rest = line;
        if let Some(Part::Lit(l)) = parts.first() {
            if !rest.starts_with(l.as_str()) {
                return false;
            }
            rest = &rest[l.len()..];
            parts = &parts[1..];
        }
        while !parts.is_empty() {
            let Some(Part::Lit(l)) = parts.get(1) else {
                return true;
            };
            parts = &parts[2..];
            match rest.find(l.as_str()) {
                None => return false,
                Some(i) => rest = &rest[i + l.len()..],
            }
        }
        rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_tests() {
        let p = Pattern::parse("<method> <path> <status>").unwrap();
        assert_eq!(
            p.captures("GET /home 200"),
            vec![("method", "GET"), ("path", "/home"), ("status", "200")]
        );
        let short = Pattern::parse("<method> <path>").unwrap();
        assert_eq!(short.captures("POST"), vec![("method", "POST")]);
        let f = Pattern::parse_filter("GET <_> 200").unwrap();
        assert!(f.test("GET /api 200"));
        assert!(!f.test("POST /api 500"));
        assert!(
            !Pattern::parse_filter("GET /api")
                .unwrap()
                .test("GET /api 200")
        );
        assert!(Pattern::parse("no captures").is_err());
        assert!(Pattern::parse_filter("<verb> x").is_err());
    }
}
