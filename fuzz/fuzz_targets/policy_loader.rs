//! The YAML/JSON resource loader on arbitrary input: it never panics; every resource it
//! accepts merges and derives a proxy state without panicking for every Dataplane of its mesh,
//! and the config served to the plugin reads back unchanged (the plugin parses it at its edge).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetric_policies::meshgateway::select_gateway;
use meshmetric_policies::{DpConfig, ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents_all};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_documents_all(&text);
    for e in &parsed.errors {
        let _ = e.to_string();
        let _ = e.violations();
    }
    let mut policies = Vec::new();
    let mut backends = Vec::new();
    let mut gateways = Vec::new();
    for r in &parsed.resources {
        let _ = r.to_universal_json();
        match r {
            Resource::MeshMetric(m) => policies.push(m.clone()),
            Resource::MeshOpenTelemetryBackend(b) => backends.push(b.clone()),
            Resource::MeshGateway(g) => gateways.push(g.clone()),
            Resource::Dataplane(_) => {}
        }
    }
    for r in &parsed.resources {
        if let Resource::Dataplane(d) = r {
            let gateway = select_gateway(&gateways, d);
            let in_mesh = policies.iter().filter(|m| m.meta.mesh == d.meta.mesh);
            let ctx = ProxyContext {
                gateway,
                otel_backends: &backends,
                tls_ready: true,
                ..Default::default()
            };
            let m = ProxyMetrics::build(d, effective_conf(in_mesh, d, gateway), ctx);
            let (body, _) = m.config.to_body_and_etag();
            let back: DpConfig = serde_json::from_str(&body).expect("the served config reads back");
            assert_eq!(back, m.config);
        }
    }
});
