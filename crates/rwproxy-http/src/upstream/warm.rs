//! The warm path to the primary: connections opened as soon as a primary is known (at start
//! and after every change), kept at `writes.warm_connections` while idle, so that no write pays
//! a TCP (and TLS) handshake across a long link.
//!
//! With HTTP/2 (`writes.http2`, the default) the warm connections are the multiplexed ones:
//! PINGs keep them open and find dead ones, the warmer replaces what closed. With HTTP/1.1,
//! idle pooled connections are replaced once they have been idle for [`HTTP1_REFRESH`], before
//! the primary's `proxy.header_timeout` (30 s by default) or this pool's 60 s idle timeout
//! closes them. A primary found not to speak HTTP/2 (see [`super::multiplex`]) gets HTTP/1.1
//! warm connections instead, until the primary changes.

use std::sync::Weak;
use std::time::Duration;

use rwproxy_core::NodeState;
use tokio::sync::watch;

use super::multiplex::{Multiplexed, PeerProtocol};
use super::pool::{Pool, Target};
use crate::params::PrimaryUrl;

/// How often the warmer checks its connections (and retries a primary it could not reach).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// An idle HTTP/1.1 warm connection is replaced after this long.
pub const HTTP1_REFRESH: Duration = Duration::from_secs(20);

/// `writes.warm_connections` and `writes.http2`: the path to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmPathParams {
    /// Connections to the primary kept open and ready while idle (0: none opened ahead).
    pub warm_connections: usize,
    /// Forward to other rwproxy nodes over HTTP/2 (h2c, or ALPN `h2` over TLS); upgrades
    /// (WebSockets) always use HTTP/1.1.
    pub http2: bool,
}

impl Default for WarmPathParams {
    fn default() -> Self {
        WarmPathParams {
            warm_connections: 2,
            http2: true,
        }
    }
}

/// What the warmer works on; it ends when the node's pipeline is dropped or its state channel
/// closes.
pub(crate) struct Warmer {
    pub(crate) params: WarmPathParams,
    pub(crate) primary_url: PrimaryUrl,
    pub(crate) connect_timeout: Duration,
    pub(crate) state: watch::Receiver<NodeState>,
    /// Weak: the warmer must not keep a stopped node's connections open.
    pub(crate) pool: Weak<()>,
    pub(crate) http1: Pool,
    pub(crate) http2: Multiplexed,
}

impl Warmer {
    /// The primary's rwproxy when it is another node.
    fn target(&self) -> Option<Target> {
        let primary = self.state.borrow().remote_primary().cloned()?;
        let authority = self.primary_url.authority(&primary)?;
        Some(self.primary_url.target(authority))
    }

    /// Runs until the pipeline is gone.
    pub(crate) async fn run(mut self) {
        loop {
            if self.pool.upgrade().is_none() {
                return;
            }
            let target = self.target();
            if self.params.http2 {
                // A former primary's connections close once their requests end.
                self.http2.retain_only(target.as_ref());
            }
            if let Some(target) = target {
                self.warm(&target).await;
            }
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
        }
    }

    async fn warm(&self, target: &Target) {
        let want = self.params.warm_connections;
        let http1_only = || self.http2.protocol(target) == Some(PeerProtocol::Http1);
        let mut warmed = Ok(());
        if self.params.http2 && !http1_only() {
            warmed = self.http2.fill(target, want, self.connect_timeout).await;
        }
        // Also right after the HTTP/2 warm-up found the primary speaks HTTP/1.1 only.
        if !self.params.http2 || http1_only() {
            warmed = self
                .http1
                .warm(target, want, self.connect_timeout, HTTP1_REFRESH)
                .await;
        }
        if let Err(error) = warmed {
            tracing::debug!(upstream = %target.authority, %error, "could not warm connections to the primary");
        }
    }
}
