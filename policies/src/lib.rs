//! MeshMetric and Dataplane resources for meshmetric.
//!
//! This crate is pure (no I/O, no async): it parses resource documents (Kuma's Universal and
//! Kubernetes forms, JSON or multi-document YAML), validates them with field-path violations,
//! matches MeshMetric `targetRef`s to Dataplanes, merges the matching policies into one effective
//! [`Conf`] per proxy (Kuma's JSON Merge Patch rules), compiles profiles into a
//! [`profiles::FamilyFilter`] and builds the CP→DP config ([`dpconfig::DpConfig`]).
//!
//! Every validation rule lives here once; the REST API, the CLI and the control plane call
//! [`validate::validate_meshmetric`] and [`validate::validate_dataplane`].

pub mod dataplane;
pub mod document;
pub mod dpconfig;
pub mod matching;
pub mod meshmetric;
pub mod profiles;
pub mod schema;
pub mod validate;

pub use dataplane::Dataplane;
pub use document::{Meta, ParseError, Resource, parse_documents, parse_documents_all};
pub use dpconfig::DpConfig;
pub use matching::{Contribution, effective_conf};
pub use meshmetric::{Conf, MeshMetric};
pub use validate::{Violation, Violations};
