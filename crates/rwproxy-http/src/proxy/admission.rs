//! Checks made on a request before it is routed, and how a refused request is answered.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::Request;
use hyper::body::Incoming;
use rwproxy_core::{ErrorCode, RequestClass};

use super::{Outcome, RequestId};
use crate::hygiene::{self, Refusal};
use crate::upstream::headers::{FORWARDED_BY, FORWARD_SECRET};

/// True when the request carries the forwarded-request marker and, with `cluster.secret` set,
/// the right secret. A marker without it is ignored: the request is a client's.
pub(super) fn forwarded_by_a_node(headers: &HeaderMap, secret: Option<&HeaderValue>) -> bool {
    if !headers.contains_key(&FORWARDED_BY) {
        return false;
    }
    match secret {
        None => true,
        Some(secret) => headers
            .get(&FORWARD_SECRET)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), secret.as_bytes())),
    }
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's declared body length, if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Request hygiene (see [`crate::hygiene`]): `Err` when the head must be refused; otherwise
/// header names with `_` are dropped unless `allow_underscores` is set.
pub(super) fn hygiene(
    request: &mut Request<Incoming>,
    allow_underscores: bool,
) -> Result<(), Refusal> {
    let checked = hygiene::check(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
    );
    if let Err(refusal) = checked {
        // The client's fault, not rwproxy's: informational, and counted as the code's error.
        let request_id = RequestId::of(request);
        tracing::info!(
            request_id = request_id.as_ref().map_or("-", RequestId::as_str),
            refusal = refusal.as_str(),
            code = refusal.code().as_str(),
            "request refused before routing"
        );
        return Err(refusal);
    }
    if !allow_underscores {
        let dropped = hygiene::drop_underscored_headers(request.headers_mut());
        if dropped > 0 {
            tracing::debug!(dropped, "dropped header names containing '_'");
        }
    }
    Ok(())
}

/// Answers a request that failed the hygiene checks. Over HTTP/1.1 the connection is closed
/// after the answer: whatever the client sends next on it is as suspect as what it just sent.
pub(super) async fn refuse(
    request: Request<Incoming>,
    class: RequestClass,
    refusal: Refusal,
) -> Outcome {
    let http1 = request.version() < http::Version::HTTP_2;
    let mut outcome = drain_then_reject(request, class, refusal.code()).await;
    if http1 {
        outcome
            .response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    outcome
}

/// Request bodies up to this size are read and discarded before rwproxy answers a request it
/// refuses, so the peer (often another rwproxy still streaming a forwarded write) gets the
/// answer instead of a connection reset that would hide it.
const DRAIN_LIMIT: usize = 1 << 20;
/// How long the discarding may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Answers `code` after reading and discarding a bounded part of the body (see [`discard_body`]).
pub(super) async fn drain_then_reject(
    request: Request<Incoming>,
    class: RequestClass,
    code: ErrorCode,
) -> Outcome {
    discard_body(request).await;
    Outcome::rejected(class, code)
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of the body within [`DRAIN_TIME`], so that a
/// client that writes its whole body before reading sees the answer rather than a broken pipe.
/// A client that sent `Expect: 100-continue` is waiting to be asked for its body: it is not
/// asked (reading would make hyper send `100 Continue`), and gets the answer at once.
pub(super) async fn discard_body(request: Request<Incoming>) {
    use http_body_util::BodyExt as _;
    if request.headers().contains_key(http::header::EXPECT) {
        return;
    }
    let mut body = request.into_body();
    let discard = async {
        let mut seen = 0usize;
        // Frames are dropped as they come: nothing is kept in memory.
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_needs_the_secret_when_one_is_set() {
        let mut h = HeaderMap::new();
        assert!(!forwarded_by_a_node(&h, None));
        h.insert(FORWARDED_BY.clone(), HeaderValue::from_static("n1"));
        assert!(forwarded_by_a_node(&h, None));
        let secret = HeaderValue::from_static("0123456789abcdef");
        assert!(!forwarded_by_a_node(&h, Some(&secret)));
        h.insert(
            FORWARD_SECRET.clone(),
            HeaderValue::from_static("0123456789abcdeX"),
        );
        assert!(!forwarded_by_a_node(&h, Some(&secret)));
        h.insert(FORWARD_SECRET.clone(), secret.clone());
        assert!(forwarded_by_a_node(&h, Some(&secret)));
    }
}
