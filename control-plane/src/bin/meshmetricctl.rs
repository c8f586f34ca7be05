//! `meshmetricctl`: validate resources offline, and apply, list, delete and inspect them on a
//! running control plane.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use meshmetric_control_plane::inspect::{render_inspect, render_policy_status};
use meshmetric_policies::{Resource, ResourceKind};

/// Command-line client of the meshmetric control plane.
#[derive(Parser, Debug)]
#[command(name = "meshmetricctl", version)]
struct Cli {
    /// Control plane REST API.
    #[arg(long, global = true, env = "MESHMETRIC_CP", default_value = "http://127.0.0.1:5681")]
    cp: String,
    /// File holding the control plane's API token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "MESHMETRIC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Mesh of the resources addressed by name.
    #[arg(long, short = 'm', global = true, default_value = "default")]
    mesh: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check documents without a control plane; exits 1 listing every violation.
    Validate {
        /// Files or directories (*.yaml, *.yml, *.json), or `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate, then create or replace the documents on the control plane (all or nothing per file).
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// List resources, or show one. Kinds: meshmetrics (mm), dataplanes (dp),
    /// meshopentelemetrybackends (motb), meshgateways (gw).
    Get {
        #[arg(value_parser = parse_kind)]
        kind: ResourceKind,
        name: Option<String>,
        /// `yaml` and `json` print documents `apply` takes back.
        #[arg(short = 'o', long, default_value = "table")]
        output: Output,
    },
    /// Delete one resource.
    Delete {
        #[arg(value_parser = parse_kind)]
        kind: ResourceKind,
        name: String,
    },
    /// `dataplane NAME`: a proxy's status (online, config in force or rejected), its effective
    /// (merged) config and the policies that made it. `meshmetric NAME`: the proxies a policy
    /// selects and whether its config is in force on each.
    Inspect {
        #[arg(value_parser = ["dataplane", "meshmetric"])]
        what: String,
        name: String,
        #[arg(short = 'o', long, default_value = "table")]
        output: Output,
    },
    /// Issue a dataplane token (the proxy presents it on its ADS stream:
    /// `meshmetric-dp run --dataplane-token-file`). Prints the token.
    Generate {
        #[arg(value_parser = ["dataplane-token"])]
        what: String,
        /// Name of the Dataplane (the mesh is --mesh).
        #[arg(long)]
        name: String,
        /// How long the token is valid (Go duration).
        #[arg(long, default_value = "8760h")]
        valid_for: String,
    },
    /// Revoke a dataplane token, given as a file or by its id.
    Revoke {
        #[arg(value_parser = ["dataplane-token"])]
        what: String,
        /// File holding the token.
        #[arg(
            short = 'f',
            long = "filename",
            conflicts_with = "id",
            required_unless_present = "id"
        )]
        file: Option<PathBuf>,
        /// Id of the token (printed to stderr when it was generated).
        #[arg(long)]
        id: Option<String>,
    },
    /// List, add or remove the signing keys of dataplane tokens. A new key signs the tokens
    /// issued from then on; removing a key makes its tokens stop working.
    SigningKey {
        #[arg(value_parser = ["list", "add", "remove"])]
        action: String,
        /// Id of the key to remove.
        id: Option<String>,
    },
    /// Write the JSON Schemas and CRDs of MeshMetric and MeshOpenTelemetryBackend into a directory.
    Schema {
        #[arg(long, default_value = "docs")]
        out_dir: PathBuf,
    },
    /// Prometheus configuration for the policies' Prometheus backends (per clientId):
    /// `--format scrape-config` (scrape_configs with HTTP SD or kuma_sd on this control
    /// plane), `operator` (Prometheus Operator ScrapeConfig and PodMonitor/ServiceMonitor
    /// resources), `annotations` (prometheus.io/* pod annotations). From files with `-f`
    /// (offline), else from the control plane's policies of --mesh. What each output needs on
    /// the Prometheus side is printed on stderr.
    Render {
        #[arg(value_parser = ["prometheus"])]
        what: String,
        /// scrape-config, operator or annotations.
        #[arg(long, default_value = "scrape-config")]
        format: String,
        /// Policy files or directories (offline); without: the control plane's policies.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// URL Prometheus reaches the control plane's MADS/HTTP SD on, e.g.
        /// `http://meshmetric-cp:5676`; required offline, default the control plane's own.
        #[arg(long)]
        discovery_url: Option<String>,
        /// Use kuma_sd_configs (Prometheus 2.50+) instead of http_sd_configs.
        #[arg(long)]
        kuma_sd: bool,
        /// Scrape interval (Prometheus duration).
        #[arg(long)]
        interval: Option<String>,
        /// Scrape timeout (Prometheus duration).
        #[arg(long)]
        timeout: Option<String>,
        /// Namespace of the Operator resources.
        #[arg(long)]
        namespace: Option<String>,
        /// Label `name=value` of the Operator resources (repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        /// PEM CA file Prometheus verifies ProvidedTLS proxies with (scrape-config).
        #[arg(long)]
        ca_file: Option<String>,
        /// pod (PodMonitor) or service (ServiceMonitor).
        #[arg(long, default_value = "pod")]
        monitor_type: String,
        /// yaml (documents separated by ---) or json.
        #[arg(short = 'o', long, default_value = "yaml")]
        output: Output,
    },
    /// Relabeling rules, offline.
    Relabel {
        #[command(subcommand)]
        cmd: RelabelCmd,
    },
    /// Print a shell completion script, e.g.
    /// `meshmetricctl completion bash > ~/.local/share/bash-completion/completions/meshmetricctl`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print this command's reference as Markdown (for docs/cli.md).
    #[command(hide = true)]
    HelpMarkdown,
}

#[derive(Subcommand, Debug)]
enum RelabelCmd {
    /// Run a MeshMetric's `relabel` rules on a saved scrape (Prometheus text) and print the
    /// series that come out, with the counts on stderr. The input is treated as one
    /// application's scrape (no profile filtering); `--application` runs that application's
    /// own rules first; `--extra-label` adds the labels the proxy would add before the policy's
    /// rules run.
    Test {
        /// The file holding the MeshMetric (the first one in it is used).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// A saved scrape, e.g. `curl -s http://127.0.0.1:9901/stats/prometheus > scrape.txt`;
        /// `-` for standard input.
        #[arg(long)]
        input: PathBuf,
        /// Run this application's rules (`applications[].relabel`, by name or port) first.
        #[arg(long)]
        application: Option<String>,
        /// An extra label `name=value` the proxy adds (repeatable), e.g. `mesh=default`.
        #[arg(long = "extra-label", value_parser = parse_pair)]
        extra_labels: Vec<(String, String)>,
    },
}

/// Percent-encodes a query value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected name=value"))
}

/// `meshmetricctl relabel test`.
fn relabel_test(
    file: &Path,
    input: &Path,
    application: Option<&str>,
    extra_labels: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    use meshmetric_dp::merge::{ExtraLabels, MergeStats, Origin, Relabeling, merge_encode_relabeled};
    use meshmetric_dp::parse::{Format, ParseStats, parse};
    use meshmetric_policies::profiles::FamilyFilter;
    use meshmetric_policies::relabel::Rules;
    let text = read(file)?;
    let (parsed, ok) = validate_all(&[(file.display().to_string(), text)], true);
    if !ok {
        return Ok(ExitCode::FAILURE);
    }
    let Some(Resource::MeshMetric(m)) = parsed
        .into_iter()
        .flatten()
        .find(|r| matches!(r, Resource::MeshMetric(_)))
    else {
        anyhow::bail!("{} holds no MeshMetric", file.display());
    };
    let global = Rules::compile(m.spec.default.relabel.as_deref().unwrap_or_default())?;
    let app_rules = match application {
        None => None,
        Some(a) => {
            let app = m
                .spec
                .default
                .applications
                .iter()
                .flatten()
                .find(|x| x.name.as_deref() == Some(a) || x.port.is_some_and(|p| p.to_string() == a))
                .ok_or_else(|| anyhow::anyhow!("the MeshMetric has no application named {a:?}"))?;
            Some(Rules::compile(app.relabel.as_deref().unwrap_or_default())?)
        }
    };
    let scrape = if input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        read(input)?
    };
    let mut st = ParseStats::default();
    let fams = parse(&scrape, Format::Text, &mut st);
    let extra = ExtraLabels::new(extra_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let all = meshmetric_policies::meshmetric::Profiles {
        append_profiles: Some(vec![meshmetric_policies::meshmetric::Profile {
            name: Some(meshmetric_policies::meshmetric::ProfileName::All),
        }]),
        ..Default::default()
    };
    let filter = FamilyFilter::new(Some(&all))?;
    let per_source = [app_rules.as_ref()];
    let mut out = Vec::new();
    let mut stats = MergeStats::default();
    merge_encode_relabeled(
        &[(Origin::Application, &fams)],
        &filter,
        &extra,
        Relabeling {
            per_source: &per_source,
            global: &global,
            cache: None,
        },
        &mut out,
        &mut stats,
    );
    std::io::Write::write_all(&mut std::io::stdout(), &out)?;
    eprintln!(
        "series in: {}, out: {}, dropped by the rules: {} ({} rule(s){}); malformed lines skipped: {}",
        stats.series_in,
        stats.series_out,
        stats.series_dropped_relabel,
        global.len() + app_rules.as_ref().map_or(0, Rules::len),
        application.map_or(String::new(), |a| format!(", application {a:?} first")),
        st.bad_lines
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_kind(s: &str) -> Result<ResourceKind, String> {
    ResourceKind::from_cli(s).ok_or_else(|| {
        format!("unknown kind {s:?}; accepted: meshmetrics (mm), dataplanes (dp), meshopentelemetrybackends (motb), meshgateways (gw)")
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reads `-`, files and directories (sorted) into `(label, text)` pairs.
fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            out.push(("<stdin>".to_string(), s));
        } else {
            for f in meshmetric_control_plane::files::resource_files(p)? {
                out.push((f.display().to_string(), read(&f)?));
            }
        }
    }
    Ok(out)
}

fn read(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// Validates every input; prints every violation of every document; returns the parsed
/// resources per input and whether all were valid.
fn validate_all(inputs: &[(String, String)], print_warnings: bool) -> (Vec<Vec<Resource>>, bool) {
    let mut ok = true;
    let mut parsed = Vec::new();
    for (label, text) in inputs {
        let p = meshmetric_policies::parse_documents_all(text);
        for e in &p.errors {
            ok = false;
            eprintln!("{label}: {}", headline(e));
            for v in e.violations() {
                eprintln!("  {v}");
            }
        }
        if p.errors.is_empty() && print_warnings {
            for w in &p.warnings {
                eprintln!("{label}: Warning: {w}");
            }
        }
        parsed.push(p.resources);
    }
    (parsed, ok)
}

fn headline(e: &meshmetric_policies::ParseError) -> String {
    match e {
        meshmetric_policies::ParseError::Syntax(_) => "not valid YAML/JSON".into(),
        meshmetric_policies::ParseError::Invalid { index, kind, name, .. } => {
            format!("document {} ({kind} {name:?}) is invalid:", index + 1)
        }
    }
}

struct Api {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Api {
    fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
            token: None,
        }
    }
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let r = match (method, body) {
            ("GET" | "DELETE", _) => {
                let mut rb = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(a) = &auth {
                    rb = rb.header("authorization", a);
                }
                rb.call()
            }
            ("POST", Some(b)) => {
                let mut rb = self.agent.post(&url).header("content-type", "application/yaml");
                if let Some(a) = &auth {
                    rb = rb.header("authorization", a);
                }
                rb.send(b)
            }
            _ => anyhow::bail!("unsupported request"),
        };
        let mut resp = r.map_err(|e| anyhow::anyhow!("cannot reach the control plane at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }
}

/// Prints an API error with its field paths; returns the exit code.
fn api_error(status: u16, body: &str) -> ExitCode {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            eprintln!(
                "error ({status}): {}",
                v["details"]
                    .as_str()
                    .or(v["title"].as_str())
                    .unwrap_or("request failed")
            );
            for c in v["causes"].as_array().into_iter().flatten() {
                let f = c["field"].as_str().unwrap_or("");
                let m = c["message"].as_str().unwrap_or("");
                if f.is_empty() {
                    eprintln!("  {m}")
                } else {
                    eprintln!("  {f}: {m}")
                }
            }
        }
        Err(_) => eprintln!("error ({status}): {body}"),
    }
    ExitCode::FAILURE
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `secs` (seconds since the epoch) as an age: `42s`, `5m`, `3h`, `2d`.
fn ago(secs: &Value) -> String {
    let Some(t) = secs.as_u64() else {
        return "-".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = now.saturating_sub(t);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

/// A table of `items` (Universal JSON) of `kind`, with columns like kumactl's; `status` holds,
/// by name, a Dataplane's insight or a MeshMetric's status summary.
fn table(kind: ResourceKind, items: &[Value], status: &std::collections::BTreeMap<String, Value>) -> String {
    let none = Value::Null;
    let status_of = |i: &Value| status.get(s(&i["name"])).unwrap_or(&none);
    let mut out = String::new();
    match kind {
        ResourceKind::MeshMetric => {
            out.push_str(&format!(
                "{:<32} {:<12} {:<18} {:<16} {:<9} {:<9} {:<9} PROGRAMMED\n",
                "NAME", "MESH", "TARGETREF KIND", "TARGETREF NAME", "SELECTED", "IN FORCE", "REJECTED"
            ));
            for i in items {
                let tr = &i["spec"]["targetRef"];
                let st = status_of(i);
                let programmed = st["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Programmed")
                    .map_or("-".to_string(), |c| {
                        format!("{} ({})", s(&c["status"]), s(&c["reason"]))
                    });
                out.push_str(&format!(
                    "{:<32} {:<12} {:<18} {:<16} {:<9} {:<9} {:<9} {}\n",
                    s(&i["name"]),
                    s(&i["mesh"]),
                    tr["kind"].as_str().unwrap_or("Mesh"),
                    tr["name"].as_str().unwrap_or("-"),
                    st["selected"],
                    st["inForce"],
                    st["rejected"],
                    programmed
                ));
            }
        }
        ResourceKind::Dataplane => {
            out.push_str(&format!(
                "{:<32} {:<12} {:<16} {:<10} {:<12} {:<9} {:<10} {:<16} {:<20} INBOUNDS\n",
                "NAME", "MESH", "ADDRESS", "ROLE", "STATUS", "CONFIG", "VERSION", "LAST CONNECTED", "INSTANCE"
            ));
            for i in items {
                let n = &i["networking"];
                let inbounds: Vec<String> = n["inbound"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x["port"].to_string())
                    .collect();
                let role = if n["gateway"].is_object() { "gateway" } else { "sidecar" };
                let ins = status_of(i);
                let online = match ins["online"].as_bool() {
                    Some(true) => "Online",
                    Some(false) => "Offline",
                    None => "never seen",
                };
                let version: String = ins["versionAcked"].as_str().unwrap_or("-").chars().take(8).collect();
                out.push_str(&format!(
                    "{:<32} {:<12} {:<16} {:<10} {:<12} {:<9} {:<10} {:<16} {:<20} {}\n",
                    s(&i["name"]),
                    s(&i["mesh"]),
                    s(&n["address"]),
                    role,
                    online,
                    ins["config"].as_str().unwrap_or("-"),
                    version,
                    ago(&ins["connectedSince"]),
                    ins["instance"].as_str().unwrap_or("-"),
                    inbounds.join(",")
                ));
            }
        }
        ResourceKind::MeshOpenTelemetryBackend => {
            out.push_str(&format!(
                "{:<32} {:<12} {:<32} {:<6} PROTOCOL\n",
                "NAME", "MESH", "ADDRESS", "PORT"
            ));
            for i in items {
                let e = &i["spec"]["endpoint"];
                out.push_str(&format!(
                    "{:<32} {:<12} {:<32} {:<6} {}\n",
                    s(&i["name"]),
                    s(&i["mesh"]),
                    e["address"].as_str().unwrap_or("(node-local)"),
                    e["port"].as_u64().unwrap_or(4317),
                    i["spec"]["protocol"].as_str().unwrap_or("grpc")
                ));
            }
        }
        ResourceKind::MeshGateway => {
            out.push_str(&format!("{:<32} {:<12} LISTENER PORTS\n", "NAME", "MESH"));
            for i in items {
                let ports: Vec<String> = i["conf"]["listeners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| l["port"].to_string())
                    .collect();
                out.push_str(&format!(
                    "{:<32} {:<12} {}\n",
                    s(&i["name"]),
                    s(&i["mesh"]),
                    ports.join(",")
                ));
            }
        }
    }
    out
}

fn print_value(v: &Value, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
        _ => print!("{}", serde_saphyr::to_string(v)?),
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut api = Api::new(&cli.cp);
    if let Some(f) = &cli.token_file {
        let t = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("token file {}: {e}", f.display()))?;
        api.token = Some(t.trim().to_string());
    }
    let mesh = &cli.mesh;
    match cli.cmd {
        Cmd::Validate { files } => {
            let inputs = read_inputs(&files)?;
            let (parsed, ok) = validate_all(&inputs, true);
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
            let n: usize = parsed.iter().map(Vec::len).sum();
            println!("{n} resource(s) valid");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply { files } => {
            let inputs = read_inputs(&files)?;
            let (parsed, ok) = validate_all(&inputs, false);
            if !ok {
                eprintln!("nothing applied");
                return Ok(ExitCode::FAILURE);
            }
            for ((label, text), rs) in inputs.iter().zip(&parsed) {
                if text.len() > meshmetric_control_plane::api::MAX_BODY_BYTES {
                    eprintln!(
                        "{label}: {:.1} MiB is more than the control plane accepts in one request ({} MiB): split the file, or load it at start with `meshmetric-cp -f {label}`; nothing applied from it",
                        text.len() as f64 / (1u64 << 20) as f64,
                        meshmetric_control_plane::api::MAX_BODY_BYTES >> 20
                    );
                    return Ok(ExitCode::FAILURE);
                }
                let (status, body) = api.call("POST", "/apply", Some(text))?;
                if status != 200 {
                    eprintln!("{label}:");
                    return Ok(api_error(status, &body));
                }
                // the control plane's warnings: deprecated forms, a backendRef that matches
                // nothing yet, ...
                let answer: Value = serde_json::from_str(&body).unwrap_or_default();
                for w in answer["warnings"].as_array().into_iter().flatten() {
                    {
                        eprintln!(
                            "{label}: Warning: {} {:?}: {}: {}",
                            w["kind"].as_str().unwrap_or(""),
                            w["name"].as_str().unwrap_or(""),
                            w["field"].as_str().unwrap_or(""),
                            w["message"].as_str().unwrap_or("")
                        );
                    }
                }
                for r in rs {
                    println!("{} {}/{} applied", r.kind(), r.meta().mesh, r.meta().name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Get { kind, name, output } => {
            let coll = kind.plural();
            let path = match &name {
                Some(n) => format!("/meshes/{mesh}/{coll}/{n}"),
                None => format!("/meshes/{mesh}/{coll}"),
            };
            let (status, body) = api.call("GET", &path, None)?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            let v: Value = serde_json::from_str(&body)?;
            let items = if name.is_some() {
                vec![v.clone()]
            } else {
                v["items"].as_array().cloned().unwrap_or_default()
            };
            match output {
                Output::Table => {
                    // the status columns: Dataplane insights, MeshMetric status summaries
                    let extra = match kind {
                        ResourceKind::Dataplane => Some((format!("/meshes/{mesh}/dataplanes+insights"), "insight")),
                        ResourceKind::MeshMetric => Some((format!("/meshes/{mesh}/meshmetrics+status"), "")),
                        _ => None,
                    };
                    let mut status = std::collections::BTreeMap::new();
                    if let Some((path, field)) = extra
                        && let Ok((200, body)) = api.call("GET", &path, None)
                    {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        for i in v["items"].as_array().into_iter().flatten() {
                            let val = if field.is_empty() { i.clone() } else { i[field].clone() };
                            status.insert(s(&i["name"]).to_string(), val);
                        }
                    }
                    print!("{}", table(kind, &items, &status))
                }
                Output::Json => {
                    let out = if name.is_some() { v } else { Value::Array(items) };
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
                Output::Yaml => {
                    // one YAML document per resource, so `apply -f` takes the output back
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            println!("---");
                        }
                        print!("{}", serde_saphyr::to_string(item)?);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Delete { kind, name } => {
            let coll = kind.plural();
            let (status, body) = api.call("DELETE", &format!("/meshes/{mesh}/{coll}/{name}"), None)?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            println!("{coll}/{name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { what, name, output } => {
            let path = if what == "meshmetric" {
                format!("/meshes/{mesh}/meshmetrics/{name}/status")
            } else {
                format!("/meshes/{mesh}/dataplanes/{name}/meshmetric")
            };
            let (status, body) = api.call("GET", &path, None)?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            let v: Value = serde_json::from_str(&body)?;
            match output {
                Output::Table if what == "meshmetric" => print!("{}", render_policy_status(&v)),
                Output::Table => print!("{}", render_inspect(&v)),
                o => print_value(&v, o)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Generate { name, valid_for, .. } => {
            let body = serde_json::json!({"mesh": mesh, "name": name, "validFor": valid_for}).to_string();
            let (status, body) = api.call("POST", "/tokens/dataplane", Some(&body))?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            let v: Value = serde_json::from_str(&body)?;
            println!("{}", v["token"].as_str().unwrap_or_default());
            eprintln!(
                "token id {} for {mesh}.{name}, expires at {} (Unix seconds)",
                v["id"].as_str().unwrap_or("?"),
                v["expiresAt"]
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Revoke { file, id, .. } => {
            let body = match (file, id) {
                (Some(f), _) => {
                    let t = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    serde_json::json!({"token": t.trim()})
                }
                (None, Some(id)) => serde_json::json!({"id": id}),
                (None, None) => anyhow::bail!("give --token-file or --id"),
            };
            let (status, body) = api.call("POST", "/tokens/dataplane/revoke", Some(&body.to_string()))?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            let v: Value = serde_json::from_str(&body)?;
            println!("token {} revoked", v["revoked"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::SigningKey { action, id } => {
            let (status, body) = match (action.as_str(), &id) {
                ("list", _) => api.call("GET", "/tokens/signing-keys", None)?,
                ("add", _) => api.call("POST", "/tokens/signing-keys", Some(""))?,
                ("remove", Some(id)) => api.call("DELETE", &format!("/tokens/signing-keys/{id}"), None)?,
                _ => anyhow::bail!("remove needs the key id"),
            };
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            match action.as_str() {
                "list" => {
                    let v: Value = serde_json::from_str(&body)?;
                    println!("{:<20} CREATED (Unix seconds)", "ID");
                    for k in v["keys"].as_array().into_iter().flatten() {
                        println!("{:<20} {}", s(&k["id"]), k["created"]);
                    }
                }
                "add" => {
                    let v: Value = serde_json::from_str(&body)?;
                    println!("signing key {} added; it signs new tokens", s(&v["id"]));
                }
                _ => println!("signing key {} removed", id.unwrap_or_default()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema { out_dir } => {
            use meshmetric_policies::schema::{Published, crd_yaml, json_schema_text};
            std::fs::create_dir_all(&out_dir)?;
            for kind in Published::ALL {
                let (schema, crd) = kind.files();
                let (schema, crd) = (out_dir.join(schema), out_dir.join(crd));
                std::fs::write(&schema, json_schema_text(kind))?;
                std::fs::write(&crd, crd_yaml(kind))?;
                println!("wrote {} and {}", schema.display(), crd.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Relabel {
            cmd:
                RelabelCmd::Test {
                    file,
                    input,
                    application,
                    extra_labels,
                },
        } => relabel_test(&file, &input, application.as_deref(), &extra_labels),
        Cmd::Render {
            format,
            files,
            discovery_url,
            kuma_sd,
            interval,
            timeout,
            namespace,
            labels,
            ca_file,
            monitor_type,
            output,
            ..
        } => {
            use meshmetric_policies::render::{MonitorType, RenderFormat, RenderOptions, render};
            let (documents, notes): (Vec<Value>, Vec<String>) = if files.is_empty() {
                let mut q = vec![format!("format={format}"), format!("monitorType={monitor_type}")];
                let mut add = |k: &str, v: &Option<String>| {
                    if let Some(v) = v {
                        q.push(format!("{k}={}", url_encode(v)));
                    }
                };
                add("discoveryUrl", &discovery_url);
                add("interval", &interval);
                add("timeout", &timeout);
                add("namespace", &namespace);
                add("caFile", &ca_file);
                if kuma_sd {
                    q.push("kumaSd=true".into());
                }
                if !labels.is_empty() {
                    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    q.push(format!("labels={}", url_encode(&l.join(","))));
                }
                let (status, body) = api.call(
                    "GET",
                    &format!("/meshes/{mesh}/render/prometheus?{}", q.join("&")),
                    None,
                )?;
                if status != 200 {
                    return Ok(api_error(status, &body));
                }
                let v: Value = serde_json::from_str(&body)?;
                (
                    v["documents"].as_array().cloned().unwrap_or_default(),
                    v["notes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str().map(String::from))
                        .collect(),
                )
            } else {
                let Some(fmt) = RenderFormat::parse(&format) else {
                    anyhow::bail!("--format {format:?}: accepted: scrape-config, operator, annotations");
                };
                let monitor_type = match monitor_type.as_str() {
                    "pod" => MonitorType::Pod,
                    "service" => MonitorType::Service,
                    other => anyhow::bail!("--monitor-type {other:?}: accepted: pod, service"),
                };
                let Some(discovery_url) = discovery_url else {
                    anyhow::bail!(
                        "--discovery-url is required with -f: the URL Prometheus reaches the control plane's MADS/HTTP SD on, e.g. http://meshmetric-cp:5676"
                    );
                };
                let inputs = read_inputs(&files)?;
                let (parsed, ok) = validate_all(&inputs, true);
                if !ok {
                    return Ok(ExitCode::FAILURE);
                }
                let policies: Vec<_> = parsed
                    .into_iter()
                    .flatten()
                    .filter_map(|r| match r {
                        Resource::MeshMetric(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                let opts = RenderOptions {
                    discovery_url,
                    kuma_sd,
                    interval,
                    timeout,
                    namespace,
                    labels: labels.into_iter().collect(),
                    ca_file,
                    monitor_type,
                };
                let r = render(&policies, fmt, &opts);
                (r.documents, r.notes)
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&documents)?),
                _ => {
                    for (i, d) in documents.iter().enumerate() {
                        if i > 0 {
                            println!("---");
                        }
                        print!("{}", serde_saphyr::to_string(d)?);
                    }
                }
            }
            for n in notes {
                eprintln!("note: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "meshmetricctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HelpMarkdown => {
            print!("{}", clap_markdown::help_markdown::<Cli>());
            Ok(ExitCode::SUCCESS)
        }
    }
}
