//! `proxy.write_timeout`: a client connection whose writes make no progress for this long (a
//! client that stopped reading its response, so the socket's send buffer stays full) is closed,
//! as nginx's `send_timeout` does. The bound is between two successful writes, not on the
//! whole response: a large download at any pace keeps going while the client reads.
//!
//! Nothing can be answered on such a connection, so the close carries no `rwproxy-error`; it is
//! counted in `rwproxy_client_write_timeouts_total` instead.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Metrics;

pin_project! {
    /// A connection whose stalled writes fail with `TimedOut` after the write timeout.
    pub(crate) struct WriteDeadline<I> {
        #[pin]
        io: I,
        timeout: Option<Duration>,
        // Armed on the first write that cannot proceed; kept (and reset) for the next stall.
        timer: Option<Pin<Box<Sleep>>>,
        stalled: bool,
        metrics: Option<Arc<Metrics>>,
    }
}

impl<I> WriteDeadline<I> {
    /// `io`, its writes bounded by `timeout` (`None`: unbounded); closes counted in `metrics`.
    pub(crate) fn new(io: I, timeout: Option<Duration>, metrics: Option<Arc<Metrics>>) -> Self {
        WriteDeadline {
            io,
            timeout,
            timer: None,
            stalled: false,
            metrics,
        }
    }
}

/// What a write poll means for the deadline: progress disarms it, a stall arms it (once) and
/// fails the write once it passes.
fn watch<T>(
    polled: Poll<io::Result<T>>,
    cx: &mut Context<'_>,
    timeout: Option<Duration>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    stalled: &mut bool,
    metrics: &Option<Arc<Metrics>>,
) -> Poll<io::Result<T>> {
    let Some(timeout) = timeout else {
        return polled;
    };
    if polled.is_ready() {
        *stalled = false;
        return polled;
    }
    if !*stalled {
        *stalled = true;
        let deadline = tokio::time::Instant::now() + timeout;
        match timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
    let expired = timer
        .as_mut()
        .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
    match expired {
        true => {
            *stalled = false;
            if let Some(metrics) = metrics {
                metrics.client_write_timeout();
            }
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "client left its response unread for proxy.write_timeout; connection closed"
            );
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (proxy.write_timeout)",
            )))
        }
        false => Poll::Pending,
    }
}

impl<I: AsyncRead> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> WriteDeadline<I> {
    /// Runs one write-side poll of the inner connection under the deadline.
    fn guarded<T>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let this = self.project();
        let polled = poll(this.io, cx);
        watch(
            polled,
            cx,
            *this.timeout,
            this.timer,
            this.stalled,
            this.metrics,
        )
    }
}

impl<I: AsyncWrite> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guarded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guarded(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guarded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guarded(cx, |io, cx| io.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn stalls_time_out_and_progress_rearms_the_clock() {
        let (mut reader, writer) = tokio::io::duplex(16);
        let mut io = Box::pin(WriteDeadline::new(writer, Some(TIMEOUT), None));
        io.write_all(&[0; 16]).await.unwrap();
        // The buffer is full: this write stalls; the client reads once, then never again.
        let started = tokio::time::Instant::now();
        let stalled = io.write_all(&[1; 32]);
        let read_once = async {
            tokio::time::sleep(TIMEOUT * 2 / 3).await;
            let mut buf = [0; 16];
            tokio::io::AsyncReadExt::read_exact(&mut reader, &mut buf)
                .await
                .unwrap();
            std::future::pending::<()>().await
        };
        let error = tokio::select! {
            result = stalled => result.unwrap_err(),
            () = read_once => unreachable!(),
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // The read two thirds in was progress: the clock started again from there.
        assert!(
            started.elapsed() >= TIMEOUT * 5 / 3,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn without_a_timeout_a_stall_waits() {
        let (_reader, writer) = tokio::io::duplex(4);
        let mut io = Box::pin(WriteDeadline::new(writer, None, None));
        let stalled = io.write_all(&[0; 8]);
        let waited = tokio::time::timeout(TIMEOUT * 2, stalled).await;
        assert!(waited.is_err(), "the write neither failed nor finished");
    }
}
