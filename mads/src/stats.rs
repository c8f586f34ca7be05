//! Counters of the MADS and HTTP SD servers, kept as atomics so this crate needs no metrics
//! library: the control plane exports them (`meshmetric_cp_mads_*`, see its `telemetry`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Which API served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v3/discovery:monitoringassignments`.
    Rest,
    /// The gRPC `MonitoringAssignmentDiscoveryService`.
    Grpc,
    /// `GET /v1/http-sd`.
    HttpSd,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Assignments sent.
    Ok,
    /// Nothing changed within the long-poll (`304`).
    NotModified,
    /// Refused (`400`).
    Error,
}

impl Api {
    /// All, in a fixed order.
    pub const ALL: [Api; 3] = [Api::Rest, Api::Grpc, Api::HttpSd];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Rest => "rest",
            Api::Grpc => "grpc",
            Api::HttpSd => "http_sd",
        }
    }
}

impl Outcome {
    /// All, in a fixed order.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::NotModified, Outcome::Error];
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotModified => "not_modified",
            Outcome::Error => "error",
        }
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct Stats {
    requests: [[AtomicU64; 3]; 3],
    long_polls: AtomicI64,
    answered_on_change: AtomicU64,
}

static STATS: Stats = Stats {
    requests: [const { [const { AtomicU64::new(0) }; 3] }; 3],
    long_polls: AtomicI64::new(0),
    answered_on_change: AtomicU64::new(0),
};

/// The process's counters.
pub fn stats() -> &'static Stats {
    &STATS
}

impl Stats {
    /// Counts a request.
    pub fn request(&self, api: Api, outcome: Outcome) {
        self.requests[api as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests so far of `api` that ended as `outcome`.
    pub fn requests(&self, api: Api, outcome: Outcome) -> u64 {
        self.requests[api as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Long-polls waiting now.
    pub fn long_polls(&self) -> i64 {
        self.long_polls.load(Ordering::Relaxed)
    }

    /// Long-polls answered because the assignments changed.
    pub fn answered_on_change(&self) -> u64 {
        self.answered_on_change.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting(&self, delta: i64) {
        self.long_polls.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self) {
        self.answered_on_change.fetch_add(1, Ordering::Relaxed);
    }
}
