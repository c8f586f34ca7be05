//! Golden files for the Envoy resources generated per proxy: `testdata/<case>.yaml` (a
//! Dataplane plus policies) → `testdata/<case>.golden.txt`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p meshmetric-control-plane --test golden`.

use std::path::Path;

use meshmetric_control_plane::xds::{ProxyPaths, generate, render};
use meshmetric_policies::{
    Dataplane, MeshMetric, ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents,
};

/// The derived metrics state of `dp` under `policies`.
fn metrics<'a>(policies: impl IntoIterator<Item = &'a MeshMetric>, dp: &Dataplane, paths: &ProxyPaths) -> ProxyMetrics {
    let ctx = ProxyContext {
        tls_ready: paths.tls_ready(),
        ..Default::default()
    };
    ProxyMetrics::build(dp, effective_conf(policies, dp, None), ctx)
}

fn check(case: &str, paths: ProxyPaths) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let input = std::fs::read_to_string(dir.join(format!("{case}.yaml"))).unwrap();
    let mut policies = Vec::new();
    let mut dp = None;
    for r in parse_documents(&input).unwrap() {
        match r {
            Resource::MeshMetric(m) => policies.push(m),
            Resource::Dataplane(d) => dp = Some(d),
            _ => {}
        }
    }
    let dp = dp.expect("a Dataplane in the case");
    let snap = generate(&dp, &metrics(&policies, &dp, &paths), &paths);
    let mut got = format!("version: {}\nwarnings: {:?}\n", snap.version, snap.warnings);
    got.push_str(&render(&snap));
    let golden = dir.join(format!("{case}.golden.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", golden.display()));
    assert!(
        got == want,
        "{case}: generated resources differ from {}; if intended, rerun with UPDATE_GOLDEN=1",
        golden.display()
    );
}

#[test]
fn golden_basic() {
    check("basic", ProxyPaths::in_workdir("/run/mm/default.web-01"));
}

#[test]
fn golden_two_backends_with_provided_tls() {
    let mut p = ProxyPaths::in_workdir("/run/mm/default.api-01");
    p.tls_cert = Some("/certs/tls.crt".into());
    p.tls_key = Some("/certs/tls.key".into());
    check("two-backends-tls", p);
}

#[test]
fn golden_no_policy_inbound_and_an_empty_metrics_config() {
    check("no-policy", ProxyPaths::in_workdir("/run/mm/default.lonely"));
}

#[test]
fn provided_tls_without_certificate_is_skipped_with_a_warning() {
    let input =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/two-backends-tls.yaml")).unwrap();
    let rs = parse_documents(&input).unwrap();
    let (Resource::Dataplane(dp), Resource::MeshMetric(m)) = (&rs[0], &rs[1]) else {
        panic!()
    };
    let p = ProxyPaths::in_workdir("/w");
    let snap = generate(dp, &metrics([m], dp, &p), &p);
    let names: Vec<_> = snap.listeners.iter().map(|l| l.name.as_str()).collect();
    assert!(
        names.contains(&"_meshmetric_prometheus_5670") && !names.contains(&"_meshmetric_prometheus_5671"),
        "{names:?}"
    );
    assert_eq!(snap.warnings.len(), 1);
    assert!(snap.warnings[0].contains("ProvidedTLS"));
}

#[test]
fn version_changes_only_with_content() {
    let input = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/basic.yaml")).unwrap();
    let rs = parse_documents(&input).unwrap();
    let (Resource::Dataplane(dp), Resource::MeshMetric(m)) = (&rs[0], &rs[1]) else {
        panic!()
    };
    let p = ProxyPaths::in_workdir("/w");
    let a = generate(dp, &metrics([m], dp, &p), &p);
    assert_eq!(a.version, generate(dp, &metrics([m], dp, &p), &p).version);
    let mut m2 = m.clone();
    m2.spec.default.applications = None;
    assert_ne!(a.version, generate(dp, &metrics([&m2], dp, &p), &p).version);
}
