//! The test app's protocol endpoints: a WebSocket echo (`/ws...` with `Upgrade: websocket`) and
//! a trailer echo (`/trailers`). Kept apart from `app.rs`, which calls [`handle`] first.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Serves the protocol endpoints; any other request is handed back untouched.
pub async fn handle(
    mut req: Request<Incoming>,
    app: &str,
) -> Result<Response<Body>, Request<Incoming>> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/ws") && is_websocket(req.headers()) {
        return Ok(websocket(&mut req, app));
    }
    if path == "/trailers" {
        return Ok(trailers(req, app).await);
    }
    Err(req)
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the WebSocket, greets with `app:<name> <path>`, then echoes every message.
fn websocket(req: &mut Request<Incoming>, app: &str) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let greeting = format!("app:{app} {}", req.uri().path());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if ws.send(Message::text(greeting)).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.next().await {
            let echo = matches!(message, Message::Text(_) | Message::Binary(_));
            if matches!(message, Message::Close(_)) || (echo && ws.send(message).await.is_err()) {
                return;
            }
        }
    });
    let mut response = empty(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap(),
    );
    response
}

/// Reads the body and its trailers, then answers a chunked body with trailers: `x-echo-checksum`
/// (the request's `x-checksum` trailer, or `none`) and `x-app`.
async fn trailers(req: Request<Incoming>, app: &str) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut len = 0;
    let mut checksum = "none".to_owned();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return empty(StatusCode::BAD_REQUEST);
        };
        match frame.into_data() {
            Ok(data) => len += data.len(),
            Err(frame) => {
                if let Some(v) = frame
                    .trailers_ref()
                    .and_then(|t| t.get("x-checksum"))
                    .and_then(|v| v.to_str().ok())
                {
                    checksum = v.to_owned();
                }
            }
        }
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("x-echo-checksum", HeaderValue::from_str(&checksum).unwrap());
    trailers.insert("x-app", HeaderValue::from_str(app).unwrap());
    let te = parts
        .headers
        .get("te")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
            "{app} got {len} bytes, te={te}"
        )))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        frames,
    ))));
    response.headers_mut().insert(
        "trailer",
        HeaderValue::from_static("x-echo-checksum, x-app"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(http_body_util::Empty::new().boxed());
    *r.status_mut() = status;
    r
}
