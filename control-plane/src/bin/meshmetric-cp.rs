//! `meshmetric-cp`: the control plane. Loads resources from files, serves the REST API and ADS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use meshmetric_control_plane::{
    ads::{Ads, AdsServer},
    api, files,
    index::Index,
    insight::Insights,
    persist::{self, Persistence},
    server,
    store::Store,
    tls,
    tokens::{TokenAuthority, TokenState},
};

/// meshmetric control plane: validates MeshMetric policies, merges them per proxy and serves
/// each Envoy its metrics config over ADS.
#[derive(Parser, Debug)]
#[command(name = "meshmetric-cp", version)]
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
    /// Directory for the control plane's own files: the SQLite store (`store.db`) and the
    /// generated API token (`admin-token`). Created with mode 0700.
    #[arg(long, env = "MESHMETRIC_DATA_DIR", default_value = "meshmetric-data")]
    data_dir: PathBuf,
    /// Where resources are kept: `sqlite:<file>` (default: `<data-dir>/store.db`),
    /// `postgres://user:password@host:port/database[?sslmode=...&sslrootcert=...]` (several
    /// instances may share it; each pushes the others' changes within ~1 s; TLS with
    /// verify-full by default off the host), or `memory` (lost on restart).
    #[arg(long, env = "MESHMETRIC_STORE")]
    store: Option<String>,
    /// File holding the API token every request but `/ready` and `/metrics` needs
    /// (`Authorization: Bearer <token>`; reads too, unless --anonymous-reads). Default:
    /// `<data-dir>/admin-token`, generated (32 random bytes, hex, mode 0600) when missing.
    #[arg(long, env = "MESHMETRIC_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Allow GET requests (list, inspect) without the token. Writes always need it.
    #[arg(long)]
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
    #[arg(long, default_value = meshmetric_policies::contract::DEFAULT_WORKDIR_ROOT)]
    default_workdir_root: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// How ADS streams prove which Dataplane they are: `token` (a dataplane token, see
    /// `meshmetricctl generate dataplane-token`, presented as `authorization: Bearer` gRPC
    /// metadata) or `none` (any client may claim any `node.id`). Default: `none` when ADS
    /// listens on a loopback address, `token` otherwise.
    #[arg(long, value_enum)]
    ads_auth: Option<AdsAuthMode>,
    /// PEM certificate for ADS (and gRPC MADS) over TLS (re-read when it changes).
    #[arg(long, requires = "ads_tls_key")]
    ads_tls_cert: Option<PathBuf>,
    /// PEM private key of --ads-tls-cert.
    #[arg(long, requires = "ads_tls_cert")]
    ads_tls_key: Option<PathBuf>,
    /// Print this command's reference as Markdown (for docs/cli.md) and exit.
    #[arg(long, hide = true)]
    help_markdown: bool,
    /// Print the REST API's OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
    /// This instance's id in proxy insights and metrics (default: host name and PID).
    #[arg(long, env = "MESHMETRIC_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Allow ADS on a non-loopback address without TLS or without token authentication.
    #[arg(long)]
    ads_insecure: bool,
    /// Send the unified-naming `extraLabels` (Kuma's unified naming mode: only `mesh`, `zone`,
    /// `kuma.proxy_role`, `kuma.workload`) instead of Kuma's default set (which adds every
    /// inbound tag, `dataplane` and `service`).
    #[arg(long, env = "MESHMETRIC_UNIFIED_NAMING")]
    unified_naming: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AdsAuthMode {
    None,
    Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.help_markdown {
        print!("{}", clap_markdown::help_markdown::<Args>());
        return Ok(());
    }
    if args.print_openapi {
        println!("{}", api::openapi_json());
        return Ok(());
    }
    rustls::crypto::ring::default_provider().install_default().ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_format == LogFormat::Json {
        tracing_subscriber::fmt().with_env_filter(filter).json().init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).init();
    }
    let instance = args.instance_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "cp".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    meshmetric_control_plane::telemetry::init(&instance)?;
    create_private_dir(&args.data_dir)?;
    let naming = if args.unified_naming {
        meshmetric_policies::Naming::Unified
    } else {
        meshmetric_policies::Naming::Default
    };
    let store = Arc::new(Store::new(naming));
    let address = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", args.data_dir.join("store.db").display()));
    let db = if address == "memory" {
        tracing::warn!("store is in memory: resources are lost when the control plane stops");
        None
    } else {
        let db = Arc::new(Persistence::open(&address).await?);
        let n = db.load_into(&store).await?;
        tracing::info!(store = %db.display, resources = n, "store opened");
        Some(db)
    };
    let (initial, warnings) = if args.resources.is_empty() {
        Default::default()
    } else {
        files::load_paths(&args.resources).context("loading resources")?
    };
    for w in &warnings {
        tracing::warn!(kind = %w.kind, name = %w.name, field = %w.warning.field, warning = %w.warning.message, "resource loaded with a warning");
    }
    if !initial.is_empty() {
        let check = store.check_apply(&initial);
        if let Some((i, v)) = check.violations.first() {
            let r = &initial[*i];
            anyhow::bail!("loading resources: {} {:?} is invalid: {v}", r.kind(), r.meta().name);
        }
        for (i, w) in check.warnings {
            let r = &initial[i];
            tracing::warn!(kind = %r.kind(), name = %r.meta().name, field = %w.field, warning = %w.message, "resource loaded with a warning");
        }
        tracing::info!(count = initial.len(), "resources loaded from files");
        store.commit_apply(db.as_deref(), initial).await?;
    }
    let tokens = Arc::new(TokenAuthority::default());
    match &db {
        Some(db) => db.load_tokens(&tokens).await?,
        None => tokens.replace(TokenAuthority::with_new_key(
            &TokenState::default(),
            persist::now_secs(),
        )),
    }
    if let Some(db) = &db {
        db.clone().spawn_watch(store.clone(), tokens.clone());
    }
    let loopback = args.xds_address.ip().is_loopback();
    let ads_auth = args.ads_auth.unwrap_or(if loopback {
        AdsAuthMode::None
    } else {
        AdsAuthMode::Token
    });
    let ads_tls = match (&args.ads_tls_cert, &args.ads_tls_key) {
        (Some(c), Some(k)) => {
            let mut cfg = (*tls::server_config(tls::ReloadingCert::new(c.clone(), k.clone())?)).clone();
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(cfg))
        }
        _ => None,
    };
    if !loopback && (ads_tls.is_none() || ads_auth == AdsAuthMode::None) && !args.ads_insecure {
        anyhow::bail!(
            "ADS would listen on {} without {}: anyone reaching it could read any proxy's config. Give --ads-tls-cert/--ads-tls-key and keep --ads-auth token, or accept the risk with --ads-insecure",
            args.xds_address,
            if ads_tls.is_none() {
                "TLS"
            } else {
                "token authentication"
            }
        );
    }
    tracing::info!(ads_auth = ?ads_auth, ads_tls = ads_tls.is_some(), "ADS security");

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
    let index = Index::start(store.clone());
    let assignments = index.assignments();
    let mads_router = meshmetric_mads::http::router(assignments.clone());
    let nofile = server::raise_file_limit();
    let (api_max, mads_max, ads_max) = server::budget(nofile);
    tracing::info!(
        open_file_limit = nofile,
        api_max,
        mads_max,
        ads_max,
        "connection limits"
    );
    let mads_srv = server::serve(
        "mads",
        mads_listener,
        mads_router,
        tls,
        server::Limits::http(mads_max),
        Default::default(),
        shutdown(),
    );

    let token_file = args
        .api_token_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin-token"));
    if args.api_token_file.is_none() && !token_file.exists() {
        generate_token(&token_file)?;
        tracing::info!(token_file = %token_file.display(), "generated an API token");
    }
    ensure_trusted(&token_file).context("the API token file")?;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the API token file {}", token_file.display()))?;
    let token = token.trim();
    anyhow::ensure!(
        token.len() >= 16,
        "the API token in {} is shorter than 16 characters",
        token_file.display()
    );
    tracing::info!(token_file = %token_file.display(), anonymous_reads = args.anonymous_reads, "API requests require the token (reads too unless --anonymous-reads)");
    let access = api::Access {
        token: Some(token.into()),
        anonymous_reads: args.anonymous_reads,
    };
    let insights = Insights::new(instance.clone(), db.clone());
    insights.spawn_writer();
    tracing::info!(%instance, "instance");
    let api_router = api::router(
        api::Ctx {
            store: store.clone(),
            index: index.clone(),
            db,
            tokens: tokens.clone(),
            insights: insights.clone(),
            discovery_url: format!(
                "{}://{}",
                if args.mads_tls_cert.is_some() { "https" } else { "http" },
                args.mads_address
            ),
        },
        access,
    );
    let api = server::serve(
        "api",
        api_listener,
        api_router,
        None,
        server::Limits::http(api_max),
        Default::default(),
        shutdown(),
    );
    let mut ads = Ads::new(index, args.default_workdir_root, insights);
    if ads_auth == AdsAuthMode::Token {
        ads = ads.with_tokens(tokens);
    }
    let grpc = tonic::service::Routes::new(AdsServer::new(ads))
        .add_service(meshmetric_mads::grpc::MadsGrpc::server(assignments))
        .prepare();
    let ads = server::serve(
        "ads",
        xds_listener,
        grpc,
        ads_tls,
        server::Limits::grpc(ads_max),
        Default::default(),
        shutdown(),
    );
    tokio::join!(api, ads, mads_srv);
    meshmetric_control_plane::telemetry::shutdown();
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

/// Creates `dir` (and parents) readable by its owner only.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    ensure_trusted(dir).context("the data directory")
}

/// Refuses a path another user owns or may write ([`meshmetric_policies::ownership`]).
fn ensure_trusted(path: &std::path::Path) -> anyhow::Result<()> {
    let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    meshmetric_policies::ownership::check_metadata(path, &md, me)?;
    Ok(())
}

/// Writes a new random API token (32 bytes from the kernel's CSPRNG, hex) to `path`, mode 0600.
fn generate_token(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the API token file {}", path.display()))?;
    f.write_all(hex.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .with_context(|| format!("writing the API token file {}", path.display()))?;
    Ok(())
}
