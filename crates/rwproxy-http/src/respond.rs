//! The one place that turns rwproxy's own decisions into responses: a status, the
//! `rwproxy-error` code, a one-line text body, and `Retry-After` where a retry can help.

use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use rwproxy_core::ErrorCode;

use crate::body::Body;

/// Names the code of a response rwproxy made itself.
pub static RWPROXY_ERROR: HeaderName = HeaderName::from_static("rwproxy-error");
/// Says how a proxied response was routed (`local`, `primary; reason=stale`, ...).
pub static RWPROXY_ROUTE: HeaderName = HeaderName::from_static("rwproxy-route");

/// The response for an error code.
pub fn error(code: ErrorCode) -> Response<Body> {
    let mut response = Response::new(Body::full(format!("{}\n", code.message())));
    *response.status_mut() = code.status();
    let headers = response.headers_mut();
    headers.insert(
        RWPROXY_ERROR.clone(),
        HeaderValue::from_static(code.as_str()),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(after) = code.retry_after() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}

/// A plain response rwproxy makes that is not an error (health, metrics, status).
pub fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_header_body_and_retry_after_on_503() {
        for code in ErrorCode::ALL {
            let r = error(code);
            assert_eq!(r.status(), code.status());
            assert_eq!(r.headers()[&RWPROXY_ERROR], code.as_str());
            assert_eq!(
                r.status() == StatusCode::SERVICE_UNAVAILABLE,
                r.headers().contains_key(header::RETRY_AFTER)
                    && code.status() == StatusCode::SERVICE_UNAVAILABLE,
                "{code:?}"
            );
        }
    }
}
