//! The non-forwarding write modes: `fly-replay` and `redirect`.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::Request;
use hyper::body::Incoming;
use rwproxy_core::{ErrorCode, Reason, RequestClass};

use super::{Outcome, Proxy};
use crate::respond;
use crate::upstream::headers::ClientInfo;

/// Fly.io's edge cannot replay request bodies larger than this.
const FLY_REPLAY_MAX_BODY: u64 = 1_000_000;
/// The header Fly.io's edge acts on.
static FLY_REPLAY: header::HeaderName = header::HeaderName::from_static("fly-replay");

impl Proxy {
    /// Answers `fly-replay: instance=<primary>` for Fly.io's edge; bodies Fly cannot replay are
    /// forwarded to the primary directly instead.
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
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > FLY_REPLAY_MAX_BODY) {
            return self
                .to_primary(request, client, class, Reason::Write, primary)
                .await;
        }
        let mut response = respond::error(ErrorCode::FlyReplay);
        match HeaderValue::from_str(&format!("instance={primary}")) {
            Ok(v) => response.headers_mut().insert(FLY_REPLAY.clone(), v),
            Err(_) => return Outcome::rejected(class, ErrorCode::NoPrimary),
        };
        Outcome {
            response,
            class: Some(class),
            route: "replay",
            reason: Reason::Write,
        }
    }

    /// Answers 307 to the same path and query on the primary.
    pub(super) fn redirect(
        &self,
        request: &Request<Incoming>,
        class: RequestClass,
        primary: Option<&str>,
    ) -> Outcome {
        let Some(primary) = primary else {
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let Some(location) = self.inner.params.primary_url.absolute(primary, path) else {
            return Outcome::rejected(class, ErrorCode::NoPrimary);
        };
        let mut response = respond::error(ErrorCode::Redirect);
        if let Ok(v) = HeaderValue::from_str(&location.to_string()) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Outcome {
            response,
            class: Some(class),
            route: "redirect",
            reason: Reason::Write,
        }
    }
}
