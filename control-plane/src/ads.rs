//! ADS (State of the World, gRPC) server for Envoy proxies.
//!
//! A proxy's `node.id` is `<mesh>.<name>` of its Dataplane; its node metadata may carry
//! the plugin's workdir and the ProvidedTLS certificate files (see
//! `meshmetric_policies::contract`). Each stream watches the store and pushes CDS then LDS within
//! milliseconds of a change. ACKs are recorded; a NACK is logged with Envoy's error and the
//! rejected version is not resent (Envoy keeps its last good config) until the config changes.

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

use meshmetric_policies::contract::{META_CERT_PATH, META_KEY_PATH, META_WORKDIR, ProxyPaths, node_id, parse_node_id};

use crate::store::Store;
use crate::xds::{self, CLUSTER_TYPE, LISTENER_TYPE, Packed, Snapshot};

/// The ADS service.
#[derive(Clone)]
pub struct Ads {
    store: Arc<Store>,
    default_workdir_root: String,
}

impl Ads {
    /// `default_workdir_root`: where a proxy's sockets go when its node metadata names no
    /// `meshmetricWorkdir` (`<root>/<mesh>.<name>`).
    pub fn new(store: Arc<Store>, default_workdir_root: impl Into<String>) -> Self {
        Self {
            store,
            default_workdir_root: default_workdir_root.into(),
        }
    }
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

fn proxy_of(node: &Node, root: &str) -> Result<Proxy, Status> {
    let Some((mesh, name)) = parse_node_id(&node.id) else {
        let shown: String = node.id.chars().take(100).collect();
        return Err(Status::invalid_argument(format!(
            "node.id {shown:?} must be <mesh>.<dataplane name>, e.g. default.web-01"
        )));
    };
    let workdir = metadata_str(node, META_WORKDIR).unwrap_or_else(|| format!("{root}/{}", node_id(mesh, name)));
    let mut paths = ProxyPaths::in_workdir(&workdir);
    paths.tls_cert = metadata_str(node, META_CERT_PATH);
    paths.tls_key = metadata_str(node, META_KEY_PATH);
    Ok(Proxy {
        mesh: mesh.to_string(),
        name: name.to_string(),
        paths,
    })
}

#[derive(Default)]
struct TypeState {
    nonce: String,
    sent_version: Option<String>,
    nacked_version: Option<String>,
}

struct Session {
    store: Arc<Store>,
    proxy: Proxy,
    snapshot: Packed,
    types: HashMap<String, TypeState>,
    nonce: u64,
    /// Boxed: the channel preallocates slots, and 10,000 streams each keep one.
    tx: mpsc::Sender<Box<DiscoveryResponse>>,
}

impl Session {
    fn rebuild(&mut self) {
        let proxy = self.store.proxy(&self.proxy.mesh, &self.proxy.name);
        let snap = match &proxy {
            Some((dp, metrics)) => xds::generate(dp, metrics, &self.proxy.paths),
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
        let st = self.types.entry(type_url.to_string()).or_default();
        st.nonce = nonce;
        st.sent_version = Some(self.snapshot.version.clone());
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
            let st = &self.types[&t];
            if st.sent_version.as_deref() != Some(self.snapshot.version.as_str()) && !self.send(&t).await {
                return false;
            }
        }
        true
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        let t = req.type_url.clone();
        let current = self.snapshot.version.clone();
        let st = self.types.entry(t.clone()).or_default();
        if req.response_nonce.is_empty() {
            // a new subscription (or a reconnect): always answer
            return self.send(&t).await;
        }
        if req.response_nonce != st.nonce {
            return true; // stale: answers an older response
        }
        if let Some(err) = &req.error_detail {
            if st.nacked_version.as_ref() != st.sent_version.as_ref() {
                tracing::error!(
                    mesh = %self.proxy.mesh, dataplane = %self.proxy.name, type_url = %t,
                    rejected_version = ?st.sent_version, kept_version = %req.version_info,
                    envoy_error = %err.message,
                    "Envoy rejected the config (NACK); it keeps its last good config"
                );
            }
            st.nacked_version = st.sent_version.clone();
            return true;
        }
        tracing::debug!(dataplane = %self.proxy.name, type_url = %t, version = %req.version_info, "ACK");
        st.nacked_version = None;
        if st.sent_version.as_deref() != Some(current.as_str()) {
            return self.send(&t).await;
        }
        true
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
        let (tx, rx) = mpsc::channel::<Box<DiscoveryResponse>>(4);
        let store = self.store.clone();
        tracing::info!(mesh = %proxy.mesh, dataplane = %proxy.name, config_socket = %proxy.paths.config_socket, "proxy connected");
        store.set_proxy_tls_ready(&proxy.mesh, &proxy.name, Some(proxy.paths.tls_ready()));
        tokio::spawn(async move {
            let mut changes = store.subscribe();
            let mut seen = *changes.borrow_and_update();
            let key = (proxy.mesh.clone(), proxy.name.clone());
            let mut s = Session {
                store,
                proxy,
                snapshot: Packed::default(),
                types: HashMap::new(),
                nonce: 0,
                tx,
            };
            s.rebuild();
            if !s.on_request(first).await {
                return;
            }
            loop {
                tokio::select! {
                    msg = incoming.message() => match msg {
                        Ok(Some(req)) => if !s.on_request(req).await { break },
                        Ok(None) => break,
                        Err(e) => { tracing::debug!(dataplane = %s.proxy.name, error = %e, "stream error"); break }
                    },
                    changed = changes.changed() => {
                        if changed.is_err() { break }
                        // recompute only when a change since the last look can concern this proxy
                        let now = *changes.borrow_and_update();
                        let touched = s.store.touches_since(seen, &key);
                        seen = now;
                        if !touched {
                            continue;
                        }
                        let before = s.snapshot.version.clone();
                        s.rebuild();
                        if s.snapshot.version != before {
                            tracing::info!(mesh = %s.proxy.mesh, dataplane = %s.proxy.name, version = %s.snapshot.version, "config changed, pushing");
                            if !s.push_changed().await { break }
                        }
                    }
                }
            }
            s.store.set_proxy_tls_ready(&s.proxy.mesh, &s.proxy.name, None);
            tracing::info!(mesh = %s.proxy.mesh, dataplane = %s.proxy.name, "proxy disconnected");
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
