//! meshmetric control plane, in three layers, data flowing one way:
//!
//! ```text
//! state:    files, api (REST) ──► store (resources, change log) ◄──► persist (SQLite / PostgreSQL)
//! derived:                        index (per proxy: merged policy, config, listeners; TLS readiness)
//! serving:                        ads (Envoy, via xds)        MonitoringAssignments (MADS, HTTP SD)
//! ```
//!
//! The binaries (`meshmetric-cp`, `meshmetricctl`) only wire these together.
//!
//! ```
//! use meshmetric_control_plane::store::Store;
//! use meshmetric_policies::parse_documents;
//!
//! let store = Store::default();
//! store.apply(parse_documents(
//!     "type: Dataplane\nname: web-01\nnetworking: {address: 10.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n",
//! ).unwrap());
//! // a policy putting a metrics listener on web-01's inbound port is refused before it is stored
//! let policy = parse_documents(
//!     "type: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 8080}}]}}\n",
//! ).unwrap();
//! let check = store.check_apply(&policy);
//! assert_eq!(check.violations[0].1.0[0].field, "spec.default.backends[0].prometheus.port");
//! ```

pub mod ads;
pub mod api;
pub mod files;
pub mod index;
pub mod insight;
pub mod inspect;
pub mod persist;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod xds;
