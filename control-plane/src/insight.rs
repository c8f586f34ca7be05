//! What each proxy is doing, as its ADS streams show it: online or not and since when, on
//! which control-plane instance, the config version last sent and the one last accepted
//! (ACK), the last rejection (NACK) with Envoy's error, and the listeners of the version it
//! runs.
//!
//! Each instance keeps the insights of its own streams in memory and, with a database, writes
//! the ones that changed once a second (one row per proxy and instance) and a heartbeat every
//! [`HEARTBEAT`]; every instance then answers the same. A row counts as online only while its
//! instance's heartbeat is younger than [`STALE_AFTER`], so a crashed instance's proxies show
//! offline (until they reconnect elsewhere).
//!
//! The state of a proxy's config ([`ConfigState`]): `InForce` when the version last sent was
//! accepted, `Rejected` when Envoy NACKed it (Envoy keeps running its previous config),
//! `Pending` while the proxy has not answered yet, `Offline` without a stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::persist::{Persistence, now_secs};
use crate::store::Key;
use crate::telemetry::{kv, metrics};

/// How often an instance writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A row whose instance has not written a heartbeat for this long is offline.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// Longest Envoy error kept with a NACK, in bytes.
const MAX_ERROR: usize = 4096;

/// Envoy's rejection of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nack {
    /// The rejected version.
    pub version: String,
    /// The resource type (`type.googleapis.com/envoy.config.listener.v3.Listener`, ...).
    pub type_url: String,
    /// Envoy's `error_detail.message`, cut to 4 KiB.
    pub error: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

/// One proxy as seen by one control-plane instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamInsight {
    /// The instance (`--instance-id`, default host name and PID).
    pub instance: String,
    /// A stream of this instance is connected.
    pub online: bool,
    /// When the current (or last) stream connected, seconds since the epoch.
    pub connected_since: Option<u64>,
    /// When the last stream ended.
    pub disconnected_at: Option<u64>,
    /// The config version last sent.
    pub version_sent: Option<String>,
    /// The config version last accepted for every type the proxy subscribes to.
    pub version_acked: Option<String>,
    /// When `version_acked` was accepted.
    pub acked_at: Option<u64>,
    /// The last rejection.
    pub last_nack: Option<Nack>,
    /// Listener names of the version last accepted.
    pub listeners: Vec<String>,
    /// When this row last changed.
    pub changed_at: u64,
}

/// The state of a proxy's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConfigState {
    /// The version last sent was accepted.
    InForce,
    /// Envoy rejected the version last sent and keeps its previous config.
    Rejected,
    /// The proxy has not answered the version last sent yet.
    Pending,
    /// No stream is connected.
    Offline,
}

impl ConfigState {
    /// The name shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InForce => "InForce",
            Self::Rejected => "Rejected",
            Self::Pending => "Pending",
            Self::Offline => "Offline",
        }
    }
}

/// What every instance together knows of one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneInsight {
    /// Some instance has a live stream of it.
    pub online: bool,
    /// The state of its config.
    pub config: ConfigState,
    /// Why, when not in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The row the answer comes from (the live one that connected last, else the latest).
    #[serde(flatten)]
    pub current: StreamInsight,
}

impl DataplaneInsight {
    /// Merges the rows of every instance: `live(instance)` says whether its heartbeat is fresh.
    pub fn merge(rows: Vec<StreamInsight>, live: &dyn Fn(&str) -> bool) -> Option<Self> {
        let is_live = |r: &StreamInsight| r.online && live(&r.instance);
        let current = rows
            .iter()
            .filter(|r| is_live(r))
            .max_by_key(|r| r.connected_since)
            .or_else(|| rows.iter().max_by_key(|r| r.changed_at))?
            .clone();
        let online = is_live(&current);
        let (config, reason) = if !online {
            (ConfigState::Offline, Some("no ADS stream is connected".to_string()))
        } else if current.version_sent.is_some() && current.version_sent == current.version_acked {
            (ConfigState::InForce, None)
        } else if let Some(n) = current
            .last_nack
            .as_ref()
            .filter(|n| Some(&n.version) == current.version_sent.as_ref())
        {
            (
                ConfigState::Rejected,
                Some(format!(
                    "Envoy rejected version {} and keeps running {}: {}",
                    n.version,
                    current.version_acked.as_deref().unwrap_or("no config"),
                    n.error
                )),
            )
        } else {
            (
                ConfigState::Pending,
                Some("the proxy has not acknowledged the version last sent".to_string()),
            )
        };
        let mut current = current;
        current.online = online;
        Some(Self {
            online,
            config,
            reason,
            current,
        })
    }
}

/// Per-stream state an instance keeps to derive its row.
#[derive(Debug, Default)]
struct Local {
    row: StreamInsight,
    streams: u32,
    /// Per type: the version sent, and whether it was accepted.
    types: BTreeMap<String, (String, bool)>,
    /// When each version was first produced on this instance, for the ACK latency.
    produced: Option<(String, Instant)>,
    /// Listener names per version sent.
    listeners: Option<(String, Vec<String>)>,
    /// Whether the latest version is rejected (counted in `meshmetric_cp_proxies_nacked`).
    nacked: bool,
}

/// The insights of one instance.
pub struct Insights {
    instance: String,
    local: Mutex<HashMap<Key, Local>>,
    dirty: Mutex<HashSet<Key>>,
    db: Option<Arc<Persistence>>,
}

impl Insights {
    /// Insights of `instance`, written to `db` when given.
    pub fn new(instance: impl Into<String>, db: Option<Arc<Persistence>>) -> Arc<Self> {
        Arc::new(Self {
            instance: instance.into(),
            local: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            db,
        })
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn update(&self, key: &Key, f: impl FnOnce(&mut Local)) {
        let mut map = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let l = map.entry(key.clone()).or_default();
        l.row.instance.clone_from(&self.instance);
        f(l);
        l.row.changed_at = now_secs();
        drop(map);
        self.dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone());
    }

    /// A stream of `key` connected.
    pub fn connected(&self, key: &Key) {
        metrics().ads_streams.add(1, &[kv("mesh", key.0.clone())]);
        self.update(key, |l| {
            l.streams += 1;
            if !l.row.online {
                l.row.online = true;
                l.row.connected_since = Some(now_secs());
            }
        });
    }

    /// A stream of `key` ended.
    pub fn disconnected(&self, key: &Key) {
        metrics().ads_streams.add(-1, &[kv("mesh", key.0.clone())]);
        self.update(key, |l| {
            l.streams = l.streams.saturating_sub(1);
            if l.streams == 0 {
                l.row.online = false;
                l.row.disconnected_at = Some(now_secs());
                l.types.clear();
                if std::mem::take(&mut l.nacked) {
                    metrics().proxies_nacked.add(-1, &[]);
                }
            }
        });
    }

    /// A new config `version` was produced for `key` (its listeners named `listeners`).
    pub fn produced(&self, key: &Key, version: &str, listeners: Vec<String>) {
        self.update(key, |l| {
            if l.produced.as_ref().is_none_or(|(v, _)| v != version) {
                l.produced = Some((version.to_string(), Instant::now()));
            }
            l.listeners = Some((version.to_string(), listeners));
        });
    }

    /// `version` of `type_url` was sent to `key`.
    pub fn sent(&self, key: &Key, type_url: &str, version: &str) {
        metrics().xds_pushes.add(1, &[kv("type", short_type(type_url))]);
        self.update(key, |l| {
            l.types.insert(type_url.to_string(), (version.to_string(), false));
            l.row.version_sent = Some(version.to_string());
        });
    }

    /// `key` accepted `version` of `type_url`.
    pub fn acked(&self, key: &Key, type_url: &str, version: &str) {
        let t = short_type(type_url);
        metrics().xds_acks.add(1, &[kv("type", t)]);
        self.update(key, |l| {
            if let Some(s) = l.types.get_mut(type_url)
                && s.0 == version
            {
                s.1 = true;
            }
            if let Some((v, at)) = &l.produced
                && v == version
            {
                metrics()
                    .xds_ack_duration
                    .record(at.elapsed().as_secs_f64(), &[kv("type", t)]);
            }
            let all = !l.types.is_empty() && l.types.values().all(|(v, ok)| *ok && v == version);
            if all && l.row.version_acked.as_deref() != Some(version) {
                l.row.version_acked = Some(version.to_string());
                l.row.acked_at = Some(now_secs());
                if let Some((v, names)) = &l.listeners
                    && v == version
                {
                    l.row.listeners.clone_from(names);
                }
            }
            if all && std::mem::take(&mut l.nacked) {
                metrics().proxies_nacked.add(-1, &[]);
            }
        });
    }

    /// `key` rejected `version` of `type_url` with `error`.
    pub fn nacked(&self, key: &Key, type_url: &str, version: &str, error: &str) {
        metrics().xds_nacks.add(1, &[kv("type", short_type(type_url))]);
        let mut error = error.to_string();
        if error.len() > MAX_ERROR {
            error.truncate(error.floor_char_boundary(MAX_ERROR));
            error.push('…');
        }
        self.update(key, |l| {
            l.row.last_nack = Some(Nack {
                version: version.to_string(),
                type_url: type_url.to_string(),
                error,
                at: now_secs(),
            });
            if !l.nacked {
                l.nacked = true;
                metrics().proxies_nacked.add(1, &[]);
            }
        });
    }

    fn local_row(&self, key: &Key) -> Option<StreamInsight> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .map(|l| l.row.clone())
    }

    /// What every instance knows of `key`.
    pub async fn get(&self, key: &Key) -> Option<DataplaneInsight> {
        let Some(db) = &self.db else {
            return DataplaneInsight::merge(self.local_row(key).into_iter().collect(), &|_| true);
        };
        let live = self.live_instances(db).await;
        let mut rows: Vec<StreamInsight> = db
            .insights_of(&key.0, &key.1)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(i, _)| *i != self.instance)
            .filter_map(|(_, body)| serde_json::from_str(&body).ok())
            .collect();
        rows.extend(self.local_row(key));
        DataplaneInsight::merge(rows, &|i| i == self.instance || live.contains(i))
    }

    /// What every instance knows of every proxy of `mesh`, by name.
    pub async fn in_mesh(&self, mesh: &str) -> BTreeMap<String, DataplaneInsight> {
        let mut rows: BTreeMap<String, Vec<StreamInsight>> = BTreeMap::new();
        let mut live = HashSet::new();
        if let Some(db) = &self.db {
            live = self.live_instances(db).await;
            for (name, instance, body) in db.insights_in(mesh).await.unwrap_or_default() {
                if instance != self.instance
                    && let Ok(r) = serde_json::from_str(&body)
                {
                    rows.entry(name).or_default().push(r);
                }
            }
        }
        for (k, l) in self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| k.0 == mesh)
        {
            rows.entry(k.1.clone()).or_default().push(l.row.clone());
        }
        rows.into_iter()
            .filter_map(|(name, r)| {
                DataplaneInsight::merge(r, &|i| i == self.instance || live.contains(i)).map(|d| (name, d))
            })
            .collect()
    }

    async fn live_instances(&self, db: &Persistence) -> HashSet<String> {
        let now = now_secs() as i64;
        db.instances()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, hb)| now - hb < STALE_AFTER.as_secs() as i64)
            .map(|(i, _)| i)
            .collect()
    }

    /// With a database: writes what changed once a second and the heartbeat every
    /// [`HEARTBEAT`], until the process ends. Failures are logged and retried.
    pub fn spawn_writer(self: &Arc<Self>) {
        let Some(db) = self.db.clone() else { return };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last_beat: Option<Instant> = None;
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                if last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
                    match db.heartbeat(&me.instance, now_secs()).await {
                        Ok(()) => last_beat = Some(Instant::now()),
                        Err(e) => tracing::debug!(error = %e, "heartbeat not written"),
                    }
                }
                let keys: Vec<Key> = me
                    .dirty
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drain()
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let rows: Vec<(String, String, String, String)> = keys
                    .iter()
                    .filter_map(|k| {
                        let row = me.local_row(k)?;
                        Some((
                            k.0.clone(),
                            k.1.clone(),
                            me.instance.clone(),
                            serde_json::to_string(&row).ok()?,
                        ))
                    })
                    .collect();
                match db.put_insights(&rows).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!("proxy insights written again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "proxy insights not written; retrying");
                        }
                        failing = true;
                        me.dirty
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .extend(keys);
                    }
                }
            }
        });
    }
}

/// `type.googleapis.com/envoy.config.listener.v3.Listener` → `Listener`.
pub fn short_type(type_url: &str) -> &'static str {
    match type_url.rsplit('.').next() {
        Some("Listener") => "Listener",
        Some("Cluster") => "Cluster",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        ("default".into(), "web-01".into())
    }

    #[tokio::test]
    async fn connect_push_ack_nack_disconnect() {
        let i = Insights::new("cp-1", None);
        const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
        const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        i.connected(&key());
        i.produced(&key(), "v1", vec!["_meshmetric_prometheus_5670".into()]);
        i.sent(&key(), CDS, "v1");
        i.sent(&key(), LDS, "v1");
        assert_eq!(i.get(&key()).await.unwrap().config, ConfigState::Pending);
        i.acked(&key(), CDS, "v1");
        assert_eq!(i.get(&key()).await.unwrap().config, ConfigState::Pending);
        i.acked(&key(), LDS, "v1");
        let d = i.get(&key()).await.unwrap();
        assert_eq!(d.config, ConfigState::InForce);
        assert_eq!(d.current.listeners, ["_meshmetric_prometheus_5670"]);
        // a new version is rejected: Envoy keeps v1
        i.produced(&key(), "v2", vec![]);
        i.sent(&key(), LDS, "v2");
        i.nacked(&key(), LDS, "v2", "cannot bind 10.0.0.1:8080: address in use");
        let d = i.get(&key()).await.unwrap();
        assert_eq!(d.config, ConfigState::Rejected);
        let reason = d.reason.unwrap();
        assert!(
            reason.contains("keeps running v1") && reason.contains("address in use"),
            "{reason}"
        );
        assert_eq!(d.current.version_acked.as_deref(), Some("v1"));
        // disconnected: offline, the last facts kept
        i.disconnected(&key());
        let d = i.get(&key()).await.unwrap();
        assert_eq!((d.online, d.config), (false, ConfigState::Offline));
        assert!(d.current.last_nack.is_some());
    }

    #[test]
    fn rows_of_several_instances_merge() {
        let row = |instance: &str, online: bool, since: u64| StreamInsight {
            instance: instance.into(),
            online,
            connected_since: Some(since),
            version_sent: Some("v".into()),
            version_acked: Some("v".into()),
            changed_at: since,
            ..Default::default()
        };
        // the proxy moved from a to b; a's row still says online but a is dead
        let d = DataplaneInsight::merge(vec![row("a", true, 10), row("b", true, 5)], &|i| i == "b").unwrap();
        assert_eq!((d.online, d.current.instance.as_str()), (true, "b"));
        let d = DataplaneInsight::merge(vec![row("a", true, 10)], &|_| false).unwrap();
        assert_eq!(d.config, ConfigState::Offline);
        assert!(DataplaneInsight::merge(vec![], &|_| true).is_none());
    }
}
