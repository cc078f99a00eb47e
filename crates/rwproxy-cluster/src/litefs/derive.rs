//! From what the LiteFS files (and `/info`) say to a [`NodeState`]. Pure: the role table lives
//! here so it can be tested row by row.

use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Positions, Role};

use super::files::Lag;

/// One consistent read of the mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileSnapshot {
    /// `.primary`'s name; `None` when the file does not exist.
    pub(crate) primary: Option<Arc<str>>,
    /// `.lag`.
    pub(crate) lag: Lag,
    /// The TXID of each configured database.
    pub(crate) positions: Positions,
}

/// The role table:
///
/// | `.primary` | `.lag`            | role    | primary | lag        | ready |
/// |------------|-------------------|---------|---------|------------|-------|
/// | name       | sentinel          | replica | name    | None       | false |
/// | name       | ms                | replica | name    | max(ms, 0) | true  |
/// | absent     | sentinel          | replica | None    | None       | false |
/// | absent     | exactly 0         | primary | node    | 0          | true  |
/// | absent     | other ms (< or >) | replica | None    | max(ms, 0) | true  |
///
/// Only an exact zero claims Primary: LiteFS writes zero on the primary, so a negative value
/// (clock skew) comes from a replica that has lost its primary and must never take writes.
pub(crate) fn derive(node: &Arc<str>, snap: FileSnapshot) -> NodeState {
    let (role, primary, lag, ready) = match (snap.primary, snap.lag) {
        (Some(name), Lag::NotReady) => (Role::Replica, Some(name), None, false),
        (Some(name), Lag::Millis(ms)) => (Role::Replica, Some(name), Some(clamp(ms)), true),
        (None, Lag::NotReady) => (Role::Replica, None, None, false),
        (None, Lag::Millis(0)) => (
            Role::Primary,
            Some(node.clone()),
            Some(Duration::ZERO),
            true,
        ),
        (None, Lag::Millis(ms)) => (Role::Replica, None, Some(clamp(ms)), true),
    };
    NodeState {
        role,
        primary,
        positions: snap.positions,
        lag,
        ready,
        problem: None,
        ..NodeState::default()
    }
}

fn clamp(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// What LiteFS's `GET /info` says about the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Info {
    /// `isPrimary`.
    pub(crate) is_primary: bool,
    /// `primary.hostname`, when present and non-empty.
    pub(crate) primary: Option<Arc<str>>,
}

/// Applies `/info` to a state derived from the files. Only a Primary claim is checked: `/info`
/// can veto it but never grant it. `info` is `Err(reason)` when `/info` could not be fetched.
pub(crate) fn confirm(node: &Arc<str>, files: NodeState, info: Result<&Info, &str>) -> NodeState {
    if files.role != Role::Primary {
        return files;
    }
    match info {
        Ok(info) if info.is_primary => files,
        Ok(Info {
            primary: Some(other),
            ..
        }) if other != node => NodeState {
            // Mid hand-off: the files have not caught up with the lease yet. Follow the
            // primary /info names; how far behind it this node is, nobody has said.
            role: Role::Replica,
            primary: Some(other.clone()),
            positions: files.positions,
            lag: None,
            ready: files.ready,
            problem: None,
            ..NodeState::default()
        },
        Ok(_) => NodeState::unknown(
            "litefs files say primary but the litefs api says not primary and names no other primary",
        ),
        Err(reason) => NodeState::unknown(format!(
            "litefs files say primary but the litefs api cannot confirm it: {reason}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(primary: Option<&str>, lag: Lag) -> FileSnapshot {
        FileSnapshot {
            primary: primary.map(Arc::from),
            lag,
            positions: Positions::from([(Arc::from("app.db"), 7)]),
        }
    }

    fn node() -> Arc<str> {
        Arc::from("me")
    }

    type Row = (
        Option<&'static str>,
        Lag,
        Role,
        Option<&'static str>,
        Option<u64>,
        bool,
    );

    #[test]
    fn role_table() {
        let ms = Lag::Millis;
        let rows: [Row; 8] = [
            (
                Some("p"),
                Lag::NotReady,
                Role::Replica,
                Some("p"),
                None,
                false,
            ),
            (
                Some("p"),
                ms(250),
                Role::Replica,
                Some("p"),
                Some(250),
                true,
            ),
            (Some("p"), ms(0), Role::Replica, Some("p"), Some(0), true),
            (Some("p"), ms(-20), Role::Replica, Some("p"), Some(0), true),
            (None, Lag::NotReady, Role::Replica, None, None, false),
            (None, ms(0), Role::Primary, Some("me"), Some(0), true),
            (None, ms(90_000), Role::Replica, None, Some(90_000), true),
            (None, ms(-3), Role::Replica, None, Some(0), true),
        ];
        for (primary, lag, role, want_primary, want_lag, ready) in rows {
            let s = derive(&node(), snap(primary, lag));
            let row = format!("{primary:?} {lag:?}");
            assert_eq!(s.role, role, "{row}");
            assert_eq!(s.primary.as_deref(), want_primary, "{row}");
            assert_eq!(s.lag, want_lag.map(Duration::from_millis), "{row}");
            assert_eq!(s.ready, ready, "{row}");
            assert_eq!(s.position("app.db"), Some(7), "{row}");
            assert!(s.problem.is_none(), "{row}");
        }
    }

    fn primary_state() -> NodeState {
        derive(&node(), snap(None, Lag::Millis(0)))
    }

    #[test]
    fn info_confirms_or_vetoes_a_primary_claim() {
        let yes = Info {
            is_primary: true,
            primary: None,
        };
        assert_eq!(confirm(&node(), primary_state(), Ok(&yes)), primary_state());

        let other = Info {
            is_primary: false,
            primary: Some("p2".into()),
        };
        let vetoed = confirm(&node(), primary_state(), Ok(&other));
        assert_eq!(vetoed.role, Role::Replica);
        assert_eq!(vetoed.primary.as_deref(), Some("p2"));
        assert_eq!(vetoed.lag, None);
        assert_eq!(vetoed.position("app.db"), Some(7));

        let nobody = Info {
            is_primary: false,
            primary: None,
        };
        assert_eq!(
            confirm(&node(), primary_state(), Ok(&nobody)).role,
            Role::Unknown
        );
        let itself = Info {
            is_primary: false,
            primary: Some("me".into()),
        };
        assert_eq!(
            confirm(&node(), primary_state(), Ok(&itself)).role,
            Role::Unknown
        );

        let failed = confirm(&node(), primary_state(), Err("cannot connect"));
        assert_eq!(failed.role, Role::Unknown);
        assert!(failed
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("cannot connect"));
    }

    #[test]
    fn info_never_promotes_a_replica() {
        let yes = Info {
            is_primary: true,
            primary: Some("me".into()),
        };
        let replica = derive(&node(), snap(Some("p"), Lag::Millis(5)));
        assert_eq!(confirm(&node(), replica.clone(), Ok(&yes)), replica);
        let lost = derive(&node(), snap(None, Lag::Millis(5)));
        assert_eq!(confirm(&node(), lost.clone(), Ok(&yes)), lost);
    }
}
