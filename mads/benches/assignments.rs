//! MonitoringAssignment generation for many proxies (10,000 by default).

use criterion::{Criterion, criterion_group, criterion_main};

use meshmetric_mads::{Assignments, ProxyInput};
use meshmetric_policies::{ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents};

fn fixture(n: usize) -> String {
    let mut s = String::from(
        "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main, port: 5670}}]}}\n---\ntype: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671}}, {type: Prometheus, prometheus: {port: 5672}}]}}\n",
    );
    for i in 0..n {
        let team = if i % 4 == 0 { "b" } else { "a" };
        s.push_str(&format!(
            "---\ntype: Dataplane\nname: dp-{i}\nlabels: {{kuma.io/workload: svc-{}, kuma.io/zone: zone-{}, team: {team}}}\nnetworking: {{address: 10.{}.{}.{}, inbound: [{{port: 10001, servicePort: 8080, tags: {{kuma.io/service: svc-{}}}}}]}}\n",
            i % 100, i % 3, (i >> 16) & 255, (i >> 8) & 255, i & 255, i % 100
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("MADS_PROXIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut dps = Vec::new();
    let mut ps = Vec::new();
    for r in parse_documents(&fixture(n)).unwrap() {
        match r {
            Resource::Dataplane(d) => dps.push(d),
            Resource::MeshMetric(m) => ps.push(m),
            _ => {}
        }
    }
    let metrics: Vec<_> = dps
        .iter()
        .map(|d| ProxyMetrics::build(d, effective_conf(&ps, d, None), ProxyContext::default()))
        .collect();
    let mut g = c.benchmark_group(format!("mads_{n}_proxies"));
    g.sample_size(10);
    g.bench_function("merge_all_proxies", |b| {
        b.iter(|| dps.iter().filter_map(|d| effective_conf(&ps, d, None)).count())
    });
    g.bench_function("generate_assignments", |b| {
        b.iter(|| {
            Assignments::generate(dps.iter().zip(&metrics).map(|(d, m)| ProxyInput {
                dataplane: d,
                metrics: m,
            }))
        })
    });
    let a = Assignments::generate(dps.iter().zip(&metrics).map(|(d, m)| ProxyInput {
        dataplane: d,
        metrics: m,
    }));
    g.bench_function("answer_one_request", |b| b.iter(|| a.for_client("main").json.clone()));
    eprintln!(
        "response sizes: main {} bytes, ops {} bytes, default {} bytes",
        a.for_client("main").json.len(),
        a.for_client("ops").json.len(),
        a.for_client("").json.len()
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
