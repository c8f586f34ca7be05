//! Load generator for the whole-process push benchmark (`bench/push.sh`): sends the 10,000-series
//! request of `benches/common/push_request.rs` over OTLP/gRPC as fast as the receiver answers, for a
//! number of seconds, and prints `requests points rejected seconds` on one line.
//!
//! `cargo run --release -p meshmetric-dp --example push_load -- http://127.0.0.1:4317 20`

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;

#[path = "../benches/common/push_request.rs"]
mod push_request;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "http://127.0.0.1:4317".into());
    let secs: f64 = args.next().map_or(Ok(10.0), |s| s.parse())?;
    let once = secs == 0.0;
    let (req, points) = push_request::request();
    let mut client = MetricsServiceClient::connect(endpoint)
        .await?
        .max_decoding_message_size(64 << 20);
    let start = Instant::now();
    let (mut requests, mut rejected) = (0u64, 0i64);
    while once && requests == 0 || start.elapsed() < Duration::from_secs_f64(secs) {
        let r = client.export(req.clone()).await?.into_inner();
        rejected += r.partial_success.map_or(0, |p| p.rejected_data_points);
        requests += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{requests} {} {rejected} {secs:.3}", requests * points);
    Ok(())
}
