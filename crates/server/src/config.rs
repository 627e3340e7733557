//! Configuration: defaults, overridden by a YAML file, overridden by
//! `MIRU_*` environment variables and command-line flags (clap merges those
//! two, flags winning). `miru config` prints the result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use miru_ingest::limits::TenantLimits;
use miru_storage::ObjectStoreConfig;
use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the WAL and (by default) the parts live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub tenancy: TenancyConfig,
    pub storage: StorageSection,
    pub otlp: OtlpConfig,
    pub query: QuerySection,
    /// Limits for every tenant; per-tenant overrides come from the runtime file.
    pub limits: TenantLimits,
    pub runtime_config: RuntimeConfigSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// host:port of the HTTP server: every API and the UI.
    pub listen: SocketAddr,
    /// host:port of the OTLP/gRPC server.
    pub grpc_listen: SocketAddr,
    /// `logfmt` (human) or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `miru=debug,info`.
    pub log_level: String,
    /// Time given to in-flight requests and the final flush on SIGTERM.
    #[serde(with = "serde_duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// When false, every request belongs to the tenant `anonymous` and
    /// `X-Scope-OrgID` is ignored.
    pub multitenancy_enabled: bool,
    /// When true, requests without `X-Scope-OrgID` get 401 (Mimir's
    /// default); when false they use the tenant `anonymous`.
    pub require_tenant_header: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub object_store: ObjectStoreConfig,
    /// How often the head is cut into parts.
    #[serde(with = "serde_duration")]
    pub flush_interval: Duration,
    /// Cut early when the head holds this many samples.
    pub max_head_samples: usize,
    /// Cut early when the log heads hold this many bytes of entries, so
    /// a burst of logs cannot grow memory until the next scheduled cut.
    pub max_head_log_bytes: usize,
    /// Series without samples for this long leave the head (and stop
    /// counting as active).
    #[serde(with = "serde_duration")]
    pub series_idle_timeout: Duration,
    /// How often settled days are merged and retention runs (a level
    /// that a scheduled cut fills to the fan-in is merged right away).
    #[serde(with = "serde_duration")]
    pub compaction_interval: Duration,
    /// Parts of one level merged together.
    pub compaction_fan_in: usize,
    /// zstd levels (1-22) of metrics parts cut from the head, of compacted
    /// metrics parts, and of logs parts.
    pub flush_zstd_level: i32,
    pub compact_zstd_level: i32,
    pub logs_zstd_level: i32,
    /// Bytes of decompressed metrics part blocks kept for the next
    /// queries (0: none kept).
    pub block_cache_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Add unit and `_total` suffixes to metric names, as Prometheus does.
    pub add_metric_suffixes: bool,
    /// Resource attributes copied onto every series as labels.
    pub promote_resource_attributes: Vec<String>,
    pub keep_identifying_resource_attributes: bool,
    /// Add `otel_scope_name`/`otel_scope_version` and scope attributes as
    /// labels (off by default, as in Prometheus and Mimir).
    pub promote_scope_metadata: bool,
}

/// PromQL execution and its bounds. Every limit names itself in the error
/// a query gets when it is exceeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySection {
    /// Longest a query may run, queueing included (a request's `timeout`
    /// parameter can only shorten it).
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// How far back an instant selector looks for a sample.
    #[serde(with = "serde_duration")]
    pub lookback_delta: Duration,
    /// Samples one query may load plus those its selectors and range
    /// functions produce per step (bounds the engine's memory).
    pub max_samples: usize,
    /// Series one query may load; 0 = no limit.
    pub max_series: usize,
    /// Bytes of series data one query may hold (labels and samples, as
    /// loaded from storage); 0 = no limit.
    pub max_memory_bytes: u64,
    /// Queries evaluated at once over all tenants; more wait for a slot
    /// until their timeout.
    pub max_concurrent: usize,
    /// Queries one tenant may have evaluating at once; 0 = no limit.
    pub max_concurrent_per_tenant: usize,
    /// Longest query text accepted, in bytes; 0 = no limit.
    pub max_expression_bytes: usize,
    /// Threads one query may use to read and decode the series of a
    /// selector and to compute range functions over them, and the size of
    /// the process-wide pool of query threads they come from (queries share
    /// it); also the threads a LogQL metric query runs its pipeline on (its
    /// own, not the pool's); 0 = one per core.
    pub parallelism: usize,
    /// Live tails (`/loki/api/v1/tail`) one tenant may hold open at once
    /// (Loki's `max_concurrent_tail_requests`).
    pub max_concurrent_tail_requests: usize,
    /// How long a live tail may stay open before the server closes it
    /// (Loki's `tail_max_duration`).
    #[serde(with = "serde_duration")]
    pub tail_max_duration: Duration,
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection {
            timeout: Duration::from_secs(120),
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            max_series: 1_000_000,
            max_memory_bytes: 256 << 20,
            max_concurrent: 16,
            max_concurrent_per_tenant: 8,
            max_expression_bytes: 128 << 10,
            parallelism: 0,
            max_concurrent_tail_requests: 10,
            tail_max_duration: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfigSection {
    /// YAML file with per-tenant limit overrides (`overrides: {tenant: {...}}`).
    pub file: Option<PathBuf>,
    /// How often the file is re-read.
    #[serde(with = "serde_duration")]
    pub period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            tenancy: TenancyConfig::default(),
            storage: StorageSection::default(),
            otlp: OtlpConfig::default(),
            query: QuerySection::default(),
            limits: TenantLimits::default(),
            runtime_config: RuntimeConfigSection::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:9009".parse().expect("BUG: default address"),
            grpc_listen: "0.0.0.0:4317".parse().expect("BUG: default address"),
            log_format: LogFormat::Logfmt,
            log_level: "info".into(),
            shutdown_timeout: Duration::from_secs(8),
        }
    }
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            multitenancy_enabled: true,
            require_tenant_header: false,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            object_store: ObjectStoreConfig::default(),
            flush_interval: Duration::from_secs(600),
            max_head_samples: 50_000_000,
            max_head_log_bytes: 512 << 20,
            series_idle_timeout: Duration::from_secs(1800),
            compaction_interval: Duration::from_secs(60),
            compaction_fan_in: 4,
            flush_zstd_level: 3,
            compact_zstd_level: 9,
            logs_zstd_level: 10,
            block_cache_bytes: 128 << 20,
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            add_metric_suffixes: true,
            promote_resource_attributes: Vec::new(),
            keep_identifying_resource_attributes: false,
            promote_scope_metadata: false,
        }
    }
}

impl Default for RuntimeConfigSection {
    fn default() -> Self {
        RuntimeConfigSection {
            file: None,
            period: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    pub fn from_yaml_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let c: Config = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    /// What the types do not say: a zstd level out of range would fail
    /// every part write later, so it is refused at start-up.
    fn check(&self) -> Result<(), String> {
        let s = &self.storage;
        for (key, level) in [
            ("storage.flush_zstd_level", s.flush_zstd_level),
            ("storage.compact_zstd_level", s.compact_zstd_level),
            ("storage.logs_zstd_level", s.logs_zstd_level),
        ] {
            if !(1..=22).contains(&level) {
                return Err(format!("{key}: {level} is not a zstd level (1 to 22)"));
            }
        }
        Ok(())
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("BUG: config serialises to YAML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_levels_out_of_range_are_refused() {
        let e = Config::from_yaml("storage:\n  logs_zstd_level: 23\n").unwrap_err();
        assert!(e.contains("storage.logs_zstd_level: 23"), "{e}");
        assert!(Config::from_yaml("storage:\n  flush_zstd_level: 0\n").is_err());
        let c = Config::from_yaml("storage:\n  logs_zstd_level: 19\n").unwrap();
        assert_eq!(c.storage.logs_zstd_level, 19);
    }

    #[test]
    fn yaml_round_trip_and_partial_files() {
        let c = Config::from_yaml(
            "data_dir: /tmp/x\nstorage:\n  flush_interval: 2m\nlimits:\n  ingestion_rate: 5\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.storage.flush_interval, Duration::from_secs(120));
        assert_eq!(c.limits.ingestion_rate, 5.0);
        assert_eq!(c.limits.max_label_names_per_series, 30);
        let back = Config::from_yaml(&c.to_yaml()).unwrap();
        assert_eq!(back.storage.flush_interval, c.storage.flush_interval);
        assert!(Config::from_yaml("no_such_key: 1").is_err());
        let s3 = Config::from_yaml(
            "storage:\n  object_store:\n    backend: s3\n    bucket: b\n    endpoint: http://127.0.0.1:1\n",
        )
        .unwrap();
        assert!(matches!(
            s3.storage.object_store,
            ObjectStoreConfig::S3 { .. }
        ));
    }
}
