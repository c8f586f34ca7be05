//! Prometheus exposition → OTLP metrics data model (OpenTelemetry "Prometheus and OpenMetrics
//! Compatibility" specification).
//!
//! - counter → monotonic `Sum` (the `_total` suffix is removed from the name);
//! - gauge and untyped → `Gauge`;
//! - histogram → `Histogram`: Prometheus buckets are cumulative and become per-bucket counts,
//!   finite `le` bounds become `explicit_bounds`, `+Inf` the last bucket;
//! - summary → `Summary` (quantiles, sum, count);
//! - labels become attributes (sorted by name); `otel_scope_name`/`otel_scope_version` become
//!   the instrumentation scope; the resource carries the proxy's extra labels plus
//!   `service.name`.
//!
//! Start times are tracked per series: the first time a series is seen, and again when a
//! counter (or a histogram's count) goes down, i.e. the source restarted. With `Delta`
//! temporality sums and histograms carry the difference to the previous export (the first
//! observation of a series only sets the baseline and is not sent); summaries stay cumulative.
//! Series not seen in an export are forgotten, so memory follows the live series.
//!
//! One core computes every data point; it hands them to an emitter: [`Producer::produce`]
//! builds the `opentelemetry-proto` request (the reference form, for tests and tools) and
//! [`Producer::produce_encoded`] writes the same request's protobuf bytes directly
//! ([`super::encode`]), without building it — what the exporters send.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::encode::WireEmitter;
use super::points::{Emit, Kind, Point, Scope, scope_name, scope_version};
use crate::parse::{Family, Format, MetricType, ParseStats, Sample, labels, parse, unescape};

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
    series: HashMap<u64, SeriesState, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    cycle: u64,
    /// Buffers of the direct encoder, kept between collections.
    wire: WireEmitter,
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

/// One series' attributes, `(name, unescaped value)` sorted, borrowed from the text.
pub(crate) type Attrs<'t> = Vec<(&'t str, Cow<'t, str>)>;

/// Fills `list` with the attributes of raw labels `raw` (minus `skip` and the scope labels,
/// sorted) and returns the scope.
fn attrs_of<'t>(raw: &'t str, skip: &str, list: &mut Attrs<'t>) -> Scope<'t> {
    list.clear();
    let mut scope: Scope<'t> = (Cow::Borrowed(""), Cow::Borrowed(""));
    for (k, v) in labels(raw) {
        match k {
            SCOPE_NAME => scope.0 = unescape(v),
            SCOPE_VERSION => scope.1 = unescape(v),
            _ if k == skip => {}
            _ => list.push((k, unescape(v))),
        }
    }
    // most exposition lists labels sorted already
    if !list.is_sorted() {
        list.sort();
    }
    scope
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
        let resource = Resource {
            attributes: attrs,
            ..Default::default()
        };
        Self {
            temporality,
            wire: WireEmitter::new(&resource),
            resource,
            series: HashMap::default(),
            hasher: foldhash::fast::RandomState::default(),
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

    /// Converts one collection (merged Prometheus text) taken at `now_ns` (Unix nanoseconds)
    /// into the typed request. Returns it and its number of data points.
    pub fn produce(&mut self, text: &str, now_ns: u64) -> (ExportMetricsServiceRequest, usize) {
        let mut typed = TypedEmitter::default();
        let points = self.run(text, now_ns, &mut typed);
        let scope_metrics = typed
            .scopes
            .into_iter()
            .filter(|(_, ms)| !ms.is_empty())
            .map(|((name, version), metrics)| ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: scope_name(&name).into(),
                    version: scope_version(&version).into(),
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

    /// [`Producer::produce`], encoded: the protobuf bytes of the same request (byte for byte
    /// what `prost` encodes), written directly. Returns them and the number of data points.
    pub fn produce_encoded(&mut self, text: &str, now_ns: u64) -> (bytes::Bytes, usize) {
        let mut wire = std::mem::take(&mut self.wire);
        wire.start();
        let points = self.run(text, now_ns, &mut wire);
        let out = wire.finish();
        self.wire = wire;
        (out, points)
    }

    /// The core: parses `text` and hands every data point to `e`. Returns the points.
    fn run<E: Emit>(&mut self, text: &str, now_ns: u64, e: &mut E) -> usize {
        self.cycle += 1;
        let mut st = ParseStats::default();
        let families = parse(text, Format::Text, &mut st);
        let mut attrs: Attrs<'_> = Vec::with_capacity(16);
        for f in &families {
            let description = f.help.map(unescape).unwrap_or_default();
            match f.kind {
                MetricType::Counter => {
                    let name = f.name.strip_suffix("_total").unwrap_or(&f.name);
                    self.counter(f, name, now_ns, &mut attrs, e);
                    e.end_family(name, &description, Kind::Sum(self.temporality_code()));
                }
                MetricType::Gauge | MetricType::Untyped => {
                    for s in &f.samples {
                        let scope = attrs_of(s.labels, "", &mut attrs);
                        let p = Point::Number {
                            start: 0,
                            time: time_of(s, now_ns),
                            value: s.value(),
                        };
                        e.point(&scope, &attrs, p);
                    }
                    e.end_family(&f.name, &description, Kind::Gauge);
                }
                MetricType::Histogram => {
                    self.histogram(f, now_ns, &mut attrs, e);
                    e.end_family(&f.name, &description, Kind::Histogram(self.temporality_code()));
                }
                MetricType::Summary => {
                    self.summary(f, now_ns, &mut attrs, e);
                    e.end_family(&f.name, &description, Kind::Summary);
                }
            }
        }
        let cycle = self.cycle;
        self.series.retain(|_, s| s.seen_cycle == cycle);
        e.points()
    }

    fn key(&self, name: &str, attrs: &[(&str, Cow<'_, str>)]) -> u64 {
        self.hasher.hash_one((name, attrs))
    }

    fn counter<'t, E: Emit>(&mut self, f: &Family<'t>, name: &str, now_ns: u64, attrs: &mut Attrs<'t>, e: &mut E) {
        let delta = self.temporality == Temporality::Delta;
        for s in &f.samples {
            if s.name.ends_with("_created") {
                continue;
            }
            let scope = attrs_of(s.labels, "", attrs);
            let key = self.key(name, attrs);
            let time = time_of(s, now_ns);
            let cycle = self.cycle;
            let value = s.value();
            let (start, value) = match self.series.get_mut(&key) {
                None => {
                    self.series.insert(
                        key,
                        SeriesState {
                            start_ns: time,
                            last_total: value,
                            last_buckets: vec![],
                            last_sum: 0.0,
                            last_time_ns: time,
                            seen_cycle: cycle,
                        },
                    );
                    if delta {
                        continue; // baseline only
                    }
                    (time, value)
                }
                Some(st) => {
                    st.seen_cycle = cycle;
                    let reset = value < st.last_total;
                    if reset {
                        st.start_ns = st.last_time_ns.max(time.saturating_sub(1));
                    }
                    let out = if delta {
                        let d = if reset { value } else { value - st.last_total };
                        (if reset { st.start_ns } else { st.last_time_ns }, d)
                    } else {
                        (st.start_ns, value)
                    };
                    st.last_total = value;
                    st.last_time_ns = time;
                    out
                }
            };
            e.point(&scope, attrs, Point::Number { start, time, value });
        }
    }

    fn histogram<'t, E: Emit>(&mut self, f: &Family<'t>, now_ns: u64, attrs: &mut Attrs<'t>, e: &mut E) {
        let base = f.name.as_ref();
        let delta = self.temporality == Temporality::Delta;
        let cycle = self.cycle;
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut per_bucket: Vec<u64> = Vec::new();
        let mut bounds: Vec<f64> = Vec::new();
        let mut delta_counts: Vec<u64> = Vec::new();
        for g in f.groups() {
            let scope = attrs_of(g.first.labels, "le", attrs);
            buckets.clear();
            buckets.extend(g.points.iter().map(|(le, s)| (*le, s.value())));
            let sum = g.sum.map_or(0.0, |s| s.value());
            let time = time_of(g.first, now_ns);
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let given_count = g.count.map(|s| s.value());
            if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                let total = given_count.unwrap_or_else(|| buckets.last().map_or(0.0, |b| b.1));
                buckets.push((f64::INFINITY, total));
            }
            let count = given_count.unwrap_or_else(|| buckets.last().map_or(0.0, |b| b.1));
            per_bucket.clear();
            let mut prev = 0.0;
            for (_, cum) in &buckets {
                per_bucket.push((cum - prev).max(0.0) as u64);
                prev = *cum;
            }
            bounds.clear();
            bounds.extend(buckets.iter().map(|b| b.0).filter(|b| b.is_finite()));
            let key = self.key(base, attrs);
            let (start, use_delta, sum, cnt) = match self.series.get_mut(&key) {
                None => {
                    self.series.insert(
                        key,
                        SeriesState {
                            start_ns: time,
                            last_total: count,
                            last_buckets: per_bucket.clone(),
                            last_sum: sum,
                            last_time_ns: time,
                            seen_cycle: cycle,
                        },
                    );
                    if delta {
                        continue;
                    }
                    (time, false, sum, count)
                }
                Some(st) => {
                    st.seen_cycle = cycle;
                    let reset = count < st.last_total || st.last_buckets.len() != per_bucket.len();
                    if reset {
                        st.start_ns = st.last_time_ns.max(time.saturating_sub(1));
                    }
                    let out = if delta && !reset {
                        delta_counts.clear();
                        delta_counts.extend(
                            per_bucket
                                .iter()
                                .zip(&st.last_buckets)
                                .map(|(c, p)| c.saturating_sub(*p)),
                        );
                        (st.last_time_ns, true, sum - st.last_sum, count - st.last_total)
                    } else {
                        // cumulative, or delta right after a reset: everything since the reset
                        (st.start_ns, false, sum, count)
                    };
                    st.last_total = count;
                    st.last_buckets.clear();
                    st.last_buckets.extend_from_slice(&per_bucket);
                    st.last_sum = sum;
                    st.last_time_ns = time;
                    out
                }
            };
            let counts: &[u64] = if use_delta { &delta_counts } else { &per_bucket };
            e.point(
                &scope,
                attrs,
                Point::Histogram {
                    start,
                    time,
                    count: cnt as u64,
                    sum,
                    counts,
                    bounds: &bounds,
                },
            );
        }
    }

    fn summary<'t, E: Emit>(&mut self, f: &Family<'t>, now_ns: u64, attrs: &mut Attrs<'t>, e: &mut E) {
        let base = f.name.as_ref();
        let cycle = self.cycle;
        let mut quantiles: Vec<(f64, f64)> = Vec::new();
        for g in f.groups() {
            let scope = attrs_of(g.first.labels, "quantile", attrs);
            quantiles.clear();
            quantiles.extend(g.points.iter().map(|(q, s)| (*q, s.value())));
            quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            let sum = g.sum.map_or(0.0, |s| s.value());
            let count = g.count.map_or(0.0, |s| s.value());
            let time = time_of(g.first, now_ns);
            let key = self.key(base, attrs);
            let st = self.series.entry(key).or_insert(SeriesState {
                start_ns: time,
                last_total: count,
                last_buckets: vec![],
                last_sum: 0.0,
                last_time_ns: time,
                seen_cycle: cycle,
            });
            st.seen_cycle = cycle;
            if count < st.last_total {
                st.start_ns = st.last_time_ns.max(time.saturating_sub(1));
            }
            st.last_total = count;
            st.last_time_ns = time;
            let start = st.start_ns;
            e.point(
                &scope,
                attrs,
                Point::Summary {
                    start,
                    time,
                    count: count as u64,
                    sum,
                    quantiles: &quantiles,
                },
            );
        }
    }
}

/// A sample's time: its timestamp, else the collection's.
fn time_of(s: &Sample<'_>, now_ns: u64) -> u64 {
    s.timestamp_ms.map_or(now_ns, |t| t as u64 * 1_000_000)
}

/// Builds the typed request: per scope, one `Metric` per family.
#[derive(Default)]
struct TypedEmitter {
    scopes: BTreeMap<(String, String), Vec<Metric>>,
    /// The current family's points, per scope.
    family: BTreeMap<(String, String), Vec<TypedPoint>>,
    points: usize,
}

enum TypedPoint {
    Number(NumberDataPoint),
    Histogram(HistogramDataPoint),
    Summary(SummaryDataPoint),
}

impl Emit for TypedEmitter {
    fn points(&self) -> usize {
        self.points
    }

    fn point(&mut self, scope: &Scope<'_>, attrs: &[(&str, Cow<'_, str>)], p: Point<'_>) {
        let attributes: Vec<KeyValue> = attrs.iter().map(|(k, v)| kv(k, v)).collect();
        let tp = match p {
            Point::Number { start, time, value } => TypedPoint::Number(NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }),
            Point::Histogram {
                start,
                time,
                count,
                sum,
                counts,
                bounds,
            } => TypedPoint::Histogram(HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum: Some(sum),
                bucket_counts: counts.to_vec(),
                explicit_bounds: bounds.to_vec(),
                ..Default::default()
            }),
            Point::Summary {
                start,
                time,
                count,
                sum,
                quantiles,
            } => TypedPoint::Summary(SummaryDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                quantile_values: quantiles
                    .iter()
                    .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
                    .collect(),
                ..Default::default()
            }),
        };
        self.family
            .entry((scope.0.to_string(), scope.1.to_string()))
            .or_default()
            .push(tp);
    }

    fn end_family(&mut self, name: &str, description: &str, kind: Kind) {
        for (scope, points) in std::mem::take(&mut self.family) {
            self.points += points.len();
            let data = match kind {
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: numbers(points),
                }),
                Kind::Sum(t) => metric::Data::Sum(Sum {
                    data_points: numbers(points),
                    aggregation_temporality: t,
                    is_monotonic: true,
                }),
                Kind::Histogram(t) => metric::Data::Histogram(Histogram {
                    data_points: points
                        .into_iter()
                        .filter_map(|p| match p {
                            TypedPoint::Histogram(h) => Some(h),
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: t,
                }),
                Kind::Summary => metric::Data::Summary(Summary {
                    data_points: points
                        .into_iter()
                        .filter_map(|p| match p {
                            TypedPoint::Summary(s) => Some(s),
                            _ => None,
                        })
                        .collect(),
                }),
            };
            self.scopes.entry(scope).or_default().push(Metric {
                name: name.to_string(),
                description: description.to_string(),
                data: Some(data),
                ..Default::default()
            });
        }
    }
}

fn numbers(points: Vec<TypedPoint>) -> Vec<NumberDataPoint> {
    points
        .into_iter()
        .filter_map(|p| match p {
            TypedPoint::Number(n) => Some(n),
            _ => None,
        })
        .collect()
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

    /// Same bytes as encoding the typed request with prost, over cycles that exercise every
    /// type, both temporalities, resets, several scopes, empty, escaped, NaN and -0 values.
    #[test]
    fn direct_encoding_is_byte_for_byte_what_prost_encodes() {
        let awkward = "# HELP odd_total Odd \\ help.\n# TYPE odd_total counter\nodd_total{a=\"\",b=\"x\\\"y\",zz=\"\\n\"} 0\nodd_total{otel_scope_name=\"s2\",b=\"1\"} NaN\n# TYPE neg gauge\nneg{otel_scope_name=\"s1\",otel_scope_version=\"9\"} -0\nneg -1e300 1700000000000\n# TYPE h histogram\nh_bucket{le=\"5\",z=\"1\",a=\"2\"} 1\nh_bucket{le=\"1\",z=\"1\",a=\"2\"} 0\nh_sum{z=\"1\",a=\"2\"} 0\nh_count{z=\"1\",a=\"2\"} 3\n# TYPE q summary\nq{quantile=\"0\"} 0\nq{quantile=\"1\"} 2\nq_count 0\n# TYPE u untyped\nu 3\n";
        let big: String = (0..300)
            .map(|i| {
                format!(
                    "# TYPE big_{i}_total counter\nbig_{i}_total{{k=\"{}\"}} {i}\n",
                    "v".repeat(i)
                )
            })
            .collect();
        let cycles = [
            TEXT.to_string(),
            TEXT.replace("} 10\n", "} 15\n").replace("lat_count 6", "lat_count 7") + awkward,
            TEXT.replace("} 10\n", "} 3\n") + awkward + &big,
            awkward.replace("h_count{z=\"1\",a=\"2\"} 3", "h_count{z=\"1\",a=\"2\"} 9") + &big,
            String::new(),
            TEXT.to_string(),
        ];
        for t in [Temporality::Cumulative, Temporality::Delta] {
            let mut typed = Producer::new(t, &extra());
            let mut wire = Producer::new(t, &extra());
            for (i, text) in cycles.iter().enumerate() {
                let now = 1_000 * (i as u64 + 1);
                let (req, n1) = typed.produce(text, now);
                let (bytes, n2) = wire.produce_encoded(text, now);
                assert_eq!(n1, n2, "{t:?} cycle {i}");
                let want = prost::Message::encode_to_vec(&req);
                assert!(
                    bytes[..] == want[..],
                    "{t:?} cycle {i}: {} vs {} bytes",
                    bytes.len(),
                    want.len()
                );
            }
        }
        // on a real Envoy's stats: tests/tests/e2e_otlp_encoding.rs
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
