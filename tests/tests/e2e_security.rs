//! Safe beyond loopback, probed from outside as an attacker with no credentials would: the
//! control plane's ports stay available under a flood of idle connections at a low open-file
//! limit.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

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
