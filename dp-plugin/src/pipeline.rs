//! The pipeline every output shares: scrape Envoy's admin and every application concurrently
//! (each with its own timeout and body limit) → parse and apply the limits → filter (profiles)
//! and merge with the extra labels → encode, with the plugin's own metrics
//! ([`crate::selfmetrics`]) last. Concurrent requests share one in-flight collection
//! (single-flight), and a collection younger than `reuse_within` is served again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use crate::client::{Endpoint, HttpClient};
use crate::config::ActiveConfig;
use crate::merge::{MergeStats, Origin, merge_encode};
use crate::parse::{Format, ParseStats, parse};
use crate::selfmetrics::{Registry, Report, Scrape, Source};

/// Limits and endpoints of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
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
    source: Source,
    format: Format,
    body: Result<Bytes, String>,
    duration: Duration,
}

/// Scrapes, merges and encodes; shared by every output.
pub struct Pipeline {
    http: HttpClient,
    settings: PipelineSettings,
    config: watch::Receiver<Arc<ActiveConfig>>,
    inflight: Mutex<Option<Shared<BoxFuture<'static, Bytes>>>>,
    last: Mutex<Option<(Instant, Bytes)>>,
    registry: Arc<Registry>,
    collections: std::sync::atomic::AtomicU64,
    /// Sizes of the previous Envoy body and output, to size this collection's buffers.
    last_sizes: Mutex<(usize, usize)>,
}

const ACCEPT: &str = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

impl Pipeline {
    /// A pipeline over the config of `config`; its self-metrics include the exporters of
    /// `registry`.
    pub fn new(
        http: HttpClient,
        settings: PipelineSettings,
        config: watch::Receiver<Arc<ActiveConfig>>,
        registry: Arc<Registry>,
    ) -> Arc<Self> {
        Arc::new(Self {
            http,
            settings,
            config,
            inflight: Mutex::new(None),
            last: Mutex::new(None),
            registry,
            collections: Default::default(),
            last_sizes: Mutex::new((0, 0)),
        })
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

    async fn scrape(&self, source: Source, ep: Endpoint, path: String) -> Scraped {
        let start = Instant::now();
        let envoy = source == Source::Envoy;
        let hint = if envoy {
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
        if envoy && let Ok(f) = &r {
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
            self.scrape(Source::Envoy, self.settings.envoy_admin.clone(), stats_q)
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
            futs.push(
                self.scrape(
                    Source::Application(a.label()),
                    Endpoint::Tcp(format!("{host}:{}", a.port)),
                    a.path.clone(),
                )
                .boxed(),
            );
        }
        let scraped = futures::future::join_all(futs).await;

        let mut report = Report {
            config_etag: cfg.etag.clone(),
            collections: self.collections(),
            ..Default::default()
        };
        let mut texts: Vec<(Origin, &str, Format)> = Vec::with_capacity(scraped.len());
        for s in &scraped {
            let (origin, application) = match &s.source {
                Source::Envoy => (Origin::Envoy, None),
                Source::Application(a) => (Origin::Application, Some(a.as_str())),
            };
            let ok = match &s.body {
                Ok(b) => match std::str::from_utf8(b) {
                    Ok(t) => {
                        texts.push((origin, t, s.format));
                        true
                    }
                    Err(e) => {
                        tracing::warn!(source = ?origin, application, error = %e, "scrape body is not UTF-8; skipped");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(source = ?origin, application, error = %e, "scrape failed; skipped");
                    false
                }
            };
            report.scrapes.push(Scrape {
                source: s.source.clone(),
                up: ok,
                duration: s.duration,
            });
        }
        let mut parse_stats: Vec<ParseStats> = Vec::with_capacity(texts.len());
        let parsed: Vec<(Origin, Vec<crate::parse::Family<'_>>)> = texts
            .iter()
            .map(|(o, t, f)| {
                let mut st = ParseStats::default();
                // Envoy's families the profile drops are skipped while parsing
                let fams = match o {
                    Origin::Envoy => crate::parse::parse_filtered(t, *f, &mut st, &|name| cfg.filter.keep_family(name)),
                    Origin::Application | Origin::Own => {
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
                        report.label_too_long += long;
                        report.series_limit += over;
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
        report.malformed_lines = parse_stats.iter().map(|s| s.bad_lines).sum();
        let previous_out = self.last_sizes.lock().expect("sizes lock").1;
        let mut out = Vec::with_capacity(if previous_out > 0 {
            previous_out + previous_out / 16 + 4096
        } else {
            texts.iter().map(|t| t.1.len()).sum::<usize>() + 4096
        });
        let sources: Vec<(Origin, &[crate::parse::Family<'_>])> =
            parsed.iter().map(|(o, f)| (*o, f.as_slice())).collect();
        merge_encode(&sources, &cfg.filter, &cfg.extra, &mut out, &mut report.merge);
        report.merge.families_filtered += parse_stats.iter().map(|s| s.skipped_families).sum::<u64>();
        // the plugin's own metrics, last, with the same extra labels
        let own = report.render(&self.registry);
        merge_encode(
            &[(Origin::Own, &own.families())],
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
