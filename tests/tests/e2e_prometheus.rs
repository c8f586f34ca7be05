//! End to end with the real Prometheus (Debian's 2.42, which has no kuma_sd): two Prometheus
//! servers with two clientIds discover the proxies through HTTP SD, scrape them through
//! Envoy's Prometheus listener, and follow a policy change.

use std::path::Path;
use std::time::{Duration, Instant};

use meshmetric_tests::*;
use serde_json::Value;

fn prometheus_config(mads: &str, client: &str) -> String {
    format!(
        r#"global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1m}}
scrape_configs:
  - job_name: meshmetric
    honor_labels: true
    http_sd_configs:
      - url: http://{mads}/v1/http-sd?client_id={client}
        refresh_interval: 1s
    relabel_configs:
      - {{source_labels: [__meta_kuma_mesh], target_label: mesh}}
      - {{source_labels: [__meta_kuma_service], target_label: service}}
      - {{source_labels: [__meta_kuma_dataplane], target_label: dataplane}}
      - {{action: labelmap, regex: __meta_kuma_label_(.+)}}
"#
    )
}

fn start_prometheus(dir: &Path, name: &str, mads: &str, client: &str) -> (Proc, String) {
    let conf = dir.join(format!("{name}.yml"));
    std::fs::write(&conf, prometheus_config(mads, client)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let data = dir.join(format!("{name}-data"));
    let p = Proc::start(
        name,
        dir,
        &prometheus(),
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            &format!("--web.listen-address={addr}"),
            "--log.level=warn",
        ],
    );
    (p, addr)
}

/// Active targets of a Prometheus as (dataplane label, health, labels).
fn targets(prom: &str) -> Vec<(String, String, Value)> {
    let Some(body) = get_ok(prom, "/api/v1/targets?state=active") else {
        return vec![];
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["labels"]["dataplane"].as_str().unwrap_or("").to_string(),
                t["health"].as_str().unwrap_or("").to_string(),
                t["labels"].clone(),
            )
        })
        .collect()
}

fn up_set(prom: &str) -> Vec<String> {
    let mut v: Vec<String> = targets(prom).into_iter().filter(|t| t.1 == "up").map(|t| t.0).collect();
    v.sort();
    v
}

#[test]
fn e2e_two_prometheus_servers_discover_their_own_proxies_and_follow_a_policy_change() {
    let dir = workdir("prom");
    let app_port = free_port("127.0.0.1");
    let ip_web = free_loopback(3, 5670);
    let ip_api = free_loopback(4, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    for (name, ip, team) in [("web-01", &ip_web, "a"), ("api-01", &ip_api, "b")] {
        std::fs::write(
            res.join(format!("{name}.yaml")),
            format!(
                "type: Dataplane\nname: {name}\nlabels: {{kuma.io/workload: {name}, kuma.io/zone: z1, team: {team}}}\nnetworking:\n  address: {ip}\n  inbound: [{{port: {}, servicePort: {app_port}, tags: {{kuma.io/service: {name}}}}}]\n",
                free_port(ip)
            ),
        )
        .unwrap();
    }
    let mesh_wide = format!(
        "type: MeshMetric\nname: mesh-wide\nspec:\n  default:\n    applications: [{{name: app, port: {app_port}}}]\n    backends: [{{type: Prometheus, prometheus: {{clientId: alpha, port: 5670}}}}]\n"
    );
    let team_b = |client: &str| {
        format!(
            "type: MeshMetric\nname: team-b\nspec:\n  targetRef: {{kind: Dataplane, labels: {{team: b}}}}\n  default:\n    backends: [{{type: Prometheus, prometheus: {{clientId: {client}, port: 5670}}}}]\n"
        )
    };
    std::fs::write(res.join("mesh-wide.yaml"), &mesh_wide).unwrap();
    std::fs::write(res.join("team-b.yaml"), team_b("beta")).unwrap();

    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{app_port}")],
    );
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let _web = start_proxy(&dir, "web-01", &cp);
    let _api = start_proxy(&dir, "api-01", &cp);
    let (mut alpha, alpha_addr) = start_prometheus(&dir, "prom-alpha", &cp.mads, "alpha");
    let (_beta, beta_addr) = start_prometheus(&dir, "prom-beta", &cp.mads, "beta");

    // each Prometheus sees only its own proxy, scraped through Envoy, up
    let ok = wait_for(Duration::from_secs(60), || {
        (up_set(&alpha_addr) == ["web-01"] && up_set(&beta_addr) == ["api-01"]).then_some(())
    });
    if ok.is_none() {
        alpha.assert_running();
        panic!(
            "alpha={:?} beta={:?}\nhttp-sd alpha: {:?}\ncp:\n{}",
            targets(&alpha_addr),
            targets(&beta_addr),
            get_ok(&cp.mads, "/v1/http-sd?client_id=alpha"),
            cp.proc.log_text()
        );
    }
    let (_, _, labels) = targets(&alpha_addr).into_iter().find(|t| t.0 == "web-01").unwrap();
    assert_eq!(labels["mesh"], "default");
    assert_eq!(labels["service"], "web-01");
    assert_eq!(labels["team"], "a");
    assert_eq!(labels["zone"], "z1");
    assert_eq!(labels["instance"], "web-01");
    // the scraped data really is the merged output
    let q = get_ok(&alpha_addr, "/api/v1/query?query=sample_app_requests_total").unwrap_or_default();
    let q2 = wait_for(Duration::from_secs(10), || {
        let b = get_ok(&alpha_addr, "/api/v1/query?query=envoy_server_live")?;
        b.contains("\"web-01\"").then_some(b)
    });
    assert!(
        q2.is_some() && q.contains("sample_app_requests_total"),
        "query results: {q}"
    );
    // the documented scrape config (honor_labels) stores no doubled exported_* labels
    let q = "count({__name__=~\".+\",exported_mesh!=\"\"}) or count({__name__=~\".+\",exported_dataplane!=\"\"}) or count({__name__=~\".+\",exported_zone!=\"\"})";
    let doubled = get_ok(
        &alpha_addr,
        &format!(
            "/api/v1/query?query={}",
            q.replace('"', "%22")
                .replace(' ', "%20")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('=', "%3D")
                .replace('~', "%7E")
                .replace('+', "%2B")
                .replace('!', "%21")
                .replace(',', "%2C")
        ),
    )
    .unwrap_or_default();
    assert!(doubled.contains("\"result\":[]"), "exported_* labels stored: {doubled}");
    let live = get_ok(&alpha_addr, "/api/v1/query?query=envoy_server_live").unwrap_or_default();
    assert!(
        live.contains("\"dataplane\":\"web-01\"") && !live.contains("exported_"),
        "{live}"
    );

    // move api-01 to alpha: it appears there (and leaves beta) within a refresh
    let changed = Instant::now();
    cp.put_meshmetric("team-b", &team_b("alpha"));
    wait_for(Duration::from_secs(10), || {
        get_ok(&cp.mads, "/v1/http-sd?client_id=alpha").filter(|b| b.contains("api-01"))
    })
    .expect("HTTP SD must reflect the change");
    let sd_took = changed.elapsed();
    wait_for(Duration::from_secs(30), || {
        (up_set(&alpha_addr) == ["api-01", "web-01"]).then_some(())
    })
    .unwrap_or_else(|| panic!("api-01 never reached alpha: {:?}", targets(&alpha_addr)));
    let moved = changed.elapsed();
    wait_for(Duration::from_secs(30), || targets(&beta_addr).is_empty().then_some(()))
        .unwrap_or_else(|| panic!("api-01 never left beta: {:?}", targets(&beta_addr)));
    eprintln!("policy change -> HTTP SD updated in {sd_took:?}; target up in the real Prometheus in {moved:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
