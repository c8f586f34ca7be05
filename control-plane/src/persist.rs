//! Durable storage of resources: an embedded SQLite file (the default) or PostgreSQL shared by
//! several control-plane instances.
//!
//! Layout (both databases): `meshmetric_resources(kind, mesh, name, body)` holds each resource as
//! its Universal-form JSON (re-validated on load), and `meshmetric_revision` one counter bumped by
//! every write in the same transaction. Instances notice writes made by others by watching that
//! counter: PostgreSQL `NOTIFY meshmetric_changes` wakes them at once (a 5 s poll covers a lost
//! notification or a reconnect); SQLite, which has no notifications, is polled every second.
//!
//! A write is committed to the database before the in-memory store changes, so a failed write
//! (disk full, read-only file, database down) leaves the served config exactly as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use meshmetric_policies::{Resource, parse_documents};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use meshmetric_policies::ResourceKind;

use crate::store::Store;
use crate::tokens::{TokenAuthority, TokenState};

/// Name of the setting holding the dataplane-token signing keys and revocations.
pub const TOKENS_SETTING: &str = "dataplane-tokens";

/// Why the store could not be opened, read or written. Display never includes a password.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The address is not one of the accepted forms (shown with the password redacted).
    #[error(
        "store address {0:?} is not understood: use `memory`, `sqlite:<file>` or `postgres://user@host:port/database`"
    )]
    Address(String),
    /// A write failed; nothing changed.
    #[error("the store could not be written: {0}")]
    Write(#[source] sqlx::Error),
    /// A read failed.
    #[error("the store could not be read: {0}")]
    Read(#[source] sqlx::Error),
    /// The database could not be opened or prepared.
    #[error("the store could not be opened at {at}: {source}")]
    Open {
        /// The address, password redacted.
        at: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A database the resources live in.
pub struct Persistence {
    db: Db,
    /// The address with any password replaced, for logs and errors.
    pub display: String,
    /// Last revision this instance has loaded or written.
    seen: AtomicI64,
}

const NOTIFY_CHANNEL: &str = "meshmetric_changes";

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS meshmetric_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meshmetric_insights (mesh TEXT NOT NULL, name TEXT NOT NULL, instance TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (mesh, name, instance))",
    "CREATE TABLE IF NOT EXISTS meshmetric_instances (instance TEXT PRIMARY KEY, heartbeat BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meshmetric_resources (kind TEXT NOT NULL, mesh TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, mesh, name))",
    "CREATE TABLE IF NOT EXISTS meshmetric_revision (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
    "INSERT INTO meshmetric_revision (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];
const UPSERT: &str = "INSERT INTO meshmetric_resources (kind, mesh, name, body) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, mesh, name) DO UPDATE SET body = excluded.body";
const DELETE: &str = "DELETE FROM meshmetric_resources WHERE kind = $1 AND mesh = $2 AND name = $3";
const BUMP: &str = "UPDATE meshmetric_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision";
const REVISION: &str = "SELECT revision FROM meshmetric_revision WHERE id = 1";
const NOTIFY: &str = "SELECT pg_notify('meshmetric_changes', '')";
const LOAD: &str = "SELECT kind, mesh, name, body FROM meshmetric_resources ORDER BY kind, mesh, name";
const SETTING: &str = "SELECT value FROM meshmetric_settings WHERE name = $1";
const PUT_SETTING: &str = "INSERT INTO meshmetric_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value";
const INIT_SETTING: &str =
    "INSERT INTO meshmetric_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

const PUT_INSIGHT: &str = "INSERT INTO meshmetric_insights (mesh, name, instance, body) VALUES ($1, $2, $3, $4) ON CONFLICT (mesh, name, instance) DO UPDATE SET body = excluded.body";
const INSIGHTS_OF: &str = "SELECT instance, body FROM meshmetric_insights WHERE mesh = $1 AND name = $2";
const INSIGHTS_IN: &str = "SELECT name, instance, body FROM meshmetric_insights WHERE mesh = $1";
const HEARTBEAT: &str = "INSERT INTO meshmetric_instances (instance, heartbeat) VALUES ($1, $2) ON CONFLICT (instance) DO UPDATE SET heartbeat = excluded.heartbeat";
const INSTANCES: &str = "SELECT instance, heartbeat FROM meshmetric_instances";

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Query parameters of a PostgreSQL address whose values are secret.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// An address with every password replaced by `***`: the user-info form
/// (`postgres://user:secret@host/db`) and the `password`/`sslpassword` query parameters
/// (`...?password=secret`).
pub fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_string();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // the user info ends at the last '@' before the path
    let authority_end = main.find('/').unwrap_or(main.len());
    let mut out = format!("{scheme}://");
    match main[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            out.push_str(&format!("{user}:***@{}", &main[userinfo.len() + 1..]));
        }
        _ => out.push_str(main),
    }
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Whether `host` is a loopback name or address, or a unix socket directory.
fn is_local_host(host: &str) -> bool {
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The connection options of a `postgres://` address, as libpq reads them (`sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`, `password`, `PGSSLMODE`, ...), with one stricter
/// default: when no `sslmode` is given, a host that is not loopback or a unix socket gets
/// `verify-full` (TLS, the server's certificate checked against `sslrootcert` or the system
/// roots, and its name against the host), so neither the password nor the resources cross a
/// network in clear or to an impostor. Loopback keeps libpq's `prefer`.
pub fn pg_options(address: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let opts: PgConnectOptions = address.parse()?;
    let explicit = std::env::var_os("PGSSLMODE").is_some()
        || address.split_once('?').is_some_and(|(_, q)| {
            q.split('&')
                .any(|kv| matches!(kv.split('=').next(), Some("sslmode" | "ssl-mode")))
        });
    let local = opts.get_socket().is_some() || is_local_host(opts.get_host());
    Ok(if explicit || local {
        opts
    } else {
        opts.ssl_mode(PgSslMode::VerifyFull)
    })
}

fn body(r: &Resource) -> String {
    r.to_universal_json().to_string()
}

/// Runs the same statements on whichever database `$db` is (`$pool` bound to its pool).
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

impl Persistence {
    /// Opens (creating when missing) the store at `address`: `sqlite:<file>` or
    /// `postgres://...`. Creates the tables if they do not exist.
    pub async fn open(address: &str) -> Result<Self, PersistError> {
        let display = redact(address);
        let open_err = |source: sqlx::Error| PersistError::Open {
            at: display.clone(),
            source,
        };
        let db = if let Some(path) = address.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            if path.is_empty() {
                return Err(PersistError::Address(display));
            }
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .map_err(open_err)?,
            )
        } else if address.starts_with("postgres://") || address.starts_with("postgresql://") {
            let opts = pg_options(address).map_err(open_err)?;
            let shown: &str = &display;
            tracing::info!(store = shown, sslmode = ?opts.get_ssl_mode(), "connecting to PostgreSQL");
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await
                    .map_err(open_err)?,
            )
        } else {
            return Err(PersistError::Address(display));
        };
        // Instances starting together must not race on CREATE TABLE.
        if let Db::Postgres(pool) = &db {
            let mut tx = pool.begin().await.map_err(open_err)?;
            sqlx::query("SELECT pg_advisory_xact_lock(7316201)")
                .execute(&mut *tx)
                .await
                .map_err(open_err)?;
            for s in SCHEMA {
                sqlx::query(s).execute(&mut *tx).await.map_err(open_err)?;
            }
            tx.commit().await.map_err(open_err)?;
        } else if let Db::Sqlite(pool) = &db {
            for s in SCHEMA {
                sqlx::query(s).execute(pool).await.map_err(open_err)?;
            }
        }
        Ok(Self {
            db,
            display,
            seen: AtomicI64::new(-1),
        })
    }

    fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// The revision counter (bumped by every write of any instance).
    pub async fn revision(&self) -> Result<i64, PersistError> {
        on_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(REVISION).fetch_one(pool).await)
            .map_err(PersistError::Read)
    }

    /// Every stored resource that is still valid; an invalid one (written by a newer version, or
    /// edited by hand) is logged with its key and skipped.
    pub async fn load(&self) -> Result<(i64, Vec<Resource>), PersistError> {
        let read = PersistError::Read;
        let (rev, rows): (i64, Vec<(String, String, String, String)>) = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(read)?;
            let rev = sqlx::query_scalar::<_, i64>(REVISION).fetch_one(&mut *tx).await.map_err(read)?;
            let rows = sqlx::query_as(LOAD).fetch_all(&mut *tx).await.map_err(read)?;
            tx.commit().await.map_err(read)?;
            (rev, rows)
        });
        let mut out = Vec::with_capacity(rows.len());
        for (kind, mesh, name, body) in rows {
            match parse_documents(&body) {
                Ok(rs) => out.extend(rs),
                Err(e) => tracing::error!(%kind, %mesh, %name, error = %e, "stored resource is not valid; skipped"),
            }
        }
        Ok((rev, out))
    }

    /// Stores a validated batch in one transaction.
    pub async fn apply(&self, resources: &[Resource]) -> Result<(), PersistError> {
        let write = PersistError::Write;
        let rev: i64 = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(write)?;
            for r in resources {
                sqlx::query(UPSERT)
                    .bind(r.kind().as_str())
                    .bind(&r.meta().mesh)
                    .bind(&r.meta().name)
                    .bind(body(r))
                    .execute(&mut *tx)
                    .await
                    .map_err(write)?;
            }
            let rev = sqlx::query_scalar::<_, i64>(BUMP).fetch_one(&mut *tx).await.map_err(write)?;
            if self.is_postgres() {
                sqlx::query(NOTIFY).execute(&mut *tx).await.map_err(write)?;
            }
            tx.commit().await.map_err(write)?;
            rev
        });
        self.wrote(rev);
        Ok(())
    }

    /// Deletes one resource; returns whether it existed.
    pub async fn delete(&self, kind: ResourceKind, mesh: &str, name: &str) -> Result<bool, PersistError> {
        let write = PersistError::Write;
        let (n, rev) = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(write)?;
            let n = sqlx::query(DELETE)
                .bind(kind.as_str())
                .bind(mesh)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(write)?
                .rows_affected();
            let rev = sqlx::query_scalar::<_, i64>(BUMP).fetch_one(&mut *tx).await.map_err(write)?;
            if self.is_postgres() {
                sqlx::query(NOTIFY).execute(&mut *tx).await.map_err(write)?;
            }
            tx.commit().await.map_err(write)?;
            (n, rev)
        });
        self.wrote(rev);
        Ok(n > 0)
    }

    /// The setting `name` (e.g. the dataplane-token signing keys), if stored.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, PersistError> {
        on_db!(&self.db, pool => sqlx::query_scalar::<_, String>(SETTING).bind(name).fetch_optional(pool).await)
            .map_err(PersistError::Read)
    }

    /// Stores `value` as `name` unless it exists; returns the stored value (so instances
    /// starting together agree on one).
    pub async fn init_setting(&self, name: &str, value: &str) -> Result<String, PersistError> {
        on_db!(&self.db, pool => sqlx::query(INIT_SETTING).bind(name).bind(value).execute(pool).await.map(|_| ()))
            .map_err(PersistError::Write)?;
        Ok(self.setting(name).await?.unwrap_or_else(|| value.to_string()))
    }

    /// Replaces setting `name`, bumping the revision so other instances reload it.
    pub async fn put_setting(&self, name: &str, value: &str) -> Result<(), PersistError> {
        let write = PersistError::Write;
        let rev: i64 = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(write)?;
            sqlx::query(PUT_SETTING).bind(name).bind(value).execute(&mut *tx).await.map_err(write)?;
            let rev = sqlx::query_scalar::<_, i64>(BUMP).fetch_one(&mut *tx).await.map_err(write)?;
            if self.is_postgres() {
                sqlx::query(NOTIFY).execute(&mut *tx).await.map_err(write)?;
            }
            tx.commit().await.map_err(write)?;
            rev
        });
        self.wrote(rev);
        Ok(())
    }

    /// Writes proxy insights `(mesh, name, instance, body)` in one transaction. Insights are
    /// observations, not resources: no revision is bumped and no instance reloads.
    pub async fn put_insights(&self, rows: &[(String, String, String, String)]) -> Result<(), PersistError> {
        let write = PersistError::Write;
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(write)?;
            for (mesh, name, instance, body) in rows {
                sqlx::query(PUT_INSIGHT)
                    .bind(mesh)
                    .bind(name)
                    .bind(instance)
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .map_err(write)?;
            }
            tx.commit().await.map_err(write)?;
        });
        Ok(())
    }

    /// Every instance's insight of proxy `name` in `mesh`: `(instance, body)`.
    pub async fn insights_of(&self, mesh: &str, name: &str) -> Result<Vec<(String, String)>, PersistError> {
        on_db!(&self.db, pool => sqlx::query_as(INSIGHTS_OF).bind(mesh).bind(name).fetch_all(pool).await)
            .map_err(PersistError::Read)
    }

    /// Every insight of the proxies of `mesh`: `(name, instance, body)`.
    pub async fn insights_in(&self, mesh: &str) -> Result<Vec<(String, String, String)>, PersistError> {
        on_db!(&self.db, pool => sqlx::query_as(INSIGHTS_IN).bind(mesh).fetch_all(pool).await)
            .map_err(PersistError::Read)
    }

    /// Records that `instance` is alive at `now` (seconds since the epoch).
    pub async fn heartbeat(&self, instance: &str, now: u64) -> Result<(), PersistError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        on_db!(&self.db, pool => sqlx::query(HEARTBEAT).bind(instance).bind(now).execute(pool).await.map(|_| ()))
            .map_err(PersistError::Write)
    }

    /// The last heartbeat of every instance.
    pub async fn instances(&self) -> Result<Vec<(String, i64)>, PersistError> {
        on_db!(&self.db, pool => sqlx::query_as(INSTANCES).fetch_all(pool).await).map_err(PersistError::Read)
    }

    /// Records a revision this instance wrote, so the watcher does not reload its own change
    /// (only when nobody else wrote in between).
    fn wrote(&self, rev: i64) {
        let _ = self
            .seen
            .compare_exchange(rev - 1, rev, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Loads everything into `store` (at start).
    pub async fn load_into(&self, store: &Store) -> Result<usize, PersistError> {
        let (rev, rs) = self.load().await?;
        let n = rs.len();
        store.replace_all(rs);
        self.seen.store(rev, Ordering::SeqCst);
        Ok(n)
    }

    /// Keeps `store` in step with writes made by other instances sharing this database.
    /// Token signing keys and revocations are reloaded into `tokens` with every change.
    pub fn spawn_watch(self: Arc<Self>, store: Arc<Store>, tokens: Arc<TokenAuthority>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut listener = match &self.db {
                Db::Postgres(pool) => match PgListener::connect_with(pool).await {
                    Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN failed; polling the store every 5 s instead");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN failed; polling the store every 5 s instead");
                        None
                    }
                },
                Db::Sqlite(_) => None,
            };
            let poll = match self.db {
                Db::Sqlite(_) => Duration::from_secs(1),
                Db::Postgres(_) => Duration::from_secs(5),
            };
            let mut failing = false;
            loop {
                match listener.as_mut() {
                    Some(l) => {
                        // PgListener reconnects and re-subscribes on its own; while the database
                        // is down each attempt fails at once, so wait before the next one
                        if let Ok(Err(e)) = tokio::time::timeout(poll, l.recv()).await {
                            tracing::debug!(error = %e, "LISTEN connection lost");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    None => tokio::time::sleep(poll).await,
                }
                let woke = std::time::Instant::now();
                let synced = self.sync(&store, Some(&tokens)).await;
                if let Ok(true) = synced {
                    crate::telemetry::metrics()
                        .store_reload
                        .record(woke.elapsed().as_secs_f64(), &[]);
                }
                match synced {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!(store = %self.display, "store reachable again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(store = %self.display, error = %e, "cannot read the store; serving the last config");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// Reloads `store` (and `tokens`) when the revision moved; returns whether it did.
    pub async fn sync(&self, store: &Store, tokens: Option<&TokenAuthority>) -> Result<bool, PersistError> {
        // serialized with this instance's writes, so a reload never replaces memory with a
        // database state older than a write that just went through
        let _serial = store.write_lock().await;
        let rev = self.revision().await?;
        if rev == self.seen.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let (rev, rs) = self.load().await?;
        if let Some(tokens) = tokens {
            self.load_tokens(tokens).await?;
        }
        let changed = store.replace_all(rs);
        self.seen.store(rev, Ordering::SeqCst);
        if changed {
            tracing::info!(revision = rev, "store changed by another instance; config recomputed");
        }
        Ok(changed)
    }

    /// Loads the token signing keys and revocations into `tokens`; creates the first signing
    /// key when there is none (instances starting together agree on one).
    pub async fn load_tokens(&self, tokens: &TokenAuthority) -> Result<(), PersistError> {
        let stored = match self.setting(TOKENS_SETTING).await? {
            Some(v) => v,
            None => {
                let now = now_secs();
                let first = TokenAuthority::with_new_key(&TokenState::default(), now);
                self.init_setting(TOKENS_SETTING, &serde_json::to_string(&first).unwrap_or_default())
                    .await?
            }
        };
        match serde_json::from_str::<TokenState>(&stored) {
            Ok(st) => tokens.replace(st),
            Err(e) => {
                tracing::error!(error = %e, "stored token signing keys are not readable; keeping the loaded ones")
            }
        }
        Ok(())
    }

    /// Stores the token state of `tokens` (after a key was added or removed, or a token revoked).
    pub async fn save_tokens(&self, state: &TokenState) -> Result<(), PersistError> {
        self.put_setting(TOKENS_SETTING, &serde_json::to_string(state).unwrap_or_default())
            .await
    }
}

impl Store {
    /// Stores a validated batch: in the database first (when there is one), then in memory.
    /// On a database error nothing changes.
    pub async fn commit_apply(
        &self,
        db: Option<&Persistence>,
        mut resources: Vec<Resource>,
    ) -> Result<(), PersistError> {
        let _serial = self.write_lock().await;
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        self.stamp(&mut resources, &now);
        if let Some(db) = db {
            counted(db.apply(&resources).await)?;
        }
        self.apply(resources);
        Ok(())
    }

    /// Deletes one resource: in the database first (when there is one), then in memory.
    pub async fn commit_delete(
        &self,
        db: Option<&Persistence>,
        kind: ResourceKind,
        mesh: &str,
        name: &str,
    ) -> Result<bool, PersistError> {
        let _serial = self.write_lock().await;
        if let Some(db) = db {
            counted(db.delete(kind, mesh, name).await)?;
        }
        Ok(self.delete(kind, mesh, name))
    }
}

/// Counts a database write in `meshmetric_cp_store_writes_total{result}`.
fn counted<T>(r: Result<T, PersistError>) -> Result<T, PersistError> {
    let result = if r.is_ok() { "ok" } else { "error" };
    crate::telemetry::metrics()
        .store_writes
        .add(1, &[crate::telemetry::kv("result", result)]);
    r
}
