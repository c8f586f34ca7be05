//! JSON Schemas of the MeshMetric and MeshOpenTelemetryBackend documents and the Kubernetes
//! CRDs derived from them, generated from the Rust types (schemars), enumerations included, so
//! they cannot drift from what is accepted.
//! `meshmetricctl schema --out-dir docs` writes them; a test fails when the checked-in copies
//! are stale.
//!
//! The schema describes shapes, enumerations and ranges; cross-field rules (duplicate
//! clientIds, regex syntax, ...) are only in [`crate::validate`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::meshmetric::MeshMetricSpec;
use crate::otelbackend::OtelBackendSpec;

/// A resource kind published with a schema and a CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// `MeshMetric`.
    MeshMetric,
    /// `MeshOpenTelemetryBackend`.
    MeshOpenTelemetryBackend,
}

impl Published {
    /// Both.
    pub const ALL: [Published; 2] = [Published::MeshMetric, Published::MeshOpenTelemetryBackend];

    fn kind(self) -> &'static str {
        match self {
            Self::MeshMetric => "MeshMetric",
            Self::MeshOpenTelemetryBackend => "MeshOpenTelemetryBackend",
        }
    }

    /// File names under `docs/`: the JSON Schema and the CRD.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Self::MeshMetric => ("meshmetric.schema.json", "meshmetric-crd.yaml"),
            Self::MeshOpenTelemetryBackend => (
                "meshopentelemetrybackend.schema.json",
                "meshopentelemetrybackend-crd.yaml",
            ),
        }
    }
}

/// A resource in the Universal form (schema only).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Universal<S: JsonSchema> {
    /// The resource type.
    r#type: String,
    /// Name of the resource.
    name: String,
    /// Mesh of the resource; default `default`.
    mesh: Option<String>,
    /// Labels.
    labels: Option<BTreeMap<String, String>>,
    /// When the control plane first stored it (RFC 3339; set by the control plane).
    creation_time: Option<String>,
    /// The spec.
    spec: Option<S>,
}

/// The JSON Schema (draft 2020-12) of a Universal document of `kind`.
pub fn json_schema(kind: Published) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = match kind {
        Published::MeshMetric => generator.into_root_schema_for::<Universal<MeshMetricSpec>>(),
        Published::MeshOpenTelemetryBackend => generator.into_root_schema_for::<Universal<OtelBackendSpec>>(),
    };
    let mut v = serde_json::to_value(schema).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("title".into(), json!(kind.kind()));
        m.insert(
            "description".into(),
            json!(format!("A {} (Universal form).", kind.kind())),
        );
        if let Some(Value::Object(props)) = m.get_mut("properties") {
            props.insert(
                "type".into(),
                json!({"const": kind.kind(), "description": format!("Always `{}`.", kind.kind())}),
            );
        }
    }
    collapse_enums(&mut v);
    mark_required(&mut v);
    v
}

/// Required fields carry `#[serde(default)]` (so that a missing one is reported by
/// validation together with every other violation), which schemars renders as a `""` or `0`
/// default or as optional; those marked `x-required` and those with an empty default are
/// `required` in the published schema.
fn mark_required(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut required: Vec<String> = Vec::new();
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (name, p) in props.iter_mut() {
                    if let Value::Object(pm) = p {
                        let empty_default = matches!(pm.get("default"), Some(d) if d == &json!("") || d == &json!(0));
                        let marked = pm.remove("x-required").is_some();
                        if empty_default || marked {
                            pm.remove("default");
                            pm.remove("nullable");
                            required.push(name.clone());
                        }
                    }
                }
            }
            if !required.is_empty() {
                let list = m.entry("required").or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    for r in required {
                        if !a.contains(&json!(r)) {
                            a.push(json!(r));
                        }
                    }
                }
            }
            for (_, child) in m.iter_mut() {
                mark_required(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mark_required),
        _ => {}
    }
}

/// schemars writes an enum whose variants have doc comments as `oneOf` single-value enums;
/// these become one `enum` (Kubernetes structural schemas need that), with each value's
/// description appended to the field's.
fn collapse_enums(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // `Option<T>`: `anyOf: [T, null]` becomes `T`, nullable
            let unwrapped = m.get("anyOf").and_then(Value::as_array).and_then(|alts| {
                let is_null =
                    |a: &Value| a.get("type") == Some(&json!("null")) || a.get("enum") == Some(&json!([null]));
                match alts.as_slice() {
                    [a, b] if is_null(b) => Some(a.clone()),
                    [a, b] if is_null(a) => Some(b.clone()),
                    _ => None,
                }
            });
            if let Some(Value::Object(inner)) = unwrapped {
                m.remove("anyOf");
                for (k, val) in inner {
                    if k == "description" && m.contains_key("description") {
                        continue;
                    }
                    m.insert(k, val);
                }
                m.insert("nullable".into(), json!(true));
            }
            let collapsed = m.get("oneOf").and_then(Value::as_array).and_then(|alts| {
                let mut values = Vec::new();
                let mut docs = Vec::new();
                for a in alts {
                    let e = a.get("enum")?.as_array()?;
                    if e.len() != 1 || a.get("type") != Some(&json!("string")) {
                        return None;
                    }
                    if let Some(d) = a.get("description").and_then(Value::as_str) {
                        let d = d.trim_end_matches('.');
                        docs.push(format!("`{}`: {d}", e[0].as_str().unwrap_or_default()));
                    }
                    values.push(e[0].clone());
                }
                Some((values, docs))
            });
            if let Some((values, docs)) = collapsed {
                m.remove("oneOf");
                m.insert("type".into(), json!("string"));
                m.insert("enum".into(), Value::Array(values));
                if !docs.is_empty() {
                    let head = m
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let sep = if head.is_empty() { "" } else { " " };
                    m.insert("description".into(), json!(format!("{head}{sep}{}.", docs.join("; "))));
                }
            }

            for (_, child) in m.iter_mut() {
                collapse_enums(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(collapse_enums),
        _ => {}
    }
}

/// Rewrites an OpenAPI schema into a Kubernetes structural schema: no `$schema`/`title`,
/// no `additionalProperties` beside `properties`, no `const`.
fn structural(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("$schema");
            m.remove("title");
            if m.contains_key("properties") {
                m.remove("additionalProperties");
            }
            if let Some(c) = m.remove("const") {
                m.insert("enum".into(), json!([c]));
            }
            for (_, child) in m.iter_mut() {
                structural(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(structural),
        _ => {}
    }
}

/// The `CustomResourceDefinition` (apiextensions.k8s.io/v1) of `kuma.io/v1alpha1` `kind`.
pub fn crd(kind: Published) -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = match kind {
        Published::MeshMetric => generator.into_root_schema_for::<MeshMetricSpec>(),
        Published::MeshOpenTelemetryBackend => generator.into_root_schema_for::<OtelBackendSpec>(),
    };
    let mut spec = serde_json::to_value(schema).unwrap_or_default();
    collapse_enums(&mut spec);
    mark_required(&mut spec);
    structural(&mut spec);
    if let Value::Object(m) = &mut spec {
        m.remove("definitions");
        m.remove("components");
    }
    let (plural, singular, short, description, columns) = match kind {
        Published::MeshMetric => (
            "meshmetrics",
            "meshmetric",
            None,
            "MeshMetric: which metrics the selected proxies keep, which applications they scrape and merge, and which backends receive them.",
            json!([
                {"name": "TargetRef Kind", "type": "string", "jsonPath": ".spec.targetRef.kind"},
                {"name": "TargetRef Name", "type": "string", "jsonPath": ".spec.targetRef.name"}
            ]),
        ),
        Published::MeshOpenTelemetryBackend => (
            "meshopentelemetrybackends",
            "meshopentelemetrybackend",
            Some("motb"),
            "MeshOpenTelemetryBackend: a shared OTLP collector endpoint that MeshMetric backends reference with backendRef.",
            json!([
                {"name": "Address", "type": "string", "jsonPath": ".spec.endpoint.address"},
                {"name": "Port", "type": "integer", "jsonPath": ".spec.endpoint.port"},
                {"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"}
            ]),
        ),
    };
    let mut names = json!({"kind": kind.kind(), "listKind": format!("{}List", kind.kind()), "plural": plural, "singular": singular, "categories": ["kuma", singular]});
    if let Some(s) = short {
        names["shortNames"] = json!([s]);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.kuma.io")},
        "spec": {
            "group": "kuma.io",
            "names": names,
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": description,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec
                    }
                }}
            }]
        }
    })
}

/// The CRD of `kind` as YAML.
pub fn crd_yaml(kind: Published) -> String {
    let mut s = String::from("# Generated by `meshmetricctl schema --out-dir docs`; do not edit.\n");
    s.push_str(&serde_saphyr::to_string(&crd(kind)).unwrap_or_default());
    s
}

/// The JSON Schema of `kind` as pretty JSON with a trailing newline.
pub fn json_schema_text(kind: Published) -> String {
    let mut s = serde_json::to_string_pretty(&json_schema(kind)).unwrap_or_default();
    s.push('\n');
    s
}
