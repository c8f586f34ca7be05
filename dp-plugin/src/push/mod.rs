//! Push input: an OTLP metrics receiver (gRPC `MetricsService/Export` and HTTP `POST
//! /v1/metrics`, protobuf or JSON, gzip) whose data joins every collection as one more
//! application per sender (see `docs/push.md`).
//!
//! ```text
//! app (OTel SDK) ─► receiver (grpc | http) ─► Store: per sender, per series, cumulative state
//!                                                   │ render (Prometheus text, per sender)
//!                       pipeline::collect_once ◄────┘ = one application source each
//! ```
//!
//! The conversion follows the OpenTelemetry specification "Prometheus and OpenMetrics
//! Compatibility" (OTLP → Prometheus): name normalisation with unit and `_total` suffixes,
//! `otel_scope_name`/`otel_scope_version` labels, resource attributes as `target_info`,
//! `job`/`instance` from `service.namespace`/`service.name` and `service.instance.id`, delta
//! sums and histograms accumulated to cumulative, explicit-bucket histograms as classic
//! histograms, exponential histograms as classic histograms on their own bucket boundaries.

pub mod addr;
pub mod convert;
pub mod server;
pub mod wire;

pub use convert::{Forwarded, Ingested, PushLimits, Store};
pub use server::manage;
