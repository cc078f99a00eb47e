//! Request hygiene: what rwproxy refuses in a request head that its HTTP parser (hyper) lets
//! through, before the request is classified or sent anywhere.
//!
//! hyper already refuses, with its own `400` (or `431`) before rwproxy sees the request: an
//! unparsable head, differing `Content-Length`s, a `Transfer-Encoding` whose last coding is not
//! `chunked`, `Transfer-Encoding` on HTTP/1.0, and (HTTP/2) connection-specific headers. hyper
//! drops `Content-Length` when `Transfer-Encoding` is present and closes the connection after
//! the answer. What is left to refuse here is listed in [`Refusal`]; the checks are pure
//! functions of the head, so they are cheap and table-tested.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Uri, Version};
use rwproxy_core::ErrorCode;

use crate::head::HeadFacts;

/// Why a request is refused before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than one `Host` header: the app and rwproxy could read different ones
    /// (RFC 9112 §3.2: a server MUST answer 400).
    DuplicateHost,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2: 400, even in absolute form).
    MissingHost,
    /// A `Host` that is not a host and port (`evil.example/x`, `a@b`, spaces): an app that
    /// builds links from it could be steered (RFC 9112 §3.2: an invalid value gets 400).
    InvalidHost,
    /// HTTP/2: a `host` header that differs from `:authority` (RFC 9113 §8.3.1: malformed).
    HostMismatch,
    /// An absolute-form target with user information or a scheme other than http(s).
    BadTarget,
    /// `CONNECT`: rwproxy is a reverse proxy, not a tunnel to arbitrary hosts.
    Connect,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501); hyper would decode the
    /// chunked framing and silently drop the other coding.
    UnsupportedTransferCoding,
    /// `chunked` applied more than once (RFC 9112 §6.1: a sender MUST NOT).
    RepeatedChunked,
}

impl Refusal {
    /// The `rwproxy-error` code the refusal is answered with.
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::Connect | Refusal::UnsupportedTransferCoding => ErrorCode::NotImplemented,
            Refusal::DuplicateHost
            | Refusal::MissingHost
            | Refusal::InvalidHost
            | Refusal::HostMismatch
            | Refusal::BadTarget
            | Refusal::RepeatedChunked => ErrorCode::BadRequest,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DuplicateHost => "duplicate-host",
            Refusal::MissingHost => "missing-host",
            Refusal::InvalidHost => "invalid-host",
            Refusal::HostMismatch => "host-mismatch",
            Refusal::BadTarget => "bad-target",
            Refusal::Connect => "connect",
            Refusal::UnsupportedTransferCoding => "unsupported-transfer-coding",
            Refusal::RepeatedChunked => "repeated-chunked",
        }
    }
}

/// Checks a request head; `Err` names why it must not be passed on.
pub fn check(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    check_scanned(
        method,
        uri,
        version,
        headers,
        &HeadFacts::scan(headers, None),
    )
}

/// [`check`] with the head's fields already walked (the admission layer walks them once for
/// every check it makes).
pub fn check_scanned(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    facts: &HeadFacts<'_>,
) -> Result<(), Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    check_target(uri)?;
    check_host(uri, version, facts)?;
    if facts.transfer_encoding {
        check_transfer_coding(headers)?;
    }
    Ok(())
}

fn check_target(uri: &Uri) -> Result<(), Refusal> {
    // Origin-form targets (almost every HTTP/1.1 request) have neither part.
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Refusal::BadTarget);
        }
    }
    match uri.authority() {
        // `user@host` would become the Host the app sees; RFC 9110 §4.2.4 forbids it in http(s).
        Some(authority) if authority.as_str().contains('@') => Err(Refusal::BadTarget),
        _ => Ok(()),
    }
}

fn check_host(uri: &Uri, version: Version, facts: &HeadFacts<'_>) -> Result<(), Refusal> {
    let Some(host) = facts.host else {
        // HTTP/2 names the host in `:authority`; HTTP/1.0 predates `Host` (and is refused later
        // when its target names no host either).
        return match version {
            Version::HTTP_11 => Err(Refusal::MissingHost),
            _ => Ok(()),
        };
    };
    if facts.hosts > 1 {
        return Err(Refusal::DuplicateHost);
    }
    if !host.as_bytes().iter().all(|&b| is_authority_byte(b)) {
        return Err(Refusal::InvalidHost);
    }
    // HTTP/1.1 absolute-form: the target's authority wins and Host is rewritten from it
    // (RFC 9112 §3.2.2; see `upstream::headers`). HTTP/2: the two must agree.
    if version == Version::HTTP_2 {
        if let Some(authority) = uri.authority() {
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(Refusal::HostMismatch);
            }
        }
    }
    Ok(())
}

/// A byte of `host[:port]` (RFC 3986: reg-name, IP literal, port); `@` is left out, so
/// user information is refused too. An empty `Host` is allowed (RFC 9112 §3.2).
fn is_authority_byte(b: u8) -> bool {
    // A table: every request's `Host` is checked byte by byte, and a `matches!` over these
    // ranges compiled to several compares per byte.
    AUTHORITY_BYTES[usize::from(b)]
}

static AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = matches!(c,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
            | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']' | b'%');
        b += 1;
    }
    table
};

fn check_transfer_coding(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut chunked = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| Refusal::UnsupportedTransferCoding)?;
        // Empty list elements are allowed by the list syntax (RFC 9110 §5.6.1).
        for coding in text.split(',').map(|c| c.trim_matches([' ', '\t'])) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else if !coding.is_empty() {
                return Err(Refusal::UnsupportedTransferCoding);
            }
        }
    }
    match chunked {
        0 | 1 => Ok(()),
        _ => Err(Refusal::RepeatedChunked),
    }
}

/// Removes headers whose names contain `_` and returns how many went. A backend that maps
/// `_` to `-` (CGI, WSGI, PHP) would read `Transfer_Encoding` as a framing header, or
/// `X_Forwarded_For` as rwproxy's; nginx drops them by default for the same reason
/// (`proxy.allow_underscores_in_headers` keeps them).
pub fn drop_underscored_headers(headers: &mut HeaderMap) -> usize {
    // One walk over the names; the removal list is built only in the rare case.
    if !headers.keys().any(has_underscore) {
        return 0;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    doomed.len()
}

fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn head(request: Request<()>) -> Result<(), Refusal> {
        check(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
        )
    }

    fn h1(target: &str, headers: &[(&str, &str)]) -> Result<(), Refusal> {
        let mut request = Request::post(target);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        head(request.body(()).expect("request"))
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(h1("/", &[("host", "a")]), Ok(()));
        assert_eq!(h1("/", &[("host", "[::1]:8080")]), Ok(()));
        assert_eq!(h1("/", &[("host", "")]), Ok(()));
        let http10 = Request::get("/")
            .version(Version::HTTP_10)
            .body(())
            .expect("request");
        assert_eq!(head(http10), Ok(()));
        assert_eq!(
            h1("/", &[("host", "a"), ("transfer-encoding", "Chunked")]),
            Ok(())
        );
        assert_eq!(
            h1("/", &[("host", "a"), ("transfer-encoding", " , chunked")]),
            Ok(())
        );
        assert_eq!(h1("http://a:8080/x", &[("host", "other")]), Ok(()));
        assert_eq!(h1("HTTPS://a/x", &[("host", "a")]), Ok(()));
    }

    #[test]
    fn duplicate_hosts_and_odd_targets_are_refused() {
        assert_eq!(
            h1("/", &[("host", "a"), ("host", "a")]),
            Err(Refusal::DuplicateHost)
        );
        assert_eq!(h1("/", &[]), Err(Refusal::MissingHost));
        assert_eq!(h1("http://a/", &[]), Err(Refusal::MissingHost));
        for bad in ["evil.example/x", "a@b", "a b", "a\tb", "\"a\"", "a\\b", "é"] {
            assert_eq!(
                h1("/", &[("host", bad)]),
                Err(Refusal::InvalidHost),
                "{bad}"
            );
        }
        assert_eq!(
            h1("http://u:p@a/", &[("host", "a")]),
            Err(Refusal::BadTarget)
        );
        assert_eq!(h1("ftp://a/", &[("host", "a")]), Err(Refusal::BadTarget));
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("a:443")
            .body(())
            .expect("request");
        assert_eq!(head(connect), Err(Refusal::Connect));
        assert_eq!(Refusal::Connect.code(), ErrorCode::NotImplemented);
        assert_eq!(Refusal::DuplicateHost.code(), ErrorCode::BadRequest);
    }

    #[test]
    fn http2_host_must_match_authority() {
        let h2 = |host: &str| {
            head(
                Request::get("https://App.example:8443/")
                    .version(Version::HTTP_2)
                    .header("host", host)
                    .body(())
                    .expect("request"),
            )
        };
        assert_eq!(h2("app.example:8443"), Ok(()));
        assert_eq!(h2("evil"), Err(Refusal::HostMismatch));
        assert_eq!(h2("app.example"), Err(Refusal::HostMismatch));
    }

    #[test]
    fn only_a_single_chunked_coding_passes() {
        for (value, want) in [
            ("gzip, chunked", Err(Refusal::UnsupportedTransferCoding)),
            ("identity", Err(Refusal::UnsupportedTransferCoding)),
            ("chunked, chunked", Err(Refusal::RepeatedChunked)),
            ("chunked;q=1", Err(Refusal::UnsupportedTransferCoding)),
        ] {
            assert_eq!(
                h1("/", &[("host", "a"), ("transfer-encoding", value)]),
                want,
                "{value:?}"
            );
        }
        assert_eq!(
            h1(
                "/",
                &[
                    ("host", "a"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Err(Refusal::RepeatedChunked)
        );
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ok", "1".parse().expect("value"));
        assert_eq!(drop_underscored_headers(&mut headers), 0);
        headers.insert("transfer_encoding", "chunked".parse().expect("value"));
        headers.append("x_forwarded_for", "1.2.3.4".parse().expect("value"));
        headers.append("x_forwarded_for", "5.6.7.8".parse().expect("value"));
        assert_eq!(drop_underscored_headers(&mut headers), 2);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-ok"));
    }
}
