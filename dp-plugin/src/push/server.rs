//! The OTLP receivers: gRPC `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`
//! and HTTP `POST /v1/metrics` (`application/x-protobuf` or `application/json`, optionally
//! gzip), answering as the OTLP specification says: success, partial success with the rejected
//! point count, `RESOURCE_EXHAUSTED` (gRPC, with `RetryInfo`) / 429 with `Retry-After` (HTTP)
//! when the sender limit is reached, `INVALID_ARGUMENT` / 400 for data that cannot be decoded,
//! 413 for a body over the limit, 415 for another content type.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic_types::{ErrorDetails, StatusExt as _};

use super::addr::own_addresses;
use super::convert::{Ingested, Store};
use crate::config::ActiveConfig;

/// How long a sender refused for the sender limit is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often a receiver that could not listen tries again.
const REBIND_EVERY: Duration = Duration::from_secs(30);

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    complete: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps the receivers in line with the config: starts them when the policy enables the
/// receiver, moves them when the ports change, stops them when it is disabled. An address that
/// is taken is logged (error, with the address) and retried every 30 s; the rest of the plugin
/// is unaffected.
pub async fn manage(mut config: watch::Receiver<Arc<ActiveConfig>>, store: Arc<Store>) {
    let ov = store.overrides();
    let mut running: Option<Running> = None;
    loop {
        let want = own_addresses(config.borrow_and_update().config.metrics(), &ov);
        let current = running.as_ref().map(|r| (r.grpc, r.http));
        let incomplete = running.as_ref().is_some_and(|r| !r.complete);
        if want != current || incomplete {
            running = None; // stops the old receivers (and frees their ports) first
            if current.is_some() && want.is_none() {
                tracing::info!("OTLP receiver stopped");
            }
            if let Some((g, h)) = want {
                running = Some(start(g, h, store.clone()).await);
            }
        }
        let retry = running.as_ref().is_some_and(|r| !r.complete);
        tokio::select! {
            changed = config.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(REBIND_EVERY), if retry => {}
        }
    }
}

async fn start(grpc: SocketAddr, http: SocketAddr, store: Arc<Store>) -> Running {
    let mut tasks = Vec::new();
    let mut complete = true;
    match tokio::net::TcpListener::bind(grpc).await {
        Ok(l) => {
            let svc = RawExport(store.clone());
            tasks.push(tokio::spawn(async move {
                let incoming = tonic::transport::server::TcpIncoming::from(l);
                if let Err(e) = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(incoming)
                    .await
                {
                    tracing::error!(address = %grpc, error = %e, "OTLP/gRPC receiver failed");
                }
            }));
            tracing::info!(address = %grpc, "OTLP/gRPC receiver listening");
        }
        Err(e) => {
            complete = false;
            tracing::error!(address = %grpc, error = %e, "OTLP/gRPC receiver cannot listen; retrying every 30 s, the rest of the plugin keeps working");
        }
    }
    match tokio::net::TcpListener::bind(http).await {
        Ok(l) => {
            let app = router(store);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(address = %http, error = %e, "OTLP/HTTP receiver failed");
                }
            }));
            tracing::info!(address = %http, "OTLP/HTTP receiver listening");
        }
        Err(e) => {
            complete = false;
            tracing::error!(address = %http, error = %e, "OTLP/HTTP receiver cannot listen; retrying every 30 s, the rest of the plugin keeps working");
        }
    }
    Running {
        grpc,
        http,
        tasks,
        complete,
    }
}

fn response(r: Ingested) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (r.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(r.rejected).unwrap_or(i64::MAX),
            error_message: if r.exhausted {
                "too many senders: points of new senders were refused".into()
            } else {
                "points over the series limit of their sender, of a conflicting type or invalid were refused".into()
            },
        }),
    }
}

/// `MetricsService/Export` with a codec that hands the request body over undecoded, so the
/// store reads it in place ([`super::wire`]) instead of through prost's owned types; responses
/// are encoded with prost. Accepts gzip; the body is limited to the request-size limit.
#[derive(Clone)]
struct RawExport(Arc<Store>);

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

impl tonic::server::NamedService for RawExport {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for RawExport
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let store = self.0.clone();
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(tonic::Status::unimplemented("only MetricsService/Export is served here").into_http())
            });
        }
        Box::pin(async move {
            let limit = store.limits().max_request_bytes;
            let mut accept = tonic::codegen::EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(accept, tonic::codegen::EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(Export(store), req).await)
        })
    }
}

struct Export(Arc<Store>);

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportMetricsServiceResponse;
    type Future = tonic::codegen::BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move {
            let r = match store.ingest_protobuf(request.get_ref()) {
                Ok(r) => r,
                Err(e) => {
                    store.count_refused(true);
                    return Err(tonic::Status::invalid_argument(e.to_string()));
                }
            };
            if r.exhausted && r.accepted == 0 {
                return Err(tonic::Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    "too many senders; retry later",
                    ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
                ));
            }
            Ok(tonic::Response::new(response(r)))
        })
    }
}

/// Request bodies as they are; responses through prost.
#[derive(Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = ExportMetricsServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportMetricsServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf as _;
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n)))
    }
}

/// The OTLP/HTTP router (`POST /v1/metrics`).
pub fn router(store: Arc<Store>) -> Router {
    let limit = store.limits().max_request_bytes;
    Router::new()
        .route("/v1/metrics", post(http_export))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(store)
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], msg.to_string()).into_response()
}

async fn http_export(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let limit = store.limits().max_request_bytes;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body: Vec<u8> = if gzip {
        let mut out = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1);
        if dec.read_to_end(&mut out).is_err() {
            store.count_refused(true);
            return plain(StatusCode::BAD_REQUEST, "body is not valid gzip");
        }
        if out.len() > limit {
            store.count_refused(false);
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("decompressed body over {limit} bytes"),
            );
        }
        out
    } else {
        body.to_vec()
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        _ => {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content type must be application/x-protobuf or application/json",
            );
        }
    };
    let r = if json {
        match serde_json::from_slice::<ExportMetricsServiceRequest>(&body) {
            Ok(req) => store.ingest(req),
            Err(e) => {
                store.count_refused(true);
                return plain(StatusCode::BAD_REQUEST, &format!("invalid OTLP/JSON: {e}"));
            }
        }
    } else {
        match store.ingest_protobuf(&body) {
            Ok(r) => r,
            Err(e) => {
                store.count_refused(true);
                return plain(StatusCode::BAD_REQUEST, &e.to_string());
            }
        }
    };
    if r.exhausted && r.accepted == 0 {
        let mut resp = plain(StatusCode::TOO_MANY_REQUESTS, "too many senders; retry later");
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER.as_secs()));
        return resp;
    }
    let out = response(r);
    if json {
        match serde_json::to_vec(&out) {
            Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the response"),
        }
    } else {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], out.encode_to_vec()).into_response()
    }
}
