//! HAProxy's agent-check dialect: one line of words, served over plain TCP (what HAProxy's
//! `agent-check` speaks) and over HTTP on the admin listener (for people and scripts).

use std::future::Future;
use std::time::Duration;

use rwproxy_core::{NodeState, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{HealthStatus, HealthView};

/// Bound on one agent connection (write the line, wait for the peer to close).
const AGENT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The weight, in percent of the server's configured weight, for a replica lagging `lag`:
/// 100% at no lag, falling linearly to 10% at `max_lag`, so an edge that balances by weight
/// shifts traffic towards fresher replicas before any of them turns unhealthy.
pub fn weight_percent(lag: Option<Duration>, max_lag: Duration) -> u32 {
    let Some(lag) = lag else { return 100 };
    if max_lag.is_zero() {
        return if lag.is_zero() { 100 } else { 10 };
    }
    let fraction = (lag.as_secs_f64() / max_lag.as_secs_f64()).clamp(0.0, 1.0);
    (100.0 - 90.0 * fraction).round().clamp(10.0, 100.0) as u32
}

/// The agent line for a verdict, newline-terminated:
///
/// * `up ready NN%`: healthy; `ready` cancels a `drain` this agent set earlier (HAProxy keeps
///   an agent's administrative state until the agent reverts it), `NN%` is [`weight_percent`];
/// * `up ready 100%` when `degraded` (fail-static: serving reads, no primary anywhere);
/// * `drain`: shutting down: no new connections, established ones finish;
/// * `down #<status>`: unhealthy for another reason, the status as the description HAProxy
///   shows on its stats page.
pub fn agent_line(status: HealthStatus, state: &NodeState, max_lag: Duration) -> String {
    match status {
        HealthStatus::Ok => {
            let lag = match state.role {
                Role::Primary => None,
                _ => state.lag,
            };
            format!("up ready {}%\n", weight_percent(lag, max_lag))
        }
        // Every reachable node lost the same primary: all stay up at full weight (their lag
        // grows alike and says nothing about which is better).
        HealthStatus::Degraded => "up ready 100%\n".to_owned(),
        HealthStatus::Draining => "drain\n".to_owned(),
        other => format!("down #{}\n", other.as_str()),
    }
}

/// Serves the agent line on `listener`: each connection gets the current line, then the
/// connection is closed. Stops accepting when `shutdown` resolves.
pub async fn serve_agent(
    listener: TcpListener,
    view: HealthView,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "agent listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let line = view.agent_line();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(AGENT_CONNECTION_TIMEOUT, async {
                stream.write_all(line.as_bytes()).await?;
                stream.shutdown().await?;
                // Read until the peer closes (discarding an `agent-send` string, if any), so
                // unread input cannot turn our close into a reset that loses the line.
                let mut sink = [0u8; 256];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwproxy_core::Positions;

    #[test]
    fn weight_falls_from_100_to_10_percent_as_lag_nears_max_lag() {
        let max = Duration::from_secs(10);
        let w = |ms| weight_percent(Some(Duration::from_millis(ms)), max);
        assert_eq!(w(0), 100);
        assert_eq!(w(5_000), 55);
        assert_eq!(w(10_000), 10);
        assert_eq!(w(60_000), 10);
        assert_eq!(weight_percent(None, max), 100);
        assert_eq!(weight_percent(Some(Duration::ZERO), Duration::ZERO), 100);
    }

    #[test]
    fn lines() {
        let replica = NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: Positions::new(),
            lag: Some(Duration::from_secs(5)),
            ready: true,
            problem: None,
            ..NodeState::default()
        };
        let max = Duration::from_secs(10);
        assert_eq!(
            agent_line(HealthStatus::Ok, &replica, max),
            "up ready 55%\n"
        );
        let primary = NodeState {
            role: Role::Primary,
            ..replica.clone()
        };
        assert_eq!(
            agent_line(HealthStatus::Ok, &primary, max),
            "up ready 100%\n"
        );
        assert_eq!(agent_line(HealthStatus::Draining, &replica, max), "drain\n");
        assert_eq!(
            agent_line(HealthStatus::Lagging, &replica, max),
            "down #lagging\n"
        );
    }
}
