//! Golden files for `meshmetricctl inspect dataplane` output (`testdata/inspect.yaml` →
//! `testdata/inspect-<dataplane>.golden.txt`). Regenerate with `UPDATE_GOLDEN=1`.

use std::path::Path;

use meshmetric_control_plane::inspect::{effective_view, render_inspect};
use meshmetric_control_plane::store::{Declared, Store};
use meshmetric_policies::parse_documents;

fn check(mesh: &str, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let store = Store::default();
    store.apply(parse_documents(&std::fs::read_to_string(dir.join("inspect.yaml")).unwrap()).unwrap());
    let proxy = store
        .proxy_with(&(mesh.to_string(), name.to_string()), &Declared::default())
        .expect("dataplane exists");
    let got = render_inspect(&effective_view(&proxy));
    let golden = dir.join(format!("inspect-{name}.golden.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(got == want, "inspect {name} differs from {}:\n{got}", golden.display());
}

#[test]
fn golden_inspect_three_policies_most_specific_last() {
    check("default", "web-01");
}

#[test]
fn golden_inspect_mesh_policy_only() {
    check("default", "lonely");
}

#[test]
fn golden_inspect_no_policy() {
    check("empty", "ghost");
}

#[test]
fn unknown_dataplane_has_no_view() {
    assert!(
        Store::default()
            .proxy_with(&("default".into(), "nope".into()), &Declared::default())
            .is_none()
    );
}
