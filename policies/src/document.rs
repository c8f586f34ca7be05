//! Parsing of resource documents.
//!
//! Two forms are accepted, as in Kuma:
//! - Universal: `type`, `name`, `mesh` (default `default`), `labels`, then `spec` (MeshMetric) or
//!   `networking` (Dataplane) at the top level;
//! - Kubernetes: `apiVersion: kuma.io/v1alpha1`, `kind`, `metadata{name, namespace, labels}`,
//!   `spec`; the mesh comes from label `kuma.io/mesh` (default `default`).
//!
//! Input is JSON or YAML; YAML may hold several documents separated by `---`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataplane::{Dataplane, Networking};
use crate::meshmetric::{MeshMetric, MeshMetricSpec};
use crate::validate::{Violation, Violations, validate_dataplane, validate_meshmetric};

/// Label that names the mesh of a Kubernetes-form resource.
pub const MESH_LABEL: &str = "kuma.io/mesh";
/// Mesh used when a document names none.
pub const DEFAULT_MESH: &str = "default";

/// Identity and labels of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Meta {
    pub mesh: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A parsed and validated resource.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // few resources, parsed once
pub enum Resource {
    MeshMetric(MeshMetric),
    Dataplane(Dataplane),
}

impl Resource {
    pub fn meta(&self) -> &Meta {
        match self {
            Resource::MeshMetric(m) => &m.meta,
            Resource::Dataplane(d) => &d.meta,
        }
    }
    /// `MeshMetric` or `Dataplane`.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::MeshMetric(_) => "MeshMetric",
            Resource::Dataplane(_) => "Dataplane",
        }
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
        index: usize,
        kind: String,
        name: String,
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

/// YAML parser limits. serde-saphyr's defaults (1,024 documents, 250,000 nodes) would refuse
/// the resource file of a mesh of a few thousand proxies; its other protections (alias
/// expansion, depth, scalar bytes) stay. Input size is bounded by the caller (the REST API's
/// body limit; files are the operator's own).
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 200_000;
    budget.max_nodes = 20_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Decodes `text` into one JSON value per non-empty document. JSON is parsed strictly (YAML
/// would accept `{"a": }`); a JSON array holds several documents.
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
    let (ok, mut errs) = parse_documents_all(text);
    if errs.is_empty() {
        Ok(ok)
    } else {
        Err(errs.swap_remove(0))
    }
}

/// Like [`parse_documents`], but keeps going after an invalid document: returns the valid
/// resources and one error per invalid document (or a single syntax error).
pub fn parse_documents_all(text: &str) -> (Vec<Resource>, Vec<ParseError>) {
    let docs = match decode_documents(text) {
        Ok(d) => d,
        Err(e) => return (vec![], vec![e]),
    };
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue; // empty document, e.g. a trailing `---`
        }
        match parse_value(index, doc) {
            Ok(r) => ok.push(r),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Parses and validates one document already decoded to JSON.
pub fn parse_value(index: usize, doc: Value) -> Result<Resource, ParseError> {
    let invalid = |kind: &str, name: &str, v: Vec<Violation>| ParseError::Invalid {
        index,
        kind: kind.to_string(),
        name: name.to_string(),
        violations: Violations(v),
    };
    let Value::Object(mut obj) = doc else {
        return Err(invalid(
            "",
            "",
            vec![Violation::new(
                "",
                "a document must be a mapping with `type` (Universal) or `kind` (Kubernetes)",
            )],
        ));
    };
    let mut violations = Vec::new();
    let k8s = obj.contains_key("apiVersion") || obj.contains_key("kind");
    let (kind, meta, body) = if k8s {
        let kind = take_string(&mut obj, "kind", &mut violations);
        match obj.remove("apiVersion") {
            Some(Value::String(v)) if v == "kuma.io/v1alpha1" => {}
            other => violations.push(Violation::new(
                "apiVersion",
                format!("must be \"kuma.io/v1alpha1\", got {}", show(other.as_ref())),
            )),
        }
        let mut md = match obj.remove("metadata") {
            Some(Value::Object(m)) => m,
            other => {
                violations.push(Violation::new(
                    "metadata",
                    format!("must be a mapping with `name`, got {}", show(other.as_ref())),
                ));
                Default::default()
            }
        };
        let name = take_string(&mut md, "name", &mut violations);
        let _namespace = md.remove("namespace");
        let labels = take_labels(&mut md, "metadata.labels", &mut violations);
        for k in md.keys() {
            if !matches!(
                k.as_str(),
                "annotations" | "uid" | "resourceVersion" | "creationTimestamp" | "generation" | "managedFields"
            ) {
                violations.push(Violation::new(
                    format!("metadata.{k}"),
                    "unknown field; accepted: name, namespace, labels, annotations",
                ));
            }
        }
        let mesh = labels
            .get(MESH_LABEL)
            .cloned()
            .unwrap_or_else(|| DEFAULT_MESH.to_string());
        let body = obj.remove("spec").unwrap_or(Value::Object(Default::default()));
        let body = if kind == "Dataplane" {
            // Kubernetes Dataplane: spec.networking
            match body {
                Value::Object(mut s) => {
                    let n = s.remove("networking").unwrap_or(Value::Null);
                    for k in s.keys() {
                        violations.push(Violation::new(
                            format!("spec.{k}"),
                            "unknown field; accepted: networking",
                        ));
                    }
                    n
                }
                other => other,
            }
        } else {
            body
        };
        for k in obj.keys() {
            violations.push(Violation::new(
                k.clone(),
                "unknown field; accepted: apiVersion, kind, metadata, spec",
            ));
        }
        (kind, Meta { mesh, name, labels }, body)
    } else {
        let kind = take_string(&mut obj, "type", &mut violations);
        let name = take_string(&mut obj, "name", &mut violations);
        let mesh = match obj.remove("mesh") {
            None => DEFAULT_MESH.to_string(),
            Some(Value::String(s)) => s,
            Some(other) => {
                violations.push(Violation::new(
                    "mesh",
                    format!("must be a string, got {}", show(Some(&other))),
                ));
                String::new()
            }
        };
        let labels = take_labels(&mut obj, "labels", &mut violations);
        let body_key = if kind == "Dataplane" { "networking" } else { "spec" };
        let body = obj.remove(body_key).unwrap_or(Value::Null);
        for k in obj.keys() {
            if !matches!(k.as_str(), "creationTime" | "modificationTime") {
                violations.push(Violation::new(
                    k.clone(),
                    format!("unknown field; accepted: type, name, mesh, labels, {body_key}"),
                ));
            }
        }
        (kind, Meta { mesh, name, labels }, body)
    };
    if meta.name.is_empty() && !violations.iter().any(|v| v.field.ends_with("name")) {
        violations.push(Violation::new(
            if k8s { "metadata.name" } else { "name" },
            "must not be empty",
        ));
    }
    match kind.as_str() {
        "MeshMetric" => {
            let body = if body.is_null() {
                Value::Object(Default::default())
            } else {
                body
            };
            let spec: Option<MeshMetricSpec> = deserialize_all(body, "spec", &mut violations);
            if let Some(spec) = &spec {
                violations.extend(validate_meshmetric(spec).0);
            }
            match (spec, violations.is_empty()) {
                (Some(spec), true) => Ok(Resource::MeshMetric(MeshMetric { meta, spec })),
                _ => Err(invalid(&kind, &meta.name, violations)),
            }
        }
        "Dataplane" => {
            let prefix = if k8s { "spec.networking" } else { "networking" };
            if body.is_null() {
                violations.push(Violation::new(
                    prefix,
                    "required: a mapping with `address` and `inbound`",
                ));
                return Err(invalid(&kind, &meta.name, violations));
            }
            let networking: Option<Networking> = deserialize_all(body, prefix, &mut violations);
            let dp = networking.map(|networking| Dataplane {
                meta: meta.clone(),
                networking,
            });
            if let Some(dp) = &dp {
                violations.extend(validate_dataplane(dp, prefix).0);
            }
            match (dp, violations.is_empty()) {
                (Some(dp), true) => Ok(Resource::Dataplane(dp)),
                _ => Err(invalid(&kind, &meta.name, violations)),
            }
        }
        other => {
            let field = if k8s { "kind" } else { "type" };
            if !other.is_empty() || !violations.iter().any(|v| v.field == field) {
                violations.push(Violation::new(
                    field,
                    format!("unknown resource {other:?}; accepted: MeshMetric, Dataplane"),
                ));
            }
            Err(invalid(other, &meta.name, violations))
        }
    }
}

/// Deserializes `body`, collecting every type error and unknown field (each with its path)
/// instead of stopping at the first: the offending field is removed (an array element is
/// replaced by `{}`) and deserialization retried. Returns the value deserialized from what
/// remains, so rule validation can still report the rest of the document.
fn deserialize_all<T: serde::de::DeserializeOwned>(
    mut body: Value,
    prefix: &str,
    violations: &mut Vec<Violation>,
) -> Option<T> {
    use serde_path_to_error::Segment;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..256 {
        let err = match serde_path_to_error::deserialize::<_, T>(body.clone()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let msg = err.inner().to_string();
        let msg = match msg.split_once(", expected one of ") {
            Some((head, accepted)) => format!("{head}; accepted: {}", accepted.replace('`', "")),
            None => msg,
        };
        violations.push(Violation::new(join(prefix, &path), msg));
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
            (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
                a[*index] = Value::Object(Default::default())
            }
            _ => return None,
        }
    }
    None
}

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
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

fn take_string(obj: &mut serde_json::Map<String, Value>, key: &str, violations: &mut Vec<Violation>) -> String {
    match obj.remove(key) {
        Some(Value::String(s)) => s,
        other => {
            violations.push(Violation::new(
                key,
                format!("required string, got {}", show(other.as_ref())),
            ));
            String::new()
        }
    }
}

fn take_labels(
    obj: &mut serde_json::Map<String, Value>,
    field: &str,
    violations: &mut Vec<Violation>,
) -> BTreeMap<String, String> {
    let key = field.rsplit('.').next().unwrap_or(field);
    match obj.remove(key) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => match serde_json::from_value::<BTreeMap<String, String>>(v) {
            Ok(m) => m,
            Err(e) => {
                violations.push(Violation::new(field, format!("must map strings to strings: {e}")));
                BTreeMap::new()
            }
        },
    }
}
