//! The OTLP encoders on a real Envoy's stats: the protobuf the exporters send (written
//! directly) is byte for byte what prost encodes for the typed request, over two collections
//! (start times and deltas carried between them) and both temporalities.

use std::time::Duration;

use meshmetric_dp::otlp::producer::{Producer, Temporality};
use meshmetric_tests::*;

#[test]
fn e2e_direct_otlp_encoding_equals_prost_on_real_envoy_stats() {
    let dir = workdir("otlp-encoding");
    let (_app, app_port) = sample_app(&dir);
    let ip = free_loopback(7, 0);
    let admin = free_port(&ip);
    let listen = free_port(&ip);
    // 20 clusters behind one listener, each used, so counters, gauges and histograms all exist
    let clusters: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"name": "service_{i}", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {{"cluster_name": "service_{i}", "endpoints": [{{"lb_endpoints": [{{"endpoint": {{"address": {{"socket_address": {{"address": "127.0.0.1", "port_value": {app_port}}}}}}}}}]}}]}}}}"#
            )
        })
        .collect();
    let routes: Vec<String> = (0..20)
        .map(|i| {
            format!(r#"{{"match": {{"path": "/c{i}"}}, "route": {{"cluster": "service_{i}", "prefix_rewrite": "/"}}}}"#)
        })
        .collect();
    let bootstrap = format!(
        r#"{{"admin": {{"address": {{"socket_address": {{"address": "{ip}", "port_value": {admin}}}}}}},
  "stats_flush_interval": "1s",
  "static_resources": {{"clusters": [{}], "listeners": [{{"name": "ingress", "address": {{"socket_address": {{"address": "{ip}", "port_value": {listen}}}}},
    "filter_chains": [{{"filters": [{{"name": "envoy.filters.network.http_connection_manager", "typed_config": {{
      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "stat_prefix": "ingress", "route_config": {{"virtual_hosts": [{{"name": "all", "domains": ["*"], "routes": [{}]}}]}},
      "http_filters": [{{"name": "envoy.filters.http.router", "typed_config": {{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}}}]}}}}]}}]}}]}}}}"#,
        clusters.join(","),
        routes.join(",")
    );
    let cfg = dir.join("envoy.json");
    std::fs::write(&cfg, bootstrap).unwrap();
    let _envoy = Proc::start(
        "envoy",
        &dir,
        &envoy(),
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "error",
        ],
    );
    let adm = format!("{ip}:{admin}");
    let inbound = format!("{ip}:{listen}");
    wait_for(Duration::from_secs(30), || get_ok(&adm, "/ready")).expect("Envoy ready");
    let stats = |round: usize| {
        for i in 0..20 {
            for _ in 0..=round {
                let _ = http("GET", &inbound, &format!("/c{i}"), None);
            }
        }
        // histograms reach the admin output after a stats flush
        std::thread::sleep(Duration::from_millis(1200));
        wait_for(Duration::from_secs(30), || {
            let b = get_ok(&adm, "/stats?format=prometheus&text_readouts")?;
            b.contains("envoy_cluster_external_upstream_rq_time_bucket{envoy_cluster_name=\"service_19\"")
                .then_some(b)
        })
        .expect("Envoy's stats with every cluster's request-time histogram")
    };
    let first = stats(0);
    let second = stats(2);
    let extra = [("mesh", "default"), ("dataplane", "web-01"), ("kuma.workload", "web")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for t in [Temporality::Cumulative, Temporality::Delta] {
        let mut typed = Producer::new(t, &extra);
        let mut wire = Producer::new(t, &extra);
        for (i, text) in [&first, &second].into_iter().enumerate() {
            let now = 1_700_000_000_000_000_000 + i as u64 * 1_000_000_000;
            let (req, n1) = typed.produce(text, now);
            let (bytes, n2) = wire.produce_encoded(text, now);
            assert_eq!(n1, n2, "{t:?} collection {i}");
            assert!(n1 > 100, "{t:?} collection {i}: only {n1} points");
            let want = prost::Message::encode_to_vec(&req);
            assert!(
                bytes[..] == want[..],
                "{t:?} collection {i}: direct {} bytes, prost {} bytes",
                bytes.len(),
                want.len()
            );
        }
    }
}
