//! The checked-in JSON Schema and CRD under docs/ must equal what the types generate.

use std::path::Path;

use meshmetric_policies::schema::{crd, crd_yaml, json_schema_text};

fn docs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

#[test]
fn checked_in_schema_and_crd_are_fresh() {
    for (file, want) in [
        ("meshmetric.schema.json", json_schema_text()),
        ("meshmetric-crd.yaml", crd_yaml()),
    ] {
        let got = std::fs::read_to_string(docs().join(file)).unwrap_or_default();
        assert!(
            got == want,
            "docs/{file} is stale: run `cargo run -p meshmetric-control-plane --bin meshmetricctl -- schema --out-dir docs`"
        );
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
    let c = crd();
    walk(&c["spec"]["versions"][0]["schema"], "schema");
    let spec = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["targetRef"]["properties"]["kind"]["enum"][0], "Mesh");
    assert_eq!(spec["properties"]["targetRef"]["required"], serde_json::json!(["kind"]));
    assert_eq!(
        spec["properties"]["default"]["properties"]["backends"]["items"]["properties"]["prometheus"]["properties"]["port"]
            ["maximum"],
        65535
    );
}
