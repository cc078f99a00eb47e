//! One body type for everything rwproxy sends or receives, so that bodies stream through
//! without boxing or conversion.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::upstream::pool::Checkin;

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
        },
        // A small body rwproxy made (error messages, health documents, metrics).
        Full { data: Option<Bytes> },
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
        Body {
            kind: Kind::Stream {
                inner,
                checkin: None,
                remaining: limit,
                from_client: true,
            },
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
            } => {
                let polled = inner.as_mut().poll_frame(cx);
                if let (Poll::Ready(Some(Ok(frame))), Some(left)) = (&polled, remaining.as_mut()) {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    match left.checked_sub(len) {
                        Some(rest) => *left = rest,
                        // Stop the stream: the upstream sees an aborted request, never a
                        // truncated one that looks complete.
                        None => return Poll::Ready(Some(Err(Box::new(BodyTooLarge)))),
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream { inner, .. } => inner.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream { inner, .. } => inner.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
