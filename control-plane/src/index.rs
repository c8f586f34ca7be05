//! The per-proxy index: everything derived from the resources, computed once per change and
//! published, so ADS and MADS only serve.
//!
//! The [`Store`] holds resources and logs which proxies each change can affect. The index
//! keeps, for every Dataplane, its derived metrics state ([`ProxyMetrics`]: merged policy,
//! config served to the plugin, Prometheus listeners, backends left out), which depends on
//! the resources and on what the connected proxy declared ([`Declared`]: whether it gave a
//! certificate for `ProvidedTLS` listeners, where it lets header values come from; per
//! stream, cleared when the stream ends). On a change it
//! recomputes only the affected proxies, then publishes:
//!
//! - to each ADS stream, its proxy's state on a `watch` channel ([`Index::watch`]);
//! - to MADS and HTTP SD, every client's MonitoringAssignments ([`Index::assignments`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use meshmetric_mads::{Assignments, ProxyInput};

use crate::store::{Affected, Declared, Key, Proxy, Store};

/// A proxy's published state: its Dataplane and derived metrics state, or `None` while no
/// Dataplane of that name is known.
pub type Published = Option<Arc<Proxy>>;

#[derive(Default)]
struct State {
    proxies: BTreeMap<Key, Arc<Proxy>>,
    /// Per proxy, per connected stream: what it declared.
    streams: HashMap<Key, BTreeMap<u64, Declared>>,
    watchers: HashMap<Key, watch::Sender<Published>>,
}

impl State {
    /// What proxy `key` declared: ready for TLS when any stream is, header sources of its
    /// newest stream.
    fn declared(&self, key: &Key) -> Declared {
        let Some(streams) = self.streams.get(key) else {
            return Declared::default();
        };
        Declared {
            tls_ready: streams.values().any(|d| d.tls_ready),
            secret_sources: streams.values().next_back().and_then(|d| d.secret_sources.clone()),
        }
    }
}

/// The index. Create it with [`Index::start`].
pub struct Index {
    store: Arc<Store>,
    state: Mutex<State>,
    assignments: watch::Sender<Arc<Assignments>>,
}

impl Index {
    /// Computes every proxy's state from `store` and starts the task keeping it current.
    pub fn start(store: Arc<Store>) -> Arc<Self> {
        let mut changes = store.subscribe();
        let mut seen = *changes.borrow_and_update();
        let started = std::time::Instant::now();
        let index = Arc::new(Self {
            store: store.clone(),
            state: Mutex::new(State::default()),
            assignments: watch::channel(Arc::new(Assignments::default())).0,
        });
        let n = index.recompute(None);
        record_recompute("full", started.elapsed(), n);
        tracing::info!(
            proxies = n,
            took_ms = started.elapsed().as_millis() as u64,
            "proxy index computed (full)"
        );
        let me = Arc::downgrade(&index);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let now = *changes.borrow_and_update();
                let Some(index) = me.upgrade() else { return };
                let started = std::time::Instant::now();
                let affected = index.store.changes_since(seen);
                seen = now;
                let scope = if affected.is_some() { "partial" } else { "full" };
                let n = index.recompute(affected);
                record_recompute(scope, started.elapsed(), n);
                tracing::debug!(
                    recomputed = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "proxy index updated"
                );
            }
        });
        index
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Recomputes the proxies `changes` can have affected (all when `None` or when one of them
    /// is [`Affected::All`]), publishes what changed; returns how many were recomputed.
    fn recompute(&self, changes: Option<Vec<Affected>>) -> usize {
        let keys: Option<BTreeSet<Key>> = changes.and_then(|c| {
            let mut keys = BTreeSet::new();
            for a in c {
                match a {
                    Affected::All => return None,
                    Affected::Dataplanes(v) => keys.extend(v),
                }
            }
            Some(keys)
        });
        let mut st = self.lock();
        let recomputed = match keys {
            None => {
                let fresh: BTreeMap<Key, Arc<Proxy>> = self
                    .store
                    .all_proxies(&|k| st.declared(k))
                    .into_iter()
                    .map(|p| ((p.0.meta.mesh.clone(), p.0.meta.name.clone()), Arc::new(p)))
                    .collect();
                let n = fresh.len();
                let gone: Vec<Key> = st.proxies.keys().filter(|k| !fresh.contains_key(*k)).cloned().collect();
                for k in gone {
                    st.proxies.remove(&k);
                    publish(&mut st, &k, None);
                }
                for (k, p) in fresh {
                    if st.proxies.get(&k).is_none_or(|old| **old != *p) {
                        st.proxies.insert(k.clone(), p.clone());
                        publish(&mut st, &k, Some(p));
                    }
                }
                n
            }
            Some(keys) => {
                for k in &keys {
                    // a proxy whose Dataplane went away forgets its streams' declarations
                    self.refresh(&mut st, k);
                }
                keys.len()
            }
        };
        let a = generate(&st.proxies, Some(&self.assignments.borrow()));
        drop(st);
        crate::telemetry::metrics()
            .mads_clients
            .record(a.clients().count() as i64, &[]);
        self.assignments.send_replace(Arc::new(a));
        recomputed
    }

    /// Recomputes one proxy and publishes it when it changed; returns whether it did.
    fn refresh(&self, st: &mut State, key: &Key) -> bool {
        let declared = st.declared(key);
        match self.store.proxy_with(key, &declared) {
            Some(p) => {
                if st.proxies.get(key).is_none_or(|old| **old != p) {
                    let p = Arc::new(p);
                    st.proxies.insert(key.clone(), p.clone());
                    publish(st, key, Some(p));
                    return true;
                }
                false
            }
            None => {
                if st.proxies.remove(key).is_some() {
                    publish(st, key, None);
                    return true;
                }
                false
            }
        }
    }

    /// The published state of proxy `key`, kept current.
    pub fn watch(&self, key: &Key) -> watch::Receiver<Published> {
        let mut st = self.lock();
        let current = st.proxies.get(key).cloned();
        st.watchers
            .entry(key.clone())
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }

    /// The current state of every proxy of `mesh`, by name.
    pub fn proxies_in(&self, mesh: &str) -> Vec<Arc<Proxy>> {
        self.lock()
            .proxies
            .range((mesh.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == mesh)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The current state of proxy `key`.
    pub fn proxy(&self, key: &Key) -> Published {
        self.lock().proxies.get(key).cloned()
    }

    /// Records that stream `stream` of proxy `key` is connected and what it declared (kept
    /// while the stream lasts, so a Dataplane created later gets it). Only a change to a known
    /// Dataplane's state regenerates the MonitoringAssignments.
    pub fn connected(&self, key: &Key, stream: u64, declared: Declared) {
        self.set_declared(key, |m| {
            m.insert(stream, declared);
        });
    }

    /// Records that stream `stream` of proxy `key` ended.
    pub fn disconnected(&self, key: &Key, stream: u64) {
        self.set_declared(key, |m| {
            m.remove(&stream);
        });
        let mut st = self.lock();
        if st.watchers.get(key).is_some_and(|w| w.receiver_count() == 0) {
            st.watchers.remove(key);
        }
    }

    fn set_declared(&self, key: &Key, change: impl FnOnce(&mut BTreeMap<u64, Declared>)) {
        let mut st = self.lock();
        let before = st.declared(key);
        change(st.streams.entry(key.clone()).or_default());
        if st.streams.get(key).is_some_and(BTreeMap::is_empty) {
            st.streams.remove(key);
        }
        if st.declared(key) == before || !self.refresh(&mut st, key) {
            return;
        }
        let a = generate(&st.proxies, Some(&self.assignments.borrow()));
        drop(st);
        self.assignments.send_replace(Arc::new(a));
    }

    /// Every client's MonitoringAssignments, kept current.
    pub fn assignments(&self) -> watch::Receiver<Arc<Assignments>> {
        self.assignments.subscribe()
    }

    /// The assignments recomputed from scratch (to check the incremental ones).
    pub fn assignments_from_scratch(&self) -> Assignments {
        let st = self.lock();
        let proxies: BTreeMap<Key, Arc<Proxy>> = self
            .store
            .all_proxies(&|k| st.declared(k))
            .into_iter()
            .map(|p| ((p.0.meta.mesh.clone(), p.0.meta.name.clone()), Arc::new(p)))
            .collect();
        generate(&proxies, None)
    }
}

fn record_recompute(scope: &'static str, took: std::time::Duration, proxies: usize) {
    let m = crate::telemetry::metrics();
    m.index_recompute
        .record(took.as_secs_f64(), &[crate::telemetry::kv("scope", scope)]);
    m.index_proxies_affected.record(proxies as u64, &[]);
}

fn publish(st: &mut State, key: &Key, value: Published) {
    if let Some(w) = st.watchers.get(key) {
        w.send_replace(value);
    }
}

/// Every client's assignments; the encoded views of clients whose assignments did not change
/// since `previous` are reused.
fn generate(proxies: &BTreeMap<Key, Arc<Proxy>>, previous: Option<&Assignments>) -> Assignments {
    Assignments::generate_reusing(
        previous,
        proxies.values().map(|p| ProxyInput {
            dataplane: &p.0,
            metrics: &p.1,
        }),
    )
}
