//! The LiteFS HTTP API client and `/info`, which confirms (or vetoes) a primary claim made by
//! the files. `/events` is followed in [`super::events`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use rwproxy_core::{NodeState, Role};
use serde::Deserialize;

use super::derive::{self, Info};
use super::files;
use crate::error::SourceError;
use crate::http_client;
use crate::schedule::MIN_POLL;

/// Bound on one `/info` request; the API is local, so anything slower is a failure.
pub(crate) const INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// A failed `/info` is retried no later than this, even with a long poll.
const INFO_ERROR_TTL: Duration = Duration::from_secs(1);
/// An `/info` document larger than this is not one.
const MAX_INFO: usize = 64 * 1024;

/// A client of one LiteFS API.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    pub(super) client: reqwest::Client,
    pub(super) base: Arc<str>,
}

#[derive(Deserialize)]
struct InfoDoc {
    #[serde(rename = "isPrimary")]
    is_primary: bool,
    #[serde(default)]
    primary: Option<PrimaryDoc>,
}

#[derive(Deserialize)]
struct PrimaryDoc {
    #[serde(default)]
    hostname: Option<String>,
}

/// Parses `/info`; only `isPrimary` is required. A hostname that would not be accepted from
/// `.primary` is treated as absent.
pub(crate) fn parse_info(body: &[u8]) -> Result<Info, String> {
    let doc: InfoDoc = serde_json::from_slice(body).map_err(|e| format!("bad /info: {e}"))?;
    let primary = doc
        .primary
        .and_then(|p| p.hostname)
        .and_then(|h| files::parse_primary(h.as_bytes()).ok());
    Ok(Info {
        is_primary: doc.is_primary,
        primary,
    })
}

impl Api {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:20202`).
    pub(crate) fn new(base: &str) -> Result<Api, SourceError> {
        Ok(Api {
            client: http_client::build()?,
            base: Arc::from(base.trim_end_matches('/')),
        })
    }

    fn fail(&self, path: &str, reason: String) -> String {
        SourceError::Api {
            url: format!("{}{path}", self.base),
            reason,
        }
        .to_string()
    }

    /// Fetches `/info`.
    pub(crate) async fn info(&self) -> Result<Info, String> {
        let timeout = Some(INFO_TIMEOUT);
        let resp = self
            .client
            .get(format!("{}/info", self.base))
            .timeout(INFO_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.fail("/info", http_client::describe(&e, timeout)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(self.fail("/info", format!("answered {}", resp.status())));
        }
        let body = http_client::read_limited(resp, MAX_INFO, timeout)
            .await
            .map_err(|e| self.fail("/info", e))?;
        parse_info(&body).map_err(|e| self.fail("/info", e))
    }
}

/// Confirms the files' primary claims against `/info`, caching the answer for a poll interval.
#[derive(Debug)]
pub(crate) struct PrimaryCheck {
    api: Api,
    poll: Duration,
    cached: Option<(Instant, Result<Info, String>)>,
    // Whether the previous read claimed primary: a new claim always refetches.
    claimed: bool,
}

impl PrimaryCheck {
    /// Checks claims through `api`; answers are reused for up to `poll`.
    pub(crate) fn new(api: Api, poll: Duration) -> Self {
        PrimaryCheck {
            api,
            poll: poll.max(MIN_POLL),
            cached: None,
            claimed: false,
        }
    }

    /// The state to publish given the files' state. `refresh` forces a fetch (after a
    /// primary-change event).
    pub(crate) async fn apply(
        &mut self,
        node: &Arc<str>,
        files: NodeState,
        refresh: bool,
    ) -> NodeState {
        if files.role != Role::Primary {
            self.claimed = false;
            return files;
        }
        if !self.reusable(Instant::now(), refresh) {
            self.cached = Some((Instant::now(), self.api.info().await));
        }
        self.claimed = true;
        match &self.cached {
            Some((_, Ok(info))) => derive::confirm(node, files, Ok(info)),
            Some((_, Err(reason))) => derive::confirm(node, files, Err(reason)),
            None => NodeState::unknown("litefs api: no answer from /info yet"),
        }
    }

    /// Whether the cached `/info` answer may be reused at `now`: not after a primary-change
    /// event (`refresh`), not for a new claim, and only while younger than a poll interval (a
    /// failure: at most [`INFO_ERROR_TTL`]).
    fn reusable(&self, now: Instant, refresh: bool) -> bool {
        let Some((at, result)) = &self.cached else {
            return false;
        };
        let ttl = match result {
            Ok(_) => self.poll,
            Err(_) => self.poll.min(INFO_ERROR_TTL),
        };
        !refresh && self.claimed && now.saturating_duration_since(*at) < ttl
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

    use rwproxy_core::Positions;

    use super::*;
    use crate::test_support::{full, padded, serve, streaming, TestServer};

    const POLL: Duration = Duration::from_secs(10);
    const NS: Duration = Duration::from_nanos(1);

    fn check(poll: Duration) -> PrimaryCheck {
        // Never contacted by the pure tests below.
        PrimaryCheck::new(Api::new("http://127.0.0.1:9").expect("client"), poll)
    }

    fn info() -> Result<Info, String> {
        Ok(Info {
            is_primary: true,
            primary: None,
        })
    }

    #[test]
    fn a_confirmation_is_reused_for_less_than_one_poll() {
        let t0 = Instant::now();
        let mut c = check(POLL);
        assert!(!c.reusable(t0, false), "nothing cached yet");
        c.cached = Some((t0, info()));
        assert!(!c.reusable(t0, false), "a new claim always asks");
        c.claimed = true;
        assert!(c.reusable(t0, false));
        assert!(c.reusable(t0 + POLL - NS, false));
        assert!(!c.reusable(t0 + POLL, false), "one poll old is too old");
        assert!(!c.reusable(t0, true), "a primary change always asks");
    }

    #[test]
    fn a_failure_is_reused_for_less_than_a_second_or_one_poll() {
        let t0 = Instant::now();
        let mut c = check(POLL);
        c.cached = Some((t0, Err("refused".into())));
        c.claimed = true;
        assert!(c.reusable(t0 + INFO_ERROR_TTL - NS, false));
        assert!(!c.reusable(t0 + INFO_ERROR_TTL, false));
        let short = Duration::from_millis(200);
        let mut c = check(short);
        c.cached = Some((t0, Err("refused".into())));
        c.claimed = true;
        assert!(c.reusable(t0 + short - NS, false));
        assert!(!c.reusable(t0 + short, false), "never longer than the poll");
    }

    #[test]
    fn the_poll_has_a_floor() {
        assert_eq!(check(Duration::ZERO).poll, MIN_POLL);
        assert_eq!(check(POLL).poll, POLL);
    }

    fn files(role: Role) -> NodeState {
        NodeState {
            role,
            primary: (role == Role::Primary).then(|| Arc::from("me")),
            positions: Positions::from([(Arc::from("app.db"), 3)]),
            lag: Some(Duration::ZERO),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    /// An `/info` that answers `status` with a primary's document (or, for 0, never answers its
    /// body), counting requests.
    async fn info_server() -> (Arc<AtomicU16>, Arc<AtomicUsize>, TestServer) {
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(AtomicUsize::new(0));
        // Senders of stalled bodies, kept so the bodies neither end nor fail.
        let stalled = std::sync::Mutex::new(Vec::new());
        let server = serve({
            let (status, requests) = (status.clone(), requests.clone());
            move |path| {
                assert_eq!(path, "/info");
                requests.fetch_add(1, Ordering::SeqCst);
                match status.load(Ordering::SeqCst) {
                    // A stalled API: headers, then a body that never comes.
                    0 => {
                        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                        stalled.lock().expect("lock").push(tx);
                        streaming(rx)
                    }
                    code => full(code, r#"{"isPrimary":true}"#),
                }
            }
        })
        .await;
        (status, requests, server)
    }

    #[tokio::test]
    async fn claims_are_confirmed_once_per_claim_and_again_after_a_primary_change() {
        let (_status, requests, server) = info_server().await;
        let api = Api::new(&format!("http://{}", server.addr)).expect("client");
        let mut c = PrimaryCheck::new(api, POLL);
        let me: Arc<str> = Arc::from("me");
        let asked = || requests.load(Ordering::SeqCst);

        let replica = files(Role::Replica);
        assert_eq!(c.apply(&me, replica.clone(), true).await, replica);
        assert_eq!(asked(), 0, "a replica needs no confirmation");

        let primary = files(Role::Primary);
        assert_eq!(c.apply(&me, primary.clone(), false).await, primary);
        assert_eq!(asked(), 1);
        assert_eq!(c.apply(&me, primary.clone(), false).await, primary);
        assert_eq!(
            asked(),
            1,
            "the same claim within a poll is not asked again"
        );
        assert_eq!(c.apply(&me, primary.clone(), true).await, primary);
        assert_eq!(asked(), 2, "a primary change is");

        c.apply(&me, replica, false).await;
        assert_eq!(c.apply(&me, primary.clone(), false).await, primary);
        assert_eq!(asked(), 3, "a new claim after a replica read is");
    }

    #[tokio::test]
    async fn an_info_document_of_64_kib_is_read_a_longer_one_is_refused() {
        let size = Arc::new(std::sync::Mutex::new(0usize));
        let server = serve({
            let size = size.clone();
            let doc = r#"{"isPrimary":true}"#;
            move |_| full(200, padded(doc, *size.lock().expect("lock")))
        })
        .await;
        let api = Api::new(&format!("http://{}", server.addr)).expect("client");
        *size.lock().expect("lock") = 64 * 1024;
        assert!(api.info().await.expect("64 KiB is fine").is_primary);
        *size.lock().expect("lock") = 64 * 1024 + 1;
        let err = api.info().await.expect_err("too large");
        assert!(err.contains("body larger than 65536 bytes"), "{err}");
    }

    #[tokio::test]
    async fn an_erroring_or_stalled_api_never_confirms_a_claim() {
        let (status, _requests, server) = info_server().await;
        let api = Api::new(&format!("http://{}", server.addr)).expect("client");
        let mut c = PrimaryCheck::new(api, POLL);
        let me: Arc<str> = Arc::from("me");

        status.store(500, Ordering::SeqCst);
        let s = c.apply(&me, files(Role::Primary), true).await;
        assert_eq!(s.role, Role::Unknown);
        let problem = s.problem.as_deref().unwrap_or("");
        assert!(problem.contains("/info: answered 500"), "{problem}");

        status.store(0, Ordering::SeqCst);
        let s = c.apply(&me, files(Role::Primary), true).await;
        assert_eq!(s.role, Role::Unknown);
        let problem = s.problem.as_deref().unwrap_or("");
        assert!(problem.contains("no answer within 1s"), "{problem}");
    }

    #[test]
    fn info_documents() {
        let info = parse_info(
            br#"{"clusterID":"x","isPrimary":false,"candidate":true,"path":"/litefs","primary":{"hostname":"node-2"}}"#,
        )
        .expect("valid");
        assert!(!info.is_primary);
        assert_eq!(info.primary.as_deref(), Some("node-2"));
        let primary = parse_info(br#"{"isPrimary":true}"#).expect("valid");
        assert!(primary.is_primary);
        assert_eq!(primary.primary, None);
        let empty = parse_info(br#"{"isPrimary":false,"primary":{"hostname":""}}"#).expect("valid");
        assert_eq!(empty.primary, None);
        assert!(parse_info(br#"{"primary":{"hostname":"a"}}"#).is_err());
        assert!(parse_info(b"<html>").is_err());
    }
}
