//! `meshmetricctl`: validate resources offline, and apply, list, delete and inspect them on a
//! running control plane.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use meshmetric_control_plane::inspect::render_inspect;
use meshmetric_policies::Resource;

/// Command-line client of the meshmetric control plane.
#[derive(Parser, Debug)]
#[command(version)]
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
    /// List resources, or show one.
    Get {
        kind: Kind,
        name: Option<String>,
        #[arg(short = 'o', long, default_value = "table")]
        output: Output,
    },
    /// Delete one resource.
    Delete { kind: Kind, name: String },
    /// Show a proxy's effective (merged) config and the policies that made it.
    Inspect {
        #[arg(value_parser = ["dataplane"])]
        what: String,
        name: String,
        #[arg(short = 'o', long, default_value = "table")]
        output: Output,
    },
    /// Write the MeshMetric JSON Schema and CRD into a directory.
    Schema {
        #[arg(long, default_value = "docs")]
        out_dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    #[value(alias = "meshmetric", alias = "mm")]
    Meshmetrics,
    #[value(alias = "dataplane", alias = "dp")]
    Dataplanes,
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
            for f in meshmetric_control_plane::api::resource_files(p)? {
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
fn validate_all(inputs: &[(String, String)]) -> (Vec<Vec<Resource>>, bool) {
    let mut ok = true;
    let mut parsed = Vec::new();
    for (label, text) in inputs {
        let (rs, errs) = meshmetric_policies::parse_documents_all(text);
        for e in &errs {
            ok = false;
            eprintln!("{label}: {}", headline(e));
            for v in e.violations() {
                eprintln!("  {v}");
            }
        }
        parsed.push(rs);
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
            let (parsed, ok) = validate_all(&inputs);
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
            let n: usize = parsed.iter().map(Vec::len).sum();
            println!("{n} resource(s) valid");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply { files } => {
            let inputs = read_inputs(&files)?;
            let (parsed, ok) = validate_all(&inputs);
            if !ok {
                eprintln!("nothing applied");
                return Ok(ExitCode::FAILURE);
            }
            for ((label, text), rs) in inputs.iter().zip(&parsed) {
                let (status, body) = api.call("POST", "/apply", Some(text))?;
                if status != 200 {
                    eprintln!("{label}:");
                    return Ok(api_error(status, &body));
                }
                for r in rs {
                    println!("{} {}/{} applied", r.kind(), r.meta().mesh, r.meta().name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Get { kind, name, output } => {
            let coll = match kind {
                Kind::Meshmetrics => "meshmetrics",
                Kind::Dataplanes => "dataplanes",
            };
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
                    match kind {
                        Kind::Meshmetrics => {
                            println!("{:<32} {:<12} {:<18} TARGETREF NAME", "NAME", "MESH", "TARGETREF KIND");
                            for i in &items {
                                let tr = &i["spec"]["targetRef"];
                                println!(
                                    "{:<32} {:<12} {:<18} {}",
                                    i["name"].as_str().unwrap_or(""),
                                    i["mesh"].as_str().unwrap_or(""),
                                    tr["kind"].as_str().unwrap_or("Mesh"),
                                    tr["name"].as_str().unwrap_or("")
                                );
                            }
                        }
                        Kind::Dataplanes => {
                            println!("{:<32} {:<12} {:<16} INBOUNDS", "NAME", "MESH", "ADDRESS");
                            for i in &items {
                                let n = &i["networking"];
                                let inbounds: Vec<String> = n["inbound"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|x| x["port"].to_string())
                                    .collect();
                                println!(
                                    "{:<32} {:<12} {:<16} {}",
                                    i["name"].as_str().unwrap_or(""),
                                    i["mesh"].as_str().unwrap_or(""),
                                    n["address"].as_str().unwrap_or(""),
                                    inbounds.join(",")
                                );
                            }
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                o => {
                    let list = Value::Array(items);
                    print_value(if name.is_some() { &v } else { &list }, o)?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Delete { kind, name } => {
            let coll = match kind {
                Kind::Meshmetrics => "meshmetrics",
                Kind::Dataplanes => "dataplanes",
            };
            let (status, body) = api.call("DELETE", &format!("/meshes/{mesh}/{coll}/{name}"), None)?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            println!("{coll}/{name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { name, output, .. } => {
            let (status, body) = api.call("GET", &format!("/meshes/{mesh}/dataplanes/{name}/meshmetric"), None)?;
            if status != 200 {
                return Ok(api_error(status, &body));
            }
            let v: Value = serde_json::from_str(&body)?;
            match output {
                Output::Table => print!("{}", render_inspect(&v)),
                o => print_value(&v, o)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema { out_dir } => {
            std::fs::create_dir_all(&out_dir)?;
            let schema = out_dir.join("meshmetric.schema.json");
            let crd = out_dir.join("meshmetric-crd.yaml");
            std::fs::write(&schema, meshmetric_policies::schema::json_schema_text())?;
            std::fs::write(&crd, meshmetric_policies::schema::crd_yaml())?;
            println!("wrote {} and {}", schema.display(), crd.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
