//! Asking every node at once: its `/status` document (falling back to `/health`, which a proxy
//! listener also answers) and its `/metrics` counters, each node within its own timeout so a
//! dead node never holds up the others.

use std::time::Duration;

use tokio::task::JoinSet;

use super::model::{Counters, NodeDoc};

/// What one node answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// Its document, or why there is none.
    pub doc: Result<NodeDoc, String>,
    /// Its request counters, when `/metrics` is rwproxy's.
    pub counters: Option<Counters>,
}

/// An HTTP client for status fetches: no proxy from the environment (nodes are internal
/// addresses), bounded by `timeout` per request.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    rwproxy_cluster::client_builder()?
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("rwproxy-status/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Fetches every node concurrently; the answers come back in `urls`' order.
pub async fn fetch_all(
    client: &reqwest::Client,
    urls: &[String],
    timeout: Duration,
) -> Vec<Fetched> {
    let answers = each(urls, |url| {
        let client = client.clone();
        async move { fetch_node(&client, &url, timeout).await }
    })
    .await;
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or(Fetched {
                doc: Err("the fetch task failed".to_owned()),
                counters: None,
            })
        })
        .collect()
}

/// Runs `fetch` for every URL at once; the results come back in `urls`' order (`None` where a
/// task failed). Shared with the peer poller of peer-aware health.
pub(crate) async fn each<T, F, Fut>(urls: &[String], fetch: F) -> Vec<Option<T>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = JoinSet::new();
    for (index, url) in urls.iter().enumerate() {
        let fetching = fetch(url.clone());
        tasks.spawn(async move { (index, fetching.await) });
    }
    let mut answers: Vec<Option<T>> = std::iter::repeat_with(|| None).take(urls.len()).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, answer)) = joined {
            if let Some(slot) = answers.get_mut(index) {
                *slot = Some(answer);
            }
        }
    }
    answers
}

/// One node: document and metrics side by side, the whole bounded by `timeout`.
async fn fetch_node(client: &reqwest::Client, base: &str, timeout: Duration) -> Fetched {
    let both = async { tokio::join!(document(client, base), counters(client, base)) };
    match tokio::time::timeout(timeout, both).await {
        Ok((doc, counters)) => Fetched { doc, counters },
        Err(_) => Fetched {
            doc: Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
            counters: None,
        },
    }
}

/// `/status`, else `/health` (a proxy listener forwards `/status` to the app, whose answer is
/// not an rwproxy document).
async fn document(client: &reqwest::Client, base: &str) -> Result<NodeDoc, String> {
    let mut last_error = String::new();
    for path in ["/status", "/health"] {
        match get(client, &format!("{base}{path}")).await {
            Ok(body) => match serde_json::from_str::<NodeDoc>(&body) {
                Ok(doc) => return Ok(doc),
                Err(_) => last_error = format!("{base}{path} is not an rwproxy status document"),
            },
            // Unreachable: asking the second path would only wait twice as long.
            Err(error) if error.is_connect() || error.is_timeout() => return Err(describe(&error)),
            Err(error) => last_error = describe(&error),
        }
    }
    Err(last_error)
}

/// The request counters of `/metrics`, when it is rwproxy's.
async fn counters(client: &reqwest::Client, base: &str) -> Option<Counters> {
    let text = get(client, &format!("{base}/metrics")).await.ok()?;
    parse_counters(&text)
}

/// The body of a GET; any status is accepted (`/health` answers 503 with its document).
async fn get(client: &reqwest::Client, url: &str) -> reqwest::Result<String> {
    client.get(url).send().await?.text().await
}

/// One short line for a failed request: what kind of failure and its innermost cause
/// (`cannot connect: Connection refused (os error 111)`), not reqwest's whole chain.
fn describe(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let kind = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_status() {
        "bad status"
    } else {
        "request failed"
    };
    format!("{kind}: {innermost}")
}

/// Sums `rwproxy_requests_total` (and its `code="5xx"` part) from a Prometheus text page;
/// `None` when the page has no such series (not rwproxy's metrics).
pub fn parse_counters(text: &str) -> Option<Counters> {
    let mut found = false;
    let mut counters = Counters::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("rwproxy_requests_total") else {
            continue;
        };
        // `{labels} value` or ` value`; anything else is another metric with a longer name.
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        found = true;
        counters.requests += value;
        if labels.split(',').any(|l| l.trim() == "code=\"5xx\"") {
            counters.errors += value;
        }
    }
    found.then_some(counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_every_series_and_the_5xx_ones() {
        let text = "# TYPE rwproxy_requests_total counter\n\
            rwproxy_requests_total{class=\"read\",route=\"local\",code=\"2xx\"} 10\n\
            rwproxy_requests_total{class=\"write\",route=\"primary\",code=\"5xx\"} 3\n\
            rwproxy_requests_total_other 99\n\
            rwproxy_errors_total{reason=\"stale\"} 7\n";
        assert_eq!(
            parse_counters(text),
            Some(Counters {
                requests: 13.0,
                errors: 3.0
            })
        );
        assert_eq!(parse_counters("app_metric 1\n"), None);
    }
}
