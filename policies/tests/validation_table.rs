//! Table of valid and invalid MeshMetric documents and the field paths of their violations.

use meshmetric_policies::parse_documents;

/// A Universal MeshMetric named `t` with `spec` given inline (YAML flow or block).
fn mm(spec: &str) -> String {
    format!("type: MeshMetric\nmesh: default\nname: t\nspec: {spec}\n")
}

fn fields_of(doc: &str) -> Vec<String> {
    let mut f: Vec<String> = match parse_documents(doc) {
        Ok(_) => vec![],
        Err(e) => e.violations().into_iter().map(|v| v.field).collect(),
    };
    f.sort();
    f
}

#[test]
fn validation_table() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        // ---- valid documents
        ("empty default", mm("{default: {}}"), vec![]),
        ("no spec at all", "type: MeshMetric\nname: t\n".into(), vec![]),
        ("mesh targetRef", mm("{targetRef: {kind: Mesh}, default: {}}"), vec![]),
        ("dataplane by labels", mm("{targetRef: {kind: Dataplane, labels: {app: web}}, default: {}}"), vec![]),
        ("dataplane by name", mm("{targetRef: {kind: Dataplane, name: web-01}, default: {}}"), vec![]),
        ("dataplane section", mm("{targetRef: {kind: Dataplane, sectionName: http}, default: {}}"), vec!["spec.targetRef.sectionName"]),
        ("service section (Kuma accepts)", mm("{targetRef: {kind: MeshService, name: a, sectionName: x}, default: {}}"), vec![]),
        ("app path without slash (Kuma accepts)", mm("{default: {applications: [{port: 1, path: metrics}]}}"), vec![]),
        ("backendRef by labels", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, labels: {a: b}}}}]}}"), vec![]),
        ("backendRef by name (extension)", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, name: otel}}}]}}"), vec![]),
        ("backendRef without kind", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {name: otel}}}]}}"), vec!["spec.default.backends[0].openTelemetry.backendRef.kind"]),
        ("backendRef wrong kind", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshService, name: otel}}}]}}"), vec!["spec.default.backends[0].openTelemetry.backendRef.kind"]),
        ("backendRef name and labels", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, name: o, labels: {a: b}}}}]}}"), vec!["spec.default.backends[0].openTelemetry.backendRef"]),
        ("app same name as unnamed port", mm("{default: {applications: [{port: 18091}, {name: '18091', port: 18092}]}}"), vec!["spec.default.applications[1].name"]),
        ("app same endpoint with and without address", mm("{default: {applications: [{name: a, port: 80}, {name: b, port: 80, address: 127.0.0.1}]}}"), vec!["spec.default.applications[1].port"]),
        ("mesh subset", mm("{targetRef: {kind: MeshSubset, tags: {version: v1}}, default: {}}"), vec![]),
        ("mesh service", mm("{targetRef: {kind: MeshService, name: web}, default: {}}"), vec![]),
        ("mesh service subset", mm("{targetRef: {kind: MeshServiceSubset, name: web, tags: {v: '1'}}, default: {}}"), vec![]),
        ("all selector types", mm("{default: {sidecar: {profiles: {appendProfiles: [{name: All}, {name: Basic}], include: [{type: Prefix, match: a}, {type: Exact, match: b}], exclude: [{type: Regex, match: 'x.*y'}, {type: Contains, match: c}]}}}}"), vec![]),
        ("full backends", mm("{default: {backends: [{type: Prometheus, prometheus: {clientId: a, port: 5670, path: /m, tls: {mode: ProvidedTLS}}}, {type: Prometheus, prometheus: {clientId: b, port: 5671}}, {type: OpenTelemetry, openTelemetry: {endpoint: 'otel:4317', protocol: http, refreshInterval: 30s, timeout: 5s, compression: gzip, temporality: Delta, queueSize: 10, headers: [{name: x-tenant, value: t1}, {name: authorization, valueFrom: {env: OTLP_TOKEN}}], tls: {caFile: /ca.pem, certFile: /c.pem, keyFile: /k.pem}}}]}}"), vec![]),
        ("otel secret to a loopback collector", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: '127.0.0.1:4317', refreshInterval: 1ns, headers: [{name: authorization, valueFrom: {file: /var/run/secrets/otlp/token}}]}}]}}"), vec![]),
        ("applications", mm("{default: {applications: [{name: a, port: 8080}, {name: b, port: 8081, path: /stats, address: 10.0.0.1}]}}"), vec![]),
        ("otlp receiver", mm("{default: {otlpReceiver: {enabled: true}}}"), vec![]),
        ("otlp receiver ports", mm("{default: {otlpReceiver: {enabled: true, grpcPort: 14317, httpPort: 14318}}}"), vec![]),
        ("otlp receiver same ports", mm("{default: {otlpReceiver: {enabled: true, grpcPort: 4318}}}"), vec!["spec.default.otlpReceiver.httpPort"]),
        ("otlp receiver port 0", mm("{default: {otlpReceiver: {enabled: true, grpcPort: 0}}}"), vec!["spec.default.otlpReceiver.grpcPort"]),
        ("otlp receiver unknown field", mm("{default: {otlpReceiver: {enabled: true, address: 0.0.0.0}}}"), vec!["spec.default.otlpReceiver.address"]),
        ("kubernetes form", "apiVersion: kuma.io/v1alpha1\nkind: MeshMetric\nmetadata: {name: t, namespace: kuma-system}\nspec: {default: {}}\n".into(), vec![]),
        // ---- targetRef
        ("unknown kind", mm("{targetRef: {kind: Pod}, default: {}}"), vec!["spec.targetRef.kind"]),
        ("missing kind", mm("{targetRef: {name: x}, default: {}}"), vec!["spec.targetRef.kind"]),
        ("mesh with name", mm("{targetRef: {kind: Mesh, name: x}, default: {}}"), vec!["spec.targetRef.name"]),
        ("service without name", mm("{targetRef: {kind: MeshService}, default: {}}"), vec!["spec.targetRef"]),
        ("tags on dataplane", mm("{targetRef: {kind: Dataplane, tags: {a: b}}, default: {}}"), vec!["spec.targetRef.tags"]),
        ("labels on subset", mm("{targetRef: {kind: MeshSubset, labels: {a: b}}, default: {}}"), vec!["spec.targetRef.labels"]),
        ("name and labels", mm("{targetRef: {kind: Dataplane, name: a, labels: {x: z}}, default: {}}"), vec!["spec.targetRef.labels"]),
        // ---- profiles and selectors
        ("unknown profile", mm("{default: {sidecar: {profiles: {appendProfiles: [{name: Fancy}]}}}}"), vec!["spec.default.sidecar.profiles.appendProfiles[0].name"]),
        ("duplicate profile", mm("{default: {sidecar: {profiles: {appendProfiles: [{name: All}, {name: All}]}}}}"), vec!["spec.default.sidecar.profiles.appendProfiles[1].name"]),
        ("profile as string", mm("{default: {sidecar: {profiles: {appendProfiles: [Basic]}}}}"), vec!["spec.default.sidecar.profiles.appendProfiles[0]", "spec.default.sidecar.profiles.appendProfiles[0].name"]),
        ("bad regex", mm("{default: {sidecar: {profiles: {include: [{type: Regex, match: '(a'}]}}}}"), vec!["spec.default.sidecar.profiles.include[0].match"]),
        ("unknown selector type", mm("{default: {sidecar: {profiles: {exclude: [{type: Glob, match: 'a*'}]}}}}"), vec!["spec.default.sidecar.profiles.exclude[0].type"]),
        ("empty match", mm("{default: {sidecar: {profiles: {exclude: [{type: Prefix, match: ''}]}}}}"), vec!["spec.default.sidecar.profiles.exclude[0].match"]),
        ("includeUnused not bool", mm("{default: {sidecar: {includeUnused: maybe}}}"), vec!["spec.default.sidecar.includeUnused"]),
        // ---- applications
        ("app port out of range", mm("{default: {applications: [{port: 70000}]}}"), vec!["spec.default.applications[0].port"]),
        ("app port missing", mm("{default: {applications: [{name: a}]}}"), vec!["spec.default.applications[0].port"]),
        ("app path with a space", mm("{default: {applications: [{port: 1, path: '/a b'}]}}"), vec!["spec.default.applications[0].path"]),
        ("app duplicate name", mm("{default: {applications: [{name: a, port: 1}, {name: a, port: 2}]}}"), vec!["spec.default.applications[1].name"]),
        ("app duplicate port", mm("{default: {applications: [{port: 1}, {port: 1, path: /x}]}}"), vec!["spec.default.applications[1].port"]),
        // ---- backends
        ("unknown backend type", mm("{default: {backends: [{type: Kafka}]}}"), vec!["spec.default.backends[0].type"]),
        ("prometheus body missing", mm("{default: {backends: [{type: Prometheus}]}}"), vec!["spec.default.backends[0].prometheus"]),
        ("otel body missing", mm("{default: {backends: [{type: OpenTelemetry}]}}"), vec!["spec.default.backends[0].openTelemetry"]),
        ("wrong body for type", mm("{default: {backends: [{type: Prometheus, prometheus: {}, openTelemetry: {endpoint: 'a:1'}}]}}"), vec!["spec.default.backends[0].openTelemetry"]),
        ("prometheus port range", mm("{default: {backends: [{type: Prometheus, prometheus: {port: 0}}]}}"), vec!["spec.default.backends[0].prometheus.port"]),
        ("prometheus path", mm("{default: {backends: [{type: Prometheus, prometheus: {path: 'a#b'}}]}}"), vec!["spec.default.backends[0].prometheus.path"]),
        ("duplicate clientId", mm("{default: {backends: [{type: Prometheus, prometheus: {clientId: a, port: 1}}, {type: Prometheus, prometheus: {clientId: a, port: 2}}]}}"), vec!["spec.default.backends[1].prometheus.clientId"]),
        ("two backends one port", mm("{default: {backends: [{type: Prometheus, prometheus: {clientId: a}}, {type: Prometheus, prometheus: {clientId: b}}]}}"), vec!["spec.default.backends[1].prometheus.port"]),
        ("ActiveMTLSBackend", mm("{default: {backends: [{type: Prometheus, prometheus: {tls: {mode: ActiveMTLSBackend}}}]}}"), vec!["spec.default.backends[0].prometheus.tls.mode"]),
        ("unknown tls mode", mm("{default: {backends: [{type: Prometheus, prometheus: {tls: {mode: Strict}}}]}}"), vec!["spec.default.backends[0].prometheus.tls.mode"]),
        ("otel endpoint is URL", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'http://otel:4317'}}]}}"), vec!["spec.default.backends[0].openTelemetry.endpoint"]),
        ("otel endpoint no port", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: otel}}]}}"), vec!["spec.default.backends[0].openTelemetry.endpoint"]),
        ("otel refreshInterval zero", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', refreshInterval: 0s}}]}}"), vec!["spec.default.backends[0].openTelemetry.refreshInterval"]),
        ("otel refreshInterval garbage", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', refreshInterval: soon}}]}}"), vec!["spec.default.backends[0].openTelemetry.refreshInterval"]),
        ("otel protocol", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', protocol: udp}}]}}"), vec!["spec.default.backends[0].openTelemetry.protocol"]),
        ("otel inline secret header", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', headers: [{name: Authorization, value: 'Bearer x'}]}}]}}"), vec!["spec.default.backends[0].openTelemetry.headers[0].value"]),
        ("otel header both values", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: '127.0.0.1:1', headers: [{name: a, value: b, valueFrom: {env: B}}]}}]}}"), vec!["spec.default.backends[0].openTelemetry.headers[0]"]),
        ("otel inline vendor key", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', headers: [{name: x-honeycomb-team, value: k}]}}]}}"), vec!["spec.default.backends[0].openTelemetry.headers[0].value"]),
        ("otel inline dsn", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', headers: [{name: uptrace-dsn, value: 'https://k@uptrace'}]}}]}}"), vec!["spec.default.backends[0].openTelemetry.headers[0].value"]),
        ("otel secret in plaintext off the host", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'collector:4317', headers: [{name: x-scope-orgid, value: t}, {name: authorization, valueFrom: {env: OTLP_TOKEN}}]}}]}}"), vec!["spec.default.backends[0].openTelemetry.headers[1].valueFrom"]),
        ("otel tls half mTLS", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', tls: {certFile: /c}}}]}}"), vec!["spec.default.backends[0].openTelemetry.tls"]),
        ("otel duplicate endpoint", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1'}}, {type: OpenTelemetry, openTelemetry: {endpoint: 'o:1'}}]}}"), vec!["spec.default.backends[1].openTelemetry.endpoint"]),
        ("otel queueSize", mm("{default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'o:1', queueSize: 0}}]}}"), vec!["spec.default.backends[0].openTelemetry.queueSize"]),
        // ---- unknown fields and types
        ("unknown field in default", mm("{default: {sidecars: {}}}"), vec!["spec.default.sidecars"]),
        ("unknown field in backend", mm("{default: {backends: [{type: Prometheus, prometheus: {prot: 1}}]}}"), vec!["spec.default.backends[0].prometheus.prot"]),
        ("port is a string", mm("{default: {backends: [{type: Prometheus, prometheus: {port: abc}}]}}"), vec!["spec.default.backends[0].prometheus.port"]),
        ("unknown top-level field", "type: MeshMetric\nname: t\nspce: {}\n".into(), vec!["spce"]),
        ("missing name", "type: MeshMetric\nspec: {}\n".into(), vec!["name"]),
        ("kubernetes wrong apiVersion", "apiVersion: kuma.io/v1\nkind: MeshMetric\nmetadata: {name: t}\nspec: {}\n".into(), vec!["apiVersion"]),
        // ---- several violations in one document, all reported
        (
            "combined",
            mm("{targetRef: {kind: Nope}, default: {sidecar: {profiles: {appendProfiles: [{name: X}]}, typo: 1}, applications: [{port: -1}], backends: [{type: Prometheus, prometheus: {port: abc, path: 'x y'}}, {type: OpenTelemetry, openTelemetry: {endpoint: 'http://x'}}]}}"),
            vec![
                "spec.default.backends[0].prometheus.port",
                "spec.default.sidecar.typo",
                "spec.targetRef.kind",
                "spec.default.sidecar.profiles.appendProfiles[0].name",
                "spec.default.applications[0].port",
                "spec.default.backends[0].prometheus.path",
                "spec.default.backends[1].openTelemetry.endpoint",
            ],
        ),
    ];
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, doc, want) in &cases {
        let got = fields_of(doc);
        let mut want = want.clone();
        want.sort();
        if got != want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn messages_say_what_is_accepted() {
    let err = parse_documents(&mm(
        "{targetRef: {kind: Pod}, default: {backends: [{type: Prometheus, prometheus: {port: 0}}]}}",
    ))
    .unwrap_err()
    .violations();
    let message = |f: &str| {
        err.iter()
            .find(|v| v.field == f)
            .map(|v| v.message.clone())
            .unwrap_or_default()
    };
    assert!(
        message("spec.targetRef.kind")
            .contains("accepted: Mesh, Dataplane, MeshSubset, MeshGateway, MeshService, MeshServiceSubset"),
        "{err:?}"
    );
    assert!(
        message("spec.default.backends[0].prometheus.port").contains("1-65535"),
        "{err:?}"
    );
}

#[test]
fn syntax_errors_have_line_and_column_in_yaml_and_json() {
    for text in [
        "type: MeshMetric\nname: t\nspec: {default: [\n",
        "{\"type\": \"MeshMetric\",\n \"name\": \"t\",\n \"spec\": {\"default\": }}",
    ] {
        let e = parse_documents(text).unwrap_err().to_string();
        assert!(e.contains("line") && e.contains("column"), "{e}");
    }
}
