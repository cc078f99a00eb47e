//! The parameters the proxy runs with, mapped by the binary from its configuration so that the
//! HTTP layer never sees the whole config file.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::uri::Authority;
use rwproxy_core::{Classifier, RoutePolicy};

use crate::consistency::ConsistencyParams;
use crate::tls::UpstreamTls;
use crate::upstream::Target;

/// Everything the request pipeline needs.
#[derive(Clone, Debug)]
pub struct ProxyParams {
    /// This node's name.
    pub node: Arc<str>,
    /// The local app's `host:port`.
    pub app: Authority,
    /// How long refused connects to the local app are retried (cold start).
    pub app_connect_retry: Duration,
    /// `proxy.app_max_connections`: connections open to the local app at once (`None`: no cap).
    pub app_max_connections: Option<usize>,
    /// `proxy.app_queue_timeout`: how long a request waits for a connection to the app at the cap.
    pub app_queue_timeout: Duration,
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
    /// `proxy.max_body`: largest request body accepted, in bytes.
    pub max_body: Option<u64>,
    /// `cluster.secret`: authenticates forwarded requests between nodes (`None`: not required).
    pub forward_secret: Option<http::HeaderValue>,
    /// Read-your-writes settings.
    pub consistency: ConsistencyParams,
    /// Health endpoint settings.
    pub health: HealthParams,
    /// Add the `rwproxy-route` header to proxied responses.
    pub route_header: bool,
    /// Log one line per request.
    pub access_log: bool,
    /// TLS toward `https` primaries (`writes.ca`, `writes.client_cert`); `None`: webpki roots.
    pub upstream_tls: Option<UpstreamTls>,
    /// `proxy.upgrade_idle_timeout`: an upgraded connection (WebSocket) silent this long in both
    /// directions is closed.
    pub upgrade_idle_timeout: Duration,
    /// `proxy.allow_underscores_in_headers`: pass on header names containing `_` (dropped by
    /// default, see [`crate::hygiene::drop_underscored_headers`]).
    pub allow_underscores_in_headers: bool,
    /// `proxy.body_timeout` and `proxy.body_min_rate`: how slowly a client may send a request
    /// body before the request is aborted (`408 body-timeout`).
    pub body_timeouts: crate::body_clock::BodyTimeouts,
    /// `writes.warm_connections` and `writes.http2`: the path to the primary.
    pub warm_path: crate::upstream::warm::WarmPathParams,
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
    /// The last primary's authority. The primary changes rarely, and building its authority
    /// (a substitution and a URI parse) cost more than the rest of a forwarded write's routing.
    last: Arc<Mutex<Option<LastPrimary>>>,
}

/// A primary's name and its rwproxy's authority.
type LastPrimary = (Arc<str>, Authority);

impl PrimaryUrl {
    /// Wraps a template that the config layer validated.
    pub fn new(template: impl Into<String>) -> Self {
        PrimaryUrl {
            template: template.into(),
            last: Arc::default(),
        }
    }

    /// The primary's rwproxy `host:port` for the primary called `primary`.
    pub fn authority(&self, primary: &str) -> Option<Authority> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((name, authority)) = &*last {
            if **name == *primary {
                return Some(authority.clone());
            }
        }
        let url = self.template.replace("{primary}", primary);
        let uri: http::Uri = url.parse().ok()?;
        let authority = uri.authority()?.clone();
        *last = Some((primary.into(), authority.clone()));
        Some(authority)
    }

    /// Where a request for the primary at `authority` (from [`PrimaryUrl::authority`]) goes:
    /// over TLS when the template is `https`.
    pub fn target(&self, authority: Authority) -> Target {
        if self.template.starts_with("https://") {
            Target::https(authority)
        } else {
            Target::http(authority)
        }
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
        // Remembered for the same primary, recomputed for another.
        assert_eq!(
            p.authority("iad-1").map(|a| a.to_string()).as_deref(),
            Some("iad-1.internal:8080")
        );
        assert_eq!(
            p.authority("lhr-2").map(|a| a.to_string()).as_deref(),
            Some("lhr-2.internal:8080")
        );
    }

    #[test]
    fn https_templates_make_tls_targets() {
        let p = PrimaryUrl::new("https://{primary}.internal:8443");
        let authority = p.authority("iad-1").expect("authority");
        assert_eq!(p.target(authority).scheme, http::uri::Scheme::HTTPS);
        let p = PrimaryUrl::new("http://{primary}:8080");
        let authority = p.authority("iad-1").expect("authority");
        assert_eq!(p.target(authority).scheme, http::uri::Scheme::HTTP);
    }
}
