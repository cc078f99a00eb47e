//! What `rwproxy demo` prints: the nodes' URLs and copy-pasteable commands that show each
//! feature (write forwarding, the read-your-writes wait, passthrough, health, metrics, a
//! primary move).

use std::fmt::Write as _;

use super::Demo;

/// The text printed once the demo runs.
pub fn intro(demo: &Demo) -> String {
    let nodes = demo.nodes();
    let primary = demo.primary();
    let replicas: Vec<usize> = (0..nodes.len()).filter(|&i| i != primary).collect();
    // The demo always has two replicas; were one missing, the primary would stand in.
    let replica = |k: usize| &nodes[replicas.get(k).copied().unwrap_or(primary)];
    let (r1, r2) = (replica(0), replica(1));
    let p = &nodes[primary];
    let dir = demo.dir().display();
    let delay = humantime::format_duration(demo.replication_delay());
    let jar = demo.dir().join("cookies.txt");
    let jar = jar.display();
    // The running binary, so the command works from `cargo run` too (not necessarily on PATH).
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "rwproxy".to_owned());
    let status_nodes = nodes
        .iter()
        .map(|n| format!("--node {}", n.admin_url))
        .collect::<Vec<_>>()
        .join(" ");

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "rwproxy demo: {} nodes on 127.0.0.1, each a small notes app behind its own rwproxy.\n\
         Replication delay: {delay}. Mounts (LiteFS format) under {dir}\n\
         Stop with Ctrl-C.\n",
        nodes.len()
    );
    out.push_str(&row(
        "node",
        "role",
        "rwproxy (use this)",
        "admin (health, metrics)",
        "app (behind rwproxy)",
    ));
    for (i, n) in nodes.iter().enumerate() {
        let role = if i == primary { "primary" } else { "replica" };
        out.push_str(&row(&n.name, role, &n.url, &n.admin_url, &n.app_url));
    }
    let _ = write!(
        out,
        r#"
What to try (copy and paste):

# 1. Write through a replica: rwproxy forwards it to the primary. Look for
#    `rwproxy-route: primary; reason=write`, `demo-node: {p}` and the `__txid` cookie.
curl -i -c {jar} -X PUT --data hello {r1}/notes/a

# 2. Read it at once on the other replica with that cookie: rwproxy holds the read until the
#    write has replicated there (about {delay}), then serves it locally:
#    `rwproxy-route: local; reason=waited`. Same as -H 'cookie: __txid=<value from step 1>'.
curl -i -b {jar} {r2}/notes/a

# 3. Without the cookie a replica answers at once from what it has, so right after a write
#    it can be stale (404 here), until replication catches up:
curl -s -X PUT --data v2 {r1}/notes/b; curl -i {r2}/notes/b

# 4. Each node's view, and its rwproxy's health and metrics (admin listener):
curl -s {r2}/demo/status
curl -s {r2a}/health
curl -s {r2a}/metrics | grep -E '^rwproxy_(requests_total|position|consistency_wait_seconds_count)'
#    Or open {r2a}/ in a browser: the node's own page (verdict, lag chart, event timeline),
#    refreshed every 2 s; keep it open for step 5. Its events as JSON:
curl -s {r2a}/events

# 5. Move the primary to {r2l}. /demo/* is a passthrough path in the demo's rwproxy config:
#    served by the node it is sent to, even a POST, instead of being forwarded as a write.
curl -i -X POST {r2}/demo/promote
curl -i -X PUT --data world {p_url}/notes/c    # {pl} forwards it now: demo-node: {r2l}

# 6. The whole cluster in one table (role, primary, lag, positions, health, rates); add
#    --watch 1s to follow a promotion live:
{exe} status {status_nodes}

# The files rwproxy reads, as LiteFS writes them (.primary exists only on replicas):
grep -sH . {dir}/*/.primary {dir}/*/.lag {dir}/*/app.db-pos
"#,
        p = p.name,
        pl = p.name,
        p_url = p.url,
        r1 = r1.url,
        r2 = r2.url,
        r2a = r2.admin_url,
        r2l = r2.name,
        exe = exe,
        status_nodes = status_nodes,
    );
    out
}

/// One line of the node table, columns aligned.
fn row(label: &str, role: &str, url: &str, admin: &str, app: &str) -> String {
    format!("  {label:<21} {role:<8} {url:<28} {admin:<28} {app}\n")
}
