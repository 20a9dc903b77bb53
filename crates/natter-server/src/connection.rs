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
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep_until, timeout, timeout_at};
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
    /// Native connections, for shutdown.
    pub live: Live,
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
    /// Every line read so far has been handled; anything gathered across lines goes out now.
    fn end_of_input(&mut self) {}
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
    /// Polls for it (bounded in time) and, once it came, finishes what the line began.
    fn poll_resume(&mut self, _cx: &mut Context<'_>) -> Poll<Flow> {
        Poll::Ready(Flow::Continue)
    }
}

/// Rounds of work one poll may do before the task yields to others.
const MAX_TURNS: usize = 32;
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
///
/// A plain function returning an `async move` block rather than an `async fn`, whose state
/// would hold its arguments twice: this future is what every connected client costs.
#[allow(clippy::manual_async_fn)]
pub fn serve(
    mut stream: TcpStream,
    id: ClientId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    assume: Assume,
    count: crate::listener::Disconnect,
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
        let first = Box::pin(async {
            tokio::select! {
                n = read_prefix(&mut stream, &mut prefix, wait) => n,
                _ = shutdown.cancelled() => None,
            }
        });
        let n = first.await;
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
        let peer = peer_of(&stream);
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
            Box::pin(async move {
                crate::web::serve(stream, state).await;
                debug!(%peer, "HTTP connection closed");
            })
            .await;
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
        let (end, peer) = if kind == Sniff::Irc {
            debug!(%peer, "speaks IRC");
            let session = IrcSession::new(
                id,
                peer,
                outbox.clone(),
                hub.clone(),
                shared.irc.clone(),
                shared.policy.clone(),
            );
            let end = Box::pin(
                Connection::new(
                    session,
                    stream,
                    outbox,
                    hub.stats().clone(),
                    shared.policy.flood.as_ref(),
                )
                .serve(&prefix[..n], cfg, &shutdown),
            )
            .await;
            (end, peer)
        } else {
            if !matches!(kind, Sniff::Line | Sniff::NeedMore) {
                debug!(%peer, ?kind, "not served on this listener; speaking the line protocol");
            }
            outbox.push(shared.hello.clone());
            let session =
                Session::new(id, peer, outbox.clone(), hub.clone(), shared.policy.clone());
            let mut conn = Connection::new(
                session,
                stream,
                outbox,
                hub.stats().clone(),
                shared.policy.flood.as_ref(),
            );
            // Run here rather than through `Connection::serve`: an `async fn` keeps a second
            // copy of its arguments, and this is the state every idle client's task holds.
            // Shutdown reaches it through its outbox (see `Live`), not a wait future.
            shared.live.enrol(id, &conn.outbox, &shutdown);
            let end = match conn.feed(&prefix[..n]) {
                Flow::Close => End::Close,
                Flow::Continue => poll_fn(|cx| conn.poll_run(cx, cfg)).await,
            };
            Box::pin(conn.finish(end, cfg)).await;
            shared.live.leave(id);
            (end, conn.handler.peer())
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
        // The connection counts until here.
        drop(count);
    }
}

/// The peer's address, for logs.
fn peer_of(stream: &TcpStream) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Native connections by identity, so that a shutdown can reach each through its outbox
/// instead of every idle connection holding a wait future for it.
#[derive(Debug, Default)]
pub struct Live {
    outboxes: std::sync::Mutex<std::collections::HashMap<ClientId, std::sync::Weak<Outbox>>>,
}

impl Live {
    /// Adds a connection; tells it at once if the server is already shutting down.
    fn enrol(&self, id: ClientId, outbox: &Arc<Outbox>, shutdown: &CancellationToken) {
        self.lock().insert(id, Arc::downgrade(outbox));
        // After the insert: a shutdown that began before it is seen here, one that begins
        // after it finds the outbox in the map.
        if shutdown.is_cancelled() {
            outbox.shut_down();
        }
    }

    /// Removes a connection that ended.
    fn leave(&self, id: ClientId) {
        self.lock().remove(&id);
    }

    /// Tells every connection that the server is shutting down.
    pub fn shut_down_all(&self) {
        let outboxes: Vec<_> = self.lock().values().filter_map(|w| w.upgrade()).collect();
        for o in outboxes {
            o.shut_down();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<ClientId, std::sync::Weak<Outbox>>>
    {
        self.outboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
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
                handler.end_of_input();
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
                flow = poll_fn(|cx| handler.poll_resume(cx)).await;
            }
            if flow == Flow::Close {
                break 'session End::Close;
            }
        }
        handler.end_of_input();
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
    /// Flood control, unless it is off; boxed to keep connections without it small.
    throttle: Option<Box<Throttle>>,
    /// When output last made progress, for the write stall.
    last_progress: Instant,
    /// The one timer (deadlines, write stall, flood control), only while one is due.
    timer: Option<Pin<Box<Sleep>>>,
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
            throttle: flood.map(|f| Box::new(Throttle::new(f, Instant::now()))),
            last_progress: Instant::now(),
            timer: None,
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
            Flow::Continue => {
                let mut cancelled = pin!(shutdown.cancelled());
                poll_fn(|cx| {
                    if cancelled.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(End::Shutdown);
                    }
                    self.poll_run(cx, cfg)
                })
                .await
            }
        };
        // Boxed: closing needs buffers and timers that a running connection should not carry.
        Box::pin(self.finish(end, cfg)).await;
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
        if !rest.is_empty() {
            self.held.extend_from_slice(rest);
        }
        self.handler.end_of_input();
        Flow::Continue
    }

    /// Goes on with lines that flood control held back.
    fn release_held(&mut self) -> Flow {
        let held = std::mem::take(&mut self.held);
        let flow = self.feed(&held);
        if self.held.is_empty() {
            // Keep nothing allocated once the backlog is gone.
            self.held = Vec::new();
            if let Some(t) = &mut self.throttle {
                t.backlog_cleared();
            }
        }
        flow
    }

    /// The main loop, until the client leaves or must go.
    ///
    /// Written as a poll function rather than a `select!` so that a connection waiting for
    /// input holds no wait futures: readiness is polled on the socket and the outbox directly,
    /// and the one timer exists only while there is a deadline. That keeps an idle client's
    /// task small (see BENCHMARKS.md, idle memory).
    fn poll_run(&mut self, cx: &mut Context<'_>, cfg: &Config) -> Poll<End> {
        for _ in 0..MAX_TURNS {
            if self.outbox.is_shut_down() {
                return Poll::Ready(End::Shutdown);
            }
            // Lines move from the outbox only once the previous batch is fully written, so
            // the outbox's bound also bounds what this task holds: at most twice the limit.
            let overflowed = if self.pending.is_empty() {
                self.outbox.drain_into(&mut self.pending)
            } else {
                self.outbox.overflowed()
            };
            if overflowed {
                return Poll::Ready(End::SlowConsumer);
            }
            match self.write_some() {
                Ok(true) => self.last_progress = Instant::now(),
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, "write failed");
                    return Poll::Ready(End::Error);
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
                return Poll::Ready(End::Flood);
            }
            if writing {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Error),
                    Poll::Pending => {}
                }
            }
            // While writing, only an overflow matters: new lines wait for the batch to go.
            if self.outbox.poll_ready(cx, !writing).is_ready() {
                continue;
            }
            // A session waiting for the cluster takes no lines meanwhile; its answer wakes
            // this task.
            if self.handler.waiting() {
                match self.handler.poll_resume(cx) {
                    Poll::Ready(Flow::Close) => return Poll::Ready(End::Close),
                    Poll::Ready(Flow::Continue) => {
                        if !self.held.is_empty() && self.release_held() == Flow::Close {
                            return Poll::Ready(End::Close);
                        }
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            let can_read = self.held.is_empty()
                && !self.handler.waiting()
                && self
                    .throttle
                    .as_mut()
                    .is_none_or(|t| t.read_allowance(now) > 0);
            if can_read {
                match self.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        match self.read_some() {
                            Ok(Some(Flow::Continue)) => {}
                            Ok(Some(Flow::Close)) => return Poll::Ready(End::Close),
                            Ok(None) => return Poll::Ready(End::PeerClosed),
                            Err(e) => {
                                debug!(error = %e, "read failed");
                                return Poll::Ready(End::Error);
                            }
                        }
                        continue;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Error),
                    Poll::Pending => {}
                }
            }

            let mut deadline = self.handler.deadline();
            let stall = writing.then(|| self.last_progress + cfg.write_stall);
            if let Some(t) = &self.throttle
                && !can_read
            {
                let resume = t.ready_at();
                let resume = t.grace_ends().map_or(resume, |g| resume.min(g));
                deadline = Some(deadline.map_or(resume, |d| d.min(resume)));
            }
            let Some(wake_at) = [deadline, stall].into_iter().flatten().min() else {
                // Idle: give back the timer and the write queue, an idle connection keeps
                // neither (the queue is allocated again by the next line, which is cheap
                // beside the wake-up that delivers it).
                self.timer = None;
                if !writing {
                    self.pending = VecDeque::new();
                }
                return Poll::Pending;
            };
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(sleep_until(wake_at)));
            if timer.deadline() != wake_at {
                timer.as_mut().reset(wake_at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if stall.is_some_and(|s| Instant::now() >= s) {
                return Poll::Ready(End::Stalled);
            }
            if deadline.is_some() {
                if !self.held.is_empty() && self.release_held() == Flow::Close {
                    return Poll::Ready(End::Close);
                }
                if self.handler.on_deadline() == Flow::Close {
                    return Poll::Ready(End::Close);
                }
            }
        }
        // Busy for many turns in a row: let other tasks run, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(t) = &mut self.throttle {
                        t.socket_empty(!self.held.is_empty());
                    }
                    break;
                }
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
