//! `meshmetric-dp`: the dataplane plugin binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use meshmetric_dp::bootstrap::{BootstrapParams, bootstrap};
use meshmetric_dp::client::{Endpoint, HttpClient};
use meshmetric_dp::config::{self, ActiveConfig};
use meshmetric_dp::limits::SeriesLimits;
use meshmetric_dp::pipeline::{Pipeline, PipelineSettings};
use meshmetric_dp::serve;
use meshmetric_policies::headers::SecretSources;

/// meshmetric dataplane plugin: scrapes Envoy and applications, filters and merges them, and
/// serves the result to Prometheus through Envoy.
#[derive(Parser, Debug)]
#[command(name = "meshmetric-dp", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the plugin (and, with --envoy-binary, Envoy as its child).
    Run(Box<RunArgs>),
    /// Print the Envoy bootstrap for this proxy (JSON).
    Bootstrap(Box<ProxyArgs>),
    /// Print this command's reference as Markdown (for docs/cli.md).
    #[command(hide = true)]
    HelpMarkdown,
}

#[derive(Args, Debug, Clone)]
struct ProxyArgs {
    /// Mesh of the Dataplane.
    #[arg(long, default_value = "default")]
    mesh: String,
    /// Name of the Dataplane (the xDS node id is <mesh>.<name>).
    #[arg(long)]
    name: String,
    /// Directory for the config and metrics unix sockets (≤ 90 bytes so socket paths fit).
    #[arg(long)]
    workdir: PathBuf,
    /// Control plane ADS address (host:port).
    #[arg(long, default_value = "127.0.0.1:5678")]
    cp_address: String,
    /// Envoy admin address (ip:port).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_address: String,
    /// Certificate served by ProvidedTLS Prometheus listeners.
    #[arg(long)]
    metrics_cert_path: Option<String>,
    /// Key of --metrics-cert-path.
    #[arg(long)]
    metrics_key_path: Option<String>,
    /// File holding this proxy's dataplane token (`meshmetricctl generate dataplane-token`),
    /// presented on the ADS stream.
    #[arg(long, env = "MESHMETRIC_DATAPLANE_TOKEN_FILE")]
    dataplane_token_file: Option<PathBuf>,
    /// PEM CA bundle to verify the control plane's ADS certificate; connect over TLS.
    #[arg(long)]
    cp_ca_file: Option<PathBuf>,
    /// Name to verify in the control plane's certificate (default: the host of --cp-address).
    #[arg(long)]
    cp_server_name: Option<String>,
    /// Directory policies may read OTLP header values from (`valueFrom.file`); repeatable or
    /// comma-separated. Default: none, so a policy cannot make this proxy send a file.
    #[arg(long = "header-file-dir", env = "MESHMETRIC_HEADER_FILE_DIRS", value_delimiter = ',')]
    header_file_dirs: Vec<PathBuf>,
    /// Prefix of environment variables policies may read OTLP header values from
    /// (`valueFrom.env`), e.g. `OTLP_`; repeatable or comma-separated. Default: none.
    #[arg(
        long = "header-env-prefix",
        env = "MESHMETRIC_HEADER_ENV_PREFIXES",
        value_delimiter = ','
    )]
    header_env_prefixes: Vec<String>,
    /// Endpoint (`host` or `host:port`) that may also receive this pod's
    /// `OTEL_EXPORTER_OTLP_HEADERS` when a policy, not the environment, chose it; repeatable.
    #[arg(
        long = "otel-env-headers-to",
        env = "MESHMETRIC_OTEL_ENV_HEADERS_TO",
        value_delimiter = ','
    )]
    otel_env_headers_to: Vec<String>,
}

impl ProxyArgs {
    /// What the pod owner lets policies read; directories must be absolute.
    fn secret_sources(&self) -> anyhow::Result<SecretSources> {
        let mut dirs = Vec::new();
        for d in &self.header_file_dirs {
            anyhow::ensure!(
                d.is_absolute(),
                "--header-file-dir {}: must be an absolute directory",
                d.display()
            );
            dirs.push(d.to_string_lossy().into_owned());
        }
        anyhow::ensure!(
            self.header_env_prefixes.iter().all(|p| !p.is_empty()),
            "--header-env-prefix must not be empty (an empty prefix would allow every variable)"
        );
        Ok(SecretSources {
            header_file_dirs: dirs,
            header_env_prefixes: self.header_env_prefixes.clone(),
            env_headers_to: self.otel_env_headers_to.clone(),
        })
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Envoy admin endpoint to scrape: host:port or unix:/path (default: --admin-address).
    #[arg(long)]
    envoy_admin: Option<String>,
    /// Also serve the merged metrics on this TCP address.
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
    /// Use this CP→DP config (JSON, the document the control plane serves) instead of polling
    /// the config socket: for running without a control plane, and for benchmarks.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// How often to poll the config socket.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Timeout of one scrape of Envoy or an application.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    scrape_timeout: Duration,
    /// Reuse a collection younger than this for further scrapes and exports.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    reuse_within: Duration,
    /// Largest accepted body of Envoy's stats, in bytes; a larger (or endless) body fails
    /// that scrape after this many bytes are read.
    #[arg(long, default_value_t = 256 << 20)]
    max_body_bytes: usize,
    /// Largest accepted body of one application, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_app_body_bytes: usize,
    /// Bytes the bodies of all applications of one collection may hold together; an
    /// application whose body would go over is left out of that collection (`up` 0).
    #[arg(long, default_value_t = 64 << 20)]
    app_body_budget_bytes: usize,
    /// Most series kept from one application scrape; the rest are dropped and counted in
    /// `meshmetric_dp_dropped{reason="series_limit"}`. 0: no limit.
    #[arg(long, default_value_t = 200_000)]
    max_series_per_scrape: usize,
    /// Longest label value of an application series, in bytes; such series are dropped and
    /// counted in `meshmetric_dp_dropped{reason="label_too_long"}`. 0: no limit.
    #[arg(long, default_value_t = 4096)]
    max_label_value_bytes: usize,
    /// Longest label name of an application series, in bytes (`reason="label_name_too_long"`).
    /// 0: no limit.
    #[arg(long, default_value_t = 1024)]
    max_label_name_bytes: usize,
    /// Longest metric name of an application series, in bytes
    /// (`reason="metric_name_too_long"`). 0: no limit.
    #[arg(long, default_value_t = 1024)]
    max_metric_name_bytes: usize,
    /// Most labels on one application series (`reason="too_many_labels"`). 0: no limit.
    #[arg(long, default_value_t = 128)]
    max_labels_per_series: usize,
    /// Address the OTLP receiver listens on when a policy enables it (`otlpReceiver`);
    /// loopback, so only the pod's own applications can push.
    #[arg(long, default_value = "127.0.0.1", env = "MESHMETRIC_OTLP_RECEIVER_ADDRESS")]
    otlp_receiver_address: std::net::IpAddr,
    /// OTLP/gRPC receiver port instead of the policy's (hosts running several proxies).
    #[arg(long, env = "MESHMETRIC_OTLP_RECEIVER_GRPC_PORT")]
    otlp_receiver_grpc_port: Option<u16>,
    /// OTLP/HTTP receiver port instead of the policy's.
    #[arg(long, env = "MESHMETRIC_OTLP_RECEIVER_HTTP_PORT")]
    otlp_receiver_http_port: Option<u16>,
    /// Most applications pushing OTLP at once; a new one beyond it gets RESOURCE_EXHAUSTED / 429.
    #[arg(long, default_value_t = 64)]
    otlp_receiver_max_senders: usize,
    /// Most series one pushing application may hold; points of new series beyond it are
    /// rejected (partial success) and counted.
    #[arg(long, default_value_t = 10_000)]
    otlp_receiver_max_series: usize,
    /// Largest OTLP request, in bytes (after decompression).
    #[arg(long, default_value_t = 4 << 20)]
    otlp_receiver_max_request_bytes: usize,
    /// A pushed series not updated for this long is forgotten.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    otlp_receiver_stale_after: std::time::Duration,
    /// Run this Envoy binary as a child with the generated bootstrap.
    #[arg(long)]
    envoy_binary: Option<PathBuf>,
    /// Extra arguments for Envoy (repeatable).
    #[arg(long = "envoy-arg", allow_hyphen_values = true)]
    envoy_args: Vec<String>,
}

fn params(p: &ProxyArgs) -> anyhow::Result<BootstrapParams> {
    let workdir = std::path::absolute(&p.workdir)?;
    let token = match &p.dataplane_token_file {
        Some(f) => Some({
            ensure_trusted(f).context("the dataplane token file")?;
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the dataplane token {}", f.display()))?
                .trim()
                .to_string()
        }),
        None => None,
    };
    let cp_ca_file = match &p.cp_ca_file {
        Some(f) => Some(std::path::absolute(f)?.to_string_lossy().into_owned()),
        None => None,
    };
    Ok(BootstrapParams {
        dataplane_token: token,
        cp_ca_file,
        cp_server_name: p.cp_server_name.clone(),
        mesh: p.mesh.clone(),
        name: p.name.clone(),
        cp_address: p.cp_address.clone(),
        admin_address: p.admin_address.clone(),
        workdir: workdir.to_string_lossy().into_owned(),
        metrics_cert_path: p.metrics_cert_path.clone(),
        metrics_key_path: p.metrics_key_path.clone(),
        secret_sources: p.secret_sources()?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Bootstrap(p) => {
            println!("{}", serde_json::to_string_pretty(&bootstrap(&params(&p)?)?)?);
            Ok(())
        }
        Cmd::Run(args) => run(*args).await,
        Cmd::HelpMarkdown => {
            print!("{}", clap_markdown::help_markdown::<Cli>());
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider().install_default().ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).init();
    let p = params(&args.proxy)?;
    let workdir = PathBuf::from(&p.workdir);
    {
        use std::os::unix::fs::DirBuilderExt;
        // owner and group (Envoy run separately may share the group); nobody else
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&workdir)
            .with_context(|| format!("creating workdir {}", workdir.display()))?;
    }
    ensure_trusted(&workdir).context("the workdir")?;
    let config_socket = workdir.join(meshmetric_policies::contract::CONFIG_SOCKET);
    let metrics_socket = workdir.join(meshmetric_policies::contract::METRICS_SOCKET);
    if metrics_socket.as_os_str().len() > meshmetric_policies::contract::MAX_SOCKET_PATH {
        anyhow::bail!(
            "workdir {} is too long: socket paths must fit in 104 bytes",
            workdir.display()
        );
    }

    // Envoy as a supervised child: restarted with backoff when it dies, so a crash of Envoy
    // costs the listeners for a moment, never the plugin.
    let first = match &args.envoy_binary {
        Some(envoy) => {
            let bs = workdir.join("envoy-bootstrap.json");
            write_private(&bs, &serde_json::to_vec_pretty(&bootstrap(&p)?)?)?;
            let mut cmd = tokio::process::Command::new(envoy);
            cmd.arg("-c")
                .arg(&bs)
                .args(["--disable-hot-restart", "--concurrency", "1", "-l", "warn"])
                .args(&args.envoy_args)
                .kill_on_drop(true);
            // the first start must work: a wrong binary is a configuration error
            let c = cmd
                .spawn()
                .with_context(|| format!("starting Envoy {}", envoy.display()))?;
            tracing::info!(pid = c.id(), "Envoy started");
            Some((cmd, c))
        }
        None => None,
    };

    let http = HttpClient::default();
    let (tx, rx) = watch::channel(Arc::new(ActiveConfig::initial()));
    match &args.config_file {
        Some(f) => {
            let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let doc: meshmetric_policies::DpConfig = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a CP->DP config document", f.display()))?;
            let active = ActiveConfig::new(format!("file:{}", f.display()), doc).context("compiling the config")?;
            tx.send_replace(Arc::new(active));
            tracing::info!(file = %f.display(), "static metrics config loaded");
            // keep the sender alive: the config never changes, but exporters watch the channel
            tokio::spawn(async move {
                let _tx = tx;
                std::future::pending::<()>().await
            });
        }
        None => {
            tokio::spawn(config::poll(
                http.clone(),
                config_socket.clone(),
                args.poll_interval,
                tx,
            ));
        }
    }
    let admin = Endpoint::parse(args.envoy_admin.as_deref().unwrap_or(&p.admin_address));
    let registry = Arc::new(meshmetric_dp::selfmetrics::Registry::default());
    let push = Arc::new(meshmetric_dp::push::Store::new(meshmetric_dp::push::PushLimits {
        max_senders: args.otlp_receiver_max_senders,
        max_series_per_sender: args.otlp_receiver_max_series,
        max_request_bytes: args.otlp_receiver_max_request_bytes,
        stale_after: args.otlp_receiver_stale_after,
    }));
    let pipeline = Pipeline::new(
        http,
        PipelineSettings {
            envoy_admin: admin.clone(),
            scrape_timeout: args.scrape_timeout,
            max_body_bytes: args.max_body_bytes,
            max_app_body_bytes: args.max_app_body_bytes,
            app_body_budget_bytes: args.app_body_budget_bytes,
            limits: SeriesLimits {
                max_series: args.max_series_per_scrape,
                max_label_value_bytes: args.max_label_value_bytes,
                max_label_name_bytes: args.max_label_name_bytes,
                max_metric_name_bytes: args.max_metric_name_bytes,
                max_labels: args.max_labels_per_series,
            },
            reuse_within: args.reuse_within,
            push: Some(push.clone()),
        },
        rx.clone(),
        registry.clone(),
    );
    push.set_overrides(meshmetric_dp::push::addr::Overrides {
        ip: args.otlp_receiver_address,
        grpc_port: args.otlp_receiver_grpc_port,
        http_port: args.otlp_receiver_http_port,
    });
    tokio::spawn(meshmetric_dp::push::manage(rx.clone(), push));
    tokio::spawn(meshmetric_dp::otlp::manage(
        rx,
        pipeline.clone(),
        registry,
        p.secret_sources.clone(),
    ));

    let unix = serve::bind_unix(&metrics_socket)?;
    tracing::info!(metrics_socket = %metrics_socket.display(), config_socket = %config_socket.display(), envoy_admin = %admin, "plugin running");
    let router = serve::router(pipeline);
    let unix_srv = axum::serve(unix, router.clone().into_make_service());
    let tcp_srv = async {
        match args.metrics_address {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding {a}"))?;
                tracing::info!(address = %a, "serving metrics on TCP");
                axum::serve(l, router).await.context("TCP metrics server")
            }
            None => std::future::pending().await,
        }
    };
    let envoy_supervisor = async {
        match first {
            Some((cmd, child)) => supervise_envoy(cmd, child).await,
            None => std::future::pending().await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = unix_srv => r.context("unix metrics server"),
        r = tcp_srv => r,
        r = envoy_supervisor => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    };
    // dropping the supervisor killed Envoy (kill_on_drop)
    let _ = std::fs::remove_file(&metrics_socket);
    tracing::info!("plugin stopped");
    result
}

/// Refuses a path another user owns or may write ([`meshmetric_policies::ownership`]): the
/// workdir holds the sockets and Envoy's bootstrap, the token file the proxy's identity.
fn ensure_trusted(path: &std::path::Path) -> anyhow::Result<()> {
    let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    meshmetric_policies::ownership::check_metadata(path, &md, me)?;
    Ok(())
}

/// Writes `data` to `path` readable by the owner only (the bootstrap carries the dataplane
/// token).
fn write_private(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

/// Keeps Envoy running: when it exits, starts it again after a backoff (1 s doubling to 30 s,
/// back to 1 s once it has run for a minute). Returns only if it cannot be started at all for
/// ten attempts in a row.
async fn supervise_envoy(mut cmd: tokio::process::Command, mut child: tokio::process::Child) -> anyhow::Result<()> {
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_max_times(10);
    let mut delays = backon::BackoffBuilder::build(backoff);
    loop {
        let started = tokio::time::Instant::now();
        let status = child.wait().await;
        if started.elapsed() > Duration::from_secs(60) {
            delays = backon::BackoffBuilder::build(backoff);
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        let status = match &status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(%status, restart_in = ?delay, "Envoy exited; restarting it");
        tokio::time::sleep(delay).await;
        let mut failures = 0;
        child = loop {
            match cmd.spawn() {
                Ok(c) => break c,
                Err(e) => {
                    failures += 1;
                    anyhow::ensure!(failures < 10, "Envoy cannot be restarted: {e}");
                    let d = delays.next().unwrap_or(Duration::from_secs(30));
                    tracing::error!(error = %e, retry_in = ?d, "cannot restart Envoy");
                    tokio::time::sleep(d).await;
                }
            }
        };
        tracing::info!(pid = child.id(), "Envoy restarted");
    }
}
