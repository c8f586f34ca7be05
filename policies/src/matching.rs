//! targetRef matching and merging, as Kuma 2.14 does it (`pkg/plugins/policies/core/matchers/
//! dataplane.go`, `SortByTargetRef`).
//!
//! A policy applies to a Dataplane when its top-level `targetRef` selects it ([`selects`]).
//! Matching policies are ordered from least to most specific ([`Specificity`]): by kind rank —
//! Mesh (1) < Dataplane (2) < MeshSubset (3) < MeshGateway (4) < MeshService (5) <
//! MeshServiceSubset (8) —, then a Dataplane targetRef by name beats one by labels, then a
//! MeshGateway targetRef with more listener tags wins, then the policy role (system <
//! producer < consumer < workload-owner), and at last the lexically smaller display name comes
//! last (it wins). Their `default`s are merged in that order ([`Conf::merge`]). Shadow policies
//! (`kuma.io/effect: shadow`) are never applied.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataplane::{Dataplane, NAMESPACE_LABEL, SERVICE_TAG};
use crate::meshgateway::MeshGateway;
use crate::meshmetric::{Conf, MeshMetric};
use crate::meta::{Meta, PolicyRole};
use crate::targetref::{ProxyType, TargetRef, TargetRefKind};

/// A policy that contributed to an effective config, in merge order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    /// Name of the policy.
    pub name: String,
    /// Kind of its top-level targetRef (`Mesh` when it has none).
    #[serde(rename = "targetRefKind")]
    pub target_ref_kind: TargetRefKind,
}

/// Kuma's `TagSelector.Matches`: every selector tag present with the same value (`*` matches
/// any value).
pub fn tags_match(selector: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| tags.get(k).is_some_and(|have| v == "*" || have == v))
}

/// Tags of each listener of the MeshGateway configuring `dp`: the Dataplane's gateway tags,
/// then the MeshGateway's, then the listener's (later ones win).
fn gateway_listener_tags<'a>(
    dp: &'a Dataplane,
    gw: &'a MeshGateway,
) -> impl Iterator<Item = BTreeMap<String, String>> + 'a {
    gw.spec.conf.listeners.iter().map(move |l| {
        let mut t = dp
            .networking()
            .gateway
            .as_ref()
            .map(|g| g.tags.clone())
            .unwrap_or_default();
        t.extend(gw.spec.tags.clone());
        t.extend(l.tags.clone());
        t
    })
}

/// Kuma's `inboundsSelectedByTags`: whether an inbound, a listener of the proxy's MeshGateway
/// or a delegated gateway matches `selector`.
fn selected_by_tags(selector: &BTreeMap<String, String>, dp: &Dataplane, gw: Option<&MeshGateway>) -> bool {
    let n = dp.networking();
    n.inbound.iter().any(|i| tags_match(selector, &i.tags))
        || gw.is_some_and(|gw| gateway_listener_tags(dp, gw).any(|t| tags_match(selector, &t)))
        || dp.is_delegated_gateway() && n.gateway.as_ref().is_some_and(|g| tags_match(selector, &g.tags))
}

fn proxy_type_supported(tr: &TargetRef, dp: &Dataplane) -> bool {
    let have = if dp.networking().gateway.is_some() {
        ProxyType::Gateway
    } else {
        ProxyType::Sidecar
    };
    tr.proxy_types
        .as_ref()
        .is_none_or(|t| t.is_empty() || t.contains(&have))
}

/// Whether a policy with `policy` metadata and top-level `target_ref` (None = Mesh) selects
/// `dp`, whose MeshGateway (for a builtin gateway) is `gateway`.
///
/// Policies of the `consumer` and `workload-owner` roles only select Dataplanes of their own
/// Kubernetes namespace (label `k8s.kuma.io/namespace`), as in Kuma.
pub fn selects(policy: &Meta, target_ref: Option<&TargetRef>, dp: &Dataplane, gateway: Option<&MeshGateway>) -> bool {
    if matches!(policy.policy_role(), PolicyRole::Consumer | PolicyRole::WorkloadOwner)
        && policy
            .labels
            .get(NAMESPACE_LABEL)
            .is_none_or(|ns| dp.meta.labels.get(NAMESPACE_LABEL) != Some(ns))
    {
        return false;
    }
    let mesh = TargetRef::of(TargetRefKind::Mesh);
    let tr = target_ref.unwrap_or(&mesh);
    let n = dp.networking();
    match tr.kind.unwrap_or(TargetRefKind::Mesh) {
        TargetRefKind::Mesh => {
            proxy_type_supported(tr, dp) && (selected_by_tags(&BTreeMap::new(), dp, gateway) || !n.listeners.is_empty())
        }
        TargetRefKind::Dataplane => {
            if gateway.is_some() {
                return false; // Kuma: a builtin gateway with its MeshGateway is not a Dataplane target
            }
            let name = tr.name.as_deref().filter(|s| !s.is_empty());
            let namespace = tr.namespace.as_deref().filter(|s| !s.is_empty());
            let all = name.is_none() && namespace.is_none() && tr.labels.is_none();
            let by_name = name.is_some_and(|name| {
                name == dp.meta.name
                    && namespace.is_none_or(|ns| dp.meta.labels.get(NAMESPACE_LABEL).is_some_and(|l| l == ns))
            });
            let by_labels = tr
                .labels
                .as_ref()
                .is_some_and(|l| l.iter().all(|(k, v)| dp.meta.labels.get(k) == Some(v)));
            all || by_name || by_labels
        }
        TargetRefKind::MeshSubset => {
            proxy_type_supported(tr, dp) && selected_by_tags(tr.tags.as_ref().unwrap_or(&BTreeMap::new()), dp, gateway)
        }
        TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset => {
            let mut selector = BTreeMap::from([(SERVICE_TAG.to_string(), tr.name.clone().unwrap_or_default())]);
            if tr.kind == Some(TargetRefKind::MeshServiceSubset) {
                selector.extend(tr.tags.clone().unwrap_or_default());
            }
            selected_by_tags(&selector, dp, gateway)
        }
        TargetRefKind::MeshGateway => match gateway {
            Some(gw) if dp.is_builtin_gateway() && tr.name.as_deref() == Some(gw.meta.name.as_str()) => {
                let selector = tr.tags.clone().unwrap_or_default();
                gateway_listener_tags(dp, gw).any(|t| tags_match(&selector, &t))
            }
            _ => false,
        },
    }
}

/// How specific a policy is: policies merge in ascending order (the most specific last).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    rank: u8,
    dataplane_by_name: bool,
    gateway_tags: usize,
    role: PolicyRole,
    /// The display name, reversed in order: the smaller name is more specific.
    name: std::cmp::Reverse<String>,
}

impl Specificity {
    /// The specificity of policy `meta` with top-level `target_ref` (None = Mesh).
    pub fn of(meta: &Meta, target_ref: Option<&TargetRef>) -> Self {
        let kind = target_ref.and_then(|t| t.kind).unwrap_or(TargetRefKind::Mesh);
        let has = |s: Option<&String>| s.is_some_and(|s| !s.is_empty());
        Self {
            rank: kind.rank(),
            dataplane_by_name: kind == TargetRefKind::Dataplane
                && target_ref.is_some_and(|t| has(t.name.as_ref()) && t.labels.is_none()),
            gateway_tags: if kind == TargetRefKind::MeshGateway {
                target_ref.and_then(|t| t.tags.as_ref()).map_or(0, BTreeMap::len)
            } else {
                0
            },
            role: meta.policy_role(),
            name: std::cmp::Reverse(meta.display_name().to_string()),
        }
    }
}

/// The policies of `dp`'s mesh that select it, ordered least → most specific (merge order).
/// `gateway` is the MeshGateway configuring `dp` when it is a builtin gateway. The result does
/// not depend on the order of `policies`.
pub fn matching<'a>(
    policies: impl IntoIterator<Item = &'a MeshMetric>,
    dp: &Dataplane,
    gateway: Option<&MeshGateway>,
) -> Vec<&'a MeshMetric> {
    let mut m: Vec<(Specificity, &MeshMetric)> = policies
        .into_iter()
        .filter(|p| {
            p.meta.mesh == dp.meta.mesh
                && !p.meta.is_shadow()
                && selects(&p.meta, p.spec.target_ref.as_ref(), dp, gateway)
        })
        .map(|p| (Specificity::of(&p.meta, p.spec.target_ref.as_ref()), p))
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.meta.name.cmp(&b.1.meta.name)));
    m.into_iter().map(|(_, p)| p).collect()
}

/// Merges the policies that select `dp` into one effective [`Conf`], with the policies that
/// made it. `None` when no policy selects the proxy.
pub fn effective_conf<'a>(
    policies: impl IntoIterator<Item = &'a MeshMetric>,
    dp: &Dataplane,
    gateway: Option<&MeshGateway>,
) -> Option<(Conf, Vec<Contribution>)> {
    let ordered = matching(policies, dp, gateway);
    if ordered.is_empty() {
        return None;
    }
    let mut conf = Conf::default();
    let mut contributions = Vec::with_capacity(ordered.len());
    for p in ordered {
        conf.merge(&p.spec.default);
        contributions.push(Contribution {
            name: p.meta.name.clone(),
            target_ref_kind: p
                .spec
                .target_ref
                .as_ref()
                .and_then(|t| t.kind)
                .unwrap_or(TargetRefKind::Mesh),
        });
    }
    Some((conf, contributions))
}

/// Merges a list of `default`s in order (least specific first).
pub fn merge_confs<'a>(confs: impl IntoIterator<Item = &'a Conf>) -> Conf {
    let mut acc = Conf::default();
    for c in confs {
        acc.merge(c);
    }
    acc
}
