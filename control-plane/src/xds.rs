//! Envoy resources for one proxy (the CP → DP contract: `meshmetric_policies::contract`).
//!
//! Per proxy:
//! - CDS: `_meshmetric_dp` (the plugin's metrics unix socket) and one `localhost_<port>` per
//!   inbound (the workload);
//! - LDS: `_meshmetric_config` on the config unix socket (route `/meshmetric`: 304 when
//!   `If-None-Match` equals the ETag, else 200 with the JSON and `Etag`), one
//!   `_meshmetric_prometheus_<port>` per Prometheus backend on `<address>:<port>` routing
//!   `<path>` to the plugin, and one `inbound_<port>` per inbound routing to the workload.
//!
//! Internal names start with `_meshmetric` so the Basic profile drops their stats.

use std::hash::{Hash, Hasher};

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, HeaderValue, HeaderValueOption, Pipe, SocketAddress, TransportSocket, address, data_source,
    socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    header_matcher, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, TlsCertificate,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use envoy_types::util::pack_any;
use prost::Message;

pub use meshmetric_policies::contract::ProxyPaths;
use meshmetric_policies::contract::{CONFIG_LISTENER, CONFIG_PATH, DP_CLUSTER, MAX_SOCKET_PATH, prometheus_listener};
use meshmetric_policies::dataplane::Dataplane;
use meshmetric_policies::proxy::ProxyMetrics;

/// Type URL of LDS resources.
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of CDS resources.
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A [`Snapshot`] packed for sending: what an ADS stream keeps between pushes (the encoded
/// resources are a fraction of the size of the decoded ones, and are not re-encoded per push).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    pub version: String,
    pub clusters: Vec<Any>,
    pub listeners: Vec<Any>,
}

impl Packed {
    /// The resources of `type_url` (empty for unknown types).
    pub fn resources(&self, type_url: &str) -> Vec<Any> {
        match type_url {
            LISTENER_TYPE => self.listeners.clone(),
            CLUSTER_TYPE => self.clusters.clone(),
            _ => Vec::new(),
        }
    }
}

impl From<Snapshot> for Packed {
    fn from(s: Snapshot) -> Self {
        // fresh vectors: `into_iter().map().collect()` would reuse the (much larger)
        // allocation of the decoded resources in place and keep it alive
        fn pack<T: prost::Name + prost::Message>(v: Vec<T>) -> Vec<Any> {
            let mut out = Vec::with_capacity(v.len());
            out.extend(v.into_iter().map(pack_any));
            out
        }
        Self {
            version: s.version,
            clusters: pack(s.clusters),
            listeners: pack(s.listeners),
        }
    }
}

/// The resources of one proxy, with a version that changes exactly when they change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub clusters: Vec<Cluster>,
    pub listeners: Vec<Listener>,
    /// Why a Prometheus backend produced no listener, one line each (shown in logs and inspect).
    pub warnings: Vec<String>,
}

fn socket(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn pipe(path: &str, mode: u32) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: path.to_string(),
            mode,
        })),
    }
}

fn static_cluster(name: &str, addr: Address) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hcm_listener(
    name: &str,
    addr: Address,
    stat_prefix: &str,
    routes: RouteConfiguration,
    tls: Option<TransportSocket>,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(routes)),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        stat_prefix: stat_prefix.to_string(),
        address: Some(addr),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            transport_socket: tls,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn route_config(name: &str, routes: Vec<Route>, max_body: Option<u32>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: name.to_string(),
            domains: vec!["*".to_string()],
            routes,
            ..Default::default()
        }],
        max_direct_response_body_size_bytes: max_body.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

fn to_cluster(cluster: &str, path_match: route_match::PathSpecifier, rewrite: Option<&str>) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(path_match),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
            prefix_rewrite: rewrite.unwrap_or_default().to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The config listener: serves `body` at `/meshmetric` with `Etag: etag`, 304 on a matching
/// `If-None-Match`. Envoy's default direct-response limit is 4 KiB, so it is raised above the body.
pub fn config_listener(path: &str, body: &str, etag: &str) -> Listener {
    let exact = |s: &str| StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(s.to_string())),
        ignore_case: false,
    };
    let not_modified = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path(CONFIG_PATH.to_string())),
            headers: vec![HeaderMatcher {
                name: "if-none-match".to_string(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(exact(etag))),
                ..Default::default()
            }],
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 304,
            body: None,
            ..Default::default()
        })),
        response_headers_to_add: vec![etag_header(etag)],
        ..Default::default()
    };
    let full = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path(CONFIG_PATH.to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(body.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        })),
        response_headers_to_add: vec![
            etag_header(etag),
            HeaderValueOption {
                header: Some(HeaderValue {
                    key: "content-type".into(),
                    value: "application/json".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let max = u32::try_from(body.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(2)
        .max(4096);
    hcm_listener(
        CONFIG_LISTENER,
        pipe(path, 0o600),
        CONFIG_LISTENER,
        route_config(CONFIG_LISTENER, vec![not_modified, full], Some(max)),
        None,
    )
}

fn etag_header(etag: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: "etag".into(),
            value: etag.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tls_socket(cert: &str, key: &str) -> TransportSocket {
    let file = |p: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(p.to_string())),
        ..Default::default()
    };
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(ctx))),
    }
}

/// Generates the resources of `dp` from its derived metrics state: the inbound listeners and
/// clusters, the config listener serving `metrics.config` (an empty config when no MeshMetric
/// applies, so a plugin whose policy was removed stops its application scrapes and exporters
/// instead of keeping the last config), and one listener per Prometheus listener of
/// `metrics` (backends that cannot work on this proxy are already left out there, with the
/// reason, so Envoy is never sent a listener update it would reject).
pub fn generate(dp: &Dataplane, metrics: &ProxyMetrics, paths: &ProxyPaths) -> Snapshot {
    let mut s = Snapshot::default();
    let n = dp.networking();
    for ib in &n.inbound {
        let (Some(port), Some(wport)) = (ib.port, ib.workload_port()) else {
            continue;
        };
        let waddr = ib.service_address.as_deref().unwrap_or("127.0.0.1");
        let cname = format!("localhost_{wport}");
        if !s.clusters.iter().any(|c| c.name == cname) {
            s.clusters.push(static_cluster(&cname, socket(waddr, wport.get())));
        }
        let lname = format!("inbound_{port}");
        let routes = route_config(
            &lname,
            vec![to_cluster(&cname, route_match::PathSpecifier::Prefix("/".into()), None)],
            None,
        );
        let addr = ib.address.as_deref().unwrap_or(&n.address);
        s.listeners
            .push(hcm_listener(&lname, socket(addr, port.get()), &lname, routes, None));
    }
    let (body, etag) = metrics.config.to_body_and_etag();
    if paths.config_socket.len() > MAX_SOCKET_PATH {
        s.warnings.push(format!(
            "config socket path {:?} is longer than {MAX_SOCKET_PATH} bytes; no metrics config served",
            paths.config_socket
        ));
    } else {
        s.listeners.push(config_listener(&paths.config_socket, &body, &etag));
    }
    for w in &metrics.inactive {
        s.warnings.push(format!("{}: {}", w.backend, w.reason));
    }
    for l in &metrics.prometheus {
        let tls = match (l.tls, &paths.tls_cert, &paths.tls_key) {
            (true, Some(c), Some(k)) => Some(tls_socket(c, k)),
            (true, _, _) => {
                // the readiness the listener was derived with is stale; never serve plain text
                s.warnings.push(format!(
                    "Prometheus backend on port {} asks for ProvidedTLS but the proxy gave no certificate; listener not created",
                    l.port
                ));
                continue;
            }
            (false, _, _) => None,
        };
        let name = prometheus_listener(l.port.get());
        let route = to_cluster(
            DP_CLUSTER,
            route_match::PathSpecifier::Prefix(l.path.clone()),
            Some(CONFIG_PATH),
        );
        s.listeners.push(hcm_listener(
            &name,
            socket(&n.address, l.port.get()),
            &name,
            route_config(&name, vec![route], None),
            tls,
        ));
    }
    if !metrics.prometheus.is_empty() {
        s.clusters
            .push(static_cluster(DP_CLUSTER, pipe(&paths.metrics_socket, 0)));
    }
    s.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    s.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = std::hash::DefaultHasher::new();
    for c in &s.clusters {
        c.encode_to_vec().hash(&mut h);
    }
    for l in &s.listeners {
        l.encode_to_vec().hash(&mut h);
    }
    s.version = format!("{:016x}", h.finish());
    s
}

/// A readable, stable rendering of a snapshot for golden files: each resource's Debug form
/// with its HTTP connection manager decoded.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    for c in &s.clusters {
        out.push_str(&format!("# cluster {}\n{:#?}\n", c.name, c));
    }
    for l in &s.listeners {
        let mut l = l.clone();
        let mut hcms = Vec::new();
        for fc in &mut l.filter_chains {
            for f in &mut fc.filters {
                if let Some(filter::ConfigType::TypedConfig(any)) = f.config_type.take() {
                    hcms.push(HttpConnectionManager::decode(any.value.as_slice()).expect("HCM decodes"));
                }
            }
            if let Some(ts) = &mut fc.transport_socket
                && let Some(transport_socket::ConfigType::TypedConfig(any)) = ts.config_type.take()
            {
                out.push_str(&format!(
                    "# tls {:#?}\n",
                    DownstreamTlsContext::decode(any.value.as_slice()).expect("TLS decodes")
                ));
            }
        }
        out.push_str(&format!("# listener {}\n{:#?}\n", l.name, l));
        for h in hcms {
            let mut h = h;
            h.http_filters.iter_mut().for_each(|f| f.config_type = None);
            out.push_str(&format!("{h:#?}\n"));
        }
    }
    out
}
