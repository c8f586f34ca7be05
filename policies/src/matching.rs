//! targetRef matching and merging (Kuma semantics, DESIGN.md §4.3).
//!
//! A policy applies to a Dataplane when its `targetRef` selects it. Matching policies are
//! ordered from least to most specific by kind rank as Kuma 2.14 ranks them — Mesh (1) <
//! Dataplane (2) < Dataplane with `sectionName` < MeshSubset (3) < MeshService (5) <
//! MeshServiceSubset (8) — and, at equal rank, the lexically smaller policy name comes last
//! (it wins). Their `default`s are then merged in that order with JSON Merge Patch (RFC 7396):
//! objects merge recursively and lists are replaced by the more specific policy, except
//! `sidecar.profiles.appendProfiles`, which is concatenated.

use serde::Serialize;
use serde_json::Value;

use crate::dataplane::{Dataplane, SERVICE_TAG};
use crate::meshmetric::{Conf, MeshMetric, TargetRef};

/// A policy that contributed to an effective config, in merge order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    pub name: String,
    #[serde(rename = "targetRefKind")]
    pub target_ref_kind: String,
}

/// Whether `target_ref` (None = Mesh) selects `dp`.
pub fn selects(target_ref: Option<&TargetRef>, dp: &Dataplane) -> bool {
    let Some(tr) = target_ref else { return true };
    let subset = |want: &std::collections::BTreeMap<String, String>,
                  have: &std::collections::BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    match tr.kind.as_str() {
        "Mesh" => true,
        "Dataplane" => {
            let by_name = tr.name.as_ref().is_none_or(|n| *n == dp.meta.name);
            let by_labels = tr.labels.as_ref().is_none_or(|l| subset(l, &dp.meta.labels));
            let by_section = tr.section_name.as_ref().is_none_or(|s| {
                dp.networking
                    .inbound
                    .iter()
                    .any(|i| i.name.as_deref() == Some(s.as_str()) || i.port.to_string() == *s)
            });
            by_name && by_labels && by_section
        }
        "MeshSubset" => {
            let tags = tr.tags.clone().unwrap_or_default();
            tags.is_empty() || dp.networking.inbound.iter().any(|i| subset(&tags, &i.tags))
        }
        "MeshService" => {
            let name = tr.name.as_deref().unwrap_or_default();
            dp.services().any(|s| s == name)
        }
        "MeshServiceSubset" => {
            let name = tr.name.as_deref().unwrap_or_default();
            let tags = tr.tags.clone().unwrap_or_default();
            dp.networking
                .inbound
                .iter()
                .any(|i| i.tags.get(SERVICE_TAG).map(String::as_str) == Some(name) && subset(&tags, &i.tags))
        }
        _ => false,
    }
}

/// Specificity of a targetRef: (kind rank, has sectionName). Larger = more specific.
pub fn specificity(target_ref: Option<&TargetRef>) -> (u8, bool) {
    let Some(tr) = target_ref else { return (1, false) };
    let rank = match tr.kind.as_str() {
        "Mesh" => 1,
        "Dataplane" => 2,
        "MeshSubset" => 3,
        "MeshService" => 5,
        "MeshServiceSubset" => 8,
        _ => 0,
    };
    (rank, tr.section_name.is_some())
}

/// The policies of `dp`'s mesh that select it, ordered least → most specific (merge order).
/// The result does not depend on the order of `policies`.
pub fn matching<'a>(policies: impl IntoIterator<Item = &'a MeshMetric>, dp: &Dataplane) -> Vec<&'a MeshMetric> {
    let mut m: Vec<&MeshMetric> = policies
        .into_iter()
        .filter(|p| p.meta.mesh == dp.meta.mesh && selects(p.spec.target_ref.as_ref(), dp))
        .collect();
    m.sort_by(|a, b| {
        specificity(a.spec.target_ref.as_ref())
            .cmp(&specificity(b.spec.target_ref.as_ref()))
            // equal rank: the lexically smaller name is applied last
            .then_with(|| b.meta.name.cmp(&a.meta.name))
    });
    m
}

/// Merges the policies that select `dp` into one effective [`Conf`].
/// Returns `None` when no policy selects the proxy (it then gets no metrics config).
pub fn effective_conf<'a>(
    policies: impl IntoIterator<Item = &'a MeshMetric>,
    dp: &Dataplane,
) -> Option<(Conf, Vec<Contribution>)> {
    let ordered = matching(policies, dp);
    if ordered.is_empty() {
        return None;
    }
    let mut acc = Value::Object(Default::default());
    let mut contributions = Vec::with_capacity(ordered.len());
    for p in ordered {
        let patch = serde_json::to_value(&p.spec.default).expect("Conf serializes");
        merge_patch(&mut acc, patch, &mut Vec::new());
        contributions.push(Contribution {
            name: p.meta.name.clone(),
            target_ref_kind: p
                .spec
                .target_ref
                .as_ref()
                .map_or("Mesh".to_string(), |t| t.kind.clone()),
        });
    }
    let conf: Conf = serde_json::from_value(acc).expect("merge of valid Confs is a valid Conf");
    Some((conf, contributions))
}

/// Merges a list of `default`s in order (least specific first).
pub fn merge_confs<'a>(confs: impl IntoIterator<Item = &'a Conf>) -> Conf {
    let mut acc = Value::Object(Default::default());
    for c in confs {
        merge_patch(
            &mut acc,
            serde_json::to_value(c).expect("Conf serializes"),
            &mut Vec::new(),
        );
    }
    serde_json::from_value(acc).expect("merge of valid Confs is a valid Conf")
}

fn merge_patch(dst: &mut Value, src: Value, path: &mut Vec<String>) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                if v.is_null() {
                    d.remove(&k);
                    continue;
                }
                let append = k == "appendProfiles" && path.len() == 2 && path[0] == "sidecar" && path[1] == "profiles";
                match d.get_mut(&k) {
                    Some(Value::Array(existing)) if append => {
                        if let Value::Array(more) = v {
                            existing.extend(more);
                        }
                    }
                    Some(existing @ Value::Object(_)) if v.is_object() => {
                        path.push(k);
                        merge_patch(existing, v, path);
                        path.pop();
                    }
                    _ => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Resource, parse_documents};

    fn mk_policies(yaml: &str) -> (Vec<MeshMetric>, Vec<Dataplane>) {
        let mut p = Vec::new();
        let mut d = Vec::new();
        for r in parse_documents(yaml).unwrap() {
            match r {
                Resource::MeshMetric(m) => p.push(m),
                Resource::Dataplane(x) => d.push(x),
            }
        }
        (p, d)
    }

    const DP: &str = r#"
type: Dataplane
name: web-01
labels: {kuma.io/workload: web, team: a}
networking:
  address: 127.0.0.1
  inbound: [{port: 10001, servicePort: 8080, name: http, tags: {kuma.io/service: web, version: v1}}]
"#;

    #[test]
    fn dataplane_labels_beat_mesh_and_lists_are_replaced() {
        let (p, d) = mk_policies(&format!(
            "{DP}---\n{}",
            r#"type: MeshMetric
name: mesh-wide
spec:
  default:
    sidecar: {includeUnused: true, profiles: {appendProfiles: [{name: Basic}], exclude: [{type: Prefix, match: envoy_a}]}}
    applications: [{port: 1000}, {port: 1001}]
    backends: [{type: Prometheus, prometheus: {port: 5670}}]
---
type: MeshMetric
name: team-a
spec:
  targetRef: {kind: Dataplane, labels: {team: a}}
  default:
    sidecar: {profiles: {appendProfiles: [{name: All}], exclude: [{type: Prefix, match: envoy_b}]}}
    applications: [{port: 2000}]
---
type: MeshMetric
name: team-b
spec:
  targetRef: {kind: Dataplane, labels: {team: b}}
  default: {applications: [{port: 3000}]}
"#
        ));
        let (conf, contrib) = effective_conf(&p, &d[0]).unwrap();
        assert_eq!(
            contrib.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["mesh-wide", "team-a"]
        );
        let apps: Vec<i64> = conf.applications.unwrap().iter().map(|a| a.port).collect();
        assert_eq!(apps, [2000]);
        let sidecar = conf.sidecar.unwrap();
        assert_eq!(sidecar.include_unused, Some(true));
        let profiles = sidecar.profiles.unwrap();
        let names: Vec<_> = profiles.append_profiles.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["Basic", "All"]);
        assert_eq!(profiles.exclude.unwrap()[0].pattern, "envoy_b");
        assert_eq!(conf.backends.unwrap().len(), 1);
    }

    #[test]
    fn ranking_and_name_tie_break_are_order_independent() {
        let (mut p, d) = mk_policies(&format!(
            "{DP}---\n{}",
            r#"type: MeshMetric
name: b-subset
spec: {targetRef: {kind: MeshSubset, tags: {version: v1}}, default: {applications: [{port: 3}]}}
---
type: MeshMetric
name: a-section
spec: {targetRef: {kind: Dataplane, sectionName: http}, default: {applications: [{port: 2}]}}
---
type: MeshMetric
name: z-dp
spec: {targetRef: {kind: Dataplane}, default: {applications: [{port: 1}]}}
---
type: MeshMetric
name: a-dp
spec: {targetRef: {kind: Dataplane}, default: {applications: [{port: 1}]}}
---
type: MeshMetric
name: svc
spec: {targetRef: {kind: MeshService, name: web}, default: {applications: [{port: 5}]}}
---
type: MeshMetric
name: other-svc
spec: {targetRef: {kind: MeshService, name: api}, default: {applications: [{port: 6}]}}
"#
        ));
        let expected = ["z-dp", "a-dp", "a-section", "b-subset", "svc"];
        for _ in 0..4 {
            let order: Vec<_> = matching(&p, &d[0]).iter().map(|m| m.meta.name.clone()).collect();
            assert_eq!(order, expected);
            p.rotate_left(1);
            p.reverse();
        }
        let (conf, _) = effective_conf(&p, &d[0]).unwrap();
        assert_eq!(conf.applications.unwrap()[0].port, 5);
    }

    #[test]
    fn other_mesh_and_unmatched_labels_do_not_apply() {
        let (p, d) = mk_policies(&format!(
            "{DP}---\n{}",
            r#"type: MeshMetric
name: other
mesh: other
spec: {default: {applications: [{port: 1}]}}
---
type: MeshMetric
name: nope
spec: {targetRef: {kind: Dataplane, labels: {team: z}}, default: {}}
"#
        ));
        assert!(effective_conf(&p, &d[0]).is_none());
    }
}
