//! Small integer ids for label sets and join signatures within one
//! operation over many steps.
//!
//! In a range evaluation the same series appears at every step, usually
//! with the same label allocation (rows are scattered into step vectors by
//! cloning one `Arc`). Looking a label set up by the address of that
//! allocation first makes per-step work (joins, duplicate checks) a lookup
//! of a pointer instead of hashing every label name and value at every
//! step. The first `Labels` seen at an address is kept here, so the address
//! cannot be reused by another set while the ids live.

use miru_model::Labels;

use super::binary::signature;
use crate::HashMap;
use crate::plan::Matching;

/// Ids by label content: equal sets get equal ids whatever their
/// allocation.
#[derive(Default)]
pub(crate) struct LabelIds {
    by_ptr: HashMap<usize, (Labels, u32)>,
    by_content: HashMap<Labels, u32>,
}

impl LabelIds {
    pub(crate) fn id(&mut self, l: &Labels) -> u32 {
        let key = l.as_slice().as_ptr() as usize;
        if let Some(&(_, id)) = self.by_ptr.get(&key) {
            return id;
        }
        let next = self.by_content.len() as u32;
        let id = *self.by_content.entry(l.clone()).or_insert(next);
        self.by_ptr.insert(key, (l.clone(), id));
        id
    }
}

/// Ids of join signatures (see [`signature`]): label sets with equal
/// signatures under `m` get equal ids.
#[derive(Default)]
pub(crate) struct SignatureIds {
    by_ptr: HashMap<usize, (Labels, u32)>,
    by_signature: HashMap<Vec<u8>, u32>,
}

impl SignatureIds {
    pub(crate) fn id(&mut self, l: &Labels, m: &Matching) -> u32 {
        let key = l.as_slice().as_ptr() as usize;
        if let Some(&(_, id)) = self.by_ptr.get(&key) {
            return id;
        }
        let next = self.by_signature.len() as u32;
        let id = *self.by_signature.entry(signature(l, m)).or_insert(next);
        self.by_ptr.insert(key, (l.clone(), id));
        id
    }
}

/// A set of ids cleared in O(1) between steps: an id is in the set when
/// its stamp is the current one.
#[derive(Default)]
pub(crate) struct StepSet {
    stamp: u32,
    stamps: Vec<u32>,
}

impl StepSet {
    /// Empties the set.
    pub(crate) fn clear(&mut self) {
        self.stamp += 1;
    }

    /// Adds `id`; false if it was in the set already.
    pub(crate) fn insert(&mut self, id: u32) -> bool {
        let i = id as usize;
        if i >= self.stamps.len() {
            self.stamps.resize(i + 1, 0);
        }
        let fresh = self.stamps[i] != self.stamp + 1;
        self.stamps[i] = self.stamp + 1;
        fresh
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.stamps.get(id as usize) == Some(&(self.stamp + 1))
    }
}

/// A map from ids to indexes, cleared in O(1) between steps.
#[derive(Default)]
pub(crate) struct StepMap {
    set: StepSet,
    values: Vec<usize>,
}

impl StepMap {
    pub(crate) fn clear(&mut self) {
        self.set.clear();
    }

    /// The index stored for `id` in this step, if any.
    pub(crate) fn get(&self, id: u32) -> Option<usize> {
        self.set.contains(id).then(|| self.values[id as usize])
    }

    pub(crate) fn insert(&mut self, id: u32, v: usize) {
        self.set.insert(id);
        let i = id as usize;
        if i >= self.values.len() {
            self.values.resize(i + 1, 0);
        }
        self.values[i] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_in_other_allocations_share_an_id() {
        let a = Labels::from_pairs([("job", "a")]);
        let a2 = Labels::from_pairs([("job", "a")]);
        let b = Labels::from_pairs([("job", "b")]);
        let mut ids = LabelIds::default();
        let ia = ids.id(&a);
        assert_eq!(ids.id(&a.clone()), ia);
        assert_eq!(ids.id(&a2), ia);
        assert_ne!(ids.id(&b), ia);
    }

    #[test]
    fn step_sets_forget_between_steps() {
        let mut s = StepSet::default();
        s.clear();
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.contains(3) && !s.contains(2) && !s.contains(99));
        s.clear();
        assert!(!s.contains(3));
        assert!(s.insert(3));
        let mut m = StepMap::default();
        m.clear();
        m.insert(5, 7);
        assert_eq!(m.get(5), Some(7));
        assert_eq!(m.get(4), None);
        m.clear();
        assert_eq!(m.get(5), None);
    }
}
