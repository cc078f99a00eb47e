//! The small app the SQL-database tests put behind rwproxy: `POST /items/NAME` inserts a row,
//! `GET /items/NAME` answers 200 when the row is visible on this node's server and 404 when not.
//! A write the server refuses (a read-only replica) is a 500 with the server's message, the way
//! a real app fails. What is SQL-specific is an [`ItemStore`] (`pg_app`, `my_app`); the HTTP
//! side and its counters are shared here.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
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

use crate::pg_kv::KvRequest;

/// Where an [`ItemsApp`] keeps its items: one table of names in a database server.
pub trait ItemStore: Sized + Send + Sync + 'static {
    /// The `cluster.source` that watches this kind of server (`"postgres"`, `"mysql"`).
    const SOURCE: &'static str;
    /// A store on the server at `database_url`; connects on first use.
    fn open(database_url: &str) -> Self;
    /// Inserts `item`; `Err` carries the server's message.
    fn insert(&self, item: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Whether `item` is visible on this server.
    fn contains(&self, item: &str) -> impl Future<Output = Result<bool, String>> + Send;
    /// Runs a request of the history checker's key-value workload (`/kv/KEY`, see
    /// [`crate::pg_kv`]) for the app called `app`: `Some(Ok(body))` for a 200,
    /// `Some(Err(message))` for a 500; `None` where this store keeps no key-value lists (404).
    fn kv(
        &self,
        app: &str,
        request: KvRequest,
    ) -> impl Future<Output = Option<Result<String, String>>> + Send {
        let _ = (app, request);
        async { None }
    }
}

struct Shared<S> {
    name: String,
    store: S,
}

/// A running app over a store of kind `S`; stops when dropped.
pub struct ItemsApp<S> {
    addr: SocketAddr,
    writes: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    store: PhantomData<fn() -> S>,
}

impl<S> Drop for ItemsApp<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: ItemStore> ItemsApp<S> {
    /// Starts an app called `name` on a free port, using the server at `database_url`.
    pub async fn start(name: &str, database_url: &str) -> Self {
        Self::serve(name, S::open(database_url)).await
    }

    /// Starts an app called `name` (the start of every answer's body) on a free port.
    pub async fn serve(name: &str, store: S) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            store,
        });
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept(listener, shared, counters.clone()));
        ItemsApp {
            addr,
            writes: counters.writes.clone(),
            reads: counters.reads.clone(),
            task,
            store: PhantomData,
        }
    }
}

impl<S> ItemsApp<S> {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Write requests (`POST`) this app has seen.
    pub fn writes_seen(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Read requests (`GET`) this app has seen.
    pub fn reads_seen(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

/// What the app counts, shared by the handle and the serving task.
#[derive(Default)]
struct Counters {
    writes: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
}

async fn accept<S: ItemStore>(
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    counters: Arc<Counters>,
) {
    loop {
        // An accept error (too many open files under a burst) is transient: keep serving.
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone(), counters.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle<S: ItemStore>(
    req: Request<Incoming>,
    shared: Arc<Shared<S>>,
    counters: Arc<Counters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.uri().path().strip_prefix("/kv/").map(str::to_owned) {
        return Ok(handle_kv(req, &key, &shared).await);
    }
    let Some(item) = req.uri().path().strip_prefix("/items/").map(str::to_owned) else {
        return Ok(answer(StatusCode::NOT_FOUND, "no such route".into()));
    };
    let write = req.method() == Method::POST;
    let counter = if write {
        &counters.writes
    } else {
        &counters.reads
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let name = &shared.name;
    let outcome = match write {
        true => shared.store.insert(&item).await.map(|()| true),
        false => shared.store.contains(&item).await,
    };
    Ok(match outcome {
        Ok(true) if write => answer(StatusCode::CREATED, format!("{name} wrote {item}")),
        Ok(true) => answer(StatusCode::OK, format!("{name} has {item}")),
        Ok(false) => answer(StatusCode::NOT_FOUND, format!("{name} lacks {item}")),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")),
    })
}

/// A `/kv/KEY` request: parsed here, run by the store.
async fn handle_kv<S: ItemStore>(
    req: Request<Incoming>,
    key: &str,
    shared: &Shared<S>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, "incomplete body".into());
    };
    let request = match KvRequest::parse(&method, key, &body) {
        Ok(request) => request,
        Err((status, why)) => return answer(status, why.trim_end().into()),
    };
    match shared.store.kv(&shared.name, request).await {
        Some(Ok(body)) => answer(StatusCode::OK, body),
        Some(Err(e)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", shared.name),
        ),
        None => answer(StatusCode::NOT_FOUND, "no key-value lists here".into()),
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    *r.status_mut() = status;
    r
}
