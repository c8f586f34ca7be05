//! Protocol definitions for meshmetric. The MADS (`kuma.observability.v1`) messages and the
//! gRPC service arrive with the MADS issue; until then this crate only names the type URLs the
//! other crates share.

/// Type URL of a MADS `MonitoringAssignment` resource.
pub const MONITORING_ASSIGNMENT_TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";
