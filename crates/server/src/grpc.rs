//! OTLP over gRPC on its own port: `MetricsService/Export` and
//! `LogsService/Export`, the tenant from the `x-scope-orgid` metadata.

use std::sync::Arc;

use miru_model::TenantId;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::pipeline::{OtlpOutcome, ingest_otlp_logs, ingest_otlp_metrics};
use crate::tenant::{ORG_ID_HEADER, TenantError, write_tenant};

struct Metrics {
    app: Arc<App>,
}

struct Logs {
    app: Arc<App>,
}

fn tenant(app: &App, md: &tonic::metadata::MetadataMap) -> Result<TenantId, Status> {
    let h = md.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok());
    write_tenant(&app.cfg.tenancy, h).map_err(|e| match e {
        TenantError::Missing => Status::unauthenticated(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    })
}

/// The gRPC answer to an outcome: RESOURCE_EXHAUSTED for a limit (the
/// client retries later), UNAVAILABLE when storage failed.
fn respond<R>(out: OtlpOutcome<R>) -> Result<Response<R>, Status> {
    match out {
        OtlpOutcome::Done(resp) => Ok(Response::new(resp)),
        OtlpOutcome::Limited(msg) => Err(Status::resource_exhausted(msg)),
        OtlpOutcome::Unavailable(msg) => Err(Status::unavailable(msg)),
    }
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let tenant = tenant(&self.app, request.metadata())?;
        respond(ingest_otlp_metrics(&self.app, &tenant, "otlp_grpc", request.get_ref()).await)
    }
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let tenant = tenant(&self.app, request.metadata())?;
        respond(ingest_otlp_logs(&self.app, &tenant, request.get_ref()).await)
    }
}

pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let max = app.cfg.limits.max_request_body_bytes;
    let metrics = MetricsServiceServer::new(Metrics {
        app: Arc::clone(&app),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max);
    let logs = LogsServiceServer::new(Logs { app })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let incoming = tokio_stream_from(listener);
    let r = tonic::transport::Server::builder()
        .add_service(metrics)
        .add_service(logs)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
