//! No secret value in any output: with debug logging everywhere, the API token, OTLP header
//! values (from a file and from an environment variable), an inline secret that gets rejected,
//! and the private keys of MADS TLS and ProvidedTLS never appear in a log, an error, an API
//! or MADS response, the config served to the proxy, meshmetricctl output or the metrics.

use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;

const API_TOKEN: &str = "api-token-6c1d0f9e8b7a";
const FILE_SECRET: &str = "Bearer file-secret-53a9e1";
const ENV_SECRET: &str = "env-secret-9f02bb41";
const INLINE_SECRET: &str = "Bearer inline-secret-77e0c2";

/// A line from the middle of a PEM private key (base64 only, long enough to be unique).
fn key_fragment(path: &std::path::Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    lines[lines.len() / 2].to_string()
}

#[test]
fn e2e_no_secret_in_any_log_response_or_output() {
    let dir = workdir("secrets");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "mads", "mads");
    make_cert(&certs, "web-01", "web-01");
    let token_file = dir.join("api-token");
    std::fs::write(&token_file, API_TOKEN).unwrap();
    let header_file = dir.join("otlp-header");
    std::fs::write(&header_file, FILE_SECRET).unwrap();
    let (_app, app) = sample_app(&dir);
    let ip = free_loopback(13, 5670);
    let dead = free_port("127.0.0.1");
    let dead2 = free_port("127.0.0.1");
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        [
            format!("type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, servicePort: {app}}}]}}\n---\n", free_port(&ip)),
            format!("type: MeshMetric\nname: m\nspec:\n  default:\n    applications: [{{name: app, port: {app}}}]\n    backends:\n"),
            "      - {type: Prometheus, prometheus: {clientId: main, port: 5670, tls: {mode: ProvidedTLS}}}\n".to_string(),
            "      - {type: Prometheus, prometheus: {clientId: plain, port: 5671}}\n".to_string(),
            format!("      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{dead}\", refreshInterval: 1s, headers: [{{name: authorization, valueFrom: {{file: \"{}\"}}}}, {{name: x-api-key, valueFrom: {{env: OTLP_KEY}}}}]}}}}\n", header_file.display()),
            format!("      - {{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:{dead2}\", protocol: http, refreshInterval: 1s, headers: [{{name: x-api-key, valueFrom: {{env: OTLP_KEY}}}}]}}}}\n"),
        ]
        .concat(),
    )
    .unwrap();
    let tf = token_file.to_str().unwrap();
    let mads_cert = certs.join("mads.pem");
    let mads_key = certs.join("mads.key");
    let cp = ControlPlane::start(
        &dir,
        Some(&res),
        &[
            "--api-token-file",
            tf,
            "--mads-tls-cert",
            mads_cert.to_str().unwrap(),
            "--mads-tls-key",
            mads_key.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    let wd = dir.join("web-01");
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let (cert, key) = (certs.join("web-01.pem"), certs.join("web-01.key"));
    let envoy = envoy();
    let dp = Proc::start_env(
        "dp",
        &dir,
        &bin("meshmetric-dp"),
        &[
            "run",
            "--name",
            "web-01",
            "--workdir",
            wd.to_str().unwrap(),
            "--cp-address",
            &cp.xds,
            "--admin-address",
            &admin,
            "--envoy-binary",
            envoy.to_str().unwrap(),
            "--metrics-cert-path",
            cert.to_str().unwrap(),
            "--metrics-key-path",
            key.to_str().unwrap(),
            "--header-file-dir",
            dir.to_str().unwrap(),
            "--header-env-prefix",
            "OTLP_",
        ],
        &[("OTLP_KEY", ENV_SECRET), ("RUST_LOG", "debug")],
    );
    let plain = format!("{ip}:5671");
    let metrics = wait_for(Duration::from_secs(60), || {
        get_ok(&plain, "/metrics")
            .filter(|b| b.contains("meshmetric_dp_otlp_retries_total") && has_metric(b, "sample_app_requests_total"))
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    std::thread::sleep(Duration::from_secs(3)); // a few failing exports, logged at debug

    // an inline secret is refused, and the refusal does not repeat it
    let inline = format!(
        "type: MeshMetric\nname: bad\nspec: {{default: {{backends: [{{type: OpenTelemetry, openTelemetry: {{endpoint: \"127.0.0.1:4317\", headers: [{{name: authorization, value: \"{INLINE_SECRET}\"}}]}}}}]}}}}\n"
    );
    let (st, refused) = cp.call("POST", "/apply", Some(&inline));
    assert_eq!(st, 400, "{refused}");
    assert!(refused.contains("valueFrom"), "{refused}");
    std::fs::write(dir.join("inline.yaml"), &inline).unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new(bin("meshmetricctl"))
            .args(["--cp", &format!("http://{}", cp.api), "--token-file", tf])
            .args(args)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let inline_path = dir.join("inline.yaml");
    let mut outputs: Vec<(String, String)> = vec![
        ("metrics".into(), metrics),
        ("apply refusal".into(), refused),
        (
            "ctl validate".into(),
            ctl(&["validate", "-f", inline_path.to_str().unwrap()]),
        ),
        ("ctl apply".into(), ctl(&["apply", "-f", inline_path.to_str().unwrap()])),
        ("ctl get".into(), ctl(&["get", "meshmetrics", "-o", "yaml"])),
        ("ctl inspect".into(), ctl(&["inspect", "dataplane", "web-01"])),
        (
            "unauthorized".into(),
            format!("{:?}", http("GET", &cp.api, "/meshes/default/meshmetrics", None)),
        ),
    ];
    for path in [
        "/meshes/default/meshmetrics",
        "/meshes/default/meshmetrics/m",
        "/meshes/default/dataplanes",
        "/meshes/default/dataplanes/web-01/meshmetric",
    ] {
        outputs.push((format!("GET {path}"), cp.call("GET", path, None).1));
    }
    // MADS over TLS
    let out = Command::new("curl")
        .args(["-sS", "--cacert", certs.join("ca.pem").to_str().unwrap()])
        .arg(format!(
            "https://localhost:{}/v1/http-sd?client_id=main",
            cp.mads.rsplit(':').next().unwrap()
        ))
        .output()
        .unwrap();
    let sd = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(sd.contains("https"), "{sd}");
    outputs.push(("http sd".into(), sd));
    // the config served to the proxy over its socket
    let out = Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            wd.join("config.sock").to_str().unwrap(),
            "http://localhost/meshmetric",
        ])
        .output()
        .unwrap();
    let served = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(served.contains("x-api-key"), "the config names the header: {served}");
    outputs.push(("config socket".into(), served));
    outputs.push(("cp log".into(), cp.proc.log_text()));
    outputs.push(("dp + Envoy log".into(), dp.log_text()));
    assert!(dp.log_text().contains("DEBUG"), "debug logging was on");

    let secrets = [
        API_TOKEN.to_string(),
        FILE_SECRET.to_string(),
        "file-secret-53a9e1".to_string(),
        ENV_SECRET.to_string(),
        "inline-secret-77e0c2".to_string(),
        key_fragment(&mads_key),
        key_fragment(&key),
    ];
    for (what, text) in &outputs {
        assert!(!text.is_empty(), "{what} is empty");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "secret {s:?} leaked into {what}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
