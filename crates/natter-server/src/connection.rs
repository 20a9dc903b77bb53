//! The task that owns one client's socket: it works out which protocol the client speaks,
//! reads and frames lines for that protocol's session, writes the outbox, and closes the
//! connection cleanly whatever the reason.
//!
//! One task does both directions, driven by readiness (`readable`/`writable` then `try_read`
//! and `try_write_vectored`), so an idle connection holds no buffers and costs one small task:
//! that is what lets one process keep tens of thousands of clients. Output is batched: every
//! line queued since the last write goes out in one vectored write, and TCP_NODELAY is set so
//! nothing waits for Nagle.

use crate::config::Config;
use crate::hub::{ClientId, Hub};
use crate::irc::IrcSession;
use crate::outbox::Outbox;
use crate::session::{Flow, Session};
use crate::throttle::Throttle;
use bytes::Bytes;
use natter_proto::sniff::{Sniff, sniff};
use natter_proto::{ByeReason, Frame, LineFramer};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// Routing state.
    pub hub: Arc<Hub>,
    /// Limits and timings.
    pub config: Config,
    /// The native greeting, formatted once.
    pub hello: Bytes,
    /// The IRC settings, shared by every IRC session.
    pub irc: Arc<crate::config::IrcConfig>,
    /// The source of connection identities.
    pub ids: AtomicU64,
    /// Every connection's task, so that a shutdown can wait for them all.
    pub tracker: TaskTracker,
    /// Per-address admission.
    pub admission: Arc<crate::listener::Admission>,
    /// Admission, password, timeouts and flood control, shared by every session.
    pub policy: Arc<crate::config::Policy>,
}

/// What a protocol session gives the connection task: lines in, flow out, and the lines that
/// end a connection in that protocol's words.
pub trait Handler {
    /// Handles one complete line (without its line ending).
    fn on_line(&mut self, line: &[u8]) -> Flow;
    /// Reports a line that was longer than the framer's limit.
    fn on_too_long(&mut self);
    /// When the session next needs [`Handler::on_deadline`], if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Called at the deadline (pings, registration timeouts).
    fn on_deadline(&mut self) -> Flow;
    /// Leaves the hub; called once when the connection ends.
    fn leave(&mut self, reason: &str);
    /// The last line for a client the server disconnects, in this protocol's words.
    fn goodbye(&self, reason: ByeReason) -> Bytes;
    /// The longest line the framer accepts.
    fn max_line(&self) -> usize;
    /// Whether the session waits for something (a cluster's answer about a name) before it
    /// may take another line; the connection then holds further input back.
    fn waiting(&self) -> bool {
        false
    }
    /// Waits for it, bounded in time, and finishes what the line began.
    fn resume(&mut self) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }
}

/// Queue capacity a connection keeps once its output is written; more is given back.
const KEEP_QUEUE: usize = 16;
/// Bytes read per readiness event before giving other tasks a turn.
const READ_BUDGET: usize = 64 * 1024;
/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// The longest prefix the protocol sniffer looks at.
const SNIFF_BYTES: usize = 16;
/// How long a slow consumer gets to take its last line before the socket is closed.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(1);
/// How long a closing connection waits for the peer to close its side, so unread input does
/// not turn our FIN into a reset that destroys the last lines in flight.
const LINGER: Duration = Duration::from_secs(2);

/// Why a connection ended, for the disconnect log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    PeerClosed,
    Close,
    Shutdown,
    SlowConsumer,
    Stalled,
    Flood,
    Error,
}

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

/// Serves one accepted connection to its end.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    assume: Assume,
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
    let wait = match assume {
        // IRC clients speak first; their first bytes are checked so that a browser made to
        // POST to an IRC port (cross-protocol request forgery) is not served as IRC.
        Assume::Line | Assume::Irc => cfg.sniff_wait,
        // Dedicated ports need no telling apart.
        Assume::Http | Assume::Tls => Duration::ZERO,
    };
    let n = tokio::select! {
        n = read_prefix(&mut stream, &mut prefix, wait) => n,
        _ = shutdown.cancelled() => return,
    };
    let Some(n) = n else {
        debug!(%peer, "closed before speaking");
        return;
    };
    let kind = match (assume, sniff(&prefix[..n])) {
        (Assume::Irc, Sniff::Http | Sniff::Tls) => {
            info!(%peer, "HTTP or TLS on the IRC listener; closing");
            let _ = stream.try_write(b"ERROR :Closing Link: (this port speaks IRC only)\r\n");
            return;
        }
        (Assume::Irc, _) => Sniff::Irc,
        (Assume::Http, _) => Sniff::Http,
        (Assume::Tls, _) => Sniff::Tls,
        (Assume::Line, other) => other,
    };
    if kind == Sniff::Http {
        let stream = crate::rewind::Rewind::new(Bytes::copy_from_slice(&prefix[..n]), stream);
        let state = crate::web::WebState {
            shared: shared.clone(),
            peer,
            shutdown,
        };
        // Boxed, like every path but the native one: a task's size is that of its largest
        // state, and the hyper, TLS and IRC states would otherwise make every connection pay
        // for them.
        Box::pin(crate::web::serve(stream, state)).await;
        debug!(%peer, "HTTP connection closed");
        return;
    }
    if kind == Sniff::Tls {
        let Some(tls) = cfg.tls.clone() else {
            info!(%peer, "TLS ClientHello on a listener without TLS; closing");
            return;
        };
        let stream = crate::rewind::Rewind::new(Bytes::copy_from_slice(&prefix[..n]), stream);
        Box::pin(tls_session(tls, stream, peer, id, &shared, &shutdown)).await;
        return;
    }
    let outbox = Arc::new(Outbox::new(cfg.outbox_bytes));
    let hub = shared.hub.clone();
    let end = if kind == Sniff::Irc {
        debug!(%peer, "speaks IRC");
        let session = IrcSession::new(
            id,
            peer,
            outbox.clone(),
            hub.clone(),
            shared.irc.clone(),
            shared.policy.clone(),
        );
        Box::pin(
            Connection::new(
                session,
                stream,
                outbox,
                hub.stats().clone(),
                shared.policy.flood.as_ref(),
            )
            .serve(&prefix[..n], cfg, &shutdown),
        )
        .await
    } else {
        if !matches!(kind, Sniff::Line | Sniff::NeedMore) {
            debug!(%peer, ?kind, "not served on this listener; speaking the line protocol");
        }
        outbox.push(shared.hello.clone());
        let session = Session::new(id, peer, outbox.clone(), hub.clone(), shared.policy.clone());
        Connection::new(
            session,
            stream,
            outbox,
            hub.stats().clone(),
            shared.policy.flood.as_ref(),
        )
        .serve(&prefix[..n], cfg, &shutdown)
        .await
    };
    if end == End::SlowConsumer {
        hub.stats().slow_consumer();
    }
    info!(
        %peer,
        reason = ?end,
        connected = hub.stats().connected().saturating_sub(1),
        registered = hub.stats().registered(),
        "disconnected"
    );
}

/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Completes the TLS handshake and serves what is inside.
async fn tls_session(
    tls: Arc<crate::tls::Tls>,
    stream: crate::rewind::Rewind<TcpStream>,
    peer: SocketAddr,
    id: ClientId,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) {
    let handshake = timeout(TLS_HANDSHAKE, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        r = handshake => r,
        _ = shutdown.cancelled() => return,
    };
    match stream {
        Ok(Ok(s)) => serve_tls(s, peer, id, shared, shutdown).await,
        Ok(Err(e)) => info!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => info!(%peer, "TLS handshake timed out"),
    }
}

/// Serves a connection inside TLS: sniffs again, then HTTP, IRC or the line protocol.
async fn serve_tls<S>(
    mut stream: S,
    peer: SocketAddr,
    id: ClientId,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.config;
    let mut prefix = [0u8; SNIFF_BYTES];
    let mut n = 0;
    let deadline = Instant::now() + cfg.sniff_wait;
    while n < SNIFF_BYTES && sniff(&prefix[..n]) == Sniff::NeedMore {
        match timeout_at(deadline, stream.read(&mut prefix[n..])).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(k)) => n += k,
        }
    }
    let hub = shared.hub.clone();
    let outbox = Arc::new(Outbox::new(cfg.outbox_bytes));
    let end = match sniff(&prefix[..n]) {
        Sniff::Http => {
            let stream = crate::rewind::Rewind::new(Bytes::copy_from_slice(&prefix[..n]), stream);
            let state = crate::web::WebState {
                shared: shared.clone(),
                peer,
                shutdown: shutdown.clone(),
            };
            crate::web::serve(stream, state).await;
            return;
        }
        Sniff::Irc => {
            debug!(%peer, "speaks IRC over TLS");
            let session = IrcSession::new(
                id,
                peer,
                outbox.clone(),
                hub.clone(),
                shared.irc.clone(),
                shared.policy.clone(),
            );
            drive(stream, &prefix[..n], session, outbox, shared, shutdown).await
        }
        _ => {
            outbox.push(shared.hello.clone());
            let session =
                Session::new(id, peer, outbox.clone(), hub.clone(), shared.policy.clone());
            drive(stream, &prefix[..n], session, outbox, shared, shutdown).await
        }
    };
    info!(
        %peer,
        reason = ?end,
        tls = true,
        connected = hub.stats().connected().saturating_sub(1),
        registered = hub.stats().registered(),
        "disconnected"
    );
}

/// Runs a session over any byte stream (TLS): a writer task drains the outbox while this
/// task reads, frames and handles lines. The readiness-driven [`Connection`] cannot be used
/// because a TLS stream offers only `AsyncRead` and `AsyncWrite`.
async fn drive<S, H>(
    stream: S,
    prefix: &[u8],
    mut handler: H,
    outbox: Arc<Outbox>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> End
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    use tokio::io::AsyncWriteExt;
    let cfg = &shared.config;
    let stats = shared.hub.stats().clone();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let done = CancellationToken::new();
    let mut writer = {
        let (outbox, done, stall) = (outbox.clone(), done.clone(), cfg.write_stall);
        tokio::spawn(async move {
            let mut batch = VecDeque::new();
            loop {
                let last = tokio::select! {
                    _ = outbox.ready() => false,
                    _ = done.cancelled() => true,
                };
                let overflowed = outbox.drain_into(&mut batch);
                for b in batch.drain(..) {
                    match timeout(stall, wr.write_all(&b)).await {
                        Ok(Ok(())) => stats.bytes_out(b.len()),
                        Ok(Err(_)) => return End::Error,
                        Err(_) => return End::Stalled,
                    }
                }
                if timeout(stall, wr.flush()).await.is_err() {
                    return End::Stalled;
                }
                if last {
                    let _ = wr.shutdown().await;
                    return End::Close;
                }
                if overflowed {
                    return End::SlowConsumer;
                }
            }
        })
    };
    let mut framer = LineFramer::new(handler.max_line());
    let mut throttle = shared
        .policy
        .flood
        .as_ref()
        .map(|f| Throttle::new(f, Instant::now()));
    let mut buf = vec![0u8; 8 * 1024];
    let mut input = prefix.to_vec();
    let end = 'session: loop {
        let mut rest: &[u8] = &input;
        while let Some(frame) = framer.next(&mut rest) {
            if let Some(t) = &mut throttle
                && !t.command(Instant::now())
            {
                if t.flooding(Instant::now()) {
                    break 'session End::Flood;
                }
                sleep_until(t.ready_at()).await;
                t.command(Instant::now());
            }
            let mut flow = match frame {
                Frame::Line(line) => handler.on_line(line),
                Frame::TooLong => {
                    handler.on_too_long();
                    Flow::Continue
                }
            };
            if flow == Flow::Continue && handler.waiting() {
                flow = handler.resume().await;
            }
            if flow == Flow::Close {
                break 'session End::Close;
            }
        }
        // Bytes are limited by reading no more than the allowance; a read that does not fill
        // what was allowed found the socket drained, which is when a client is relieved.
        let mut allowed = buf.len();
        if let Some(t) = &mut throttle {
            let now = Instant::now();
            allowed = t.read_allowance(now).min(buf.len());
            if allowed == 0 {
                if t.flooding(now) {
                    break End::Flood;
                }
                sleep_until(t.ready_at()).await;
                allowed = t.read_allowance(Instant::now()).min(buf.len());
            }
        }
        let deadline = handler.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            w = &mut writer => break w.unwrap_or(End::Error),
            r = rd.read(&mut buf[..allowed.max(1)]) => match r {
                Ok(0) => break End::PeerClosed,
                Ok(k) => {
                    if let Some(t) = &mut throttle {
                        t.read(k, Instant::now());
                        if k < allowed {
                            t.relieved();
                        }
                    }
                    input = buf[..k].to_vec();
                }
                Err(_) => break End::Error,
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                input.clear();
                if handler.on_deadline() == Flow::Close {
                    break End::Close;
                }
            }
        }
    };
    handler.leave(match end {
        End::Close => "quit",
        End::Shutdown => "server shutting down",
        End::SlowConsumer => "too slow to read",
        End::Flood => "flooding",
        _ => "connection closed",
    });
    match end {
        End::Shutdown => outbox.push_final(handler.goodbye(ByeReason::Shutdown)),
        End::Flood => outbox.push_final(handler.goodbye(ByeReason::Flood)),
        End::SlowConsumer => {
            shared.hub.stats().slow_consumer();
            outbox.push_final(handler.goodbye(ByeReason::SlowConsumer));
        }
        _ => {}
    }
    done.cancel();
    if !writer.is_finished() {
        let _ = timeout(cfg.shutdown_grace, &mut writer).await;
    }
    writer.abort();
    end
}

/// Reads the first bytes, until the sniffer can decide or the client has been silent for
/// `wait`. `None` if the client closed or failed first.
async fn read_prefix(
    stream: &mut TcpStream,
    buf: &mut [u8; SNIFF_BYTES],
    wait: Duration,
) -> Option<usize> {
    if wait.is_zero() {
        return Some(0);
    }
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

struct Connection<H> {
    handler: H,
    /// Where written bytes are counted.
    stats: Arc<crate::stats::Stats>,
    framer: LineFramer,
    stream: TcpStream,
    outbox: Arc<Outbox>,
    /// Lines taken from the outbox and not yet fully written, oldest first.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending.front()` already written.
    offset: usize,
    /// Bytes read but held back by flood control; empty (and unallocated) otherwise.
    held: Vec<u8>,
    /// Flood control, unless it is off.
    throttle: Option<Throttle>,
}

impl<H: Handler> Connection<H> {
    fn new(
        handler: H,
        stream: TcpStream,
        outbox: Arc<Outbox>,
        stats: Arc<crate::stats::Stats>,
        flood: Option<&crate::throttle::FloodLimits>,
    ) -> Self {
        Self {
            stats,
            held: Vec::new(),
            throttle: flood.map(|f| Throttle::new(f, Instant::now())),
            framer: LineFramer::new(handler.max_line()),
            handler,
            stream,
            outbox,
            pending: VecDeque::new(),
            offset: 0,
        }
    }

    /// Feeds what the sniffer read, runs the connection, then closes it.
    async fn serve(mut self, prefix: &[u8], cfg: &Config, shutdown: &CancellationToken) -> End {
        let end = match self.feed(prefix) {
            Flow::Close => End::Close,
            Flow::Continue => self.run(cfg, shutdown).await,
        };
        self.finish(end, cfg).await;
        end
    }

    /// Frames `input` and hands each line to the handler.
    /// Frames `input` and hands each line to the handler, as far as flood control allows;
    /// whatever it holds back is kept in `held` for later.
    fn feed(&mut self, input: &[u8]) -> Flow {
        let mut rest = input;
        let now = Instant::now();
        loop {
            if self.handler.waiting() {
                break;
            }
            if let Some(t) = &mut self.throttle
                && !t.command_ready(now)
            {
                t.command(now);
                break;
            }
            match self.framer.next(&mut rest) {
                None => break,
                Some(frame) => {
                    if let Some(t) = &mut self.throttle {
                        t.command(now);
                    }
                    match frame {
                        Frame::Line(line) => {
                            if self.handler.on_line(line) == Flow::Close {
                                return Flow::Close;
                            }
                        }
                        Frame::TooLong => self.handler.on_too_long(),
                    }
                }
            }
        }
        if rest.is_empty() {
            // Known gap: this also relieves a client whose socket still holds a backlog, so a
            // pure byte flood is slowed to its rate but not disconnected (SECURITY.md).
            if let Some(t) = &mut self.throttle {
                t.relieved();
            }
        } else {
            self.held.extend_from_slice(rest);
        }
        Flow::Continue
    }

    /// Goes on with lines that flood control held back.
    fn release_held(&mut self) -> Flow {
        let held = std::mem::take(&mut self.held);
        let flow = self.feed(&held);
        if self.held.is_empty() {
            // Keep nothing allocated once the backlog is gone.
            self.held = Vec::new();
        }
        flow
    }

    /// The main loop, until the client leaves or must go.
    async fn run(&mut self, cfg: &Config, shutdown: &CancellationToken) -> End {
        let mut last_progress = Instant::now();
        loop {
            if self.handler.waiting() {
                if self.handler.resume().await == Flow::Close {
                    return End::Close;
                }
                if !self.held.is_empty() && self.release_held() == Flow::Close {
                    return End::Close;
                }
                continue;
            }
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
            if self.pending.is_empty() && self.pending.capacity() > KEEP_QUEUE {
                // A burst (thousands of ONLINE lines while a crowd arrives) must not leave
                // its queue's capacity behind in every idle connection.
                self.pending = VecDeque::new();
            }
            let writing = !self.pending.is_empty();
            let now = Instant::now();
            if let Some(t) = &self.throttle
                && t.flooding(now)
            {
                return End::Flood;
            }
            let can_read = self.held.is_empty()
                && self
                    .throttle
                    .as_mut()
                    .is_none_or(|t| t.read_allowance(now) > 0);

            let mut deadline = self.handler.deadline();
            if let Some(t) = &self.throttle
                && !can_read
            {
                let resume = t.ready_at();
                let resume = t.grace_ends().map_or(resume, |g| resume.min(g));
                deadline = Some(deadline.map_or(resume, |d| d.min(resume)));
            }
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
                r = self.stream.readable(), if can_read => {
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
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    if !self.held.is_empty() && self.release_held() == Flow::Close {
                        return End::Close;
                    }
                    if self.handler.on_deadline() == Flow::Close {
                        return End::Close;
                    }
                }
            }
        }
    }

    /// Reads what is available (up to a budget) and processes every complete line.
    /// `Ok(None)` at end of input.
    fn read_some(&mut self) -> io::Result<Option<Flow>> {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < READ_BUDGET && self.held.is_empty() && !self.handler.waiting() {
            let now = Instant::now();
            let allowed = match &mut self.throttle {
                Some(t) => t.read_allowance(now).min(buf.len()),
                None => buf.len(),
            };
            if allowed == 0 {
                break;
            }
            match self.stream.try_read(&mut buf[..allowed]) {
                Ok(0) => {
                    if let Some(line) = self.framer.take_partial()
                        && self.handler.on_line(&line) == Flow::Close
                    {
                        return Ok(Some(Flow::Close));
                    }
                    return Ok(None);
                }
                Ok(n) => {
                    total += n;
                    if let Some(t) = &mut self.throttle {
                        t.read(n, now);
                    }
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
                    self.stats.bytes_out(n);
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
        let reason = match end {
            End::PeerClosed | End::Error => "connection closed",
            End::Close => "quit",
            End::Shutdown => "server shutting down",
            End::SlowConsumer => "too slow to read",
            End::Stalled => "stopped reading",
            End::Flood => "flooding",
        };
        self.handler.leave(reason);
        let grace = match end {
            End::Close | End::PeerClosed => cfg.shutdown_grace,
            End::Shutdown => {
                self.outbox
                    .push_final(self.handler.goodbye(ByeReason::Shutdown));
                cfg.shutdown_grace
            }
            End::Flood => {
                warn!(peer = ?self.stream.peer_addr().ok(), "flooding: disconnecting");
                self.outbox
                    .push_final(self.handler.goodbye(ByeReason::Flood));
                SLOW_CONSUMER_GRACE
            }
            End::SlowConsumer => {
                warn!(peer = ?self.stream.peer_addr().ok(), "slow consumer: outgoing queue full; disconnecting");
                // Keep the line being written whole, then the last line; the backlog is gone.
                self.pending.truncate(if self.offset > 0 { 1 } else { 0 });
                self.outbox
                    .push_final(self.handler.goodbye(ByeReason::SlowConsumer));
                SLOW_CONSUMER_GRACE
            }
            End::Stalled => {
                warn!(peer = ?self.stream.peer_addr().ok(), "peer stopped taking output; disconnecting");
                return;
            }
            End::Error => return,
        };
        let flushed = timeout(grace, self.flush()).await;
        if matches!(flushed, Ok(Ok(()))) && end != End::PeerClosed {
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
}
