//! The `MeshMetric` policy (Kuma MADR 035; `kuma.io/v1alpha1`, kind `MeshMetric`).
//!
//! Enumerated fields (`kind`, `type`, `name`, `mode`) are kept as strings so that
//! [`crate::validate`] can report every unknown value at once, with its field path, instead of
//! stopping at the first one as serde would.

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// `Mesh`, `Dataplane`, `MeshSubset`, `MeshService` or `MeshServiceSubset`.
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Also export stats that were never updated (Envoy's `usedonly` is then not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_unused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Profiles>,
}

/// `spec.default.sidecar.profiles`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// `All`, `Basic` or `None`.
    pub name: String,
}

/// A metric family name selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// `Prefix`, `Regex` (RE2-like syntax, unanchored), `Exact` or `Contains`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "match")]
    pub pattern: String,
}

/// An application endpoint scraped and merged with Envoy's stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    pub port: i64,
}

/// A metrics backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// `Prometheus` or `OpenTelemetry`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<OpenTelemetryBackend>,
}

/// A Prometheus (pull) backend: Envoy exposes the merged metrics on `<address>:<port><path>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusBackend {
    /// Which Prometheus (MADS `clientId`) discovers this endpoint; none = the default client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Port, 1–65535; default 5670.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTls {
    /// `Disabled` (default) or `ProvidedTLS`. `ActiveMTLSBackend` is rejected: this project has
    /// no mesh CA to issue the certificate it needs.
    pub mode: String,
}

/// An OpenTelemetry (OTLP push) backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryBackend {
    /// Collector address as `host:port` (not a URL).
    pub endpoint: String,
    /// Push interval as a Go-style duration (`30s`, `1m`); default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
}
