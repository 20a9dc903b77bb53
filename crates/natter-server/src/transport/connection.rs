//! A new connection: what it speaks, decided from its first bytes (TLS, HTTP, IRC or
//! natter's line protocol), and which wire and session then serve it under the one driver.

use super::driver::Driver;
use super::rewind::Rewind;
use super::shared::Shared;
use super::wire::Wire;
use super::{http, tls, websocket};
use crate::admission::Disconnect;
use crate::client_id::ClientId;
use crate::handler::{End, Handler};
use crate::irc::IrcSession;
use crate::outbox::Outbox;
use crate::session::Session;
use bytes::Bytes;
use natter_proto::sniff::{Sniff, sniff};
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Which protocol a listener assumes for clients that do not announce one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assume {
    /// natter's line protocol (the shared port).
    Line,
    /// IRC (a dedicated IRC listener).
    Irc,
    /// HTTP (a dedicated web listener).
    Http,
    /// TLS only (a dedicated TLS listener); inside, any protocol.
    Tls,
}

/// The longest prefix the protocol sniffer looks at.
const SNIFF_BYTES: usize = 16;
/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// How a connection arrived, for its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Tls => "tls",
            Via::Ws => "ws",
            Via::Wss => "wss",
        }
    }
}

/// The protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Natter,
    Irc,
}

/// Serves one accepted connection to its end.
///
/// A plain function returning an `async move` block rather than an `async fn`, whose state
/// would hold its arguments twice: this future is what every connected native client costs.
/// Only that path runs in it; every other kind of connection is handed to a task of its
/// own size once its protocol is known.
#[allow(clippy::manual_async_fn)]
pub fn serve(
    mut stream: TcpStream,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    assume: Assume,
    count: Disconnect,
) -> impl Future<Output = ()> + Send {
    // The peer's address is asked of the socket where a log line needs it rather than kept:
    // every byte this block holds across an await is paid by every idle client.
    async move {
        let cfg = &shared.config;
        let _ = stream.set_nodelay(true);
        {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(cfg.keepalive)
                .with_interval(cfg.keepalive / 6)
                .with_retries(3);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        }
        let mut prefix = [0u8; SNIFF_BYTES];
        let wait = match assume {
            // IRC clients speak first; their first bytes are checked so that a browser made to
            // POST to an IRC port (cross-protocol request forgery) is not served as IRC.
            Assume::Line | Assume::Irc => cfg.sniff_wait,
            // Dedicated ports need no telling apart.
            Assume::Http | Assume::Tls => Duration::ZERO,
        };
        // Boxed: its timer and wait futures are needed for the first bytes only, and would
        // otherwise stay in the state of every connection's task.
        let n = Box::pin(async {
            tokio::select! {
                n = read_prefix(&mut stream, &mut prefix, wait) => n,
                _ = shutdown.cancelled() => None,
            }
        })
        .await;
        let Some(n) = n else {
            debug!(peer = %peer_of(&stream), "closed before speaking");
            return;
        };
        let kind = match (assume, sniff(&prefix[..n])) {
            (Assume::Irc, Sniff::Http | Sniff::Tls) => {
                info!(peer = %peer_of(&stream), "HTTP or TLS on the IRC listener; closing");
                let _ = stream.try_write(b"ERROR :Closing Link: (this port speaks IRC only)\r\n");
                return;
            }
            (Assume::Irc, _) => Sniff::Irc,
            (Assume::Http, _) => Sniff::Http,
            (Assume::Tls, _) => Sniff::Tls,
            (Assume::Line, other) => other,
        };
        let first = &prefix[..n];
        match kind {
            Sniff::Http => {
                let peer = peer_of(&stream);
                let io = Rewind::new(Bytes::copy_from_slice(first), stream);
                // Boxed, like every path but the native one: a task's size is that of its
                // largest state, and the hyper and TLS states would otherwise make every
                // connection pay for them.
                let upgraded = Box::pin(http::serve(io, shared.clone(), peer, &shutdown)).await;
                if let Some((tcp, early)) = upgraded {
                    let ws = websocket::WebSocket::new(tcp, early);
                    hand_off(
                        ws,
                        Via::Ws,
                        Speaks::Natter,
                        Bytes::new(),
                        id,
                        &shared,
                        count,
                    );
                }
            }
            Sniff::Tls => {
                let Some(tls) = cfg.tls.clone() else {
                    info!(peer = %peer_of(&stream), "TLS ClientHello on a listener without TLS; closing");
                    return;
                };
                let first = Bytes::copy_from_slice(first);
                Box::pin(serve_tls(
                    stream,
                    first,
                    tls,
                    id,
                    shared.clone(),
                    shutdown,
                    count,
                ))
                .await;
            }
            Sniff::Irc => {
                debug!(peer = %peer_of(&stream), "speaks IRC");
                let first = Bytes::copy_from_slice(first);
                hand_off(stream, Via::Tcp, Speaks::Irc, first, id, &shared, count);
            }
            _ => {
                if !matches!(kind, Sniff::Line | Sniff::NeedMore) {
                    debug!(peer = %peer_of(&stream), ?kind, "not served on this listener; speaking the line protocol");
                }
                if n == 0 && assume == Assume::Line {
                    // Boxed: a silent client is rare, and this path's state would otherwise
                    // be paid by every native client's task.
                    let since = Instant::now() - wait;
                    Box::pin(serve_greeted(stream, id, shared, shutdown, count, since)).await;
                    return;
                }
                // Run here rather than handed off: this state is what every idle native
                // client's task holds, and it is the smallest.
                let mut driver = native(stream, id, &shared);
                shared.live.enrol(id, driver.outbox());
                let begun = driver.begin(first);
                let end = driver.run(begun, cfg).await;
                finished(&driver, end, Via::Tcp, Speaks::Natter, id, &shared);
                drop(count);
            }
        }
    }
}

/// A client silent past the sniffing wait (accepted at `since`): greeted as a line client,
/// then its first bytes sniffed once more. One that then speaks IRC first (an IRC client
/// slower than `sniff_wait` on a starved machine) is still served as IRC; it reads one line
/// it does not know, the greeting.
async fn serve_greeted(
    mut stream: TcpStream,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    count: Disconnect,
    since: Instant,
) {
    use tokio::io::AsyncWriteExt;
    let mut prefix = [0u8; SNIFF_BYTES];
    if stream.write_all(&shared.hello).await.is_err() {
        return;
    }
    let n = tokio::select! {
        n = read_prefix(&mut stream, &mut prefix, shared.policy.register_timeout) => n,
        _ = shutdown.cancelled() => None,
    };
    let Some(n) = n else {
        return;
    };
    if sniff(&prefix[..n]) == Sniff::Irc {
        debug!(peer = %peer_of(&stream), "speaks IRC after its greeting");
        let first = Bytes::copy_from_slice(&prefix[..n]);
        hand_off(stream, Via::Tcp, Speaks::Irc, first, id, &shared, count);
        return;
    }
    let mut driver = native_greeted(stream, id, &shared, since);
    shared.live.enrol(id, driver.outbox());
    let begun = driver.begin(&prefix[..n]);
    let end = driver.run(begun, &shared.config).await;
    finished(&driver, end, Via::Tcp, Speaks::Natter, id, &shared);
    drop(count);
}

/// A native session over `wire` whose greeting was written already, its registration
/// deadline counted from `since`.
fn native_greeted<W: Wire>(
    wire: W,
    id: ClientId,
    shared: &Shared,
    since: Instant,
) -> Driver<W, Session> {
    driver(wire, shared, |peer, outbox| {
        Session::new(id, peer, outbox, shared.hub.clone(), shared.policy.clone())
            .counting_from(since)
    })
}

/// A native session over `wire`, greeted.
fn native<W: Wire>(wire: W, id: ClientId, shared: &Shared) -> Driver<W, Session> {
    driver(wire, shared, |peer, outbox| {
        outbox.push(shared.hello.clone());
        Session::new(id, peer, outbox, shared.hub.clone(), shared.policy.clone())
    })
}

/// An IRC session over `wire`; IRC clients are greeted once they register.
fn irc<W: Wire>(wire: W, id: ClientId, shared: &Shared) -> Driver<W, IrcSession> {
    driver(wire, shared, |peer, outbox| {
        IrcSession::new(
            id,
            peer,
            outbox,
            shared.hub.clone(),
            shared.irc.clone(),
            shared.policy.clone(),
        )
    })
}

/// A driver over `wire` for the session `session` makes, given the peer and the outbox.
fn driver<W: Wire, H: Handler>(
    wire: W,
    shared: &Shared,
    session: impl FnOnce(SocketAddr, Arc<Outbox>) -> H,
) -> Driver<W, H> {
    let outbox = Arc::new(Outbox::new(shared.config.outbox_bytes));
    let handler = session(peer_of_wire(&wire), outbox.clone());
    Driver::new(
        handler,
        wire,
        outbox,
        shared.env.clone(),
        shared.policy.flood.as_ref(),
    )
}

/// Runs a session over `wire` in a task of its own, the size of exactly that session and
/// wire; the connection counts (`count`) until it ends.
fn hand_off<W: Wire>(
    wire: W,
    via: Via,
    speaks: Speaks,
    first: Bytes,
    id: ClientId,
    shared: &Arc<Shared>,
    count: Disconnect,
) {
    let shared2 = shared.clone();
    match speaks {
        Speaks::Natter => {
            shared.tracker.spawn(run(
                native(wire, id, shared),
                via,
                speaks,
                first,
                id,
                shared2,
                count,
            ));
        }
        Speaks::Irc => {
            shared.tracker.spawn(run(
                irc(wire, id, shared),
                via,
                speaks,
                first,
                id,
                shared2,
                count,
            ));
        }
    }
}

/// Runs a driver to its end and logs why it ended.
#[allow(clippy::manual_async_fn)] // See `serve`: an async fn would keep its arguments twice.
fn run<W: Wire, H: Handler + Send + 'static>(
    mut driver: Driver<W, H>,
    via: Via,
    speaks: Speaks,
    first: Bytes,
    id: ClientId,
    shared: Arc<Shared>,
    count: Disconnect,
) -> impl Future<Output = ()> + Send
where
    Driver<W, H>: Send,
{
    async move {
        shared.live.enrol(id, driver.outbox());
        let begun = driver.begin(&first);
        drop(first);
        let end = driver.run(begun, &shared.config).await;
        finished(&driver, end, via, speaks, id, &shared);
        drop(count);
    }
}

/// Books a connection's end: leaves `Live`, counts a slow consumer, logs the one line.
fn finished<W: Wire, H: Handler>(
    driver: &Driver<W, H>,
    end: End,
    via: Via,
    speaks: Speaks,
    id: ClientId,
    shared: &Shared,
) {
    shared.live.leave(id);
    let stats = shared.hub.stats();
    if end == End::SlowConsumer {
        stats.slow_consumer();
    }
    info!(
        peer = %driver.handler.peer(),
        reason = ?end,
        via = via.as_str(),
        irc = speaks == Speaks::Irc,
        connected = stats.connected().saturating_sub(1),
        registered = stats.registered(),
        "disconnected"
    );
}

/// Completes a TLS handshake, tells what is inside the tunnel, and serves it.
async fn serve_tls(
    tcp: TcpStream,
    prefix: Bytes,
    tls: Arc<crate::tls::Tls>,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    count: Disconnect,
) {
    let peer = peer_of(&tcp);
    let config = tls.config();
    let handshake = tokio::select! {
        r = timeout(TLS_HANDSHAKE, tls::TlsWire::accept(tcp, &prefix, config)) => r,
        _ = shutdown.cancelled() => return,
    };
    let mut wire = match handshake {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            info!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let mut inner = [0u8; SNIFF_BYTES];
    let n = tokio::select! {
        n = read_prefix(&mut wire, &mut inner, shared.config.sniff_wait) => n,
        _ = shutdown.cancelled() => None,
    };
    let Some(n) = n else {
        debug!(%peer, "closed inside TLS before speaking");
        return;
    };
    let first = Bytes::copy_from_slice(&inner[..n]);
    match sniff(&first) {
        Sniff::Http => {
            let io = Rewind::new(first, wire);
            if let Some((wire, early)) = http::serve(io, shared.clone(), peer, &shutdown).await {
                let ws = websocket::WebSocket::new(wire, early);
                hand_off(
                    ws,
                    Via::Wss,
                    Speaks::Natter,
                    Bytes::new(),
                    id,
                    &shared,
                    count,
                );
            }
        }
        Sniff::Irc => {
            debug!(%peer, "speaks IRC over TLS");
            hand_off(wire, Via::Tls, Speaks::Irc, first, id, &shared, count);
        }
        _ => hand_off(wire, Via::Tls, Speaks::Natter, first, id, &shared, count),
    }
}

/// Reads the first bytes, until the sniffer can decide or the client has been silent for
/// `wait`. `None` if the client closed or failed first.
async fn read_prefix<W: Wire>(
    wire: &mut W,
    buf: &mut [u8; SNIFF_BYTES],
    wait: Duration,
) -> Option<usize> {
    if wait.is_zero() {
        return Some(0);
    }
    let deadline = Instant::now() + wait;
    let mut n = 0;
    loop {
        let read = poll_fn(|cx| {
            loop {
                match wire.try_read(&mut buf[n..]) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match wire.poll_read_ready(cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return Poll::Ready(r),
                }
            }
        });
        match timeout_at(deadline, read).await {
            Err(_) => return Some(n),
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(k)) => n += k,
        }
        if n == buf.len() || sniff(&buf[..n]) != Sniff::NeedMore {
            return Some(n);
        }
    }
}

/// The peer's address, for logs.
fn peer_of(stream: &TcpStream) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn peer_of_wire<W: Wire>(wire: &W) -> SocketAddr {
    wire.peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
