//! JSON Schema of the MeshMetric document and the Kubernetes CRD derived from it, both
//! generated from the Rust types (schemars) so they cannot drift from what is accepted.
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

/// A MeshMetric in the Universal form (schema only).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "MeshMetric", description = "A MeshMetric policy (Universal form).")]
#[allow(dead_code)]
struct UniversalMeshMetric {
    /// Always `MeshMetric`.
    #[schemars(extend("const" = "MeshMetric"))]
    r#type: String,
    /// Name of the policy.
    name: String,
    /// Mesh of the policy; default `default`.
    mesh: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    spec: Option<MeshMetricSpec>,
}

/// The JSON Schema (draft 2020-12) of a Universal MeshMetric document.
pub fn json_schema() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<UniversalMeshMetric>();
    let mut v = serde_json::to_value(schema).expect("schema serializes");
    mark_required(&mut v);
    v
}

/// Required fields carry `#[serde(default)]` (so that a missing one is reported by
/// `validate()` together with every other violation), which schemars renders as a `""` or `0`
/// default. In the published schema they are `required` instead.
fn mark_required(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut required: Vec<String> = Vec::new();
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (name, p) in props.iter_mut() {
                    if let Value::Object(pm) = p
                        && matches!(pm.get("default"), Some(d) if d == &json!("") || d == &json!(0))
                    {
                        pm.remove("default");
                        required.push(name.clone());
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

/// The `CustomResourceDefinition` (apiextensions.k8s.io/v1) of `kuma.io/v1alpha1` MeshMetric.
pub fn crd() -> Value {
    let settings = SchemaSettings::openapi3().with(|s| s.inline_subschemas = true);
    let mut spec = serde_json::to_value(settings.into_generator().into_root_schema_for::<MeshMetricSpec>())
        .expect("schema serializes");
    mark_required(&mut spec);
    structural(&mut spec);
    if let Value::Object(m) = &mut spec {
        m.remove("definitions");
        m.remove("components");
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "meshmetrics.kuma.io"},
        "spec": {
            "group": "kuma.io",
            "names": {"kind": "MeshMetric", "listKind": "MeshMetricList", "plural": "meshmetrics", "singular": "meshmetric", "categories": ["kuma", "meshmetric"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "additionalPrinterColumns": [
                    {"name": "TargetRef Kind", "type": "string", "jsonPath": ".spec.targetRef.kind"},
                    {"name": "TargetRef Name", "type": "string", "jsonPath": ".spec.targetRef.name"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "MeshMetric: which metrics the selected proxies keep, which applications they scrape and merge, and which backends receive them.",
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

/// The CRD as YAML.
pub fn crd_yaml() -> String {
    let mut s = String::from("# Generated by `meshmetricctl schema --out-dir docs`; do not edit.\n");
    s.push_str(&serde_saphyr::to_string(&crd()).expect("CRD serializes"));
    s
}

/// The JSON Schema as pretty JSON with a trailing newline.
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).expect("schema serializes");
    s.push('\n');
    s
}
