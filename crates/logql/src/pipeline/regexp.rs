//! The `regexp` parser stage: named groups of an unanchored match become
//! labels; a line that does not match keeps its labels.

use super::labels::LabelSet;

/// Checks a `regexp` stage expression as Loki does at parse time.
pub(crate) fn check(expr: &str) -> Result<regex::Regex, String> {
    let names = regex::Regex::new(r"\(\?P?<([^>]*)>").map_err(|e| e.to_string())?;
    let mut seen: Vec<&str> = Vec::new();
    for c in names.captures_iter(expr) {
        let n = c.get(1).map_or("", |m| m.as_str());
        if seen.contains(&n) {
            return Err(format!("duplicate extracted label name ({n})"));
        }
        seen.push(n);
    }
    let re = regex::Regex::new(expr).map_err(|e| format!("error parsing regexp: {e}"))?;
    if re.capture_names().flatten().next().is_none() {
        return Err("at least one named capture must be supplied".into());
    }
    Ok(re)
}

pub(crate) fn apply(re: &regex::Regex, line: &str, labels: &mut LabelSet) {
    let Some(caps) = re.captures(line) else {
        return;
    };
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            labels.add_parsed(name, m.as_str());
        }
    }
}
