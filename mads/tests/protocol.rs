//! HTTP MADS long-poll as Prometheus's kuma_sd speaks it, against the real
//! router on a loopback port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use serde_json::Value;
use tokio::sync::watch;

use meshmetric_mads::{Assignments, ProxyInput};
use meshmetric_policies::{ProxyContext, ProxyMetrics, Resource, effective_conf, parse_documents};

const DPS: &str = "type: Dataplane\nname: web-01\nnetworking: {address: 10.0.0.1, inbound: [{port: 1, tags: {kuma.io/service: web}}]}\n---\ntype: Dataplane\nname: api-01\nlabels: {team: b}\nnetworking: {address: 10.0.0.2, inbound: [{port: 1, tags: {kuma.io/service: api}}]}\n";

fn assignments(policies: &str) -> Arc<Assignments> {
    let mut dps = Vec::new();
    let mut ps = Vec::new();
    for r in parse_documents(&format!("{DPS}---\n{policies}")).unwrap() {
        match r {
            Resource::Dataplane(d) => dps.push(d),
            Resource::MeshMetric(m) => ps.push(m),
            _ => {}
        }
    }
    let metrics: Vec<_> = dps
        .iter()
        .map(|d| ProxyMetrics::build(d, effective_conf(&ps, d, None), ProxyContext::default()))
        .collect();
    Arc::new(Assignments::generate(dps.iter().zip(&metrics).map(|(d, m)| {
        ProxyInput {
            dataplane: d,
            metrics: m,
        }
    })))
}

const DEFAULT_ONLY: &str =
    "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n";
const WITH_OPS: &str = "type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {port: 5670}}]}}\n---\ntype: MeshMetric\nname: ops\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671}}]}}\n";

struct Server {
    addr: String,
    tx: watch::Sender<Arc<Assignments>>,
}

async fn start(initial: Arc<Assignments>) -> Server {
    let (tx, rx) = watch::channel(initial);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, meshmetric_mads::http::router(rx)).await.unwrap() });
    Server { addr, tx }
}

async fn post(addr: &str, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::post(format!("http://{addr}/v3/discovery:monitoringassignments{query}"))
        .header("content-type", content_type)
        .header("accept", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn json_req(client: &str, version: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "node": {"id": client},
        "type_url": "type.googleapis.com/kuma.observability.v1.MonitoringAssignment",
        "version_info": version,
        "response_nonce": version,
    }))
    .unwrap()
}

async fn fetch(addr: &str, client: &str, version: &str, timeout: &str) -> (u16, Value) {
    let (st, body) = post(
        addr,
        &format!("?fetch-timeout={timeout}"),
        "application/json",
        json_req(client, version),
    )
    .await;
    (
        st,
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        },
    )
}

#[tokio::test]
async fn first_request_is_answered_immediately() {
    let s = start(assignments(DEFAULT_ONLY)).await;
    let t = Instant::now();
    let (st, v) = fetch(&s.addr, "prom-1", "", "2m0s").await;
    assert_eq!(st, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(v["resources"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["resources"][0]["@type"],
        "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
    );
}

#[tokio::test]
async fn unchanged_version_gets_304_after_fetch_timeout() {
    let s = start(assignments(DEFAULT_ONLY)).await;
    let (_, v) = fetch(&s.addr, "prom-1", "", "1s").await;
    let version = v["version_info"].as_str().unwrap().to_string();
    let t = Instant::now();
    let (st, _) = fetch(&s.addr, "prom-1", &version, "400ms").await;
    assert_eq!(st, 304);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "must hold the request until fetch-timeout"
    );
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_the_assignments_change() {
    let s = start(assignments(DEFAULT_ONLY)).await;
    let (_, v) = fetch(&s.addr, "", "", "1s").await;
    let version = v["version_info"].as_str().unwrap().to_string();
    let addr = s.addr.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        let r = fetch(&addr, "", &version, "30s").await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // api-01 leaves the default client for "ops"
    s.tx.send(assignments(WITH_OPS)).unwrap();
    let ((st, v), took) = waiter.await.unwrap();
    assert_eq!(st, 200);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(v["resources"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_fetch_timeout_and_bad_bodies_are_400() {
    let s = start(assignments(DEFAULT_ONLY)).await;
    assert_eq!(fetch(&s.addr, "p", "", "soon").await.0, 400);
    assert_eq!(
        post(&s.addr, "", "application/json", b"{not json".to_vec()).await.0,
        400
    );
    let wrong_type = serde_json::to_vec(
        &serde_json::json!({"node": {"id": "p"}, "type_url": "type.googleapis.com/envoy.config.listener.v3.Listener"}),
    )
    .unwrap();
    assert_eq!(post(&s.addr, "", "application/json", wrong_type).await.0, 400);
    assert_eq!(
        post(&s.addr, "", "application/x-protobuf", vec![0xff, 0xff, 0xff])
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn json_field_names_and_protobuf_are_both_accepted() {
    let s = start(assignments(WITH_OPS)).await;
    let camel = serde_json::to_vec(&serde_json::json!({"node": {"id": "ops"}, "typeUrl": "type.googleapis.com/kuma.observability.v1.MonitoringAssignment", "versionInfo": ""})).unwrap();
    let (st, body) = post(&s.addr, "", "application/json", camel).await;
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["resources"][0]["targets"][0]["address"], "10.0.0.2:5671");

    let req = envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
        node: Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: "ops".into(),
            ..Default::default()
        }),
        type_url: "type.googleapis.com/kuma.observability.v1.MonitoringAssignment".into(),
        ..Default::default()
    };
    let (st, body) = post(&s.addr, "", "application/x-protobuf", req.encode_to_vec()).await;
    assert_eq!(st, 200);
    let resp = envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse::decode(body).unwrap();
    let ma =
        meshmetric_proto::observability::v1::MonitoringAssignment::decode(resp.resources[0].value.as_slice()).unwrap();
    assert_eq!(ma.targets[0].address, "10.0.0.2:5671");
}

#[tokio::test]
async fn versions_change_only_for_affected_clients_and_many_clients_poll_at_once() {
    let s = start(assignments(WITH_OPS)).await;
    let (_, d) = fetch(&s.addr, "", "", "1s").await;
    let (_, o) = fetch(&s.addr, "ops", "", "1s").await;
    let (dv, ov) = (
        d["version_info"].as_str().unwrap().to_string(),
        o["version_info"].as_str().unwrap().to_string(),
    );
    let mut waiters = Vec::new();
    for i in 0..40 {
        let (addr, client, version) = (
            s.addr.clone(),
            if i % 2 == 0 { "ops" } else { "other" },
            if i % 2 == 0 { ov.clone() } else { dv.clone() },
        );
        waiters.push(tokio::spawn(
            async move { fetch(&addr, client, &version, "2s").await.0 },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // only the ops client's assignments change (its port moves)
    s.tx.send(assignments(&WITH_OPS.replace("5671", "5672"))).unwrap();
    let statuses: Vec<u16> = futures::future::join_all(waiters)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (i, st) in statuses.iter().enumerate() {
        let want = if i % 2 == 0 { 200 } else { 304 };
        assert_eq!(*st, want, "client {i}");
    }
}

#[tokio::test]
async fn prometheus_restart_with_same_id_gets_an_immediate_answer() {
    let s = start(assignments(DEFAULT_ONLY)).await;
    let (_, v) = fetch(&s.addr, "prom", "", "1s").await;
    let version = v["version_info"].as_str().unwrap().to_string();
    // the old process is still long-polling ...
    let addr = s.addr.clone();
    let old = tokio::spawn(async move { fetch(&addr, "prom", &version, "3s").await.0 });
    // ... when the restarted one (same id, no state) asks
    let t = Instant::now();
    let (st, v2) = fetch(&s.addr, "prom", "", "2m").await;
    assert_eq!(st, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(v2["version_info"], v["version_info"]);
    assert_eq!(old.await.unwrap(), 304);
}

#[tokio::test]
async fn http_sd_per_client() {
    let s = start(assignments(WITH_OPS)).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (q, want) in [
        ("?client_id=ops", "10.0.0.2:5671"),
        ("", "10.0.0.1:5670"),
        ("?client_id=unknown", "10.0.0.1:5670"),
    ] {
        let resp = client
            .get(format!("http://{}/v1/http-sd{q}", s.addr).parse().unwrap())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{q}: {v}");
        assert_eq!(v[0]["targets"][0], want);
        assert!(v[0]["labels"]["__meta_kuma_mesh"].is_string());
    }
}
