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

/// `secs` since the epoch as RFC 3339.
fn when(secs: &Value) -> String {
    secs.as_u64().map_or_else(
        || "-".to_string(),
        |t| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)).to_string(),
    )
}

/// The status lines of a proxy from its `insight` (see `crate::insight::DataplaneInsight`).
fn render_status(insight: &Value, out: &mut String) {
    if insight.is_null() {
        out.push_str("Status: never connected (no ADS stream seen by any control-plane instance)\n");
        return;
    }
    if insight["online"] == json!(true) {
        out.push_str(&format!(
            "Status: Online since {} on control-plane instance {}\n",
            when(&insight["connectedSince"]),
            insight["instance"].as_str().unwrap_or("?")
        ));
    } else {
        out.push_str(&format!(
            "Status: Offline since {} (last on instance {})\n",
            when(&insight["disconnectedAt"]),
            insight["instance"].as_str().unwrap_or("?")
        ));
    }
    let sent = insight["versionSent"].as_str().unwrap_or("-");
    let acked = insight["versionAcked"].as_str().unwrap_or("-");
    match insight["config"].as_str().unwrap_or("?") {
        "InForce" => out.push_str(&format!(
            "Config: version {acked} in force since {}\n",
            when(&insight["ackedAt"])
        )),
        "Rejected" => out.push_str(&format!(
            "Config: version {sent} REJECTED by Envoy, NOT in force; Envoy keeps running version {acked}.\n  {}\n",
            insight["reason"].as_str().unwrap_or("")
        )),
        "Pending" => out.push_str(&format!(
            "Config: version {sent} sent, not acknowledged yet (in force: {acked})\n"
        )),
        _ => out.push_str(&format!("Config: last version in force {acked}\n")),
    }
    if let Some(n) = insight["lastNack"].as_object()
        && insight["config"] != "Rejected"
    {
        out.push_str(&format!(
            "Last rejection: version {} at {}: {}\n",
            n.get("version").and_then(Value::as_str).unwrap_or("?"),
            when(n.get("at").unwrap_or(&Value::Null)),
            n.get("error").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let listeners: Vec<&str> = insight["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !listeners.is_empty() {
        out.push_str(&format!("Listeners in force: {}\n", listeners.join(", ")));
    }
}

/// Renders a policy's status (`GET /meshes/{mesh}/meshmetrics/{name}/status`) for a terminal.
pub fn render_policy_status(v: &Value) -> String {
    let mut out = format!(
        "MeshMetric {}: selects {} proxies; in force on {}, rejected by {}, pending on {}, offline {}\n",
        v["name"].as_str().unwrap_or("?"),
        v["selected"],
        v["inForce"],
        v["rejected"],
        v["pending"],
        v["offline"]
    );
    for c in v["conditions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}: {} ({}) {}\n",
            c["type"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("?"),
            c["message"].as_str().unwrap_or("")
        ));
    }
    let proxies = v["proxies"].as_array().cloned().unwrap_or_default();
    if !proxies.is_empty() {
        out.push_str(&format!("{:<32} {:<10} REASON\n", "DATAPLANE", "CONFIG"));
        for p in &proxies {
            out.push_str(&format!(
                "{:<32} {:<10} {}\n",
                p["dataplane"].as_str().unwrap_or("?"),
                p["config"].as_str().unwrap_or("?"),
                p["reason"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// Renders [`effective_view`] output (with the `insight` the API adds) for a terminal.
pub fn render_inspect(view: &Value) -> String {
    let mut out = format!("Dataplane {}\n", view["dataplane"].as_str().unwrap_or("?"));
    if view.get("insight").is_some() {
        render_status(&view["insight"], &mut out);
    }
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
