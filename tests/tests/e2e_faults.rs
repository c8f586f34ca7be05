//! Faults with real processes: broken applications are counted and skipped, never fatal.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use meshmetric_tests::*;

/// An HTTP server on a free port answering every request with `body` (or never, when None).
fn fake_app(body: Option<Vec<u8>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                match body {
                    None => std::thread::sleep(Duration::from_secs(3600)),
                    Some(b) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            b.len()
                        );
                        let _ = s.write_all(&b);
                    }
                }
            });
        }
    });
    port
}

#[test]
fn e2e_broken_applications_are_counted_and_skipped() {
    let dir = workdir("faults");
    let good = free_port("127.0.0.1");
    let hang = fake_app(None);
    let binary = fake_app(Some(vec![0xff, 0xfe, 0x00, 0x80, b'\n']));
    let malformed = fake_app(Some(
        b"# TYPE ok_metric gauge\nok_metric 1\nthis is { not metrics\nbad_value{a=\"1\"} twelve\n".to_vec(),
    ));
    let ip = free_loopback(6, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("dp.yaml"), format!("type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {good}}}]}}\n", free_port(&ip))).unwrap();
    std::fs::write(
        res.join("policy.yaml"),
        format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications:\n      - {{name: good, port: {good}}}\n      - {{name: hang, port: {hang}}}\n      - {{name: binary, port: {binary}}}\n      - {{name: malformed, port: {malformed}}}\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n"),
    )
    .unwrap();
    let _app = Proc::start(
        "app",
        &dir,
        &bin("meshmetric-sample-app"),
        &["--address", &format!("127.0.0.1:{good}")],
    );
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let mut dp = start_proxy_with(&dir, "web-01", &cp, &["--scrape-timeout", "1s"]);
    let prom = format!("{ip}:5670");
    let body = wait_for(Duration::from_secs(60), || {
        get_ok(&prom, "/metrics").filter(|b| b.contains("application=\"hang\""))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    assert!(
        has_metric(&body, "sample_app_requests_total"),
        "the healthy app is still merged"
    );
    assert!(has_metric(&body, "envoy_server_live"), "Envoy's stats are still served");
    assert!(
        has_metric(&body, "ok_metric"),
        "the valid lines of the malformed app are kept"
    );
    assert!(!body.contains("bad_value"), "an invalid line is dropped");
    for (app, up) in [("good", 1.0), ("hang", 0.0), ("binary", 0.0), ("malformed", 1.0)] {
        let v = sample_value(
            &body,
            &format!("meshmetric_dp_scrape_up{{source=\"application\",application=\"{app}\""),
        );
        assert_eq!(v, Some(up), "up for {app}\n{body}");
    }
    assert_eq!(sample_value(&body, "meshmetric_dp_malformed_lines{"), Some(2.0));
    // the hanging app costs at most the scrape timeout
    let t = Instant::now();
    assert!(get_ok(&prom, "/metrics").is_some());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a hanging app must not hold the scrape beyond its timeout: {:?}",
        t.elapsed()
    );
    dp.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP server whose answer never ends (a metrics body streamed forever).
fn endless_app() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n"
                );
                let chunk = "endless_metric{i=\"0123456789\"} 1\n".repeat(2048);
                while s.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    port
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn e2e_limits_bound_untrusted_applications() {
    let dir = workdir("limits");
    let wide: String = (0..300).map(|i| format!("wide_metric{{i=\"{i}\"}} {i}\n")).collect();
    let wide = fake_app(Some(format!("# TYPE wide_metric gauge\n{wide}").into_bytes()));
    let long = fake_app(Some(
        format!(
            "# TYPE long_metric gauge\nlong_metric{{v=\"{}\"}} 1\nlong_metric{{v=\"short\"}} 2\n",
            "x".repeat(5000)
        )
        .into_bytes(),
    ));
    let endless = endless_app();
    let ip = free_loopback(7, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("dp.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}}}]}}\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    std::fs::write(
        res.join("policy.yaml"),
        format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications:\n      - {{name: wide, port: {wide}}}\n      - {{name: long, port: {long}}}\n      - {{name: endless, port: {endless}}}\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n"),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let mut dp = start_proxy_with(
        &dir,
        "web-01",
        &cp,
        &[
            "--max-series-per-scrape",
            "100",
            "--max-label-value-bytes",
            "1024",
            "--max-app-body-bytes",
            "4194304",
        ],
    );
    let prom = format!("{ip}:5670");
    let body = wait_for(Duration::from_secs(60), || {
        get_ok(&prom, "/metrics").filter(|b| b.contains("application=\"endless\""))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    assert_eq!(
        series(&body).iter().filter(|l| l.starts_with("wide_metric{")).count(),
        100,
        "the first 100 series"
    );
    assert_eq!(
        sample_value(&body, "meshmetric_dp_dropped{reason=\"series_limit\",unit=\"series\""),
        Some(200.0)
    );
    assert!(!body.contains(&"x".repeat(1025)), "the long label value is not served");
    assert!(body.contains("long_metric{v=\"short\""), "the rest of that app is kept");
    assert_eq!(
        sample_value(&body, "meshmetric_dp_dropped{reason=\"label_too_long\",unit=\"series\""),
        Some(1.0)
    );
    assert_eq!(
        sample_value(
            &body,
            "meshmetric_dp_scrape_up{source=\"application\",application=\"endless\""
        ),
        Some(0.0),
        "an endless body fails its scrape at the body limit"
    );
    assert!(has_metric(&body, "envoy_server_live"));
    // several more collections of the endless app: memory stays bounded by the body limit
    for _ in 0..5 {
        assert!(get_ok(&prom, "/metrics").is_some());
    }
    dp.assert_running();
    let rss = peak_rss_kib(dp.child.id());
    assert!(rss > 0 && rss < 200 * 1024, "peak RSS {rss} KiB with an endless app");
    assert!(
        dp.log_text().contains("exceeds the limit of 4194304 bytes"),
        "{}",
        dp.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP server that answers every request with `body` after `delay`.
fn slow_app(body: &'static str, delay: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// One Prometheus query: the result vector.
fn query(prom: &str, q: &str) -> Vec<serde_json::Value> {
    let path = format!(
        "/api/v1/query?query={}",
        q.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
            .replace(',', "%2C")
    );
    get_ok(prom, &path)
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn e2e_hostile_applications_spoil_neither_the_scrape_nor_the_memory() {
    let dir = workdir("hostile");
    let endless: Vec<u16> = (0..5).map(|_| endless_app()).collect();
    let dup = fake_app(Some(
        b"# TYPE dup_metric gauge\ndup_metric{a=\"1\",a=\"2\"} 1\ndup_metric{a=\"ok\"} 2\n".to_vec(),
    ));
    let clash = fake_app(Some(
        b"# TYPE clash_metric gauge\nclash_metric{mesh=\"m1\",exported_mesh=\"m2\"} 1\n".to_vec(),
    ));
    let spoof = fake_app(Some(
        b"# TYPE meshmetric_dp_scrape_up gauge\nmeshmetric_dp_scrape_up{source=\"envoy\"} 0\n".to_vec(),
    ));
    let long_name = fake_app(Some(
        format!(
            "# TYPE named_metric gauge\nnamed_metric{{{}=\"v\"}} 1\nnamed_metric 2\n",
            "n".repeat(2000)
        )
        .into_bytes(),
    ));
    let slow = slow_app("slow_metric 1\n", Duration::from_secs(4));
    let ip = free_loopback(15, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("dp.yaml"),
        format!(
            "type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}}}]}}\n",
            free_port(&ip)
        ),
    )
    .unwrap();
    let mut apps: Vec<String> = endless
        .iter()
        .enumerate()
        .map(|(i, p)| format!("      - {{name: endless-{i}, port: {p}}}\n"))
        .collect();
    for (name, port) in [
        ("dup", dup),
        ("clash", clash),
        ("spoof", spoof),
        ("long-name", long_name),
        ("slow", slow),
    ] {
        apps.push(format!("      - {{name: {name}, port: {port}}}\n"));
    }
    std::fs::write(
        res.join("policy.yaml"),
        format!(
            "type: MeshMetric\nname: m\nspec:\n  default:\n    applications:\n{}    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n",
            apps.concat()
        ),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    // default limits: 16 MiB per application, 64 MiB for all of them together
    let mut dp = start_proxy(&dir, "web-01", &cp);
    let target = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || {
        get_ok(&target, "/metrics").filter(|b| b.contains("envoy_server_live"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));

    // the real Prometheus scrapes the proxy with a 2 s timeout: the slow application (4 s)
    // is left out, the proxy is up, and nothing an application sent spoils the scrape
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!("global: {{scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 1m}}\nscrape_configs:\n  - job_name: proxy\n    static_configs: [{{targets: [\"{target}\"]}}]\n"),
    )
    .unwrap();
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
    let up = wait_for(Duration::from_secs(60), || {
        let r = query(&addr, "meshmetric_dp_scrape_up{application=\"slow\"}");
        (!r.is_empty() && !query(&addr, "up{job=\"proxy\"}").is_empty()).then(|| query(&addr, "up{job=\"proxy\"}"))
    })
    .unwrap_or_else(|| panic!("Prometheus never scraped the proxy\n{}", dp.log_text()));
    assert_eq!(up[0]["value"][1], "1", "the proxy is up in Prometheus: {up:?}");
    let slow_up = query(&addr, "meshmetric_dp_scrape_up{application=\"slow\"}");
    assert_eq!(slow_up[0]["value"][1], "0", "{slow_up:?}");
    // duplicate label names: that series is dropped, the rest stays
    let dups = query(&addr, "dup_metric");
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert_eq!(dups[0]["metric"]["a"], "ok");
    // renames never collide: Prometheus stored all three values
    let c = query(&addr, "clash_metric");
    assert_eq!(c.len(), 1, "{c:?}");
    let m = &c[0]["metric"];
    assert_eq!(
        (
            m["mesh"].as_str(),
            m["exported_mesh"].as_str(),
            m["exported_exported_mesh"].as_str()
        ),
        (Some("default"), Some("m2"), Some("m1")),
        "{m}"
    );
    // applications cannot spoof the plugin's own metrics
    let own = query(&addr, "meshmetric_dp_scrape_up{source=\"envoy\"}");
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["value"][1], "1", "{own:?}");
    // a label name of 2,000 bytes drops its series only
    let named = query(&addr, "named_metric");
    assert_eq!(named.len(), 1, "{named:?}");
    let body = get_ok(&target, "/metrics").unwrap();
    for reason in ["duplicate_label_name", "label_name_too_long"] {
        assert_eq!(
            sample_value(
                &body,
                &format!("meshmetric_dp_dropped{{reason=\"{reason}\",unit=\"series\"")
            ),
            Some(1.0),
            "{reason}"
        );
    }
    assert_eq!(
        sample_value(&body, "meshmetric_dp_dropped{reason=\"reserved_name\",unit=\"family\""),
        Some(1.0)
    );
    // five endless applications: each fails at its own limit or at the shared budget
    for i in 0..5 {
        assert_eq!(
            sample_value(
                &body,
                &format!("meshmetric_dp_scrape_up{{source=\"application\",application=\"endless-{i}\"")
            ),
            Some(0.0)
        );
    }
    for _ in 0..5 {
        assert!(get_ok(&target, "/metrics").is_some());
    }
    dp.assert_running();
    let rss = peak_rss_kib(dp.child.id());
    eprintln!(
        "peak RSS of meshmetric-dp with five endless applications: {} MiB",
        rss / 1024
    );
    assert!(rss > 0 && rss < 300 * 1024, "peak RSS {rss} KiB");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Dataplane and a policy with the sample app and a Prometheus backend on `ip:5670`.
fn simple_mesh(dir: &std::path::Path, ip: &str, app: u16, extra_backend: &str) -> std::path::PathBuf {
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("dp.yaml"), format!("type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n", free_port(ip))).unwrap();
    std::fs::write(
        res.join("policy.yaml"),
        format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{{name: app, port: {app}}}]\n    backends:\n      - {{type: Prometheus, prometheus: {{port: 5670}}}}\n{extra_backend}"),
    )
    .unwrap();
    res
}

fn merged(prom: &str) -> Option<String> {
    get_ok(prom, "/metrics")
        .filter(|b| has_metric(b, "sample_app_requests_total") && has_metric(b, "envoy_server_live"))
}

fn envoy_pid(log: &str) -> Option<u32> {
    log.lines()
        .rev()
        .find(|l| l.contains("Envoy started") || l.contains("Envoy restarted"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

#[test]
fn e2e_envoy_killed_is_restarted_and_the_plugin_recovers() {
    let dir = workdir("envoy-kill");
    let ip = free_loopback(8, 5670);
    let (_app, app) = sample_app(&dir);
    let res = simple_mesh(&dir, &ip, app, "");
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let mut dp = start_proxy(&dir, "web-01", &cp);
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || merged(&prom)).unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    let first = envoy_pid(&dp.log_text()).expect("Envoy pid in the log");
    let killed_at = Instant::now();
    std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        get_ok(&prom, "/metrics").is_none().then_some(())
    })
    .expect("the listener went away with Envoy");
    wait_for(Duration::from_secs(60), || merged(&prom))
        .unwrap_or_else(|| panic!("not served again after Envoy was killed:\n{}", dp.log_text()));
    eprintln!(
        "Envoy killed -> merged metrics served again after {:?}",
        killed_at.elapsed()
    );
    let second = envoy_pid(&dp.log_text()).expect("restarted Envoy pid");
    assert_ne!(first, second, "a new Envoy");
    dp.assert_running();
    let log = dp.log_text();
    assert!(log.contains("Envoy exited; restarting it"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn e2e_config_socket_missing_at_start_then_external_envoy_comes_and_goes() {
    let dir = workdir("no-socket");
    let ip = free_loopback(9, 5670);
    let (_app, app) = sample_app(&dir);
    let res = simple_mesh(&dir, &ip, app, "");
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let own = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let workdir = dir.join("web-01");
    let wd = workdir.to_str().unwrap();
    let proxy = [
        "--name",
        "web-01",
        "--workdir",
        wd,
        "--cp-address",
        &cp.xds,
        "--admin-address",
        &admin,
    ];
    // the plugin alone: no Envoy yet, so no config socket
    let mut args = vec!["run", "--metrics-address", &own];
    args.extend(proxy);
    let mut dp = Proc::start("dp", &dir, &bin("meshmetric-dp"), &args);
    let body = wait_for(Duration::from_secs(20), || get_ok(&own, "/metrics"))
        .unwrap_or_else(|| panic!("the plugin does not serve its own metrics:\n{}", dp.log_text()));
    assert_eq!(
        sample_value(&body, "meshmetric_dp_scrape_up{source=\"envoy\""),
        Some(0.0),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(2));
    dp.assert_running();
    // waiting for the first config is not a fault: info, not a warning
    let log = dp.log_text();
    assert!(
        log.contains("waiting for Envoy to serve the first metrics config")
            && !log.contains("cannot fetch the metrics config"),
        "{log}"
    );

    // Envoy started on its own (a separate container, say), from the plugin's bootstrap
    let mut bargs = vec!["bootstrap"];
    bargs.extend(proxy);
    let out = std::process::Command::new(bin("meshmetric-dp"))
        .args(&bargs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.join("bootstrap.json"), &out.stdout).unwrap();
    let start_envoy = || {
        Proc::start(
            "envoy",
            &dir,
            &envoy(),
            &[
                "-c",
                dir.join("bootstrap.json").to_str().unwrap(),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warn",
            ],
        )
    };
    let mut ext = start_envoy();
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || merged(&prom))
        .unwrap_or_else(|| panic!("not served once Envoy came:\n{}\n{}", dp.log_text(), ext.log_text()));

    // Envoy killed: the plugin keeps running and reports Envoy down; a new Envoy is served
    ext.child.kill().unwrap();
    let _ = ext.child.wait();
    let body = wait_for(Duration::from_secs(10), || {
        get_ok(&own, "/metrics").filter(|b| sample_value(b, "meshmetric_dp_scrape_up{source=\"envoy\"") == Some(0.0))
    });
    assert!(body.is_some(), "Envoy down is reported");
    dp.assert_running();
    let _ext = start_envoy();
    wait_for(Duration::from_secs(60), || merged(&prom))
        .unwrap_or_else(|| panic!("not served by the new Envoy:\n{}", dp.log_text()));
    dp.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn e2e_policy_removed_listeners_go_and_exporters_stop() {
    let dir = workdir("removed");
    let ip = free_loopback(10, 5670);
    let (_app, app) = sample_app(&dir);
    // an OTLP backend nobody listens on: its exporter exists (and counts failures) while the
    // policy does
    let dead = free_port("127.0.0.1");
    let otel = format!(
        "      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{dead}\", refreshInterval: 1s}}}}\n"
    );
    let res = simple_mesh(&dir, &ip, app, &otel);
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let own = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut dp = start_proxy_with(&dir, "web-01", &cp, &["--metrics-address", &own]);
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || merged(&prom)).unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    wait_for(Duration::from_secs(20), || {
        get_ok(&own, "/metrics").filter(|b| b.contains("meshmetric_dp_otlp_"))
    })
    .unwrap_or_else(|| panic!("no exporter:\n{}", dp.log_text()));

    let (st, body) = cp.call("DELETE", "/meshes/default/meshmetrics/m", None);
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(&prom).is_err().then_some(())
    })
    .unwrap_or_else(|| panic!("the Prometheus listener is still there:\n{}", dp.log_text()));
    let own_body = wait_for(Duration::from_secs(20), || {
        get_ok(&own, "/metrics").filter(|b| !b.contains("meshmetric_dp_otlp_") && !b.contains("application=\"app\""))
    });
    assert!(
        own_body.is_some(),
        "the exporter and the application scrape stopped:\n{}\n{}",
        get_ok(&own, "/metrics").unwrap_or_default(),
        dp.log_text()
    );
    assert!(dp.log_text().contains("OTLP exporter stopped"), "{}", dp.log_text());
    dp.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}
