//! The rules over the whole run, against the final ledger: lost, duplicated, replica-applied
//! and refused-but-applied writes, and phantom reads.

use std::collections::{HashMap, HashSet};

use super::{never_reached_an_app, Rule, Violation};
use crate::history::op::{show, History, Op, OpKind, Value};

/// Lost, duplicated, replica-applied writes and phantom reads, against the final ledger.
pub(super) fn check_ledger(history: &History, violations: &mut Vec<Violation>) {
    let mut count: HashMap<Value, usize> = HashMap::new();
    for entry in &history.applied {
        *count.entry(entry.value).or_default() += 1;
    }
    let writes: HashMap<Value, &Op> = history
        .ops
        .iter()
        .filter_map(|op| match op.kind {
            OpKind::Write { value, .. } => Some((value, op)),
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
        let (OpKind::Write { key, value, .. }, Some(failure)) = (&op.kind, &op.failure) else {
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
