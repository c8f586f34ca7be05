//! Every resource example in README.md and docs/*.md validates (those marked
//! `<!-- invalid -->` must fail), so the documentation cannot drift from the code. A block is a
//! resource example when it names a `type`, `kind` or `apiVersion`; a block starting with
//! `backends:` is a fragment of `spec.default` and is checked inside a MeshMetric.

use meshmetric_policies::parse_documents;

fn doc_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The document to validate for a YAML block, or None when it is not a resource example.
fn as_resource(block: &str) -> Option<String> {
    let first = block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    if first.starts_with("backends:") {
        let indented: String = block.lines().map(|l| format!("    {l}\n")).collect();
        return Some(format!(
            "type: MeshMetric\nname: fragment\nspec:\n  default:\n{indented}"
        ));
    }
    let resource = block.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("type: ") || l.starts_with("kind: ") || l.starts_with("apiVersion: ")
    });
    (resource && !first.starts_with("scrape_configs") && !first.starts_with("groups")).then(|| block.to_string())
}

#[test]
fn every_resource_example_in_the_docs_validates() {
    let mut checked = 0;
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut invalid_next = false;
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "<!-- invalid -->" {
                invalid_next = true;
            }
            if l.trim() == "```yaml" {
                let block: Vec<&str> = lines.by_ref().take_while(|x| x.trim() != "```").collect();
                let Some(doc) = as_resource(&block.join("\n")) else {
                    invalid_next = false;
                    continue;
                };
                let r = parse_documents(&doc);
                if invalid_next {
                    assert!(r.is_err(), "{}: example marked invalid parsed:\n{doc}", file.display());
                } else if let Err(e) = r {
                    panic!("{}: example does not validate: {e}\n{doc}", file.display());
                }
                invalid_next = false;
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} examples found");
}
