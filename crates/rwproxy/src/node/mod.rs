//! One running rwproxy node: the cluster source, the proxy listener, the admin listener and the
//! task that mirrors state changes into metrics and logs. Used by `run`, `demo` and the tests.

use std::io;
use std::net::SocketAddr;

use rwproxy_core::{Demand, NodeState};
use rwproxy_http::health;
use rwproxy_http::{
    serve, serve_service, Admin, Draining, ListenerLimits, Live, LiveService, Proxy,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

mod core;
mod fail_static;
mod listen;
pub(crate) mod mapping;
mod peers;
mod primary_name;
mod reload;
mod reload_endpoint;
mod source_switch;
mod state_watch;

pub(crate) use self::core::Core;
pub use self::reload::{reload_on_hangup, Applied, Refused, Reloader};
pub(crate) use self::source_switch::SourceSwitch;

/// Binds the listener of configuration key `key`; the error names the key, so that several
/// nodes on one host colliding on a default port (`admin.listen` is `127.0.0.1:9090`) know
/// what to change.
async fn bind(key: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    listen::bind_listener(addr).await.map_err(|error| {
        let hint = if error.kind() == io::ErrorKind::AddrInUse {
            format!(" (another process, or another rwproxy on this host, listens there: give `{key}` a free address)")
        } else {
            String::new()
        };
        io::Error::new(error.kind(), format!("{key}: cannot listen on {addr}: {error}{hint}"))
    })
}

/// A started node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    proxy_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    agent_addr: Option<SocketAddr>,
    state: watch::Receiver<NodeState>,
    draining: Draining,
    demand: Demand,
    drain_delay: std::time::Duration,
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    reloader: Reloader,
    _cluster: SourceSwitch,
}

impl Node {
    /// Binds the listeners and starts every task. Fails only when a listener cannot be bound or
    /// the configuration cannot be mapped (which `check` would have reported).
    pub async fn start(config: &Config) -> io::Result<Node> {
        let proxy = bind("proxy.listen", config.proxy.listen).await?;
        let admin = match config.admin.listen {
            Some(addr) => Some(bind("admin.listen", addr).await?),
            None => None,
        };
        Self::start_on(config, proxy, admin).await
    }

    /// Like [`Node::start`] on listeners bound already (tests bind first to learn their ports;
    /// `proxy.listen` and `admin.listen` are then ignored). The agent listener, when
    /// configured, is bound here; [`Node::agent_addr`] says where.
    pub async fn start_on(
        config: &Config,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
    ) -> io::Result<Node> {
        let core = Core::start(config)?;
        let Core {
            proxy,
            admin: started_admin,
            state,
            draining,
            demand,
            stop,
            cluster,
        } = core;
        let health_view = proxy.health_view().clone();

        let proxy_addr = listener.local_addr()?;
        let mut servers = Vec::new();
        // The request pipeline (see rwproxy_http::proxy::stack), swapped whole by a reload.
        let live_proxy = Live::new(proxy.clone());
        let live_service = Live::new(proxy.service());
        let reloader = Reloader::new(
            config.clone(),
            live_proxy.clone(),
            live_service.clone(),
            started_admin.history.clone(),
            cluster.control(),
        );
        let service = LiveService::new(live_service);
        let drain = config.proxy.drain_timeout;
        let limits = ListenerLimits {
            header_read_timeout: config.proxy.header_timeout,
            max_connections: config.proxy.max_connections,
            write_timeout: Some(config.proxy.write_timeout).filter(|t| !t.is_zero()),
            title_case_headers: config.proxy.title_case_headers,
            ..ListenerLimits::default()
        };
        let tls = crate::tls::server_tls(config, &started_admin.history)?;
        servers.push(tokio::spawn(serve_service(
            listener,
            service,
            limits,
            tls,
            Some(proxy.metrics().clone()),
            stop.clone().cancelled_owned(),
            drain,
        )));

        let mut admin_addr = None;
        if let Some(listener) = admin_listener {
            admin_addr = Some(listener.local_addr()?);
            let reloader = reloader.clone();
            let demand = demand.clone();
            let handler = move |request: http::Request<hyper::body::Incoming>, _client| {
                let reloader = reloader.clone();
                // The proxy current now: its metrics, pools and health view.
                let admin = Admin {
                    proxy: Proxy::clone(&live_proxy.load()),
                    demand: demand.clone(),
                    history: started_admin.history.clone(),
                    ui: started_admin.ui,
                    peers: started_admin.peers.clone(),
                };
                async move {
                    if reload_endpoint::wants(&request) {
                        reload_endpoint::answer(request.method(), &reloader).await
                    } else {
                        admin.handle(&request)
                    }
                }
            };
            // The admin listener stays up while the proxy drains, so probes see `draining`.
            servers.push(tokio::spawn(serve(
                listener,
                handler,
                limits,
                stop.clone().cancelled_owned(),
                drain,
            )));
        }
        let mut agent_addr = None;
        if let Some(addr) = config.admin.agent_listen {
            let listener = bind("admin.agent_listen", addr).await?;
            agent_addr = Some(listener.local_addr()?);
            servers.push(tokio::spawn(health::serve_agent(
                listener,
                health_view,
                stop.clone().cancelled_owned(),
            )));
        }
        tracing::info!(%proxy_addr, admin = ?admin_addr, agent = ?agent_addr, app = %config.proxy.app, source = config.cluster.source.name(), "rwproxy started");
        Ok(Node {
            proxy_addr,
            admin_addr,
            agent_addr,
            state,
            draining,
            demand,
            drain_delay: config.proxy.drain_delay,
            stop,
            servers,
            reloader,
            _cluster: cluster,
        })
    }

    /// Where the proxy listener accepts clients.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the admin listener accepts, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where the HAProxy agent-check listener accepts, if enabled (`admin.agent_listen`).
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_addr
    }

    /// What reloads this node's configuration (SIGHUP and `POST /reload` call it).
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// The node's cluster state.
    pub fn state(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Reads waiting for this node to reach their token right now.
    pub fn waiting_reads(&self) -> usize {
        self.demand.active()
    }

    /// Turns health to `draining` (503, agent `drain`) while still serving, so the edge can move
    /// traffic away before [`Node::shutdown`] stops accepting (a pre-stop hook's job).
    pub fn drain(&self) {
        self.draining.start();
    }

    /// Turns health to `draining`, stops accepting, lets in-flight requests finish (bounded by
    /// `proxy.drain_timeout`) and returns when every listener has stopped.
    pub async fn shutdown(self) {
        self.draining.start();
        if !self.drain_delay.is_zero() {
            // Give the edge time to see `draining` on its next health checks and move traffic
            // away while this node still answers.
            tracing::info!(
                delay_ms = self.drain_delay.as_millis() as u64,
                "draining: health reports 503 before the listeners stop"
            );
            tokio::time::sleep(self.drain_delay).await;
        }
        self.stop.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_address_in_use_names_its_key() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind("admin.listen", addr).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("admin.listen: cannot listen on {addr}: ")),
            "{message}"
        );
        assert!(
            message.contains("give `admin.listen` a free address"),
            "{message}"
        );
    }
}
