//! The `MeshMetric` policy (Kuma MADR 035; `kuma.io/v1alpha1`, kind `MeshMetric`).
//!
//! Enumerated fields (`kind`, `type`, `name`, `mode`) are kept as strings so that
//! [`crate::validate`] can report every unknown value at once, with its field path, instead of
//! stopping at the first one as serde would.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::document::Meta;

/// Default path of an application's and a Prometheus backend's metrics endpoint (Kuma default).
pub const DEFAULT_PATH: &str = "/metrics";
/// Default port of a Prometheus backend (Kuma default).
pub const DEFAULT_PROMETHEUS_PORT: u32 = 5670;
/// Default OTLP push interval (Kuma default).
pub const DEFAULT_REFRESH_INTERVAL: &str = "1m";

/// A MeshMetric policy: metadata plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshMetric {
    pub meta: Meta,
    pub spec: MeshMetricSpec,
}

/// `spec` of a MeshMetric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshMetricSpec {
    /// Which proxies the policy applies to; omitted means the whole mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// The configuration applied to the selected proxies.
    #[serde(default)]
    pub default: Conf,
}

/// `spec.targetRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// `Mesh`, `Dataplane`, `MeshSubset`, `MeshService` or `MeshServiceSubset`.
    #[schemars(extend("enum" = ["Mesh", "Dataplane", "MeshSubset", "MeshService", "MeshServiceSubset"]))]
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Dataplane labels the proxy must have (kind `Dataplane`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Inbound tags the proxy must have (kinds `MeshSubset`, `MeshServiceSubset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Inbound name or port (kind `Dataplane`); makes the reference more specific.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `spec.default`: the mergeable configuration. Every field is optional so that policies can
/// be merged field by field; [`Conf`] values produced by merging keep that shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<Vec<Application>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
}

/// `spec.default.sidecar`: what to keep of Envoy's own stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Also export stats that were never updated (Envoy's `usedonly` is then not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_unused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Profiles>,
}

/// `spec.default.sidecar.profiles`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profiles {
    /// Profiles to apply, OR-ed (`All`, `Basic`, `None`); none given means `Basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_profiles: Option<Vec<Profile>>,
    /// Families kept even when no profile keeps them (include wins over exclude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<Selector>>,
    /// Families dropped even when a profile keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<Selector>>,
}

/// One entry of `appendProfiles`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// `All`, `Basic` or `None`.
    #[schemars(extend("enum" = ["All", "Basic", "None"]))]
    #[serde(default)]
    pub name: String,
}

/// A metric family name selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// `Prefix`, `Regex` (RE2-like syntax, unanchored), `Exact` or `Contains`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["Prefix", "Regex", "Exact", "Contains"]))]
    #[serde(default)]
    pub kind: String,
    /// The pattern; must not be empty.
    #[serde(rename = "match")]
    #[schemars(length(min = 1))]
    #[serde(default)]
    pub pattern: String,
}

/// An application endpoint scraped and merged with Envoy's stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP path; default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// IP address or host; default the proxy's local address (127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TCP port, 1–65535 (required).
    #[schemars(range(min = 1, max = 65535))]
    #[serde(default)]
    pub port: i64,
}

/// A metrics backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// `Prometheus` or `OpenTelemetry`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["Prometheus", "OpenTelemetry"]))]
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<OpenTelemetryBackend>,
}

/// A Prometheus (pull) backend: Envoy exposes the merged metrics on `<address>:<port><path>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusBackend {
    /// Which Prometheus (MADS `clientId`) discovers this endpoint; none = the default client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Port, 1–65535; default 5670.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,
    /// Path, starting with `/`; default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PrometheusTls>,
}

impl PrometheusBackend {
    /// The port with its default applied (callers run this on validated policies).
    pub fn port_or_default(&self) -> u16 {
        self.port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PROMETHEUS_PORT as u16)
    }
    /// The path with its default applied.
    pub fn path_or_default(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_PATH)
    }
}

/// `prometheus.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTls {
    /// `Disabled` (default) or `ProvidedTLS`. `ActiveMTLSBackend` is rejected: this project has
    /// no mesh CA to issue the certificate it needs.
    #[schemars(extend("enum" = ["Disabled", "ProvidedTLS", "ActiveMTLSBackend"]))]
    #[serde(default)]
    pub mode: String,
}

/// An OpenTelemetry (OTLP push) backend. Settings the policy leaves unset fall back to the
/// standard `OTEL_EXPORTER_OTLP_*` environment variables of the plugin, then to the defaults
/// given here (OTLP exporter specification).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryBackend {
    /// Collector address as `host:port` (not a URL), e.g. `otel-collector:4317`.
    #[serde(default)]
    pub endpoint: String,
    /// OTLP transport: `grpc` (default) or `http` (HTTP/protobuf, path `/v1/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["grpc", "http"]))]
    pub protocol: Option<String>,
    /// Push interval as a Go-style duration (`30s`, `1m`); default `1m`; must be > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// Timeout of one export request (duration); default `10s`; must be > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `gzip` or `none` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["gzip", "none"]))]
    pub compression: Option<String>,
    /// Aggregation temporality of sums and histograms: `Cumulative` (default) or `Delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Cumulative", "Delta"]))]
    pub temporality: Option<String>,
    /// Most export batches kept while the collector is slow or down (1–10000, default 100);
    /// when full the oldest batch is dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub queue_size: Option<i64>,
    /// Request headers. Secret values (authorization, tokens, keys) must come from a file or
    /// an environment variable (`valueFrom`), never inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
    /// TLS towards the collector; absent = plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
}

/// An OTLP request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    /// Header name (an HTTP token, e.g. `authorization`).
    #[serde(default)]
    pub name: String,
    /// Inline value; only for non-secret headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value is read (and re-read when it changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// Source of a secret value: exactly one of `file` or `env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueFrom {
    /// Absolute path of a file holding the value (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Name of an environment variable of the plugin holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// TLS settings of an OTLP backend (files are read by the plugin and re-read on change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpTls {
    /// PEM CA bundle to verify the collector; default the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate for mTLS (with `keyFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `certFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Name to verify in the collector's certificate; default the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}
