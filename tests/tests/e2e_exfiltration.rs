//! A policy author cannot make a proxy send what its pod owner did not allow: files outside
//! `--header-file-dir` (also through a symlink planted inside it), environment variables
//! without a `--header-env-prefix`, the pod's own `OTEL_EXPORTER_OTLP_HEADERS` to an endpoint
//! the policy chose, secrets in plaintext off the host, or secrets written inline; and a
//! `refreshInterval` of 1ns exports once a second. Real Envoy, real control plane, the Python
//! OTLP receiver recording every request's headers.

use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

const ALLOWED_FILE: &str = "Bearer allowed-7d1c";
const ALLOWED_ENV: &str = "env-ok-5e3a";
const OUTSIDE: &str = "outside-secret-4c2f";
const AWS: &str = "aws-secret-91fb";
const POD: &str = "pod-secret-a8b0";

fn headers_seen(r: &OtlpReceiver) -> Vec<Value> {
    r.records().into_iter().map(|r| r["headers"].clone()).collect()
}

#[test]
fn e2e_policies_cannot_exfiltrate_files_env_or_pod_headers() {
    let dir = workdir("exfil");
    let allowed = dir.join("allowed");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(allowed.join("token"), ALLOWED_FILE).unwrap();
    std::fs::write(outside.join("secret"), OUTSIDE).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), allowed.join("link")).unwrap();

    let good = OtlpReceiver::start(&dir, "good", &[]);
    let linked = OtlpReceiver::start(&dir, "linked", &[]);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    let ip = free_loopback(41, 5670);
    std::fs::write(
        res.join("dp.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, tags: {{kuma.io/service: web}}}}]}}\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let dp = Proc::start_env(
        "dp",
        &dir,
        &bin("meshmetric-dp"),
        &[
            "run",
            "--name",
            "web-01",
            "--workdir",
            dir.join("web-01").to_str().unwrap(),
            "--cp-address",
            &cp.xds,
            "--admin-address",
            &format!("127.0.0.1:{}", free_port("127.0.0.1")),
            "--envoy-binary",
            envoy().to_str().unwrap(),
            "--header-file-dir",
            allowed.to_str().unwrap(),
            "--header-env-prefix",
            "OTLP_",
        ],
        &[
            ("OTLP_TOKEN", ALLOWED_ENV),
            ("AWS_SECRET_ACCESS_KEY", AWS),
            ("OTEL_EXPORTER_OTLP_HEADERS", &format!("x-pod={POD}")),
        ],
    );
    let file = |f: &std::path::Path| format!("{{file: \"{}\"}}", f.display());
    let policy = format!(
        "type: MeshMetric\nname: m\nspec:\n  default:\n    backends:\n      - {{type: Prometheus, prometheus: {{port: 5670}}}}\n{}{}{}{}",
        format_args!(
            "      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"{}\", refreshInterval: 1ns, headers: [{{name: authorization, valueFrom: {}}}, {{name: x-api-key, valueFrom: {{env: OTLP_TOKEN}}}}, {{name: x-scope-orgid, value: team-a}}]}}}}\n",
            good.grpc,
            file(&allowed.join("token"))
        ),
        format_args!(
            "      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"{}\", protocol: http, headers: [{{name: authorization, valueFrom: {}}}]}}}}\n",
            good.http,
            file(&allowed.join("../outside/secret"))
        ),
        format_args!(
            "      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{}\", protocol: http, headers: [{{name: x-api-key, valueFrom: {{env: AWS_SECRET_ACCESS_KEY}}}}]}}}}\n",
            free_port("127.0.0.1")
        ),
        format_args!(
            "      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"{}\", refreshInterval: 1s, headers: [{{name: authorization, valueFrom: {}}}]}}}}\n",
            linked.grpc,
            file(&allowed.join("link"))
        ),
    );
    let (st, body) = cp.call("PUT", "/meshes/default/meshmetrics/m", Some(&policy));
    assert!(st == 200 || st == 201, "{st} {body}");
    assert!(
        body.contains("refreshInterval") && body.contains("below the minimum"),
        "a warning about 1ns: {body}"
    );

    // the allowed sources arrive, and nothing else
    let first = wait_for(Duration::from_secs(60), || {
        headers_seen(&good)
            .into_iter()
            .find(|h| h["authorization"] == ALLOWED_FILE)
    })
    .unwrap_or_else(|| panic!("nothing arrived\n{}", dp.log_text()));
    assert_eq!(first["x-api-key"], ALLOWED_ENV, "{first}");
    assert_eq!(first["x-scope-orgid"], "team-a", "{first}");
    assert!(
        first.get("x-pod").is_none(),
        "pod headers went to a policy's endpoint: {first}"
    );

    // 1ns is raised to 1 s: a handful of exports in 5 s, not thousands
    let before = good.records().len();
    std::thread::sleep(Duration::from_secs(5));
    let during = good.records().len() - before;
    assert!((2..=8).contains(&during), "{during} exports in 5 s");

    // the control plane shows the refused backends, with the flag that would allow them
    let (st, view) = cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None);
    assert_eq!(st, 200, "{view}");
    let view: Value = serde_json::from_str(&view).unwrap();
    let inactive = view["inactiveBackends"].as_array().expect("inactive backends").clone();
    let reason = |b: &str| {
        inactive
            .iter()
            .find(|i| i["backend"] == b)
            .and_then(|i| i["reason"].as_str())
            .unwrap_or_else(|| panic!("{b} is not inactive: {view}"))
            .to_string()
    };
    assert!(reason("backends[2]").contains("--header-file-dir"), "{view}");
    assert!(reason("backends[3]").contains("--header-env-prefix"), "{view}");
    // the symlink looks allowed by its path; the plugin resolves it and refuses to read it
    wait_for(Duration::from_secs(20), || {
        dp.log_text().contains("resolves outside the directories").then_some(())
    })
    .unwrap_or_else(|| panic!("the planted link was not refused\n{}", dp.log_text()));
    assert!(linked.records().is_empty(), "sent through a planted link");
    assert!(dp.log_text().contains("OTEL_EXPORTER_OTLP_HEADERS not sent"));

    // refused at apply: a secret inline, and a secret in plaintext to another host
    for (doc, expect) in [
        (
            "type: MeshMetric\nname: x\nspec: {default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: \"127.0.0.1:4317\", headers: [{name: x-honeycomb-team, value: hc-key}]}}]}}\n",
            "valueFrom",
        ),
        (
            "type: MeshMetric\nname: x\nspec: {default: {backends: [{type: OpenTelemetry, openTelemetry: {endpoint: \"10.1.2.3:4317\", headers: [{name: authorization, valueFrom: {env: OTLP_TOKEN}}]}}]}}\n",
            "neither TLS nor loopback",
        ),
    ] {
        let (st, body) = cp.call("POST", "/apply", Some(doc));
        assert_eq!(st, 400, "{doc}: {body}");
        assert!(body.contains(expect), "{body}");
    }

    // no refused value anywhere
    let everything = format!(
        "{}{}{:?}{:?}{}",
        dp.log_text(),
        cp.proc.log_text(),
        good.records(),
        linked.records(),
        view
    );
    for secret in [OUTSIDE, AWS, POD] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
