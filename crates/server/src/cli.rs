//! Command-line flags. Each flag can also be set by a `MIRU_*` environment
//! variable; both override the YAML config file, which overrides defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, LogFormat};
use crate::duration::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "miru",
    version,
    about = "miru: metrics, logs, traces and profiles in one binary (Prometheus/Mimir-compatible metrics today)",
    long_about = "miru with no subcommand runs the all-in-one server: every HTTP API on one port (--listen), OTLP/gRPC on --grpc-listen, data under --data-dir.\n\nSettings come from defaults, then the YAML file given by --config.file, then MIRU_* environment variables and flags (flags win)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the all-in-one server (the default).
    Serve,
    /// Print the effective configuration as YAML and exit.
    Config,
    /// Send a realistic, deterministic load to a compatible endpoint.
    #[command(subcommand)]
    Loadgen(Box<Loadgen>),
    /// Copy stored data out of the object store in open formats.
    #[command(subcommand)]
    Export(Box<Export>),
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Log entries of a tenant, time range and stream selector, as JSON
    /// lines or Parquet; restartable, read straight from the parts.
    Logs(crate::export::ExportLogsArgs),
}

#[derive(Debug, Subcommand)]
pub enum Loadgen {
    /// Metrics (node_exporter, kube-state-metrics and HTTP-service shapes) over remote write 1.0/2.0 or OTLP.
    Metrics(crate::loadgen::MetricsArgs),
    /// Kubernetes application logs (JSON, logfmt, plain) over Loki push (protobuf/JSON) or OTLP.
    Logs(crate::loadgen::LogsArgs),
    /// Microservice request traces over OTLP/HTTP or OTLP/gRPC.
    Traces(crate::loadgen::TracesArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// YAML configuration file.
    #[arg(long = "config.file", env = "MIRU_CONFIG_FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// Directory for the WAL and, with the default object store, the parts.
    #[arg(long = "data-dir", env = "MIRU_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// host:port for every HTTP API [default: 0.0.0.0:9009].
    #[arg(long, env = "MIRU_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// host:port for OTLP/gRPC [default: 0.0.0.0:4317].
    #[arg(long = "grpc-listen", env = "MIRU_GRPC_LISTEN", global = true)]
    pub grpc_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long = "log.format", env = "MIRU_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `miru=debug,info`.
    #[arg(long = "log.level", env = "MIRU_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Serve several tenants selected by X-Scope-OrgID; `false` puts
    /// everything in the tenant `anonymous`.
    #[arg(
        long = "tenancy.multitenancy-enabled",
        env = "MIRU_MULTITENANCY_ENABLED",
        global = true
    )]
    pub multitenancy_enabled: Option<bool>,
    /// Reject requests without X-Scope-OrgID with 401 (otherwise they use `anonymous`).
    #[arg(
        long = "tenancy.require-header",
        env = "MIRU_REQUIRE_TENANT_HEADER",
        global = true
    )]
    pub require_tenant_header: Option<bool>,
    /// How often the in-memory head is cut into parts, e.g. 10m.
    #[arg(long = "storage.flush-interval", env = "MIRU_FLUSH_INTERVAL", value_parser = dur, global = true)]
    pub flush_interval: Option<Duration>,
    /// How often settled days are merged and retention runs, e.g. 1m (a
    /// level that a scheduled cut fills is merged right away).
    #[arg(long = "storage.compaction-interval", env = "MIRU_COMPACTION_INTERVAL", value_parser = dur, global = true)]
    pub compaction_interval: Option<Duration>,
    /// Object store backend for parts: filesystem or s3 (gcs and azure through the config file).
    #[arg(long = "storage.backend", env = "MIRU_STORAGE_BACKEND", global = true)]
    pub backend: Option<String>,
    /// Directory of the filesystem backend [default: <data-dir>/objects].
    #[arg(
        long = "storage.filesystem.path",
        env = "MIRU_STORAGE_FILESYSTEM_PATH",
        global = true
    )]
    pub fs_path: Option<PathBuf>,
    /// S3 bucket.
    #[arg(long = "storage.s3.bucket", env = "MIRU_S3_BUCKET", global = true)]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers.
    #[arg(long = "storage.s3.endpoint", env = "MIRU_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long = "storage.s3.region", env = "MIRU_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// S3 access key id (or AWS_ACCESS_KEY_ID).
    #[arg(
        long = "storage.s3.access-key-id",
        env = "MIRU_S3_ACCESS_KEY_ID",
        global = true
    )]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (or AWS_SECRET_ACCESS_KEY).
    #[arg(
        long = "storage.s3.secret-access-key",
        env = "MIRU_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        global = true
    )]
    pub s3_secret_access_key: Option<String>,
    /// Allow an http:// S3 endpoint.
    #[arg(
        long = "storage.s3.allow-http",
        env = "MIRU_S3_ALLOW_HTTP",
        global = true
    )]
    pub s3_allow_http: Option<bool>,
    /// Use path-style S3 requests.
    #[arg(
        long = "storage.s3.force-path-style",
        env = "MIRU_S3_FORCE_PATH_STYLE",
        global = true
    )]
    pub s3_force_path_style: Option<bool>,
    /// Default per-tenant ingestion rate, samples per second.
    #[arg(
        long = "limits.ingestion-rate",
        env = "MIRU_INGESTION_RATE",
        global = true
    )]
    pub ingestion_rate: Option<f64>,
    /// Default per-tenant ingestion burst size, samples.
    #[arg(
        long = "limits.ingestion-burst-size",
        env = "MIRU_INGESTION_BURST_SIZE",
        global = true
    )]
    pub ingestion_burst_size: Option<u64>,
    /// Default per-tenant limit of series in the head.
    #[arg(
        long = "limits.max-global-series-per-user",
        env = "MIRU_MAX_SERIES",
        global = true
    )]
    pub max_series: Option<u64>,
    /// Default out-of-order window, e.g. 10m (0 rejects any out-of-order sample).
    #[arg(long = "limits.out-of-order-time-window", env = "MIRU_OUT_OF_ORDER_WINDOW", value_parser = dur, global = true)]
    pub ooo_window: Option<Duration>,
    /// Default retention in days (0 keeps everything).
    #[arg(
        long = "limits.retention-period-days",
        env = "MIRU_RETENTION_DAYS",
        global = true
    )]
    pub retention_days: Option<u64>,
    /// Runtime file with per-tenant overrides, reloaded periodically.
    #[arg(
        long = "runtime-config.file",
        env = "MIRU_RUNTIME_CONFIG_FILE",
        global = true
    )]
    pub runtime_config_file: Option<PathBuf>,
    /// Longest a query may run, e.g. 2m.
    #[arg(long = "query.timeout", env = "MIRU_QUERY_TIMEOUT", value_parser = dur, global = true)]
    pub query_timeout: Option<Duration>,
    /// How far back an instant selector looks for a sample, e.g. 5m.
    #[arg(long = "query.lookback-delta", env = "MIRU_QUERY_LOOKBACK_DELTA", value_parser = dur, global = true)]
    pub query_lookback_delta: Option<Duration>,
    /// Samples one query may load.
    #[arg(
        long = "query.max-samples",
        env = "MIRU_QUERY_MAX_SAMPLES",
        global = true
    )]
    pub query_max_samples: Option<usize>,
    /// Series one query may load (0 = no limit).
    #[arg(
        long = "query.max-series",
        env = "MIRU_QUERY_MAX_SERIES",
        global = true
    )]
    pub query_max_series: Option<usize>,
    /// Bytes of series data one query may hold (0 = no limit).
    #[arg(
        long = "query.max-memory-bytes",
        env = "MIRU_QUERY_MAX_MEMORY_BYTES",
        global = true
    )]
    pub query_max_memory_bytes: Option<u64>,
    /// Queries evaluated at once over all tenants.
    #[arg(
        long = "query.max-concurrent",
        env = "MIRU_QUERY_MAX_CONCURRENT",
        global = true
    )]
    pub query_max_concurrent: Option<usize>,
    /// Queries one tenant may evaluate at once (0 = no limit).
    #[arg(
        long = "query.max-concurrent-per-tenant",
        env = "MIRU_QUERY_MAX_CONCURRENT_PER_TENANT",
        global = true
    )]
    pub query_max_concurrent_per_tenant: Option<usize>,
    /// Threads one query may use to read and decode series (PromQL) or to
    /// run a metric query's pipeline (LogQL), and the size of the shared
    /// pool of PromQL query threads (0 = one per core).
    #[arg(
        long = "query.parallelism",
        env = "MIRU_QUERY_PARALLELISM",
        global = true
    )]
    pub query_parallelism: Option<usize>,
    /// Longest query text accepted, in bytes (0 = no limit).
    #[arg(
        long = "query.max-expression-bytes",
        env = "MIRU_QUERY_MAX_EXPRESSION_BYTES",
        global = true
    )]
    pub query_max_expression_bytes: Option<usize>,
    /// How often the runtime file is re-read, e.g. 10s.
    #[arg(long = "runtime-config.reload-period", env = "MIRU_RUNTIME_CONFIG_PERIOD", value_parser = dur, global = true)]
    pub runtime_config_period: Option<Duration>,
}

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

impl Flags {
    /// Builds the effective config: file (if any) with flags/env on top.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config_file {
            Some(p) => Config::from_yaml_file(p)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($src:expr => $dst:expr) => {
                if let Some(v) = &$src {
                    $dst = v.clone();
                }
            };
        }
        set!(self.data_dir => c.data_dir);
        set!(self.listen => c.server.listen);
        set!(self.grpc_listen => c.server.grpc_listen);
        set!(self.log_format => c.server.log_format);
        set!(self.log_level => c.server.log_level);
        set!(self.multitenancy_enabled => c.tenancy.multitenancy_enabled);
        set!(self.require_tenant_header => c.tenancy.require_tenant_header);
        set!(self.flush_interval => c.storage.flush_interval);
        set!(self.compaction_interval => c.storage.compaction_interval);
        set!(self.ingestion_rate => c.limits.ingestion_rate);
        set!(self.ingestion_burst_size => c.limits.ingestion_burst_size);
        set!(self.max_series => c.limits.max_global_series_per_user);
        if let Some(d) = self.ooo_window {
            c.limits.out_of_order_time_window_s = d.as_secs();
        }
        set!(self.retention_days => c.limits.retention_period_days);
        if self.runtime_config_file.is_some() {
            c.runtime_config.file = self.runtime_config_file.clone();
        }
        set!(self.runtime_config_period => c.runtime_config.period);
        set!(self.query_timeout => c.query.timeout);
        set!(self.query_lookback_delta => c.query.lookback_delta);
        set!(self.query_max_samples => c.query.max_samples);
        set!(self.query_max_series => c.query.max_series);
        set!(self.query_max_memory_bytes => c.query.max_memory_bytes);
        set!(self.query_max_concurrent => c.query.max_concurrent);
        set!(self.query_max_concurrent_per_tenant => c.query.max_concurrent_per_tenant);
        set!(self.query_parallelism => c.query.parallelism);
        set!(self.query_max_expression_bytes => c.query.max_expression_bytes);
        self.apply_object_store(&mut c);
        Ok(c)
    }

    fn apply_object_store(&self, c: &mut Config) {
        use miru_storage::ObjectStoreConfig as O;
        match self.backend.as_deref() {
            Some("filesystem") if !matches!(c.storage.object_store, O::Filesystem { .. }) => {
                c.storage.object_store = O::Filesystem { path: None };
            }
            Some("s3") if !matches!(c.storage.object_store, O::S3 { .. }) => {
                c.storage.object_store = O::S3 {
                    bucket: String::new(),
                    region: None,
                    endpoint: None,
                    access_key_id: None,
                    secret_access_key: None,
                    allow_http: false,
                    force_path_style: false,
                    prefix: None,
                };
            }
            _ => {}
        }
        match &mut c.storage.object_store {
            // GCS and Azure are configured in the config file only.
            O::Gcs { .. } | O::Azure { .. } => {}
            O::Filesystem { path } => {
                if self.fs_path.is_some() {
                    *path = self.fs_path.clone();
                }
            }
            O::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key,
                allow_http,
                force_path_style,
                ..
            } => {
                if let Some(b) = &self.s3_bucket {
                    *bucket = b.clone();
                }
                if self.s3_region.is_some() {
                    *region = self.s3_region.clone();
                }
                if self.s3_endpoint.is_some() {
                    *endpoint = self.s3_endpoint.clone();
                }
                if self.s3_access_key_id.is_some() {
                    *access_key_id = self.s3_access_key_id.clone();
                }
                if self.s3_secret_access_key.is_some() {
                    *secret_access_key = self.s3_secret_access_key.clone();
                }
                if let Some(v) = self.s3_allow_http {
                    *allow_http = v;
                }
                if let Some(v) = self.s3_force_path_style {
                    *force_path_style = v;
                }
            }
        }
    }
}
