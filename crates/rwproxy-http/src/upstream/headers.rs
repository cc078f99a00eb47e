//! The header rules of one proxy hop (RFC 9110 §7.6): hop-by-hop headers removed, the
//! `X-Forwarded-*` family and `Via` added, the target rewritten to origin form.
//!
//! Request hygiene here (see also `crate::hygiene`, which refuses what cannot be repaired):
//! * `Connection` cannot name the headers rwproxy itself sets or relies on ([`OWN_HEADERS`]):
//!   a client's `Connection: close, X-Request-Id` would otherwise strip the request id, or the
//!   edge's `X-Forwarded-For`, before the app sees them;
//! * `Upgrade: h2c` (and `HTTP2-Settings`) never reach the app: an app that accepted would
//!   speak HTTP/2 over a tunnel past rwproxy's per-request routing;
//! * an absolute-form target's host wins over `Host` (RFC 9112 §3.2.2);
//! * `Content-Length` is sent in canonical form (`0005` becomes `5`).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Uri, Version};

/// Marks a request forwarded by another rwproxy (value: the sender's node name). A node that
/// receives it and is not the primary refuses it instead of forwarding it again.
pub static FORWARDED_BY: HeaderName = HeaderName::from_static("rwproxy-forwarded-by");
/// Carries `cluster.secret` on forwarded requests, when one is configured: only then is the
/// forwarded-request marker believed. Never passed to an app.
pub static FORWARD_SECRET: HeaderName = HeaderName::from_static("rwproxy-secret");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). `Trailer` is not
/// one of them: it names the trailer fields end to end, and HTTP/1.1 sends only those it names.
/// A `static`: a `const` array would be built and dropped at every use (once per header name
/// of every request, ~250 instructions per proxied GET).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    // The h2c upgrade's settings (RFC 9113 §3.2.1 says it is connection-specific).
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Headers rwproxy sets or relies on, which a `Connection` header cannot make hop-by-hop.
static OWN_HEADERS: [HeaderName; 8] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::VIA,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("rwproxy-forwarded-by"),
];

/// Per-node values computed once at start-up.
#[derive(Clone, Debug)]
pub struct HopIdentity {
    via_1_0: HeaderValue,
    via_1_1: HeaderValue,
    via_2: HeaderValue,
    node: HeaderValue,
}

impl HopIdentity {
    /// Values for the node called `node`; a name that is not a valid header value is replaced
    /// by `rwproxy` in `Via`.
    pub fn new(node: &str) -> Self {
        let pseudonym = if HeaderValue::from_str(node).is_ok() && !node.contains([' ', ',']) {
            node
        } else {
            "rwproxy"
        };
        let via = |v: &str| {
            HeaderValue::from_str(&format!("{v} {pseudonym}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 rwproxy"))
        };
        HopIdentity {
            via_1_0: via("1.0"),
            via_1_1: via("1.1"),
            via_2: via("2"),
            node: HeaderValue::from_str(pseudonym)
                .unwrap_or_else(|_| HeaderValue::from_static("rwproxy")),
        }
    }

    fn via(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_10 | Version::HTTP_09 => &self.via_1_0,
            Version::HTTP_2 | Version::HTTP_3 => &self.via_2,
            _ => &self.via_1_1,
        }
    }

    /// This node's name as a header value.
    pub fn node(&self) -> &HeaderValue {
        &self.node
    }
}

/// What the hop knows about the client connection.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The peer address of the client connection.
    pub ip: IpAddr,
    /// The connection was TLS.
    pub tls: bool,
    /// `ip` as an `X-Forwarded-For` element, written once per connection rather than per
    /// request (a clone is a reference count).
    forwarded_for: HeaderValue,
}

impl ClientInfo {
    /// The client connection from `ip`, over TLS or not.
    pub fn new(ip: IpAddr, tls: bool) -> Self {
        let ip = ip.to_canonical();
        let mut text = Vec::with_capacity(39);
        match ip {
            // Written by hand: `to_string` goes through the formatting machinery.
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    push_decimal(&mut text, octet);
                }
            }
            IpAddr::V6(v6) => text.extend_from_slice(v6.to_string().as_bytes()),
        }
        let forwarded_for = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientInfo {
            ip,
            tls,
            forwarded_for,
        }
    }

    /// A client whose address is not known (`0.0.0.0`, plain HTTP): used when an embedding
    /// app's requests carry no [`ClientInfo`].
    pub fn unspecified() -> Self {
        Self::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), false)
    }
}

/// Rewrites a client request into the request sent upstream (HTTP/1.1, origin-form target).
/// Fails only when the request names no host at all.
pub fn prepare_request(
    parts: &mut request::Parts,
    client: &ClientInfo,
    hop: &HopIdentity,
) -> Result<(), MissingHost> {
    // Most requests carry no hop-by-hop header at all: one pass over the names then spares
    // the hashed lookups below (upgrade, TE, Transfer-Encoding and every removal).
    let hop_by_hop = has_hop_by_hop(&parts.headers);
    let upgrade = if hop_by_hop {
        upgrade_protocol(parts.version, &parts.headers).cloned()
    } else {
        None
    };
    // This hop carries trailers both ways, so it may say so for a client that accepts them
    // (an HTTP/2 client always does).
    let trailers = matches!(parts.version, Version::HTTP_2 | Version::HTTP_3)
        || (hop_by_hop && has_token(&parts.headers, &header::TE, "trailers"));
    // hyper sends a GET or HEAD body of unknown length only when told it is chunked; the
    // client's framing is hop-by-hop, but the fact that there is a body is not.
    let chunked = hop_by_hop
        && has_token(&parts.headers, &header::TRANSFER_ENCODING, "chunked")
        && !parts.headers.contains_key(header::CONTENT_LENGTH);
    if hop_by_hop {
        remove_hop_by_hop(&mut parts.headers);
    }
    let headers = &mut parts.headers;
    if chunked {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if let Some(protocol) = upgrade {
        keep_upgrade(headers, protocol);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    // HTTP/2 clients send :authority instead of Host; HTTP/1.1 upstreams need Host. An
    // absolute-form target's host wins over the Host header (RFC 9112 §3.2.2: a proxy sends
    // Host from it); over HTTP/2 the hygiene checks refused a host that disagrees.
    // One lookup of `Host`: its value also goes into X-Forwarded-Host below.
    let host = match (parts.uri.authority(), headers.get(header::HOST)) {
        (Some(authority), Some(host)) if host == authority.as_str() => host.clone(),
        (Some(authority), _) => {
            let value = HeaderValue::from_str(authority.as_str()).map_err(|_| MissingHost)?;
            headers.insert(header::HOST, value.clone());
            value
        }
        (None, Some(host)) => host.clone(),
        (None, None) => return Err(MissingHost),
    };
    canonical_content_length(headers);
    append_forwarded_for(headers, &client.forwarded_for);
    // `entry` looks each name up once (`contains_key` then `insert` would hash it twice).
    if let header::Entry::Vacant(slot) = headers.entry(&X_FORWARDED_PROTO) {
        let proto = if client.tls { "https" } else { "http" };
        slot.insert(HeaderValue::from_static(proto));
    }
    if let header::Entry::Vacant(slot) = headers.entry(&X_FORWARDED_HOST) {
        slot.insert(host);
    }
    headers.append(header::VIA, hop.via(parts.version).clone());

    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let origin = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = Uri::try_from(origin).map_err(|_| MissingHost)?;
    }
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Strips hop-by-hop headers from an upstream response before it goes to the client; a `101`
/// keeps the `Upgrade` it agreed to.
pub fn prepare_response(parts: &mut response::Parts) {
    // The version is hop-by-hop too (RFC 9110 §2.5): the client is answered in its own
    // protocol, which hyper picks from the request, not in the app's (an HTTP/1.0 app would
    // otherwise cost an HTTP/1.1 client its keep-alive).
    parts.version = Version::HTTP_11;
    if !has_hop_by_hop(&parts.headers) {
        return;
    }
    let upgrade = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade {
        keep_upgrade(&mut parts.headers, protocol);
    }
}

/// The protocol an HTTP/1.1 upgrade request asks for (`Connection: upgrade` plus `Upgrade`).
/// Other versions have no such upgrade (HTTP/2 forbids both headers). An upgrade to HTTP itself
/// (`h2c`, `h2`, `HTTP/2.0`) is ignored, as RFC 9110 §7.8 lets a server do: the request goes on
/// as plain HTTP/1.1 without its `Upgrade`, so no app can take the connection over as HTTP/2
/// past rwproxy's per-request routing.
pub fn upgrade_protocol(version: Version, headers: &HeaderMap) -> Option<&HeaderValue> {
    if version != Version::HTTP_11 || !has_token(headers, &header::CONNECTION, "upgrade") {
        return None;
    }
    let protocol = headers.get(header::UPGRADE)?;
    let to_http = protocol
        .to_str()
        .map_or(true, |text| text.split(',').any(names_http));
    (!to_http).then_some(protocol)
}

/// True for an `Upgrade` element naming HTTP itself (`h2c`, `h2`, `HTTP/2.0`).
fn names_http(element: &str) -> bool {
    let name = element.trim().split('/').next().unwrap_or("");
    ["h2c", "h2", "http"]
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p))
}

/// Rewrites a `Content-Length` that hyper accepted but that is not in canonical form (leading
/// zeros, a list of equal values) as the plain number, so that the app reads what hyper read.
fn canonical_content_length(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return;
    };
    let bytes = value.as_bytes();
    let canonical = bytes.iter().all(u8::is_ascii_digit) && (bytes.len() == 1 || bytes[0] != b'0');
    if canonical {
        return;
    }
    let length = value
        .to_str()
        .ok()
        .and_then(|text| text.split(',').next())
        .and_then(|first| first.trim().parse::<u64>().ok());
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// Puts back the two headers an upgrade travels with, after the hop-by-hop ones were removed.
fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// True when a comma-separated header lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The request named no host (HTTP/1.0 without `Host`, or an unusable authority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request names no host")]
pub struct MissingHost;

/// True when any header is hop-by-hop (or `Upgrade`): a walk over the names, comparing each
/// with a short list, costs less than hashing every hop-by-hop name to look it up.
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
}

/// A name of [`HOP_BY_HOP`], or `Upgrade`. One `match` on the text (the compiler switches on
/// its length first) instead of nine `HeaderName` comparisons: ~470 instructions per GET.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "http2-settings"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too, except those rwproxy owns.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !OWN_HEADERS.contains(name))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    // Upgrade travels only with an upgrade request (put back by the caller for those).
    headers.remove(header::UPGRADE);
}

fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    // A prior value that is empty or not text is replaced rather than extended.
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .filter(|p| p.to_str().is_ok_and(|text| !text.trim().is_empty()));
    let Some(prior) = prior else {
        headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        return;
    };
    let mut value = Vec::with_capacity(prior.len() + 2 + client.len());
    value.extend_from_slice(prior.as_bytes());
    value.extend_from_slice(b", ");
    value.extend_from_slice(client.as_bytes());
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

fn push_decimal(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_test_matches_the_list() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::TRAILER,
            header::VIA,
        ] {
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }
    use http::Request;

    fn parts(req: Request<()>) -> request::Parts {
        req.into_parts().0
    }

    fn client() -> ClientInfo {
        ClientInfo::new("10.1.2.3".parse().expect("ip"), false)
    }

    #[test]
    fn adds_forwarding_headers_and_strips_hop_by_hop() {
        let mut p = parts(
            Request::post("/w?x=1")
                .header("host", "app.example")
                .header("connection", "keep-alive, x-secret-hop")
                .header("x-secret-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("te", "gzip")
                .header("x-forwarded-for", "1.1.1.1")
                .header("x-custom", "kept")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("iad-1")).expect("prepared");
        let h = &p.headers;
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(h["via"], "1.1 iad-1");
        assert_eq!(h["host"], "app.example");
        assert_eq!(h["x-custom"], "kept");
        for gone in ["connection", "x-secret-hop", "keep-alive", "te"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(p.uri, "/w?x=1");
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut p = parts(
            Request::get("https://app.example:8443/r")
                .version(Version::HTTP_2)
                .body(())
                .expect("request"),
        );
        prepare_request(
            &mut p,
            &ClientInfo::new("10.1.2.3".parse().expect("ip"), true),
            &HopIdentity::new("n"),
        )
        .expect("prepared");
        assert_eq!(p.headers["host"], "app.example:8443");
        assert_eq!(p.headers["via"], "2 n");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.uri, "/r");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn existing_proto_and_host_are_kept() {
        let mut p = parts(
            Request::get("/")
                .header("host", "inner")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "edge.example")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["x-forwarded-host"], "edge.example");
    }

    #[test]
    fn no_host_is_an_error() {
        let mut p = parts(
            Request::get("/")
                .version(Version::HTTP_10)
                .body(())
                .expect("request"),
        );
        assert_eq!(
            prepare_request(&mut p, &client(), &HopIdentity::new("n")),
            Err(MissingHost)
        );
    }

    #[test]
    fn upgrade_headers_travel_with_upgrade_requests_only() {
        let mut p = parts(
            Request::get("/ws")
                .header("host", "h")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-key", "k")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["sec-websocket-key"], "k");

        let mut p = parts(
            Request::get("/")
                .header("host", "h")
                .header("upgrade", "websocket")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert!(!p.headers.contains_key("upgrade"));
        assert!(!p.headers.contains_key("connection"));

        let mut r = http::Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        prepare_response(&mut r);
        assert_eq!(r.headers["connection"], "upgrade");
        assert_eq!(r.headers["upgrade"], "websocket");
        let mut r = http::Response::builder()
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        prepare_response(&mut r);
        assert!(r.headers.is_empty());
    }

    #[test]
    fn trailers_are_announced_and_kept() {
        let mut p = parts(
            Request::post("/")
                .header("host", "h")
                .header("te", "gzip, trailers")
                .header("trailer", "x-sum")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["te"], "trailers");
        assert_eq!(p.headers["trailer"], "x-sum");
        let mut p = parts(
            Request::post("http://h/")
                .version(Version::HTTP_2)
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["te"], "trailers");
        let mut p = parts(
            Request::post("/")
                .header("host", "h")
                .header("te", "gzip")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert!(!p.headers.contains_key("te"));
    }

    #[test]
    fn a_chunked_body_stays_chunked() {
        let mut p = parts(
            Request::get("/")
                .header("host", "h")
                .header("transfer-encoding", "gzip, chunked")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["transfer-encoding"], "chunked");
    }

    #[test]
    fn forwarded_for_is_written_for_every_address_kind() {
        for (ip, prior, want) in [
            ("0.0.0.0", None, "0.0.0.0"),
            ("255.10.9.100", Some("  "), "255.10.9.100"),
            (
                "127.0.0.1",
                Some("1.1.1.1, 2.2.2.2"),
                "1.1.1.1, 2.2.2.2, 127.0.0.1",
            ),
            ("::ffff:192.0.2.7", None, "192.0.2.7"),
            ("2001:db8::1", Some("1.1.1.1"), "1.1.1.1, 2001:db8::1"),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(prior) = prior {
                headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static(prior));
            }
            let client = ClientInfo::new(ip.parse().expect("ip"), false);
            append_forwarded_for(&mut headers, &client.forwarded_for);
            assert_eq!(headers[&X_FORWARDED_FOR], want, "{ip}");
        }
    }

    #[test]
    fn responses_without_hop_by_hop_headers_are_untouched() {
        let mut r = http::Response::builder()
            .header("content-type", "text/plain")
            .header("x-te", "not te")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        prepare_response(&mut r);
        assert_eq!(r.headers.len(), 2);
        let mut r = http::Response::builder()
            .header("content-type", "text/plain")
            .header("keep-alive", "timeout=5")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        prepare_response(&mut r);
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn connection_cannot_name_rwproxys_own_headers() {
        let mut p = parts(
            Request::post("/")
                .header("host", "h")
                .header(
                    "connection",
                    "close, X-Request-Id, X-Forwarded-For, Host, x-gone",
                )
                .header("x-request-id", "id-1")
                .header("x-forwarded-for", "1.1.1.1")
                .header("x-gone", "1")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["x-request-id"], "id-1");
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(p.headers["host"], "h");
        assert!(!p.headers.contains_key("x-gone"));
    }

    #[test]
    fn upgrades_to_http_itself_are_ignored() {
        for protocol in ["h2c", "H2C", "websocket, h2c", "HTTP/2.0", "h2"] {
            let mut p = parts(
                Request::get("/")
                    .header("host", "h")
                    .header("connection", "Upgrade, HTTP2-Settings")
                    .header("upgrade", protocol)
                    .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
                    .body(())
                    .expect("request"),
            );
            assert_eq!(upgrade_protocol(p.version, &p.headers), None, "{protocol}");
            prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
            for gone in ["upgrade", "connection", "http2-settings"] {
                assert!(!p.headers.contains_key(gone), "{protocol}: {gone}");
            }
        }
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        let mut p = parts(
            Request::get("http://real.example/r?q")
                .header("host", "evil")
                .body(())
                .expect("request"),
        );
        prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
        assert_eq!(p.headers["host"], "real.example");
        assert_eq!(p.headers["x-forwarded-host"], "real.example");
        assert_eq!(p.uri, "/r?q");
    }

    #[test]
    fn content_length_is_sent_in_canonical_form() {
        for (given, sent) in [("0005", "5"), ("5, 5", "5"), ("0", "0"), ("12", "12")] {
            let mut p = parts(
                Request::post("/")
                    .header("host", "h")
                    .header("content-length", given)
                    .body(())
                    .expect("request"),
            );
            prepare_request(&mut p, &client(), &HopIdentity::new("n")).expect("prepared");
            assert_eq!(p.headers["content-length"], sent, "{given}");
        }
    }

    #[test]
    fn odd_node_names_fall_back_in_via() {
        assert_eq!(
            HopIdentity::new("bad name").via(Version::HTTP_11),
            "1.1 rwproxy"
        );
    }
}
