//! Prometheus configuration rendered from the policies: for every Prometheus backend (grouped
//! by `clientId`), a `scrape_configs` entry using this control plane's discovery, Prometheus
//! Operator resources, or `prometheus.io/*` annotations. Pure: the caller gives the policies
//! and the options, and writes the documents out.
//!
//! - `scrape-config`: one `scrape_configs` entry per client, with `http_sd_configs` on the
//!   control plane's HTTP SD (or `kuma_sd_configs` with `kuma_sd`), `honor_labels: true` (the
//!   series already carry the proxy's labels) and the relabeling that keeps the MADS labels
//!   (`mesh`, `service`, `dataplane`); `tls_config` when the client's backends use
//!   `ProvidedTLS` (HTTP SD sets each target's scheme).
//! - `operator`: per client a `ScrapeConfig` (`monitoring.coreos.com/v1alpha1`) with
//!   `httpSDConfigs` on the control plane, and per backend a `PodMonitor` (or `ServiceMonitor`)
//!   selecting the workloads the policy's top-level `targetRef` selects, on the backend's port
//!   and path. Either is enough: the `ScrapeConfig` follows the control plane (every proxy,
//!   through discovery), the monitors follow Kubernetes labels.
//! - `annotations`: the `prometheus.io/scrape|port|path|scheme` annotations of the selected
//!   workloads (the community convention takes one port per pod).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::meshmetric::{BackendType, MeshMetric, TlsMode};
use crate::targetref::TargetRefKind;

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFormat {
    /// Prometheus `scrape_configs` entries.
    ScrapeConfig,
    /// Prometheus Operator resources.
    Operator,
    /// `prometheus.io/*` annotations.
    Annotations,
}

impl RenderFormat {
    /// Parses `scrape-config`, `operator` or `annotations`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scrape-config" => Some(Self::ScrapeConfig),
            "operator" => Some(Self::Operator),
            "annotations" => Some(Self::Annotations),
            _ => None,
        }
    }
}

/// Which Operator monitor selects the workloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MonitorType {
    /// `PodMonitor`.
    #[default]
    Pod,
    /// `ServiceMonitor`.
    Service,
}

/// Options of [`render`].
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Base URL of the control plane's MADS/HTTP SD server, e.g. `http://meshmetric-cp:5676`.
    pub discovery_url: String,
    /// Use `kuma_sd_configs` (Prometheus ≥ 2.50) instead of `http_sd_configs`.
    pub kuma_sd: bool,
    /// Scrape interval (Prometheus duration), when set.
    pub interval: Option<String>,
    /// Scrape timeout, when set.
    pub timeout: Option<String>,
    /// Namespace of the Operator resources.
    pub namespace: Option<String>,
    /// Labels of the Operator resources (e.g. the `release` a Prometheus selects).
    pub labels: BTreeMap<String, String>,
    /// PEM CA file Prometheus uses to verify `ProvidedTLS` targets (`scrape-config`).
    pub ca_file: Option<String>,
    /// Pod or Service monitors (`operator`).
    pub monitor_type: MonitorType,
}

/// What [`render`] produced: documents to write (YAML or JSON) and notes for the operator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The documents.
    pub documents: Vec<Value>,
    /// What each output needs on the Prometheus side, and what could not be expressed.
    pub notes: Vec<String>,
}

/// One Prometheus backend of one policy.
struct Backend<'a> {
    policy: &'a MeshMetric,
    port: u16,
    path: String,
    tls: bool,
}

/// The clientId's name in resource names: the id, or `default`.
fn client_name(id: &str) -> String {
    if id.is_empty() {
        "default".into()
    } else {
        id.to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}

/// Renders the Prometheus backends of `policies` as `format` asks.
pub fn render(policies: &[MeshMetric], format: RenderFormat, opts: &RenderOptions) -> Rendered {
    let mut clients: BTreeMap<String, Vec<Backend<'_>>> = BTreeMap::new();
    for p in policies.iter().filter(|p| !p.meta.is_shadow()) {
        for b in p.spec.default.backends.iter().flatten() {
            let (Some(BackendType::Prometheus), Some(pb)) = (b.kind, &b.prometheus) else {
                continue;
            };
            clients
                .entry(pb.client_id.clone().unwrap_or_default())
                .or_default()
                .push(Backend {
                    policy: p,
                    port: pb.port_or_default().get(),
                    path: pb.path_or_default().to_string(),
                    tls: pb.tls_mode() == TlsMode::ProvidedTls,
                });
        }
    }
    let mut out = Rendered::default();
    if clients.is_empty() {
        out.notes
            .push("the policies have no Prometheus backend: nothing to render".into());
        return out;
    }
    match format {
        RenderFormat::ScrapeConfig => scrape_configs(&clients, opts, &mut out),
        RenderFormat::Operator => operator(&clients, opts, &mut out),
        RenderFormat::Annotations => annotations(&clients, &mut out),
    }
    out
}

fn sd_url(opts: &RenderOptions, client: &str) -> String {
    let base = opts.discovery_url.trim_end_matches('/');
    if client.is_empty() {
        format!("{base}/v1/http-sd")
    } else {
        format!("{base}/v1/http-sd?client_id={client}")
    }
}

/// The relabeling that turns the discovery's meta labels into the labels users expect.
fn relabel_configs(snake: bool) -> Value {
    let (src, tgt) = if snake {
        ("source_labels", "target_label")
    } else {
        ("sourceLabels", "targetLabel")
    };
    json!([
        {src: ["__meta_kuma_mesh"], tgt: "mesh"},
        {src: ["__meta_kuma_service"], tgt: "service"},
        {src: ["__meta_kuma_dataplane"], tgt: "dataplane"},
    ])
}

fn scrape_configs(clients: &BTreeMap<String, Vec<Backend<'_>>>, opts: &RenderOptions, out: &mut Rendered) {
    let mut jobs = Vec::new();
    for (id, backends) in clients {
        let mut job = json!({
            "job_name": format!("meshmetric-{}", client_name(id)),
            "honor_labels": true,
            "relabel_configs": relabel_configs(true),
        });
        if opts.kuma_sd {
            let mut sd = json!({"server": opts.discovery_url.trim_end_matches('/'), "refresh_interval": "30s", "fetch_timeout": "2m"});
            if !id.is_empty() {
                sd["client_id"] = json!(id);
            }
            job["kuma_sd_configs"] = json!([sd]);
        } else {
            job["http_sd_configs"] = json!([{"url": sd_url(opts, id), "refresh_interval": "30s"}]);
        }
        if let Some(i) = &opts.interval {
            job["scrape_interval"] = json!(i);
        }
        if let Some(t) = &opts.timeout {
            job["scrape_timeout"] = json!(t);
        }
        if backends.iter().any(|b| b.tls) {
            match &opts.ca_file {
                Some(ca) => job["tls_config"] = json!({"ca_file": ca}),
                None => out.notes.push(format!(
                    "client {:?}: its backends use ProvidedTLS; give --ca-file so Prometheus can verify the proxies' certificates",
                    client_name(id)
                )),
            }
        }
        jobs.push(job);
    }
    out.documents.push(json!({"scrape_configs": jobs}));
    out.notes.push(format!(
        "add the {} job(s) under scrape_configs of prometheus.yml; Prometheus must reach {} ({}) and the proxies' metrics ports",
        clients.len(),
        opts.discovery_url,
        if opts.kuma_sd {
            "kuma_sd_configs needs Prometheus 2.50 or later for client_id"
        } else {
            "HTTP SD works with any Prometheus, vmagent or Alloy"
        }
    ));
}

fn metadata(name: String, opts: &RenderOptions) -> Value {
    let mut m = json!({"name": name});
    if let Some(ns) = &opts.namespace {
        m["namespace"] = json!(ns);
    }
    if !opts.labels.is_empty() {
        m["labels"] = json!(opts.labels);
    }
    m
}

/// The Kubernetes label selector of a policy's top-level targetRef, or why none fits.
fn selector(p: &MeshMetric) -> Result<Value, String> {
    let Some(tr) = &p.spec.target_ref else {
        return Ok(json!({}));
    };
    match tr.kind {
        Some(TargetRefKind::Mesh) | None => Ok(json!({})),
        Some(TargetRefKind::Dataplane) if tr.labels.as_ref().is_some_and(|l| !l.is_empty()) => {
            Ok(json!({"matchLabels": tr.labels}))
        }
        Some(TargetRefKind::MeshSubset) if tr.tags.as_ref().is_some_and(|t| !t.is_empty()) => {
            Ok(json!({"matchLabels": tr.tags}))
        }
        Some(k) => Err(format!(
            "{k:?} targetRef of policy {:?} has no Kubernetes label selector; the monitor selects every pod (or use the ScrapeConfig, which follows the control plane)",
            p.meta.name
        )),
    }
}

fn operator(clients: &BTreeMap<String, Vec<Backend<'_>>>, opts: &RenderOptions, out: &mut Rendered) {
    for (id, backends) in clients {
        let mut spec = json!({
            "honorLabels": true,
            "httpSDConfigs": [{"url": sd_url(opts, id), "refreshInterval": "30s"}],
            "relabelings": relabel_configs(false),
        });
        if let Some(i) = &opts.interval {
            spec["scrapeInterval"] = json!(i);
        }
        if let Some(t) = &opts.timeout {
            spec["scrapeTimeout"] = json!(t);
        }
        if backends.iter().any(|b| b.tls) {
            out.notes.push(format!(
                "client {:?} uses ProvidedTLS: add spec.tlsConfig.ca (a Secret or ConfigMap with the CA of the proxies' certificates) to ScrapeConfig meshmetric-{}",
                client_name(id),
                client_name(id)
            ));
        }
        out.documents.push(json!({
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": metadata(format!("meshmetric-{}", client_name(id)), opts),
            "spec": spec,
        }));
        for b in backends {
            let sel = selector(b.policy).unwrap_or_else(|note| {
                out.notes.push(note);
                json!({})
            });
            let mut endpoint = json!({
                "path": b.path,
                "scheme": if b.tls { "https" } else { "http" },
                "honorLabels": true,
            });
            if let Some(i) = &opts.interval {
                endpoint["interval"] = json!(i);
            }
            if let Some(t) = &opts.timeout {
                endpoint["scrapeTimeout"] = json!(t);
            }
            let name = format!("meshmetric-{}-{}", b.policy.meta.name, b.port);
            let doc = match opts.monitor_type {
                MonitorType::Pod => {
                    endpoint["portNumber"] = json!(b.port);
                    json!({
                        "apiVersion": "monitoring.coreos.com/v1",
                        "kind": "PodMonitor",
                        "metadata": metadata(name, opts),
                        "spec": {"selector": sel, "namespaceSelector": {"any": true}, "podMetricsEndpoints": [endpoint]},
                    })
                }
                MonitorType::Service => {
                    endpoint["targetPort"] = json!(b.port);
                    json!({
                        "apiVersion": "monitoring.coreos.com/v1",
                        "kind": "ServiceMonitor",
                        "metadata": metadata(name, opts),
                        "spec": {"selector": sel, "namespaceSelector": {"any": true}, "endpoints": [endpoint]},
                    })
                }
            };
            out.documents.push(doc);
        }
    }
    out.notes.push(
        "apply with kubectl; the Prometheus resource must select them (serviceMonitorSelector / podMonitorSelector / scrapeConfigSelector, e.g. by the labels given with --label). Use either the ScrapeConfig (discovery through the control plane) or the monitors (Kubernetes labels), not both, or every target is scraped twice"
            .into(),
    );
}

fn annotations(clients: &BTreeMap<String, Vec<Backend<'_>>>, out: &mut Rendered) {
    let mut per_policy: BTreeMap<&str, Vec<&Backend<'_>>> = BTreeMap::new();
    for b in clients.values().flatten() {
        per_policy.entry(b.policy.meta.name.as_str()).or_default().push(b);
    }
    for (policy, backends) in per_policy {
        let b = backends[0];
        if backends.len() > 1 {
            out.notes.push(format!(
                "policy {policy:?} has {} Prometheus backends; the annotations name one port per pod, {} is used",
                backends.len(),
                b.port
            ));
        }
        let sel = selector(b.policy).unwrap_or_else(|note| {
            out.notes.push(note);
            json!({})
        });
        out.documents.push(json!({
            "selector": sel,
            "metadata": {"annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": b.port.to_string(),
                "prometheus.io/path": b.path,
                "prometheus.io/scheme": if b.tls { "https" } else { "http" },
            }},
        }));
    }
    out.notes.push(
        "put the annotations on the pod template of the workloads each selector names; Prometheus needs a kubernetes_sd_configs job that honours prometheus.io/* (the community chart's kubernetes-pods job)"
            .into(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Resource, parse_documents};

    fn policies(yaml: &str) -> Vec<MeshMetric> {
        parse_documents(yaml)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Resource::MeshMetric(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    const TWO: &str = "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n---\ntype: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671, path: /m, tls: {mode: ProvidedTLS}}}]}}\n";

    #[test]
    fn one_job_per_client_with_discovery_and_tls() {
        let opts = RenderOptions {
            discovery_url: "http://cp:5676".into(),
            ca_file: Some("/etc/prometheus/ca.pem".into()),
            interval: Some("15s".into()),
            ..Default::default()
        };
        let r = render(&policies(TWO), RenderFormat::ScrapeConfig, &opts);
        let jobs = r.documents[0]["scrape_configs"].as_array().unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0]["job_name"], "meshmetric-default");
        assert_eq!(jobs[0]["http_sd_configs"][0]["url"], "http://cp:5676/v1/http-sd");
        assert_eq!(
            jobs[1]["http_sd_configs"][0]["url"],
            "http://cp:5676/v1/http-sd?client_id=ops"
        );
        assert_eq!(jobs[1]["tls_config"]["ca_file"], "/etc/prometheus/ca.pem");
        assert_eq!(jobs[0]["scrape_interval"], "15s");
        assert!(jobs[0].get("tls_config").is_none());
    }

    #[test]
    fn operator_resources_and_annotations() {
        let opts = RenderOptions {
            discovery_url: "http://cp:5676".into(),
            namespace: Some("monitoring".into()),
            ..Default::default()
        };
        let r = render(&policies(TWO), RenderFormat::Operator, &opts);
        let kinds: Vec<&str> = r.documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ScrapeConfig", "PodMonitor", "ScrapeConfig", "PodMonitor"]);
        assert_eq!(r.documents[3]["spec"]["selector"]["matchLabels"]["team"], "b");
        assert_eq!(r.documents[3]["spec"]["podMetricsEndpoints"][0]["scheme"], "https");
        assert!(r.notes.iter().any(|n| n.contains("ProvidedTLS")));
        let r = render(&policies(TWO), RenderFormat::Annotations, &opts);
        assert_eq!(r.documents.len(), 2);
        assert_eq!(r.documents[1]["metadata"]["annotations"]["prometheus.io/port"], "5671");
    }
}
