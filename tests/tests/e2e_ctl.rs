//! `meshmetricctl` against a running control plane, and offline.

use std::process::Command;

use meshmetric_tests::*;

fn ctl(cp: &str, token_file: Option<&std::path::Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("meshmetricctl"));
    cmd.args(["--cp", &format!("http://{cp}")]);
    if let Some(t) = token_file {
        cmd.arg("--token-file").arg(t);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "type: Dataplane\nname: web-01\nlabels: {team: a}\nnetworking: {address: 10.0.0.1, inbound: [{port: 1, tags: {kuma.io/service: web}}]}\n---\ntype: MeshMetric\nname: mesh-wide\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n---\ntype: MeshMetric\nname: team-a\nspec: {targetRef: {kind: Dataplane, labels: {team: a}}, default: {applications: [{port: 8080}]}}\n";
const BAD: &str = "type: MeshMetric\nname: team-a\nspec:\n  targetRef: {kind: Dataplane, labels: {team: a}}\n  default:\n    applications: [{port: 99999}]\n    backends: [{type: OpenTelemetry, openTelemetry: {endpoint: \"http://collector:4317\"}}]\n";

#[test]
fn e2e_ctl_validate_offline_apply_get_inspect_delete() {
    let dir = workdir("ctl");
    std::fs::write(dir.join("good.yaml"), GOOD).unwrap();
    std::fs::write(dir.join("bad.yaml"), BAD).unwrap();
    let good = dir.join("good.yaml");
    let bad = dir.join("bad.yaml");
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    // offline: no control plane is running at this address
    let nowhere = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let (code, out, _) = ctl(&nowhere, None, &["validate", "-f", good]);
    assert_eq!(code, 0);
    assert!(out.contains("3 resource(s) valid"), "{out}");
    let (code, _, err) = ctl(&nowhere, None, &["validate", "-f", bad]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("spec.default.applications[0].port")
            && err.contains("spec.default.backends[0].openTelemetry.endpoint"),
        "{err}"
    );

    let cp = ControlPlane::start(&dir, None, &[]);
    let api = cp.api.clone();
    let tf = Some(cp.token_file.as_path());

    let (code, out, err) = ctl(&api, tf, &["apply", "-f", good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MeshMetric default/team-a applied"), "{out}");
    let (_, before, _) = ctl(&api, tf, &["inspect", "dataplane", "web-01"]);
    assert!(
        before.contains("1. mesh-wide") && before.contains("2. team-a"),
        "most specific last:\n{before}"
    );

    // invalid apply: refused locally, and refused by the control plane when sent directly
    let (code, _, err) = ctl(&api, tf, &["apply", "-f", bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("nothing applied") && err.contains("spec.default.applications[0].port"),
        "{err}"
    );
    let (st, body) = cp.call("POST", "/apply", Some(BAD));
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("spec.default.applications[0].port")
            && body.contains("spec.default.backends[0].openTelemetry.endpoint"),
        "{body}"
    );
    let (_, after, _) = ctl(&api, tf, &["inspect", "dataplane", "web-01"]);
    assert_eq!(
        before, after,
        "an invalid apply must leave the running config untouched"
    );

    let (code, out, _) = ctl(&api, tf, &["get", "meshmetrics"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("team-a") && out.contains("Dataplane") && out.contains("mesh-wide"),
        "{out}"
    );
    let (_, json, _) = ctl(&api, tf, &["get", "meshmetric", "team-a", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spec"]["targetRef"]["kind"], "Dataplane");
    let (_, yaml, _) = ctl(&api, tf, &["get", "dataplanes", "-o", "yaml"]);
    assert!(yaml.contains("name: web-01"), "{yaml}");

    let (code, _, _) = ctl(&api, tf, &["delete", "meshmetric", "team-a"]);
    assert_eq!(code, 0);
    let (_, now, _) = ctl(&api, tf, &["inspect", "dataplane", "web-01"]);
    assert!(now.contains("1. mesh-wide") && !now.contains("team-a"), "{now}");
    let (code, _, err) = ctl(&api, tf, &["delete", "meshmetric", "team-a"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Absurd values are refused naming the field, by `validate` (exit 1, no panic), the REST API
/// (400, the connection answered) and MADS (400).
#[test]
fn e2e_hostile_durations_and_ports_are_refused_not_panics() {
    let dir = workdir("ctl-hostile");
    let doc = "type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{port: 99999999999999999999}]\n    backends:\n      - type: OpenTelemetry\n        openTelemetry: {endpoint: 'otel:4317', refreshInterval: 99999999999999999999h, timeout: 2562048h}\n";
    std::fs::write(dir.join("hostile.yaml"), doc).unwrap();
    let nowhere = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let (code, _, err) = ctl(
        &nowhere,
        None,
        &["validate", "-f", dir.join("hostile.yaml").to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    for field in [
        "spec.default.applications[0].port",
        "spec.default.backends[0].openTelemetry.refreshInterval",
        "spec.default.backends[0].openTelemetry.timeout",
    ] {
        assert!(err.contains(field), "{field} not named:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let cp = ControlPlane::start(&dir, None, &[]);
    let (st, body) = cp.call("PUT", "/meshes/default/meshmetrics/m", Some(doc));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("refreshInterval") && body.contains("too large"), "{body}");
    let (st, body) = http(
        "POST",
        &cp.mads,
        "/v3/discovery:monitoringassignments?fetch-timeout=99999999999999999999h",
        Some("{\"node\":{\"id\":\"p\"}}"),
    )
    .unwrap();
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("fetch-timeout"), "{body}");
    let log = cp.proc.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
