//! Session guarantees beyond read-your-writes: with `consistency.session = "reads-too"`, a read
//! also earns the client a token, so its next read (on any node) is at least as fresh as this
//! one: monotonic reads and writes-follow-reads.
//!
//! One decision lives here, [`token_for_read`]: which positions a read served by this node's
//! app hands back, if any. The call site only supplies the client's token and this node's
//! positions read *after* the app answered (an upper bound of what the read saw: positions only
//! grow), and issues what comes back.

use rwproxy_core::{Positions, Token};

/// `consistency.session`: which responses carry a fresh token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionMode {
    /// Only writes served by the primary's app (read-your-writes): today's behaviour.
    #[default]
    Writes,
    /// Reads served by a node's app too, when the node's positions are newer than the client's
    /// token (monotonic reads, writes-follow-reads).
    ReadsToo,
}

/// The token a read served locally hands back, or `None` when the client's own token already
/// covers `served` (a steady client sees no new `Set-Cookie`).
///
/// `served` must be this node's positions read after the app answered: an upper bound of the
/// state the read saw. The token issued is, per database, the higher of the client's position
/// and `served`, so a read served below the client's token (`reads.when_stale = "serve"`)
/// never moves the client backwards. Only the databases the client's token names are compared
/// (a cookie carries the first database only); a client without a token always gets one.
///
/// On the primary (`on_primary`) a token ahead of `served` is replaced by `served`, as in
/// `"writes"` mode (docs/consistency.md, "A token ahead of the primary"): no node will ever
/// reach it.
pub fn token_for_read(
    mode: SessionMode,
    client: Option<&Token>,
    served: &Positions,
    on_primary: bool,
) -> Option<Positions> {
    if mode != SessionMode::ReadsToo || served.is_empty() {
        return None;
    }
    let Some(client) = client else {
        return Some(served.clone());
    };
    if on_primary && client.is_ahead_of(served) {
        return Some(served.clone());
    }
    let mut newer = false;
    let mut merged = served.clone();
    for (db, have) in client.entries() {
        let Some(position) = merged.get_mut(db) else {
            continue;
        };
        if *position > *have {
            newer = true;
        } else {
            *position = *have;
        }
    }
    newer.then_some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(p: &[(&str, u64)]) -> Positions {
        p.iter().map(|(d, v)| ((*d).into(), *v)).collect()
    }

    #[test]
    fn writes_mode_never_issues_on_reads() {
        let served = positions(&[("app.db", 9)]);
        assert_eq!(
            token_for_read(SessionMode::Writes, None, &served, false),
            None
        );
    }

    #[test]
    fn a_client_without_a_token_gets_the_served_positions() {
        let served = positions(&[("app.db", 9)]);
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, None, &served, false),
            Some(served.clone())
        );
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, None, &Positions::new(), false),
            None
        );
    }

    #[test]
    fn only_a_newer_position_is_issued() {
        let served = positions(&[("app.db", 9)]);
        let same = Token::from_pairs([("app.db", 9)]);
        let ahead = Token::from_pairs([("app.db", 12)]);
        let behind = Token::from_pairs([("app.db", 3)]);
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&same), &served, false),
            None
        );
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&ahead), &served, false),
            None
        );
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&behind), &served, false),
            Some(served)
        );
    }

    #[test]
    fn the_issued_token_never_goes_backwards_on_any_database() {
        let served = positions(&[("a.db", 9), ("b.db", 4)]);
        let client = Token::from_pairs([("a.db", 5), ("b.db", 7)]);
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&client), &served, false),
            Some(positions(&[("a.db", 9), ("b.db", 7)]))
        );
    }

    #[test]
    fn the_primary_replaces_a_token_no_node_will_reach() {
        let served = positions(&[("app.db", 9)]);
        let ahead = Token::from_pairs([("app.db", 12)]);
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&ahead), &served, true),
            Some(served)
        );
    }

    #[test]
    fn a_cookie_client_is_compared_on_the_database_it_carries() {
        // The cookie names the first database only: a second one that the client cannot carry
        // must not make every read set the cookie again.
        let served = positions(&[("a.db", 9), ("b.db", 4)]);
        let cookie = Token::from_pairs([("a.db", 9)]);
        assert_eq!(
            token_for_read(SessionMode::ReadsToo, Some(&cookie), &served, false),
            None
        );
    }
}
