//! Which connection a request to the primary's rwproxy takes: HTTP/2 (`writes.http2`) for
//! requests whose body is in memory or empty (kept writes, reads); HTTP/1.1 for upgrades, for
//! streamed bodies (a client's body that breaks mid-way is reported as the client's fault only
//! by the HTTP/1.1 client: the h2 crate drops the cause), and for a primary found not to speak
//! HTTP/2 (a server other than rwproxy behind `primary_url`; see [`crate::upstream::multiplex`]).
//! While a plain-text primary's protocol is not known yet (right after it changed, before the
//! warmer heard its SETTINGS), writes take HTTP/1.1 too: a connection made for them costs the
//! same round trips, and no write waits for the verdict. Without warm connections
//! (`writes.warm_connections = 0`) nobody else asks, so the first write's HTTP/2 connection
//! waits for the verdict instead. Over TLS, ALPN tells the protocol within the handshake, so
//! writes take HTTP/2 from the start.

use std::io;

use http::{header, Request, Response};

use super::shared::Shared;
use crate::body::Body;
use crate::upstream::multiplex::PeerProtocol;
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
    let http2_known = match shared.multiplexed.protocol(target) {
        Some(PeerProtocol::Http2) => true,
        Some(PeerProtocol::Http1) => false,
        None => target.is_https() || params.warm_path.warm_connections == 0,
    };
    if !params.warm_path.http2
        || !http2_known
        || !settled
        || request.headers().contains_key(header::UPGRADE)
    {
        return http1(request).await;
    }
    match shared
        .multiplexed
        .send(target, request, params.connect_timeout)
        .await
    {
        // Nothing was sent: the primary turned out not to speak HTTP/2 (logged once, by the
        // multiplexer).
        Err(SendError::Connect { error, request })
            if error.kind() == io::ErrorKind::Unsupported =>
        {
            http1(*request).await
        }
        other => other,
    }
}
