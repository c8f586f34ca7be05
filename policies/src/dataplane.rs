//! The `Dataplane` resource: one proxy (Envoy + meshmetric-dp) and the workload beside it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::document::Meta;

/// Tag naming the service of an inbound.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// Label naming the workload of a Dataplane.
pub const WORKLOAD_LABEL: &str = "kuma.io/workload";
/// Label naming the zone of a Dataplane.
pub const ZONE_LABEL: &str = "kuma.io/zone";

/// A Dataplane: metadata plus `networking`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    pub meta: Meta,
    pub networking: Networking,
}

impl Dataplane {
    /// The xDS `node.id` of this proxy: `<mesh>.<name>`.
    pub fn node_id(&self) -> String {
        format!("{}.{}", self.meta.mesh, self.meta.name)
    }
    /// All inbound tags of all inbounds, for `MeshSubset` style matching.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.networking
            .inbound
            .iter()
            .filter_map(|i| i.tags.get(SERVICE_TAG).map(String::as_str))
    }
}

/// `networking` of a Dataplane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// IP address of the proxy; Prometheus listeners bind here.
    pub address: String,
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
}

/// One inbound: Envoy listens on `address:port` and forwards to `serviceAddress:servicePort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Inbound {
    /// The workload port (defaults to `port`).
    pub fn workload_port(&self) -> u16 {
        u16::try_from(self.service_port.unwrap_or(self.port)).unwrap_or(0)
    }
}

/// `networking.admin`: Envoy's admin port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    pub port: i64,
}
