//! Validation of a MeshMetric spec.
//!
//! Every rule is checked and every violation reported, each with a JSON-path-like field
//! (`spec.default.backends[0].prometheus.port`) and a message saying what is accepted. Rules:
//! Kuma 2.14.3's MeshMetric validator (`pkg/plugins/policies/meshmetric/api/v1alpha1/
//! validator.go`) and top-level targetRef rules ([`crate::targetref`]), plus the checks Kuma
//! misses, listed in `docs/policy-reference.md` under "stricter than Kuma": duplicate
//! `clientId`s, two backends on one port, duplicate application names or endpoints, empty
//! `match`, duplicate `appendProfiles`, a zero `refreshInterval` or `timeout`,
//! `ActiveMTLSBackend`, and the OTLP extension settings.
//!
//! Deprecated forms Kuma 2.14 still accepts produce [`Warning`]s instead.

use std::collections::{BTreeMap, BTreeSet};

use crate::meshmetric::{
    Backend, BackendRefKind, BackendType, Conf, Header, MIN_REFRESH_INTERVAL, MeshMetricSpec, OpenTelemetryBackend,
    OtlpTls, QUEUE_SIZE_RANGE, Selector, SelectorType, TlsMode,
};
use crate::meta::PolicyRole;
use crate::values::Duration;
use crate::violation::{Violations, Warning};

/// Validates a MeshMetric `spec` of a policy with `role`; returns every violation (paths start
/// with `spec.`) and the warnings of an accepted policy.
pub fn validate_meshmetric(spec: &MeshMetricSpec, role: PolicyRole, v: &mut Violations) -> Vec<Warning> {
    let mut w = Vec::new();
    if let Some(tr) = &spec.target_ref {
        tr.validate("spec.targetRef", role, v, &mut w);
    }
    validate_conf(&spec.default, "spec.default", v, &mut w);
    if spec.target_ref.is_none() && spec.default == Conf::default() {
        w.push(Warning::new(
            "spec",
            "the policy has neither targetRef nor default: it applies to the whole mesh and changes nothing",
        ));
    }
    w
}

fn validate_conf(conf: &Conf, f: &str, v: &mut Violations, w: &mut Vec<Warning>) {
    if let Some(r) = &conf.otlp_receiver {
        let grpc = r
            .grpc_port
            .map_or(crate::meshmetric::OtlpReceiver::DEFAULT_GRPC_PORT, |p| p.get());
        let http = r
            .http_port
            .map_or(crate::meshmetric::OtlpReceiver::DEFAULT_HTTP_PORT, |p| p.get());
        if grpc == http {
            v.push(
                format!("{f}.otlpReceiver.httpPort"),
                format!("must differ from grpcPort ({grpc}): gRPC and HTTP listen on separate ports"),
            );
        }
    }
    if let Some(rules) = &conf.relabel {
        crate::relabel::validate(rules, &format!("{f}.relabel"), v);
    }
    for (i, a) in conf.applications.iter().flatten().enumerate() {
        if let Some(rules) = &a.relabel {
            crate::relabel::validate(rules, &format!("{f}.applications[{i}].relabel"), v);
        }
    }
    if let Some(profiles) = conf.sidecar.as_ref().and_then(|s| s.profiles.as_ref()) {
        let pf = format!("{f}.sidecar.profiles");
        let mut seen = BTreeSet::new();
        for (i, p) in profiles.append_profiles.iter().flatten().enumerate() {
            let field = format!("{pf}.appendProfiles[{i}].name");
            match p.name {
                None if !v.names(&field) => v.push(field, "required; accepted: All, Basic, None"),
                None => {}
                Some(n) if !seen.insert(n) => v.push(field, format!("profile {n:?} is listed twice")),
                Some(_) => {}
            }
        }
        for (list, name) in [(&profiles.include, "include"), (&profiles.exclude, "exclude")] {
            for (i, s) in list.iter().flatten().enumerate() {
                validate_selector(s, &format!("{pf}.{name}[{i}]"), v);
            }
        }
    }
    let mut app_names = BTreeMap::new();
    let mut app_endpoints = BTreeMap::new();
    for (i, a) in conf.applications.iter().flatten().enumerate() {
        let af = format!("{f}.applications[{i}]");
        let Some(port) = a.port else {
            if !v.names(&format!("{af}.port")) {
                v.push(format!("{af}.port"), "required; accepted: a port 1-65535");
            }
            continue;
        };
        // the application's identity in self-metrics: its name, else its port
        let id = a.name.clone().unwrap_or_else(|| port.to_string());
        if let Some(j) = app_names.insert(id.clone(), i) {
            let field = if a.name.is_some() { "name" } else { "port" };
            v.push(
                format!("{af}.{field}"),
                format!("applications[{j}] is already named {id:?} (an application without a name is named by its port); give each application its own name"),
            );
        }
        let address = match a.address.as_deref() {
            None | Some("") | Some("localhost") => "127.0.0.1",
            Some(x) => x,
        };
        let key = (address.to_string(), port, a.path_or_default().to_string());
        if let Some(j) = app_endpoints.insert(key, i) {
            v.push(
                format!("{af}.port"),
                format!(
                    "http://{address}:{port}{} is already scraped by applications[{j}]",
                    a.path_or_default()
                ),
            );
        }
    }
    let mut client_ids = BTreeMap::new();
    let mut ports = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    for (i, b) in conf.backends.iter().flatten().enumerate() {
        let bf = format!("{f}.backends[{i}]");
        let Some(kind) = b.kind else {
            if !v.names(&format!("{bf}.type")) {
                v.push(
                    format!("{bf}.type"),
                    "must be defined; accepted: Prometheus, OpenTelemetry",
                );
            }
            continue;
        };
        match kind {
            BackendType::Prometheus => validate_prometheus(b, i, &bf, v, &mut ports, &mut client_ids),
            BackendType::OpenTelemetry => {
                if b.prometheus.is_some() {
                    v.push(format!("{bf}.prometheus"), "must not be set for type OpenTelemetry");
                }
                let Some(o) = &b.open_telemetry else {
                    v.push(format!("{bf}.openTelemetry"), "must be defined for type OpenTelemetry");
                    continue;
                };
                let of = format!("{bf}.openTelemetry");
                validate_otel(o, &of, v, w);
                let target = match (&o.endpoint, &o.backend_ref) {
                    (Some(e), None) => Some(("endpoint", format!("endpoint {e:?}"))),
                    (None, Some(r)) => Some((
                        "backendRef",
                        format!("backendRef {}", serde_json::to_string(r).unwrap_or_default()),
                    )),
                    _ => None,
                };
                if let Some((field, t)) = target
                    && let Some(j) = endpoints.insert(t.clone(), i)
                {
                    v.push(
                        format!("{of}.{field}"),
                        format!("{t} is already used by backends[{j}]; each collector needs one backend"),
                    );
                }
            }
        }
    }
}

fn validate_prometheus(
    b: &Backend,
    i: usize,
    bf: &str,
    v: &mut Violations,
    ports: &mut BTreeMap<u16, usize>,
    client_ids: &mut BTreeMap<String, usize>,
) {
    if b.open_telemetry.is_some() {
        v.push(format!("{bf}.openTelemetry"), "must not be set for type Prometheus");
    }
    let Some(p) = &b.prometheus else {
        v.push(format!("{bf}.prometheus"), "must be defined for type Prometheus");
        return;
    };
    let pf = format!("{bf}.prometheus");
    let port = p.port_or_default();
    if !v.names(&format!("{pf}.port"))
        && let Some(j) = ports.insert(port.get(), i)
    {
        v.push(
            format!("{pf}.port"),
            format!("port {port} is already used by backends[{j}]; each Prometheus backend needs its own port"),
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
        let mf = format!("{pf}.tls.mode");
        match tls.mode {
            None if !v.names(&mf) => v.push(mf, "required; accepted: Disabled, ProvidedTLS"),
            Some(TlsMode::ActiveMtlsBackend) => v.push(
                mf,
                "ActiveMTLSBackend needs a certificate from the mesh CA, which this control plane does not have; accepted: Disabled, ProvidedTLS",
            ),
            _ => {}
        }
    }
}

fn validate_otel(o: &OpenTelemetryBackend, of: &str, v: &mut Violations, w: &mut Vec<Warning>) {
    let endpoint = o.endpoint.as_deref().filter(|e| !e.is_empty());
    match (endpoint, &o.backend_ref) {
        (Some(_), Some(_)) => v.push(
            of,
            "openTelemetry must have only one type defined: endpoint, backendRef",
        ),
        (None, None) => v.push(
            format!("{of}.backendRef"),
            "must be defined (openTelemetry must have exactly one defined: endpoint, backendRef; endpoint is deprecated)",
        ),
        (None, Some(r)) => {
            let rf = format!("{of}.backendRef");
            if r.kind != Some(BackendRefKind::MeshOpenTelemetryBackend) && !v.names(&format!("{rf}.kind")) {
                v.push(format!("{rf}.kind"), "\"kind\" must be one of [\"MeshOpenTelemetryBackend\"]");
            }
            let labels = r.labels.as_ref().is_some_and(|l| !l.is_empty());
            let name = r.name.as_deref().is_some_and(|n| !n.is_empty());
            match (labels, name) {
                (false, false) => v.push(
                    rf,
                    "backendRef must have exactly one defined: labels (or, as an extension, name)",
                ),
                (true, true) => v.push(rf, "backendRef must have only one defined: labels, name"),
                _ => {}
            }
        }
        (Some(e), None) => {
            if let Err(msg) = check_host_port(e) {
                v.push(format!("{of}.endpoint"), msg);
            }
            w.push(Warning::new(
                format!("{of}.endpoint"),
                "openTelemetry.endpoint is deprecated, use openTelemetry.backendRef with a MeshOpenTelemetryBackend resource instead",
            ));
        }
    }
    check_positive(o.refresh_interval.as_ref(), &format!("{of}.refreshInterval"), v);
    if let Some(d) = &o.refresh_interval
        && !d.is_zero()
        && d.get() < MIN_REFRESH_INTERVAL
    {
        w.push(Warning::new(
            format!("{of}.refreshInterval"),
            format!(
                "{d} is below the minimum; exports run every {}s",
                MIN_REFRESH_INTERVAL.as_secs()
            ),
        ));
    }
    check_positive(o.timeout.as_ref(), &format!("{of}.timeout"), v);
    if let Some(q) = o.queue_size
        && !QUEUE_SIZE_RANGE.contains(&q)
    {
        v.push(
            format!("{of}.queueSize"),
            format!("{q} is out of range; accepted: 1-10000"),
        );
    }
    check_headers(o.headers.as_deref(), of, v);
    check_otlp_tls(o.tls.as_ref(), of, v);
    // an inline endpoint is used as written (no environment override), so a secret header
    // sent in plaintext off the host is known now
    if let (Some(e), Some(headers)) = (endpoint, &o.headers)
        && let Err(refusal) = crate::headers::check_transport(headers, e, o.tls.is_some())
        && let Some(i) = headers.iter().position(|h| h.value_from.is_some())
    {
        v.push(format!("{of}.headers[{i}].valueFrom"), refusal.to_string());
    }
}

fn validate_selector(s: &Selector, f: &str, v: &mut Violations) {
    if s.kind.is_none() && !v.names(&format!("{f}.type")) {
        v.push(
            format!("{f}.type"),
            "required; accepted: Prefix, Regex, Exact, Contains",
        );
    }
    if s.pattern.is_empty() {
        v.push(format!("{f}.match"), "must not be empty");
    } else if s.kind == Some(SelectorType::Regex)
        && let Err(e) = regex::Regex::new(&s.pattern)
    {
        let msg = e.to_string().lines().last().unwrap_or_default().trim().to_string();
        v.push(format!("{f}.match"), format!("invalid regex {:?}: {msg}", s.pattern));
    }
}

/// A duration that must be greater than zero when given.
pub(crate) fn check_positive(d: Option<&Duration>, field: &str, v: &mut Violations) {
    if d.is_some_and(Duration::is_zero) {
        v.push(field, "must be greater than 0");
    }
}

/// Checks OTLP `headers` (`of` is the path of their parent).
pub(crate) fn check_headers(headers: Option<&[Header]>, of: &str, v: &mut Violations) {
    let mut names = BTreeMap::new();
    for (i, h) in headers.into_iter().flatten().enumerate() {
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
            (Some(_), None) if !crate::headers::inline_allowed(&h.name) => v.push(
                format!("{hf}.value"),
                format!(
                    "header {:?} may carry a secret: give it with valueFrom.file or valueFrom.env; inline values are accepted only for {}",
                    h.name,
                    crate::headers::INLINE_HEADERS.join(", ")
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
}

/// Checks OTLP `tls` (`of` is the path of its parent).
pub(crate) fn check_otlp_tls(tls: Option<&OtlpTls>, of: &str, v: &mut Violations) {
    let Some(tls) = tls else { return };
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

/// Checks an OTLP endpoint given as `host:port` (Kuma: "must be in host:port format", and
/// not a URL); the error is the violation's message.
pub(crate) fn check_host_port(endpoint: &str) -> Result<(), String> {
    if endpoint.contains(['/', '?', '#']) {
        return Err(format!(
            "must be in host:port format, not a URL: {endpoint:?}; accepted: e.g. otel-collector:4317"
        ));
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!(
            "must be in host:port format: {endpoint:?} has no port; accepted: e.g. otel-collector:4317"
        ));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || (!bracketed && host.contains(':')) {
        return Err(format!(
            "must be in host:port format: {endpoint:?} has no valid host (an IPv6 address goes in brackets)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "must be in host:port format: {endpoint:?} has an invalid port; accepted: 1-65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert!(check_host_port("otel:4317").is_ok());
        assert!(check_host_port("[::1]:4317").is_ok());
        assert!(check_host_port("http://otel:4317").is_err());
        assert!(check_host_port("otel").is_err());
        assert!(check_host_port("otel:0").is_err());
        assert!(check_host_port("::1:4317").is_err());
        assert!(check_host_port("otel:99999").is_err());
    }
}
