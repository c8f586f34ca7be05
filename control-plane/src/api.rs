//! REST API (Kuma-style paths).
//!
//! - `GET /meshes/{mesh}/{kind}`, `GET|PUT|DELETE /meshes/{mesh}/{kind}/{name}` for every kind:
//!   `meshmetrics`, `dataplanes`, `meshopentelemetrybackends`, `meshgateways`
//! - `GET /meshes/{mesh}/dataplanes/{name}/meshmetric`: the effective (merged) config, the
//!   policies that contributed (most specific last), the config served to the plugin, the
//!   Prometheus listeners and the backends not in force with the reason
//!   and what the proxy's ADS streams show (`insight`: online, versions sent and accepted, the
//!   last NACK, the listeners in force, `config` `InForce|Rejected|Pending|Offline`)
//! - `GET /meshes/{mesh}/dataplanes+insights`: every Dataplane with its insight
//! - `GET /meshes/{mesh}/meshmetrics/{name}/status`: the proxies the policy selects and the
//!   state of each one's config, with `Accepted`/`Programmed` conditions;
//!   `GET /meshes/{mesh}/meshmetrics+status`: the summary of every policy
//! - `GET /meshes/{mesh}/render/prometheus`: Prometheus configuration (scrape configs,
//!   Prometheus Operator resources, annotations) for the mesh's Prometheus backends
//! - `GET /metrics`: the control plane's own metrics (Prometheus text; no token needed)
//! - `GET /openapi.json`: this API as an OpenAPI 3.1 document ([`openapi_json`]; no token)
//! - `POST /apply`: one or more documents (multi-document YAML), all or nothing
//! - `POST /tokens/dataplane` `{mesh, name, validFor}` → `{token, id, expiresAt}`: a dataplane
//!   token for ADS (`validFor` a Go duration, default `8760h`); `POST /tokens/dataplane/revoke`
//!   `{token}` or `{id}`; `GET|POST /tokens/signing-keys`, `DELETE /tokens/signing-keys/{id}`:
//!   list, add (the new key signs from then on) and remove signing keys (their tokens stop
//!   working). Token routes always need the API token, GET included.
//!
//! Bodies are YAML or JSON in the Universal or Kubernetes form. An invalid document gets
//! `400` with every violation (`{"title","details","causes":[{"field","message"}]}`) and
//! changes nothing. An accepted write answers `{"warnings": [{"field","message",...}]}` (a
//! deprecated form, a `backendRef` that matches nothing yet), as kumactl shows them.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use meshmetric_policies::{ParseError, Parsed, Resource, ResourceKind, Violation, Violations, parse_documents_all};

use crate::index::Index;
use crate::insight::{ConfigState, DataplaneInsight, Insights};
use crate::persist::{PersistError, Persistence};
use crate::store::Store;
use crate::tokens::{TokenAuthority, TokenState};

/// What the handlers share: the store, the index derived from it and, when configured, the
/// database behind the store.
#[derive(Clone)]
pub struct Ctx {
    /// The store.
    pub store: Arc<Store>,
    /// The per-proxy index.
    pub index: Arc<Index>,
    /// The database writes go through first, when there is one.
    pub db: Option<Arc<Persistence>>,
    /// Issues and verifies dataplane tokens.
    pub tokens: Arc<TokenAuthority>,
    /// What the ADS streams show of each proxy.
    pub insights: Arc<Insights>,
    /// URL Prometheus reaches this control plane's MADS/HTTP SD on (default of rendered
    /// configs), e.g. `http://127.0.0.1:5676`.
    pub discovery_url: String,
}

impl std::ops::Deref for Ctx {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Ctx {
    async fn commit_apply(&self, rs: Vec<Resource>) -> Result<(), PersistError> {
        self.store.commit_apply(self.db.as_deref(), rs).await
    }
    async fn commit_delete(&self, kind: ResourceKind, mesh: &str, name: &str) -> Result<bool, PersistError> {
        self.store.commit_delete(self.db.as_deref(), kind, mesh, name).await
    }
}

/// `503` for a write the database refused; the served config did not change.
fn unstored(e: PersistError) -> Response {
    tracing::error!(error = %e, "write refused by the store; the previous config keeps serving");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Could not store the change",
        format!("{e}; nothing changed"),
        vec![],
    )
}

/// Access control of the REST API.
#[derive(Clone, Default)]
pub struct Access {
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// With a token: let `GET` requests through without one.
    pub anonymous_reads: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("anonymous_reads", &self.anonymous_reads)
            .finish()
    }
}

/// Constant-time equality, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(
    axum::extract::State(access): axum::extract::State<Access>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &access.token else {
        return next.run(req).await;
    };
    let read = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    let token_route = req.uri().path().starts_with("/tokens");
    // readiness and the control plane's own metrics (no secret in them) are open, as
    // Prometheus scrapes them
    let open = matches!(req.uri().path(), "/ready" | "/metrics" | "/openapi.json");
    if open || (read && access.anonymous_reads && !token_route) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if same(given.as_bytes(), token.as_bytes()) {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "API request refused: missing or wrong token");
    error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "this control plane requires `Authorization: Bearer <token>` (meshmetricctl --token-file)".into(),
        vec![],
    )
}

#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses((status = 200, description = "`ok` once the control plane serves (no token needed)", body = String, content_type = "text/plain")))]
async fn ready() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This document (no token needed)", body = Object)))]
async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// An error answer: `{title, details, causes: [{field, message}]}`.
#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct ErrorBody {
    /// What failed.
    pub title: String,
    /// Why, in a sentence.
    pub details: String,
    /// Every violation, with its field path (e.g. `spec.default.backends[0].prometheus.port`).
    pub causes: Vec<Cause>,
}

/// One violation.
#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct Cause {
    /// Field path.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "meshmetric control plane", description = "REST API of meshmetric-cp: resources (MeshMetric, Dataplane, MeshOpenTelemetryBackend, MeshGateway), proxy and policy status, dataplane tokens. Every route but /ready, /metrics and /openapi.json needs `Authorization: Bearer <API token>`."),
    paths(ready, own_metrics, openapi, apply, list, get_one, put, delete, effective, dataplane_insights, policy_status, policies_status, render_prometheus, issue_token, revoke_token, list_keys, add_key, remove_key),
    components(schemas(ErrorBody, Cause)),
    modifiers(&BearerToken),
    security(("apiToken" = [])),
    tags(
        (name = "resources", description = "Create, read, replace and delete resources"),
        (name = "status", description = "What the proxies run and what the policies achieve"),
        (name = "tokens", description = "Dataplane tokens and their signing keys"),
        (name = "operations", description = "Readiness, metrics, this document")
    )
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The REST API's OpenAPI 3.1 document, as pretty JSON (also served at `/openapi.json`).
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Largest request body, in bytes (larger ones get `413`).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// Builds the API router over `ctx` with access control.
pub fn router(ctx: Ctx, access: Access) -> Router {
    routes(ctx)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn(count_request))
        .layer(axum::middleware::from_fn_with_state(access, authorize))
}

/// Counts a request in `meshmetric_cp_api_requests_total{method,route,status}` and times it.
async fn count_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let m = crate::telemetry::metrics();
    use crate::telemetry::kv;
    m.api_requests.add(
        1,
        &[
            kv("method", method.clone()),
            kv("route", route.clone()),
            kv("status", i64::from(resp.status().as_u16())),
        ],
    );
    m.api_duration.record(
        started.elapsed().as_secs_f64(),
        &[kv("method", method), kv("route", route)],
    );
    resp
}

fn routes(store: Ctx) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(own_metrics))
        .route("/meshes/{mesh}/dataplanes+insights", get(dataplane_insights))
        .route("/meshes/{mesh}/meshmetrics+status", get(policies_status))
        .route("/meshes/{mesh}/meshmetrics/{name}/status", get(policy_status))
        .route("/meshes/{mesh}/render/prometheus", get(render_prometheus))
        .route("/apply", post(apply))
        .route("/meshes/{mesh}/{kind}", get(list))
        .route("/meshes/{mesh}/{kind}/{name}", get(get_one).put(put).delete(delete))
        .route("/meshes/{mesh}/dataplanes/{name}/meshmetric", get(effective))
        .route("/tokens/dataplane", post(issue_token))
        .route("/tokens/dataplane/revoke", post(revoke_token))
        .route("/tokens/signing-keys", get(list_keys).post(add_key))
        .route("/tokens/signing-keys/{id}", axum::routing::delete(remove_key))
        .with_state(store)
}

fn error(status: StatusCode, title: &str, details: String, causes: Vec<Violation>) -> Response {
    (
        status,
        axum::Json(json!({"title": title, "details": details, "causes": causes})),
    )
        .into_response()
}

fn kind_of(plural: &str) -> Result<ResourceKind, Box<Response>> {
    ResourceKind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| {
            let accepted: Vec<&str> = ResourceKind::ALL.iter().map(|k| k.plural()).collect();
            Box::new(error(
                StatusCode::NOT_FOUND,
                "Unknown resource type",
                format!("{plural:?} is not a resource type; accepted: {}", accepted.join(", ")),
                vec![],
            ))
        })
}

/// Validates a batch: every document on its own, then against the store (a Prometheus port a
/// known proxy already uses). Errors: the 400 response naming every violation.
fn check(store: &Store, mut parsed: Parsed) -> Result<(Vec<Resource>, Vec<Value>), Box<Response>> {
    if parsed.errors.is_empty() {
        for (i, violations) in store.check_apply(&parsed.resources).violations {
            let r = &parsed.resources[i];
            parsed.errors.push(ParseError::Invalid {
                index: i,
                kind: r.kind().as_str().to_string(),
                name: r.meta().name.clone(),
                violations,
            });
        }
    }
    if !parsed.errors.is_empty() {
        let e = &parsed.errors[0];
        tracing::warn!(invalid_documents = parsed.errors.len(), first = %e, "write refused; nothing changed");
        let details: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match e {
                ParseError::Syntax(_) => "not valid YAML/JSON".to_string(),
                ParseError::Invalid { index, kind, name, .. } => format!("document {} ({kind} {name:?})", index + 1),
            })
            .collect();
        let causes = parsed.errors.iter().flat_map(|e| e.violations()).collect();
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            format!("invalid: {}; nothing applied", details.join(", ")),
            causes,
        )));
    }
    let more_warnings = store.check_apply(&parsed.resources).warnings;
    let mut warnings: Vec<Value> = parsed.warnings.iter().map(|w| json!(w)).collect();
    for (i, w) in more_warnings {
        let r = &parsed.resources[i];
        warnings.push(json!({"index": i, "kind": r.kind().as_str(), "name": r.meta().name, "field": w.field, "message": w.message}));
    }
    Ok((parsed.resources, warnings))
}

/// Request bodies parsed at the same time; the rest wait their turn.
pub const PARSE_CONCURRENCY: usize = 2;
static PARSING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARSE_CONCURRENCY);

/// Parses a request body on a blocking thread, at most [`PARSE_CONCURRENCY`] at a time, so an
/// expensive document never stalls the async workers that answer `/ready`, MADS and ADS.
async fn parse_body(body: String) -> Parsed {
    let _permit = PARSING.acquire().await;
    match tokio::task::spawn_blocking(move || parse_documents_all(&body)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "parsing a request body failed");
            Parsed {
                errors: vec![ParseError::Syntax("the body could not be parsed".into())],
                ..Default::default()
            }
        }
    }
}

#[utoipa::path(post, path = "/apply", tag = "resources",
    request_body(content = String, content_type = "application/yaml", description = "One or more documents (YAML or JSON, Universal or Kubernetes form); all or nothing"),
    responses(
        (status = 200, description = "Applied: `{applied: [{kind, mesh, name}], warnings: [{index, kind, name, field, message}]}`", body = Object),
        (status = 400, description = "Invalid: every violation with its field path; nothing applied", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 413, description = "Body over 2 MiB"),
        (status = 503, description = "The store could not be written; nothing changed", body = ErrorBody)))]
async fn apply(State(store): State<Ctx>, body: String) -> Response {
    let (rs, warnings) = match check(&store, parse_body(body).await) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    if rs.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            "the body holds no resource; nothing applied".into(),
            vec![],
        );
    }
    let applied: Vec<Value> = rs
        .iter()
        .map(|r| json!({"kind": r.kind().as_str(), "mesh": r.meta().mesh, "name": r.meta().name}))
        .collect();
    let count = rs.len();
    if let Err(e) = store.commit_apply(rs).await {
        return unstored(e);
    }
    tracing::info!(count, warnings = warnings.len(), "resources applied");
    axum::Json(json!({"applied": applied, "warnings": warnings})).into_response()
}

#[utoipa::path(put, path = "/meshes/{mesh}/{kind}/{name}", tag = "resources",
    params(("mesh" = String, Path, description = "Mesh name"), ("kind" = String, Path, description = "Resource type: meshmetrics, dataplanes, meshopentelemetrybackends, meshgateways"), ("name" = String, Path, description = "Resource name")),
    request_body(content = String, content_type = "application/yaml", description = "Exactly one document whose type, mesh and name match the path"),
    responses(
        (status = 200, description = "Replaced: `{warnings}`", body = Object),
        (status = 201, description = "Created: `{warnings}`", body = Object),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 503, description = "The store could not be written", body = ErrorBody)))]
async fn put(
    State(store): State<Ctx>,
    Path((mesh, plural, name)): Path<(String, String, String)>,
    body: String,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut parsed = parse_body(body).await;
    if parsed.errors.is_empty() && parsed.resources.len() != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            format!("expected exactly one document, got {}", parsed.resources.len()),
            vec![],
        );
    }
    if let Some(r) = parsed.resources.first() {
        let mut causes = Violations::default();
        if r.kind() != kind {
            causes.push("type", format!("this path takes a {kind}, got {}", r.kind()));
        }
        if r.meta().name != name {
            causes.push(
                "name",
                format!("{:?} does not match the name in the path {name:?}", r.meta().name),
            );
        }
        if r.meta().mesh != mesh {
            causes.push(
                "mesh",
                format!("{:?} does not match the mesh in the path {mesh:?}", r.meta().mesh),
            );
        }
        if !causes.is_empty() {
            parsed.errors.push(ParseError::Invalid {
                index: 0,
                kind: r.kind().as_str().to_string(),
                name: r.meta().name.clone(),
                violations: causes,
            });
        }
    }
    let (rs, warnings) = match check(&store, parsed) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let existed = store.get(kind, &mesh, &name).is_some();
    if let Err(e) = store.commit_apply(rs).await {
        return unstored(e);
    }
    tracing::info!(kind = kind.as_str(), %mesh, %name, "resource stored");
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    (status, axum::Json(json!({"warnings": warnings}))).into_response()
}

fn not_found(kind: &str, mesh: &str, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Could not find a resource",
        format!("{kind} {name:?} not found in mesh {mesh:?}"),
        vec![],
    )
}

#[utoipa::path(get, path = "/meshes/{mesh}/{kind}/{name}", tag = "resources",
    params(("mesh" = String, Path, description = "Mesh name"), ("kind" = String, Path, description = "Resource type: meshmetrics, dataplanes, meshopentelemetrybackends, meshgateways"), ("name" = String, Path, description = "Resource name")),
    responses(
        (status = 200, description = "The resource in the Universal form (JSON)", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody)))]
async fn get_one(State(s): State<Ctx>, Path((mesh, plural, name)): Path<(String, String, String)>) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    match s.get(kind, &mesh, &name) {
        Some(r) => axum::Json(r.to_universal_json()).into_response(),
        None => not_found(kind.as_str(), &mesh, &name),
    }
}

#[utoipa::path(delete, path = "/meshes/{mesh}/{kind}/{name}", tag = "resources",
    params(("mesh" = String, Path, description = "Mesh name"), ("kind" = String, Path, description = "Resource type: meshmetrics, dataplanes, meshopentelemetrybackends, meshgateways"), ("name" = String, Path, description = "Resource name")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 503, description = "The store could not be written", body = ErrorBody)))]
async fn delete(State(s): State<Ctx>, Path((mesh, plural, name)): Path<(String, String, String)>) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    match s.commit_delete(kind, &mesh, &name).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => not_found(kind.as_str(), &mesh, &name),
        Err(e) => unstored(e),
    }
}

#[utoipa::path(get, path = "/meshes/{mesh}/{kind}", tag = "resources",
    params(("mesh" = String, Path, description = "Mesh name"), ("kind" = String, Path, description = "Resource type: meshmetrics, dataplanes, meshopentelemetrybackends, meshgateways")),
    responses(
        (status = 200, description = "`{total, items: [resource in the Universal form]}`", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown resource type", body = ErrorBody)))]
async fn list(State(s): State<Ctx>, Path((mesh, plural)): Path<(String, String)>) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let items: Vec<Value> = s
        .list(kind, Some(&mesh))
        .iter()
        .map(Resource::to_universal_json)
        .collect();
    axum::Json(json!({"total": items.len(), "items": items})).into_response()
}

#[utoipa::path(get, path = "/meshes/{mesh}/dataplanes/{name}/meshmetric", tag = "status",
    params(("mesh" = String, Path, description = "Mesh name"), ("name" = String, Path, description = "Resource name")),
    responses(
        (status = 200, description = "The proxy's effective config: `{dataplane, policies, conf, dpConfig, etag, prometheusListeners, inactiveBackends, insight}`", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such Dataplane", body = ErrorBody)))]
async fn effective(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    let key = (mesh.clone(), name.clone());
    match s.index.proxy(&key) {
        None => not_found("Dataplane", &mesh, &name),
        Some(p) => {
            let mut view = crate::inspect::effective_view(&p);
            view["insight"] = json!(s.insights.get(&key).await);
            axum::Json(view).into_response()
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "The control plane's own metrics, Prometheus text 0.0.4 (no token needed)", body = String, content_type = "text/plain")))]
async fn own_metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/meshes/{mesh}/dataplanes+insights", tag = "status",
    params(("mesh" = String, Path, description = "Mesh name")),
    responses(
        (status = 200, description = "`{total, items: [{mesh, name, tags, insight}]}`: every Dataplane with what its ADS streams show", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
/// `GET /meshes/{mesh}/dataplanes+insights`: every Dataplane with what its streams show.
async fn dataplane_insights(State(s): State<Ctx>, Path(mesh): Path<String>) -> Response {
    let insights = s.insights.in_mesh(&mesh).await;
    let items: Vec<Value> = s
        .index
        .proxies_in(&mesh)
        .iter()
        .map(|p| {
            let dp = &p.0;
            json!({
                "mesh": dp.meta.mesh,
                "name": dp.meta.name,
                "tags": dp.tag_set(),
                "insight": insights.get(&dp.meta.name),
            })
        })
        .collect();
    axum::Json(json!({"total": items.len(), "items": items})).into_response()
}

/// The status of policy `name` of `mesh`: the proxies it selects (it contributes to their
/// merged config) and, per proxy, the state of its config; conditions as Kubernetes resources
/// carry them (`Accepted`, `Programmed`).
async fn status_of(
    s: &Ctx,
    mesh: &str,
    name: &str,
    insights: &std::collections::BTreeMap<String, DataplaneInsight>,
) -> Value {
    let mut proxies = Vec::new();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in s.index.proxies_in(mesh) {
        if !p.1.contributions.iter().any(|c| c.name == name) {
            continue;
        }
        let d = insights.get(&p.0.meta.name);
        let state = d.map_or(ConfigState::Offline, |d| d.config);
        *counts.entry(state.as_str()).or_default() += 1;
        proxies.push(json!({
            "dataplane": p.0.meta.name,
            "config": state,
            "reason": d.and_then(|d| d.reason.clone()),
            "versionAcked": d.and_then(|d| d.current.version_acked.clone()),
        }));
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    let (programmed, reason, message) = if n("Rejected") > 0 {
        (
            "False",
            "Rejected",
            format!(
                "{} of {} selected proxies rejected their config",
                n("Rejected"),
                proxies.len()
            ),
        )
    } else if n("Pending") > 0 {
        (
            "False",
            "Pending",
            format!(
                "{} of {} selected proxies have not acknowledged their config yet",
                n("Pending"),
                proxies.len()
            ),
        )
    } else {
        (
            "True",
            "Programmed",
            format!("in force on every connected selected proxy ({} offline)", n("Offline")),
        )
    };
    json!({
        "name": name,
        "selected": proxies.len(),
        "inForce": n("InForce"),
        "rejected": n("Rejected"),
        "pending": n("Pending"),
        "offline": n("Offline"),
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Valid", "message": "the policy is valid and stored"},
            {"type": "Programmed", "status": programmed, "reason": reason, "message": message},
        ],
        "proxies": proxies,
    })
}

#[utoipa::path(get, path = "/meshes/{mesh}/meshmetrics/{name}/status", tag = "status",
    params(("mesh" = String, Path, description = "Mesh name"), ("name" = String, Path, description = "Resource name")),
    responses(
        (status = 200, description = "`{name, selected, inForce, rejected, pending, offline, conditions, proxies}`", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such MeshMetric", body = ErrorBody)))]
/// `GET /meshes/{mesh}/meshmetrics/{name}/status`.
async fn policy_status(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    if s.get(ResourceKind::MeshMetric, &mesh, &name).is_none() {
        return not_found("MeshMetric", &mesh, &name);
    }
    let insights = s.insights.in_mesh(&mesh).await;
    axum::Json(status_of(&s, &mesh, &name, &insights).await).into_response()
}

#[utoipa::path(get, path = "/meshes/{mesh}/meshmetrics+status", tag = "status",
    params(("mesh" = String, Path, description = "Mesh name")),
    responses(
        (status = 200, description = "`{total, items: [status summary]}`", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
/// `GET /meshes/{mesh}/meshmetrics+status`: every policy's status summary.
async fn policies_status(State(s): State<Ctx>, Path(mesh): Path<String>) -> Response {
    let insights = s.insights.in_mesh(&mesh).await;
    let mut items = Vec::new();
    for r in s.list(ResourceKind::MeshMetric, Some(&mesh)) {
        let mut st = status_of(&s, &mesh, &r.meta().name, &insights).await;
        if let Some(o) = st.as_object_mut() {
            o.remove("proxies");
        }
        items.push(st);
    }
    axum::Json(json!({"total": items.len(), "items": items})).into_response()
}

/// Query of `GET /meshes/{mesh}/render/prometheus`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RenderQuery {
    /// `scrape-config` (default), `operator` or `annotations`.
    format: Option<String>,
    /// URL Prometheus reaches the control plane's MADS/HTTP SD on; default this control
    /// plane's `--mads-address`.
    discovery_url: Option<String>,
    /// Use `kuma_sd_configs` instead of `http_sd_configs`.
    kuma_sd: Option<bool>,
    /// Scrape interval.
    interval: Option<String>,
    /// Scrape timeout.
    timeout: Option<String>,
    /// Namespace of Operator resources.
    namespace: Option<String>,
    /// Labels of Operator resources, `k=v,k2=v2`.
    labels: Option<String>,
    /// CA file Prometheus verifies ProvidedTLS targets with.
    ca_file: Option<String>,
    /// `pod` (default) or `service`.
    monitor_type: Option<String>,
}

#[utoipa::path(get, path = "/meshes/{mesh}/render/prometheus", tag = "status",
    params(("mesh" = String, Path, description = "Mesh name"), RenderQuery),
    responses(
        (status = 200, description = "`{documents: [...], notes: [...]}`: Prometheus configuration for every Prometheus backend of the mesh's policies", body = Object),
        (status = 400, description = "Unknown format or monitor type", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
async fn render_prometheus(
    State(s): State<Ctx>,
    Path(mesh): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RenderQuery>,
) -> Response {
    use meshmetric_policies::render::{MonitorType, RenderFormat, RenderOptions, render};
    let Some(format) = RenderFormat::parse(q.format.as_deref().unwrap_or("scrape-config")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not render",
            "format must be scrape-config, operator or annotations".into(),
            vec![Violation::new(
                "format",
                "accepted: scrape-config, operator, annotations",
            )],
        );
    };
    let monitor_type = match q.monitor_type.as_deref().unwrap_or("pod") {
        "pod" => MonitorType::Pod,
        "service" => MonitorType::Service,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Could not render",
                "monitorType must be pod or service".into(),
                vec![Violation::new("monitorType", "accepted: pod, service")],
            );
        }
    };
    let labels = q
        .labels
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let opts = RenderOptions {
        discovery_url: q.discovery_url.unwrap_or_else(|| s.discovery_url.clone()),
        kuma_sd: q.kuma_sd.unwrap_or(false),
        interval: q.interval,
        timeout: q.timeout,
        namespace: q.namespace,
        labels,
        ca_file: q.ca_file,
        monitor_type,
    };
    let policies: Vec<meshmetric_policies::MeshMetric> = s
        .list(ResourceKind::MeshMetric, Some(&mesh))
        .into_iter()
        .filter_map(|r| match r {
            Resource::MeshMetric(m) => Some(m),
            _ => None,
        })
        .collect();
    let r = render(&policies, format, &opts);
    axum::Json(json!({"documents": r.documents, "notes": r.notes})).into_response()
}

/// Stores a new token state (in the database first), then uses it.
async fn commit_tokens(ctx: &Ctx, state: TokenState) -> Result<(), Response> {
    if let Some(db) = &ctx.db {
        db.save_tokens(&state).await.map_err(unstored)?;
    }
    ctx.tokens.replace(state);
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    mesh: Option<String>,
    name: String,
    valid_for: Option<String>,
}

#[utoipa::path(post, path = "/tokens/dataplane", tag = "tokens",
    request_body(content = Object, description = "`{mesh, name, validFor}` (validFor a Go duration, default 8760h)"),
    responses(
        (status = 200, description = "`{token, id, expiresAt}`", body = Object),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
async fn issue_token(State(s): State<Ctx>, body: String) -> Response {
    let req: TokenRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Could not issue a token",
                format!("body must be {{\"mesh\", \"name\", \"validFor\"}}: {e}"),
                vec![],
            );
        }
    };
    let valid_for = match meshmetric_policies::values::Duration::parse(req.valid_for.as_deref().unwrap_or("8760h")) {
        Ok(d) if !d.is_zero() => d.get().as_secs().max(1),
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Could not issue a token",
                "validFor must be greater than 0".into(),
                vec![Violation::new("validFor", "must be greater than 0")],
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Could not issue a token",
                e.to_string(),
                vec![Violation::new("validFor", e.to_string())],
            );
        }
    };
    let mesh = req
        .mesh
        .unwrap_or_else(|| meshmetric_policies::meta::DEFAULT_MESH.to_string());
    match s.tokens.issue(&mesh, &req.name, crate::persist::now_secs(), valid_for) {
        Ok((token, claims)) => {
            tracing::info!(%mesh, dataplane = %crate::ads::escape(&req.name), id = %claims.jti, "dataplane token issued");
            axum::Json(json!({"token": token, "id": claims.jti, "expiresAt": claims.exp})).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Could not issue a token",
            e.to_string(),
            vec![],
        ),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    token: Option<String>,
    id: Option<String>,
}

#[utoipa::path(post, path = "/tokens/dataplane/revoke", tag = "tokens",
    request_body(content = Object, description = "`{token}` or `{id}`"),
    responses(
        (status = 200, description = "Revoked", body = Object),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
async fn revoke_token(State(s): State<Ctx>, body: String) -> Response {
    let id = match serde_json::from_str::<RevokeRequest>(&body) {
        Ok(RevokeRequest {
            id: Some(id),
            token: None,
        }) => id,
        Ok(RevokeRequest {
            token: Some(t),
            id: None,
        }) => match s.tokens.decode_signed(t.trim()) {
            Ok(c) => c.jti,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Could not revoke the token",
                    e.to_string(),
                    vec![],
                );
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Could not revoke the token",
                "body must be {\"token\": ...} or {\"id\": ...}".into(),
                vec![],
            );
        }
    };
    let mut state = s.tokens.state();
    state.revoked.insert(id.clone());
    if let Err(r) = commit_tokens(&s, state).await {
        return r;
    }
    tracing::info!(%id, "dataplane token revoked");
    axum::Json(json!({"revoked": id})).into_response()
}

#[utoipa::path(get, path = "/tokens/signing-keys", tag = "tokens",
    responses((status = 200, description = "`{keys: [{id, createdAt, signing}]}`", body = Object), (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
async fn list_keys(State(s): State<Ctx>) -> Response {
    let keys: Vec<Value> = s
        .tokens
        .state()
        .keys
        .iter()
        .map(|k| json!({"id": k.id, "created": k.created}))
        .collect();
    axum::Json(json!({"keys": keys, "revokedTokens": s.tokens.state().revoked.len()})).into_response()
}

#[utoipa::path(post, path = "/tokens/signing-keys", tag = "tokens",
    responses((status = 200, description = "The new key signs tokens from now on", body = Object), (status = 401, description = "Missing or wrong API token", body = ErrorBody)))]
async fn add_key(State(s): State<Ctx>) -> Response {
    let state = TokenAuthority::with_new_key(&s.tokens.state(), crate::persist::now_secs());
    let id = state.keys.last().map(|k| k.id.clone()).unwrap_or_default();
    if let Err(r) = commit_tokens(&s, state).await {
        return r;
    }
    tracing::info!(%id, "token signing key added; it signs new tokens from now on");
    axum::Json(json!({"id": id})).into_response()
}

#[utoipa::path(delete, path = "/tokens/signing-keys/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Signing key id")),
    responses(
        (status = 200, description = "Removed: its tokens stop working", body = Object),
        (status = 400, description = "The last key cannot be removed", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody)))]
async fn remove_key(State(s): State<Ctx>, Path(id): Path<String>) -> Response {
    let mut state = s.tokens.state();
    let before = state.keys.len();
    state.keys.retain(|k| k.id != id);
    if state.keys.len() == before {
        return not_found("signing key", "-", &id);
    }
    if state.keys.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not remove the signing key",
            "it is the only one; add another first (POST /tokens/signing-keys)".into(),
            vec![],
        );
    }
    if let Err(r) = commit_tokens(&s, state).await {
        return r;
    }
    tracing::info!(%id, "token signing key removed; its tokens stop working");
    StatusCode::OK.into_response()
}
