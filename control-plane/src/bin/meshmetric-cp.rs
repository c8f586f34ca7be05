//! `meshmetric-cp`: the control plane. Loads resources from files, serves the REST API and ADS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;

use meshmetric_control_plane::{ads::Ads, api, mads, store::Store, tls};

/// meshmetric control plane: validates MeshMetric policies, merges them per proxy and serves
/// each Envoy its metrics config over ADS.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Files or directories of resources (YAML/JSON, Universal or Kubernetes form) to load at start.
    #[arg(short = 'f', long = "resources")]
    resources: Vec<PathBuf>,
    /// Address of the REST API.
    #[arg(long, env = "MESHMETRIC_API_ADDRESS", default_value = "127.0.0.1:5681")]
    api_address: SocketAddr,
    /// Address of the ADS (xDS gRPC) server.
    #[arg(long, env = "MESHMETRIC_XDS_ADDRESS", default_value = "127.0.0.1:5678")]
    xds_address: SocketAddr,
    /// File holding the API token: when given, API requests need `Authorization: Bearer <token>`.
    #[arg(long, env = "MESHMETRIC_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// With --api-token-file: allow GET requests (list, inspect) without the token.
    #[arg(long, requires = "api_token_file")]
    anonymous_reads: bool,
    /// Address of the MADS / HTTP SD server (Prometheus discovery).
    #[arg(long, env = "MESHMETRIC_MADS_ADDRESS", default_value = "127.0.0.1:5676")]
    mads_address: SocketAddr,
    /// PEM certificate for MADS over TLS (re-read when it changes).
    #[arg(long, requires = "mads_tls_key")]
    mads_tls_cert: Option<PathBuf>,
    /// PEM private key of --mads-tls-cert.
    #[arg(long, requires = "mads_tls_cert")]
    mads_tls_key: Option<PathBuf>,
    /// Where proxies' sockets go when their node metadata names no `meshmetricWorkdir`.
    #[arg(long, default_value = "/tmp/meshmetric")]
    default_workdir_root: String,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rustls::crypto::ring::default_provider().install_default().ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).init();
    }
    let store = Arc::new(Store::default());
    let initial = api::load_paths(&args.resources).context("loading resources")?;
    tracing::info!(count = initial.len(), "resources loaded");
    store.apply(initial);

    let api_listener = tokio::net::TcpListener::bind(args.api_address)
        .await
        .with_context(|| format!("binding the API on {}", args.api_address))?;
    let xds_listener = tokio::net::TcpListener::bind(args.xds_address)
        .await
        .with_context(|| format!("binding ADS on {}", args.xds_address))?;
    let mads_listener = tokio::net::TcpListener::bind(args.mads_address)
        .await
        .with_context(|| format!("binding MADS on {}", args.mads_address))?;
    let tls = match (&args.mads_tls_cert, &args.mads_tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(tls::ReloadingCert::new(c.clone(), k.clone())?)),
        _ => None,
    };
    tracing::info!(api = %args.api_address, xds = %args.xds_address, mads = %args.mads_address, mads_tls = tls.is_some(), "control plane listening");
    let assignments = mads::spawn(store.clone());
    let mads_router = meshmetric_mads::http::router(assignments.clone());
    let mads_srv = async move {
        match tls {
            Some(cfg) => tls::serve(mads_listener, mads_router, cfg, shutdown()).await,
            None => axum::serve(mads_listener, mads_router)
                .with_graceful_shutdown(shutdown())
                .await
                .map_err(Into::into),
        }
    };

    let access = match &args.api_token_file {
        None => api::Access::default(),
        Some(f) => {
            let t =
                std::fs::read_to_string(f).with_context(|| format!("reading the API token file {}", f.display()))?;
            let t = t.trim();
            anyhow::ensure!(
                t.len() >= 16,
                "the API token in {} is shorter than 16 characters",
                f.display()
            );
            tracing::info!(token_file = %f.display(), anonymous_reads = args.anonymous_reads, "API requires a token");
            api::Access {
                token: Some(t.into()),
                anonymous_reads: args.anonymous_reads,
            }
        }
    };
    let api =
        axum::serve(api_listener, api::router_with_access(store.clone(), access)).with_graceful_shutdown(shutdown());
    let ads = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(Ads::new(
            store,
            args.default_workdir_root,
        )))
        .add_service(meshmetric_mads::grpc::MadsGrpc::server(assignments))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(xds_listener), shutdown());
    tokio::select! {
        r = api => r.context("API server")?,
        r = ads => r.context("ADS server")?,
        r = mads_srv => r.context("MADS server")?,
    }
    tracing::info!("control plane stopped");
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
