//! PostgreSQL timelines and tokens whose write a failover lost.
//!
//! With asynchronous replication a failover can drop the last writes the old primary
//! acknowledged: the promoted replica starts a new timeline at the point its replay reached
//! (the *switch point*), and the old timeline's WAL past that point exists nowhere else. The new
//! primary's LSN soon passes such a token's LSN without containing its write, so a plain LSN
//! comparison would let the read through to a silently stale answer.
//!
//! A token therefore carries the timeline its write was on, as an optional companion to the LSN
//! ([`TimelineMark`], the `rwproxy-timeline` header). Tokens without it (issued before this, or
//! by a source without timelines) stay readable: nothing can be said about them, and they are
//! compared by LSN alone as before.
//!
//! A token's write is on the current timeline's history when its timeline is the current one,
//! or when it is an ancestor and the token's LSN is at or before the point where the history
//! left that timeline. [`History`] holds those switch points, parsed from PostgreSQL's
//! `.history` file when the monitoring role may read it, or built from switches the source saw
//! itself (see [`History::observe_switch`]), which bounds the switch point from above only and so
//! detects fewer lost tokens, never a kept one as lost. The source publishes it as
//! [`crate::NodeState::timeline`].

use std::fmt;

/// Longest `rwproxy-timeline` value accepted: 8 hex digits, as PostgreSQL prints timelines in
/// WAL file names.
const MARK_DIGITS: usize = 8;

/// The timeline a token's write was on (PostgreSQL's `TimeLineID`, 1 and up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelineMark(pub u32);

impl TimelineMark {
    /// Parses the `rwproxy-timeline` header value: 1 to 8 hex digits, not zero (no timeline 0
    /// exists). Anything else is `None`, ignored like any malformed token.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.is_empty()
            || value.len() > MARK_DIGITS
            || !value.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        match u32::from_str_radix(value, 16) {
            Ok(0) | Err(_) => None,
            Ok(tli) => Some(TimelineMark(tli)),
        }
    }
}

impl fmt::Display for TimelineMark {
    /// Eight uppercase hex digits, as in a WAL file name (`00000002`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

/// Where a timeline ended: the history left `timeline` for a child at `switch_lsn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The parent timeline.
    pub timeline: u32,
    /// The first LSN that belongs to the child timeline; the parent's WAL from here on is not in
    /// the current history.
    pub switch_lsn: u64,
}

/// The current timeline and the switch points of its ancestors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The timeline the server runs on now; 0 while unknown.
    pub current: u32,
    /// Ancestor timelines, oldest first.
    pub switches: Vec<Switch>,
}

/// What the history says of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The write is on the current history (or nothing can be said: no mark, unknown history).
    Kept,
    /// The token names a timeline newer than this server's: the server has not caught up with
    /// that failover yet; compare LSNs (the wait decides).
    Ahead,
    /// The write was on an ancestor timeline past the point the history left it: a failover
    /// lost it.
    Lost {
        /// The token's timeline.
        timeline: u32,
        /// Where the history left it.
        switch_lsn: u64,
    },
}

impl History {
    /// A history with no known ancestors, at `current`.
    pub fn from_current(current: u32) -> Self {
        History {
            current,
            switches: Vec::new(),
        }
    }

    /// Parses a PostgreSQL timeline history file (`0000000N.history`, as `pg_read_file` returns
    /// it) for `current` = N. Each line is `parentTLI<TAB>switchpoint<TAB>reason`; blank lines
    /// and `#` comments are skipped. `None` when a line does not parse: a wrong history must not
    /// call a kept write lost.
    pub fn parse(current: u32, text: &str) -> Option<Self> {
        let mut switches = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let timeline = fields.next()?.parse::<u32>().ok()?;
            let switch_lsn = parse_lsn(fields.next()?)?;
            if timeline == 0 || timeline >= current {
                return None;
            }
            switches.push(Switch {
                timeline,
                switch_lsn,
            });
        }
        Some(History { current, switches })
    }

    /// Folds in a timeline change the source saw itself: the server was last seen on `from` and
    /// now runs on `to`, its first position seen on `to` being `first_seen`. The real switch
    /// point is at or before `first_seen`, so recording `first_seen` only misses tokens between
    /// the two, never flags a kept one. A switch already known (from a history file) is kept.
    pub fn observe_switch(&mut self, from: u32, to: u32, first_seen: u64) {
        if from == 0 || to <= from {
            self.current = self.current.max(to);
            return;
        }
        if !self.switches.iter().any(|s| s.timeline == from) {
            self.switches.push(Switch {
                timeline: from,
                switch_lsn: first_seen,
            });
            self.switches.sort_by_key(|s| s.timeline);
        }
        self.current = to;
    }

    /// Whether a token at (`mark`, `lsn`) is on the current history.
    pub fn verdict(&self, mark: Option<TimelineMark>, lsn: u64) -> Verdict {
        let Some(TimelineMark(timeline)) = mark else {
            return Verdict::Kept;
        };
        if self.current == 0 {
            return Verdict::Kept;
        }
        match timeline.cmp(&self.current) {
            std::cmp::Ordering::Equal => return Verdict::Kept,
            std::cmp::Ordering::Greater => return Verdict::Ahead,
            std::cmp::Ordering::Less => {}
        }
        match self.switches.iter().find(|s| s.timeline == timeline) {
            Some(s) if lsn > s.switch_lsn => Verdict::Lost {
                timeline,
                switch_lsn: s.switch_lsn,
            },
            // On the history up to its switch point, or a timeline this history does not
            // name (a sibling branch, or a switch not seen): nothing certain to report.
            _ => Verdict::Kept,
        }
    }
}

/// Parses PostgreSQL's text form of an LSN, `X/Y` (two hex numbers of up to 8 digits), into the
/// 64-bit WAL position `X << 32 | Y`: the number tokens carry.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let part = |p: &str| {
        // An empty part is refused by `from_str_radix`; the guard refuses what it would take
        // and an LSN never has: a sign, or more than 8 digits (leading zeros).
        if p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(p, 16).ok()
    };
    Some((u64::from(part(high)?) << 32) | u64::from(part(low)?))
}

/// The timeline in a WAL file name (`pg_walfile_name(...)`: 24 hex digits, the first 8 the
/// timeline), which is how a monitoring role reads a primary's current timeline exactly.
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&name[..MARK_DIGITS], 16)
        .ok()
        .filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history file PostgreSQL 15 writes on a second promotion.
    const HISTORY_3: &str = "1\t0/3000148\tno recovery target specified\n\n\
                             2\t0/5000A08\tno recovery target specified\n";

    #[test]
    fn marks_parse_and_print_as_wal_file_names_do() {
        assert_eq!(TimelineMark::parse("00000002"), Some(TimelineMark(2)));
        assert_eq!(TimelineMark::parse(" 1a "), Some(TimelineMark(0x1a)));
        assert_eq!(
            TimelineMark::parse("FFFFFFFF"),
            Some(TimelineMark(u32::MAX))
        );
        for bad in ["", "0", "00000000", "000000001", "-1", "+1", "g", "1 2"] {
            assert_eq!(TimelineMark::parse(bad), None, "{bad:?}");
        }
        assert_eq!(TimelineMark(2).to_string(), "00000002");
        assert_eq!(TimelineMark(0xab).to_string(), "000000AB");
    }

    #[test]
    fn history_files_parse_with_their_switch_points() {
        let h = History::parse(3, HISTORY_3).expect("parses");
        assert_eq!(h.current, 3);
        assert_eq!(
            h.switches,
            vec![
                Switch {
                    timeline: 1,
                    switch_lsn: 0x300_0148
                },
                Switch {
                    timeline: 2,
                    switch_lsn: 0x500_0A08
                },
            ]
        );
        assert_eq!(History::parse(1, ""), Some(History::from_current(1)));
        for bad in [
            "x\t0/1\treason",
            "1\tzz\treason",
            "1",
            "0\t0/1\tr",
            "3\t0/1\tr",
        ] {
            assert_eq!(History::parse(3, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_write_past_its_timelines_switch_point_is_lost() {
        let h = History::parse(3, HISTORY_3).expect("parses");
        let mark = |t| Some(TimelineMark(t));
        assert_eq!(h.verdict(mark(3), u64::MAX), Verdict::Kept);
        assert_eq!(
            h.verdict(mark(1), 0x300_0148),
            Verdict::Kept,
            "at the switch"
        );
        assert_eq!(
            h.verdict(mark(1), 0x300_0149),
            Verdict::Lost {
                timeline: 1,
                switch_lsn: 0x300_0148
            }
        );
        assert_eq!(h.verdict(mark(2), 0x500_0A08), Verdict::Kept);
        assert!(matches!(
            h.verdict(mark(2), 0x600_0000),
            Verdict::Lost { timeline: 2, .. }
        ));
        assert_eq!(h.verdict(mark(4), 1), Verdict::Ahead);
        assert_eq!(h.verdict(None, u64::MAX), Verdict::Kept, "old tokens");
        assert_eq!(
            History::default().verdict(mark(1), u64::MAX),
            Verdict::Kept,
            "unknown history says nothing"
        );
    }

    #[test]
    fn observed_switches_bound_from_above_and_yield_to_the_file() {
        let mut h = History::from_current(1);
        h.observe_switch(1, 1, 0x100);
        assert_eq!(h.current, 1);
        assert!(h.switches.is_empty());
        h.observe_switch(1, 2, 0x400_0000);
        assert_eq!(h.current, 2);
        let mark = Some(TimelineMark(1));
        assert_eq!(h.verdict(mark, 0x400_0000), Verdict::Kept);
        assert!(matches!(h.verdict(mark, 0x400_0001), Verdict::Lost { .. }));
        // The file's exact point wins over an observed bound.
        let mut exact = History::parse(2, "1\t0/3000148\tr\n").expect("parses");
        exact.observe_switch(1, 2, 0x400_0000);
        assert_eq!(exact.switches.len(), 1);
        assert_eq!(exact.switches[0].switch_lsn, 0x300_0148);
        // Never seen before: no switch can be recorded.
        let mut fresh = History::default();
        fresh.observe_switch(0, 2, 5);
        assert_eq!(fresh, History::from_current(2));
    }

    #[test]
    fn lsns_parse_as_postgres_prints_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/3000060"), Some(0x300_0060));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "/0",
            "0/",
            "0/+1",
            "1/2/3",
            " 0/0",
            "100000000/0",
            "0/100000000",
            "000000001/0",
            "+1/0",
            "g/0",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wal_file_names_give_the_timeline() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A00000001000000FF"), Some(10));
        for bad in [
            "",
            "00000002",
            "000000000000000000000003",
            "g00000020000000000000003",
        ] {
            assert_eq!(timeline_of_walfile(bad), None, "{bad:?}");
        }
    }
}
