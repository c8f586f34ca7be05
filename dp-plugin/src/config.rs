//! CP → DP config: polls Envoy's config listener (`GET /meshmetric` on a unix socket, with
//! `If-None-Match`), compiles each new config once, and publishes it on a `watch` channel.
//! When the socket is unreachable or the body is invalid the last good config stays active.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use meshmetric_policies::dpconfig::DpConfig;
use meshmetric_policies::profiles::FamilyFilter;
use meshmetric_policies::relabel::{RelabelError, Rules};

use crate::client::{Endpoint, HttpClient};
use crate::merge::{ExtraLabels, SeriesCache};

/// A config ready for use: the document plus what is compiled from it.
#[derive(Debug, Clone)]
pub struct ActiveConfig {
    pub etag: String,
    pub config: DpConfig,
    pub filter: FamilyFilter,
    pub extra: ExtraLabels,
    /// Relabeling rules for every series.
    pub rules: Rules,
    /// Relabeling rules per application, by its label (name, else port).
    pub app_rules: HashMap<String, Rules>,
    /// Relabeling results per series, for these rules and extra labels.
    pub relabel_cache: Arc<std::sync::Mutex<SeriesCache>>,
}

/// Why a config could not be compiled (the control plane validated it, so this is a config
/// from a newer or foreign control plane).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A profile selector's regex.
    #[error("a profile selector: {0}")]
    Selector(#[from] regex::Error),
    /// A relabeling rule.
    #[error(transparent)]
    Relabel(#[from] RelabelError),
}

impl ActiveConfig {
    /// Compiles `config`. Errors: a Regex selector or relabeling rule that does not compile.
    pub fn new(etag: String, config: DpConfig) -> Result<Self, CompileError> {
        let m = config.metrics();
        let filter = FamilyFilter::new(m.sidecar.as_ref().and_then(|s| s.profiles.as_ref()))?;
        let extra = ExtraLabels::new(m.extra_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let rules = Rules::compile(&m.relabel)?;
        let mut app_rules = HashMap::new();
        for a in &m.applications {
            if !a.relabel.is_empty() {
                app_rules.insert(a.label(), Rules::compile(&a.relabel)?);
            }
        }
        Ok(Self {
            etag,
            config,
            filter,
            extra,
            rules,
            app_rules,
            relabel_cache: Default::default(),
        })
    }

    /// The config used before the first one arrives: profile Basic, no applications.
    pub fn initial() -> Self {
        Self::new(String::new(), DpConfig::default()).expect("default config compiles")
    }

    /// Whether Envoy's unused stats are exported too (`sidecar.includeUnused`).
    pub fn include_unused(&self) -> bool {
        self.config
            .metrics()
            .sidecar
            .as_ref()
            .and_then(|s| s.include_unused)
            .unwrap_or(false)
    }
}

/// How long after start a missing config socket is only waited for (logged at info).
pub const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Polls `socket` every `interval` and publishes new configs on `tx` until `tx` is closed.
pub async fn poll(client: HttpClient, socket: PathBuf, interval: Duration, tx: watch::Sender<Arc<ActiveConfig>>) {
    let ep = Endpoint::Unix(socket.clone());
    let mut healthy: Option<bool> = None;
    let started = std::time::Instant::now();
    let mut waiting_logged = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let etag = tx.borrow().etag.clone();
        let headers: Vec<(&str, &str)> = if etag.is_empty() {
            vec![]
        } else {
            vec![("if-none-match", etag.as_str())]
        };
        let r = client
            .get(
                &ep,
                meshmetric_policies::contract::CONFIG_PATH,
                &headers,
                Duration::from_secs(5),
                16 << 20,
            )
            .await;
        let problem = match r {
            Ok(f) if f.status == 304 => None,
            Ok(f) if f.status == 200 => {
                let new_etag = f
                    .headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                match serde_json::from_slice::<DpConfig>(&f.body)
                    .map_err(|e| e.to_string())
                    .and_then(|c| ActiveConfig::new(new_etag.clone(), c).map_err(|e| e.to_string()))
                {
                    Ok(active) => {
                        let m = active.config.metrics();
                        tracing::info!(etag = %new_etag, applications = m.applications.len(), backends = m.backends.len(), "new metrics config applied");
                        tx.send_replace(Arc::new(active));
                        None
                    }
                    Err(e) => Some(format!("invalid config body: {e}")),
                }
            }
            Ok(f) => Some(format!("unexpected HTTP status {}", f.status)),
            Err(e) => Some(e.to_string()),
        };
        // at start Envoy takes a moment to open the socket: waiting is not a fault
        if problem.is_some() && healthy.is_none() && started.elapsed() < STARTUP_GRACE {
            if !waiting_logged {
                tracing::info!(socket = %socket.display(), "waiting for Envoy to serve the first metrics config");
                waiting_logged = true;
            }
            continue;
        }
        match (&problem, healthy) {
            (Some(p), Some(true) | None) => {
                tracing::warn!(socket = %socket.display(), error = %p, "cannot fetch the metrics config; keeping the last good one and retrying")
            }
            (None, Some(false)) => tracing::info!(socket = %socket.display(), "metrics config reachable again"),
            _ => {}
        }
        healthy = Some(problem.is_none());
    }
}
