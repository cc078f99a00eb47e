//! Which connection a request to the primary's rwproxy takes: HTTP/2 (`writes.http2`) for
//! requests whose body is in memory or empty (kept writes, reads); HTTP/1.1 for upgrades, for
//! streamed bodies (a client's body that breaks mid-way is reported as the client's fault only
//! by the HTTP/1.1 client: the h2 crate drops the cause), and for a primary that does not
//! agree to HTTP/2 over TLS (a server other than rwproxy behind `primary_url`).

use std::io;

use http::{header, Request, Response};

use super::shared::Shared;
use crate::body::Body;
use crate::upstream::{SendError, Target};

/// Sends `request` to the primary at `target`; errors as [`crate::upstream::Pool::send`]'s.
pub(super) async fn send(
    shared: &Shared,
    target: &Target,
    request: Request<Body>,
) -> Result<Response<Body>, SendError> {
    let params = &shared.params;
    let http1 = |request| {
        shared.primary_pool.send(
            target,
            request,
            params.connect_timeout,
            std::time::Duration::ZERO,
        )
    };
    let settled = request.body().is_in_memory() || http_body::Body::is_end_stream(request.body());
    if !params.warm_path.http2 || !settled || request.headers().contains_key(header::UPGRADE) {
        return http1(request).await;
    }
    match shared
        .multiplexed
        .send(target, request, params.connect_timeout)
        .await
    {
        // Nothing was sent: the TLS handshake chose HTTP/1.1.
        Err(SendError::Connect { error, request })
            if error.kind() == io::ErrorKind::Unsupported =>
        {
            tracing::debug!(upstream = %target.authority, "the primary offers no HTTP/2; using HTTP/1.1");
            http1(*request).await
        }
        other => other,
    }
}
