//! One connection's spare extension map: the map its last response carried, emptied, handed to
//! its next request.
//!
//! Every request rwproxy serves carries one [`RequestMeta`] in its extensions, and the leaves
//! move the request's map onto the response (`proxy::meta::carry_back`). Inserting into a
//! fresh `http::Extensions` allocates three times (the map's box, its table, the value's box)
//! and dropping the response frees them again: ~350 instructions of a proxied GET's ~33,000
//! (`docs/benchmarks.md`). A keep-alive connection serves its requests one after the other,
//! so the listener takes the map back from each response and resets the metadata in it for
//! the next request: no allocation at all on the common path.
//!
//! Only a map holding nothing but rwproxy's metadata is taken back: anything else in it (say
//! hyper's reason phrase or upgrade handle) is the response's and goes out with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Extensions, Request, Response};
use pin_project_lite::pin_project;

use crate::proxy::RequestMeta;
use crate::upstream::headers::ClientInfo;

/// The slot a connection's service and its response futures share. A `Mutex` because hyper
/// needs the futures `Send`; requests on one HTTP/1.1 connection never overlap, so it is never
/// contended there (and with HTTP/2's concurrent streams a busy slot is simply skipped).
#[derive(Clone, Debug, Default)]
pub(super) struct SpareExtensions {
    slot: Arc<Mutex<Option<Extensions>>>,
}

impl SpareExtensions {
    /// Gives `request` fresh metadata for `client`: in the spare map when there is one and
    /// hyper put nothing of its own in the request's.
    pub(super) fn attach<B>(&self, request: &mut Request<B>, client: &ClientInfo) {
        let meta = RequestMeta::new(Some(client.clone()));
        let extensions = request.extensions_mut();
        if extensions.is_empty() {
            if let Some(mut spare) = self.slot.try_lock().ok().and_then(|mut s| s.take()) {
                match spare.get_mut::<RequestMeta>() {
                    Some(old) => *old = meta,
                    None => {
                        spare.insert(meta);
                    }
                }
                *extensions = spare;
                return;
            }
        }
        extensions.insert(meta);
    }

    /// Wraps a response future so that the map its response carries comes back here.
    pub(super) fn recycle<F>(&self, future: F) -> Recycle<F> {
        Recycle {
            future,
            spare: self.clone(),
        }
    }

    fn put_back<B>(&self, response: &mut Response<B>) {
        let extensions = response.extensions_mut();
        if extensions.len() != 1 {
            return;
        }
        let Some(meta) = extensions.get_mut::<RequestMeta>() else {
            return;
        };
        // Nothing of this request (its id, its token) stays with an idle connection.
        *meta = RequestMeta::new(None);
        if let Ok(mut slot) = self.slot.try_lock() {
            *slot = Some(std::mem::take(extensions));
        }
    }
}

pin_project! {
    /// A response future whose response's extension map goes back to the connection's spare.
    pub(super) struct Recycle<F> {
        #[pin]
        future: F,
        spare: SpareExtensions,
    }
}

impl<F, B, E> Future for Recycle<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut polled = this.future.poll(cx);
        if let Poll::Ready(Ok(response)) = &mut polled {
            this.spare.put_back(response);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientInfo {
        ClientInfo::new([127, 0, 0, 1].into(), false)
    }

    fn response_with(extensions: Extensions) -> Response<()> {
        let mut response = Response::new(());
        *response.extensions_mut() = extensions;
        response
    }

    #[test]
    fn a_response_map_holding_only_the_metadata_serves_the_next_request_reset() {
        let spare = SpareExtensions::default();
        let mut first = Request::new(());
        spare.attach(&mut first, &client());
        let mut extensions = std::mem::take(first.extensions_mut());
        extensions
            .get_mut::<RequestMeta>()
            .expect("metadata")
            .forwarded = true;
        let mut response = response_with(extensions);
        spare.put_back(&mut response);
        assert!(response.extensions().is_empty(), "taken back");
        {
            let slot = spare.slot.lock().expect("slot");
            let kept = slot.as_ref().and_then(RequestMeta::of).expect("spare");
            assert!(
                !kept.forwarded && kept.client.is_none(),
                "cleared once taken back"
            );
        }

        let mut next = Request::new(());
        spare.attach(&mut next, &client());
        let meta = RequestMeta::of(next.extensions()).expect("metadata");
        assert!(!meta.forwarded, "reset for the next request");
        assert!(meta.client.is_some());
        assert!(spare.slot.lock().expect("slot").is_none(), "in use");
    }

    #[test]
    fn a_map_with_anything_else_stays_on_its_response() {
        let spare = SpareExtensions::default();
        let mut extensions = Extensions::new();
        extensions.insert(RequestMeta::new(None));
        extensions.insert(7_u32);
        let mut response = response_with(extensions);
        spare.put_back(&mut response);
        assert_eq!(response.extensions().len(), 2);
        assert_eq!(response.extensions().get::<u32>(), Some(&7));

        let mut alone = Extensions::new();
        alone.insert(7_u32);
        let mut response = response_with(alone);
        spare.put_back(&mut response);
        assert_eq!(response.extensions().get::<u32>(), Some(&7));
        assert!(spare.slot.lock().expect("slot").is_none());
    }

    #[test]
    fn a_request_with_extensions_of_its_own_keeps_them() {
        let spare = SpareExtensions::default();
        let mut extensions = Extensions::new();
        extensions.insert(RequestMeta::new(None));
        spare.put_back(&mut response_with(extensions));

        let mut request = Request::new(());
        request.extensions_mut().insert(7_u32);
        spare.attach(&mut request, &client());
        assert_eq!(request.extensions().get::<u32>(), Some(&7));
        assert!(RequestMeta::of(request.extensions()).is_some());
        assert!(spare.slot.lock().expect("slot").is_some(), "still spare");
    }
}
