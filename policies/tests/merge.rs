//! Matching and merging for every targetRef kind (Kuma 2.14's order), plus a property test that
//! the result does not depend on the order the store returns policies in.

use meshmetric_policies::matching::{effective_conf, matching};
use meshmetric_policies::meshmetric::ProfileName;
use meshmetric_policies::{Dataplane, MeshMetric, Resource, parse_documents};
use proptest::prelude::*;

const DP: &str = r#"
type: Dataplane
name: web-01
labels: {kuma.io/workload: web, team: a}
networking:
  address: 10.0.0.1
  inbound:
    - {name: http, port: 10001, servicePort: 8080, tags: {kuma.io/service: web, version: v1}}
"#;

fn mk_dp() -> Dataplane {
    match parse_documents(DP).unwrap().remove(0) {
        Resource::Dataplane(d) => d,
        _ => unreachable!(),
    }
}

/// A MeshMetric named `name` with `targetRef` and `default` in YAML flow style.
fn mk_mm(name: &str, target_ref: &str, default: &str) -> MeshMetric {
    let doc = format!("type: MeshMetric\nname: {name}\nspec: {{targetRef: {target_ref}, default: {default}}}\n");
    match parse_documents(&doc).unwrap().remove(0) {
        Resource::MeshMetric(m) => m,
        _ => unreachable!(),
    }
}

fn order(ps: &[MeshMetric]) -> Vec<String> {
    matching(ps, &mk_dp(), None)
        .iter()
        .map(|m| m.meta.name.clone())
        .collect()
}

fn app_ports(ps: &[MeshMetric]) -> Vec<u16> {
    effective_conf(ps, &mk_dp(), None)
        .unwrap()
        .0
        .applications
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.port.map(|p| p.get()))
        .collect()
}

#[test]
fn mesh_subset_dataplane_name_labels_order() {
    let ps = vec![
        mk_mm("s", "{kind: Dataplane, name: web-01}", "{applications: [{port: 4}]}"),
        mk_mm(
            "ms",
            "{kind: MeshSubset, tags: {version: v1}}",
            "{applications: [{port: 3}]}",
        ),
        mk_mm(
            "d",
            "{kind: Dataplane, labels: {team: a}}",
            "{applications: [{port: 2}]}",
        ),
        mk_mm("m", "{kind: Mesh}", "{applications: [{port: 1}]}"),
    ];
    // Kuma 2.14 ranks: Mesh 1 < Dataplane 2 (by labels < by name) < MeshSubset 3
    assert_eq!(order(&ps), ["m", "d", "s", "ms"]);
    assert_eq!(app_ports(&ps), [3]);
}

#[test]
fn service_kinds_outrank_subsets() {
    let ps = vec![
        mk_mm(
            "sub",
            "{kind: MeshServiceSubset, name: web, tags: {version: v1}}",
            "{applications: [{port: 8}]}",
        ),
        mk_mm("svc", "{kind: MeshService, name: web}", "{applications: [{port: 5}]}"),
        mk_mm(
            "ms",
            "{kind: MeshSubset, tags: {version: v1}}",
            "{applications: [{port: 3}]}",
        ),
        mk_mm(
            "other",
            "{kind: MeshServiceSubset, name: web, tags: {version: v2}}",
            "{applications: [{port: 9}]}",
        ),
    ];
    assert_eq!(order(&ps), ["ms", "svc", "sub"]);
    assert_eq!(app_ports(&ps), [8]);
}

#[test]
fn equal_rank_lexically_smaller_name_wins() {
    let ps = vec![
        mk_mm("alpha", "{kind: Mesh}", "{applications: [{port: 1}]}"),
        mk_mm("beta", "{kind: Mesh}", "{applications: [{port: 2}]}"),
    ];
    assert_eq!(order(&ps), ["beta", "alpha"]);
    assert_eq!(app_ports(&ps), [1]);
}

#[test]
fn lists_are_replaced_objects_merged_profiles_appended() {
    let ps = vec![
        mk_mm(
            "m",
            "{kind: Mesh}",
            "{sidecar: {includeUnused: true, profiles: {appendProfiles: [{name: Basic}], include: [{type: Prefix, match: a}], exclude: [{type: Prefix, match: b}]}}, backends: [{type: Prometheus, prometheus: {port: 1}}]}",
        ),
        mk_mm(
            "d",
            "{kind: Dataplane}",
            "{sidecar: {profiles: {appendProfiles: [{name: None}], exclude: [{type: Prefix, match: c}]}}}",
        ),
        mk_mm(
            "s",
            "{kind: MeshSubset, tags: {version: v1}}",
            "{sidecar: {profiles: {appendProfiles: [{name: All}]}}, backends: [{type: Prometheus, prometheus: {port: 2}}]}",
        ),
    ];
    let (conf, contributions) = effective_conf(&ps, &mk_dp(), None).unwrap();
    assert_eq!(
        contributions.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["m", "d", "s"]
    );
    let sidecar = conf.sidecar.unwrap();
    assert_eq!(
        sidecar.include_unused,
        Some(true),
        "objects merge: the Mesh policy's field survives"
    );
    let p = sidecar.profiles.unwrap();
    let names: Vec<_> = p.append_profiles.unwrap().into_iter().filter_map(|p| p.name).collect();
    assert_eq!(
        names,
        [ProfileName::Basic, ProfileName::None, ProfileName::All],
        "appendProfiles is concatenated in merge order"
    );
    assert_eq!(p.include.unwrap()[0].pattern, "a", "untouched list kept");
    let ex = p.exclude.unwrap();
    assert_eq!(
        (ex.len(), ex[0].pattern.as_str()),
        (1, "c"),
        "exclude replaced, not appended"
    );
    let b = conf.backends.unwrap();
    assert_eq!(
        (b.len(), b[0].prometheus.as_ref().unwrap().port.map(|p| p.get())),
        (1, Some(2)),
        "backends replaced"
    );
}

#[test]
fn dataplane_by_name_and_non_matching_refs() {
    let ps = vec![
        mk_mm(
            "by-name",
            "{kind: Dataplane, name: web-01}",
            "{applications: [{port: 1}]}",
        ),
        mk_mm(
            "other-name",
            "{kind: Dataplane, name: web-02}",
            "{applications: [{port: 2}]}",
        ),
        mk_mm(
            "other-labels",
            "{kind: Dataplane, labels: {team: b}}",
            "{applications: [{port: 3}]}",
        ),
        mk_mm(
            "other-svc",
            "{kind: MeshService, name: api}",
            "{applications: [{port: 4}]}",
        ),
        mk_mm(
            "other-tags",
            "{kind: MeshSubset, tags: {version: v2}}",
            "{applications: [{port: 5}]}",
        ),
    ];
    assert_eq!(order(&ps), ["by-name"]);
}

fn pool() -> Vec<MeshMetric> {
    vec![
        mk_mm(
            "a",
            "{kind: Mesh}",
            "{applications: [{port: 1}], sidecar: {profiles: {appendProfiles: [{name: Basic}]}}}",
        ),
        mk_mm(
            "b",
            "{kind: Mesh}",
            "{sidecar: {includeUnused: true, profiles: {appendProfiles: [{name: None}]}}}",
        ),
        mk_mm("c", "{kind: Dataplane}", "{applications: [{port: 3}]}"),
        mk_mm(
            "d",
            "{kind: Dataplane, labels: {team: a}}",
            "{sidecar: {profiles: {appendProfiles: [{name: All}]}}}",
        ),
        mk_mm(
            "e",
            "{kind: Dataplane, name: web-01}",
            "{backends: [{type: Prometheus, prometheus: {port: 7}}]}",
        ),
        mk_mm(
            "f",
            "{kind: MeshSubset, tags: {version: v1}}",
            "{sidecar: {includeUnused: false}}",
        ),
        mk_mm(
            "g",
            "{kind: MeshService, name: web}",
            "{sidecar: {profiles: {exclude: [{type: Prefix, match: x}]}}}",
        ),
        mk_mm(
            "h",
            "{kind: MeshServiceSubset, name: web, tags: {version: v1}}",
            "{applications: [{port: 8}]}",
        ),
        mk_mm(
            "i",
            "{kind: MeshService, name: web}",
            "{sidecar: {profiles: {appendProfiles: [{name: Basic}]}}}",
        ),
    ]
}

proptest! {
    #[test]
    fn merge_is_deterministic_whatever_the_store_order(
        picks in proptest::sample::subsequence((0..9).collect::<Vec<usize>>(), 1..=9),
        shuffle in any::<u64>()
    ) {
        let all = pool();
        let chosen: Vec<MeshMetric> = picks.iter().map(|&i| all[i].clone()).collect();
        let mut shuffled = chosen.clone();
        // deterministic Fisher-Yates from the seed
        let mut s = shuffle | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = effective_conf(&chosen, &mk_dp(), None);
        let b = effective_conf(&shuffled, &mk_dp(), None);
        prop_assert_eq!(a, b);
    }
}
