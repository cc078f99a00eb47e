//! The LiteFS HTTP API: `/info` confirms a primary claim, `/events` wakes the poll loop the
//! moment a transaction or a primary change happens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rwproxy_core::{NodeState, Role};
use serde::Deserialize;
use tokio::sync::Notify;

use super::derive::{self, Info};
use super::files;
use crate::error::SourceError;
use crate::http_client;
use crate::schedule::MIN_POLL;

/// Bound on one `/info` request; the API is local, so anything slower is a failure.
pub(crate) const INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// A failed `/info` is retried no later than this, even with a long poll.
const INFO_ERROR_TTL: Duration = Duration::from_secs(1);
/// Reconnect backoff of the events stream.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Upper bound of the reconnect backoff.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A longer event line means the other end is not LiteFS.
const MAX_LINE: usize = 64 * 1024;
/// An `/info` document larger than this is not one.
const MAX_INFO: usize = 64 * 1024;

/// How the events follower tells the poll loop to read now.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    notify: Notify,
    info_stale: AtomicBool,
}

impl Wake {
    /// Read the files again now.
    pub(crate) fn reread(&self) {
        // notify_one keeps a permit if the loop is busy reading, so the event is not lost.
        self.notify.notify_one();
    }

    /// Read the files and refetch `/info` now.
    pub(crate) fn primary_changed(&self) {
        self.info_stale.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether `/info` must be refetched; clears the flag.
    pub(crate) fn take_info_stale(&self) -> bool {
        self.info_stale.swap(false, Ordering::AcqRel)
    }

    /// What the poll loop's pause listens to.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

/// A client of one LiteFS API.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: Arc<str>,
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

/// What one `/events` line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// `init` or `primaryChange`: re-read the files and refetch `/info`.
    Primary,
    /// Anything else (`tx`, unknown types, unparsable lines): re-read the files.
    Other,
}

/// Classifies one event line. An unparsable line still means "something happened".
pub(crate) fn classify(line: &[u8]) -> EventKind {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Event<'_>>(line) {
        Ok(e) if e.kind == "init" || e.kind == "primaryChange" => EventKind::Primary,
        _ => EventKind::Other,
    }
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

    /// Follows `/events` for ever, waking the poll loop on every event and reconnecting with
    /// capped exponential backoff.
    pub(crate) async fn follow_events(self, wake: Arc<Wake>) {
        let url = format!("{}/events", self.base);
        let mut backoff = MIN_BACKOFF;
        let mut logged: Option<String> = None;
        loop {
            let reason = match self.client.get(&url).send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                    if logged.take().is_some() {
                        tracing::info!(%url, "litefs events stream connected again");
                    }
                    let (events, reason) = pump(resp, &wake).await;
                    if events > 0 {
                        backoff = MIN_BACKOFF;
                    }
                    reason
                }
                Ok(resp) => format!("answered {}", resp.status()),
                Err(e) => http_client::describe(&e, None),
            };
            if logged.as_deref() != Some(reason.as_str()) {
                tracing::warn!(%url, %reason, "litefs events stream interrupted; polling continues");
                logged = Some(reason);
            }
            // A primary change may have happened while nobody listened.
            wake.primary_changed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Reads one events response to its end; returns how many events it carried and why it ended.
async fn pump(mut resp: reqwest::Response, wake: &Wake) -> (usize, String) {
    let mut buf: Vec<u8> = Vec::new();
    let mut events = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let line = line.trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    events += 1;
                    match classify(line) {
                        EventKind::Primary => wake.primary_changed(),
                        EventKind::Other => wake.reread(),
                    }
                }
                if buf.len() > MAX_LINE {
                    return (events, format!("event line longer than {MAX_LINE} bytes"));
                }
            }
            Ok(None) => return (events, "stream ended".to_owned()),
            Err(e) => return (events, http_client::describe(&e, None)),
        }
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
        let fresh = match &self.cached {
            Some((at, result)) => {
                let ttl = match result {
                    Ok(_) => self.poll,
                    Err(_) => self.poll.min(INFO_ERROR_TTL),
                };
                !refresh && self.claimed && at.elapsed() < ttl
            }
            None => false,
        };
        if !fresh {
            self.cached = Some((Instant::now(), self.api.info().await));
        }
        self.claimed = true;
        match &self.cached {
            Some((_, Ok(info))) => derive::confirm(node, files, Ok(info)),
            Some((_, Err(reason))) => derive::confirm(node, files, Err(reason)),
            None => NodeState::unknown("litefs api: no answer from /info yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn event_lines() {
        assert_eq!(
            classify(br#"{"type":"init","data":{"isPrimary":true,"hostname":"node-1"}}"#),
            EventKind::Primary
        );
        assert_eq!(
            classify(br#"{"type":"primaryChange","data":{"isPrimary":false}}"#),
            EventKind::Primary
        );
        assert_eq!(
            classify(br#"{"type":"tx","db":"db","data":{"txID":"0000000000000027"}}"#),
            EventKind::Other
        );
        assert_eq!(classify(b"garbage"), EventKind::Other);
    }

    #[test]
    fn wake_flags() {
        let wake = Wake::default();
        wake.reread();
        assert!(!wake.take_info_stale());
        wake.primary_changed();
        assert!(wake.take_info_stale());
        assert!(!wake.take_info_stale(), "taking clears it");
    }
}
