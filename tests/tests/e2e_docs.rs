//! The documentation cannot drift: the generated references (CLI, OpenAPI) match the code,
//! every Prometheus configuration in the docs passes `promtool check config`, and the quick
//! start plus every shell block marked ```` ```sh runnable ```` in README.md and docs/*.md run
//! successfully against it (loopback only).

use std::path::{Path, PathBuf};
use std::process::Command;

use meshmetric_tests::*;

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(bin(program)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn doc_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The fenced blocks of `file` whose info string is `info`, with their first line number.
fn blocks(file: &Path, info: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        if l.trim() == format!("```{info}") {
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .collect();
            out.push((i + 1, body.join("\n")));
        }
    }
    out
}

#[test]
fn cli_reference_and_openapi_match_the_code() {
    let expected_cli = format!(
        "# CLI reference\n\nGenerated from the binaries' own definitions by `scripts/gen-docs.sh`; the test suite fails\nwhen this page is stale. Shell completions: `meshmetricctl completion bash|zsh|fish`.\n\n{}\n{}\n{}",
        output("meshmetric-cp", &["--help-markdown"]),
        output("meshmetric-dp", &["help-markdown"]),
        output("meshmetricctl", &["help-markdown"]),
    );
    let cli = std::fs::read_to_string(workspace_root().join("docs/cli.md")).unwrap_or_default();
    assert!(cli == expected_cli, "docs/cli.md is stale: run scripts/gen-docs.sh");
    let openapi = output("meshmetric-cp", &["--print-openapi"]);
    let committed = std::fs::read_to_string(workspace_root().join("docs/openapi.json")).unwrap_or_default();
    assert!(
        openapi == committed,
        "docs/openapi.json is stale: run scripts/gen-docs.sh"
    );
    // every route of the API is documented
    let v: serde_json::Value = serde_json::from_str(&openapi).unwrap();
    let paths: Vec<&String> = v["paths"].as_object().unwrap().keys().collect();
    assert!(paths.len() >= 14, "{paths:?}");
    // the completions are generated
    let bash = output("meshmetricctl", &["completion", "bash"]);
    assert!(bash.contains("meshmetricctl") && bash.contains("inspect"), "{bash}");
}

#[test]
fn prometheus_configurations_in_the_docs_pass_promtool() {
    let dir = workdir("docs-promtool");
    let mut checked = 0;
    for f in doc_files() {
        for (line, block) in blocks(&f, "yaml") {
            if !block.trim_start().starts_with("scrape_configs") {
                continue;
            }
            // kuma_sd_configs' client_id needs Prometheus >= 2.50; Debian's promtool is 2.42
            if block.contains("kuma_sd_configs") {
                continue;
            }
            let conf = dir.join(format!("{checked}.yml"));
            std::fs::write(&conf, &block).unwrap();
            let out = Command::new("promtool")
                .args(["check", "config"])
                .arg(&conf)
                .output()
                .expect("promtool");
            assert!(
                out.status.success(),
                "{}:{line}: promtool check config: {}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Prometheus configuration checked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stops the quick start even when the test fails.
struct QuickStart;

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/quickstart.sh"))
            .arg("stop")
            .output();
    }
}

#[test]
fn the_quick_start_and_every_runnable_block_work() {
    let root = workspace_root();
    let path = format!(
        "{}:{}",
        root.join("target/debug").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let guard = QuickStart;
    let out = Command::new(root.join("scripts/quickstart.sh"))
        .current_dir(&root)
        .env("MESHMETRIC_QUICKSTART_PREBUILT", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "quick start failed:\n{text}");
    // the three outputs of the product
    assert!(text.contains("sample_app_requests_total{"), "{text}");
    assert!(
        text.contains("export(s); resource: service.name=web"),
        "no OTLP export shown:\n{text}"
    );
    assert!(
        text.contains("sum by (dataplane, mesh) (sample_app_requests_total): [("),
        "Prometheus showed nothing:\n{text}"
    );
    // the OpenAPI document is served, without a token
    let served = get_ok("127.0.0.1:5681", "/openapi.json").expect("/openapi.json");
    assert!(served.contains("\"openapi\""));

    let mut ran = 0;
    for f in doc_files() {
        for (line, block) in blocks(&f, "sh runnable") {
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &block])
                .current_dir(&root)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}:{line} failed:\n{block}\n--- output ---\n{}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 2, "only {ran} runnable blocks");

    // a file over the API's body limit is refused with advice, not a broken pipe
    let big = root.join(".run/quickstart/big.yaml");
    let mut text = String::new();
    let mut i = 0;
    while text.len() <= 2 << 20 {
        text.push_str(&format!(
            "---\ntype: MeshMetric\nname: p-{i}\nspec: {{default: {{}}}}\n"
        ));
        i += 1;
    }
    std::fs::write(&big, text).unwrap();
    let out = Command::new(bin("meshmetricctl"))
        .args(["--token-file", ".run/quickstart/cp-data/admin-token", "apply", "-f"])
        .arg(&big)
        .current_dir(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("meshmetric-cp -f"), "{err}");
    drop(guard);
    assert!(
        !root.join(".run/quickstart").exists(),
        "stop removes the quick start's files"
    );
}
