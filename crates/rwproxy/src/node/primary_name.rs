//! Does the primary this replica follows answer to that name? LiteFS writes the primary's
//! `lease.hostname` into `.primary`; rwproxy's `node` defaults to the machine's hostname. When
//! the two differ (`lease.hostname: localhost` on a machine called `vm`), writes may still
//! reach the right rwproxy through `writes.primary_url`, but peers, `rwproxy status` and the
//! forwarding loop check all speak of a node that does not exist under that name.
//!
//! A replica asks the rwproxy at `writes.primary_url` for its health document (the proxy
//! listener's `health.path`) and compares the `node` it names with the one it follows. A
//! mismatch becomes the health document's `warning` (the verdict does not change: writes may
//! work) and a log line; an unreachable or non-rwproxy answer proves nothing and clears it.

use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Role};
use rwproxy_http::health::SharedHealth;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a replica re-checks its primary's name while the primary stays the same.
const RECHECK: Duration = Duration::from_secs(10);
/// Bound on one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the check needs from the configuration.
pub(super) struct NameCheck {
    /// `writes.primary_url` (with `{primary}`).
    pub primary_url: String,
    /// `health.path`: answered by the primary's proxy listener.
    pub health_path: String,
    pub shared: SharedHealth,
}

/// The warning for a replica following `followed` whose primary's rwproxy at `url` calls itself
/// `answered`; `None` when they agree.
pub(super) fn mismatch(followed: &str, answered: &str, url: &str) -> Option<Arc<str>> {
    (followed != answered).then(|| {
        Arc::from(format!(
            "this replica follows `{followed}` (the name in LiteFS's .primary), but the rwproxy at \
             {url} calls itself `{answered}`: set `node` in the primary's rwproxy.toml to \
             `{followed}` (LiteFS's lease.hostname), or lease.hostname to `{answered}`"
        ))
    })
}

/// Runs until `stop`: re-checks on every change of primary and every [`RECHECK`].
pub(super) async fn run(
    check: NameCheck,
    mut state: watch::Receiver<NodeState>,
    stop: CancellationToken,
) {
    let Ok(client) = rwproxy_cluster::client_builder()
        .and_then(|b| b.timeout(CHECK_TIMEOUT).build().map_err(|e| e.to_string()))
    else {
        return;
    };
    loop {
        let followed = {
            let s = state.borrow_and_update();
            match (s.role, &s.primary) {
                (Role::Replica, Some(primary)) => Some(primary.clone()),
                _ => None,
            }
        };
        let warning = match followed {
            Some(followed) => check_once(&client, &check, &followed).await,
            None => None,
        };
        if check.shared.set_warning(warning.clone()) {
            match &warning {
                Some(w) => tracing::warn!("{w}"),
                None => {
                    tracing::info!("the primary's rwproxy answers to the name this replica follows")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// One check: `Some(warning)` only when an rwproxy answered with another name.
async fn check_once(
    client: &reqwest::Client,
    check: &NameCheck,
    followed: &str,
) -> Option<Arc<str>> {
    let base = check.primary_url.replace("{primary}", followed);
    let url = format!("{}{}", base.trim_end_matches('/'), check.health_path);
    // Any status: a lagging or draining primary still names itself.
    let doc: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
    let answered = doc.get("node")?.as_str()?;
    tracing::debug!(followed, answered, %url, "primary name checked");
    mismatch(followed, answered, &base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_name_warns() {
        assert!(mismatch("vm", "vm", "http://vm:8080").is_none());
        let w =
            mismatch("localhost", "vm", "http://localhost:8080").unwrap_or_else(|| Arc::from(""));
        assert!(w.contains("follows `localhost`"), "{w}");
        assert!(w.contains("calls itself `vm`"), "{w}");
        assert!(w.contains("lease.hostname"), "{w}");
    }
}
