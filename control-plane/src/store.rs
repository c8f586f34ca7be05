//! In-memory resource store with change notification.
//!
//! Writes are all-or-nothing: a batch is validated by `meshmetric-policies` before it reaches
//! the store, and a rejected batch changes nothing, so the previous config keeps serving.

use std::collections::BTreeMap;
use std::sync::RwLock;

use tokio::sync::watch;

use meshmetric_policies::matching::selects;
use meshmetric_policies::{Conf, Contribution, Dataplane, MeshMetric, Resource, effective_conf};

/// `(mesh, name)` of a resource.
pub type Key = (String, String);

/// Which proxies one change can have affected, so a watcher recomputes only those.
#[derive(Debug, Clone, PartialEq)]
pub enum Affected {
    /// Anything (a reload from the database).
    All,
    /// These Dataplanes (sorted): a Dataplane written or deleted, or those a written or deleted
    /// MeshMetric selected before or after the change.
    Dataplanes(Vec<Key>),
    /// Only MADS-visible state of these proxies (their TLS readiness), not their xDS.
    Discovery(Vec<Key>),
}

/// How many changes are remembered for [`Store::touches_since`]; a watcher further behind
/// recomputes everything.
const CHANGE_LOG: usize = 4096;

/// A merged config and the policies that made it, in merge order.
pub type Effective = (Conf, Vec<Contribution>);

#[derive(Default)]
struct Inner {
    meshmetrics: BTreeMap<Key, MeshMetric>,
    dataplanes: BTreeMap<Key, Dataplane>,
    /// Proxies that connected over ADS and gave a certificate for ProvidedTLS listeners.
    tls_ready: BTreeMap<Key, bool>,
}

/// One proxy as MADS sees it: its Dataplane, merged config and whether it serves TLS.
pub type MadsProxy = (Dataplane, Option<Conf>, bool);

/// Resource store. Every change bumps a generation that subscribers watch.
pub struct Store {
    inner: RwLock<Inner>,
    changes: watch::Sender<u64>,
    /// `(generation, what it affected)` of the last [`CHANGE_LOG`] changes.
    log: std::sync::Mutex<std::collections::VecDeque<(u64, Affected)>>,
    /// Serializes durable writes so the database and memory apply them in the same order.
    writes: tokio::sync::Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            changes: watch::channel(0).0,
            log: Default::default(),
            writes: tokio::sync::Mutex::new(()),
        }
    }
}

/// Kind of resource addressed by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MeshMetric,
    Dataplane,
}

impl Store {
    /// Stores (creates or replaces) every resource of a validated batch, then notifies once
    /// with the Dataplanes the batch can have affected.
    pub fn apply(&self, resources: Vec<Resource>) {
        let mut affected = Vec::new();
        {
            let mut g = self.inner.write().expect("store lock");
            for r in resources {
                let key = (r.meta().mesh.clone(), r.meta().name.clone());
                match r {
                    Resource::MeshMetric(m) => {
                        let old = g.meshmetrics.insert(key, m.clone());
                        selected_by(&g, old.as_ref(), Some(&m), &mut affected);
                    }
                    Resource::Dataplane(d) => {
                        g.dataplanes.insert(key.clone(), d);
                        affected.push(key);
                    }
                }
            }
        }
        self.notify(Affected::Dataplanes(affected));
    }

    /// Records a change and wakes every watcher.
    fn notify(&self, mut affected: Affected) {
        if let Affected::Dataplanes(v) | Affected::Discovery(v) = &mut affected {
            v.sort_unstable();
            v.dedup();
        }
        let mut log = self.log.lock().expect("change log");
        let generation = *self.changes.borrow() + 1;
        if log.len() == CHANGE_LOG {
            log.pop_front();
        }
        log.push_back((generation, affected));
        self.changes.send_replace(generation);
    }

    /// Whether a change after generation `since` (up to the current one) can have affected the
    /// xDS of proxy `key`. True when the log no longer reaches back that far.
    pub fn touches_since(&self, since: u64, key: &Key) -> bool {
        let log = self.log.lock().expect("change log");
        let Some(start) = first_after(&log, since) else {
            return true;
        };
        log.range(start..).any(|(_, a)| match a {
            Affected::All => true,
            Affected::Dataplanes(v) => v.binary_search(key).is_ok(),
            Affected::Discovery(_) => false,
        })
    }

    /// Every change after generation `since`, or None when the log no longer reaches back.
    pub fn changes_since(&self, since: u64) -> Option<Vec<Affected>> {
        let log = self.log.lock().expect("change log");
        let start = first_after(&log, since)?;
        Some(log.range(start..).map(|(_, a)| a.clone()).collect())
    }

    /// Replaces every resource with `resources` (a reload from the database); notifies only when
    /// something differs. Returns whether it did.
    pub fn replace_all(&self, resources: Vec<Resource>) -> bool {
        let mut meshmetrics = BTreeMap::new();
        let mut dataplanes = BTreeMap::new();
        for r in resources {
            let key = (r.meta().mesh.clone(), r.meta().name.clone());
            match r {
                Resource::MeshMetric(m) => {
                    meshmetrics.insert(key, m);
                }
                Resource::Dataplane(d) => {
                    dataplanes.insert(key, d);
                }
            }
        }
        let changed = {
            let mut g = self.inner.write().expect("store lock");
            let changed = g.meshmetrics != meshmetrics || g.dataplanes != dataplanes;
            if changed {
                g.meshmetrics = meshmetrics;
                g.dataplanes = dataplanes;
            }
            changed
        };
        if changed {
            self.notify(Affected::All);
        }
        changed
    }

    pub(crate) async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Deletes one resource; returns whether it existed.
    pub fn delete(&self, kind: Kind, mesh: &str, name: &str) -> bool {
        let key = (mesh.to_string(), name.to_string());
        let mut affected = Vec::new();
        let existed = {
            let mut g = self.inner.write().expect("store lock");
            match kind {
                Kind::MeshMetric => match g.meshmetrics.remove(&key) {
                    Some(old) => {
                        selected_by(&g, Some(&old), None, &mut affected);
                        true
                    }
                    None => false,
                },
                Kind::Dataplane => {
                    affected.push(key.clone());
                    g.dataplanes.remove(&key).is_some()
                }
            }
        };
        if existed {
            self.notify(Affected::Dataplanes(affected));
        }
        existed
    }

    pub fn meshmetric(&self, mesh: &str, name: &str) -> Option<MeshMetric> {
        self.inner
            .read()
            .expect("store lock")
            .meshmetrics
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
    }

    pub fn dataplane(&self, mesh: &str, name: &str) -> Option<Dataplane> {
        self.inner
            .read()
            .expect("store lock")
            .dataplanes
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
    }

    /// MeshMetrics of `mesh` (all meshes when None), ordered by mesh then name.
    pub fn meshmetrics(&self, mesh: Option<&str>) -> Vec<MeshMetric> {
        let g = self.inner.read().expect("store lock");
        g.meshmetrics
            .values()
            .filter(|m| mesh.is_none_or(|x| m.meta.mesh == x))
            .cloned()
            .collect()
    }

    /// Dataplanes of `mesh` (all meshes when None), ordered by mesh then name.
    pub fn dataplanes(&self, mesh: Option<&str>) -> Vec<Dataplane> {
        let g = self.inner.read().expect("store lock");
        g.dataplanes
            .values()
            .filter(|d| mesh.is_none_or(|x| d.meta.mesh == x))
            .cloned()
            .collect()
    }

    /// The Dataplane and its effective (merged) config; `None` when the Dataplane is unknown.
    pub fn effective(&self, mesh: &str, name: &str) -> Option<(Dataplane, Option<Effective>)> {
        let g = self.inner.read().expect("store lock");
        let dp = g.dataplanes.get(&(mesh.to_string(), name.to_string()))?.clone();
        let eff = effective_conf(
            g.meshmetrics
                .range((mesh.to_string(), String::new())..)
                .map(|(_, v)| v)
                .take_while(|m| m.meta.mesh == mesh),
            &dp,
        );
        Some((dp, eff))
    }

    /// Records whether a connected proxy can serve `ProvidedTLS` (it gave a certificate in its
    /// node metadata); notifies only when that changes.
    pub fn set_proxy_tls_ready(&self, mesh: &str, name: &str, ready: bool) {
        let changed = {
            let mut g = self.inner.write().expect("store lock");
            g.tls_ready.insert((mesh.to_string(), name.to_string()), ready) != Some(ready)
        };
        if changed {
            self.notify(Affected::Discovery(vec![(mesh.to_string(), name.to_string())]));
        }
    }

    /// One proxy's MADS inputs; `None` when its Dataplane is gone.
    pub fn mads_proxy(&self, key: &Key) -> Option<MadsProxy> {
        let (dp, eff) = self.effective(&key.0, &key.1)?;
        let tls = self.tls_ready(key);
        Some((dp, eff.map(|(c, _)| c), tls))
    }

    /// Whether the connected proxy `key` gave a certificate for `ProvidedTLS`.
    pub fn tls_ready(&self, key: &Key) -> bool {
        self.inner
            .read()
            .expect("store lock")
            .tls_ready
            .get(key)
            .copied()
            .unwrap_or(false)
    }

    /// Every Dataplane with its merged config and TLS readiness, under one read lock.
    pub fn mads_snapshot(&self) -> Vec<MadsProxy> {
        let g = self.inner.read().expect("store lock");
        let mut by_mesh: BTreeMap<&str, Vec<&MeshMetric>> = BTreeMap::new();
        for m in g.meshmetrics.values() {
            by_mesh.entry(m.meta.mesh.as_str()).or_default().push(m);
        }
        g.dataplanes
            .iter()
            .map(|(k, dp)| {
                let ps = by_mesh
                    .get(dp.meta.mesh.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let conf = effective_conf(ps.iter().copied(), dp).map(|(c, _)| c);
                (dp.clone(), conf, g.tls_ready.get(k).copied().unwrap_or(false))
            })
            .collect()
    }

    /// A receiver that sees every change (its value is a generation counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Index in `log` of the first change after generation `since`, or None when the log no longer
/// reaches back that far. Generations are consecutive, so no scan is needed.
fn first_after(log: &std::collections::VecDeque<(u64, Affected)>, since: u64) -> Option<usize> {
    let Some(&(first, _)) = log.front() else {
        return Some(0);
    };
    if first > since + 1 {
        return None;
    }
    Some(usize::try_from(since + 1 - first).map_or(log.len(), |i| i.min(log.len())))
}

/// Adds to `out` the Dataplanes of the policy's mesh that `old` or `new` (the same MeshMetric
/// before and after a change) selects by its top-level targetRef.
fn selected_by(g: &Inner, old: Option<&MeshMetric>, new: Option<&MeshMetric>, out: &mut Vec<Key>) {
    let Some(mesh) = new.or(old).map(|m| m.meta.mesh.as_str()) else {
        return;
    };
    let refs: Vec<_> = [old, new]
        .into_iter()
        .flatten()
        .map(|m| m.spec.target_ref.as_ref())
        .collect();
    for (k, dp) in g
        .dataplanes
        .range((mesh.to_string(), String::new())..)
        .take_while(|(k, _)| k.0 == mesh)
    {
        if refs.iter().any(|r| selects(*r, dp)) {
            out.push(k.clone());
        }
    }
}
