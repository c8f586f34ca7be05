//! Resolved settings of one OTLP exporter: the policy's values, else the standard
//! `OTEL_EXPORTER_OTLP_METRICS_*` / `OTEL_EXPORTER_OTLP_*` environment variables (OpenTelemetry
//! "OTLP Exporter Configuration"), else the defaults.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use meshmetric_policies::dpconfig::DpOpenTelemetry;
use meshmetric_policies::validate::parse_duration;

use super::producer::Temporality;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    /// HTTP/protobuf, `POST /v1/metrics`.
    Http,
}

/// Where a header value comes from. Its `Debug` never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Non-secret inline value from the policy.
    Inline(String),
    /// Secret re-read from this file whenever it changes.
    File(PathBuf),
    /// Secret from this environment variable of the plugin.
    Env(String),
    /// From `OTEL_EXPORTER_OTLP_HEADERS` (treated as secret).
    FromEnvHeaders(String),
}

impl std::fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValue::Inline(_) => f.write_str("Inline(<value>)"),
            HeaderValue::File(p) => write!(f, "File({})", p.display()),
            HeaderValue::Env(n) => write!(f, "Env({n})"),
            HeaderValue::FromEnvHeaders(_) => f.write_str("OTEL_EXPORTER_OTLP_HEADERS(<redacted>)"),
        }
    }
}

/// TLS towards the collector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// Modification times of the files, to notice rotation.
    pub fn mtimes(&self) -> Vec<Option<SystemTime>> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .iter()
            .map(|p| {
                p.as_ref()
                    .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            })
            .collect()
    }
}

/// Everything one exporter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSettings {
    /// `host:port`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub interval: Duration,
    pub timeout: Duration,
    pub gzip: bool,
    pub temporality: Temporality,
    /// Most batches waiting; when full the oldest is dropped.
    pub queue_size: usize,
    pub headers: Vec<(String, HeaderValue)>,
    pub tls: Option<TlsSettings>,
}

/// Default export timeout (OTLP exporter specification).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default queue size, in batches.
pub const DEFAULT_QUEUE_SIZE: usize = 100;

impl ExporterSettings {
    /// Resolves a backend's settings; `env` looks up environment variables (injected for tests).
    /// Errors name the setting and what is accepted.
    pub fn resolve(b: &DpOpenTelemetry, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| {
            env(&format!("OTEL_EXPORTER_OTLP_METRICS_{name}")).or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
        };
        let protocol = match b.protocol.clone().or_else(|| var("PROTOCOL")).as_deref() {
            None | Some("grpc") => Protocol::Grpc,
            Some("http" | "http/protobuf") => Protocol::Http,
            Some(p) => return Err(format!("protocol {p:?}: accepted grpc, http (http/protobuf)")),
        };
        let interval = parse_duration(&b.refresh_interval).map_err(|e| format!("refreshInterval: {e}"))?;
        let timeout = match (&b.timeout, var("TIMEOUT")) {
            (Some(t), _) => parse_duration(t).map_err(|e| format!("timeout: {e}"))?,
            (None, Some(ms)) => Duration::from_millis(
                ms.trim()
                    .parse()
                    .map_err(|_| format!("OTEL_EXPORTER_OTLP_TIMEOUT {ms:?}: accepted milliseconds"))?,
            ),
            (None, None) => DEFAULT_TIMEOUT,
        };
        let gzip = match b.compression.clone().or_else(|| var("COMPRESSION")).as_deref() {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(c) => return Err(format!("compression {c:?}: accepted gzip, none")),
        };
        let temporality = match b.temporality.as_deref() {
            Some("Delta") => Temporality::Delta,
            Some(_) => Temporality::Cumulative,
            None if var("TEMPORALITY_PREFERENCE").is_some_and(|t| t.eq_ignore_ascii_case("delta")) => {
                Temporality::Delta
            }
            None => Temporality::Cumulative,
        };
        let mut headers: Vec<(String, HeaderValue)> = Vec::new();
        for h in &b.headers {
            let v = match (&h.value, &h.value_from) {
                (Some(v), None) => HeaderValue::Inline(v.clone()),
                (None, Some(from)) => match (&from.file, &from.env) {
                    (Some(f), None) => HeaderValue::File(PathBuf::from(f)),
                    (None, Some(e)) => HeaderValue::Env(e.clone()),
                    _ => return Err(format!("header {}: valueFrom needs exactly one of file or env", h.name)),
                },
                _ => return Err(format!("header {}: needs value or valueFrom", h.name)),
            };
            headers.push((h.name.to_ascii_lowercase(), v));
        }
        if let Some(list) = var("HEADERS") {
            for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err("OTEL_EXPORTER_OTLP_HEADERS: accepted key=value pairs separated by commas".into());
                };
                let k = k.trim().to_ascii_lowercase();
                if !headers.iter().any(|(n, _)| *n == k) {
                    headers.push((k, HeaderValue::FromEnvHeaders(percent_decode(v.trim()))));
                }
            }
        }
        let tls = match &b.tls {
            Some(t) => Some(TlsSettings {
                ca_file: t.ca_file.clone().map(PathBuf::from),
                cert_file: t.cert_file.clone().map(PathBuf::from),
                key_file: t.key_file.clone().map(PathBuf::from),
                server_name: t.server_name.clone(),
            }),
            None => {
                let (ca, cert, key) = (var("CERTIFICATE"), var("CLIENT_CERTIFICATE"), var("CLIENT_KEY"));
                let insecure = var("INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                (!insecure && (ca.is_some() || cert.is_some())).then(|| TlsSettings {
                    ca_file: ca.map(PathBuf::from),
                    cert_file: cert.map(PathBuf::from),
                    key_file: key.map(PathBuf::from),
                    server_name: None,
                })
            }
        };
        Ok(Self {
            endpoint: b.endpoint.clone(),
            protocol,
            interval,
            timeout,
            gzip,
            temporality,
            queue_size: b.queue_size.map_or(DEFAULT_QUEUE_SIZE, |q| q as usize),
            headers,
            tls,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| {
                std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmetric_policies::meshmetric::{Header, ValueFrom};

    fn base() -> DpOpenTelemetry {
        DpOpenTelemetry {
            endpoint: "otel:4317".into(),
            refresh_interval: "10s".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_policy_and_environment() {
        let none = |_: &str| None;
        let s = ExporterSettings::resolve(&base(), &none).unwrap();
        assert_eq!(
            (s.protocol, s.timeout, s.gzip, s.temporality, s.queue_size),
            (Protocol::Grpc, DEFAULT_TIMEOUT, false, Temporality::Cumulative, 100)
        );
        assert!(s.tls.is_none());
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_string()),
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT" => Some("2500".to_string()),
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("gzip".to_string()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("Authorization=Bearer%20x,x-team=a".to_string()),
            "OTEL_EXPORTER_OTLP_CERTIFICATE" => Some("/ca.pem".to_string()),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE" => Some("delta".to_string()),
            _ => None,
        };
        let s = ExporterSettings::resolve(&base(), &env).unwrap();
        assert_eq!(
            (s.protocol, s.timeout, s.gzip, s.temporality),
            (Protocol::Http, Duration::from_millis(2500), true, Temporality::Delta)
        );
        assert_eq!(
            s.headers[0],
            (
                "authorization".to_string(),
                HeaderValue::FromEnvHeaders("Bearer x".into())
            )
        );
        assert_eq!(s.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
        // the policy wins over the environment
        let mut b = base();
        b.protocol = Some("grpc".into());
        b.compression = Some("none".into());
        b.temporality = Some("Cumulative".into());
        b.headers = vec![Header {
            name: "Authorization".into(),
            value: None,
            value_from: Some(ValueFrom {
                file: Some("/t".into()),
                env: None,
            }),
        }];
        let s = ExporterSettings::resolve(&b, &env).unwrap();
        assert_eq!(
            (s.protocol, s.gzip, s.temporality),
            (Protocol::Grpc, false, Temporality::Cumulative)
        );
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.headers[0].1, HeaderValue::File("/t".into()));
    }

    #[test]
    fn debug_never_shows_secret_values() {
        let d = format!(
            "{:?}",
            vec![
                HeaderValue::Inline("tok".into()),
                HeaderValue::FromEnvHeaders("s3cr3t".into()),
                HeaderValue::Env("TOKEN".into())
            ]
        );
        assert!(!d.contains("s3cr3t") && !d.contains("tok\""), "{d}");
    }
}
