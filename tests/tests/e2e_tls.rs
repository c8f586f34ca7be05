//! `ProvidedTLS`: Envoy serves the Prometheus listener over TLS with the proxy's own
//! certificate, the real Prometheus scrapes it over https (found through HTTP SD), and a proxy
//! without a certificate gets no listener and no target (MADS never says https for plain http).

use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;
use serde_json::Value;

#[test]
fn e2e_provided_tls_is_served_with_the_proxys_certificate_and_scraped_over_https() {
    let dir = workdir("tls");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "web-01", "web-01");
    let ca = certs.join("ca.pem");
    let (_app, app) = sample_app(&dir);
    let ip1 = free_loopback(11, 5670);
    let ip2 = free_loopback(12, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    for (name, ip) in [("web-01", &ip1), ("web-02", &ip2)] {
        std::fs::write(
            res.join(format!("{name}.yaml")),
            format!("type: Dataplane\nname: {name}\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n", free_port(ip)),
        )
        .unwrap();
    }
    std::fs::write(
        res.join("policy.yaml"),
        format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{{name: app, port: {app}}}]\n    backends: [{{type: Prometheus, prometheus: {{port: 5670, tls: {{mode: ProvidedTLS}}}}}}]\n"),
    )
    .unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &[]);
    let cert = certs.join("web-01.pem");
    let key = certs.join("web-01.key");
    let dp1 = start_proxy_with(
        &dir,
        "web-01",
        &cp,
        &[
            "--metrics-cert-path",
            cert.to_str().unwrap(),
            "--metrics-key-path",
            key.to_str().unwrap(),
        ],
    );
    let mut dp2 = start_proxy(&dir, "web-02", &cp);

    // https with the proxy's certificate (SAN localhost, resolved to the proxy's address)
    let url = "https://localhost:5670/metrics";
    let resolve = format!("localhost:5670:{ip1}");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let body = wait_for(Duration::from_secs(60), || {
        let out = curl(&[]);
        let b = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && has_metric(&b, "sample_app_requests_total")).then_some(b)
    })
    .unwrap_or_else(|| panic!("not served over TLS:\n{}", dp1.log_text()));
    assert!(has_metric(&body, "envoy_server_live"));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca.to_str().unwrap(),
            "-v",
            "--resolve",
            &resolve,
            url,
        ])
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("CN=web-01"), "the proxy's own certificate: {verbose}");
    // plain http on the TLS port gets no metrics
    let plain = http("GET", &format!("{ip1}:5670"), "/metrics", None);
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain http must not be served: {plain:?}"
    );

    // the proxy without a certificate: no listener, no target
    std::thread::sleep(Duration::from_secs(2));
    dp2.assert_running();
    assert!(
        std::net::TcpStream::connect((ip2.as_str(), 5670)).is_err(),
        "web-02 has no certificate, so no listener"
    );
    let sd = get_ok(&cp.mads, "/v1/http-sd").expect("HTTP SD");
    let sd: Value = serde_json::from_str(&sd).unwrap();
    let groups = sd.as_array().unwrap();
    assert_eq!(groups.len(), 1, "only the proxy with a certificate: {sd}");
    assert_eq!(groups[0]["labels"]["__scheme__"], "https");
    assert_eq!(groups[0]["targets"][0], format!("{ip1}:5670"));

    // the real Prometheus finds it through HTTP SD and scrapes it over https
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: meshmetric\n    http_sd_configs: [{{url: \"http://{}/v1/http-sd\", refresh_interval: 1s}}]\n    tls_config: {{ca_file: {}, server_name: localhost}}\n",
            cp.mads,
            ca.display()
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let prom = Proc::start(
        "prometheus",
        &dir,
        &prometheus(),
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            &format!("--web.listen-address={web}"),
            "--log.level=warn",
        ],
    );
    let up = wait_for(Duration::from_secs(60), || {
        let b = get_ok(&web, "/api/v1/targets?state=active")?;
        let v: Value = serde_json::from_str(&b).ok()?;
        let t = v["data"]["activeTargets"].as_array()?.first()?.clone();
        (t["health"] == "up").then_some(t)
    })
    .unwrap_or_else(|| panic!("Prometheus never scraped over https:\n{}", prom.log_text()));
    assert!(
        up["scrapeUrl"].as_str().unwrap_or_default().starts_with("https://"),
        "{up}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
