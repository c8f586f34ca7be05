//! The checked-in JSON Schema and CRD under docs/ must equal what the types generate.

use std::path::Path;

use meshmetric_policies::schema::{Published, crd, crd_yaml, json_schema_text};

fn docs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

#[test]
fn checked_in_schema_and_crd_are_fresh() {
    for kind in Published::ALL {
        let (schema, crd_file) = kind.files();
        for (file, want) in [(schema, json_schema_text(kind)), (crd_file, crd_yaml(kind))] {
            let got = std::fs::read_to_string(docs().join(file)).unwrap_or_default();
            assert!(
                got == want,
                "docs/{file} is stale: run `cargo run -p meshmetric-control-plane --bin meshmetricctl -- schema --out-dir docs`"
            );
        }
    }
}

#[test]
fn crd_is_structural() {
    fn walk(v: &serde_json::Value, path: &str) {
        if path.ends_with(".properties")
            && let serde_json::Value::Object(m) = v
        {
            // a map of property names: each value is a schema
            for (k, c) in m {
                walk(c, &format!("{path}.{k}"));
            }
            return;
        }
        if let serde_json::Value::Object(m) = v {
            assert!(
                !m.contains_key("$ref") && !m.contains_key("const") && !m.contains_key("$schema"),
                "{path}"
            );
            assert!(
                !(m.contains_key("properties") && m.contains_key("additionalProperties")),
                "{path}"
            );
            if let Some(t) = m.get("type") {
                assert!(t.is_string(), "{path}: type must be a single string, got {t}");
            }
            for (k, c) in m {
                walk(c, &format!("{path}.{k}"));
            }
        } else if let serde_json::Value::Array(a) = v {
            a.iter().enumerate().for_each(|(i, c)| walk(c, &format!("{path}[{i}]")));
        }
    }
    for kind in Published::ALL {
        walk(&crd(kind)["spec"]["versions"][0]["schema"], "schema");
    }
    let c = crd(Published::MeshMetric);
    let spec = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["targetRef"]["properties"]["kind"]["enum"][0], "Mesh");
    assert_eq!(spec["properties"]["targetRef"]["required"], serde_json::json!(["kind"]));
    assert_eq!(
        spec["properties"]["default"]["properties"]["backends"]["items"]["properties"]["prometheus"]["properties"]["port"]
            ["maximum"],
        65535
    );
    // enumerations come from the types
    assert_eq!(
        spec["properties"]["default"]["properties"]["backends"]["items"]["properties"]["type"]["enum"],
        serde_json::json!(["Prometheus", "OpenTelemetry"])
    );
    let motb = crd(Published::MeshOpenTelemetryBackend);
    let spec = &motb["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["protocol"]["enum"],
        serde_json::json!(["grpc", "http"])
    );
    assert_eq!(motb["spec"]["names"]["shortNames"], serde_json::json!(["motb"]));
}
