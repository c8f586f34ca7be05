//! Persistence with real processes: the SQLite store survives a control-plane restart while
//! Envoy and the plugin keep serving; several instances share a real PostgreSQL and push each
//! other's changes; a full or read-only disk refuses the write clearly and changes nothing.

use std::time::{Duration, Instant};

use meshmetric_tests::*;

fn dataplane(ip: &str, inbound: u16, app: u16) -> String {
    format!(
        "type: Dataplane\nname: web-01\nlabels: {{kuma.io/workload: web}}\nnetworking: {{address: {ip}, inbound: [{{port: {inbound}, servicePort: {app}, tags: {{kuma.io/service: web}}}}]}}\n"
    )
}

fn policy(profile: &str, app: u16) -> String {
    format!(
        "type: MeshMetric\nname: metrics\nspec:\n  default:\n    sidecar: {{profiles: {{appendProfiles: [{{name: {profile}}}]}}}}\n    applications: [{{name: app, port: {app}}}]\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n"
    )
}

/// The effective config of web-01 as the API shows it, without the insight (which tells what
/// the proxy's streams do, and so differs between instances and over time).
fn effective(cp: &ControlPlane) -> Option<String> {
    match cp.call("GET", "/meshes/default/dataplanes/web-01/meshmetric", None) {
        (200, b) => {
            let mut v: serde_json::Value = serde_json::from_str(&b).ok()?;
            v.as_object_mut()?.remove("insight");
            Some(v.to_string())
        }
        _ => None,
    }
}

/// The profile the Prometheus listener serves once it has the app's metrics
/// (`envoy_cluster_manager_*` and `envoy_runtime_*` are outside Basic).
fn listener_profile(prom: &str) -> Option<&'static str> {
    let b = get_ok(prom, "/metrics")?;
    if !has_metric(&b, "sample_app_requests_total") {
        return None;
    }
    Some(
        if has_metric(&b, "envoy_cluster_manager_active_clusters") || has_metric(&b, "envoy_runtime_load_success") {
            "All"
        } else {
            "Basic"
        },
    )
}

#[test]
fn e2e_sqlite_store_survives_restart_while_proxies_keep_serving() {
    let dir = workdir("store-restart");
    let ip = free_loopback(20, 5670);
    let (_app, app) = sample_app(&dir);
    // resources come only through the API, so only the store can bring them back
    let cp = ControlPlane::start(&dir, None, &[]);
    let (st, body) = cp.call(
        "POST",
        "/apply",
        Some(&format!(
            "{}---\n{}",
            dataplane(&ip, free_port(&ip), app),
            policy("Basic", app)
        )),
    );
    assert_eq!(st, 200, "{body}");
    let before = effective(&cp).expect("effective config");
    let mut dp = start_proxy(&dir, "web-01", &cp);
    let prom = format!("{ip}:5670");
    wait_for(Duration::from_secs(60), || {
        listener_profile(&prom).filter(|p| *p == "Basic")
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));

    // control plane stopped: Envoy and the plugin keep serving the last config
    let addrs = [cp.api.clone(), cp.xds.clone(), cp.mads.clone()];
    drop(cp);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(listener_profile(&prom), Some("Basic"), "served while the CP is down");
    }
    dp.assert_running();

    // it returns (same addresses, no -f): the policies are back and the proxy catches up
    let cp = ControlPlane::start_at(&dir, None, &[], addrs);
    assert_eq!(
        effective(&cp).as_deref(),
        Some(before.as_str()),
        "same config after restart"
    );
    assert!(cp.proc.log_text().contains("resources=2"), "{}", cp.proc.log_text());
    cp.put_meshmetric("metrics", &policy("All", app));
    wait_for(Duration::from_secs(30), || {
        listener_profile(&prom).filter(|p| *p == "All")
    })
    .unwrap_or_else(|| panic!("the proxy did not reconnect:\n{}", dp.log_text()));
    dp.assert_running();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn e2e_postgres_instances_share_one_store_and_push_each_others_changes() {
    const PASSWORD: &str = "pg-s3cret-9d1f77";
    let dir = workdir("store-pg");
    let mut pg = Postgres::start(&dir);
    let url = pg.url(PASSWORD);
    let ip = free_loopback(23, 5670);
    let (_app, app) = sample_app(&dir);
    let dir_a = dir.join("a");
    let dir_b = dir.join("b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = ControlPlane::start(&dir_a, None, &["--store", &url, "--instance-id", "cp-a"]);
    let b = ControlPlane::start(&dir_b, None, &["--store", &url, "--instance-id", "cp-b"]);

    // written on A, seen by B within 2 s
    let t = Instant::now();
    let (st, body) = a.call(
        "POST",
        "/apply",
        Some(&format!(
            "{}---\n{}",
            dataplane(&ip, free_port(&ip), app),
            policy("Basic", app)
        )),
    );
    assert_eq!(st, 200, "{body}");
    let on_b = wait_for(Duration::from_secs(2), || effective(&b));
    assert!(
        on_b.is_some(),
        "B did not see A's write within 2 s:\n{}",
        b.proc.log_text()
    );
    eprintln!("A -> B visible after {:?}", t.elapsed());
    assert_eq!(on_b, effective(&a), "both instances compute the same config");

    // a proxy on B serves the policy written on A
    let prom = format!("{ip}:5670");
    let dp = start_proxy(&dir, "web-01", &b);
    wait_for(Duration::from_secs(60), || {
        listener_profile(&prom).filter(|p| *p == "Basic")
    })
    .unwrap_or_else(|| panic!("never served:\n{}", dp.log_text()));
    // A answers for the proxy connected to B: online there, its config in force
    let insight = |cp: &ControlPlane| -> serde_json::Value {
        let (_, body) = cp.call("GET", "/meshes/default/dataplanes+insights", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["items"][0]["insight"].clone()
    };
    let seen = wait_for(Duration::from_secs(10), || {
        Some(insight(&a)).filter(|i| i["online"] == true && i["config"] == "InForce")
    })
    .unwrap_or_else(|| panic!("A does not see the proxy of B: {}", insight(&a)));
    assert_eq!(seen["instance"], "cp-b", "{seen}");
    assert_eq!(insight(&b)["versionAcked"], seen["versionAcked"]);

    // a change on A is pushed to the proxy connected to B
    let t = Instant::now();
    a.put_meshmetric("metrics", &policy("All", app));
    wait_for(Duration::from_secs(30), || {
        listener_profile(&prom).filter(|p| *p == "All")
    })
    .unwrap_or_else(|| panic!("B never pushed A's change:\n{}", b.proc.log_text()));
    eprintln!("change on A -> served by the proxy on B after {:?}", t.elapsed());

    // the proxy reconnecting to A gets the same config
    drop(dp);
    let dp = start_proxy(&dir, "web-01", &a);
    wait_for(Duration::from_secs(60), || {
        listener_profile(&prom).filter(|p| *p == "All")
    })
    .unwrap_or_else(|| panic!("proxy on A:\n{}", dp.log_text()));

    // a read-only database, then a stopped one: writes are refused clearly, nothing served
    // changes, and writes work again once it is back
    let served = a.call("GET", "/meshes/default/meshmetrics/metrics", None);
    pg.sql("ALTER SYSTEM SET default_transaction_read_only = on");
    pg.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(300));
    let (st, body) = a.call(
        "PUT",
        "/meshes/default/meshmetrics/metrics",
        Some(&policy("Basic", app)),
    );
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("could not be written") && body.contains("read-only"),
        "{body}"
    );
    pg.sql("ALTER SYSTEM RESET default_transaction_read_only");
    pg.stop();
    let (st, body) = a.call("DELETE", "/meshes/default/meshmetrics/metrics", None);
    assert_eq!(st, 503, "{body}");
    assert_eq!(a.call("GET", "/meshes/default/meshmetrics/metrics", None), served);
    assert_eq!(
        listener_profile(&prom),
        Some("All"),
        "the proxy keeps serving while the store is down"
    );
    pg.restart();
    let (st, body) = wait_for(Duration::from_secs(15), || {
        Some(a.call(
            "PUT",
            "/meshes/default/meshmetrics/metrics",
            Some(&policy("Basic", app)),
        ))
        .filter(|r| r.0 == 200)
    })
    .unwrap_or_else(|| panic!("writes never recovered:\n{}", a.proc.log_text()));
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(30), || {
        listener_profile(&prom).filter(|p| *p == "Basic")
    })
    .unwrap_or_else(|| panic!("after the store returned:\n{}", a.proc.log_text()));

    // the password never leaves the address it was given in
    for log in [a.proc.log_text(), b.proc.log_text()] {
        assert!(log.contains("store opened") && !log.contains(PASSWORD), "{log}");
    }
    drop(dp);
    drop(a);
    drop(b);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a tmpfs of `size` at `at` (the test runs as root, like CI); unmounted on drop.
struct Tmpfs(std::path::PathBuf);
impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root); a full disk cannot be simulated otherwise"
        );
        Tmpfs(at.to_path_buf())
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn e2e_full_disk_refuses_writes_and_keeps_serving() {
    assert!(is_root(), "this test mounts a small tmpfs and needs root, as CI has");
    let dir = workdir("store-full");
    let fs = Tmpfs::mount(&dir.join("disk"), "2m");
    let data = dir.join("disk/cp");
    let data_s = data.to_str().unwrap();
    let cp = ControlPlane::start(&dir, None, &["--data-dir", data_s]);
    cp.put_meshmetric("metrics", &policy("Basic", 8080));
    let before = cp.call("GET", "/meshes/default/meshmetrics/metrics", None);
    assert_eq!(before.0, 200);

    // fill the disk, then try a batch of 2,000 Dataplanes (more than the WAL can absorb)
    let filler = dir.join("disk/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
    }
    let batch: String = (0..2000)
        .map(|i| {
            format!(
                "---\ntype: Dataplane\nname: dp-{i}\nnetworking: {{address: 10.1.{}.{}, inbound: [{{port: 8080}}]}}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    let (st, body) = cp.call("POST", "/apply", Some(&batch));
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("could not be written") && body.contains("full") && body.contains("nothing changed"),
        "a clear error: {body}"
    );
    assert!(
        !cp.call("GET", "/meshes/default/dataplanes", None).1.contains("dp-1\""),
        "nothing of the refused batch is served"
    );
    assert_eq!(cp.call("GET", "/meshes/default/meshmetrics/metrics", None), before);

    // space again: writes work again, no restart
    std::fs::remove_file(&filler).unwrap();
    let (st, body) = cp.call("POST", "/apply", Some(&batch));
    assert_eq!(st, 200, "{body}");

    let log = cp.proc.log_text();
    assert!(log.contains("write refused by the store"), "{log}");
    drop(cp);
    drop(fs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `meshmetric-cp` with `--store store` expecting it to refuse to start; returns its log.
fn refused_store(dir: &std::path::Path, store: &str) -> String {
    let data = dir.join(format!("refused-{}", free_port("127.0.0.1")));
    let out = std::process::Command::new(bin("meshmetric-cp"))
        .args(["--store", store, "--data-dir", data.to_str().unwrap()])
        .args(["--api-address", &format!("127.0.0.1:{}", free_port("127.0.0.1"))])
        .args(["--xds-address", &format!("127.0.0.1:{}", free_port("127.0.0.1"))])
        .args(["--mads-address", &format!("127.0.0.1:{}", free_port("127.0.0.1"))])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {store}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn e2e_postgres_over_verified_tls() {
    const PASSWORD: &str = "pg-tls-s3cret-41c2";
    let dir = workdir("store-pg-tls");
    let certs = dir.join("certs");
    let other = dir.join("other-ca");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    make_cert(&certs, "pg", "postgres");
    make_cert(&other, "unused", "unused");
    // the server accepts TLS connections only
    let pg = Postgres::start_tls(&dir, &certs.join("pg.pem"), &certs.join("pg.key"));
    let ca = certs.join("ca.pem");
    let wrong_ca = other.join("ca.pem");
    let base = |host: &str| format!("postgres://meshmetric@{host}:{}/postgres?password={PASSWORD}", pg.port);

    // verify-full against the right CA, by address and by name
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("{}&sslmode=verify-full&sslrootcert={}", base(host), ca.display());
        let cp_dir = dir.join(format!("cp-{host}"));
        std::fs::create_dir_all(&cp_dir).unwrap();
        let cp = ControlPlane::start(&cp_dir, None, &["--store", &url]);
        let (st, body) = cp.call(
            "POST",
            "/apply",
            Some("type: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n"),
        );
        assert_eq!(st, 200, "{body}");
        let log = cp.proc.log_text();
        assert!(log.contains("VerifyFull") && log.contains("password=***"), "{log}");
        assert!(!log.contains(PASSWORD), "{log}");
    }

    // a certificate from another CA, and a connection without TLS, are refused at start
    let wrong = refused_store(
        &dir,
        &format!(
            "{}&sslmode=verify-full&sslrootcert={}",
            base("127.0.0.1"),
            wrong_ca.display()
        ),
    );
    assert!(wrong.contains("could not be opened"), "{wrong}");
    assert!(wrong.to_lowercase().contains("certificate"), "{wrong}");
    let plain = refused_store(&dir, &format!("{}&sslmode=disable", base("127.0.0.1")));
    assert!(plain.contains("could not be opened"), "{plain}");
    for log in [&wrong, &plain] {
        assert!(!log.contains(PASSWORD), "{log}");
        assert!(log.contains("password=***"), "{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
