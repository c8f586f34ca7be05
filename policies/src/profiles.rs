//! Profiles (`All`, `Basic`, `None`) and include/exclude selectors, compiled once per config
//! into a [`FamilyFilter`] (the Basic list follows Kuma's `basic` profile).
//!
//! Per family: keep = any profile keeps it; then any `exclude` match drops it; then any
//! `include` match keeps it (include wins). Regex selectors are unanchored (search).
//! When `Basic` is the broadest profile, series naming an internal Envoy entity
//! ([`is_internal_name`]) are dropped too.

use std::collections::HashSet;

use aho_corasick::AhoCorasick;
use regex::RegexSet;

use crate::contract::INTERNAL_STAT_INFIX;
use crate::meshmetric::{ProfileName, Profiles, Selector, SelectorType};

/// Labels whose value names an Envoy entity; Basic drops series where it is internal.
pub const INTERNAL_LABELS: &[&str] = &[
    "envoy_cluster_name",
    "envoy_http_conn_manager_prefix",
    "envoy_listener_address",
];

const BASIC_CONTAINS: &[&str] = &[
    "rq_time",
    "cx_length_ms",
    "cx_count",
    "_rq",
    "bytes",
    "timeout",
    "health_check",
    "lb_healthy_panic",
    "cx_destroy",
    "error",
    "fail",
    "reset",
    "eject",
    "overflow",
    "cancelled",
    "max_duration_reached",
    "no_cluster",
    "no_route",
    "no_filter_chain",
    "reject",
    "denied",
    "days_until_first_cert_expiring",
    "rbac",
    "cx_active",
    "cx_connect",
    "circuit_breakers",
    "cx_total",
    "ssl_handshake",
    "ssl_context_update_by_sds",
];
const BASIC_EXACT: &[&str] = &[
    "envoy_cluster_membership_degraded",
    "envoy_cluster_membership_healthy",
    "envoy_cluster_ssl_handshake",
    "envoy_cluster_membership_total",
];
const BASIC_PREFIX: &[&str] = &[
    "envoy_server",
    "envoy_control_plane",
    "envoy_dns_filter",
    "envoy_dns_cares",
];

/// Whether an Envoy entity name (cluster, HTTP connection manager prefix, listener address)
/// is internal: prefix `system_` or `_`, `ads_cluster`, `access_log_sink` or `admin`.
pub fn is_internal_name(value: &[u8]) -> bool {
    value.starts_with(b"system_")
        || value.starts_with(b"_")
        || value == b"ads_cluster"
        || value == b"access_log_sink"
        || value == b"admin"
}

/// Whether a family only ever describes internal entities: Envoy's admin listener
/// (`envoy_listener_admin_*`) or a stat prefix of ours embedded in the name.
pub fn is_internal_family(name: &str) -> bool {
    name.starts_with("envoy_listener_admin_") || name.contains(INTERNAL_STAT_INFIX)
}

/// A compiled list of selectors.
#[derive(Debug, Clone, Default)]
struct Compiled {
    exact: HashSet<String>,
    prefix: Vec<String>,
    contains: Option<AhoCorasick>,
    regex: Option<RegexSet>,
}

impl Compiled {
    fn new<'a>(selectors: impl IntoIterator<Item = &'a Selector>) -> Result<Self, regex::Error> {
        let mut c = Compiled::default();
        let mut contains = Vec::new();
        let mut regex = Vec::new();
        for s in selectors {
            match s.kind {
                Some(SelectorType::Exact) => {
                    c.exact.insert(s.pattern.clone());
                }
                Some(SelectorType::Prefix) => c.prefix.push(s.pattern.clone()),
                Some(SelectorType::Contains) => contains.push(s.pattern.clone()),
                Some(SelectorType::Regex) => regex.push(s.pattern.clone()),
                None => {} // refused by validation
            }
        }
        if !contains.is_empty() {
            c.contains = Some(AhoCorasick::new(&contains).expect("literal patterns compile"));
        }
        if !regex.is_empty() {
            c.regex = Some(RegexSet::new(&regex)?);
        }
        Ok(c)
    }

    fn matches(&self, name: &str) -> bool {
        self.exact.contains(name)
            || self.prefix.iter().any(|p| name.starts_with(p.as_str()))
            || self.contains.as_ref().is_some_and(|a| a.is_match(name))
            || self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.contains.is_none() && self.regex.is_none()
    }
}

/// The compiled profile filter for Envoy metric families. Build once per config.
#[derive(Debug, Clone)]
pub struct FamilyFilter {
    all: bool,
    basic: Option<Compiled>,
    include: Compiled,
    exclude: Compiled,
    drop_internal: bool,
}

impl FamilyFilter {
    /// Compiles `profiles` (None = the default, `Basic`).
    ///
    /// Errors: a Regex selector that does not compile (validation rejects those earlier).
    pub fn new(profiles: Option<&Profiles>) -> Result<Self, regex::Error> {
        let names: Vec<ProfileName> = profiles
            .and_then(|p| p.append_profiles.as_ref())
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().filter_map(|p| p.name).collect())
            .unwrap_or_else(|| vec![ProfileName::Basic]);
        let all = names.contains(&ProfileName::All);
        let basic = names.contains(&ProfileName::Basic);
        let basic = basic.then(|| Compiled {
            exact: BASIC_EXACT.iter().map(|s| s.to_string()).collect(),
            prefix: BASIC_PREFIX.iter().map(|s| s.to_string()).collect(),
            contains: Some(AhoCorasick::new(BASIC_CONTAINS).expect("literal patterns compile")),
            ..Default::default()
        });
        let include = Compiled::new(profiles.and_then(|p| p.include.as_ref()).into_iter().flatten())?;
        let exclude = Compiled::new(profiles.and_then(|p| p.exclude.as_ref()).into_iter().flatten())?;
        Ok(Self {
            all,
            drop_internal: !all && basic.is_some(),
            basic,
            include,
            exclude,
        })
    }

    /// Whether the family `name` is kept.
    pub fn keep_family(&self, name: &str) -> bool {
        if !self.include.is_empty() && self.include.matches(name) {
            return true;
        }
        let kept = self.all
            || self
                .basic
                .as_ref()
                .is_some_and(|b| b.matches(name) && !(self.drop_internal && is_internal_family(name)));
        kept && !self.exclude.matches(name)
    }

    /// Whether series naming an internal entity must be dropped (Basic is the broadest profile).
    pub fn drops_internal(&self) -> bool {
        self.drop_internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meshmetric::Profile;

    fn mk(
        profiles: &[ProfileName],
        include: &[(SelectorType, &str)],
        exclude: &[(SelectorType, &str)],
    ) -> FamilyFilter {
        let sel = |l: &[(SelectorType, &str)]| {
            Some(
                l.iter()
                    .map(|(k, m)| Selector {
                        kind: Some(*k),
                        pattern: m.to_string(),
                    })
                    .collect(),
            )
        };
        let p = Profiles {
            append_profiles: Some(profiles.iter().map(|n| Profile { name: Some(*n) }).collect()),
            include: sel(include),
            exclude: sel(exclude),
        };
        FamilyFilter::new(Some(&p)).unwrap()
    }

    #[test]
    fn basic_keeps_its_selectors_only() {
        let f = FamilyFilter::new(None).unwrap();
        assert!(f.keep_family("envoy_cluster_upstream_rq_total"));
        assert!(f.keep_family("envoy_server_uptime"));
        assert!(f.keep_family("envoy_cluster_membership_healthy"));
        assert!(!f.keep_family("envoy_cluster_lb_zone_routing_all_directly"));
        assert!(!f.keep_family("envoy_listener__meshmetric_config_downstream_cx_total"));
        assert!(!f.keep_family("envoy_listener_admin_downstream_cx_total"));
        assert!(f.keep_family("envoy_listener_downstream_cx_total"));
        assert!(f.drops_internal());
    }

    #[test]
    fn all_none_include_exclude() {
        let f = mk(&[ProfileName::All], &[], &[(SelectorType::Regex, "lb_.*zone")]);
        assert!(f.keep_family("envoy_cluster_version"));
        assert!(!f.keep_family("envoy_cluster_lb_zone_routing_all_directly"));
        assert!(!f.drops_internal());
        let f = mk(
            &[ProfileName::None],
            &[(SelectorType::Exact, "envoy_cluster_version")],
            &[],
        );
        assert!(f.keep_family("envoy_cluster_version"));
        assert!(!f.keep_family("envoy_server_uptime"));
        // include wins over exclude
        let f = mk(
            &[ProfileName::Basic],
            &[(SelectorType::Prefix, "envoy_server_live")],
            &[(SelectorType::Prefix, "envoy_server")],
        );
        assert!(f.keep_family("envoy_server_live"));
        assert!(!f.keep_family("envoy_server_uptime"));
        let f = mk(
            &[ProfileName::Basic, ProfileName::All],
            &[],
            &[(SelectorType::Contains, "uptime")],
        );
        assert!(!f.keep_family("envoy_server_uptime"));
        assert!(!f.drops_internal());
    }

    #[test]
    fn internal_names() {
        for n in ["system_x", "_meshmetric_dp", "ads_cluster", "access_log_sink", "admin"] {
            assert!(is_internal_name(n.as_bytes()), "{n}");
        }
        for n in ["localhost_8080", "web", "administrator"] {
            assert!(!is_internal_name(n.as_bytes()), "{n}");
        }
    }
}
