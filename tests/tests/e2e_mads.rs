//! MADS served by the control plane: the gRPC FetchMonitoringAssignments RPC, and HTTP SD over
//! TLS with the certificate rotated on disk while running.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshmetric_tests::*;

/// GETs over HTTPS trusting the test CA; returns (body, server certificate subject).
fn https_get(url: &str, ca: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--cacert", ca.to_str().unwrap(), url])
        .output()
        .expect("curl");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {url}: {err}");
    let subject = err
        .lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or_default()
        .to_string();
    (String::from_utf8_lossy(&out.stdout).into_owned(), subject)
}

const RESOURCES: &str = "type: Dataplane\nname: web-01\nnetworking: {address: 127.0.0.9, inbound: [{port: 10001}]}\n---\ntype: MeshMetric\nname: m\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main, port: 5670}}]}}\n";

#[test]
fn e2e_mads_over_tls_with_rotation_and_grpc_fetch() {
    let dir = workdir("mads");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_cert(&certs, "server", "first");
    let res = dir.join("resources");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(res.join("r.yaml"), RESOURCES).unwrap();
    let cert = certs.join("server.pem");
    let key = certs.join("server.key");
    let cp = ControlPlane::start(
        &dir,
        Some(&res),
        &[
            "--mads-tls-cert",
            cert.to_str().unwrap(),
            "--mads-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{}/v1/http-sd?client_id=main", cp.mads);
    let ca = certs.join("ca.pem");

    let (body, subject) = https_get(&url, &ca);
    assert!(
        body.contains("127.0.0.9:5670") && body.contains("__meta_kuma_dataplane"),
        "{body}"
    );
    assert!(subject.contains("CN=first"), "{subject}");

    // rotate on disk: the next handshake uses the new certificate, no restart
    std::thread::sleep(Duration::from_millis(1100)); // distinct modification time
    make_cert(&certs, "server", "second");
    let (_, subject) = https_get(&url, &ca);
    assert!(
        subject.contains("CN=second"),
        "rotated certificate not served: {subject}\n{}",
        cp.proc.log_text()
    );

    // a broken rotation keeps the last good certificate
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&cert, "not a certificate").unwrap();
    let (_, subject) = https_get(&url, &ca);
    assert!(subject.contains("CN=second"), "{subject}");
    assert!(cp.proc.log_text().contains("keeping the previous one"));

    // gRPC FetchMonitoringAssignments on the xDS port
    let rt = tokio::runtime::Runtime::new().unwrap();
    let xds = cp.xds.clone();
    let resp = rt.block_on(async move {
        use meshmetric_proto::observability::v1::monitoring_assignment_discovery_service_client::MonitoringAssignmentDiscoveryServiceClient;
        let mut c = MonitoringAssignmentDiscoveryServiceClient::connect(format!("http://{xds}")).await.unwrap();
        c.fetch_monitoring_assignments(envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
            node: Some(envoy_types::pb::envoy::config::core::v3::Node { id: "main".into(), ..Default::default() }),
            type_url: meshmetric_proto::MONITORING_ASSIGNMENT_TYPE_URL.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    });
    use prost::Message;
    assert_eq!(resp.resources.len(), 1);
    let ma =
        meshmetric_proto::observability::v1::MonitoringAssignment::decode(resp.resources[0].value.as_slice()).unwrap();
    assert_eq!(ma.targets[0].address, "127.0.0.9:5670");
    assert!(!resp.version_info.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
