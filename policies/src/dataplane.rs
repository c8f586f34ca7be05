//! The `Dataplane` resource: one proxy (Envoy + meshmetric-dp) and the workload beside it, in
//! Kuma 2.14's shape (`api/mesh/v1alpha1/dataplane.proto`).
//!
//! What this project uses: `networking.address`, `inbound[]` (ports, tags, names),
//! `gateway` (proxy role, gateway tags), `listeners[]` (zone ingress/egress roles and ports),
//! `admin.port`. Kuma's other fields (`outbound`, `transparentProxying`, `metrics`, `probes`,
//! inbound health and probes) are accepted and kept as given, so a Dataplane written for Kuma
//! is stored unchanged; they drive nothing here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::meta::{Meta, WORKLOAD_LABEL};
use crate::values::Port;
use crate::violation::Violations;

/// Tag naming the service of an inbound.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// Kuma's name for a Dataplane without any service.
pub const SERVICE_UNKNOWN: &str = "unknown";
/// Label Kuma puts on Kubernetes Dataplanes: their namespace.
pub const NAMESPACE_LABEL: &str = "k8s.kuma.io/namespace";

/// A Dataplane: metadata plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    /// Identity and labels.
    pub meta: Meta,
    /// `networking` and the fields beside it.
    pub spec: DataplaneSpec,
}

/// The spec of a Dataplane (Universal: the top-level fields beside `type`, `name`, `mesh`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneSpec {
    /// Addresses, inbounds, gateway, listeners, admin.
    #[serde(default)]
    pub networking: Networking,
    /// Kuma's per-proxy metrics backend (accepted, not used: MeshMetric replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    /// Kuma's virtual probes (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Value>,
}

/// `networking` of a Dataplane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// IP address of the proxy; Prometheus listeners bind here.
    #[serde(default)]
    pub address: String,
    /// Address other proxies use (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    /// The workload's inbound ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    /// Outbounds (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Value>,
    /// Present when the proxy is a gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    /// Transparent proxying settings (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<Value>,
    /// Envoy's admin port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// Zone ingress / egress listeners of a zone proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
}

/// One inbound: Envoy listens on `address (or networking.address):port` and forwards to
/// `serviceAddress:servicePort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Name of the inbound (Kuma's section name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port Envoy listens on (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Port of the workload; default `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<Port>,
    /// Address of the workload; default 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    /// Address Envoy listens on for this inbound; default `networking.address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Tags of the inbound (`kuma.io/service` among them).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Application protocol (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Health (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
    /// Service probe (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_probe: Option<Value>,
    /// State (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

impl Inbound {
    /// The workload port (defaults to `port`).
    pub fn workload_port(&self) -> Option<Port> {
        self.service_port.or(self.port)
    }
}

/// `networking.gateway`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Tags of the gateway (`kuma.io/service` among them); a MeshGateway selects builtin
    /// gateways by them.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `DELEGATED` (default; a third-party gateway beside Envoy) or `BUILTIN`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<GatewayType>,
}

/// `networking.gateway.type` (Kuma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GatewayType {
    /// A gateway outside Envoy that Envoy fronts (default).
    #[serde(rename = "DELEGATED")]
    Delegated,
    /// Envoy is the gateway, configured by a MeshGateway.
    #[serde(rename = "BUILTIN")]
    Builtin,
}

/// `networking.listeners[]`: a zone proxy's listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// `ZoneIngress` or `ZoneEgress`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ListenerType>,
    /// Address; default `networking.address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Name (Kuma's section name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// State (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

/// `networking.listeners[].type` (Kuma).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ListenerType {
    /// Not a zone proxy listener.
    Unspecified,
    /// Accepts traffic from other zones.
    ZoneIngress,
    /// Sends traffic to other zones and external services.
    ZoneEgress,
}

/// `networking.admin`: Envoy's admin port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
}

/// What a proxy is (Kuma's `kuma.proxy_role` label values, a stable metric contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyRole {
    /// Beside a workload.
    Sidecar,
    /// A builtin or delegated gateway.
    Gateway,
    /// A zone proxy with only ingress listeners.
    ZoneIngress,
    /// A zone proxy with only egress listeners.
    ZoneEgress,
    /// A zone proxy with both.
    ZoneProxy,
}

impl ProxyRole {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Gateway => "gateway",
            Self::ZoneIngress => "zone-ingress",
            Self::ZoneEgress => "zone-egress",
            Self::ZoneProxy => "zone-proxy",
        }
    }
}

impl Dataplane {
    /// The networking section.
    pub fn networking(&self) -> &Networking {
        &self.spec.networking
    }

    /// The xDS `node.id` of this proxy: `<mesh>.<name>`.
    pub fn node_id(&self) -> String {
        crate::contract::node_id(&self.meta.mesh, &self.meta.name)
    }

    /// The `kuma.io/service` tags of all inbounds.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.spec
            .networking
            .inbound
            .iter()
            .filter_map(|i| i.tags.get(SERVICE_TAG).map(String::as_str))
    }

    /// Whether the proxy is a builtin gateway (Envoy configured by a MeshGateway).
    pub fn is_builtin_gateway(&self) -> bool {
        self.spec
            .networking
            .gateway
            .as_ref()
            .is_some_and(|g| g.kind == Some(GatewayType::Builtin))
    }

    /// Whether the proxy is a delegated gateway.
    pub fn is_delegated_gateway(&self) -> bool {
        self.spec
            .networking
            .gateway
            .as_ref()
            .is_some_and(|g| g.kind != Some(GatewayType::Builtin))
    }

    /// Whether the proxy has only zone ingress/egress listeners and no workload.
    pub fn is_zone_proxy_only(&self) -> bool {
        let n = &self.spec.networking;
        n.inbound.is_empty() && n.gateway.is_none() && self.zone_listener_kinds().next().is_some()
    }

    fn zone_listener_kinds(&self) -> impl Iterator<Item = ListenerType> {
        self.spec
            .networking
            .listeners
            .iter()
            .filter_map(|l| l.kind)
            .filter(|k| matches!(k, ListenerType::ZoneIngress | ListenerType::ZoneEgress))
    }

    /// The proxy's role, as Kuma 2.14 derives it (`deriveProxyRole`).
    pub fn proxy_role(&self) -> ProxyRole {
        if self.spec.networking.gateway.is_some() {
            return ProxyRole::Gateway;
        }
        let (mut ingress, mut egress) = (false, false);
        for k in self.zone_listener_kinds() {
            match k {
                ListenerType::ZoneIngress => ingress = true,
                ListenerType::ZoneEgress => egress = true,
                ListenerType::Unspecified => {}
            }
        }
        match (ingress, egress) {
            (true, true) => ProxyRole::ZoneProxy,
            (true, false) => ProxyRole::ZoneIngress,
            (false, true) => ProxyRole::ZoneEgress,
            (false, false) => ProxyRole::Sidecar,
        }
    }

    /// Every tag of every inbound and of the gateway, with all its values (Kuma's `TagSet`).
    pub fn tag_set(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let n = &self.spec.networking;
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let gateway = n.gateway.iter().map(|g| &g.tags);
        for tags in n.inbound.iter().map(|i| &i.tags).chain(gateway) {
            for (k, v) in tags {
                out.entry(k.as_str()).or_default().insert(v.as_str());
            }
        }
        out
    }

    /// The tag maps an inbound-tag selector is matched against: every inbound's, and the
    /// gateway's (Kuma's `SingleValueTagSets`).
    pub fn tag_maps(&self) -> impl Iterator<Item = &BTreeMap<String, String>> {
        let n = &self.spec.networking;
        n.inbound
            .iter()
            .map(|i| &i.tags)
            .chain(n.gateway.iter().map(|g| &g.tags))
    }

    /// The name that identifies the proxy's workload (Kuma's `IdentifyingName` with inbound
    /// tags enabled): the smallest `kuma.io/service` value, else `unknown`.
    pub fn identifying_service(&self) -> &str {
        self.tag_set()
            .get(SERVICE_TAG)
            .and_then(|s| s.first().copied())
            .unwrap_or(SERVICE_UNKNOWN)
    }

    /// The workload label (`kuma.io/workload`), if any.
    pub fn workload(&self) -> Option<&str> {
        self.meta.labels.get(WORKLOAD_LABEL).map(String::as_str)
    }

    /// Every port the proxy listens on that a metrics listener must not take, with what uses
    /// it: inbound ports, zone listener ports and the admin port.
    pub fn taken_ports(&self) -> Vec<(Port, String)> {
        let n = &self.spec.networking;
        let mut out = Vec::new();
        for (i, ib) in n.inbound.iter().enumerate() {
            if let Some(p) = ib.port {
                out.push((p, format!("inbound[{i}]")));
            }
        }
        for (i, l) in n.listeners.iter().enumerate() {
            if let Some(p) = l.port {
                out.push((p, format!("listeners[{i}]")));
            }
        }
        if let Some(p) = n.admin.as_ref().and_then(|a| a.port) {
            out.push((p, "the admin port".to_string()));
        }
        out
    }
}

/// Validates a Dataplane's spec (`prefix` is the field path of `networking`'s parent, e.g.
/// `spec` or empty for Universal documents).
pub fn validate_dataplane(dp: &Dataplane, prefix: &str) -> Violations {
    let at = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}.{f}")
        }
    };
    let mut v = Violations::default();
    let n = &dp.spec.networking;
    if n.address.parse::<std::net::IpAddr>().is_err() {
        v.push(
            at("networking.address"),
            format!("{:?} is not an IP address; accepted: e.g. 10.0.0.1", n.address),
        );
    }
    let mut ports = BTreeMap::new();
    for (i, ib) in n.inbound.iter().enumerate() {
        let f = at(&format!("networking.inbound[{i}]"));
        match ib.port {
            None => {
                if !v.names(&format!("{f}.port")) {
                    v.push(format!("{f}.port"), "required; accepted: a port 1-65535")
                }
            }
            Some(p) => {
                if let Some(j) = ports.insert(p, i) {
                    v.push(format!("{f}.port"), format!("port {p} is already used by inbound[{j}]"));
                }
            }
        }
        // Kuma: an inbound with tags needs kuma.io/service; one without tags is the newer form
        if !ib.tags.is_empty() && !ib.tags.contains_key(SERVICE_TAG) {
            v.push(format!("{f}.tags[{SERVICE_TAG:?}]"), "tag has to exist");
        }
    }
    if let Some(g) = &n.gateway {
        let kind = if g.kind == Some(GatewayType::Builtin) {
            "builtin"
        } else {
            "delegated"
        };
        if !n.inbound.is_empty() {
            v.push(
                at("networking.inbound"),
                format!("inbound cannot be defined for {kind} gateways"),
            );
        }
        if !n.listeners.is_empty() {
            v.push(
                at("networking.listeners"),
                format!("listeners cannot be defined for {kind} gateways"),
            );
        }
        if !g.tags.is_empty() && !g.tags.contains_key(SERVICE_TAG) {
            v.push(
                at("networking.gateway.tags"),
                format!("mandatory tag {SERVICE_TAG:?} is missing"),
            );
        }
    }
    if let Some(admin) = n.admin.as_ref().and_then(|a| a.port)
        && n.inbound.iter().any(|i| i.port == Some(admin))
    {
        v.push(at("networking.admin.port"), "must differ from inbound");
    }
    for (i, l) in n.listeners.iter().enumerate() {
        if l.port.is_none() {
            v.push(
                at(&format!("networking.listeners[{i}].port")),
                "required; accepted: a port 1-65535",
            );
        }
    }
    v
}
