//! The `MeshOpenTelemetryBackend` resource (Kuma MADR 095, short name `motb`): a shared OTLP
//! collector endpoint that observability policies reference with `backendRef`.
//!
//! Kuma's fields: `endpoint{address, port (default 4317), path (HTTP only)}`, `protocol`
//! (`grpc` default, or `http`) and `env{mode, precedence, allowSignalOverrides}`, which decides
//! how the standard `OTEL_EXPORTER_OTLP_*` variables of the proxy combine with the backend's
//! fields. An empty spec means the collector on the proxy's own node: the plugin sends to
//! `$HOST_IP`, else `127.0.0.1`, port 4317.
//!
//! This project's OTLP settings (`tls`, `headers`, `compression`, `timeout`, `temporality`,
//! `queueSize`) are accepted here as extensions, with the meanings they have on a MeshMetric's
//! inline `openTelemetry`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meshmetric::{Compression, Header, OtlpProtocol, OtlpTls, QUEUE_SIZE_RANGE, Temporality};
use crate::meta::Meta;
use crate::validate::{check_headers, check_otlp_tls, check_positive};
use crate::values::{Duration, Port};
use crate::violation::Violations;

/// Default collector port (OTLP/gRPC).
pub const DEFAULT_OTLP_PORT: Port = match Port::new(4317) {
    Some(p) => p,
    None => unreachable!(),
};

/// A MeshOpenTelemetryBackend: metadata plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshOpenTelemetryBackend {
    /// Identity and labels (a `backendRef` selects by these labels).
    pub meta: Meta,
    /// The backend.
    pub spec: OtelBackendSpec,
}

/// `spec` of a MeshOpenTelemetryBackend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelBackendSpec {
    /// Where the collector is; omitted = the node-local collector on port 4317.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<OtelEndpoint>,
    /// Transport; default `grpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// How the proxy's `OTEL_EXPORTER_OTLP_*` variables take part; default mode `Optional`,
    /// precedence `EnvFirst`, `allowSignalOverrides: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvPolicy>,
    /// Timeout of one export (extension); default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Compression (extension): `gzip` or `none` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Temporality of sums and histograms (extension): `Cumulative` (default) or `Delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporality: Option<Temporality>,
    /// Most export batches kept (extension; 1–10000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub queue_size: Option<u32>,
    /// Request headers (extension); secret values only from `valueFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
    /// TLS towards the collector (extension); absent = plaintext (HTTPS when `protocol: http`
    /// and port 443, as in Kuma).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
}

/// `spec.endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelEndpoint {
    /// Host name or IP of the collector; omitted = `$HOST_IP` of the proxy, else `127.0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port; default 4317.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Base path for `protocol: http` (`<path>/v1/metrics`); not allowed with gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `spec.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvPolicy {
    /// Whether the variables are used; default `Optional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EnvMode>,
    /// Which side wins when both give a field; default `EnvFirst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precedence: Option<EnvPrecedence>,
    /// Whether `OTEL_EXPORTER_OTLP_METRICS_*` may override `OTEL_EXPORTER_OTLP_*`; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_signal_overrides: Option<bool>,
}

/// `env.mode` (Kuma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EnvMode {
    /// The variables are ignored.
    Disabled,
    /// The variables are used when present (default).
    Optional,
    /// The variables must give the endpoint; without it the backend is not started.
    Required,
}

/// `env.precedence` (Kuma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EnvPrecedence {
    /// The backend's fields win; the variables fill gaps.
    ExplicitFirst,
    /// The variables win; the backend's fields fill gaps (default).
    EnvFirst,
}

/// The effective env policy (defaults applied), as carried to the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedEnvPolicy {
    /// Mode.
    pub mode: EnvMode,
    /// Precedence.
    pub precedence: EnvPrecedence,
    /// Whether per-signal variables are honoured.
    pub allow_signal_overrides: bool,
}

impl ResolvedEnvPolicy {
    /// What an inline `openTelemetry.endpoint` gets: the policy wins, the variables fill gaps.
    pub const INLINE: Self = Self {
        mode: EnvMode::Optional,
        precedence: EnvPrecedence::ExplicitFirst,
        allow_signal_overrides: true,
    };
}

impl EnvPolicy {
    /// The policy with Kuma's defaults applied.
    pub fn resolve(p: Option<&EnvPolicy>) -> ResolvedEnvPolicy {
        ResolvedEnvPolicy {
            mode: p.and_then(|p| p.mode).unwrap_or(EnvMode::Optional),
            precedence: p.and_then(|p| p.precedence).unwrap_or(EnvPrecedence::EnvFirst),
            allow_signal_overrides: p.and_then(|p| p.allow_signal_overrides).unwrap_or(true),
        }
    }
}

impl MeshOpenTelemetryBackend {
    /// Whether `labels` select this backend (every label present with the same value).
    pub fn has_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.iter().all(|(k, v)| self.meta.labels.get(k) == Some(v))
    }
}

/// Validates a MeshOpenTelemetryBackend `spec` (Kuma 2.14.3's rules plus the extensions');
/// paths start with `spec.`.
pub fn validate_otel_backend(spec: &OtelBackendSpec) -> Violations {
    let mut v = Violations::default();
    let protocol = spec.protocol.unwrap_or(OtlpProtocol::Grpc);
    if let Some(ep) = &spec.endpoint {
        if let Some(a) = &ep.address {
            if a.is_empty() {
                v.push("spec.endpoint.address", "must not be empty");
            } else if !is_ip_or_dns_name(a) {
                v.push("spec.endpoint.address", "address has to be a valid IP or hostname");
            }
        }
        if let Some(p) = ep.path.as_deref().filter(|p| !p.is_empty()) {
            if protocol == OtlpProtocol::Grpc {
                v.push("spec.endpoint.path", "must not be set when protocol is grpc");
            } else {
                if !p.starts_with('/') {
                    v.push("spec.endpoint.path", "must start with /");
                }
                if p.contains(['?', '#']) {
                    v.push("spec.endpoint.path", "must not contain query or fragment");
                }
            }
        }
    }
    check_positive(spec.timeout.as_ref(), "spec.timeout", &mut v);
    if let Some(q) = spec.queue_size
        && !QUEUE_SIZE_RANGE.contains(&q)
    {
        v.push("spec.queueSize", format!("{q} is out of range; accepted: 1-10000"));
    }
    check_headers(spec.headers.as_deref(), "spec", &mut v);
    check_otlp_tls(spec.tls.as_ref(), "spec", &mut v);
    v
}

/// An IP address or a DNS name (labels of letters, digits and `-`, separated by dots), as
/// Kuma's `govalidator.IsIP || IsDNSName` accepts.
pub fn is_ip_or_dns_name(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
