//! A write refused for want of a primary because this node's own cluster state source fails
//! (wrong password, server down, not PostgreSQL): the answer says that the source is the
//! problem, not the cluster. The source's own text (hosts, users, server messages) stays in the
//! log and in `/health`'s `problem`: upstream internals never reach a client.

use http::Response;

use crate::body::Body;

/// The body of a `no-primary` refusal while the source fails.
const SOURCE_FAILS: &str = "no primary is known: this node's cluster state source fails (its \
                            /health and log name the problem); retry later\n";

/// Rewrites a `no-primary` refusal's body when the source fails (`problem` is its reason).
pub(super) fn explain(response: &mut Response<Body>, problem: Option<&str>) {
    if problem.is_some() {
        *response.body_mut() = Body::full(SOURCE_FAILS);
    }
}
