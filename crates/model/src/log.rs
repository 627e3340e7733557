//! Log entries as they arrive: a stream (its label set) and its lines.

use crate::Labels;

/// One log line with its timestamp and Loki 3 structured metadata
/// (per-entry name/value pairs that are not stream labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub timestamp_ns: i64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// The entries of one stream in a push request, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamWrite {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// A label set as Loki prints a stream: `{app="api", env="prod"}`, names in
/// label order, values quoted as Go's `strconv.Quote` does (what
/// `parse_stream_labels` in the ingest crate reads back).
pub fn format_stream_labels(labels: &Labels) -> String {
    let mut s = String::with_capacity(labels.byte_size() + 4 * labels.len() + 2);
    s.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&l.name);
        s.push_str("=\"");
        for c in l.value.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\u{7}' => s.push_str("\\a"),
                '\u{8}' => s.push_str("\\b"),
                '\u{c}' => s.push_str("\\f"),
                '\u{b}' => s.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    s.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_labels_print_as_loki_does() {
        let l = Labels::from_pairs([("job", "a\"b\\c\nd\u{1}"), ("app", "api")]);
        assert_eq!(
            format_stream_labels(&l),
            r#"{app="api", job="a\"b\\c\nd\x01"}"#
        );
        assert_eq!(format_stream_labels(&Labels::default()), "{}");
    }
}
