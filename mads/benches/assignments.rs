//! MonitoringAssignment generation for many proxies (10,000 by default, `MADS_PROXIES`) and
//! MeshMetric policies (200 by default, `MADS_POLICIES`: two with backends, the others excluding
//! a metric per workload, so every proxy merges several).

use criterion::{Criterion, criterion_group, criterion_main};

use meshmetric_mads::{Assignments, ProxyInput};
use meshmetric_policies::{ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents};

fn fixture(n: usize, policies: usize) -> String {
    let mut s = String::from(
        "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main, port: 5670}}]}}\n---\ntype: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671}}, {type: Prometheus, prometheus: {port: 5672}}]}}\n",
    );
    for j in 0..policies.saturating_sub(2) {
        s.push_str(&format!(
            "---\ntype: MeshMetric\nname: p-{j}\nspec: {{targetRef: {{kind: Dataplane, labels: {{kuma.io/workload: svc-{}}}}}, default: {{sidecar: {{profiles: {{exclude: [{{type: Exact, match: metric_{j}}}]}}}}}}}}\n",
            j % 100
        ));
    }
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
    let policies: usize = std::env::var("MADS_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut dps = Vec::new();
    let mut ps = Vec::new();
    for r in parse_documents(&fixture(n, policies)).unwrap() {
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
    let mut g = c.benchmark_group(format!("mads_{n}_proxies_{policies}_policies"));
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
    // a change that moves the `ops` client's port on the team-b proxies: encoding every client
    // again (as before) against encoding only the client whose assignments changed
    let changed_ps: Vec<_> = ps
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.meta.name == "team-b" {
                let yaml = "type: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5673}}, {type: Prometheus, prometheus: {port: 5672}}]}}\n";
                if let Some(Resource::MeshMetric(m)) = parse_documents(yaml).unwrap().into_iter().next() {
                    p = m;
                }
            }
            p
        })
        .collect();
    let changed: Vec<_> = dps
        .iter()
        .map(|d| ProxyMetrics::build(d, effective_conf(&changed_ps, d, None), ProxyContext::default()))
        .collect();
    let inputs = || {
        dps.iter().zip(&changed).map(|(d, m)| ProxyInput {
            dataplane: d,
            metrics: m,
        })
    };
    g.bench_function("after_change_encode_every_client", |b| {
        b.iter(|| Assignments::generate(inputs()))
    });
    g.bench_function("after_change_encode_changed_clients", |b| {
        b.iter(|| Assignments::generate_reusing(Some(&a), inputs()))
    });
    let after = Assignments::generate_reusing(Some(&a), inputs());
    assert!(after.for_client("ops").json != a.for_client("ops").json);
    // the untouched client keeps its encoded answer (the same bytes, not a copy)
    assert_eq!(
        after.for_client("main").json.as_ptr(),
        a.for_client("main").json.as_ptr()
    );
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
