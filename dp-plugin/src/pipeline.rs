//! The pipeline every output shares: scrape Envoy's admin and every application concurrently
//! (each with its own timeout and body limit) → parse and apply the limits ([`crate::limits`]) → filter (profiles)
//! and merge with the extra labels → encode, with the plugin's own metrics
//! ([`crate::selfmetrics`]) last. Concurrent requests share one in-flight collection
//! (single-flight), and a collection younger than `reuse_within` is served again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use crate::client::{BodyBudget, Endpoint, HttpClient};
use crate::config::ActiveConfig;
use crate::limits::{SeriesLimits, enforce_limits};
use crate::merge::{FamilyCuts, MergeStats, Origin, Relabeling, StreamMerge, merge_encode_relabeled};
use crate::parse::{Format, ParseStats, parse};
use crate::selfmetrics::{Registry, Report, Scrape, Source};
use meshmetric_policies::relabel::Rules;

/// Limits and endpoints of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Envoy's admin endpoint.
    pub envoy_admin: Endpoint,
    /// Timeout of one scrape (Envoy or application); shortened for a collection when
    /// Prometheus announces a shorter scrape timeout ([`Pipeline::collect_within`]).
    pub scrape_timeout: Duration,
    /// Largest accepted body of Envoy's stats, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted body of one application, in bytes.
    pub max_app_body_bytes: usize,
    /// Bytes all application bodies of one collection may hold together; an application
    /// whose body would exceed it is left out of that collection (`up` 0).
    pub app_body_budget_bytes: usize,
    /// Limits on application series.
    pub limits: SeriesLimits,
    /// A collection younger than this is reused instead of scraping again, so Prometheus
    /// scrapes and OTLP exporters arriving close together share one scrape of Envoy.
    pub reuse_within: Duration,
    /// Metrics pushed over OTLP ([`crate::push`]): every sender joins each collection as an
    /// application named `otlp/<service.name>[/<service.instance.id>]`.
    pub push: Option<Arc<crate::push::Store>>,
}

/// Result of one scrape of one source.
#[derive(Debug)]
struct Scraped {
    source: Source,
    format: Format,
    body: Result<Bytes, String>,
    duration: Duration,
}

/// How long an announced scrape timeout is remembered.
const ANNOUNCED_FOR: Duration = Duration::from_secs(300);

/// The shortest scrape timeout Prometheus announced recently
/// (`X-Prometheus-Scrape-Timeout-Seconds`), so that a collection finishes before Prometheus
/// gives up: a slow application is then left out of that collection (`up` 0) instead of
/// making the whole answer late.
#[derive(Debug, Default)]
struct AnnouncedTimeout(Mutex<Option<(Duration, Instant)>>);

impl AnnouncedTimeout {
    fn announce(&self, t: Duration) {
        let mut g = self.0.lock().expect("timeout lock");
        let keep = g.is_some_and(|(d, at)| d < t && at.elapsed() < ANNOUNCED_FOR);
        if !keep {
            *g = Some((t, Instant::now()));
        }
    }

    /// The scrape timeout of the next collection: `default`, or shorter than the announced
    /// timeout by a tenth of it (at least 250 ms, for Envoy and the network), never below 100 ms.
    fn scrape_timeout(&self, default: Duration) -> Duration {
        match *self.0.lock().expect("timeout lock") {
            Some((d, at)) if at.elapsed() < ANNOUNCED_FOR => {
                let margin = (d / 10).max(Duration::from_millis(250));
                default.min(d.saturating_sub(margin).max(Duration::from_millis(100)))
            }
            _ => default,
        }
    }
}

/// One collection's outputs.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    /// The merged Prometheus text: Envoy, scraped and pushed applications, own metrics.
    pub prometheus: Bytes,
    /// What OTLP backends convert: the same without the pushed applications, which reach
    /// them as sent ([`crate::push::Store::subscribe`]). The same bytes when nothing is pushed.
    pub otlp: Bytes,
}

/// Scrapes, merges and encodes; shared by every output.
pub struct Pipeline {
    deadline: AnnouncedTimeout,
    http: HttpClient,
    settings: PipelineSettings,
    config: watch::Receiver<Arc<ActiveConfig>>,
    inflight: Mutex<Option<Shared<BoxFuture<'static, Collection>>>>,
    last: Mutex<Option<(Instant, Collection)>>,
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
            deadline: AnnouncedTimeout::default(),
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

    /// Records the scrape timeout a Prometheus announced with its request
    /// (`X-Prometheus-Scrape-Timeout-Seconds`); later collections finish within it.
    pub fn announce_scrape_timeout(&self, t: Duration) {
        self.deadline.announce(t);
    }

    /// The OTLP receiver's store, when the plugin has one.
    pub fn push(&self) -> Option<&Arc<crate::push::Store>> {
        self.settings.push.as_ref()
    }

    /// How many collections (scrapes of Envoy) have run.
    pub fn collections(&self) -> u64 {
        self.collections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current collection; joins a collection already in flight if there is one.
    pub async fn collect(self: &Arc<Self>) -> Collection {
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

    async fn scrape(
        &self,
        source: Source,
        ep: Endpoint,
        path: String,
        timeout: Duration,
        budget: &BodyBudget,
    ) -> Scraped {
        let start = Instant::now();
        let envoy = source == Source::Envoy;
        let (hint, limit, budget) = if envoy {
            (
                self.last_sizes.lock().expect("sizes lock").0,
                self.settings.max_body_bytes,
                None,
            )
        } else {
            (0, self.settings.max_app_body_bytes, Some(budget))
        };
        let r = self
            .http
            .get_sized(&ep, &path, &[("accept", ACCEPT)], timeout, limit, hint, budget)
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

    /// Runs one full collection. Without relabeling rules Envoy's body is merged while it
    /// arrives ([`StreamMerge`]): the applications are scraped first (concurrently with Envoy's
    /// response head), then each complete piece of Envoy's families is parsed, merged with the
    /// applications' families of the same names and written, so Envoy's body, its parsed samples
    /// and the output are never all in memory. With rules (their cache needs every series of the
    /// collection in one pass) or when OTLP backends need a second output without pushed data,
    /// the bodies are read whole and merged at once.
    pub async fn collect_once(&self) -> Collection {
        self.collections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cfg = self.config.borrow().clone();
        let timeout = self.deadline.scrape_timeout(self.settings.scrape_timeout);
        let budget = BodyBudget::new(self.settings.app_body_budget_bytes);
        let mut stats_q = String::from("/stats?format=prometheus&text_readouts");
        if !cfg.include_unused() {
            stats_q.push_str("&usedonly");
        }
        // pushed metrics join as applications (rendered from the receiver's state)
        let pushed: Vec<(String, String)> = self
            .settings
            .push
            .as_ref()
            .map(|p| p.render().into_iter().map(|(k, t)| (format!("otlp/{k}"), t)).collect())
            .unwrap_or_default();
        let second_output = !pushed.is_empty() && !self.registry.exporters().is_empty();
        let streaming = cfg.rules.is_empty() && cfg.app_rules.is_empty() && !second_output;
        let mut app_futs = Vec::new();
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
            app_futs.push(
                self.scrape(
                    Source::Application(a.label()),
                    Endpoint::Tcp(format!("{host}:{}", a.port)),
                    a.path.clone(),
                    timeout,
                    &budget,
                )
                .boxed(),
            );
        }
        let envoy_start = Instant::now();
        let envoy_deadline = tokio::time::Instant::now() + timeout;
        let (envoy, apps) = if streaming {
            // Envoy's head and the applications concurrently; Envoy's body is read (not yet
            // parsed: same-named application families join Envoy's) until the applications
            // are done, so a slow application does not make Envoy late
            let mut apps_fut = std::pin::pin!(futures::future::join_all(app_futs));
            let head = self
                .http
                .get_stream(&self.settings.envoy_admin, &stats_q, &[("accept", ACCEPT)], timeout);
            let (head, mut apps) = match futures::future::select(std::pin::pin!(head), apps_fut.as_mut()).await {
                futures::future::Either::Left((head, _)) => (head, None),
                futures::future::Either::Right((apps, head)) => (head.await, Some(apps)),
            };
            let mut stream = EnvoyStream::start(head, self.settings.max_body_bytes, envoy_deadline, timeout);
            while apps.is_none() {
                let Ok(s) = &mut stream else {
                    apps = Some(apps_fut.as_mut().await);
                    break;
                };
                if s.done {
                    apps = Some(apps_fut.as_mut().await);
                    break;
                }
                let failed = match futures::future::select(std::pin::pin!(s.read()), apps_fut.as_mut()).await {
                    futures::future::Either::Left((r, _)) => r.err(),
                    futures::future::Either::Right((a, _)) => {
                        apps = Some(a);
                        None
                    }
                };
                if let Some(e) = failed {
                    stream = Err(e);
                }
            }
            (EnvoyScrape::Stream(stream), apps.unwrap_or_default())
        } else {
            let envoy = self.scrape(
                Source::Envoy,
                self.settings.envoy_admin.clone(),
                stats_q,
                timeout,
                &budget,
            );
            let (envoy, apps) = futures::future::join(envoy, futures::future::join_all(app_futs)).await;
            (EnvoyScrape::Whole(envoy), apps)
        };

        let mut report = Report {
            config_etag: cfg.etag.clone(),
            collections: self.collections(),
            ..Default::default()
        };
        let mut texts: Vec<(Origin, Option<&str>, &str, Format)> = Vec::with_capacity(apps.len() + 1);
        let mut scrapes: Vec<Scrape> = Vec::with_capacity(apps.len() + pushed.len() + 1);
        let (whole, head) = match envoy {
            EnvoyScrape::Whole(s) => (Some(s), None),
            EnvoyScrape::Stream(h) => (None, Some(h)),
        };
        for s in whole.iter().chain(&apps) {
            let (origin, application) = match &s.source {
                Source::Envoy => (Origin::Envoy, None),
                Source::Application(a) => (Origin::Application, Some(a.as_str())),
            };
            let ok = match &s.body {
                Ok(b) => match std::str::from_utf8(b) {
                    Ok(t) => {
                        texts.push((origin, application, t, s.format));
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
            scrapes.push(Scrape {
                source: s.source.clone(),
                up: ok,
                duration: s.duration,
            });
        }
        for (name, text) in &pushed {
            texts.push((Origin::Application, Some(name.as_str()), text.as_str(), Format::Text));
            scrapes.push(Scrape {
                source: Source::Application(name.clone()),
                up: true,
                duration: Duration::ZERO,
            });
        }
        // the receiver's self-metrics appear while a policy enables it (or something it took
        // in is still held)
        if let Some(p) = &self.settings.push
            && (cfg.config.metrics().otlp_receiver.is_some() || !pushed.is_empty())
        {
            report.push = Some(p.clone());
        }
        let mut parse_stats: Vec<ParseStats> = Vec::with_capacity(texts.len() + 1);
        let parsed: Vec<(Origin, Option<&str>, Vec<crate::parse::Family<'_>>)> = texts
            .iter()
            .map(|(o, app, t, f)| {
                let mut st = ParseStats::default();
                // Envoy's families the profile drops are skipped while parsing
                let fams = match o {
                    Origin::Envoy => crate::parse::parse_filtered(t, *f, &mut st, &|name| cfg.filter.keep_family(name)),
                    Origin::Application | Origin::Own => {
                        let mut fams = parse(t, *f, &mut st);
                        let dropped = enforce_limits(&mut fams, &self.settings.limits);
                        if dropped.total() > 0 {
                            tracing::debug!(?dropped, "application series dropped by limits");
                        }
                        report.limits.add(&dropped);
                        fams
                    }
                };
                if let Some(e) = &st.first_error {
                    tracing::debug!(bad_lines = st.bad_lines, first = %e, "skipped malformed lines");
                }
                parse_stats.push(st);
                (*o, *app, fams)
            })
            .collect();
        let previous_out = self.last_sizes.lock().expect("sizes lock").1;
        let mut out = Vec::with_capacity(if previous_out > 0 {
            previous_out + previous_out / 16 + 4096
        } else {
            texts.iter().map(|t| t.2.len()).sum::<usize>() + 4096
        });
        let sources: Vec<(Origin, &[crate::parse::Family<'_>])> =
            parsed.iter().map(|(o, _, f)| (*o, f.as_slice())).collect();
        let mut otlp_out = None;
        match head {
            Some(head) => {
                let mut m = StreamMerge::new(&sources, &cfg.filter, &cfg.extra, out.len());
                let mut st = ParseStats::default();
                let r = match head {
                    Ok(stream) => stream.merge(&cfg, &mut m, &mut out, &mut st).await,
                    Err(e) => Err(e),
                };
                if let Ok(total) = r {
                    self.last_sizes.lock().expect("sizes lock").0 = total;
                }
                let up = match r {
                    Ok(_) => true,
                    Err(e) => {
                        m.envoy_failed(&mut out);
                        st = ParseStats::default();
                        tracing::warn!(source = ?Origin::Envoy, error = %e, "scrape failed; skipped");
                        false
                    }
                };
                scrapes.insert(
                    0,
                    Scrape {
                        source: Source::Envoy,
                        up,
                        duration: envoy_start.elapsed(),
                    },
                );
                if let Some(e) = &st.first_error {
                    tracing::debug!(bad_lines = st.bad_lines, first = %e, "skipped malformed lines");
                }
                parse_stats.push(st);
                report.merge = m.finish(&mut out);
            }
            None => {
                let per_source: Vec<Option<&Rules>> = parsed
                    .iter()
                    .map(|(_, app, _)| app.and_then(|a| cfg.app_rules.get(a)))
                    .collect();
                let relabel = Relabeling {
                    per_source: &per_source,
                    global: &cfg.rules,
                    cache: Some(&cfg.relabel_cache),
                };
                merge_encode_relabeled(&sources, &cfg.filter, &cfg.extra, relabel, &mut out, &mut report.merge);
                // OTLP backends get pushed data as sent; their text leaves the pushed sources out
                if second_output {
                    let main = sources.len() - pushed.len();
                    let mut o = Vec::with_capacity(out.len());
                    let relabel = Relabeling {
                        per_source: &per_source[..main],
                        global: &cfg.rules,
                        cache: Some(&cfg.relabel_cache),
                    };
                    merge_encode_relabeled(
                        &sources[..main],
                        &cfg.filter,
                        &cfg.extra,
                        relabel,
                        &mut o,
                        &mut MergeStats::default(),
                    );
                    otlp_out = Some(o);
                }
            }
        }
        report.scrapes = scrapes;
        report.malformed_lines = parse_stats.iter().map(|s| s.bad_lines).sum();
        report.merge.families_filtered += parse_stats.iter().map(|s| s.skipped_families).sum::<u64>();
        // the plugin's own metrics, last, with the same extra labels and global rules
        let own = report.render(&self.registry);
        let own_relabel = Relabeling {
            per_source: &[],
            global: &cfg.rules,
            cache: Some(&cfg.relabel_cache),
        };
        let own_start = out.len();
        merge_encode_relabeled(
            &[(Origin::Own, &own.families())],
            &cfg.filter,
            &cfg.extra,
            own_relabel,
            &mut out,
            &mut MergeStats::default(),
        );
        if let Some(o) = &mut otlp_out {
            o.extend_from_slice(&out[own_start..]);
        }
        self.last_sizes.lock().expect("sizes lock").1 = out.len();
        let prometheus = Bytes::from(out);
        let otlp = otlp_out.map_or_else(|| prometheus.clone(), Bytes::from);
        Collection { prometheus, otlp }
    }
}

/// Envoy's response while its body is read in pieces: what has arrived and is not merged yet.
struct EnvoyStream {
    format: Format,
    body: hyper::body::Incoming,
    arrived: FamilyCuts,
    total: usize,
    done: bool,
    limit: usize,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl EnvoyStream {
    /// From the response head. Errors: the head's failure or a status other than 200.
    fn start(
        head: Result<(u16, hyper::HeaderMap, hyper::body::Incoming), crate::client::FetchError>,
        limit: usize,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (status, headers, body) = head.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP status {status}"));
        }
        let ct = headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        Ok(Self {
            format: Format::from_content_type(ct),
            body,
            arrived: FamilyCuts::with_capacity(STREAM_PIECE * 2),
            total: 0,
            done: false,
            limit,
            deadline,
            timeout,
        })
    }

    /// Reads the next frame into `arrived` (sets `done` at the end). Errors: timeout, size, the
    /// body's failure. Cancel-safe: nothing is lost when the future is dropped.
    async fn read(&mut self) -> Result<(), String> {
        use http_body_util::BodyExt;
        let frame = match tokio::time::timeout_at(self.deadline, self.body.frame()).await {
            Err(_) => return Err(format!("timed out after {:?}", self.timeout)),
            Ok(None) => {
                self.done = true;
                return Ok(());
            }
            Ok(Some(Err(e))) => return Err(format!("reading the body failed: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            self.total += data.len();
            if self.total > self.limit {
                return Err(format!("response body exceeds the limit of {} bytes", self.limit));
            }
            self.arrived.push(&data);
        }
        Ok(())
    }

    /// Reads the rest of the body, merging each complete piece of families ([`FamilyCuts`])
    /// as it arrives. Returns the body's size. Errors: those of [`Self::read`], a piece that is
    /// not UTF-8.
    async fn merge(
        mut self,
        cfg: &ActiveConfig,
        m: &mut StreamMerge<'_, '_>,
        out: &mut Vec<u8>,
        st: &mut ParseStats,
    ) -> Result<usize, String> {
        let format = self.format;
        let keep = |name: &str| cfg.filter.keep_family(name);
        let piece = |text: &[u8], m: &mut StreamMerge<'_, '_>, out: &mut Vec<u8>, st: &mut ParseStats| {
            let text = std::str::from_utf8(text).map_err(|e| format!("body is not UTF-8: {e}"))?;
            let fams = crate::parse::parse_filtered(text, format, st, &keep);
            m.envoy(&fams, out);
            Ok::<(), String>(())
        };
        loop {
            // OpenMetrics ends with `# EOF`: read it whole
            if format == Format::Text {
                let ready = self.arrived.ready(STREAM_PIECE);
                if !ready.is_empty() {
                    piece(ready, m, out, st)?;
                    let n = ready.len();
                    self.arrived.take(n);
                }
            }
            if self.done {
                break;
            }
            self.read().await?;
        }
        piece(self.arrived.rest(), m, out, st)?;
        Ok(self.total)
    }
}

/// Bytes of complete families gathered before a piece of Envoy's body is merged.
const STREAM_PIECE: usize = 256 << 10;

/// Envoy's scrape: read whole, or being read in pieces.
enum EnvoyScrape {
    Whole(Scraped),
    Stream(Result<EnvoyStream, String>),
}

#[cfg(test)]
mod tests {
    use super::AnnouncedTimeout;
    use std::time::Duration;

    #[test]
    fn announced_scrape_timeouts_shorten_collections() {
        let a = AnnouncedTimeout::default();
        let five = Duration::from_secs(5);
        assert_eq!(a.scrape_timeout(five), five);
        a.announce(Duration::from_secs(4));
        assert_eq!(a.scrape_timeout(five), Duration::from_millis(3600));
        // a longer announcement does not lengthen it while the shorter one is recent
        a.announce(Duration::from_secs(10));
        assert_eq!(a.scrape_timeout(five), Duration::from_millis(3600));
        a.announce(Duration::from_secs(1));
        assert_eq!(a.scrape_timeout(five), Duration::from_millis(750));
        a.announce(Duration::from_millis(200));
        assert_eq!(a.scrape_timeout(five), Duration::from_millis(100));
    }
}
