//! Read-your-writes: reading the client's position token, waiting until this node reaches it,
//! and issuing a token after a write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rwproxy_core::{Demand, NodeState, Positions, Reading, Token, WaitState};
use tokio::sync::watch;

use crate::session::SessionMode;

/// The token's companion naming the PostgreSQL timeline its write was on (8 hex digits); issued
/// beside the position header when the source publishes a timeline, absent otherwise. A token
/// without it is compared by position alone.
pub static TIMELINE_HEADER: HeaderName = HeaderName::from_static("rwproxy-timeline");

/// Consistency settings, mapped from the `[consistency]` config section.
#[derive(Clone, Debug)]
pub struct ConsistencyParams {
    /// Cookie name (`__txid`).
    pub cookie: String,
    /// Header name (`rwproxy-position`).
    pub header: HeaderName,
    /// How long a read waits for this node to reach its token.
    pub wait: Duration,
    /// Lifetime of the issued cookie.
    pub cookie_max_age: Duration,
    /// Most reads waiting at once; past it a read times out at once.
    pub max_waiters: usize,
    /// Configured databases, in order; the first backs the cookie.
    pub databases: Vec<Arc<str>>,
    /// `consistency.session`: whether reads earn a token too.
    pub session: SessionMode,
}

/// Reads the current positions straight from the source (not the last polled snapshot), so a
/// token issued right after a write includes that write.
pub trait PositionProbe: Send + Sync + 'static {
    /// Current positions (and the timeline they are on, read with them), or `None` when they
    /// cannot be read now.
    fn current(&self) -> Pin<Box<dyn Future<Output = Option<Reading>> + Send + '_>>;

    /// Whether the source, read right now, still says this node is the primary; `None` when it
    /// cannot tell cheaply. Checked before a write reaches the local app, so a hand-off that the
    /// last poll has not seen yet cannot let a write reach a demoted node's app.
    fn confirms_primary(&self) -> Pin<Box<dyn Future<Output = Option<bool>> + Send + '_>> {
        Box::pin(std::future::ready(None))
    }

    /// False when [`PositionProbe::current`] always answers `None` (a static source): callers
    /// then skip it, and its box, on every token issued.
    fn reads_positions(&self) -> bool {
        true
    }

    /// False when [`PositionProbe::confirms_primary`] always answers `None` (every source but
    /// LiteFS): callers skip it, and its box, on every write on the primary.
    fn confirms_primaries(&self) -> bool {
        true
    }
}

/// A probe that knows nothing: tokens come from the watched state.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProbe;

impl PositionProbe for NoProbe {
    fn current(&self) -> Pin<Box<dyn Future<Output = Option<Reading>> + Send + '_>> {
        Box::pin(std::future::ready(None))
    }

    fn reads_positions(&self) -> bool {
        false
    }

    fn confirms_primaries(&self) -> bool {
        false
    }
}

impl ConsistencyParams {
    /// The client's token: the header if present and well-formed, else the cookie. Malformed
    /// tokens are ignored.
    pub fn token_from(&self, headers: &HeaderMap) -> Option<Token> {
        if let Some(token) = headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .and_then(Token::from_header)
        {
            return Some(token);
        }
        let first_db = self.databases.first()?;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .and_then(|(_, value)| Token::from_cookie(value.trim_matches('"'), first_db))
    }

    /// Adds the cookie and the header for `reading` to a response (keeping the app's own
    /// cookies), and `rwproxy-timeline` when the reading has a timeline. Only configured
    /// databases are included.
    pub fn issue(&self, headers: &mut HeaderMap, reading: &Reading, tls: bool) {
        let configured: Positions = reading
            .positions
            .iter()
            .filter(|(db, _)| self.databases.iter().any(|c| c == *db))
            .map(|(db, p)| (db.clone(), *p))
            .collect();
        if configured.is_empty() {
            return;
        }
        if let Ok(value) = HeaderValue::from_str(&Token::header_value(&configured)) {
            headers.insert(self.header.clone(), value);
        }
        if let Some(timeline) = reading.timeline.filter(|t| *t > 0) {
            let mark = rwproxy_core::TimelineMark(timeline).to_string();
            if let Ok(value) = HeaderValue::from_str(&mark) {
                headers.insert(TIMELINE_HEADER.clone(), value);
            }
        }
        let Some(txid) = self
            .databases
            .first()
            .and_then(|db| Token::cookie_value(&configured, db))
        else {
            return;
        };
        let secure = if tls { "; Secure" } else { "" };
        let cookie = format!(
            "{}={txid}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.cookie,
            self.cookie_max_age.as_secs()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// Waits until the watched state reaches `token`, `wait` passes, or too many are waiting.
/// Dropping the future (client gone) frees its place at once.
pub async fn wait_for_token(
    token: &Token,
    state: &mut watch::Receiver<NodeState>,
    demand: &Demand,
    params: &ConsistencyParams,
) -> WaitState {
    let Some(_guard) = demand.try_enter(params.max_waiters) else {
        return WaitState::TimedOut;
    };
    let reached = tokio::time::timeout(params.wait, state.wait_for(|s| s.has_reached(token))).await;
    match reached {
        Ok(Ok(_)) => WaitState::Reached,
        _ => WaitState::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ConsistencyParams {
        ConsistencyParams {
            cookie: "__txid".into(),
            header: HeaderName::from_static("rwproxy-position"),
            wait: Duration::from_millis(200),
            cookie_max_age: Duration::from_secs(300),
            max_waiters: 2,
            databases: vec!["app.db".into(), "b.db".into()],
            session: SessionMode::Writes,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn header_wins_over_cookie_and_malformed_falls_back() {
        let p = params();
        let both = headers(&[
            ("cookie", "a=b; __txid=0000000000000005"),
            ("rwproxy-position", "app.db=0000000000000009"),
        ]);
        assert_eq!(
            p.token_from(&both),
            Some(Token::from_pairs([("app.db", 9)]))
        );
        let bad_header = headers(&[
            ("cookie", "__txid=0000000000000005"),
            ("rwproxy-position", "garbage"),
        ]);
        assert_eq!(
            p.token_from(&bad_header),
            Some(Token::from_pairs([("app.db", 5)]))
        );
        assert_eq!(p.token_from(&headers(&[("cookie", "__txid=zz")])), None);
        assert_eq!(
            p.token_from(&headers(&[("cookie", "x__txid=0000000000000005")])),
            None
        );
    }

    #[test]
    fn issue_sets_cookie_and_header_and_keeps_app_cookies() {
        let p = params();
        let mut h = headers(&[("set-cookie", "session=abc")]);
        let positions: Positions = [
            ("app.db".into(), 0x2a),
            ("b.db".into(), 7),
            ("other.db".into(), 1),
        ]
        .into_iter()
        .collect();
        p.issue(&mut h, &Reading::positions(positions.clone()), true);
        assert!(!h.contains_key(&TIMELINE_HEADER), "no timeline, no mark");
        let mut h = headers(&[("set-cookie", "session=abc")]);
        let on_timeline = Reading {
            positions,
            timeline: Some(3),
        };
        p.issue(&mut h, &on_timeline, true);
        assert_eq!(h[&TIMELINE_HEADER], "00000003");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 2);
        assert_eq!(
            cookies[1],
            "__txid=000000000000002a; Path=/; Max-Age=300; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            h["rwproxy-position"],
            "app.db=000000000000002a,b.db=0000000000000007"
        );
    }

    #[tokio::test]
    async fn wait_releases_on_catch_up_and_caps_waiters() {
        let p = params();
        let mut state = NodeState::unknown("x");
        // A replica: an unknown state reaches no token at all.
        state.role = rwproxy_core::Role::Replica;
        state.positions.insert("app.db".into(), 1);
        let (tx, rx) = watch::channel(state.clone());
        let demand = Demand::default();
        let token = Token::from_pairs([("app.db", 3)]);

        let (mut r1, mut r2, mut r3) = (rx.clone(), rx.clone(), rx.clone());
        let (d1, d2) = (demand.clone(), demand.clone());
        let w1 = tokio::spawn({
            let (t, p) = (token.clone(), p.clone());
            async move { wait_for_token(&t, &mut r1, &d1, &p).await }
        });
        let w2 = tokio::spawn({
            let (t, p) = (token.clone(), p.clone());
            async move { wait_for_token(&t, &mut r2, &d2, &p).await }
        });
        tokio::time::timeout(Duration::from_secs(2), async {
            while demand.active() < 2 {
                tokio::task::yield_now().await
            }
        })
        .await
        .expect("both waiting");
        assert_eq!(
            wait_for_token(&token, &mut r3, &demand, &p).await,
            WaitState::TimedOut,
            "over the cap"
        );
        state.positions.insert("app.db".into(), 3);
        tx.send_replace(state);
        assert_eq!(w1.await.expect("join"), WaitState::Reached);
        assert_eq!(w2.await.expect("join"), WaitState::Reached);
        assert_eq!(demand.active(), 0);
    }
}
