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
            "--max-body-bytes",
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
