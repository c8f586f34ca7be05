//! OTLP export: one isolated exporter per OpenTelemetry backend, each with its own queue,
//! connection and retry state (see `docs/otlp.md`).
//!
//! The producer maps the shared collection onto the OTLP data model and `encode` writes the
//! protobuf request directly (the same bytes prost writes for the `opentelemetry-proto` request
//! the producer can also build): the OpenTelemetry Rust SDK cannot carry scraped metrics
//! faithfully.

mod encode;
pub mod exporter;
mod points;
pub mod producer;
pub mod settings;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use meshmetric_policies::headers::SecretSources;
use meshmetric_policies::meshmetric::BackendType;

use crate::config::ActiveConfig;
use crate::pipeline::Pipeline;
use crate::selfmetrics::Registry;
use exporter::Exporter;
use settings::ExporterSettings;

/// Keeps one exporter per OpenTelemetry backend of the current config: starts new ones,
/// restarts those whose settings changed, stops removed ones (freeing their queues) and
/// leaves unchanged ones running.
///
/// `sources` is what the pod owner lets headers read; a backend that breaks it is not started
/// and the reason is logged.
pub async fn manage(
    mut config: watch::Receiver<Arc<ActiveConfig>>,
    pipeline: Arc<Pipeline>,
    registry: Arc<Registry>,
    sources: SecretSources,
) {
    let mut running: BTreeMap<String, Exporter> = BTreeMap::new();
    loop {
        let cfg = config.borrow_and_update().clone();
        let m = cfg.config.metrics();
        let mut desired: BTreeMap<String, ExporterSettings> = BTreeMap::new();
        let own = pipeline
            .push()
            .and_then(|p| crate::push::addr::own_addresses(m, &p.overrides()));
        for b in m.backends.iter().filter(|b| b.kind == BackendType::OpenTelemetry) {
            let Some(o) = &b.open_telemetry else { continue };
            match ExporterSettings::resolve(o, &|k| std::env::var(k).ok(), &sources) {
                Ok(s) if own.is_some_and(|own| crate::push::addr::is_own_endpoint(&s.endpoint, own)) => {
                    tracing::warn!(backend = %b.name, endpoint = %s.endpoint, "OpenTelemetry backend not started: it is this plugin's own OTLP receiver (it would feed the plugin its own output)");
                }
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
                .or_insert_with(|| Exporter::spawn(s, pipeline.clone(), m.extra_labels.clone()));
        }
        registry.set_exporters(running.iter().map(|(k, v)| (k.clone(), v.stats.clone())));
        if config.changed().await.is_err() {
            return;
        }
    }
}
