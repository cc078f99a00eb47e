//! The non-forwarding write modes: `fly-replay` and `redirect`.
//!
//! Both answer a write instead of carrying it, and fall back to streaming it to the primary
//! (as `forward` would) where the answer could not work:
//!
//! * `fly-replay`: Fly.io's edge replays request bodies up to 1 MB only, so a body that is
//!   larger, or of unknown length (chunked, or HTTP/2 without `content-length`), is forwarded.
//!   So is a request Fly's edge already replayed once (`fly-replay-src`): the primary moved
//!   while it was in flight, and another replay could bounce between nodes.
//! * `redirect`: clients do not follow redirects on upgrade requests (WebSockets), so those are
//!   forwarded (and tunnelled) instead.

use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::Request;
use http_body::Body as _;
use hyper::body::Incoming;
use rwproxy_core::{ErrorCode, Reason, RequestClass};

use super::{admission, Outcome, Proxy};
use crate::respond;
use crate::upstream::headers::{upgrade_protocol, ClientInfo};

/// Fly.io's edge cannot replay request bodies larger than this.
const FLY_REPLAY_MAX_BODY: u64 = 1_000_000;
/// The header Fly.io's edge acts on.
static FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
/// Added by Fly.io's edge to a request it replayed.
static FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");

/// Whether Fly's edge can replay this request: a body of known length within its limit, and
/// not a replay already.
fn fly_can_replay(request: &Request<Incoming>) -> bool {
    if request.headers().contains_key(&FLY_REPLAY_SRC) {
        return false;
    }
    let body = request.body();
    if body.is_end_stream() {
        return true;
    }
    // hyper knows the exact length from `content-length` (HTTP/1.1 and HTTP/2 alike).
    body.size_hint()
        .exact()
        .is_some_and(|n| n <= FLY_REPLAY_MAX_BODY)
}

impl Proxy {
    /// Answers `fly-replay: instance=<primary>` for Fly.io's edge; requests Fly cannot replay
    /// are forwarded to the primary directly instead.
    pub(super) async fn replay(
        &self,
        request: Request<Incoming>,
        client: ClientInfo,
        class: RequestClass,
        primary: Option<Arc<str>>,
    ) -> Outcome {
        let Some(primary) = primary else {
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        if !fly_can_replay(&request) {
            return self
                .to_primary(request, client, class, Reason::Write, primary)
                .await;
        }
        let Ok(value) = HeaderValue::from_str(&format!("instance={primary}")) else {
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        // Read the body (at most Fly's 1 MB) before answering: a client that writes its whole
        // body first would otherwise see a broken pipe instead of the 421.
        admission::discard_body(request).await;
        let mut response = respond::error(ErrorCode::FlyReplay);
        response.headers_mut().insert(FLY_REPLAY.clone(), value);
        Outcome {
            response,
            class: Some(class),
            route: "replay",
            reason: Reason::Write,
        }
    }

    /// Answers 307 to the same path and query on the primary (`writes.primary_url`); upgrade
    /// requests are forwarded instead.
    pub(super) async fn redirect(
        &self,
        request: Request<Incoming>,
        client: ClientInfo,
        class: RequestClass,
        primary: Option<Arc<str>>,
    ) -> Outcome {
        let Some(primary) = primary else {
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        if upgrade_protocol(request.version(), request.headers()).is_some() {
            return self
                .to_primary(request, client, class, Reason::Write, primary)
                .await;
        }
        let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = self
            .inner
            .params
            .primary_url
            .absolute(&primary, path)
            .and_then(|uri| HeaderValue::from_str(&uri.to_string()).ok());
        let Some(location) = location else {
            tracing::error!(%primary, "writes.primary_url gives no valid URL for this primary");
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        // As for fly-replay: the client sees the 307, not a broken pipe (bounded: a larger
        // body is cut off and the connection closed after the answer).
        admission::discard_body(request).await;
        let mut response = respond::error(ErrorCode::Redirect);
        response.headers_mut().insert(header::LOCATION, location);
        Outcome {
            response,
            class: Some(class),
            route: "redirect",
            reason: Reason::Write,
        }
    }
}
