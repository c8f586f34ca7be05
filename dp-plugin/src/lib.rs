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
//!
//! ```
//! use meshmetric_dp::merge::{ExtraLabels, MergeStats, Origin, merge_encode};
//! use meshmetric_dp::parse::{Format, ParseStats, parse};
//! use meshmetric_policies::profiles::FamilyFilter;
//!
//! let mut st = ParseStats::default();
//! let envoy = parse("# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n", Format::Text, &mut st);
//! let app = parse("# TYPE hits_total counter\nhits_total{mesh=\"x\"} 3\n", Format::Text, &mut st);
//! let extra = ExtraLabels::new([("mesh", "default")]);
//! let mut out = Vec::new();
//! let filter = FamilyFilter::new(None).unwrap(); // Basic
//! merge_encode(&[(Origin::Envoy, &envoy), (Origin::Application, &app)], &filter, &extra, &mut out, &mut MergeStats::default());
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.contains("envoy_server_live{mesh=\"default\"} 1"));
//! assert!(text.contains("hits_total{exported_mesh=\"x\",mesh=\"default\"} 3"));
//! ```

pub mod bootstrap;
pub mod client;
pub mod config;
pub mod limits;
pub mod merge;
pub mod otlp;
pub mod parse;
pub mod pipeline;
pub mod push;
pub mod selfmetrics;
pub mod serve;
