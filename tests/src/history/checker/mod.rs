//! The history checker: verifies the session guarantees on a recorded [`History`] and explains
//! each violation with the few operations that show it.
//!
//! Per session (operations of one session never overlap, so "before" is "earlier in the
//! session"):
//! * read-your-writes: a read sees every write of its session acknowledged before it started;
//! * monotonic reads: a read sees every value an earlier read of its session saw (the same key);
//! * writes-follow-reads: an acknowledged write lands in the timeline after every value an
//!   earlier read of its session saw (any key);
//!
//! and over the whole run:
//! * no acknowledged write is lost, no write is applied twice, none is applied by a node that
//!   did not hold the write lease (a replica), and none that rwproxy refused with a code promising
//!   it reached no app (docs/operations.md) is applied;
//! * every value read was written (and is in the ledger).

mod ledger;
mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use super::op::{History, Op};

/// The rule a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    ReadYourWrites,
    MonotonicReads,
    WritesFollowReads,
    LostWrite,
    DuplicateWrite,
    AppliedOnReplica,
    RefusedButApplied,
    PhantomRead,
}

/// `rwproxy-error` codes that promise the request reached no app (docs/operations.md).
pub(super) const NEVER_REACHED_AN_APP: &[&str] = &[
    "no-primary",
    "primary-unreachable",
    "consistency-timeout",
    "stale",
    "not-ready",
    "draining",
    "loop",
    "bad-request",
    "too-large",
    "overloaded",
];

/// Whether `failure` (`"<status> <code>"`) is a refusal that promises the request reached no app.
pub(super) fn never_reached_an_app(failure: &str) -> bool {
    failure
        .split_once(' ')
        .is_some_and(|(_, code)| NEVER_REACHED_AN_APP.contains(&code))
}

/// One broken rule, with the minimal history that shows it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub rule: Rule,
    /// What went wrong, in one line.
    pub what: String,
    /// The operations involved, in session order.
    pub ops: Vec<Op>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}: {}", self.rule, self.what)?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Checks every rule; the caller decides which rules its configuration promises.
pub fn check(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut sessions: HashMap<usize, Vec<&Op>> = HashMap::new();
    for op in &history.ops {
        sessions.entry(op.session).or_default().push(op);
    }
    let mut ids: Vec<_> = sessions.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let mut ops = sessions.remove(&id).unwrap_or_default();
        ops.sort_by_key(|op| op.index);
        session::check_session(&ops, &mut violations);
    }
    ledger::check_ledger(history, &mut violations);
    session::check_write_order(history, &mut violations);
    violations
}

/// How many violations of each rule.
pub fn tally(violations: &[Violation]) -> HashMap<Rule, usize> {
    let mut counts = HashMap::new();
    for v in violations {
        *counts.entry(v.rule).or_default() += 1;
    }
    counts
}
