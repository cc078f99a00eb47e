//! Strict parsers for the exact bytes LiteFS serves in its mount. Pure: no IO.
//!
//! Anything that is not what LiteFS writes is rejected, because a misread here can make a
//! replica believe it is primary. The one tolerance everywhere is a missing trailing newline.

use std::sync::Arc;

/// The `.lag` value LiteFS writes while the node is not ready (`math.MaxInt32`).
pub(crate) const LAG_NOT_READY: i64 = 2_147_483_647;

/// Longest `.primary` content accepted (a DNS name is at most 253 bytes).
pub(crate) const MAX_PRIMARY_LEN: usize = 255;

/// Length of a `-pos` file without its newline: `%016x/%016x`.
const POS_LEN: usize = 33;

/// What a `.lag` file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lag {
    /// The `+2147483647` sentinel: initial sync not done, or the lease was just lost.
    NotReady,
    /// Milliseconds since the replica last heard from the primary, exactly as written (zero on
    /// the primary, possibly negative with clock skew on a replica).
    Millis(i64),
}

/// Why a file's bytes are not what LiteFS writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FormatError(pub(crate) &'static str);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn strip_newline(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\n").unwrap_or(raw)
}

/// Parses `.lag`: LiteFS prints `%+010d\n` (a sign and nine digits) and declares the file 11
/// bytes long, so a ten-digit value (the sentinel) loses its newline. Accepted: a sign, nine or
/// ten ASCII digits, an optional newline.
pub(crate) fn parse_lag(raw: &[u8]) -> Result<Lag, FormatError> {
    let body = strip_newline(raw);
    let Some((&sign, digits)) = body.split_first() else {
        return Err(FormatError("empty"));
    };
    let negative = match sign {
        b'+' => false,
        b'-' => true,
        _ => return Err(FormatError("expected a leading + or -")),
    };
    if !(digits.len() == 9 || digits.len() == 10) {
        return Err(FormatError("expected a sign and 9 or 10 digits"));
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(FormatError("expected a sign and 9 or 10 digits"));
        }
        // At most ten digits: cannot overflow an i64.
        value = value * 10 + i64::from(d - b'0');
    }
    if negative {
        if value == 0 {
            // printf never writes "-0"; taken as zero it would read as a primary's lag.
            return Err(FormatError("negative zero"));
        }
        return Ok(Lag::Millis(-value));
    }
    if value == LAG_NOT_READY {
        return Ok(Lag::NotReady);
    }
    Ok(Lag::Millis(value))
}

/// Parses a `<db>-pos` file (`%016x/%016x\n`, TXID then checksum, lowercase hex as LiteFS writes
/// it) into the TXID, the position.
pub(crate) fn parse_pos(raw: &[u8]) -> Result<u64, FormatError> {
    let body = strip_newline(raw);
    if body.len() != POS_LEN {
        return Err(FormatError("expected 16 hex digits, '/', 16 hex digits"));
    }
    let (txid, rest) = body.split_at(16);
    let Some((b'/', checksum)) = rest.split_first() else {
        return Err(FormatError("expected '/' after the TXID"));
    };
    if !checksum.iter().all(is_lower_hex) {
        return Err(FormatError("checksum is not 16 lowercase hex digits"));
    }
    parse_hex16(txid).ok_or(FormatError("TXID is not 16 lowercase hex digits"))
}

fn is_lower_hex(b: &u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

fn parse_hex16(digits: &[u8]) -> Option<u64> {
    if digits.len() != 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(v))
    })
}

/// Parses `.primary` (the primary's hostname and a newline) into the primary's name: trimmed,
/// non-empty, UTF-8, at most [`MAX_PRIMARY_LEN`] bytes, with no inner whitespace or control
/// characters (it becomes part of the URL writes are forwarded to).
pub(crate) fn parse_primary(raw: &[u8]) -> Result<Arc<str>, FormatError> {
    let text = std::str::from_utf8(raw).map_err(|_| FormatError("not UTF-8"))?;
    let name = text.trim();
    if name.is_empty() {
        return Err(FormatError("empty primary name"));
    }
    if name.len() > MAX_PRIMARY_LEN {
        return Err(FormatError("primary name too long"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FormatError(
            "primary name contains whitespace or control characters",
        ));
    }
    Ok(Arc::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What LiteFS's `fmt.Sprintf("%+010d\n", v)` produces, cut to the declared 11 bytes.
    fn litefs_lag(v: i64) -> Vec<u8> {
        let mut s = format!("{v:+010}\n").into_bytes();
        s.truncate(11);
        s
    }

    #[test]
    fn lag_as_litefs_writes_it() {
        assert_eq!(litefs_lag(0), b"+000000000\n");
        assert_eq!(parse_lag(&litefs_lag(0)), Ok(Lag::Millis(0)));
        assert_eq!(parse_lag(&litefs_lag(1234)), Ok(Lag::Millis(1234)));
        assert_eq!(parse_lag(&litefs_lag(-15)), Ok(Lag::Millis(-15)));
        assert_eq!(litefs_lag(LAG_NOT_READY), b"+2147483647");
        assert_eq!(parse_lag(&litefs_lag(LAG_NOT_READY)), Ok(Lag::NotReady));
        assert_eq!(
            parse_lag(&litefs_lag(1_000_000_001)),
            Ok(Lag::Millis(1_000_000_001))
        );
    }

    #[test]
    fn lag_tolerates_newline_either_way() {
        assert_eq!(parse_lag(b"+000000042"), Ok(Lag::Millis(42)));
        assert_eq!(parse_lag(b"+2147483647\n"), Ok(Lag::NotReady));
        // The ten-digit spelling some notes use for zero is unambiguous.
        assert_eq!(parse_lag(b"+0000000000\n"), Ok(Lag::Millis(0)));
        assert_eq!(parse_lag(b"-000000007\n"), Ok(Lag::Millis(-7)));
    }

    #[test]
    fn lag_rejects_everything_else() {
        for bad in [
            &b""[..],
            b"\n",
            b"0000000000\n",
            b"000000000\n",
            b" +00000000\n",
            b"+00000000\n",
            b"+00000000000\n",
            b"+0000000001\n\n",
            b"+00000000a\n",
            b"+000000000 \n",
            b"+000000000\r\n",
            b"-000000000\n",
            b"--00000001\n",
            b"+-00000001\n",
            b"garbage!!!\n",
        ] {
            assert!(
                parse_lag(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pos_valid() {
        assert_eq!(
            parse_pos(b"00000000002df417/ce552e44f23fbbdd\n"),
            Ok(0x2df417)
        );
        assert_eq!(parse_pos(b"0000000000000000/0000000000000000"), Ok(0));
        assert_eq!(
            parse_pos(b"ffffffffffffffff/0123456789abcdef\n"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn pos_rejects_everything_else() {
        for bad in [
            &b""[..],
            b"\n",
            b"00000000002DF417/ce552e44f23fbbdd\n",
            b"00000000002df417/CE552E44F23FBBDD\n",
            b"00000000002df417-ce552e44f23fbbdd\n",
            b"0000000002df417/ce552e44f23fbbdd\n",
            b"00000000002df417/ce552e44f23fbbdd0\n",
            b"00000000002df417/ce552e44f23fbbdd\n\n",
            b" 0000000002df417/ce552e44f23fbbdd\n",
            b"+0000000002df417/ce552e44f23fbbdd\n",
            b"00000000002df41g/ce552e44f23fbbdd\n",
            b"00000000002df417/ce552e44f23fbbdz\n",
            b"00000000002df417\n",
            b"garbage garbage garbage garbage!!\n",
        ] {
            assert!(
                parse_pos(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn primary_with_and_without_newline() {
        assert_eq!(parse_primary(b"node-1\n").as_deref(), Ok("node-1"));
        assert_eq!(parse_primary(b"node-1").as_deref(), Ok("node-1"));
        assert_eq!(
            parse_primary(b"e784079b449383.vm.app.internal\n").as_deref(),
            Ok("e784079b449383.vm.app.internal")
        );
    }

    #[test]
    fn primary_names_up_to_the_limit_are_accepted() {
        let longest = "a".repeat(MAX_PRIMARY_LEN);
        assert_eq!(
            parse_primary(format!("{longest}\n").as_bytes()).as_deref(),
            Ok(longest.as_str())
        );
    }

    #[test]
    fn format_errors_say_what_is_wrong() {
        let text = |e: Result<Lag, FormatError>| e.map_err(|e| e.to_string());
        assert_eq!(text(parse_lag(b"")), Err("empty".to_owned()));
        assert_eq!(
            text(parse_lag(b"-000000000\n")),
            Err("negative zero".to_owned())
        );
    }

    #[test]
    fn primary_rejects_empty_and_odd_names() {
        let long = vec![b'a'; MAX_PRIMARY_LEN + 1];
        for bad in [
            &b""[..],
            b"\n",
            b"  \n",
            b"two words\n",
            b"tab\there\n",
            b"\xff\xfe\n",
            b"nul\0\n",
            &long,
        ] {
            assert!(
                parse_primary(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
