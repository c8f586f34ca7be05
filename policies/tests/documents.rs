use meshmetric_policies::{ParseError, Resource, parse_documents};

fn fields(text: &str) -> Vec<String> {
    match parse_documents(text) {
        Err(e) => e.violations().into_iter().map(|v| v.field).collect(),
        Ok(r) => panic!("expected an error, parsed {r:?}"),
    }
}

#[test]
fn universal_and_kubernetes_forms() {
    let r = parse_documents(
        r#"
type: MeshMetric
name: a
spec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}
---
apiVersion: kuma.io/v1alpha1
kind: MeshMetric
metadata: {name: b, namespace: kuma-system, labels: {kuma.io/mesh: prod}}
spec: {targetRef: {kind: Mesh}, default: {}}
---
apiVersion: kuma.io/v1alpha1
kind: Dataplane
metadata: {name: web, labels: {team: a}}
spec: {networking: {address: 10.0.0.1, inbound: [{port: 1, tags: {kuma.io/service: web}}]}}
"#,
    )
    .unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].meta().mesh, "default");
    assert_eq!(r[1].meta().mesh, "prod");
    assert!(matches!(&r[2], Resource::Dataplane(d) if d.node_id() == "default.web"));
}

#[test]
fn json_is_accepted() {
    let r = parse_documents(r#"{"type":"MeshMetric","name":"j","mesh":"m","spec":{"default":{}}}"#).unwrap();
    assert_eq!(r[0].meta().name, "j");
}

#[test]
fn every_violation_is_reported_with_its_path() {
    let f = fields(
        r#"
type: MeshMetric
name: bad
spec:
  targetRef: {kind: Nope}
  default:
    sidecar:
      profiles:
        appendProfiles: [{name: Fancy}]
        exclude: [{type: Regex, match: "(unclosed"}, {type: Glob, match: ""}]
    applications: [{port: 70000, path: metrics}]
    backends:
      - type: Prometheus
      - type: OpenTelemetry
        openTelemetry: {endpoint: "http://collector:4317", refreshInterval: 0s}
      - type: Kafka
"#,
    );
    let mut f = f;
    f.sort();
    let mut want = vec![
        "spec.targetRef.kind",
        "spec.default.sidecar.profiles.appendProfiles[0].name",
        "spec.default.sidecar.profiles.exclude[0].match",
        "spec.default.sidecar.profiles.exclude[1].type",
        "spec.default.sidecar.profiles.exclude[1].match",
        "spec.default.applications[0].port",
        "spec.default.backends[0].prometheus",
        "spec.default.backends[1].openTelemetry.endpoint",
        "spec.default.backends[1].openTelemetry.refreshInterval",
        "spec.default.backends[2].type",
    ];
    want.sort();
    assert_eq!(f, want);
}

#[test]
fn type_errors_and_unknown_fields_name_the_field() {
    assert_eq!(
        fields("type: MeshMetric\nname: x\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: abc}}]}}"),
        ["spec.default.backends[0].prometheus.port"]
    );
    assert_eq!(
        fields("type: MeshMetric\nname: x\nspec: {default: {sidecar: {includeUnsued: true}}}"),
        ["spec.default.sidecar.includeUnsued"]
    );
    assert_eq!(
        fields("type: Dataplane\nname: d\nnetworking: {address: nope}"),
        ["networking.address"]
    );
    // Kubernetes form: the field is metadata.name
    assert_eq!(
        fields("apiVersion: kuma.io/v1alpha1\nkind: MeshMetric\nmetadata: {labels: {a: b}}\nspec: {}\n"),
        ["metadata.name"]
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = parse_documents("type: MeshMetric\nname: x\nspec: {default: [\n").unwrap_err();
    let ParseError::Syntax(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("line"), "{msg}");
}

#[test]
fn every_invalid_document_is_reported() {
    let p = meshmetric_policies::parse_documents_all(
        "type: MeshMetric\nname: a\nspec: {default: {applications: [{port: 0}]}}\n---\ntype: MeshMetric\nname: b\nspec: {}\n---\ntype: MeshMetric\nname: c\nspec: {targetRef: {kind: X}}\n",
    );
    assert_eq!(p.resources.len(), 1);
    let names: Vec<String> = p
        .errors
        .iter()
        .map(|e| match e {
            ParseError::Invalid { name, .. } => name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn a_mesh_sized_file_parses() {
    // serde-saphyr's default budget stops at 1,024 documents (and 1,000,000 events, ~45,000
    // small Dataplanes); a mesh file has one document per proxy
    let mut s = String::new();
    for i in 0..50_000 {
        s.push_str(&format!(
            "---\ntype: Dataplane\nname: dp-{i}\nlabels: {{kuma.io/workload: svc, team: a}}\nnetworking: {{address: 10.0.0.1, inbound: [{{port: 1, servicePort: 8080, tags: {{kuma.io/service: s}}}}]}}\n"
        ));
    }
    assert_eq!(parse_documents(&s).unwrap().len(), 50_000);
}

#[test]
fn syntax_errors_never_repeat_the_text() {
    let secret = "Bearer SECRET-5f1e";
    for text in [
        format!(
            "type: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{endpoint: 'x:1', headers: [{{name: authorization, value: '{secret}'}}]}}}}]}}}}}}}}\n"
        ),
        format!("type: MeshMetric\nname: m\nspec:\n  default:\n    x: \"{secret}\"\n  oops: [\n"),
    ] {
        let err = parse_documents(&text).unwrap_err();
        let ParseError::Syntax(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("line"), "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
    }
}

#[test]
fn names_and_meshes_follow_kumas_rules() {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let doc = |mesh: &str, name: &str| {
        format!(
            "type: MeshMetric\nmesh: {}\nname: {}\nspec: {{default: {{}}}}\n",
            q(mesh),
            q(name)
        )
    };
    assert!(parse_documents(&doc("default", "web.default")).is_ok());
    assert!(parse_documents(&doc("legacy_mesh", "web-01")).is_ok());
    for (mesh, name, field) in [
        ("default", "../etc/passwd", "name"),
        ("default", "a\nb", "name"),
        ("default", "\u{1b}[31mred", "name"),
        ("default", "Upper", "name"),
        ("default", "", "name"),
        ("", "web", "mesh"),
        ("a.b", "web", "mesh"),
        ("a\nb", "web", "mesh"),
    ] {
        assert_eq!(fields(&doc(mesh, name)), [field], "{mesh:?} {name:?}");
    }
    let long = "a".repeat(100_000);
    let e = parse_documents(&doc("default", &long)).unwrap_err();
    let v = e.violations();
    assert_eq!(v[0].message, "value length must less or equal 253");
    // Kubernetes form: the mesh label and metadata.name
    let k8s = "apiVersion: kuma.io/v1alpha1\nkind: MeshMetric\nmetadata: {name: Bad_Name, labels: {kuma.io/mesh: a.b}}\nspec: {default: {}}\n";
    assert_eq!(fields(k8s), ["metadata.name", "metadata.labels[\"kuma.io/mesh\"]"]);
}

#[test]
fn an_alias_bomb_is_refused() {
    // 10 levels of 10 aliases each: 10^10 nodes if expanded
    let mut text = String::from("type: MeshMetric\nname: m\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    text.push_str("spec: {default: {}}\n");
    assert!(text.len() < 1024);
    let err = parse_documents(&text).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("alias"), "{err}");
}

#[test]
fn hundreds_of_unknown_fields_report_the_first_sixteen() {
    let unknown: Vec<String> = (0..300).map(|i| format!("u{i}: 1")).collect();
    let text = format!(
        "type: MeshMetric\nname: m\nspec: {{default: {{{}}}}}\n",
        unknown.join(", ")
    );
    let e = parse_documents(&text).unwrap_err();
    let v = e.violations();
    assert_eq!(v.len(), 16, "{v:?}");
    assert!(v[15].message.contains("not reported"), "{}", v[15].message);
}

#[test]
fn yaml_booleans_where_strings_belong_get_a_hint() {
    let e = parse_documents("type: MeshMetric\nname: m\nspec: {default: {applications: [{name: no, port: 8080}]}}\n")
        .unwrap_err();
    let v = e.violations();
    assert_eq!(v[0].field, "spec.default.applications[0].name");
    assert!(v[0].message.contains("quote the value"), "{}", v[0].message);
}
