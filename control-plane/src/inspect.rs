//! Human-readable rendering of a proxy's effective config (`meshmetricctl inspect dataplane`).
//! Input: the JSON of `GET /meshes/{mesh}/dataplanes/{name}/meshmetric` ([`effective_view`]).

use serde_json::{Value, json};

use crate::store::Proxy;

/// The effective-config view of one proxy, as served by the REST API: `{dataplane, policies:
/// [{name, targetRefKind}] (merge order, most specific last), conf (null when no policy
/// selects the proxy), dpConfig (what Envoy serves to the plugin), etag, prometheusListeners:
/// [{clientId, port, path, tls}], inactiveBackends: [{backend, type, reason}]}`.
pub fn effective_view((dp, m): &Proxy) -> Value {
    let (_, etag) = m.config.to_body_and_etag();
    json!({
        "dataplane": dp.node_id(),
        "policies": m.contributions,
        "conf": m.conf,
        "dpConfig": m.config,
        "etag": etag,
        "prometheusListeners": m.prometheus,
        "inactiveBackends": m.inactive,
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
        out.push_str(
            "No MeshMetric selects this proxy: it is served an empty metrics config (no application scrapes, no backends).\n",
        );
    } else {
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
    }
    let listeners = view["prometheusListeners"].as_array().cloned().unwrap_or_default();
    if !listeners.is_empty() {
        out.push_str("Prometheus listeners:\n");
        for l in &listeners {
            out.push_str(&format!(
                "  :{}{}  client {}{}\n",
                l["port"],
                l["path"].as_str().unwrap_or("?"),
                l["clientId"].as_str().unwrap_or("(default)"),
                if l["tls"] == json!(true) { ", TLS" } else { "" },
            ));
        }
    }
    let inactive = view["inactiveBackends"].as_array().cloned().unwrap_or_default();
    if !inactive.is_empty() {
        out.push_str("Backends not in force on this proxy:\n");
        for b in &inactive {
            out.push_str(&format!(
                "  {} ({}): {}\n",
                b["backend"].as_str().unwrap_or("?"),
                b["type"].as_str().unwrap_or("?"),
                b["reason"].as_str().unwrap_or("?"),
            ));
        }
    }
    out.push_str(&format!(
        "Config served to the plugin (ETag {}):\n",
        view["etag"].as_str().unwrap_or("?")
    ));
    out.push_str(&indented_yaml(&view["dpConfig"], "  "));
    out
}
