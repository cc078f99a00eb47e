//! One recorded operation of a client session, and the history a run produces.

use std::fmt;

/// A key of the ledger (each key holds a list of values).
pub type Key = u32;
/// A value appended to a key's list; unique across the whole run.
pub type Value = u64;

/// One operation as a client saw it: which session, which node it was sent to, when it started
/// and ended (microseconds since the run began), what it was and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The session (one client with its own cookie jar; its operations run one at a time).
    pub session: usize,
    /// Position of the operation within its session.
    pub index: usize,
    /// The node the client sent it to.
    pub node: usize,
    /// When the client sent it.
    pub start_us: u64,
    /// When the answer (or the failure) came back.
    pub end_us: u64,
    /// What it was and how it ended.
    pub kind: OpKind,
    /// Why it failed, when it did: `"<status> <rwproxy-error code>"` or `"no answer"`.
    pub failure: Option<String>,
}

/// What an operation was, with its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Append `value` to `key`'s list.
    Write {
        key: Key,
        value: Value,
        result: WriteResult,
    },
    /// Read `key`'s list as the serving node sees it; `None` when the read failed.
    Read {
        key: Key,
        values: Option<Vec<Value>>,
    },
}

/// How a write ended, as the client knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// A 2xx answer: the write must be applied, exactly once.
    Acked,
    /// Another status: it may or may not have been applied (never twice).
    Failed(u16),
    /// No answer at all (connection refused or reset, timeout): unknown.
    Unknown,
}

/// One entry of the replicated ledger after the run: the single timeline every node follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub key: Key,
    pub value: Value,
    /// The node whose app applied it.
    pub node: usize,
    /// Whether that node held the write lease (was the primary) when it applied it.
    pub lease_holder: bool,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every operation of every session.
    pub ops: Vec<Op>,
    /// The ledger's timeline at the end of the run.
    pub applied: Vec<Applied>,
}

impl Op {
    /// Whether this is a write the client saw acknowledged.
    pub fn acked_write(&self) -> Option<(Key, Value)> {
        match self.kind {
            OpKind::Write {
                key,
                value,
                result: WriteResult::Acked,
            } => Some((key, value)),
            _ => None,
        }
    }

    /// A read that answered: its key and the values it saw.
    pub fn read_values(&self) -> Option<(Key, &[Value])> {
        match &self.kind {
            OpKind::Read {
                key,
                values: Some(values),
            } => Some((*key, values)),
            _ => None,
        }
    }
}

/// Shows a value as `session:n` (the `n`th write of that session): what [`unique_value`]
/// packed into the number.
///
/// [`unique_value`]: super::client::unique_value
pub fn show(value: Value) -> String {
    format!("{}:{}", value >> 32, value & 0xffff_ffff)
}

/// Shows a list of values, shortened past a dozen (the count stays visible).
struct Values<'a>(&'a [Value]);

impl fmt::Display for Values<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let show = |f: &mut fmt::Formatter<'_>, part: &[Value]| {
            let text: Vec<String> = part.iter().map(|x| show(*x)).collect();
            write!(f, "{}", text.join(" "))
        };
        if v.len() <= 12 {
            write!(f, "[")?;
            show(f, v)?;
            return write!(f, "]");
        }
        write!(f, "[")?;
        show(f, &v[..4])?;
        write!(f, " ... ({} values) ... ", v.len())?;
        show(f, &v[v.len() - 4..])?;
        write!(f, "]")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "session {} op {:>4} node {} [{:>10.3} ms .. {:>10.3} ms] ",
            self.session,
            self.index,
            self.node,
            ms(self.start_us),
            ms(self.end_us)
        )?;
        match &self.kind {
            OpKind::Write { key, value, result } => {
                let result = match result {
                    WriteResult::Acked => "acked (2xx)".to_owned(),
                    WriteResult::Failed(status) => format!("failed ({status})"),
                    WriteResult::Unknown => "no answer".to_owned(),
                };
                write!(f, "write k{key} += {} -> {result}", show(*value))
            }
            OpKind::Read {
                key,
                values: Some(values),
            } => write!(f, "read  k{key} -> {}", Values(values)),
            OpKind::Read { key, values: None } => write!(f, "read  k{key} -> failed"),
        }
    }
}
