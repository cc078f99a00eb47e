//! A small app that keeps its data in its own node's MariaDB server: `POST /items/NAME` inserts
//! a row, `GET /items/NAME` answers 200 when the row is visible on this server and 404 when not.
//! A write on a replica fails the way a real app does (500: the server is read-only).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct Shared {
    name: String,
    /// mysql_async's pool reconnects by itself after the server restarts or is promoted.
    pool: Pool,
    writes: AtomicUsize,
    reads: AtomicUsize,
}

/// A running app; stops when dropped.
pub struct MyApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for MyApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MyApp {
    /// Starts an app called `name` on a free port, using the server at `database_url`
    /// (`mysql://USER:PASSWORD@HOST:PORT`; the table is `app.items`).
    pub async fn start(name: &str, database_url: &str) -> MyApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let opts = Opts::from_url(database_url).expect("database url");
        // Exactly the address given, never the server's Unix socket.
        // At most 8 connections: a burst of 1,000 requests queues for them rather than passing
        // the server's max_connections.
        let limits = PoolConstraints::new(0, 8).expect("0 <= 8");
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .pool_opts(PoolOpts::default().with_constraints(limits));
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            pool: Pool::new(opts),
            writes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        MyApp { addr, shared, task }
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
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(item) = req.uri().path().strip_prefix("/items/").map(str::to_owned) else {
        return Ok(answer(StatusCode::NOT_FOUND, "no such route".into()));
    };
    let write = req.method() == Method::POST;
    let counter = if write { &shared.writes } else { &shared.reads };
    counter.fetch_add(1, Ordering::SeqCst);
    let name = &shared.name;
    Ok(match run(&shared.pool, &item, write).await {
        Ok(true) if write => answer(StatusCode::CREATED, format!("{name} wrote {item}")),
        Ok(true) => answer(StatusCode::OK, format!("{name} has {item}")),
        Ok(false) => answer(StatusCode::NOT_FOUND, format!("{name} lacks {item}")),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")),
    })
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    *r.status_mut() = status;
    r
}

/// Inserts `item` (true) or looks it up (whether it is there).
async fn run(pool: &Pool, item: &str, write: bool) -> Result<bool, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    if write {
        conn.exec_drop("INSERT INTO app.items (name) VALUES (?)", (item,))
            .await?;
        Ok(true)
    } else {
        let row: Option<u8> = conn
            .exec_first("SELECT 1 FROM app.items WHERE name = ?", (item,))
            .await?;
        Ok(row.is_some())
    }
}
