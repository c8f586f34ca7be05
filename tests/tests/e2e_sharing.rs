//! One collection is shared: concurrent Prometheus scrapes (through Envoy's listener and on the
//! plugin's own endpoint) and the OTLP exporters within the reuse window all use one scrape of
//! the real Envoy, not one each.

use std::time::{Duration, Instant};

use meshmetric_tests::*;

fn collections(body: &str) -> Option<f64> {
    sample_value(body, "meshmetric_dp_collections_total")
}

#[test]
fn e2e_scrapes_and_exporters_share_one_collection() {
    let dir = workdir("sharing");
    let ip = free_loopback(14, 5670);
    let (_app, app) = sample_app(&dir);
    let (dead1, dead2) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("dp.yaml"), format!("type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n", free_port(&ip))).unwrap();
    std::fs::write(
        res.join("policy.yaml"),
        [
            format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{{name: app, port: {app}}}]\n    backends:\n"),
            "      - {type: Prometheus, prometheus: {port: 5670}}\n".to_string(),
            format!("      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{dead1}\", refreshInterval: 1s}}}}\n"),
            format!("      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{dead2}\", protocol: http, refreshInterval: 1s}}}}\n"),
        ]
        .concat(),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let own = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let dp = start_proxy_with(
        &dir,
        "web-01",
        &cp,
        &["--metrics-address", &own, "--reuse-within", "4s"],
    );
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || {
        get_ok(&prom, "/metrics")
            .filter(|b| has_metric(b, "sample_app_requests_total") && b.contains("meshmetric_dp_otlp_queue_batches"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    std::thread::sleep(Duration::from_millis(4200)); // let the reuse window run out

    // a burst of 20 concurrent scrapes, half through Envoy, half on the plugin's own endpoint
    let start = Instant::now();
    let bodies: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let addr = if i % 2 == 0 { prom.clone() } else { own.clone() };
                s.spawn(move || get_ok(&addr, "/metrics").expect("scrape"))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let counts: Vec<f64> = bodies
        .iter()
        .map(|b| collections(b).expect("collections counter"))
        .collect();
    assert!(
        counts.iter().all(|c| *c == counts[0]),
        "20 concurrent scrapes, one collection: {counts:?}"
    );
    let queued = |b: &str| -> f64 {
        series(b)
            .iter()
            .filter(|l| l.starts_with("meshmetric_dp_otlp_queue_batches{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let queued_before = queued(&bodies[0]);

    // the exporters tick every second meanwhile; still inside the window, the same collection
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(start.elapsed()));
    let later = get_ok(&own, "/metrics").expect("scrape");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "still inside the reuse window"
    );
    assert_eq!(
        collections(&later),
        Some(counts[0]),
        "no new scrape of Envoy inside the window"
    );

    // after the window: exactly one more collection served the exporters' batches of that window
    std::thread::sleep(Duration::from_millis(4200));
    let after = get_ok(&own, "/metrics").expect("scrape");
    assert!(
        queued(&after) > queued_before,
        "the exporters exported (into their queues) meanwhile"
    );
    let n = collections(&after).unwrap() - counts[0];
    assert!(
        (1.0..=2.0).contains(&n),
        "{n} collections for 22 scrapes and ~16 exports over two windows"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
