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

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::op::{show, History, Key, Op, Value};

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
const NEVER_REACHED_AN_APP: &[&str] = &[
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
fn never_reached_an_app(failure: &str) -> bool {
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
        check_session(&ops, &mut violations);
    }
    check_ledger(history, &mut violations);
    check_write_order(history, &mut violations);
    violations
}

/// Writes-follow-reads: per session, an acknowledged write's place in the timeline is after
/// every value the session read before it.
fn check_write_order(history: &History, violations: &mut Vec<Violation>) {
    let place: HashMap<Value, usize> = history
        .applied
        .iter()
        .enumerate()
        .map(|(i, entry)| (entry.value, i))
        .collect();
    let mut ops: Vec<&Op> = history.ops.iter().collect();
    ops.sort_by_key(|op| (op.session, op.index));
    // Per session: the latest timeline place any read has seen, and that read.
    let mut latest: HashMap<usize, (usize, Value, &Op)> = HashMap::new();
    for op in ops {
        if let Some((_, values)) = op.read_values() {
            for v in values {
                let Some(&at) = place.get(v) else { continue };
                let entry = latest.entry(op.session).or_insert((at, *v, op));
                if at > entry.0 {
                    *entry = (at, *v, op);
                }
            }
            continue;
        }
        let Some((key, value)) = op.acked_write() else {
            continue;
        };
        let (Some(&at), Some(&(seen_at, seen, read))) =
            (place.get(&value), latest.get(&op.session))
        else {
            continue;
        };
        if at < seen_at {
            violations.push(Violation {
                rule: Rule::WritesFollowReads,
                what: format!(
                    "session {}: write k{key} += {} landed before {}, which the session had read",
                    op.session,
                    show(value),
                    show(seen)
                ),
                ops: vec![read.clone(), op.clone()],
            });
        }
    }
}

/// Read-your-writes and monotonic reads within one session, in session order.
fn check_session(ops: &[&Op], violations: &mut Vec<Violation>) {
    // Per key: acknowledged writes so far, and which read first saw each value.
    let mut acked: HashMap<Key, Vec<(Value, &Op)>> = HashMap::new();
    let mut seen: HashMap<Key, Vec<(Value, &Op)>> = HashMap::new();
    for op in ops {
        if let Some((key, value)) = op.acked_write() {
            acked.entry(key).or_default().push((value, op));
            continue;
        }
        let Some((key, values)) = op.read_values() else {
            continue;
        };
        let got: HashSet<Value> = values.iter().copied().collect();
        if let Some((value, write)) = acked
            .get(&key)
            .and_then(|w| w.iter().find(|(v, _)| !got.contains(v)))
        {
            violations.push(Violation {
                rule: Rule::ReadYourWrites,
                what: format!(
                    "session {}: read of k{key} misses {}, written and acknowledged before it",
                    op.session,
                    show(*value)
                ),
                ops: vec![(*write).clone(), (*op).clone()],
            });
        }
        let earlier = seen.entry(key).or_default();
        if let Some((value, read)) = earlier.iter().find(|(v, _)| !got.contains(v)) {
            violations.push(Violation {
                rule: Rule::MonotonicReads,
                what: format!(
                    "session {}: read of k{key} misses {}, which an earlier read saw",
                    op.session,
                    show(*value)
                ),
                ops: vec![(*read).clone(), (*op).clone()],
            });
        }
        let known: HashSet<Value> = earlier.iter().map(|(v, _)| *v).collect();
        earlier.extend(
            values
                .iter()
                .filter(|v| !known.contains(v))
                .map(|v| (*v, *op)),
        );
    }
}

/// Lost, duplicated, replica-applied writes and phantom reads, against the final ledger.
fn check_ledger(history: &History, violations: &mut Vec<Violation>) {
    let mut count: HashMap<Value, usize> = HashMap::new();
    for entry in &history.applied {
        *count.entry(entry.value).or_default() += 1;
    }
    let writes: HashMap<Value, &Op> = history
        .ops
        .iter()
        .filter_map(|op| match op.kind {
            super::op::OpKind::Write { value, .. } => Some((value, op)),
            _ => None,
        })
        .collect();
    let involved = |value: &Value| {
        writes
            .get(value)
            .map(|op| (*op).clone())
            .into_iter()
            .collect()
    };
    for op in &history.ops {
        if let Some((key, value)) = op.acked_write() {
            if !count.contains_key(&value) {
                violations.push(Violation {
                    rule: Rule::LostWrite,
                    what: format!(
                        "write k{key} += {} was acknowledged but is not in the ledger",
                        show(value)
                    ),
                    ops: vec![op.clone()],
                });
            }
        }
    }
    for op in &history.ops {
        let (super::op::OpKind::Write { key, value, .. }, Some(failure)) = (&op.kind, &op.failure)
        else {
            continue;
        };
        if never_reached_an_app(failure) && count.contains_key(value) {
            violations.push(Violation {
                rule: Rule::RefusedButApplied,
                what: format!(
                    "write k{key} += {} was refused ({failure}: it reached no app) but is in the ledger",
                    show(*value)
                ),
                ops: vec![op.clone()],
            });
        }
    }
    let mut reported = HashSet::new();
    for entry in &history.applied {
        if count.get(&entry.value).is_some_and(|n| *n > 1) && reported.insert(entry.value) {
            violations.push(Violation {
                rule: Rule::DuplicateWrite,
                what: format!(
                    "{} is in the ledger {} times",
                    entry.value, count[&entry.value]
                ),
                ops: involved(&entry.value),
            });
        }
        if !entry.lease_holder {
            violations.push(Violation {
                rule: Rule::AppliedOnReplica,
                what: format!(
                    "{} was applied by node {}, which did not hold the write lease",
                    show(entry.value),
                    entry.node
                ),
                ops: involved(&entry.value),
            });
        }
    }
    for op in &history.ops {
        let Some((key, values)) = op.read_values() else {
            continue;
        };
        if let Some(value) = values.iter().find(|v| !count.contains_key(v)) {
            let mut ops = vec![op.clone()];
            ops.extend(involved(value));
            violations.push(Violation {
                rule: Rule::PhantomRead,
                what: format!(
                    "read of k{key} saw {}, which is not in the ledger",
                    show(*value)
                ),
                ops,
            });
        }
    }
}

/// How many violations of each rule.
pub fn tally(violations: &[Violation]) -> HashMap<Rule, usize> {
    let mut counts = HashMap::new();
    for v in violations {
        *counts.entry(v.rule).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::super::op::{Applied, OpKind, WriteResult};
    use super::*;

    /// Session `session`'s operations, one per millisecond, all on node 0.
    fn session(session: usize, kinds: Vec<OpKind>) -> Vec<Op> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Op {
                session,
                index,
                node: 0,
                start_us: (index as u64) * 1000,
                end_us: (index as u64) * 1000 + 500,
                kind,
                failure: None,
            })
            .collect()
    }

    fn write(key: Key, value: Value) -> OpKind {
        OpKind::Write {
            key,
            value,
            result: WriteResult::Acked,
        }
    }

    fn failed_write(key: Key, value: Value) -> OpKind {
        OpKind::Write {
            key,
            value,
            result: WriteResult::Failed(503),
        }
    }

    fn read(key: Key, values: &[Value]) -> OpKind {
        OpKind::Read {
            key,
            values: Some(values.to_vec()),
        }
    }

    fn ledger(entries: &[(Key, Value)]) -> Vec<Applied> {
        entries
            .iter()
            .map(|&(key, value)| Applied {
                key,
                value,
                node: 0,
                lease_holder: true,
            })
            .collect()
    }

    fn rules(history: &History) -> Vec<Rule> {
        check(history).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_valid_history_passes() {
        let mut ops = session(0, vec![write(1, 10), read(1, &[10]), write(1, 11)]);
        ops.extend(session(
            1,
            vec![
                read(1, &[]),
                read(1, &[10]),
                failed_write(1, 12),
                read(1, &[10, 11]),
                OpKind::Read {
                    key: 1,
                    values: None,
                },
            ],
        ));
        let history = History {
            ops,
            applied: ledger(&[(1, 10), (1, 11)]),
        };
        assert_eq!(rules(&history), vec![]);
    }

    #[test]
    fn a_read_missing_an_acknowledged_write_of_its_session_breaks_read_your_writes() {
        let history = History {
            ops: session(0, vec![write(1, 10), read(1, &[])]),
            applied: ledger(&[(1, 10)]),
        };
        let violations = check(&history);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].rule, Rule::ReadYourWrites);
        assert_eq!(violations[0].ops.len(), 2, "the write and the read");
        let text = violations[0].to_string();
        assert!(text.contains("misses 0:10"), "{text}");
    }

    #[test]
    fn a_failed_write_promises_nothing_to_later_reads() {
        let history = History {
            ops: session(0, vec![failed_write(1, 10), read(1, &[])]),
            applied: ledger(&[]),
        };
        assert_eq!(rules(&history), vec![]);
    }

    #[test]
    fn a_read_going_backwards_breaks_monotonic_reads() {
        let mut ops = session(0, vec![write(1, 10)]);
        ops.extend(session(1, vec![read(1, &[10]), read(2, &[]), read(1, &[])]));
        let history = History {
            ops,
            applied: ledger(&[(1, 10)]),
        };
        let violations = check(&history);
        assert_eq!(
            violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![Rule::MonotonicReads]
        );
        assert_eq!(violations[0].ops[0].index, 0, "the earlier read");
        assert_eq!(violations[0].ops[1].index, 2, "the later read");
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_ledger_is_lost() {
        let history = History {
            ops: session(0, vec![write(1, 10), failed_write(1, 11)]),
            applied: ledger(&[]),
        };
        assert_eq!(rules(&history), vec![Rule::LostWrite]);
    }

    #[test]
    fn a_value_applied_twice_is_a_duplicate() {
        let history = History {
            ops: session(0, vec![failed_write(1, 10)]),
            applied: ledger(&[(1, 10), (1, 10)]),
        };
        assert_eq!(rules(&history), vec![Rule::DuplicateWrite]);
    }

    #[test]
    fn a_value_applied_without_the_lease_was_applied_on_a_replica() {
        let mut applied = ledger(&[(1, 10)]);
        applied[0].lease_holder = false;
        applied[0].node = 2;
        let history = History {
            ops: session(0, vec![write(1, 10)]),
            applied,
        };
        assert_eq!(rules(&history), vec![Rule::AppliedOnReplica]);
    }

    #[test]
    fn a_write_refused_as_never_sent_must_not_be_applied() {
        let mut ops = session(0, vec![failed_write(1, 10), failed_write(1, 11)]);
        ops[0].failure = Some("503 primary-unreachable".into());
        ops[1].failure = Some("502 primary-failed".into());
        let history = History {
            ops,
            applied: ledger(&[(1, 10), (1, 11)]),
        };
        let violations = check(&history);
        assert_eq!(
            violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![Rule::RefusedButApplied]
        );
        assert_eq!(violations[0].ops[0].index, 0, "only the refused one");
    }

    #[test]
    fn a_write_ordered_before_what_its_session_read_breaks_writes_follow_reads() {
        let mut ops = session(0, vec![write(1, 10)]);
        ops.extend(session(1, vec![read(1, &[10]), write(2, 20)]));
        let valid = History {
            ops: ops.clone(),
            applied: ledger(&[(1, 10), (2, 20)]),
        };
        assert_eq!(rules(&valid), vec![]);
        let reordered = History {
            ops,
            applied: ledger(&[(2, 20), (1, 10)]),
        };
        let violations = check(&reordered);
        assert_eq!(
            violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![Rule::WritesFollowReads]
        );
        assert_eq!(violations[0].ops.len(), 2, "the read and the write");
    }

    #[test]
    fn a_value_nobody_wrote_is_a_phantom() {
        let history = History {
            ops: session(0, vec![read(1, &[99])]),
            applied: ledger(&[]),
        };
        assert_eq!(rules(&history), vec![Rule::PhantomRead]);
    }
}
