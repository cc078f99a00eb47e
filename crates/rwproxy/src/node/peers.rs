//! The peer poller of peer-aware health: every `cluster.peer_poll` (and at once when this
//! node's primary changes) it asks each peer's admin `/status`, with `rwproxy status`'s own
//! fetching and DNS code, and publishes what they said as a [`PeerView`] in its own `watch`
//! channel. It only reports: the verdict is the state-watch task's, and no peer's word ever
//! decides where a write goes.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use rwproxy_core::{NodeState, Role};
use rwproxy_http::health::{PeerReport, PeerView};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use rwproxy_http::peer_auth;

use crate::status::fetch::each;
use crate::status::targets::{self, TargetError};
use crate::status::NodeDoc;

/// Who to ask and how often.
pub(crate) struct PeerPoller {
    /// This node's name: its own answer (a DNS name that resolves to every node) is skipped.
    pub(crate) node: Arc<str>,
    /// `cluster.peers`.
    pub(crate) urls: Vec<String>,
    /// `cluster.peers_dns`.
    pub(crate) dns: Option<String>,
    /// `cluster.peer_poll`, also the bound on one round.
    pub(crate) poll: Duration,
    /// `cluster.secret`: peers must sign their answers with it (it is never sent).
    pub(crate) secret: Option<HeaderValue>,
}

impl PeerPoller {
    /// Polls until `stop`, publishing each round's view into `view`.
    pub(crate) async fn run(
        self,
        view: watch::Sender<PeerView>,
        mut own: watch::Receiver<NodeState>,
        stop: CancellationToken,
    ) {
        let client = match self.client() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "peer-aware health: cannot build the HTTP client; peers are never heard");
                return;
            }
        };
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut primary = own.borrow().primary.clone();
        let mut last_problems: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = own.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Ask at once when this node lost (or found) its primary: its health waits
                    // for the peers' word.
                    let now = own.borrow_and_update().primary.clone();
                    if now == primary {
                        continue;
                    }
                    primary = now;
                }
                () = stop.cancelled() => return,
            }
            let (round, problems) = self.round(&client).await;
            // Each problem once, not every round.
            if problems != last_problems {
                for problem in problems.iter().filter(|p| !last_problems.contains(p)) {
                    tracing::warn!(%problem, "peer-aware health: a peer cannot be heard");
                }
                last_problems = problems;
            }
            view.send_if_modified(|current| {
                let changed = *current != round;
                *current = round;
                changed
            });
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        rwproxy_cluster::client_builder()?
            .timeout(self.poll)
            .connect_timeout(self.poll)
            .user_agent(concat!("rwproxy-peers/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())
    }

    /// One round: resolve, ask everyone at once, keep the answers of the others.
    /// Also returns what went wrong that the operator should fix (DNS, unsigned answers).
    async fn round(&self, client: &reqwest::Client) -> (PeerView, Vec<String>) {
        let dns: Vec<String> = self.dns.iter().cloned().collect();
        let mut problems = Vec::new();
        let urls = match targets::resolve(&self.urls, &dns, None).await {
            Ok(urls) => urls,
            Err(TargetError::Empty) => Vec::new(),
            // The DNS name fails: the listed peers still count.
            Err(error) => {
                problems.push(error.to_string());
                self.urls.iter().map(|u| targets::base_url(u)).collect()
            }
        };
        let timeout = self.poll;
        let answers = each(&urls, |url| {
            let (client, secret) = (client.clone(), self.secret.clone());
            async move { ask(&client, &url, timeout, secret.as_ref()).await }
        })
        .await;
        let mut view = PeerView {
            known: urls.len(),
            heard: Vec::new(),
        };
        for answer in answers.into_iter().flatten() {
            let doc = match answer {
                Ok(doc) => doc,
                Err(Unheard::Unsigned(url)) => {
                    problems.push(format!(
                        "{url}: the answer is not signed with cluster.secret (ignored)"
                    ));
                    continue;
                }
                Err(Unheard::Failed) => continue,
            };
            if doc.node == *self.node {
                view.known -= 1;
                continue;
            }
            view.heard.push(report(doc));
        }
        (view, problems)
    }
}

/// Why a peer counts as unheard this round.
enum Unheard {
    /// No answer, or not an rwproxy document (the peer is down, cut off, or not rwproxy).
    Failed,
    /// The answer is not signed with `cluster.secret`.
    Unsigned(String),
}

/// Asks one peer's admin `/status` (bounded by `timeout`); with `secret`, the answer must be
/// signed for a fresh nonce.
async fn ask(
    client: &reqwest::Client,
    base: &str,
    timeout: Duration,
    secret: Option<&HeaderValue>,
) -> Result<NodeDoc, Unheard> {
    let nonce = match secret {
        Some(_) => Some(peer_auth::nonce().ok_or(Unheard::Failed)?),
        None => None,
    };
    let mut request = client.get(format!("{base}/status")).timeout(timeout);
    if let Some(nonce) = &nonce {
        request = request.header(&peer_auth::PEER_NONCE, nonce.as_str());
    }
    let response = request.send().await.map_err(|_| Unheard::Failed)?;
    let proof = response
        .headers()
        .get(&peer_auth::PEER_PROOF)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.map_err(|_| Unheard::Failed)?;
    if let (Some(secret), Some(nonce)) = (secret, &nonce) {
        let signed = proof.is_some_and(|proof| {
            peer_auth::verify(secret.as_bytes(), nonce.as_bytes(), &body, &proof)
        });
        if !signed {
            return Err(Unheard::Unsigned(base.to_owned()));
        }
    }
    serde_json::from_slice(&body).map_err(|_| Unheard::Failed)
}

/// A peer's `/status` document as the verdict reads it.
fn report(doc: NodeDoc) -> PeerReport {
    let role = match doc.role.as_str() {
        "primary" => Role::Primary,
        "replica" => Role::Replica,
        _ => Role::Unknown,
    };
    PeerReport {
        ready: doc.status != "not-ready",
        node: doc.node,
        role,
        primary: doc.primary,
        lag: doc.lag_ms.map(Duration::from_millis),
        max_lag: doc.max_lag_ms.map(Duration::from_millis),
        positions: doc.positions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_becomes_a_report() {
        let doc: NodeDoc = serde_json::from_str(
            r#"{"status":"no-primary","node":"b","role":"replica","primary":null,
                "lag_ms":30000,"max_lag_ms":10000,"positions":{"app.db":7}}"#,
        )
        .unwrap();
        let r = report(doc);
        assert_eq!(r.role, Role::Replica);
        assert_eq!(r.primary, None);
        assert_eq!(r.lag, Some(Duration::from_secs(30)));
        assert_eq!(r.positions.get("app.db"), Some(&7));
        assert_eq!(r.stance(), rwproxy_http::health::Stance::Lost);
        let not_ready: NodeDoc = serde_json::from_str(
            r#"{"status":"not-ready","node":"c","role":"replica","primary":"p"}"#,
        )
        .unwrap();
        assert!(!report(not_ready).ready);
    }
}
