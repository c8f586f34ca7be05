//! One bounded accept loop for every server of the control plane (REST API, MADS/HTTP SD, ADS
//! and gRPC MADS), plain or TLS.
//!
//! Bounds, so that a peer that can only open connections cannot take a port (or the process)
//! down:
//! - an `accept()` error (e.g. `EMFILE`, out of file descriptors) is logged and retried after a
//!   short backoff; it never ends the server;
//! - at most [`Limits::max_connections`] connections per listener; one more is closed at once;
//! - a connection must send its first byte within [`Limits::first_byte_timeout`] and finish the
//!   TLS handshake within [`Limits::handshake_timeout`]; HTTP/1 request headers must arrive
//!   within [`Limits::header_read_timeout`] (also between keep-alive requests);
//! - HTTP/2 connections take at most [`Limits::max_streams_per_connection`] concurrent streams
//!   and are pinged, so dead peers are found.
//!
//! [`raise_file_limit`] raises the soft open-file limit to the hard one at start, and
//! [`budget`] splits the descriptors among the listeners.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time for a new connection to send its first byte.
    pub first_byte_timeout: Duration,
    /// Time to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to receive an HTTP/1 request's headers (and to wait for the next request).
    pub header_read_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 only (gRPC).
    pub http2_only: bool,
}

impl Limits {
    /// Defaults for an HTTP server allowing `max_connections`.
    pub fn http(max_connections: usize) -> Self {
        Self {
            max_connections,
            first_byte_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_streams_per_connection: 100,
            http2_only: false,
        }
    }

    /// Defaults for a gRPC server (HTTP/2 only, long-lived streams) allowing `max_connections`.
    pub fn grpc(max_connections: usize) -> Self {
        Self {
            max_streams_per_connection: 256,
            http2_only: true,
            ..Self::http(max_connections)
        }
    }
}

/// Raises the soft open-file limit to the hard limit; returns the limit in force.
pub fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Splits `nofile` descriptors among the API, MADS and ADS listeners (10 %, 30 %, 60 % of
/// what is left after 128 for the process itself): `(api, mads, ads)`.
pub fn budget(nofile: u64) -> (usize, usize, usize) {
    let usable = nofile.saturating_sub(128).max(30) as usize;
    (usable / 10, usable * 3 / 10, usable * 6 / 10)
}

/// Counters of one server, for logs and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at once because the listener was full.
    pub refused_full: AtomicU64,
    /// Connections closed for sending nothing, or not finishing the TLS handshake, in time.
    pub timed_out: AtomicU64,
    /// `accept()` errors (retried).
    pub accept_errors: AtomicU64,
}

/// Serves `service` on `listener` (over TLS when `tls` is given) within `limits` until
/// `shutdown` resolves. Never returns an error: accept errors are retried.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()>,
) where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    if limits.http2_only {
        builder = builder.http2_only();
    }
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    let mut full_logged = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                // EMFILE / ENFILE / ECONNABORTED ...: wait a little and go on
                let n = counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(server = name, error = %e, errors = n + 1, retry_in = ?backoff, "accept failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counters.refused_full.fetch_add(1, Ordering::Relaxed);
            if !full_logged {
                tracing::warn!(
                    server = name,
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections are closed until some end"
                );
                full_logged = true;
            }
            drop(tcp);
            continue;
        };
        full_logged = false;
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let service = service.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if !first_byte(&tcp, limits.first_byte_timeout).await {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let svc = TowerToHyperService::new(service);
            let result = match acceptor {
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), svc).await,
                    Ok(Err(e)) => {
                        tracing::debug!(server = name, %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                None => builder.serve_connection(TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = result {
                tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Waits until `tcp` has a byte to read (or the peer closed it) within `timeout`.
async fn first_byte(tcp: &TcpStream, timeout: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(timeout, tcp.peek(&mut b)).await, Ok(Ok(n)) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fits_the_limit() {
        let (a, m, x) = budget(1024);
        assert!(a + m + x <= 1024 - 128, "{a} {m} {x}");
        assert!(a >= 80 && m >= 250 && x >= 500, "{a} {m} {x}");
        let (a, m, x) = budget(20_000);
        assert!(x >= 11_000 && a + m + x <= 20_000);
        let (a, m, x) = budget(10);
        assert!(a >= 3 && m >= 9 && x >= 18, "never zero: {a} {m} {x}");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_the_listener_stays_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let limits = Limits {
            max_connections: 4,
            first_byte_timeout: Duration::from_millis(200),
            ..Limits::http(4)
        };
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(
            "test",
            listener,
            router,
            None,
            limits,
            counters.clone(),
            std::future::pending(),
        ));
        // ten idle connections: four take the slots, six are closed at once
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counters.refused_full.load(Ordering::Relaxed), 6);
        // after the first-byte timeout the slots are free again
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(counters.timed_out.load(Ordering::Relaxed), 4);
        let mut s = TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("ok"), "{out}");
    }
}
