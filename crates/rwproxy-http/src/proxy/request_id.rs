//! Request ids: the client's own `x-request-id` when it is sane, else a fresh one. The id goes
//! to the app and to the primary (whose rwproxy keeps it), so one write can be followed through
//! two nodes' logs, and comes back in the response.
//!
//! tower-http's `SetRequestId` and `PropagateRequestId` do not fit: they keep any client id
//! (rwproxy replaces one that is too long or holds spaces or controls, which would break a log
//! line), keep an id the app set on its response, and copy the id into the request's and the
//! response's extensions. Together they cost ~15% more instructions per proxied GET than this
//! one layer (callgrind, `docs/benchmarks.md`): seven hashed header lookups and two
//! allocations where one `entry` and one `insert` do.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::meta::RequestMeta;

/// The request id header, taken from clients and set on requests and responses.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

/// One request's id: 1 to 128 visible ASCII characters.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }

    /// The id a request carries: the pipeline sets `x-request-id` on every request it handles
    /// (so no request extension, and no allocation, is needed to find it again).
    pub fn of<B>(request: &Request<B>) -> Option<RequestId> {
        match RequestMeta::of(request.extensions()).and_then(|m| m.request_id.as_ref()) {
            Some(id) => Some(id.clone()),
            None => Self::in_headers(request.headers()),
        }
    }

    /// [`RequestId::of`], from a request's headers alone.
    pub fn in_headers(headers: &HeaderMap) -> Option<RequestId> {
        headers.get(&X_REQUEST_ID).cloned().map(RequestId)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for an id worth keeping: 1 to 128 visible ASCII characters (no spaces, no controls),
/// so it is safe in a log line and a header.
fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Makes ids: 16 hex digits, a keyed hash of a per-proxy counter. The random key makes ids of
/// different nodes and restarts distinct; the hash keeps them from looking sequential.
#[derive(Debug)]
pub struct RequestIds {
    key: RandomState,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    /// A generator with a fresh random key.
    pub fn new() -> Self {
        RequestIds {
            key: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// The id for a request with these headers, set on them: the client's own `x-request-id`
    /// when sane, else a new one in its place. One lookup of the header name.
    pub fn assign(&self, headers: &mut HeaderMap) -> RequestId {
        use http::header::Entry;
        let entry = headers.entry(&X_REQUEST_ID);
        if let Entry::Occupied(slot) = &entry {
            if is_sane(slot.get()) {
                return RequestId(slot.get().clone());
            }
        }
        let id = self.make();
        match entry {
            Entry::Occupied(mut slot) => {
                slot.insert(id.0.clone());
            }
            Entry::Vacant(slot) => {
                slot.insert(id.0.clone());
            }
        }
        id
    }

    fn make(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = self.key.build_hasher();
        hasher.write_u64(n);
        let mut v = hasher.finish();
        let mut hex = [0u8; 16];
        for digit in hex.iter_mut().rev() {
            *digit = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
        }
        RequestId(HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }
}

/// Builds [`SetRequestId`] services: each request gets its id (kept, or made by
/// [`RequestIds`]) in `x-request-id` on the way in, and the response gets it on the way out.
#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer {
    ids: Arc<RequestIds>,
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> SetRequestId<S> {
        SetRequestId {
            inner,
            ids: self.ids.clone(),
        }
    }
}

/// Sets and returns request ids; see [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct SetRequestId<S> {
    inner: S,
    ids: Arc<RequestIds>,
}

impl<S, B, R> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = self.ids.assign(request.headers_mut());
        // Also in the metadata, where the layers and leaves that log find it without hashing
        // the header name again (a reference count, not a copy).
        RequestMeta::attach(request.extensions_mut()).request_id = Some(id.clone());
        RequestIdFuture {
            inner: self.inner.call(request),
            id: Some(id.0),
        }
    }
}

pin_project! {
    /// The response future of [`SetRequestId`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            // The response carries this request's id, whatever the app or the primary set.
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_bytes(id).unwrap());
        h
    }

    #[test]
    fn sane_client_ids_are_kept() {
        let ids = RequestIds::new();
        assert_eq!(ids.assign(&mut headers(b"abc-123_X")).as_str(), "abc-123_X");
        let mut h = headers(b"has space");
        let id = ids.assign(&mut h);
        assert_eq!(h.get(&X_REQUEST_ID), Some(id.header_value()));
        assert_ne!(id.as_str(), "has space");
        let mut h = HeaderMap::new();
        let id = ids.assign(&mut h);
        assert_eq!(h.get(&X_REQUEST_ID), Some(id.header_value()));
        let long = vec![b'a'; 128];
        assert_eq!(ids.assign(&mut headers(&long)).as_str().len(), 128);
    }

    #[test]
    fn odd_client_ids_are_replaced() {
        let ids = RequestIds::new();
        for bad in [&b"has space"[..], b"tab\there", &[b'a'; 129], b"\xc3\xa9"] {
            let id = ids.assign(&mut headers(bad));
            assert_eq!(id.as_str().len(), 16, "{bad:?}");
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(ids.assign(&mut HeaderMap::new()).as_str().len(), 16);
    }

    #[test]
    fn made_ids_differ() {
        let ids = RequestIds::new();
        let a = ids.assign(&mut HeaderMap::new());
        let b = ids.assign(&mut HeaderMap::new());
        assert_ne!(a.as_str(), b.as_str());
        let other = RequestIds::new().assign(&mut HeaderMap::new());
        assert_ne!(a.as_str(), other.as_str(), "another node's first id");
    }
}
