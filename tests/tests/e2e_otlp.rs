//! OTLP export end to end with real receivers: a Python receiver on the official
//! opentelemetry-proto classes (to assert on exactly what arrived), rotel as a third-party
//! collector over gRPC and HTTP, a receiver that never answers, one that fails twice, and one
//! that requires mTLS — all fed by one meshmetric-dp beside a real Envoy.

use std::path::Path;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

type Receiver = OtlpReceiver;

fn receiver(dir: &Path, name: &str, extra: &[&str]) -> Receiver {
    OtlpReceiver::start(dir, name, extra)
}

fn records(r: &Receiver) -> Vec<Value> {
    r.records()
}

fn metric<'a>(rec: &'a Value, name: &str) -> Option<&'a Value> {
    rec["request"]["resourceMetrics"][0]["scopeMetrics"]
        .as_array()?
        .iter()
        .flat_map(|s| s["metrics"].as_array().into_iter().flatten())
        .find(|m| m["name"] == name)
}

fn has_metric_named(rec: &Value, name: &str) -> bool {
    metric(rec, name).is_some()
}

#[test]
fn e2e_otlp_faithful_isolated_retried_secret_and_tls() {
    let dir = workdir("otlp");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "server", "receiver");
    make_cert(&certs, "client", "meshmetric-dp");
    let token = dir.join("token");
    std::fs::write(&token, "Bearer first-secret-4711\n").unwrap();
    let c = |f: &str| certs.join(f).to_str().unwrap().to_string();

    let a = receiver(&dir, "recv-a", &[]);
    let hang = receiver(&dir, "recv-hang", &["--hang"]);
    let flaky = receiver(&dir, "recv-flaky", &["--fail-first", "2"]);
    let mtls = receiver(
        &dir,
        "recv-mtls",
        &[
            "--tls-cert",
            &c("server.pem"),
            "--tls-key",
            &c("server.key"),
            "--client-ca",
            &c("ca.pem"),
        ],
    );
    let behind_rotel = receiver(&dir, "recv-rotel", &[]);
    let (rg, rh) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let rotel_proc = Proc::start(
        "rotel",
        &dir,
        &rotel(),
        &[
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{rg}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{rh}"),
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://{}", behind_rotel.grpc),
            "--otlp-exporter-protocol",
            "grpc",
        ],
    );

    let app_port = free_port("127.0.0.1");
    let ip = free_loopback(5, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("dp.yaml"), format!("type: Dataplane\nname: web-01\nlabels: {{kuma.io/workload: web, kuma.io/zone: z1}}\nnetworking:\n  address: {ip}\n  inbound: [{{port: {}, servicePort: {app_port}, tags: {{kuma.io/service: web}}}}]\n", free_port(&ip))).unwrap();
    let backend = |endpoint: &str, extra: &str| {
        format!(
            "      - type: OpenTelemetry\n        openTelemetry: {{endpoint: \"{endpoint}\", refreshInterval: 1s{extra}}}\n"
        )
    };
    let mut policy = format!(
        "type: MeshMetric\nname: otel\nspec:\n  default:\n    applications: [{{name: app, port: {app_port}}}]\n    backends:\n      - {{type: Prometheus, prometheus: {{port: 5670}}}}\n"
    );
    policy.push_str(&backend(&a.grpc, &format!(", compression: gzip, headers: [{{name: authorization, valueFrom: {{file: \"{}\"}}}}, {{name: x-tenant, value: team-a}}]", token.display())));
    policy.push_str(&backend(&a.http, ", protocol: http"));
    policy.push_str(&backend(&hang.http, ", protocol: http, timeout: 1s, queueSize: 2"));
    policy.push_str(&backend(&flaky.grpc, ""));
    policy.push_str(&backend(
        &format!("localhost:{}", mtls.grpc.rsplit(':').next().unwrap()),
        &format!(
            ", tls: {{caFile: \"{}\", certFile: \"{}\", keyFile: \"{}\"}}",
            c("ca.pem"),
            c("client.pem"),
            c("client.key")
        ),
    ));
    policy.push_str(&backend(&format!("127.0.0.1:{rg}"), ""));
    policy.push_str(&backend(&format!("127.0.0.1:{rh}"), ", protocol: http"));
    std::fs::write(res.join("policy.yaml"), &policy).unwrap();

    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{app_port}")],
    );
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    // the pod owner lets policies read header files from the test's directory
    let dp = start_proxy_with(&dir, "web-01", &cp, &["--header-file-dir", dir.to_str().unwrap()]);
    let prom = format!("{ip}:5670");
    let dp_metrics = || get_ok(&prom, "/metrics").unwrap_or_default();

    // 1. exactly what arrived at the Python receiver over gRPC
    let rec = wait_for(Duration::from_secs(60), || {
        records(&a)
            .into_iter()
            .rev()
            .find(|r| r["transport"] == "grpc" && has_metric_named(r, "sample_app_request_duration_seconds"))
    })
    .unwrap_or_else(|| {
        panic!(
            "nothing arrived over gRPC\ndp:\n{}\ncp:\n{}",
            dp.log_text(),
            cp.proc.log_text()
        )
    });
    let counter = metric(&rec, "sample_app_requests").expect("counter, _total removed");
    assert_eq!(counter["sum"]["isMonotonic"], true);
    assert_eq!(
        counter["sum"]["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let attrs: Vec<String> = counter["sum"]["dataPoints"][0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}={}",
                a["key"].as_str().unwrap(),
                a["value"]["stringValue"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        attrs.contains(&"path=/".to_string())
            && attrs.contains(&"dataplane=web-01".to_string())
            && attrs.contains(&"kuma_workload=web".to_string()),
        "{attrs:?}"
    );
    assert!(
        counter["sum"]["dataPoints"][0]["startTimeUnixNano"].as_str().is_some(),
        "start time set"
    );
    assert!(metric(&rec, "sample_app_uptime_seconds").unwrap()["gauge"].is_object());
    let h = &metric(&rec, "sample_app_request_duration_seconds").unwrap()["histogram"]["dataPoints"][0];
    assert_eq!(h["explicitBounds"], serde_json::json!([0.001, 0.01, 0.1]));
    assert_eq!(h["bucketCounts"].as_array().unwrap().len(), 4);
    let resource: Vec<String> = rec["request"]["resourceMetrics"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}={}",
                a["key"].as_str().unwrap(),
                a["value"]["stringValue"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in ["mesh=default", "dataplane=web-01", "service.name=web", "zone=z1"] {
        assert!(
            resource.contains(&want.to_string()),
            "resource {resource:?} lacks {want}"
        );
    }
    assert_eq!(
        rec["request"]["resourceMetrics"][0]["scopeMetrics"][0]["scope"]["name"],
        "meshmetric-dp"
    );
    assert_eq!(rec["headers"]["authorization"], "Bearer first-secret-4711");
    assert_eq!(rec["headers"]["x-tenant"], "team-a");
    assert!(
        records(&a)
            .iter()
            .any(|r| r["transport"] == "http" && has_metric_named(r, "sample_app_requests")),
        "HTTP/protobuf export arrived"
    );

    // 2. the secret file is rotated: the next exports carry the new value
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&token, "Bearer second-secret-0815\n").unwrap();
    wait_for(Duration::from_secs(15), || {
        records(&a)
            .iter()
            .any(|r| r["headers"]["authorization"] == "Bearer second-secret-0815")
            .then_some(())
    })
    .expect("rotated token never used");

    // 3. retry: UNAVAILABLE twice, then OK
    wait_for(Duration::from_secs(30), || (!records(&flaky).is_empty()).then_some(()))
        .expect("flaky receiver never got data");
    let m = dp_metrics();
    let retries = sample_value(
        &m,
        &format!("meshmetric_dp_otlp_retries_total{{backend=\"{}\"", flaky.grpc),
    )
    .unwrap_or(0.0);
    assert!(retries >= 2.0, "retries {retries}\n{m}");
    assert_eq!(
        sample_value(
            &m,
            &format!(
                "meshmetric_dp_otlp_data_points_total{{backend=\"{}\",result=\"failed\"",
                flaky.grpc
            )
        ),
        Some(0.0)
    );

    // 4. mTLS with certificates made by the test
    wait_for(Duration::from_secs(30), || {
        records(&mtls)
            .iter()
            .any(|r| has_metric_named(r, "sample_app_requests"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("mTLS receiver got nothing\n{}", dp.log_text()));

    // 5. a third-party collector (rotel) accepted both transports and forwarded the data
    wait_for(Duration::from_secs(30), || {
        records(&behind_rotel)
            .iter()
            .any(|r| has_metric_named(r, "sample_app_requests"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("nothing came through rotel: {}", rotel_proc.log_text()));

    // 6. isolation: the dead backend drops (counted, bounded queue) while the healthy one keeps its cadence
    let hang_key = format!("backend=\"{}\"", hang.http);
    wait_for(Duration::from_secs(30), || {
        (sample_value(
            &dp_metrics(),
            &format!("meshmetric_dp_otlp_data_points_total{{{hang_key},result=\"dropped\""),
        )
        .unwrap_or(0.0)
            > 0.0)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no drops counted for the dead backend:\n{}", dp_metrics()));
    let before = records(&a).iter().filter(|r| r["transport"] == "grpc").count();
    std::thread::sleep(Duration::from_secs(5));
    let after = records(&a).iter().filter(|r| r["transport"] == "grpc").count();
    assert!(
        after - before >= 3,
        "healthy backend slowed down by the dead one: {} exports in 5 s",
        after - before
    );
    let m = dp_metrics();
    assert!(
        sample_value(&m, &format!("meshmetric_dp_otlp_queue_batches{{{hang_key}")).unwrap() <= 2.0,
        "queue bounded by queueSize"
    );
    assert!(
        has_metric(&m, "sample_app_requests_total"),
        "the Prometheus endpoint keeps serving"
    );

    // 7. no secret value anywhere: logs, inspect API, config served to the proxy
    let (_, inspect) = cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None);
    for (what, text) in [
        ("dp log", dp.log_text()),
        ("cp log", cp.proc.log_text()),
        ("inspect", inspect.clone()),
        ("metrics", m.clone()),
    ] {
        assert!(
            !text.contains("first-secret-4711") && !text.contains("second-secret-0815"),
            "secret leaked into {what}"
        );
    }
    assert!(
        inspect.contains(token.to_str().unwrap()),
        "the reference (file path) is shown, not the value"
    );

    // 8. removing the backends stops the exporters
    cp.put_meshmetric("otel", &format!("type: MeshMetric\nname: otel\nspec:\n  default:\n    applications: [{{name: app, port: {app_port}}}]\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n"));
    wait_for(Duration::from_secs(15), || {
        (!dp_metrics().contains("meshmetric_dp_otlp_data_points_total")).then_some(())
    })
    .expect("exporters still running");
    std::thread::sleep(Duration::from_secs(1));
    let n = records(&a).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(records(&a).len(), n, "a removed backend must receive nothing more");
    let _ = std::fs::remove_dir_all(&dir);
}
