//! The rules within one session: read-your-writes, monotonic reads, writes-follow-reads.

use std::collections::{HashMap, HashSet};

use super::{Rule, Violation};
use crate::history::op::{show, History, Key, Op, Value};

/// Read-your-writes and monotonic reads within one session, in session order.
pub(super) fn check_session(ops: &[&Op], violations: &mut Vec<Violation>) {
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

/// Writes-follow-reads: per session, an acknowledged write's place in the timeline is after
/// every value the session read before it.
pub(super) fn check_write_order(history: &History, violations: &mut Vec<Violation>) {
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
