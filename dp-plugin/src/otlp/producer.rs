//! Prometheus exposition → OTLP metrics data model (OpenTelemetry "Prometheus and OpenMetrics
//! Compatibility" specification).
//!
//! - counter → monotonic `Sum` (the `_total` suffix is removed from the name);
//! - gauge and untyped → `Gauge`;
//! - histogram → `Histogram`: Prometheus buckets are cumulative and become per-bucket counts,
//!   finite `le` bounds become `explicit_bounds`, `+Inf` the last bucket;
//! - summary → `Summary` (quantiles, sum, count);
//! - labels become attributes; `otel_scope_name`/`otel_scope_version` become the
//!   instrumentation scope; the resource carries the proxy's extra labels plus `service.name`.
//!
//! Start times are tracked per series: the first time a series is seen, and again when a
//! counter (or a histogram's count) goes down, i.e. the source restarted. With `Delta`
//! temporality sums and histograms carry the difference to the previous export (the first
//! observation of a series only sets the baseline and is not sent); summaries stay cumulative.
//! Series not seen in an export are forgotten, so memory follows the live series.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::parse::{Family, Format, MetricType, ParseStats, labels, parse, unescape};

pub use meshmetric_policies::meshmetric::Temporality;

const SCOPE_NAME: &str = "otel_scope_name";
const SCOPE_VERSION: &str = "otel_scope_version";

#[derive(Debug, Clone)]
struct SeriesState {
    start_ns: u64,
    /// counter value, or histogram count
    last_total: f64,
    /// previous cumulative per-bucket counts and sum (delta histograms)
    last_buckets: Vec<u64>,
    last_sum: f64,
    last_time_ns: u64,
    seen_cycle: u64,
}

/// Converts collections into OTLP requests for one exporter (keeps that exporter's series
/// state: start times, previous values for delta).
#[derive(Debug)]
pub struct Producer {
    temporality: Temporality,
    resource: Resource,
    series: HashMap<u64, SeriesState>,
    cycle: u64,
}

/// A string attribute.
pub(crate) fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// One series' attributes (labels minus `le`/`quantile`/scope) and its scope.
struct Attrs {
    list: Vec<(String, String)>,
    scope: (String, String),
}

fn attrs_of(raw: &str, skip: &str) -> Attrs {
    let mut list = Vec::new();
    let mut scope = (String::new(), String::new());
    for (k, v) in labels(raw) {
        match k {
            SCOPE_NAME => scope.0 = unescape(v).into_owned(),
            SCOPE_VERSION => scope.1 = unescape(v).into_owned(),
            _ if k == skip => {}
            _ => list.push((k.to_string(), unescape(v).into_owned())),
        }
    }
    list.sort();
    Attrs { list, scope }
}

fn series_key(name: &str, attrs: &[(String, String)]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    attrs.hash(&mut h);
    h.finish()
}

impl Producer {
    /// A producer whose resource carries `extra_labels` (as given by the control plane:
    /// `mesh`, `dataplane`, `kuma.workload`, `zone`, ...) plus `service.name`.
    pub fn new(temporality: Temporality, extra_labels: &BTreeMap<String, String>) -> Self {
        let mut attrs: Vec<KeyValue> = extra_labels.iter().map(|(k, v)| kv(k, v)).collect();
        let service = extra_labels
            .get("kuma.workload")
            .or_else(|| extra_labels.get("dataplane"));
        if let Some(s) = service {
            attrs.push(kv("service.name", s));
        }
        Self {
            temporality,
            resource: Resource {
                attributes: attrs,
                ..Default::default()
            },
            series: HashMap::new(),
            cycle: 0,
        }
    }

    /// Number of series whose state is kept.
    pub fn tracked_series(&self) -> usize {
        self.series.len()
    }

    fn temporality_code(&self) -> i32 {
        match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
            Temporality::Delta => AggregationTemporality::Delta as i32,
        }
    }

    /// Converts one collection (merged Prometheus text) taken at `now_ns` (Unix nanoseconds).
    /// Returns the request and its number of data points.
    pub fn produce(&mut self, text: &str, now_ns: u64) -> (ExportMetricsServiceRequest, usize) {
        self.cycle += 1;
        let mut st = ParseStats::default();
        let families = parse(text, Format::Text, &mut st);
        let mut scopes: BTreeMap<(String, String), Vec<Metric>> = BTreeMap::new();
        let mut points = 0;
        for f in &families {
            let produced = match f.kind {
                MetricType::Counter => self.counter(f, now_ns),
                MetricType::Gauge | MetricType::Untyped => Self::gauge(f, now_ns),
                MetricType::Histogram => self.histogram(f, now_ns),
                MetricType::Summary => self.summary(f, now_ns),
            };
            for (scope, m) in produced {
                points += match &m.data {
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Histogram(h)) => h.data_points.len(),
                    Some(metric::Data::Summary(s)) => s.data_points.len(),
                    _ => 0,
                };
                scopes.entry(scope).or_default().push(m);
            }
        }
        let cycle = self.cycle;
        self.series.retain(|_, s| s.seen_cycle == cycle);
        let scope_metrics = scopes
            .into_iter()
            .filter(|(_, ms)| !ms.is_empty())
            .map(|((name, version), metrics)| ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: if name.is_empty() { "meshmetric-dp".into() } else { name },
                    version: if version.is_empty() {
                        env!("CARGO_PKG_VERSION").into()
                    } else {
                        version
                    },
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            })
            .collect();
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics,
                ..Default::default()
            }],
        };
        (req, points)
    }

    /// One `Metric` per instrumentation scope from the data points grouped by scope.
    fn by_scope_metrics<P>(
        by_scope: BTreeMap<(String, String), Vec<P>>,
        name: &str,
        f: &Family<'_>,
        data: impl Fn(Vec<P>) -> metric::Data,
    ) -> Vec<((String, String), Metric)> {
        by_scope
            .into_iter()
            .map(|(scope, points)| {
                let m = Metric {
                    name: name.to_string(),
                    description: Self::help(f),
                    data: Some(data(points)),
                    ..Default::default()
                };
                (scope, m)
            })
            .collect()
    }

    fn help(f: &Family<'_>) -> String {
        f.help.map(|h| unescape(h).into_owned()).unwrap_or_default()
    }

    fn gauge(f: &Family<'_>, now_ns: u64) -> Vec<((String, String), Metric)> {
        let mut by_scope: BTreeMap<(String, String), Vec<NumberDataPoint>> = BTreeMap::new();
        for s in &f.samples {
            let a = attrs_of(s.labels, "");
            by_scope.entry(a.scope).or_default().push(NumberDataPoint {
                attributes: a.list.iter().map(|(k, v)| kv(k, v)).collect(),
                time_unix_nano: s.timestamp_ms.map_or(now_ns, |t| t as u64 * 1_000_000),
                value: Some(number_data_point::Value::AsDouble(s.value())),
                ..Default::default()
            });
        }
        Self::by_scope_metrics(by_scope, &f.name, f, |data_points| {
            metric::Data::Gauge(Gauge { data_points })
        })
    }

    fn counter(&mut self, f: &Family<'_>, now_ns: u64) -> Vec<((String, String), Metric)> {
        let name = f.name.strip_suffix("_total").unwrap_or(&f.name).to_string();
        let delta = self.temporality == Temporality::Delta;
        let mut by_scope: BTreeMap<(String, String), Vec<NumberDataPoint>> = BTreeMap::new();
        for s in &f.samples {
            if s.name.ends_with("_created") {
                continue;
            }
            let a = attrs_of(s.labels, "");
            let key = series_key(&name, &a.list);
            let time = s.timestamp_ms.map_or(now_ns, |t| t as u64 * 1_000_000);
            let cycle = self.cycle;
            let (start, value) = match self.series.get_mut(&key) {
                None => {
                    self.series.insert(
                        key,
                        SeriesState {
                            start_ns: time,
                            last_total: s.value(),
                            last_buckets: vec![],
                            last_sum: 0.0,
                            last_time_ns: time,
                            seen_cycle: cycle,
                        },
                    );
                    if delta {
                        continue; // baseline only
                    }
                    (time, s.value())
                }
                Some(st) => {
                    st.seen_cycle = cycle;
                    let reset = s.value() < st.last_total;
                    if reset {
                        st.start_ns = st.last_time_ns.max(time.saturating_sub(1));
                    }
                    let out = if delta {
                        let d = if reset { s.value() } else { s.value() - st.last_total };
                        (if reset { st.start_ns } else { st.last_time_ns }, d)
                    } else {
                        (st.start_ns, s.value())
                    };
                    st.last_total = s.value();
                    st.last_time_ns = time;
                    out
                }
            };
            by_scope.entry(a.scope).or_default().push(NumberDataPoint {
                attributes: a.list.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            });
        }
        let temporality = self.temporality_code();
        Self::by_scope_metrics(by_scope, &name, f, |data_points| {
            metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: temporality,
                is_monotonic: true,
            })
        })
    }

    fn histogram(&mut self, f: &Family<'_>, now_ns: u64) -> Vec<((String, String), Metric)> {
        struct Acc {
            scope: (String, String),
            attrs: Vec<(String, String)>,
            buckets: Vec<(f64, f64)>,
            sum: f64,
            count: Option<f64>,
            time: u64,
        }
        let base = f.name.as_ref();
        let groups = f.groups().into_iter().map(|g| {
            let a = attrs_of(g.first.labels, "le");
            Acc {
                scope: a.scope,
                attrs: a.list,
                buckets: g.points.iter().map(|(le, s)| (*le, s.value())).collect(),
                sum: g.sum.map_or(0.0, |s| s.value()),
                count: g.count.map(|s| s.value()),
                time: g.first.timestamp_ms.map_or(now_ns, |t| t as u64 * 1_000_000),
            }
        });
        let delta = self.temporality == Temporality::Delta;
        let cycle = self.cycle;
        let mut by_scope: BTreeMap<(String, String), Vec<HistogramDataPoint>> = BTreeMap::new();
        for mut acc in groups {
            acc.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if acc.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                let total = acc.count.unwrap_or_else(|| acc.buckets.last().map_or(0.0, |b| b.1));
                acc.buckets.push((f64::INFINITY, total));
            }
            let count = acc.count.unwrap_or_else(|| acc.buckets.last().map_or(0.0, |b| b.1));
            let mut per_bucket = Vec::with_capacity(acc.buckets.len());
            let mut prev = 0.0;
            for (_, cum) in &acc.buckets {
                per_bucket.push((cum - prev).max(0.0) as u64);
                prev = *cum;
            }
            let bounds: Vec<f64> = acc.buckets.iter().map(|b| b.0).filter(|b| b.is_finite()).collect();
            let key = series_key(base, &acc.attrs);
            let (start, counts, sum, cnt) = match self.series.get_mut(&key) {
                None => {
                    self.series.insert(
                        key,
                        SeriesState {
                            start_ns: acc.time,
                            last_total: count,
                            last_buckets: per_bucket.clone(),
                            last_sum: acc.sum,
                            last_time_ns: acc.time,
                            seen_cycle: cycle,
                        },
                    );
                    if delta {
                        continue;
                    }
                    (acc.time, per_bucket, acc.sum, count)
                }
                Some(st) => {
                    st.seen_cycle = cycle;
                    let reset = count < st.last_total || st.last_buckets.len() != per_bucket.len();
                    if reset {
                        st.start_ns = st.last_time_ns.max(acc.time.saturating_sub(1));
                    }
                    let out = if delta && !reset {
                        let d: Vec<u64> = per_bucket
                            .iter()
                            .zip(&st.last_buckets)
                            .map(|(c, p)| c.saturating_sub(*p))
                            .collect();
                        (st.last_time_ns, d, acc.sum - st.last_sum, count - st.last_total)
                    } else {
                        // cumulative, or delta right after a reset: everything since the reset
                        (st.start_ns, per_bucket.clone(), acc.sum, count)
                    };
                    st.last_total = count;
                    st.last_buckets = per_bucket;
                    st.last_sum = acc.sum;
                    st.last_time_ns = acc.time;
                    out
                }
            };
            by_scope.entry(acc.scope).or_default().push(HistogramDataPoint {
                attributes: acc.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: start,
                time_unix_nano: acc.time,
                count: cnt as u64,
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            });
        }
        let temporality = self.temporality_code();
        Self::by_scope_metrics(by_scope, base, f, |data_points| {
            metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: temporality,
            })
        })
    }

    fn summary(&mut self, f: &Family<'_>, now_ns: u64) -> Vec<((String, String), Metric)> {
        struct Acc {
            scope: (String, String),
            attrs: Vec<(String, String)>,
            quantiles: Vec<(f64, f64)>,
            sum: f64,
            count: f64,
            time: u64,
        }
        let base = f.name.as_ref();
        let groups = f.groups().into_iter().map(|g| {
            let a = attrs_of(g.first.labels, "quantile");
            Acc {
                scope: a.scope,
                attrs: a.list,
                quantiles: g.points.iter().map(|(q, s)| (*q, s.value())).collect(),
                sum: g.sum.map_or(0.0, |s| s.value()),
                count: g.count.map_or(0.0, |s| s.value()),
                time: g.first.timestamp_ms.map_or(now_ns, |t| t as u64 * 1_000_000),
            }
        });
        let cycle = self.cycle;
        let mut by_scope: BTreeMap<(String, String), Vec<SummaryDataPoint>> = BTreeMap::new();
        for mut acc in groups {
            acc.quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            let key = series_key(base, &acc.attrs);
            let st = self.series.entry(key).or_insert(SeriesState {
                start_ns: acc.time,
                last_total: acc.count,
                last_buckets: vec![],
                last_sum: 0.0,
                last_time_ns: acc.time,
                seen_cycle: cycle,
            });
            st.seen_cycle = cycle;
            if acc.count < st.last_total {
                st.start_ns = st.last_time_ns.max(acc.time.saturating_sub(1));
            }
            st.last_total = acc.count;
            st.last_time_ns = acc.time;
            by_scope.entry(acc.scope).or_default().push(SummaryDataPoint {
                attributes: acc.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: st.start_ns,
                time_unix_nano: acc.time,
                count: acc.count as u64,
                sum: acc.sum,
                quantile_values: acc
                    .quantiles
                    .iter()
                    .map(|(q, v)| ValueAtQuantile {
                        quantile: *q,
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            });
        }
        Self::by_scope_metrics(by_scope, base, f, |data_points| {
            metric::Data::Summary(Summary { data_points })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP reqs_total Requests.\n# TYPE reqs_total counter\nreqs_total{code=\"200\",mesh=\"default\"} 10\n# TYPE temp gauge\ntemp{room=\"a\\\"b\"} 21.5\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 2\nlat_bucket{le=\"1\"} 5\nlat_bucket{le=\"+Inf\"} 6\nlat_sum 3.5\nlat_count 6\n# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.2\nrpc{quantile=\"0.9\"} 0.7\nrpc_sum 10\nrpc_count 40\n# TYPE scoped counter\nscoped_total{otel_scope_name=\"lib\",otel_scope_version=\"1.2\",x=\"y\"} 1\n";

    fn extra() -> BTreeMap<String, String> {
        [
            ("mesh", "default"),
            ("dataplane", "web-01"),
            ("kuma.workload", "web"),
            ("zone", "z1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn metrics(req: &ExportMetricsServiceRequest) -> Vec<(&str, &Metric)> {
        req.resource_metrics[0]
            .scope_metrics
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |m| (s.scope.as_ref().unwrap().name.as_str(), m))
            })
            .collect()
    }

    #[test]
    fn mapping_of_every_type() {
        let mut p = Producer::new(Temporality::Cumulative, &extra());
        let (req, points) = p.produce(TEXT, 1_000);
        assert_eq!(points, 5);
        let res = req.resource_metrics[0].resource.as_ref().unwrap();
        assert!(
            res.attributes
                .iter()
                .any(|a| a.key == "service.name" && format!("{:?}", a.value).contains("web"))
        );
        let ms = metrics(&req);
        let get = |n: &str| {
            ms.iter()
                .find(|(_, m)| m.name == n)
                .unwrap_or_else(|| panic!("{n} missing: {ms:?}"))
        };
        let (_, reqs) = get("reqs");
        let Some(metric::Data::Sum(s)) = &reqs.data else {
            panic!()
        };
        assert!(s.is_monotonic && s.aggregation_temporality == AggregationTemporality::Cumulative as i32);
        assert_eq!(reqs.description, "Requests.");
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsDouble(10.0)));
        let (_, temp) = get("temp");
        let Some(metric::Data::Gauge(g)) = &temp.data else {
            panic!()
        };
        assert_eq!(g.data_points[0].attributes[0], kv("room", "a\"b"));
        let (_, lat) = get("lat");
        let Some(metric::Data::Histogram(h)) = &lat.data else {
            panic!()
        };
        let d = &h.data_points[0];
        assert_eq!(
            (d.count, d.sum, d.bucket_counts.clone(), d.explicit_bounds.clone()),
            (6, Some(3.5), vec![2, 3, 1], vec![0.1, 1.0])
        );
        let (_, rpc) = get("rpc");
        let Some(metric::Data::Summary(sm)) = &rpc.data else {
            panic!()
        };
        assert_eq!(
            (sm.data_points[0].count, sm.data_points[0].quantile_values.len()),
            (40, 2)
        );
        let (scope, scoped) = get("scoped");
        assert_eq!(*scope, "lib");
        let Some(metric::Data::Sum(s)) = &scoped.data else {
            panic!()
        };
        assert_eq!(
            s.data_points[0].attributes,
            vec![kv("x", "y")],
            "scope labels are not attributes"
        );
    }

    #[test]
    fn start_times_persist_and_reset_on_decrease() {
        let mut p = Producer::new(Temporality::Cumulative, &extra());
        let start = |req: &ExportMetricsServiceRequest| {
            let ms = metrics(req);
            let (_, m) = ms.iter().find(|(_, m)| m.name == "reqs").unwrap();
            let Some(metric::Data::Sum(s)) = &m.data else { panic!() };
            (s.data_points[0].start_time_unix_nano, s.data_points[0].time_unix_nano)
        };
        let (r1, _) = p.produce(TEXT, 1_000);
        let (r2, _) = p.produce(&TEXT.replace("} 10\n", "} 15\n"), 2_000);
        assert_eq!(start(&r1).0, 1_000);
        assert_eq!(start(&r2), (1_000, 2_000), "start time kept while the counter grows");
        let (r3, _) = p.produce(&TEXT.replace("} 10\n", "} 3\n"), 3_000);
        assert!(
            start(&r3).0 > 1_000 && start(&r3).0 < 3_000,
            "reset moves the start time: {:?}",
            start(&r3)
        );
        // a series that disappears is forgotten
        let before = p.tracked_series();
        p.produce("# TYPE other gauge\nother 1\n", 4_000);
        assert!(p.tracked_series() < before);
    }

    #[test]
    fn delta_temporality() {
        let mut p = Producer::new(Temporality::Delta, &extra());
        let (_, first) = p.produce(TEXT, 1_000);
        assert_eq!(
            first, 2,
            "sums and histograms only set their baseline at first: only the gauge and the summary are sent"
        );
        let next = TEXT
            .replace(
                "reqs_total{code=\"200\",mesh=\"default\"} 10",
                "reqs_total{code=\"200\",mesh=\"default\"} 14",
            )
            .replace("lat_bucket{le=\"+Inf\"} 6", "lat_bucket{le=\"+Inf\"} 8")
            .replace("lat_count 6", "lat_count 8")
            .replace("lat_sum 3.5", "lat_sum 5.5");
        let (req, _) = p.produce(&next, 2_000);
        let ms = metrics(&req);
        let (_, reqs) = ms.iter().find(|(_, m)| m.name == "reqs").unwrap();
        let Some(metric::Data::Sum(s)) = &reqs.data else {
            panic!()
        };
        assert_eq!(s.aggregation_temporality, AggregationTemporality::Delta as i32);
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsDouble(4.0)));
        assert_eq!(
            (s.data_points[0].start_time_unix_nano, s.data_points[0].time_unix_nano),
            (1_000, 2_000)
        );
        let (_, lat) = ms.iter().find(|(_, m)| m.name == "lat").unwrap();
        let Some(metric::Data::Histogram(h)) = &lat.data else {
            panic!()
        };
        assert_eq!(
            (
                h.data_points[0].count,
                h.data_points[0].bucket_counts.clone(),
                h.data_points[0].sum
            ),
            (2, vec![0, 0, 2], Some(2.0))
        );
    }
}
