//! Human-readable rendering of a proxy's effective config (`meshmetricctl inspect dataplane`).
//! Input: the JSON of `GET /meshes/{mesh}/dataplanes/{name}/meshmetric` ([`effective_view`]).

use serde_json::{Value, json};

use meshmetric_policies::dpconfig::DpConfig;

use crate::store::Store;

/// The effective-config view of one proxy, as served by the REST API: `{dataplane, policies:
/// [{name, targetRefKind}] (merge order, most specific last), conf, dpConfig, etag}`.
/// `None` when the Dataplane is unknown.
pub fn effective_view(store: &Store, mesh: &str, name: &str) -> Option<Value> {
    let (dp, eff) = store.effective(mesh, name)?;
    Some(match eff {
        None => json!({"dataplane": dp.node_id(), "policies": [], "conf": null, "dpConfig": null, "etag": null}),
        Some((conf, contributions)) => {
            let dpc = DpConfig::build(&conf, &dp);
            let (_, etag) = dpc.to_body_and_etag();
            json!({"dataplane": dp.node_id(), "policies": contributions, "conf": conf, "dpConfig": dpc, "etag": etag})
        }
    })
}

fn indented_yaml(v: &Value, indent: &str) -> String {
    let y = serde_saphyr::to_string(v).unwrap_or_else(|e| format!("<unrenderable: {e}>\n"));
    y.lines().map(|l| format!("{indent}{l}\n")).collect()
}

/// Renders [`effective_view`] output for a terminal.
pub fn render_inspect(view: &Value) -> String {
    let mut out = format!("Dataplane {}\n", view["dataplane"].as_str().unwrap_or("?"));
    let policies = view["policies"].as_array().cloned().unwrap_or_default();
    if policies.is_empty() {
        out.push_str("No MeshMetric selects this proxy: it has no metrics config.\n");
        return out;
    }
    out.push_str("Policies, least to most specific (a later one overrides an earlier one):\n");
    let width = policies
        .iter()
        .filter_map(|p| p["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    for (i, p) in policies.iter().enumerate() {
        out.push_str(&format!(
            "  {}. {:width$}  {}\n",
            i + 1,
            p["name"].as_str().unwrap_or("?"),
            p["targetRefKind"].as_str().unwrap_or("?"),
        ));
    }
    out.push_str("Effective config:\n");
    out.push_str(&indented_yaml(&view["conf"], "  "));
    out.push_str(&format!(
        "Config served to the plugin (ETag {}):\n",
        view["etag"].as_str().unwrap_or("?")
    ));
    out.push_str(&indented_yaml(&view["dpConfig"], "  "));
    out
}
