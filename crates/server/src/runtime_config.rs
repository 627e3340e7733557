//! Per-tenant limit overrides from the runtime file, re-read periodically
//! so that limits change without a restart. A file that fails to parse is
//! reported and the previous overrides stay in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use miru_ingest::limits::{Limits, RuntimeOverrides};

use crate::self_metrics::SelfMetrics;

pub fn load(path: &Path, limits: &Limits) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let o: RuntimeOverrides = if text.trim().is_empty() {
        RuntimeOverrides::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    limits
        .apply_overrides(&o)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(o.overrides.len())
}

pub fn spawn_reloader(path: PathBuf, period: Duration, limits: Limits, metrics: Arc<SelfMetrics>) {
    tokio::spawn(async move {
        let mut last: Option<Result<usize, String>> = None;
        loop {
            tokio::time::sleep(period).await;
            let r = load(&path, &limits);
            metrics.runtime_config_reload_ok.set(i64::from(r.is_ok()));
            if last.as_ref() != Some(&r) {
                match &r {
                    Ok(n) => {
                        tracing::info!(file = %path.display(), tenants = n, "runtime config reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "runtime config reload failed; keeping previous overrides")
                    }
                }
            }
            last = Some(r);
        }
    });
}
