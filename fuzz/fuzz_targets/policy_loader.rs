//! The YAML/JSON policy loader on arbitrary input: it never panics; every resource it accepts
//! merges without panicking for a Dataplane in its mesh.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetric_policies::{Resource, effective_conf, parse_documents_all};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ok, errs) = parse_documents_all(&text);
    for e in &errs {
        let _ = e.to_string();
        let _ = e.violations();
    }
    let policies: Vec<_> = ok
        .iter()
        .filter_map(|r| match r {
            Resource::MeshMetric(m) => Some(m),
            _ => None,
        })
        .collect();
    for r in &ok {
        if let Resource::Dataplane(d) = r {
            let _ = effective_conf(policies.iter().copied().filter(|m| m.meta.mesh == d.meta.mesh), d);
        }
    }
});
