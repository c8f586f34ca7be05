//! Everything the control plane derives for one proxy's metrics, in one place, so that the
//! Envoy resources (ADS), the discovery targets (MADS, HTTP SD) and `inspect` always agree:
//! the merged policy, the config served to the plugin, the Prometheus listeners the proxy
//! gets, and the backends left out with the reason.
//!
//! A Prometheus backend is left out of one proxy, never refused for all, when it cannot work
//! there: its port is an inbound, zone listener, gateway listener or admin port of that proxy
//! (Envoy would reject the whole listener update), or it asks for `ProvidedTLS` and the proxy
//! gave no certificate. An OpenTelemetry backend is left out when its `backendRef` matches no
//! MeshOpenTelemetryBackend, or when the proxy declared header sources that its headers break
//! ([`crate::headers`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataplane::Dataplane;
use crate::dpconfig::{
    DpApplication, DpBackend, DpConfig, DpOpenTelemetry, DpOtlpReceiver, MetricsConfig, Observability,
};
use crate::headers::SecretSources;
use crate::matching::Contribution;
use crate::meshgateway::MeshGateway;
use crate::meshmetric::{
    BackendRef, BackendType, Conf, DEFAULT_REFRESH_INTERVAL_SECS, MIN_REFRESH_INTERVAL, OpenTelemetryBackend,
    OtlpProtocol, OtlpTls, TlsMode,
};
use crate::meta::ZONE_LABEL;
use crate::otelbackend::{DEFAULT_OTLP_PORT, EnvPolicy, MeshOpenTelemetryBackend, ResolvedEnvPolicy};
use crate::values::{Duration, Port};

/// Which label set `extraLabels` carries (Kuma 2.14: default naming unless unified naming is
/// enabled for the mesh and proxy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Naming {
    /// `mesh`, `zone`, `kuma.proxy_role`, `kuma.workload`, every inbound and gateway tag
    /// (sanitised, single value and `,`-joined plural), `dataplane`, `service`,
    /// `kuma_io_mesh_gateway` for builtin gateways.
    #[default]
    Default,
    /// Only `mesh`, `zone`, `kuma.proxy_role`, `kuma.workload`.
    Unified,
}

/// A Prometheus listener the proxy gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusListener {
    /// MADS `clientId`; `None` = the default client.
    pub client_id: Option<String>,
    /// Port on the proxy's address.
    pub port: Port,
    /// Path prefix routed to the plugin.
    pub path: String,
    /// Whether it is served over TLS (`ProvidedTLS`).
    pub tls: bool,
}

/// A backend of the merged policy that this proxy does not get, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InactiveBackend {
    /// `backends[i]` of the merged config.
    pub backend: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: BackendType,
    /// Why it is left out.
    pub reason: String,
}

/// The derived metrics state of one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyMetrics {
    /// The merged policy; `None` when no MeshMetric selects the proxy.
    pub conf: Option<Conf>,
    /// The policies merged into `conf`, least specific first.
    pub contributions: Vec<Contribution>,
    /// The config served to the plugin (an empty one when no policy applies, so a plugin whose
    /// policy was removed stops scraping and exporting).
    pub config: DpConfig,
    /// The Prometheus listeners the proxy gets.
    pub prometheus: Vec<PrometheusListener>,
    /// Backends left out, with the reason.
    pub inactive: Vec<InactiveBackend>,
}

/// What [`ProxyMetrics::build`] needs besides the Dataplane and the merged policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyContext<'a> {
    /// The MeshGateway configuring the proxy, for a builtin gateway.
    pub gateway: Option<&'a MeshGateway>,
    /// The MeshOpenTelemetryBackends of the proxy's mesh.
    pub otel_backends: &'a [MeshOpenTelemetryBackend],
    /// Whether the proxy gave a certificate for `ProvidedTLS` listeners.
    pub tls_ready: bool,
    /// Which `extraLabels` to send.
    pub naming: Naming,
    /// Where the proxy lets header values come from, as it declared in its node metadata;
    /// `None` while unknown (not connected): the plugin checks again anyway.
    pub secret_sources: Option<&'a SecretSources>,
}

impl ProxyMetrics {
    /// Derives the proxy's metrics state from its Dataplane and merged policy.
    pub fn build(dp: &Dataplane, effective: Option<(Conf, Vec<Contribution>)>, ctx: ProxyContext<'_>) -> Self {
        let (conf, contributions) = match effective {
            Some((c, k)) => (Some(c), k),
            None => (None, Vec::new()),
        };
        let mut prometheus = Vec::new();
        let mut inactive = Vec::new();
        let mut backends = Vec::new();
        let empty = Conf::default();
        let c = conf.as_ref().unwrap_or(&empty);
        let taken = taken_ports(dp, ctx.gateway);
        for (i, b) in c.backends.iter().flatten().enumerate() {
            let left_out = |reason: String| InactiveBackend {
                backend: format!("backends[{i}]"),
                kind: b.kind.unwrap_or(BackendType::Prometheus),
                reason,
            };
            match (b.kind, &b.prometheus, &b.open_telemetry) {
                (Some(BackendType::Prometheus), Some(p), _) => {
                    let port = p.port_or_default();
                    if let Some((_, what)) = taken.iter().find(|(t, _)| *t == port) {
                        inactive.push(left_out(format!(
                            "port {port} is {what} of this proxy; no listener created (Envoy would reject the listener update). Choose another port"
                        )));
                        continue;
                    }
                    let tls = match p.tls_mode() {
                        TlsMode::ProvidedTls if !ctx.tls_ready => {
                            inactive.push(left_out(format!(
                                "ProvidedTLS on port {port}, but the proxy gave no certificate (metricsCertPath/metricsKeyPath); no listener created"
                            )));
                            continue;
                        }
                        TlsMode::ProvidedTls => true,
                        TlsMode::Disabled | TlsMode::ActiveMtlsBackend => false,
                    };
                    prometheus.push(PrometheusListener {
                        client_id: p.client_id.clone().filter(|c| !c.is_empty()),
                        port,
                        path: p.path_or_default().to_string(),
                        tls,
                    });
                    backends.push(DpBackend {
                        kind: BackendType::Prometheus,
                        name: p.client_id.clone().unwrap_or_default(),
                        open_telemetry: None,
                    });
                }
                (Some(BackendType::OpenTelemetry), _, Some(o)) => match resolve_otel(o, dp, ctx.otel_backends) {
                    Ok((name, ot)) => match ctx.secret_sources.map(|s| ot.check_sources(s)) {
                        Some(Err(refusal)) => inactive.push(left_out(format!(
                            "{refusal}; the proxy would refuse it, so it is not sent"
                        ))),
                        _ => backends.push(DpBackend {
                            kind: BackendType::OpenTelemetry,
                            name,
                            open_telemetry: Some(ot),
                        }),
                    },
                    Err(reason) => inactive.push(left_out(reason)),
                },
                _ => {} // refused by validation
            }
        }
        let applications = if dp.is_zone_proxy_only() {
            Vec::new() // Kuma: a zone proxy has no workload beside it
        } else {
            c.applications
                .iter()
                .flatten()
                .filter_map(|a| {
                    Some(DpApplication {
                        name: a.name.clone(),
                        path: a.path_or_default().to_string(),
                        port: a.port?,
                        address: a.address.clone().unwrap_or_default(),
                        relabel: a.relabel.clone().unwrap_or_default(),
                    })
                })
                .collect()
        };
        let config = DpConfig {
            observability: Observability {
                metrics: MetricsConfig {
                    applications,
                    backends,
                    sidecar: c.sidecar.clone(),
                    extra_labels: extra_labels(dp, ctx.gateway, ctx.naming),
                    relabel: c.relabel.clone().unwrap_or_default(),
                    otlp_receiver: if dp.is_zone_proxy_only() {
                        None
                    } else {
                        c.otlp_receiver.as_ref().and_then(|r| r.ports()).and_then(|(g, h)| {
                            Some(DpOtlpReceiver {
                                grpc_port: Port::new(g)?,
                                http_port: Port::new(h)?,
                            })
                        })
                    },
                },
            },
        };
        Self {
            conf,
            contributions,
            config,
            prometheus,
            inactive,
        }
    }
}

/// Ports of `dp` a metrics listener must not take: inbound, zone listener and admin ports and,
/// for a builtin gateway, its MeshGateway's listener ports.
pub fn taken_ports(dp: &Dataplane, gateway: Option<&MeshGateway>) -> Vec<(Port, String)> {
    let mut taken = dp.taken_ports();
    if let Some(gw) = gateway {
        for (i, l) in gw.spec.conf.listeners.iter().enumerate() {
            if let Some(p) = l.port {
                taken.push((p, format!("listener {i} of MeshGateway {:?}", gw.meta.name)));
            }
        }
    }
    taken
}

/// The MeshOpenTelemetryBackend a `backendRef` names: by name (or display name), or by labels
/// with Kuma's tie-break (the oldest matching backend, then the smaller name).
pub fn resolve_backend_ref<'a>(
    r: &BackendRef,
    mesh: &str,
    backends: &'a [MeshOpenTelemetryBackend],
) -> Option<&'a MeshOpenTelemetryBackend> {
    let in_mesh = backends.iter().filter(|b| b.meta.mesh == mesh);
    if let Some(name) = r.name.as_deref().filter(|n| !n.is_empty()) {
        return in_mesh
            .filter(|b| b.meta.name == name || b.meta.display_name() == name)
            .min_by(|a, b| {
                (a.meta.name != name)
                    .cmp(&(b.meta.name != name))
                    .then(a.meta.name.cmp(&b.meta.name))
            });
    }
    let labels = r.labels.as_ref().filter(|l| !l.is_empty())?;
    in_mesh.filter(|b| b.has_labels(labels)).min_by(|a, b| {
        // a backend without a creation time sorts last
        let age = |m: &MeshOpenTelemetryBackend| (m.meta.creation_time.is_none(), m.meta.creation_time.clone());
        age(a).cmp(&age(b)).then_with(|| a.meta.name.cmp(&b.meta.name))
    })
}

/// Resolves one OpenTelemetry backend for `dp`: `(name, settings)`, or why it is left out.
fn resolve_otel(
    o: &OpenTelemetryBackend,
    dp: &Dataplane,
    backends: &[MeshOpenTelemetryBackend],
) -> Result<(String, DpOpenTelemetry), String> {
    let refresh_interval = match &o.refresh_interval {
        Some(d) if d.get() < MIN_REFRESH_INTERVAL => Duration::from_secs(MIN_REFRESH_INTERVAL.as_secs()),
        Some(d) => d.clone(),
        None => Duration::from_secs(DEFAULT_REFRESH_INTERVAL_SECS),
    };
    let headers = |h: &Option<Vec<_>>| h.clone();
    if let Some(r) = &o.backend_ref {
        let Some(b) = resolve_backend_ref(r, &dp.meta.mesh, backends) else {
            let what = match (&r.name, &r.labels) {
                (Some(n), _) => format!("named {n:?}"),
                (None, Some(l)) => format!("with labels {}", serde_json::to_string(l).unwrap_or_default()),
                (None, None) => String::new(),
            };
            return Err(format!(
                "backendRef: no MeshOpenTelemetryBackend {what} in mesh {:?}; the backend is inactive until one exists",
                dp.meta.mesh
            ));
        };
        let s = &b.spec;
        let ep = s.endpoint.clone().unwrap_or_default();
        let port = ep.port.unwrap_or(DEFAULT_OTLP_PORT);
        let address = ep.address.unwrap_or_default();
        let host = if address.contains(':') {
            format!("[{address}]")
        } else {
            address
        };
        let protocol = o.protocol.or(s.protocol);
        let mut tls = o.tls.clone().or_else(|| s.tls.clone());
        if tls.is_none() && protocol == Some(OtlpProtocol::Http) && port.get() == 443 {
            tls = Some(OtlpTls::default()); // Kuma: HTTP on port 443 is HTTPS
        }
        return Ok((
            b.meta.display_name().to_string(),
            DpOpenTelemetry {
                endpoint: format!("{host}:{port}"),
                refresh_interval,
                protocol,
                path: ep
                    .path
                    .filter(|p| !p.is_empty() && protocol == Some(OtlpProtocol::Http)),
                timeout: o.timeout.clone().or_else(|| s.timeout.clone()),
                compression: o.compression.or(s.compression),
                temporality: o.temporality.or(s.temporality),
                queue_size: o.queue_size.or(s.queue_size),
                headers: headers(&o.headers).or_else(|| headers(&s.headers)).unwrap_or_default(),
                tls,
                env: EnvPolicy::resolve(s.env.as_ref()),
            },
        ));
    }
    let endpoint = o.endpoint.clone().unwrap_or_default();
    Ok((
        endpoint.clone(),
        DpOpenTelemetry {
            endpoint,
            refresh_interval,
            protocol: o.protocol,
            path: None,
            timeout: o.timeout.clone(),
            compression: o.compression,
            temporality: o.temporality,
            queue_size: o.queue_size,
            headers: o.headers.clone().unwrap_or_default(),
            tls: o.tls.clone(),
            env: ResolvedEnvPolicy::INLINE,
        },
    ))
}

/// Kuma's label name sanitising (`[^a-zA-Z0-9_]` → `_`).
pub fn sanitize_label(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// `extraLabels` of `dp`, as Kuma 2.14 computes them (`createDynamicConfig` and
/// `mads.DataplaneLabels`).
pub fn extra_labels(dp: &Dataplane, gateway: Option<&MeshGateway>, naming: Naming) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("mesh".to_string(), dp.meta.mesh.clone());
    if let Some(z) = dp.meta.labels.get(ZONE_LABEL).filter(|z| !z.is_empty()) {
        l.insert("zone".to_string(), z.clone());
    }
    l.insert("kuma.proxy_role".to_string(), dp.proxy_role().as_str().to_string());
    if !dp.is_zone_proxy_only()
        && let Some(w) = dp.workload().filter(|w| !w.is_empty())
    {
        l.insert("kuma.workload".to_string(), w.to_string());
    }
    if naming == Naming::Unified {
        return l;
    }
    for (key, values) in dp.tag_set() {
        let first = values.first().copied().unwrap_or_default();
        l.insert(sanitize_label(key), first.to_string());
        let joined: Vec<&str> = values.iter().copied().collect();
        l.insert(sanitize_label(&format!("{key}s")), format!(",{},", joined.join(",")));
    }
    if dp.is_builtin_gateway() {
        l.insert(
            "kuma_io_mesh_gateway".to_string(),
            gateway.map(|g| g.meta.name.clone()).unwrap_or_default(),
        );
    }
    l.insert("dataplane".to_string(), dp.meta.name.clone());
    if !l.contains_key("kuma.workload") {
        let service = dp.identifying_service();
        if service != crate::dataplane::SERVICE_UNKNOWN {
            l.insert("service".to_string(), service.to_string());
        }
    }
    l
}
