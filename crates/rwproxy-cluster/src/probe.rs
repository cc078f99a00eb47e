//! Reading the positions right now, outside the poll loop: a token issued right after a write
//! must include that write, and the last polled snapshot may be up to one `poll` old.

use std::sync::Arc;

use rwproxy_core::Positions;

use crate::{http_client, http_source, litefs, SourceSpec};

/// Reads current positions for one source; cheap to clone.
#[derive(Clone, Debug)]
pub struct PositionReader {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    None,
    Litefs {
        mount: Arc<std::path::Path>,
        databases: Arc<[Arc<str>]>,
    },
    Http {
        client: reqwest::Client,
        spec: crate::HttpSpec,
        node: Arc<str>,
    },
}

impl PositionReader {
    /// A reader for `spec` (static sources have no positions: it always answers `None`).
    pub fn new(node: Arc<str>, spec: &SourceSpec) -> Self {
        let kind = match spec {
            SourceSpec::Static { .. } => Kind::None,
            SourceSpec::Litefs(l) => Kind::Litefs {
                mount: Arc::from(l.mount.as_path()),
                databases: l.databases.iter().map(|d| Arc::from(d.as_str())).collect(),
            },
            SourceSpec::Http(h) => match http_client::build() {
                Ok(client) => Kind::Http {
                    client,
                    spec: h.clone(),
                    node,
                },
                Err(_) => Kind::None,
            },
        };
        PositionReader { kind }
    }

    /// The current positions, or `None` when they cannot be read now (the caller falls back to
    /// the last published state).
    pub async fn read(&self) -> Option<Positions> {
        match &self.kind {
            Kind::None => None,
            Kind::Litefs { mount, databases } => {
                let (mount, databases) = (mount.clone(), databases.clone());
                let read =
                    tokio::task::spawn_blocking(move || litefs::read_positions(&mount, &databases));
                tokio::time::timeout(litefs::READ_TIMEOUT, read)
                    .await
                    .ok()?
                    .ok()?
                    .ok()
            }
            Kind::Http { client, spec, node } => http_source::fetch(client, spec, node)
                .await
                .ok()
                .map(|s| s.positions),
        }
    }
}
