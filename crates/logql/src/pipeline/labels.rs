//! The label set of one log line while the pipeline runs: stream labels,
//! structured metadata and parsed labels kept apart (for Loki's
//! categorized encoding), plus the `__error__` state.
//!
//! Conflicts follow Loki: the base name belongs to the highest-precedence
//! source (stream > metadata > parsed); a losing value goes to
//! `<name>_extracted`, where a parsed value beats a metadata one.

use std::sync::Arc;

use miru_model::{Label, Labels};

pub const ERROR_LABEL: &str = "__error__";
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Stream,
    Metadata,
    Parsed,
}

#[derive(Debug, Clone)]
struct Entry {
    name: Arc<str>,
    value: Arc<str>,
    category: Category,
}

#[derive(Debug, Clone, Default)]
pub struct LabelSet {
    entries: Vec<Entry>,
    pub(crate) error: Option<String>,
    pub(crate) error_details: Option<String>,
}

impl LabelSet {
    pub fn from_stream(labels: &Labels) -> Self {
        LabelSet {
            entries: labels
                .iter()
                .map(|l| Entry {
                    name: Arc::clone(&l.name),
                    value: Arc::clone(&l.value),
                    category: Category::Stream,
                })
                .collect(),
            error: None,
            error_details: None,
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| &*e.name == name)
    }

    /// A regular label (not `__error__`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|i| &*self.entries[i].value)
    }

    /// Like [`LabelSet::get`], but also reads the error labels, as string
    /// label filters and templates do.
    pub fn get_any(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL if self.error.is_some() => self.error.as_deref(),
            ERROR_DETAILS_LABEL if self.error_details.is_some() => self.error_details.as_deref(),
            _ => self.get(name),
        }
    }

    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }

    /// Records the first error of the line; later ones do not replace it.
    pub fn set_error(&mut self, error: &str, details: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(error.to_string());
            let d: String = details.into();
            if !d.is_empty() {
                self.error_details = Some(d);
            }
        }
    }

    fn put(&mut self, name: &str, value: &str, category: Category) {
        if let Some(i) = self.find(name) {
            self.entries[i].value = value.into();
            self.entries[i].category = category;
        } else {
            self.entries.push(Entry {
                name: name.into(),
                value: value.into(),
                category,
            });
        }
    }

    /// Adds a structured metadata pair; it loses to a stream label.
    pub fn add_metadata(&mut self, name: &str, value: &str) {
        match self.find(name).map(|i| self.entries[i].category) {
            Some(Category::Stream) => {
                let ext = format!("{name}_extracted");
                if self.find(&ext).is_none() {
                    self.put(&ext, value, Category::Metadata);
                }
            }
            _ => self.put(name, value, Category::Metadata),
        }
    }

    /// Adds a label a parser extracted.
    pub fn add_parsed(&mut self, name: &str, value: &str) {
        match self.find(name).map(|i| self.entries[i].category) {
            Some(Category::Stream | Category::Metadata) => {
                self.put(&format!("{name}_extracted"), value, Category::Parsed);
            }
            _ => self.put(name, value, Category::Parsed),
        }
    }

    /// Sets a label in place (formatters): an existing label keeps its
    /// category, a new one is parsed.
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some(i) = self.find(name) {
            self.entries[i].value = value.into();
        } else {
            self.put(name, value, Category::Parsed);
        }
    }

    pub fn remove(&mut self, name: &str) {
        match name {
            ERROR_LABEL => {
                self.error = None;
                self.error_details = None;
            }
            ERROR_DETAILS_LABEL => self.error_details = None,
            _ => self.entries.retain(|e| &*e.name != name),
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.entries.retain(|e| keep(&e.name, &e.value));
    }

    /// All labels including the error ones, sorted; empty values are kept
    /// (they are significant in LogQL results).
    pub fn to_labels(&self) -> Labels {
        self.build(|_| true, true)
    }

    /// The labels of one category, sorted.
    pub fn category_labels(&self, category: Category) -> Labels {
        self.build(|c| c == category, category == Category::Parsed)
    }

    fn build(&self, want: impl Fn(Category) -> bool, with_error: bool) -> Labels {
        let mut v: Vec<Label> = self
            .entries
            .iter()
            .filter(|e| want(e.category))
            .map(|e| Label {
                name: Arc::clone(&e.name),
                value: Arc::clone(&e.value),
            })
            .collect();
        if with_error {
            if let Some(e) = &self.error {
                v.retain(|l| &*l.name != ERROR_LABEL);
                v.push(Label::new(ERROR_LABEL, e.as_str()));
            }
            if let Some(d) = &self.error_details {
                v.retain(|l| &*l.name != ERROR_DETAILS_LABEL);
                v.push(Label::new(ERROR_DETAILS_LABEL, d.as_str()));
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|a, b| a.name == b.name);
        Labels::from_sorted(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_follow_precedence() {
        let mut s = LabelSet::from_stream(&Labels::from_pairs([("k", "s"), ("tri", "s")]));
        s.add_metadata("k", "m");
        s.add_metadata("md", "m");
        s.add_parsed("k", "p");
        s.add_parsed("md", "p");
        let l = s.to_labels();
        assert_eq!(l.get("k"), Some("s"));
        assert_eq!(l.get("k_extracted"), Some("p"));
        assert_eq!(l.get("md"), Some("m"));
        assert_eq!(l.get("md_extracted"), Some("p"));
    }
}
