//! Test helpers: a real hyper server on 127.0.0.1:0, streaming bodies, and waiting for a state
//! with a deadline (never a bare sleep).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rwproxy_core::NodeState;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Generous: conditions are normally met within milliseconds; this only bounds a broken test.
pub(crate) const DEADLINE: Duration = Duration::from_secs(3);

pub(crate) type TestBody = BoxBody<Bytes, Infallible>;

/// A complete response.
pub(crate) fn full(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    resp
}

/// Captures log lines as plain text while it lives, on this thread (a current-thread tokio
/// test's spawned tasks included).
pub(crate) struct Logs {
    buffer: LogBuffer,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Starts capturing.
    pub(crate) fn capture() -> Logs {
        let buffer = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let buffer = buffer.clone();
                move || buffer.clone()
            })
            .with_ansi(false)
            .without_time()
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        Logs {
            buffer,
            _guard: guard,
        }
    }

    /// The lines logged since the last call.
    pub(crate) fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.0.lock().expect("lock"));
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// `doc` followed by spaces up to `len` bytes (JSON allows trailing whitespace).
pub(crate) fn padded(doc: &str, len: usize) -> String {
    let mut body = doc.to_owned();
    body.push_str(&" ".repeat(len.saturating_sub(doc.len())));
    body
}

/// A 200 whose body is whatever is sent on the channel, ending when the sender is dropped.
pub(crate) fn streaming(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<TestBody> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

/// A running server; dropping it stops the listener and every connection.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler(path)` over HTTP/1.1 on 127.0.0.1:0.
pub(crate) async fn serve<F>(handler: F) -> TestServer
where
    F: Fn(&str) -> Response<TestBody> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        // Connections live in the set, so aborting this task closes them too.
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = handler(req.uri().path());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    TestServer { addr, task }
}

/// An address nobody listens on (bound, then released).
pub(crate) async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Waits until the published state satisfies `pred`, at most [`DEADLINE`].
pub(crate) async fn wait_for(
    rx: &mut watch::Receiver<NodeState>,
    pred: impl FnMut(&NodeState) -> bool,
) -> NodeState {
    wait_within(rx, DEADLINE, pred)
        .await
        .unwrap_or_else(|last| {
            panic!("condition not met within {DEADLINE:?}; last state: {last:?}")
        })
}

/// Waits until the published state satisfies `pred`, at most `within`; the last state otherwise.
pub(crate) async fn wait_within(
    rx: &mut watch::Receiver<NodeState>,
    within: Duration,
    pred: impl FnMut(&NodeState) -> bool,
) -> Result<NodeState, NodeState> {
    let reached = match tokio::time::timeout(within, rx.wait_for(pred)).await {
        Ok(Ok(state)) => Some(state.clone()),
        _ => None,
    };
    reached.ok_or_else(|| rx.borrow().clone())
}
