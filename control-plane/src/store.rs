//! In-memory resource store with change notification.
//!
//! Writes are all-or-nothing: a batch is validated by `meshmetric-policies` before it reaches
//! the store, and a rejected batch changes nothing, so the previous config keeps serving.
//! Every change is logged with the proxies it can have affected ([`Affected`]), so ADS streams
//! and MADS recompute only those.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, RwLock};

use tokio::sync::watch;

use meshmetric_policies::headers::SecretSources;
use meshmetric_policies::matching::{effective_conf, matching, selects};
use meshmetric_policies::meshgateway::select_gateway;
use meshmetric_policies::meshmetric::BackendType;
use meshmetric_policies::proxy::{Naming, ProxyContext, ProxyMetrics, resolve_backend_ref, taken_ports};
use meshmetric_policies::values::Port;
use meshmetric_policies::{
    Dataplane, MeshGateway, MeshMetric, MeshOpenTelemetryBackend, Resource, ResourceKind, Violations, Warning,
};

/// `(mesh, name)` of a resource.
pub type Key = (String, String);

/// Which proxies one change can have affected, so a watcher recomputes only those.
#[derive(Debug, Clone, PartialEq)]
pub enum Affected {
    /// Anything (a reload from the database).
    All,
    /// These Dataplanes (sorted): a Dataplane written or deleted, those a written or deleted
    /// MeshMetric selected before or after the change, those of a mesh whose
    /// MeshOpenTelemetryBackends or MeshGateways changed.
    Dataplanes(Vec<Key>),
}

/// How many changes are remembered for [`Store::touches_since`]; a watcher further behind
/// recomputes everything.
const CHANGE_LOG: usize = 4096;

/// What a connected proxy declared in its node metadata that changes its derived state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// It gave a certificate and key for `ProvidedTLS` listeners.
    pub tls_ready: bool,
    /// Where it lets header values come from; `None` while unknown.
    pub secret_sources: Option<SecretSources>,
}

#[derive(Default)]
struct Inner {
    meshmetrics: BTreeMap<Key, MeshMetric>,
    /// Shared copy-on-write: `check_apply` works on a copy of the store without copying the
    /// (large) Dataplane map unless the batch writes Dataplanes.
    dataplanes: std::sync::Arc<BTreeMap<Key, Dataplane>>,
    otel_backends: BTreeMap<Key, MeshOpenTelemetryBackend>,
    gateways: BTreeMap<Key, MeshGateway>,
}

fn in_mesh<'a, T>(m: &'a BTreeMap<Key, T>, mesh: &str) -> impl Iterator<Item = &'a T> {
    m.range((mesh.to_string(), String::new())..)
        .take_while(move |(k, _)| k.0 == mesh)
        .map(|(_, v)| v)
}

impl Inner {
    fn gateway_of(&self, dp: &Dataplane) -> Option<&MeshGateway> {
        select_gateway(in_mesh(&self.gateways, &dp.meta.mesh), dp)
    }

    fn proxy(&self, key: &Key, declared: &Declared, naming: Naming) -> Option<(Dataplane, ProxyMetrics)> {
        let dp = self.dataplanes.get(key)?;
        let gateway = self.gateway_of(dp);
        let eff = effective_conf(in_mesh(&self.meshmetrics, &key.0), dp, gateway);
        let backends: Vec<MeshOpenTelemetryBackend> = in_mesh(&self.otel_backends, &key.0).cloned().collect();
        let ctx = ProxyContext {
            gateway,
            otel_backends: &backends,
            tls_ready: declared.tls_ready,
            naming,
            secret_sources: declared.secret_sources.as_ref(),
        };
        Some((dp.clone(), ProxyMetrics::build(dp, eff, ctx)))
    }

    /// Adds to `out` the Dataplanes of the policy's mesh that `old` or `new` (the same
    /// MeshMetric before and after a change) selects by its top-level targetRef.
    fn selected_by(&self, old: Option<&MeshMetric>, new: Option<&MeshMetric>, out: &mut Vec<Key>) {
        let Some(mesh) = new.or(old).map(|m| m.meta.mesh.as_str()) else {
            return;
        };
        for (k, dp) in self
            .dataplanes
            .range((mesh.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == mesh)
        {
            let gw = self.gateway_of(dp);
            if [old, new]
                .into_iter()
                .flatten()
                .any(|m| selects(&m.meta, m.spec.target_ref.as_ref(), dp, gw))
            {
                out.push(k.clone());
            }
        }
    }

    fn all_in_mesh(&self, mesh: &str, builtin_gateways_only: bool, out: &mut Vec<Key>) {
        for (k, dp) in self
            .dataplanes
            .range((mesh.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == mesh)
        {
            if !builtin_gateways_only || dp.is_builtin_gateway() {
                out.push(k.clone());
            }
        }
    }

    /// Stores one resource; adds what it affects to `affected`.
    fn put(&mut self, r: Resource, affected: &mut Vec<Key>) {
        let key = (r.meta().mesh.clone(), r.meta().name.clone());
        match r {
            Resource::MeshMetric(m) => {
                let old = self.meshmetrics.insert(key, m.clone());
                self.selected_by(old.as_ref(), Some(&m), affected);
            }
            Resource::Dataplane(d) => {
                std::sync::Arc::make_mut(&mut self.dataplanes).insert(key.clone(), d);
                affected.push(key);
            }
            Resource::MeshOpenTelemetryBackend(b) => {
                self.otel_backends.insert(key.clone(), b);
                self.all_in_mesh(&key.0, false, affected);
            }
            Resource::MeshGateway(g) => {
                self.gateways.insert(key.clone(), g);
                self.all_in_mesh(&key.0, true, affected);
            }
        }
    }
}

/// Resource store. Every change bumps a generation that subscribers watch.
pub struct Store {
    inner: RwLock<Inner>,
    naming: Naming,
    changes: watch::Sender<u64>,
    /// `(generation, what it affected)` of the last [`CHANGE_LOG`] changes.
    log: Mutex<VecDeque<(u64, Affected)>>,
    /// Serializes durable writes so the database and memory apply them in the same order.
    writes: tokio::sync::Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(Naming::Default)
    }
}

/// What [`Store::check_apply`] found, per document of the batch (by index).
#[derive(Debug, Default)]
pub struct ApplyCheck {
    /// Violations that refuse the document.
    pub violations: Vec<(usize, Violations)>,
    /// Warnings about an accepted document.
    pub warnings: Vec<(usize, Warning)>,
}

/// A proxy's Dataplane and derived metrics state.
pub type Proxy = (Dataplane, ProxyMetrics);

impl Store {
    /// An empty store whose proxies get `extraLabels` of `naming`.
    pub fn new(naming: Naming) -> Self {
        Self {
            inner: RwLock::default(),
            naming,
            changes: watch::channel(0).0,
            log: Mutex::default(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets each resource's creation time: the stored one's when it replaces one, else `now`
    /// (RFC 3339).
    pub fn stamp(&self, resources: &mut [Resource], now: &str) {
        let g = self.read();
        for r in resources {
            let existing = g.get(r.kind(), &r.meta().mesh, &r.meta().name);
            let t = existing
                .and_then(|e| e.meta().creation_time.clone())
                .unwrap_or_else(|| now.to_string());
            r.meta_mut().creation_time = Some(t);
        }
    }

    /// Stores (creates or replaces) every resource of a validated batch, then notifies once
    /// with the Dataplanes the batch can have affected.
    pub fn apply(&self, resources: Vec<Resource>) {
        let mut affected = Vec::new();
        {
            let mut g = self.write();
            for r in resources {
                g.put(r, &mut affected);
            }
        }
        self.notify(Affected::Dataplanes(affected));
    }

    /// Records a change and wakes every watcher.
    fn notify(&self, mut affected: Affected) {
        if let Affected::Dataplanes(v) = &mut affected {
            v.sort_unstable();
            v.dedup();
        }
        let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(start) = first_after(&log, since) else {
            return true;
        };
        log.range(start..).any(|(_, a)| match a {
            Affected::All => true,
            Affected::Dataplanes(v) => v.binary_search(key).is_ok(),
        })
    }

    /// Every change after generation `since`, or None when the log no longer reaches back.
    pub fn changes_since(&self, since: u64) -> Option<Vec<Affected>> {
        let log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = first_after(&log, since)?;
        Some(log.range(start..).map(|(_, a)| a.clone()).collect())
    }

    /// Replaces every resource with `resources` (a reload from the database); notifies only when
    /// something differs. Returns whether it did.
    pub fn replace_all(&self, resources: Vec<Resource>) -> bool {
        let mut fresh = Inner::default();
        let mut ignored = Vec::new();
        for r in resources {
            fresh.put(r, &mut ignored);
        }
        let changed = {
            let mut g = self.write();
            let changed = g.meshmetrics != fresh.meshmetrics
                || g.dataplanes != fresh.dataplanes
                || g.otel_backends != fresh.otel_backends
                || g.gateways != fresh.gateways;
            if changed {
                *g = fresh;
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
    pub fn delete(&self, kind: ResourceKind, mesh: &str, name: &str) -> bool {
        let key = (mesh.to_string(), name.to_string());
        let mut affected = Vec::new();
        let existed = {
            let mut g = self.write();
            match kind {
                ResourceKind::MeshMetric => match g.meshmetrics.remove(&key) {
                    Some(old) => {
                        g.selected_by(Some(&old), None, &mut affected);
                        true
                    }
                    None => false,
                },
                ResourceKind::Dataplane => {
                    affected.push(key.clone());
                    std::sync::Arc::make_mut(&mut g.dataplanes).remove(&key).is_some()
                }
                ResourceKind::MeshOpenTelemetryBackend => {
                    g.all_in_mesh(mesh, false, &mut affected);
                    g.otel_backends.remove(&key).is_some()
                }
                ResourceKind::MeshGateway => {
                    g.all_in_mesh(mesh, true, &mut affected);
                    g.gateways.remove(&key).is_some()
                }
            }
        };
        if existed {
            self.notify(Affected::Dataplanes(affected));
        }
        existed
    }

    /// One resource.
    pub fn get(&self, kind: ResourceKind, mesh: &str, name: &str) -> Option<Resource> {
        self.read().get(kind, mesh, name)
    }

    /// Resources of `kind` in `mesh` (all meshes when None), ordered by mesh then name.
    pub fn list(&self, kind: ResourceKind, mesh: Option<&str>) -> Vec<Resource> {
        let g = self.read();
        fn pick<T: Clone>(m: &BTreeMap<Key, T>, mesh: Option<&str>, wrap: fn(T) -> Resource) -> Vec<Resource> {
            m.iter()
                .filter(|(k, _)| mesh.is_none_or(|x| k.0 == x))
                .map(|(_, v)| wrap(v.clone()))
                .collect()
        }
        match kind {
            ResourceKind::MeshMetric => pick(&g.meshmetrics, mesh, Resource::MeshMetric),
            ResourceKind::Dataplane => pick(&g.dataplanes, mesh, Resource::Dataplane),
            ResourceKind::MeshOpenTelemetryBackend => pick(&g.otel_backends, mesh, Resource::MeshOpenTelemetryBackend),
            ResourceKind::MeshGateway => pick(&g.gateways, mesh, Resource::MeshGateway),
        }
    }

    /// One MeshMetric.
    pub fn meshmetric(&self, mesh: &str, name: &str) -> Option<MeshMetric> {
        self.read()
            .meshmetrics
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
    }

    /// One Dataplane.
    pub fn dataplane(&self, mesh: &str, name: &str) -> Option<Dataplane> {
        self.read()
            .dataplanes
            .get(&(mesh.to_string(), name.to_string()))
            .cloned()
    }

    /// MeshMetrics of `mesh` (all meshes when None), ordered by mesh then name.
    pub fn meshmetrics(&self, mesh: Option<&str>) -> Vec<MeshMetric> {
        let g = self.read();
        g.meshmetrics
            .values()
            .filter(|m| mesh.is_none_or(|x| m.meta.mesh == x))
            .cloned()
            .collect()
    }

    /// Dataplanes of `mesh` (all meshes when None), ordered by mesh then name.
    pub fn dataplanes(&self, mesh: Option<&str>) -> Vec<Dataplane> {
        let g = self.read();
        g.dataplanes
            .values()
            .filter(|d| mesh.is_none_or(|x| d.meta.mesh == x))
            .cloned()
            .collect()
    }

    /// The Dataplane `key` and its derived metrics state, given what its connected proxy
    /// declared; `None` when the Dataplane is unknown.
    pub fn proxy_with(&self, key: &Key, declared: &Declared) -> Option<Proxy> {
        self.read().proxy(key, declared, self.naming)
    }

    /// Every Dataplane with its derived metrics state, under one read lock.
    pub fn all_proxies(&self, declared: &dyn Fn(&Key) -> Declared) -> Vec<Proxy> {
        let g = self.read();
        g.dataplanes
            .keys()
            .filter_map(|k| g.proxy(k, &declared(k), self.naming))
            .collect()
    }

    /// What applying `batch` would break for Dataplanes already known, and what deserves a
    /// warning: per document of `batch` (by index), the violations (a Prometheus backend whose
    /// port a selected proxy already uses) and the warnings (a `backendRef` that matches no
    /// MeshOpenTelemetryBackend).
    pub fn check_apply(&self, batch: &[Resource]) -> ApplyCheck {
        let g = self.read();
        // the store as it would be after the batch
        let mut after = Inner {
            meshmetrics: g.meshmetrics.clone(),
            dataplanes: g.dataplanes.clone(),
            otel_backends: g.otel_backends.clone(),
            gateways: g.gateways.clone(),
        };
        drop(g);
        let mut ignored = Vec::new();
        for r in batch {
            after.put(r.clone(), &mut ignored);
        }
        let mut violations = Vec::new();
        let mut warnings = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let Resource::MeshMetric(m) = r else { continue };
            let v = port_clashes(&after, m);
            if !v.is_empty() {
                violations.push((i, v));
            }
            let backends: Vec<MeshOpenTelemetryBackend> =
                in_mesh(&after.otel_backends, &m.meta.mesh).cloned().collect();
            for (j, b) in m.spec.default.backends.iter().flatten().enumerate() {
                if let Some(r) = b.open_telemetry.as_ref().and_then(|o| o.backend_ref.as_ref())
                    && resolve_backend_ref(r, &m.meta.mesh, &backends).is_none()
                {
                    warnings.push((
                        i,
                        Warning::new(
                            format!("spec.default.backends[{j}].openTelemetry.backendRef"),
                            format!(
                                "no MeshOpenTelemetryBackend in mesh {:?} matches it yet; the backend stays inactive until one does",
                                m.meta.mesh
                            ),
                        ),
                    ));
                }
            }
        }
        ApplyCheck { violations, warnings }
    }

    /// A receiver that sees every change (its value is a generation counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Inner {
    fn get(&self, kind: ResourceKind, mesh: &str, name: &str) -> Option<Resource> {
        let key = (mesh.to_string(), name.to_string());
        match kind {
            ResourceKind::MeshMetric => self.meshmetrics.get(&key).cloned().map(Resource::MeshMetric),
            ResourceKind::Dataplane => self.dataplanes.get(&key).cloned().map(Resource::Dataplane),
            ResourceKind::MeshOpenTelemetryBackend => self
                .otel_backends
                .get(&key)
                .cloned()
                .map(Resource::MeshOpenTelemetryBackend),
            ResourceKind::MeshGateway => self.gateways.get(&key).cloned().map(Resource::MeshGateway),
        }
    }
}

/// The Prometheus backends of `policy` that would take a port a proxy it is in force on
/// already uses (inbound, zone listener, gateway listener or admin port), as violations at the
/// backend's port. A proxy where a more specific policy's backends win is not concerned.
fn port_clashes(store: &Inner, policy: &MeshMetric) -> Violations {
    let mut v = Violations::default();
    let Some(backends) = &policy.spec.default.backends else {
        return v;
    };
    let ports: Vec<Port> = backends
        .iter()
        .filter(|b| b.kind == Some(BackendType::Prometheus))
        .filter_map(|b| b.prometheus.as_ref().map(|p| p.port_or_default()))
        .collect();
    if ports.is_empty() {
        return v;
    }
    for dp in in_mesh(&store.dataplanes, &policy.meta.mesh) {
        let gw = store.gateway_of(dp);
        // cheap first: most proxies use none of the policy's ports, and then nothing else
        // needs computing
        let taken = taken_ports(dp, gw);
        if !taken.iter().any(|(t, _)| ports.contains(t)) {
            continue;
        }
        if !selects(&policy.meta, policy.spec.target_ref.as_ref(), dp, gw) {
            continue;
        }
        // the policy whose backends the proxy gets: the most specific one that sets backends
        let owner = matching(in_mesh(&store.meshmetrics, &policy.meta.mesh), dp, gw)
            .into_iter()
            .rev()
            .find(|m| m.spec.default.backends.is_some());
        if owner.is_none_or(|o| o.meta.name != policy.meta.name) {
            continue;
        }
        for (i, b) in backends.iter().enumerate() {
            let (Some(BackendType::Prometheus), Some(p)) = (b.kind, &b.prometheus) else {
                continue;
            };
            let port = p.port_or_default();
            if let Some((_, what)) = taken.iter().find(|(t, _)| *t == port) {
                let field = format!("spec.default.backends[{i}].prometheus.port");
                if !v.names(&field) {
                    v.push(
                        field,
                        format!(
                            "port {port} is {what} of Dataplane {:?}, which this policy applies to; Envoy cannot bind a metrics listener there. Choose another port",
                            dp.meta.name
                        ),
                    );
                }
            }
        }
    }
    v
}

/// Index in `log` of the first change after generation `since`, or None when the log no longer
/// reaches back that far. Generations are consecutive, so no scan is needed.
fn first_after(log: &VecDeque<(u64, Affected)>, since: u64) -> Option<usize> {
    let Some(&(first, _)) = log.front() else {
        return Some(0);
    };
    if first > since + 1 {
        return None;
    }
    Some(usize::try_from(since + 1 - first).map_or(log.len(), |i| i.min(log.len())))
}
