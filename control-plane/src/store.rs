//! In-memory resource store with change notification.
//!
//! Writes are all-or-nothing: a batch is validated by `meshmetric-policies` before it reaches
//! the store, and a rejected batch changes nothing, so the previous config keeps serving.

use std::collections::BTreeMap;
use std::sync::RwLock;

use tokio::sync::watch;

use meshmetric_policies::{Conf, Contribution, Dataplane, MeshMetric, Resource, effective_conf};

type Key = (String, String);

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
    /// Serializes durable writes so the database and memory apply them in the same order.
    writes: tokio::sync::Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            changes: watch::channel(0).0,
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
    /// Stores (creates or replaces) every resource of a validated batch, then notifies once.
    pub fn apply(&self, resources: Vec<Resource>) {
        {
            let mut g = self.inner.write().expect("store lock");
            for r in resources {
                let key = (r.meta().mesh.clone(), r.meta().name.clone());
                match r {
                    Resource::MeshMetric(m) => {
                        g.meshmetrics.insert(key, m);
                    }
                    Resource::Dataplane(d) => {
                        g.dataplanes.insert(key, d);
                    }
                }
            }
        }
        self.changes.send_modify(|g| *g += 1);
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
            self.changes.send_modify(|g| *g += 1);
        }
        changed
    }

    pub(crate) async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Deletes one resource; returns whether it existed.
    pub fn delete(&self, kind: Kind, mesh: &str, name: &str) -> bool {
        let key = (mesh.to_string(), name.to_string());
        let existed = {
            let mut g = self.inner.write().expect("store lock");
            match kind {
                Kind::MeshMetric => g.meshmetrics.remove(&key).is_some(),
                Kind::Dataplane => g.dataplanes.remove(&key).is_some(),
            }
        };
        if existed {
            self.changes.send_modify(|g| *g += 1);
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
            self.changes.send_modify(|g| *g += 1);
        }
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
