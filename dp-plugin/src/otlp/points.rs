//! What the producer's core hands to an emitter ([`super::producer`] builds the typed
//! request from it, [`super::encode`] the protobuf bytes): one data point at a time, then the
//! end of each family.

use std::borrow::Cow;

/// An instrumentation scope: `(name, version)`, empty when the series names none.
pub(crate) type Scope<'t> = (Cow<'t, str>, Cow<'t, str>);

/// One data point as the core computed it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Point<'p> {
    /// A gauge's (start 0) or a sum's.
    Number { start: u64, time: u64, value: f64 },
    /// Per-bucket counts, the last one `+Inf`'s; finite bounds.
    Histogram {
        start: u64,
        time: u64,
        count: u64,
        sum: f64,
        counts: &'p [u64],
        bounds: &'p [f64],
    },
    /// `(quantile, value)` pairs, sorted.
    Summary {
        start: u64,
        time: u64,
        count: u64,
        sum: f64,
        quantiles: &'p [(f64, f64)],
    },
}

/// What a family becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    /// Monotonic sum, with its temporality (`AggregationTemporality` value).
    Sum(i32),
    /// With its temporality.
    Histogram(i32),
    Summary,
}

/// Receives the core's data points and makes the output of them.
pub(crate) trait Emit {
    /// One data point of the current family.
    fn point(&mut self, scope: &Scope<'_>, attrs: &[(&str, Cow<'_, str>)], p: Point<'_>);
    /// The current family is complete: one metric per scope that got points.
    fn end_family(&mut self, name: &str, description: &str, kind: Kind);
    /// How many data points the completed families had.
    fn points(&self) -> usize;
}

/// The scope's name on the wire: the plugin's when the series names none.
pub(crate) fn scope_name(name: &str) -> &str {
    if name.is_empty() { "meshmetric-dp" } else { name }
}

/// The scope's version on the wire: the plugin's when the series names none.
pub(crate) fn scope_version(version: &str) -> &str {
    if version.is_empty() {
        env!("CARGO_PKG_VERSION")
    } else {
        version
    }
}
