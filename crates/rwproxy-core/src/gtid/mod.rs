//! GTID sets of MySQL and MariaDB: parsing the servers' text, comparing, and the one number a
//! token carries.
//!
//! Both flavours become one shape, a set of transaction numbers per stream:
//! * **MariaDB** positions (`gtid_binlog_pos`, `gtid_slave_pos`, `gtid_current_pos`) are
//!   `domain-server-seq[,...]`, one entry per replication domain, and mean "every transaction of
//!   that domain up to `seq`": domain `d` becomes the stream `d` with the interval `1-seq`. The
//!   server id is not part of the comparison (MariaDB's own `MASTER_GTID_WAIT` ignores it too).
//! * **MySQL** sets (`gtid_executed`) are `uuid:interval[:interval...][,...]` with intervals
//!   `n` or `n-m`, and since MySQL 8.3 optional tags (`uuid:tag:1-5`); the stream is the
//!   lowercase UUID (with `:tag` when tagged).
//!
//! Parsing is strict and bounded: anything else is `None`, never a panic.

use std::collections::BTreeMap;
use std::fmt;

#[cfg(test)]
mod tests;

/// Longest text accepted (a MySQL server with a long failover history prints one UUID per
/// former primary).
pub const MAX_TEXT_LEN: usize = 65_536;
/// Most intervals one set may hold, all streams together.
pub const MAX_INTERVALS: usize = 4096;

/// A set of GTIDs: per stream (MariaDB domain, MySQL source UUID), disjoint, sorted, non-adjacent
/// inclusive intervals of transaction numbers (never 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet {
    streams: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Which server wrote a GTID text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `domain-server-seq` positions.
    MariaDb,
    /// `uuid:interval` sets.
    MySql,
}

impl GtidSet {
    /// Parses a MariaDB position or a MySQL set, whichever `text` is. An empty (or all blank)
    /// text is the empty set, as servers print it before their first transaction.
    pub fn parse(text: &str) -> Option<GtidSet> {
        let first = text.split(',').map(str::trim).find(|p| !p.is_empty());
        match first {
            Some(part) if part.contains(':') => Self::parse_as(text, Flavor::MySql),
            _ => Self::parse_as(text, Flavor::MariaDb),
        }
    }

    /// Parses `text` as `flavor` writes it.
    pub fn parse_as(text: &str, flavor: Flavor) -> Option<GtidSet> {
        if text.len() > MAX_TEXT_LEN {
            return None;
        }
        let mut set = GtidSet::default();
        let mut intervals = 0usize;
        let mut domains_seen: Vec<String> = Vec::new();
        if text.trim().is_empty() {
            return Some(set);
        }
        for part in text.split(',') {
            let part = part.trim();
            match flavor {
                Flavor::MariaDb => {
                    let (domain, seq) = parse_mariadb_entry(part)?;
                    // One entry per domain: a second one is not something a server prints.
                    if domains_seen.contains(&domain) {
                        return None;
                    }
                    domains_seen.push(domain.clone());
                    intervals += 1;
                    if intervals > MAX_INTERVALS {
                        return None;
                    }
                    if seq > 0 {
                        set.streams.insert(domain, vec![(1, seq)]);
                    }
                }
                Flavor::MySql => {
                    for (stream, ranges) in parse_mysql_entry(part)? {
                        // Checked before merging: merging is what costs.
                        intervals += ranges.len();
                        if intervals > MAX_INTERVALS {
                            return None;
                        }
                        let slot = set.streams.entry(stream).or_default();
                        for range in ranges {
                            insert(slot, range);
                        }
                    }
                }
            }
        }
        Some(set)
    }

    /// True when every GTID of `other` is in this set.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.streams.iter().all(|(stream, wanted)| {
            let have = self.streams.get(stream).map_or(&[][..], Vec::as_slice);
            wanted.iter().all(|w| covered(have, *w))
        })
    }

    /// Every GTID of either set.
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        for (stream, ranges) in &other.streams {
            let slot = out.streams.entry(stream.clone()).or_default();
            for range in ranges {
                insert(slot, *range);
            }
        }
        out
    }

    /// How many transactions the set holds (saturating): the one number a token carries.
    ///
    /// On a replica that commits in its primary's order, holding at least as many transactions
    /// as the primary held after a write means holding that write (see `docs/mysql.md`).
    pub fn count(&self) -> u64 {
        self.streams
            .values()
            .flatten()
            .fold(0u64, |sum, (lo, hi)| sum.saturating_add(hi - lo + 1))
    }

    /// True when the set holds no GTID.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

impl fmt::Display for GtidSet {
    /// MySQL's spelling, `stream:lo-hi[:lo-hi],...` (a MariaDB domain prints as `0:1-42`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stream, ranges)) in self.streams.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(stream)?;
            for (lo, hi) in ranges {
                if lo == hi {
                    write!(f, ":{lo}")?;
                } else {
                    write!(f, ":{lo}-{hi}")?;
                }
            }
        }
        Ok(())
    }
}

/// True when `range` lies inside one of the sorted, disjoint `have` intervals.
fn covered(have: &[(u64, u64)], (lo, hi): (u64, u64)) -> bool {
    // The only candidate is the last interval starting at or before `lo`.
    let after = have.partition_point(|(start, _)| *start <= lo);
    after > 0 && have[after - 1].1 >= hi
}

/// Adds `range` to sorted, disjoint, non-adjacent `slot`, merging what it touches.
fn insert(slot: &mut Vec<(u64, u64)>, (mut lo, mut hi): (u64, u64)) {
    // Intervals wholly before `range`, not even adjacent, stay; so do those wholly after it.
    let start = slot.partition_point(|(_, end)| end.saturating_add(1) < lo);
    let end = slot.partition_point(|(begin, _)| *begin <= hi.saturating_add(1));
    for (a, b) in &slot[start..end] {
        lo = lo.min(*a);
        hi = hi.max(*b);
    }
    slot.splice(start..end, [(lo, hi)]);
}

/// `domain-server-seq`, three decimal numbers (domain and server 32-bit, seq 64-bit).
fn parse_mariadb_entry(part: &str) -> Option<(String, u64)> {
    let mut fields = part.split('-');
    let domain: u32 = decimal(fields.next()?)?;
    let _server: u32 = decimal(fields.next()?)?;
    let seq: u64 = decimal(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    Some((domain.to_string(), seq))
}

/// A stream's name and its intervals, as one MySQL entry lists them.
type Stream = (String, Vec<(u64, u64)>);

/// `uuid[:tag]:interval[:interval...]` (tags may repeat, each owning the intervals after it).
fn parse_mysql_entry(part: &str) -> Option<Vec<Stream>> {
    let mut fields = part.split(':');
    let uuid = parse_uuid(fields.next()?.trim())?;
    let mut out: Vec<Stream> = vec![(uuid.clone(), Vec::new())];
    for field in fields {
        let field = field.trim();
        if is_tag(field) {
            out.push((format!("{uuid}:{}", field.to_ascii_lowercase()), Vec::new()));
            continue;
        }
        let range = parse_interval(field)?;
        out.last_mut()?.1.push(range);
    }
    // A tagged-only entry (`uuid:tag:1-5`) has no untagged intervals; otherwise a UUID or tag
    // with no interval is not a set (MySQL prints none).
    if out.len() > 1 && out[0].1.is_empty() {
        out.remove(0);
    }
    if out.iter().any(|(_, ranges)| ranges.is_empty()) {
        return None;
    }
    Some(out)
}

/// `n` or `n-m` with `1 <= n <= m`.
fn parse_interval(field: &str) -> Option<(u64, u64)> {
    let (lo, hi) = match field.split_once('-') {
        Some((lo, hi)) => (decimal(lo)?, decimal(hi)?),
        None => {
            let n = decimal(field)?;
            (n, n)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// A MySQL tag: a letter or `_`, then up to 31 letters, digits or `_`.
fn is_tag(field: &str) -> bool {
    let mut bytes = field.bytes();
    let starts = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    starts && field.len() <= 32 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// 8-4-4-4-12 hex digits, returned in lowercase.
fn parse_uuid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let fits = groups.len() == shape.len()
        && groups
            .iter()
            .zip(shape)
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()));
    fits.then(|| text.to_ascii_lowercase())
}

/// Plain decimal digits (no sign, no blanks, at most 20 digits) that fit `T`. (`str::parse`
/// alone would take a leading `+`; it rejects an empty text by itself.)
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
