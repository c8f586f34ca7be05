//! ADS (State of the World, gRPC) server for Envoy proxies.
//!
//! A proxy's `node.id` is `<mesh>.<name>` of its Dataplane; its node metadata may carry
//! the plugin's workdir and the ProvidedTLS certificate files (see
//! `meshmetric_policies::contract`). Each stream watches its proxy's state in the
//! [`Index`] and pushes CDS then LDS within milliseconds of a change. ACKs are recorded; a NACK
//! is logged with Envoy's error and the rejected version is not resent (Envoy keeps its last
//! good config) until the config changes ([`Tracker`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::value::Kind as PbKind;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use meshmetric_policies::contract::{
    META_CERT_PATH, META_KEY_PATH, META_SECRET_SOURCES, META_WORKDIR, ProxyPaths, node_id, parse_node_id,
};
use meshmetric_policies::headers::{MAX_SOURCES, SecretSources};

use crate::index::{Index, Published};
use crate::insight::Insights;
use crate::store::{Declared, Key};
use crate::tokens::TokenAuthority;
use crate::xds::{self, CLUSTER_TYPE, LISTENER_TYPE, Packed, Snapshot};

/// The ADS service.
#[derive(Clone)]
pub struct Ads {
    index: Arc<Index>,
    default_workdir_root: String,
    streams: Arc<std::sync::atomic::AtomicU64>,
    /// When set, every stream must present a dataplane token naming its `node.id`.
    tokens: Option<Arc<TokenAuthority>>,
    /// What the streams show of each proxy.
    insights: Arc<Insights>,
}

impl Ads {
    /// ADS over `index`. `default_workdir_root`: where a proxy's sockets go when its node
    /// metadata names no workdir (`<root>/<mesh>.<name>`).
    pub fn new(index: Arc<Index>, default_workdir_root: impl Into<String>, insights: Arc<Insights>) -> Self {
        Self {
            index,
            default_workdir_root: default_workdir_root.into(),
            streams: Default::default(),
            tokens: None,
            insights,
        }
    }

    /// Requires every stream to present a dataplane token (`authorization: Bearer <token>`
    /// gRPC metadata) issued by `tokens` for the Dataplane its `node.id` names.
    pub fn with_tokens(mut self, tokens: Arc<TokenAuthority>) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// Checks the stream's dataplane token against the proxy it claims to be.
fn authenticate(tokens: &TokenAuthority, metadata: &tonic::metadata::MetadataMap, proxy: &Proxy) -> Result<(), Status> {
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated(
                "a dataplane token is required: `authorization: Bearer <token>` (meshmetric-dp --dataplane-token-file)",
            )
        })?;
    let claims = tokens
        .verify(token.trim(), crate::persist::now_secs())
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    if claims.mesh != proxy.mesh || claims.name != proxy.name {
        return Err(Status::permission_denied(format!(
            "the dataplane token is for {}, not for this node.id",
            node_id(&claims.mesh, &claims.name)
        )));
    }
    Ok(())
}

/// `s` for a log line: control characters escaped, cut at 100 characters (names and ids come
/// from the network).
pub fn escape(s: &str) -> String {
    let mut out: String = s.chars().take(100).flat_map(char::escape_debug).collect();
    if s.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// Identity and paths of a connected proxy, from its first request.
#[derive(Debug, Clone)]
struct Proxy {
    mesh: String,
    name: String,
    paths: ProxyPaths,
}

fn metadata_str(node: &Node, key: &str) -> Option<String> {
    node.metadata.as_ref()?.fields.get(key).and_then(|v| match &v.kind {
        Some(PbKind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// The header sources the proxy declared (`None` when it declared none: an older plugin).
/// Lists are cut at [`MAX_SOURCES`] entries of at most 4 KiB.
fn secret_sources(node: &Node) -> Option<SecretSources> {
    let Some(PbKind::StructValue(st)) = node.metadata.as_ref()?.fields.get(META_SECRET_SOURCES)?.kind.as_ref() else {
        return None;
    };
    let list = |key: &str| -> Vec<String> {
        match st.fields.get(key).and_then(|v| v.kind.as_ref()) {
            Some(PbKind::ListValue(l)) => l
                .values
                .iter()
                .filter_map(|v| match &v.kind {
                    Some(PbKind::StringValue(s)) if s.len() <= 4096 => Some(s.clone()),
                    _ => None,
                })
                .take(MAX_SOURCES)
                .collect(),
            _ => Vec::new(),
        }
    };
    Some(SecretSources {
        header_file_dirs: list("headerFileDirs"),
        header_env_prefixes: list("headerEnvPrefixes"),
        env_headers_to: list("envHeadersTo"),
    })
}

fn proxy_of(node: &Node, root: &str) -> Result<Proxy, Status> {
    let Some((mesh, name)) = parse_node_id(&node.id) else {
        let shown: String = node.id.chars().take(100).collect();
        return Err(Status::invalid_argument(format!(
            "node.id {shown:?} must be <mesh>.<dataplane name>, e.g. default.web-01 (mesh: [0-9a-z-_]; name: a lowercase RFC 1123 subdomain; each at most 253 characters)"
        )));
    };
    let workdir = metadata_str(node, META_WORKDIR).unwrap_or_else(|| format!("{root}/{}", node_id(mesh, name)));
    if !workdir.starts_with('/') || workdir.len() > 4096 || workdir.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "node metadata {META_WORKDIR} {:?} must be an absolute path without control characters",
            escape(&workdir)
        )));
    }
    let mut paths = ProxyPaths::in_workdir(&workdir);
    paths.tls_cert = metadata_str(node, META_CERT_PATH);
    paths.tls_key = metadata_str(node, META_KEY_PATH);
    Ok(Proxy {
        mesh: mesh.to_string(),
        name: name.to_string(),
        paths,
    })
}

/// What a request asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send the current version of the type.
    Send,
    /// Nothing to send.
    Nothing,
    /// Envoy rejected the version it names (first time for that version: log it).
    Nack {
        /// The rejected version.
        rejected: Option<String>,
    },
    /// Envoy accepted the version last sent; `resend` when the current version moved
    /// meanwhile and must be pushed.
    Ack {
        /// The accepted version.
        version: String,
        /// Whether to send the current version now.
        resend: bool,
    },
}

/// The state of one type of one stream: the nonce and version last sent, and the version
/// Envoy rejected. SotW xDS: a request with an empty nonce subscribes (answer at once); one
/// whose nonce is not the last one sent is stale (it answers an older response: ignore); an
/// `error_detail` is a NACK (Envoy keeps its last good config: do not resend the rejected
/// version); otherwise it is an ACK (send again only if the version moved meanwhile).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tracker {
    nonce: String,
    sent_version: Option<String>,
    nacked_version: Option<String>,
}

impl Tracker {
    /// What to do with a request carrying `nonce` and, for a NACK, an error, given the
    /// `current` version.
    pub fn on_request(&mut self, nonce: &str, nack: bool, current: &str) -> Answer {
        if nonce.is_empty() {
            return Answer::Send;
        }
        if nonce != self.nonce {
            return Answer::Nothing;
        }
        if nack {
            let first = self.nacked_version != self.sent_version;
            self.nacked_version = self.sent_version.clone();
            return if first {
                Answer::Nack {
                    rejected: self.sent_version.clone(),
                }
            } else {
                Answer::Nothing
            };
        }
        self.nacked_version = None;
        Answer::Ack {
            version: self.sent_version.clone().unwrap_or_default(),
            resend: self.sent_version.as_deref() != Some(current),
        }
    }

    /// Records a response sent with `nonce` carrying `version`.
    pub fn sent(&mut self, nonce: String, version: &str) {
        self.nonce = nonce;
        self.sent_version = Some(version.to_string());
    }

    /// Whether `version` still has to be pushed.
    pub fn needs(&self, version: &str) -> bool {
        self.sent_version.as_deref() != Some(version)
    }
}

struct Session {
    proxy: Proxy,
    key: Key,
    insights: Arc<Insights>,
    state: tokio::sync::watch::Receiver<Published>,
    snapshot: Packed,
    types: HashMap<String, Tracker>,
    nonce: u64,
    /// Boxed: the channel preallocates slots, and 10,000 streams each keep one.
    tx: mpsc::Sender<Box<DiscoveryResponse>>,
}

impl Session {
    fn rebuild(&mut self) {
        let proxy = self.state.borrow_and_update().clone();
        let snap = match &proxy {
            Some(p) => xds::generate(&p.0, &p.1, &self.proxy.paths),
            None => Snapshot {
                version: "unknown-dataplane".into(),
                ..Default::default()
            },
        };
        if proxy.is_none() {
            tracing::warn!(mesh = %self.proxy.mesh, dataplane = %self.proxy.name, "proxy connected but no Dataplane with this name is known; apply one to configure it");
        }
        for w in &snap.warnings {
            tracing::warn!(mesh = %self.proxy.mesh, dataplane = %self.proxy.name, warning = %w, "resource not generated");
        }
        if snap.version != self.snapshot.version {
            let listeners = snap.listeners.iter().map(|l| l.name.clone()).collect();
            self.insights.produced(&self.key, &snap.version, listeners);
        }
        self.snapshot = snap.into();
    }

    async fn send(&mut self, type_url: &str) -> bool {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let resp = DiscoveryResponse {
            version_info: self.snapshot.version.clone(),
            resources: self.snapshot.resources(type_url),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.types
            .entry(type_url.to_string())
            .or_default()
            .sent(nonce, &self.snapshot.version);
        self.insights.sent(&self.key, type_url, &self.snapshot.version);
        tracing::debug!(dataplane = %self.proxy.name, type_url, version = %self.snapshot.version, resources = resp.resources.len(), "sending");
        self.tx.send(Box::new(resp)).await.is_ok()
    }

    /// Pushes every subscribed type whose sent version is not the current one (CDS before LDS).
    async fn push_changed(&mut self) -> bool {
        let mut order: Vec<String> = self.types.keys().cloned().collect();
        order.sort_by_key(|t| match t.as_str() {
            CLUSTER_TYPE => 0,
            LISTENER_TYPE => 1,
            _ => 2,
        });
        for t in order {
            if self.types[&t].needs(&self.snapshot.version) && !self.send(&t).await {
                return false;
            }
        }
        true
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        let t = req.type_url.clone();
        let current = self.snapshot.version.clone();
        let answer = self.types.entry(t.clone()).or_default().on_request(
            &req.response_nonce,
            req.error_detail.is_some(),
            &current,
        );
        match answer {
            Answer::Send => self.send(&t).await,
            Answer::Nothing => true,
            Answer::Ack { version, resend } => {
                self.insights.acked(&self.key, &t, &version);
                !resend || self.send(&t).await
            }
            Answer::Nack { rejected } => {
                let err = req
                    .error_detail
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or_default();
                self.insights
                    .nacked(&self.key, &t, rejected.as_deref().unwrap_or_default(), err);
                tracing::error!(
                    mesh = %self.proxy.mesh, dataplane = %self.proxy.name, type_url = %t,
                    rejected_version = rejected.as_deref().unwrap_or_default(), kept_version = %req.version_info,
                    envoy_error = %err,
                    "Envoy rejected the config (NACK); it keeps its last good config"
                );
                true
            }
        }
    }
}

type AdsStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = AdsStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let metadata = request.metadata().clone();
        let mut incoming = request.into_inner();
        let first = match incoming.message().await? {
            Some(r) => r,
            None => return Err(Status::cancelled("stream closed before the first request")),
        };
        let node = first
            .node
            .clone()
            .ok_or_else(|| Status::invalid_argument("first DiscoveryRequest must carry node"))?;
        let proxy = proxy_of(&node, &self.default_workdir_root)?;
        if let Some(tokens) = &self.tokens
            && let Err(status) = authenticate(tokens, &metadata, &proxy)
        {
            tracing::warn!(mesh = %escape(&proxy.mesh), dataplane = %escape(&proxy.name), reason = %status.message(), "ADS stream refused");
            return Err(status);
        }
        let (tx, rx) = mpsc::channel::<Box<DiscoveryResponse>>(4);
        let index = self.index.clone();
        let stream = self.streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (proxy.mesh.clone(), proxy.name.clone());
        tracing::info!(mesh = %proxy.mesh, dataplane = %proxy.name, config_socket = %proxy.paths.config_socket, "proxy connected");
        let declared = Declared {
            tls_ready: proxy.paths.tls_ready(),
            secret_sources: secret_sources(&node),
        };
        index.connected(&key, stream, declared);
        let insights = self.insights.clone();
        insights.connected(&key);
        let state = index.watch(&key);
        tokio::spawn(async move {
            let mut s = Session {
                key: key.clone(),
                insights: insights.clone(),
                proxy,
                state,
                snapshot: Packed::default(),
                types: HashMap::new(),
                nonce: 0,
                tx,
            };
            s.rebuild();
            if s.on_request(first).await {
                loop {
                    tokio::select! {
                        msg = incoming.message() => match msg {
                            Ok(Some(req)) => if !s.on_request(req).await { break },
                            Ok(None) => break,
                            Err(e) => { tracing::debug!(dataplane = %s.proxy.name, error = %e, "stream error"); break }
                        },
                        changed = s.state.changed() => {
                            if changed.is_err() { break }
                            let before = s.snapshot.version.clone();
                            s.rebuild();
                            if s.snapshot.version != before {
                                tracing::info!(mesh = %s.proxy.mesh, dataplane = %s.proxy.name, version = %s.snapshot.version, "config changed, pushing");
                                if !s.push_changed().await { break }
                            }
                        }
                    }
                }
            }
            drop(s.state);
            index.disconnected(&key, stream);
            insights.disconnected(&key);
            tracing::info!(mesh = %key.0, dataplane = %key.1, "proxy disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(|r| Ok(*r)))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported; configure api_type GRPC (State of the World)",
        ))
    }
}

/// The ADS gRPC service with codec buffers sized for xDS: tonic allocates its default 8 KiB
/// encode and decode buffers eagerly per RPC, and a control plane keeps one RPC open per
/// proxy (10,000 streams: ~160 MiB of mostly empty buffers). Requests are small and responses
/// grow the buffer as needed. Only the SotW `StreamAggregatedResources` is served; the delta
/// variant answers `UNIMPLEMENTED` as before.
#[derive(Clone)]
pub struct AdsServer(Arc<Ads>);

impl AdsServer {
    pub fn new(ads: Ads) -> Self {
        Self(Arc::new(ads))
    }
}

/// Prost codec with 1 KiB initial buffers (grown in 1 KiB steps, yielding at 32 KiB).
#[derive(Debug, Clone, Copy, Default)]
struct XdsCodec;

impl tonic::codec::Codec for XdsCodec {
    type Encode = DiscoveryResponse;
    type Decode = DiscoveryRequest;
    type Encoder = tonic_prost::ProstEncoder<DiscoveryResponse>;
    type Decoder = tonic_prost::ProstDecoder<DiscoveryRequest>;
    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(tonic::codec::BufferSettings::new(1024, 32 * 1024))
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(tonic::codec::BufferSettings::new(1024, 32 * 1024))
    }
}

struct SotwMethod(Arc<Ads>);

impl tonic::server::StreamingService<DiscoveryRequest> for SotwMethod {
    type Response = DiscoveryResponse;
    type ResponseStream = AdsStream;
    type Future = futures::future::BoxFuture<'static, Result<Response<AdsStream>, Status>>;
    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let ads = self.0.clone();
        Box::pin(async move { ads.stream_aggregated_resources(request).await })
    }
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> tower_service::Service<http::Request<B>> for AdsServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ads = self.0.clone();
        Box::pin(async move {
            if req.uri().path() == "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources" {
                let mut grpc = tonic::server::Grpc::new(XdsCodec);
                return Ok(grpc.streaming(SotwMethod(ads), req).await);
            }
            Ok(Status::unimplemented("only StreamAggregatedResources (SotW ADS) is served").into_http())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Answer, Tracker};

    #[test]
    fn subscribe_ack_stale_and_nack() {
        let mut t = Tracker::default();
        // a new subscription is answered at once
        assert_eq!(t.on_request("", false, "v1"), Answer::Send);
        t.sent("1".into(), "v1");
        // the ACK of what was sent: nothing more
        let ack = |version: &str, resend| Answer::Ack {
            version: version.into(),
            resend,
        };
        assert_eq!(t.on_request("1", false, "v1"), ack("v1", false));
        // the version moved while the response was in flight: the ACK triggers a push
        assert_eq!(t.on_request("1", false, "v2"), ack("v1", true));
        t.sent("2".into(), "v2");
        // a request answering an older response is stale, whatever it says
        assert_eq!(t.on_request("1", true, "v2"), Answer::Nothing);
        // a NACK of v2: reported once, v2 is not resent
        assert_eq!(
            t.on_request("2", true, "v2"),
            Answer::Nack {
                rejected: Some("v2".into())
            }
        );
        assert_eq!(t.on_request("2", true, "v2"), Answer::Nothing);
        assert!(!t.needs("v2"), "the rejected version is not pushed again");
        // a new version is pushed; its ACK clears the NACK
        assert!(t.needs("v3"));
        t.sent("3".into(), "v3");
        assert_eq!(t.on_request("3", false, "v3"), ack("v3", false));
        // a reconnect (empty nonce) is always answered
        assert_eq!(t.on_request("", false, "v3"), Answer::Send);
    }
}
