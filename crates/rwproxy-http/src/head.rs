//! One walk over a request's header fields, made once by the admission layer, that tells the
//! hygiene checks, admission and the consistency layer what each would otherwise look up in
//! the header map on its own.
//!
//! Every `HeaderMap` lookup hashes the name and probes the table (50–100 instructions); a
//! proxied GET made eight of them for headers it almost never has (a second `Host`,
//! `Transfer-Encoding`, rwproxy's forwarding marker and secret, the token header, `Cookie`).
//! Comparing each field's name once against the few that matter costs a few instructions per
//! field, and the lookups then happen only where a field is actually there.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::upstream::headers::{FORWARDED_BY, FORWARD_SECRET};

/// What the walk found.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadFacts<'a> {
    /// The first `Host` value.
    pub host: Option<&'a HeaderValue>,
    /// How many `Host` fields there are.
    pub hosts: usize,
    /// A `Transfer-Encoding` field is present.
    pub transfer_encoding: bool,
    /// The first `Content-Length` value (hyper refuses differing ones).
    pub content_length: Option<&'a HeaderValue>,
    /// Some field name contains `_` (see [`crate::hygiene::drop_underscored_headers`]).
    pub underscored_names: bool,
    /// rwproxy's forwarded-by marker is present.
    pub forwarded_by: bool,
    /// rwproxy's forwarding secret is present.
    pub forward_secret: bool,
    /// A `Cookie` or the position token header is present: the request may carry a token.
    pub token_carrier: bool,
}

impl<'a> HeadFacts<'a> {
    /// Walks `headers` once; `token_header` is `consistency.header` (`None`: only `Cookie`
    /// counts as a token carrier).
    pub fn scan(headers: &'a HeaderMap, token_header: Option<&HeaderName>) -> Self {
        let mut facts = HeadFacts::default();
        for (name, value) in headers {
            // Standard names compare as one byte each: the common fields cost little.
            if name == header::HOST {
                facts.hosts += 1;
                facts.host.get_or_insert(value);
            } else if name == header::CONTENT_LENGTH {
                facts.content_length.get_or_insert(value);
            } else if name == header::TRANSFER_ENCODING {
                facts.transfer_encoding = true;
            } else if name == header::COOKIE {
                facts.token_carrier = true;
            } else {
                let text = name.as_str().as_bytes();
                if text.contains(&b'_') {
                    facts.underscored_names = true;
                }
                if token_header.is_some_and(|t| t == name) {
                    facts.token_carrier = true;
                } else if text.starts_with(b"rwproxy-") {
                    facts.forwarded_by |= name == FORWARDED_BY;
                    facts.forward_secret |= name == FORWARD_SECRET;
                }
            }
        }
        facts
    }

    /// Whether rwproxy's own forwarding headers are present (they are removed before a
    /// request reaches an app).
    pub fn internal_headers(&self) -> bool {
        self.forwarded_by || self.forward_secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn scan(h: &HeaderMap) -> HeadFacts<'_> {
        HeadFacts::scan(h, Some(&HeaderName::from_static("rwproxy-position")))
    }

    #[test]
    fn an_ordinary_head_has_one_host_and_nothing_else() {
        let h = map(&[("host", "a"), ("accept", "*/*"), ("x-trace-id", "1")]);
        let f = scan(&h);
        assert_eq!(f.hosts, 1);
        assert_eq!(f.host.map(|v| v.as_bytes()), Some(&b"a"[..]));
        assert!(!f.transfer_encoding && !f.underscored_names && !f.token_carrier);
        assert!(!f.internal_headers());
        assert_eq!(f.content_length, None);
    }

    #[test]
    fn every_field_that_matters_is_seen() {
        let h = map(&[
            ("host", "a"),
            ("host", "b"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("x_forwarded_for", "1.2.3.4"),
            ("rwproxy-forwarded-by", "n1"),
        ]);
        let f = scan(&h);
        assert_eq!(f.hosts, 2);
        assert_eq!(f.host.map(|v| v.as_bytes()), Some(&b"a"[..]), "the first");
        assert_eq!(f.content_length.map(|v| v.as_bytes()), Some(&b"5"[..]));
        assert!(f.transfer_encoding && f.underscored_names && f.forwarded_by);
        assert!(!f.forward_secret && f.internal_headers());
    }

    #[test]
    fn a_cookie_or_the_token_header_may_carry_a_token() {
        assert!(scan(&map(&[("cookie", "a=b")])).token_carrier);
        assert!(scan(&map(&[("rwproxy-position", "app.db=1")])).token_carrier);
        assert!(!scan(&map(&[("rwproxy-route", "x")])).token_carrier);
        let only_secret = map(&[("rwproxy-secret", "s")]);
        let secret = scan(&only_secret);
        assert!(secret.forward_secret && !secret.forwarded_by && secret.internal_headers());
    }
}
