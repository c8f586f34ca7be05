//! Kuma parity: Kuma's own validator cases and end-to-end inputs (checked in under
//! `testdata/kuma/` with their source and commit) get Kuma's verdict here, and the top-level
//! targetRef rules of Kuma 2.14.3 hold case by case.

use meshmetric_policies::{Resource, parse_documents, parse_documents_all};
use serde::Deserialize;

fn testdata(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/kuma/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidatorCase {
    name: String,
    valid: bool,
    #[serde(default)]
    kuma_field: String,
    #[serde(default)]
    kuma_message: String,
    #[serde(default)]
    field: String,
    document: String,
}

/// Our violation names Kuma's field when it is the same path or a more precise one under it.
fn names_field(fields: &[String], want: &str) -> bool {
    fields
        .iter()
        .any(|f| f == want || f.starts_with(&format!("{want}.")) || f.starts_with(&format!("{want}[")))
}

fn run_validator_table(file: &str) -> usize {
    let cases: Vec<ValidatorCase> = serde_saphyr::from_str(&testdata(file)).unwrap();
    let mut failures = Vec::new();
    for c in &cases {
        let r = parse_documents(&c.document);
        match (c.valid, r) {
            (true, Ok(_)) => {}
            (true, Err(e)) => failures.push(format!("{}: Kuma accepts it, we refuse it: {e}", c.name)),
            (false, Ok(_)) => failures.push(format!(
                "{}: Kuma refuses it ({}: {}), we accept it",
                c.name, c.kuma_field, c.kuma_message
            )),
            (false, Err(e)) => {
                let fields: Vec<String> = e.violations().into_iter().map(|v| v.field).collect();
                if !names_field(&fields, &c.field) {
                    failures.push(format!(
                        "{}: Kuma names {} ({}); we name {fields:?}",
                        c.name, c.kuma_field, c.kuma_message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    cases.len()
}

#[test]
fn kuma_2_14_3_meshmetric_validator_cases() {
    assert_eq!(run_validator_table("meshmetric-validator-v2.14.3.yaml"), 14);
}

#[test]
fn kuma_master_meshmetric_validator_cases() {
    assert_eq!(run_validator_table("meshmetric-validator-master.yaml"), 11);
}

#[derive(Deserialize)]
struct Expected {
    field: String,
    message: String,
}

#[derive(Deserialize)]
struct BackendCase {
    name: String,
    violations: Vec<Expected>,
    document: String,
}

#[test]
fn kuma_2_14_3_meshopentelemetrybackend_validator_cases() {
    let cases: Vec<BackendCase> =
        serde_saphyr::from_str(&testdata("meshopentelemetrybackend-validator-v2.14.3.yaml")).unwrap();
    assert_eq!(cases.len(), 18);
    let mut failures = Vec::new();
    for c in &cases {
        let got: Vec<(String, String)> = match parse_documents(&c.document) {
            Ok(_) => vec![],
            Err(e) => e.violations().into_iter().map(|v| (v.field, v.message)).collect(),
        };
        let fields: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
        if c.violations.is_empty() != got.is_empty() || !c.violations.iter().all(|e| names_field(&fields, &e.field)) {
            let want: Vec<String> = c
                .violations
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            failures.push(format!("{}: Kuma: {want:?}; we: {got:?}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(Deserialize)]
struct InputCase {
    name: String,
    document: String,
}

#[test]
fn kuma_e2e_inputs_are_accepted() {
    for file in [
        "meshmetric-e2e-inputs-v2.14.3.yaml",
        "meshmetric-e2e-inputs-master.yaml",
    ] {
        let cases: Vec<InputCase> = serde_saphyr::from_str(&testdata(file)).unwrap();
        assert!(cases.len() >= 2, "{file}");
        for c in cases {
            let p = parse_documents_all(&c.document);
            assert!(p.errors.is_empty(), "{file}: {}: {:?}", c.name, p.errors);
            assert!(!p.resources.is_empty(), "{}", c.name);
        }
    }
}

/// A MeshMetric with this targetRef (YAML flow) and an empty default, with `labels`.
fn with_target_ref(tr: &str, labels: &str) -> String {
    format!("type: MeshMetric\nname: t\nmesh: default\nlabels: {labels}\nspec: {{targetRef: {tr}, default: {{}}}}\n")
}

/// Kuma 2.14.3's `ValidateTargetRef` with MeshMetric's options, case by case: what it accepts
/// and, for what it refuses, the field it names.
#[test]
fn top_level_target_ref_rules_of_kuma_2_14_3() {
    let system = "{}";
    let consumer = "{kuma.io/policy-role: consumer}";
    let cases: &[(&str, &str, Option<&str>)] = &[
        // accepted by Kuma 2.14.3
        ("{kind: Mesh}", system, None),
        ("{kind: Mesh, proxyTypes: [Sidecar]}", system, None),
        ("{kind: Mesh, proxyTypes: [Sidecar, Gateway]}", system, None),
        ("{kind: Dataplane}", system, None),
        ("{kind: Dataplane, name: web-01}", system, None),
        ("{kind: Dataplane, name: web-01, namespace: ns}", system, None),
        ("{kind: Dataplane, labels: {app: web}}", system, None),
        ("{kind: MeshSubset, tags: {version: v1}}", system, None),
        ("{kind: MeshSubset, proxyTypes: [Gateway]}", system, None),
        ("{kind: MeshService, name: web}", system, None),
        ("{kind: MeshService, labels: {app: web}}", system, None),
        ("{kind: MeshService, name: x, sectionName: http}", system, None),
        (
            "{kind: MeshServiceSubset, name: web, tags: {version: v1}}",
            system,
            None,
        ),
        (
            "{kind: MeshServiceSubset, name: web, tags: {version: '*'}}",
            system,
            None,
        ),
        ("{kind: MeshGateway, name: gw}", system, None),
        ("{kind: MeshGateway, name: gw, tags: {port: http-8080}}", system, None),
        // refused by Kuma 2.14.3, with the field it names
        ("{kind: Mesh, namespace: ns}", system, Some("spec.targetRef.namespace")),
        ("{kind: Mesh, name: x}", system, Some("spec.targetRef.name")),
        ("{kind: Mesh, labels: {a: b}}", system, Some("spec.targetRef.labels")),
        ("{kind: Mesh, tags: {a: b}}", system, Some("spec.targetRef.tags")),
        (
            "{kind: Mesh, sectionName: s}",
            system,
            Some("spec.targetRef.sectionName"),
        ),
        ("{kind: Mesh, mesh: other}", system, Some("spec.targetRef.mesh")),
        (
            "{kind: Mesh, proxyTypes: []}",
            system,
            Some("spec.targetRef.proxyTypes"),
        ),
        (
            "{kind: Mesh, proxyTypes: [Ingress]}",
            system,
            Some("spec.targetRef.proxyTypes[0]"),
        ),
        ("{kind: MeshSubset, name: x}", system, Some("spec.targetRef.name")),
        (
            "{kind: MeshSubset, tags: {version: ''}}",
            system,
            Some("spec.targetRef.tags[\"version\"]"),
        ),
        (
            "{kind: MeshSubset, tags: {version: 'a/b'}}",
            system,
            Some("spec.targetRef.tags[\"version\"]"),
        ),
        (
            "{kind: MeshSubset, tags: {'a b': x}}",
            system,
            Some("spec.targetRef.tags[\"a b\"]"),
        ),
        (
            "{kind: MeshService, name: Web_Service}",
            system,
            Some("spec.targetRef.name"),
        ),
        ("{kind: MeshService}", system, Some("spec.targetRef")),
        (
            "{kind: MeshService, name: x, labels: {a: b}}",
            system,
            Some("spec.targetRef.labels"),
        ),
        (
            "{kind: MeshService, name: x, proxyTypes: [Sidecar]}",
            system,
            Some("spec.targetRef.proxyTypes"),
        ),
        (
            "{kind: Dataplane, labels: {a: b}, namespace: ns}",
            system,
            Some("spec.targetRef.labels"),
        ),
        (
            "{kind: Dataplane, labels: {a: b}, name: x}",
            system,
            Some("spec.targetRef.labels"),
        ),
        (
            "{kind: Dataplane, sectionName: http}",
            system,
            Some("spec.targetRef.sectionName"),
        ),
        ("{kind: Dataplane, tags: {a: b}}", system, Some("spec.targetRef.tags")),
        (
            "{kind: Dataplane, proxyTypes: [Sidecar]}",
            system,
            Some("spec.targetRef.proxyTypes"),
        ),
        (
            "{kind: MeshServiceSubset, tags: {a: b}}",
            system,
            Some("spec.targetRef.name"),
        ),
        ("{kind: MeshGateway}", system, Some("spec.targetRef.name")),
        (
            "{kind: MeshGateway, name: gw, labels: {a: b}}",
            system,
            Some("spec.targetRef.labels"),
        ),
        ("{kind: MeshGateway, name: gw}", consumer, Some("spec.targetRef.kind")),
        ("{kind: MeshHTTPRoute, name: r}", system, Some("spec.targetRef.kind")),
        (
            "{kind: MeshExternalService, name: r}",
            system,
            Some("spec.targetRef.kind"),
        ),
        ("{name: x}", system, Some("spec.targetRef.kind")),
    ];
    let mut failures = Vec::new();
    for (tr, labels, want) in cases {
        let doc = with_target_ref(tr, labels);
        match (parse_documents(&doc), want) {
            (Ok(_), None) => {}
            (Ok(_), Some(f)) => failures.push(format!("{tr} {labels}: accepted, Kuma refuses it at {f}")),
            (Err(e), None) => failures.push(format!("{tr} {labels}: refused, Kuma accepts it: {e}")),
            (Err(e), Some(f)) => {
                let fields: Vec<String> = e.violations().into_iter().map(|v| v.field).collect();
                if !fields.iter().any(|x| x == f) {
                    failures.push(format!("{tr} {labels}: want {f}, got {fields:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deprecated_forms_are_accepted_with_warnings() {
    let p = parse_documents_all(
        "type: MeshMetric\nname: a\nspec: {targetRef: {kind: MeshService, name: web}, default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'otel:4317'}}]}}\n",
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let w: Vec<String> = p.warnings.iter().map(|w| w.warning.message.clone()).collect();
    assert!(
        w.iter()
            .any(|m| m.contains("MeshService value for 'targetRef.kind' is deprecated")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("openTelemetry.endpoint is deprecated")),
        "{w:?}"
    );
    // the current forms carry none
    let p = parse_documents_all(
        "type: MeshMetric\nname: a\nspec: {targetRef: {kind: Dataplane, labels: {app: web}}, default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, labels: {a: b}}}}]}}\n",
    );
    assert!(
        p.errors.is_empty() && p.warnings.is_empty(),
        "{:?} {:?}",
        p.errors,
        p.warnings
    );
}

#[test]
fn application_path_without_slash_is_normalised() {
    let r = parse_documents("type: MeshMetric\nname: a\nspec: {default: {applications: [{path: metrics/prometheus, port: 8888}], backends: [{type: Prometheus, prometheus: {path: stats}}]}}\n").unwrap();
    let Resource::MeshMetric(m) = &r[0] else { unreachable!() };
    let d = &m.spec.default;
    assert_eq!(
        d.applications.as_ref().unwrap()[0].path_or_default(),
        "/metrics/prometheus"
    );
    assert_eq!(
        d.backends.as_ref().unwrap()[0]
            .prometheus
            .as_ref()
            .unwrap()
            .path_or_default(),
        "/stats"
    );
}
