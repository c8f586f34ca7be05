//! The `MeshGateway` resource (Kuma), as far as metrics need it: which builtin gateway proxies
//! it configures (`selectors`), its tags and its listeners' ports and tags. A MeshMetric with
//! `targetRef: {kind: MeshGateway, name}` applies to the builtin gateway proxies the named
//! MeshGateway selects; their `extraLabels` carry `kuma_io_mesh_gateway`.
//!
//! Kuma's other fields (listener `protocol`, `hostname`, `tls`, `resources`, `crossMesh`) are
//! accepted and kept as given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataplane::Dataplane;
use crate::meta::Meta;
use crate::values::Port;
use crate::violation::Violations;

/// A MeshGateway: metadata plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshGateway {
    /// Identity and labels.
    pub meta: Meta,
    /// The gateway.
    pub spec: MeshGatewaySpec,
}

/// `spec` of a MeshGateway (Universal: the fields beside `type`, `name`, `mesh`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshGatewaySpec {
    /// Which builtin gateway Dataplanes this gateway configures (by their gateway tags).
    #[serde(default)]
    pub selectors: Vec<GatewaySelector>,
    /// Tags of the gateway, added to every listener's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Listeners.
    #[serde(default)]
    pub conf: GatewayConf,
}

/// One selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySelector {
    /// Tags the Dataplane's gateway must have (`*` matches any value).
    #[serde(rename = "match", default)]
    pub tags: BTreeMap<String, String>,
}

/// `spec.conf`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConf {
    /// The listeners.
    #[serde(default)]
    pub listeners: Vec<GatewayListener>,
}

/// One listener of a MeshGateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayListener {
    /// Port the gateway proxy listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Tags of the listener.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Kuma's other listener fields (`protocol`, `hostname`, `tls`, ...), kept as given.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Whether `selector` (values `*` match anything) matches `tags`.
pub fn tags_match(selector: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| v == "*" && tags.contains_key(k) || tags.get(k) == Some(v))
}

impl MeshGateway {
    /// How well this gateway's selectors match `dp`'s gateway tags: the number of exactly
    /// matched tags of the best selector, or `None` when none matches.
    fn rank(&self, dp: &Dataplane) -> Option<usize> {
        let tags = &dp.networking().gateway.as_ref()?.tags;
        self.spec
            .selectors
            .iter()
            .filter(|s| tags_match(&s.tags, tags))
            .map(|s| s.tags.values().filter(|v| *v != "*").count())
            .max()
    }
}

/// The MeshGateway configuring builtin gateway `dp` (Kuma's `SelectGateway`: the best-matching
/// selector wins, then the smaller name), or `None`.
pub fn select_gateway<'a>(
    gateways: impl IntoIterator<Item = &'a MeshGateway>,
    dp: &Dataplane,
) -> Option<&'a MeshGateway> {
    if !dp.is_builtin_gateway() {
        return None;
    }
    gateways
        .into_iter()
        .filter(|g| g.meta.mesh == dp.meta.mesh)
        .filter_map(|g| g.rank(dp).map(|r| (r, g)))
        .max_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| b.meta.name.cmp(&a.meta.name)))
        .map(|(_, g)| g)
}

/// Validates a MeshGateway spec (`prefix` is the path of its spec fields).
pub fn validate_meshgateway(gw: &MeshGateway, prefix: &str) -> Violations {
    let at = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}.{f}")
        }
    };
    let mut v = Violations::default();
    if gw.spec.selectors.is_empty() {
        v.push(at("selectors"), "must have at least one element");
    }
    for (i, s) in gw.spec.selectors.iter().enumerate() {
        if s.tags.is_empty() {
            v.push(at(&format!("selectors[{i}].match")), "must have at least one tag");
        }
    }
    if gw.spec.conf.listeners.is_empty() {
        v.push(at("conf.listeners"), "must have at least one element");
    }
    for (i, l) in gw.spec.conf.listeners.iter().enumerate() {
        if l.port.is_none() {
            v.push(
                at(&format!("conf.listeners[{i}].port")),
                "required; accepted: a port 1-65535",
            );
        }
    }
    v
}
