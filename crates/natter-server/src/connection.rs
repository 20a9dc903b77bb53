//! The task that owns one client's socket: it reads and frames lines for the session, writes
//! the outbox, and closes the connection cleanly whatever the reason.
//!
//! One task does both directions, driven by readiness (`readable`/`writable` then `try_read`
//! and `try_write_vectored`), so an idle connection holds no buffers and costs one small task:
//! that is what lets one process keep tens of thousands of clients. Output is batched: every
//! line queued since the last write goes out in one vectored write, and TCP_NODELAY is set so
//! nothing waits for Nagle.

use crate::config::Config;
use crate::hub::{ClientId, Hub};
use crate::outbox::Outbox;
use crate::session::{Flow, Session, bye};
use bytes::Bytes;
use natter_proto::limits::MAX_LINE_BYTES;
use natter_proto::sniff::{Sniff, sniff};
use natter_proto::{ByeReason, Frame, LineFramer};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// Routing state.
    pub hub: Arc<Hub>,
    /// Limits and timings.
    pub config: Config,
    /// The greeting, formatted once.
    pub hello: Bytes,
}

/// Bytes read per readiness event before giving other tasks a turn.
const READ_BUDGET: usize = 64 * 1024;
/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// The longest prefix the protocol sniffer looks at.
const SNIFF_BYTES: usize = 16;
/// How long a slow consumer gets to take its `BYE` before the socket is closed.
const SLOW_CONSUMER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a closing connection waits for the peer to close its side, so unread input does
/// not turn our FIN into a reset that destroys the last lines in flight.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a connection ended, for the disconnect log line.
#[derive(Debug, Clone, Copy)]
enum End {
    PeerClosed,
    Close,
    Shutdown,
    SlowConsumer,
    Stalled,
    Error,
}

/// Serves one accepted connection to its end.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    _count: crate::listener::Disconnect,
) {
    let cfg = &shared.config;
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(cfg.keepalive)
        .with_interval(cfg.keepalive / 6)
        .with_retries(3);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);

    let mut prefix = [0u8; SNIFF_BYTES];
    let n = tokio::select! {
        n = read_prefix(&mut stream, &mut prefix, cfg.sniff_wait) => n,
        _ = shutdown.cancelled() => return,
    };
    let Some(n) = n else {
        debug!(%peer, "closed before speaking");
        return;
    };
    match sniff(&prefix[..n]) {
        Sniff::Line | Sniff::NeedMore => {}
        other => {
            debug!(%peer, kind = ?other, "not served on this listener yet; speaking the line protocol")
        }
    }

    let outbox = Arc::new(Outbox::new(cfg.outbox_bytes));
    outbox.push(shared.hello.clone());
    let mut conn = Connection {
        session: Session::new(id, peer, outbox.clone(), shared.hub.clone()),
        framer: LineFramer::new(MAX_LINE_BYTES),
        stream,
        outbox,
        pending: VecDeque::new(),
        offset: 0,
    };
    let end = match conn.feed(&prefix[..n]) {
        Flow::Close => End::Close,
        Flow::Continue => conn.run(cfg, &shutdown).await,
    };
    conn.finish(end, cfg).await;
    let hub = &shared.hub;
    info!(
        %peer,
        reason = ?end,
        connected = hub.stats().connected().saturating_sub(1),
        registered = hub.stats().registered(),
        "disconnected"
    );
}

/// Reads the first bytes, until the sniffer can decide or the client has been silent for
/// `wait`. `None` if the client closed or failed first.
async fn read_prefix(
    stream: &mut TcpStream,
    buf: &mut [u8; SNIFF_BYTES],
    wait: std::time::Duration,
) -> Option<usize> {
    let deadline = Instant::now() + wait;
    let mut n = 0;
    loop {
        match timeout_at(deadline, stream.read(&mut buf[n..])).await {
            Err(_) => return Some(n),
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(k)) => n += k,
        }
        if n == buf.len() || sniff(&buf[..n]) != Sniff::NeedMore {
            return Some(n);
        }
    }
}

struct Connection {
    session: Session,
    framer: LineFramer,
    stream: TcpStream,
    outbox: Arc<Outbox>,
    /// Lines taken from the outbox and not yet fully written, oldest first.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending.front()` already written.
    offset: usize,
}

impl Connection {
    /// Frames `input` and hands each line to the session.
    fn feed(&mut self, input: &[u8]) -> Flow {
        let session = &mut self.session;
        let flow = self.framer.feed(input, |frame| match frame {
            Frame::Line(line) => match session.on_line(line) {
                Flow::Continue => ControlFlow::Continue(()),
                Flow::Close => ControlFlow::Break(()),
            },
            Frame::TooLong => {
                session.on_too_long();
                ControlFlow::Continue(())
            }
        });
        match flow {
            ControlFlow::Continue(()) => Flow::Continue,
            ControlFlow::Break(()) => Flow::Close,
        }
    }

    /// The main loop, until the client leaves or must go.
    async fn run(&mut self, cfg: &Config, shutdown: &CancellationToken) -> End {
        let mut last_progress = Instant::now();
        loop {
            // Lines move from the outbox only once the previous batch is fully written, so
            // the outbox's bound also bounds what this task holds: at most twice the limit.
            let overflowed = if self.pending.is_empty() {
                self.outbox.drain_into(&mut self.pending)
            } else {
                self.outbox.overflowed()
            };
            if overflowed {
                return End::SlowConsumer;
            }
            match self.write_some() {
                Ok(true) => last_progress = Instant::now(),
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, "write failed");
                    return End::Error;
                }
            }
            let writing = !self.pending.is_empty();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                r = self.stream.writable(), if writing => {
                    if r.is_err() {
                        return End::Error;
                    }
                }
                // Also while writing: an overflow must be noticed even if the peer never
                // makes the socket writable again.
                _ = self.outbox.ready() => {}
                r = self.stream.readable() => {
                    if r.is_err() {
                        return End::Error;
                    }
                    match self.read_some() {
                        Ok(Some(Flow::Continue)) => {}
                        Ok(Some(Flow::Close)) => return End::Close,
                        Ok(None) => return End::PeerClosed,
                        Err(e) => {
                            debug!(error = %e, "read failed");
                            return End::Error;
                        }
                    }
                }
                _ = sleep_until(last_progress + cfg.write_stall), if writing => {
                    return End::Stalled;
                }
            }
        }
    }

    /// Reads what is available (up to a budget) and processes every complete line.
    /// `Ok(None)` at end of input.
    fn read_some(&mut self) -> io::Result<Option<Flow>> {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < READ_BUDGET {
            match self.stream.try_read(&mut buf) {
                Ok(0) => {
                    if let Some(line) = self.framer.take_partial()
                        && self.session.on_line(&line) == Flow::Close
                    {
                        return Ok(Some(Flow::Close));
                    }
                    return Ok(None);
                }
                Ok(n) => {
                    total += n;
                    if self.feed(&buf[..n]) == Flow::Close {
                        return Ok(Some(Flow::Close));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Flow::Continue))
    }

    /// Writes as much of `pending` as the socket takes now; whether anything was written.
    fn write_some(&mut self) -> io::Result<bool> {
        let mut progressed = false;
        while !self.pending.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (i, b) in self.pending.iter().take(MAX_IOV).enumerate() {
                iov[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                count += 1;
            }
            match self.stream.try_write_vectored(&iov[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    progressed = true;
                    while n > 0 {
                        let left = self.pending[0].len() - self.offset;
                        if n >= left {
                            n -= left;
                            self.pending.pop_front();
                            self.offset = 0;
                        } else {
                            self.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progressed)
    }

    /// Says goodbye as `end` requires, leaves the hub, flushes within a deadline and closes.
    async fn finish(&mut self, end: End, cfg: &Config) {
        // Leave first, so that nobody else routes to a client that is going.
        self.session.leave();
        let grace = match end {
            End::Close => cfg.shutdown_grace,
            End::PeerClosed => cfg.shutdown_grace,
            End::Shutdown => {
                self.outbox.push_final(bye(ByeReason::Shutdown));
                cfg.shutdown_grace
            }
            End::SlowConsumer => {
                self.session_stats().slow_consumer();
                warn!(peer = %self.session_peer(), "slow consumer: outgoing queue full; disconnecting");
                // Keep the line being written whole, then the BYE; the backlog is gone.
                self.pending.truncate(if self.offset > 0 { 1 } else { 0 });
                self.outbox.push_final(bye(ByeReason::SlowConsumer));
                SLOW_CONSUMER_GRACE
            }
            End::Stalled => {
                warn!(peer = %self.session_peer(), "peer stopped taking output; disconnecting");
                return;
            }
            End::Error => return,
        };
        let flushed = timeout(grace, self.flush()).await;
        if matches!(flushed, Ok(Ok(()))) && !matches!(end, End::PeerClosed) {
            let _ = self.linger().await;
        }
    }

    /// Writes everything queued, including lines pushed while closing.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.pending.is_empty() {
                self.outbox.drain_into(&mut self.pending);
            }
            self.write_some()?;
            if self.pending.is_empty() {
                return Ok(());
            }
            self.stream.writable().await?;
        }
    }

    /// Half-closes our side and waits briefly for the peer to close theirs.
    async fn linger(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let _ = timeout(LINGER, async {
            while self.stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
        Ok(())
    }

    fn session_stats(&self) -> &crate::stats::Stats {
        self.session.hub().stats()
    }

    fn session_peer(&self) -> SocketAddr {
        self.session.peer()
    }
}
