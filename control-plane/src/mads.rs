//! Wiring of MADS to the store: assignments are recomputed whenever the store changes and
//! published on a `watch` channel read by the HTTP and gRPC MADS servers.

use std::sync::Arc;

use tokio::sync::watch;

use meshmetric_mads::{Assignments, ProxyInput};

use crate::store::Store;

/// Computes the assignments of every client from the store.
pub fn compute(store: &Store) -> Assignments {
    let snap = store.mads_snapshot();
    Assignments::generate(snap.iter().map(|(dp, conf, tls)| ProxyInput {
        dataplane: dp,
        conf: conf.as_ref(),
        tls_ready: *tls,
    }))
}

/// Starts the task keeping the assignments current; returns their receiver.
pub fn spawn(store: Arc<Store>) -> watch::Receiver<Arc<Assignments>> {
    let (tx, rx) = watch::channel(Arc::new(compute(&store)));
    let mut changes = store.subscribe();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let started = std::time::Instant::now();
            let a = compute(&store);
            tracing::debug!(
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
