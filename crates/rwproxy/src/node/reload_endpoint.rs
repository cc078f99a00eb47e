//! `POST /reload` on the admin listener: what `rwproxy reload` calls where sending SIGHUP is
//! awkward (containers). Anyone who can reach the admin listener can ask for a reload: it only
//! re-reads the operator's own file, so it is as protected as `admin.listen` keeps it.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use rwproxy_http::{respond, Body};

use super::reload::{Refused, Reloader};

/// The admin path that reloads.
pub(crate) const PATH: &str = "/reload";

const TEXT: &str = "text/plain; charset=utf-8";

/// Whether `request` is for the reload endpoint (any method: a wrong one gets 405 there).
pub(super) fn wants<B>(request: &Request<B>) -> bool {
    request.uri().path() == PATH
}

/// Reloads on `POST`: 200 and `reloaded` (then how a restart of the cluster source went, when
/// its settings changed, and one line per key that needs a restart), or
/// 422 with the problems one a line as `rwproxy check` prints them (409 when the node has no
/// file to re-read). Other methods: 405.
pub(super) async fn answer(method: &Method, reloader: &Reloader) -> Response<Body> {
    if method != Method::POST {
        let mut response = respond::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "POST to reload the configuration\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    match reloader.reload().await {
        Ok(applied) => {
            let mut body = String::from("reloaded\n");
            if let Some(source) = applied.source {
                body.push_str(&source);
                body.push('\n');
            }
            for key in applied.needs_restart {
                body.push_str(&format!(
                    "{key}: changed, but takes effect only at start (restart to apply it)\n"
                ));
            }
            respond::plain(StatusCode::OK, TEXT, body)
        }
        Err(refused) => {
            let status = match refused {
                Refused::NoFile => StatusCode::CONFLICT,
                Refused::Invalid(_) | Refused::Unusable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            respond::plain(status, TEXT, format!("{refused}\n"))
        }
    }
}
