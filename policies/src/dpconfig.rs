//! The CP → DP config: what Envoy serves to meshmetric-dp on its config unix socket
//! (DESIGN.md §4.5). The JSON shape is Kuma's, so existing tooling can read it:
//! `{"observability":{"metrics":{"applications":[..],"backends":[..],"sidecar":{..},"extraLabels":{..}}}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataplane::{Dataplane, WORKLOAD_LABEL, ZONE_LABEL};
use crate::meshmetric::{Conf, DEFAULT_PATH, DEFAULT_REFRESH_INTERVAL, Header, OtlpTls, Sidecar};

/// Root of the CP → DP config document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    pub observability: Observability,
}

/// `observability`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observability {
    pub metrics: MetricsConfig,
}

/// `observability.metrics`: everything meshmetric-dp needs to scrape, filter and export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfig {
    #[serde(default)]
    pub applications: Vec<DpApplication>,
    #[serde(default)]
    pub backends: Vec<DpBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    /// Labels added to every exported series (keys as Kuma names them, e.g. `kuma.workload`).
    #[serde(default)]
    pub extra_labels: BTreeMap<String, String>,
}

/// An application endpoint to scrape: `http://<address or 127.0.0.1>:<port><path>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpApplication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub path: String,
    pub port: u16,
    /// Empty means the proxy's local address (127.0.0.1).
    #[serde(default)]
    pub address: String,
}

/// A backend as the plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpBackend {
    #[serde(rename = "type")]
    pub kind: String,
    /// Prometheus: the clientId (empty = default client); OpenTelemetry: the endpoint.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<DpOpenTelemetry>,
}

/// OTLP settings of an OpenTelemetry backend, as the policy gives them (unset = the plugin's
/// `OTEL_EXPORTER_OTLP_*` environment, then the defaults). Headers carry secrets only as
/// `valueFrom` references (validation refuses inline secrets), so no secret value is ever in
/// this document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DpOpenTelemetry {
    pub endpoint: String,
    pub refresh_interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
}

impl DpConfig {
    /// Builds the config of `dp` from its merged (validated) [`Conf`].
    pub fn build(conf: &Conf, dp: &Dataplane) -> Self {
        let applications = conf
            .applications
            .iter()
            .flatten()
            .map(|a| DpApplication {
                name: a.name.clone(),
                path: a.path.clone().unwrap_or_else(|| DEFAULT_PATH.to_string()),
                port: u16::try_from(a.port).unwrap_or(0),
                address: a.address.clone().unwrap_or_default(),
            })
            .collect();
        let backends = conf
            .backends
            .iter()
            .flatten()
            .map(|b| DpBackend {
                kind: b.kind.clone(),
                name: match (&b.prometheus, &b.open_telemetry) {
                    (Some(p), _) => p.client_id.clone().unwrap_or_default(),
                    (_, Some(o)) => o.endpoint.clone(),
                    _ => String::new(),
                },
                open_telemetry: b.open_telemetry.as_ref().map(|o| DpOpenTelemetry {
                    endpoint: o.endpoint.clone(),
                    refresh_interval: o
                        .refresh_interval
                        .clone()
                        .unwrap_or_else(|| DEFAULT_REFRESH_INTERVAL.to_string()),
                    protocol: o.protocol.clone(),
                    timeout: o.timeout.clone(),
                    compression: o.compression.clone(),
                    temporality: o.temporality.clone(),
                    queue_size: o.queue_size.and_then(|q| u32::try_from(q).ok()),
                    headers: o.headers.clone().unwrap_or_default(),
                    tls: o.tls.clone(),
                }),
            })
            .collect();
        let mut extra_labels = BTreeMap::new();
        extra_labels.insert("mesh".to_string(), dp.meta.mesh.clone());
        extra_labels.insert("dataplane".to_string(), dp.meta.name.clone());
        if let Some(w) = dp.meta.labels.get(WORKLOAD_LABEL) {
            extra_labels.insert("kuma.workload".to_string(), w.clone());
        }
        if let Some(z) = dp.meta.labels.get(ZONE_LABEL) {
            extra_labels.insert("zone".to_string(), z.clone());
        }
        extra_labels.insert("kuma.proxy_role".to_string(), "sidecar".to_string());
        DpConfig {
            observability: Observability {
                metrics: MetricsConfig {
                    applications,
                    backends,
                    sidecar: conf.sidecar.clone(),
                    extra_labels,
                },
            },
        }
    }

    /// The JSON body served to the plugin and its ETag (SHA-256 of the body, lowercase hex).
    pub fn to_body_and_etag(&self) -> (String, String) {
        let body = serde_json::to_string(self).expect("DpConfig serializes");
        let etag = hex::encode(Sha256::digest(body.as_bytes()));
        (body, etag)
    }

    /// The metrics config.
    pub fn metrics(&self) -> &MetricsConfig {
        &self.observability.metrics
    }
}
