//! An SDK-shaped OTLP export request for the push benchmarks (criterion `benches/push.rs` and
//! the whole-process load generator `examples/push_load.rs`).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn kv(k: &str, v: String) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    }
}

/// 10,000 series: 40 counters and 40 gauges × 100 routes, and 20 histograms (10 buckets) × 100
/// routes; one data point each.
/// The request and its number of data points.
pub fn request() -> (ExportMetricsServiceRequest, u64) {
    let routes: Vec<Vec<KeyValue>> = (0..100)
        .map(|r| {
            vec![
                kv("http.route", format!("/api/v1/items/{r}")),
                kv("http.request.method", "GET".into()),
            ]
        })
        .collect();
    let number = |i: u64, attrs: &Vec<KeyValue>| NumberDataPoint {
        attributes: attrs.clone(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        value: Some(number_data_point::Value::AsInt(i as i64)),
        ..Default::default()
    };
    let mut metrics = Vec::new();
    let mut points = 0u64;
    for c in 0..40 {
        metrics.push(Metric {
            name: format!("app.requests.{c}"),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: routes.iter().enumerate().map(|(i, a)| number(i as u64, a)).collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        });
        metrics.push(Metric {
            name: format!("app.inflight.{c}"),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: routes.iter().enumerate().map(|(i, a)| number(i as u64, a)).collect(),
            })),
            ..Default::default()
        });
        points += 200;
    }
    for h in 0..20 {
        metrics.push(Metric {
            name: format!("app.duration.{h}"),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: routes
                    .iter()
                    .map(|a| HistogramDataPoint {
                        attributes: a.clone(),
                        count: 55,
                        sum: Some(12.5),
                        bucket_counts: (0..10).collect(),
                        explicit_bounds: vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
        points += 100;
    }
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop".into()),
                    kv("service.instance.id", "i-1".into()),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, points)
}
