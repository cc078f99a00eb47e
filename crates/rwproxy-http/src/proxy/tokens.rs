//! Position tokens on the way back: the one place that decides whether a response carries a
//! new token (cookie and header) and writes it.

use http::HeaderMap;
use rwproxy_core::{Reading, RequestClass, Token};

use super::shared::Shared;
use crate::session::{token_for_read, SessionMode};
use crate::upstream::headers::{ClientInfo, X_FORWARDED_PROTO};

/// What to do about the consistency token on the way back.
#[derive(Debug)]
pub(crate) enum TokenAction {
    /// Nothing.
    None,
    /// A write served by the primary's app: issue the new positions.
    IssueAfterWrite,
    /// A read on the primary carrying this token: if the token is ahead of the primary itself
    /// (a restored database, another cluster's cookie), replace it so replicas stop waiting.
    ResetIfAhead(Token),
    /// `consistency.session = "reads-too"`: a read served here earns the client this node's
    /// positions when they are newer than its token ([`crate::session::token_for_read`]).
    IssueForRead {
        /// The client's token, if it sent one.
        token: Option<Token>,
        /// Whether this node is the primary.
        on_primary: bool,
    },
}

impl TokenAction {
    /// The action for a request of `class` served by this node's app.
    pub(crate) fn for_local(
        on_primary: bool,
        class: RequestClass,
        token: Option<Token>,
        session: SessionMode,
    ) -> Self {
        match (on_primary, class, token) {
            (true, RequestClass::Write, _) => TokenAction::IssueAfterWrite,
            (_, RequestClass::Read, token) if session == SessionMode::ReadsToo => {
                TokenAction::IssueForRead { token, on_primary }
            }
            (true, RequestClass::Read, Some(t)) => TokenAction::ResetIfAhead(t),
            _ => TokenAction::None,
        }
    }

    /// True when a response may get a token.
    pub(crate) fn may_issue(&self) -> bool {
        !matches!(self, TokenAction::None)
    }
}

/// Whether a token cookie must be `Secure`: TLS here, or TLS terminated in front of rwproxy (an
/// edge such as Fly's says so in X-Forwarded-Proto; a client that lies only makes its own
/// cookie https-only).
pub(crate) fn secure(client: Option<&ClientInfo>, headers: &HeaderMap) -> bool {
    client.is_some_and(|c| c.tls)
        || headers
            .get(&X_FORWARDED_PROTO)
            .is_some_and(|p| p == "https")
}

/// Carries `action` out on a response's headers.
pub(crate) async fn apply(
    shared: &Shared,
    action: TokenAction,
    headers: &mut HeaderMap,
    tls: bool,
    request_id: &str,
) {
    let consistency = &shared.params.consistency;
    match action {
        TokenAction::None => {}
        TokenAction::IssueAfterWrite => {
            let positions = shared.current_positions().await;
            consistency.issue(headers, &positions, tls);
        }
        TokenAction::IssueForRead { token, on_primary } => {
            // Read after the app answered: an upper bound of what the read saw.
            let served = shared.current_positions().await;
            let issued = token_for_read(
                consistency.session,
                token.as_ref(),
                &served.positions,
                on_primary,
            );
            if let Some(positions) = issued {
                let reading = Reading {
                    positions,
                    timeline: served.timeline,
                };
                consistency.issue(headers, &reading, tls);
            }
        }
        TokenAction::ResetIfAhead(token) => {
            let snapshot_ahead = token.is_ahead_of(&shared.state.borrow().positions);
            if snapshot_ahead {
                let positions = shared.current_positions().await;
                if token.is_ahead_of(&positions.positions) {
                    tracing::info!(
                        request_id,
                        "client token is ahead of the primary; replacing it"
                    );
                    consistency.issue(headers, &positions, tls);
                }
            }
        }
    }
}
