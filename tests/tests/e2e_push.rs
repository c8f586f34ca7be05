//! Push input end to end: applications using the OpenTelemetry Rust SDK with no endpoint
//! configured push OTLP/gRPC to meshmetric-dp beside a real Envoy; their metrics appear with the
//! proxy's labels on the Prometheus listener (through Envoy), in a real Prometheus after a scrape,
//! and at a real OTLP receiver. OTLP/HTTP with protobuf, JSON and gzip, malformed, oversized and
//! wrongly typed requests, and a receiver port already in use are tried too.

use std::io::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

/// The value of the one series of `body` that starts with `prefix` and carries every label of
/// `labels`.
fn value_with(body: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn post(addr: &str, ct: &str, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let enc = encoding
        .map(|e| format!("content-encoding: {e}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /v1/metrics HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {ct}\r\n{enc}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

const JSON_REQUEST: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-app"}}]},"scopeMetrics":[{"scope":{"name":"manual"},"metrics":[{"name":"json.jobs","unit":"{job}","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"42","timeUnixNano":"1700000000000000000","attributes":[{"key":"queue","value":{"stringValue":"q1"}}]}]}}]}]}]}"#;

#[test]
fn e2e_sdk_apps_push_without_configuration_and_appear_everywhere() {
    let dir = workdir("push");
    let recv = OtlpReceiver::start(&dir, "recv", &[]);
    let ip = free_loopback(66, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nlabels: {{kuma.io/workload: web}}\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: 8080, tags: {{kuma.io/service: web}}}}]}}\n---\ntype: MeshMetric\nname: push\nspec:\n  default:\n    otlpReceiver: {{enabled: true}}\n    backends:\n      - {{type: Prometheus, prometheus: {{port: 5670}}}}\n      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"{}\", refreshInterval: 1s}}}}\n",
            free_port(&ip),
            recv.grpc
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let dp = start_proxy(&dir, "web-01", &cp);
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || get_ok(&prom, "/metrics"))
        .unwrap_or_else(|| panic!("proxy never served:\n{}", dp.log_text()));
    wait_for(Duration::from_secs(30), || {
        dp.log_text().contains("OTLP/gRPC receiver listening").then_some(())
    })
    .unwrap_or_else(|| panic!("receiver never listened:\n{}", dp.log_text()));

    // two SDK apps, no endpoint configured: one cumulative, one delta
    let app_port = free_port("127.0.0.1");
    let _app = Proc::start_env(
        "app-cumulative",
        &dir,
        &bin("meshmetric-sample-app"),
        &[
            "--address",
            &format!("127.0.0.1:{app_port}"),
            "--push",
            "--push-interval",
            "500ms",
        ],
        &[],
    );
    let delta_port = free_port("127.0.0.1");
    let _delta = Proc::start_env(
        "app-delta",
        &dir,
        &bin("meshmetric-sample-app"),
        &[
            "--address",
            &format!("127.0.0.1:{delta_port}"),
            "--push",
            "--push-interval",
            "500ms",
            "--delta",
            "--service-name",
            "delta-app",
        ],
        &[],
    );

    // the Rust SDK over OTLP/HTTP (protobuf), no endpoint configured
    let http_app_port = free_port("127.0.0.1");
    let _http_app = Proc::start(
        "app-http",
        &dir,
        &bin("meshmetric-sample-app"),
        &[
            "--address",
            &format!("127.0.0.1:{http_app_port}"),
            "--push",
            "--push-http",
            "--push-interval",
            "500ms",
            "--service-name",
            "rust-http",
        ],
    );
    // the Python SDK over OTLP/HTTP (protobuf), no endpoint configured either
    let script = workspace_root().join("tests/py/push_app.py");
    let _py = Proc::start("py-cumulative", &dir, &otlp_python(), &[script.to_str().unwrap()]);
    let _py_delta = Proc::start(
        "py-delta",
        &dir,
        &otlp_python(),
        &[script.to_str().unwrap(), "--delta", "--service-name", "py-delta"],
    );

    // 1. on the Prometheus listener, through Envoy, with the proxy's labels and exact values
    let cum = ["job=\"sample-app\"", "instance=\"sample-1\"", "dataplane=\"web-01\""];
    let body = wait_for(Duration::from_secs(60), || {
        let b = get_ok(&prom, "/metrics")?;
        (value_with(&b, "sample_app_pushed_orders_total{", &cum).is_some()
            && value_with(&b, "sample_app_pushed_orders_total{", &["job=\"delta-app\""]).is_some())
        .then_some(b)
    })
    .unwrap_or_else(|| panic!("pushed metrics never appeared:\n{}", dp.log_text()));
    let route = "http_route=\"/\"";
    assert_eq!(
        value_with(
            &body,
            "sample_app_pushed_orders_total{",
            &[
                &cum[..],
                &[route, "otel_scope_name=\"meshmetric-sample-app\"", "mesh=\"default\""]
            ]
            .concat()
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        value_with(&body, "sample_app_pushed_active{", &cum),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        value_with(
            &body,
            "sample_app_pushed_temperature_celsius{",
            &[&cum[..], &["room=\"lab\""]].concat()
        ),
        Some(21.5),
        "{body}"
    );
    for (le, n) in [("0.1", 1.0), ("1", 2.0), ("+Inf", 3.0)] {
        let l = format!("le=\"{le}\"");
        assert_eq!(
            value_with(
                &body,
                "sample_app_pushed_latency_seconds_bucket{",
                &[&cum[..], &[&l]].concat()
            ),
            Some(n),
            "le {le}\n{body}"
        );
    }
    assert_eq!(
        value_with(&body, "sample_app_pushed_latency_seconds_sum{", &cum),
        Some(2.55),
        "{body}"
    );
    assert_eq!(
        value_with(&body, "sample_app_pushed_size_bytes_count{", &cum),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        value_with(&body, "sample_app_pushed_size_bytes_sum{", &cum),
        Some(104.0),
        "{body}"
    );
    assert_eq!(
        value_with(
            &body,
            "sample_app_pushed_size_bytes_bucket{",
            &[&cum[..], &["le=\"+Inf\""]].concat()
        ),
        Some(3.0),
        "{body}"
    );
    assert!(body.contains("# TYPE sample_app_pushed_orders_total counter"), "{body}");
    assert!(
        body.contains("# TYPE sample_app_pushed_latency_seconds histogram"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("target_info{") && l.contains("job=\"sample-app\"") && !l.contains("service_name")),
        "{body}"
    );
    assert!(
        body.contains("meshmetric_dp_scrape_up{source=\"application\",application=\"otlp/sample-app/sample-1\""),
        "{body}"
    );
    // delta: accumulated, never double counted; a request adds exactly one
    let delta = ["job=\"delta-app\""];
    assert_eq!(
        value_with(&body, "sample_app_pushed_orders_total{", &delta),
        Some(3.0),
        "{body}"
    );
    get_ok(&format!("127.0.0.1:{delta_port}"), "/").unwrap();
    let b = wait_for(Duration::from_secs(20), || {
        let b = get_ok(&prom, "/metrics")?;
        (value_with(&b, "sample_app_pushed_orders_total{", &delta) == Some(4.0)).then_some(b)
    })
    .unwrap_or_else(|| {
        panic!(
            "delta never reached 4:\n{}",
            get_ok(&prom, "/metrics").unwrap_or_default()
        )
    });
    assert_eq!(
        value_with(&b, "sample_app_pushed_latency_seconds_count{", &delta),
        Some(3.0),
        "{b}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let b = get_ok(&prom, "/metrics").unwrap();
    assert_eq!(
        value_with(&b, "sample_app_pushed_orders_total{", &delta),
        Some(4.0),
        "{b}"
    );

    // the Rust SDK's points over OTLP/HTTP, exactly
    let rh = ["job=\"rust-http\"", "dataplane=\"web-01\""];
    let b = wait_for(Duration::from_secs(30), || {
        let b = get_ok(&prom, "/metrics")?;
        value_with(&b, "sample_app_pushed_orders_total{", &rh).map(|_| b)
    })
    .unwrap_or_else(|| {
        panic!(
            "the Rust SDK over HTTP never arrived:\n{}",
            dir.join("app-http.log").display()
        )
    });
    assert_eq!(value_with(&b, "sample_app_pushed_orders_total{", &rh), Some(3.0), "{b}");
    assert_eq!(
        value_with(&b, "sample_app_pushed_latency_seconds_count{", &rh),
        Some(3.0),
        "{b}"
    );
    assert_eq!(
        value_with(&b, "sample_app_pushed_temperature_celsius{", &rh),
        Some(21.5),
        "{b}"
    );

    // the Python SDK's points, cumulative and delta, exactly
    for job in ["py-app", "py-delta"] {
        let j = format!("job=\"{job}\"");
        let b = wait_for(Duration::from_secs(30), || {
            let b = get_ok(&prom, "/metrics")?;
            (value_with(&b, "py_latency_seconds_count{", &[&j])? >= 3.0).then_some(b)
        })
        .unwrap_or_else(|| {
            panic!(
                "{job} never appeared:\n{}",
                get_ok(&prom, "/metrics").unwrap_or_default()
            )
        });
        let l = [j.as_str(), "instance=\"py-1\"", "dataplane=\"web-01\""];
        assert_eq!(
            value_with(&b, "py_orders_total{", &[&l[..], &["queue=\"q1\""]].concat()),
            Some(7.0),
            "{job}\n{b}"
        );
        assert_eq!(value_with(&b, "py_active{", &l), Some(4.0), "{job}\n{b}");
        assert_eq!(value_with(&b, "py_temperature_celsius{", &l), Some(19.25), "{job}\n{b}");
        for (le, n) in [("0.1", 1.0), ("1", 2.0), ("+Inf", 3.0)] {
            let le = format!("le=\"{le}\"");
            assert_eq!(
                value_with(&b, "py_latency_seconds_bucket{", &[&l[..], &[&le]].concat()),
                Some(n),
                "{job} {le}\n{b}"
            );
        }
        assert_eq!(value_with(&b, "py_latency_seconds_count{", &l), Some(3.0), "{job}\n{b}");
        assert_eq!(value_with(&b, "py_size_bytes_count{", &l), Some(3.0), "{job}\n{b}");
        assert_eq!(value_with(&b, "py_size_bytes_sum{", &l), Some(104.0), "{job}\n{b}");
    }
    // a delta sender's repeated exports never add up twice
    std::thread::sleep(Duration::from_secs(2));
    let b = get_ok(&prom, "/metrics").unwrap();
    assert_eq!(
        value_with(&b, "py_orders_total{", &["job=\"py-delta\""]),
        Some(7.0),
        "{b}"
    );
    assert_eq!(
        value_with(&b, "py_latency_seconds_count{", &["job=\"py-delta\""]),
        Some(3.0),
        "{b}"
    );

    // 2. the real Prometheus stores them after a scrape
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!("scrape_configs:\n  - job_name: mesh\n    scrape_interval: 1s\n    honor_labels: true\n    static_configs: [{{targets: [\"{prom}\"]}}]\n"),
    )
    .unwrap();
    let paddr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _prom = Proc::start(
        "prometheus",
        &dir,
        &prometheus(),
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            &format!("--web.listen-address={paddr}"),
            "--log.level=warn",
        ],
    );
    let stored = wait_for(Duration::from_secs(60), || {
        let b = get_ok(
            &paddr,
            "/api/v1/query?query=sample_app_pushed_orders_total%7Bjob%3D%22sample-app%22%7D",
        )?;
        let v: Value = serde_json::from_str(&b).ok()?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        Some(r)
    })
    .expect("Prometheus never stored the pushed counter");
    assert_eq!(stored["value"][1], "3", "{stored}");
    assert_eq!(stored["metric"]["dataplane"], "web-01", "{stored}");
    assert_eq!(stored["metric"]["instance"], "sample-1", "{stored}");

    // a sender that restarts: its cumulative counter starts over (3 again after 4)
    get_ok(&format!("127.0.0.1:{app_port}"), "/").unwrap();
    wait_for(Duration::from_secs(20), || {
        let b = get_ok(&prom, "/metrics")?;
        (value_with(&b, "sample_app_pushed_orders_total{", &cum) == Some(4.0)).then_some(())
    })
    .expect("the cumulative counter reached 4");
    drop(_app);
    let _app = Proc::start(
        "app-cumulative-again",
        &dir,
        &bin("meshmetric-sample-app"),
        &[
            "--address",
            &format!("127.0.0.1:{app_port}"),
            "--push",
            "--push-interval",
            "500ms",
        ],
    );
    wait_for(Duration::from_secs(20), || {
        let b = get_ok(&prom, "/metrics")?;
        (value_with(&b, "sample_app_pushed_orders_total{", &cum) == Some(3.0)).then_some(())
    })
    .expect("after a restart the cumulative counter is the sender's again (3)");

    // 3. at the OTLP receiver as sent: OTel names, units, temporality, exponential histograms,
    //    with the proxy's extra labels on the resource; never also converted from the text
    // every (resource, metric) of a record with that metric name
    let all = |rec: &Value, name: &str| -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for rm in rec["request"]["resourceMetrics"].as_array().into_iter().flatten() {
            for m in rm["scopeMetrics"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["metrics"].as_array().into_iter().flatten())
                .filter(|m| m["name"] == name)
            {
                out.push((rm["resource"].clone(), m.clone()));
            }
        }
        out
    };
    let find = |rec: &Value, name: &str| all(rec, name).into_iter().next();
    let (resource, orders) = wait_for(Duration::from_secs(30), || {
        // any export of the sample app's counter while it was 3 (before the request, or
        // after the restart)
        recv.records().into_iter().find_map(|r| {
            all(&r, "sample_app.pushed.orders").into_iter().find(|(res, m)| {
                res.to_string().contains("\"sample-app\"") && m["sum"]["dataPoints"][0]["asInt"] == "3"
            })
        })
    })
    .expect("the pushed counter never reached the OTLP receiver as sent");
    let res = resource.to_string();
    for attr in ["service.name", "sample-app", "dataplane", "web-01", "mesh"] {
        assert!(res.contains(attr), "resource lacks {attr}: {res}");
    }
    assert_eq!(orders["unit"], "{order}", "{orders}");
    assert_eq!(orders["sum"]["isMonotonic"], true, "{orders}");
    assert_eq!(
        orders["sum"]["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{orders}"
    );
    assert_eq!(orders["sum"]["dataPoints"][0]["asInt"], "3", "{orders}");
    let size = wait_for(Duration::from_secs(10), || {
        recv.records()
            .into_iter()
            .rev()
            .find_map(|r| find(&r, "sample_app.pushed.size").map(|x| x.1))
    })
    .expect("the exponential histogram as sent");
    assert_eq!(size["exponentialHistogram"]["dataPoints"][0]["count"], "3", "{size}");
    let delta_seen = wait_for(Duration::from_secs(20), || {
        recv.records()
            .into_iter()
            .any(|r| {
                all(&r, "sample_app.pushed.orders").into_iter().any(|(res, m)| {
                    res.to_string().contains("delta-app")
                        && m["sum"]["aggregationTemporality"] == "AGGREGATION_TEMPORALITY_DELTA"
                })
            })
            .then_some(())
    });
    assert!(delta_seen.is_some(), "the delta app's temporality is kept");
    let converted_too = recv.records().into_iter().any(|r| {
        find(&r, "sample_app_pushed_orders").is_some() || find(&r, "sample_app_pushed_orders_total").is_some()
    });
    assert!(
        !converted_too,
        "pushed data must not also arrive converted from the Prometheus text"
    );

    // 4. OTLP/HTTP: JSON, protobuf with gzip; malformed, oversized, wrong type
    let http = "127.0.0.1:4318";
    let (code, text) = post(http, "application/json", None, JSON_REQUEST.as_bytes());
    assert_eq!(code, 200, "{text}");
    let b = wait_for(Duration::from_secs(10), || {
        let b = get_ok(&prom, "/metrics")?;
        value_with(&b, "json_jobs_total{", &["queue=\"q1\"", "job=\"json-app\""]).map(|_| b)
    })
    .expect("JSON push never appeared");
    assert_eq!(value_with(&b, "json_jobs_total{", &["queue=\"q1\""]), Some(42.0));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[0xff, 0xff, 0xff]).unwrap();
    let (code, _) = post(http, "application/x-protobuf", Some("gzip"), &gz.finish().unwrap());
    assert_eq!(code, 400, "malformed protobuf");
    let (code, _) = post(http, "application/x-protobuf", Some("gzip"), b"not gzip");
    assert_eq!(code, 400, "malformed gzip");
    let (code, _) = post(http, "text/plain", None, b"x 1");
    assert_eq!(code, 415);
    let (code, _) = post(http, "application/x-protobuf", None, &vec![0u8; 5 << 20]);
    assert_eq!(code, 413);
    // counted (a collection is reused for 500 ms, so wait for the next one)
    let b = wait_for(Duration::from_secs(10), || {
        let b = get_ok(&prom, "/metrics")?;
        (value_with(
            &b,
            "meshmetric_dp_otlp_receiver_requests_total{",
            &["result=\"malformed\""],
        )? >= 2.0)
            .then_some(b)
    })
    .expect("malformed requests counted");
    assert!(
        value_with(
            &b,
            "meshmetric_dp_otlp_receiver_data_points_total{",
            &["result=\"accepted\""]
        )
        .unwrap()
            >= 10.0,
        "{b}"
    );
}

#[test]
fn e2e_receiver_port_in_use_is_reported_and_nothing_else_breaks() {
    let dir = workdir("push-busy");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let http_port = free_port("127.0.0.1");
    let ip = free_loopback(67, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        format!(
            "type: Dataplane\nname: web-02\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: 8080, tags: {{kuma.io/service: web}}}}]}}\n---\ntype: MeshMetric\nname: push\nspec:\n  default:\n    otlpReceiver: {{enabled: true}}\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    // per-proxy ports: gRPC on a port someone else holds, HTTP on a free one
    let dp = start_proxy_with(
        &dir,
        "web-02",
        &cp,
        &[
            "--otlp-receiver-grpc-port",
            &busy_port.to_string(),
            "--otlp-receiver-http-port",
            &http_port.to_string(),
            "--otlp-receiver-max-series",
            "5",
        ],
    );
    let log = wait_for(Duration::from_secs(60), || {
        let l = dp.log_text();
        l.contains("OTLP/gRPC receiver cannot listen").then_some(l)
    })
    .unwrap_or_else(|| panic!("no error for the busy port:\n{}", dp.log_text()));
    assert!(
        log.contains(&format!("127.0.0.1:{busy_port}")),
        "the error names the address:\n{log}"
    );
    let prom = format!("{ip}:5670");
    let b = wait_for(Duration::from_secs(30), || get_ok(&prom, "/metrics")).expect("the proxy still serves");
    assert!(has_metric(&b, "envoy_server_live"), "{b}");
    let (code, text) = post(
        &format!("127.0.0.1:{http_port}"),
        "application/json",
        None,
        JSON_REQUEST.as_bytes(),
    );
    assert_eq!(code, 200, "the HTTP receiver works: {text}");
    drop(busy);
}
