//! A small app that keeps its data in its own node's PostgreSQL server: `POST /items/NAME`
//! inserts a row (with `synchronous_commit = off`, the hardest case for a token), `GET
//! /items/NAME` answers 200 when the row is visible on this server and 404 when not. A write on
//! a replica fails the way a real app does (500: read-only transaction). It serves the history
//! checker's key-value workload too ([`crate::pg_kv`], `/kv/KEY`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

struct Shared {
    name: String,
    database_url: String,
    /// One connection shared by every request (tokio-postgres pipelines them), reopened after
    /// it fails: the server restarts or is promoted under the app in some tests.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    writes: AtomicUsize,
    reads: AtomicUsize,
    /// Commits wait for the server's `synchronous_commit` (on: a synchronous standby too, under
    /// Patroni's `synchronous_mode`) instead of `off`.
    durable: bool,
}

/// A running app; stops when dropped.
pub struct PgApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for PgApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PgApp {
    /// Starts an app called `name` on a free port, using the server at `database_url`.
    pub async fn start(name: &str, database_url: &str) -> PgApp {
        Self::start_with(name, database_url, false).await
    }

    /// As [`PgApp::start`], but an acknowledged write is as durable as the server's own
    /// `synchronous_commit` makes it (the Patroni tests prove no acknowledged write is lost).
    pub async fn start_durable(name: &str, database_url: &str) -> PgApp {
        Self::start_with(name, database_url, true).await
    }

    async fn start_with(name: &str, database_url: &str, durable: bool) -> PgApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            database_url: database_url.to_owned(),
            client: tokio::sync::Mutex::new(None),
            writes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            durable,
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        PgApp { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Write requests (`POST`) this app has seen.
    pub fn writes_seen(&self) -> usize {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Read requests (`GET`) this app has seen.
    pub fn reads_seen(&self) -> usize {
        self.shared.reads.load(Ordering::SeqCst)
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.uri().path().strip_prefix("/kv/").map(str::to_owned) {
        return Ok(handle_kv(req, &key, &shared).await);
    }
    let Some(item) = req.uri().path().strip_prefix("/items/").map(str::to_owned) else {
        return Ok(text(StatusCode::NOT_FOUND, "no such route\n".into()));
    };
    let is_write = req.method() == Method::POST;
    if is_write {
        shared.writes.fetch_add(1, Ordering::SeqCst);
    } else {
        shared.reads.fetch_add(1, Ordering::SeqCst);
    }
    let answer = match run(&shared, &item, is_write).await {
        Ok(true) if is_write => text(
            StatusCode::CREATED,
            format!("{} wrote {item}\n", shared.name),
        ),
        Ok(true) => text(StatusCode::OK, format!("{} has {item}\n", shared.name)),
        Ok(false) => text(
            StatusCode::NOT_FOUND,
            format!("{} lacks {item}\n", shared.name),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}\n", shared.name),
        ),
    };
    Ok(answer)
}

/// A `/kv/KEY` request ([`crate::pg_kv`]) over the shared connection.
async fn handle_kv(req: Request<Incoming>, key: &str, shared: &Shared) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return text(StatusCode::BAD_REQUEST, "incomplete body\n".into());
    };
    let request = match crate::pg_kv::KvRequest::parse(&method, key, &body) {
        Ok(request) => request,
        Err((status, why)) => return text(status, why.into()),
    };
    let answer = match client(shared).await {
        Ok(client) => crate::pg_kv::run(&client, &shared.name, request).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => text(StatusCode::OK, body),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}\n", shared.name),
        ),
    }
}

/// The shared connection, opened (with `synchronous_commit = off` for the whole session, the
/// hardest case for a token) when there is none or it failed.
async fn client(shared: &Shared) -> Result<Arc<Client>, String> {
    let mut slot = shared.client.lock().await;
    if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
        return Ok(client.clone());
    }
    let (client, connection) = tokio_postgres::connect(&shared.database_url, NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    if !shared.durable {
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(|e| e.to_string())?;
    }
    let client = Arc::new(client);
    *slot = Some(client.clone());
    Ok(client)
}

/// Inserts `item` (true) or looks it up (whether it is there).
async fn run(shared: &Shared, item: &str, write: bool) -> Result<bool, String> {
    let client = client(shared).await?;
    let describe = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    if write {
        client
            .execute("INSERT INTO items (name) VALUES ($1)", &[&item])
            .await
            .map_err(describe)?;
        Ok(true)
    } else {
        let rows = client
            .query("SELECT 1 FROM items WHERE name = $1", &[&item])
            .await
            .map_err(describe)?;
        Ok(!rows.is_empty())
    }
}
