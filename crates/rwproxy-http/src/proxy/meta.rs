//! What rwproxy's layers know about one request, in ONE value of its extensions.
//!
//! Each `http::Extensions` insert allocates a box, and the first one a map and its table too:
//! a value per layer (the client, the class, the forwarded-by marker, the token wait, the
//! outcome on the response) cost ~1,200 instructions per proxied GET (`docs/benchmarks.md`).
//! So the listener inserts one [`RequestMeta`] (the classify layer does for an embedding app's
//! requests), the layers update it in place, and the leaves move the request's extensions onto
//! the response, where the route writes its outcome ([`Routed`]) into the same value.

use http::{request, Extensions, Request};
use rwproxy_core::RequestClass;

use super::consistency::TokenWait;
use super::outcome::Routed;
use super::RequestId;
use crate::upstream::headers::{prepare_request, ClientInfo, HopIdentity, MissingHost};

/// Everything rwproxy attaches to a request (and, once routed, to its response).
#[derive(Clone, Debug)]
pub(crate) struct RequestMeta {
    /// The client connection (set by the listener; an embedding app's `ClientInfo` is copied).
    pub(crate) client: Option<ClientInfo>,
    /// Read, write, passthrough (set by the classify layer; passthrough until then).
    pub(crate) class: RequestClass,
    /// Another rwproxy forwarded the request (marker and secret checked by admission).
    pub(crate) forwarded: bool,
    /// A read's token and what waiting for it found (set by the consistency layer).
    pub(crate) token_wait: Option<TokenWait>,
    /// The head was already rewritten for the upstream hop (a write that was on its way to
    /// the primary when this node was promoted): the app leaf sends it as it is.
    pub(crate) prepared: bool,
    /// Where the request went (on the response: set by the route or a refusal).
    pub(crate) routed: Option<Routed>,
    /// rwproxy's forwarding marker or secret may be among the headers (they are removed
    /// before the app sees the request). True until the admission layer's walk over the
    /// headers says otherwise.
    pub(crate) may_have_internal_headers: bool,
    /// A `Cookie` or the token header may be present. True until admission says otherwise.
    pub(crate) may_carry_token: bool,
    /// The request's id (set by the request-id layer): for logs, without a header lookup.
    pub(crate) request_id: Option<RequestId>,
}

impl RequestMeta {
    /// A request from `client` that no layer has seen yet.
    pub(crate) fn new(client: Option<ClientInfo>) -> Self {
        RequestMeta {
            client,
            class: RequestClass::Passthrough,
            forwarded: false,
            token_wait: None,
            prepared: false,
            routed: None,
            may_have_internal_headers: true,
            may_carry_token: true,
            request_id: None,
        }
    }

    /// The request's metadata, if a listener or a layer attached it.
    pub(crate) fn of(extensions: &Extensions) -> Option<&RequestMeta> {
        extensions.get::<RequestMeta>()
    }

    /// The request's metadata, attached now if nothing did yet (an embedding app's request,
    /// whose `ClientInfo`, if it set one, stays where it is: see [`client_of`]). One lookup.
    pub(crate) fn attach(extensions: &mut Extensions) -> &mut RequestMeta {
        extensions.get_or_insert_with(|| RequestMeta::new(None))
    }
}

/// The class the classify layer gave `request` (passthrough when it did not run).
pub(crate) fn class_of<B>(request: &Request<B>) -> RequestClass {
    RequestMeta::of(request.extensions()).map_or(RequestClass::Passthrough, |m| m.class)
}

/// The client connection of a request: the listener's (in `meta`, the request's metadata),
/// or the one an embedding app put in the extensions as a [`ClientInfo`].
pub(crate) fn client_of<'a>(
    meta: Option<&'a RequestMeta>,
    extensions: &'a Extensions,
) -> Option<&'a ClientInfo> {
    match meta.and_then(|m| m.client.as_ref()) {
        Some(client) => Some(client),
        None => extensions.get::<ClientInfo>(),
    }
}

/// Records `routed` on a response's extensions (in the metadata carried back from the
/// request when there is one: no allocation).
pub(crate) fn set_routed(extensions: &mut Extensions, routed: Routed) {
    match extensions.get_mut::<RequestMeta>() {
        Some(meta) => meta.routed = Some(routed),
        None => {
            let mut meta = RequestMeta::new(None);
            meta.class = routed.class;
            meta.routed = Some(routed);
            extensions.insert(meta);
        }
    }
}

/// Moves a request's extensions (taken before it was sent upstream, where they are not sent)
/// onto its response, so the route can record its outcome there without allocating: the whole
/// map when the response has none, else just the metadata. A response that already carries
/// metadata (a refusal rwproxy made) keeps its own.
pub(crate) fn carry_back(mut request: Extensions, response: &mut Extensions) {
    if response.is_empty() {
        *response = request;
    } else if response.get::<RequestMeta>().is_none() {
        if let Some(meta) = request.remove::<RequestMeta>() {
            response.insert(meta);
        }
    }
}

/// Rewrites a request's head for the upstream hop (the app's or the primary's), for the
/// client connection its metadata `meta` (looked up by the caller, which needs it too) or an
/// embedding app names.
pub(crate) fn prepare_head(
    parts: &mut request::Parts,
    meta: Option<&RequestMeta>,
    extensions: &Extensions,
    hop: &HopIdentity,
) -> Result<(), MissingHost> {
    match client_of(meta, extensions) {
        Some(client) => prepare_request(parts, client, hop),
        None => prepare_request(parts, &ClientInfo::unspecified(), hop),
    }
}
