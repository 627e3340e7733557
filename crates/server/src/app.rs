//! Start-up wiring: logging, storage recovery, background maintenance, the
//! HTTP and gRPC servers, and an orderly shutdown on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use miru_ingest::limits::Limits;
use miru_ingest::otlp::OtlpOptions;
use miru_storage::{Storage, StorageConfig, build_object_store};
use tokio::sync::watch;

use crate::config::{Config, LogFormat};
use crate::self_metrics::{SelfMetrics, StorageObserver};

/// Everything a request handler needs; shared behind an `Arc`.
pub struct App {
    pub cfg: Config,
    pub storage: Storage,
    pub limits: Limits,
    pub metrics: Arc<SelfMetrics>,
    pub otlp: OtlpOptions,
    pub query: crate::query::QueryService,
    pub logql: crate::logql::LogQlService,
    /// Open live tails, fed by every accepted log push.
    pub tails: Arc<crate::tail::TailHub>,
    pub started: Instant,
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.server.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.server.log_format {
        LogFormat::Json => b.json().flatten_event(true).try_init(),
        LogFormat::Logfmt => b.try_init(),
    };
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    init_logging(&cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let metrics = Arc::new(SelfMetrics::new());
    let limits = Limits::new(cfg.limits.clone());
    if let Some(path) = &cfg.runtime_config.file {
        let n = crate::runtime_config::load(path, &limits).map_err(anyhow::Error::msg)?;
        metrics.runtime_config_reload_ok.set(1);
        tracing::info!(file = %path.display(), tenants = n, "runtime config loaded");
        crate::runtime_config::spawn_reloader(
            path.clone(),
            cfg.runtime_config.period,
            limits.clone(),
            Arc::clone(&metrics),
        );
    }
    let store = build_object_store(&cfg.storage.object_store, &cfg.data_dir)
        .context("configuring the object store")?;
    let mut scfg = StorageConfig::new(cfg.data_dir.join("wal"));
    scfg.flush_interval = cfg.storage.flush_interval;
    scfg.max_head_samples = cfg.storage.max_head_samples;
    scfg.series_idle_timeout = cfg.storage.series_idle_timeout;
    scfg.compaction_fan_in = cfg.storage.compaction_fan_in;
    scfg.flush_zstd_level = cfg.storage.flush_zstd_level;
    scfg.compact_zstd_level = cfg.storage.compact_zstd_level;
    scfg.logs_zstd_level = cfg.storage.logs_zstd_level;
    scfg.block_cache_bytes = cfg.storage.block_cache_bytes;
    if let miru_storage::ObjectStoreConfig::Filesystem { path } = &cfg.storage.object_store {
        scfg.local_store_root = Some(path.clone().unwrap_or_else(|| cfg.data_dir.join("objects")));
    }
    let started = Instant::now();
    let exemplar_limits = limits.clone();
    let (storage, recovery) = Storage::open(
        scfg,
        store,
        Arc::new(StorageObserver(Arc::clone(&metrics))),
        move |t| exemplar_limits.for_tenant(t).max_global_exemplars_per_user,
    )
    .await
    .context("opening storage")?;
    tracing::info!(
        parts = recovery.parts,
        wal_segments = recovery.wal_segments,
        wal_records = recovery.wal_records,
        samples_replayed = recovery.samples_replayed,
        samples_already_in_parts = recovery.samples_skipped,
        truncated_bytes = recovery.wal_truncated_bytes,
        corrupt_bytes = recovery.wal_corrupt_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "storage recovered"
    );
    let otlp = OtlpOptions {
        add_metric_suffixes: cfg.otlp.add_metric_suffixes,
        promote_resource_attributes: cfg.otlp.promote_resource_attributes.clone(),
        keep_identifying_resource_attributes: cfg.otlp.keep_identifying_resource_attributes,
        allow_utf8_names: cfg.limits.name_validation_scheme
            == miru_ingest::limits::NameValidation::Utf8,
        promote_scope_metadata: cfg.otlp.promote_scope_metadata,
    };
    let app = Arc::new(App {
        cfg: cfg.clone(),
        storage: storage.clone(),
        limits,
        metrics,
        otlp,
        query: crate::query::QueryService::new(cfg.query.clone()),
        logql: crate::logql::LogQlService::new(&cfg.query),
        tails: Arc::default(),
        started,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = tokio::spawn(maintenance_loop(Arc::clone(&app), stop_rx.clone()));

    let http_listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", cfg.server.listen))?;
    let grpc_listener = tokio::net::TcpListener::bind(cfg.server.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", cfg.server.grpc_listen))?;
    tracing::info!(http = %cfg.server.listen, grpc = %cfg.server.grpc_listen, data_dir = %cfg.data_dir.display(), "miru is ready");

    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(
        axum::serve(http_listener, crate::http::router(Arc::clone(&app)))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    let grpc = tokio::spawn(crate::grpc::serve(
        Arc::clone(&app),
        grpc_listener,
        stop_rx.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down: draining requests and flushing the head");
    let deadline = cfg.server.shutdown_timeout;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(deadline / 2, async {
        let _ = http.await;
        let _ = grpc.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "requests still running at shutdown; their data is in the WAL if acknowledged"
        );
    }
    maintenance.abort();
    // The WAL already holds everything acknowledged; the flush only saves
    // replay time at the next start, so it may be cut short.
    match tokio::time::timeout(deadline / 2, storage.flush()).await {
        Ok(Ok(_)) => tracing::info!("head flushed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "final flush failed; the WAL will be replayed at the next start")
        }
        Err(_) => {
            tracing::warn!("final flush timed out; the WAL will be replayed at the next start")
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Cuts the head on schedule (or when it is large), merges a level as soon
/// as a cut fills it to the fan-in (so queries do not read through many
/// small parts until the next interval), and on the compaction interval
/// merges settled days and applies retention.
async fn maintenance_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let tick = Duration::from_secs(1);
    let mut last_flush = Instant::now();
    let mut last_compaction = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let storage = &app.storage;
        let interval = app.cfg.storage.flush_interval;
        // A scheduled cut wrote parts, which may fill a level.
        let mut parts_cut = false;
        if last_flush.elapsed() >= interval
            || storage.head_samples() >= app.cfg.storage.max_head_samples
            || storage.log_head_bytes() >= app.cfg.storage.max_head_log_bytes
            || storage.head_span_ms() >= interval.as_millis() as i64
        {
            last_flush = Instant::now();
            match storage.flush().await {
                Ok(s) => {
                    tracing::info!(
                        parts = s.parts_flushed,
                        idle_series_removed = s.series_removed_idle,
                        "head cut into parts"
                    );
                    parts_cut = s.parts_flushed > 0;
                }
                Err(e) => tracing::error!(error = %e, "head cut failed"),
            }
        }
        let on_interval = last_compaction.elapsed() >= app.cfg.storage.compaction_interval;
        if on_interval || parts_cut {
            match storage.compact().await {
                Ok(s) if s.parts_written > 0 => tracing::info!(
                    merged = s.parts_merged,
                    written = s.parts_written,
                    "compaction"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "compaction failed"),
            }
        }
        if on_interval {
            last_compaction = Instant::now();
            let limits = app.limits.clone();
            let retention = move |t: &miru_model::TenantId| {
                let days = limits.for_tenant(t).retention_period_days;
                (days > 0).then(|| Duration::from_secs(days * 86_400))
            };
            match storage.apply_retention(retention).await {
                Ok(s) if s.parts_deleted_by_retention > 0 => {
                    tracing::info!(deleted = s.parts_deleted_by_retention, "retention")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention failed"),
            }
        }
    }
}
