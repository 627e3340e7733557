//! Field detection for Loki's `detected_fields`: which parser understands
//! a line (`json`, else `logfmt`) and what type each value looks like.

use miru_model::Labels;

use super::json;
use super::labels::{Category, LabelSet};
use super::logfmt::Logfmt;
use crate::syntax::literals::{parse_bytes, parse_go_duration};

/// Fields a parser finds in `line`, with the parser's name: `json` for a
/// JSON object, else `logfmt` (lenient). Empty when neither finds any.
pub fn parsed_fields(line: &str) -> (&'static str, Vec<(String, String)>) {
    let fields = |set: &LabelSet| -> Vec<(String, String)> {
        set.category_labels(Category::Parsed)
            .iter()
            .filter(|l| !l.name.starts_with("__"))
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect()
    };
    if line.trim_start().starts_with('{') {
        let mut set = LabelSet::from_stream(&Labels::default());
        json::apply_all(line, &mut set);
        if !set.has_error() {
            return ("json", fields(&set));
        }
    }
    let mut set = LabelSet::from_stream(&Labels::default());
    Logfmt {
        strict: false,
        keep_empty: false,
        params: Vec::new(),
    }
    .apply(line, &mut set);
    ("logfmt", fields(&set))
}

/// The type Loki reports for a detected field's value.
pub fn field_type(value: &str) -> &'static str {
    if value == "true" || value == "false" {
        "boolean"
    } else if value.parse::<i64>().is_ok() {
        "int"
    } else if value.parse::<f64>().is_ok_and(f64::is_finite) {
        "float"
    } else if parse_go_duration(value).is_ok() {
        "duration"
    } else if value.chars().next().is_some_and(|c| c.is_ascii_digit()) && parse_bytes(value).is_ok()
    {
        "bytes"
    } else {
        "string"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_by_the_parser_that_understands_them() {
        let (p, f) = parsed_fields(r#"{"level":"info","http":{"status":200},"took":"12ms"}"#);
        assert_eq!(p, "json");
        assert!(f.contains(&("http_status".into(), "200".into())), "{f:?}");
        let (p, f) = parsed_fields("level=warn msg=\"slow query\" size=10KB");
        assert_eq!(p, "logfmt");
        assert!(f.contains(&("size".into(), "10KB".into())), "{f:?}");
        assert_eq!(parsed_fields("just words").1, vec![]);
    }

    #[test]
    fn values_get_loki_types() {
        for (v, t) in [
            ("true", "boolean"),
            ("200", "int"),
            ("0.25", "float"),
            ("12ms", "duration"),
            ("10KB", "bytes"),
            ("GET", "string"),
            ("inf", "string"),
        ] {
            assert_eq!(field_type(v), t, "{v}");
        }
    }
}
