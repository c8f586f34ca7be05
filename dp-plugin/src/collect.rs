//! One collection: scrape Envoy admin and every application concurrently (each with its own
//! timeout and body limit), parse, filter, merge and encode. Concurrent requests share one
//! in-flight collection (single-flight).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use crate::config::ActiveConfig;
use crate::http::{Endpoint, HttpClient};
use crate::merge::{MergeStats, Origin, merge_encode};
use crate::parse::{Format, ParseStats, parse};

/// Limits and endpoints of the collector.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Envoy's admin endpoint.
    pub envoy_admin: Endpoint,
    /// Timeout of one scrape (Envoy or application).
    pub scrape_timeout: Duration,
    /// Largest accepted body of one scrape, in bytes.
    pub max_body_bytes: usize,
    /// Most series kept from one application scrape (the first ones in the body); the rest are
    /// dropped and counted. 0: no limit. Envoy's own stats are not limited.
    pub max_series_per_scrape: usize,
    /// Longest label value (escaped, in bytes) of an application series; longer ones drop the
    /// series, counted. 0: no limit.
    pub max_label_value_bytes: usize,
    /// A collection younger than this is reused instead of scraping again, so Prometheus
    /// scrapes and OTLP exporters arriving close together share one scrape of Envoy.
    pub reuse_within: Duration,
}

/// Result of one scrape of one source.
#[derive(Debug)]
struct Scraped {
    source: String,
    application: Option<String>,
    format: Format,
    body: Result<Bytes, String>,
    duration: Duration,
}

/// Scrapes, merges and encodes; shared by every output.
pub struct Collector {
    http: HttpClient,
    settings: CollectorSettings,
    config: watch::Receiver<Arc<ActiveConfig>>,
    inflight: Mutex<Option<Shared<BoxFuture<'static, Bytes>>>>,
    last: Mutex<Option<(Instant, Bytes)>>,
    exporters: crate::otlp::Registry,
    collections: std::sync::atomic::AtomicU64,
    /// Sizes of the previous Envoy body and output, to size this collection's buffers.
    last_sizes: Mutex<(usize, usize)>,
}

const ACCEPT: &str = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

impl Collector {
    pub fn new(http: HttpClient, settings: CollectorSettings, config: watch::Receiver<Arc<ActiveConfig>>) -> Arc<Self> {
        Arc::new(Self {
            http,
            settings,
            config,
            inflight: Mutex::new(None),
            last: Mutex::new(None),
            exporters: Default::default(),
            collections: Default::default(),
            last_sizes: Mutex::new((0, 0)),
        })
    }

    /// Counters of the OTLP exporters, shown in the self-metrics.
    pub fn exporter_registry(&self) -> crate::otlp::Registry {
        self.exporters.clone()
    }

    /// How many collections (scrapes of Envoy) have run.
    pub fn collections(&self) -> u64 {
        self.collections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The merged Prometheus text; joins a collection already in flight if there is one.
    pub async fn collect(self: &Arc<Self>) -> Bytes {
        if let Some((at, body)) = self.last.lock().expect("last lock").as_ref()
            && at.elapsed() < self.settings.reuse_within
        {
            return body.clone();
        }
        let fut = {
            let mut g = self.inflight.lock().expect("inflight lock");
            match g.as_ref() {
                Some(f) => f.clone(),
                None => {
                    // the kept output is stale: free it before building the next one, so two
                    // outputs are never alive at once (one less output at the peak)
                    *self.last.lock().expect("last lock") = None;
                    let me = self.clone();
                    let f = async move {
                        let out = me.collect_once().await;
                        if !me.settings.reuse_within.is_zero() {
                            *me.last.lock().expect("last lock") = Some((Instant::now(), out.clone()));
                        }
                        *me.inflight.lock().expect("inflight lock") = None;
                        out
                    }
                    .boxed()
                    .shared();
                    *g = Some(f.clone());
                    f
                }
            }
        };
        fut.await
    }

    async fn scrape(&self, source: String, application: Option<String>, ep: Endpoint, path: String) -> Scraped {
        let start = Instant::now();
        let hint = if application.is_none() {
            self.last_sizes.lock().expect("sizes lock").0
        } else {
            0
        };
        let r = self
            .http
            .get_sized(
                &ep,
                &path,
                &[("accept", ACCEPT)],
                self.settings.scrape_timeout,
                self.settings.max_body_bytes,
                hint,
            )
            .await;
        if application.is_none()
            && let Ok(f) = &r
        {
            self.last_sizes.lock().expect("sizes lock").0 = f.body.len();
        }
        let (format, body) = match r {
            Ok(f) if f.status == 200 => {
                let ct = f.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                (Format::from_content_type(ct), Ok(f.body))
            }
            Ok(f) => (Format::Text, Err(format!("HTTP status {}", f.status))),
            Err(e) => (Format::Text, Err(e.to_string())),
        };
        Scraped {
            source,
            application,
            format,
            body,
            duration: start.elapsed(),
        }
    }

    /// Runs one full collection.
    pub async fn collect_once(&self) -> Bytes {
        self.collections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cfg = self.config.borrow().clone();
        let mut stats_q = String::from("/stats?format=prometheus&text_readouts");
        if !cfg.include_unused() {
            stats_q.push_str("&usedonly");
        }
        let mut futs = vec![
            self.scrape("envoy".into(), None, self.settings.envoy_admin.clone(), stats_q)
                .boxed(),
        ];
        for a in &cfg.config.metrics().applications {
            let addr = if a.address.is_empty() {
                "127.0.0.1"
            } else {
                a.address.as_str()
            };
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.to_string()
            };
            let name = a.name.clone().unwrap_or_else(|| a.port.to_string());
            futs.push(
                self.scrape(
                    "application".into(),
                    Some(name),
                    Endpoint::Tcp(format!("{host}:{}", a.port)),
                    a.path.clone(),
                )
                .boxed(),
            );
        }
        let scraped = futures::future::join_all(futs).await;

        let mut self_metrics = String::with_capacity(1024);
        let mut up = String::new();
        let mut dur = String::new();
        let mut texts: Vec<(Origin, &str, Format)> = Vec::with_capacity(scraped.len());
        for s in &scraped {
            let lbl = match &s.application {
                Some(a) => format!(
                    "source=\"{}\",application=\"{}\"",
                    s.source,
                    crate::merge::escape_to_string(a)
                ),
                None => format!("source=\"{}\"", s.source),
            };
            let origin = if s.application.is_some() {
                Origin::Application
            } else {
                Origin::Envoy
            };
            let ok = match &s.body {
                Ok(b) => match std::str::from_utf8(b) {
                    Ok(t) => {
                        texts.push((origin, t, s.format));
                        true
                    }
                    Err(e) => {
                        tracing::warn!(source = %s.source, application = ?s.application, error = %e, "scrape body is not UTF-8; skipped");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(source = %s.source, application = ?s.application, error = %e, "scrape failed; skipped");
                    false
                }
            };
            up.push_str(&format!("meshmetric_dp_scrape_up{{{lbl}}} {}\n", u8::from(ok)));
            dur.push_str(&format!(
                "meshmetric_dp_scrape_duration_seconds{{{lbl}}} {}\n",
                s.duration.as_secs_f64()
            ));
        }
        let mut parse_stats: Vec<ParseStats> = Vec::with_capacity(texts.len());
        let (mut dropped_long, mut dropped_over) = (0u64, 0u64);
        let parsed: Vec<(Origin, Vec<crate::parse::Family<'_>>)> = texts
            .iter()
            .map(|(o, t, f)| {
                let mut st = ParseStats::default();
                // Envoy's families the profile drops are skipped while parsing
                let fams = match o {
                    Origin::Envoy => crate::parse::parse_filtered(t, *f, &mut st, &|name| cfg.filter.keep_family(name)),
                    Origin::Application => {
                        let mut fams = parse(t, *f, &mut st);
                        let (long, over) = enforce_limits(
                            &mut fams,
                            self.settings.max_series_per_scrape,
                            self.settings.max_label_value_bytes,
                        );
                        if long + over > 0 {
                            tracing::debug!(
                                label_too_long = long,
                                series_limit = over,
                                "application series dropped by limits"
                            );
                        }
                        dropped_long += long;
                        dropped_over += over;
                        fams
                    }
                };
                if let Some(e) = &st.first_error {
                    tracing::debug!(bad_lines = st.bad_lines, first = %e, "skipped malformed lines");
                }
                parse_stats.push(st);
                (*o, fams)
            })
            .collect();
        let bad_lines: u64 = parse_stats.iter().map(|s| s.bad_lines).sum();
        self_metrics.push_str("# TYPE meshmetric_dp_scrape_up gauge\n");
        self_metrics.push_str(&up);
        self_metrics.push_str("# TYPE meshmetric_dp_scrape_duration_seconds gauge\n");
        self_metrics.push_str(&dur);
        let previous_out = self.last_sizes.lock().expect("sizes lock").1;
        let mut out = Vec::with_capacity(if previous_out > 0 {
            previous_out + previous_out / 16 + 4096
        } else {
            texts.iter().map(|t| t.1.len()).sum::<usize>() + 4096
        });
        let mut ms = MergeStats::default();
        let sources: Vec<(Origin, &[crate::parse::Family<'_>])> =
            parsed.iter().map(|(o, f)| (*o, f.as_slice())).collect();
        merge_encode(&sources, &cfg.filter, &cfg.extra, &mut out, &mut ms);
        ms.families_filtered += parse_stats.iter().map(|s| s.skipped_families).sum::<u64>();
        self_metrics.push_str(&format!(
            "# TYPE meshmetric_dp_malformed_lines gauge\nmeshmetric_dp_malformed_lines {bad_lines}\n\
# TYPE meshmetric_dp_series gauge\nmeshmetric_dp_series {}\n\
# TYPE meshmetric_dp_dropped gauge\n\
meshmetric_dp_dropped{{reason=\"profile\",unit=\"family\"}} {}\n\
meshmetric_dp_dropped{{reason=\"internal\",unit=\"series\"}} {}\n\
meshmetric_dp_dropped{{reason=\"type_conflict\",unit=\"family\"}} {}\n\
meshmetric_dp_dropped{{reason=\"label_too_long\",unit=\"series\"}} {dropped_long}\n\
meshmetric_dp_dropped{{reason=\"series_limit\",unit=\"series\"}} {dropped_over}\n\
# TYPE meshmetric_dp_labels_renamed gauge\nmeshmetric_dp_labels_renamed {}\n",
            ms.series_out,
            ms.families_filtered,
            ms.series_filtered_internal,
            ms.families_type_conflict,
            ms.labels_renamed
        ));
        self_metrics.push_str(&format!(
            "# TYPE meshmetric_dp_config_info gauge\nmeshmetric_dp_config_info{{etag=\"{}\"}} 1\n\
# TYPE meshmetric_dp_collections_total counter\nmeshmetric_dp_collections_total {}\n",
            cfg.etag,
            self.collections()
        ));
        let exporters: Vec<(String, Arc<crate::otlp::exporter::ExporterStats>)> = self
            .exporters
            .lock()
            .expect("registry lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !exporters.is_empty() {
            use std::fmt::Write;
            use std::sync::atomic::Ordering::Relaxed;
            let mut points = String::from("# TYPE meshmetric_dp_otlp_data_points_total counter\n");
            let mut queue = String::from("# TYPE meshmetric_dp_otlp_queue_batches gauge\n");
            let mut queue_bytes = String::from("# TYPE meshmetric_dp_otlp_queue_bytes gauge\n");
            let mut retries = String::from("# TYPE meshmetric_dp_otlp_retries_total counter\n");
            for (endpoint, st) in &exporters {
                let b = crate::merge::escape_to_string(endpoint);
                for (result, v) in [
                    ("sent", &st.sent),
                    ("rejected", &st.rejected),
                    ("failed", &st.failed),
                    ("dropped", &st.dropped),
                ] {
                    let _ = writeln!(
                        points,
                        "meshmetric_dp_otlp_data_points_total{{backend=\"{b}\",result=\"{result}\"}} {}",
                        v.load(Relaxed)
                    );
                }
                let _ = writeln!(
                    queue,
                    "meshmetric_dp_otlp_queue_batches{{backend=\"{b}\"}} {}",
                    st.queued_batches.load(Relaxed)
                );
                let _ = writeln!(
                    queue_bytes,
                    "meshmetric_dp_otlp_queue_bytes{{backend=\"{b}\"}} {}",
                    st.queued_bytes.load(Relaxed)
                );
                let _ = writeln!(
                    retries,
                    "meshmetric_dp_otlp_retries_total{{backend=\"{b}\"}} {}",
                    st.retries.load(Relaxed)
                );
            }
            self_metrics.push_str(&points);
            self_metrics.push_str(&queue);
            self_metrics.push_str(&queue_bytes);
            self_metrics.push_str(&retries);
        }
        let mut st = ParseStats::default();
        let own = parse(&self_metrics, Format::Text, &mut st);
        debug_assert_eq!(st.bad_lines, 0, "self metrics must parse");
        merge_encode(
            &[(Origin::Application, &own)],
            &cfg.filter,
            &cfg.extra,
            &mut out,
            &mut MergeStats::default(),
        );
        self.last_sizes.lock().expect("sizes lock").1 = out.len();
        Bytes::from(out)
    }
}

/// Applies the per-scrape limits to one application's families, in place: a series with a
/// label value longer than `max_label_value_bytes` (escaped form) is dropped, then only the
/// first `max_series` series are kept (a limit of 0 disables either). Families left without
/// samples are removed. Returns `(dropped for a long label, dropped over the series limit)`.
pub fn enforce_limits(
    families: &mut Vec<crate::parse::Family<'_>>,
    max_series: usize,
    max_label_value_bytes: usize,
) -> (u64, u64) {
    let (mut long, mut over) = (0u64, 0u64);
    let mut kept = 0usize;
    for f in families.iter_mut() {
        f.samples.retain(|s| {
            // a value cannot be longer than the whole label text: most series skip the scan
            if max_label_value_bytes > 0
                && s.labels.len() > max_label_value_bytes
                && crate::parse::labels(s.labels).any(|(_, v)| v.len() > max_label_value_bytes)
            {
                long += 1;
                return false;
            }
            if max_series > 0 && kept >= max_series {
                over += 1;
                return false;
            }
            kept += 1;
            true
        });
    }
    families.retain(|f| !f.samples.is_empty());
    (long, over)
}

#[cfg(test)]
mod tests {
    use super::enforce_limits;
    use crate::parse::{Format, ParseStats, parse};

    #[test]
    fn limits_drop_long_labels_then_keep_the_first_series() {
        let long = "y".repeat(40);
        let text = format!(
            "# TYPE a gauge\na{{k=\"1\"}} 1\na{{k=\"{long}\"}} 2\na{{k=\"3\"}} 3\n# TYPE b gauge\nb 4\nb{{k=\"5\"}} 5\n"
        );
        let mut st = ParseStats::default();
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(enforce_limits(&mut fams, 3, 16), (1, 1));
        let kept: Vec<&str> = fams
            .iter()
            .flat_map(|f| f.samples.iter().map(|s| s.raw_value))
            .collect();
        assert_eq!(kept, ["1", "3", "4"]);
        // a family emptied by the limit goes away; zero disables both limits
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(enforce_limits(&mut fams, 2, 0), (0, 3));
        assert_eq!(fams.len(), 1);
        let mut fams = parse(&text, Format::Text, &mut st);
        assert_eq!(enforce_limits(&mut fams, 0, 0), (0, 0));
        assert_eq!(fams.iter().map(|f| f.samples.len()).sum::<usize>(), 5);
    }
}
