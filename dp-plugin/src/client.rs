//! Bounded HTTP GETs over TCP or a unix socket (hyper client; one pool per transport).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

/// Where an HTTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// Path of a unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `unix:/path`, `/path` (unix socket) or `host:port`.
    pub fn parse(s: &str) -> Self {
        if let Some(p) = s.strip_prefix("unix:") {
            Endpoint::Unix(PathBuf::from(p))
        } else if s.starts_with('/') {
            Endpoint::Unix(PathBuf::from(s))
        } else {
            Endpoint::Tcp(s.trim_start_matches("http://").trim_end_matches('/').to_string())
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("response body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the shared body budget of {0} bytes of this collection is used up by other scrapes")]
    BudgetExhausted(usize),
    #[error("reading the body failed: {0}")]
    Body(String),
}

/// Bytes several concurrent fetches may hold in total: each body reserves what it reads, so
/// many large answers together cannot exceed the budget (the fetch that would is failed).
#[derive(Debug)]
pub struct BodyBudget {
    total: usize,
    left: std::sync::atomic::AtomicUsize,
}

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            left: std::sync::atomic::AtomicUsize::new(total),
        }
    }

    /// Takes `n` bytes; `false` (and nothing taken) when fewer are left.
    pub fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(n))
            .is_ok()
    }

    /// Bytes not taken yet.
    pub fn left(&self) -> usize {
        self.left.load(std::sync::atomic::Ordering::Acquire)
    }

    fn give_back(&self, n: usize) {
        self.left.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Bytes taken from a budget for one body; given back when the fetch fails (its buffer is
/// freed), kept when it succeeds (the body lives on).
struct Reservation<'a> {
    budget: Option<&'a BodyBudget>,
    taken: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.budget {
            b.give_back(self.taken);
        }
    }
}

/// A fetched response.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// HTTP client for both transports.
#[derive(Clone)]
pub struct HttpClient {
    tcp: Client<HttpConnector, Empty<Bytes>>,
    unix: Client<UnixConnector, Empty<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(Duration::from_secs(2)));
        c.set_nodelay(true);
        Self {
            tcp: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(c),
            // no pooling: a kept-alive connection to a listener Envoy is draining after an
            // update would keep answering with the old config until the drain closes it
            unix: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(UnixConnector),
        }
    }
}

impl HttpClient {
    /// GETs `path_and_query` from `ep` with `headers`, failing after `timeout` (whole exchange)
    /// or when the body exceeds `limit` bytes.
    pub async fn get(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
        limit: usize,
    ) -> Result<Fetched, FetchError> {
        self.get_sized(ep, path_and_query, headers, timeout, limit, 0, None)
            .await
    }

    /// [`HttpClient::get`], reading the body straight into one buffer sized from
    /// `Content-Length`, else from `size_hint` (e.g. the previous body of the same target), so
    /// a large body is not held twice (chunks plus a contiguous copy). With `budget`, every
    /// byte read is also taken from it ([`FetchError::BudgetExhausted`] when it runs out).
    /// Sends a GET and returns the response head with its body unread.
    async fn send(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        let uri: hyper::Uri = match ep {
            Endpoint::Tcp(a) => format!("http://{a}{path_and_query}")
                .parse()
                .map_err(|e| FetchError::Request(format!("bad URI: {e}")))?,
            Endpoint::Unix(p) => hyperlocal::Uri::new(p, path_and_query).into(),
        };
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).map_err(|e| FetchError::Request(e.to_string()))?;
        match ep {
            Endpoint::Tcp(_) => self.tcp.request(req).await,
            Endpoint::Unix(_) => self.unix.request(req).await,
        }
        .map_err(|e| FetchError::Request(error_chain(&e)))
    }

    /// A GET whose body is read by the caller as it arrives (`Incoming`, frame by frame); the
    /// timeout covers the request and the response head only. Errors: timeout, connection or
    /// protocol failure.
    pub async fn get_stream(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(u16, HeaderMap, hyper::body::Incoming), FetchError> {
        let fut = async {
            let resp = self.send(ep, path_and_query, headers).await?;
            let (parts, body) = resp.into_parts();
            Ok((parts.status.as_u16(), parts.headers, body))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn get_sized(
        &self,
        ep: &Endpoint,
        path_and_query: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
        limit: usize,
        size_hint: usize,
        budget: Option<&BodyBudget>,
    ) -> Result<Fetched, FetchError> {
        let fut = async {
            let resp = self.send(ep, path_and_query, headers).await?;
            let (parts, body) = resp.into_parts();
            let declared = parts.headers.get(hyper::header::CONTENT_LENGTH);
            if declared
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .is_some_and(|len| len > limit)
            {
                return Err(FetchError::TooLarge(limit));
            }
            let declared_len = declared.and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if let (Some(b), Some(len)) = (budget, declared_len)
                && len > b.left()
            {
                return Err(FetchError::BudgetExhausted(b.total));
            }
            let capacity = declared_len.unwrap_or(size_hint + size_hint / 8).min(limit);
            let capacity = budget.map_or(capacity, |b| capacity.min(b.left()));
            let mut buf: Vec<u8> = Vec::with_capacity(capacity);
            let mut reservation = Reservation { budget, taken: 0 };
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| FetchError::Body(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(FetchError::TooLarge(limit));
                    }
                    if let Some(b) = budget {
                        if !b.take(data.len()) {
                            return Err(FetchError::BudgetExhausted(b.total));
                        }
                        reservation.taken += data.len();
                    }
                    buf.extend_from_slice(&data);
                }
            }
            reservation.taken = 0; // the body is returned: its bytes stay taken
            Ok(Fetched {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Bytes::from(buf),
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
