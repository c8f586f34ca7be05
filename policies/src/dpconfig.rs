//! The CP → DP config: what Envoy serves to meshmetric-dp on its config socket
//! ([`crate::contract`]). The JSON shape is Kuma's, so existing tooling can read it:
//! `{"observability":{"metrics":{"applications":[..],"backends":[..],"sidecar":{..},"extraLabels":{..}}}}`.
//! Values are typed ([`Port`], [`Duration`], enums), so the plugin parses them once, when the
//! document arrives, and never re-interprets a string.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::headers::{HeaderRefusal, SecretSources, check_transport};
use crate::meshmetric::{BackendType, Compression, Header, OtlpProtocol, OtlpTls, RelabelConfig, Sidecar, Temporality};
use crate::otelbackend::{EnvMode, EnvPrecedence, ResolvedEnvPolicy};
use crate::values::{Duration, Port};

/// Root of the CP → DP config document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// `observability`.
    pub observability: Observability,
}

/// `observability`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observability {
    /// `metrics`.
    pub metrics: MetricsConfig,
}

/// `observability.metrics`: everything meshmetric-dp needs to scrape, filter and export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Applications to scrape.
    #[serde(default)]
    pub applications: Vec<DpApplication>,
    /// Active backends (a backend that cannot work on this proxy is left out; the control
    /// plane shows why).
    #[serde(default)]
    pub backends: Vec<DpBackend>,
    /// Profiles and selectors for Envoy's stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    /// Labels added to every exported series (keys as Kuma names them, e.g. `kuma.workload`).
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
    /// Relabeling rules for every exported series ([`crate::relabel`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel: Vec<RelabelConfig>,
    /// The OTLP receiver, when the policy enables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_receiver: Option<DpOtlpReceiver>,
}

/// Where the plugin listens for pushed OTLP metrics (on loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpOtlpReceiver {
    /// OTLP/gRPC port.
    pub grpc_port: Port,
    /// OTLP/HTTP port.
    pub http_port: Port,
}

/// An application endpoint to scrape: `http://<address or 127.0.0.1>:<port><path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpApplication {
    /// Name (label `application` of its self-metrics); default its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP path, starting with `/`.
    pub path: String,
    /// Port.
    pub port: Port,
    /// Empty means the proxy's local address (127.0.0.1).
    #[serde(default)]
    pub address: String,
    /// Relabeling rules for this application's series, before the merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel: Vec<RelabelConfig>,
}

impl DpApplication {
    /// The name used in self-metrics: the name, else the port.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.port.to_string())
    }
}

/// A backend as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpBackend {
    /// The kind of backend.
    #[serde(rename = "type")]
    pub kind: BackendType,
    /// Prometheus: the clientId (empty = default client); OpenTelemetry: the backend's name (the
    /// MeshOpenTelemetryBackend's display name, or the inline endpoint).
    #[serde(default)]
    pub name: String,
    /// Settings of an OpenTelemetry backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<DpOpenTelemetry>,
}

/// An OpenTelemetry backend resolved for one proxy: the MeshOpenTelemetryBackend's fields
/// overridden by the policy's. Unset settings come from the plugin's `OTEL_EXPORTER_OTLP_*`
/// environment as `env` says, then from the defaults. Headers carry secrets only as
/// `valueFrom` references (validation refuses inline secrets), so no secret value is ever in
/// this document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpOpenTelemetry {
    /// `host:port`; an empty host means the node-local collector (`$HOST_IP`, else 127.0.0.1).
    pub endpoint: String,
    /// Push interval.
    pub refresh_interval: Duration,
    /// Transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Base path for OTLP/HTTP (`<path>/v1/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Timeout of one export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Temporality of sums and histograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporality: Option<Temporality>,
    /// Most queued batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// TLS towards the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
    /// How the `OTEL_EXPORTER_OTLP_*` variables combine with these fields.
    pub env: ResolvedEnvPolicy,
}

impl DpOpenTelemetry {
    /// Checks this backend against what a proxy declared it allows: every header's source,
    /// and the transport of secret headers when the endpoint is known here (the environment
    /// cannot replace it and it is not the node-local collector).
    pub fn check_sources(&self, sources: &SecretSources) -> Result<(), HeaderRefusal> {
        for h in &self.headers {
            sources.check_source(h)?;
        }
        let env_can_replace = match self.env.mode {
            EnvMode::Disabled => false,
            EnvMode::Required => true,
            EnvMode::Optional => self.env.precedence == EnvPrecedence::EnvFirst,
        };
        if !env_can_replace && !self.endpoint.starts_with(':') {
            check_transport(&self.headers, &self.endpoint, self.tls.is_some())?;
        }
        Ok(())
    }
}

impl DpConfig {
    /// The JSON body served to the plugin and its ETag (SHA-256 of the body, lowercase hex).
    pub fn to_body_and_etag(&self) -> (String, String) {
        let body = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        let etag = hex::encode(Sha256::digest(body.as_bytes()));
        (body, etag)
    }

    /// The metrics config.
    pub fn metrics(&self) -> &MetricsConfig {
        &self.observability.metrics
    }
}
