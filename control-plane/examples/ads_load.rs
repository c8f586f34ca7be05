//! ADS load generator for `scripts/bench-ads.sh`: opens one ADS stream per proxy (as Envoy
//! does: CDS and LDS on one SotW stream, every response ACKed), waits until every proxy has its
//! listeners, then applies one policy change through the REST API and reports how long until
//! every proxy whose listeners change has the new version, and how many streams got a push.
//!
//! Usage: `ads_load <xds host:port> <api host:port> <token file> <proxies> <change.yaml>`
//! (proxies are `default.dp-0` … `default.dp-<proxies-1>`, as scripts/bench-mads.sh writes them).

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use tokio::sync::mpsc;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Streams per HTTP/2 connection (servers commonly allow 200 concurrent streams).
const STREAMS_PER_CONNECTION: usize = 100;

/// (proxy index, LDS version, when it arrived)
type Event = (usize, String, Instant);

async fn proxy(
    channel: tonic::transport::Channel,
    i: usize,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(8);
    let node = Node {
        id: format!("default.dp-{i}"),
        metadata: Some(Struct {
            fields: [(
                "meshmetricWorkdir".to_string(),
                Value {
                    kind: Some(Kind::StringValue(format!("/tmp/mm-ads-load/dp-{i}"))),
                },
            )]
            .into(),
        }),
        ..Default::default()
    };
    for t in [CDS, LDS] {
        tx.send(DiscoveryRequest {
            node: Some(node.clone()),
            type_url: t.into(),
            ..Default::default()
        })
        .await?;
    }
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(r) = responses.message().await? {
        if r.type_url == LDS {
            let _ = events.send((i, r.version_info.clone(), Instant::now()));
        }
        tx.send(DiscoveryRequest {
            type_url: r.type_url,
            version_info: r.version_info,
            response_nonce: r.nonce,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 6,
        "usage: ads_load <xds> <api> <token file> <proxies> <change.yaml>"
    );
    let (xds, api, token_file, n, change) = (&args[1], &args[2], &args[3], args[4].parse::<usize>()?, &args[5]);
    let token = std::fs::read_to_string(token_file)?.trim().to_string();
    let change = std::fs::read_to_string(change)?;

    let connections = n.div_ceil(STREAMS_PER_CONNECTION);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{xds}"))?
                .connect()
                .await?,
        );
    }
    let (etx, mut erx) = mpsc::unbounded_channel::<Event>();
    let started = Instant::now();
    for i in 0..n {
        let ch = channels[i % connections].clone();
        let etx = etx.clone();
        tokio::spawn(async move {
            if let Err(e) = proxy(ch, i, etx).await {
                eprintln!("proxy {i}: {e}");
            }
        });
    }
    let mut version: Vec<Option<String>> = vec![None; n];
    let mut configured = 0;
    while configured < n {
        let (i, v, _) = tokio::time::timeout(Duration::from_secs(120), erx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("streams ended"))?;
        if version[i].is_none() {
            configured += 1;
        }
        version[i] = Some(v);
    }
    println!(
        "{n} ADS streams on {connections} connections configured (CDS+LDS, ACKed) in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    while erx.try_recv().is_ok() {}

    let agent = ureq::Agent::new_with_defaults();
    let t0 = Instant::now();
    let resp = agent
        .post(format!("http://{api}/apply"))
        .header("Authorization", format!("Bearer {token}"))
        .send(change.as_str())?;
    anyhow::ensure!(resp.status() == 200, "apply: {}", resp.status());
    let applied = t0.elapsed();
    let mut pushed: Vec<Duration> = Vec::new();
    // collect until 3 s pass without a push
    while let Ok(Some((_, _, at))) = tokio::time::timeout(Duration::from_secs(3), erx.recv()).await {
        pushed.push(at - t0);
    }
    pushed.sort();
    let pct = |p: f64| pushed.get(((pushed.len() as f64 * p) as usize).min(pushed.len().saturating_sub(1)));
    println!(
        "policy change applied (REST answer) in {:.1} ms",
        applied.as_secs_f64() * 1e3
    );
    match (pushed.first(), pct(0.5), pushed.last()) {
        (Some(first), Some(p50), Some(last)) => println!(
            "new LDS version pushed to {} of {n} streams: first {:.0} ms, p50 {:.0} ms, all {:.0} ms after the change",
            pushed.len(),
            first.as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            last.as_secs_f64() * 1e3
        ),
        _ => println!("no stream got a push"),
    }
    Ok(())
}
