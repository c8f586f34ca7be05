//! HTTP MADS and HTTP SD.
//!
//! `POST /v3/discovery:monitoringassignments?fetch-timeout=<duration>` — what Prometheus's
//! `kuma_sd_configs` sends: a protobuf-JSON `DiscoveryRequest` (proto or JSON
//! field names), or binary protobuf when `Content-Type: application/x-protobuf`. An empty
//! `version_info` is answered at once; otherwise the request waits until the client's
//! assignments change (200) or `fetch-timeout` passes (304). `fetch-timeout` defaults to 30 s,
//! is capped at 10 min, and an unparseable value is a 400.
//!
//! `GET /v1/http-sd?client_id=ID` — Prometheus HTTP SD JSON for `http_sd_configs`, with the
//! labels `kuma_sd_configs` would produce, so relabel rules work unchanged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prost::Message;
use serde::Deserialize;
use tokio::sync::watch;

use meshmetric_policies::values::Duration as GoDuration;
use meshmetric_proto::MONITORING_ASSIGNMENT_TYPE_URL;

use crate::assign::{Assignments, ClientView};
use crate::stats::{Api, Outcome, stats};

/// Default long-poll time when the request names none.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest long-poll accepted.
pub const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(600);
const PROTOBUF: &str = "application/x-protobuf";

/// The parts of a `DiscoveryRequest` MADS uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MadsRequest {
    pub client_id: String,
    pub version_info: String,
    pub type_url: String,
}

#[derive(Deserialize, Default)]
struct JsonNode {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize, Default)]
struct JsonRequest {
    #[serde(default, alias = "versionInfo")]
    version_info: String,
    #[serde(default)]
    node: Option<JsonNode>,
    #[serde(default, alias = "typeUrl")]
    type_url: String,
}

/// Why a MADS request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf-JSON `DiscoveryRequest`.
    #[error("invalid DiscoveryRequest JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Not a binary protobuf `DiscoveryRequest`.
    #[error("invalid DiscoveryRequest protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// Decodes a protobuf-JSON `DiscoveryRequest`. Errors: [`DecodeError::Json`].
pub fn decode_json(body: &[u8]) -> Result<MadsRequest, DecodeError> {
    let r: JsonRequest = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    Ok(MadsRequest {
        client_id: r.node.unwrap_or_default().id,
        version_info: r.version_info,
        type_url: r.type_url,
    })
}

/// Decodes a binary protobuf `DiscoveryRequest`. Errors: [`DecodeError::Protobuf`].
pub fn decode_protobuf(body: &[u8]) -> Result<MadsRequest, DecodeError> {
    let r = envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest::decode(body)
        .map_err(DecodeError::Protobuf)?;
    Ok(MadsRequest {
        client_id: r.node.map(|n| n.id).unwrap_or_default(),
        version_info: r.version_info,
        type_url: r.type_url,
    })
}

/// Waits until `client_id`'s view differs from `known_version` (returns it) or `timeout`
/// passes (returns None). An empty `known_version` returns at once.
pub async fn wait_for_change(
    rx: &mut watch::Receiver<Arc<Assignments>>,
    client_id: &str,
    known_version: &str,
    timeout: Duration,
) -> Option<ClientView> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waited = false;
    // counted while waiting; the guard also uncounts a request dropped mid-wait
    struct Waiting(bool);
    impl Drop for Waiting {
        fn drop(&mut self) {
            if self.0 {
                stats().waiting(-1);
            }
        }
    }
    let mut guard = Waiting(false);
    loop {
        let view = rx.borrow_and_update().for_client(client_id).clone();
        if known_version.is_empty() || view.version != known_version {
            if waited {
                stats().answered();
            }
            return Some(view);
        }
        if !guard.0 {
            guard.0 = true;
            stats().waiting(1);
        }
        waited = true;
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return None },
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Router serving MADS and HTTP SD from the current assignments.
pub fn router(rx: watch::Receiver<Arc<Assignments>>) -> Router {
    Router::new()
        .route("/v3/discovery:monitoringassignments", post(discovery))
        .route("/v1/http-sd", get(http_sd))
        .with_state(rx)
}

fn bad_request(msg: String) -> Response {
    stats().request(Api::Rest, Outcome::Error);
    tracing::debug!(error = %msg, "MADS request rejected");
    (StatusCode::BAD_REQUEST, msg).into_response()
}

async fn discovery(
    State(rx): State<watch::Receiver<Arc<Assignments>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let timeout = match q.get("fetch-timeout") {
        None => DEFAULT_FETCH_TIMEOUT,
        Some(s) => match GoDuration::parse(s) {
            Ok(d) => d.get().min(MAX_FETCH_TIMEOUT),
            Err(e) => return bad_request(format!("fetch-timeout: {e}")),
        },
    };
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with(PROTOBUF));
    let req = match if protobuf {
        decode_protobuf(&body)
    } else {
        decode_json(&body)
    } {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    if !req.type_url.is_empty() && req.type_url != MONITORING_ASSIGNMENT_TYPE_URL {
        return bad_request(format!(
            "type_url {:?} is not served; accepted: {MONITORING_ASSIGNMENT_TYPE_URL}",
            req.type_url
        ));
    }
    let mut rx = rx.clone();
    match wait_for_change(&mut rx, &req.client_id, &req.version_info, timeout).await {
        None => {
            stats().request(Api::Rest, Outcome::NotModified);
            StatusCode::NOT_MODIFIED.into_response()
        }
        Some(view) => {
            stats().request(Api::Rest, Outcome::Ok);
            tracing::debug!(client_id = %req.client_id, version = %view.version, assignments = view.assignments.len(), "MADS response");
            if protobuf {
                ([(header::CONTENT_TYPE, PROTOBUF)], view.protobuf()).into_response()
            } else {
                ([(header::CONTENT_TYPE, "application/json")], view.json.clone()).into_response()
            }
        }
    }
}

async fn http_sd(
    State(rx): State<watch::Receiver<Arc<Assignments>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client = q.get("client_id").map(String::as_str).unwrap_or_default();
    stats().request(Api::HttpSd, Outcome::Ok);
    let view = rx.borrow().for_client(client).clone();
    ([(header::CONTENT_TYPE, "application/json")], view.http_sd).into_response()
}
