//! `meshmetric-sample-app`: a tiny HTTP service for the quick start and the end-to-end tests.
//! `GET /` answers "hello" and counts the request; `GET /metrics` exposes Prometheus text with
//! a counter, a gauge and a histogram of its own.

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
}

struct Stats {
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
    let stats = Arc::new(Stats {
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
    axum::serve(l, app).await?;
    Ok(())
}
