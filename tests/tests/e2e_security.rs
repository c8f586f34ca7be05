//! Safe beyond loopback, probed from outside as an attacker with no credentials would: the
//! control plane's ports stay available under a flood of idle connections at a low open-file
//! limit.

use std::net::TcpStream;

use std::process::Command;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

use meshmetric_tests::*;

/// Whether the ADS port answers a gRPC request (the delta variant answers UNIMPLEMENTED).
fn ads_answers(addr: &str) -> bool {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/grpc",
            "-X",
            "POST",
            &format!("http://{addr}/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout) == "200"
}

fn https_answers(addr: &str, ca: &std::path::Path) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "3", "--cacert", ca.to_str().unwrap()])
        .arg(format!("https://{addr}/v1/http-sd"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn e2e_idle_connection_flood_at_1024_files_leaves_every_port_answering() {
    let dir = workdir("sec-flood");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "mads", "localhost");
    let (cert, key) = (certs.join("mads.pem"), certs.join("mads.key"));
    let mut cp = ControlPlane::start_with_file_limit(
        &dir,
        None,
        &[
            "--store",
            "memory",
            "--mads-tls-cert",
            cert.to_str().unwrap(),
            "--mads-tls-key",
            key.to_str().unwrap(),
        ],
        1024,
    );
    let ca = certs.join("ca.pem");
    assert!(https_answers(&cp.mads, &ca) && ads_answers(&cp.xds) && get_ok(&cp.api, "/ready").is_some());

    // 1,100 idle connections (no byte sent) at each port: 3,300 against 1,024 descriptors
    let mut flood = Vec::new();
    for addr in [&cp.api, &cp.mads, &cp.xds] {
        for _ in 0..1100 {
            if let Ok(c) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)) {
                flood.push(c);
            }
        }
    }
    // the flood is held open; within the first-byte timeout every port answers again
    let started = Instant::now();
    let ok = wait_for(Duration::from_secs(30), || {
        (get_ok(&cp.api, "/ready").is_some() && https_answers(&cp.mads, &ca) && ads_answers(&cp.xds)).then_some(())
    });
    cp.proc.assert_running();
    assert!(
        ok.is_some(),
        "a port stayed unavailable under the flood:\n{}",
        cp.proc.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
    drop(flood);
}

/// One ADS request as a rogue (or honest) client sends it: `node.id` and an optional token.
/// Ok: the first response's LDS version; Err: the gRPC status code and message.
async fn ads_request(addr: &str, node_id: &str, token: Option<&str>) -> Result<String, (tonic::Code, String)> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| (tonic::Code::Unavailable, e.to_string()))?;
    let first = DiscoveryRequest {
        node: Some(Node {
            id: node_id.to_string(),
            ..Default::default()
        }),
        type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
        ..Default::default()
    };
    let mut req = tonic::Request::new(tokio_stream::once(first).chain(tokio_stream::pending()));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut stream = client
        .stream_aggregated_resources(req)
        .await
        .map_err(|s| (s.code(), s.message().to_string()))?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(Some(resp))) => Ok(resp.version_info),
        Ok(Ok(None)) => Err((tonic::Code::Unknown, "stream ended".into())),
        Ok(Err(s)) => Err((s.code(), s.message().to_string())),
        Err(_) => Err((tonic::Code::DeadlineExceeded, "no answer".into())),
    }
}

fn ctl(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("meshmetricctl"))
        .args(["--cp", &format!("http://{}", cp.api), "--token-file"])
        .arg(&cp.token_file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TWO_PROXIES: &str = "type: Dataplane\nname: web-01\nnetworking: {address: 127.0.0.1, inbound: [{port: 10001, tags: {kuma.io/service: web}}]}\n---\ntype: Dataplane\nname: web-02\nnetworking: {address: 127.0.0.1, inbound: [{port: 10002, tags: {kuma.io/service: web}}]}\n---\ntype: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}], applications: [{port: 9, name: app}]}}\n";

#[tokio::test(flavor = "multi_thread")]
async fn e2e_ads_tokens_refuse_rogue_clients_and_stream_only_the_named_proxy() {
    let dir = workdir("sec-tokens");
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("r.yaml"), TWO_PROXIES).unwrap();
    let cp = ControlPlane::start(&dir, Some(&res), &["--ads-auth", "token"]);
    let (ok, web01, err) = ctl(&cp, &["generate", "dataplane-token", "--name", "web-01"]);
    assert!(ok && !web01.is_empty(), "{err}");
    assert!(!cp.proc.log_text().contains(&web01), "a token must never be logged");

    // no token, garbage, another proxy's token
    let e = ads_request(&cp.xds, "default.web-01", None).await.unwrap_err();
    assert_eq!(e.0, tonic::Code::Unauthenticated, "{e:?}");
    let e = ads_request(&cp.xds, "default.web-01", Some("not.a-token"))
        .await
        .unwrap_err();
    assert_eq!(e.0, tonic::Code::Unauthenticated, "{e:?}");
    let e = ads_request(&cp.xds, "default.web-02", Some(&web01)).await.unwrap_err();
    assert_eq!(e.0, tonic::Code::PermissionDenied, "{e:?}");
    assert!(!e.1.contains(&web01[..20]), "the refusal must not echo the token");
    // the right token for the right proxy: served
    let v = ads_request(&cp.xds, "default.web-01", Some(&web01))
        .await
        .expect("served");
    assert!(!v.is_empty() && v != "unknown-dataplane", "{v}");

    // expired
    let (_, short, _) = ctl(
        &cp,
        &["generate", "dataplane-token", "--name", "web-01", "--valid-for", "1s"],
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = ads_request(&cp.xds, "default.web-01", Some(&short)).await.unwrap_err();
    assert!(e.0 == tonic::Code::Unauthenticated && e.1.contains("expired"), "{e:?}");

    // revoked
    let tf = dir.join("web01.token");
    std::fs::write(&tf, &web01).unwrap();
    let (ok, _, err) = ctl(&cp, &["revoke", "dataplane-token", "-f", tf.to_str().unwrap()]);
    assert!(ok, "{err}");
    let e = ads_request(&cp.xds, "default.web-01", Some(&web01)).await.unwrap_err();
    assert!(e.0 == tonic::Code::Unauthenticated && e.1.contains("revoked"), "{e:?}");

    // rotation: a new key signs; removing the old one invalidates its tokens
    let (_, before, _) = ctl(&cp, &["generate", "dataplane-token", "--name", "web-02"]);
    let (_, keys, _) = ctl(&cp, &["signing-key", "list"]);
    let old = keys
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(ctl(&cp, &["signing-key", "add"]).0);
    let (_, after, _) = ctl(&cp, &["generate", "dataplane-token", "--name", "web-02"]);
    assert!(ads_request(&cp.xds, "default.web-02", Some(&before)).await.is_ok());
    assert!(ctl(&cp, &["signing-key", "remove", &old]).0);
    let e = ads_request(&cp.xds, "default.web-02", Some(&before)).await.unwrap_err();
    assert_eq!(e.0, tonic::Code::Unauthenticated, "{e:?}");
    assert!(ads_request(&cp.xds, "default.web-02", Some(&after)).await.is_ok());

    // token routes need the API token, even for reads with --anonymous-reads
    let (st, _) = http("GET", &cp.api, "/tokens/signing-keys", None).unwrap();
    assert_eq!(st, 401);
}

#[test]
fn e2e_real_envoy_over_tls_with_a_dataplane_token() {
    let dir = workdir("sec-envoy-tls");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "cp", "control-plane");
    let ip = free_loopback(31, 5670);
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("r.yaml"),
        format!("type: Dataplane\nname: web-01\nnetworking: {{address: {ip}, inbound: [{{port: {}, tags: {{kuma.io/service: web}}}}]}}\n---\ntype: MeshMetric\nname: m\nspec: {{default: {{backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]}}}}\n", free_port(&ip)),
    )
    .unwrap();
    let c = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let cp = ControlPlane::start(
        &dir,
        Some(&res),
        &[
            "--ads-auth",
            "token",
            "--ads-tls-cert",
            &c("cp.pem"),
            "--ads-tls-key",
            &c("cp.key"),
        ],
    );
    let (ok, token, err) = ctl(&cp, &["generate", "dataplane-token", "--name", "web-01"]);
    assert!(ok, "{err}");
    let tf = dir.join("web-01.token");
    std::fs::write(&tf, &token).unwrap();
    let dp = start_proxy_with(
        &dir,
        "web-01",
        &cp,
        &[
            "--dataplane-token-file",
            tf.to_str().unwrap(),
            "--cp-ca-file",
            &c("ca.pem"),
        ],
    );
    wait_for(Duration::from_secs(60), || {
        get_ok(&format!("{ip}:5670"), "/metrics")
            .filter(|b| b.contains("envoy_server_live{") && b.contains("dataplane=\"web-01\""))
    })
    .unwrap_or_else(|| {
        panic!(
            "no metrics through Envoy\ncp:\n{}\ndp:\n{}",
            cp.proc.log_text(),
            dp.log_text()
        )
    });
    // the bootstrap holding the token is private
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("web-01/envoy-bootstrap.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "bootstrap mode {mode:o}");
    assert!(!cp.proc.log_text().contains(&token) && !dp.log_text().contains(&token));
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_hostile_names_ids_and_bodies_are_refused_cheaply() {
    let dir = workdir("sec-hostile");
    let cp = ControlPlane::start(&dir, None, &[]);
    let log_len = || cp.proc.log_text().len();

    // node.ids that are not <mesh>.<name>: refused, and never written raw to the log
    let before = log_len();
    for id in [
        "default.web\n2026-12-01T00:00:00Z INFO forged line".to_string(),
        "default.\u{1b}[31mred".to_string(),
        "a.b.c\u{0}".to_string(),
        format!("default.{}", "x".repeat(3 << 20)),
    ] {
        let e = ads_request(&cp.xds, &id, None).await.unwrap_err();
        assert_eq!(e.0, tonic::Code::InvalidArgument, "{:?}", &e.1[..e.1.len().min(200)]);
        assert!(e.1.len() < 1024, "the refusal is short: {} bytes", e.1.len());
    }
    let log = cp.proc.log_text();
    assert!(!log.contains("forged line") && !log.contains('\u{1b}'), "{log}");
    assert!(
        log_len() - before < 16 << 10,
        "{} log bytes for four hostile ids",
        log_len() - before
    );

    // names and meshes: Kuma's rules, with the field named
    for (doc, field) in [
        (
            "type: MeshMetric\nname: ../../etc/passwd\nspec: {default: {}}\n",
            "name",
        ),
        ("type: MeshMetric\nname: \"a\\nb\"\nspec: {default: {}}\n", "name"),
        ("type: MeshMetric\nmesh: a.b\nname: c\nspec: {default: {}}\n", "mesh"),
        ("type: MeshMetric\nmesh: \"\"\nname: c\nspec: {default: {}}\n", "mesh"),
    ] {
        let (st, body) = cp.call("POST", "/apply", Some(doc));
        assert_eq!(st, 400, "{doc}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["causes"][0]["field"], field, "{body}");
    }
    let long = format!(
        "type: MeshMetric\nname: {}\nspec: {{default: {{}}}}\n",
        "a".repeat(100_000)
    );
    let (st, body) = cp.call("POST", "/apply", Some(&long));
    assert_eq!(st, 400);
    assert!(body.len() < 4096 && body.contains("253"), "{} bytes", body.len());

    // an alias bomb and bodies full of unknown fields: refused, while /ready keeps answering
    let mut bomb = String::from("type: MeshMetric\nname: m\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    bomb.push_str("spec: {default: {}}\n");
    let unknown: Vec<String> = (0..300).map(|i| format!("u{i}: \"{}\"", "v".repeat(3500))).collect();
    let wide = format!(
        "type: MeshMetric\nname: m\nspec: {{default: {{{}}}}}\n",
        unknown.join(", ")
    );
    assert!(wide.len() > 1 << 20);
    let started = Instant::now();
    let mut heavy = Vec::new();
    for body in [bomb.clone(), wide.clone(), wide.clone(), bomb] {
        let (api, token) = (cp.api.clone(), cp.token.clone());
        heavy.push(std::thread::spawn(move || {
            http_with("POST", &api, "/apply", Some(&body), Some(&token)).unwrap()
        }));
    }
    // liveness while they run, not a speed target: /ready answers
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(get_ok(&cp.api, "/ready").is_some());
    let ready_took = t.elapsed();
    for h in heavy {
        let (st, body) = h.join().unwrap();
        assert_eq!(st, 400, "{}", &body[..body.len().min(300)]);
    }
    eprintln!(
        "/ready answered in {ready_took:?} while two alias bombs and two 1 MiB bodies with 300 unknown fields were parsed (all refused after {:?})",
        started.elapsed()
    );
    cp.proc.log_text();
}

/// Runs `program args` expecting it to exit with an error; returns what it printed.
fn refused(program: &str, args: &[&str]) -> String {
    let mut child = Command::new(bin(program))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{program} {args:?} started");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn e2e_foreign_or_shared_directories_and_token_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = workdir("sec-owner");
    let mode = |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let port = || format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let cp = |data: &std::path::Path, extra: &[&str]| {
        let mut a = vec![
            "--data-dir".to_string(),
            data.to_str().unwrap().to_string(),
            "--api-address".into(),
            port(),
            "--xds-address".into(),
            port(),
            "--mads-address".into(),
            port(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused("meshmetric-cp", &a)
    };

    // a world-writable data directory
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    mode(&shared, 0o777);
    let out = cp(&shared, &[]);
    assert!(
        out.contains("data directory") && out.contains("writable by group and others"),
        "{out}"
    );
    // an API token file others may write
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    mode(&data, 0o700);
    let token = dir.join("api-token");
    std::fs::write(&token, "0123456789abcdef0123").unwrap();
    mode(&token, 0o666);
    let out = cp(&data, &["--api-token-file", token.to_str().unwrap()]);
    assert!(out.contains("API token file") && out.contains("chmod go-w"), "{out}");
    // a directory owned by another user (as root, the tests can hand one to `nobody`)
    if is_root() {
        let foreign = dir.join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        mode(&foreign, 0o700);
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let out = cp(&foreign, &[]);
        assert!(out.contains("owned by uid 65534"), "{out}");
    }

    // the plugin: a shared workdir, a writable token file
    let wd = dir.join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    mode(&wd, 0o777);
    let out = refused(
        "meshmetric-dp",
        &[
            "run",
            "--name",
            "web-01",
            "--workdir",
            wd.to_str().unwrap(),
            "--config-file",
            "/dev/null",
        ],
    );
    assert!(out.contains("workdir") && out.contains("writable"), "{out}");
    mode(&wd, 0o750);
    let out = refused(
        "meshmetric-dp",
        &[
            "run",
            "--name",
            "web-01",
            "--workdir",
            wd.to_str().unwrap(),
            "--dataplane-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("dataplane token file") && out.contains("writable"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
