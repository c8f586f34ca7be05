//! OTLP export: one isolated exporter per OpenTelemetry backend (DESIGN.md §4.8, §5).
//!
//! The producer builds the OTLP data model (`opentelemetry-proto` types) from the shared
//! collection: the OpenTelemetry Rust SDK cannot carry scraped metrics faithfully.

pub mod exporter;
pub mod producer;
pub mod settings;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::collect::Collector;
use crate::config::ActiveConfig;
use exporter::{Exporter, ExporterStats};
use meshmetric_policies::meshmetric::BackendType;
use settings::ExporterSettings;

/// The exporters' counters, by backend name, for self-metrics.
pub type Registry = Arc<Mutex<BTreeMap<String, Arc<ExporterStats>>>>;

/// Keeps one exporter per OpenTelemetry backend of the current config: starts new ones,
/// restarts those whose settings changed, stops removed ones (freeing their queues) and
/// leaves unchanged ones running.
pub async fn manage(mut config: watch::Receiver<Arc<ActiveConfig>>, collector: Arc<Collector>, registry: Registry) {
    let mut running: BTreeMap<String, Exporter> = BTreeMap::new();
    loop {
        let cfg = config.borrow_and_update().clone();
        let m = cfg.config.metrics();
        let mut desired: BTreeMap<String, ExporterSettings> = BTreeMap::new();
        for b in m.backends.iter().filter(|b| b.kind == BackendType::OpenTelemetry) {
            let Some(o) = &b.open_telemetry else { continue };
            match ExporterSettings::resolve(o, &|k| std::env::var(k).ok()) {
                Ok(s) => {
                    desired.insert(b.name.clone(), s);
                }
                Err(e) => tracing::warn!(backend = %b.name, error = %e, "OpenTelemetry backend not started"),
            }
        }
        running.retain(|backend, ex| {
            let keep = desired.get(backend) == Some(&ex.settings);
            if !keep {
                tracing::info!(%backend, "OTLP exporter stopped");
            }
            keep
        });
        for (backend, s) in desired {
            running
                .entry(backend)
                .or_insert_with(|| Exporter::spawn(s, collector.clone(), m.extra_labels.clone()));
        }
        {
            let mut r = registry.lock().expect("registry lock");
            *r = running.iter().map(|(k, v)| (k.clone(), v.stats.clone())).collect();
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}
