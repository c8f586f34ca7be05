//! Recompute only what a change affects: the store says which proxies a change can concern,
//! and the incrementally kept MADS assignments always equal a full recompute.

use std::sync::Arc;
use std::time::Duration;

use meshmetric_control_plane::index::Index;
use meshmetric_control_plane::store::{Declared, Store};
use meshmetric_policies::ResourceKind as Kind;
use meshmetric_policies::parse_documents;

fn store() -> Arc<Store> {
    let mut docs = String::new();
    for i in 0..20 {
        let team = if i % 4 == 0 { "b" } else { "a" };
        docs.push_str(&format!(
            "---\ntype: Dataplane\nname: dp-{i}\nlabels: {{team: {team}}}\nnetworking: {{address: 10.0.0.{i}, inbound: [{{port: 8080, tags: {{kuma.io/service: s}}}}]}}\n"
        ));
    }
    docs.push_str("---\ntype: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main, port: 5670}}]}}\n");
    docs.push_str(&team_b(5671));
    let s = Arc::new(Store::default());
    s.apply(parse_documents(&docs).unwrap());
    s
}

fn team_b(port: u16) -> String {
    format!(
        "---\ntype: MeshMetric\nname: team-b\nspec: {{targetRef: {{kind: Dataplane, labels: {{team: b}}}}, default: {{backends: [{{type: Prometheus, prometheus: {{clientId: ops, port: {port}}}}}]}}}}\n"
    )
}

fn key(i: usize) -> (String, String) {
    ("default".into(), format!("dp-{i}"))
}

#[test]
fn a_change_touches_only_the_proxies_its_policy_selects() {
    let s = store();
    let g0 = *s.subscribe().borrow();
    s.apply(parse_documents(&team_b(5681)).unwrap());
    let touched: Vec<usize> = (0..20).filter(|i| s.touches_since(g0, &key(*i))).collect();
    assert_eq!(touched, [0, 4, 8, 12, 16], "only team b");

    // retargeting: proxies selected before or after are touched
    let g1 = *s.subscribe().borrow();
    s.apply(parse_documents(&team_b(5681).replace("team: b", "team: a")).unwrap());
    assert!((0..20).all(|i| s.touches_since(g1, &key(i))));

    // a Dataplane write touches that proxy
    let g2 = *s.subscribe().borrow();
    s.apply(
        parse_documents("type: Dataplane\nname: dp-7\nnetworking: {address: 10.0.0.7, inbound: [{port: 9090, tags: {kuma.io/service: s}}]}\n")
            .unwrap(),
    );
    let touched: Vec<usize> = (0..20).filter(|i| s.touches_since(g2, &key(*i))).collect();
    assert_eq!(touched, [7]);

    // the mesh-wide policy deleted: everyone
    let g3 = *s.subscribe().borrow();
    assert!(s.delete(Kind::MeshMetric, "default", "all"));
    assert!((0..20).all(|i| s.touches_since(g3, &key(i))));
    // nothing since now
    let g4 = *s.subscribe().borrow();
    assert!(!(0..20).any(|i| s.touches_since(g4, &key(i))));
}

#[tokio::test]
async fn incremental_mads_equals_a_full_recompute_after_every_change() {
    let s = store();
    let index = Index::start(s.clone());
    let mut rx = index.assignments();
    type Step = Box<dyn Fn(&Store, &Index)>;
    let steps: Vec<Step> = vec![
        Box::new(|s, _| s.apply(parse_documents(&team_b(5690)).unwrap())),
        Box::new(|_, i| {
            i.connected(
                &key(4),
                7,
                Declared {
                    tls_ready: true,
                    secret_sources: None,
                },
            )
        }),
        Box::new(|s, _| {
            s.apply(parse_documents("type: Dataplane\nname: dp-20\nlabels: {team: b}\nnetworking: {address: 10.0.1.1, inbound: [{port: 1, tags: {kuma.io/service: s}}]}\n").unwrap())
        }),
        Box::new(|s, _| assert!(s.delete(Kind::Dataplane, "default", "dp-8"))),
        Box::new(|s, _| assert!(s.delete(Kind::MeshMetric, "default", "team-b"))),
        Box::new(|_, i| i.disconnected(&key(4), 7)),
        Box::new(|s, _| s.apply(parse_documents(&team_b(5691).replace("team: b", "team: a")).unwrap())),
    ];
    for (n, step) in steps.iter().enumerate() {
        step(&s, &index);
        let want = index.assignments_from_scratch();
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                {
                    let a = rx.borrow_and_update();
                    if ["", "main", "ops"]
                        .iter()
                        .all(|c| a.for_client(c).version == want.for_client(c).version)
                    {
                        return;
                    }
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            got.is_ok(),
            "step {n}: incremental assignments differ from a full recompute"
        );
    }
}
