//! Protocol definitions for meshmetric: the MADS (`kuma.observability.v1`) messages and gRPC
//! service, generated at build time from `proto/` (Kuma's `mads.proto`). Envoy's discovery
//! messages come from `envoy-types`, so there is one prost/tonic version in the graph.
//!
//! Conversions to and from these types live where they are used (the `mads` crate).
//!
//! ```
//! use meshmetric_proto::observability::v1::MonitoringAssignment;
//! assert_eq!(
//!     <MonitoringAssignment as prost::Name>::type_url(),
//!     meshmetric_proto::MONITORING_ASSIGNMENT_TYPE_URL
//! );
//! ```

/// `kuma.observability.v1`.
pub mod observability {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("kuma.observability.v1");
    }
}

/// Type URL of a MADS `MonitoringAssignment` resource.
pub const MONITORING_ASSIGNMENT_TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

impl prost::Name for observability::v1::MonitoringAssignment {
    const NAME: &'static str = "MonitoringAssignment";
    const PACKAGE: &'static str = "kuma.observability.v1";
    fn full_name() -> String {
        "kuma.observability.v1.MonitoringAssignment".into()
    }
    fn type_url() -> String {
        MONITORING_ASSIGNMENT_TYPE_URL.into()
    }
}
