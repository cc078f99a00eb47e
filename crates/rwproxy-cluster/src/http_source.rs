//! The HTTP source: polls a JSON status document (`[cluster] source = "http"`).
//!
//! `GET url` must answer `200` with
//! `{"role": "primary"|"replica", "primary": <name>|null, "positions": {<db>: u64},
//! "lag_ms": <number>|null, "ready": bool}`; anything else makes the state unknown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Positions, Role};
use serde::Deserialize;

use crate::error::SourceError;
use crate::publish::Publisher;
use crate::{http_client, schedule, Demand, HttpSpec};

/// A status document larger than this is not a status document.
const MAX_DOCUMENT: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum DocRole {
    Primary,
    Replica,
}

#[derive(Deserialize)]
struct StatusDoc {
    role: DocRole,
    #[serde(default)]
    primary: Option<String>,
    #[serde(default)]
    positions: BTreeMap<String, u64>,
    #[serde(default)]
    lag_ms: Option<f64>,
    // Required: a document that does not say it is ready must not be taken as ready.
    ready: bool,
}

/// Parses a status document into the state of `node`.
pub(crate) fn parse_document(body: &[u8], node: &Arc<str>) -> Result<NodeState, String> {
    let doc: StatusDoc =
        serde_json::from_slice(body).map_err(|e| format!("bad status document: {e}"))?;
    let primary = match doc.primary {
        Some(name) if name.trim().is_empty() => {
            return Err("bad status document: \"primary\" is an empty name".to_owned())
        }
        Some(name) => Some(Arc::<str>::from(name)),
        None => None,
    };
    let positions: Positions = doc
        .positions
        .into_iter()
        .map(|(db, pos)| (Arc::from(db), pos))
        .collect();
    let lag = match doc.lag_ms {
        None => None,
        Some(ms) => Some(
            // Negative lag is clock skew between the app and its primary: not behind at all.
            Duration::try_from_secs_f64(ms.max(0.0) / 1000.0)
                .map_err(|_| format!("bad status document: lag_ms {ms} is out of range"))?,
        ),
    };
    Ok(match doc.role {
        DocRole::Primary => NodeState {
            role: Role::Primary,
            primary: primary.or_else(|| Some(node.clone())),
            positions,
            // A primary is never behind itself; NodeState promises zero here.
            lag: Some(Duration::ZERO),
            ready: doc.ready,
            problem: None,
            ..NodeState::default()
        },
        DocRole::Replica => NodeState {
            role: Role::Replica,
            primary,
            positions,
            lag,
            ready: doc.ready,
            problem: None,
            ..NodeState::default()
        },
    })
}

pub(crate) async fn fetch(
    client: &reqwest::Client,
    spec: &HttpSpec,
    node: &Arc<str>,
) -> Result<NodeState, SourceError> {
    let fail = |reason: String| SourceError::Status {
        url: spec.url.clone(),
        reason,
    };
    let timeout = Some(spec.timeout);
    let resp = client
        .get(&spec.url)
        .timeout(spec.timeout)
        .send()
        .await
        .map_err(|e| fail(http_client::describe(&e, timeout)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(fail(format!("answered {}", resp.status())));
    }
    let body = http_client::read_limited(resp, MAX_DOCUMENT, timeout)
        .await
        .map_err(fail)?;
    parse_document(&body, node).map_err(fail)
}

/// Polls the document for ever, publishing each result.
pub(crate) async fn run(
    node: &Arc<str>,
    spec: &HttpSpec,
    demand: &Demand,
    publisher: &mut Publisher,
) {
    let client = match http_client::build() {
        Ok(client) => client,
        Err(e) => {
            publisher.publish(NodeState::unknown(e.to_string()));
            return std::future::pending().await;
        }
    };
    loop {
        let state = fetch(&client, spec, node)
            .await
            .unwrap_or_else(|e| NodeState::unknown(e.to_string()));
        publisher.publish(state);
        schedule::pause(spec.poll, demand, None).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::test_support::{full, padded, refused_addr, serve, streaming, wait_for};
    use crate::{ClusterHandle, SourceSpec};

    fn node() -> Arc<str> {
        Arc::from("me")
    }

    fn parse(doc: &str) -> Result<NodeState, String> {
        parse_document(doc.as_bytes(), &node())
    }

    #[test]
    fn replica_document() {
        let s = parse(
            r#"{"role":"replica","primary":"p","positions":{"app.db":5,"x.db":9},"lag_ms":12.5,"ready":true}"#,
        )
        .expect("valid");
        assert_eq!(s.role, Role::Replica);
        assert_eq!(s.primary.as_deref(), Some("p"));
        assert_eq!(s.position("app.db"), Some(5));
        assert_eq!(s.position("x.db"), Some(9), "every position is kept");
        assert_eq!(s.lag, Some(Duration::from_micros(12_500)));
        assert!(s.ready);
        assert!(s.problem.is_none());
    }

    #[test]
    fn primary_document_names_itself_when_silent_and_has_no_lag() {
        let s =
            parse(r#"{"role":"primary","primary":null,"positions":{},"lag_ms":40,"ready":true}"#)
                .expect("valid");
        assert_eq!(s.role, Role::Primary);
        assert_eq!(s.primary.as_deref(), Some("me"));
        assert_eq!(s.lag, Some(Duration::ZERO));
        let named = parse(r#"{"role":"primary","primary":"me-too","ready":false}"#).expect("valid");
        assert_eq!(named.primary.as_deref(), Some("me-too"));
        assert!(!named.ready);
    }

    #[test]
    fn lag_null_negative_and_absent() {
        let null = parse(r#"{"role":"replica","primary":null,"lag_ms":null,"ready":true}"#)
            .expect("valid");
        assert_eq!(null.lag, None);
        assert_eq!(null.primary, None);
        let absent = parse(r#"{"role":"replica","ready":true}"#).expect("valid");
        assert_eq!(absent.lag, None);
        assert!(absent.positions.is_empty());
        let skew = parse(r#"{"role":"replica","lag_ms":-3,"ready":true}"#).expect("valid");
        assert_eq!(skew.lag, Some(Duration::ZERO));
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            r#"{"role":"leader","ready":true}"#,
            r#"{"role":"replica"}"#,
            r#"{"role":"replica","primary":"","ready":true}"#,
            r#"{"role":"replica","positions":{"a":-1},"ready":true}"#,
            r#"{"role":"replica","lag_ms":1e300,"ready":true}"#,
            r#"{"role":"replica","ready":"yes"}"#,
            "not json",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn spec(url: String, timeout: Duration) -> SourceSpec {
        SourceSpec::Http(HttpSpec {
            url,
            poll: Duration::from_millis(10),
            timeout,
            databases: vec!["app.db".into()],
        })
    }

    #[tokio::test]
    async fn follows_a_real_server_through_errors_and_back() {
        let answer = Arc::new(Mutex::new((
            200u16,
            r#"{"role":"replica","primary":"p","positions":{"app.db":5},"lag_ms":1,"ready":true}"#
                .to_owned(),
        )));
        let server = serve({
            let answer = answer.clone();
            move |path| {
                let (status, body) = answer.lock().expect("lock").clone();
                assert_eq!(path, "/status");
                full(status, body)
            }
        })
        .await;
        let set =
            |status: u16, body: &str| *answer.lock().expect("lock") = (status, body.to_owned());
        let url = format!("http://{}/status", server.addr);
        let handle =
            ClusterHandle::start(node(), spec(url, Duration::from_secs(1)), Demand::default());
        let mut rx = handle.subscribe();

        let s = wait_for(&mut rx, |s| s.role == Role::Replica).await;
        assert_eq!(s.position("app.db"), Some(5));

        set(500, "oops");
        let s = wait_for(&mut rx, |s| s.role == Role::Unknown).await;
        assert!(s.problem.as_deref().unwrap_or("").contains("500"), "{s:?}");

        set(200, r#"{"role":"primary","#);
        let s = wait_for(&mut rx, |s| {
            s.problem
                .as_deref()
                .is_some_and(|p| p.contains("bad status document"))
        })
        .await;
        assert_eq!(s.role, Role::Unknown);

        set(
            200,
            r#"{"role":"primary","primary":null,"positions":{"app.db":6},"lag_ms":null,"ready":true}"#,
        );
        let s = wait_for(&mut rx, |s| s.role == Role::Primary).await;
        assert_eq!(s.position("app.db"), Some(6));
        assert!(s.problem.is_none());
    }

    #[tokio::test]
    async fn a_document_of_64_kib_is_read_a_longer_one_is_refused() {
        let doc = r#"{"role":"replica","primary":"p","ready":true}"#;
        let size = Arc::new(Mutex::new(0usize));
        let server = serve({
            let size = size.clone();
            move |_| full(200, padded(doc, *size.lock().expect("lock")))
        })
        .await;
        let spec = HttpSpec {
            url: format!("http://{}/status", server.addr),
            poll: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            databases: vec![],
        };
        let client = http_client::build().expect("client");
        *size.lock().expect("lock") = 64 * 1024;
        let s = fetch(&client, &spec, &node())
            .await
            .expect("64 KiB is fine");
        assert_eq!(s.primary.as_deref(), Some("p"));
        *size.lock().expect("lock") = 64 * 1024 + 1;
        let err = fetch(&client, &spec, &node()).await.expect_err("too large");
        assert!(
            err.to_string().contains("body larger than 65536 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_unknown() {
        let url = format!("http://{}/status", refused_addr().await);
        let handle =
            ClusterHandle::start(node(), spec(url, Duration::from_secs(1)), Demand::default());
        let mut rx = handle.subscribe();
        let s = wait_for(&mut rx, |s| s.problem.as_deref() != Some("starting")).await;
        assert_eq!(s.role, Role::Unknown);
        assert!(
            s.problem
                .as_deref()
                .unwrap_or("")
                .contains("cannot connect"),
            "{s:?}"
        );
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        // The sender stays alive, so the body neither ends nor fails: only the timeout ends it.
        let (_keep, rx) = mpsc::unbounded_channel();
        let rx = Mutex::new(Some(rx));
        let server = serve(move |_| match rx.lock().expect("lock").take() {
            Some(rx) => streaming(rx),
            None => full(503, "busy"),
        })
        .await;
        let url = format!("http://{}/status", server.addr);
        let handle = ClusterHandle::start(
            node(),
            spec(url, Duration::from_millis(100)),
            Demand::default(),
        );
        let mut rx = handle.subscribe();
        let s = wait_for(&mut rx, |s| s.problem.as_deref() != Some("starting")).await;
        assert_eq!(s.role, Role::Unknown);
        assert!(
            s.problem
                .as_deref()
                .unwrap_or("")
                .contains("no answer within"),
            "{s:?}"
        );
    }
}
