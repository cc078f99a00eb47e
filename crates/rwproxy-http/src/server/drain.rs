//! The signal that tells open connections the listener is draining.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Shared by the listener and its connections; cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct DrainSignal {
    token: CancellationToken,
}

impl DrainSignal {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Tells every connection to finish its request in flight and close.
    pub(super) fn start(&self) {
        self.token.cancel();
    }

    /// Resolves once draining started.
    ///
    /// A connection's task polls this beside its connection on every wake-up, that is several
    /// times per request. Polling a cancellation future each time takes the token's lock; this
    /// one registers the task once and afterwards only reads the token's flag, until the task's
    /// waker changes.
    pub(crate) fn started(&self) -> Started {
        Started {
            token: self.token.clone(),
            wait: None,
            registered: None,
        }
    }
}

/// The future of [`DrainSignal::started`].
pub(crate) struct Started {
    token: CancellationToken,
    wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    registered: Option<Waker>,
}

impl Future for Started {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.token.is_cancelled() {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let token = &this.token;
        let wait = this
            .wait
            .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_connection_wakes_when_draining_starts() {
        let signal = DrainSignal::new();
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.started().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        signal.start();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("joined");
        // After the start, new waits end at once.
        tokio::time::timeout(Duration::from_secs(1), signal.started())
            .await
            .expect("already draining");
    }
}
