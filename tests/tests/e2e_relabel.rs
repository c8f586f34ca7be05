//! Relabeling, judged by the real Prometheus: the same rule sets run as `metric_relabel_configs`
//! in Debian's Prometheus scraping a static input (a real Envoy's stats plus an application
//! with awkward labels) and as MeshMetric `relabel` rules in meshmetric (`meshmetricctl relabel
//! test`, the plugin's own code); the series sets (names and labels) must be identical.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::{Value, json};

/// An HTTP server answering every request with `body` (Prometheus text).
fn static_server(body: String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(body.as_bytes());
            });
        }
    });
    port
}

/// A real Envoy's stats (all of them, used or not) from a minimal config with two clusters.
fn envoy_stats(dir: &Path) -> String {
    let admin = free_port("127.0.0.1");
    let conf = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"clusters": [
            {"name": "outbound_web_8080", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "outbound_web_8080", "endpoints": []}},
            {"name": "localhost_18080", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "localhost_18080", "endpoints": []}}
        ]}
    });
    let path = dir.join("envoy.json");
    std::fs::write(&path, conf.to_string()).unwrap();
    let _envoy = Proc::start(
        "envoy",
        dir,
        &envoy(),
        &[
            "-c",
            path.to_str().unwrap(),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "error",
        ],
    );
    let addr = format!("127.0.0.1:{admin}");
    wait_for(Duration::from_secs(30), || {
        get_ok(&addr, "/stats?format=prometheus&text_readouts")
    })
    .expect("Envoy's stats")
}

/// An application with awkward labels: empty values, escapes, labels named like the target's,
/// an `exported_` label already there, names that differ only in case.
const APP: &str = r#"# TYPE app_requests_total counter
app_requests_total{code="200",method="GET",path="/a"} 5
app_requests_total{code="503",method="POST",path="/b"} 1
app_requests_total{code="",method="GET",path="/c"} 2
# TYPE app_temperature gauge
app_temperature{room="Lab \"A\"",floor="1"} 21.5
app_temperature{room="line\nbreak",floor=""} 19
# TYPE app_info gauge
app_info{mesh="mine",exported_mesh="theirs",instance="app-1",version="v1.2.3"} 1
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1",path="/a"} 3
app_latency_seconds_bucket{le="+Inf",path="/a"} 5
app_latency_seconds_sum{path="/a"} 1.25
app_latency_seconds_count{path="/a"} 5
# TYPE Mixed_Case gauge
Mixed_Case{Key="Value",key="value"} 7
"#;

/// One rule set as MeshMetric `relabel` (camelCase); the Prometheus form is derived.
fn rule_sets() -> Vec<(&'static str, Value)> {
    vec![
        (
            "replace default (copy a label)",
            json!([{"sourceLabels": ["code"], "targetLabel": "status"}]),
        ),
        (
            "replace with groups and ${1}",
            json!([{"sourceLabels": ["envoy_cluster_name"], "regex": "outbound_(.*)_(\\d+)", "targetLabel": "upstream", "replacement": "${1}:$2"}]),
        ),
        (
            "replace non-matching regex changes nothing",
            json!([{"sourceLabels": ["method"], "regex": "PUT", "targetLabel": "method", "replacement": "changed"}]),
        ),
        (
            "replace to an empty value removes the label",
            json!([{"sourceLabels": ["nonexistent"], "targetLabel": "path"}]),
        ),
        (
            "replace with a literal on a missing source (fast path)",
            json!([{"sourceLabels": ["nonexistent"], "targetLabel": "added", "replacement": "x"}]),
        ),
        (
            "replace several sources with a separator",
            json!([{"sourceLabels": ["method", "path"], "separator": "|", "targetLabel": "route"}]),
        ),
        (
            "replace with the target from a group",
            json!([{"sourceLabels": ["method"], "regex": "(G|P)(.*)", "targetLabel": "m_$1", "replacement": "$2"}]),
        ),
        (
            "replace with $1x naming a missing group",
            json!([{"sourceLabels": ["code"], "regex": "(.*)", "targetLabel": "t", "replacement": "$1x"}]),
        ),
        (
            "replace into an invalid target name is skipped",
            json!([{"sourceLabels": ["code"], "regex": "(.*)", "targetLabel": "$1", "replacement": "v"}]),
        ),
        (
            "rename a metric to a new name",
            json!([{"sourceLabels": ["__name__"], "regex": "app_requests_total", "targetLabel": "__name__", "replacement": "http_requests_total"}]),
        ),
        (
            "rename a metric onto another family",
            json!([{"sourceLabels": ["__name__"], "regex": "app_temperature", "targetLabel": "__name__", "replacement": "app_info"}]),
        ),
        (
            "keep by name",
            json!([{"sourceLabels": ["__name__"], "regex": "app_.*|envoy_server_live", "action": "keep"}]),
        ),
        (
            "drop by name",
            json!([{"sourceLabels": ["__name__"], "regex": "envoy_cluster_.*", "action": "drop"}]),
        ),
        (
            "drop one cluster's series",
            json!([{"sourceLabels": ["envoy_cluster_name"], "regex": "localhost_18080", "action": "drop"}]),
        ),
        (
            "keep response-code classes on a missing label keeps nothing",
            json!([{"sourceLabels": ["code"], "regex": "2..|5..", "action": "keep"}]),
        ),
        (
            "drop series with an empty label",
            json!([{"sourceLabels": ["code"], "regex": "", "action": "drop"}]),
        ),
        (
            "keepequal",
            json!([{"sourceLabels": ["method"], "targetLabel": "method", "action": "keepequal"}]),
        ),
        (
            "dropequal on a target label",
            json!([{"sourceLabels": ["job"], "targetLabel": "job", "action": "dropequal"}]),
        ),
        (
            "keepequal between two labels",
            json!([{"sourceLabels": ["Key"], "targetLabel": "key", "action": "KeepEqual"}]),
        ),
        (
            "hashmod",
            json!([{"sourceLabels": ["__name__", "code"], "targetLabel": "shard", "modulus": 4, "action": "hashmod"}]),
        ),
        (
            "hashmod then keep one shard",
            json!([{"sourceLabels": ["__name__"], "targetLabel": "__tmp_shard", "modulus": 2, "action": "hashmod"}, {"sourceLabels": ["__tmp_shard"], "regex": "0", "action": "keep"}, {"regex": "__tmp_shard", "action": "labeldrop"}]),
        ),
        (
            "labelmap",
            json!([{"regex": "envoy_(.+)", "replacement": "e_$1", "action": "labelmap"}]),
        ),
        (
            "labelmap onto an existing label",
            json!([{"regex": "exported_(.+)", "replacement": "${1}", "action": "labelmap"}]),
        ),
        ("labeldrop", json!([{"regex": "method|path", "action": "labeldrop"}])),
        (
            "labeldrop the extra labels",
            json!([{"regex": "job|instance", "action": "labeldrop"}]),
        ),
        (
            "labelkeep",
            json!([{"regex": "__name__|code|le|job|instance", "action": "labelkeep"}]),
        ),
        (
            "lowercase",
            json!([{"sourceLabels": ["method"], "targetLabel": "method_lower", "action": "lowercase"}]),
        ),
        (
            "uppercase of an empty value removes the target",
            json!([{"sourceLabels": ["code"], "targetLabel": "code", "action": "uppercase"}]),
        ),
        (
            "rules using the exported_ label of a collision",
            json!([{"sourceLabels": ["exported_mesh"], "regex": "mine", "targetLabel": "origin", "replacement": "app"}]),
        ),
        (
            "ASCII \\w and \\d classes",
            json!([{"sourceLabels": ["room"], "regex": "(\\w+) .*", "targetLabel": "room_word"}, {"sourceLabels": ["version"], "regex": "v(\\d+)\\..*", "targetLabel": "major"}]),
        ),
        (
            "escapes in values survive a rewrite",
            json!([{"sourceLabels": ["room"], "targetLabel": "room_copy"}]),
        ),
        (
            "a chain: keep, rename, drop a label",
            json!([{"sourceLabels": ["__name__"], "regex": "app_.*", "action": "keep"}, {"sourceLabels": ["method"], "regex": "(.*)", "targetLabel": "verb"}, {"regex": "method", "action": "labeldrop"}]),
        ),
    ]
}

/// camelCase rule → Prometheus's snake_case `relabel_config`.
fn prometheus_rule(r: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in r.as_object().unwrap() {
        let key = match k.as_str() {
            "sourceLabels" => "source_labels",
            "targetLabel" => "target_label",
            other => other,
        };
        let v = if key == "action" {
            json!(v.as_str().unwrap().to_lowercase())
        } else {
            v.clone()
        };
        out.insert(key.to_string(), v);
    }
    Value::Object(out)
}

type Series = BTreeSet<BTreeMap<String, String>>;

/// What Prometheus stored for `rules`, scraping `target` with the target labels of `extra`.
fn prometheus_series(dir: &Path, target: &str, rules: &Value, extra: &BTreeMap<&str, &str>) -> Series {
    let prom_rules: Vec<Value> = rules.as_array().unwrap().iter().map(prometheus_rule).collect();
    let labels: BTreeMap<&str, &str> = extra
        .iter()
        .filter(|(k, _)| !matches!(**k, "job" | "instance"))
        .map(|(k, v)| (*k, *v))
        .collect();
    let conf = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{
            "job_name": extra["job"],
            "static_configs": [{"targets": [target], "labels": labels}],
            "metric_relabel_configs": prom_rules
        }]
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, conf.to_string()).unwrap();
    let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _p = Proc::start(
        "prometheus",
        dir,
        &prometheus(),
        &[
            &format!("--config.file={}", path.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={addr}"),
            "--log.level=warn",
        ],
    );
    let q = "%7B__name__%3D~%22.%2B%22%2C__name__!~%22up%7Cscrape_.%2B%22%7D";
    let body = wait_for(Duration::from_secs(30), || {
        let up = get_ok(&addr, "/api/v1/query?query=up")?;
        if !up.contains("\"1\"]") {
            return None;
        }
        // one more scrape interval, so every series of the first scrape is queryable
        std::thread::sleep(Duration::from_millis(300));
        get_ok(&addr, &format!("/api/v1/query?query={q}"))
    })
    .expect("Prometheus scraped the input");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .collect()
}

/// Parses Prometheus text into label sets (with `__name__`).
fn parse_series(text: &str) -> Series {
    let mut out = Series::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (head, _) = line.rsplit_once(' ').unwrap();
        let mut set = BTreeMap::new();
        let (name, rest) = match head.find('{') {
            Some(i) => (&head[..i], &head[i + 1..head.len() - 1]),
            None => (head, ""),
        };
        set.insert("__name__".to_string(), name.to_string());
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let eq = rest[i..].find('=').unwrap() + i;
            let key = rest[i..eq].trim_start_matches(',').to_string();
            let mut j = eq + 2;
            let mut val = String::new();
            while b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                    val.push(match b[j] {
                        b'n' => '\n',
                        c => c as char,
                    });
                } else {
                    let c = rest[j..].chars().next().unwrap();
                    val.push(c);
                    j += c.len_utf8() - 1;
                }
                j += 1;
            }
            // an empty value is no label (as Prometheus reads the text)
            if !val.is_empty() {
                set.insert(key, val);
            }
            i = j + 1;
        }
        out.insert(set);
    }
    out
}

#[test]
fn e2e_relabel_matches_prometheus_on_every_rule_set() {
    let dir = workdir("relabel-diff");
    let input = format!("{}{APP}", envoy_stats(&dir));
    let port = static_server(input.clone());
    let target = format!("127.0.0.1:{port}");
    std::fs::write(dir.join("input.txt"), &input).unwrap();
    let extra: BTreeMap<&str, &str> = [
        ("job", "diff"),
        ("instance", target.as_str()),
        ("mesh", "default"),
        ("dataplane", "web-01"),
    ]
    .into_iter()
    .collect();
    let sets = rule_sets();
    assert!(sets.len() >= 30);
    let mut failures = Vec::new();
    // three Prometheus servers at a time
    for (chunk_no, chunk) in sets.chunks(3).enumerate() {
        let handles: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, (title, rules))| {
                let dir = dir.join(format!("p{}", chunk_no * 3 + k));
                let (target, rules, extra) = (target.clone(), rules.clone(), extra.clone());
                let extra: BTreeMap<String, String> =
                    extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let title = *title;
                std::thread::spawn(move || {
                    let e: BTreeMap<&str, &str> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    (title, rules.clone(), prometheus_series(&dir, &target, &rules, &e))
                })
            })
            .collect();
        for h in handles {
            let (title, rules, expected) = h.join().unwrap();
            let policy = dir.join(format!(
                "{}.yaml",
                title.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            ));
            std::fs::write(
                &policy,
                json!({"type": "MeshMetric", "name": "r", "spec": {"default": {"relabel": rules}}}).to_string(),
            )
            .unwrap();
            let mut args = vec![
                "relabel".to_string(),
                "test".into(),
                "-f".into(),
                policy.to_str().unwrap().into(),
                "--input".into(),
                dir.join("input.txt").to_str().unwrap().into(),
            ];
            for (k, v) in &extra {
                args.push("--extra-label".into());
                args.push(format!("{k}={v}"));
            }
            let out = Command::new(bin("meshmetricctl")).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{title}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ours: Series = parse_series(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .filter(|s| !s["__name__"].starts_with("meshmetric_dp_"))
                .collect();
            if ours != expected {
                let only_ours: Vec<_> = ours.difference(&expected).take(3).collect();
                let only_prom: Vec<_> = expected.difference(&ours).take(3).collect();
                failures.push(format!(
                    "{title}: {} series here, {} in Prometheus\n  only here: {only_ours:?}\n  only in Prometheus: {only_prom:?}",
                    ours.len(),
                    expected.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rule sets differ:\n{}",
        failures.len(),
        sets.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every data point of `metric` in the receiver's last request: its attributes.
fn otlp_points(r: &OtlpReceiver, metric: &str) -> Vec<BTreeMap<String, String>> {
    let Some(rec) = r
        .records()
        .into_iter()
        .rev()
        .find(|rec| rec.to_string().contains(metric))
    else {
        return vec![];
    };
    let mut out = Vec::new();
    for rm in rec["request"]["resourceMetrics"].as_array().into_iter().flatten() {
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["name"] == metric)
            {
                let data = m
                    .get("gauge")
                    .or_else(|| m.get("sum"))
                    .map(|d| d["dataPoints"].clone())
                    .unwrap_or_default();
                for p in data.as_array().into_iter().flatten() {
                    out.push(
                        p["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                let v = a["value"]
                                    .as_object()
                                    .and_then(|o| o.values().next())
                                    .cloned()
                                    .unwrap_or_default();
                                (
                                    a["key"].as_str().unwrap_or("").to_string(),
                                    v.as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

#[test]
fn e2e_relabel_on_real_envoy_reaches_prometheus_and_otlp_through_rotel_alike() {
    let dir = workdir("relabel-e2e");
    let receiver = OtlpReceiver::start(&dir, "recv", &[]);
    let direct = OtlpReceiver::start(&dir, "direct", &[]);
    let rg = free_port("127.0.0.1");
    let _rotel = Proc::start(
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
            &format!("http://{}", receiver.grpc),
            "--otlp-exporter-protocol",
            "grpc",
        ],
    );
    let (_app, app) = sample_app(&dir);
    let ip = free_loopback(53, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        format!(
            r#"type: Dataplane
name: web-01
labels: {{kuma.io/workload: web}}
networking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}, tags: {{kuma.io/service: web}}}}]}}
---
type: MeshMetric
name: m
spec:
  default:
    applications:
      - name: app
        port: {app}
        relabel:
          - {{sourceLabels: [path], targetLabel: route}}
          - {{regex: path, action: labeldrop}}
    backends:
      - {{type: Prometheus, prometheus: {{port: 5670}}}}
      - {{type: OpenTelemetry, openTelemetry: {{endpoint: "127.0.0.1:{rg}", refreshInterval: 1s}}}}
      - {{type: OpenTelemetry, openTelemetry: {{endpoint: "{}", refreshInterval: 1s}}}}
    relabel:
      - {{sourceLabels: [kuma_workload], targetLabel: workload}}
      - {{regex: "kuma_.*", action: labeldrop}}
      - {{sourceLabels: [__name__], regex: "envoy_cluster_.*", action: drop}}
"#,
            free_port(&ip),
            direct.grpc
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let dp = start_proxy(&dir, "web-01", &cp);
    let prom = format!("{ip}:5670");
    let body = wait_for(Duration::from_secs(60), || {
        get_ok(&prom, "/metrics").filter(|b| has_metric(b, "sample_app_requests_total"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    // the rules ran on the Prometheus endpoint
    assert!(!body.contains("envoy_cluster_"), "envoy_cluster_* dropped");
    assert!(!body.contains("kuma_"), "kuma_* labels dropped");
    assert!(body.contains("workload=\"web\""), "{body}");
    let app_line = body
        .lines()
        .find(|l| l.starts_with("sample_app_requests_total{"))
        .unwrap();
    assert!(
        app_line.contains("route=\"/") && !app_line.contains("path="),
        "{app_line}"
    );
    let stage = |s: &str| sample_value(&body, &format!("meshmetric_dp_series_stage{{stage=\"{s}\"")).unwrap();
    assert!(stage("relabel") < stage("profile"), "the rules dropped series: {body}");
    assert!(sample_value(&body, "meshmetric_dp_dropped{reason=\"relabel\",unit=\"series\"").unwrap() > 0.0);
    // the same series reach the collector through rotel
    let prom_series = |name: &str| -> BTreeSet<BTreeMap<String, String>> {
        parse_series(&get_ok(&prom, "/metrics").unwrap())
            .into_iter()
            .filter(|s| s["__name__"] == name)
            .map(|mut s| {
                s.remove("__name__");
                s
            })
            .collect()
    };
    // the exporters start before the first config arrives: wait for an export made with it
    let expected = prom_series("envoy_server_live");
    wait_for(Duration::from_secs(30), || {
        let got: BTreeSet<_> = otlp_points(&receiver, "envoy_server_live").into_iter().collect();
        (got == expected).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "through rotel: {:?}\nexpected {expected:?}",
            otlp_points(&receiver, "envoy_server_live")
        )
    });
    wait_for(Duration::from_secs(30), || {
        let got: BTreeSet<_> = otlp_points(&direct, "envoy_server_live").into_iter().collect();
        (got == expected).then_some(())
    })
    .expect("straight to the receiver too");
    let last = receiver.records().pop().unwrap();
    let any_cluster = last.to_string().contains("envoy_cluster_");
    assert!(!any_cluster, "a dropped family reached the collector");
    let _ = std::fs::remove_dir_all(&dir);
}
