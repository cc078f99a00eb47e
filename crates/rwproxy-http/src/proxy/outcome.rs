//! What the stack did with a request, carried in the response's metadata (see `meta`) for
//! the layers above the route (metrics, the access log, upgrades).

use http::header::HeaderValue;
use http::{HeaderMap, Response};
use rwproxy_core::{ErrorCode, Reason, RequestClass};

use super::meta::{set_routed, RequestMeta};
use crate::body::Body;
use crate::respond::{self, RWPROXY_ROUTE};

/// A response made without calling the inner service (a refusal, the health document). Boxed:
/// inline, a whole response would size the future of every request that passes through.
pub type Answered =
    std::pin::Pin<Box<std::future::Ready<Result<Response<Body>, std::convert::Infallible>>>>;

/// [`Answered`] with `response`.
pub(crate) fn answered(response: Response<Body>) -> Answered {
    Box::pin(std::future::ready(Ok(response)))
}

/// Where a request went: set by the route layer (and by the layers that refuse requests) on
/// every response but the health endpoint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routed {
    /// The request's class.
    pub class: RequestClass,
    /// `local`, `primary`, `replay`, `redirect` or `rejected` (the metrics' `route` label).
    pub route: &'static str,
    /// Why it went there.
    pub reason: Reason,
}

impl Routed {
    /// The outcome recorded on `response`, if any.
    pub fn of<B>(response: &Response<B>) -> Option<Routed> {
        RequestMeta::of(response.extensions()).and_then(|m| m.routed)
    }
}

/// rwproxy's own refusal of a request of `class`.
pub(crate) fn rejected(class: RequestClass, code: ErrorCode) -> Response<Body> {
    routed(respond::error(code), class, "rejected", Reason::Normal)
}

/// `response`, marked with where it went.
pub(crate) fn routed(
    mut response: Response<Body>,
    class: RequestClass,
    route: &'static str,
    reason: Reason,
) -> Response<Body> {
    set_routed(
        response.extensions_mut(),
        Routed {
            class,
            route,
            reason,
        },
    );
    response
}

/// Adds `rwproxy-route` (when `proxy.route_header` is on) to a proxied response.
pub(crate) fn route_header(headers: &mut HeaderMap, route: &'static str, reason: Reason) {
    // The values are built once: `HeaderValue::from_static` checks every byte each time it
    // runs, and this runs for every proxied response.
    static LOCAL: HeaderValue = HeaderValue::from_static("local");
    static LOCAL_WAITED: HeaderValue = HeaderValue::from_static("local; reason=waited");
    static LOCAL_STALE: HeaderValue = HeaderValue::from_static("local; reason=stale");
    static PRIMARY: HeaderValue = HeaderValue::from_static("primary");
    static PRIMARY_WRITE: HeaderValue = HeaderValue::from_static("primary; reason=write");
    static PRIMARY_STALE: HeaderValue = HeaderValue::from_static("primary; reason=stale");
    static PRIMARY_TIMEOUT: HeaderValue =
        HeaderValue::from_static("primary; reason=consistency-timeout");
    let value = match (route, reason) {
        ("local", Reason::Normal) => LOCAL.clone(),
        ("local", Reason::Waited) => LOCAL_WAITED.clone(),
        ("local", Reason::Stale) => LOCAL_STALE.clone(),
        ("primary", Reason::Write) => PRIMARY_WRITE.clone(),
        ("primary", Reason::Stale) => PRIMARY_STALE.clone(),
        ("primary", Reason::ConsistencyTimeout) => PRIMARY_TIMEOUT.clone(),
        ("primary", _) => PRIMARY.clone(),
        _ => HeaderValue::from_static(route),
    };
    headers.insert(RWPROXY_ROUTE.clone(), value);
}
