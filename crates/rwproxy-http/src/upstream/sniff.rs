//! Does the peer behind `primary_url` speak HTTP/2? Its first bytes say so: an HTTP/2 server's
//! first frame is SETTINGS, sent as soon as it accepts the connection. Anything else (an
//! HTTP/1.1 `400`/`505` text answering the client preface, a GOAWAY, a close or a reset before
//! nine bytes came) means it does not, and a request handed to that connection would fail after
//! it may have been read: the multiplexer waits for this verdict before it hands a write to a
//! connection it has not heard from (see [`super::multiplex`]).
//!
//! A [`Sniffed`] stream passes every byte through untouched; it only copies the first nine it
//! reads (a frame header) and reports the verdict once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// An HTTP/2 frame header: length (3 bytes), type, flags, stream id (4 bytes).
const FRAME_HEADER: usize = 9;
/// Frame types (RFC 9113, section 6).
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
/// SETTINGS' ACK flag: the server's first SETTINGS is not an acknowledgement.
const ACK: u8 = 0x1;

/// What the peer's first bytes said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// A SETTINGS frame on stream 0: an HTTP/2 server.
    Settings,
    /// Not an HTTP/2 server; why, for the log.
    NotHttp2(&'static str),
}

/// Judges a peer's first frame header (nine bytes).
pub fn judge(header: &[u8; FRAME_HEADER]) -> Heard {
    if header.starts_with(b"HTTP/") {
        return Heard::NotHttp2("it answered the HTTP/2 preface in HTTP/1");
    }
    let stream_zero = header[5..].iter().all(|b| *b == 0);
    match header[3] {
        SETTINGS if stream_zero && header[4] & ACK == 0 => Heard::Settings,
        GOAWAY => Heard::NotHttp2("its first HTTP/2 frame was a GOAWAY"),
        _ => Heard::NotHttp2("its first bytes were not an HTTP/2 SETTINGS frame"),
    }
}

/// Why a connection that ended before its first nine bytes is not an HTTP/2 server's.
pub const CLOSED_EARLY: &str = "it closed the connection before sending HTTP/2's SETTINGS";

/// A stream that reports what its peer's first bytes were.
#[derive(Debug)]
pub struct Sniffed<S> {
    inner: S,
    header: [u8; FRAME_HEADER],
    filled: usize,
    verdict: Option<oneshot::Sender<Heard>>,
}

impl<S> Sniffed<S> {
    /// Wraps `inner`; the receiver gets the verdict (or an error when the stream is dropped
    /// before one: it ended first, which is a verdict of its own, [`CLOSED_EARLY`]).
    pub fn new(inner: S) -> (Self, oneshot::Receiver<Heard>) {
        let (tx, rx) = oneshot::channel();
        let sniffed = Sniffed {
            inner,
            header: [0; FRAME_HEADER],
            filled: 0,
            verdict: Some(tx),
        };
        (sniffed, rx)
    }

    fn settle(&mut self, heard: Heard) {
        if let Some(verdict) = self.verdict.take() {
            // The receiver may have given up (a timeout): nothing to tell then.
            let _ = verdict.send(heard);
        }
    }

    /// Takes bytes just read, until the header is complete.
    fn hear(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(FRAME_HEADER - self.filled);
        self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
        self.filled += take;
        if self.header.starts_with(b"HTTP/") || self.filled == FRAME_HEADER {
            let heard = judge(&self.header);
            self.settle(heard);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.verdict.is_some() {
            match &polled {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    this.settle(Heard::NotHttp2(CLOSED_EARLY));
                }
                Poll::Ready(Ok(())) => this.hear(&buf.filled()[before..]),
                // A reset before the first frame: the peer refused what it read.
                Poll::Ready(Err(_)) => this.settle(Heard::NotHttp2(CLOSED_EARLY)),
                Poll::Pending => {}
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server's first SETTINGS frame: 6 bytes of payload (one setting), type 4, no flags.
    const SETTINGS_FRAME: [u8; 15] = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];

    /// The verdict after the peer writes `peer_bytes` (in pieces of `piece`) and then closes.
    async fn verdict_for(peer_bytes: &[u8], piece: usize) -> Heard {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut sniffed, verdict) = Sniffed::new(ours);
        for chunk in peer_bytes.chunks(piece.max(1)) {
            theirs.write_all(chunk).await.unwrap();
        }
        drop(theirs);
        let mut everything = Vec::new();
        sniffed.read_to_end(&mut everything).await.unwrap();
        assert_eq!(everything, peer_bytes, "bytes pass through untouched");
        verdict.await.unwrap()
    }

    #[tokio::test]
    async fn a_settings_frame_is_http2_even_a_byte_at_a_time() {
        assert_eq!(verdict_for(&SETTINGS_FRAME, 64).await, Heard::Settings);
        assert_eq!(verdict_for(&SETTINGS_FRAME, 1).await, Heard::Settings);
    }

    #[tokio::test]
    async fn http1_text_goaway_and_early_close_are_not_http2() {
        let http1 = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
        for piece in [1, 64] {
            assert!(matches!(
                verdict_for(http1, piece).await,
                Heard::NotHttp2(why) if why.contains("HTTP/1")
            ));
        }
        // "HTTP/" is enough: a short answer then a close is judged on its text.
        assert!(
            matches!(verdict_for(b"HTTP/1.0", 64).await, Heard::NotHttp2(why) if why.contains("HTTP/1"))
        );
        let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(
            matches!(verdict_for(&goaway, 64).await, Heard::NotHttp2(why) if why.contains("GOAWAY"))
        );
        assert_eq!(
            verdict_for(b"", 64).await,
            Heard::NotHttp2(CLOSED_EARLY),
            "a close before any byte"
        );
        assert_eq!(
            verdict_for(&SETTINGS_FRAME[..5], 64).await,
            Heard::NotHttp2(CLOSED_EARLY),
            "a close mid-header"
        );
    }

    #[test]
    fn only_a_non_ack_settings_frame_on_stream_zero_is_http2() {
        let mut header = [0, 0, 0, SETTINGS, 0, 0, 0, 0, 0];
        assert_eq!(judge(&header), Heard::Settings);
        header[4] = ACK;
        assert!(matches!(judge(&header), Heard::NotHttp2(_)), "an ACK first");
        header[4] = 0;
        header[8] = 1;
        assert!(matches!(judge(&header), Heard::NotHttp2(_)), "on stream 1");
        header[8] = 0;
        header[3] = 0x0; // DATA
        assert!(matches!(judge(&header), Heard::NotHttp2(_)));
    }
}
