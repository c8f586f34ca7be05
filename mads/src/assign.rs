//! MonitoringAssignment generation (Kuma's `kuma.observability.v1` MADS, what Prometheus's
//! `kuma_sd_configs` reads; see `docs/prometheus.md`).
//!
//! One assignment per (proxy, Prometheus backend): `mesh`, `service` (the workload:
//! `kuma.io/workload`, else the first inbound's `kuma.io/service`, else `unknown`) and one
//! target `{name: dataplane name, scheme, address: <address>:<port>, metrics_path, labels}`.
//! Target labels are the Dataplane's labels plus `mesh`, `service` and `zone`, names sanitised
//! to `[a-zA-Z0-9_]` (Prometheus turns them into `__meta_kuma_label_<name>`).
//!
//! A backend with a `clientId` goes to that client; one without goes to the default client
//! (Kuma's `_kuma-default-client` rule), and so does every unknown client id.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use meshmetric_policies::dataplane::{Dataplane, SERVICE_TAG};
use meshmetric_policies::meshmetric::BackendType;
use meshmetric_policies::meta::{WORKLOAD_LABEL, ZONE_LABEL};
use meshmetric_policies::proxy::ProxyMetrics;
use meshmetric_proto::MONITORING_ASSIGNMENT_TYPE_URL;
use meshmetric_proto::observability::v1::{MonitoringAssignment, monitoring_assignment::Target};

/// Key of the default client (backends without `clientId`, unknown client ids).
pub const DEFAULT_CLIENT: &str = "";

/// What assignment generation needs to know about one proxy: its Dataplane and derived
/// metrics state, whose Prometheus listeners become the targets (a backend left out of the
/// proxy, e.g. `ProvidedTLS` without a certificate or a port clash, has no target).
#[derive(Debug, Clone, Copy)]
pub struct ProxyInput<'a> {
    /// The Dataplane.
    pub dataplane: &'a Dataplane,
    /// Its derived metrics state.
    pub metrics: &'a ProxyMetrics,
}

/// One client's assignments and their encodings, built once per change.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// Content version: changes exactly when this client's assignments change.
    pub version: String,
    pub assignments: Arc<Vec<MonitoringAssignment>>,
    /// The protobuf-JSON `DiscoveryResponse` (proto field names), nonce = version.
    pub json: Bytes,
    /// The Prometheus HTTP SD document.
    pub http_sd: Bytes,
}

/// Every client's view. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    clients: HashMap<String, ClientView>,
}

/// Sanitises a label name to `[a-zA-Z0-9_]` (leading digit prefixed with `_`).
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The service of a Dataplane: its workload, else its first inbound's service, else `unknown`.
pub fn service_of(dp: &Dataplane) -> String {
    dp.meta
        .labels
        .get(WORKLOAD_LABEL)
        .cloned()
        .or_else(|| {
            dp.networking()
                .inbound
                .iter()
                .find_map(|i| i.tags.get(SERVICE_TAG).cloned())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn target_labels(dp: &Dataplane, service: &str) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = dp.meta.labels.iter().map(|(k, v)| (sanitize(k), v.clone())).collect();
    l.insert("mesh".into(), dp.meta.mesh.clone());
    l.insert("service".into(), service.to_string());
    if let Some(z) = dp.meta.labels.get(ZONE_LABEL) {
        l.insert("zone".into(), z.clone());
    }
    l
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<&String, &String> {
    m.iter().collect()
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn json_labels<'a>(out: &mut Vec<u8>, labels: impl Iterator<Item = (&'a String, &'a String)>) {
    out.push(b'{');
    for (i, (k, v)) in labels.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k);
        out.push(b':');
        json_str(out, v);
    }
    out.push(b'}');
}

/// Appends one MonitoringAssignment as protobuf-JSON (proto field names, `@type` first).
fn assignment_json(out: &mut Vec<u8>, a: &MonitoringAssignment) {
    out.extend_from_slice(b"{\"@type\":");
    json_str(out, MONITORING_ASSIGNMENT_TYPE_URL);
    out.extend_from_slice(b",\"mesh\":");
    json_str(out, &a.mesh);
    out.extend_from_slice(b",\"service\":");
    json_str(out, &a.service);
    out.extend_from_slice(b",\"targets\":[");
    for (i, t) in a.targets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json_str(out, &t.name);
        out.extend_from_slice(b",\"scheme\":");
        json_str(out, &t.scheme);
        out.extend_from_slice(b",\"address\":");
        json_str(out, &t.address);
        out.extend_from_slice(b",\"metrics_path\":");
        json_str(out, &t.metrics_path);
        out.extend_from_slice(b",\"labels\":");
        json_labels(out, sorted(&t.labels).into_iter());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"labels\":");
    json_labels(out, sorted(&a.labels).into_iter());
    out.push(b'}');
}

/// Appends the HTTP SD target groups of `assignments` (one group per target).
fn http_sd_json(out: &mut Vec<u8>, assignments: &[MonitoringAssignment]) {
    out.push(b'[');
    let mut first = true;
    for a in assignments {
        for t in &a.targets {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"targets\":[");
            json_str(out, &t.address);
            out.extend_from_slice(b"],\"labels\":");
            let mut labels: BTreeMap<String, &String> = BTreeMap::new();
            for (k, v) in a.labels.iter().chain(t.labels.iter()) {
                labels.insert(format!("__meta_kuma_label_{}", sanitize(k)), v);
            }
            labels.insert("__meta_kuma_mesh".into(), &a.mesh);
            labels.insert("__meta_kuma_service".into(), &a.service);
            labels.insert("__meta_kuma_dataplane".into(), &t.name);
            labels.insert("__scheme__".into(), &t.scheme);
            labels.insert("__metrics_path__".into(), &t.metrics_path);
            labels.insert("instance".into(), &t.name);
            out.push(b'{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, k);
                out.push(b':');
                json_str(out, v);
            }
            out.extend_from_slice(b"}}");
        }
    }
    out.push(b']');
}

/// Sorts a client's assignments into their published order (mesh, service, target).
fn sort_assignments(assignments: &mut [MonitoringAssignment]) {
    assignments.sort_by(|a, b| {
        (&a.mesh, &a.service, a.targets.first().map(|t| (&t.name, &t.address))).cmp(&(
            &b.mesh,
            &b.service,
            b.targets.first().map(|t| (&t.name, &t.address)),
        ))
    });
}

impl ClientView {
    /// Encodes sorted assignments.
    fn build(assignments: Vec<MonitoringAssignment>) -> Self {
        // the resources are written once; their bytes (sorted labels, sorted assignments)
        // are the content the version is derived from
        let mut resources = Vec::with_capacity(assignments.len() * 256);
        for (i, a) in assignments.iter().enumerate() {
            if i > 0 {
                resources.push(b',');
            }
            assignment_json(&mut resources, a);
        }
        let mut h = std::hash::DefaultHasher::new();
        resources.hash(&mut h);
        let version = format!("{:016x}", h.finish());
        let mut json = Vec::with_capacity(resources.len() + 256);
        json.extend_from_slice(b"{\"version_info\":");
        json_str(&mut json, &version);
        json.extend_from_slice(b",\"resources\":[");
        json.extend_from_slice(&resources);
        json.extend_from_slice(b"],\"type_url\":");
        json_str(&mut json, MONITORING_ASSIGNMENT_TYPE_URL);
        json.extend_from_slice(b",\"nonce\":");
        json_str(&mut json, &version);
        json.push(b'}');
        let mut http_sd = Vec::with_capacity(resources.len());
        http_sd_json(&mut http_sd, &assignments);
        Self {
            version,
            assignments: Arc::new(assignments),
            json: Bytes::from(json),
            http_sd: Bytes::from(http_sd),
        }
    }

    /// The binary protobuf `DiscoveryResponse`.
    pub fn protobuf(&self) -> Vec<u8> {
        self.discovery_response().encode_to_vec()
    }

    /// The `DiscoveryResponse` message (gRPC and binary HTTP).
    pub fn discovery_response(&self) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
        envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
            version_info: self.version.clone(),
            resources: self
                .assignments
                .iter()
                .map(|a| envoy_types::pb::google::protobuf::Any {
                    type_url: MONITORING_ASSIGNMENT_TYPE_URL.to_string(),
                    value: a.encode_to_vec(),
                })
                .collect(),
            type_url: MONITORING_ASSIGNMENT_TYPE_URL.to_string(),
            nonce: self.version.clone(),
            ..Default::default()
        }
    }
}

impl Assignments {
    /// Generates every client's assignments from the proxies.
    pub fn generate<'a>(proxies: impl IntoIterator<Item = ProxyInput<'a>>) -> Self {
        Self::generate_reusing(None, proxies)
    }

    /// [`Assignments::generate`], reusing `previous`'s encoded view of every client whose
    /// assignments did not change: after a change only the clients it touched are encoded
    /// again (their JSON, HTTP SD document and version), the others keep theirs.
    pub fn generate_reusing<'a>(
        previous: Option<&Assignments>,
        proxies: impl IntoIterator<Item = ProxyInput<'a>>,
    ) -> Self {
        let mut by_client: HashMap<String, Vec<MonitoringAssignment>> = HashMap::new();
        by_client.insert(DEFAULT_CLIENT.to_string(), Vec::new());
        for p in proxies {
            let dp = p.dataplane;
            // a client whose only backend is left out of a proxy gets no target, not the
            // default client's
            for b in p.metrics.conf.iter().flat_map(|c| c.backends.iter().flatten()) {
                if let (Some(BackendType::Prometheus), Some(prom)) = (b.kind, &b.prometheus) {
                    by_client.entry(prom.client_id.clone().unwrap_or_default()).or_default();
                }
            }
            if p.metrics.prometheus.is_empty() {
                continue;
            }
            let service = service_of(dp);
            let address = &dp.networking().address;
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.clone()
            };
            for l in &p.metrics.prometheus {
                let target = Target {
                    name: dp.meta.name.clone(),
                    scheme: if l.tls { "https" } else { "http" }.to_string(),
                    address: format!("{host}:{}", l.port),
                    metrics_path: l.path.clone(),
                    labels: target_labels(dp, &service),
                };
                let client = l.client_id.clone().unwrap_or_default();
                by_client.entry(client).or_default().push(MonitoringAssignment {
                    mesh: dp.meta.mesh.clone(),
                    service: service.clone(),
                    targets: vec![target],
                    labels: HashMap::new(),
                });
            }
        }
        let clients = by_client
            .into_iter()
            .map(|(k, mut v)| {
                sort_assignments(&mut v);
                let view = match previous.and_then(|p| p.clients.get(&k)) {
                    Some(old) if *old.assignments == v => old.clone(),
                    _ => ClientView::build(v),
                };
                (k, view)
            })
            .collect();
        Self { clients }
    }

    /// The view of `client_id`: its own when some backend names it, else the default client's.
    pub fn for_client(&self, client_id: &str) -> &ClientView {
        self.clients
            .get(client_id)
            .unwrap_or_else(|| &self.clients[DEFAULT_CLIENT])
    }

    /// Client ids that have assignments of their own (the default client is `""`).
    pub fn clients(&self) -> impl Iterator<Item = &str> {
        self.clients.keys().map(String::as_str)
    }
}

impl Default for ClientView {
    fn default() -> Self {
        ClientView::build(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmetric_policies::{MeshMetric, ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents};
    use serde_json::Value;

    fn mk(yaml: &str) -> (Vec<Dataplane>, Vec<MeshMetric>) {
        let mut d = Vec::new();
        let mut p = Vec::new();
        for r in parse_documents(yaml).unwrap() {
            match r {
                Resource::Dataplane(x) => d.push(x),
                Resource::MeshMetric(m) => p.push(m),
                _ => {}
            }
        }
        (d, p)
    }

    fn gen_from(yaml: &str, tls_ready: bool) -> Assignments {
        let (dps, ps) = mk(yaml);
        let ctx = ProxyContext {
            tls_ready,
            ..Default::default()
        };
        let metrics: Vec<_> = dps
            .iter()
            .map(|d| ProxyMetrics::build(d, effective_conf(&ps, d, None), ctx))
            .collect();
        Assignments::generate(dps.iter().zip(&metrics).map(|(d, m)| ProxyInput {
            dataplane: d,
            metrics: m,
        }))
    }

    #[test]
    fn unchanged_clients_keep_their_encoded_views() {
        let yaml = format!(
            "{DPS}---\ntype: MeshMetric\nname: all\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n---\ntype: MeshMetric\nname: b\nspec: {{targetRef: {{kind: Dataplane, labels: {{team: b}}}}, default: {{backends: [{{type: Prometheus, prometheus: {{clientId: ops, port: 5671}}}}]}}}}\n"
        );
        let (dps, ps) = mk(&yaml);
        let build = |dps: &[Dataplane]| -> Vec<ProxyMetrics> {
            dps.iter()
                .map(|d| ProxyMetrics::build(d, effective_conf(&ps, d, None), ProxyContext::default()))
                .collect()
        };
        let m = build(&dps);
        let input = |dps: &'_ [Dataplane], m: &'_ [ProxyMetrics]| -> Vec<(Dataplane, ProxyMetrics)> {
            dps.iter().cloned().zip(m.iter().cloned()).collect()
        };
        let first = input(&dps, &m);
        let a = Assignments::generate(first.iter().map(|(d, m)| ProxyInput {
            dataplane: d,
            metrics: m,
        }));
        // web-01 (default client) moves address: only the default client is encoded again
        let mut moved = dps.clone();
        let yaml2 = yaml.replace("10.0.0.1", "10.0.0.9");
        moved[0] = mk(&yaml2).0.remove(0);
        let m2 = build(&moved);
        let second = input(&moved, &m2);
        let b = Assignments::generate_reusing(
            Some(&a),
            second.iter().map(|(d, m)| ProxyInput {
                dataplane: d,
                metrics: m,
            }),
        );
        assert!(
            b.for_client("ops").json.as_ptr() == a.for_client("ops").json.as_ptr(),
            "ops reused"
        );
        assert_ne!(b.for_client("").version, a.for_client("").version);
        assert_eq!(targets(b.for_client("")), ["web-01@10.0.0.9:5670/metrics"]);
        // and what is reused is what a fresh generation gives
        let fresh = Assignments::generate(second.iter().map(|(d, m)| ProxyInput {
            dataplane: d,
            metrics: m,
        }));
        for c in ["", "ops"] {
            assert_eq!(b.for_client(c).json, fresh.for_client(c).json);
            assert_eq!(b.for_client(c).http_sd, fresh.for_client(c).http_sd);
        }
    }

    const DPS: &str = "type: Dataplane\nname: web-01\nlabels: {kuma.io/workload: web, kuma.io/zone: z1, team: a}\nnetworking: {address: 10.0.0.1, inbound: [{port: 1, tags: {kuma.io/service: web-svc}}]}\n---\ntype: Dataplane\nname: api-01\nlabels: {team: b}\nnetworking: {address: 10.0.0.2, inbound: [{port: 1, tags: {kuma.io/service: api}}]}\n";

    fn targets(v: &ClientView) -> Vec<String> {
        v.assignments
            .iter()
            .flat_map(|a| {
                a.targets
                    .iter()
                    .map(|t| format!("{}@{}{}", t.name, t.address, t.metrics_path))
            })
            .collect()
    }

    #[test]
    fn client_ids_and_default_client() {
        let a = gen_from(
            &format!(
                "{DPS}---\ntype: MeshMetric\nname: all\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n---\ntype: MeshMetric\nname: b\nspec: {{targetRef: {{kind: Dataplane, labels: {{team: b}}}}, default: {{backends: [{{type: Prometheus, prometheus: {{clientId: ops, port: 5671, path: /m}}}}, {{type: Prometheus, prometheus: {{clientId: sec, port: 5672}}}}]}}}}\n"
            ),
            false,
        );
        assert_eq!(targets(a.for_client("")), ["web-01@10.0.0.1:5670/metrics"]);
        assert_eq!(targets(a.for_client("ops")), ["api-01@10.0.0.2:5671/m"]);
        assert_eq!(targets(a.for_client("sec")), ["api-01@10.0.0.2:5672/metrics"]);
        // an unknown client gets the default client's assignments
        assert_eq!(targets(a.for_client("prometheus-7")), targets(a.for_client("")));
        let web = &a.for_client("").assignments[0];
        assert_eq!((web.mesh.as_str(), web.service.as_str()), ("default", "web"));
        let l = &web.targets[0].labels;
        assert_eq!(l["kuma_io_workload"], "web");
        assert_eq!(l["zone"], "z1");
        assert_eq!(l["service"], "web");
        assert_eq!(
            a.for_client("ops").assignments[0].service,
            "api",
            "falls back to the inbound's service"
        );
    }

    #[test]
    fn versions_change_only_with_the_clients_assignments() {
        let base = format!(
            "{DPS}---\ntype: MeshMetric\nname: all\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n"
        );
        let a = gen_from(&base, false);
        let b = gen_from(
            &format!(
                "{base}---\ntype: MeshMetric\nname: b\nspec: {{targetRef: {{kind: Dataplane, labels: {{team: b}}}}, default: {{backends: [{{type: Prometheus, prometheus: {{clientId: ops, port: 5671}}}}]}}}}\n"
            ),
            false,
        );
        // api-01 moved from the default client to ops: both versions change
        assert_ne!(a.for_client("").version, b.for_client("").version);
        assert_eq!(targets(b.for_client("ops")), ["api-01@10.0.0.2:5671/metrics"]);
        // regenerating the same input gives the same versions
        assert_eq!(b.for_client("ops").version, gen_from(&format!("{base}---\ntype: MeshMetric\nname: b\nspec: {{targetRef: {{kind: Dataplane, labels: {{team: b}}}}, default: {{backends: [{{type: Prometheus, prometheus: {{clientId: ops, port: 5671}}}}]}}}}\n"), false).for_client("ops").version);
        // removing the policy removes the assignments
        let (dps, _) = mk(DPS);
        let metrics: Vec<_> = dps
            .iter()
            .map(|d| ProxyMetrics::build(d, None, ProxyContext::default()))
            .collect();
        let none = Assignments::generate(dps.iter().zip(&metrics).map(|(d, m)| ProxyInput {
            dataplane: d,
            metrics: m,
        }));
        assert!(none.for_client("").assignments.is_empty());
    }

    #[test]
    fn provided_tls_needs_a_certificate_and_means_https() {
        let y = format!(
            "{DPS}---\ntype: MeshMetric\nname: t\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670, tls: {{mode: ProvidedTLS}}}}}}]}}}}\n"
        );
        assert!(gen_from(&y, false).for_client("").assignments.is_empty());
        // a client whose backend is left out gets nothing, not the default client's targets
        let y2 = format!(
            "{DPS}---\ntype: MeshMetric\nname: t\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}, {{type: Prometheus, prometheus: {{clientId: secure, port: 5671, tls: {{mode: ProvidedTLS}}}}}}]}}}}\n"
        );
        let a = gen_from(&y2, false);
        assert_eq!(targets(a.for_client("")).len(), 2);
        assert!(a.for_client("secure").assignments.is_empty());
        let a = gen_from(&y, true);
        assert!(
            a.for_client("")
                .assignments
                .iter()
                .all(|x| x.targets[0].scheme == "https")
        );
    }

    #[test]
    fn json_and_http_sd_shapes() {
        let a = gen_from(
            &format!(
                "{DPS}---\ntype: MeshMetric\nname: all\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n"
            ),
            false,
        );
        let v = a.for_client("");
        let j: Value = serde_json::from_slice(&v.json).unwrap();
        assert_eq!(j["type_url"], MONITORING_ASSIGNMENT_TYPE_URL);
        assert_eq!(j["version_info"], v.version);
        assert_eq!(j["resources"][0]["@type"], MONITORING_ASSIGNMENT_TYPE_URL);
        assert_eq!(j["resources"][0]["targets"][0]["metrics_path"], "/metrics");
        let sd: Value = serde_json::from_slice(&v.http_sd).unwrap();
        assert_eq!(sd[0]["targets"][0], "10.0.0.2:5670");
        assert_eq!(sd[1]["labels"]["__meta_kuma_label_team"], "a");
        assert_eq!(sd[1]["labels"]["__meta_kuma_dataplane"], "web-01");
        assert_eq!(sd[1]["labels"]["__scheme__"], "http");
        // protobuf round trip
        let resp =
            envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse::decode(v.protobuf().as_slice()).unwrap();
        let ma = MonitoringAssignment::decode(resp.resources[0].value.as_slice()).unwrap();
        assert_eq!(ma, v.assignments[0]);
    }
}
