//! A real HTTP app for the tests. It records every request it sees; when it "is primary" it
//! accepts writes and advances the positions of its mount, like an app on a LiteFS primary;
//! otherwise it refuses writes the way a read-only SQLite replica makes an app fail (500).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::mount::Mount;
use crate::sha256_hex;

/// One request the app saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    pub body_sha256: String,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
    accepts_writes: AtomicBool,
    /// What `GET /healthz` answers: 200 when true, 503 when false.
    healthz_ok: AtomicBool,
    mount: Option<Arc<Mount>>,
    databases: Vec<String>,
    /// `x-write-id` of every write the app applied (accepted, body complete), in order.
    applied: Mutex<Vec<String>>,
    /// `x-write-id` of every write the app refused because it was not accepting writes.
    refused: Mutex<Vec<String>>,
    /// Requests whose body broke off before its end (never applied).
    incomplete: AtomicUsize,
    /// Serializes applying writes, like SQLite's single writer: concurrent writes would
    /// otherwise race on the mount's position files (read-modify-write, temp file + rename).
    write_lock: Mutex<()>,
    /// Connections accepted so far.
    connections: AtomicUsize,
}

/// The header the chaos tests use to tell writes apart.
pub const WRITE_ID: &str = "x-write-id";

/// A running test app; stops when dropped.
pub struct App {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    /// Starts an app called `name`. With a mount, accepted writes bump each database's position.
    pub async fn start(
        name: &str,
        accepts_writes: bool,
        mount: Option<Arc<Mount>>,
        databases: &[&str],
    ) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
            accepts_writes: AtomicBool::new(accepts_writes),
            healthz_ok: AtomicBool::new(true),
            mount,
            databases: databases.iter().map(|s| s.to_string()).collect(),
            applied: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            incomplete: AtomicUsize::new(0),
            write_lock: Mutex::new(()),
            connections: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        App { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything the app has seen.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests seen with a non-read method.
    pub fn writes_seen(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| !matches!(s.method, Method::GET | Method::HEAD | Method::OPTIONS))
            .count()
    }

    /// The name the app reports in its answers (`app0`, ...).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The `x-write-id` of every write this app applied, in order (writes without the header
    /// are not listed).
    pub fn write_ids(&self) -> Vec<String> {
        self.shared.applied.lock().unwrap().clone()
    }

    /// The `x-write-id` of every write this app refused (500) because it was not accepting
    /// writes, like a read-only SQLite on a replica.
    pub fn refused_write_ids(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// Requests whose body broke off before its end; the app applied none of them.
    pub fn incomplete_bodies(&self) -> usize {
        self.shared.incomplete.load(Ordering::SeqCst)
    }

    /// Connections the app has accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Makes `GET /healthz` answer 200 (true) or 503 (false).
    pub fn set_healthz(&self, ok: bool) {
        self.shared.healthz_ok.store(ok, Ordering::SeqCst);
    }

    /// Promote or demote the app (what LiteFS's lease does to SQLite).
    pub fn set_accepts_writes(&self, yes: bool) {
        self.shared.accepts_writes.store(yes, Ordering::SeqCst);
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    // WebSocket and trailer endpoints live in protocols.rs.
    let req = match crate::protocols::handle(req, &shared.name).await {
        Ok(response) => return Ok(response),
        Err(req) => req,
    };
    let (parts, body) = req.into_parts();
    // A body that breaks off (the client or a proxy reset mid-body) is an error for a real app
    // too: it never applies such a write.
    let (body, complete) = match body.collect().await {
        Ok(b) => (b.to_bytes(), true),
        Err(_) => (Bytes::new(), false),
    };
    let seen = Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len: body.len(),
        body_sha256: sha256_hex(&body),
    };
    shared.seen.lock().unwrap().push(seen.clone());
    if !complete {
        shared.incomplete.fetch_add(1, Ordering::SeqCst);
        return Ok(full(StatusCode::BAD_REQUEST, "incomplete request body"));
    }
    let path = parts.uri.path();

    if path == "/sse" {
        // Three events 300 ms apart: a buffering proxy would deliver them together.
        let stream = futures_util::stream::unfold(0u32, |i| async move {
            if i == 3 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: event {i}\n\n")))),
                i + 1,
            ))
        });
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(r);
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        return Ok(full(StatusCode::OK, data));
    }
    if path == "/healthz" {
        return Ok(if shared.healthz_ok.load(Ordering::SeqCst) {
            full(StatusCode::OK, "ok")
        } else {
            full(StatusCode::SERVICE_UNAVAILABLE, "sick")
        });
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(full(code, format!("status {}", code.as_u16())));
    }
    if path == "/cookie" {
        let mut r = full(StatusCode::OK, "cookie set");
        r.headers_mut()
            .append("set-cookie", "session=app; Path=/".parse().unwrap());
        return Ok(r);
    }

    let is_read = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let write_id = (!is_read)
        .then(|| parts.headers.get(WRITE_ID))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !is_read {
        // Like SQLite: take the write lock, then find out whether the database is writable.
        let _writer = shared.write_lock.lock().unwrap();
        if !shared.accepts_writes.load(Ordering::SeqCst) {
            if let Some(id) = write_id {
                shared.refused.lock().unwrap().push(id);
            }
            return Ok(full(
                StatusCode::INTERNAL_SERVER_ERROR,
                "attempt to write a readonly database",
            ));
        }
        if let Some(mount) = &shared.mount {
            for db in &shared.databases {
                mount.set_pos(db, mount.pos(db) + 1);
            }
        }
        if let Some(id) = write_id {
            shared.applied.lock().unwrap().push(id);
        }
    }
    let doc = serde_json::json!({
        "app": shared.name,
        "method": seen.method.as_str(),
        "uri": seen.uri,
        "body_len": seen.body_len,
        "body_sha256": seen.body_sha256,
    });
    let mut r = full(StatusCode::OK, doc.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(r)
}
