//! The LiteFS `/events` stream: every event wakes the poll loop at once (a `primaryChange` or
//! `init` also asks for a fresh `/info`); a dropped stream is reconnected with capped backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

use super::api::Api;
use crate::http_client;

/// Reconnect backoff of the events stream.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Upper bound of the reconnect backoff.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A longer event line means the other end is not LiteFS.
const MAX_LINE: usize = 64 * 1024;

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

/// Follows `/events` for ever, waking the poll loop on every event and reconnecting with
/// capped exponential backoff.
pub(crate) async fn follow(api: Api, wake: Arc<Wake>) {
    let url = format!("{}/events", api.base);
    let mut reconnect = Reconnect::default();
    loop {
        let reason = match api.client.get(&url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                if reconnect.connected() {
                    tracing::info!(%url, "litefs events stream connected again");
                }
                let (events, reason) = pump(resp, &wake).await;
                reconnect.carried(events);
                reason
            }
            Ok(resp) => format!("answered {}", resp.status()),
            Err(e) => http_client::describe(&e, None),
        };
        if let Some(reason) = reconnect.interrupted(reason) {
            tracing::warn!(%url, %reason, "litefs events stream interrupted; polling continues");
        }
        // A primary change may have happened while nobody listened.
        wake.primary_changed();
        tokio::time::sleep(reconnect.pause()).await;
    }
}

/// The `/events` follower's memory between connections: the next reconnect pause (doubling up
/// to [`MAX_BACKOFF`], back to [`MIN_BACKOFF`] once a stream carried events) and the last
/// interruption logged (a steady failure logs once). Pure, so the arithmetic is tested exactly.
#[derive(Debug)]
struct Reconnect {
    backoff: Duration,
    logged: Option<String>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            backoff: MIN_BACKOFF,
            logged: None,
        }
    }
}

impl Reconnect {
    /// A stream is open; true when an interruption was logged since (say it is back).
    fn connected(&mut self) -> bool {
        self.logged.take().is_some()
    }

    /// The stream that just ended carried `events` events: a working stream resets the backoff.
    fn carried(&mut self, events: usize) {
        if events > 0 {
            self.backoff = MIN_BACKOFF;
        }
    }

    /// The stream is down for `reason`; the reason to log, unless it was the last one logged.
    fn interrupted(&mut self, reason: String) -> Option<String> {
        if self.logged.as_deref() == Some(reason.as_str()) {
            return None;
        }
        self.logged = Some(reason.clone());
        Some(reason)
    }

    /// How long to wait before the next attempt; doubles the wait after it, up to the cap.
    fn pause(&mut self) -> Duration {
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::litefs::tests::FakeApi;
    use crate::test_support::{full, serve, Logs, DEADLINE};
    use crate::AbortOnDrop;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_working_stream() {
        let ms = Duration::from_millis;
        let mut r = Reconnect::default();
        let pauses: Vec<Duration> = (0..8).map(|_| r.pause()).collect();
        assert_eq!(
            pauses,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms),
            "from MIN_BACKOFF doubling, capped at MAX_BACKOFF"
        );
        r.carried(0);
        assert_eq!(
            r.pause(),
            MAX_BACKOFF,
            "a stream with no events is no progress"
        );
        r.carried(1);
        assert_eq!(
            r.pause(),
            MIN_BACKOFF,
            "a stream that carried events resets it"
        );
        assert_eq!(r.pause(), ms(200));
    }

    #[test]
    fn an_interruption_is_logged_once_until_the_stream_is_back() {
        let mut r = Reconnect::default();
        assert!(!r.connected(), "the first connection is not a recovery");
        assert_eq!(r.interrupted("refused".into()).as_deref(), Some("refused"));
        assert_eq!(r.interrupted("refused".into()), None, "same reason: once");
        assert_eq!(
            r.interrupted("answered 500".into()).as_deref(),
            Some("answered 500")
        );
        assert!(r.connected(), "back after a logged interruption");
        assert!(!r.connected(), "said once");
        assert_eq!(
            r.interrupted("answered 500".into()).as_deref(),
            Some("answered 500"),
            "a new outage after a recovery is logged again"
        );
    }

    /// Follows the API at `addr` until the returned guard is dropped.
    fn follow_at(addr: std::net::SocketAddr) -> (Arc<Wake>, AbortOnDrop) {
        let wake = Arc::new(Wake::default());
        let api = Api::new(&format!("http://{addr}/")).expect("client");
        let task = AbortOnDrop(tokio::spawn(follow(api, wake.clone())));
        (wake, task)
    }

    async fn woken(wake: &Wake) {
        tokio::time::timeout(DEADLINE, wake.notify().notified())
            .await
            .expect("the poll loop was woken in time");
    }

    #[tokio::test]
    async fn events_wake_the_poll_loop_over_one_stream() {
        let (api, server) = FakeApi::start("{}").await;
        let (wake, _task) = follow_at(server.addr);
        api.wait_connections(1).await;
        api.send(r#"{"type":"tx","db":"app.db"}"#);
        woken(&wake).await;
        assert!(!wake.take_info_stale(), "a tx asks for a re-read only");
        api.send(r#"{"type":"primaryChange","data":{"isPrimary":true}}"#);
        woken(&wake).await;
        assert!(wake.take_info_stale(), "a primary change asks for /info");
        // Blank lines are keep-alives, not events; a line split across chunks is one event.
        api.send_raw(b"\n{\"type\":".to_vec());
        api.send_raw(b"\"tx\"}\n".to_vec());
        woken(&wake).await;
        assert!(!wake.take_info_stale());
        assert_eq!(api.connections(), 1, "the stream stayed up");
        assert_eq!(api.info_requests.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_an_event_a_longer_one_drops_the_stream() {
        let (api, server) = FakeApi::start("{}").await;
        let (wake, _task) = follow_at(server.addr);
        api.wait_connections(1).await;
        // The limit spelled out, so that a change to MAX_LINE does not move the test with it.
        let limit = 64 * 1024;
        api.send_raw(vec![b'x'; limit]);
        api.send_raw(b"\n".to_vec());
        woken(&wake).await;
        assert!(!wake.take_info_stale(), "an event, not an interruption");
        assert_eq!(api.connections(), 1);

        api.send_raw(vec![b'x'; limit + 1]);
        api.wait_connections(2).await;
        assert!(
            wake.take_info_stale(),
            "after an interruption /info is asked again"
        );
    }

    #[tokio::test]
    async fn a_stream_counts_its_events_and_says_why_it_ended() {
        let (api, server) = FakeApi::start("{}").await;
        let resp = http_client::build()
            .expect("client")
            .get(format!("http://{}/events", server.addr))
            .send()
            .await
            .expect("connected");
        let wake = Arc::new(Wake::default());
        let pumping = tokio::spawn({
            let wake = wake.clone();
            async move { pump(resp, &wake).await }
        });
        api.send(r#"{"type":"tx"}"#);
        api.send("");
        api.send(r#"{"type":"init"}"#);
        api.send("not json");
        api.close_stream();
        let (events, reason) = tokio::time::timeout(DEADLINE, pumping)
            .await
            .expect("the stream ended in time")
            .expect("join");
        assert_eq!(
            (events, reason.as_str()),
            (3, "stream ended"),
            "blank lines are not events"
        );
        assert!(wake.take_info_stale(), "init asks for /info");
    }

    #[tokio::test]
    async fn a_dropped_stream_is_reconnected_and_asks_for_info() {
        let (api, server) = FakeApi::start("{}").await;
        let (wake, _task) = follow_at(server.addr);
        api.wait_connections(1).await;
        api.close_stream();
        api.wait_connections(2).await;
        assert!(wake.take_info_stale(), "a change may have been missed");
        api.send(r#"{"type":"tx"}"#);
        woken(&wake).await;
    }

    #[tokio::test]
    async fn an_erroring_events_endpoint_is_retried() {
        let requests = Arc::new(AtomicUsize::new(0));
        let server = serve({
            let requests = requests.clone();
            move |_| {
                requests.fetch_add(1, Ordering::SeqCst);
                full(500, "boom")
            }
        })
        .await;
        let logs = Logs::capture();
        let (wake, _task) = follow_at(server.addr);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while requests.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "retried in time");
            woken(&wake).await;
        }
        assert!(wake.take_info_stale());
        // An error answer is not a stream: it is named, and logged once however often it repeats.
        let text = logs.take();
        assert_eq!(
            text.matches("reason=answered 500 Internal Server Error")
                .count(),
            1,
            "{text}"
        );
        assert!(!text.contains("connected again"), "{text}");
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
