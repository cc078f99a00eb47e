//! The app each history-test node runs: `POST /kv/{key}` appends the body (a number) to the
//! key's list through the [`Ledger`] (500 on a node without the write lease, like a read-only
//! SQLite on a LiteFS replica); `GET /kv/{key}` answers the list this node sees, as
//! space-separated numbers.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ledger::Ledger;

/// A running ledger app; stops when dropped.
pub struct LedgerApp {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for LedgerApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LedgerApp {
    /// Starts node `node`'s app over `ledger` on `127.0.0.1:0`.
    pub async fn start(ledger: Ledger, node: usize) -> LedgerApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, ledger.clone(), node));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LedgerApp { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    ledger: Ledger,
    node: usize,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = req
        .uri()
        .path()
        .strip_prefix("/kv/")
        .and_then(|k| k.parse().ok());
    let Some(key) = key else {
        return Ok(answer(StatusCode::NOT_FOUND, "no such path".into()));
    };
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST, "incomplete body".into())),
    };
    Ok(match method {
        Method::GET => {
            let values: Vec<String> = ledger
                .read(node, key)
                .iter()
                .map(|v| v.to_string())
                .collect();
            answer(StatusCode::OK, values.join(" "))
        }
        Method::POST => {
            let value = std::str::from_utf8(&body)
                .ok()
                .and_then(|b| b.trim().parse().ok());
            let Some(value) = value else {
                return Ok(answer(StatusCode::BAD_REQUEST, "not a number".into()));
            };
            match ledger.write(node, key, value) {
                Ok(()) => answer(StatusCode::OK, "appended".into()),
                Err(_) => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "attempt to write a readonly database".into(),
                ),
            }
        }
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, "GET or POST".into()),
    })
}
