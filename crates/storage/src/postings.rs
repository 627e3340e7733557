//! The inverted index from label name and value to ascending series ids,
//! shared by the head (ids are head series ids) and part indexes (ids are
//! positions in the part's series list). A selector's candidates come from
//! intersecting the lists of its matchers instead of testing every series.

use std::sync::Arc;

use miru_model::{Labels, MatchOp, Matcher};

use crate::head::{HashMap, HashSet};

#[derive(Debug, Default)]
pub(crate) struct Postings {
    /// name -> value -> ascending ids.
    map: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u32>>>,
}

impl Postings {
    /// Files `id` under each of its labels. Ids must be added in ascending
    /// order (both the head and part indexes number series that way).
    pub(crate) fn add(&mut self, labels: &Labels, id: u32) {
        for l in labels.iter() {
            let list = self
                .map
                .entry(Arc::clone(&l.name))
                .or_default()
                .entry(Arc::clone(&l.value))
                .or_default();
            debug_assert!(list.last().is_none_or(|&last| last < id));
            list.push(id);
        }
    }

    /// Forgets the given ids.
    pub(crate) fn remove(&mut self, gone: &HashSet<u32>) {
        for values in self.map.values_mut() {
            for ids in values.values_mut() {
                ids.retain(|id| !gone.contains(id));
            }
            values.retain(|_, ids| !ids.is_empty());
        }
        self.map.retain(|_, v| !v.is_empty());
    }

    /// Ascending ids of series that may match all `matchers`: the
    /// intersection over every matcher that cannot match a missing label.
    /// `None` when no matcher narrows the set (every series is a candidate).
    /// Those matchers are applied exactly (no list holds an empty value, so
    /// a series is in a matcher's lists if and only if it matches), and
    /// callers test the candidates against the others only: see
    /// [`unapplied`].
    pub(crate) fn candidates(&self, matchers: &[Matcher]) -> Option<Vec<u32>> {
        // Equality first: one list each, usually the most selective.
        let mut narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
        narrowing.sort_by_key(|m| m.op != MatchOp::Equal);
        let mut acc: Option<Vec<u32>> = None;
        for m in narrowing {
            let ids = self.matching(m);
            acc = Some(match acc {
                None => ids,
                Some(a) => intersect(&a, &ids),
            });
            if acc.as_ref().is_some_and(Vec::is_empty) {
                break;
            }
        }
        acc
    }

    /// Ascending ids of series whose label `m.name` matches `m`.
    fn matching(&self, m: &Matcher) -> Vec<u32> {
        let Some(values) = self.map.get(m.name.as_str()) else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return values.get(m.value.as_str()).cloned().unwrap_or_default();
        }
        let lists: Vec<&Vec<u32>> = values
            .iter()
            .filter(|(v, _)| m.matches_value(v))
            .map(|(_, l)| l)
            .collect();
        match lists.len() {
            0 => Vec::new(),
            1 => lists[0].clone(),
            _ => {
                let mut all: Vec<u32> = lists.into_iter().flatten().copied().collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        }
    }

    /// Rough bytes the lists and maps hold, for the index cache's bound.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.map
            .values()
            .map(|v| v.values().map(|l| l.len() * 4 + 48).sum::<usize>() + 48)
            .sum()
    }
}

/// The matchers [`Postings::candidates`] leaves to the caller: those that
/// match the empty string, and so also select series lacking the label.
/// Testing candidates against these alone gives exactly the series that
/// match all `matchers` (re-testing the others was ~4 % of a range query
/// over several parts, a label lookup per matcher, series and part).
pub(crate) fn unapplied(matchers: &[Matcher]) -> Vec<&Matcher> {
    matchers.iter().filter(|m| m.matches_empty()).collect()
}

/// The ids in both ascending lists. Gallops through the longer list when
/// one is much shorter, the usual case for `{__name__="x", job="y"}`.
pub(crate) fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(short.len());
    if short.len() * 16 < long.len() {
        let mut rest = long;
        for &x in short {
            let i = rest.partition_point(|&y| y < x);
            if i < rest.len() && rest[i] == x {
                out.push(x);
            }
            rest = &rest[i..];
            if rest.is_empty() {
                break;
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < short.len() && j < long.len() {
        match short[i].cmp(&long[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(short[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::LabelsBuilder;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut b = LabelsBuilder::with_capacity(pairs.len());
        for (n, v) in pairs {
            b.set(*n, *v);
        }
        b.build()
    }

    #[test]
    fn candidates_intersect_narrowing_matchers() {
        let mut p = Postings::default();
        p.add(&labels(&[("__name__", "up"), ("job", "api")]), 1);
        p.add(&labels(&[("__name__", "up"), ("job", "db")]), 2);
        p.add(&labels(&[("__name__", "rps"), ("job", "api")]), 3);
        let m = |name: &str, op, v: &str| Matcher::new(name, op, v).unwrap();
        let c = p.candidates(&[
            m("__name__", MatchOp::Equal, "up"),
            m("job", MatchOp::Regex, "a.*"),
        ]);
        assert_eq!(c, Some(vec![1]));
        // A matcher that also matches a missing label does not narrow.
        assert_eq!(p.candidates(&[m("x", MatchOp::NotEqual, "1")]), None);
        assert_eq!(
            p.candidates(&[m("job", MatchOp::Equal, "none")]),
            Some(vec![])
        );
        let mut gone = HashSet::default();
        gone.insert(1);
        p.remove(&gone);
        assert_eq!(
            p.candidates(&[m("__name__", MatchOp::Equal, "up")]),
            Some(vec![2])
        );
    }

    proptest! {
        /// Candidates tested against the unapplied matchers only are
        /// exactly the series matching every matcher.
        #[test]
        fn candidates_and_unapplied_select_exactly_the_matches(
            series in proptest::collection::vec(
                (0usize..3, proptest::option::of(0usize..3), proptest::option::of(0usize..2)),
                1..40,
            ),
            picks in proptest::collection::vec((0usize..3, 0usize..4, 0usize..4), 1..4),
        ) {
            let values = ["", "a", "b", "ab"];
            let all: Vec<Labels> = series
                .iter()
                .map(|&(n, job, env)| {
                    let mut pairs = vec![("__name__", ["up", "rps", "x"][n])];
                    if let Some(j) = job {
                        pairs.push(("job", ["a", "b", "ab"][j]));
                    }
                    if let Some(e) = env {
                        pairs.push(("env", ["a", "b"][e]));
                    }
                    labels(&pairs)
                })
                .collect();
            let mut p = Postings::default();
            for (id, l) in all.iter().enumerate() {
                p.add(l, id as u32);
            }
            let ops = [MatchOp::Equal, MatchOp::NotEqual, MatchOp::Regex, MatchOp::NotRegex];
            let matchers: Vec<Matcher> = picks
                .iter()
                .map(|&(name, op, v)| {
                    let value = if ops[op] == MatchOp::Regex || ops[op] == MatchOp::NotRegex {
                        ["", "a|", "a.*", "b"][v]
                    } else {
                        values[v]
                    };
                    Matcher::new(["__name__", "job", "env"][name], ops[op], value).unwrap()
                })
                .collect();
            let want: Vec<u32> = (0..all.len() as u32)
                .filter(|&id| miru_model::matches_all(&matchers, &all[id as usize]))
                .collect();
            let rest = unapplied(&matchers);
            let got: Vec<u32> = p
                .candidates(&matchers)
                .unwrap_or_else(|| (0..all.len() as u32).collect())
                .into_iter()
                .filter(|&id| rest.iter().all(|m| m.matches(&all[id as usize])))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn intersect_is_set_intersection(
            a in proptest::collection::btree_set(0u32..2000, 0..300),
            b in proptest::collection::btree_set(0u32..2000, 0..30),
        ) {
            let av: Vec<u32> = a.iter().copied().collect();
            let bv: Vec<u32> = b.iter().copied().collect();
            let want: Vec<u32> = a.intersection(&b).copied().collect();
            prop_assert_eq!(intersect(&av, &bv), want.clone());
            prop_assert_eq!(intersect(&bv, &av), want);
        }
    }
}
