//! WebSocket clients for the tests: connect through a node, read the next message in time.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

/// A client's WebSocket over plain TCP.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `ws://{node}{path}` (`node`: `127.0.0.1:PORT`); returns the socket and the handshake's
/// response. Panics when the handshake fails.
pub async fn open(node: &str, path: &str) -> (Ws, http::Response<Option<Vec<u8>>>) {
    tokio_tungstenite::connect_async(format!("ws://{node}{path}"))
        .await
        .unwrap_or_else(|e| panic!("websocket to {node}{path}: {e}"))
}

/// The next message; panics unless one arrives within 10 s.
pub async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("a message")
}

/// The next message, which must be text; panics unless one arrives within 10 s.
pub async fn next_text(ws: &mut Ws) -> String {
    next_message(ws)
        .await
        .into_text()
        .expect("text")
        .to_string()
}
