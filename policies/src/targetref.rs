//! The top-level `spec.targetRef` of a policy and Kuma 2.14's rules for it
//! (`ValidateTargetRef` in Kuma's `pkg/core/resources/apis/mesh/validators.go`, with the options
//! MeshMetric passes: `MeshGateway` only for policies of the `system` role, gateway listener
//! tags allowed there).
//!
//! Which proxies a targetRef selects, and how specific it is, is in [`crate::matching`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::PolicyRole;
use crate::violation::{Violations, Warning};

/// `targetRef.kind` values a MeshMetric accepts (Kuma 2.14.3), in Kuma's ranking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetRefKind {
    /// Every proxy of the mesh (optionally only sidecars or gateways, `proxyTypes`).
    Mesh,
    /// Proxies by name or by labels.
    Dataplane,
    /// Proxies with an inbound (or gateway) having these tags. Deprecated in Kuma 2.14.
    MeshSubset,
    /// Builtin gateway proxies of the named `MeshGateway` (policies of the `system` role only).
    MeshGateway,
    /// Proxies with an inbound of this `kuma.io/service`. Deprecated in Kuma 2.14.
    MeshService,
    /// Proxies with an inbound of this service and these tags. Deprecated in Kuma 2.14.
    MeshServiceSubset,
}

impl TargetRefKind {
    /// The name as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::Dataplane => "Dataplane",
            Self::MeshSubset => "MeshSubset",
            Self::MeshGateway => "MeshGateway",
            Self::MeshService => "MeshService",
            Self::MeshServiceSubset => "MeshServiceSubset",
        }
    }

    /// Kuma's rank of the kind (`api/common/v1alpha1/targetref.go`): a larger rank is more
    /// specific and is merged later.
    pub fn rank(self) -> u8 {
        match self {
            Self::Mesh => 1,
            Self::Dataplane => 2,
            Self::MeshSubset => 3,
            Self::MeshGateway => 4,
            Self::MeshService => 5,
            Self::MeshServiceSubset => 8,
        }
    }
}

impl std::fmt::Display for TargetRefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `targetRef.proxyTypes` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProxyType {
    /// A proxy beside a workload (no `networking.gateway`).
    Sidecar,
    /// A gateway proxy (`networking.gateway`, builtin or delegated).
    Gateway,
}

/// `spec.targetRef`: which proxies a policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// Kind of the referenced resource (required).
    #[schemars(extend("x-required" = true))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetRefKind>,
    /// Name of the referenced resource: a Dataplane, a `kuma.io/service` (MeshService,
    /// MeshServiceSubset) or a MeshGateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace of the referenced Dataplane (Kubernetes; its `k8s.kuma.io/namespace` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels the Dataplane must have (kind Dataplane), or the MeshService must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Tags an inbound (or the gateway) must have (MeshSubset, MeshServiceSubset, MeshGateway
    /// listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// A section of the resource (a MeshService port); Kuma refuses it for kind Dataplane in
    /// MeshMetric ("can only be used with inbound policies").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// With kind Mesh or MeshSubset: only these proxy types; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_types: Option<Vec<ProxyType>>,
    /// Reserved by Kuma for cross-mesh references; refused with every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
}

static NAME_CHARS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9a-z.\-_]*$").expect("valid regex"));
static TAG_NAME_CHARS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.\-_:/]*$").expect("valid regex"));
static TAG_VALUE_CHARS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.\-_:]*$").expect("valid regex"));
static SELECTOR_VALUE_CHARS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-zA-Z0-9.\-_:/]*|\*)$").expect("valid regex"));

fn set(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}
fn set_map(m: &Option<BTreeMap<String, String>>) -> bool {
    m.as_ref().is_some_and(|m| !m.is_empty())
}

impl TargetRef {
    /// A targetRef of `kind` with nothing else set.
    pub fn of(kind: TargetRefKind) -> Self {
        Self {
            kind: Some(kind),
            ..Default::default()
        }
    }

    /// Validates against Kuma 2.14.3's rules; `f` is the field path (`spec.targetRef`) and
    /// `role` the policy's role. Every violation is added to `v`, deprecations to `w`.
    pub fn validate(&self, f: &str, role: PolicyRole, v: &mut Violations, w: &mut Vec<Warning>) {
        let Some(kind) = self.kind else {
            if !v.names(&format!("{f}.kind")) {
                v.push(
                    format!("{f}.kind"),
                    "must be defined; accepted: Mesh, Dataplane, MeshSubset, MeshGateway, MeshService, MeshServiceSubset",
                );
            }
            return;
        };
        if kind == TargetRefKind::MeshGateway && role != PolicyRole::System {
            v.push(
                format!("{f}.kind"),
                "value 'MeshGateway' is not supported: only policies of the system role (no kuma.io/policy-role label) may target a MeshGateway",
            );
            return;
        }
        let not_set = |v: &mut Violations, field: &str, is_set: bool| {
            if is_set {
                v.push(format!("{f}.{field}"), format!("must not be set with kind {kind}"));
            }
        };
        let proxy_types = |v: &mut Violations| {
            if self.proxy_types.as_ref().is_some_and(Vec::is_empty) {
                v.push(
                    format!("{f}.proxyTypes"),
                    "must be undefined or have at least one element",
                );
            }
        };
        let name_chars = |v: &mut Violations| {
            if !NAME_CHARS.is_match(self.name.as_deref().unwrap_or_default()) {
                v.push(
                    format!("{f}.name"),
                    "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.",
                );
            }
        };
        let has_proxy_types = self.proxy_types.as_ref().is_some_and(|p| !p.is_empty());
        match kind {
            TargetRefKind::Mesh => {
                if set(&self.name) {
                    v.push(format!("{f}.name"), "using name with kind Mesh is not yet supported");
                }
                not_set(v, "mesh", set(&self.mesh));
                not_set(v, "tags", set_map(&self.tags));
                not_set(v, "labels", set_map(&self.labels));
                not_set(v, "namespace", set(&self.namespace));
                not_set(v, "sectionName", set(&self.section_name));
                proxy_types(v);
            }
            TargetRefKind::Dataplane => {
                not_set(v, "tags", set_map(&self.tags));
                not_set(v, "mesh", set(&self.mesh));
                not_set(v, "proxyTypes", has_proxy_types);
                if set_map(&self.labels) && (set(&self.name) || set(&self.namespace)) {
                    v.push(
                        format!("{f}.labels"),
                        "either labels or name and namespace must be specified",
                    );
                }
                if set(&self.section_name) {
                    v.push(
                        format!("{f}.sectionName"),
                        "can only be used with inbound policies (MeshMetric applies to the whole proxy)",
                    );
                }
            }
            TargetRefKind::MeshSubset => {
                not_set(v, "name", set(&self.name));
                not_set(v, "mesh", set(&self.mesh));
                validate_tags(&format!("{f}.tags"), self.tags.as_ref(), false, v);
                not_set(v, "labels", set_map(&self.labels));
                not_set(v, "namespace", set(&self.namespace));
                not_set(v, "sectionName", set(&self.section_name));
                proxy_types(v);
            }
            TargetRefKind::MeshService => {
                name_chars(v);
                not_set(v, "mesh", set(&self.mesh));
                not_set(v, "tags", set_map(&self.tags));
                not_set(v, "proxyTypes", has_proxy_types);
                if !set_map(&self.labels) && !set(&self.name) {
                    v.push(f, "name or labels must be set when kind is MeshService");
                }
                if set_map(&self.labels) && (set(&self.name) || set(&self.namespace)) {
                    v.push(
                        format!("{f}.labels"),
                        "either labels or name and namespace must be specified",
                    );
                }
            }
            TargetRefKind::MeshServiceSubset | TargetRefKind::MeshGateway => {
                if !set(&self.name) {
                    v.push(format!("{f}.name"), format!("must be set when kind is {kind}"));
                }
                name_chars(v);
                not_set(v, "mesh", set(&self.mesh));
                not_set(v, "proxyTypes", has_proxy_types);
                validate_tags(&format!("{f}.tags"), self.tags.as_ref(), true, v);
                not_set(v, "labels", set_map(&self.labels));
                not_set(v, "namespace", set(&self.namespace));
                not_set(v, "sectionName", set(&self.section_name));
            }
        }
        if matches!(
            kind,
            TargetRefKind::MeshSubset | TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset
        ) {
            w.push(Warning::new(
                format!("{f}.kind"),
                format!("{kind} value for 'targetRef.kind' is deprecated, use Dataplane with labels instead"),
            ));
        }
        if kind == TargetRefKind::MeshService && set_map(&self.labels) {
            w.push(Warning::new(
                format!("{f}.labels"),
                "a top-level MeshService targetRef selects proxies by their kuma.io/service tag (= name); with labels it selects no proxy, as in Kuma 2.14. Use kind Dataplane with labels",
            ));
        }
    }
}

/// Kuma's tag rules (`ValidateTags`, or `ValidateSelector` when `selector`: values may also
/// hold `/` or be `*`).
fn validate_tags(f: &str, tags: Option<&BTreeMap<String, String>>, selector: bool, v: &mut Violations) {
    for (k, val) in tags.into_iter().flatten() {
        let at = format!("{f}[{k:?}]");
        if k.is_empty() {
            v.push(f, "tag name must be non-empty");
        }
        if !TAG_NAME_CHARS.is_match(k) {
            v.push(
                at.clone(),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            );
        }
        if val.is_empty() {
            v.push(at.clone(), "tag value must be non-empty");
        }
        if selector {
            if !SELECTOR_VALUE_CHARS.is_match(val) {
                v.push(
                    at,
                    r#"tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*""#,
                );
            }
        } else if !TAG_VALUE_CHARS.is_match(val) {
            v.push(
                at,
                "tag value must consist of alphanumeric characters, dots, dashes and underscores",
            );
        }
    }
}
