//! Push input: data points per second the OTLP receiver's store takes in (decoded requests:
//! an SDK-shaped batch of counters, gauges and histograms over 10,000 series) and turns into
//! Prometheus text for a collection: the receivers' path (read the protobuf in place and take it
//! in), the same from a decoded request, prost's decoding for comparison, and rendering.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

use meshmetric_dp::push::{PushLimits, Store};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

#[path = "common/push_request.rs"]
mod push_request;
use push_request::request;

fn bench(c: &mut Criterion) {
    let (req, points) = request();
    let bytes = req.encode_to_vec();
    let mut g = c.benchmark_group("push_10k_series");
    g.throughput(Throughput::Elements(points));
    g.bench_function("decode_protobuf", |b| {
        b.iter(|| ExportMetricsServiceRequest::decode(&bytes[..]).expect("decode"))
    });
    let store = Store::new(PushLimits::default());
    store.ingest(req.clone());
    g.bench_function("ingest_existing_series", |b| {
        b.iter_batched(|| req.clone(), |r| store.ingest(r), criterion::BatchSize::LargeInput)
    });
    g.bench_function("read_and_ingest_protobuf", |b| {
        b.iter(|| store.ingest_protobuf(&bytes).expect("valid"))
    });
    g.bench_function("render_prometheus_text", |b| b.iter(|| store.render()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
