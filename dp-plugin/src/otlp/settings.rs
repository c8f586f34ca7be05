//! Resolved settings of one OTLP exporter: the backend's fields as the control plane resolved
//! them, combined with the standard `OTEL_EXPORTER_OTLP_METRICS_*` / `OTEL_EXPORTER_OTLP_*`
//! environment variables (OpenTelemetry "OTLP Exporter Configuration") as the backend's env
//! policy says (Kuma's MeshOpenTelemetryBackend `env`: mode `Disabled` | `Optional` |
//! `Required`, precedence `ExplicitFirst` | `EnvFirst`, `allowSignalOverrides`), then the
//! defaults. An inline `openTelemetry.endpoint` behaves as `Optional` + `ExplicitFirst`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use meshmetric_policies::dpconfig::DpOpenTelemetry;
use meshmetric_policies::headers::{HeaderRefusal, SecretSources, check_transport};
use meshmetric_policies::meshmetric::{
    Compression, DEFAULT_OTLP_TIMEOUT_SECS, DEFAULT_QUEUE_SIZE, OtlpProtocol, Temporality,
};
use meshmetric_policies::otelbackend::{EnvMode, EnvPrecedence};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// HTTP/protobuf, `POST <path>`.
    Http,
}

/// Why an exporter's settings could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// An environment variable holds something the OTLP specification does not allow.
    #[error("{var} {value:?}: accepted {accepted}")]
    Env {
        /// The variable.
        var: String,
        /// Its value (never a header value).
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
    /// The backend's env mode is `Required` and the environment gives no endpoint.
    #[error("env mode Required: neither OTEL_EXPORTER_OTLP_METRICS_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT is set")]
    RequiredEnvMissing,
    /// A header's source or transport is not allowed on this proxy.
    #[error(transparent)]
    Refused(#[from] HeaderRefusal),
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
    /// Path of OTLP/HTTP requests (default `/v1/metrics`).
    pub path: String,
    /// Transport.
    pub protocol: Protocol,
    /// Push interval.
    pub interval: Duration,
    /// Timeout of one export.
    pub timeout: Duration,
    /// Whether requests are gzip-compressed.
    pub gzip: bool,
    /// Temporality of sums and histograms.
    pub temporality: Temporality,
    /// Most batches waiting; when full the oldest is dropped.
    pub queue_size: usize,
    /// Request headers.
    pub headers: Vec<(String, HeaderValue)>,
    /// TLS; `None` = plaintext.
    pub tls: Option<TlsSettings>,
    /// Directories header files may be read from (checked again, symlinks resolved, at
    /// every read).
    pub header_file_dirs: Vec<PathBuf>,
    /// Whether `OTEL_EXPORTER_OTLP_HEADERS` were left out because the endpoint is neither the
    /// environment's nor listed by `--otel-env-headers-to`.
    pub env_headers_withheld: bool,
}

/// Default export timeout (OTLP exporter specification).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(DEFAULT_OTLP_TIMEOUT_SECS);

/// Picks between the backend's value and the environment's per the precedence.
fn pick<T>(explicit: Option<T>, env: Option<T>, precedence: EnvPrecedence) -> Option<T> {
    match precedence {
        EnvPrecedence::ExplicitFirst => explicit.or(env),
        EnvPrecedence::EnvFirst => env.or(explicit),
    }
}

/// An endpoint given as a URL in `OTEL_EXPORTER_OTLP_*ENDPOINT`: `(host:port, https, path)`.
fn endpoint_url(var: &str, url: &str) -> Result<(String, bool, String), SettingsError> {
    let bad = || SettingsError::Env {
        var: var.to_string(),
        value: url.to_string(),
        accepted: "an http:// or https:// URL with a host, e.g. http://collector:4317",
    };
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return Err(bad());
    }
    let default_port = if https { 443 } else { 80 };
    let has_port = match hostport.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => hostport.contains(':'),
    };
    let hostport = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    Ok((hostport, https, path.to_string()))
}

impl ExporterSettings {
    /// Resolves a backend's settings; `env` looks up environment variables (injected for
    /// tests), `sources` is what the pod owner allows ([`meshmetric_policies::headers`]).
    /// Errors name the variable and what is accepted, or the header and the rule it breaks.
    pub fn resolve(
        b: &DpOpenTelemetry,
        env: &dyn Fn(&str) -> Option<String>,
        sources: &SecretSources,
    ) -> Result<Self, SettingsError> {
        let policy = b.env;
        let use_env = policy.mode != EnvMode::Disabled;
        // (value, variable it came from)
        let var = |name: &str| -> Option<(String, String)> {
            if !use_env {
                return None;
            }
            let signal = format!("OTEL_EXPORTER_OTLP_METRICS_{name}");
            let shared = format!("OTEL_EXPORTER_OTLP_{name}");
            let from_signal = policy
                .allow_signal_overrides
                .then(|| env(&signal).map(|v| (v, signal)))
                .flatten();
            from_signal.or_else(|| env(&shared).map(|v| (v, shared)))
        };
        let prec = policy.precedence;
        let env_protocol = match var("PROTOCOL") {
            None => None,
            Some((v, _)) if v == "grpc" => Some(OtlpProtocol::Grpc),
            Some((v, _)) if v == "http/protobuf" || v == "http" => Some(OtlpProtocol::Http),
            Some((value, var)) => {
                return Err(SettingsError::Env {
                    var,
                    value,
                    accepted: "grpc, http/protobuf",
                });
            }
        };
        let protocol = match pick(b.protocol, env_protocol, prec).unwrap_or(OtlpProtocol::Grpc) {
            OtlpProtocol::Grpc => Protocol::Grpc,
            OtlpProtocol::Http => Protocol::Http,
        };
        // the endpoint: the backend's host:port (an empty host is the node-local collector),
        // or the environment's URL
        let env_endpoint = match var("ENDPOINT") {
            Some((url, name)) => {
                let (hostport, https, path) = endpoint_url(&name, &url)?;
                // a signal-specific URL is used as-is; the shared one gets the signal path
                let path = if name.contains("_METRICS_") && !path.is_empty() {
                    path
                } else {
                    format!("{}/v1/metrics", path.trim_end_matches('/'))
                };
                Some((hostport, https, path))
            }
            None if policy.mode == EnvMode::Required => return Err(SettingsError::RequiredEnvMissing),
            None => None,
        };
        let explicit_endpoint = {
            let host_ip = || {
                env("HOST_IP")
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "127.0.0.1".into())
            };
            let ep = match b.endpoint.strip_prefix(':') {
                Some(port) => format!("{}:{port}", host_ip()),
                None => b.endpoint.clone(),
            };
            let path = format!("{}/v1/metrics", b.path.as_deref().unwrap_or("").trim_end_matches('/'));
            (ep, b.tls.is_some(), path)
        };
        let (endpoint, env_https, path) = match pick(Some(explicit_endpoint), env_endpoint.clone(), prec) {
            Some(e) => e,
            None => unreachable!("the explicit endpoint is always given"),
        };
        let endpoint_from_env = env_endpoint.as_ref().is_some_and(|e| e.0 == endpoint);
        let env_timeout = match var("TIMEOUT") {
            None => None,
            Some((ms, var)) => Some(Duration::from_millis(ms.trim().parse().map_err(|_| {
                SettingsError::Env {
                    var,
                    value: ms.clone(),
                    accepted: "milliseconds",
                }
            })?)),
        };
        let timeout = pick(b.timeout.as_ref().map(|d| d.get()), env_timeout, prec).unwrap_or(DEFAULT_TIMEOUT);
        let env_compression = match var("COMPRESSION") {
            None => None,
            Some((v, _)) if v == "gzip" => Some(Compression::Gzip),
            Some((v, _)) if v == "none" => Some(Compression::None),
            Some((value, var)) => {
                return Err(SettingsError::Env {
                    var,
                    value,
                    accepted: "gzip, none",
                });
            }
        };
        let gzip = pick(b.compression, env_compression, prec) == Some(Compression::Gzip);
        let env_temporality = var("TEMPORALITY_PREFERENCE").map(|(t, _)| {
            if t.eq_ignore_ascii_case("delta") {
                Temporality::Delta
            } else {
                Temporality::Cumulative
            }
        });
        let temporality = pick(b.temporality, env_temporality, prec).unwrap_or(Temporality::Cumulative);
        let mut headers: Vec<(String, HeaderValue)> = Vec::new();
        for h in &b.headers {
            sources.check_source(h)?;
            let v = match (&h.value, &h.value_from) {
                (Some(v), None) => HeaderValue::Inline(v.clone()),
                (None, Some(from)) => match (&from.file, &from.env) {
                    (Some(f), None) => HeaderValue::File(PathBuf::from(f)),
                    (None, Some(e)) => HeaderValue::Env(e.clone()),
                    _ => continue, // refused by validation
                },
                _ => continue, // refused by validation
            };
            headers.push((h.name.to_ascii_lowercase(), v));
        }
        let env_headers = var("HEADERS");
        let env_headers_withheld =
            env_headers.is_some() && !endpoint_from_env && !sources.env_headers_allowed(&endpoint);
        if let Some((list, var)) = env_headers.filter(|_| !env_headers_withheld) {
            for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(SettingsError::Env {
                        var,
                        value: "<redacted>".into(),
                        accepted: "key=value pairs separated by commas",
                    });
                };
                let k = k.trim().to_ascii_lowercase();
                let v = HeaderValue::FromEnvHeaders(percent_decode(v.trim()));
                match headers.iter_mut().find(|(n, _)| *n == k) {
                    Some(existing) if prec == EnvPrecedence::EnvFirst => existing.1 = v,
                    Some(_) => {}
                    None => headers.push((k, v)),
                }
            }
        }
        let env_tls = {
            let (ca, cert, key) = (var("CERTIFICATE"), var("CLIENT_CERTIFICATE"), var("CLIENT_KEY"));
            let insecure = var("INSECURE").is_some_and(|(v, _)| v.eq_ignore_ascii_case("true"));
            (!insecure && (ca.is_some() || cert.is_some() || endpoint_from_env && env_https)).then(|| TlsSettings {
                ca_file: ca.map(|c| PathBuf::from(c.0)),
                cert_file: cert.map(|c| PathBuf::from(c.0)),
                key_file: key.map(|c| PathBuf::from(c.0)),
                server_name: None,
            })
        };
        let explicit_tls = b.tls.as_ref().map(|t| TlsSettings {
            ca_file: t.ca_file.clone().map(PathBuf::from),
            cert_file: t.cert_file.clone().map(PathBuf::from),
            key_file: t.key_file.clone().map(PathBuf::from),
            server_name: t.server_name.clone(),
        });
        let tls = if endpoint_from_env && !env_https {
            None // the environment's http:// endpoint is plaintext
        } else {
            pick(explicit_tls, env_tls, prec)
        };
        check_transport(&b.headers, &endpoint, tls.is_some())?;
        Ok(Self {
            header_file_dirs: sources.header_file_dirs.iter().map(PathBuf::from).collect(),
            env_headers_withheld,
            endpoint,
            path,
            protocol,
            interval: b.refresh_interval.get(),
            timeout,
            gzip,
            temporality,
            queue_size: b.queue_size.map_or(DEFAULT_QUEUE_SIZE as usize, |q| q as usize),
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
    use meshmetric_policies::otelbackend::ResolvedEnvPolicy;
    use meshmetric_policies::values::Duration as GoDuration;

    fn base() -> DpOpenTelemetry {
        DpOpenTelemetry {
            endpoint: "otel:4317".into(),
            refresh_interval: GoDuration::parse("10s").unwrap(),
            protocol: None,
            path: None,
            timeout: None,
            compression: None,
            temporality: None,
            queue_size: None,
            headers: vec![],
            tls: None,
            env: ResolvedEnvPolicy::INLINE,
        }
    }

    /// The pod owner allows files under /run/secrets, variables OTLP_*, and environment
    /// headers to `otel`.
    fn open() -> SecretSources {
        SecretSources {
            header_file_dirs: vec!["/run/secrets".into()],
            header_env_prefixes: vec!["OTLP_".into()],
            env_headers_to: vec!["otel".into()],
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_policy_and_environment() {
        let none = |_: &str| None;
        let s = ExporterSettings::resolve(&base(), &none, &open()).unwrap();
        assert_eq!(
            (
                s.protocol,
                s.timeout,
                s.gzip,
                s.temporality,
                s.queue_size,
                s.path.as_str()
            ),
            (
                Protocol::Grpc,
                DEFAULT_TIMEOUT,
                false,
                Temporality::Cumulative,
                100,
                "/v1/metrics"
            )
        );
        assert!(s.tls.is_none());
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20x,x-team=a"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ]);
        let s = ExporterSettings::resolve(&base(), &env, &open()).unwrap();
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
        // an inline endpoint's explicit values win over the environment
        let mut b = base();
        b.protocol = Some(OtlpProtocol::Grpc);
        b.compression = Some(Compression::None);
        b.temporality = Some(Temporality::Cumulative);
        b.headers = vec![Header {
            name: "Authorization".into(),
            value: None,
            value_from: Some(ValueFrom {
                file: Some("/run/secrets/t".into()),
                env: None,
            }),
        }];
        b.tls = Some(Default::default());
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert_eq!(
            (s.protocol, s.gzip, s.temporality),
            (Protocol::Grpc, false, Temporality::Cumulative)
        );
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.headers[0].1, HeaderValue::File("/run/secrets/t".into()));
    }

    #[test]
    fn env_policy_of_a_meshopentelemetrybackend() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env-collector:4318/base"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let mut b = base();
        b.protocol = Some(OtlpProtocol::Grpc);
        // Kuma's default: Optional + EnvFirst: the environment wins, per-signal variables too
        b.env = ResolvedEnvPolicy {
            mode: EnvMode::Optional,
            precedence: EnvPrecedence::EnvFirst,
            allow_signal_overrides: true,
        };
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.path.as_str(), s.protocol, s.tls.is_some()),
            ("env-collector:4318", "/base/v1/metrics", Protocol::Http, true)
        );
        // no per-signal overrides: the shared protocol applies
        b.env.allow_signal_overrides = false;
        assert_eq!(
            ExporterSettings::resolve(&b, &env, &open()).unwrap().protocol,
            Protocol::Grpc
        );
        // ExplicitFirst: the backend's fields win, the environment fills gaps
        b.env.precedence = EnvPrecedence::ExplicitFirst;
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert_eq!((s.endpoint.as_str(), s.protocol), ("otel:4317", Protocol::Grpc));
        // Disabled: the environment is ignored
        b.env.mode = EnvMode::Disabled;
        b.env.precedence = EnvPrecedence::EnvFirst;
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert_eq!((s.endpoint.as_str(), s.tls.is_some()), ("otel:4317", false));
        // Required without the variable: not started, with the reason
        b.env.mode = EnvMode::Required;
        let none = |_: &str| None;
        assert_eq!(
            ExporterSettings::resolve(&b, &none, &open()),
            Err(SettingsError::RequiredEnvMissing)
        );
        // the node-local collector: $HOST_IP, else 127.0.0.1
        let mut b = base();
        b.endpoint = ":4317".into();
        assert_eq!(
            ExporterSettings::resolve(&b, &none, &open()).unwrap().endpoint,
            "127.0.0.1:4317"
        );
        let host = env_of(&[("HOST_IP", "10.1.2.3")]);
        assert_eq!(
            ExporterSettings::resolve(&b, &host, &open()).unwrap().endpoint,
            "10.1.2.3:4317"
        );
    }

    #[test]
    fn what_the_pod_owner_does_not_allow_is_refused() {
        let none = |_: &str| None;
        let header = |file: Option<&str>, env: Option<&str>| Header {
            name: "authorization".into(),
            value: None,
            value_from: Some(ValueFrom {
                file: file.map(Into::into),
                env: env.map(Into::into),
            }),
        };
        let mut b = base();
        b.tls = Some(Default::default());
        for (h, sources) in [
            (header(Some("/etc/shadow"), None), open()),
            (header(Some("/run/secrets/../../etc/shadow"), None), open()),
            (header(None, Some("AWS_SECRET_ACCESS_KEY")), open()),
            (header(Some("/run/secrets/t"), None), SecretSources::default()),
            (header(None, Some("OTLP_TOKEN")), SecretSources::default()),
        ] {
            b.headers = vec![h];
            let e = ExporterSettings::resolve(&b, &none, &sources).unwrap_err();
            assert!(matches!(e, SettingsError::Refused(_)), "{e}");
            assert!(e.to_string().contains("meshmetric-dp --header-"), "{e}");
        }
        // a secret in plaintext to a remote collector
        b.headers = vec![header(None, Some("OTLP_TOKEN"))];
        b.tls = None;
        let e = ExporterSettings::resolve(&b, &none, &open()).unwrap_err();
        assert!(e.to_string().contains("neither TLS nor loopback"), "{e}");
        // ... but to a loopback one it goes
        b.endpoint = "127.0.0.1:4317".into();
        assert!(ExporterSettings::resolve(&b, &none, &open()).is_ok());
        // the pod's environment headers go only where the pod owner allows
        let env = env_of(&[("OTEL_EXPORTER_OTLP_HEADERS", "authorization=pod-secret")]);
        let mut b = base();
        b.endpoint = "policy-chosen:4317".into();
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert!(s.headers.is_empty() && s.env_headers_withheld);
        b.endpoint = "otel:4317".into();
        let s = ExporterSettings::resolve(&b, &env, &open()).unwrap();
        assert_eq!(s.headers.len(), 1);
        // an endpoint the environment chose gets them
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=pod-secret"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://pods-collector:4318"),
        ]);
        b.env = ResolvedEnvPolicy {
            mode: EnvMode::Optional,
            precedence: EnvPrecedence::EnvFirst,
            allow_signal_overrides: true,
        };
        let s = ExporterSettings::resolve(&b, &env, &SecretSources::default()).unwrap();
        assert_eq!((s.endpoint.as_str(), s.headers.len()), ("pods-collector:4318", 1));
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
