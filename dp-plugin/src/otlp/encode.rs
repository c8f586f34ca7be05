//! Direct protobuf encoding of the producer's data points: the bytes `prost` would write for
//! the `ExportMetricsServiceRequest` that `Producer::produce` builds, written
//! without building it (no `String` per attribute, no `Vec` per data point, no second walk to
//! compute lengths).
//!
//! Encoding rules followed (protobuf wire format as `prost` applies it, fields in tag order,
//! proto3 defaults left out): a string or bytes field is written when not empty, a `fixed64`
//! or `double` when not zero (`-0.0` counts as zero, NaN does not), an `optional double` and a
//! `oneof` member whenever set, a message field whenever set (even empty), packed repeated
//! scalars when not empty; lengths are minimal varints. Field numbers are those of
//! `opentelemetry/proto/metrics/v1/metrics.proto`, `common.proto` and `resource.proto`.
//!
//! Layout: a family's data points are written to a buffer per scope as they come; when the
//! family ends, its `Metric` (name, description, data) is appended to its scope's buffer, one
//! copy of the points. Each scope's buffer starts with room for the request, resource and
//! scope headers; with one scope (Envoy's and most applications' output) the request is that
//! buffer, headers written into the room, so the metrics are never copied again.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::points::{Emit, Kind, Point, Scope, scope_name, scope_version};

/// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

/// A field's key (every field number used here is below 16: one byte).
const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field's size: key, length, body.
fn field_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

fn put_len(out: &mut Vec<u8>, field: u8, body: usize) {
    out.push(key(field, LEN));
    put_varint(out, body as u64);
}

fn put_str(out: &mut Vec<u8>, field: u8, s: &str) {
    if !s.is_empty() {
        put_len(out, field, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn str_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

fn put_fixed64(out: &mut Vec<u8>, field: u8, v: u64) {
    if v != 0 {
        out.push(key(field, I64));
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed64_len(v: u64) -> usize {
    if v != 0 { 9 } else { 0 }
}

/// A `double`: left out when zero.
fn put_double(out: &mut Vec<u8>, field: u8, v: f64) {
    if v != 0.0 {
        put_double_always(out, field, v);
    }
}

fn double_len(v: f64) -> usize {
    if v != 0.0 { 9 } else { 0 }
}

/// An `optional double` or a `oneof` double: written when set, zero included.
fn put_double_always(out: &mut Vec<u8>, field: u8, v: f64) {
    out.push(key(field, I64));
    out.extend_from_slice(&v.to_le_bytes());
}

/// `KeyValue { key, value: AnyValue { string_value } }`'s body size.
fn kv_len(k: &str, v: &str) -> usize {
    let any = field_len(v.len()); // the oneof member is written even when empty
    str_len(k) + field_len(any)
}

fn attrs_len(attrs: &[(&str, Cow<'_, str>)]) -> usize {
    attrs.iter().map(|(k, v)| field_len(kv_len(k, v))).sum()
}

fn put_attrs(out: &mut Vec<u8>, field: u8, attrs: &[(&str, Cow<'_, str>)]) {
    for (k, v) in attrs {
        put_len(out, field, kv_len(k, v));
        put_str(out, 1, k);
        put_len(out, 2, field_len(v.len()));
        put_len(out, 1, v.len());
        out.extend_from_slice(v.as_bytes());
    }
}

/// Writes one data point (a `data_points` field, number 1 of Gauge/Sum/Histogram/Summary).
fn put_point(out: &mut Vec<u8>, attrs: &[(&str, Cow<'_, str>)], p: &Point<'_>) {
    let a = attrs_len(attrs);
    match *p {
        // NumberDataPoint: start 2, time 3, as_double 4, attributes 7
        Point::Number { start, time, value } => {
            put_len(out, 1, fixed64_len(start) + fixed64_len(time) + 9 + a);
            put_fixed64(out, 2, start);
            put_fixed64(out, 3, time);
            put_double_always(out, 4, value);
            put_attrs(out, 7, attrs);
        }
        // HistogramDataPoint: start 2, time 3, count 4, sum 5 (optional), bucket_counts 6
        // (packed fixed64), explicit_bounds 7 (packed double), attributes 9
        Point::Histogram {
            start,
            time,
            count,
            sum,
            counts,
            bounds,
        } => {
            let packed = |n: usize| if n == 0 { 0 } else { field_len(8 * n) };
            let body = fixed64_len(start)
                + fixed64_len(time)
                + fixed64_len(count)
                + 9
                + packed(counts.len())
                + packed(bounds.len())
                + a;
            put_len(out, 1, body);
            put_fixed64(out, 2, start);
            put_fixed64(out, 3, time);
            put_fixed64(out, 4, count);
            put_double_always(out, 5, sum);
            if !counts.is_empty() {
                put_len(out, 6, 8 * counts.len());
                for c in counts {
                    out.extend_from_slice(&c.to_le_bytes());
                }
            }
            if !bounds.is_empty() {
                put_len(out, 7, 8 * bounds.len());
                for b in bounds {
                    out.extend_from_slice(&b.to_le_bytes());
                }
            }
            put_attrs(out, 9, attrs);
        }
        // SummaryDataPoint: start 2, time 3, count 4, sum 5, quantile_values 6
        // (ValueAtQuantile: quantile 1, value 2), attributes 7
        Point::Summary {
            start,
            time,
            count,
            sum,
            quantiles,
        } => {
            let q: usize = quantiles
                .iter()
                .map(|&(q, v)| field_len(double_len(q) + double_len(v)))
                .sum();
            put_len(
                out,
                1,
                fixed64_len(start) + fixed64_len(time) + fixed64_len(count) + double_len(sum) + q + a,
            );
            put_fixed64(out, 2, start);
            put_fixed64(out, 3, time);
            put_fixed64(out, 4, count);
            put_double(out, 5, sum);
            for &(q, v) in quantiles {
                put_len(out, 6, double_len(q) + double_len(v));
                put_double(out, 1, q);
                put_double(out, 2, v);
            }
            put_attrs(out, 7, attrs);
        }
    }
}

/// Whether `a` is `b` (most scopes are empty: no call to compare bytes then).
fn same_scope(a: &(String, String), b: &Scope<'_>) -> bool {
    let eq = |x: &str, y: &str| x.len() == y.len() && (x.is_empty() || x == y);
    eq(&a.0, &b.0) && eq(&a.1, &b.1)
}

/// One scope's encoded `metrics` fields, after room for the headers.
#[derive(Debug)]
struct ScopeBuf {
    scope: (String, String),
    /// `InstrumentationScope`'s body.
    scope_body: Vec<u8>,
    /// Bytes at the start of `buf` kept free for the headers.
    room: usize,
    buf: Vec<u8>,
}

/// Writes the request's protobuf bytes from the producer's data points.
#[derive(Debug, Default)]
pub(crate) struct WireEmitter {
    /// The `resource` field of `ResourceMetrics` (key, length, body), encoded once.
    resource: Vec<u8>,
    scopes: Vec<ScopeBuf>,
    scope_index: HashMap<(String, String), usize>,
    /// The current family's points per scope: (index in `scopes`, encoded points, count);
    /// only the first `active` are in use (buffers are reused).
    family: Vec<(usize, Vec<u8>, usize)>,
    active: usize,
    points: usize,
    /// The previous request's size, to size the next one's buffer.
    last_len: usize,
}

impl WireEmitter {
    /// An emitter whose requests carry `resource`.
    pub(crate) fn new(resource: &Resource) -> Self {
        let body = prost::Message::encode_to_vec(resource);
        let mut field = Vec::with_capacity(field_len(body.len()));
        put_len(&mut field, 1, body.len());
        field.extend_from_slice(&body);
        Self {
            resource: field,
            ..Default::default()
        }
    }

    /// Starts a request.
    pub(crate) fn start(&mut self) {
        self.scopes.clear();
        self.scope_index.clear();
        self.active = 0;
        self.points = 0;
    }

    fn scope_of(&mut self, scope: &Scope<'_>) -> usize {
        // few scopes: searched; many: hashed
        if self.scopes.len() <= 8
            && let Some(i) = self.scopes.iter().position(|s| same_scope(&s.scope, scope))
        {
            return i;
        }
        let k = (scope.0.to_string(), scope.1.to_string());
        if let Some(&i) = self.scope_index.get(&k) {
            return i;
        }
        let mut scope_body = Vec::new();
        put_str(&mut scope_body, 1, scope_name(&k.0));
        put_str(&mut scope_body, 2, scope_version(&k.1));
        // request key + length, resource, scope_metrics key + length, scope key + length + body
        let room = 1 + 10 + self.resource.len() + 1 + 10 + field_len(scope_body.len());
        let mut buf = Vec::with_capacity(if self.scopes.is_empty() {
            room + self.last_len + self.last_len / 16
        } else {
            room + 4096
        });
        buf.resize(room, 0);
        self.scope_index.insert(k.clone(), self.scopes.len());
        self.scopes.push(ScopeBuf {
            scope: k,
            scope_body,
            room,
            buf,
        });
        self.scopes.len() - 1
    }

    /// The request: `ExportMetricsServiceRequest { resource_metrics: [ResourceMetrics {
    /// resource, scope_metrics (sorted by scope name, version) }] }`.
    pub(crate) fn finish(&mut self) -> Bytes {
        let mut scopes = std::mem::take(&mut self.scopes);
        scopes.sort_by(|a, b| a.scope.cmp(&b.scope));
        let sm_len = |s: &ScopeBuf| field_len(s.scope_body.len()) + s.buf.len() - s.room;
        let rm_len = self.resource.len() + scopes.iter().map(|s| field_len(sm_len(s))).sum::<usize>();
        let mut head = Vec::with_capacity(64 + self.resource.len());
        put_len(&mut head, 1, rm_len);
        head.extend_from_slice(&self.resource);
        let out = if scopes.len() == 1 {
            let s = scopes.pop().expect("one scope");
            put_len(&mut head, 2, sm_len(&s));
            put_len(&mut head, 1, s.scope_body.len());
            head.extend_from_slice(&s.scope_body);
            let at = s.room - head.len();
            let mut buf = s.buf;
            buf[at..s.room].copy_from_slice(&head);
            Bytes::from(buf).slice(at..)
        } else {
            let mut out = Vec::with_capacity(field_len(rm_len));
            out.extend_from_slice(&head);
            for s in &scopes {
                put_len(&mut out, 2, sm_len(s));
                put_len(&mut out, 1, s.scope_body.len());
                out.extend_from_slice(&s.scope_body);
                out.extend_from_slice(&s.buf[s.room..]);
            }
            Bytes::from(out)
        };
        self.last_len = out.len();
        self.scope_index.clear();
        out
    }
}

impl Emit for WireEmitter {
    fn points(&self) -> usize {
        self.points
    }

    fn point(&mut self, scope: &Scope<'_>, attrs: &[(&str, Cow<'_, str>)], p: Point<'_>) {
        // the scope of the previous point, most of the time
        let slot = match self.family[..self.active]
            .iter()
            .position(|(i, _, _)| same_scope(&self.scopes[*i].scope, scope))
        {
            Some(slot) => slot,
            None => {
                let i = self.scope_of(scope);
                if self.active == self.family.len() {
                    self.family.push((i, Vec::new(), 0));
                } else {
                    let f = &mut self.family[self.active];
                    f.0 = i;
                    f.1.clear();
                    f.2 = 0;
                }
                self.active += 1;
                self.active - 1
            }
        };
        let (_, buf, n) = &mut self.family[slot];
        put_point(buf, attrs, &p);
        *n += 1;
    }

    fn end_family(&mut self, name: &str, description: &str, kind: Kind) {
        for slot in 0..self.active {
            let (i, points, n) = &self.family[slot];
            self.points += n;
            // the data message: points, then temporality (2) and monotonic (3) where they apply
            let (field, tail): (u8, &[u8]) = match kind {
                Kind::Gauge => (5, &[]),
                Kind::Sum(t) if t != 0 => (7, &[key(2, VARINT), t as u8, key(3, VARINT), 1]),
                Kind::Sum(_) => (7, &[key(3, VARINT), 1]),
                Kind::Histogram(t) if t != 0 => (9, &[key(2, VARINT), t as u8]),
                Kind::Histogram(_) => (9, &[]),
                Kind::Summary => (11, &[]),
            };
            let data = points.len() + tail.len();
            let out = &mut self.scopes[*i].buf;
            // ScopeMetrics.metrics (2): Metric { name 1, description 2, data oneof }
            put_len(out, 2, str_len(name) + str_len(description) + field_len(data));
            put_str(out, 1, name);
            put_str(out, 2, description);
            put_len(out, field, data);
            out.extend_from_slice(points);
            out.extend_from_slice(tail);
        }
        self.active = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_protobuf_writes_them() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut want = Vec::new();
            prost::encoding::encode_varint(v, &mut want);
            assert_eq!(b, want, "{v}");
        }
    }
}
