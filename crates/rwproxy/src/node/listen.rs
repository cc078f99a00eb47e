//! Binding a listener. An unspecified IPv6 address (`"[::]:8080"`) is bound as one dual-stack
//! socket that accepts IPv4 clients too (IPV6_V6ONLY off), as Go's `":8080"` (LiteFS's proxy)
//! does, whatever the host's default (`net.ipv6.bindv6only`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// The backlog tokio's own `TcpListener::bind` uses.
const BACKLOG: i32 = 1024;

/// Binds `addr`; `[::]` accepts IPv4 and IPv6.
pub(super) async fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    if !(addr.is_ipv6() && addr.ip().is_unspecified()) {
        return TcpListener::bind(addr).await;
    }
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As tokio's bind does: a restarted node rebinds at once despite TIME_WAIT connections.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn an_unspecified_ipv6_address_accepts_ipv4_and_ipv6() {
        let Ok(listener) = bind_listener("[::]:0".parse().unwrap()).await else {
            eprintln!("skipped: no IPv6 on this host");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        for client in ["127.0.0.1", "[::1]"] {
            let addr: SocketAddr = format!("{client}:{port}").parse().unwrap();
            let (connected, accepted) =
                tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
            connected.unwrap();
            accepted.unwrap();
        }
    }
}
