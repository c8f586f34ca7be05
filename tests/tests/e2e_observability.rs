//! A system you can watch, proven on the real pipeline: a real Envoy with meshmetric-dp, the
//! control plane, an OTLP receiver, and the real Prometheus scraping the proxy (HTTP SD) and the
//! control plane's `/metrics` with the project's alerting rules loaded. Every dashboard panel's
//! query returns data; a config Envoy rejects shows up in `inspect`, `get dataplanes`, the
//! policy's status, the control plane's metrics and the alert's expression; the metrics pass
//! `promtool check metrics`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

fn ctl(cp: &ControlPlane, args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// URL-encodes a PromQL query.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `q` on the Prometheus at `prom`: `Ok(result)` or `Err(error)`.
fn query(prom: &str, q: &str) -> Result<Vec<Value>, String> {
    let body = get_ok(prom, &format!("/api/v1/query?query={}", encode(q))).ok_or("no answer")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every panel query of the dashboards in `dashboards/`, with the variables a user would pick.
fn panel_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = workspace_root().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$mesh", ".+")
                    .replace("$__rate_interval", "30s");
                out.push((
                    f.file_name().unwrap().to_string_lossy().into_owned(),
                    p["title"].as_str().unwrap().to_string(),
                    expr,
                ));
            }
        }
    }
    out
}

fn promtool_check_metrics(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn e2e_dashboards_alerts_insights_and_status_on_the_real_pipeline() {
    let dir = workdir("observability");
    let (_app, app) = sample_app(&dir);
    let receiver = OtlpReceiver::start(&dir, "otel", &[]);
    let ip = free_loopback(51, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("dp.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nlabels: {{kuma.io/workload: web}}\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}, tags: {{kuma.io/service: web}}}}]}}\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    // profile All: this test's only traffic is Prometheus scraping through Envoy, on clusters
    // the Basic profile counts as internal
    let policy = |extra: &str| {
        format!(
            "type: MeshMetric\nname: m\nspec:\n  default:\n    sidecar: {{profiles: {{appendProfiles: [{{name: All}}]}}}}\n    applications: [{{name: app, port: {app}}}]\n    backends:\n      - {{type: Prometheus, prometheus: {{clientId: main, port: 5670}}}}\n      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"{}\", refreshInterval: 1s}}}}\n{extra}",
            receiver.grpc
        )
    };
    std::fs::write(res.join("policy.yaml"), policy("")).unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &["--instance-id", "cp-test"]);
    // the proxy names certificate files that do not exist: a ProvidedTLS listener will be
    // rejected by Envoy
    let missing = dir.join("missing");
    let mut dp = start_proxy_with(
        &dir,
        "web-01",
        &cp,
        &[
            "--metrics-cert-path",
            missing.join("cert.pem").to_str().unwrap(),
            "--metrics-key-path",
            missing.join("key.pem").to_str().unwrap(),
        ],
    );
    let target = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || {
        get_ok(&target, "/metrics").filter(|b| has_metric(b, "sample_app_requests_total"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));

    // the real Prometheus: the proxy through HTTP SD, the control plane's /metrics, the rules
    let rules = workspace_root().join("dashboards/alerts.yaml");
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            r#"global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}
rule_files: ["{}"]
scrape_configs:
  - job_name: meshmetric-proxies
    honor_labels: true
    http_sd_configs:
      - url: http://{}/v1/http-sd?client_id=main
        refresh_interval: 1s
    relabel_configs:
      - {{source_labels: [__meta_kuma_mesh], target_label: mesh}}
      - {{source_labels: [__meta_kuma_service], target_label: service}}
      - {{source_labels: [__meta_kuma_dataplane], target_label: dataplane}}
  - job_name: meshmetric-cp
    static_configs: [{{targets: ["{}"]}}]
"#,
            rules.display(),
            cp.mads,
            cp.api
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _prometheus = Proc::start(
        "prometheus",
        &dir,
        &prometheus(),
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            &format!("--web.listen-address={prom}"),
            "--log.level=warn",
        ],
    );

    // insight: online, config in force
    let table = wait_for(Duration::from_secs(30), || {
        Some(ctl(&cp, &["get", "dataplanes"])).filter(|t| t.contains("Online") && t.contains("InForce"))
    })
    .unwrap_or_else(|| panic!("never online/in force:\n{}", ctl(&cp, &["get", "dataplanes"])));
    assert!(table.contains("cp-test"), "{table}");
    let inspect = ctl(&cp, &["inspect", "dataplane", "web-01"]);
    assert!(
        inspect.contains("Status: Online") && inspect.contains("in force since"),
        "{inspect}"
    );
    assert!(
        inspect.contains("_meshmetric_prometheus_5670"),
        "listeners in force: {inspect}"
    );

    // every dashboard panel returns data from the real pipeline (OTLP and rates need a few
    // seconds of samples)
    let queries = panel_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let pending = wait_for(Duration::from_secs(90), || {
        let empty: Vec<String> = queries
            .iter()
            .filter_map(|(file, title, q)| match query(&prom, q) {
                Ok(r) if !r.is_empty() => None,
                Ok(_) => Some(format!("{file} / {title}: empty: {q}")),
                Err(e) => Some(format!("{file} / {title}: error {e}: {q}")),
            })
            .collect();
        empty.is_empty().then_some(())
    });
    if pending.is_none() {
        let empty: Vec<String> = queries
            .iter()
            .filter(|(_, _, q)| query(&prom, q).map_or(true, |r| r.is_empty()))
            .map(|(f, t, q)| format!("{f} / {t}: {q}"))
            .collect();
        panic!("panels without data:\n{}", empty.join("\n"));
    }

    // a config Envoy rejects: a ProvidedTLS listener whose certificate files do not exist
    let (st, body) = cp.call(
        "PUT",
        "/meshes/default/meshmetrics/m",
        Some(&policy(
            "      - {type: Prometheus, prometheus: {clientId: tls, port: 5671, tls: {mode: ProvidedTLS}}}\n",
        )),
    );
    assert_eq!(st, 200, "{body}");
    let inspect = wait_for(Duration::from_secs(30), || {
        Some(ctl(&cp, &["inspect", "dataplane", "web-01"])).filter(|t| t.contains("REJECTED"))
    })
    .unwrap_or_else(|| {
        panic!(
            "the NACK never showed:\n{}\n{}",
            ctl(&cp, &["inspect", "dataplane", "web-01"]),
            cp.proc.log_text()
        )
    });
    assert!(
        inspect.contains("NOT in force") && inspect.contains("keeps running"),
        "{inspect}"
    );
    assert!(inspect.contains("missing"), "Envoy's error names the file: {inspect}");
    let table = ctl(&cp, &["get", "dataplanes"]);
    assert!(table.contains("Rejected"), "{table}");
    let status = ctl(&cp, &["inspect", "meshmetric", "m"]);
    assert!(
        status.contains("rejected by 1") && status.contains("Programmed: False (Rejected)"),
        "{status}"
    );
    let mm = ctl(&cp, &["get", "meshmetrics"]);
    assert!(mm.contains("False (Rejected)"), "{mm}");
    // the old listener keeps serving
    assert!(get_ok(&target, "/metrics").is_some());
    // the control plane's metrics
    let metrics = get_ok(&cp.api, "/metrics").unwrap();
    assert_eq!(
        sample_value(&metrics, "meshmetric_cp_proxies_nacked"),
        Some(1.0),
        "{metrics}"
    );
    assert!(sample_value(&metrics, "meshmetric_cp_xds_nacks_total{type=\"Listener\"").unwrap_or(0.0) >= 1.0);
    // the alert's expression holds in the real Prometheus, and the rule goes pending/firing
    let alert = wait_for(Duration::from_secs(30), || {
        query(&prom, "ALERTS{alertname=\"MeshMetricConfigRejected\"}")
            .ok()
            .filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| panic!("the alert never became active"));
    assert!(
        ["pending", "firing"].contains(&alert[0]["metric"]["alertstate"].as_str().unwrap_or("")),
        "{alert:?}"
    );

    // our metrics pass promtool's lint: the control plane's and the plugin's own (Envoy's and
    // the applications' are theirs)
    promtool_check_metrics(&metrics);
    let own: String = get_ok(&target, "/metrics")
        .unwrap()
        .lines()
        .filter(|l| {
            l.starts_with("meshmetric_dp_")
                || l.starts_with("# HELP meshmetric_dp_")
                || l.starts_with("# TYPE meshmetric_dp_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(own.contains("meshmetric_dp_scrape_up"), "{own}");
    promtool_check_metrics(&own);

    // back to a config Envoy takes: in force again
    let (st, _) = cp.call("PUT", "/meshes/default/meshmetrics/m", Some(&policy("")));
    assert_eq!(st, 200);
    wait_for(Duration::from_secs(30), || {
        Some(ctl(&cp, &["get", "dataplanes"])).filter(|t| t.contains("InForce"))
    })
    .expect("in force again");
    // the gauge follows the ACK (the insight may be read a moment before it is updated)
    let nacked = wait_for(Duration::from_secs(10), || {
        let metrics = get_ok(&cp.api, "/metrics")?;
        (sample_value(&metrics, "meshmetric_cp_proxies_nacked") == Some(0.0)).then_some(())
    });
    assert!(
        nacked.is_some(),
        "proxies_nacked never went back to 0:\n{}",
        get_ok(&cp.api, "/metrics").unwrap_or_default()
    );

    // disconnected: offline
    dp.stop();
    let table = wait_for(Duration::from_secs(30), || {
        Some(ctl(&cp, &["get", "dataplanes"])).filter(|t| t.contains("Offline"))
    })
    .expect("offline after the proxy stopped");
    assert!(!table.contains("Online"), "{table}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

#[test]
fn alert_rules_are_valid_fire_and_resolve_and_have_runbooks() {
    let dir = workspace_root().join("dashboards");
    for args in [
        &["check", "rules", "alerts.yaml"][..],
        &["test", "rules", "alerts.test.yaml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // every alert is tested and has its runbook; every runbook belongs to an alert
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    let books = workspace_root().join("docs/runbooks");
    for a in &alerts {
        assert!(tests.contains(&format!("alertname: {a}")), "{a} has no promtool test");
        assert!(rules.contains(&format!("docs/runbooks/{a}.md")), "{a} links no runbook");
        let book = std::fs::read_to_string(books.join(format!("{a}.md"))).unwrap_or_default();
        for section in ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"] {
            assert!(book.contains(section), "runbook of {a} lacks {section}");
        }
    }
    for e in std::fs::read_dir(&books).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().trim_end_matches(".md").to_string();
        assert!(alerts.contains(&name.as_str()), "runbook {name} has no alert");
    }
}
