//! Identity of a resource ([`Meta`]) and the Kuma labels this project reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label naming the mesh of a Kubernetes-form resource.
pub const MESH_LABEL: &str = "kuma.io/mesh";
/// Mesh used when a document names none.
pub const DEFAULT_MESH: &str = "default";
/// Label naming the workload of a Dataplane (becomes `kuma.workload` in `extraLabels`).
pub const WORKLOAD_LABEL: &str = "kuma.io/workload";
/// Label naming the zone of a Dataplane (becomes `zone` in `extraLabels`).
pub const ZONE_LABEL: &str = "kuma.io/zone";
/// Label carrying a policy's role (Kuma: `system`, `producer`, `consumer`, `workload-owner`);
/// absent means `system`.
pub const POLICY_ROLE_LABEL: &str = "kuma.io/policy-role";
/// Label marking a resource's effect; `shadow` resources are stored but not applied (Kuma).
pub const EFFECT_LABEL: &str = "kuma.io/effect";
/// Label carrying a resource's display name (Kuma); when absent the name is the display name.
pub const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// Identity and labels of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// Mesh the resource belongs to.
    pub mesh: String,
    /// Name, unique per kind and mesh.
    pub name: String,
    /// Labels (Universal `labels`, Kubernetes `metadata.labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the control plane first stored the resource (RFC 3339, UTC, e.g.
    /// `2026-12-01T21:09:06.123Z`); kept when the resource is replaced. Used where Kuma breaks
    /// ties by age (a `backendRef` by labels picks the oldest matching backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
}

impl Meta {
    /// The display name: label `kuma.io/display-name`, else the name (Kuma).
    pub fn display_name(&self) -> &str {
        self.labels
            .get(DISPLAY_NAME_LABEL)
            .map(String::as_str)
            .unwrap_or(&self.name)
    }

    /// Whether the resource is a shadow (`kuma.io/effect: shadow`): stored, not applied.
    pub fn is_shadow(&self) -> bool {
        self.labels.get(EFFECT_LABEL).is_some_and(|v| v == "shadow")
    }

    /// The policy role: label `kuma.io/policy-role`, else `system` (Kuma).
    pub fn policy_role(&self) -> PolicyRole {
        match self.labels.get(POLICY_ROLE_LABEL).map(String::as_str) {
            Some("producer") => PolicyRole::Producer,
            Some("consumer") => PolicyRole::Consumer,
            Some("workload-owner") => PolicyRole::WorkloadOwner,
            _ => PolicyRole::System,
        }
    }
}

/// Role of a policy (Kuma `kuma.io/policy-role`), in Kuma's ranking order: at equal targetRef,
/// a later role is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyRole {
    /// Created by the mesh operator (no label, or `system`).
    System,
    /// `producer`.
    Producer,
    /// `consumer`.
    Consumer,
    /// `workload-owner`.
    WorkloadOwner,
}
