//! meshmetric-dp: the in-pod dataplane plugin, one pipeline flowing one way:
//!
//! ```text
//! config (poll Envoy's config socket) ──► pipeline: scrape ─► parse + limits ─► filter + merge ─► encode
//!                                                                                      │
//!                              outputs, side by side: serve (Prometheus endpoint) ◄────┤
//!                                                      otlp (one exporter per backend) ◄┘
//! ```
//!
//! [`config`] turns the control plane's document into an [`config::ActiveConfig`];
//! [`pipeline`] runs collections ([`client`] fetches, [`parse`] parses, [`merge`] filters,
//! merges and encodes, [`selfmetrics`] adds the plugin's own metrics); [`serve`] and [`otlp`]
//! consume the shared collection; [`bootstrap`] writes Envoy's bootstrap.

pub mod bootstrap;
pub mod client;
pub mod config;
pub mod merge;
pub mod otlp;
pub mod parse;
pub mod pipeline;
pub mod selfmetrics;
pub mod serve;
