//! One exporter per OpenTelemetry backend: a producer task turns the shared collection into an
//! OTLP request every `refreshInterval` and queues it; a sender task delivers the queue.
//!
//! Delivery (OTLP exporter specification): retryable failures are retried with exponential
//! backoff and jitter (1 s → 30 s), a server hint (`RetryInfo`, `Retry-After`) replacing the
//! next delay, for at most 5 minutes per batch; permanent failures drop the batch. The queue
//! holds at most `queueSize` batches; when full the **oldest** is dropped. Every data point is
//! counted as sent, rejected (partial success), failed or dropped. A dead collector therefore
//! costs one bounded queue and never slows another exporter or the Prometheus endpoint.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use backon::BackoffBuilder;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::producer::Producer;
use super::settings::{ExporterSettings, HeaderValue};
use super::transport::{SendError, Transport};
use crate::pipeline::Pipeline;
pub use crate::selfmetrics::ExporterStats;

/// Longest time one batch is retried.
pub const MAX_RETRY_ELAPSED: Duration = Duration::from_secs(300);

/// A queued export, kept protobuf-encoded: a decoded request repeats every attribute string
/// and takes ~3× the memory (measured: 32 MiB vs 9.6 MB for 1000 Envoy clusters).
struct Batch {
    body: bytes::Bytes,
    points: u64,
}

/// Most bytes of encoded batches one exporter keeps; the oldest are dropped beyond it (the
/// newest batch is always kept).
pub const MAX_QUEUE_BYTES: usize = 64 << 20;

struct Queue {
    items: Mutex<VecDeque<Batch>>,
    notify: Notify,
}

/// A running exporter; dropping it stops its tasks and frees its queue.
pub struct Exporter {
    pub settings: ExporterSettings,
    pub stats: Arc<ExporterStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Largest header file read, in bytes.
const MAX_HEADER_FILE: u64 = 64 << 10;

/// Reads header values at send time; files are re-read when their modification time changes.
#[derive(Default)]
struct Secrets {
    files: HashMap<PathBuf, (Option<SystemTime>, String)>,
}

/// Reads a header file: it must still lie in one of `dirs` once symlinks are resolved (a
/// link planted in an allowed directory cannot point elsewhere), and at most
/// [`MAX_HEADER_FILE`] bytes are read.
fn read_header_file(path: &Path, dirs: &[PathBuf]) -> Result<String, String> {
    use std::io::Read;
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    let inside = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .any(|d| real.starts_with(&d) && real != d);
    if !inside {
        return Err(format!(
            "{} resolves outside the directories this proxy allows (--header-file-dir)",
            path.display()
        ));
    }
    let mut s = String::new();
    std::fs::File::open(&real)
        .and_then(|f| f.take(MAX_HEADER_FILE + 1).read_to_string(&mut s))
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    if s.len() as u64 > MAX_HEADER_FILE {
        return Err(format!("{} is larger than {MAX_HEADER_FILE} bytes", path.display()));
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

impl Secrets {
    /// Errors name the file or variable, never a value.
    fn resolve(
        &mut self,
        headers: &[(String, HeaderValue)],
        dirs: &[PathBuf],
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(headers.len());
        for (name, v) in headers {
            let value = match v {
                HeaderValue::Inline(s) | HeaderValue::FromEnvHeaders(s) => s.clone(),
                HeaderValue::Env(var) => {
                    std::env::var(var).map_err(|_| format!("header {name}: environment variable {var} is not set"))?
                }
                HeaderValue::File(path) => {
                    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                    match self.files.get(path) {
                        Some((t, s)) if *t == mtime && mtime.is_some() => s.clone(),
                        _ => {
                            let s = read_header_file(path, dirs).map_err(|e| format!("header {name}: {e}"))?;
                            self.files.insert(path.clone(), (mtime, s.clone()));
                            s
                        }
                    }
                }
            };
            out.push((name.clone(), value));
        }
        Ok(out)
    }
}

impl Exporter {
    /// Starts the exporter. `extra_labels` become resource attributes.
    pub fn spawn(settings: ExporterSettings, pipeline: Arc<Pipeline>, extra_labels: BTreeMap<String, String>) -> Self {
        let stats = Arc::new(ExporterStats::default());
        stats
            .capacity_batches
            .store(settings.queue_size as u64, std::sync::atomic::Ordering::Relaxed);
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
        });
        let producer = tokio::spawn(produce_loop(
            settings.clone(),
            pipeline,
            extra_labels,
            queue.clone(),
            stats.clone(),
        ));
        let sender = tokio::spawn(send_loop(settings.clone(), queue, stats.clone()));
        tracing::info!(endpoint = %settings.endpoint, protocol = ?settings.protocol, interval = ?settings.interval, "OTLP exporter started");
        if settings.env_headers_withheld {
            tracing::warn!(endpoint = %settings.endpoint, "OTEL_EXPORTER_OTLP_HEADERS not sent: the endpoint is not the environment's and not listed by --otel-env-headers-to");
        }
        Self {
            settings,
            stats,
            tasks: vec![producer, sender],
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn produce_loop(
    s: ExporterSettings,
    pipeline: Arc<Pipeline>,
    extra: BTreeMap<String, String>,
    queue: Arc<Queue>,
    stats: Arc<ExporterStats>,
) {
    let mut producer = Producer::new(s.temporality, &extra);
    // pushed OTLP reaches the backend as sent, with the proxy's extra labels on the resource
    let mut pushed = pipeline.push().map(|p| p.subscribe());
    let mut tick = tokio::time::interval(s.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let text = pipeline.collect().await.otlp;
        // conversion is CPU work (~65 ms at 1000 Envoy clusters): keep it off the event loop
        let job = tokio::task::spawn_blocking(move || {
            let out = std::str::from_utf8(&text)
                .ok()
                .map(|t| producer.produce_encoded(t, now_ns()));
            (producer, out)
        });
        let Ok((p, out)) = job.await else { return };
        producer = p;
        if let Some((body, points)) = out
            && points > 0
        {
            enqueue(&s, &queue, &stats, body, points as u64);
        }
        if let Some(rx) = &mut pushed
            && let Some((body, points)) = forwarded(rx, &extra, &s.endpoint)
        {
            enqueue(&s, &queue, &stats, body, points);
        }
    }
}

/// The pushed requests received since the last tick, as one request with the proxy's extra
/// labels added to every resource (a sender's attribute of the same name is kept as
/// `exported_<name>`, as on the Prometheus endpoint).
fn forwarded(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<crate::push::Forwarded>>,
    extra: &BTreeMap<String, String>,
    endpoint: &str,
) -> Option<(bytes::Bytes, u64)> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    let mut req = ExportMetricsServiceRequest::default();
    let mut points = 0;
    loop {
        match rx.try_recv() {
            Ok(f) => {
                points += f.points;
                req.resource_metrics.extend(f.request.resource_metrics.iter().cloned());
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                tracing::warn!(
                    endpoint,
                    requests = n,
                    "OTLP exporter fell behind the pushed requests; the oldest were not forwarded"
                );
            }
            Err(_) => break,
        }
    }
    if points == 0 {
        return None;
    }
    for rm in &mut req.resource_metrics {
        let r = rm.resource.get_or_insert_with(Default::default);
        for a in &mut r.attributes {
            if extra.contains_key(&a.key) {
                a.key = format!("exported_{}", a.key);
            }
        }
        r.attributes
            .extend(extra.iter().map(|(k, v)| super::producer::kv(k, v)));
    }
    Some((bytes::Bytes::from(prost::Message::encode_to_vec(&req)), points))
}

/// Puts a batch at the end of the queue, dropping the oldest while the queue is over its
/// limits.
fn enqueue(s: &ExporterSettings, queue: &Queue, stats: &ExporterStats, body: bytes::Bytes, points: u64) {
    {
        let mut q = queue.items.lock().expect("queue lock");
        let mut bytes: usize = q.iter().map(|b| b.body.len()).sum();
        while !q.is_empty() && (q.len() >= s.queue_size.max(1) || bytes + body.len() > MAX_QUEUE_BYTES) {
            if let Some(old) = q.pop_front() {
                bytes -= old.body.len();
                stats.dropped.fetch_add(old.points, Ordering::Relaxed);
                tracing::debug!(endpoint = %s.endpoint, points = old.points, "queue full: oldest batch dropped");
            }
        }
        q.push_back(Batch { body, points });
        stats.queued_batches.store(q.len() as u64, Ordering::Relaxed);
        stats
            .queued_bytes
            .store(q.iter().map(|b| b.body.len() as u64).sum(), Ordering::Relaxed);
    }
    queue.notify.notify_one();
}

async fn send_loop(s: ExporterSettings, queue: Arc<Queue>, stats: Arc<ExporterStats>) {
    let mut transport: Option<Transport> = None;
    let mut tls_mtimes = s.tls.as_ref().map(|t| t.mtimes());
    let mut secrets = Secrets::default();
    let mut healthy = true;
    loop {
        let batch = loop {
            let next = {
                let mut q = queue.items.lock().expect("queue lock");
                let b = q.pop_front();
                stats.queued_batches.store(q.len() as u64, Ordering::Relaxed);
                stats
                    .queued_bytes
                    .store(q.iter().map(|b| b.body.len() as u64).sum(), Ordering::Relaxed);
                b
            };
            match next {
                Some(b) => break b,
                None => queue.notify.notified().await,
            }
        };
        let started = Instant::now();
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            // rebuild the connection when TLS files rotate
            let current = s.tls.as_ref().map(|t| t.mtimes());
            if current != tls_mtimes {
                tls_mtimes = current;
                transport = None;
            }
            let result = async {
                if transport.is_none() {
                    transport = Some(Transport::new(&s)?);
                }
                let headers = secrets
                    .resolve(&s.headers, &s.header_file_dirs)
                    .map_err(SendError::Setup)?;
                transport
                    .as_mut()
                    .expect("built above")
                    .send(&batch.body, &headers, &s)
                    .await
            }
            .await;
            stats.exports.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(rejected) => {
                    let rejected = rejected.min(batch.points);
                    stats.sent.fetch_add(batch.points - rejected, Ordering::Relaxed);
                    stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        tracing::warn!(endpoint = %s.endpoint, rejected, "collector rejected part of an export (partial success)");
                    }
                    if !healthy {
                        tracing::info!(endpoint = %s.endpoint, "OTLP export recovered");
                        healthy = true;
                    }
                    break;
                }
                Err(e) if e.retryable() && started.elapsed() < MAX_RETRY_ELAPSED => {
                    let delay = e
                        .retry_after()
                        .unwrap_or_else(|| backoff.next().unwrap_or(Duration::from_secs(30)))
                        .min(MAX_RETRY_ELAPSED);
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    if healthy {
                        tracing::warn!(endpoint = %s.endpoint, error = %e, retry_in = ?delay, "OTLP export failed; retrying (further failures are logged at debug until it recovers)");
                        healthy = false;
                    } else {
                        tracing::debug!(endpoint = %s.endpoint, error = %e, retry_in = ?delay, "OTLP export failed; retrying");
                    }
                    if e.broke_connection() {
                        transport = None;
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    stats.failed.fetch_add(batch.points, Ordering::Relaxed);
                    if healthy {
                        tracing::warn!(endpoint = %s.endpoint, error = %e, points = batch.points, retryable = e.retryable(), "OTLP export dropped (further drops are logged at debug until it recovers)");
                        healthy = false;
                    } else {
                        tracing::debug!(endpoint = %s.endpoint, error = %e, points = batch.points, "OTLP export dropped");
                    }
                    break;
                }
            }
        }
    }
}
