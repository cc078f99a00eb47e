//! The checker on hand-made histories: each rule fires on a violating one and stays quiet on a
//! valid one.

use super::super::op::{Applied, History, Key, Op, OpKind, Value, WriteResult};
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
