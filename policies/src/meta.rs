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

/// Longest name or mesh (Kuma: 253, a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// Why a resource name or mesh is refused (Kuma 2.14's `ValidateMeta` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("cannot be empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("value length must less or equal 253")]
    TooLong,
    /// A name that is not a lowercase RFC 1123 subdomain.
    #[error(
        "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    )]
    Name,
    /// A mesh with other characters than Kuma's (minus `.`).
    #[error(
        "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_' symbols ('.' is not accepted: the proxy id <mesh>.<name> must split at its first dot)"
    )]
    Mesh,
}

/// Checks a resource name: a lowercase RFC 1123 subdomain (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`
/// labels joined by `.`), at most 253 bytes — Kuma 2.14's identifier rule.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(NameError::Name)
    }
}

/// Checks a mesh name: Kuma's backward-compatible mesh characters (`[0-9a-z-_]`) without `.`,
/// not empty, at most 253 bytes.
pub fn check_mesh(mesh: &str) -> Result<(), NameError> {
    if mesh.is_empty() {
        return Err(NameError::Empty);
    }
    if mesh.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if mesh
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
    {
        Ok(())
    } else {
        Err(NameError::Mesh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_meta_validator_cases() {
        // Kuma v2.14.3 pkg/core/resources/apis/mesh/meta_validator_test.go
        assert_eq!(check_name("name-1"), Ok(()));
        assert_eq!(check_name("default.name-1"), Ok(()));
        assert_eq!(check_mesh("mesh-1"), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_mesh(""), Err(NameError::Empty));
        assert_eq!(check_name("two..dots"), Err(NameError::Name));
        assert_eq!(check_name("under_score"), Err(NameError::Name));
        assert_eq!(check_name(&"a".repeat(300)), Err(NameError::TooLong));
        assert_eq!(NameError::TooLong.to_string(), "value length must less or equal 253");
        // hostile names
        for bad in ["../etc", "a\nb", "a\u{1b}[31m", "UPPER", "-a", "a-", ".a", "a."] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_mesh("old_mesh"), Ok(()));
        assert_eq!(check_mesh("a.b"), Err(NameError::Mesh));
        assert_eq!(check_mesh("a\nb"), Err(NameError::Mesh));
    }
}
