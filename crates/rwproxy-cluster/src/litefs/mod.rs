//! The LiteFS source: polls the mount files (and, when configured, confirms primary claims with
//! the LiteFS API and re-reads at once on its events).

mod api;
mod derive;
mod events;
mod files;
mod read;

use std::sync::Arc;

use rwproxy_core::NodeState;

use crate::publish::Publisher;
use crate::{schedule, AbortOnDrop, Demand, LitefsSpec};

use api::{Api, PrimaryCheck};
use events::Wake;
use read::MountReader;
pub(crate) use read::{claims_primary, read_positions, READ_TIMEOUT};

/// Reads the mount for ever, publishing each result.
pub(crate) async fn run(
    node: &Arc<str>,
    spec: &LitefsSpec,
    demand: &Demand,
    publisher: &mut Publisher,
) {
    let wake = Arc::new(Wake::default());
    let mut check = None;
    // Held for the life of this loop: dropping it (the handle was dropped) stops the follower.
    let mut _events = None;
    if let Some(base) = &spec.api {
        match Api::new(base) {
            Ok(api) => {
                _events = Some(AbortOnDrop(tokio::spawn(events::follow(
                    api.clone(),
                    wake.clone(),
                ))));
                check = Some(PrimaryCheck::new(api, spec.poll));
            }
            Err(e) => {
                publisher.publish(NodeState::unknown(e.to_string()));
                return std::future::pending().await;
            }
        }
    }
    let mut reader = MountReader::new(&spec.mount, &spec.databases);
    loop {
        // Taken before the read: an event arriving during the read sets it again for the next.
        let refresh_info = wake.take_info_stale();
        let state = match reader.read().await {
            Ok(snapshot) => derive::derive(node, snapshot),
            Err(e) => NodeState::unknown(e.to_string()),
        };
        let state = match &mut check {
            Some(check) => check.apply(node, state, refresh_info).await,
            None => state,
        };
        publisher.publish(state);
        schedule::pause(spec.poll, demand, Some(wake.notify())).await;
    }
}

#[cfg(test)]
mod tests;
