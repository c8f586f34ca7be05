//! End to end with the real Envoy: MeshMetric policy → control plane (ADS) → Envoy config
//! socket → meshmetric-dp → merged metrics served by Envoy's Prometheus listener.

use std::time::{Duration, Instant};

use meshmetric_tests::*;

fn policy(profile: &str, exclude: &str, app_port: u32) -> String {
    format!(
        r#"type: MeshMetric
mesh: default
name: metrics-default
spec:
  targetRef: {{kind: Mesh}}
  default:
    sidecar:
      profiles:
        appendProfiles: [{{name: {profile}}}]
        {exclude}
    applications:
      - {{name: sample-app, path: /metrics, port: {app_port}}}
    backends:
      - {{type: Prometheus, prometheus: {{port: 5670, path: /metrics}}}}
"#
    )
}

#[test]
fn e2e_policy_to_envoy_to_plugin_with_live_update_and_rejection() {
    let dir = workdir("e2e");
    let ip = free_loopback(1, 5670);
    let app_port = free_port("127.0.0.1");
    let inbound_port = free_port(&ip);
    let resources = dir.join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("dataplane.yaml"),
        format!(
            "type: Dataplane\nmesh: default\nname: web-01\nlabels: {{kuma.io/workload: web, kuma.io/zone: zone-1}}\nnetworking:\n  address: {ip}\n  inbound: [{{port: {inbound_port}, servicePort: {app_port}, tags: {{kuma.io/service: web}}}}]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        resources.join("policy.yaml"),
        policy(
            "Basic",
            "exclude: [{type: Exact, match: envoy_server_uptime}]",
            app_port.into(),
        ),
    )
    .unwrap();

    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{app_port}")],
    );
    let mut cp = ControlPlane::start(&dir, Some(&resources), &[]);
    let mut dp = start_proxy(&dir, "web-01", &cp);
    let prom = format!("{ip}:5670");
    let inbound = format!("{ip}:{inbound_port}");

    // traffic through Envoy's inbound listener so cluster stats exist
    let basic = wait_for(Duration::from_secs(60), || {
        let _ = http("GET", &inbound, "/", None);
        let b = get_ok(&prom, "/metrics")?;
        (has_metric(&b, "sample_app_requests_total")
            && b.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"localhost_"))
        .then_some(b)
    })
    .unwrap_or_else(|| {
        dp.assert_running();
        cp.proc.assert_running();
        panic!(
            "merged metrics never arrived through Envoy's Prometheus listener\ncp:\n{}\ndp:\n{}",
            cp.proc.log_text(),
            dp.log_text()
        )
    });
    // the application's metrics, merged with extra labels
    assert!(
        basic.contains("sample_app_requests_total{path=\"/\",dataplane=\"web-01\""),
        "{basic}"
    );
    assert!(has_metric(&basic, "sample_app_request_duration_seconds_bucket"));
    // a Basic Envoy metric
    assert!(has_metric(&basic, "envoy_server_live"), "Basic keeps envoy_server_*");
    assert!(has_metric(&basic, "envoy_cluster_upstream_rq_total"));
    // the excluded one
    assert!(!has_metric(&basic, "envoy_server_uptime"), "excluded by the policy");
    // a family outside Basic
    assert!(!has_metric(&basic, "envoy_cluster_lb_healthy_panic_x") && !has_metric(&basic, "envoy_cluster_version"));
    // no internal clusters / listeners / admin
    for internal in [
        "ads_cluster",
        "_meshmetric",
        "\"admin\"",
        "system_",
        "envoy_listener_admin_",
    ] {
        assert!(
            !series(&basic)
                .iter()
                .any(|l| l.starts_with("envoy") && l.contains(internal)),
            "Basic leaked {internal}:\n{basic}"
        );
    }
    let basic_count = series(&basic).len();

    // change to All over the REST API: arrives without restarting anything
    let changed_at = Instant::now();
    let (st, body) = cp.call(
        "PUT",
        "/meshes/default/meshmetrics/metrics-default",
        Some(&policy("All", "", app_port.into())),
    );
    assert!(st == 200 || st == 201, "{st} {body}");
    let all = wait_for(Duration::from_secs(15), || {
        let b = get_ok(&prom, "/metrics")?;
        (has_metric(&b, "envoy_server_uptime") && b.contains("envoy_cluster_name=\"ads_cluster\"")).then_some(b)
    })
    .unwrap_or_else(|| {
        panic!(
            "the All profile never took effect\ncp:\n{}\ndp:\n{}",
            cp.proc.log_text(),
            dp.log_text()
        )
    });
    let propagation = changed_at.elapsed();
    let all_count = series(&all).len();
    assert!(
        all_count > basic_count,
        "All ({all_count}) must export more than Basic ({basic_count})"
    );
    dp.assert_running();

    // an invalid policy is rejected with its field path; the old config keeps serving
    let bad = policy("Fancy", "exclude: [{type: Regex, match: \"(\"}]", 70000);
    let (st, body) = cp.call("PUT", "/meshes/default/meshmetrics/metrics-default", Some(&bad));
    assert_eq!(st, 400, "{body}");
    for field in [
        "spec.default.sidecar.profiles.appendProfiles[0].name",
        "spec.default.sidecar.profiles.exclude[0].match",
        "spec.default.applications[0].port",
    ] {
        assert!(body.contains(field), "400 body must name {field}: {body}");
    }
    let (_, stored) = cp.call("GET", "/meshes/default/meshmetrics/metrics-default", None);
    assert!(
        stored.contains("\"All\""),
        "stored policy must be the last good one: {stored}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = get_ok(&prom, "/metrics").expect("still serving");
    assert!(
        has_metric(&after, "envoy_server_uptime") && has_metric(&after, "sample_app_requests_total"),
        "old config must keep serving"
    );
    assert!(
        !cp.proc.log_text().contains("NACK"),
        "Envoy must not have rejected any config:\n{}",
        cp.proc.log_text()
    );

    // the effective config of the proxy
    let (st, eff) = cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None);
    assert_eq!(st, 200);
    assert!(
        eff.contains("\"metrics-default\"") && eff.contains("\"kuma.workload\":\"web\""),
        "{eff}"
    );

    eprintln!(
        "e2e: Basic returned {basic_count} series, All returned {all_count}; the All policy reached Envoy's listener in {propagation:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn e2e_nack_is_logged_with_envoys_error_and_recovery_follows() {
    let dir = workdir("nack");
    let ip = free_loopback(2, 5670);
    let app_port = free_port("127.0.0.1");
    let resources = dir.join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("dataplane.yaml"),
        format!("type: Dataplane\nname: web-02\nnetworking:\n  address: {ip}\n  inbound: [{{port: {}, servicePort: {app_port}}}]\n", free_port(&ip)),
    )
    .unwrap();
    std::fs::write(resources.join("policy.yaml"), policy("Basic", "", app_port.into())).unwrap();
    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{app_port}")],
    );
    let cp = ControlPlane::start(&dir, Some(&resources), &[]);
    let _dp = start_proxy(&dir, "web-02", &cp);
    wait_for(Duration::from_secs(60), || {
        get_ok(&format!("{ip}:5670"), "/metrics").filter(|b| has_metric(b, "sample_app_requests_total"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", cp.proc.log_text()));

    // something else holds the new port: Envoy cannot bind the listener and NACKs
    let blocked = free_port(&ip);
    let squatter = std::net::TcpListener::bind((ip.as_str(), blocked)).unwrap();
    let moved = policy("Basic", "", app_port.into()).replace("port: 5670", &format!("port: {blocked}"));
    let (st, body) = cp.call("PUT", "/meshes/default/meshmetrics/metrics-default", Some(&moved));
    assert!(st == 200 || st == 201, "{body}");
    let nack = wait_for(Duration::from_secs(15), || {
        let log = cp.proc.log_text();
        log.lines().find(|l| l.contains("NACK")).map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no NACK logged:\n{}", cp.proc.log_text()));
    assert!(
        nack.contains("envoy_error") && nack.contains(&blocked.to_string()),
        "the NACK log must carry Envoy's error: {nack}"
    );
    eprintln!("NACK as logged by the control plane: {nack}");
    // the stream survives: once the port is free and the config changes, Envoy accepts it
    drop(squatter);
    let back = policy("All", "", app_port.into()).replace("port: 5670", &format!("port: {blocked}"));
    cp.call("PUT", "/meshes/default/meshmetrics/metrics-default", Some(&back));
    wait_for(Duration::from_secs(20), || {
        get_ok(&format!("{ip}:{blocked}"), "/metrics").filter(|b| has_metric(b, "sample_app_requests_total"))
    })
    .unwrap_or_else(|| panic!("no recovery after the NACK:\n{}", cp.proc.log_text()));
    let _ = std::fs::remove_dir_all(&dir);
}
