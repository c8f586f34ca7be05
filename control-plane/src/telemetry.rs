//! The control plane's own metrics, instrumented with the OpenTelemetry SDK and read two ways:
//! as Prometheus text on the API address (`GET /metrics`, through `opentelemetry-prometheus`),
//! and, when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is set,
//! pushed over OTLP/gRPC by `opentelemetry-otlp` (configured by the standard
//! `OTEL_EXPORTER_OTLP_*` variables, `OTEL_METRIC_EXPORT_INTERVAL`).
//!
//! Instruments are named as OpenTelemetry recommends (dot-separated, a unit); the Prometheus
//! exporter turns `meshmetric.cp.xds.ack.duration` with unit `s` into
//! `meshmetric_cp_xds_ack_duration_seconds`. Every instrument is listed, with its labels and
//! meaning, in `docs/observability.md`.
//!
//! [`init`] installs the global meter provider; until then (and in unit tests) every
//! instrument is a no-op, so library code records unconditionally through [`metrics`].

use std::sync::{LazyLock, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The Prometheus exporter could not be built.
    #[error("the Prometheus exporter could not be built: {0}")]
    Prometheus(#[source] opentelemetry_sdk::error::OTelSdkError),
    /// The OTLP exporter could not be built from the `OTEL_EXPORTER_OTLP_*` variables.
    #[error("the OTLP metrics exporter could not be built: {0}")]
    Otlp(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// Boundaries (seconds) of the latency histograms: 1 ms to 1 min.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];
/// Boundaries of the "proxies affected by one change" histogram.
const PROXIES: [f64; 9] = [0.0, 1.0, 10.0, 100.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0];

/// The instruments.
pub struct Metrics {
    /// `meshmetric_cp_ads_streams{mesh}`: ADS streams connected.
    pub ads_streams: UpDownCounter<i64>,
    /// `meshmetric_cp_xds_pushes_total{type}`: responses sent on ADS streams.
    pub xds_pushes: Counter<u64>,
    /// `meshmetric_cp_xds_acks_total{type}`.
    pub xds_acks: Counter<u64>,
    /// `meshmetric_cp_xds_nacks_total{type}`.
    pub xds_nacks: Counter<u64>,
    /// `meshmetric_cp_xds_ack_duration_seconds`: from the change that produced a version to
    /// its ACK by the proxy.
    pub xds_ack_duration: Histogram<f64>,
    /// `meshmetric_cp_proxies_nacked`: proxies whose latest version is NACKed.
    pub proxies_nacked: UpDownCounter<i64>,
    /// `meshmetric_cp_index_recompute_duration_seconds{scope}`: recomputing derived state
    /// after a change (`scope` = `full` or `partial`).
    pub index_recompute: Histogram<f64>,
    /// `meshmetric_cp_index_proxies_affected`: proxies recomputed per change.
    pub index_proxies_affected: Histogram<u64>,
    /// `meshmetric_cp_store_writes_total{result}`: writes to the database (`ok`, `error`).
    pub store_writes: Counter<u64>,
    /// `meshmetric_cp_store_reload_duration_seconds`: from another instance's notification to
    /// this instance having reloaded.
    pub store_reload: Histogram<f64>,
    /// `meshmetric_cp_mads_clients`: MADS/HTTP SD clients (clientIds) with targets.
    pub mads_clients: Gauge<i64>,
    /// `meshmetric_cp_api_requests_total{method, route, status}`: REST API requests.
    pub api_requests: Counter<u64>,
    /// `meshmetric_cp_api_request_duration_seconds{method, route}`.
    pub api_duration: Histogram<f64>,
}

impl Metrics {
    fn new(m: &Meter) -> Self {
        Self {
            ads_streams: m
                .i64_up_down_counter("meshmetric.cp.ads.streams")
                .with_description("ADS streams connected, by mesh.")
                .build(),
            xds_pushes: m
                .u64_counter("meshmetric.cp.xds.pushes")
                .with_description("xDS responses sent on ADS streams, by resource type.")
                .build(),
            xds_acks: m
                .u64_counter("meshmetric.cp.xds.acks")
                .with_description("xDS responses the proxies accepted (ACK), by resource type.")
                .build(),
            xds_nacks: m
                .u64_counter("meshmetric.cp.xds.nacks")
                .with_description("xDS responses the proxies rejected (NACK), by resource type.")
                .build(),
            xds_ack_duration: m
                .f64_histogram("meshmetric.cp.xds.ack.duration")
                .with_unit("s")
                .with_description("Time from the change that produced a proxy's config to the proxy's ACK of it.")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            proxies_nacked: m
                .i64_up_down_counter("meshmetric.cp.proxies.nacked")
                .with_description("Proxies whose latest config version is rejected (NACK).")
                .build(),
            index_recompute: m
                .f64_histogram("meshmetric.cp.index.recompute.duration")
                .with_unit("s")
                .with_description("Time to recompute the derived state of the proxies a change affects.")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            index_proxies_affected: m
                .u64_histogram("meshmetric.cp.index.proxies.affected")
                .with_description("Proxies recomputed per change.")
                .with_boundaries(PROXIES.to_vec())
                .build(),
            store_writes: m
                .u64_counter("meshmetric.cp.store.writes")
                .with_description("Writes to the database, by result.")
                .build(),
            store_reload: m
                .f64_histogram("meshmetric.cp.store.reload.duration")
                .with_unit("s")
                .with_description(
                    "Time from another instance's change notification to this instance having reloaded the store.",
                )
                .with_boundaries(SECONDS.to_vec())
                .build(),
            mads_clients: m
                .i64_gauge("meshmetric.cp.mads.clients")
                .with_description("MADS clients (clientIds) that have targets.")
                .build(),
            api_requests: m
                .u64_counter("meshmetric.cp.api.requests")
                .with_description("REST API requests, by method, route and status.")
                .build(),
            api_duration: m
                .f64_histogram("meshmetric.cp.api.request.duration")
                .with_unit("s")
                .with_description("REST API request duration, by method and route.")
                .with_boundaries(SECONDS.to_vec())
                .build(),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(&opentelemetry::global::meter("meshmetric-cp")));
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
static PROVIDER: OnceLock<SdkMeterProvider> = OnceLock::new();

/// The instruments (no-ops until [`init`]).
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// One attribute.
pub fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

/// Installs the global meter provider: the Prometheus reader behind [`render`] and, when an
/// OTLP endpoint is configured in the environment, a periodic OTLP/gRPC exporter. Call once,
/// before anything records. `instance` becomes the resource attribute `service.instance.id`.
pub fn init(instance: &str) -> Result<(), TelemetryError> {
    let registry = prometheus::Registry::new();
    let reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()
        .map_err(TelemetryError::Prometheus)?;
    let resource = Resource::builder()
        .with_service_name("meshmetric-cp")
        .with_attribute(KeyValue::new("service.instance.id", instance.to_string()))
        .build();
    let mut builder = SdkMeterProvider::builder().with_reader(reader).with_resource(resource);
    let otlp = ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if otlp {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(TelemetryError::Otlp)?;
        builder = builder.with_periodic_exporter(exporter);
        tracing::info!("control-plane metrics are also pushed over OTLP (OTEL_EXPORTER_OTLP_*)");
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    observe_mads(&opentelemetry::global::meter("meshmetric-cp"));
    let _ = REGISTRY.set(registry);
    let _ = PROVIDER.set(provider);
    Ok(())
}

/// The MADS server's counters (kept by the `mads` crate as atomics), read at each collection.
fn observe_mads(m: &Meter) {
    use meshmetric_mads::stats::{Api, Outcome, stats};
    m.u64_observable_counter("meshmetric.cp.mads.requests")
        .with_description(
            "MADS and HTTP SD requests, by API (rest, grpc, http_sd) and result (ok, not_modified, error).",
        )
        .with_callback(|o| {
            for api in Api::ALL {
                for outcome in Outcome::ALL {
                    o.observe(
                        stats().requests(api, outcome),
                        &[kv("api", api.as_str()), kv("result", outcome.as_str())],
                    );
                }
            }
        })
        .build();
    m.i64_observable_up_down_counter("meshmetric.cp.mads.long_polls")
        .with_description("MADS long-polls waiting for a change.")
        .with_callback(|o| o.observe(stats().long_polls(), &[]))
        .build();
    m.u64_observable_counter("meshmetric.cp.mads.long_polls.answered")
        .with_description("MADS long-polls answered because the assignments changed.")
        .with_callback(|o| o.observe(stats().answered_on_change(), &[]))
        .build();
}

/// The metrics as Prometheus text 0.0.4 (empty before [`init`]).
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let Some(registry) = REGISTRY.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding the control plane's metrics failed");
    }
    out
}

/// Flushes the OTLP exporter at shutdown.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        tracing::debug!(error = %e, "meter provider shutdown");
    }
}
