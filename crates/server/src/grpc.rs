//! OTLP over gRPC: the `MetricsService/Export` method on its own port.

use std::sync::Arc;

use miru_model::TenantId;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::pipeline::{IngestStatus, ingest};
use crate::tenant::{ORG_ID_HEADER, TenantError, write_tenant};
use miru_ingest::otlp::translate_metrics;

struct Metrics {
    app: Arc<App>,
}

fn tenant(app: &App, md: &tonic::metadata::MetadataMap) -> Result<TenantId, Status> {
    let h = md.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok());
    write_tenant(&app.cfg.tenancy, h).map_err(|e| match e {
        TenantError::Missing => Status::unauthenticated(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    })
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let tenant = tenant(&self.app, request.metadata())?;
        let tr = translate_metrics(request.get_ref(), &self.app.otlp);
        if tr.rejected_points > 0 {
            self.app
                .metrics
                .discard(&tenant, "otlp_untranslatable", tr.rejected_points as u64);
        }
        let out = ingest(&self.app, &tenant, "otlp_grpc", tr.batch).await;
        match out.status {
            IngestStatus::Ok | IngestStatus::BadData => {
                let rejected = tr.rejected_points + out.rejected as i64;
                let message = [Some(tr.error_message), out.message]
                    .into_iter()
                    .flatten()
                    .filter(|m| !m.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok(Response::new(ExportMetricsServiceResponse {
                    partial_success: (rejected > 0 || !message.is_empty()).then_some(
                        ExportMetricsPartialSuccess {
                            rejected_data_points: rejected,
                            error_message: message,
                        },
                    ),
                }))
            }
            IngestStatus::Limited => {
                Err(Status::resource_exhausted(out.message.unwrap_or_default()))
            }
            IngestStatus::Unavailable => Err(Status::unavailable(out.message.unwrap_or_default())),
        }
    }
}

pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let max = app.cfg.limits.max_request_body_bytes;
    let svc = MetricsServiceServer::new(Metrics { app })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let incoming = tokio_stream_from(listener);
    let r = tonic::transport::Server::builder()
        .add_service(svc)
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
