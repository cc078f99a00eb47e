//! A circuit breaker per upstream: after repeated connect failures, requests fail fast for a
//! cool-off instead of each paying a connect timeout, then one probe request is let through.
//! The primary of a region that lost its network is the case it exists for (the incident).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::uri::Authority;

/// Breaker settings.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive connect failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker fails requests fast before letting a probe through.
    pub cool_off: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            cool_off: Duration::from_secs(2),
        }
    }
}

/// Whether a request may try to connect now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Go,
    /// Half-open: this request is the probe; its outcome closes or re-opens the breaker.
    Probe,
    /// Open: fail fast; the cool-off ends in this long.
    FailFast(Duration),
}

#[derive(Debug, Default)]
struct Entry {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Breakers keyed by upstream authority. The lock is held for a map lookup only; it is taken
/// on forwarded requests, never on local ones.
#[derive(Debug, Default)]
pub struct Breakers {
    config: BreakerConfig,
    entries: Mutex<HashMap<Authority, Entry>>,
}

impl Breakers {
    /// Breakers with these settings.
    pub fn new(config: BreakerConfig) -> Self {
        Breakers {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// May a request to `target` try now?
    pub fn admit(&self, target: &Authority) -> Admission {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = entries.get_mut(target) else {
            return Admission::Go;
        };
        match entry.open_until {
            None => Admission::Go,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Admission::FailFast(until - now)
                } else if entry.probing {
                    // One probe at a time; others keep failing fast until it reports.
                    Admission::FailFast(self.config.cool_off)
                } else {
                    entry.probing = true;
                    Admission::Probe
                }
            }
        }
    }

    /// The upstream answered (or accepted the connection): close the breaker.
    pub fn success(&self, target: &Authority) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(target) {
            if entry.open_until.is_some() {
                tracing::info!(upstream = %target, "upstream reachable again: circuit closed");
            }
            *entry = Entry::default();
        }
    }

    /// The upstreams whose breaker is open now (half-open included), sorted: what the history
    /// observer compares on its tick. Takes the lock once; never called on the request path.
    pub fn open_upstreams(&self) -> Vec<String> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut open: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.open_until.is_some())
            .map(|(target, _)| target.to_string())
            .collect();
        open.sort();
        open
    }

    /// The probe ended without a verdict (its client went away): let another probe through.
    pub fn release_probe(&self, target: &Authority) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(target) {
            entry.probing = false;
        }
    }

    /// A connection to the upstream could not be made, or it did not answer in time: count
    /// it, open after enough.
    pub fn failure(&self, target: &Authority) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(target.clone()).or_default();
        entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
        let was_open = entry.open_until.is_some();
        if entry.probing || entry.consecutive_failures >= self.config.failures {
            entry.open_until = Some(Instant::now() + self.config.cool_off);
            entry.probing = false;
            if !was_open {
                tracing::warn!(upstream = %target, cool_off_ms = self.config.cool_off.as_millis() as u64,
                    "upstream unreachable repeatedly: circuit open, failing fast");
            }
        }
    }
}

/// Held by the request that is the probe; if it ends without reporting success or failure
/// (its client disconnected), the breaker lets the next request probe instead of staying open.
#[derive(Debug)]
pub struct ProbeGuard<'a> {
    breakers: &'a Breakers,
    target: &'a Authority,
}

impl<'a> ProbeGuard<'a> {
    /// Guards the probe to `target`.
    pub fn new(breakers: &'a Breakers, target: &'a Authority) -> Self {
        ProbeGuard { breakers, target }
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.breakers.release_probe(self.target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Authority {
        Authority::from_static("primary:8080")
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cool_off() {
        let b = Breakers::new(BreakerConfig {
            failures: 2,
            cool_off: Duration::from_millis(30),
        });
        assert_eq!(b.admit(&target()), Admission::Go);
        b.failure(&target());
        assert_eq!(b.admit(&target()), Admission::Go);
        b.failure(&target());
        assert!(matches!(b.admit(&target()), Admission::FailFast(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(&target()), Admission::Probe);
        assert!(
            matches!(b.admit(&target()), Admission::FailFast(_)),
            "one probe at a time"
        );
        b.failure(&target());
        assert!(
            matches!(b.admit(&target()), Admission::FailFast(_)),
            "a failed probe re-opens"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(&target()), Admission::Probe);
        b.success(&target());
        assert_eq!(b.admit(&target()), Admission::Go);
    }

    #[test]
    fn an_abandoned_probe_does_not_keep_the_breaker_open() {
        let b = Breakers::new(BreakerConfig {
            failures: 1,
            cool_off: Duration::from_millis(10),
        });
        b.failure(&target());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.admit(&target()), Admission::Probe);
        drop(ProbeGuard::new(&b, &target()));
        assert_eq!(
            b.admit(&target()),
            Admission::Probe,
            "the next request probes"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breakers::new(BreakerConfig {
            failures: 2,
            cool_off: Duration::from_secs(60),
        });
        b.failure(&target());
        b.success(&target());
        b.failure(&target());
        assert_eq!(b.admit(&target()), Admission::Go);
    }
}
