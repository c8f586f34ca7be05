//! Zero-copy reading of an OTLP `ExportMetricsServiceRequest` (protobuf wire format,
//! `opentelemetry/proto/collector/metrics/v1/metrics_service.proto`): strings and byte fields are
//! borrowed from the request body and every element lands in one flat arena per kind, so reading
//! a request costs a handful of allocations instead of several per data point. Exemplars,
//! metadata, schema URLs and dropped counts are skipped; unknown fields are skipped as protobuf
//! requires. Nesting is fixed by the schema (attribute arrays and maps are kept as raw bytes), so
//! no input can recurse deeply.

use std::ops::Range;

/// What is wrong with a body that is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP protobuf: {0}")]
pub struct WireError(pub &'static str);

type Result<T> = std::result::Result<T, WireError>;

/// An attribute value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyV<'a> {
    /// Unset.
    None,
    /// `string_value`.
    Str(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// `array_value` or `kvlist_value`: the whole `AnyValue` message.
    Raw(&'a [u8]),
}

/// An attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvV<'a> {
    /// Key.
    pub key: &'a str,
    /// Value.
    pub value: AnyV<'a>,
}

/// The kind of a metric's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// `gauge`.
    Gauge,
    /// `sum`.
    Sum,
    /// `histogram`.
    Histogram,
    /// `exponential_histogram`.
    ExponentialHistogram,
    /// `summary`.
    Summary,
}

/// A data point's value; ranges index [`View::u64s`] and [`View::f64s`].
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// Gauge or sum.
    Number(f64),
    /// Explicit-bucket histogram.
    Histogram {
        /// Count.
        count: u64,
        /// Sum.
        sum: Option<f64>,
        /// Bucket counts.
        counts: Range<u32>,
        /// Bounds.
        bounds: Range<u32>,
    },
    /// Exponential histogram.
    Exponential {
        /// Count.
        count: u64,
        /// Sum.
        sum: Option<f64>,
        /// Scale.
        scale: i32,
        /// Zero bucket.
        zero_count: u64,
        /// Offset of the positive buckets.
        offset: i32,
        /// Positive bucket counts.
        positive: Range<u32>,
        /// Negative bucket counts (their offset does not matter here).
        negative: Range<u32>,
    },
    /// Summary: quantile/value pairs in `f64s`.
    Summary {
        /// Count.
        count: u64,
        /// Sum.
        sum: f64,
        /// Pairs.
        quantiles: Range<u32>,
    },
}

/// A data point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointV {
    /// Attributes, in [`View::attrs`].
    pub attrs: Range<u32>,
    /// `start_time_unix_nano`.
    pub start_ns: u64,
    /// Value.
    pub value: PointValue,
}

/// A metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricV<'a> {
    /// Name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Unit.
    pub unit: &'a str,
    /// Kind of data, `None` when the metric has none.
    pub kind: Option<DataKind>,
    /// `aggregation_temporality`.
    pub temporality: i32,
    /// `is_monotonic` (sums).
    pub monotonic: bool,
    /// Points, in [`View::points`].
    pub points: Range<u32>,
}

/// An instrumentation scope and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeV<'a> {
    /// Name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Metrics, in [`View::metrics`].
    pub metrics: Range<u32>,
}

/// A resource and its scopes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceV {
    /// Resource attributes, in [`View::attrs`].
    pub attrs: Range<u32>,
    /// Scopes, in [`View::scopes`].
    pub scopes: Range<u32>,
}

/// A whole request, borrowed from its body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct View<'a> {
    /// Resources, in order.
    pub resources: Vec<ResourceV>,
    /// Scopes.
    pub scopes: Vec<ScopeV<'a>>,
    /// Metrics.
    pub metrics: Vec<MetricV<'a>>,
    /// Data points.
    pub points: Vec<PointV>,
    /// Attributes.
    pub attrs: Vec<KvV<'a>>,
    /// Bucket counts.
    pub u64s: Vec<u64>,
    /// Bounds and quantile pairs.
    pub f64s: Vec<f64>,
}

struct R<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> R<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, p: 0 }
    }
    fn more(&self) -> bool {
        self.p < self.b.len()
    }
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.p).ok_or(WireError("truncated varint"))?;
            self.p += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError("varint longer than 10 bytes"))
    }
    fn key(&mut self) -> Result<(u64, u8)> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .p
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(WireError("truncated field"))?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.varint()?).map_err(|_| WireError("length too large"))?;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError("string is not UTF-8"))
    }
    fn fixed64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().map_err(|_| WireError("fixed64"))?))
    }
    fn skip(&mut self, wt: u8) -> Result<()> {
        match wt {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(WireError("unsupported wire type (groups)")),
        }
    }
    /// A fixed64 field that may come packed (LEN) or one per tag.
    fn fixed64s(&mut self, wt: u8, out: &mut Vec<u64>) -> Result<()> {
        match wt {
            1 => out.push(self.fixed64()?),
            2 => {
                let b = self.bytes()?;
                if b.len() % 8 != 0 {
                    return Err(WireError("packed fixed64 length"));
                }
                out.extend(
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
                );
            }
            _ => return Err(WireError("wrong wire type for fixed64")),
        }
        Ok(())
    }
    fn varints(&mut self, wt: u8, out: &mut Vec<u64>) -> Result<()> {
        match wt {
            0 => out.push(self.varint()?),
            2 => {
                let mut r = R::new(self.bytes()?);
                while r.more() {
                    out.push(r.varint()?);
                }
            }
            _ => return Err(WireError("wrong wire type for varint")),
        }
        Ok(())
    }
}

fn expect(wt: u8, want: u8) -> Result<()> {
    if wt == want {
        Ok(())
    } else {
        Err(WireError("unexpected wire type"))
    }
}

fn zigzag32(n: u64) -> i32 {
    let n = n as u32;
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

fn range(start: usize, end: usize) -> Result<Range<u32>> {
    let s = u32::try_from(start).map_err(|_| WireError("too many elements"))?;
    let e = u32::try_from(end).map_err(|_| WireError("too many elements"))?;
    Ok(s..e)
}

/// Reads a request. Errors: anything that is not a valid `ExportMetricsServiceRequest`.
pub fn read(body: &[u8]) -> Result<View<'_>> {
    let mut v = View::default();
    let mut r = R::new(body);
    while r.more() {
        match r.key()? {
            (1, 2) => {
                let b = r.bytes()?;
                resource_metrics(b, &mut v)?;
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(v)
}

fn resource_metrics<'a>(b: &'a [u8], v: &mut View<'a>) -> Result<()> {
    let mut r = R::new(b);
    // the resource's attributes are read first wherever they are, so they stay contiguous
    let mut resource: Option<&'a [u8]> = None;
    let mut scopes: Vec<&'a [u8]> = Vec::new();
    while r.more() {
        match r.key()? {
            (1, 2) => resource = Some(r.bytes()?),
            (2, 2) => scopes.push(r.bytes()?),
            (_, wt) => r.skip(wt)?,
        }
    }
    let a0 = v.attrs.len();
    if let Some(res) = resource {
        let mut rr = R::new(res);
        while rr.more() {
            match rr.key()? {
                (1, 2) => {
                    let kv = keyvalue(rr.bytes()?)?;
                    v.attrs.push(kv);
                }
                (_, wt) => rr.skip(wt)?,
            }
        }
    }
    let attrs = range(a0, v.attrs.len())?;
    let s0 = v.scopes.len();
    for s in scopes {
        scope_metrics(s, v)?;
    }
    let scopes = range(s0, v.scopes.len())?;
    v.resources.push(ResourceV { attrs, scopes });
    Ok(())
}

fn keyvalue(b: &[u8]) -> Result<KvV<'_>> {
    let mut r = R::new(b);
    let mut kv = KvV {
        key: "",
        value: AnyV::None,
    };
    while r.more() {
        match r.key()? {
            (1, 2) => kv.key = r.str()?,
            (2, 2) => kv.value = any_value(r.bytes()?)?,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(kv)
}

fn any_value(b: &[u8]) -> Result<AnyV<'_>> {
    let mut r = R::new(b);
    let mut out = AnyV::None;
    while r.more() {
        out = match r.key()? {
            (1, 2) => AnyV::Str(r.str()?),
            (2, 0) => AnyV::Bool(r.varint()? != 0),
            (3, 0) => AnyV::Int(r.varint()? as i64),
            (4, 1) => AnyV::Double(f64::from_bits(r.fixed64()?)),
            (5 | 6, 2) => {
                r.bytes()?;
                AnyV::Raw(b)
            }
            (7, 2) => AnyV::Bytes(r.bytes()?),
            (_, wt) => {
                r.skip(wt)?;
                out
            }
        };
    }
    Ok(out)
}

fn scope_metrics<'a>(b: &'a [u8], v: &mut View<'a>) -> Result<()> {
    let mut r = R::new(b);
    let (mut name, mut version) = ("", "");
    let mut metrics: Vec<&'a [u8]> = Vec::new();
    while r.more() {
        match r.key()? {
            (1, 2) => {
                let mut s = R::new(r.bytes()?);
                while s.more() {
                    match s.key()? {
                        (1, 2) => name = s.str()?,
                        (2, 2) => version = s.str()?,
                        (_, wt) => s.skip(wt)?,
                    }
                }
            }
            (2, 2) => metrics.push(r.bytes()?),
            (_, wt) => r.skip(wt)?,
        }
    }
    let m0 = v.metrics.len();
    for m in metrics {
        metric(m, v)?;
    }
    let metrics = range(m0, v.metrics.len())?;
    v.scopes.push(ScopeV { name, version, metrics });
    Ok(())
}

fn metric<'a>(b: &'a [u8], v: &mut View<'a>) -> Result<()> {
    let mut r = R::new(b);
    let mut m = MetricV {
        name: "",
        description: "",
        unit: "",
        kind: None,
        temporality: 0,
        monotonic: false,
        points: 0..0,
    };
    let mut data: Option<(DataKind, &'a [u8])> = None;
    while r.more() {
        match r.key()? {
            (1, 2) => m.name = r.str()?,
            (2, 2) => m.description = r.str()?,
            (3, 2) => m.unit = r.str()?,
            (5, 2) => data = Some((DataKind::Gauge, r.bytes()?)),
            (7, 2) => data = Some((DataKind::Sum, r.bytes()?)),
            (9, 2) => data = Some((DataKind::Histogram, r.bytes()?)),
            (10, 2) => data = Some((DataKind::ExponentialHistogram, r.bytes()?)),
            (11, 2) => data = Some((DataKind::Summary, r.bytes()?)),
            (_, wt) => r.skip(wt)?,
        }
    }
    let p0 = v.points.len();
    if let Some((kind, d)) = data {
        m.kind = Some(kind);
        let mut r = R::new(d);
        while r.more() {
            match r.key()? {
                (1, wt) => {
                    expect(wt, 2)?;
                    let p = r.bytes()?;
                    point(kind, p, v)?;
                }
                (2, wt) if kind != DataKind::Gauge && kind != DataKind::Summary => {
                    expect(wt, 0)?;
                    m.temporality = r.varint()? as i32;
                }
                (3, wt) if kind == DataKind::Sum => {
                    expect(wt, 0)?;
                    m.monotonic = r.varint()? != 0;
                }
                (_, wt) => r.skip(wt)?,
            }
        }
    }
    m.points = range(p0, v.points.len())?;
    v.metrics.push(m);
    Ok(())
}

fn point<'a>(kind: DataKind, b: &'a [u8], v: &mut View<'a>) -> Result<()> {
    let attrs_field = match kind {
        DataKind::Gauge | DataKind::Sum | DataKind::Summary => 7,
        DataKind::Histogram => 9,
        DataKind::ExponentialHistogram => 1,
    };
    let a0 = v.attrs.len();
    let (u0, f0) = (v.u64s.len(), v.f64s.len());
    let mut start_ns = 0;
    let (mut number, mut count, mut sum, mut scale, mut zero_count) = (0.0, 0u64, None, 0i32, 0u64);
    let mut bounds_u64: Vec<u64> = Vec::new();
    let mut negative: Vec<u64> = Vec::new();
    let mut offset = 0i32;
    let mut r = R::new(b);
    while r.more() {
        let (field, wt) = r.key()?;
        if field == attrs_field {
            expect(wt, 2)?;
            let kv = keyvalue(r.bytes()?)?;
            v.attrs.push(kv);
            continue;
        }
        match (kind, field, wt) {
            (_, 2, 1) => start_ns = r.fixed64()?,
            (DataKind::Gauge | DataKind::Sum, 4, 1) => number = f64::from_bits(r.fixed64()?),
            (DataKind::Gauge | DataKind::Sum, 6, 1) => number = r.fixed64()? as i64 as f64,
            (DataKind::Histogram | DataKind::ExponentialHistogram | DataKind::Summary, 4, 1) => count = r.fixed64()?,
            (DataKind::Histogram | DataKind::ExponentialHistogram | DataKind::Summary, 5, 1) => {
                sum = Some(f64::from_bits(r.fixed64()?));
            }
            (DataKind::Histogram, 6, _) => r.fixed64s(wt, &mut v.u64s)?,
            (DataKind::Histogram, 7, _) => r.fixed64s(wt, &mut bounds_u64)?,
            (DataKind::ExponentialHistogram, 6, 0) => scale = zigzag32(r.varint()?),
            (DataKind::ExponentialHistogram, 7, 1) => zero_count = r.fixed64()?,
            (DataKind::ExponentialHistogram, 8 | 9, 2) => {
                let mut br = R::new(r.bytes()?);
                let mut counts = Vec::new();
                let mut off = 0;
                while br.more() {
                    match br.key()? {
                        (1, 0) => off = zigzag32(br.varint()?),
                        (2, wt) => br.varints(wt, &mut counts)?,
                        (_, wt) => br.skip(wt)?,
                    }
                }
                if field == 8 {
                    v.u64s.truncate(u0);
                    v.u64s.extend(counts);
                    offset = off;
                } else {
                    negative = counts;
                }
            }
            (DataKind::Summary, 6, 2) => {
                let mut q = R::new(r.bytes()?);
                let (mut quantile, mut value) = (0.0, 0.0);
                while q.more() {
                    match q.key()? {
                        (1, 1) => quantile = f64::from_bits(q.fixed64()?),
                        (2, 1) => value = f64::from_bits(q.fixed64()?),
                        (_, wt) => q.skip(wt)?,
                    }
                }
                v.f64s.push(quantile);
                v.f64s.push(value);
            }
            (_, _, wt) => r.skip(wt)?,
        }
    }
    let attrs = range(a0, v.attrs.len())?;
    let value = match kind {
        DataKind::Gauge | DataKind::Sum => PointValue::Number(number),
        DataKind::Histogram => {
            let counts = range(u0, v.u64s.len())?;
            v.f64s.extend(bounds_u64.into_iter().map(f64::from_bits));
            PointValue::Histogram {
                count,
                sum,
                counts,
                bounds: range(f0, v.f64s.len())?,
            }
        }
        DataKind::ExponentialHistogram => {
            let pos_end = v.u64s.len();
            v.u64s.extend(negative);
            PointValue::Exponential {
                count,
                sum,
                scale,
                zero_count,
                offset,
                positive: range(u0, pos_end)?,
                negative: range(pos_end, v.u64s.len())?,
            }
        }
        DataKind::Summary => PointValue::Summary {
            count,
            sum: sum.unwrap_or(0.0),
            quantiles: range(f0, v.f64s.len())?,
        },
    };
    v.points.push(PointV { attrs, start_ns, value });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
        number_data_point,
    };
    use proptest::prelude::*;
    use prost::Message as _;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_prost_writes() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "a.b".into(),
                            unit: "s".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![
                                        kv("s", any_value::Value::StringValue("x".into())),
                                        kv("i", any_value::Value::IntValue(-3)),
                                        kv(
                                            "arr",
                                            any_value::Value::ArrayValue(ArrayValue {
                                                values: vec![AnyValue {
                                                    value: Some(any_value::Value::BoolValue(true)),
                                                }],
                                            }),
                                        ),
                                    ],
                                    start_time_unix_nano: 7,
                                    value: Some(number_data_point::Value::AsInt(-5)),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 1,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "h".into(),
                            data: Some(metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    count: 3,
                                    sum: Some(1.5),
                                    bucket_counts: vec![1, 2],
                                    explicit_bounds: vec![0.5],
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = req.encode_to_vec();
        let v = read(&body).unwrap();
        assert_eq!(v.metrics.len(), 2);
        let m = &v.metrics[0];
        assert_eq!(
            (m.name, m.unit, m.kind, m.temporality, m.monotonic),
            ("a.b", "s", Some(DataKind::Sum), 1, true)
        );
        let p = &v.points[0];
        assert_eq!((p.start_ns, &p.value), (7, &PointValue::Number(-5.0)));
        assert_eq!(
            v.attrs[0],
            KvV {
                key: "s",
                value: AnyV::Str("x")
            }
        );
        assert_eq!(v.attrs[1].value, AnyV::Int(-3));
        assert!(matches!(v.attrs[2].value, AnyV::Raw(_)));
        let PointValue::Histogram {
            count,
            sum,
            counts,
            bounds,
        } = &v.points[1].value
        else {
            panic!("histogram")
        };
        assert_eq!((*count, *sum), (3, Some(1.5)));
        assert_eq!(&v.u64s[counts.start as usize..counts.end as usize], &[1, 2]);
        assert_eq!(&v.f64s[bounds.start as usize..bounds.end as usize], &[0.5]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(read(&[0x0a, 0x05, 0x01]).is_err(), "truncated");
        assert!(read(&[0x0b]).is_err(), "group");
        assert!(read(&[0xff; 11]).is_err(), "endless varint");
        // a metric name that is not UTF-8
        let bad = [0x0a, 0x06, 0x12, 0x04, 0x12, 0x02, 0x0a, 0x00];
        assert!(read(&bad).is_ok());
        let bad_utf8 = [0x0a, 0x07, 0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, 0xff];
        assert_eq!(read(&bad_utf8), Err(WireError("string is not UTF-8")));
        assert!(read(&[]).is_ok());
    }

    #[test]
    fn the_fuzz_seed_is_a_valid_request() {
        let seed = include_bytes!("../../../fuzz/seeds/otlp_push/gauge.bin");
        let v = read(seed).unwrap();
        assert_eq!((v.resources.len(), v.metrics.len(), v.points.len()), (1, 1, 1));
        assert_eq!(v.metrics[0].name, "seed.gauge");
        assert_eq!(v.points[0].value, PointValue::Number(1.5));
    }

    proptest! {
        #[test]
        fn any_bytes_read_without_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read(&b);
        }
    }
}
