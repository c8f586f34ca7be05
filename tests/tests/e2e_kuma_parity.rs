//! Kuma parity end to end: a policy referencing a MeshOpenTelemetryBackend exports through a
//! real third-party collector (rotel) and follows changes of the backend, and a metrics port
//! that clashes with a proxy's inbound never reaches the real Envoy.

use std::path::Path;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

type Receiver = OtlpReceiver;

/// The Python receiver on the official opentelemetry-proto classes, writing what arrives.
fn receiver(dir: &Path, name: &str) -> Receiver {
    OtlpReceiver::start(dir, name, &[])
}

/// Whether `r` received a request carrying Envoy's stats of Dataplane `web-01`.
fn received_envoy_stats(r: &Receiver) -> bool {
    std::fs::read_to_string(&r.out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|rec| {
            let text = rec.to_string();
            text.contains("envoy_server_live") && text.contains("web-01")
        })
}

fn motb(name: &str, address: &str, port: &str, protocol: &str) -> String {
    format!(
        "type: MeshOpenTelemetryBackend\nname: {name}\nlabels: {{kuma.io/display-name: {name}}}\nspec:\n  endpoint: {{address: {address}, port: {port}}}\n  protocol: {protocol}\n  env: {{mode: Disabled}}\n"
    )
}

#[test]
fn e2e_backend_ref_exports_through_rotel_and_follows_the_backend() {
    let dir = workdir("parity-otel");
    let behind_rotel = receiver(&dir, "recv-rotel");
    let direct = receiver(&dir, "recv-direct");
    let rg = free_port("127.0.0.1");
    let rotel_proc = Proc::start(
        "rotel",
        &dir,
        &rotel(),
        &[
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{rg}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{}", free_port("127.0.0.1")),
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://{}", behind_rotel.grpc),
            "--otlp-exporter-protocol",
            "grpc",
        ],
    );
    let ip = free_loopback(21, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("dp.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nlabels: {{kuma.io/workload: web}}\nnetworking:\n  address: {ip}\n  inbound: [{{port: {}, tags: {{kuma.io/service: web}}}}]\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    std::fs::write(
        res.join("motb.yaml"),
        motb("collector", "127.0.0.1", &rg.to_string(), "grpc"),
    )
    .unwrap();
    // Kuma 2.14's form: a backendRef by labels
    std::fs::write(
        res.join("policy.yaml"),
        "type: MeshMetric\nname: otel\nspec:\n  default:\n    backends:\n      - type: OpenTelemetry\n        openTelemetry:\n          backendRef: {kind: MeshOpenTelemetryBackend, labels: {kuma.io/display-name: collector}}\n          refreshInterval: 1s\n",
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let dp = start_proxy(&dir, "web-01", &cp);

    wait_for(Duration::from_secs(60), || {
        received_envoy_stats(&behind_rotel).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "nothing came through rotel\nrotel:\n{}\ndp:\n{}",
            rotel_proc.log_text(),
            dp.log_text()
        )
    });

    // the backend changes (now OTLP/HTTP straight to another receiver); the policy is not touched
    let port = direct.http.rsplit(':').next().unwrap();
    let (st, body) = cp.call(
        "PUT",
        "/meshes/default/meshopentelemetrybackends/collector",
        Some(&motb("collector", "127.0.0.1", port, "http")),
    );
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(30), || received_envoy_stats(&direct).then_some(()))
        .unwrap_or_else(|| panic!("the changed backend was not used\ndp:\n{}", dp.log_text()));
    let _ = &direct.grpc;

    // a reference to a backend that does not exist: accepted with a warning, shown as inactive,
    // the other backends keep working
    let (st, body) = cp.call(
        "PUT",
        "/meshes/default/meshmetrics/otel",
        Some("type: MeshMetric\nname: otel\nspec:\n  default:\n    backends:\n      - {type: Prometheus, prometheus: {port: 5670}}\n      - type: OpenTelemetry\n        openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, labels: {team: nobody}}}\n"),
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("no MeshOpenTelemetryBackend"), "a warning: {body}");
    // the proxy views follow the store in the background: wait for the change to reach them
    let view: Value = wait_for(Duration::from_secs(10), || {
        let (st, view) = cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None);
        let view: Value = serde_json::from_str(&view).ok()?;
        (st == 200 && view["inactiveBackends"][0]["backend"] == "backends[1]").then_some(view)
    })
    .unwrap_or_else(|| panic!("the view never showed the inactive backend"));
    assert!(
        view["inactiveBackends"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no MeshOpenTelemetryBackend")
    );
    wait_for(Duration::from_secs(30), || get_ok(&format!("{ip}:5670"), "/metrics")).unwrap_or_else(|| {
        panic!(
            "the Prometheus backend beside the missing one does not serve\n{}",
            dp.log_text()
        )
    });
    // meshmetricctl shows it too
    let out = std::process::Command::new(bin("meshmetricctl"))
        .args(["--cp", &format!("http://{}", cp.api), "--token-file"])
        .arg(&cp.token_file)
        .args(["inspect", "dataplane", "web-01"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Backends not in force") && text.contains("no MeshOpenTelemetryBackend"),
        "{text}"
    );
    let out = std::process::Command::new(bin("meshmetricctl"))
        .args(["--cp", &format!("http://{}", cp.api), "--token-file"])
        .arg(&cp.token_file)
        .args(["get", "motb"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("collector") && text.contains("http"), "{text}");
}

#[test]
fn e2e_port_clash_never_reaches_envoy_and_the_working_listener_keeps_serving() {
    let dir = workdir("parity-ports");
    let ip = free_loopback(22, 5670);
    let app_port = free_port("127.0.0.1");
    let inbound = free_port(&ip);
    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{app_port}")],
    );
    let dataplane = |extra_inbound: Option<u16>| {
        let mut inbounds = format!("{{port: {inbound}, servicePort: {app_port}, tags: {{kuma.io/service: web}}}}");
        if let Some(p) = extra_inbound {
            inbounds.push_str(&format!(
                ", {{port: {p}, servicePort: {app_port}, tags: {{kuma.io/service: web-b}}}}"
            ));
        }
        format!("type: Dataplane\nname: web-01\nnetworking:\n  address: {ip}\n  inbound: [{inbounds}]\n")
    };
    let policy = |b_port: u16| {
        format!(
            "type: MeshMetric\nname: m\nspec:\n  default:\n    backends:\n      - {{type: Prometheus, prometheus: {{clientId: a, port: 5670}}}}\n      - {{type: Prometheus, prometheus: {{clientId: b, port: {b_port}}}}}\n"
        )
    };
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("dp.yaml"), dataplane(None)).unwrap();
    std::fs::write(res.join("policy.yaml"), policy(5671)).unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let dp = start_proxy(&dir, "web-01", &cp);
    let (a, b) = (format!("{ip}:5670"), format!("{ip}:5671"));
    wait_for(Duration::from_secs(60), || {
        (get_ok(&a, "/metrics").is_some() && get_ok(&b, "/metrics").is_some()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "listeners never served\ncp:\n{}\ndp:\n{}",
            cp.proc.log_text(),
            dp.log_text()
        )
    });

    // 1. a policy moving a metrics port onto the inbound of a known Dataplane is refused
    let (st, body) = cp.call("PUT", "/meshes/default/meshmetrics/m", Some(&policy(inbound)));
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("spec.default.backends[1].prometheus.port") && body.contains("web-01"),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(get_ok(&b, "/metrics").is_some(), "the working listener is gone");

    // 2. the Dataplane changes so that an inbound takes port 5671: that one metrics listener is
    //    left out, nothing is rejected by Envoy, the rest keeps serving
    let (st, body) = cp.call("PUT", "/meshes/default/dataplanes/web-01", Some(&dataplane(Some(5671))));
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(30), || {
        // the inbound now answers on 5671 with the application's own page
        let page = get_ok(&b, "/metrics")?;
        page.contains("sample_app_requests_total").then_some(())
    })
    .unwrap_or_else(|| panic!("the inbound did not take port 5671\ncp:\n{}", cp.proc.log_text()));
    let merged = get_ok(&a, "/metrics").expect("the other metrics listener keeps serving");
    assert!(merged.contains("envoy_server_live"), "{merged}");
    let log = cp.proc.log_text();
    assert!(!log.contains("NACK"), "Envoy rejected a config:\n{log}");
    // inspect says why; discovery does not send client b anywhere (not to the default client's
    // target, not to the inbound)
    let (_, view) = cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None);
    let view: Value = serde_json::from_str(&view).unwrap();
    assert!(
        view["inactiveBackends"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("port 5671"),
        "{view}"
    );
    let sd_b = get_ok(&cp.mads, "/v1/http-sd?client_id=b").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&sd_b).unwrap(),
        serde_json::json!([]),
        "{sd_b}"
    );
    let sd_a = get_ok(&cp.mads, "/v1/http-sd?client_id=a").unwrap();
    assert!(sd_a.contains(&a), "{sd_a}");
}
