//! The `MeshMetric` policy (Kuma MADR 035; `kuma.io/v1alpha1`, kind `MeshMetric`), Kuma 2.14's
//! fields plus this project's OTLP settings.
//!
//! Every enumerated field is an enum whose serde names are the wire names, so an unknown value
//! is a deserialization error reported at its field path (with the accepted values) together
//! with every other violation of the document. Every field of [`Conf`] is optional, so that
//! policies merge field by field ([`Conf::merge`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Meta;
use crate::targetref::TargetRef;
use crate::values::{Duration, Port, UrlPath};

/// Default path of an application's and a Prometheus backend's metrics endpoint (Kuma).
pub const DEFAULT_PATH: &str = "/metrics";
/// Default port of a Prometheus backend (Kuma).
pub const DEFAULT_PROMETHEUS_PORT: Port = match Port::new(5670) {
    Some(p) => p,
    None => unreachable!(),
};
/// Default OTLP push interval (Kuma): one minute.
pub const DEFAULT_REFRESH_INTERVAL_SECS: u64 = 60;
/// Shortest OpenTelemetry `refreshInterval` used; a shorter one is raised to it (with a
/// warning when the policy is applied), so a policy cannot turn every proxy into a flood of
/// exports.
pub const MIN_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Default timeout of one OTLP export (OTLP exporter specification): ten seconds.
pub const DEFAULT_OTLP_TIMEOUT_SECS: u64 = 10;
/// Default OTLP queue size, in batches.
pub const DEFAULT_QUEUE_SIZE: u32 = 100;
/// Accepted range of `queueSize`.
pub const QUEUE_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

/// A MeshMetric policy: metadata plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshMetric {
    /// Identity and labels.
    pub meta: Meta,
    /// The policy.
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

/// `spec.default`: the mergeable configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    /// What to keep of Envoy's own stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    /// Application endpoints scraped and merged with Envoy's stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<Vec<Application>>,
    /// Where the merged metrics go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
    /// Rules applied to every series the proxy exports (Envoy's and the applications', with
    /// the extra labels), after the profiles and before every output (extension; Prometheus's
    /// `relabel_config` semantics, the shape of the Prometheus Operator's `metricRelabelings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relabel: Option<Vec<RelabelConfig>>,
    /// An OTLP receiver in the plugin: applications in the pod push OTLP metrics to it and
    /// they join the proxy's metrics as one more application (extension; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_receiver: Option<OtlpReceiver>,
}

/// `spec.default.otlpReceiver`: the plugin listens for OTLP metrics on loopback, on the ports
/// the OpenTelemetry SDKs send to when nothing is configured (gRPC 4317, HTTP 4318).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpReceiver {
    /// Listen (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Port of OTLP/gRPC (`MetricsService/Export`); default 4317.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_port: Option<Port>,
    /// Port of OTLP/HTTP (`POST /v1/metrics`, protobuf or JSON); default 4318.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<Port>,
}

impl OtlpReceiver {
    /// Default gRPC port (the OTel SDKs' default endpoint `localhost:4317`).
    pub const DEFAULT_GRPC_PORT: u16 = 4317;
    /// Default HTTP port (`http://localhost:4318/v1/metrics`).
    pub const DEFAULT_HTTP_PORT: u16 = 4318;

    /// The ports to listen on, when enabled: `(grpc, http)`.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.enabled.unwrap_or(false).then(|| {
            (
                self.grpc_port.map_or(Self::DEFAULT_GRPC_PORT, |p| p.get()),
                self.http_port.map_or(Self::DEFAULT_HTTP_PORT, |p| p.get()),
            )
        })
    }
}

impl Conf {
    /// Merges a more specific `other` into `self` (Kuma's JSON Merge Patch rules): a field set
    /// in `other` replaces this one, objects merge field by field, lists are replaced — except
    /// `sidecar.profiles.appendProfiles`, which is concatenated.
    pub fn merge(&mut self, other: &Conf) {
        if let Some(o) = &other.sidecar {
            let s = self.sidecar.get_or_insert_with(Default::default);
            if o.include_unused.is_some() {
                s.include_unused = o.include_unused;
            }
            if let Some(op) = &o.profiles {
                let p = s.profiles.get_or_insert_with(Default::default);
                match (&mut p.append_profiles, &op.append_profiles) {
                    (Some(mine), Some(more)) => mine.extend(more.iter().cloned()),
                    (mine @ None, Some(more)) => *mine = Some(more.clone()),
                    (_, None) => {}
                }
                if op.include.is_some() {
                    p.include.clone_from(&op.include);
                }
                if op.exclude.is_some() {
                    p.exclude.clone_from(&op.exclude);
                }
            }
        }
        if other.applications.is_some() {
            self.applications.clone_from(&other.applications);
        }
        if other.backends.is_some() {
            self.backends.clone_from(&other.backends);
        }
        if other.relabel.is_some() {
            self.relabel.clone_from(&other.relabel);
        }
        if let Some(o) = &other.otlp_receiver {
            let r = self.otlp_receiver.get_or_insert_with(Default::default);
            if o.enabled.is_some() {
                r.enabled = o.enabled;
            }
            if o.grpc_port.is_some() {
                r.grpc_port = o.grpc_port;
            }
            if o.http_port.is_some() {
                r.http_port = o.http_port;
            }
        }
    }

    /// Whether Envoy's unused stats are exported too (`sidecar.includeUnused`, default false).
    pub fn include_unused(&self) -> bool {
        self.sidecar.as_ref().and_then(|s| s.include_unused).unwrap_or(false)
    }
}

/// `spec.default.sidecar`: what to keep of Envoy's own stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Also export stats that were never updated (Envoy's `usedonly` is then not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_unused: Option<bool>,
    /// Profiles and selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Profiles>,
}

/// `spec.default.sidecar.profiles`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profiles {
    /// Profiles to apply, OR-ed; none given means `Basic`.
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
    /// The profile (required).
    #[schemars(extend("x-required" = true))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ProfileName>,
}

/// A profile of Envoy stats (Kuma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProfileName {
    /// Every family.
    All,
    /// The families Kuma's dashboards use (see [`crate::profiles`]).
    Basic,
    /// Nothing (only what `include` adds).
    None,
}

/// A metric family name selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// How `match` is compared with the family name (required).
    #[schemars(extend("x-required" = true))]
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SelectorType>,
    /// The pattern; must not be empty.
    #[serde(rename = "match", default)]
    #[schemars(length(min = 1))]
    pub pattern: String,
}

/// `type` of a [`Selector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SelectorType {
    /// The family name starts with `match`.
    Prefix,
    /// `match` (RE2 syntax) is found in the family name (unanchored search).
    Regex,
    /// The family name is `match`.
    Exact,
    /// The family name contains `match`.
    Contains,
}

/// An application endpoint scraped and merged with Envoy's stats:
/// `http://<address or 127.0.0.1>:<port><path>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// Name of the application (the `application` label of its self-metrics); default its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP path; default `/metrics`; a missing leading `/` is added (Kuma accepts
    /// `metrics/prometheus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<UrlPath>,
    /// IP address or host; default the proxy's local address (127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TCP port (required).
    #[schemars(extend("x-required" = true))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Rules applied to this application's series before they are merged (extension; see
    /// [`RelabelConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relabel: Option<Vec<RelabelConfig>>,
}

/// One relabeling rule, with Prometheus's `relabel_config` semantics (values are taken from
/// `sourceLabels` joined by `separator`, matched against the fully anchored RE2 `regex`, ...),
/// written as the Prometheus Operator's `RelabelConfig` (`metricRelabelings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are concatenated (`__name__` is the metric name); a missing label
    /// counts as empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Vec<String>>,
    /// String between the concatenated values; default `;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// RE2 regular expression, fully anchored (`^(?:regex)$`); default `(.*)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Label written by `replace`, `lowercase`, `uppercase`, `hashmod`, compared by
    /// `keepequal`/`dropequal`; `replace` may use `$1`/`${name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    /// Value written by `replace` (`$1` and `${1}` expand groups of `regex`; default `$1`), or
    /// the new label name of `labelmap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// Modulus of `hashmod` (greater than 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    /// What to do; default `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RelabelAction>,
}

/// `relabel[].action` (Prometheus's relabel actions; the Prometheus Operator's capitalised
/// spellings are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Writes `replacement` (with the regex's groups) to `targetLabel` when `regex` matches.
    #[serde(alias = "Replace")]
    Replace,
    /// Drops the series unless `regex` matches.
    #[serde(alias = "Keep")]
    Keep,
    /// Drops the series when `regex` matches.
    #[serde(alias = "Drop")]
    Drop,
    /// Drops the series unless the source value equals `targetLabel`'s value.
    #[serde(alias = "KeepEqual")]
    Keepequal,
    /// Drops the series when the source value equals `targetLabel`'s value.
    #[serde(alias = "DropEqual")]
    Dropequal,
    /// Writes the MD5 of the source value modulo `modulus` to `targetLabel`.
    #[serde(alias = "HashMod")]
    Hashmod,
    /// Copies every label whose name matches `regex` to the name `replacement` makes of it.
    #[serde(alias = "LabelMap")]
    Labelmap,
    /// Removes every label whose name matches `regex`.
    #[serde(alias = "LabelDrop")]
    Labeldrop,
    /// Removes every label whose name does not match `regex`.
    #[serde(alias = "LabelKeep")]
    Labelkeep,
    /// Writes the source value in lower case to `targetLabel`.
    #[serde(alias = "Lowercase")]
    Lowercase,
    /// Writes the source value in upper case to `targetLabel`.
    #[serde(alias = "Uppercase")]
    Uppercase,
}

impl RelabelAction {
    /// The name as Prometheus writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Keepequal => "keepequal",
            Self::Dropequal => "dropequal",
            Self::Hashmod => "hashmod",
            Self::Labelmap => "labelmap",
            Self::Labeldrop => "labeldrop",
            Self::Labelkeep => "labelkeep",
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
        }
    }
}

impl Application {
    /// The path with its default applied.
    pub fn path_or_default(&self) -> &str {
        self.path.as_ref().map_or(DEFAULT_PATH, UrlPath::as_str)
    }
}

/// `type` of a [`Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BackendType {
    /// Pull: Envoy exposes the merged metrics for Prometheus.
    Prometheus,
    /// Push: OTLP to a collector.
    OpenTelemetry,
}

impl BackendType {
    /// The name as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prometheus => "Prometheus",
            Self::OpenTelemetry => "OpenTelemetry",
        }
    }
}

/// A metrics backend: `type` and the matching body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// The kind of backend (required).
    #[schemars(extend("x-required" = true))]
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackendType>,
    /// Settings of a Prometheus backend (required for that type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusBackend>,
    /// Settings of an OpenTelemetry backend (required for that type).
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
    /// Port; default 5670.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Path; default `/metrics`; a missing leading `/` is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<UrlPath>,
    /// TLS of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PrometheusTls>,
}

impl PrometheusBackend {
    /// The port with its default applied.
    pub fn port_or_default(&self) -> Port {
        self.port.unwrap_or(DEFAULT_PROMETHEUS_PORT)
    }
    /// The path with its default applied.
    pub fn path_or_default(&self) -> &str {
        self.path.as_ref().map_or(DEFAULT_PATH, UrlPath::as_str)
    }
    /// The TLS mode with its default (`Disabled`) applied.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.as_ref().and_then(|t| t.mode).unwrap_or(TlsMode::Disabled)
    }
}

/// `prometheus.tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTls {
    /// TLS mode (required when `tls` is given).
    #[schemars(extend("x-required" = true))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
}

/// TLS mode of a Prometheus backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TlsMode {
    /// Plain HTTP (default).
    Disabled,
    /// HTTPS with the certificate the proxy was given (node metadata `metricsCertPath`,
    /// `metricsKeyPath`).
    #[serde(rename = "ProvidedTLS")]
    ProvidedTls,
    /// HTTPS with a certificate from the mesh CA. Refused: this project has no mesh CA.
    #[serde(rename = "ActiveMTLSBackend")]
    ActiveMtlsBackend,
}

/// An OpenTelemetry (OTLP push) backend: a reference to a `MeshOpenTelemetryBackend`
/// (`backendRef`, Kuma 2.10+) or, deprecated, an inline `endpoint`. The other fields are this
/// project's OTLP settings; with a `backendRef` they override the referenced backend's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryBackend {
    /// Collector address as `host:port` (not a URL). Deprecated in Kuma 2.14, removed on Kuma's
    /// main branch: use `backendRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The `MeshOpenTelemetryBackend` to send to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
    /// Push interval; default `1m`; must be greater than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<Duration>,
    /// OTLP transport (extension): `grpc` (default) or `http` (HTTP/protobuf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Timeout of one export request (extension); default `10s`; must be greater than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Compression (extension): `gzip` or `none` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Aggregation temporality of sums and histograms (extension): `Cumulative` (default) or
    /// `Delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporality: Option<Temporality>,
    /// Most export batches kept while the collector is slow or down (extension; 1–10000,
    /// default 100); when full the oldest batch is dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub queue_size: Option<u32>,
    /// Request headers (extension). Secret values must come from `valueFrom`, never inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
    /// TLS towards the collector (extension); absent = plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
}

/// `openTelemetry.backendRef`: which `MeshOpenTelemetryBackend` of the policy's mesh to use.
/// Kuma 2.14 selects by `labels` (the oldest matching backend wins); `name` is this project's
/// extension (the backend's name or display name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// Must be `MeshOpenTelemetryBackend`.
    #[schemars(extend("x-required" = true))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackendRefKind>,
    /// Labels the backend must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Name of the backend (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `backendRef.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BackendRefKind {
    /// A [`crate::otelbackend::MeshOpenTelemetryBackend`].
    MeshOpenTelemetryBackend,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST <path>/v1/metrics`).
    Http,
}

impl OtlpProtocol {
    /// The name as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// OTLP request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip.
    Gzip,
    /// None.
    None,
}

/// Aggregation temporality of exported sums and histograms (OTLP data model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Temporality {
    /// Values since the series started.
    Cumulative,
    /// Values since the previous export.
    Delta,
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
