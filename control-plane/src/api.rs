//! REST API (Kuma-style paths).
//!
//! - `GET /meshes/{mesh}/meshmetrics`, `GET|PUT|DELETE /meshes/{mesh}/meshmetrics/{name}`
//! - `GET /meshes/{mesh}/dataplanes`, `GET|PUT|DELETE /meshes/{mesh}/dataplanes/{name}`
//! - `GET /meshes/{mesh}/dataplanes/{name}/meshmetric`: the effective (merged) config, the
//!   policies that contributed (most specific last) and the config served to the plugin
//! - `POST /apply`: one or more documents (multi-document YAML), all or nothing
//!
//! Bodies are YAML or JSON in the Universal or Kubernetes form. An invalid document gets
//! `400` with every violation (`{"title","details","causes":[{"field","message"}]}`) and
//! changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use meshmetric_policies::{Dataplane, MeshMetric, ParseError, Resource, Violation, parse_documents};

use crate::persist::{PersistError, Persistence};
use crate::store::{Kind, Store};

/// What the handlers share: the store and, when configured, the database behind it.
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<Store>,
    pub db: Option<Arc<Persistence>>,
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
    async fn commit_delete(&self, kind: Kind, mesh: &str, name: &str) -> Result<bool, PersistError> {
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
    if req.uri().path() == "/ready" || (read && access.anonymous_reads) {
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

/// Builds the API router over `store`, open to anyone who can reach it.
pub fn router(store: Arc<Store>) -> Router {
    router_with_access(store, Access::default())
}

/// Builds the API router over `store` with access control.
pub fn router_with_access(store: Arc<Store>, access: Access) -> Router {
    router_with_db(store, None, access)
}

/// Builds the API router over `store`, writing through `db` when given, with access control.
pub fn router_with_db(store: Arc<Store>, db: Option<Arc<Persistence>>, access: Access) -> Router {
    routes(Ctx { store, db }).layer(axum::middleware::from_fn_with_state(access, authorize))
}

fn routes(store: Ctx) -> Router {
    Router::new()
        .route("/ready", get(|| async { "ok" }))
        .route("/apply", post(apply))
        .route("/meshes/{mesh}/meshmetrics", get(list_meshmetrics))
        .route(
            "/meshes/{mesh}/meshmetrics/{name}",
            get(get_meshmetric).put(put_meshmetric).delete(delete_meshmetric),
        )
        .route("/meshes/{mesh}/dataplanes", get(list_dataplanes))
        .route(
            "/meshes/{mesh}/dataplanes/{name}",
            get(get_dataplane).put(put_dataplane).delete(delete_dataplane),
        )
        .route("/meshes/{mesh}/dataplanes/{name}/meshmetric", get(effective))
        .with_state(store)
}

fn error(status: StatusCode, title: &str, details: String, causes: Vec<Violation>) -> Response {
    (
        status,
        axum::Json(json!({"title": title, "details": details, "causes": causes})),
    )
        .into_response()
}

fn invalid(e: ParseError) -> Response {
    let details = match &e {
        ParseError::Syntax(_) => "Resource is not valid YAML/JSON".to_string(),
        ParseError::Invalid { kind, name, .. } => format!("{kind} {name:?} is not valid"),
    };
    error(
        StatusCode::BAD_REQUEST,
        "Could not process a resource",
        details,
        e.violations(),
    )
}

/// Universal-form JSON of a MeshMetric.
pub fn meshmetric_json(m: &MeshMetric) -> Value {
    json!({"type": "MeshMetric", "mesh": m.meta.mesh, "name": m.meta.name, "labels": m.meta.labels, "spec": m.spec})
}

/// Universal-form JSON of a Dataplane.
pub fn dataplane_json(d: &Dataplane) -> Value {
    json!({"type": "Dataplane", "mesh": d.meta.mesh, "name": d.meta.name, "labels": d.meta.labels, "networking": d.networking})
}

async fn apply(State(store): State<Ctx>, body: String) -> Response {
    let (rs, errs) = meshmetric_policies::parse_documents_all(&body);
    if !errs.is_empty() {
        tracing::warn!(invalid_documents = errs.len(), first = %errs[0], "apply rejected; nothing changed");
        let details: Vec<String> = errs
            .iter()
            .map(|e| match e {
                ParseError::Syntax(_) => "not valid YAML/JSON".to_string(),
                ParseError::Invalid { index, kind, name, .. } => format!("document {} ({kind} {name:?})", index + 1),
            })
            .collect();
        let causes = errs.iter().flat_map(|e| e.violations()).collect();
        return error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            format!("invalid: {}; nothing applied", details.join(", ")),
            causes,
        );
    }
    let applied: Vec<Value> = rs
        .iter()
        .map(|r| json!({"kind": r.kind(), "mesh": r.meta().mesh, "name": r.meta().name}))
        .collect();
    let count = rs.len();
    if let Err(e) = store.commit_apply(rs).await {
        return unstored(e);
    }
    tracing::info!(count, "resources applied");
    axum::Json(json!({"applied": applied})).into_response()
}

async fn put(store: Ctx, kind: Kind, mesh: String, name: String, body: String) -> Response {
    let mut rs = match parse_documents(&body) {
        Ok(rs) => rs,
        Err(e) => {
            tracing::warn!(%mesh, %name, error = %e, "resource rejected; the previous config keeps serving");
            return invalid(e);
        }
    };
    if rs.len() != 1 {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            format!("expected exactly one document, got {}", rs.len()),
            vec![],
        );
    }
    let r = rs.remove(0);
    let want = match kind {
        Kind::MeshMetric => "MeshMetric",
        Kind::Dataplane => "Dataplane",
    };
    let mut causes = Vec::new();
    if r.kind() != want {
        causes.push(Violation::new(
            "type",
            format!("this path takes a {want}, got {}", r.kind()),
        ));
    }
    if r.meta().name != name {
        causes.push(Violation::new(
            "name",
            format!("{:?} does not match the name in the path {name:?}", r.meta().name),
        ));
    }
    if r.meta().mesh != mesh {
        causes.push(Violation::new(
            "mesh",
            format!("{:?} does not match the mesh in the path {mesh:?}", r.meta().mesh),
        ));
    }
    if !causes.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Could not process a resource",
            "Resource is not valid".into(),
            causes,
        );
    }
    let existed = match kind {
        Kind::MeshMetric => store.meshmetric(&mesh, &name).is_some(),
        Kind::Dataplane => store.dataplane(&mesh, &name).is_some(),
    };
    if let Err(e) = store.commit_apply(vec![r]).await {
        return unstored(e);
    }
    tracing::info!(kind = want, %mesh, %name, "resource stored");
    if existed {
        StatusCode::OK.into_response()
    } else {
        StatusCode::CREATED.into_response()
    }
}

fn not_found(kind: &str, mesh: &str, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Could not find a resource",
        format!("{kind} {name:?} not found in mesh {mesh:?}"),
        vec![],
    )
}

async fn put_meshmetric(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>, body: String) -> Response {
    put(s, Kind::MeshMetric, mesh, name, body).await
}
async fn put_dataplane(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>, body: String) -> Response {
    put(s, Kind::Dataplane, mesh, name, body).await
}
async fn get_meshmetric(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    match s.meshmetric(&mesh, &name) {
        Some(m) => axum::Json(meshmetric_json(&m)).into_response(),
        None => not_found("MeshMetric", &mesh, &name),
    }
}
async fn get_dataplane(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    match s.dataplane(&mesh, &name) {
        Some(d) => axum::Json(dataplane_json(&d)).into_response(),
        None => not_found("Dataplane", &mesh, &name),
    }
}
async fn delete_meshmetric(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    match s.commit_delete(Kind::MeshMetric, &mesh, &name).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => not_found("MeshMetric", &mesh, &name),
        Err(e) => unstored(e),
    }
}
async fn delete_dataplane(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    match s.commit_delete(Kind::Dataplane, &mesh, &name).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => not_found("Dataplane", &mesh, &name),
        Err(e) => unstored(e),
    }
}
async fn list_meshmetrics(State(s): State<Ctx>, Path(mesh): Path<String>) -> Response {
    let items: Vec<Value> = s.meshmetrics(Some(&mesh)).iter().map(meshmetric_json).collect();
    axum::Json(json!({"total": items.len(), "items": items})).into_response()
}
async fn list_dataplanes(State(s): State<Ctx>, Path(mesh): Path<String>) -> Response {
    let items: Vec<Value> = s.dataplanes(Some(&mesh)).iter().map(dataplane_json).collect();
    axum::Json(json!({"total": items.len(), "items": items})).into_response()
}

async fn effective(State(s): State<Ctx>, Path((mesh, name)): Path<(String, String)>) -> Response {
    match crate::inspect::effective_view(&s, &mesh, &name) {
        None => not_found("Dataplane", &mesh, &name),
        Some(v) => axum::Json(v).into_response(),
    }
}

/// The resource files a path names: the path itself, or a directory's `.yaml`, `.yml` and
/// `.json` files in name order.
pub fn resource_files(path: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every `.yaml`, `.yml` and `.json` file under `paths` (files or directories, sorted),
/// all or nothing. Errors name the file and every violation.
pub fn load_paths(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Resource>> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(resource_files(p)?);
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let rs = parse_documents(&text).map_err(|e| match &e {
            ParseError::Invalid { index, kind, name, .. } => {
                let lines: Vec<String> = e.violations().iter().map(|v| format!("  {v}")).collect();
                anyhow::anyhow!(
                    "{}: document {} ({kind} {name:?}) is invalid:\n{}",
                    f.display(),
                    index + 1,
                    lines.join("\n")
                )
            }
            ParseError::Syntax(_) => anyhow::anyhow!("{}: {e}", f.display()),
        })?;
        out.extend(rs);
    }
    Ok(out)
}
