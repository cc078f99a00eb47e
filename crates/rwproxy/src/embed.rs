//! Embedding rwproxy in a Rust app: the same pipeline the binary runs, as a `tower::Layer`
//! around the app's own router, with the cluster source running in-process. Reads are served
//! by the app itself (no second hop); writes on a replica go to the primary's rwproxy (a
//! binary node or another embedded one), tokens are issued on the primary, and the health path
//! is answered by the layer. See `docs/embedding.md` and `examples/axum_notes.rs`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rwproxy::embed::Embedded;
//!
//! let node = Embedded::from_toml(
//!     r#"
//!     node = "n1"
//!     [cluster]
//!     source = "litefs"
//!     mount = "/litefs"
//!     databases = ["app.db"]
//!     [writes]
//!     primary_url = "http://{primary}:8080"
//!     "#,
//! )?
//! .start()
//! .await?;
//! // Wrap any tower service whose requests are `Request<rwproxy_http::Body>`, such as an axum
//! // `Router`: `router.layer(node.layer())`.
//! let layer = node.layer();
//! # let _ = layer;
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use rwproxy_core::NodeState;
use rwproxy_http::health::HealthView;
use rwproxy_http::{serve, Admin, Draining, ListenerLimits, RwproxyLayer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigErrors, Problem};
use crate::node::{Core, SourceSwitch};

/// `proxy.app` of an embedded node: never contacted (the app's own service takes its place),
/// filled in when the configuration leaves it out.
const UNUSED_APP: &str = "http://127.0.0.1:1";

/// An embedded node's configuration, ready to start.
#[derive(Clone, Debug)]
pub struct Embedded {
    config: Config,
}

impl Embedded {
    /// The configuration the binary's TOML file gives (`proxy.app` may be left out: the app's
    /// own service takes its place; `proxy.listen` is not used: the app serves its own port).
    pub fn from_toml(text: &str) -> Result<Embedded, ConfigErrors> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors(vec![Problem::new("configuration", e.message().to_owned())])
        })?;
        let proxy = table
            .entry("proxy")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(proxy) = proxy {
            proxy
                .entry("app")
                .or_insert_with(|| toml::Value::String(UNUSED_APP.to_owned()));
        }
        Ok(Embedded {
            config: config::parse(&toml::to_string(&table).unwrap_or_default())?,
        })
    }

    /// [`Embedded::from_toml`] with the file at `path`.
    pub fn from_file(path: &Path) -> Result<Embedded, ConfigErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text),
            Err(err) => Err(ConfigErrors(vec![Problem::new(
                path.display().to_string(),
                format!("cannot read the configuration file: {err}"),
            )])),
        }
    }

    /// A configuration parsed already.
    pub fn from_config(config: Config) -> Embedded {
        Embedded { config }
    }

    /// Starts the cluster source and the node's background tasks, and the admin listener
    /// (`/metrics`, `/health`, `/live`) when `admin.listen` is set. Needs a Tokio runtime.
    pub async fn start(self) -> io::Result<EmbeddedNode> {
        let admin_listener = match self.config.admin.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        self.start_on(admin_listener)
    }

    /// [`Embedded::start`] with the admin listener bound already (or none).
    pub fn start_on(self, admin_listener: Option<TcpListener>) -> io::Result<EmbeddedNode> {
        let core = Core::start(&self.config)?;
        let layer = core.proxy.layer();
        let mut admin_addr = None;
        let mut admin_server = None;
        if let Some(listener) = admin_listener {
            admin_addr = Some(listener.local_addr()?);
            let admin = core.admin.clone();
            let handler = move |request: http::Request<hyper::body::Incoming>, _client| {
                let response = admin.handle(&request);
                async move { response }
            };
            admin_server = Some(tokio::spawn(serve(
                listener,
                handler,
                ListenerLimits::default(),
                core.stop.clone().cancelled_owned(),
                self.config.proxy.drain_timeout,
            )));
        }
        tracing::info!(admin = ?admin_addr, source = self.config.cluster.source.name(), "rwproxy embedded node started");
        Ok(EmbeddedNode {
            layer,
            admin: core.admin,
            state: core.state,
            draining: core.draining,
            stop: core.stop,
            admin_addr,
            admin_server,
            _cluster: core.cluster,
        })
    }
}

/// A running embedded node. Dropping it does not stop its tasks; call
/// [`EmbeddedNode::shutdown`].
#[derive(Debug)]
pub struct EmbeddedNode {
    layer: RwproxyLayer,
    admin: Admin,
    state: watch::Receiver<NodeState>,
    draining: Draining,
    stop: CancellationToken,
    admin_addr: Option<SocketAddr>,
    admin_server: Option<JoinHandle<()>>,
    _cluster: SourceSwitch,
}

impl EmbeddedNode {
    /// The pipeline as a layer: wrap the app's router (any `tower::Service` of
    /// `Request<rwproxy_http::Body>` whose error is `Infallible`) with it.
    pub fn layer(&self) -> RwproxyLayer {
        self.layer.clone()
    }

    /// The admin endpoints (`/metrics`, `/health`, `/health/agent`, `/live`), for an app that
    /// serves them on a route of its own instead of `admin.listen`.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// This node's health, as the health path answers it.
    pub fn health_view(&self) -> &HealthView {
        self.admin.proxy.health_view()
    }

    /// Where the admin listener accepts, if `admin.listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The node's cluster state.
    pub fn state(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Turns health to `draining` (503) so the edge moves traffic away before the app stops.
    pub fn drain(&self) {
        self.draining.start();
    }

    /// Stops the node's tasks and its admin listener (the app stops its own server).
    pub async fn shutdown(self) {
        self.draining.start();
        self.stop.cancel();
        if let Some(server) = self.admin_server {
            let _ = server.await;
        }
    }
}
