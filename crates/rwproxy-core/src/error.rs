//! The codes rwproxy answers with when it answers a request itself (not the app): errors, and
//! the fly-replay and redirect answers of the non-forwarding write modes.

use std::time::Duration;

use http::StatusCode;

/// One `rwproxy-error` code. Each maps to one status, one short message and, where a retry can
/// help, a `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No primary is known (after waiting `writes.primary_wait`).
    NoPrimary,
    /// The primary's rwproxy could not be reached; the request never left this node.
    PrimaryUnreachable,
    /// The primary did not answer within `writes.timeout`.
    PrimaryTimeout,
    /// The connection to the primary failed after the request was sent: it may have been applied.
    PrimaryFailed,
    /// The local app refused connections for longer than the connect-retry window.
    AppUnreachable,
    /// A read waited `consistency.wait` for this node to reach the client's token.
    ConsistencyTimeout,
    /// This replica lags more than `reads.max_lag` and policy says reject.
    Stale,
    /// This node has not finished its initial sync or its cluster state is unknown.
    NotReady,
    /// The process is shutting down.
    Draining,
    /// A request forwarded by another rwproxy reached a node that is not the primary.
    Loop,
    /// The request is malformed.
    BadRequest,
    /// The request body exceeds the configured limit.
    TooLarge,
    /// The client sent its request body too slowly (`proxy.body_timeout`,
    /// `proxy.body_min_rate`); the upstream request was aborted.
    BodyTimeout,
    /// The request asks for something rwproxy does not do: `CONNECT` (it is not a forward
    /// proxy), or a transfer coding other than `chunked`.
    NotImplemented,
    /// Too many requests are waiting (for a position or a primary).
    Overloaded,
    /// `writes.mode = "fly-replay"`: Fly.io's edge must replay this write on the primary.
    FlyReplay,
    /// `writes.mode = "redirect"`: the client must repeat this write on the primary.
    Redirect,
    /// rwproxy itself failed while handling the request (a bug caught before it took the
    /// connection down); the request may or may not have reached the app.
    Internal,
    /// A read's token names a write that a failover lost: it was on an old PostgreSQL
    /// timeline past the point where the current one branched off (see `timeline`).
    TokenLost,
}

impl ErrorCode {
    /// Every code, for metrics registration and documentation tests.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::NoPrimary,
        ErrorCode::PrimaryUnreachable,
        ErrorCode::PrimaryTimeout,
        ErrorCode::PrimaryFailed,
        ErrorCode::AppUnreachable,
        ErrorCode::ConsistencyTimeout,
        ErrorCode::Stale,
        ErrorCode::NotReady,
        ErrorCode::Draining,
        ErrorCode::Loop,
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::NotImplemented,
        ErrorCode::Overloaded,
        ErrorCode::FlyReplay,
        ErrorCode::Redirect,
        ErrorCode::Internal,
        ErrorCode::BodyTimeout,
        ErrorCode::TokenLost,
    ];

    /// The value of the `rwproxy-error` header and the `reason` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoPrimary => "no-primary",
            ErrorCode::PrimaryUnreachable => "primary-unreachable",
            ErrorCode::PrimaryTimeout => "primary-timeout",
            ErrorCode::PrimaryFailed => "primary-failed",
            ErrorCode::AppUnreachable => "app-unreachable",
            ErrorCode::ConsistencyTimeout => "consistency-timeout",
            ErrorCode::Stale => "stale",
            ErrorCode::NotReady => "not-ready",
            ErrorCode::Draining => "draining",
            ErrorCode::Loop => "loop",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::BodyTimeout => "body-timeout",
            ErrorCode::NotImplemented => "not-implemented",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::FlyReplay => "fly-replay",
            ErrorCode::Redirect => "redirect",
            ErrorCode::Internal => "internal",
            ErrorCode::TokenLost => "token-lost",
        }
    }

    /// The HTTP status of the response.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NoPrimary
            | ErrorCode::PrimaryUnreachable
            | ErrorCode::Stale
            | ErrorCode::NotReady
            | ErrorCode::Draining
            | ErrorCode::Loop
            | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::PrimaryTimeout | ErrorCode::ConsistencyTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ErrorCode::PrimaryFailed | ErrorCode::AppUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            // Outside Fly.io nothing replays it: a 4xx, never a silent 200.
            ErrorCode::FlyReplay => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::Redirect => StatusCode::TEMPORARY_REDIRECT,
            // The client's state conflicts with the database's: no retry brings the write back.
            ErrorCode::TokenLost => StatusCode::CONFLICT,
        }
    }

    /// The one-line body (without the trailing newline).
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::NoPrimary => "no primary is known; the write was not applied, retry later",
            ErrorCode::PrimaryUnreachable => "the primary could not be reached; the request was not sent, retry later",
            ErrorCode::PrimaryTimeout => "the primary did not answer in time; the write may or may not have been applied",
            ErrorCode::PrimaryFailed => "the connection to the primary failed mid-request; the write may or may not have been applied",
            ErrorCode::AppUnreachable => "the local application is not accepting connections",
            ErrorCode::ConsistencyTimeout => "this node did not reach the position of your last write in time",
            ErrorCode::Stale => "this replica is too far behind to serve reads, retry later",
            ErrorCode::NotReady => "this node is not ready (initial sync, or cluster state unknown)",
            ErrorCode::Draining => "this node is shutting down, retry",
            ErrorCode::Loop => "a forwarded request reached a node that is not the primary; it was not applied, retry",
            ErrorCode::BadRequest => "malformed request",
            ErrorCode::TooLarge => "request body too large",
            ErrorCode::BodyTimeout => "request body sent too slowly; the request was aborted",
            ErrorCode::NotImplemented => "rwproxy does not support this request (CONNECT, or a transfer coding other than chunked)",
            ErrorCode::Overloaded => "too many requests are waiting on this node, retry",
            ErrorCode::FlyReplay => "this write must be replayed on the primary by Fly.io's edge; it was not applied here",
            ErrorCode::Redirect => "this write must be sent to the primary; follow the Location header",
            ErrorCode::Internal => "rwproxy failed while handling this request; it may or may not have been applied",
            ErrorCode::TokenLost => "the write your token names was lost in a database failover; this answer carries a new token",
        }
    }

    /// `Retry-After` for this code, where a retry can help. Every 503 has one.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorCode::NoPrimary
            | ErrorCode::PrimaryUnreachable
            | ErrorCode::Stale
            | ErrorCode::NotReady => Some(Duration::from_secs(5)),
            ErrorCode::Draining | ErrorCode::Loop | ErrorCode::Overloaded => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// True when the request provably never reached an application, so it may be retried.
    pub fn never_reached_app(self) -> bool {
        matches!(
            self,
            ErrorCode::NoPrimary
                | ErrorCode::PrimaryUnreachable
                | ErrorCode::Stale
                | ErrorCode::NotReady
                | ErrorCode::Draining
                | ErrorCode::Loop
                | ErrorCode::Overloaded
                | ErrorCode::BadRequest
                | ErrorCode::TooLarge
                | ErrorCode::BodyTimeout
                | ErrorCode::NotImplemented
                | ErrorCode::ConsistencyTimeout
                | ErrorCode::FlyReplay
                | ErrorCode::Redirect
                | ErrorCode::TokenLost
        )
    }

    /// Parses an `rwproxy-error` header value.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ErrorCode::*;

    /// (code, name, status, Retry-After seconds, never reached an app): the contract, row by row.
    const TABLE: [(ErrorCode, &str, u16, Option<u64>, bool); 19] = [
        (NoPrimary, "no-primary", 503, Some(5), true),
        (
            PrimaryUnreachable,
            "primary-unreachable",
            503,
            Some(5),
            true,
        ),
        (PrimaryTimeout, "primary-timeout", 504, None, false),
        (PrimaryFailed, "primary-failed", 502, None, false),
        (AppUnreachable, "app-unreachable", 502, None, false),
        (ConsistencyTimeout, "consistency-timeout", 504, None, true),
        (Stale, "stale", 503, Some(5), true),
        (NotReady, "not-ready", 503, Some(5), true),
        (Draining, "draining", 503, Some(1), true),
        (Loop, "loop", 503, Some(1), true),
        (BadRequest, "bad-request", 400, None, true),
        (TooLarge, "too-large", 413, None, true),
        (NotImplemented, "not-implemented", 501, None, true),
        (Overloaded, "overloaded", 503, Some(1), true),
        (FlyReplay, "fly-replay", 421, None, true),
        (Redirect, "redirect", 307, None, true),
        (Internal, "internal", 500, None, false),
        (BodyTimeout, "body-timeout", 408, None, true),
        (TokenLost, "token-lost", 409, None, true),
    ];

    #[test]
    fn every_code_row_by_row() {
        assert_eq!(
            TABLE.map(|row| row.0),
            ErrorCode::ALL,
            "the table covers every code"
        );
        for (code, name, status, retry, never_reached) in TABLE {
            assert_eq!(code.as_str(), name, "{code:?}");
            assert_eq!(code.status().as_u16(), status, "{code:?}");
            assert_eq!(
                code.retry_after(),
                retry.map(Duration::from_secs),
                "{code:?}"
            );
            assert_eq!(code.never_reached_app(), never_reached, "{code:?}");
            assert!(!code.message().is_empty(), "{code:?}");
        }
        assert_eq!(ErrorCode::from_code("teapot"), None);
        let messages: std::collections::HashSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.message()).collect();
        assert_eq!(messages.len(), ErrorCode::ALL.len(), "one message per code");
    }

    #[test]
    fn every_503_has_retry_after() {
        for code in ErrorCode::ALL {
            if code.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert!(code.retry_after().is_some(), "{code:?}");
            }
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            assert!(!code.message().contains('\n'));
        }
    }
}
