//! Accepting connections: binding listeners, the connection limit, per-address admission
//! and accept errors.

use super::connection::{self, Assume};
use super::shared::Shared;
use crate::admission::Disconnect;
use crate::handler::bye;
use natter_proto::ByeReason;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Connections the kernel may queue for accepting (it caps this at `net.core.somaxconn`). The
/// standard library's 128 overflows when a crowd connects at once, and each SYN dropped then
/// costs its client a second, TCP's first retransmission timeout.
const BACKLOG: u32 = 4096;

/// Binds a listening socket like `TcpListener::bind` (the first address `addr` resolves to that
/// can be bound), with a backlog fit for a crowd arriving.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

fn bind_one(a: SocketAddr) -> io::Result<TcpListener> {
    let s = if a.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(a)?;
    s.listen(BACKLOG)
}

/// A bound socket and the protocol to assume for clients that do not announce one.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// What its silent clients speak.
    pub assume: Assume,
}

/// Accepts from one listener until the token is cancelled; the socket closes when it returns.
pub async fn accept_loop(l: Listener, shared: Arc<Shared>, token: CancellationToken) {
    let stats = shared.hub.stats().clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            r = l.socket.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: the machine is out of something. Retrying at
                // once would spin; waiting lets connections close and free it.
                error!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if stats.connected() >= shared.config.max_connections {
            warn!(%peer, limit = shared.config.max_connections, "refused: server full");
            let _ = stream.try_write(&bye(ByeReason::ServerFull));
            continue;
        }
        let ip = peer.ip();
        let limited = shared.policy.limits_apply(ip);
        if limited && let Err(reason) = shared.admission.admit(ip, &shared.policy) {
            warn!(%peer, reason = %reason, "refused");
            let _ = stream.try_write(&bye(reason));
            continue;
        }
        let id = shared.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let connected = stats.connect();
        info!(%peer, connected, registered = stats.registered(), "connected");
        let guard = Disconnect::new(shared.admission.clone(), limited.then_some(ip));
        shared.tracker.spawn(connection::serve(
            stream,
            id,
            shared.clone(),
            token.clone(),
            l.assume,
            guard,
        ));
    }
}

/// Errors that concern one connection attempt only; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
