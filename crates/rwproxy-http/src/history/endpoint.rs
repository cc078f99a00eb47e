//! The admin listener's history paths: `/events` and `/series` (JSON), and the operator's
//! page (`/`, `/ui`, its stylesheet and script), whose files are embedded in the binary.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use rwproxy_core::ErrorCode;
use serde::Serialize;

use super::event::{rfc3339, EventDoc};
use super::ring::Since;
use super::{lock, History};
use crate::body::Body;
use crate::respond;

const PAGE: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/page.css");
const SCRIPT: &str = include_str!("assets/page.js");

/// Only the page's own files and its own listener's JSON: no external asset can load, and no
/// other site can frame the page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers the history paths; `None` for any other path. `page` is `admin.ui`.
pub(crate) fn answer(
    history: &History,
    page: bool,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Response<Body>> {
    let response = match path {
        "/events" => match since(query) {
            Ok(since) => json(method, events_document(history, since)),
            Err(message) => bad_request(&message),
        },
        "/series" => match query_value(query, "since").map(|v| v.parse::<u64>()) {
            None => json(method, series_document(history, None)),
            Some(Ok(t)) => json(method, series_document(history, Some(t))),
            Some(Err(_)) => bad_request("since: expected Unix seconds"),
        },
        "/" | "/ui" | "/ui/page.css" | "/ui/page.js" if !page => respond::plain(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "the operator's page is turned off (admin.ui = false); /events and /series still answer\n",
        ),
        "/" | "/ui" => asset(method, "text/html; charset=utf-8", PAGE),
        "/ui/page.css" => asset(method, "text/css; charset=utf-8", STYLE),
        "/ui/page.js" => asset(method, "text/javascript; charset=utf-8", SCRIPT),
        _ => return None,
    };
    Some(response)
}

fn since(query: Option<&str>) -> Result<Since, String> {
    match query_value(query, "since") {
        None => Ok(Since::All),
        Some(text) => Since::parse(&text),
    }
}

/// The percent-decoded value of `name` in a query string (`+` stays `+`: RFC 3339 offsets).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Serialize)]
struct EventsDoc<'a> {
    node: &'a str,
    now: String,
    /// The newest id given so far: follow with `?since=<last_id>`.
    last_id: u64,
    capacity: usize,
    /// Events pushed out of the ring by newer ones since the node started.
    dropped: u64,
    events: Vec<EventDoc<'a>>,
}

fn events_document(history: &History, since: Since) -> Vec<u8> {
    let ring = lock(&history.0.ring);
    let doc = EventsDoc {
        node: &history.0.node,
        now: rfc3339(std::time::SystemTime::now()),
        last_id: ring.last_id(),
        capacity: ring.capacity(),
        dropped: ring.dropped(),
        events: ring.newest_first(since).map(EventDoc::from).collect(),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn series_document(history: &History, since: Option<u64>) -> Vec<u8> {
    let series = lock(&history.0.series);
    serde_json::to_vec(&series.document(since, history.0.limits)).unwrap_or_default()
}

fn json(method: &Method, body: Vec<u8>) -> Response<Body> {
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        body
    };
    respond::plain(StatusCode::OK, "application/json", body)
}

fn asset(method: &Method, content_type: &'static str, text: &'static str) -> Response<Body> {
    let body = if method == Method::HEAD { "" } else { text };
    let mut response = respond::plain(StatusCode::OK, content_type, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn bad_request(message: &str) -> Response<Body> {
    let mut response = respond::plain(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        format!("{message}\n"),
    );
    response.headers_mut().insert(
        respond::RWPROXY_ERROR.clone(),
        HeaderValue::from_static(ErrorCode::BadRequest.as_str()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            query_value(Some("a=1&since=2024-01-01T00%3A00%3A00%2B01:00"), "since").as_deref(),
            Some("2024-01-01T00:00:00+01:00")
        );
        assert_eq!(query_value(Some("a=1"), "since"), None);
        assert_eq!(query_value(None, "since"), None);
        assert_eq!(
            query_value(Some("since=%zz"), "since").as_deref(),
            Some("%zz")
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [PAGE, STYLE, SCRIPT] {
            // The SVG namespace is a name, not a resource.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("url("));
        }
        assert!(PAGE.contains("ui/page.js") && PAGE.contains("ui/page.css"));
    }
}
