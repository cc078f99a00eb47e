//! Reads whose token names a write that a PostgreSQL failover lost: the token carries the
//! timeline its write was on (`rwproxy-timeline`), the source publishes the current timeline's
//! history, and a token on an ancestor timeline past its switch point is answered
//! `409 token-lost` (counted in `rwproxy_tokens_lost_total`) with a new token, never served as
//! if the write were there. See `rwproxy_core::timeline`.

use http::{HeaderMap, Response};
use rwproxy_core::timeline::{TimelineMark, Verdict};
use rwproxy_core::{ErrorCode, Token};

use super::shared::Shared;
use super::tokens;
use crate::body::Body;
use crate::consistency::TIMELINE_HEADER;
use crate::respond;

/// The switch the token's write fell off, when the history says it was lost; `None` when the
/// token carries no timeline, the node publishes no history, or the write is on the history.
pub(crate) fn lost_write(
    shared: &Shared,
    headers: &HeaderMap,
    token: &Token,
) -> Option<(u32, u64, u64)> {
    let mark = headers
        .get(&TIMELINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TimelineMark::parse)?;
    let first_db = shared.params.consistency.databases.first()?;
    let lsn = token
        .entries()
        .iter()
        .find(|(db, _)| db == first_db)
        .map(|(_, lsn)| *lsn)?;
    let history = shared.state.borrow().timeline.clone()?;
    match history.verdict(Some(mark), lsn) {
        Verdict::Lost {
            timeline,
            switch_lsn,
        } => Some((timeline, lsn, switch_lsn)),
        Verdict::Kept | Verdict::Ahead => None,
    }
}

/// The answer to a read whose token's write was lost: `409 token-lost`, counted and logged,
/// carrying this node's current positions as a new token so the client's next read goes on.
pub(crate) async fn answer(
    shared: &Shared,
    request_headers: &HeaderMap,
    (timeline, lsn, switch_lsn): (u32, u64, u64),
) -> Response<Body> {
    shared.metrics.token_lost();
    tracing::warn!(
        token_timeline = timeline,
        token_lsn = format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF),
        switch_lsn = format!("{:X}/{:X}", switch_lsn >> 32, switch_lsn & 0xFFFF_FFFF),
        "a read's token names a write that a failover lost; answering 409 token-lost"
    );
    let mut response = respond::error(ErrorCode::TokenLost);
    let tls = tokens::secure(None, request_headers);
    let positions = shared.current_positions().await;
    shared
        .params
        .consistency
        .issue(response.headers_mut(), &positions, tls);
    response
}
