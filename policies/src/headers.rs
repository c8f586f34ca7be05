//! Where OTLP header values may come from, and where they may be sent.
//!
//! A policy author chooses a backend's endpoint and headers, but not what the proxy may read:
//! that is the pod owner's decision, given to `meshmetric-dp` and declared to the control plane
//! in the proxy's node metadata ([`crate::contract::META_SECRET_SOURCES`]) as
//! [`SecretSources`]. The rules, applied by the plugin before it sends anything and by the
//! control plane to show a refused backend in `inspect`:
//!
//! - an inline `value` is accepted only for the non-secret header names of [`INLINE_HEADERS`]
//!   (tenant and dataset selectors); every other header must use `valueFrom`;
//! - `valueFrom.file` must lie in a directory the pod owner allows (`--header-file-dir`,
//!   compared after resolving `.`/`..` lexically here and symlinks again when read);
//! - `valueFrom.env` must start with a prefix the pod owner allows (`--header-env-prefix`);
//! - a value from a file or the environment is secret and is sent only over TLS, or to a
//!   loopback address;
//! - the pod's own `OTEL_EXPORTER_OTLP_HEADERS` go only to an endpoint the environment chose,
//!   or to one the pod owner lists (`--otel-env-headers-to`).
//!
//! The defaults allow no file and no variable: a policy that asks for one is refused on that
//! proxy with a message naming the header, the source and the flag.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::meshmetric::Header;

/// Header names whose values may be written inline in a policy: they select a tenant, dataset
/// or source and are not credentials. Compared case-insensitively.
pub const INLINE_HEADERS: &[&str] = &[
    "x-scope-orgid",
    "x-tenant",
    "x-tenant-id",
    "x-org-id",
    "x-honeycomb-dataset",
    "x-dataset",
    "x-environment",
    "x-source",
    "user-agent",
];

/// Whether header `name` may carry an inline value ([`INLINE_HEADERS`]).
pub fn inline_allowed(name: &str) -> bool {
    INLINE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Most entries of each [`SecretSources`] list read from node metadata.
pub const MAX_SOURCES: usize = 64;

/// What the pod owner lets policies read and where the pod's environment headers may go, set
/// on `meshmetric-dp` and declared in node metadata. Empty lists allow nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSources {
    /// Absolute directories header files may be read from (`--header-file-dir`).
    #[serde(default)]
    pub header_file_dirs: Vec<String>,
    /// Prefixes of environment variables header values may be read from
    /// (`--header-env-prefix`).
    #[serde(default)]
    pub header_env_prefixes: Vec<String>,
    /// Endpoints (`host` or `host:port`) that also get `OTEL_EXPORTER_OTLP_HEADERS`
    /// (`--otel-env-headers-to`); an endpoint the environment chose always gets them.
    #[serde(default)]
    pub env_headers_to: Vec<String>,
}

/// Why a header cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderRefusal {
    /// `valueFrom.file` is outside every allowed directory.
    #[error(
        "header {header:?}: valueFrom.file {file:?} is not in a directory this proxy allows (meshmetric-dp --header-file-dir: {allowed})"
    )]
    FileNotAllowed {
        /// Header name.
        header: String,
        /// The file.
        file: String,
        /// The allowed directories, or `none`.
        allowed: String,
    },
    /// `valueFrom.env` has no allowed prefix.
    #[error(
        "header {header:?}: valueFrom.env {var:?} does not start with a prefix this proxy allows (meshmetric-dp --header-env-prefix: {allowed})"
    )]
    EnvNotAllowed {
        /// Header name.
        header: String,
        /// The variable.
        var: String,
        /// The allowed prefixes, or `none`.
        allowed: String,
    },
    /// A secret value would travel in plaintext to a non-loopback address.
    #[error(
        "header {header:?} carries a secret and {endpoint} is neither TLS nor loopback: give the backend tls, or use a loopback endpoint"
    )]
    Plaintext {
        /// Header name.
        header: String,
        /// The endpoint.
        endpoint: String,
    },
}

fn shown(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// `path` with `.` and `..` resolved lexically; `None` when it is not absolute or climbs
/// above `/`.
pub fn normalize_absolute(path: &str) -> Option<String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::Prefix(_) => return None,
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether `file` (normalised) lies below `dir` (normalised).
fn below(file: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || file.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl SecretSources {
    /// Whether `file` may be read (lexically: after `.`/`..`; the plugin checks symlinks again
    /// when it reads).
    pub fn file_allowed(&self, file: &str) -> bool {
        let Some(f) = normalize_absolute(file) else {
            return false;
        };
        self.header_file_dirs
            .iter()
            .filter_map(|d| normalize_absolute(d))
            .any(|d| below(&f, &d))
    }

    /// Whether environment variable `var` may be read.
    pub fn env_allowed(&self, var: &str) -> bool {
        self.header_env_prefixes
            .iter()
            .any(|p| !p.is_empty() && var.starts_with(p.as_str()))
    }

    /// Checks where header `h` reads its value from. Inline values are checked by validation.
    pub fn check_source(&self, h: &Header) -> Result<(), HeaderRefusal> {
        let Some(from) = &h.value_from else { return Ok(()) };
        if let Some(f) = &from.file
            && !self.file_allowed(f)
        {
            return Err(HeaderRefusal::FileNotAllowed {
                header: h.name.clone(),
                file: f.clone(),
                allowed: shown(&self.header_file_dirs),
            });
        }
        if let Some(e) = &from.env
            && !self.env_allowed(e)
        {
            return Err(HeaderRefusal::EnvNotAllowed {
                header: h.name.clone(),
                var: e.clone(),
                allowed: shown(&self.header_env_prefixes),
            });
        }
        Ok(())
    }

    /// Whether the pod's `OTEL_EXPORTER_OTLP_HEADERS` may go to `endpoint` (`host:port`) that
    /// the environment did not choose.
    pub fn env_headers_allowed(&self, endpoint: &str) -> bool {
        let host = host_of(endpoint);
        self.env_headers_to
            .iter()
            .any(|e| e.eq_ignore_ascii_case(endpoint) || e.eq_ignore_ascii_case(host))
    }
}

/// The host of `host:port` (brackets of an IPv6 address removed).
pub fn host_of(endpoint: &str) -> &str {
    let host = match endpoint.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => endpoint,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `host` is `localhost` or a loopback IP address.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks that secret headers (values from a file or the environment) of a backend sending to
/// `endpoint` (`host:port`) travel over TLS or stay on the host.
pub fn check_transport(headers: &[Header], endpoint: &str, tls: bool) -> Result<(), HeaderRefusal> {
    if tls || is_loopback_host(host_of(endpoint)) {
        return Ok(());
    }
    match headers.iter().find(|h| h.value_from.is_some()) {
        Some(h) => Err(HeaderRefusal::Plaintext {
            header: h.name.clone(),
            endpoint: endpoint.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meshmetric::ValueFrom;

    fn from_file(f: &str) -> Header {
        Header {
            name: "authorization".into(),
            value: None,
            value_from: Some(ValueFrom {
                file: Some(f.into()),
                env: None,
            }),
        }
    }

    fn from_env(e: &str) -> Header {
        Header {
            name: "x-api-key".into(),
            value: None,
            value_from: Some(ValueFrom {
                file: None,
                env: Some(e.into()),
            }),
        }
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let s = SecretSources::default();
        let e = s.check_source(&from_file("/etc/shadow")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "header \"authorization\": valueFrom.file \"/etc/shadow\" is not in a directory this proxy allows (meshmetric-dp --header-file-dir: none)"
        );
        assert!(matches!(
            s.check_source(&from_env("HOME")),
            Err(HeaderRefusal::EnvNotAllowed { .. })
        ));
    }

    #[test]
    fn files_only_below_allowed_directories() {
        let s = SecretSources {
            header_file_dirs: vec!["/var/run/secrets/otlp/".into()],
            ..Default::default()
        };
        assert!(s.file_allowed("/var/run/secrets/otlp/token"));
        assert!(s.file_allowed("/var/run/secrets/otlp/./sub/token"));
        assert!(!s.file_allowed("/var/run/secrets/otlp/../../../etc/shadow"));
        assert!(!s.file_allowed("/var/run/secrets/otlp-other/token"));
        assert!(!s.file_allowed("/var/run/secrets/otlp"));
        assert!(!s.file_allowed("relative/token"));
        assert!(!s.file_allowed("/../etc/passwd"));
    }

    #[test]
    fn env_only_with_allowed_prefix() {
        let s = SecretSources {
            header_env_prefixes: vec!["OTLP_".into(), String::new()],
            ..Default::default()
        };
        assert!(s.check_source(&from_env("OTLP_TOKEN")).is_ok());
        assert!(s.check_source(&from_env("AWS_SECRET_ACCESS_KEY")).is_err());
    }

    #[test]
    fn secrets_need_tls_unless_loopback() {
        let h = [from_env("OTLP_TOKEN")];
        assert!(check_transport(&h, "127.0.0.1:4317", false).is_ok());
        assert!(check_transport(&h, "[::1]:4317", false).is_ok());
        assert!(check_transport(&h, "localhost:4317", false).is_ok());
        assert!(check_transport(&h, "collector:4317", true).is_ok());
        let e = check_transport(&h, "evil.example:80", false).unwrap_err();
        assert!(e.to_string().contains("evil.example:80"), "{e}");
        let inline = [Header {
            name: "x-tenant".into(),
            value: Some("a".into()),
            value_from: None,
        }];
        assert!(check_transport(&inline, "evil.example:80", false).is_ok());
    }

    #[test]
    fn env_headers_only_to_listed_endpoints() {
        let s = SecretSources {
            env_headers_to: vec!["collector.observability".into(), "10.0.0.1:4318".into()],
            ..Default::default()
        };
        assert!(s.env_headers_allowed("collector.observability:4317"));
        assert!(s.env_headers_allowed("10.0.0.1:4318"));
        assert!(!s.env_headers_allowed("10.0.0.1:4317"));
        assert!(!s.env_headers_allowed("evil:4317"));
    }

    #[test]
    fn inline_allow_list() {
        assert!(inline_allowed("X-Scope-OrgID"));
        for secret in [
            "authorization",
            "x-honeycomb-team",
            "uptrace-dsn",
            "x-api-key",
            "dd-api-key",
        ] {
            assert!(!inline_allowed(secret), "{secret}");
        }
    }
}
