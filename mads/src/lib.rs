//! MADS (Monitoring Assignment Discovery Service, `kuma.observability.v1`) and Prometheus HTTP
//! SD: which proxies each Prometheus (identified by its `clientId`) scrapes.
//!
//! - [`assign`]: MonitoringAssignments from each proxy's merged config, grouped per client,
//!   each client's response encoded once per change with a content version;
//! - [`http`]: `POST /v3/discovery:monitoringassignments` (protobuf-JSON or binary protobuf,
//!   `fetch-timeout` long-poll, 304 when unchanged) as Prometheus's `kuma_sd_configs` speaks it,
//!   and `GET /v1/http-sd` for `http_sd_configs`;
//! - [`grpc`]: the `MonitoringAssignmentDiscoveryService` gRPC service (Fetch and Stream).
//!
//! ```
//! use meshmetric_mads::{Assignments, ProxyInput};
//! use meshmetric_policies::{ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents};
//!
//! let docs = parse_documents(
//!     "type: Dataplane\nname: web-01\nnetworking: {address: 10.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n\
//!      ---\ntype: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main}}]}}\n",
//! )
//! .unwrap();
//! let (Resource::Dataplane(dp), Resource::MeshMetric(mm)) = (&docs[0], &docs[1]) else { unreachable!() };
//! let metrics = ProxyMetrics::build(dp, effective_conf([mm], dp, None), ProxyContext::default());
//! let a = Assignments::generate([ProxyInput { dataplane: dp, metrics: &metrics }]);
//! let target = &a.for_client("main").assignments[0].targets[0];
//! assert_eq!(target.address, "10.0.0.1:5670");
//! ```

pub mod assign;
pub mod grpc;
pub mod http;
pub mod stats;

pub use assign::{Assignments, ClientView, DEFAULT_CLIENT, ProxyInput};
