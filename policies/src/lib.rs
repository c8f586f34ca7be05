//! MeshMetric, MeshOpenTelemetryBackend, MeshGateway and Dataplane resources for meshmetric.
//!
//! This crate is pure (no I/O, no async): it parses resource documents (Kuma's Universal and
//! Kubernetes forms, JSON or multi-document YAML) into typed values ([`values`], enums for
//! every enumerated field), validates them with field-path violations and warnings, matches
//! MeshMetric `targetRef`s to Dataplanes and merges the matching policies into one effective
//! [`Conf`] per proxy (Kuma 2.14's rules), derives each proxy's metrics state
//! ([`proxy::ProxyMetrics`]: the CP→DP config, its Prometheus listeners, the backends left
//! out and why), compiles profiles into a [`profiles::FamilyFilter`], and holds the names the
//! control plane and the plugin share ([`contract`]).
//!
//! Every validation rule lives here once; the REST API, the CLI and the control plane all call
//! [`parse_documents_all`].
//!
//! ```
//! use meshmetric_policies::{Resource, parse_documents_all};
//!
//! let parsed = parse_documents_all(
//!     "type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{path: metrics/prometheus, port: 8888}]\n",
//! );
//! assert!(parsed.errors.is_empty());
//! let Resource::MeshMetric(m) = &parsed.resources[0] else { unreachable!() };
//! let app = &m.spec.default.applications.as_ref().unwrap()[0];
//! assert_eq!(app.path_or_default(), "/metrics/prometheus"); // normalised, as Kuma accepts it
//! ```

#![warn(missing_docs)]

pub mod contract;
pub mod dataplane;
pub mod document;
pub mod dpconfig;
pub mod headers;
pub mod matching;
pub mod meshgateway;
pub mod meshmetric;
pub mod meta;
pub mod otelbackend;
pub mod ownership;
pub mod profiles;
pub mod proxy;
pub mod relabel;
pub mod render;
pub mod schema;
pub mod targetref;
pub mod validate;
pub mod values;
pub mod violation;

pub use dataplane::Dataplane;
pub use document::{DocumentWarning, ParseError, Parsed, Resource, ResourceKind, parse_documents, parse_documents_all};
pub use dpconfig::DpConfig;
pub use matching::{Contribution, effective_conf};
pub use meshgateway::MeshGateway;
pub use meshmetric::{Conf, MeshMetric};
pub use meta::Meta;
pub use otelbackend::MeshOpenTelemetryBackend;
pub use proxy::{Naming, ProxyContext, ProxyMetrics};
pub use violation::{Violation, Violations, Warning};
