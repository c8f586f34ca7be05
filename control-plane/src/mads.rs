//! Wiring of MADS to the store: assignments are recomputed whenever the store changes and
//! published on a `watch` channel read by the HTTP and gRPC MADS servers.
//!
//! The per-proxy inputs (Dataplane, merged config, TLS readiness) are kept between changes,
//! and a change re-merges only the proxies it can have affected (see [`Affected`]); the
//! per-client responses are then encoded again from the kept inputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use meshmetric_mads::{Assignments, ProxyInput};

use crate::store::{Affected, Key, Proxy, Store};

/// Per-proxy MADS inputs, by `(mesh, name)`.
type Inputs = BTreeMap<Key, Proxy>;

fn all_inputs(store: &Store) -> Inputs {
    store
        .all_proxies()
        .into_iter()
        .map(|p| ((p.0.meta.mesh.clone(), p.0.meta.name.clone()), p))
        .collect()
}

/// Brings `inputs` up to date with `changes`; returns how many proxies were re-merged.
fn update(inputs: &mut Inputs, store: &Store, changes: Option<Vec<Affected>>) -> usize {
    let Some(changes) = changes.filter(|c| !c.contains(&Affected::All)) else {
        *inputs = all_inputs(store);
        return inputs.len();
    };
    let mut merged = 0;
    for c in changes {
        match c {
            Affected::All => unreachable!("filtered above"),
            Affected::Dataplanes(keys) => {
                for k in keys {
                    merged += 1;
                    match store.proxy(&k.0, &k.1) {
                        Some(p) => inputs.insert(k, p),
                        None => inputs.remove(&k),
                    };
                }
            }
            Affected::Discovery(keys) => {
                for k in keys {
                    merged += 1;
                    match store.proxy(&k.0, &k.1) {
                        Some(p) => inputs.insert(k, p),
                        None => inputs.remove(&k),
                    };
                }
            }
        }
    }
    merged
}

fn generate(inputs: &Inputs) -> Assignments {
    Assignments::generate(
        inputs
            .values()
            .map(|(dp, metrics)| ProxyInput { dataplane: dp, metrics }),
    )
}

/// Computes the assignments of every client from the store.
pub fn compute(store: &Store) -> Assignments {
    generate(&all_inputs(store))
}

/// Starts the task keeping the assignments current; returns their receiver.
pub fn spawn(store: Arc<Store>) -> watch::Receiver<Arc<Assignments>> {
    let mut changes = store.subscribe();
    let mut seen = *changes.borrow_and_update();
    let started = std::time::Instant::now();
    let mut inputs = all_inputs(&store);
    let merged_in = started.elapsed();
    let (tx, rx) = watch::channel(Arc::new(generate(&inputs)));
    tracing::info!(
        proxies = inputs.len(),
        merge_ms = merged_in.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "MonitoringAssignments computed (full)"
    );
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let now = *changes.borrow_and_update();
            let started = std::time::Instant::now();
            let merged = update(&mut inputs, &store, store.changes_since(seen));
            seen = now;
            let a = generate(&inputs);
            tracing::debug!(
                merged,
                took_ms = started.elapsed().as_millis() as u64,
                "MonitoringAssignments recomputed"
            );
            if tx.send(Arc::new(a)).is_err() {
                return;
            }
        }
    });
    rx
}
