//! The demo's application: a tiny notes API, one instance per node, behaving like an app on a
//! LiteFS node: it reads and writes only its own node's database, and a write on a replica
//! fails with the 500 a read-only SQLite database causes (rwproxy never lets one through).
//!
//! | request | does |
//! |---|---|
//! | `GET /notes` | all notes, as a JSON object |
//! | `GET /notes/<key>` | the note's text, or 404 |
//! | `PUT` or `POST /notes/<key>` | stores the body (201 new, 200 replaced) |
//! | `DELETE /notes/<key>` | removes it (200, or 404 when missing) |
//! | `GET /demo/status` | this node's role, TXID and note count (JSON) |
//! | `POST /demo/promote` | makes this node the primary |
//!
//! Every response says which node answered (`demo-node`), so routing is visible with `curl -i`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::db::{Op, ReadOnly};

/// Largest note accepted: the demo keeps everything in memory.
const MAX_NOTE: usize = 64 * 1024;

/// What one app instance needs to answer.
#[derive(Clone, Debug)]
pub(crate) struct App {
    /// This app's node index.
    pub(crate) node: usize,
    /// The node's name (its rwproxy's `127.0.0.1:PORT`), in the `demo-node` header.
    pub(crate) name: Arc<str>,
    pub(crate) cluster: Arc<Cluster>,
}

/// Serves `app` on `listener` until `stop`; open connections are dropped with the task.
pub(crate) async fn serve(listener: TcpListener, app: App, stop: CancellationToken) {
    // Owning the connection tasks here means returning aborts them: nothing outlives the demo.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "demo app: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::OK, format!("{value}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

impl App {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let mut response = self.route(request).await;
        if let Ok(value) = HeaderValue::from_str(&self.name) {
            response.headers_mut().insert(super::NODE_HEADER, value);
        }
        response
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match path.as_str() {
            "/notes" => match method {
                Method::GET | Method::HEAD => self.list(),
                _ => method_not_allowed("GET, HEAD"),
            },
            "/demo/status" => match method {
                Method::GET | Method::HEAD => self.status(),
                _ => method_not_allowed("GET, HEAD"),
            },
            "/demo/promote" => match method {
                Method::POST => self.promote().await,
                _ => method_not_allowed("POST"),
            },
            _ => match path.strip_prefix("/notes/") {
                Some(key) if !key.is_empty() && !key.contains('/') => {
                    self.note(method, key.to_owned(), request).await
                }
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }

    fn list(&self) -> Response<Full<Bytes>> {
        let notes = self.cluster.read(self.node, |db| db.notes().clone());
        json(&serde_json::json!(notes))
    }

    fn status(&self) -> Response<Full<Bytes>> {
        let cluster = &self.cluster;
        let primary = cluster.primary();
        let (txid, writable, notes) = cluster.read(self.node, |db| {
            (db.txid(), db.is_writable(), db.notes().len())
        });
        json(&serde_json::json!({
            "node": &*self.name,
            "role": if primary == self.node { "primary" } else { "replica" },
            "primary": cluster.name(primary),
            "txid": txid,
            "writable": writable,
            "notes": notes,
        }))
    }

    async fn promote(&self) -> Response<Full<Bytes>> {
        match self.cluster.promote(self.node).await {
            Ok(old) if old == self.node => text(
                StatusCode::OK,
                format!("{} is already the primary\n", self.name),
            ),
            Ok(old) => text(
                StatusCode::OK,
                format!(
                    "{} is now the primary (was {}); every node forwards writes here\n",
                    self.name,
                    self.cluster.name(old),
                ),
            ),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        }
    }

    async fn note(
        &self,
        method: Method,
        key: String,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let op = match method {
            Method::GET | Method::HEAD => {
                return match self
                    .cluster
                    .read(self.node, |db| db.get(&key).map(str::to_owned))
                {
                    Some(value) => text(StatusCode::OK, value),
                    None => text(StatusCode::NOT_FOUND, format!("no note {key:?}\n")),
                };
            }
            Method::PUT | Method::POST => {
                let body = match Limited::new(request.into_body(), MAX_NOTE).collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => {
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "note too large (64 KiB max)\n",
                        )
                    }
                };
                Op::Put {
                    key: key.clone(),
                    value: String::from_utf8_lossy(&body).into_owned(),
                }
            }
            Method::DELETE => Op::Delete { key: key.clone() },
            _ => return method_not_allowed("GET, HEAD, PUT, POST, DELETE"),
        };
        let is_delete = matches!(op, Op::Delete { .. });
        match self.cluster.write(self.node, op) {
            Err(error) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot update the mount: {error}\n"),
            ),
            // What SQLite says when a replica's app tries to write.
            Ok(Err(ReadOnly)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "attempt to write a readonly database\n",
            ),
            Ok(Ok(written)) if is_delete && !written.changed => {
                text(StatusCode::NOT_FOUND, format!("no note {key:?}\n"))
            }
            Ok(Ok(written)) => {
                let (status, verb) = match (is_delete, written.existed) {
                    (true, _) => (StatusCode::OK, "deleted"),
                    (false, true) => (StatusCode::OK, "replaced"),
                    (false, false) => (StatusCode::CREATED, "stored"),
                };
                text(
                    status,
                    format!("{verb} {key:?} on {} at txid {}\n", self.name, written.txid),
                )
            }
        }
    }
}
