//! Sending one OTLP export request over gRPC or HTTP/protobuf, and classifying the outcome per
//! the OTLP specification ("OTLP/gRPC Response", "OTLP/HTTP Response", "Retryable errors").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::settings::{ExporterSettings, Protocol, TlsSettings};

/// `google.rpc.RetryInfo` (google/rpc/error_details.proto): the server's retry hint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<envoy_types::pb::google::protobuf::Duration>,
}

/// Why an export failed. Whether it may be retried follows the OTLP specification
/// ("Retryable errors"): [`SendError::retryable`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The collector answered with a gRPC status; `retry_after` is its `RetryInfo`.
    #[error("gRPC {code:?}: {}", .status.message())]
    Grpc {
        /// The status code.
        code: Code,
        /// The server's retry hint.
        retry_after: Option<Duration>,
        /// The status.
        #[source]
        status: tonic::Status,
    },
    /// The collector answered with an HTTP status other than 2xx; `retry_after` is its
    /// `Retry-After`, `body` the start of its answer.
    #[error("HTTP {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Http {
        /// The status.
        status: u16,
        /// The server's retry hint.
        retry_after: Option<Duration>,
        /// The first 200 bytes of the answer.
        body: String,
    },
    /// No answer within the export timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made or broke (it is rebuilt before the retry).
    #[error("connection failed: {message}")]
    Connection {
        /// The cause, with its chain.
        message: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The exporter cannot be set up yet (unreadable TLS file, a header secret that cannot be
    /// read); retried, as the file or variable may appear.
    #[error("{0}")]
    Setup(String),
    /// The request cannot be built (an invalid header, a batch that does not decode); retrying
    /// cannot help.
    #[error("{0}")]
    Request(String),
}

impl SendError {
    /// Whether the OTLP specification allows a retry: gRPC `CANCELLED`, `DEADLINE_EXCEEDED`,
    /// `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS` (and `RESOURCE_EXHAUSTED` with
    /// `RetryInfo`); HTTP 429, 502, 503, 504; timeouts, connection errors, setup errors.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Grpc { code, retry_after, .. } => match code {
                Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss => true,
                Code::ResourceExhausted => retry_after.is_some(),
                _ => false,
            },
            SendError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            SendError::Timeout(_) | SendError::Connection { .. } | SendError::Setup(_) => true,
            SendError::Request(_) => false,
        }
    }

    /// The server's retry hint (gRPC `RetryInfo`, HTTP `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Grpc { retry_after, .. } | SendError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the connection must be rebuilt before the next attempt.
    pub fn broke_connection(&self) -> bool {
        matches!(self, SendError::Connection { .. })
    }
}

/// A connection to one collector (one per exporter, so the size difference does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Transport {
    Grpc(MetricsServiceClient<Channel>),
    Http {
        client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
        uri: hyper::Uri,
    },
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn rustls_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
                roots
                    .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("{}: {e}", c.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| format!("{}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

impl Transport {
    /// Builds the client for `s` (lazy: nothing is connected yet). Errors: unreadable or
    /// invalid TLS files, a bad endpoint.
    pub fn new(s: &ExporterSettings) -> Result<Self, SendError> {
        Self::build(s).map_err(SendError::Setup)
    }

    fn build(s: &ExporterSettings) -> Result<Self, String> {
        let scheme = if s.tls.is_some() { "https" } else { "http" };
        match s.protocol {
            Protocol::Grpc => {
                let mut ep = Channel::from_shared(format!("{scheme}://{}", s.endpoint))
                    .map_err(|e| format!("endpoint {:?}: {e}", s.endpoint))?
                    .connect_timeout(s.timeout)
                    .timeout(s.timeout);
                if let Some(tls) = &s.tls {
                    let mut cfg = ClientTlsConfig::new();
                    cfg = match &tls.ca_file {
                        Some(ca) => cfg.ca_certificate(Certificate::from_pem(read(ca)?)),
                        None => cfg.with_native_roots(),
                    };
                    if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                        cfg = cfg.identity(Identity::from_pem(read(c)?, read(k)?));
                    }
                    if let Some(n) = &tls.server_name {
                        cfg = cfg.domain_name(n.clone());
                    }
                    ep = ep.tls_config(cfg).map_err(|e| format!("TLS: {e}"))?;
                }
                let mut client = MetricsServiceClient::new(ep.connect_lazy());
                if s.gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                Ok(Transport::Grpc(client))
            }
            Protocol::Http => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(s.timeout));
                let tls_cfg = match &s.tls {
                    Some(t) => rustls_config(t)?,
                    None => rustls_config(&TlsSettings::default())?,
                };
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls_cfg)
                    .https_or_http();
                let builder = match s.tls.as_ref().and_then(|t| t.server_name.clone()) {
                    Some(n) => {
                        let name = ServerName::try_from(n.clone()).map_err(|e| format!("serverName {n:?}: {e}"))?;
                        builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
                    }
                    None => builder,
                };
                let connector = builder.enable_http1().wrap_connector(http);
                let client = Client::builder(TokioExecutor::new()).build(connector);
                let uri = format!("{scheme}://{}{}", s.endpoint, s.path)
                    .parse()
                    .map_err(|e| format!("endpoint {:?}: {e}", s.endpoint))?;
                Ok(Transport::Http { client, uri })
            }
        }
    }

    /// Sends one protobuf-encoded `ExportMetricsServiceRequest`. Ok = accepted, with the number
    /// of data points the collector rejected (partial success).
    pub async fn send(
        &mut self,
        body: &Bytes,
        headers: &[(String, String)],
        s: &ExporterSettings,
    ) -> Result<u64, SendError> {
        match self {
            Transport::Grpc(client) => {
                let req = ExportMetricsServiceRequest::decode(body.clone())
                    .map_err(|e| SendError::Request(format!("batch does not decode: {e}")))?;
                let mut r = tonic::Request::new(req);
                r.set_timeout(s.timeout);
                for (k, v) in headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                        .map_err(|_| SendError::Request(format!("header name {k:?} is not valid gRPC metadata")))?;
                    let val = tonic::metadata::MetadataValue::try_from(v.as_str())
                        .map_err(|_| SendError::Request(format!("value of header {k:?} is not valid gRPC metadata")))?;
                    r.metadata_mut().insert(key, val);
                }
                match tokio::time::timeout(s.timeout + Duration::from_secs(1), client.export(r)).await {
                    Err(_) => Err(SendError::Timeout(s.timeout)),
                    Ok(Ok(resp)) => Ok(resp
                        .into_inner()
                        .partial_success
                        .map_or(0, |p| p.rejected_data_points as u64)),
                    Ok(Err(status)) => Err(classify_grpc(status)),
                }
            }
            Transport::Http { client, uri } => {
                let mut body = body.to_vec();
                if s.gzip {
                    use std::io::Write;
                    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    enc.write_all(&body)
                        .map_err(|e| SendError::Request(format!("gzip: {e}")))?;
                    body = enc.finish().map_err(|e| SendError::Request(format!("gzip: {e}")))?;
                }
                let mut b = hyper::Request::post(uri.clone()).header("content-type", "application/x-protobuf");
                if s.gzip {
                    b = b.header("content-encoding", "gzip");
                }
                for (k, v) in headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                let r = b
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|_| SendError::Request("a header name or value is not valid HTTP".into()))?;
                let exchange = async {
                    let resp = client.request(r).await.map_err(|e| SendError::Connection {
                        message: crate::client::error_chain(&e),
                        source: Box::new(e),
                    })?;
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let bytes = Limited::new(resp.into_body(), 1 << 20)
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, SendError>((status, retry_after, bytes))
                };
                let (status, retry_after, bytes) = match tokio::time::timeout(s.timeout, exchange).await {
                    Err(_) => return Err(SendError::Timeout(s.timeout)),
                    Ok(r) => r?,
                };
                match status {
                    200..=299 => Ok(ExportMetricsServiceResponse::decode(bytes)
                        .ok()
                        .and_then(|r| r.partial_success)
                        .map_or(0, |p| p.rejected_data_points as u64)),
                    _ => Err(SendError::Http {
                        status,
                        retry_after,
                        body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                    }),
                }
            }
        }
    }
}

/// `Retry-After`: delay in seconds (the HTTP-date form is not used by OTLP collectors).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A gRPC status as an export error: a status the client made from a failed connection is
/// [`SendError::Connection`], one from the server [`SendError::Grpc`] with its `RetryInfo`.
pub fn classify_grpc(status: tonic::Status) -> SendError {
    let from_connection = std::error::Error::source(&status).is_some_and(|e| e.is::<tonic::transport::Error>());
    if from_connection {
        return SendError::Connection {
            message: crate::client::error_chain(&status),
            source: Box::new(status),
        };
    }
    SendError::Grpc {
        code: status.code(),
        retry_after: retry_info(&status),
        status,
    }
}

fn retry_info(status: &tonic::Status) -> Option<Duration> {
    if status.details().is_empty() {
        return None;
    }
    let st = envoy_types::pb::google::rpc::Status::decode(status.details()).ok()?;
    st.details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|a| {
            let ri = RetryInfo::decode(a.value.as_slice()).ok()?;
            let d = ri.retry_delay?;
            Some(Duration::from_secs(d.seconds.max(0) as u64) + Duration::from_nanos(d.nanos.max(0) as u64))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_classification_and_retry_info() {
        assert!(classify_grpc(tonic::Status::unavailable("x")).retryable());
        assert!(!classify_grpc(tonic::Status::invalid_argument("x")).retryable());
        assert!(!classify_grpc(tonic::Status::resource_exhausted("x")).retryable());
        let ri = RetryInfo {
            retry_delay: Some(envoy_types::pb::google::protobuf::Duration { seconds: 3, nanos: 0 }),
        };
        let details = envoy_types::pb::google::rpc::Status {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![envoy_types::pb::google::protobuf::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: ri.encode_to_vec(),
            }],
        };
        let st = tonic::Status::with_details(Code::ResourceExhausted, "slow down", details.encode_to_vec().into());
        let e = classify_grpc(st);
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        for (status, retryable) in [(429, true), (503, true), (400, false), (500, false)] {
            let e = SendError::Http {
                status,
                retry_after: None,
                body: String::new(),
            };
            assert_eq!(e.retryable(), retryable, "{status}");
        }
        assert!(SendError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!SendError::Request("bad header".into()).retryable());
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
    }
}
