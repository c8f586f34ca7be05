//! Envoy bootstrap for a proxy: node id `<mesh>.<name>`, admin address, ADS (SotW, gRPC) to
//! the control plane for CDS and LDS, and node metadata telling the control plane where this
//! plugin's sockets are (`meshmetricWorkdir`), where it lets header values come from
//! (`meshmetricSecretSources`) and, for ProvidedTLS, the certificate files.

use serde_json::{Value, json};

use meshmetric_policies::contract::{
    ADS_CLUSTER, META_CERT_PATH, META_KEY_PATH, META_SECRET_SOURCES, META_WORKDIR, node_id,
};
use meshmetric_policies::headers::SecretSources;

/// Inputs of [`bootstrap`].
#[derive(Debug, Clone)]
pub struct BootstrapParams {
    pub mesh: String,
    pub name: String,
    /// Control plane ADS address, `host:port`.
    pub cp_address: String,
    /// Envoy admin `ip:port`.
    pub admin_address: String,
    /// Directory of the plugin's sockets (absolute).
    pub workdir: String,
    pub metrics_cert_path: Option<String>,
    pub metrics_key_path: Option<String>,
    /// Dataplane token sent as `authorization: Bearer` gRPC metadata on the ADS stream.
    pub dataplane_token: Option<String>,
    /// CA bundle (absolute path) to verify the control plane: ADS over TLS when given.
    pub cp_ca_file: Option<String>,
    /// Name to verify in the control plane's certificate; default its host.
    pub cp_server_name: Option<String>,
    /// Where policies may read header values from, declared to the control plane.
    pub secret_sources: SecretSources,
}

fn socket_address(hostport: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = hostport
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{hostport:?}: expected host:port"))?;
    let port = p.parse().map_err(|_| anyhow::anyhow!("{hostport:?}: invalid port"))?;
    Ok((h.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// The bootstrap as JSON (Envoy accepts JSON for `-c`).
pub fn bootstrap(p: &BootstrapParams) -> anyhow::Result<Value> {
    let (cp_host, cp_port) = socket_address(&p.cp_address)?;
    let (admin_host, admin_port) = socket_address(&p.admin_address)?;
    let is_ip = cp_host.parse::<std::net::IpAddr>().is_ok();
    let mut metadata = json!({META_WORKDIR: p.workdir, META_SECRET_SOURCES: p.secret_sources});
    if let (Some(c), Some(k)) = (&p.metrics_cert_path, &p.metrics_key_path) {
        metadata[META_CERT_PATH] = json!(c);
        metadata[META_KEY_PATH] = json!(k);
    }
    let mut grpc_service = json!({"envoy_grpc": {"cluster_name": ADS_CLUSTER}});
    if let Some(t) = &p.dataplane_token {
        grpc_service["initial_metadata"] = json!([{"key": "authorization", "value": format!("Bearer {t}")}]);
    }
    let mut ads_cluster = json!({
        "name": ADS_CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {"connection_keepalive": {"interval": "10s", "timeout": "10s"}}}
        }},
        "load_assignment": {"cluster_name": ADS_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": cp_host, "port_value": cp_port}
        }}}]}]}
    });
    if let Some(ca) = &p.cp_ca_file {
        let sni = p.cp_server_name.clone().unwrap_or_else(|| cp_host.clone());
        ads_cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": ca},
                        "match_typed_subject_alt_names": [{
                            "san_type": if sni.parse::<std::net::IpAddr>().is_ok() { "IP_ADDRESS" } else { "DNS" },
                            "matcher": {"exact": sni}
                        }]
                    }
                }
            }
        });
    }
    Ok(json!({
        "node": {"id": node_id(&p.mesh, &p.name), "cluster": p.name, "metadata": metadata},
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                "set_node_on_first_message_only": true
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": [ads_cluster]}
    }))
}
