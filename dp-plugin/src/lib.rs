//! meshmetric-dp: the in-pod dataplane plugin. Polls its metrics config from Envoy, scrapes
//! Envoy's admin stats and the applications, filters (profiles), merges and serves the result
//! as Prometheus text.

pub mod bootstrap;
pub mod collect;
pub mod config;
pub mod http;
pub mod merge;
pub mod otlp;
pub mod parse;
pub mod serve;
