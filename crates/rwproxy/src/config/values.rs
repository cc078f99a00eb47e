//! Parsers for single configuration values. Each returns the reason a value is wrong; the
//! validator attaches the key.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method, Uri};

/// Parses a duration with a unit (`"250ms"`, `"5s"`, `"1m"`, `"1h 30m"`).
///
/// A bare number (`"5"`, even `"0"`) is refused: the unit is never implied.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.chars().any(|c| c.is_ascii_alphabetic()) {
        let hint = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            format!(" (a duration needs a unit, e.g. \"{text}s\")")
        } else {
            String::new()
        };
        return Err(format!("invalid duration {text:?}{hint}"));
    }
    humantime::parse_duration(text).map_err(|_| format!("invalid duration {text:?}"))
}

/// Parses `IP:PORT`.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid address {text:?} (expected IP:PORT, e.g. \"0.0.0.0:8080\")"))
}

/// Picks the value named by `text` from `options`, or explains which names are accepted.
pub fn parse_choice<T: Copy>(text: &str, options: &[(&str, T)]) -> Result<T, String> {
    options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            format!("invalid value {text:?} (expected {})", one_of(&names))
        })
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn one_of(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// An origin-only URL: `scheme://host[:port]`, with no user info, no path but `/`, no query.
///
/// The port is made explicit (80 or 443 when absent) so consumers can rely on it.
pub fn parse_origin(text: &str, schemes: &[&str]) -> Result<Uri, String> {
    let invalid = |reason: &str| format!("invalid URL {text:?} ({reason})");
    let forms: Vec<String> = schemes.iter().map(|s| format!("{s}://HOST:PORT")).collect();
    let expected = format!("expected {}", forms.join(" or "));
    let uri: Uri = text.parse().map_err(|_| invalid(&expected))?;
    let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => (scheme, authority),
        _ => return Err(invalid(&expected)),
    };
    if !schemes.contains(&scheme) {
        return Err(invalid(&expected));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("user info is not supported"));
    }
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("no path or query allowed"));
    }
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{}:{port}", authority.host())
        .parse()
        .map_err(|_| invalid(&expected))
}

/// `writes.primary_url`: an http(s) origin once `{primary}` is replaced by a node name.
pub fn check_primary_url(template: &str) -> Result<(), String> {
    parse_origin(&template.replace("{primary}", "node-1"), &["http", "https"])
        .map(|_| ())
        .map_err(|_| {
            format!(
                "invalid URL {template:?} (expected http://HOST:PORT or https://HOST:PORT, \
                 no path or query; {{primary}} stands for the primary's name)"
            )
        })
}

/// An absolute `http://` or `https://` URL with a host; any path and query.
pub fn parse_http_url(text: &str) -> Result<Uri, String> {
    let invalid = || format!("invalid URL {text:?} (expected an absolute http:// or https:// URL)");
    let uri: Uri = text.parse().map_err(|_| invalid())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(invalid()),
    }
}

/// A read method: an uppercase HTTP token such as `GET`.
pub fn parse_method(text: &str) -> Result<Method, String> {
    let invalid =
        || format!("invalid method {text:?} (expected an uppercase HTTP method, e.g. \"GET\")");
    if text.is_empty() || text.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(invalid());
    }
    Method::from_bytes(text.as_bytes()).map_err(|_| invalid())
}

/// A name a node goes by: non-empty, printable, no whitespace (it travels in headers and URLs).
pub fn check_node_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid name {text:?} (no whitespace or control characters)"
        ));
    }
    Ok(())
}

/// A database name as it appears in the LiteFS mount and in position tokens.
pub fn check_database_name(text: &str) -> Result<(), String> {
    let bad = |c: char| matches!(c, '/' | ',' | '=') || c.is_whitespace() || c.is_control();
    if text.is_empty() || text.chars().any(bad) {
        return Err(format!(
            "invalid database name {text:?} (must be non-empty, without '/', ',', '=' or whitespace)"
        ));
    }
    Ok(())
}

/// A cookie name: an RFC 6265 token.
pub fn check_cookie_name(text: &str) -> Result<(), String> {
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        return Err(format!("invalid cookie name {text:?}"));
    }
    Ok(())
}

/// Headers the proxy or HTTP itself already gives a meaning to.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "cookie",
    "set-cookie",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "fly-replay",
    "location",
    "retry-after",
    "rwproxy-error",
    "rwproxy-route",
    // The token's timeline companion, and the hop mark that detects forwarding loops.
    "rwproxy-timeline",
    "rwproxy-forwarded-by",
];

/// The position-token header: a valid header name that does not collide with one in use.
pub fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("invalid header name {text:?}"))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "header name {text:?} is reserved (choose another name)"
        ));
    }
    Ok(name)
}

/// A URL path: starts with `/`, no query or fragment.
pub fn check_path(text: &str) -> Result<(), String> {
    let valid = text.starts_with('/')
        && !text.contains(['?', '#'])
        && text.parse::<http::uri::PathAndQuery>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid path {text:?} (must start with '/', no query)"
        ))
    }
}

/// A request target for a probe: starts with `/`, an optional query, no fragment.
pub fn check_path_and_query(text: &str) -> Result<(), String> {
    let valid = text.starts_with('/')
        && !text.contains('#')
        && text.parse::<http::uri::PathAndQuery>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid path {text:?} (must start with '/', e.g. \"/healthz\")"
        ))
    }
}

/// A routing glob: starts with `/` and compiles the way the classifier compiles it.
pub fn check_glob(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("invalid glob {text:?} (must start with '/')"));
    }
    rwproxy_core::class::compile_glob(text)
        .map(|_| ())
        .map_err(|e| format!("invalid glob {text:?} ({})", e.reason))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("5 parsecs"),
            Err("invalid duration \"5 parsecs\"".to_owned())
        );
        assert_eq!(
            parse_duration("5"),
            Err("invalid duration \"5\" (a duration needs a unit, e.g. \"5s\")".to_owned())
        );
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn choices_list_the_options() {
        let options = [("a", 1), ("b", 2), ("c", 3)];
        assert_eq!(parse_choice("b", &options), Ok(2));
        assert_eq!(
            parse_choice("d", &options),
            Err("invalid value \"d\" (expected \"a\", \"b\" or \"c\")".to_owned())
        );
        assert_eq!(
            parse_choice("B", &options[..2]),
            Err("invalid value \"B\" (expected \"a\" or \"b\")".to_owned())
        );
    }

    #[test]
    fn origins() {
        let ok = |s: &str| parse_origin(s, &["http"]).map(|u| u.to_string());
        assert_eq!(
            ok("http://127.0.0.1:8081"),
            Ok("http://127.0.0.1:8081/".to_owned())
        );
        assert_eq!(
            ok("http://127.0.0.1:8081/"),
            Ok("http://127.0.0.1:8081/".to_owned())
        );
        assert_eq!(ok("http://app"), Ok("http://app:80/".to_owned()));
        assert_eq!(ok("http://[::1]:8081"), Ok("http://[::1]:8081/".to_owned()));
        for bad in [
            "https://127.0.0.1:8081",
            "127.0.0.1:8081",
            "/path",
            "http://127.0.0.1:8081/app",
            "http://127.0.0.1:8081/?a=b",
            "http://u:p@127.0.0.1:8081",
            "http://",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(parse_origin("https://x", &["http", "https"]).is_ok());
    }

    #[test]
    fn methods_are_uppercase_tokens() {
        assert_eq!(parse_method("GET"), Ok(Method::GET));
        assert_eq!(
            parse_method("PROPFIND").map(|m| m.to_string()),
            Ok("PROPFIND".to_owned())
        );
        for bad in ["get", "", "G ET", "GET\n", "G(T"] {
            assert!(parse_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert!(check_database_name("app.db").is_ok());
        for bad in ["", "a/b", "a,b", "a=b", "a b"] {
            assert!(check_database_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_cookie_name("__txid").is_ok());
        for bad in ["", "a b", "a;b", "a=b", "é"] {
            assert!(check_cookie_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_header_name("X-Position").map(|h| h.to_string()),
            Ok("x-position".to_owned())
        );
        assert!(parse_header_name("bad header").is_err());
        assert!(parse_header_name("Cookie").is_err());
        assert!(check_node_name("iad-1").is_ok());
        assert!(check_node_name("a b").is_err());
    }

    #[test]
    fn paths_and_globs() {
        assert!(check_path("/health").is_ok());
        for bad in ["health", "", "/a?b", "/a b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path_and_query("/healthz?full=1").is_ok());
        for bad in ["healthz", "", "/a b", "/a#b"] {
            assert!(check_path_and_query(bad).is_err(), "{bad:?}");
        }
        assert!(check_glob("/static/*").is_ok());
        assert!(check_glob("/{a,b}/*.css").is_ok());
        assert_eq!(
            check_glob("static/*"),
            Err("invalid glob \"static/*\" (must start with '/')".to_owned())
        );
        assert!(check_glob("/a/[").is_err());
    }
}
