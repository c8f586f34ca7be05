//! Validation of MeshMetric and Dataplane resources.
//!
//! Every rule is checked and every violation reported, each with a JSON-path-like field
//! (`spec.default.backends[0].prometheus.port`) and a message saying what is accepted.
//! Rules: Kuma's MeshMetric validator (MADR 035) plus the checks Kuma misses (duplicate
//! `clientId`s and ports, paths without a leading `/`, empty `match`, non-positive
//! `refreshInterval`, duplicate application names/ports and profiles, `ActiveMTLSBackend`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::dataplane::Dataplane;
use crate::meshmetric::{Conf, MeshMetricSpec, Selector};

/// One broken rule: where (`field`) and what is wrong / accepted (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All violations of one resource (empty = valid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation::new(field, message));
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Accepted `targetRef.kind` values.
pub const TARGET_REF_KINDS: &[&str] = &["Mesh", "Dataplane", "MeshSubset", "MeshService", "MeshServiceSubset"];
/// Accepted profile names.
pub const PROFILE_NAMES: &[&str] = &["All", "Basic", "None"];
/// Accepted selector types.
pub const SELECTOR_TYPES: &[&str] = &["Prefix", "Regex", "Exact", "Contains"];

/// Validates a MeshMetric `spec`; returns every violation (paths start with `spec.`).
pub fn validate_meshmetric(spec: &MeshMetricSpec) -> Violations {
    let mut v = Violations::default();
    if let Some(tr) = &spec.target_ref {
        let f = "spec.targetRef";
        if tr.kind.is_empty() {
            v.push(
                format!("{f}.kind"),
                format!("required; accepted: {}", TARGET_REF_KINDS.join(", ")),
            );
        } else if !TARGET_REF_KINDS.contains(&tr.kind.as_str()) {
            v.push(
                format!("{f}.kind"),
                format!("unknown kind {:?}; accepted: {}", tr.kind, TARGET_REF_KINDS.join(", ")),
            );
        }
        let needs_name = matches!(tr.kind.as_str(), "MeshService" | "MeshServiceSubset");
        if needs_name && tr.name.as_deref().unwrap_or("").is_empty() {
            v.push(format!("{f}.name"), format!("required for kind {}", tr.kind));
        }
        if tr.kind == "Mesh"
            && (tr.name.is_some() || tr.labels.is_some() || tr.tags.is_some() || tr.section_name.is_some())
        {
            v.push(f, "kind Mesh takes no name, labels, tags or sectionName");
        }
        if tr.tags.is_some() && !matches!(tr.kind.as_str(), "MeshSubset" | "MeshServiceSubset") {
            v.push(
                format!("{f}.tags"),
                "only allowed with kind MeshSubset or MeshServiceSubset",
            );
        }
        if tr.labels.is_some() && tr.kind != "Dataplane" {
            v.push(format!("{f}.labels"), "only allowed with kind Dataplane");
        }
        if tr.labels.is_some() && tr.name.is_some() {
            v.push(format!("{f}.labels"), "use either name or labels, not both");
        }
        if tr.section_name.is_some() && tr.kind != "Dataplane" {
            v.push(format!("{f}.sectionName"), "only allowed with kind Dataplane");
        }
    }
    validate_conf(&spec.default, "spec.default", &mut v);
    v
}

fn validate_conf(conf: &Conf, f: &str, v: &mut Violations) {
    if let Some(profiles) = conf.sidecar.as_ref().and_then(|s| s.profiles.as_ref()) {
        let pf = format!("{f}.sidecar.profiles");
        let mut seen = BTreeSet::new();
        for (i, p) in profiles.append_profiles.iter().flatten().enumerate() {
            let field = format!("{pf}.appendProfiles[{i}].name");
            if p.name.is_empty() {
                v.push(field, format!("required; accepted: {}", PROFILE_NAMES.join(", ")));
            } else if !PROFILE_NAMES.contains(&p.name.as_str()) {
                v.push(
                    field,
                    format!("unknown profile {:?}; accepted: {}", p.name, PROFILE_NAMES.join(", ")),
                );
            } else if !seen.insert(p.name.as_str()) {
                v.push(field, format!("profile {:?} is listed twice", p.name));
            }
        }
        for (list, name) in [(&profiles.include, "include"), (&profiles.exclude, "exclude")] {
            for (i, s) in list.iter().flatten().enumerate() {
                validate_selector(s, &format!("{pf}.{name}[{i}]"), v);
            }
        }
    }
    let mut app_names = BTreeMap::new();
    let mut app_ports = BTreeMap::new();
    for (i, a) in conf.applications.iter().flatten().enumerate() {
        let af = format!("{f}.applications[{i}]");
        check_port(a.port, &format!("{af}.port"), v);
        if let Some(p) = &a.path {
            check_path(p, &format!("{af}.path"), v);
        }
        if let Some(n) = &a.name
            && let Some(j) = app_names.insert(n.clone(), i)
        {
            v.push(
                format!("{af}.name"),
                format!("name {n:?} is already used by applications[{j}]"),
            );
        }
        let key = (a.address.clone().unwrap_or_default(), a.port);
        if let Some(j) = app_ports.insert(key, i) {
            v.push(
                format!("{af}.port"),
                format!("port {} is already scraped by applications[{j}]", a.port),
            );
        }
    }
    let mut client_ids = BTreeMap::new();
    let mut ports = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    for (i, b) in conf.backends.iter().flatten().enumerate() {
        let bf = format!("{f}.backends[{i}]");
        match b.kind.as_str() {
            "Prometheus" => {
                if b.open_telemetry.is_some() {
                    v.push(format!("{bf}.openTelemetry"), "must not be set for type Prometheus");
                }
                let Some(p) = &b.prometheus else {
                    v.push(format!("{bf}.prometheus"), "required for type Prometheus");
                    continue;
                };
                let pf = format!("{bf}.prometheus");
                if let Some(port) = p.port {
                    check_port(port, &format!("{pf}.port"), v);
                }
                if let Some(path) = &p.path {
                    check_path(path, &format!("{pf}.path"), v);
                }
                let port = p.port.unwrap_or(crate::meshmetric::DEFAULT_PROMETHEUS_PORT as i64);
                if let Some(j) = ports.insert(port, i) {
                    v.push(
                        format!("{pf}.port"),
                        format!(
                            "port {port} is already used by backends[{j}]; each Prometheus backend needs its own port"
                        ),
                    );
                }
                let cid = p.client_id.clone().unwrap_or_default();
                if let Some(j) = client_ids.insert(cid.clone(), i) {
                    let what = if cid.is_empty() {
                        "no clientId (the default client)".to_string()
                    } else {
                        format!("clientId {cid:?}")
                    };
                    v.push(
                        format!("{pf}.clientId"),
                        format!("backends[{j}] already has {what}; clientIds must be unique"),
                    );
                }
                if let Some(tls) = &p.tls {
                    match tls.mode.as_str() {
                        "Disabled" | "ProvidedTLS" => {}
                        "" => v.push(format!("{pf}.tls.mode"), "required; accepted: Disabled, ProvidedTLS"),
                        "ActiveMTLSBackend" => v.push(
                            format!("{pf}.tls.mode"),
                            "ActiveMTLSBackend is not supported (it needs a mesh CA); accepted: Disabled, ProvidedTLS",
                        ),
                        m => v.push(
                            format!("{pf}.tls.mode"),
                            format!("unknown mode {m:?}; accepted: Disabled, ProvidedTLS"),
                        ),
                    }
                }
            }
            "OpenTelemetry" => {
                if b.prometheus.is_some() {
                    v.push(format!("{bf}.prometheus"), "must not be set for type OpenTelemetry");
                }
                let Some(o) = &b.open_telemetry else {
                    v.push(format!("{bf}.openTelemetry"), "required for type OpenTelemetry");
                    continue;
                };
                let of = format!("{bf}.openTelemetry");
                if let Err(e) = check_host_port(&o.endpoint) {
                    v.push(format!("{of}.endpoint"), e);
                }
                if let Some(ri) = &o.refresh_interval {
                    match parse_duration(ri) {
                        Ok(d) if d.is_zero() => v.push(format!("{of}.refreshInterval"), "must be greater than 0"),
                        Ok(_) => {}
                        Err(e) => v.push(format!("{of}.refreshInterval"), e),
                    }
                }
                validate_otel(o, &of, v);
                if let Some(j) = endpoints.insert(o.endpoint.clone(), i) {
                    v.push(
                        format!("{of}.endpoint"),
                        format!(
                            "endpoint {:?} is already used by backends[{j}]; each collector needs one backend",
                            o.endpoint
                        ),
                    );
                }
            }
            "" => v.push(format!("{bf}.type"), "required; accepted: Prometheus, OpenTelemetry"),
            other => v.push(
                format!("{bf}.type"),
                format!("unknown backend type {other:?}; accepted: Prometheus, OpenTelemetry"),
            ),
        }
    }
}

fn validate_selector(s: &Selector, f: &str, v: &mut Violations) {
    if s.kind.is_empty() {
        v.push(
            format!("{f}.type"),
            format!("required; accepted: {}", SELECTOR_TYPES.join(", ")),
        );
    } else if !SELECTOR_TYPES.contains(&s.kind.as_str()) {
        v.push(
            format!("{f}.type"),
            format!(
                "unknown selector type {:?}; accepted: {}",
                s.kind,
                SELECTOR_TYPES.join(", ")
            ),
        );
    }
    if s.pattern.is_empty() {
        v.push(format!("{f}.match"), "must not be empty");
    } else if s.kind == "Regex"
        && let Err(e) = regex::Regex::new(&s.pattern)
    {
        let msg = e.to_string().lines().last().unwrap_or_default().trim().to_string();
        v.push(
            format!("{f}.match"),
            format!("invalid regular expression {:?}: {msg}", s.pattern),
        );
    }
}

fn check_port(port: i64, field: &str, v: &mut Violations) {
    if port == 0 {
        v.push(field, "required; accepted: a port 1-65535");
    } else if !(1..=65535).contains(&port) {
        v.push(field, format!("port {port} is out of range; accepted: 1-65535"));
    }
}

fn check_path(path: &str, field: &str, v: &mut Violations) {
    if !path.starts_with('/') {
        v.push(field, format!("path {path:?} must start with \"/\""));
    } else if path.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
        v.push(field, format!("path {path:?} must not contain whitespace, '?' or '#'"));
    }
}

/// Header names whose values are secrets: they must come from `valueFrom`.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie")
        || ["token", "secret", "key", "password", "auth"]
            .iter()
            .any(|w| n.contains(w))
}

fn validate_otel(o: &crate::meshmetric::OpenTelemetryBackend, of: &str, v: &mut Violations) {
    if let Some(p) = &o.protocol
        && !matches!(p.as_str(), "grpc" | "http")
    {
        v.push(
            format!("{of}.protocol"),
            format!("unknown protocol {p:?}; accepted: grpc, http"),
        );
    }
    if let Some(t) = &o.timeout {
        match parse_duration(t) {
            Ok(d) if d.is_zero() => v.push(format!("{of}.timeout"), "must be greater than 0"),
            Ok(_) => {}
            Err(e) => v.push(format!("{of}.timeout"), e),
        }
    }
    if let Some(c) = &o.compression
        && !matches!(c.as_str(), "gzip" | "none")
    {
        v.push(
            format!("{of}.compression"),
            format!("unknown compression {c:?}; accepted: gzip, none"),
        );
    }
    if let Some(t) = &o.temporality
        && !matches!(t.as_str(), "Cumulative" | "Delta")
    {
        v.push(
            format!("{of}.temporality"),
            format!("unknown temporality {t:?}; accepted: Cumulative, Delta"),
        );
    }
    if let Some(q) = o.queue_size
        && !(1..=10000).contains(&q)
    {
        v.push(
            format!("{of}.queueSize"),
            format!("{q} is out of range; accepted: 1-10000"),
        );
    }
    let mut names = BTreeMap::new();
    for (i, h) in o.headers.iter().flatten().enumerate() {
        let hf = format!("{of}.headers[{i}]");
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if h.name.is_empty() {
            v.push(format!("{hf}.name"), "required");
        } else if !h.name.chars().all(token) {
            v.push(
                format!("{hf}.name"),
                format!("{:?} is not a valid HTTP header name", h.name),
            );
        } else if let Some(j) = names.insert(h.name.to_ascii_lowercase(), i) {
            v.push(
                format!("{hf}.name"),
                format!("header {:?} is already set by headers[{j}]", h.name),
            );
        }
        match (&h.value, &h.value_from) {
            (Some(_), Some(_)) => v.push(hf.clone(), "set either value or valueFrom, not both"),
            (None, None) => v.push(hf.clone(), "required: value or valueFrom"),
            (Some(_), None) if is_secret_header(&h.name) => v.push(
                format!("{hf}.value"),
                format!(
                    "header {:?} carries a secret: give it with valueFrom.file or valueFrom.env, not inline",
                    h.name
                ),
            ),
            (_, Some(from)) => match (&from.file, &from.env) {
                (Some(f), None) if !f.starts_with('/') => v.push(
                    format!("{hf}.valueFrom.file"),
                    format!("{f:?} must be an absolute path"),
                ),
                (None, Some(e))
                    if e.is_empty()
                        || e.starts_with(|c: char| c.is_ascii_digit())
                        || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    v.push(
                        format!("{hf}.valueFrom.env"),
                        format!("{e:?} is not a valid environment variable name"),
                    )
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => v.push(format!("{hf}.valueFrom"), "set exactly one of file or env"),
            },
            _ => {}
        }
    }
    if let Some(tls) = &o.tls {
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            v.push(format!("{of}.tls"), "certFile and keyFile must be given together");
        }
        for (name, path) in [
            ("caFile", &tls.ca_file),
            ("certFile", &tls.cert_file),
            ("keyFile", &tls.key_file),
        ] {
            if let Some(p) = path
                && !p.starts_with('/')
            {
                v.push(format!("{of}.tls.{name}"), format!("{p:?} must be an absolute path"));
            }
        }
    }
}

/// Checks an OTLP endpoint given as `host:port` (Kuma rule: not a URL).
pub fn check_host_port(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("required; accepted: host:port, e.g. otel-collector:4317".into());
    }
    if endpoint.contains("://") {
        return Err(format!(
            "{endpoint:?} is a URL; accepted: host:port, e.g. otel-collector:4317"
        ));
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!(
            "{endpoint:?} has no port; accepted: host:port, e.g. otel-collector:4317"
        ));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("{endpoint:?} has no valid host; accepted: host:port"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!(
            "{endpoint:?} has an invalid port; accepted: host:port with port 1-65535"
        )),
    }
}

/// Parses a Go-style duration (`300ms`, `30s`, `1m`, `1h30m`); units ns, us, ms, s, m, h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}; accepted: a number with a unit, e.g. 30s, 1m, 1h30m");
    if s.is_empty() {
        return Err(err());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Validates a Dataplane's `networking` (`prefix` is its field path).
pub fn validate_dataplane(dp: &Dataplane, prefix: &str) -> Violations {
    let mut v = Violations::default();
    let n = &dp.networking;
    if n.address.parse::<std::net::IpAddr>().is_err() {
        v.push(
            format!("{prefix}.address"),
            format!("{:?} is not an IP address; accepted: e.g. 10.0.0.1", n.address),
        );
    }
    let mut ports = BTreeMap::new();
    for (i, ib) in n.inbound.iter().enumerate() {
        let f = format!("{prefix}.inbound[{i}]");
        check_port(ib.port, &format!("{f}.port"), &mut v);
        if let Some(sp) = ib.service_port {
            check_port(sp, &format!("{f}.servicePort"), &mut v);
        }
        if let Some(j) = ports.insert(ib.port, i) {
            v.push(
                format!("{f}.port"),
                format!("port {} is already used by inbound[{j}]", ib.port),
            );
        }
    }
    if let Some(a) = &n.admin {
        check_port(a.port, &format!("{prefix}.admin.port"), &mut v);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn host_port() {
        assert!(check_host_port("otel:4317").is_ok());
        assert!(check_host_port("[::1]:4317").is_ok());
        assert!(check_host_port("http://otel:4317").is_err());
        assert!(check_host_port("otel").is_err());
        assert!(check_host_port("otel:0").is_err());
    }
}
