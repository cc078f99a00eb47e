//! The client's consistency token: the replication positions its last write produced.
//!
//! Two spellings travel between client and proxy:
//! * the LiteFS-compatible cookie `__txid=<16 lowercase hex digits>`: the TXID of the first
//!   configured database (so cookies issued by the LiteFS built-in proxy keep working);
//! * the header `rwproxy-position: <db>=<16 hex>[,<db>=<16 hex>...]`: every configured database.
//!
//! Parsing is strict and bounded; anything malformed yields `None` and is ignored by the caller,
//! never an error.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::Positions;

/// Longest header token accepted; a longer one is treated as malformed.
pub const MAX_HEADER_LEN: usize = 4096;
/// Most databases one token may name.
pub const MAX_ENTRIES: usize = 64;

/// Positions a read must wait for, per database.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Token {
    entries: Vec<(Arc<str>, u64)>,
}

impl Token {
    /// A token from explicit pairs (tests and tooling).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        Token {
            entries: pairs.into_iter().map(|(d, p)| (Arc::from(d), p)).collect(),
        }
    }

    /// The `(database, position)` pairs of this token.
    pub fn entries(&self) -> &[(Arc<str>, u64)] {
        &self.entries
    }

    /// Parses a `__txid` cookie value (exactly 16 hex digits, as LiteFS writes it) as a
    /// position of `first_db`.
    pub fn from_cookie(value: &str, first_db: &Arc<str>) -> Option<Self> {
        let txid = parse_hex16(value.trim())?;
        Some(Token {
            entries: vec![(first_db.clone(), txid)],
        })
    }

    /// Parses the `rwproxy-position` header value.
    pub fn from_header(value: &str) -> Option<Self> {
        if value.len() > MAX_HEADER_LEN {
            return None;
        }
        let mut entries = Vec::new();
        for part in value.split(',') {
            let (db, pos) = part.trim().split_once('=')?;
            let db = db.trim();
            if db.is_empty() || entries.len() == MAX_ENTRIES {
                return None;
            }
            entries.push((Arc::from(db), parse_hex16(pos.trim())?));
        }
        Some(Token { entries })
    }

    /// The `__txid` cookie value for `first_db`'s position.
    pub fn cookie_value(positions: &Positions, first_db: &str) -> Option<String> {
        positions.get(first_db).map(|txid| format!("{txid:016x}"))
    }

    /// The `rwproxy-position` header value covering every database in `positions`.
    pub fn header_value(positions: &Positions) -> String {
        let mut out = String::with_capacity(positions.len() * 24);
        for (i, (db, txid)) in positions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Writing into a String cannot fail.
            let _ = write!(out, "{db}={txid:016x}");
        }
        out
    }

    /// True when `positions` is behind this token for some database it knows.
    pub fn is_ahead_of(&self, positions: &Positions) -> bool {
        self.entries
            .iter()
            .any(|(db, want)| positions.get(db.as_ref()).is_some_and(|have| have < want))
    }
}

/// Exactly 16 hex digits, either case (LiteFS writes lowercase).
fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(p: &[(&str, u64)]) -> Positions {
        p.iter().map(|(d, v)| (Arc::from(*d), *v)).collect()
    }

    #[test]
    fn cookie_accepts_exactly_sixteen_hex_digits() {
        let db: Arc<str> = Arc::from("app.db");
        assert_eq!(
            Token::from_cookie("000000000000002a", &db),
            Some(Token::from_pairs([("app.db", 42)]))
        );
        assert_eq!(
            Token::from_cookie("000000000000002A", &db).map(|t| t.entries[0].1),
            Some(42)
        );
        for bad in [
            "2a",
            "",
            "000000000000002g",
            "0000000000000002a",
            "-00000000000002a",
            "+00000000000002a",
        ] {
            assert_eq!(Token::from_cookie(bad, &db), None, "{bad:?}");
        }
    }

    #[test]
    fn header_round_trips_every_database() {
        let p = positions(&[("a.db", 1), ("b.db", u64::MAX)]);
        let value = Token::header_value(&p);
        assert_eq!(value, "a.db=0000000000000001,b.db=ffffffffffffffff");
        let t = Token::from_header(&value).expect("parses");
        assert_eq!(t, Token::from_pairs([("a.db", 1), ("b.db", u64::MAX)]));
        assert_eq!(
            Token::from_header(" a.db = 0000000000000001 "),
            Some(Token::from_pairs([("a.db", 1)]))
        );
    }

    #[test]
    fn malformed_headers_are_rejected_whole() {
        for bad in [
            "",
            "a.db",
            "a.db=1",
            "=0000000000000001",
            "a.db=0000000000000001,",
            "a.db=00000000000000011",
        ] {
            assert_eq!(Token::from_header(bad), None, "{bad:?}");
        }
        let huge = vec!["a=0000000000000001"; MAX_ENTRIES + 1].join(",");
        assert_eq!(Token::from_header(&huge), None);
        let long = "a".repeat(MAX_HEADER_LEN + 1);
        assert_eq!(Token::from_header(&long), None);
    }

    #[test]
    fn header_limits_are_inclusive() {
        // Exactly MAX_ENTRIES entries parse; one more does not.
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("d{i}")).collect();
        let entry = |n: &String| format!("{n}=0000000000000001");
        let most = names[..MAX_ENTRIES].iter().map(entry).collect::<Vec<_>>();
        let token = Token::from_header(&most.join(",")).expect("MAX_ENTRIES entries");
        assert_eq!(token.entries().len(), MAX_ENTRIES);
        let over = names.iter().map(entry).collect::<Vec<_>>();
        assert_eq!(Token::from_header(&over.join(",")), None);

        // Exactly MAX_HEADER_LEN bytes parse (a long database name); one more byte does not.
        let at_limit = |len: usize| format!("{}=0000000000000001", "d".repeat(len - 17));
        let longest = at_limit(MAX_HEADER_LEN);
        assert_eq!(longest.len(), MAX_HEADER_LEN);
        assert!(Token::from_header(&longest).is_some());
        assert_eq!(Token::from_header(&at_limit(MAX_HEADER_LEN + 1)), None);
    }

    #[test]
    fn header_value_of_no_positions_is_empty() {
        assert_eq!(Token::header_value(&Positions::new()), "");
        assert_eq!(
            Token::header_value(&positions(&[("a.db", 0xab)])),
            "a.db=00000000000000ab"
        );
    }

    #[test]
    fn cookie_value_is_sixteen_lowercase_hex() {
        let p = positions(&[("app.db", 0xabc)]);
        assert_eq!(
            Token::cookie_value(&p, "app.db").as_deref(),
            Some("0000000000000abc")
        );
        assert_eq!(Token::cookie_value(&p, "missing.db"), None);
    }

    #[test]
    fn ahead_ignores_unknown_databases() {
        let p = positions(&[("a.db", 5)]);
        assert!(Token::from_pairs([("a.db", 6)]).is_ahead_of(&p));
        assert!(!Token::from_pairs([("a.db", 5)]).is_ahead_of(&p));
        assert!(!Token::from_pairs([("zz.db", 500)]).is_ahead_of(&p));
    }
}
