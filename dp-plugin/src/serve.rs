//! The Prometheus endpoint: merged metrics as text 0.0.4 on the plugin's unix socket (what
//! Envoy's Prometheus listeners forward to, any path) and optionally on a TCP address.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::pipeline::Pipeline;

/// Content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Router answering every GET with the merged metrics.
pub fn router(collector: Arc<Pipeline>) -> Router {
    Router::new().fallback(metrics).with_state(collector)
}

/// Prometheus's scrape timeout for this request, in seconds (sent by Prometheus ≥ 2.x).
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

async fn metrics(State(c): State<Arc<Pipeline>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    if let Some(t) = headers
        .get(SCRAPE_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0)
    {
        c.announce_scrape_timeout(std::time::Duration::from_secs_f64(t));
    }
    let body = c.collect().await.prometheus;
    ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], body)
}

/// Binds a unix socket at `path` with mode 0660, replacing a stale socket file left by a dead
/// process. Errors: a live process already serves there, or the path is not a socket.
pub fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; remove it or choose another workdir",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running process", path.display());
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::bind_unix;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mm-bind-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn socket_is_0660_and_a_stale_one_is_replaced_but_a_live_one_is_not() {
        let d = dir("sock");
        let p = d.join("metrics.sock");
        let live = bind_unix(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o660);
        let e = bind_unix(&p).unwrap_err().to_string();
        assert!(e.contains("in use by a running process"), "{e}");
        // the process dies: its socket file stays behind, nobody listens
        drop(live);
        assert!(p.exists());
        let again = bind_unix(&p).expect("a stale socket is replaced");
        drop(again);
        // something that is not a socket is never removed
        let f = d.join("file.sock");
        std::fs::write(&f, "keep me").unwrap();
        let e = bind_unix(&f).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep me");
        let _ = std::fs::remove_dir_all(&d);
    }
}
