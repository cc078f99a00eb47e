//! One body type for everything rwproxy sends or receives, so that bodies stream through
//! without boxing or conversion.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::Authority;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use pin_project_lite::pin_project;

use crate::body_clock::{BodyClock, BodyTimedOut, BodyTimeouts};

/// A client body grew past `proxy.max_body` while streaming.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body exceeds proxy.max_body")]
pub struct BodyTooLarge;

/// A client's request body failed while rwproxy streamed it on: malformed chunked framing, a
/// body shorter than its `Content-Length`, a client that went away mid-body. The client's
/// fault: answered 400 `bad-request`, never blamed on the app or the primary.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

/// The `rwproxy-error` code for an upstream send that failed because of the client's body
/// ([`BodyTooLarge`] or [`ClientBodyError`] somewhere in `error`'s causes), else `None`.
pub fn client_fault(error: &(dyn std::error::Error + 'static)) -> Option<rwproxy_core::ErrorCode> {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTooLarge>() {
            return Some(rwproxy_core::ErrorCode::TooLarge);
        }
        if e.is::<ClientBodyError>() {
            return Some(rwproxy_core::ErrorCode::BadRequest);
        }
        if e.is::<BodyTimedOut>() {
            return Some(rwproxy_core::ErrorCode::BodyTimeout);
        }
        current = e.source();
    }
    None
}

/// Errors a body can yield while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A request or response body: streamed from a peer, or made by rwproxy itself.
    pub struct Body {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        // Streamed from a client or an upstream connection.
        Stream {
            #[pin]
            inner: Incoming,
            // Returns the upstream connection to its pool once the body is fully read.
            checkin: Option<Checkin>,
            // Bytes still allowed (`proxy.max_body`); `None`: no limit.
            remaining: Option<u64>,
            // A client's request body: its errors are the client's fault.
            from_client: bool,
            // A client's request body: bounds the waits on the client (`proxy.body_timeout`).
            clock: Option<Box<BodyClock>>,
        },
        // A small body rwproxy made (error messages, health documents, metrics).
        Full { data: Option<Bytes> },
        // Any other body (an embedding app's own request or response bodies).
        Boxed {
            #[pin]
            inner: UnsyncBoxBody<Bytes, BoxError>,
            remaining: Option<u64>,
        },
    }
}

/// Where an upstream connection goes back once its response body has ended. The pool
/// implements it: this module never names the pool, so the pool depends on bodies and not the
/// other way round.
pub(crate) trait ConnectionHome: Send + Sync + 'static {
    /// Takes the connection back for the next request to `key`.
    fn take_back(&self, key: Authority, sender: http1::SendRequest<Body>);
}

/// Puts a connection back into its pool once the response body has been read to the end.
pub(crate) struct Checkin {
    home: Arc<dyn ConnectionHome>,
    key: Authority,
    sender: http1::SendRequest<Body>,
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkin").field("key", &self.key).finish()
    }
}

impl Checkin {
    /// The connection `sender` to `key`, to go back to `home`.
    pub(crate) fn new(
        home: Arc<dyn ConnectionHome>,
        key: Authority,
        sender: http1::SendRequest<Body>,
    ) -> Self {
        Checkin { home, key, sender }
    }

    /// The response is complete: the connection may carry the next request.
    pub(crate) fn done(self) {
        if self.sender.is_ready() {
            self.home.take_back(self.key, self.sender);
        } else if !self.sender.is_closed() {
            // hyper flips the connection to idle a moment after the body ends; wait for it off
            // the request path rather than dropping a good connection.
            let Checkin {
                home,
                key,
                mut sender,
            } = self;
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    home.take_back(key, sender);
                }
            });
        }
    }
}

/// Counts a data frame against the bytes still allowed; false once the limit is passed.
fn within_limit<D: bytes::Buf>(frame: &Frame<D>, remaining: &mut Option<u64>) -> bool {
    let Some(left) = remaining.as_mut() else {
        return true;
    };
    let len = frame.data_ref().map_or(0, |d| d.remaining() as u64);
    match left.checked_sub(len) {
        Some(rest) => {
            *left = rest;
            true
        }
        None => false,
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Full { data: None },
        }
    }

    /// A body of these bytes.
    /// True when the whole body is in memory (it cannot fail while being sent).
    pub(crate) fn is_in_memory(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }

    /// A body of `data`, in memory.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Body {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// A streamed client body that fails once it exceeds `limit` bytes (`proxy.max_body`).
    pub fn limited(inner: Incoming, limit: Option<u64>) -> Self {
        Body::client(inner, limit, None)
    }

    /// A streamed client body limited to `limit` bytes whose waits on the client are bounded
    /// by `timeouts` (`proxy.body_timeout`, `proxy.body_min_rate`; `None`: unbounded).
    pub fn client(inner: Incoming, limit: Option<u64>, timeouts: Option<BodyTimeouts>) -> Self {
        // A body that is already complete (no body, or all of it read with the head) never waits.
        let clock = timeouts
            .filter(|t| t.enabled() && !inner.is_end_stream())
            .map(|t| Box::new(BodyClock::new(t)));
        Body {
            kind: Kind::Stream {
                inner,
                checkin: None,
                remaining: limit,
                from_client: true,
                clock,
            },
        }
    }

    /// Any request or response body, as a [`Body`] that fails once it exceeds `limit` bytes:
    /// a client's [`Incoming`] body streams as [`Body::limited`] does, a [`Body`] stays itself,
    /// anything else (an embedding app's body type) is boxed.
    pub fn from_any<B>(body: B, limit: Option<u64>) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body::from_any_timed(body, limit, None)
    }

    /// [`Body::from_any`], a client's [`Incoming`] body also bounded by `timeouts`
    /// ([`Body::client`]).
    pub fn from_any_timed<B>(body: B, limit: Option<u64>, timeouts: Option<BodyTimeouts>) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // The type checks are resolved at compile time for each `B`: no cost at run time.
        let mut slot = Some(body);
        if let Some(incoming) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Incoming>>() {
            if let Some(incoming) = incoming.take() {
                return Body::client(incoming, limit, timeouts);
            }
        }
        if limit.is_none() {
            if let Some(own) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>() {
                if let Some(own) = own.take() {
                    return own;
                }
            }
        }
        match slot {
            Some(other) => Body {
                kind: Kind::Boxed {
                    inner: other.map_err(Into::into).boxed_unsync(),
                    remaining: limit,
                },
            },
            None => Body::empty(),
        }
    }

    /// A streamed body.
    pub fn stream(inner: Incoming) -> Self {
        Body {
            kind: Kind::Stream {
                inner,
                checkin: None,
                remaining: None,
                from_client: false,
                clock: None,
            },
        }
    }

    /// A streamed upstream body that returns its connection to the pool when it ends.
    pub(crate) fn upstream(inner: Incoming, checkin: Checkin) -> Self {
        let mut body = Body {
            kind: Kind::Stream {
                inner,
                checkin: Some(checkin),
                remaining: None,
                from_client: false,
                clock: None,
            },
        };
        // A response without a body (204, 304, HEAD) ends at once.
        body.checkin_if_done();
        body
    }

    fn checkin_if_done(&mut self) {
        if let Kind::Stream { inner, checkin, .. } = &mut self.kind {
            if inner.is_end_stream() {
                if let Some(c) = checkin.take() {
                    c.done();
                }
            }
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Stream { .. } => f.write_str("Body::Stream"),
            Kind::Full { data } => write!(
                f,
                "Body::Full({} bytes)",
                data.as_ref().map_or(0, |d| d.len())
            ),
            Kind::Boxed { .. } => f.write_str("Body::Boxed"),
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Stream {
                mut inner,
                checkin,
                remaining,
                from_client,
                clock,
            } => {
                let polled = inner.as_mut().poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if !within_limit(frame, remaining) {
                        // Stop the stream: the upstream sees an aborted request, never a
                        // truncated one that looks complete.
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                if let Some(clock) = clock {
                    match &polled {
                        Poll::Ready(Some(Ok(frame))) => clock.progressed(
                            frame
                                .data_ref()
                                .map_or(0, |d| bytes::Buf::remaining(d) as u64),
                        ),
                        // Waiting on the client: as with a body too large, the upstream sees
                        // an aborted request.
                        Poll::Pending if clock.poll_waiting(cx).is_ready() => {
                            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
                        }
                        _ => {}
                    }
                }
                let finished = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    _ => false,
                };
                if finished {
                    if let Some(c) = checkin.take() {
                        c.done();
                    }
                }
                let from_client = *from_client;
                polled.map(|f| {
                    f.map(|r| {
                        r.map_err(|e| match from_client {
                            true => Box::new(ClientBodyError(e)) as BoxError,
                            false => e.into(),
                        })
                    })
                })
            }
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Boxed { inner, remaining } => {
                let polled = inner.poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if !within_limit(frame, remaining) {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream { inner, .. } => inner.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Boxed { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream { inner, .. } => inner.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Boxed { inner, .. } => inner.size_hint(),
        }
    }
}
