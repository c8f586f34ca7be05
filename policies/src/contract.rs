//! The contract between the control plane and the dataplane plugin: names both sides must
//! agree on. The control plane generates Envoy resources with these names and paths; the
//! plugin writes an Envoy bootstrap with this node id and metadata and serves on these sockets.
//!
//! - The proxy's xDS `node.id` is `<mesh>.<name>` of its Dataplane ([`node_id`]).
//! - Node metadata ([`META_WORKDIR`], [`META_CERT_PATH`], [`META_KEY_PATH`]) tells the control
//!   plane where the plugin's sockets are and, for `ProvidedTLS`, the certificate files.
//! - Envoy binds the config listener on `<workdir>/`[`CONFIG_SOCKET`] and answers
//!   `GET `[`CONFIG_PATH`] with the JSON of [`crate::dpconfig::DpConfig`] (`Etag`,
//!   `If-None-Match` → 304); the plugin serves merged metrics on `<workdir>/`[`METRICS_SOCKET`]
//!   at [`CONFIG_PATH`], where each Prometheus listener rewrites its path.
//! - Every Envoy listener, cluster and stat prefix the control plane creates starts with
//!   [`INTERNAL_PREFIX`], so the Basic profile drops their stats.

/// Path the plugin polls on the config socket, and the path the metrics socket serves.
pub const CONFIG_PATH: &str = "/meshmetric";
/// File name of the config socket in the plugin's workdir (Envoy binds it, mode 0600).
pub const CONFIG_SOCKET: &str = "config.sock";
/// File name of the metrics socket in the plugin's workdir (the plugin binds it, mode 0660).
pub const METRICS_SOCKET: &str = "metrics.sock";
/// Longest unix socket path Envoy and the kernel accept on every platform (`sun_path`).
pub const MAX_SOCKET_PATH: usize = 104;
/// Node metadata key: the plugin's workdir (absolute path).
pub const META_WORKDIR: &str = "meshmetricWorkdir";
/// Node metadata key: certificate file for `ProvidedTLS` Prometheus listeners.
pub const META_CERT_PATH: &str = "metricsCertPath";
/// Node metadata key: private key file for `ProvidedTLS` Prometheus listeners.
pub const META_KEY_PATH: &str = "metricsKeyPath";
/// Node metadata key: where the plugin lets OTLP header values come from, a struct of string
/// lists `{headerFileDirs, headerEnvPrefixes, envHeadersTo}`
/// ([`crate::headers::SecretSources`]).
pub const META_SECRET_SOURCES: &str = "meshmetricSecretSources";
/// Workdir root used for a proxy whose node metadata names none: `<root>/<node id>`.
pub const DEFAULT_WORKDIR_ROOT: &str = "/tmp/meshmetric";
/// Prefix of every Envoy resource and stat prefix this project creates.
pub const INTERNAL_PREFIX: &str = "_meshmetric";
/// How [`INTERNAL_PREFIX`] appears inside an Envoy stat name built from a stat prefix
/// (`envoy_listener_` + `_meshmetric_config` + ...).
pub const INTERNAL_STAT_INFIX: &str = "__meshmetric";
/// Name (and stat prefix) of the config listener.
pub const CONFIG_LISTENER: &str = "_meshmetric_config";
/// Name of the cluster pointing at the plugin's metrics socket.
pub const DP_CLUSTER: &str = "_meshmetric_dp";
/// Name of the static cluster of the bootstrap that reaches the control plane's ADS.
pub const ADS_CLUSTER: &str = "ads_cluster";

/// The xDS `node.id` of the proxy of Dataplane `name` in `mesh`: `<mesh>.<name>`.
pub fn node_id(mesh: &str, name: &str) -> String {
    format!("{mesh}.{name}")
}

/// Splits a `node.id` into `(mesh, name)` at the first `.` (mesh names have no `.`); `None`
/// without one, or when either part is not a valid mesh or name ([`crate::meta::check_mesh`],
/// [`crate::meta::check_name`]), so a hostile id never reaches a log or a lookup.
pub fn parse_node_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.')
        .filter(|(m, n)| crate::meta::check_mesh(m).is_ok() && crate::meta::check_name(n).is_ok())
}

/// Name (and stat prefix) of the listener of the Prometheus backend on `port`.
pub fn prometheus_listener(port: u16) -> String {
    format!("{INTERNAL_PREFIX}_prometheus_{port}")
}

/// Paths of one proxy's sockets and certificate files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyPaths {
    /// Unix socket Envoy binds for the CP → DP config.
    pub config_socket: String,
    /// Unix socket the plugin serves merged metrics on.
    pub metrics_socket: String,
    /// Certificate for `ProvidedTLS` Prometheus listeners.
    pub tls_cert: Option<String>,
    /// Key of `tls_cert`.
    pub tls_key: Option<String>,
}

impl ProxyPaths {
    /// Paths for a proxy whose plugin works in `workdir`.
    pub fn in_workdir(workdir: &str) -> Self {
        let w = workdir.trim_end_matches('/');
        Self {
            config_socket: format!("{w}/{CONFIG_SOCKET}"),
            metrics_socket: format!("{w}/{METRICS_SOCKET}"),
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Whether the proxy gave both certificate and key for `ProvidedTLS`.
    pub fn tls_ready(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}
