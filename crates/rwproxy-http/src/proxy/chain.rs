//! Cascading replication: a replica that streams from another replica names that replica as
//! its primary (PostgreSQL's `sender_host`), and a write forwarded there is refused with
//! `loop`. The refusal names the refusing node's own primary (header `rwproxy-primary`), and
//! the forwarder follows that chain up to the real primary: each step is a node that passed
//! the write to no app, so trying the next one is as safe as the first attempt.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::Response;

use crate::body::Body;
use crate::upstream::headers::HopIdentity;

/// On a `loop` refusal: the refusing node's primary, when it knows one.
pub static RWPROXY_PRIMARY: HeaderName = HeaderName::from_static("rwproxy-primary");

/// How many nodes a write may be passed along after its first target: more than any sane
/// cascade (one replica per region feeding the others is two steps).
const MAX_STEPS: usize = 4;

/// Adds this node's primary (`primary`, when known) to a `loop` refusal.
pub(super) fn name_upstream(response: &mut Response<Body>, primary: Option<&str>) {
    if let Some(value) = primary.and_then(|p| HeaderValue::from_str(p).ok()) {
        response
            .headers_mut()
            .insert(RWPROXY_PRIMARY.clone(), value);
    }
}

/// Takes the chain hint off a response going back to the client (a node's primary is the
/// cluster's business, not the client's). Still there, it means a refusal this node could not
/// pass along: a write whose body was streamed (too large to keep, so it cannot be sent again)
/// or a read; said once per request, because only the operator can fix it.
pub(super) fn strip_upstream(headers: &mut http::HeaderMap, class: rwproxy_core::RequestClass) {
    if let Some(upstream) = headers.remove(&RWPROXY_PRIMARY) {
        tracing::warn!(
            class = class.as_str(),
            upstream = upstream.to_str().unwrap_or("-"),
            "refused with loop by a replica of a replica (cascading replication), and this \
             request could not be passed along (a streamed body, or a read): set \
             cluster.primary to a name that reaches the real primary"
        );
    }
}

/// The nodes one forwarded request has tried, so that a chain that loops back is cut.
#[derive(Debug)]
pub(super) struct Chain {
    tried: Vec<Arc<str>>,
}

impl Chain {
    /// A chain starting at `first`.
    pub(super) fn new(first: &Arc<str>) -> Self {
        Chain {
            tried: vec![first.clone()],
        }
    }

    /// The next node to try after `refusal` (a `loop` answer): the primary it names, unless
    /// that is this node itself, a node already tried, or one step too many.
    pub(super) fn follow(
        &mut self,
        refusal: &Response<Body>,
        hop: &HopIdentity,
        request_id: &str,
    ) -> Option<Arc<str>> {
        let next = refusal.headers().get(&RWPROXY_PRIMARY)?.to_str().ok()?;
        let last = self.tried.last().cloned().unwrap_or_default();
        if next.is_empty()
            || hop.node().as_bytes() == next.as_bytes()
            || self.tried.iter().any(|t| &**t == next)
            || self.tried.len() > MAX_STEPS
        {
            tracing::warn!(
                request_id,
                refused_by = %last,
                names = next,
                "the replication chain loops back or is too long; write not passed further"
            );
            return None;
        }
        tracing::debug!(
            request_id,
            replica = %last,
            upstream = next,
            "cascading replica: following its upstream towards the primary"
        );
        let next: Arc<str> = Arc::from(next);
        self.tried.push(next.clone());
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(primary: Option<&str>) -> Response<Body> {
        let mut r = crate::respond::error(rwproxy_core::ErrorCode::Loop);
        name_upstream(&mut r, primary);
        r
    }

    #[test]
    fn the_chain_is_followed_and_cut_when_it_loops() {
        let hop = HopIdentity::new("c");
        let mut chain = Chain::new(&Arc::from("b"));
        assert_eq!(
            chain.follow(&refusal(Some("a")), &hop, "-").as_deref(),
            Some("a")
        );
        assert_eq!(chain.follow(&refusal(Some("b")), &hop, "-"), None, "tried");
        assert_eq!(chain.follow(&refusal(Some("c")), &hop, "-"), None, "itself");
        assert_eq!(chain.follow(&refusal(None), &hop, "-"), None, "no hint");
        let mut long = Chain::new(&Arc::from("n0"));
        let followed = (1..10)
            .filter_map(|i| long.follow(&refusal(Some(&format!("n{i}"))), &hop, "-"))
            .count();
        assert_eq!(followed, MAX_STEPS);
    }
}
