//! A fault-injecting TCP relay for the chaos tests: it listens on `127.0.0.1:0`, forwards every
//! connection to a target address, and misbehaves on demand.
//!
//! The [`Mode`] is shared and can change at any time. New connections follow the new mode at once;
//! existing ones follow it chunk by chunk, and `Reset`, `Refuse` and `Blackhole` take hold of them
//! at once too (an idle kept-alive connection is reset the moment the mode turns `Reset`).
//!
//! Everything is bounded (connections, buffer sizes, the upstream connect) and loopback only;
//! dropping the [`Relay`] stops the listener and resets every connection it carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Connections carried at once; beyond it new connections are reset.
const MAX_CONNECTIONS: usize = 512;
/// Bytes read per chunk.
const CHUNK: usize = 16 * 1024;
/// Bound on connecting to the target.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a `CutAfter` reset, so the bytes let through leave the socket before the RST
/// (a reset discards whatever is still queued).
const CUT_FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// How the relay treats traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways untouched.
    Pass,
    /// Nothing listens: connecting fails with "connection refused". Existing connections are
    /// reset.
    Refuse,
    /// Accept connections, read and discard everything, never answer. A connection that lost
    /// bytes this way is reset when the mode changes (its stream is broken for good).
    Blackhole,
    /// Reset existing connections, accept new ones and reset them at once.
    Reset,
    /// Forward, holding each chunk (either way) this long first.
    Delay(Duration),
    /// Forward this many bytes towards the target on a connection (counted from accept or from
    /// when this mode was set), then reset both sides: a request cut mid-body. The response
    /// direction passes untouched.
    CutAfter(usize),
}

/// What the relay did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections the relay ended with a reset (on purpose, or because a peer reset).
    pub resets: u64,
    /// Bytes forwarded towards the target.
    pub bytes_up: u64,
    /// Bytes forwarded back to the client.
    pub bytes_down: u64,
    /// Bytes swallowed by `Blackhole`.
    pub discarded: u64,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    resets: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    discarded: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }
}

/// A running relay; stops (and resets everything it carries) when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    target: Arc<Mutex<SocketAddr>>,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The accept task owns the listener; connection tasks see the mode channel close and
        // reset their sockets.
        self.task.abort();
    }
}

impl Relay {
    /// Starts a relay in [`Mode::Pass`] on `127.0.0.1:0`, forwarding to `target` (loopback).
    pub async fn start(target: SocketAddr) -> Relay {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target).await
    }

    /// As [`Relay::start`], listening on `bind` (a loopback address, port 0 for any): a relay
    /// that stands in for a server on that server's own address.
    pub async fn start_on(bind: SocketAddr, target: SocketAddr) -> Relay {
        assert!(target.ip().is_loopback(), "relays forward to loopback only");
        assert!(bind.ip().is_loopback(), "relays listen on loopback only");
        let listener = listen(bind).expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let target = Arc::new(Mutex::new(target));
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            mode_rx,
            target.clone(),
            stats.clone(),
        ));
        Relay {
            addr,
            mode,
            target,
            stats,
            task,
        }
    }

    /// Where the relay listens (also while it refuses: the port stays reserved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the mode, for new and existing connections.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Points new connections at another target (a restarted node on a new port).
    pub fn set_target(&self, target: SocketAddr) {
        assert!(target.ip().is_loopback(), "relays forward to loopback only");
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.snapshot()
    }
}

/// A socket that may share its port with the relay's other sockets: the listener, and the
/// placeholder that keeps the port while the relay refuses.
fn socket() -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    Ok(socket)
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket()?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds `addr` without listening: the port stays ours, and a SYN finds no listener (RST, so
/// "connection refused").
fn hold(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = socket()?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The relay's port: listening, or held without listening (refusing).
enum Port {
    Listening(TcpListener),
    /// Kept only for its port (dropping it frees the port).
    Held(#[allow(dead_code)] Option<TcpSocket>),
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    mut mode_rx: watch::Receiver<Mode>,
    target: Arc<Mutex<SocketAddr>>,
    stats: Arc<Stats>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut port = Port::Listening(listener);
    loop {
        let mode = *mode_rx.borrow_and_update();
        if mode == Mode::Refuse {
            if matches!(port, Port::Listening(_)) {
                // Hold the port first, then stop listening: SYNs now find no listener.
                port = Port::Held(hold(addr).ok());
            }
            if mode_rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        if let Port::Held(_) = port {
            match listen(addr) {
                Ok(l) => port = Port::Listening(l),
                Err(e) => {
                    eprintln!("relay {addr}: cannot listen again yet: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Port::Listening(l) = &port else { continue };
        tokio::select! {
            changed = mode_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = l.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    reset(stream, &stats);
                    continue;
                };
                let target = *target.lock().unwrap_or_else(PoisonError::into_inner);
                let mode_rx = mode_rx.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    serve(stream, target, mode_rx, &stats).await;
                    drop(permit);
                });
            }
        }
    }
}

/// Closes `stream` with a reset (SO_LINGER 0), not a FIN.
fn reset(stream: TcpStream, stats: &Stats) {
    let _ = stream.set_zero_linger();
    stats.resets.fetch_add(1, Ordering::Relaxed);
    drop(stream);
}

/// How one direction of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// End of stream, passed on as a FIN.
    Eof,
    /// The connection must be reset (the source reset, or the mode says so).
    Reset,
    /// The destination is gone (a write failed): what the other direction already received
    /// from it is still delivered, as on a real path, then the connection is reset.
    WriteFailed,
}

/// How long the surviving direction may drain after the other one's destination went away.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode_rx: watch::Receiver<Mode>,
    stats: &Stats,
) {
    let _ = client.set_nodelay(true);
    let mode = *mode_rx.borrow_and_update();
    match mode {
        Mode::Refuse | Mode::Reset => return reset(client, stats),
        Mode::Blackhole => {
            // No upstream: swallow until the mode changes. If nothing was lost the connection
            // can still be carried; otherwise its stream is broken.
            let mut buf = vec![0u8; CHUNK];
            let mut lost = 0u64;
            loop {
                tokio::select! {
                    changed = mode_rx.changed() => {
                        if changed.is_err() {
                            return reset(client, stats);
                        }
                        let mode = *mode_rx.borrow_and_update();
                        match mode {
                            Mode::Blackhole => continue,
                            Mode::Refuse | Mode::Reset => return reset(client, stats),
                            _ if lost > 0 => return reset(client, stats),
                            _ => break,
                        }
                    }
                    read = client.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return reset(client, stats),
                        Ok(n) => {
                            lost += n as u64;
                            stats.discarded.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        Mode::Pass | Mode::Delay(_) | Mode::CutAfter(_) => {}
    }
    let upstream =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(upstream)) => upstream,
            // The target is gone: the closest a relay can come to "refused" is a reset.
            _ => return reset(client, stats),
        };
    let _ = upstream.set_nodelay(true);
    carry(client, upstream, mode_rx, stats).await;
}

/// Pumps both directions until both ended, or until one of them or the mode calls for a reset.
async fn carry(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mode_rx: watch::Receiver<Mode>,
    stats: &Stats,
) {
    let poisoned = AtomicBool::new(false);
    let ended = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let up = pump(
            &mut cr,
            &mut uw,
            Direction::Up,
            mode_rx.clone(),
            &poisoned,
            stats,
        );
        let down = pump(
            &mut ur,
            &mut cw,
            Direction::Down,
            mode_rx.clone(),
            &poisoned,
            stats,
        );
        let mut up = std::pin::pin!(up);
        let mut down = std::pin::pin!(down);
        let mut signal = std::pin::pin!(reset_signal(mode_rx, &poisoned));
        let (mut up_done, mut down_done) = (false, false);
        let mut draining: Option<tokio::time::Instant> = None;
        loop {
            if up_done && down_done {
                break if draining.is_some() {
                    End::Reset
                } else {
                    End::Eof
                };
            }
            let grace = draining.unwrap_or_else(tokio::time::Instant::now);
            // A reset on either side resets both: a relay is as transparent as it can be.
            tokio::select! {
                end = &mut up, if !up_done => {
                    match end {
                        End::Reset => break End::Reset,
                        End::WriteFailed => draining = Some(tokio::time::Instant::now() + DRAIN_GRACE),
                        End::Eof => {}
                    }
                    up_done = true;
                }
                end = &mut down, if !down_done => {
                    match end {
                        End::Reset => break End::Reset,
                        End::WriteFailed => draining = Some(tokio::time::Instant::now() + DRAIN_GRACE),
                        End::Eof => {}
                    }
                    down_done = true;
                }
                () = tokio::time::sleep_until(grace), if draining.is_some() => break End::Reset,
                () = &mut signal => break End::Reset,
            }
        }
    };
    if ended == End::Reset {
        reset(client, stats);
        let _ = upstream.set_zero_linger();
        drop(upstream);
    }
}

/// Resolves when the mode calls for resetting a carried connection: `Reset`, `Refuse`, leaving
/// `Blackhole` after bytes were lost, or the relay being dropped.
async fn reset_signal(mut mode_rx: watch::Receiver<Mode>, poisoned: &AtomicBool) {
    loop {
        let mode = *mode_rx.borrow_and_update();
        match mode {
            Mode::Reset | Mode::Refuse => return,
            Mode::Blackhole => {}
            _ if poisoned.load(Ordering::Relaxed) => return,
            _ => {}
        }
        if mode_rx.changed().await.is_err() {
            return;
        }
    }
}

async fn pump(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    direction: Direction,
    mode_rx: watch::Receiver<Mode>,
    poisoned: &AtomicBool,
    stats: &Stats,
) -> End {
    let mut buf = vec![0u8; CHUNK];
    let mut previous = *mode_rx.borrow();
    // Bytes sent towards the target since `CutAfter` took effect on this connection.
    let mut cut_sent = 0usize;
    let counter = match direction {
        Direction::Up => &stats.bytes_up,
        Direction::Down => &stats.bytes_down,
    };
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            Err(_) => return End::Reset,
        };
        let mode = *mode_rx.borrow();
        if mode != previous {
            cut_sent = 0;
            previous = mode;
        }
        let chunk = match mode {
            Mode::Reset | Mode::Refuse => return End::Reset,
            Mode::Blackhole => {
                poisoned.store(true, Ordering::Relaxed);
                stats.discarded.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            Mode::Pass => &buf[..n],
            Mode::Delay(d) => {
                tokio::time::sleep(d).await;
                &buf[..n]
            }
            Mode::CutAfter(_) if direction == Direction::Down => &buf[..n],
            Mode::CutAfter(limit) => {
                let allowed = limit.saturating_sub(cut_sent);
                if n > allowed {
                    if to.write_all(&buf[..allowed]).await.is_ok() {
                        counter.fetch_add(allowed as u64, Ordering::Relaxed);
                        tokio::time::sleep(CUT_FLUSH_PAUSE).await;
                    }
                    return End::Reset;
                }
                cut_sent += n;
                &buf[..n]
            }
        };
        if to.write_all(chunk).await.is_err() {
            return End::WriteFailed;
        }
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn roundtrip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(data).await?;
        let mut back = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        Ok(back)
    }

    #[tokio::test]
    async fn modes_behave() {
        let (echo, _task) = echo_server().await;
        let relay = Relay::start(echo).await;
        assert_eq!(roundtrip(relay.addr(), b"hello").await.unwrap(), b"hello");

        relay.set_mode(Mode::Refuse);
        crate::eventually(Duration::from_secs(2), "connections refused", || async {
            let e = TcpStream::connect(relay.addr()).await.err()?;
            (e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
        })
        .await;

        relay.set_mode(Mode::Pass);
        crate::eventually(Duration::from_secs(2), "listening again", || async {
            roundtrip(relay.addr(), b"again").await.ok()
        })
        .await;

        // An idle connection is reset when the mode turns Reset.
        let mut idle = TcpStream::connect(relay.addr()).await.unwrap();
        idle.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        idle.read_exact(&mut one).await.unwrap();
        relay.set_mode(Mode::Reset);
        let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut one))
            .await
            .unwrap();
        assert!(read.is_err(), "expected a reset, got {read:?}");

        relay.set_mode(Mode::Delay(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert_eq!(roundtrip(relay.addr(), b"slow").await.unwrap(), b"slow");
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "one chunk each way"
        );

        relay.set_mode(Mode::Blackhole);
        let err = roundtrip(relay.addr(), b"void").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        relay.set_mode(Mode::CutAfter(10));
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        let _ = s.write_all(&[1u8; 100]).await;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(read.is_err(), "expected a reset after the cut: {read:?}");
        assert!(
            got.len() <= 10,
            "more than the cut came back: {}",
            got.len()
        );
        let stats = relay.stats();
        assert!(stats.resets >= 2 && stats.discarded >= 4, "{stats:?}");
    }
}
