//! MADS (Monitoring Assignment Discovery Service, `kuma.observability.v1`) and Prometheus HTTP
//! SD: which proxies each Prometheus (identified by its `clientId`) scrapes.
//!
//! - [`assign`]: MonitoringAssignments from each proxy's merged config, grouped per client,
//!   each client's response encoded once per change with a content version;
//! - [`http`]: `POST /v3/discovery:monitoringassignments` (protobuf-JSON or binary protobuf,
//!   `fetch-timeout` long-poll, 304 when unchanged) as Prometheus's `kuma_sd_configs` speaks it,
//!   and `GET /v1/http-sd` for `http_sd_configs`;
//! - [`grpc`]: the `MonitoringAssignmentDiscoveryService` gRPC service (Fetch and Stream).

pub mod assign;
pub mod grpc;
pub mod http;

pub use assign::{Assignments, ClientView, DEFAULT_CLIENT, ProxyInput};
