//! The Patroni source (`[cluster] source = "patroni"`): a Patroni-managed PostgreSQL node.
//!
//! It composes the PostgreSQL source (role check, positions, LSN tokens, lag: polled exactly as
//! `source = "postgres"` polls, on the same code) with Patroni's REST API, which is the authority
//! for who leads: `GET /primary` (200 while Patroni holds the leader lock for this node and its
//! PostgreSQL runs as primary) and `GET /cluster` (the leader member, the members, timelines).
//! [`derive::combine`] decides; see there for the rules.
//!
//! PostgreSQL is polled as by the postgres source (every `poll`, every 5 ms while reads wait);
//! Patroni is asked at most once per `poll`, concurrently with a PostgreSQL poll, each request
//! bounded by `timeout`. So a node whose Patroni lost the lock stops taking writes at most
//! `poll` + `timeout` after `/primary` stopped answering 200, and one whose Patroni stopped
//! answering at most `poll` + `timeout` after its last answer.

mod api;
mod derive;
mod view;

use std::sync::Arc;

use rwproxy_core::NodeState;
use tokio::time::Instant;

use crate::postgres::{self, Connection, LagTracker, Naming};
use crate::publish::Publisher;
use crate::{http_client, schedule, Demand, PatroniSpec};

pub use derive::{MemberField, MemberNaming};

/// Polls PostgreSQL and Patroni for ever, publishing each combined result.
pub(crate) async fn run(
    node: &Arc<str>,
    spec: &PatroniSpec,
    demand: &Demand,
    publisher: &mut Publisher,
) {
    let pg = &spec.postgres;
    let client = match http_client::build() {
        Ok(client) => client,
        Err(e) => {
            // Cannot happen short of a broken TLS set-up; unknown is the safe answer.
            publisher.publish(NodeState::unknown(e.to_string()));
            std::future::pending::<()>().await;
            return;
        }
    };
    let conn = Connection::new(pg);
    let key: Arc<str> = Arc::from(pg.position_key.as_str());
    let naming = Naming {
        node,
        position_key: &key,
        primary_override: None,
    };
    let mut lag = LagTracker::default();
    let mut patroni: Result<api::PatroniView, String> = Err("not asked yet".to_owned());
    let mut asked: Option<Instant> = None;
    loop {
        let due = asked.is_none_or(|at| at.elapsed() >= pg.poll);
        let pg_state = if due {
            asked = Some(Instant::now());
            let (state, view) = tokio::join!(
                postgres::poll_state(&conn, &naming, &mut lag),
                api::fetch(&client, &spec.api, pg.timeout)
            );
            patroni = view;
            state
        } else {
            postgres::poll_state(&conn, &naming, &mut lag).await
        };
        let answer = patroni.as_ref().map_err(String::as_str);
        let combined = derive::combine(pg_state.clone(), answer, &spec.member, &spec.naming);
        let manager = view::build(answer, &spec.member, &spec.naming, &pg_state, &combined);
        publisher.publish(NodeState {
            manager: Some(Arc::new(manager)),
            ..combined
        });
        if demand.active() > 0 {
            tokio::time::sleep(postgres::WAITING_POLL.min(pg.poll)).await;
        } else {
            schedule::pause(pg.poll, demand, None).await;
        }
    }
}

#[cfg(test)]
mod tests;
