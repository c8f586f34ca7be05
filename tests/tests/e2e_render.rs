//! `meshmetricctl render prometheus`: the rendered scrape configuration alone makes the real
//! Prometheus scrape the real proxies through Envoy (every target up, merged metrics stored),
//! promtool accepts it, and the rendered Prometheus Operator resources validate against the
//! Operator's published CRD schemas (tests/testdata/prometheus-operator, v0.93.0).

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

fn ctl(cp: &ControlPlane, args: &[&str]) -> (String, String) {
    let out = Command::new(bin("meshmetricctl"))
        .args(["--cp", &format!("http://{}", cp.api), "--token-file"])
        .arg(&cp.token_file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshmetricctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `openAPIV3Schema` of the served version of a gzipped CRD in the test data.
fn crd_schema(file: &str) -> Value {
    let path = workspace_root().join("tests/testdata/prometheus-operator").join(file);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 10_000_000;
    budget.max_events = 20_000_000;
    options.budget = Some(budget);
    let crd: Value = serde_saphyr::from_str_with_options(&text, options).unwrap();
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["served"] == true)
        .unwrap()["schema"]["openAPIV3Schema"]
        .clone()
}

const RESOURCES: &str = "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}], applications: [{name: app, port: APP}]}}\n---\ntype: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671, path: /ops-metrics}}], applications: [{name: app, port: APP}]}}\n";

#[test]
fn e2e_rendered_scrape_config_alone_scrapes_the_proxies_and_operator_resources_validate() {
    let dir = workdir("render");
    let (_app, app) = sample_app(&dir);
    let ip = free_loopback(55, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nlabels: {{team: a}}\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n---\ntype: Dataplane\nname: web-02\nlabels: {{team: b}}\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n---\n{}",
            free_port(&ip),
            free_port(&ip),
            RESOURCES.replace("APP", &app.to_string())
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    // web-01 gets `all` (5670, the default client); web-02 the more specific team-b, whose
    // backends replace `all`'s (5671, client `ops`)
    let _dp1 = start_proxy(&dir, "web-01", &cp);
    let dp2 = start_proxy(&dir, "web-02", &cp);
    wait_for(Duration::from_secs(60), || {
        get_ok(&format!("{ip}:5671"), "/ops-metrics")
    })
    .unwrap_or_else(|| panic!("web-02 never served:\n{}", dp2.log_text()));

    // render from the control plane, then give Prometheus nothing else
    let (yaml, notes) = ctl(
        &cp,
        &[
            "render",
            "prometheus",
            "--format",
            "scrape-config",
            "--interval",
            "1s",
            "--timeout",
            "900ms",
        ],
    );
    assert!(notes.contains("scrape_configs"), "{notes}");
    let conf = dir.join("prometheus.yml");
    std::fs::write(&conf, format!("global: {{evaluation_interval: 1m}}\n{yaml}")).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}\n{yaml}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _prom = Proc::start(
        "prometheus",
        &dir,
        &prometheus(),
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            &format!("--web.listen-address={addr}"),
            "--log.level=warn",
        ],
    );
    let targets = wait_for(Duration::from_secs(60), || {
        let body = get_ok(&addr, "/api/v1/targets?state=active")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let t = v["data"]["activeTargets"].as_array()?.clone();
        (t.len() == 2 && t.iter().all(|x| x["health"] == "up")).then_some(t)
    })
    .unwrap_or_else(|| panic!("targets not all up: {:?}", get_ok(&addr, "/api/v1/targets")));
    let jobs: Vec<&str> = targets.iter().map(|t| t["labels"]["job"].as_str().unwrap()).collect();
    assert!(
        jobs.contains(&"meshmetric-default") && jobs.contains(&"meshmetric-ops"),
        "{jobs:?}"
    );
    let stored = wait_for(Duration::from_secs(30), || {
        let b = get_ok(&addr, "/api/v1/query?query=sample_app_requests_total")?;
        (b.contains("web-01") && b.contains("web-02")).then_some(b)
    })
    .unwrap_or_else(|| panic!("merged metrics of both proxies not stored"));
    assert!(!stored.contains("exported_"), "{stored}");

    // the Operator resources validate against the Operator's CRDs
    let (json, _) = ctl(
        &cp,
        &[
            "render",
            "prometheus",
            "--format",
            "operator",
            "--namespace",
            "monitoring",
            "--label",
            "release=prometheus",
            "-o",
            "json",
        ],
    );
    let docs: Vec<Value> = serde_json::from_str(&json).unwrap();
    let (json, _) = ctl(
        &cp,
        &[
            "render",
            "prometheus",
            "--format",
            "operator",
            "--monitor-type",
            "service",
            "-o",
            "json",
        ],
    );
    let service_docs: Vec<Value> = serde_json::from_str(&json).unwrap();
    let mut validated = 0;
    for d in docs.iter().chain(&service_docs) {
        let file = match d["kind"].as_str().unwrap() {
            "ScrapeConfig" => "monitoring.coreos.com_scrapeconfigs.yaml.gz",
            "PodMonitor" => "monitoring.coreos.com_podmonitors.yaml.gz",
            "ServiceMonitor" => "monitoring.coreos.com_servicemonitors.yaml.gz",
            k => panic!("unexpected kind {k}"),
        };
        let schema = crd_schema(file);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(d)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not validate:\n{}\n{d}",
            d["kind"],
            errors.join("\n")
        );
        validated += 1;
    }
    assert!(validated >= 6, "{validated}");
    // annotations, from files offline
    let out = Command::new(bin("meshmetricctl"))
        .args([
            "render",
            "prometheus",
            "--format",
            "annotations",
            "--discovery-url",
            "http://cp:5676",
            "-f",
        ])
        .arg(res.join("r.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && (text.contains("prometheus.io/port: '5671'") || text.contains("prometheus.io/port: \"5671\"")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
