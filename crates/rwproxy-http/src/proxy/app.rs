//! The local-app leaf: the binary's innermost service, sending a request to the app on this
//! node over the upstream pool (`proxy.app`, capped at `proxy.app_max_connections`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use rwproxy_core::{ErrorCode, RequestClass};
use tower::Service;

use super::consistency::BoxResponse;
use super::meta::{carry_back, prepare_head, RequestMeta};
use super::outcome::rejected;
use super::shared::Shared;
use super::{Proxy, RequestId};
use crate::body::Body;
use crate::upstream::headers::prepare_response;
use crate::upstream::SendError;

/// Sends requests to the local app; the service the binary's stack wraps.
#[derive(Clone, Debug)]
pub struct AppService {
    shared: Arc<Shared>,
}

impl AppService {
    /// The local app of `proxy`'s node (`proxy.app`).
    pub fn new(proxy: &Proxy) -> Self {
        AppService {
            shared: proxy.shared.clone(),
        }
    }
}

impl Service<Request<Body>> for AppService {
    type Response = Response<Body>;
    type Error = Infallible;
    // Boxed: the pool's send is the largest future of a local request, and hyper moves the
    // request future by value a few times; a box makes those moves cheap.
    type Future = BoxResponse;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> BoxResponse {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(send_to_app(&shared, request).await) })
    }
}

/// Rewrites the head for the hop (unless already prepared, see [`RequestMeta`]) and sends the
/// request to the app.
async fn send_to_app(shared: &Shared, request: Request<Body>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    // Not sent upstream: kept to travel back on the response (see `meta::carry_back`).
    let extensions = std::mem::take(&mut parts.extensions);
    let meta = RequestMeta::of(&extensions);
    let class = meta.map_or(RequestClass::Passthrough, |m| m.class);
    if !meta.is_some_and(|m| m.prepared)
        && prepare_head(&mut parts, meta, &extensions, &shared.hop).is_err()
    {
        return rejected(class, ErrorCode::BadRequest);
    }
    let params = &shared.params;
    let request = Request::from_parts(parts, body);
    let request_id = meta
        .and_then(|m| m.request_id.as_ref())
        .map_or("-", RequestId::as_str);
    match shared
        .app_pool
        .send(
            &shared.app,
            request,
            params.connect_timeout,
            params.app_connect_retry,
        )
        .await
    {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            prepare_response(&mut parts);
            carry_back(extensions, &mut parts.extensions);
            Response::from_parts(parts, body)
        }
        Err(SendError::Connect { error, .. }) => {
            tracing::warn!(request_id, app = %shared.app.authority, %error, "local app unreachable");
            rejected(class, ErrorCode::AppUnreachable)
        }
        Err(SendError::Saturated { .. }) => {
            tracing::warn!(
                request_id,
                app = %shared.app.authority,
                queue_timeout_ms = params.app_queue_timeout.as_millis() as u64,
                "every connection to the local app stayed busy; request refused unsent"
            );
            rejected(class, ErrorCode::Overloaded)
        }
        Err(SendError::Sent(error)) => match crate::body::client_fault(&error) {
            // The client's body broke (malformed chunk, cut off) or outgrew the limit: the
            // client's fault, not the app's.
            Some(code) => {
                tracing::info!(request_id, code = code.as_str(), %error, "the client's request body failed");
                rejected(class, code)
            }
            None => {
                tracing::warn!(request_id, app = %shared.app.authority, %error, "local app failed mid-request");
                rejected(class, ErrorCode::AppUnreachable)
            }
        },
    }
}
