//! `meshmetric-sample-app`: a tiny HTTP service for the quick start and the end-to-end tests.
//! `GET /` answers "hello" and counts the request; `GET /metrics` exposes Prometheus text with
//! a counter, a gauge and a histogram of its own.
//!
//! With `--push`, it also pushes metrics of its own over OTLP/gRPC (OTLP/HTTP with
//! `--push-http`) with the OpenTelemetry SDK
//! (`opentelemetry_sdk` + `opentelemetry-otlp`), to the SDK's default endpoint
//! (`http://localhost:4317`, or `OTEL_EXPORTER_OTLP_ENDPOINT`): at start a counter
//! `sample_app.pushed.orders` of 3 (`{order}`), an up-down counter `sample_app.pushed.active` of
//! 3 (+5 −2), a gauge `sample_app.pushed.temperature` of 21.5 (`Cel`), a histogram
//! `sample_app.pushed.latency` (`s`) of 0.05, 0.5 and 2 and an exponential histogram
//! `sample_app.pushed.size` (`By`) of 1, 3 and 100; every `GET /` adds 1 to the counter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    address: SocketAddr,
    /// Also push metrics over OTLP/gRPC with the OpenTelemetry SDK.
    #[arg(long)]
    push: bool,
    /// Push interval.
    #[arg(long, default_value = "1s", value_parser = parse_secs)]
    push_interval: std::time::Duration,
    /// Push over OTLP/HTTP (protobuf, `http://localhost:4318/v1/metrics` by default) instead
    /// of gRPC.
    #[arg(long)]
    push_http: bool,
    /// Push delta temporality instead of cumulative.
    #[arg(long)]
    delta: bool,
    /// `service.name` of the pushed metrics.
    #[arg(long, default_value = "sample-app")]
    service_name: String,
}

fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    let n = s
        .strip_suffix("ms")
        .map(|m| (m, 1e-3))
        .or_else(|| s.strip_suffix('s').map(|x| (x, 1.0)));
    let (num, scale) = n.ok_or("a duration such as 1s or 500ms")?;
    num.parse::<f64>()
        .map(|v| std::time::Duration::from_secs_f64(v * scale))
        .map_err(|e| e.to_string())
}

/// The SDK's meter provider and the counter `GET /` adds to.
struct Pushed {
    provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    orders: opentelemetry::metrics::Counter<u64>,
}

fn start_push(args: &Args) -> anyhow::Result<Pushed> {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream, Temporality};
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_temporality(if args.delta {
            Temporality::Delta
        } else {
            Temporality::Cumulative
        })
        .build()?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(args.push_interval)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(args.service_name.clone())
        .with_attribute(KeyValue::new("service.instance.id", "sample-1"))
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .with_view(|i: &Instrument| {
            (i.name() == "sample_app.pushed.size").then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::Base2ExponentialHistogram {
                        max_size: 160,
                        max_scale: 20,
                        record_min_max: true,
                    })
                    .build()
                    .ok()
            })?
        })
        .build();
    let meter = provider.meter("meshmetric-sample-app");
    let route = [KeyValue::new("http.route", "/")];
    let orders = meter
        .u64_counter("sample_app.pushed.orders")
        .with_unit("{order}")
        .build();
    orders.add(3, &route);
    let active = meter.i64_up_down_counter("sample_app.pushed.active").build();
    active.add(5, &[]);
    active.add(-2, &[]);
    let temp = meter
        .f64_gauge("sample_app.pushed.temperature")
        .with_unit("Cel")
        .build();
    temp.record(21.5, &[KeyValue::new("room", "lab")]);
    let latency = meter
        .f64_histogram("sample_app.pushed.latency")
        .with_unit("s")
        .with_boundaries(vec![0.1, 1.0])
        .build();
    for v in [0.05, 0.5, 2.0] {
        latency.record(v, &route);
    }
    let size = meter.u64_histogram("sample_app.pushed.size").with_unit("By").build();
    for v in [1, 3, 100] {
        size.record(v, &[]);
    }
    eprintln!("sample app pushing OTLP every {:?}", args.push_interval);
    Ok(Pushed { provider, orders })
}

struct Stats {
    pushed: Option<opentelemetry::metrics::Counter<u64>>,
    started: Instant,
    requests: AtomicU64,
    /// request counts per latency bucket (le 0.001, 0.01, 0.1, +Inf), non-cumulative
    buckets: [AtomicU64; 4],
    sum_micros: AtomicU64,
}

const BOUNDS: [&str; 3] = ["0.001", "0.01", "0.1"];

async fn hello(State(s): State<Arc<Stats>>) -> &'static str {
    let t = Instant::now();
    s.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(c) = &s.pushed {
        c.add(1, &[opentelemetry::KeyValue::new("http.route", "/")]);
    }
    let micros = t.elapsed().as_micros() as u64 + 150;
    let idx = match micros {
        0..=1000 => 0,
        1001..=10000 => 1,
        10001..=100000 => 2,
        _ => 3,
    };
    s.buckets[idx].fetch_add(1, Ordering::Relaxed);
    s.sum_micros.fetch_add(micros, Ordering::Relaxed);
    "hello from the sample app\n"
}

async fn metrics(State(s): State<Arc<Stats>>) -> ([(&'static str, &'static str); 1], String) {
    let n = s.requests.load(Ordering::Relaxed);
    let mut out = String::new();
    out.push_str("# HELP sample_app_requests_total Requests served by the sample app.\n# TYPE sample_app_requests_total counter\n");
    out.push_str(&format!("sample_app_requests_total{{path=\"/\"}} {n}\n"));
    out.push_str("# HELP sample_app_uptime_seconds Seconds since the sample app started.\n# TYPE sample_app_uptime_seconds gauge\n");
    out.push_str(&format!(
        "sample_app_uptime_seconds {}\n",
        s.started.elapsed().as_secs_f64()
    ));
    out.push_str("# HELP sample_app_request_duration_seconds Request latency.\n# TYPE sample_app_request_duration_seconds histogram\n");
    let mut cum = 0;
    for (i, b) in BOUNDS.iter().enumerate() {
        cum += s.buckets[i].load(Ordering::Relaxed);
        out.push_str(&format!(
            "sample_app_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}\n"
        ));
    }
    cum += s.buckets[3].load(Ordering::Relaxed);
    out.push_str(&format!(
        "sample_app_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}\n"
    ));
    out.push_str(&format!(
        "sample_app_request_duration_seconds_sum {}\n",
        s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    ));
    out.push_str(&format!("sample_app_request_duration_seconds_count {cum}\n"));
    ([("content-type", "text/plain; version=0.0.4")], out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pushed = if args.push { Some(start_push(&args)?) } else { None };
    let stats = Arc::new(Stats {
        pushed: pushed.as_ref().map(|p| p.orders.clone()),
        started: Instant::now(),
        requests: AtomicU64::new(0),
        buckets: Default::default(),
        sum_micros: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/", get(hello))
        .route("/metrics", get(metrics))
        .with_state(stats);
    let l = tokio::net::TcpListener::bind(args.address).await?;
    eprintln!("sample app listening on {}", args.address);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(l, app).with_graceful_shutdown(shutdown).await?;
    if let Some(p) = pushed {
        let _ = p.provider.shutdown();
    }
    Ok(())
}
