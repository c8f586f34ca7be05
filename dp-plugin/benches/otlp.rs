//! OTLP production and encoding on Envoy-shaped input: data points per second one exporter
//! turns into protobuf, and the memory a full queue of batches holds.
//!
//! The input imitates Envoy's `/stats?format=prometheus` for N clusters (counters, gauges and
//! histograms labelled by `envoy_cluster_name`, ~170 samples per cluster); `benches/hotpath.rs`
//! measures the same on output recorded from a real Envoy.

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

use meshmetric_dp::otlp::producer::{Producer, Temporality};

fn envoy_like(clusters: usize) -> String {
    let mut s = String::new();
    for c in 0..100 {
        s.push_str(&format!("# TYPE envoy_cluster_counter_{c}_total counter\n"));
        for i in 0..clusters {
            s.push_str(&format!(
                "envoy_cluster_counter_{c}_total{{envoy_cluster_name=\"service_{i}\"}} {}\n",
                i * 7 + c
            ));
        }
    }
    for g in 0..40 {
        s.push_str(&format!("# TYPE envoy_cluster_gauge_{g} gauge\n"));
        for i in 0..clusters {
            s.push_str(&format!(
                "envoy_cluster_gauge_{g}{{envoy_cluster_name=\"service_{i}\"}} {}\n",
                i % 13
            ));
        }
    }
    let bounds = [
        "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000",
        "300000", "600000", "1800000", "3600000", "+Inf",
    ];
    for h in 0..2 {
        s.push_str(&format!("# TYPE envoy_cluster_upstream_rq_time_{h} histogram\n"));
        for i in 0..clusters {
            for (k, b) in bounds.iter().enumerate() {
                s.push_str(&format!(
                    "envoy_cluster_upstream_rq_time_{h}_bucket{{envoy_cluster_name=\"service_{i}\",le=\"{b}\"}} {}\n",
                    k * 3
                ));
            }
            s.push_str(&format!(
                "envoy_cluster_upstream_rq_time_{h}_sum{{envoy_cluster_name=\"service_{i}\"}} 1234.5\n"
            ));
            s.push_str(&format!(
                "envoy_cluster_upstream_rq_time_{h}_count{{envoy_cluster_name=\"service_{i}\"}} 57\n"
            ));
        }
    }
    s
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let extra = [("mesh", "default"), ("dataplane", "web-01"), ("kuma.workload", "web")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for clusters in [1usize, 200, 1000] {
        let text = envoy_like(clusters);
        let mut p = Producer::new(Temporality::Cumulative, &extra);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let (req, points) = p.produce(&text, now);
        let mut g = c.benchmark_group(format!("otlp_{clusters}_clusters"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(points as u64));
        g.bench_function("produce", |b| b.iter(|| p.produce(&text, now)));
        g.bench_function("produce_and_encode", |b| {
            b.iter(|| p.produce(&text, now).0.encode_to_vec())
        });
        // what exporters run: protobuf written directly, no typed request
        g.bench_function("produce_encoded", |b| b.iter(|| p.produce_encoded(&text, now).0.len()));
        g.finish();
        if clusters == 1000 {
            // the exporter queue keeps encoded batches, at most 100 and at most MAX_QUEUE_BYTES
            let before = rss_kib();
            let mut queue = Vec::new();
            let mut bytes = 0;
            while queue.len() < 100 {
                let b = p.produce_encoded(&text, now).0;
                if bytes + b.len() > meshmetric_dp::otlp::exporter::MAX_QUEUE_BYTES && !queue.is_empty() {
                    break;
                }
                bytes += b.len();
                queue.push(b);
            }
            let after = rss_kib();
            eprintln!(
                "{clusters} clusters: {points} data points per batch, {} bytes encoded; a full queue holds {} batches, {} MiB encoded, RSS +{} MiB",
                req.encoded_len(),
                queue.len(),
                bytes >> 20,
                after.saturating_sub(before) / 1024
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
