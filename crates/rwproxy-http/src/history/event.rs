//! What one event says: its kind, its subjects (from, to, a message), a one-line summary for
//! people, and the structured log line every event also becomes (`rwproxy::event` target).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

/// The longest message an event keeps (bytes); longer ones are cut at a character boundary,
/// so that one event's size, and so the ring's, stays bounded.
pub const MAX_MESSAGE: usize = 240;

/// Every kind of event, named as in `/events` and the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The history started recording (the node started).
    Started,
    /// This node's role changed (`from` → `to`: primary, replica, unknown).
    RoleChanged,
    /// The primary this node follows changed from one node to another.
    PrimaryChanged,
    /// This node no longer knows a primary (`from` was the last one).
    PrimaryLost,
    /// This node knows a primary again (`to`) after knowing none.
    PrimaryFound,
    /// The health verdict changed (`from` → `to`; `message` says why).
    HealthChanged,
    /// Lag rose above `reads.max_lag`: reads leave this node (or are refused).
    LagOverReadsMax,
    /// Lag fell back under `reads.max_lag`.
    LagUnderReadsMax,
    /// Lag rose above `health.max_lag`.
    LagOverHealthMax,
    /// Lag fell back under `health.max_lag`.
    LagUnderHealthMax,
    /// The cluster source failed (`message`).
    SourceError,
    /// The cluster source reads again after failing.
    SourceRecovered,
    /// The circuit breaker to an upstream (`to`) opened: requests fail fast.
    BreakerOpen,
    /// The circuit breaker to an upstream (`to`) closed again.
    BreakerClosed,
    /// The node started draining (shutting down): health answers 503 `draining`.
    DrainStarted,
    /// The listener's TLS certificate was reloaded (or a reload failed: `message`).
    TlsReloaded,
    /// The configuration was reloaded (or a reload was refused: `message`).
    ConfigReloaded,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: [EventKind; 17] = [
        EventKind::Started,
        EventKind::RoleChanged,
        EventKind::PrimaryChanged,
        EventKind::PrimaryLost,
        EventKind::PrimaryFound,
        EventKind::HealthChanged,
        EventKind::LagOverReadsMax,
        EventKind::LagUnderReadsMax,
        EventKind::LagOverHealthMax,
        EventKind::LagUnderHealthMax,
        EventKind::SourceError,
        EventKind::SourceRecovered,
        EventKind::BreakerOpen,
        EventKind::BreakerClosed,
        EventKind::DrainStarted,
        EventKind::TlsReloaded,
        EventKind::ConfigReloaded,
    ];

    /// The kind's name in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::RoleChanged => "role-changed",
            EventKind::PrimaryChanged => "primary-changed",
            EventKind::PrimaryLost => "primary-lost",
            EventKind::PrimaryFound => "primary-found",
            EventKind::HealthChanged => "health-changed",
            EventKind::LagOverReadsMax => "lag-over-reads-max",
            EventKind::LagUnderReadsMax => "lag-under-reads-max",
            EventKind::LagOverHealthMax => "lag-over-health-max",
            EventKind::LagUnderHealthMax => "lag-under-health-max",
            EventKind::SourceError => "source-error",
            EventKind::SourceRecovered => "source-recovered",
            EventKind::BreakerOpen => "breaker-open",
            EventKind::BreakerClosed => "breaker-closed",
            EventKind::DrainStarted => "drain-started",
            EventKind::TlsReloaded => "tls-reloaded",
            EventKind::ConfigReloaded => "config-reloaded",
        }
    }

    /// `warn` for what takes traffic or safety away, `info` for the rest (see
    /// [`Happening::severity`] for the health verdict).
    pub fn severity(self) -> Severity {
        match self {
            EventKind::PrimaryLost
            | EventKind::LagOverReadsMax
            | EventKind::LagOverHealthMax
            | EventKind::SourceError
            | EventKind::BreakerOpen
            | EventKind::DrainStarted => Severity::Warn,
            _ => Severity::Info,
        }
    }
}

/// How much an event matters to an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal operation.
    Info,
    /// Something took traffic or safety away.
    Warn,
}

/// One thing that happened, before it is stored: a kind and its subjects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happening {
    /// What happened.
    pub kind: EventKind,
    /// The old value (a role, a primary, a verdict), when the kind has one.
    pub from: Option<Arc<str>>,
    /// The new value, or the subject (an upstream), when the kind has one.
    pub to: Option<Arc<str>>,
    /// Why, or details (a source's error, the lag and its limit); at most [`MAX_MESSAGE`] bytes.
    pub message: Option<Arc<str>>,
}

impl Happening {
    /// A happening with no subjects.
    pub fn new(kind: EventKind) -> Self {
        Happening {
            kind,
            from: None,
            to: None,
            message: None,
        }
    }

    /// With the old value.
    pub fn from(mut self, from: impl Into<Arc<str>>) -> Self {
        self.from = Some(from.into());
        self
    }

    /// With the new value or subject.
    pub fn to(mut self, to: impl Into<Arc<str>>) -> Self {
        self.to = Some(to.into());
        self
    }

    /// With a message, cut to [`MAX_MESSAGE`] bytes.
    pub fn message(mut self, message: &str) -> Self {
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.message = Some(Arc::from(&message[..end]));
        self
    }

    /// How much this one matters: its kind's severity, except that a health verdict turning
    /// away from `ok` and a TLS reload that failed (it carries the error) are warnings too.
    pub fn severity(&self) -> Severity {
        match self.kind {
            EventKind::HealthChanged if self.to.as_deref() != Some("ok") => Severity::Warn,
            EventKind::TlsReloaded if self.message.is_some() => Severity::Warn,
            kind => kind.severity(),
        }
    }

    /// One line for people: what the page's timeline and the log line say.
    pub fn summary(&self) -> String {
        let from = self.from.as_deref().unwrap_or("none");
        let to = self.to.as_deref().unwrap_or("none");
        let why = self.message.as_deref().unwrap_or("");
        match self.kind {
            EventKind::Started => format!("history started ({why})"),
            EventKind::RoleChanged => format!("role changed from {from} to {to}"),
            EventKind::PrimaryChanged => format!("primary changed from {from} to {to}"),
            EventKind::PrimaryLost => format!("lost the primary (was {from})"),
            EventKind::PrimaryFound => format!("primary found: {to}"),
            EventKind::HealthChanged => format!("health changed from {from} to {to} ({why})"),
            EventKind::LagOverReadsMax => format!("lag over reads.max_lag ({why})"),
            EventKind::LagUnderReadsMax => format!("lag back under reads.max_lag ({why})"),
            EventKind::LagOverHealthMax => format!("lag over health.max_lag ({why})"),
            EventKind::LagUnderHealthMax => format!("lag back under health.max_lag ({why})"),
            EventKind::SourceError => format!("cluster source failed: {why}"),
            EventKind::SourceRecovered => "cluster source reads again".to_owned(),
            EventKind::BreakerOpen => format!("circuit to {to} open: failing fast"),
            EventKind::BreakerClosed => format!("circuit to {to} closed"),
            EventKind::DrainStarted => "draining: health answers 503".to_owned(),
            EventKind::TlsReloaded if why.is_empty() => "TLS certificate reloaded".to_owned(),
            EventKind::TlsReloaded => format!("TLS certificate reload: {why}"),
            EventKind::ConfigReloaded if why.is_empty() => "configuration reloaded".to_owned(),
            EventKind::ConfigReloaded => format!("configuration reload: {why}"),
        }
    }

    /// Whether `other` is a repeat of this one (same kind and subjects): repeats coalesce.
    pub(crate) fn repeats(&self, other: &Happening) -> bool {
        self == other
    }
}

/// A stored event: a happening with its id, times and repeat count.
#[derive(Clone, Debug)]
pub struct Event {
    /// Increasing; a coalesced repeat moves the event to the front with a new id, so that a
    /// client following with `?since=<id>` sees it again.
    pub id: u64,
    /// The first occurrence.
    pub first_at: SystemTime,
    /// The latest occurrence.
    pub last_at: SystemTime,
    /// How many times it happened (1 unless repeats were coalesced).
    pub count: u32,
    /// What happened.
    pub what: Happening,
}

/// An event as `/events` serves it.
#[derive(Serialize)]
pub(crate) struct EventDoc<'a> {
    id: u64,
    at: String,
    first_at: String,
    count: u32,
    kind: EventKind,
    severity: Severity,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl<'a> From<&'a Event> for EventDoc<'a> {
    fn from(e: &'a Event) -> Self {
        EventDoc {
            id: e.id,
            at: rfc3339(e.last_at),
            first_at: rfc3339(e.first_at),
            count: e.count,
            kind: e.what.kind,
            severity: e.what.severity(),
            summary: e.what.summary(),
            from: e.what.from.as_deref(),
            to: e.what.to.as_deref(),
            message: e.what.message.as_deref(),
        }
    }
}

/// RFC 3339 in UTC with milliseconds, as `/events` writes times.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The event's log line. A coalesced repeat logs only at counts 2, 4, 8, ...: a flapping
/// source must not flood the log either, yet the log still shows that it keeps happening.
pub(crate) fn log(node: &str, event: &Event) {
    if !event.count.is_power_of_two() {
        return;
    }
    let what = &event.what;
    let kind = what.kind.as_str();
    let summary = what.summary();
    let from = what.from.as_deref();
    let to = what.to.as_deref();
    // `message` is tracing's own field (the summary): the event's message is `detail` here.
    let detail = what.message.as_deref();
    match what.severity() {
        Severity::Warn => tracing::warn!(
            target: "rwproxy::event",
            node, id = event.id, kind, count = event.count, from, to, detail,
            "{summary}"
        ),
        Severity::Info => tracing::info!(
            target: "rwproxy::event",
            node, id = event.id, kind, count = event.count, from, to, detail,
            "{summary}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_serde() {
        for kind in EventKind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap_or_default(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let h = Happening::new(EventKind::SourceError).message(&long);
        let kept = h.message.unwrap_or_else(|| Arc::from(""));
        assert!(kept.len() <= MAX_MESSAGE && kept.len() >= MAX_MESSAGE - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn summaries_name_both_ends_of_a_change() {
        let h = Happening::new(EventKind::PrimaryChanged).from("a").to("b");
        assert_eq!(h.summary(), "primary changed from a to b");
    }
}
