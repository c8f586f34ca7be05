//! The pushed data's state and its conversion to Prometheus text.
//!
//! State is kept per sender (one OTLP resource: `service.name` + `service.instance.id`) and per
//! series (normalised name + labels). Cumulative points replace the value; delta points are
//! added to it (the start time is the first point's), so Prometheus always sees cumulative
//! counters and histograms. A series not pushed for [`PushLimits::stale_after`] is forgotten,
//! and a sender with no series left with it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric};

use super::wire::{self, AnyV, DataKind, KvV, MetricV, PointValue, View, WireError};
use std::ops::Range;

/// Limits of the receiver.
#[derive(Debug, Clone)]
pub struct PushLimits {
    /// Most senders tracked at once; a new sender beyond it is refused (`RESOURCE_EXHAUSTED` /
    /// HTTP 429) until one goes stale.
    pub max_senders: usize,
    /// Most series per sender; points of new series beyond it are rejected (partial success)
    /// and counted, the sender's other series and the other senders are unaffected.
    pub max_series_per_sender: usize,
    /// Largest request body, in bytes (after gzip decompression for HTTP).
    pub max_request_bytes: usize,
    /// A series not pushed for this long is forgotten.
    pub stale_after: Duration,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            max_senders: 64,
            max_series_per_sender: 10_000,
            max_request_bytes: 4 << 20,
            stale_after: Duration::from_secs(300),
        }
    }
}

/// What one request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Data points accepted.
    pub accepted: u64,
    /// Data points rejected (series limit, sender limit, a type conflict, an invalid value).
    pub rejected: u64,
    /// Every point was refused because the receiver tracks [`PushLimits::max_senders`] senders:
    /// the sender should retry later.
    pub exhausted: bool,
}

/// Counters of the receiver since the plugin started (self-metrics).
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Requests, by outcome: ok, partial, exhausted, malformed, too large.
    pub requests_ok: AtomicU64,
    /// Requests with some points rejected.
    pub requests_partial: AtomicU64,
    /// Requests refused for the sender limit.
    pub requests_exhausted: AtomicU64,
    /// Requests that could not be decoded.
    pub requests_malformed: AtomicU64,
    /// Requests over the size limit.
    pub requests_too_large: AtomicU64,
    /// Data points accepted.
    pub points_accepted: AtomicU64,
    /// Data points rejected.
    pub points_rejected: AtomicU64,
}

/// Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Number(f64),
    /// `bounds` ascending; `counts` per bucket, not cumulative, `bounds.len() + 1` long.
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug, Clone)]
struct Series {
    /// The labels as exposition text, escaped, without braces (`a="1",b="2"`).
    labels: String,
    value: Value,
    start_ns: u64,
    updated: Instant,
}

#[derive(Debug, Clone)]
struct Family {
    kind: Kind,
    help: String,
    /// By a seeded hash of the point's attributes (order-independent), so a point of a known
    /// series is matched without building its labels. Two attribute sets of one sender
    /// colliding in 64 bits would share a series (only that sender's own).
    series: HashMap<u64, Series, foldhash::fast::RandomState>,
    /// Keys of `series` by label text, rebuilt when the set changed.
    order: Vec<u64>,
    dirty: bool,
}

#[derive(Debug, Default)]
struct Sender {
    /// `target_info`'s labels.
    info: Vec<(String, String)>,
    families: BTreeMap<String, Family>,
    series: usize,
    last_push: Option<Instant>,
}

/// Requests a slow subscriber may be behind before it loses the oldest.
pub const FORWARD_BACKLOG: usize = 1024;

/// An accepted request on its way to the OTLP backends.
#[derive(Debug)]
pub struct Forwarded {
    /// The request, without the points that were refused.
    pub request: ExportMetricsServiceRequest,
    /// Its data points.
    pub points: u64,
}

/// The pushed metrics of every sender, shared by the receivers and the pipeline.
#[derive(Debug)]
pub struct Store {
    senders: Mutex<HashMap<String, Sender>>,
    limits: PushLimits,
    forward: tokio::sync::broadcast::Sender<Arc<Forwarded>>,
    /// Where the receivers listen beyond what the policy says (set once by the binary).
    overrides: std::sync::OnceLock<super::addr::Overrides>,
    /// Counters (self-metrics).
    pub counters: PushCounters,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(PushLimits::default())
    }
}

impl Store {
    /// An empty store with `limits`.
    pub fn new(limits: PushLimits) -> Self {
        Self {
            senders: Mutex::default(),
            limits,
            forward: tokio::sync::broadcast::channel(FORWARD_BACKLOG).0,
            overrides: std::sync::OnceLock::new(),
            counters: PushCounters::default(),
        }
    }

    /// Sets where the receivers listen beyond the policy (once; later calls are ignored).
    pub fn set_overrides(&self, ov: super::addr::Overrides) {
        let _ = self.overrides.set(ov);
    }

    /// Where the receivers listen beyond the policy: loopback and the policy's ports unless set.
    pub fn overrides(&self) -> super::addr::Overrides {
        self.overrides.get().copied().unwrap_or(super::addr::Overrides {
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            grpc_port: None,
            http_port: None,
        })
    }

    /// The limits.
    pub fn limits(&self) -> &PushLimits {
        &self.limits
    }

    /// Counts a request refused before it was decoded.
    pub fn count_refused(&self, malformed: bool) {
        let c = if malformed {
            &self.counters.requests_malformed
        } else {
            &self.counters.requests_too_large
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes in one request given as protobuf (what the receivers get): read without copying
    /// ([`wire`]), taken in, and what was accepted goes on, as sent, to the subscribers (the
    /// OTLP exporters, [`Store::subscribe`]). Errors: a body that is not a valid request.
    pub fn ingest_protobuf(&self, body: &[u8]) -> Result<Ingested, WireError> {
        let view = wire::read(body)?;
        let forward = self.forward.receiver_count() > 0;
        let mut decisions = Vec::new();
        let out = self.ingest_view(&view, forward.then_some(&mut decisions));
        if forward
            && out.accepted > 0
            && let Ok(mut req) = <ExportMetricsServiceRequest as prost::Message>::decode(body)
        {
            prune(&mut req, &decisions);
            let _ = self.forward.send(Arc::new(Forwarded {
                request: req,
                points: out.accepted,
            }));
        }
        Ok(out)
    }

    /// [`Store::ingest_protobuf`] for a decoded request (OTLP/JSON, tests).
    pub fn ingest(&self, req: ExportMetricsServiceRequest) -> Ingested {
        let body = prost::Message::encode_to_vec(&req);
        self.ingest_protobuf(&body).unwrap_or_default()
    }

    fn ingest_view(&self, v: &View<'_>, mut decisions: Option<&mut Vec<bool>>) -> Ingested {
        let now = Instant::now();
        let mut out = Ingested::default();
        let mut senders = self.senders.lock().expect("push store lock");
        for res in &v.resources {
            let attrs = slice(&v.attrs, &res.attrs);
            let get = |k: &str| attrs.iter().find(|a| a.key == k).map(|a| any_to_string(a.value));
            let service = get("service.name").unwrap_or_else(|| "unknown_service".into());
            let instance = get("service.instance.id").unwrap_or_default();
            let job = match get("service.namespace") {
                Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
                _ => service.clone(),
            };
            let key = if instance.is_empty() {
                service.clone()
            } else {
                format!("{service}/{instance}")
            };
            let scopes = slice(&v.scopes, &res.scopes);
            if !senders.contains_key(&key) && senders.len() >= self.limits.max_senders {
                let points: u64 = scopes
                    .iter()
                    .flat_map(|sc| slice(&v.metrics, &sc.metrics))
                    .map(|m| u64::from(m.points.end - m.points.start))
                    .sum();
                out.rejected += points;
                out.exhausted = true;
                if let Some(d) = decisions.as_deref_mut() {
                    d.extend(std::iter::repeat_n(false, points as usize));
                }
                continue;
            }
            let sender = senders.entry(key).or_default();
            sender.last_push = Some(now);
            let mut target: Vec<(String, String)> = vec![("job".into(), job.clone())];
            if !instance.is_empty() {
                target.push(("instance".into(), instance.clone()));
            }
            let mut info = target.clone();
            for a in attrs {
                if !matches!(a.key, "service.name" | "service.instance.id" | "service.namespace") {
                    info.push((label_name(a.key), any_to_string(a.value)));
                }
            }
            info.sort();
            info.dedup_by(|a, b| a.0 == b.0);
            sender.info = info;
            for sc in scopes {
                let mut scope: Vec<(String, String)> = Vec::new();
                if !sc.name.is_empty() {
                    scope.push(("otel_scope_name".into(), sc.name.to_string()));
                }
                if !sc.version.is_empty() {
                    scope.push(("otel_scope_version".into(), sc.version.to_string()));
                }
                for m in slice(&v.metrics, &sc.metrics) {
                    let ctx = Ctx {
                        limits: &self.limits,
                        now,
                        scope: &scope,
                        target: &target,
                        help: m.description,
                    };
                    let (a, r) = ingest_metric(sender, &ctx, m, v, decisions.as_deref_mut());
                    out.accepted += a;
                    out.rejected += r;
                }
            }
        }
        let c = &self.counters;
        c.points_accepted.fetch_add(out.accepted, Ordering::Relaxed);
        c.points_rejected.fetch_add(out.rejected, Ordering::Relaxed);
        let r = if out.exhausted && out.accepted == 0 {
            &c.requests_exhausted
        } else if out.rejected > 0 {
            &c.requests_partial
        } else {
            &c.requests_ok
        };
        r.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// A feed of the accepted requests, as sent (only what arrives after subscribing). A
    /// subscriber more than [`FORWARD_BACKLOG`] requests behind loses the oldest.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Forwarded>> {
        self.forward.subscribe()
    }

    /// Forgets stale series and senders, then renders every sender as Prometheus text:
    /// `(sender, text)` with the sender as `service.name[/service.instance.id]`.
    pub fn render(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let stale = self.limits.stale_after;
        let mut senders = self.senders.lock().expect("push store lock");
        senders.retain(|_, s| {
            for f in s.families.values_mut() {
                let before = f.series.len();
                f.series.retain(|_, x| now.duration_since(x.updated) < stale);
                if f.series.len() != before || f.dirty {
                    let mut keys: Vec<(&str, u64)> = f.series.iter().map(|(k, x)| (x.labels.as_str(), *k)).collect();
                    keys.sort_unstable();
                    f.order = keys.into_iter().map(|(_, k)| k).collect();
                    f.dirty = false;
                }
            }
            s.families.retain(|_, f| !f.series.is_empty());
            s.series = s.families.values().map(|f| f.series.len()).sum();
            s.series > 0
        });
        let mut out: Vec<(String, String)> = senders.iter().map(|(k, s)| (k.clone(), render_sender(s))).collect();
        out.sort();
        out
    }

    /// How many series are held, over every sender.
    pub fn series(&self) -> usize {
        self.senders
            .lock()
            .expect("push store lock")
            .values()
            .map(|s| s.series)
            .sum()
    }
}

struct Ctx<'a> {
    limits: &'a PushLimits,
    now: Instant,
    scope: &'a [(String, String)],
    target: &'a [(String, String)],
    help: &'a str,
}

fn slice<'v, T>(all: &'v [T], r: &Range<u32>) -> &'v [T] {
    all.get(r.start as usize..r.end as usize).unwrap_or_default()
}

/// Removes from `req` the points whose decision (in request order) is false, then empty
/// metrics, scopes and resources.
fn prune(req: &mut ExportMetricsServiceRequest, decisions: &[bool]) {
    let mut next = decisions.iter().copied();
    let mut keep = move || next.next().unwrap_or(false);
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                match &mut m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.retain(|_| keep()),
                    Some(metric::Data::Sum(x)) => x.data_points.retain(|_| keep()),
                    Some(metric::Data::Histogram(h)) => h.data_points.retain(|_| keep()),
                    Some(metric::Data::ExponentialHistogram(h)) => h.data_points.retain(|_| keep()),
                    Some(metric::Data::Summary(x)) => x.data_points.retain(|_| keep()),
                    None => {}
                }
            }
            sm.metrics.retain(|m| point_count(m.data.as_ref()) > 0);
        }
        rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
    }
    req.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
}

fn point_count(d: Option<&metric::Data>) -> u64 {
    (match d {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

/// Ingests one metric's points into `sender`: `(accepted, rejected)`; each point's outcome is
/// appended to `decisions` when given.
fn ingest_metric(
    sender: &mut Sender,
    ctx: &Ctx<'_>,
    m: &MetricV<'_>,
    v: &View<'_>,
    mut decisions: Option<&mut Vec<bool>>,
) -> (u64, u64) {
    let points = slice(&v.points, &m.points);
    let n = points.len() as u64;
    let refuse_all = |decisions: Option<&mut Vec<bool>>| {
        if let Some(d) = decisions {
            d.extend(std::iter::repeat_n(false, points.len()));
        }
        (0, n)
    };
    let Some(data_kind) = m.kind else {
        return (0, 0);
    };
    let is_delta = m.temporality == AggregationTemporality::Delta as i32;
    let (kind, is_delta) = match data_kind {
        DataKind::Gauge => (Kind::Gauge, false),
        DataKind::Sum if m.monotonic => (Kind::Counter, is_delta),
        DataKind::Sum => (Kind::Gauge, is_delta),
        DataKind::Histogram | DataKind::ExponentialHistogram => (Kind::Histogram, is_delta),
        DataKind::Summary => (Kind::Summary, false),
    };
    let family_name = metric_name(m.name, m.unit, kind);
    if family_name.is_empty() {
        return refuse_all(decisions);
    }
    let family = sender.families.entry(family_name).or_insert_with(|| Family {
        kind,
        help: ctx.help.to_string(),
        series: HashMap::default(),
        order: Vec::new(),
        dirty: true,
    });
    if family.kind != kind {
        // another metric of this sender already owns the name with another type
        return refuse_all(decisions);
    }
    let (mut accepted, mut rejected) = (0, 0);
    let hasher = *family.series.hasher();
    // the scope is part of a series' identity too
    let scope_hash = std::hash::BuildHasher::hash_one(&hasher, ctx.scope);
    for p in points {
        let attrs = slice(&v.attrs, &p.attrs);
        let key = attrs_hash(&hasher, attrs).rotate_left(17) ^ scope_hash;
        // the common case: a known series, cumulative, same shape: updated in place
        if !is_delta
            && let Some(s) = family.series.get_mut(&key)
            && update_in_place(&mut s.value, &p.value, v)
        {
            s.start_ns = p.start_ns;
            s.updated = ctx.now;
            accepted += 1;
            if let Some(d) = decisions.as_deref_mut() {
                d.push(true);
            }
            continue;
        }
        let value = match &p.value {
            PointValue::Number(x) => Some(Value::Number(*x)),
            PointValue::Histogram {
                count,
                sum,
                counts,
                bounds,
            } => explicit(slice(&v.u64s, counts), slice(&v.f64s, bounds), *sum, *count),
            PointValue::Exponential {
                count,
                sum,
                scale,
                zero_count,
                offset,
                positive,
                negative,
            } => exponential(
                *count,
                *sum,
                *scale,
                *zero_count,
                *offset,
                slice(&v.u64s, positive),
                slice(&v.u64s, negative),
            ),
            PointValue::Summary { count, sum, quantiles } => Some(Value::Summary {
                quantiles: slice(&v.f64s, quantiles)
                    .chunks_exact(2)
                    .map(|q| (q[0], q[1]))
                    .collect(),
                sum: *sum,
                count: *count,
            }),
        };
        let ok = match value {
            None => {
                rejected += 1;
                false
            }
            Some(value) => match family.series.get_mut(&key) {
                Some(s) => {
                    s.value = if is_delta { add(&s.value, value) } else { value };
                    if !is_delta {
                        s.start_ns = p.start_ns;
                    }
                    s.updated = ctx.now;
                    accepted += 1;
                    true
                }
                None if sender.series >= ctx.limits.max_series_per_sender => {
                    rejected += 1;
                    false
                }
                None => {
                    family.series.insert(
                        key,
                        Series {
                            labels: label_text(&labels_of(attrs, ctx)),
                            value,
                            start_ns: p.start_ns,
                            updated: ctx.now,
                        },
                    );
                    sender.series += 1;
                    family.dirty = true;
                    accepted += 1;
                    true
                }
            },
        };
        if let Some(d) = decisions.as_deref_mut() {
            d.push(ok);
        }
    }
    (accepted, rejected)
}

/// Replaces `old` with a cumulative point of the same shape without allocating: numbers, and
/// explicit histograms with the same bounds. False when the shapes differ.
fn update_in_place(old: &mut Value, new: &PointValue, v: &View<'_>) -> bool {
    match (old, new) {
        (Value::Number(o), PointValue::Number(n)) => {
            *o = *n;
            true
        }
        (
            Value::Histogram {
                bounds: ob,
                counts: oc,
                sum: os,
                count: on,
            },
            PointValue::Histogram {
                count,
                sum,
                counts,
                bounds,
            },
        ) => {
            let (nc, nb) = (slice(&v.u64s, counts), slice(&v.f64s, bounds));
            if nb != ob.as_slice() || nc.len() != oc.len() {
                return false;
            }
            oc.copy_from_slice(nc);
            *os = sum.unwrap_or(0.0);
            *on = *count;
            true
        }
        _ => false,
    }
}

/// An explicit-bucket histogram point; `None` when its buckets do not fit its bounds.
fn explicit(counts: &[u64], bounds: &[f64], sum: Option<f64>, count: u64) -> Option<Value> {
    let counts = if counts.is_empty() {
        vec![0; bounds.len() + 1]
    } else if counts.len() == bounds.len() + 1 {
        counts.to_vec()
    } else {
        return None;
    };
    if bounds
        .windows(2)
        .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
    {
        return None;
    }
    Some(Value::Histogram {
        bounds: bounds.to_vec(),
        counts,
        sum: sum.unwrap_or(0.0),
        count,
    })
}

/// Most buckets an exponential histogram may span after conversion.
const MAX_EXP_BUCKETS: usize = 4096;

/// An exponential histogram point as a classic histogram on its own boundaries: bucket `i` of
/// the positive range has the upper bound `base^(i+1)` with `base = 2^(2^-scale)`; every
/// negative bucket and the zero bucket count under `le="0"` (the negative range's own bounds
/// are not kept).
fn exponential(
    count: u64,
    sum: Option<f64>,
    scale: i32,
    zero_count: u64,
    offset: i32,
    positive: &[u64],
    negative: &[u64],
) -> Option<Value> {
    if !(-10..=20).contains(&scale) || positive.len() > MAX_EXP_BUCKETS {
        return None;
    }
    let base = 2f64.powf(2f64.powi(-scale));
    let at_or_below_zero = negative.iter().fold(zero_count, |a, c| a.saturating_add(*c));
    let mut bounds = vec![0.0];
    let mut counts = vec![at_or_below_zero];
    for (i, c) in positive.iter().enumerate() {
        let bound = base.powi(offset.checked_add(i as i32)?.checked_add(1)?);
        if !bound.is_finite() {
            return None;
        }
        bounds.push(bound);
        counts.push(*c);
    }
    let seen = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    counts.push(count.saturating_sub(seen));
    Some(Value::Histogram {
        bounds,
        counts,
        sum: sum.unwrap_or(0.0),
        count,
    })
}

/// `old + delta` for delta temporality; a histogram whose bounds changed starts over.
fn add(old: &Value, delta: Value) -> Value {
    match (old, delta) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
        (
            Value::Histogram {
                bounds: ob,
                counts: oc,
                sum: os,
                count: on,
            },
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            },
        ) if *ob == bounds => Value::Histogram {
            counts: oc.iter().zip(&counts).map(|(a, b)| a.saturating_add(*b)).collect(),
            bounds,
            sum: os + sum,
            count: on.saturating_add(count),
        },
        (_, d) => d,
    }
}

/// An order-independent hash of a point's attributes (keys and typed values).
fn attrs_hash(state: &foldhash::fast::RandomState, attrs: &[KvV<'_>]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    attrs.iter().fold(attrs.len() as u64, |acc, a| {
        let mut h = state.build_hasher();
        a.key.hash(&mut h);
        match a.value {
            AnyV::None => 0u8.hash(&mut h),
            AnyV::Str(s) => (1u8, s).hash(&mut h),
            AnyV::Bool(b) => (2u8, b).hash(&mut h),
            AnyV::Int(i) => (3u8, i).hash(&mut h),
            AnyV::Double(d) => (4u8, d.to_bits()).hash(&mut h),
            AnyV::Bytes(b) => (5u8, b).hash(&mut h),
            AnyV::Raw(b) => (6u8, b).hash(&mut h),
        }
        acc.wrapping_add(h.finish())
    })
}

/// The series' labels: its attributes (names sanitised), then the scope and target labels.
fn labels_of(attrs: &[KvV<'_>], ctx: &Ctx<'_>) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = attrs
        .iter()
        .map(|a| (label_name(a.key), any_to_string(a.value)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for (k, v) in ctx.scope.iter().chain(ctx.target) {
        if !l.iter().any(|(n, _)| n == k) {
            l.push((k.clone(), v.clone()));
        }
    }
    l.sort();
    l.dedup_by(|a, b| a.0 == b.0);
    l
}

/// An attribute value as a label value (arrays and maps as JSON, bytes as hex).
fn any_to_string(v: AnyV<'_>) -> String {
    match v {
        AnyV::None => String::new(),
        AnyV::Str(s) => s.to_string(),
        AnyV::Bool(b) => b.to_string(),
        AnyV::Int(i) => i.to_string(),
        AnyV::Double(d) => {
            let mut s = String::new();
            put_f64(&mut s, d);
            s
        }
        AnyV::Bytes(b) => hex(b),
        AnyV::Raw(b) => <AnyValue as prost::Message>::decode(b)
            .map(|a| proto_any_to_string(Some(&a)))
            .unwrap_or_default(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A decoded attribute value (inside arrays and maps) as label text.
fn proto_any_to_string(v: Option<&AnyValue>) -> String {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => {
            let mut s = String::new();
            put_f64(&mut s, *d);
            s
        }
        Some(V::BytesValue(b)) => b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        }),
        Some(V::ArrayValue(a)) => {
            let items: Vec<String> = a
                .values
                .iter()
                .map(|x| format!("{:?}", proto_any_to_string(Some(x))))
                .collect();
            format!("[{}]", items.join(","))
        }
        Some(V::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|x| format!("{:?}:{:?}", x.key, proto_any_to_string(x.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => String::new(),
    }
}

/// A label name from an attribute key: every character outside `[a-zA-Z0-9_]` becomes `_`; a
/// leading digit gets the prefix `key_` (the specification's rule).
pub fn label_name(key: &str) -> String {
    let mut s = meshmetric_policies::proxy::sanitize_label(key);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// The unit's Prometheus word(s), per the specification's table; `{…}` annotations dropped,
/// `a/b` as `a_per_b`.
fn unit_words(unit: &str, kind: Kind) -> String {
    fn word(u: &str) -> &str {
        match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "TiBy" => "tibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "TBy" => "terabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "%" => "percent",
            other => other,
        }
    }
    let mut cleaned = String::new();
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = cleaned.trim();
    if cleaned == "1" {
        return if kind == Kind::Gauge {
            "ratio".into()
        } else {
            String::new()
        };
    }
    match cleaned.split_once('/') {
        Some((a, b)) if !b.is_empty() => {
            let per = match b {
                "s" => "second",
                "m" => "minute",
                "h" => "hour",
                "d" => "day",
                "w" => "week",
                "mo" => "month",
                "y" => "year",
                o => word(o),
            };
            if a.is_empty() {
                format!("per_{per}")
            } else {
                format!("{}_per_{per}", word(a))
            }
        }
        _ => word(cleaned).to_string(),
    }
}

/// The Prometheus metric name of an OTLP metric: invalid characters become `_` (runs of `_`
/// collapse), the unit is appended unless the name already ends with it, `_total` for counters.
fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    fn sanitise(out: &mut String, s: &str) {
        for c in s.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            };
            if c == '_' && out.ends_with('_') {
                continue;
            }
            out.push(c);
        }
    }
    let mut out = String::with_capacity(name.len() + 16);
    sanitise(&mut out, name);
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if kind == Kind::Counter
        && let Some(base) = out.strip_suffix("_total")
    {
        out = base.to_string();
    }
    let mut unit_s = String::new();
    sanitise(&mut unit_s, &unit_words(unit, kind));
    let unit = unit_s.trim_matches('_');
    if !unit.is_empty() && !out.ends_with(&format!("_{unit}")) && out != unit {
        if !out.ends_with('_') {
            out.push('_');
        }
        out.push_str(unit);
    }
    if kind == Kind::Counter {
        out.push_str("_total");
    }
    if out.trim_matches('_').is_empty() {
        String::new()
    } else {
        out
    }
}

/// Writes `v` as Prometheus text writes values.
fn put_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Labels as exposition text, escaped, without braces.
fn label_text(labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        crate::merge::escape_label_value(v, &mut out);
        out.push('"');
    }
    out
}

/// `name{labels[,extra]} ` (a space after, ready for the value).
fn head(out: &mut String, name: &str, suffix: &str, labels: &str, extra: Option<(&str, f64)>) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && extra.is_none() {
        out.push(' ');
        return;
    }
    out.push('{');
    out.push_str(labels);
    if let Some((k, v)) = extra {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        put_f64(out, v);
        out.push('"');
    }
    out.push_str("} ");
}

fn render_sender(s: &Sender) -> String {
    let mut out = String::with_capacity(s.series * 64);
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info");
    let info = label_text(&s.info);
    if !info.is_empty() {
        out.push('{');
        out.push_str(&info);
        out.push('}');
    }
    out.push_str(" 1\n");
    let mut itoa = itoa::Buffer::new();
    for (name, f) in &s.families {
        if !f.help.is_empty() {
            let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
        for series in f.order.iter().filter_map(|k| f.series.get(k)) {
            let labels = series.labels.as_str();
            match &series.value {
                Value::Number(v) => {
                    head(&mut out, name, "", labels, None);
                    put_f64(&mut out, *v);
                    out.push('\n');
                }
                Value::Histogram {
                    bounds,
                    counts,
                    sum,
                    count,
                } => {
                    let mut cum = 0u64;
                    for (b, c) in bounds.iter().zip(counts) {
                        cum = cum.saturating_add(*c);
                        head(&mut out, name, "_bucket", labels, Some(("le", *b)));
                        out.push_str(itoa.format(cum));
                        out.push('\n');
                    }
                    head(&mut out, name, "_bucket", labels, Some(("le", f64::INFINITY)));
                    out.push_str(itoa.format(*count));
                    out.push('\n');
                    head(&mut out, name, "_sum", labels, None);
                    put_f64(&mut out, *sum);
                    out.push('\n');
                    head(&mut out, name, "_count", labels, None);
                    out.push_str(itoa.format(*count));
                    out.push('\n');
                }
                Value::Summary { quantiles, sum, count } => {
                    for (q, v) in quantiles {
                        head(&mut out, name, "", labels, Some(("quantile", *q)));
                        put_f64(&mut out, *v);
                        out.push('\n');
                    }
                    head(&mut out, name, "_sum", labels, None);
                    put_f64(&mut out, *sum);
                    out.push('\n');
                    head(&mut out, name, "_count", labels, None);
                    out.push_str(itoa.format(*count));
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point::Buckets,
        number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn point(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn request(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", service),
                        kv("service.instance.id", "i-1"),
                        kv("host.name", "web-01"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "shop".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn sum(name: &str, unit: &str, v: f64, delta: bool, monotonic: bool) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: "help".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(v, vec![kv("http.route", "/a")])],
                aggregation_temporality: if delta {
                    AggregationTemporality::Delta
                } else {
                    AggregationTemporality::Cumulative
                } as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_the_specification() {
        assert_eq!(
            metric_name("http.server.requests", "1", Kind::Counter),
            "http_server_requests_total"
        );
        assert_eq!(
            metric_name("http.server.duration", "ms", Kind::Histogram),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(metric_name("queue.size", "{items}", Kind::Gauge), "queue_size");
        assert_eq!(
            metric_name("throughput", "By/s", Kind::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(metric_name("sent_bytes_total", "By", Kind::Counter), "sent_bytes_total");
        assert_eq!(metric_name("a..b", "", Kind::Gauge), "a_b");
        assert_eq!(metric_name("2xx", "", Kind::Gauge), "_2xx");
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("9lives"), "key_9lives");
    }

    #[test]
    fn cumulative_replaces_delta_accumulates_and_labels_carry_scope_and_target() {
        let s = Store::new(PushLimits::default());
        let r = s.ingest(request(
            "shop",
            vec![sum("orders", "", 5.0, false, true), sum("hits", "", 2.0, true, true)],
        ));
        assert_eq!((r.accepted, r.rejected), (2, 0));
        s.ingest(request(
            "shop",
            vec![sum("orders", "", 7.0, false, true), sum("hits", "", 3.0, true, true)],
        ));
        let out = s.render();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "shop/i-1");
        let t = &out[0].1;
        assert!(t.contains("# TYPE orders_total counter\n"), "{t}");
        assert!(
            t.contains(r#"orders_total{http_route="/a",instance="i-1",job="shop",otel_scope_name="shop",otel_scope_version="1.2"} 7"#),
            "{t}"
        );
        assert!(t.contains(r#"hits_total{http_route="/a",instance="i-1",job="shop",otel_scope_name="shop",otel_scope_version="1.2"} 5"#), "{t}");
        assert!(
            t.contains(r#"target_info{host_name="web-01",instance="i-1",job="shop"} 1"#),
            "{t}"
        );
    }

    #[test]
    fn histograms_explicit_and_exponential_become_classic() {
        let s = Store::new(PushLimits::default());
        let h = Metric {
            name: "latency".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 6,
                    sum: Some(1.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.1, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let e = Metric {
            name: "size".into(),
            unit: "By".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 5,
                    sum: Some(12.0),
                    scale: 0,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![1, 3],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        s.ingest(request("svc", vec![h, e]));
        let t = &s.render()[0].1;
        for line in [
            "# TYPE latency_seconds histogram",
            r#"latency_seconds_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="0.1"} 1"#,
            r#"latency_seconds_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="1"} 3"#,
            r#"latency_seconds_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="+Inf"} 6"#,
            r#"latency_seconds_sum{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2"} 1.5"#,
            r#"size_bytes_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="0"} 1"#,
            r#"size_bytes_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="2"} 2"#,
            r#"size_bytes_bucket{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2",le="4"} 5"#,
            r#"size_bytes_count{instance="i-1",job="svc",otel_scope_name="shop",otel_scope_version="1.2"} 5"#,
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}\n{t}");
        }
    }

    #[test]
    fn limits_isolate_senders_and_stale_series_go() {
        let s = Store::new(PushLimits {
            max_senders: 1,
            max_series_per_sender: 2,
            stale_after: Duration::from_millis(50),
            ..Default::default()
        });
        let many = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: (0..5).map(|i| point(1.0, vec![kv("i", &i.to_string())])).collect(),
            })),
            ..Default::default()
        };
        let r = s.ingest(request("flood", vec![many]));
        assert_eq!((r.accepted, r.rejected, r.exhausted), (2, 3, false));
        let r = s.ingest(request("other", vec![sum("x", "", 1.0, false, true)]));
        assert_eq!((r.accepted, r.rejected, r.exhausted), (0, 1, true));
        assert_eq!(s.series(), 2);
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.render().is_empty());
        let r = s.ingest(request("other", vec![sum("x", "", 1.0, false, true)]));
        assert_eq!((r.accepted, r.exhausted), (1, false));
        // a name owned by another type refuses the points
        let r = s.ingest(request("other", vec![sum("x", "", 1.0, false, false)]));
        assert_eq!(r.rejected, 0, "x (gauge) and x_total (counter) are different names");
    }
}
