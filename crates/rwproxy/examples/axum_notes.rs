//! A notes app in axum with rwproxy embedded: reads are served in-process, writes on a replica
//! go to the primary (whether the primary runs this app or the `rwproxy` binary), position
//! tokens come back on writes, the layer answers `/health`, and `/metrics` is on the admin
//! listener.
//!
//! ```sh
//! cargo run -p rwproxy --example axum_notes
//! ```
//!
//! starts a primary and a replica of this app in one process, on directories in LiteFS's mount
//! format (a stand-in for LiteFS: every write is "replicated" by advancing both nodes'
//! `notes.db-pos`), and prints what to try. `docs/embedding.md` explains it step by step;
//! `tests/tests/embedding.rs` runs the same code next to binary nodes.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rwproxy::demo::Mount;
use rwproxy::embed::{Embedded, EmbeddedNode};
use rwproxy_http::ClientInfo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The database the position token follows (its `-pos` file is in each mount).
pub const DATABASE: &str = "notes.db";
/// The response header naming the node whose app answered.
pub const NODE_HEADER: &str = "notes-node";

/// The notes every node sees, standing in for the replicated SQLite database: one copy in
/// memory, plus each node's LiteFS-format mount directory, whose position a write advances.
#[derive(Debug, Default)]
pub struct Notes {
    inner: Mutex<NotesInner>,
}

#[derive(Debug, Default)]
struct NotesInner {
    notes: BTreeMap<String, String>,
    txid: u64,
    mounts: Vec<Arc<Mount>>,
}

impl Notes {
    /// Creates the mount directory of a node at `dir`, at the database's current position.
    pub fn add_mount(&self, dir: PathBuf) -> io::Result<Arc<Mount>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mount = Arc::new(Mount::create(dir, DATABASE, inner.txid.max(1))?);
        inner.mounts.push(mount.clone());
        Ok(mount)
    }

    /// Stores a note and advances every node's position: `true` when the key is new.
    fn put(&self, key: String, text: String) -> io::Result<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let new = inner.notes.insert(key, text).is_none();
        inner.txid = inner.txid.max(1) + 1;
        for mount in &inner.mounts {
            mount.set_pos(inner.txid)?;
        }
        Ok(new)
    }

    fn get(&self, key: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.notes.get(key).cloned()
    }

    fn all(&self) -> BTreeMap<String, String> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.notes.clone()
    }
}

/// One node's app state: the notes, and its mount (a replica's database is read-only).
#[derive(Clone, Debug)]
struct AppState {
    notes: Arc<Notes>,
    mount: PathBuf,
    name: Arc<str>,
}

/// The notes app itself, with no rwproxy in it: `GET /notes`, `GET /notes/{key}`,
/// `PUT /notes/{key}`. On a replica, writes fail as SQLite's would on a LiteFS replica.
pub fn notes_app(notes: Arc<Notes>, mount: &Path, name: &str) -> Router {
    let state = AppState {
        notes,
        mount: mount.to_path_buf(),
        name: Arc::from(name),
    };
    Router::new()
        .route("/notes", get(list))
        .route("/notes/{key}", get(read).put(write).post(write))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            name_the_node,
        ))
        .with_state(state)
}

async fn list(State(app): State<AppState>) -> Response {
    axum::Json(app.notes.all()).into_response()
}

async fn read(State(app): State<AppState>, UrlPath(key): UrlPath<String>) -> Response {
    match app.notes.get(&key) {
        Some(text) => text.into_response(),
        None => (StatusCode::NOT_FOUND, "no such note\n").into_response(),
    }
}

async fn write(
    State(app): State<AppState>,
    UrlPath(key): UrlPath<String>,
    text: String,
) -> Response {
    // LiteFS: a replica has a `.primary` file, and its database refuses writes.
    if app.mount.join(".primary").exists() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "read-only replica\n").into_response();
    }
    match app.notes.put(key, text) {
        Ok(true) => (StatusCode::CREATED, "created\n").into_response(),
        Ok(false) => "replaced\n".into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

async fn name_the_node(State(app): State<AppState>, mut response: Response) -> Response {
    if let Ok(name) = HeaderValue::from_str(&app.name) {
        response.headers_mut().insert(NODE_HEADER, name);
    }
    response
}

/// The client's address for rwproxy (`X-Forwarded-For` on forwarded writes), from axum's
/// connection info.
async fn client_info(ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request) -> Request {
    request
        .extensions_mut()
        .insert(ClientInfo::new(peer.ip(), false));
    request
}

/// An embedded node's configuration: the same TOML the binary reads (`proxy.app` and
/// `proxy.listen` are not needed: the app serves itself).
pub fn node_toml(name: &str, mount: &Path) -> String {
    let quote = |s: &str| format!("{s:?}");
    format!(
        r#"node = {name}

[admin]
listen = "127.0.0.1:0"

[cluster]
source = "litefs"
mount = {mount}
databases = ["{DATABASE}"]
poll = "50ms"

[writes]
primary_url = "http://{{primary}}"
"#,
        name = quote(name),
        mount = quote(&mount.display().to_string()),
    )
}

/// A running node of this app with rwproxy embedded.
#[derive(Debug)]
pub struct NotesNode {
    /// Where the app (and so the node) accepts clients.
    pub addr: SocketAddr,
    /// The embedded rwproxy: state, health, admin listener.
    pub rwproxy: EmbeddedNode,
    server: JoinHandle<()>,
}

impl NotesNode {
    /// Starts the app on `listener` (its address is the node's name: `writes.primary_url`
    /// is `http://{primary}`), wrapped in rwproxy's layer.
    pub async fn start(
        listener: TcpListener,
        notes: Arc<Notes>,
        mount: &Path,
    ) -> io::Result<NotesNode> {
        let addr = listener.local_addr()?;
        let name = addr.to_string();
        let embedded = Embedded::from_toml(&node_toml(&name, mount))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let rwproxy = embedded.start().await?;
        // Layers added later are outer: the client's address is known before rwproxy's layer.
        let app = notes_app(notes, mount, &name)
            .layer(rwproxy.layer())
            .layer(axum::middleware::map_request(client_info));
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(error) = axum::serve(listener, service).await {
                eprintln!("notes app stopped: {error}");
            }
        });
        Ok(NotesNode {
            addr,
            rwproxy,
            server,
        })
    }

    /// Stops the app and its embedded node.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.rwproxy.shutdown().await;
    }
}

#[allow(dead_code)] // When this file is compiled into the end-to-end test, `main` is unused.
#[tokio::main]
async fn main() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = Arc::new(Notes::default());
    let primary_listener = TcpListener::bind("127.0.0.1:0").await?;
    let replica_listener = TcpListener::bind("127.0.0.1:0").await?;
    let primary_addr = primary_listener.local_addr()?;
    let primary_mount = notes.add_mount(dir.path().join("primary"))?;
    let replica_mount = notes.add_mount(dir.path().join("replica"))?;
    primary_mount.make_primary()?;
    replica_mount.make_replica(&primary_addr.to_string(), std::time::Duration::ZERO)?;
    let primary = NotesNode::start(primary_listener, notes.clone(), primary_mount.path()).await?;
    let replica = NotesNode::start(replica_listener, notes, replica_mount.path()).await?;
    let (p, r) = (primary.addr, replica.addr);
    let admin = replica
        .rwproxy
        .admin_addr()
        .map_or("-".into(), |a| a.to_string());
    println!(
        "notes app with rwproxy embedded: primary http://{p}, replica http://{r}\n\n\
         curl -i -X PUT --data 'hello' http://{r}/notes/first   # forwarded to the primary, token back\n\
         curl -i http://{r}/notes/first                         # served by the replica in-process\n\
         curl -i http://{r}/health                              # answered by rwproxy's layer\n\
         curl -s http://{admin}/metrics | grep rwproxy_requests  # the replica's metrics\n\n\
         Ctrl-C stops both."
    );
    tokio::signal::ctrl_c().await?;
    replica.stop().await;
    primary.stop().await;
    Ok(())
}
