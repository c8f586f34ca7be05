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
