//! The bounded ring of events, with coalescing: a repeat of one of the last few events (same
//! kind and subjects, within a window) bumps that event's count and moves it to the front
//! instead of taking a new slot, so a flapping source is two lines with counts (its error and
//! its recovery), not a thousand.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::event::{Event, Happening};

/// How many of the newest events a new one is compared with for coalescing. A flap alternates
/// between a few states (error, recovered; lost, found; two verdicts), so a handful is enough.
pub const COALESCE_LOOKBACK: usize = 8;

/// A repeat older than this starts a new event: an incident an hour later is news again.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Which events a reader wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event kept.
    All,
    /// Events with an id above this one (the last one a follower saw).
    Id(u64),
    /// Events whose latest occurrence is after this time.
    Time(SystemTime),
}

impl Since {
    /// Parses `?since=`'s value: a decimal id or an RFC 3339 time.
    pub fn parse(text: &str) -> Result<Since, String> {
        if let Ok(id) = text.parse::<u64>() {
            return Ok(Since::Id(id));
        }
        parse_rfc3339(text)
            .map(Since::Time)
            .ok_or_else(|| format!("since: expected an event id or an RFC 3339 time, got {text:?}"))
    }

    fn admits(self, event: &Event) -> bool {
        match self {
            Since::All => true,
            Since::Id(id) => event.id > id,
            // Compared as written (milliseconds), so that following with the `at` of the
            // newest event seen does not return that event again.
            Since::Time(at) => whole_millis(event.last_at) > at,
        }
    }
}

/// `at` without its sub-millisecond part, as `/events` writes it.
fn whole_millis(at: SystemTime) -> SystemTime {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let sub_milli = since_epoch.subsec_nanos() % 1_000_000;
    at - Duration::from_nanos(u64::from(sub_milli))
}

/// An RFC 3339 time, `Z` or a numeric offset (`+02:00`); fractions of a second allowed.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    // humantime takes only UTC (and reads past a numeric offset): move the offset into the
    // time itself.
    let split = text
        .len()
        .checked_sub(6)
        .filter(|i| text.is_char_boundary(*i));
    let Some((base, offset)) = split.map(|i| text.split_at(i)) else {
        return humantime::parse_rfc3339_weak(text).ok();
    };
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return humantime::parse_rfc3339_weak(text).ok(),
    };
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let seconds = hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60;
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let offset = Duration::from_secs(seconds);
    if sign > 0 {
        local.checked_sub(offset)
    } else {
        local.checked_add(offset)
    }
}

/// A fixed number of events, newest at the back.
#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    next_id: u64,
    /// Events pushed out by newer ones since the start.
    dropped: u64,
}

impl Ring {
    /// An empty ring keeping at most `capacity` events (at least 1); the storage is allocated
    /// now, so the ring's memory does not grow later.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Ring {
            events: VecDeque::with_capacity(capacity),
            capacity,
            next_id: 1,
            dropped: 0,
        }
    }

    /// Records `what` at `now` and returns the stored event (new, or a coalesced repeat).
    pub fn record(&mut self, what: Happening, now: SystemTime) -> &Event {
        let id = self.next_id;
        self.next_id += 1;
        let repeat = self
            .events
            .iter()
            .rev()
            .take(COALESCE_LOOKBACK)
            .position(|e| {
                e.what.repeats(&what)
                    && now.duration_since(e.last_at).unwrap_or_default() <= COALESCE_WINDOW
            })
            .map(|from_back| self.events.len() - 1 - from_back);
        let event = match repeat.and_then(|i| self.events.remove(i)) {
            Some(mut earlier) => {
                earlier.id = id;
                earlier.last_at = now;
                earlier.count = earlier.count.saturating_add(1);
                earlier
            }
            None => {
                if self.events.len() == self.capacity {
                    self.events.pop_front();
                    self.dropped += 1;
                }
                Event {
                    id,
                    first_at: now,
                    last_at: now,
                    count: 1,
                    what,
                }
            }
        };
        self.events.push_back(event);
        // Just pushed, so never empty.
        &self.events[self.events.len() - 1]
    }

    /// The events `since` admits, newest first.
    pub fn newest_first(&self, since: Since) -> impl Iterator<Item = &Event> {
        self.events.iter().rev().filter(move |e| since.admits(e))
    }

    /// How many events the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events pushed out by newer ones since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The id the next event will get (so a follower starting now can use `since=<this - 1>`).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::event::EventKind;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn error(msg: &str) -> Happening {
        Happening::new(EventKind::SourceError).message(msg)
    }

    #[test]
    fn a_flapping_source_is_two_lines_with_counts() {
        let mut ring = Ring::new(16);
        for i in 0..1000 {
            ring.record(error("mount gone"), at(i));
            ring.record(Happening::new(EventKind::SourceRecovered), at(i));
        }
        let events: Vec<_> = ring.newest_first(Since::All).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].what.kind, EventKind::SourceRecovered);
        assert_eq!(events[0].count, 1000);
        assert_eq!(events[1].count, 1000);
        assert_eq!(events[1].first_at, at(0));
        assert_eq!(events[1].last_at, at(999));
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn different_subjects_do_not_coalesce() {
        let mut ring = Ring::new(16);
        ring.record(error("a"), at(0));
        ring.record(error("b"), at(1));
        assert_eq!(ring.newest_first(Since::All).count(), 2);
    }

    #[test]
    fn a_repeat_after_the_window_is_news() {
        let mut ring = Ring::new(16);
        ring.record(error("a"), at(0));
        ring.record(error("a"), at(COALESCE_WINDOW.as_secs() + 1));
        assert_eq!(ring.newest_first(Since::All).count(), 2);
    }

    #[test]
    fn a_repeat_beyond_the_lookback_is_news() {
        let mut ring = Ring::new(64);
        ring.record(error("first"), at(0));
        for i in 0..COALESCE_LOOKBACK {
            ring.record(error(&format!("other {i}")), at(1));
        }
        ring.record(error("first"), at(2));
        assert_eq!(ring.newest_first(Since::All).count(), COALESCE_LOOKBACK + 2);
    }

    #[test]
    fn the_oldest_event_leaves_when_full() {
        let mut ring = Ring::new(3);
        for i in 0..5 {
            ring.record(error(&format!("e{i}")), at(i));
        }
        let messages: Vec<_> = ring
            .newest_first(Since::All)
            .filter_map(|e| e.what.message.as_deref().map(str::to_owned))
            .collect();
        assert_eq!(messages, ["e4", "e3", "e2"]);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.capacity(), 3);
    }

    #[test]
    fn since_follows_by_id_and_by_time() {
        let mut ring = Ring::new(8);
        ring.record(error("a"), at(0));
        ring.record(error("b"), at(10));
        let last = ring.last_id();
        ring.record(error("c"), at(20));
        let after_id: Vec<_> = ring.newest_first(Since::Id(last)).collect();
        assert_eq!(after_id.len(), 1);
        let after_time = ring.newest_first(Since::Time(at(5))).count();
        assert_eq!(after_time, 2);
        // A repeat moves its event past a follower's id again.
        ring.record(error("a"), at(30));
        let ids: Vec<_> = ring.newest_first(Since::Id(last + 1)).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].count, 2);
        // The newest event's own time, as written (milliseconds), admits nothing more.
        ring.record(error("d"), at(35) + Duration::from_micros(1500));
        let written = at(35) + Duration::from_millis(1);
        assert_eq!(ring.newest_first(Since::Time(written)).count(), 0);
    }

    #[test]
    fn since_parses_ids_and_times_and_refuses_the_rest() {
        assert_eq!(Since::parse("42"), Ok(Since::Id(42)));
        assert_eq!(Since::parse("2023-11-14T22:13:20Z"), Ok(Since::Time(at(0))));
        assert_eq!(
            Since::parse("2023-11-15T00:13:20.000+02:00"),
            Ok(Since::Time(at(0)))
        );
        assert_eq!(
            Since::parse("2023-11-14T21:13:20-01:00"),
            Ok(Since::Time(at(0)))
        );
        assert!(Since::parse("yesterday").is_err());
        assert!(Since::parse("2023-11-14T21:13:20*01:00").is_err());
    }
}
