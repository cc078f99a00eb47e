//! A simulated wide-area link on loopback: a TCP relay that delays every chunk by a one-way
//! delay (plus optional jitter and loss), and models TCP's handshake.
//!
//! On loopback `connect` returns at once, so a new connection would look free. A real one
//! costs a round trip (SYN, SYN-ACK) before the client's first bytes can leave, and they then
//! take the one-way delay to arrive. The relay therefore holds the bytes a client sends on a
//! new connection until one round trip after the connect, then delays them like any other
//! chunk: a cold request costs two round trips, a request on a warm connection one.
//!
//! Loss is modelled as a retransmission: a lost chunk arrives one retransmission timeout
//! (Linux's 200 ms minimum, or the round trip if larger) later, and the stream keeps its order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Linux's minimum retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);

/// The link's shape.
#[derive(Clone, Copy, Debug)]
pub struct LinkShape {
    /// Delay each way.
    pub one_way: Duration,
    /// Up to this much more, uniformly, per chunk (order is kept).
    pub jitter: Duration,
    /// Probability (0..1) that a chunk is lost once and retransmitted.
    pub loss: f64,
}

impl LinkShape {
    /// The round trip without jitter or loss.
    pub fn rtt(&self) -> Duration {
        self.one_way * 2
    }
}

/// A relay listening on `127.0.0.1:0` in front of `target`; stops accepting when dropped.
pub struct WanLink {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl WanLink {
    /// Starts the relay.
    pub async fn start(target: SocketAddr, shape: LinkShape) -> std::io::Result<WanLink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(addr.port());
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let connected = Instant::now();
                count.fetch_add(1, Ordering::Relaxed);
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                tokio::spawn(carry(client, target, shape, connected, seed));
            }
        });
        Ok(WanLink {
            addr,
            accepted,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (each one paid a simulated handshake).
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries one connection both ways until both directions end.
async fn carry(
    client: TcpStream,
    target: SocketAddr,
    shape: LinkShape,
    connected: Instant,
    seed: u64,
) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The client's first bytes wait for the simulated SYN / SYN-ACK round trip.
    let up = pipe(
        client_read,
        server_write,
        connected + shape.rtt(),
        shape,
        seed,
    );
    let down = pipe(server_read, client_write, connected, shape, seed ^ 0xff);
    tokio::join!(up, down);
}

/// Copies `from` to `to`, each chunk delivered no earlier than `earliest` plus the link delay.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    earliest: Instant,
    shape: LinkShape,
    mut seed: u64,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Bytes>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    });
    let mut last = earliest;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let mut at = Instant::now().max(earliest) + shape.one_way;
        if !shape.jitter.is_zero() {
            at += shape.jitter.mul_f64(random(&mut seed));
        }
        if shape.loss > 0.0 && random(&mut seed) < shape.loss {
            at += MIN_RTO.max(shape.rtt());
        }
        // A stream is delivered in order, whatever the jitter.
        at = at.max(last);
        last = at;
        let chunk = (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]));
        if tx.send((at, chunk)).is_err() || n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A uniform number in [0, 1) from a xorshift state.
fn random(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}
