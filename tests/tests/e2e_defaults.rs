//! Defaults that keep a fresh install private: the control plane's REST API, ADS and MADS and
//! Envoy's admin API listen on 127.0.0.1 only unless told otherwise, and the unix sockets are
//! created with restrictive modes (config socket 0600 by Envoy, metrics socket 0660).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;

/// Local addresses of the TCP sockets `pid` listens on (from `ss`).
fn listening(pid: u32) -> Vec<String> {
    let out = Command::new("ss").args(["-ltnpH"]).output().expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

#[test]
fn e2e_defaults_listen_on_loopback_and_sockets_are_private() {
    for port in [5681, 5678, 5676, 9901] {
        assert!(
            std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
            "port {port} is busy: this test checks the default addresses and needs them free"
        );
    }
    let dir = workdir("defaults");
    let data = dir.join("cp-data");
    // no address flags at all
    let cp = Proc::start(
        "cp",
        &dir,
        &bin("meshmetric-cp"),
        &["--data-dir", data.to_str().unwrap()],
    );
    wait_for(Duration::from_secs(20), || get_ok("127.0.0.1:5681", "/ready"))
        .unwrap_or_else(|| panic!("{}", cp.log_text()));
    let addrs = listening(cp.child.id());
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    for a in &addrs {
        assert!(a.starts_with("127.0.0.1:"), "control plane listens on {a}");
    }

    // the plugin's bootstrap: Envoy's admin API on loopback by default
    let wd = dir.join("web-01");
    let out = Command::new(bin("meshmetric-dp"))
        .args(["bootstrap", "--name", "web-01", "--workdir", wd.to_str().unwrap()])
        .output()
        .unwrap();
    let bs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bootstrap JSON");
    assert_eq!(bs["admin"]["address"]["socket_address"]["address"], "127.0.0.1", "{bs}");

    // a proxy with every default address: sockets are private
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let (st, body) = http_with(
        "POST",
        "127.0.0.1:5681",
        "/apply",
        Some("type: Dataplane\nname: web-01\nnetworking: {address: 127.0.0.1, inbound: [{port: 1}]}\n---\ntype: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n"),
        Some(token.trim()),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let envoy = envoy();
    let mut dp = Proc::start(
        "dp",
        &dir,
        &bin("meshmetric-dp"),
        &[
            "run",
            "--name",
            "web-01",
            "--workdir",
            wd.to_str().unwrap(),
            "--envoy-binary",
            envoy.to_str().unwrap(),
        ],
    );
    let config = wd.join("config.sock");
    wait_for(Duration::from_secs(60), || config.exists().then_some(()))
        .unwrap_or_else(|| panic!("Envoy never bound its config socket:\n{}", dp.log_text()));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config), 0o600, "config socket");
    assert_eq!(mode(&wd.join("metrics.sock")), 0o660, "metrics socket");
    wait_for(Duration::from_secs(10), || get_ok("127.0.0.1:9901", "/ready"))
        .expect("Envoy admin on the default address");
    let envoy_pid: u32 = dp
        .log_text()
        .split("Envoy started pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("Envoy pid");
    let admin: Vec<String> = listening(envoy_pid)
        .into_iter()
        .filter(|a| a.ends_with(":9901"))
        .collect();
    assert_eq!(admin, ["127.0.0.1:9901"], "Envoy's admin API");
    dp.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}
