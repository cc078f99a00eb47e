//! The optional check of the local app (`health.app_path`): a `GET` every `health.app_interval`
//! on a connection pool of its own, so the proxy's pool (and its metrics) only carry traffic.

use std::future::Future;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Limited};

use super::{AppState, SharedHealth};
use crate::body::Body;
use crate::upstream::pool::PoolConfig;
use crate::upstream::{Pool, Target};

/// Response bodies of the app's health path are read (so the connection can be reused) up to
/// this size; beyond it the connection is dropped.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// One app check target: `GET path` on the local app, bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct AppCheck {
    target: Target,
    path: PathAndQuery,
    timeout: Duration,
    pool: Pool,
}

impl AppCheck {
    /// A check of `path` on the app at `app`.
    pub fn new(app: Authority, path: PathAndQuery, timeout: Duration) -> Self {
        AppCheck {
            target: Target::http(app),
            path,
            timeout,
            pool: Pool::new(PoolConfig {
                max_idle_per_target: 1,
                idle_timeout: Duration::from_secs(30),
                ..PoolConfig::default()
            }),
        }
    }

    /// One check: passes on a 2xx or 3xx answer within the timeout; otherwise says why not.
    pub async fn probe(&self) -> Result<(), String> {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = http::Uri::from(self.path.clone());
        let headers = request.headers_mut();
        if let Ok(host) = HeaderValue::from_str(self.target.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("rwproxy-app-check"),
        );
        let exchange = async {
            let response = self
                .pool
                .send(&self.target, request, self.timeout, Duration::ZERO)
                .await
                .map_err(|e| match e {
                    crate::upstream::SendError::Connect { error, .. } => error.to_string(),
                    crate::upstream::SendError::Sent(error) => error.to_string(),
                    crate::upstream::SendError::Saturated { .. } => {
                        "no connection to the app came free".to_owned()
                    }
                })?;
            let status = response.status();
            let _ = Limited::new(response.into_body(), MAX_CHECK_BODY)
                .collect()
                .await;
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("status {}", status.as_u16()))
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}ms", self.timeout.as_millis())),
        }
    }
}

/// Checks the app every `interval` until `stop` resolves, publishing into `shared`: the app is
/// down until its first passing check, then down again after `fall` failed checks in a row.
/// Changes are logged once each.
pub async fn run_app_check(
    check: AppCheck,
    interval: Duration,
    fall: u32,
    shared: SharedHealth,
    stop: impl Future<Output = ()>,
) {
    shared.set_app(AppState::Down);
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;
    let mut ever_up = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => return,
        }
        let result = tokio::select! {
            result = check.probe() => result,
            () = &mut stop => return,
        };
        let was = shared.app();
        match result {
            Ok(()) => {
                failures = 0;
                if was != AppState::Up {
                    shared.set_app(AppState::Up);
                    if ever_up {
                        tracing::info!(path = %check.path, "app check passes again");
                    } else {
                        tracing::info!(path = %check.path, "app check passes");
                    }
                    ever_up = true;
                }
            }
            Err(problem) => {
                failures = failures.saturating_add(1);
                if was == AppState::Up && failures >= fall.max(1) {
                    shared.set_app(AppState::Down);
                    tracing::warn!(path = %check.path, %problem, failures, "app check fails: node unhealthy (app-down)");
                } else if !ever_up && failures == fall.max(1) {
                    tracing::warn!(path = %check.path, %problem, "app check has not passed yet");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_fails_the_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let check = AppCheck::new(
            addr.parse().unwrap(),
            PathAndQuery::from_static("/healthz"),
            Duration::from_millis(500),
        );
        assert!(check.probe().await.is_err());
    }
}
