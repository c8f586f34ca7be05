//! Parsing of resource documents, and the Universal JSON form resources are stored and shown in.
//!
//! Two forms are accepted, as in Kuma:
//! - Universal: `type`, `name`, `mesh` (default `default`), `labels`, then the resource's own
//!   fields: `spec` (MeshMetric, MeshOpenTelemetryBackend) or `networking`, `metrics`, `probes`
//!   (Dataplane) or `selectors`, `tags`, `conf` (MeshGateway) at the top level;
//! - Kubernetes: `apiVersion: kuma.io/v1alpha1`, `kind`, `metadata{name, namespace, labels}`,
//!   `spec`; the mesh comes from label `kuma.io/mesh` (default `default`), the namespace becomes
//!   label `k8s.kuma.io/namespace` (as Kuma sets it).
//!
//! Input is JSON or YAML; YAML may hold several documents separated by `---`, JSON an array.
//! Every violation of a document is reported at once, each with its field path; a document's
//! type errors and unknown fields are collected too ([`deserialize_all`]).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::dataplane::{Dataplane, DataplaneSpec, NAMESPACE_LABEL, validate_dataplane};
use crate::meshgateway::{MeshGateway, MeshGatewaySpec, validate_meshgateway};
use crate::meshmetric::{MeshMetric, MeshMetricSpec};
use crate::meta::{DEFAULT_MESH, MESH_LABEL, Meta, check_mesh, check_name};
use crate::otelbackend::{MeshOpenTelemetryBackend, OtelBackendSpec, validate_otel_backend};
use crate::validate::validate_meshmetric;
use crate::violation::{Violation, Violations, Warning};

/// The resource kinds this project stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// A [`MeshMetric`] policy.
    MeshMetric,
    /// A [`Dataplane`] (a proxy).
    Dataplane,
    /// A [`MeshOpenTelemetryBackend`].
    MeshOpenTelemetryBackend,
    /// A [`MeshGateway`].
    MeshGateway,
}

impl ResourceKind {
    /// Every kind.
    pub const ALL: [ResourceKind; 4] = [
        Self::MeshMetric,
        Self::Dataplane,
        Self::MeshOpenTelemetryBackend,
        Self::MeshGateway,
    ];

    /// The kind as written in documents (`type` / `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeshMetric => "MeshMetric",
            Self::Dataplane => "Dataplane",
            Self::MeshOpenTelemetryBackend => "MeshOpenTelemetryBackend",
            Self::MeshGateway => "MeshGateway",
        }
    }

    /// The kind named `s` (as in documents), if any.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The plural, lower-case path segment of the REST API (`meshmetrics`, `dataplanes`,
    /// `meshopentelemetrybackends`, `meshgateways`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::MeshMetric => "meshmetrics",
            Self::Dataplane => "dataplanes",
            Self::MeshOpenTelemetryBackend => "meshopentelemetrybackends",
            Self::MeshGateway => "meshgateways",
        }
    }

    /// The kind a CLI word names: singular or plural, any case, or a short name (`mm`, `dp`,
    /// `motb`, `gw`).
    pub fn from_cli(word: &str) -> Option<Self> {
        let w = word.to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| {
            let singular = k.as_str().to_ascii_lowercase();
            let short = match k {
                Self::MeshMetric => "mm",
                Self::Dataplane => "dp",
                Self::MeshOpenTelemetryBackend => "motb",
                Self::MeshGateway => "gw",
            };
            w == singular || w == k.plural() || w == short || w == format!("{short}s")
        })
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed and validated resource.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // few resources, parsed once
pub enum Resource {
    /// A MeshMetric.
    MeshMetric(MeshMetric),
    /// A Dataplane.
    Dataplane(Dataplane),
    /// A MeshOpenTelemetryBackend.
    MeshOpenTelemetryBackend(MeshOpenTelemetryBackend),
    /// A MeshGateway.
    MeshGateway(MeshGateway),
}

impl Resource {
    /// Identity and labels.
    pub fn meta(&self) -> &Meta {
        match self {
            Resource::MeshMetric(m) => &m.meta,
            Resource::Dataplane(d) => &d.meta,
            Resource::MeshOpenTelemetryBackend(b) => &b.meta,
            Resource::MeshGateway(g) => &g.meta,
        }
    }

    /// Identity and labels, to change (the store sets the creation time).
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Resource::MeshMetric(m) => &mut m.meta,
            Resource::Dataplane(d) => &mut d.meta,
            Resource::MeshOpenTelemetryBackend(b) => &mut b.meta,
            Resource::MeshGateway(g) => &mut g.meta,
        }
    }

    /// The kind.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::MeshMetric(_) => ResourceKind::MeshMetric,
            Resource::Dataplane(_) => ResourceKind::Dataplane,
            Resource::MeshOpenTelemetryBackend(_) => ResourceKind::MeshOpenTelemetryBackend,
            Resource::MeshGateway(_) => ResourceKind::MeshGateway,
        }
    }

    /// The resource in the Universal form, as JSON: `{type, mesh, name, labels?, creationTime?,
    /// <fields>}`. [`parse_documents`] reads it back unchanged; it is what the REST API returns
    /// and the store keeps.
    pub fn to_universal_json(&self) -> Value {
        let m = self.meta();
        let mut o = Map::new();
        o.insert("type".into(), json!(self.kind().as_str()));
        o.insert("mesh".into(), json!(m.mesh));
        o.insert("name".into(), json!(m.name));
        if !m.labels.is_empty() {
            o.insert("labels".into(), json!(m.labels));
        }
        if let Some(t) = &m.creation_time {
            o.insert("creationTime".into(), json!(t));
        }
        let fields = match self {
            Resource::MeshMetric(x) => json!({"spec": x.spec}),
            Resource::MeshOpenTelemetryBackend(x) => json!({"spec": x.spec}),
            Resource::Dataplane(x) => serde_json::to_value(&x.spec).unwrap_or_default(),
            Resource::MeshGateway(x) => serde_json::to_value(&x.spec).unwrap_or_default(),
        };
        if let Value::Object(f) = fields {
            o.extend(f);
        }
        Value::Object(o)
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The text is not YAML/JSON; the message carries the line and column.
    #[error("invalid YAML/JSON: {0}")]
    Syntax(String),
    /// The document parsed but breaks one or more rules; `index` counts documents from 0 (the
    /// message counts from 1, as editors do).
    #[error("document {} ({kind} {name:?}) is invalid: {violations}", .index + 1)]
    Invalid {
        /// Position of the document in the input, from 0.
        index: usize,
        /// Its kind as written (may be unknown).
        kind: String,
        /// Its name as written.
        name: String,
        /// Every violation.
        violations: Violations,
    },
}

impl ParseError {
    /// Every violation, or a single one with an empty field for a syntax error.
    pub fn violations(&self) -> Vec<Violation> {
        match self {
            ParseError::Syntax(m) => vec![Violation::new("", m.clone())],
            ParseError::Invalid { violations, .. } => violations.0.clone(),
        }
    }
}

/// A warning about one accepted document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DocumentWarning {
    /// Position of the document in the input, from 0.
    pub index: usize,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The warning.
    #[serde(flatten)]
    pub warning: Warning,
}

impl std::fmt::Display for DocumentWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.kind, self.name, self.warning)
    }
}

/// Everything read from one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The valid resources, in input order.
    pub resources: Vec<Resource>,
    /// Warnings about valid resources.
    pub warnings: Vec<DocumentWarning>,
    /// One error per invalid document, or a single syntax error.
    pub errors: Vec<ParseError>,
}

/// YAML parser limits. serde-saphyr's defaults (1,024 documents, 250,000 nodes) would refuse
/// the resource file of a mesh of a few thousand proxies; its other protections (alias
/// expansion, depth, scalar bytes) stay. Input size is bounded by the caller (the REST API's
/// body limit; files are the operator's own).
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 200_000;
    budget.max_nodes = 20_000_000;
    budget.max_events = 60_000_000;
    budget.max_total_scalar_bytes = 256 << 20;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // resources have no use for alias bombs: a 600-byte document must not expand into
    // millions of nodes (serde-saphyr's default replays up to 1,000,000 events)
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAYED_EVENTS;
    // errors give line and column, never the text around them: it may hold a secret
    options.with_snippet = false;
    options
}

/// Most events aliases may replay in one input.
pub const MAX_ALIAS_REPLAYED_EVENTS: usize = 100_000;

/// Most violations collected from one document by re-deserializing it without the offending
/// field; each pass costs a full deserialization, so a document with hundreds of unknown fields
/// reports the first ones only.
const MAX_PASSES: usize = 16;

/// Decodes `text` into one JSON value per document. JSON is parsed strictly (YAML would accept
/// `{"a": }`); a JSON array holds several documents.
fn decode_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(text).map_err(|e| ParseError::Syntax(format!("JSON: {e}")))? {
            Value::Array(items) => items,
            v => vec![v],
        }
    } else {
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| ParseError::Syntax(e.to_string()))?
    };
    Ok(docs)
}

/// Parses and validates every document in `text` (JSON, YAML, multi-document YAML).
///
/// Errors: [`ParseError::Syntax`] with line and column for malformed text;
/// [`ParseError::Invalid`] with every violation of the first invalid document.
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, ParseError> {
    let mut p = parse_documents_all(text);
    if p.errors.is_empty() {
        Ok(p.resources)
    } else {
        Err(p.errors.swap_remove(0))
    }
}

/// Like [`parse_documents`], but keeps going after an invalid document: the valid resources,
/// their warnings, and one error per invalid document (or a single syntax error).
pub fn parse_documents_all(text: &str) -> Parsed {
    let docs = match decode_documents(text) {
        Ok(d) => d,
        Err(e) => {
            return Parsed {
                errors: vec![e],
                ..Default::default()
            };
        }
    };
    let mut out = Parsed::default();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue; // empty document, e.g. a trailing `---`
        }
        match parse_value(index, doc) {
            Ok((r, warnings)) => {
                for warning in warnings {
                    out.warnings.push(DocumentWarning {
                        index,
                        kind: r.kind().as_str().to_string(),
                        name: r.meta().name.clone(),
                        warning,
                    });
                }
                out.resources.push(r);
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// Parses and validates one document already decoded to JSON; returns the resource and its
/// warnings.
pub fn parse_value(index: usize, doc: Value) -> Result<(Resource, Vec<Warning>), ParseError> {
    // an invalid document's kind and name are shown as written, cut short
    let invalid = |kind: &str, name: &str, v: Violations| ParseError::Invalid {
        index,
        kind: shorten(kind),
        name: shorten(name),
        violations: v,
    };
    let Value::Object(mut obj) = doc else {
        let mut v = Violations::default();
        v.push(
            "",
            "a document must be a mapping with `type` (Universal) or `kind` (Kubernetes)",
        );
        return Err(invalid("", "", v));
    };
    let mut v = Violations::default();
    let k8s = obj.contains_key("apiVersion") || obj.contains_key("kind");
    let (kind_name, meta, body, prefix) = if k8s {
        let kind = take_string(&mut obj, "kind", "kind", &mut v);
        match obj.remove("apiVersion") {
            Some(Value::String(s)) if s == "kuma.io/v1alpha1" => {}
            other => v.push(
                "apiVersion",
                format!("must be \"kuma.io/v1alpha1\", got {}", show(other.as_ref())),
            ),
        }
        let mut md = match obj.remove("metadata") {
            Some(Value::Object(m)) => m,
            other => {
                v.push(
                    "metadata",
                    format!("must be a mapping with `name`, got {}", show(other.as_ref())),
                );
                Map::new()
            }
        };
        let name = take_string(&mut md, "name", "metadata.name", &mut v);
        let namespace = match md.remove("namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                v.push(
                    "metadata.namespace",
                    format!("must be a string, got {}", show(Some(&other))),
                );
                None
            }
        };
        let mut labels = take_labels(&mut md, "labels", "metadata.labels", &mut v);
        for k in md.keys() {
            if !matches!(
                k.as_str(),
                "annotations" | "uid" | "resourceVersion" | "creationTimestamp" | "generation" | "managedFields"
            ) {
                v.push(
                    format!("metadata.{k}"),
                    "unknown field; accepted: name, namespace, labels, annotations",
                );
            }
        }
        if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
            labels.entry(NAMESPACE_LABEL.to_string()).or_insert(ns);
        }
        let mesh = labels
            .get(MESH_LABEL)
            .cloned()
            .unwrap_or_else(|| DEFAULT_MESH.to_string());
        let body = obj.remove("spec").unwrap_or(Value::Null);
        for k in obj.keys() {
            if k != "status" {
                v.push(k.clone(), "unknown field; accepted: apiVersion, kind, metadata, spec");
            }
        }
        let meta = Meta {
            mesh,
            name,
            labels,
            creation_time: None,
        };
        (kind, meta, body, "spec".to_string())
    } else {
        let kind = take_string(&mut obj, "type", "type", &mut v);
        let name = take_string(&mut obj, "name", "name", &mut v);
        let mesh = match obj.remove("mesh") {
            None => DEFAULT_MESH.to_string(),
            Some(Value::String(s)) => s,
            Some(other) => {
                v.push("mesh", format!("must be a string, got {}", show(Some(&other))));
                String::new()
            }
        };
        let labels = take_labels(&mut obj, "labels", "labels", &mut v);
        let creation_time = match obj.remove("creationTime") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        obj.remove("modificationTime");
        let meta = Meta {
            mesh,
            name,
            labels,
            creation_time,
        };
        match ResourceKind::from_name(&kind) {
            Some(ResourceKind::MeshMetric | ResourceKind::MeshOpenTelemetryBackend) => {
                let body = obj.remove("spec").unwrap_or(Value::Null);
                for k in obj.keys() {
                    v.push(k.clone(), "unknown field; accepted: type, name, mesh, labels, spec");
                }
                (kind, meta, body, "spec".to_string())
            }
            // the remaining fields are the spec
            _ => (kind, meta, Value::Object(obj), String::new()),
        }
    };
    let name_field = if k8s { "metadata.name" } else { "name" };
    if let Err(e) = check_name(&meta.name)
        && !v.names(name_field)
    {
        v.push(name_field, e.to_string());
    }
    let mesh_field = if k8s {
        "metadata.labels[\"kuma.io/mesh\"]"
    } else {
        "mesh"
    };
    if let Err(e) = check_mesh(&meta.mesh)
        && !v.names(mesh_field)
    {
        v.push(mesh_field, e.to_string());
    }
    let Some(kind) = ResourceKind::from_name(&kind_name) else {
        let field = if k8s { "kind" } else { "type" };
        if !kind_name.is_empty() || !v.names(field) {
            v.push(
                field,
                format!(
                    "unknown resource {kind_name:?}; accepted: MeshMetric, Dataplane, MeshOpenTelemetryBackend, MeshGateway"
                ),
            );
        }
        return Err(invalid(&kind_name, &meta.name, v));
    };
    let body = if body.is_null() {
        Value::Object(Map::new())
    } else {
        body
    };
    let name = meta.name.clone();
    let mut warnings = Vec::new();
    let resource = match kind {
        ResourceKind::MeshMetric => deserialize_all::<MeshMetricSpec>(body, &prefix, &mut v).map(|spec| {
            warnings = validate_meshmetric(&spec, meta.policy_role(), &mut v);
            if meta.is_shadow() {
                warnings.push(Warning::new(
                    "labels",
                    "kuma.io/effect: shadow: the policy is stored but not applied to any proxy",
                ));
            }
            Resource::MeshMetric(MeshMetric { meta, spec })
        }),
        ResourceKind::MeshOpenTelemetryBackend => {
            deserialize_all::<OtelBackendSpec>(body, &prefix, &mut v).map(|spec| {
                v.0.extend(validate_otel_backend(&spec).0);
                Resource::MeshOpenTelemetryBackend(MeshOpenTelemetryBackend { meta, spec })
            })
        }
        ResourceKind::Dataplane => deserialize_all::<DataplaneSpec>(body, &prefix, &mut v).map(|spec| {
            let dp = Dataplane { meta, spec };
            let found = validate_dataplane(&dp, &prefix);
            extend_new(&mut v, found);
            Resource::Dataplane(dp)
        }),
        ResourceKind::MeshGateway => deserialize_all::<MeshGatewaySpec>(body, &prefix, &mut v).map(|spec| {
            let gw = MeshGateway { meta, spec };
            let found = validate_meshgateway(&gw, &prefix);
            extend_new(&mut v, found);
            Resource::MeshGateway(gw)
        }),
    };
    match resource {
        Some(r) if v.is_empty() => Ok((r, warnings)),
        _ => Err(invalid(kind.as_str(), &name, v)),
    }
}

/// Adds the violations of `found` whose field is not named yet (a field refused while
/// deserializing is not reported again as missing).
fn extend_new(v: &mut Violations, found: Violations) {
    for x in found.0 {
        if !v.names(&x.field) {
            v.0.push(x);
        }
    }
}

/// Deserializes `body`, collecting every type error and unknown field (each with its path)
/// instead of stopping at the first: the offending field is removed (an array element is
/// replaced by `{}`) and deserialization retried. Returns the value deserialized from what
/// remains, so rule validation can still report the rest of the document.
fn deserialize_all<T: DeserializeOwned>(mut body: Value, prefix: &str, violations: &mut Violations) -> Option<T> {
    use serde_path_to_error::Segment;
    let mut seen = std::collections::HashSet::new();
    for pass in 1..=MAX_PASSES {
        let err = match serde_path_to_error::deserialize::<_, T>(&body) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let msg = err.inner().to_string();
        let mut msg = match msg.split_once(", expected one of ") {
            Some((head, accepted)) => format!("{}; accepted: {}", head.replace('`', ""), accepted.replace('`', "")),
            None => msg,
        };
        if msg.starts_with("invalid type: boolean") && msg.contains("expected a string") {
            msg.push_str(" (YAML reads y, yes, on, n, no, off, true and false as booleans: quote the value)");
        }
        if pass == MAX_PASSES {
            msg.push_str(&format!(
                " (further violations of this document not reported: at most {MAX_PASSES})"
            ));
            violations.push(join(prefix, &path), msg);
            return None;
        }
        violations.push(join(prefix, &path), msg);
        if !seen.insert(path) {
            return None;
        }
        let segs: Vec<&Segment> = err.path().iter().collect();
        let (last, parents) = segs.split_last()?;
        let mut cur = &mut body;
        for seg in parents {
            cur = match (seg, cur) {
                (Segment::Map { key }, Value::Object(m)) => m.get_mut(key)?,
                (Segment::Seq { index }, Value::Array(a)) => a.get_mut(*index)?,
                _ => return None,
            };
        }
        match (last, cur) {
            (Segment::Map { key }, Value::Object(m)) => {
                m.remove(key);
            }
            (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => a[*index] = Value::Object(Map::new()),
            _ => return None,
        }
    }
    None
}

/// Longest kind or name of an invalid document repeated in its error.
const SHOWN_NAME: usize = 64;

/// `s` cut to [`SHOWN_NAME`] characters (with `…`).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOWN_NAME) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        prefix.to_string()
    } else if prefix.is_empty() {
        path.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(Value::Bool(b)) => {
            format!("the boolean {b} (YAML reads y, yes, on, n, no, off, true and false as booleans: quote the value)")
        }
        Some(v) => {
            let s = v.to_string();
            if s.len() > 60 {
                format!("{}…", &s[..s.floor_char_boundary(60)])
            } else {
                s
            }
        }
    }
}

fn take_string(obj: &mut Map<String, Value>, key: &str, field: &str, v: &mut Violations) -> String {
    match obj.remove(key) {
        Some(Value::String(s)) => s,
        other => {
            v.push(field, format!("required string, got {}", show(other.as_ref())));
            String::new()
        }
    }
}

fn take_labels(obj: &mut Map<String, Value>, key: &str, field: &str, v: &mut Violations) -> BTreeMap<String, String> {
    match obj.remove(key) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, val) in m {
                match val {
                    Value::String(s) => {
                        out.insert(k, s);
                    }
                    other => v.push(
                        format!("{field}[{k:?}]"),
                        format!("a label value must be a string, got {}", show(Some(&other))),
                    ),
                }
            }
            out
        }
        Some(other) => {
            v.push(
                field,
                format!("must map strings to strings, got {}", show(Some(&other))),
            );
            BTreeMap::new()
        }
    }
}
