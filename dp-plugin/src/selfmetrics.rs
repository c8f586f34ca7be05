//! The plugin's own metrics (`meshmetric_dp_*`): what one collection did ([`Report`]) and the
//! OTLP exporters' counters ([`Registry`]), rendered as families merged into every output
//! after the scraped ones, with `# HELP` and `# TYPE`.
//!
//! The collection and the exporters both write here and neither knows the other: the
//! collection reads the exporters' counters from the [`Registry`] when it renders.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::merge::{MergeStats, escape_label_value};
use crate::parse::{Family, LabelNames, MetricType, Sample};

/// One self-metric: name, type and help (the reference in `docs/operations.md` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub kind: MetricType,
    /// Help text.
    pub help: &'static str,
}

/// `meshmetric_dp_scrape_up{source, application}`.
pub const SCRAPE_UP: Metric = Metric {
    name: "meshmetric_dp_scrape_up",
    kind: MetricType::Gauge,
    help: "Whether the last scrape of a source (envoy, or an application) succeeded: 1 or 0.",
};
/// `meshmetric_dp_scrape_duration_seconds{source, application}`.
pub const SCRAPE_DURATION: Metric = Metric {
    name: "meshmetric_dp_scrape_duration_seconds",
    kind: MetricType::Gauge,
    help: "How long the last scrape of a source took, in seconds.",
};
/// `meshmetric_dp_malformed_lines`.
pub const MALFORMED_LINES: Metric = Metric {
    name: "meshmetric_dp_malformed_lines",
    kind: MetricType::Gauge,
    help: "Lines of the last collection's scrapes that could not be parsed and were skipped.",
};
/// `meshmetric_dp_series`.
pub const SERIES: Metric = Metric {
    name: "meshmetric_dp_series",
    kind: MetricType::Gauge,
    help: "Series in the last collection's output (without these self-metrics).",
};
/// `meshmetric_dp_dropped{reason, unit}`.
pub const DROPPED: Metric = Metric {
    name: "meshmetric_dp_dropped",
    kind: MetricType::Gauge,
    help: "What the last collection dropped, by reason (profile, internal, type_conflict, reserved_name, label_too_long, label_name_too_long, metric_name_too_long, too_many_labels, duplicate_label_name, series_limit, relabel) and unit (family, series).",
};
/// `meshmetric_dp_labels_renamed`.
pub const LABELS_RENAMED: Metric = Metric {
    name: "meshmetric_dp_labels_renamed",
    kind: MetricType::Gauge,
    help: "Labels of the last collection kept as exported_<name> because an extra label has their name.",
};
/// `meshmetric_dp_config_info{etag}`.
pub const CONFIG_INFO: Metric = Metric {
    name: "meshmetric_dp_config_info",
    kind: MetricType::Gauge,
    help: "The metrics config in force: its ETag as served by the control plane, value 1.",
};
/// `meshmetric_dp_collections_total`.
pub const COLLECTIONS: Metric = Metric {
    name: "meshmetric_dp_collections_total",
    kind: MetricType::Counter,
    help: "Collections run (scrapes of Envoy), shared by every output.",
};
/// `meshmetric_dp_series_stage{stage}`.
pub const SERIES_STAGE: Metric = Metric {
    name: "meshmetric_dp_series_stage",
    kind: MetricType::Gauge,
    help: "Series of the last collection after each stage: parsed (scraped and parsed; Envoy families outside the profiles are skipped while parsing), profile (after the profiles, the internal-entity filter and conflicts), relabel (after the relabeling rules: what is exported).",
};
/// `meshmetric_dp_otlp_data_points_total{backend, result}`.
pub const OTLP_POINTS: Metric = Metric {
    name: "meshmetric_dp_otlp_data_points_total",
    kind: MetricType::Counter,
    help: "Data points of an OTLP backend, by result: sent, rejected (partial success), failed (not retryable), dropped (queue full or retries exhausted).",
};
/// `meshmetric_dp_otlp_queue_batches{backend}`.
pub const OTLP_QUEUE_BATCHES: Metric = Metric {
    name: "meshmetric_dp_otlp_queue_batches",
    kind: MetricType::Gauge,
    help: "Export batches waiting in an OTLP backend's queue.",
};
/// `meshmetric_dp_otlp_queue_bytes{backend}`.
pub const OTLP_QUEUE_BYTES: Metric = Metric {
    name: "meshmetric_dp_otlp_queue_bytes",
    kind: MetricType::Gauge,
    help: "Bytes of encoded export batches waiting in an OTLP backend's queue.",
};
/// `meshmetric_dp_otlp_queue_capacity_batches{backend}`.
pub const OTLP_QUEUE_CAPACITY: Metric = Metric {
    name: "meshmetric_dp_otlp_queue_capacity_batches",
    kind: MetricType::Gauge,
    help: "Most export batches an OTLP backend's queue holds (queueSize); when full the oldest is dropped.",
};
/// `meshmetric_dp_otlp_retries_total{backend}`.
pub const OTLP_RETRIES: Metric = Metric {
    name: "meshmetric_dp_otlp_retries_total",
    kind: MetricType::Counter,
    help: "Retried export attempts of an OTLP backend.",
};

/// `meshmetric_dp_otlp_receiver_requests_total{result}`.
pub const PUSH_REQUESTS: Metric = Metric {
    name: "meshmetric_dp_otlp_receiver_requests_total",
    kind: MetricType::Counter,
    help: "OTLP export requests received from applications, by result (ok, partial, exhausted, malformed, too_large).",
};
/// `meshmetric_dp_otlp_receiver_data_points_total{result}`.
pub const PUSH_POINTS: Metric = Metric {
    name: "meshmetric_dp_otlp_receiver_data_points_total",
    kind: MetricType::Counter,
    help: "Data points pushed by applications, by result (accepted, rejected).",
};
/// `meshmetric_dp_otlp_receiver_series`.
pub const PUSH_SERIES: Metric = Metric {
    name: "meshmetric_dp_otlp_receiver_series",
    kind: MetricType::Gauge,
    help: "Series held from pushing applications (a series not pushed for 5 minutes is forgotten).",
};

/// Every self-metric, in output order.
pub const ALL: &[Metric] = &[
    SCRAPE_UP,
    SCRAPE_DURATION,
    MALFORMED_LINES,
    SERIES,
    DROPPED,
    LABELS_RENAMED,
    CONFIG_INFO,
    COLLECTIONS,
    SERIES_STAGE,
    OTLP_POINTS,
    OTLP_QUEUE_BATCHES,
    OTLP_QUEUE_BYTES,
    OTLP_QUEUE_CAPACITY,
    OTLP_RETRIES,
    PUSH_REQUESTS,
    PUSH_POINTS,
    PUSH_SERIES,
];

/// Counters of one OTLP exporter (data points unless named otherwise).
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// Accepted by the collector.
    pub sent: AtomicU64,
    /// Refused by the collector in a partial success.
    pub rejected: AtomicU64,
    /// In batches that failed for good.
    pub failed: AtomicU64,
    /// In batches dropped (queue full, retries exhausted).
    pub dropped: AtomicU64,
    /// Batches waiting.
    pub queued_batches: AtomicU64,
    /// Bytes waiting.
    pub queued_bytes: AtomicU64,
    /// Most batches the queue holds.
    pub capacity_batches: AtomicU64,
    /// Export attempts.
    pub exports: AtomicU64,
    /// Retried attempts.
    pub retries: AtomicU64,
}

/// The running exporters' counters, by backend name.
#[derive(Debug, Default)]
pub struct Registry {
    exporters: Mutex<BTreeMap<String, Arc<ExporterStats>>>,
}

impl Registry {
    /// Replaces the set of exporters.
    pub fn set_exporters(&self, exporters: impl IntoIterator<Item = (String, Arc<ExporterStats>)>) {
        let mut g = self.exporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = exporters.into_iter().collect();
    }

    /// The current exporters.
    pub fn exporters(&self) -> Vec<(String, Arc<ExporterStats>)> {
        let g = self.exporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Where a scrape went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Envoy's admin `/stats`.
    Envoy,
    /// An application, by its name (its port when it has none).
    Application(String),
}

/// The outcome of one scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// What was scraped.
    pub source: Source,
    /// Whether it succeeded.
    pub up: bool,
    /// How long it took.
    pub duration: Duration,
}

/// What one collection did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every scrape, Envoy first.
    pub scrapes: Vec<Scrape>,
    /// Lines skipped by the parser.
    pub malformed_lines: u64,
    /// What merging dropped and renamed.
    pub merge: MergeStats,
    /// Application series dropped by the limits, by reason.
    pub limits: crate::limits::LimitStats,
    /// ETag of the config in force.
    pub config_etag: String,
    /// Collections run so far.
    pub collections: u64,
    /// The OTLP receiver's state, when the plugin has one.
    pub push: Option<Arc<crate::push::Store>>,
}

/// A sample of [`Rendered`]: where its labels and value are in the text.
type SampleAt = (Range<usize>, Range<usize>);

/// Self-metrics rendered: label and value text in one buffer, families pointing into it.
#[derive(Debug, Default)]
pub struct Rendered {
    text: String,
    families: Vec<(Metric, Vec<SampleAt>)>,
}

impl Rendered {
    fn family(&mut self, m: Metric) {
        self.families.push((m, Vec::new()));
    }

    /// Adds a sample to the last family: labels as `(name, value)`, the value as text.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let start = self.text.len();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(k);
            self.text.push_str("=\"");
            escape_label_value(v, &mut self.text);
            self.text.push('"');
        }
        let labels_end = self.text.len();
        let _ = write!(self.text, "{value}");
        let end = self.text.len();
        if let Some((_, samples)) = self.families.last_mut() {
            samples.push((start..labels_end, labels_end..end));
        }
    }

    /// The families, ready for [`crate::merge::merge_encode`].
    pub fn families(&self) -> Vec<Family<'_>> {
        self.families
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(m, samples)| Family {
                name: m.name.into(),
                kind: m.kind,
                help: Some(m.help),
                samples: samples
                    .iter()
                    .map(|(l, v)| Sample {
                        name: m.name,
                        labels: &self.text[l.clone()],
                        raw_value: &self.text[v.clone()],
                        timestamp_ms: None,
                    })
                    .collect(),
                label_names: LabelNames::ANY,
            })
            .collect()
    }
}

impl Report {
    /// Renders the report and the exporters' counters of `registry`.
    pub fn render(&self, registry: &Registry) -> Rendered {
        let mut r = Rendered::default();
        let source_labels = |s: &Source| match s {
            Source::Envoy => vec![("source", "envoy".to_string())],
            Source::Application(a) => vec![("source", "application".to_string()), ("application", a.clone())],
        };
        r.family(SCRAPE_UP);
        for s in &self.scrapes {
            let l = source_labels(&s.source);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            r.sample(&l, u8::from(s.up));
        }
        r.family(SCRAPE_DURATION);
        for s in &self.scrapes {
            let l = source_labels(&s.source);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            r.sample(&l, s.duration.as_secs_f64());
        }
        r.family(MALFORMED_LINES);
        r.sample(&[], self.malformed_lines);
        r.family(SERIES);
        r.sample(&[], self.merge.series_out);
        r.family(DROPPED);
        for (reason, unit, n) in [
            ("profile", "family", self.merge.families_filtered),
            ("internal", "series", self.merge.series_filtered_internal),
            ("type_conflict", "family", self.merge.families_type_conflict),
            ("reserved_name", "family", self.merge.families_reserved),
            ("label_too_long", "series", self.limits.label_too_long),
            ("label_name_too_long", "series", self.limits.label_name_too_long),
            ("metric_name_too_long", "series", self.limits.metric_name_too_long),
            ("too_many_labels", "series", self.limits.too_many_labels),
            ("duplicate_label_name", "series", self.limits.duplicate_label_name),
            ("series_limit", "series", self.limits.series_limit),
            ("relabel", "series", self.merge.series_dropped_relabel),
        ] {
            r.sample(&[("reason", reason), ("unit", unit)], n);
        }
        r.family(LABELS_RENAMED);
        r.sample(&[], self.merge.labels_renamed);
        r.family(CONFIG_INFO);
        r.sample(&[("etag", &self.config_etag)], 1);
        r.family(COLLECTIONS);
        r.sample(&[], self.collections);
        r.family(SERIES_STAGE);
        for (stage, n) in [
            ("parsed", self.merge.series_in),
            ("profile", self.merge.series_after_profile),
            ("relabel", self.merge.series_out),
        ] {
            r.sample(&[("stage", stage)], n);
        }
        let exporters = registry.exporters();
        r.family(OTLP_POINTS);
        for (b, st) in &exporters {
            for (result, v) in [
                ("sent", &st.sent),
                ("rejected", &st.rejected),
                ("failed", &st.failed),
                ("dropped", &st.dropped),
            ] {
                r.sample(&[("backend", b), ("result", result)], v.load(Relaxed));
            }
        }
        for (m, get) in [
            (
                OTLP_QUEUE_BATCHES,
                (|s: &ExporterStats| s.queued_batches.load(Relaxed)) as fn(&ExporterStats) -> u64,
            ),
            (OTLP_QUEUE_BYTES, |s| s.queued_bytes.load(Relaxed)),
            (OTLP_QUEUE_CAPACITY, |s| s.capacity_batches.load(Relaxed)),
            (OTLP_RETRIES, |s| s.retries.load(Relaxed)),
        ] {
            r.family(m);
            for (b, st) in &exporters {
                r.sample(&[("backend", b)], get(st));
            }
        }
        if let Some(p) = &self.push {
            let c = &p.counters;
            r.family(PUSH_REQUESTS);
            for (result, v) in [
                ("ok", &c.requests_ok),
                ("partial", &c.requests_partial),
                ("exhausted", &c.requests_exhausted),
                ("malformed", &c.requests_malformed),
                ("too_large", &c.requests_too_large),
            ] {
                r.sample(&[("result", result)], v.load(Relaxed));
            }
            r.family(PUSH_POINTS);
            r.sample(&[("result", "accepted")], c.points_accepted.load(Relaxed));
            r.sample(&[("result", "rejected")], c.points_rejected.load(Relaxed));
            r.family(PUSH_SERIES);
            r.sample(&[], p.series() as u64);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{ExtraLabels, Origin, merge_encode};
    use crate::parse::{Format, ParseStats, parse};

    #[test]
    fn rendered_families_encode_with_help_type_and_extra_labels_and_parse_back() {
        let registry = Registry::default();
        let st = Arc::new(ExporterStats::default());
        st.sent.store(7, Relaxed);
        registry.set_exporters([("otel \"a\"".to_string(), st)]);
        let report = Report {
            scrapes: vec![
                Scrape {
                    source: Source::Envoy,
                    up: true,
                    duration: Duration::from_millis(5),
                },
                Scrape {
                    source: Source::Application("app".into()),
                    up: false,
                    duration: Duration::from_millis(1),
                },
            ],
            config_etag: "abc".into(),
            collections: 3,
            push: Some(Arc::new(crate::push::Store::new(Default::default()))),
            ..Default::default()
        };
        let rendered = report.render(&registry);
        let fams = rendered.families();
        let mut out = Vec::new();
        let filter = meshmetric_policies::profiles::FamilyFilter::new(None).unwrap();
        let extra = ExtraLabels::new([("mesh", "default"), ("source", "tag")]);
        merge_encode(
            &[(Origin::Own, &fams)],
            &filter,
            &extra,
            &mut out,
            &mut MergeStats::default(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("# HELP meshmetric_dp_scrape_up Whether"), "{text}");
        assert!(
            text.contains("meshmetric_dp_scrape_up{exported_source=\"application\",application=\"app\",mesh=\"default\",source=\"tag\"} 0"),
            "an extra label of the same name renames ours:\n{text}"
        );
        assert!(text.contains("backend=\"otel \\\"a\\\"\",result=\"sent\""), "{text}");
        let mut ps = ParseStats::default();
        let back = parse(&text, Format::Text, &mut ps);
        assert_eq!(ps.bad_lines, 0, "{text}");
        let names: Vec<&str> = back.iter().map(|f| f.name.as_ref()).collect();
        for m in ALL {
            assert!(names.contains(&m.name), "{} missing", m.name);
        }
    }
}
