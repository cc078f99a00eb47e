//! The parameters the proxy runs with, mapped by the binary from its configuration so that the
//! HTTP layer never sees the whole config file.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use rwproxy_core::{Classifier, RoutePolicy};

use crate::consistency::ConsistencyParams;

/// Everything the request pipeline needs.
#[derive(Clone, Debug)]
pub struct ProxyParams {
    /// This node's name.
    pub node: Arc<str>,
    /// The local app's `host:port`.
    pub app: Authority,
    /// How long refused connects to the local app are retried (cold start).
    pub app_connect_retry: Duration,
    /// Read / write / passthrough rules.
    pub classifier: Classifier,
    /// Routing choices.
    pub policy: RoutePolicy,
    /// Where writes go, per primary name.
    pub primary_url: PrimaryUrl,
    /// How long a write waits for a primary to be known.
    pub primary_wait: Duration,
    /// Bound on a forwarded request (until the primary's response head).
    pub write_timeout: Duration,
    /// Bound on one connect attempt to an upstream.
    pub connect_timeout: Duration,
    /// Lag above which a replica stops serving reads itself.
    pub max_lag: Duration,
    /// Read-your-writes settings.
    pub consistency: ConsistencyParams,
    /// Health endpoint settings.
    pub health: HealthParams,
    /// Add the `rwproxy-route` header to proxied responses.
    pub route_header: bool,
    /// Log one line per request.
    pub access_log: bool,
}

/// Health endpoint settings.
#[derive(Clone, Debug)]
pub struct HealthParams {
    /// Path answered on the proxy listener.
    pub path: String,
    /// Lag above which the node reports itself unhealthy.
    pub max_lag: Duration,
}

/// `writes.primary_url`: a URL template where `{primary}` stands for the primary's name.
#[derive(Clone, Debug)]
pub struct PrimaryUrl {
    template: String,
}

impl PrimaryUrl {
    /// Wraps a template that the config layer validated.
    pub fn new(template: impl Into<String>) -> Self {
        PrimaryUrl {
            template: template.into(),
        }
    }

    /// The primary's rwproxy `host:port` for the primary called `primary`.
    pub fn authority(&self, primary: &str) -> Option<Authority> {
        let url = self.template.replace("{primary}", primary);
        let uri: http::Uri = url.parse().ok()?;
        uri.authority().cloned()
    }

    /// The absolute URL of `path_and_query` on the primary called `primary` (for redirects).
    pub fn absolute(&self, primary: &str, path_and_query: &str) -> Option<http::Uri> {
        let url = self.template.replace("{primary}", primary);
        let uri: http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str().unwrap_or("http");
        let authority = uri.authority()?;
        format!("{scheme}://{authority}{path_and_query}")
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_substitutes_the_primary() {
        let p = PrimaryUrl::new("http://{primary}.internal:8080");
        assert_eq!(
            p.authority("iad-1").map(|a| a.to_string()).as_deref(),
            Some("iad-1.internal:8080")
        );
        assert_eq!(
            p.absolute("iad-1", "/w?x=1")
                .map(|u| u.to_string())
                .as_deref(),
            Some("http://iad-1.internal:8080/w?x=1")
        );
        assert_eq!(p.authority("bad name"), None);
    }
}
