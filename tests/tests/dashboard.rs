//! The Grafana dashboard `config/grafana-dashboard.json`: a JSON model with a `DS_PROMETHEUS`
//! datasource input and a `node` variable, every query valid PromQL (each wrapped in a
//! recording rule and checked by the real `promtool check rules`), and every metric it names
//! one that a real rwproxy node exports on its admin `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{external_program, metrics_page};
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Every PromQL expression: panel targets and the `node` variable's query.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut queries: Vec<String> = panels(dashboard)
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    queries
}

/// Grafana's variables replaced by values Prometheus accepts, as Grafana does before sending.
fn as_promql(query: &str) -> String {
    query
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${node}", ".*")
        .replace("$node", ".*")
}

/// `label_values(metric, label)` is Grafana's, not PromQL: checked as the metric selector.
fn as_rule_expression(query: &str) -> String {
    match query
        .strip_prefix("label_values(")
        .and_then(|q| q.split(',').next())
    {
        Some(metric) => metric.trim().to_owned(),
        None => as_promql(query),
    }
}

/// Identifiers that name a series: `rwproxy_...` anywhere, and any word directly followed by
/// a `{` selector.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = query.as_bytes();
    let mut start = None;
    for (i, c) in query.char_indices().chain([(query.len(), ' ')]) {
        let word = c.is_ascii_alphanumeric() || c == '_' || c == ':';
        match (start, word) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let name = &query[s..i];
                let is_selector = bytes.get(i) == Some(&b'{');
                // Words inside label matchers and `by (...)` lists are labels, not metrics.
                if name.starts_with("rwproxy_") || is_selector {
                    names.insert(name.to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    names
}

#[test]
fn the_dashboard_is_an_importable_model_with_a_datasource_input_and_a_node_variable() {
    let d = dashboard();
    let inputs = d["__inputs"].as_array().unwrap();
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let variables = d["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "node"),
        "{variables:?}"
    );
    assert!(d["title"].is_string() && d["uid"].is_string());
    // Every query panel reads the input's datasource and filters by the node variable.
    let mut targets = 0;
    for panel in panels(&d) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            targets += 1;
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{panel}");
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("instance=~\"$node\""), "{expr}");
        }
    }
    assert!(targets >= 20, "only {targets} queries");
    let ids: Vec<&Value> = panels(&d).iter().map(|p| &p["id"]).collect();
    let unique: BTreeSet<String> = ids.iter().map(|v| v.to_string()).collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat");
}

#[test]
fn every_query_parses_as_promql() {
    let Some(promtool) = external_program("promtool") else {
        return;
    };
    let rules: Vec<Value> = queries(&dashboard())
        .iter()
        .enumerate()
        .map(|(i, q)| {
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": as_rule_expression(q)})
        })
        .collect();
    // YAML is a superset of JSON: the rule file is written as JSON.
    let file = serde_json::json!({"groups": [{"name": "grafana-dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, file.to_string()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} rules found", rules.len())),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_names_is_exported_by_a_real_node() {
    let c = Cluster::start(1, |_| {}).await;
    let page = metrics_page(&c.nodes[0].admin_url()).await.unwrap();
    c.stop().await;
    let exported: BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(exported.contains("rwproxy_requests_total"), "{page}");
    let mut used = BTreeSet::new();
    for query in queries(&dashboard()) {
        let names = metric_names(&as_promql(&query));
        assert!(!names.is_empty(), "no metric in {query}");
        used.extend(names);
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not exported by rwproxy: {missing:?}");
}

#[test]
fn metric_names_are_found_in_queries() {
    let names = metric_names(
        r#"max by (db) (rwproxy_position{instance=~".*"}) - on (db) group_right up{job="x"}"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["rwproxy_position", "up"]
    );
}
