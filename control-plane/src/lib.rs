//! meshmetric control plane, in three layers, data flowing one way:
//!
//! ```text
//! state:    files, api (REST) ──► store (resources, change log) ◄──► persist (SQLite / PostgreSQL)
//! derived:                        index (per proxy: merged policy, config, listeners; TLS readiness)
//! serving:                        ads (Envoy, via xds)        MonitoringAssignments (MADS, HTTP SD)
//! ```
//!
//! The binaries (`meshmetric-cp`, `meshmetricctl`) only wire these together.

pub mod ads;
pub mod api;
pub mod files;
pub mod index;
pub mod inspect;
pub mod persist;
pub mod store;
pub mod tls;
pub mod xds;
