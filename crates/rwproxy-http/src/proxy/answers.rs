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

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body as HttpBody;
use rwproxy_core::{ErrorCode, Reason, RequestClass};

use super::outcome::{rejected, routed};
use super::shared::Shared;
use crate::body::Body;
use crate::respond;
use crate::upstream::headers::upgrade_protocol;

/// Fly.io's edge cannot replay request bodies larger than this.
const FLY_REPLAY_MAX_BODY: u64 = 1_000_000;
/// The header Fly.io's edge acts on.
static FLY_REPLAY: HeaderName = HeaderName::from_static("fly-replay");
/// Added by Fly.io's edge to a request it replayed.
static FLY_REPLAY_SRC: HeaderName = HeaderName::from_static("fly-replay-src");

/// Whether Fly's edge can replay this request: a body of known length within its limit, and
/// not a replay already.
fn fly_can_replay<B: HttpBody>(request: &Request<B>) -> bool {
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

/// Answers `fly-replay: instance=<primary>` for Fly.io's edge; `None` for a request Fly
/// cannot replay, which the route forwards to the primary directly instead.
pub(super) fn replay<B: HttpBody>(
    request: &Request<B>,
    class: RequestClass,
    primary: &str,
) -> Option<Response<Body>> {
    if !fly_can_replay(request) {
        return None;
    }
    let Ok(value) = HeaderValue::from_str(&format!("instance={primary}")) else {
        return Some(rejected(class, ErrorCode::NoPrimary));
    };
    let mut response = respond::error(ErrorCode::FlyReplay);
    response.headers_mut().insert(FLY_REPLAY.clone(), value);
    Some(routed(response, class, "replay", Reason::Write))
}

/// Answers 307 to the same path and query on the primary (`writes.primary_url`); `None` for
/// an upgrade request, which the route forwards instead.
pub(super) fn redirect<B>(
    shared: &Shared,
    request: &Request<B>,
    class: RequestClass,
    primary: &str,
) -> Option<Response<Body>> {
    if upgrade_protocol(request.version(), request.headers()).is_some() {
        return None;
    }
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = shared
        .params
        .primary_url
        .absolute(primary, path)
        .and_then(|uri| HeaderValue::from_str(&uri.to_string()).ok());
    let Some(location) = location else {
        tracing::error!(%primary, "writes.primary_url gives no valid URL for this primary");
        return Some(rejected(class, ErrorCode::NoPrimary));
    };
    let mut response = respond::error(ErrorCode::Redirect);
    response.headers_mut().insert(header::LOCATION, location);
    Some(routed(response, class, "redirect", Reason::Write))
}
