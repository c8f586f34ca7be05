//! What a proxy gets: `extraLabels` as Kuma 2.14 computes them (its plugin golden files), gateway
//! selection, backendRef resolution, and backends left out of one proxy with the reason.

use std::collections::BTreeMap;

use meshmetric_policies::matching::effective_conf;
use meshmetric_policies::meshgateway::select_gateway;
use meshmetric_policies::proxy::{extra_labels, resolve_backend_ref};
use meshmetric_policies::{
    Dataplane, MeshGateway, MeshMetric, MeshOpenTelemetryBackend, Naming, ProxyContext, ProxyMetrics, Resource,
    parse_documents,
};

#[derive(Default)]
struct World {
    dataplanes: Vec<Dataplane>,
    policies: Vec<MeshMetric>,
    backends: Vec<MeshOpenTelemetryBackend>,
    gateways: Vec<MeshGateway>,
}

fn world(yaml: &str) -> World {
    let mut w = World::default();
    for r in parse_documents(yaml).unwrap() {
        match r {
            Resource::Dataplane(d) => w.dataplanes.push(d),
            Resource::MeshMetric(m) => w.policies.push(m),
            Resource::MeshOpenTelemetryBackend(b) => w.backends.push(b),
            Resource::MeshGateway(g) => w.gateways.push(g),
        }
    }
    w
}

impl World {
    fn dp(&self, name: &str) -> &Dataplane {
        self.dataplanes.iter().find(|d| d.meta.name == name).unwrap()
    }
    fn metrics(&self, name: &str, tls_ready: bool) -> ProxyMetrics {
        let dp = self.dp(name);
        let gateway = select_gateway(&self.gateways, dp);
        let ctx = ProxyContext {
            gateway,
            otel_backends: &self.backends,
            tls_ready,
            naming: Naming::Default,
            secret_sources: None,
        };
        ProxyMetrics::build(dp, effective_conf(&self.policies, dp, gateway), ctx)
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const KUMA_DATAPLANES: &str = r#"
type: Dataplane
name: dp-1
labels: {kuma.io/workload: backend, kuma.io/zone: zone-1}
networking:
  address: 192.168.0.1
  inbound: [{port: 80, servicePort: 8080, tags: {kuma.io/service: backend}}]
---
type: Dataplane
name: zone-egress-1
networking:
  address: 192.168.0.10
  listeners: [{type: ZoneEgress, address: 192.168.0.10, port: 10002, name: ze-port}]
---
type: Dataplane
name: zone-ingress-1
networking:
  address: 192.168.0.11
  listeners: [{type: ZoneIngress, address: 192.168.0.11, port: 10001, name: zi-port}]
"#;

/// Kuma 2.14.3's `pkg/plugins/policies/meshmetric/plugin/v1alpha1/testdata/*.listeners.golden.yaml`
/// for the same Dataplanes.
#[test]
fn extra_labels_equal_kumas_golden_files() {
    let w = world(KUMA_DATAPLANES);
    assert_eq!(
        extra_labels(w.dp("dp-1"), None, Naming::Default),
        labels(&[
            ("dataplane", "dp-1"),
            ("kuma.proxy_role", "sidecar"),
            ("kuma.workload", "backend"),
            ("kuma_io_service", "backend"),
            ("kuma_io_services", ",backend,"),
            ("mesh", "default"),
            ("zone", "zone-1"),
        ])
    );
    // otel_and_prometheus_unified_naming.listeners.golden.yaml
    assert_eq!(
        extra_labels(w.dp("dp-1"), None, Naming::Unified),
        labels(&[
            ("kuma.proxy_role", "sidecar"),
            ("kuma.workload", "backend"),
            ("mesh", "default"),
            ("zone", "zone-1"),
        ])
    );
    assert_eq!(
        extra_labels(w.dp("zone-egress-1"), None, Naming::Default),
        labels(&[
            ("dataplane", "zone-egress-1"),
            ("kuma.proxy_role", "zone-egress"),
            ("mesh", "default")
        ])
    );
    assert_eq!(
        extra_labels(w.dp("zone-ingress-1"), None, Naming::Default),
        labels(&[
            ("dataplane", "zone-ingress-1"),
            ("kuma.proxy_role", "zone-ingress"),
            ("mesh", "default")
        ])
    );
}

#[test]
fn extra_labels_of_several_services_and_without_a_workload() {
    let w = world(
        r#"
type: Dataplane
name: multi
networking:
  address: 10.0.0.1
  inbound:
    - {port: 1, tags: {kuma.io/service: web, version: v2}}
    - {port: 2, tags: {kuma.io/service: admin, version: v1}}
"#,
    );
    let l = extra_labels(w.dp("multi"), None, Naming::Default);
    assert_eq!(
        l["kuma_io_service"], "admin",
        "the smallest value, as Kuma's sorted tag set"
    );
    assert_eq!(l["kuma_io_services"], ",admin,web,");
    assert_eq!(l["versions"], ",v1,v2,");
    assert_eq!(l["service"], "admin", "no kuma.workload: the identifying service");
}

const GATEWAYS: &str = r#"
type: MeshGateway
name: edge
selectors: [{match: {kuma.io/service: edge-gw}}]
conf:
  listeners:
    - {port: 8080, protocol: HTTP, tags: {port: http-8080}}
    - {port: 8443, protocol: HTTPS, hostname: example.com, tags: {port: https-8443}}
---
type: Dataplane
name: edge-1
networking:
  address: 10.0.0.5
  gateway: {type: BUILTIN, tags: {kuma.io/service: edge-gw}}
---
type: Dataplane
name: delegated-1
labels: {kuma.io/workload: kong}
networking:
  address: 10.0.0.6
  gateway: {tags: {kuma.io/service: kong}}
---
type: Dataplane
name: web-1
networking:
  address: 10.0.0.7
  inbound: [{port: 8080, tags: {kuma.io/service: web}}]
"#;

#[test]
fn gateways_get_their_role_labels_and_are_selected_as_in_kuma() {
    let w = world(&format!(
        "{GATEWAYS}---\n{}",
        r#"type: MeshMetric
name: gw-only
spec: {targetRef: {kind: MeshGateway, name: edge}, default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}
---
type: MeshMetric
name: sidecars
spec: {targetRef: {kind: Mesh, proxyTypes: [Sidecar]}, default: {backends: [{type: Prometheus, prometheus: {port: 5671}}]}}
---
type: MeshMetric
name: gateways
spec: {targetRef: {kind: Mesh, proxyTypes: [Gateway]}, default: {backends: [{type: Prometheus, prometheus: {port: 5672}}]}}
---
type: MeshMetric
name: by-listener-tag
spec: {targetRef: {kind: MeshGateway, name: edge, tags: {port: https-8443}}, default: {applications: [{port: 9000}]}}
"#
    ));
    let edge = w.metrics("edge-1", false);
    assert_eq!(
        edge.contributions.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["gateways", "gw-only", "by-listener-tag"],
        "Mesh < MeshGateway; a MeshGateway targetRef with more listener tags is more specific"
    );
    assert_eq!(edge.prometheus[0].port.get(), 5670);
    let l = &edge.config.metrics().extra_labels;
    assert_eq!(l["kuma.proxy_role"], "gateway");
    assert_eq!(l["kuma_io_mesh_gateway"], "edge");
    assert_eq!(l["kuma_io_service"], "edge-gw");

    let delegated = w.metrics("delegated-1", false);
    assert_eq!(
        delegated
            .contributions
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["gateways"]
    );
    let l = &delegated.config.metrics().extra_labels;
    assert_eq!(l["kuma.proxy_role"], "gateway");
    assert!(!l.contains_key("kuma_io_mesh_gateway"));

    let web = w.metrics("web-1", false);
    assert_eq!(
        web.contributions.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["sidecars"]
    );
}

#[test]
fn a_metrics_port_a_proxy_already_uses_is_left_out_there_with_the_reason() {
    let w = world(&format!(
        "{GATEWAYS}---\n{}",
        r#"type: MeshMetric
name: m
spec: {default: {backends: [{type: Prometheus, prometheus: {clientId: a, port: 8080}}, {type: Prometheus, prometheus: {clientId: b, port: 5670}}]}}
---
type: Dataplane
name: admin-clash
networking: {address: 10.0.0.8, admin: {port: 5670}, inbound: [{port: 1, tags: {kuma.io/service: x}}]}
"#
    ));
    // web-1's inbound and edge-1's gateway listener are on 8080
    for name in ["web-1", "edge-1"] {
        let m = w.metrics(name, false);
        assert_eq!(
            m.prometheus.iter().map(|l| l.port.get()).collect::<Vec<_>>(),
            [5670],
            "{name}"
        );
        assert_eq!(m.inactive.len(), 1, "{name}");
        assert!(m.inactive[0].reason.contains("port 8080"), "{:?}", m.inactive);
        assert_eq!(m.config.metrics().backends.len(), 1);
    }
    let m = w.metrics("admin-clash", false);
    assert_eq!(m.prometheus.iter().map(|l| l.port.get()).collect::<Vec<_>>(), [8080]);
    assert!(m.inactive[0].reason.contains("admin port"), "{:?}", m.inactive);
}

const BACKENDS: &str = r#"
type: MeshOpenTelemetryBackend
name: newer
creationTime: "2026-02-01T00:00:00.000Z"
labels: {team: obs, kuma.io/display-name: otel-newer}
spec: {endpoint: {address: newer.collector, port: 4317}}
---
type: MeshOpenTelemetryBackend
name: older
creationTime: "2026-01-01T00:00:00.000Z"
labels: {team: obs}
spec: {endpoint: {address: older.collector, port: 4318, path: /otlp}, protocol: http, env: {precedence: ExplicitFirst}}
---
type: MeshOpenTelemetryBackend
name: local
spec: {}
---
type: Dataplane
name: web-1
networking: {address: 10.0.0.7, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}
"#;

fn otel(backend_ref: &str) -> String {
    format!(
        "type: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{backendRef: {backend_ref}, refreshInterval: 5s}}}}]}}}}\n"
    )
}

#[test]
fn backend_ref_by_labels_takes_the_oldest_backend() {
    let w = world(&format!(
        "{BACKENDS}---\n{}",
        otel("{kind: MeshOpenTelemetryBackend, labels: {team: obs}}")
    ));
    let m = w.metrics("web-1", false);
    let b = &m.config.metrics().backends[0];
    assert_eq!(b.name, "older");
    let o = b.open_telemetry.as_ref().unwrap();
    assert_eq!(o.endpoint, "older.collector:4318");
    assert_eq!(o.path.as_deref(), Some("/otlp"));
    assert_eq!(o.refresh_interval.get(), std::time::Duration::from_secs(5));
    assert_eq!(
        o.env.precedence,
        meshmetric_policies::otelbackend::EnvPrecedence::ExplicitFirst
    );
}

#[test]
fn backend_ref_by_name_display_name_and_the_node_local_collector() {
    let w = world(&format!(
        "{BACKENDS}---\n{}",
        otel("{kind: MeshOpenTelemetryBackend, name: otel-newer}")
    ));
    let b = w.metrics("web-1", false).config.metrics().backends[0].clone();
    assert_eq!(
        (b.name.as_str(), b.open_telemetry.as_ref().unwrap().endpoint.as_str()),
        ("otel-newer", "newer.collector:4317")
    );
    let w = world(&format!(
        "{BACKENDS}---\n{}",
        otel("{kind: MeshOpenTelemetryBackend, name: local}")
    ));
    let o = w.metrics("web-1", false).config.metrics().backends[0]
        .open_telemetry
        .clone()
        .unwrap();
    assert_eq!(o.endpoint, ":4317", "an empty spec is the node-local collector");
    assert_eq!(
        o.env.precedence,
        meshmetric_policies::otelbackend::EnvPrecedence::EnvFirst,
        "Kuma's default env policy"
    );
}

#[test]
fn a_missing_backend_is_inactive_with_the_reason_and_the_others_keep_working() {
    let w = world(&format!(
        "{BACKENDS}---\ntype: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{backendRef: {{kind: MeshOpenTelemetryBackend, labels: {{team: nobody}}}}}}}}, {{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n"
    ));
    let m = w.metrics("web-1", false);
    assert_eq!(m.config.metrics().backends.len(), 1);
    assert_eq!(m.prometheus.len(), 1);
    assert_eq!(m.inactive[0].backend, "backends[0]");
    assert!(
        m.inactive[0].reason.contains("no MeshOpenTelemetryBackend"),
        "{:?}",
        m.inactive
    );
    assert!(
        resolve_backend_ref(
            &meshmetric_policies::meshmetric::BackendRef {
                kind: None,
                labels: Some(labels(&[("team", "obs")])),
                name: None
            },
            "other-mesh",
            &w.backends
        )
        .is_none()
    );
}

#[test]
fn policy_overrides_of_a_referenced_backend() {
    let w = world(&format!(
        "{BACKENDS}---\ntype: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{backendRef: {{kind: MeshOpenTelemetryBackend, name: newer}}, protocol: http, compression: gzip}}}}]}}}}\n"
    ));
    let o = w.metrics("web-1", false).config.metrics().backends[0]
        .open_telemetry
        .clone()
        .unwrap();
    assert_eq!(o.protocol, Some(meshmetric_policies::meshmetric::OtlpProtocol::Http));
    assert_eq!(o.compression, Some(meshmetric_policies::meshmetric::Compression::Gzip));
}

#[test]
fn shadow_policies_are_not_applied() {
    let w = world(
        "type: Dataplane\nname: d\nnetworking: {address: 10.0.0.1, inbound: [{port: 1, tags: {kuma.io/service: s}}]}\n---\ntype: MeshMetric\nname: s\nlabels: {kuma.io/effect: shadow}\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n",
    );
    let m = w.metrics("d", false);
    assert!(m.conf.is_none() && m.prometheus.is_empty());
}

#[test]
fn zone_proxies_get_no_applications() {
    let w = world(&format!(
        "{KUMA_DATAPLANES}---\ntype: MeshMetric\nname: m\nspec: {{default: {{applications: [{{name: ignored-on-zone-proxy, port: 8888}}], backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n"
    ));
    assert!(
        w.metrics("zone-egress-1", false)
            .config
            .metrics()
            .applications
            .is_empty()
    );
    assert_eq!(w.metrics("dp-1", false).config.metrics().applications.len(), 1);
}

#[test]
fn a_refresh_interval_below_one_second_is_raised() {
    let w = world(&format!(
        "{BACKENDS}---\ntype: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:4317', refreshInterval: 1ns}}}}, {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:4318', refreshInterval: 2500ms}}}}]}}}}\n"
    ));
    let m = w.metrics("web-1", false);
    let intervals: Vec<std::time::Duration> = m
        .config
        .metrics()
        .backends
        .iter()
        .map(|b| b.open_telemetry.as_ref().unwrap().refresh_interval.get())
        .collect();
    assert_eq!(
        intervals,
        [
            std::time::Duration::from_secs(1),
            std::time::Duration::from_millis(2500)
        ]
    );
}

#[test]
fn backends_whose_headers_the_proxy_refuses_are_left_out_with_the_flag_to_change() {
    use meshmetric_policies::headers::SecretSources;
    let w = world(&format!(
        "{BACKENDS}---\ntype: MeshMetric\nname: m\nspec: {{default: {{backends: [\
         {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:4317', headers: [{{name: authorization, valueFrom: {{file: /var/run/secrets/otlp/token}}}}]}}}}, \
         {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:4318', headers: [{{name: authorization, valueFrom: {{file: /etc/shadow}}}}]}}}}, \
         {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:4319', headers: [{{name: x-api-key, valueFrom: {{env: AWS_SECRET_ACCESS_KEY}}}}]}}}}, \
         {{type: OpenTelemetry, openTelemetry: {{backendRef: {{kind: MeshOpenTelemetryBackend, name: newer}}, headers: [{{name: x-api-key, valueFrom: {{env: OTLP_KEY}}}}]}}}}]}}}}\n"
    ));
    let sources = SecretSources {
        header_file_dirs: vec!["/var/run/secrets/otlp".into()],
        header_env_prefixes: vec!["OTLP_".into()],
        env_headers_to: vec![],
    };
    let dp = w.dp("web-1");
    let ctx = ProxyContext {
        otel_backends: &w.backends,
        secret_sources: Some(&sources),
        ..Default::default()
    };
    let m = ProxyMetrics::build(dp, effective_conf(&w.policies, dp, None), ctx);
    let left_out: Vec<(&str, &str)> = m
        .inactive
        .iter()
        .map(|i| (i.backend.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(left_out.len(), 2, "{left_out:?}");
    assert_eq!(left_out[0].0, "backends[1]");
    assert!(
        left_out[0].1.contains("--header-file-dir: /var/run/secrets/otlp"),
        "{left_out:?}"
    );
    assert_eq!(left_out[1].0, "backends[2]");
    assert!(left_out[1].1.contains("--header-env-prefix: OTLP_"), "{left_out:?}");
    assert_eq!(m.config.metrics().backends.len(), 2);
    // unknown sources (a proxy not connected, or an older plugin): nothing is left out here
    assert!(w.metrics("web-1", false).inactive.is_empty());
}
