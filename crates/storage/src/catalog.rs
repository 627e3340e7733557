//! The list of parts per tenant, rebuilt at start-up by listing the object
//! store (part keys carry all the catalog needs) and kept in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use miru_model::TenantId;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

/// Suffix of the note a compaction leaves beside its output, listing the
/// parts it replaced, until those are deleted.
pub(crate) const REPLACES_SUFFIX: &str = ".replaces";

use crate::part::{PartName, Signal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub name: PartName,
    pub size: u64,
}

/// Metrics parts and logs parts are kept apart: every query, compaction
/// and replay rule reads one signal only.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    parts: BTreeMap<TenantId, Vec<PartEntry>>,
    log_parts: BTreeMap<TenantId, Vec<PartEntry>>,
}

/// Undoes `%XX` escapes; anything malformed is kept as is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && s.is_char_boundary(i + 3)
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

impl Catalog {
    pub(crate) async fn load(store: &Arc<dyn ObjectStore>) -> Result<Catalog, object_store::Error> {
        let mut c = Catalog::default();
        let mut replaces = Vec::new();
        let mut list = store.list(None);
        while let Some(meta) = list.try_next().await? {
            // Listing returns keys as stored, with the characters the store
            // escapes (such as `*` in a tenant id) percent-encoded.
            let decoded = percent_decode(meta.location.as_ref());
            let key = decoded.as_str();
            if let Some(name) = PartName::parse(key) {
                c.add(PartEntry {
                    name,
                    size: meta.size,
                });
            } else if key.ends_with(REPLACES_SUFFIX) {
                replaces.push(meta.location.clone());
            }
        }
        // A compaction that finished writing its part may have died before
        // deleting its sources: its `.replaces` note names them.
        for note in replaces {
            let body = store.get(&note).await?.bytes().await?;
            let Ok(sources) = serde_json::from_slice::<Vec<String>>(&body) else {
                // Keep the note and the parts: duplicates are merged at read
                // time, deleting on a guess could lose data.
                tracing::error!(note = %note, "unreadable compaction note left in place");
                continue;
            };
            for key in sources {
                if let Some(name) = PartName::parse(&key) {
                    c.remove(&name);
                    match store.delete(&Path::from(key)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            store.delete(&note).await?;
        }
        Ok(c)
    }

    /// The logs parts of one tenant, by listing only its `logs/` prefix
    /// (for tools that read the store without opening the storage), oldest
    /// day first, then by creation.
    pub(crate) async fn list_log_parts(
        store: &Arc<dyn ObjectStore>,
        tenant: &TenantId,
    ) -> Result<Vec<PartEntry>, object_store::Error> {
        let prefix = Path::from(format!("{tenant}/{}", Signal::Logs.as_str()));
        let mut out = Vec::new();
        let mut list = store.list(Some(&prefix));
        while let Some(meta) = list.try_next().await? {
            let decoded = percent_decode(meta.location.as_ref());
            if let Some(name) = PartName::parse(&decoded)
                && name.signal == Signal::Logs
                && &name.tenant == tenant
            {
                out.push(PartEntry {
                    name,
                    size: meta.size,
                });
            }
        }
        out.sort_by(|a, b| {
            (a.name.day_start_ms, &a.name.id).cmp(&(b.name.day_start_ms, &b.name.id))
        });
        Ok(out)
    }

    fn signal_mut(&mut self, signal: Signal) -> &mut BTreeMap<TenantId, Vec<PartEntry>> {
        match signal {
            Signal::Metrics => &mut self.parts,
            Signal::Logs => &mut self.log_parts,
        }
    }

    pub(crate) fn add(&mut self, e: PartEntry) {
        let v = self
            .signal_mut(e.name.signal)
            .entry(e.name.tenant.clone())
            .or_default();
        v.push(e);
        v.sort_by(|a, b| a.name.id.cmp(&b.name.id));
    }

    pub(crate) fn remove(&mut self, name: &PartName) {
        if let Some(v) = self.signal_mut(name.signal).get_mut(&name.tenant) {
            v.retain(|e| &e.name != name);
        }
    }

    /// Logs parts of a tenant overlapping `[mint, maxt]` (ms), oldest first.
    pub(crate) fn log_overlapping(
        &self,
        tenant: &TenantId,
        mint: i64,
        maxt: i64,
    ) -> Vec<PartEntry> {
        self.log_parts
            .get(tenant)
            .map(|v| {
                v.iter()
                    .filter(|e| e.name.overlaps(mint, maxt))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Parts of a tenant overlapping `[mint, maxt]`, oldest first (by
    /// creation), so that later data wins when timestamps collide.
    pub(crate) fn overlapping(&self, tenant: &TenantId, mint: i64, maxt: i64) -> Vec<PartEntry> {
        self.parts
            .get(tenant)
            .map(|v| {
                v.iter()
                    .filter(|e| e.name.overlaps(mint, maxt))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn tenant_parts(&self, tenant: &TenantId) -> Vec<PartEntry> {
        self.parts.get(tenant).cloned().unwrap_or_default()
    }

    pub(crate) fn tenants(&self) -> Vec<TenantId> {
        self.parts.keys().cloned().collect()
    }

    /// For each tenant and day, the newest WAL segment whose data of the
    /// signal is complete in parts; replay skips records covered by it.
    pub(crate) fn flushed_through(&self, signal: Signal) -> HashMap<(TenantId, i64), u64> {
        let mut m: HashMap<(TenantId, i64), u64> = HashMap::new();
        let parts = match signal {
            Signal::Metrics => &self.parts,
            Signal::Logs => &self.log_parts,
        };
        for (t, parts) in parts {
            for p in parts {
                let e = m.entry((t.clone(), p.name.day_start_ms)).or_default();
                *e = (*e).max(p.name.wal_segment);
            }
        }
        m
    }

    /// Parts and bytes per tenant, both signals together.
    pub(crate) fn stats(&self) -> Vec<(TenantId, usize, u64)> {
        let mut m: BTreeMap<&TenantId, (usize, u64)> = BTreeMap::new();
        for (t, v) in self.parts.iter().chain(self.log_parts.iter()) {
            let e = m.entry(t).or_default();
            e.0 += v.len();
            e.1 += v.iter().map(|e| e.size).sum::<u64>();
        }
        m.into_iter().map(|(t, (n, b))| (t.clone(), n, b)).collect()
    }
}
