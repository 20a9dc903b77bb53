//! The one connection loop: every session, on every wire, runs here.
//!
//! A [`Driver`] owns what a connection needs between its bytes and its session: the line
//! framer and its limit, flood control and the input it holds back, the session's deadlines,
//! the write stall, the outbox's drain and the slow-consumer policy, shutdown, the goodbye
//! line, and the one log line saying why the connection ended. The [`Wire`] says only how
//! bytes move (plain TCP, TLS, WebSocket over either), and the [`Handler`] what they mean
//! (natter's line protocol, IRC), so each rule is written once and holds for every client.
//!
//! The loop is a hand-written poll function rather than a `select!`: a connection waiting
//! for input then holds no wait futures, only what the driver holds. Readiness is polled on
//! the wire and the outbox directly, and the one timer exists only while a deadline is due.
//! That keeps an idle client's task small (see ARCHITECTURE.md, Memory).

use super::alarm::{Alarms, FAR};
use super::wire::Wire;
use crate::config::Config;
use crate::handler::{End, Flow, Handler};
use crate::outbox::{Outbox, line_cost};
use crate::stats::Stats;
use crate::throttle::{FloodLimits, Throttle};
use bytes::Bytes;
use natter_proto::{Frame, LineFramer};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tracing::{debug, warn};

/// Rounds of work one poll may do before the task yields to others.
const MAX_TURNS: usize = 32;
/// Queue capacity a connection keeps once its output is written; more is given back.
const KEEP_QUEUE: usize = 16;
/// Bytes read per readiness event before giving other tasks a turn.
const READ_BUDGET: usize = 64 * 1024;
/// The read buffer, on the worker thread's stack while a read is in progress.
const READ_BUF: usize = 16 * 1024;
/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// How long a client dropped for its own conduct (flooding, not reading) gets to take its
/// last line before the socket is closed.
const LAST_LINE_GRACE: Duration = Duration::from_secs(1);
/// How long a closing connection waits for the peer to close its side, so unread input does
/// not turn our FIN into a reset that destroys the last lines in flight.
const LINGER: Duration = Duration::from_secs(2);

/// What every driver of a server shares.
#[derive(Debug, Default)]
pub struct Env {
    /// Where written bytes are counted.
    pub stats: Arc<Stats>,
    /// The clock for far deadlines.
    pub alarms: Alarms,
}

/// How a driver waits for its next deadline.
enum Timer {
    /// Nothing is due.
    Off,
    /// A timer of its own, for a near deadline.
    Near(Pin<Box<Sleep>>),
    /// An alarm on the shared clock, set for this (rounded) instant.
    Far(Instant),
}

/// A connection between a wire and a session.
pub struct Driver<W, H> {
    /// The protocol session.
    pub handler: H,
    /// How bytes move.
    wire: W,
    /// What every driver shares: counters, the clock.
    env: Arc<Env>,
    /// Splits the input into lines.
    framer: LineFramer,
    /// The client's outgoing queue.
    outbox: Arc<Outbox>,
    /// Lines taken from the outbox and not yet fully written, oldest first.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending.front()` already written.
    offset: usize,
    /// Bytes read but not yet framed (flood control, a held sender, a busy session); empty
    /// and unallocated otherwise.
    held: Vec<u8>,
    /// Flood control, unless it is off; boxed to keep connections without it small.
    throttle: Option<Box<Throttle>>,
    /// When output last made progress, for the write stall.
    last_progress: Instant,
    /// How the next deadline (the session's, the write stall, flood control, congestion) is
    /// waited for.
    timer: Timer,
}

impl<W: Wire, H: Handler> Driver<W, H> {
    /// A driver for a session just created, whose greeting (if any) is queued already.
    pub fn new(
        handler: H,
        wire: W,
        outbox: Arc<Outbox>,
        env: Arc<Env>,
        flood: Option<&FloodLimits>,
    ) -> Self {
        Self {
            env,
            held: Vec::new(),
            throttle: flood.map(|f| Box::new(Throttle::new(f, Instant::now()))),
            last_progress: Instant::now(),
            timer: Timer::Off,
            framer: LineFramer::new(handler.max_line()),
            handler,
            wire,
            outbox,
            pending: VecDeque::new(),
            offset: 0,
        }
    }

    /// The client's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The wire.
    pub fn wire(&self) -> &W {
        &self.wire
    }

    /// Takes the connection's first input (what sniffing read), before [`Driver::run`]: so
    /// the bytes need not be kept while the connection runs.
    pub fn begin(&mut self, first: &[u8]) -> Flow {
        self.feed(first)
    }

    /// Runs the connection, [begun](Driver::begin) with `begun`, to its end, then says
    /// goodbye and closes it; returns why it ended.
    pub async fn run(&mut self, begun: Flow, cfg: &Config) -> End {
        let end = match begun {
            Flow::Close => End::Close,
            Flow::Continue => std::future::poll_fn(|cx| self.poll_run(cx, cfg)).await,
        };
        // Boxed: closing needs timers and futures that a running connection should not
        // carry in its state.
        Box::pin(self.finish(end, cfg)).await;
        end
    }

    /// Whether anything stops this connection from taking input besides flood control.
    fn input_blocked(&self) -> bool {
        self.handler.blocks_input()
            || self.handler.answering()
            || self.outbox.is_held()
            || self.outbox.congested()
    }

    /// Frames `input` and hands each line to the handler, as far as flood control, the
    /// session and the client's recipients allow; keeps what it holds back in `held`.
    fn feed(&mut self, input: &[u8]) -> Flow {
        let mut rest = input;
        let now = Instant::now();
        loop {
            if self.input_blocked() {
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
                            let flow = self.handler.on_line(line);
                            let extra = self.handler.extra_commands();
                            if let Some(t) = &mut self.throttle {
                                t.extra_commands(extra, now);
                            }
                            if flow == Flow::Close {
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

    /// Goes on with input that was held back.
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
    pub fn poll_run(&mut self, cx: &mut Context<'_>, cfg: &Config) -> Poll<End> {
        for _ in 0..MAX_TURNS {
            if self.outbox.is_shut_down() {
                return Poll::Ready(End::Shutdown);
            }
            if self.outbox.is_ended() {
                // Killed: the goodbye is queued; write it and what is before it, then close.
                return Poll::Ready(End::Close);
            }
            // Lines move from the outbox once the previous batch is fully written; they
            // count towards the client's bound until the socket takes them.
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
            let writing = !self.pending.is_empty() || self.wire.wants_flush();
            let now = Instant::now();
            if let Some(t) = &self.throttle
                && t.flooding(now)
            {
                return Poll::Ready(End::Flood);
            }
            let slow_at = self.outbox.slow_at(cfg.patience);
            if slow_at.is_some_and(|t| now >= t) {
                return Poll::Ready(End::SlowConsumer);
            }
            if writing {
                match self.wire.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(End::Error),
                    Poll::Pending => {}
                }
            }
            // A session waiting for the cluster takes no lines meanwhile; its answer wakes
            // this task.
            if self.handler.waiting() {
                match self.handler.poll_resume(cx) {
                    Poll::Ready(Flow::Close) => return Poll::Ready(End::Close),
                    Poll::Ready(Flow::Continue) => continue,
                    Poll::Pending => {}
                }
            }
            // A long answer goes on as the client takes it.
            if self.handler.answering() && self.outbox.backlog() < self.outbox.limit() {
                self.handler.answer_more();
                continue;
            }
            // A sender whose recipient is behind waits for it (woken by its progress).
            let mut hold_until = None;
            let held_back = self.outbox.is_held()
                && self
                    .outbox
                    .poll_hold(cx, cfg.patience, &mut hold_until)
                    .is_pending();
            let blocked = held_back || self.input_blocked();
            if !blocked
                && !self.held.is_empty()
                && self.throttle.as_mut().is_none_or(|t| t.command_ready(now))
            {
                let before = self.held.len();
                if self.release_held() == Flow::Close {
                    return Poll::Ready(End::Close);
                }
                if self.held.len() != before {
                    continue;
                }
            }
            let can_read = !blocked
                && self.held.is_empty()
                && self
                    .throttle
                    .as_mut()
                    .is_none_or(|t| t.read_allowance(now) > 0);
            if can_read {
                match self.wire.poll_read_ready(cx) {
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
            // Last, so that a connection found with nothing to do goes idle here. While
            // writing, only an overflow matters: new lines wait for the batch to go.
            if self.outbox.poll_ready(cx, !writing).is_ready() {
                continue;
            }

            let mut deadline = self.handler.deadline();
            let stall = writing.then(|| self.last_progress + cfg.write_stall);
            if let Some(t) = &self.throttle
                && !can_read
                && !blocked
            {
                let resume = t.ready_at();
                let resume = t.grace_ends().map_or(resume, |g| resume.min(g));
                deadline = Some(deadline.map_or(resume, |d| d.min(resume)));
            }
            // About to sleep: an idle connection keeps no write queue (the next line
            // allocates one again, which is cheap beside the wake-up that delivers it; a busy
            // connection, which does not sleep between batches, reuses it) and no buffer for
            // unfinished lines.
            if !writing {
                self.pending = VecDeque::new();
            }
            self.framer.trim();
            let Some(wake_at) = [deadline, stall, slow_at, hold_until]
                .into_iter()
                .flatten()
                .min()
            else {
                self.disarm();
                return Poll::Pending;
            };
            let now = Instant::now();
            if now < wake_at && self.wait_until(wake_at, now, cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if stall.is_some_and(|s| now >= s) {
                return Poll::Ready(End::Stalled);
            }
            if deadline.is_some_and(|d| now >= d) && self.handler.on_deadline() == Flow::Close {
                return Poll::Ready(End::Close);
            }
        }
        // Busy for many turns in a row: let other tasks run, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Waits for `at`: a far deadline on the shared clock, a near one with a timer of its
    /// own. Ready once it has come.
    fn wait_until(&mut self, at: Instant, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if at.saturating_duration_since(now) >= FAR {
            let at = self.env.alarms.round(at);
            match self.timer {
                // An alarm no later than this one is set: it wakes the task, which then
                // looks again.
                Timer::Far(set) if set <= at && set > now => return Poll::Pending,
                _ => {}
            }
            self.disarm();
            self.env.alarms.set(self.handler.id(), at, cx.waker());
            self.timer = Timer::Far(at);
            return Poll::Pending;
        }
        if let Timer::Far(_) = self.timer {
            self.disarm();
        }
        let Timer::Near(timer) = &mut self.timer else {
            self.timer = Timer::Near(Box::pin(sleep_until(at)));
            return self.wait_until(at, now, cx);
        };
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx)
    }

    /// Lets go of the timer or the alarm.
    fn disarm(&mut self) {
        if let Timer::Far(at) = std::mem::replace(&mut self.timer, Timer::Off) {
            self.env.alarms.cancel(self.handler.id(), at);
        }
    }

    /// Reads what is available (up to a budget) and processes every complete line.
    /// `Ok(None)` at end of input.
    fn read_some(&mut self) -> io::Result<Option<Flow>> {
        let mut buf = [0u8; READ_BUF];
        let mut total = 0;
        while total < READ_BUDGET && self.held.is_empty() && !self.input_blocked() {
            let now = Instant::now();
            let allowed = match &mut self.throttle {
                Some(t) => t.read_allowance(now).min(buf.len()),
                None => buf.len(),
            };
            if allowed == 0 {
                break;
            }
            match self.wire.try_read(&mut buf[..allowed]) {
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

    /// Writes as much as the wire takes now; whether anything was written.
    fn write_some(&mut self) -> io::Result<bool> {
        let mut progressed = false;
        if self.wire.wants_flush() {
            match self.wire.try_flush() {
                Ok(true) => progressed = true,
                Ok(false) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        let mut done = 0;
        while !self.pending.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (i, b) in self.pending.iter().take(MAX_IOV).enumerate() {
                iov[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                count += 1;
            }
            match self.wire.try_write_vectored(&iov[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    progressed = true;
                    self.env.stats.bytes_out(n);
                    while n > 0 {
                        let left = self.pending[0].len() - self.offset;
                        if n >= left {
                            n -= left;
                            if let Some(line) = self.pending.pop_front() {
                                done += line_cost(&line);
                            }
                            self.offset = 0;
                        } else {
                            self.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.outbox.taken(done);
                    return Err(e);
                }
            }
        }
        if done > 0 {
            self.outbox.taken(done);
        }
        Ok(progressed)
    }

    /// Says goodbye as `end` requires, leaves the hub, flushes within a deadline and closes.
    async fn finish(&mut self, end: End, cfg: &Config) {
        self.disarm();
        // Leave first, so that nobody else routes to a client that is going.
        self.handler.leave(end);
        if self.outbox.is_lingering() && end != End::Shutdown {
            // The session waits to be resumed: what this connection had taken but not
            // written goes back, for the connection that resumes it.
            self.outbox.unread(std::mem::take(&mut self.pending));
            return;
        }
        let peer = self.wire.peer_addr().ok();
        match end {
            End::Flood => warn!(?peer, "flooding: disconnecting"),
            End::SlowConsumer => {
                warn!(?peer, "slow consumer: not taking its output; disconnecting");
                // Keep the line being written whole; the rest of the backlog is gone.
                let keep = usize::from(self.offset > 0);
                let dropped: usize = self.pending.iter().skip(keep).map(line_cost).sum();
                self.pending.truncate(keep);
                self.outbox.taken(dropped);
            }
            End::Stalled => warn!(?peer, "stopped taking output: disconnecting"),
            _ => {}
        }
        if let Some(reason) = end.goodbye() {
            self.outbox.push_final(self.handler.goodbye(reason));
        }
        // Whoever waits for this client need not wait any longer.
        self.outbox.close();
        let grace = match end {
            End::Stalled | End::Error => return,
            End::Flood | End::SlowConsumer => LAST_LINE_GRACE,
            End::Close | End::PeerClosed | End::Shutdown => cfg.shutdown_grace,
        };
        let flushed = timeout(grace, self.flush(end == End::Shutdown)).await;
        if matches!(flushed, Ok(Ok(()))) && end != End::PeerClosed {
            let _ = self.linger().await;
        }
    }

    /// Writes everything queued (lines pushed while closing too), then the wire's last
    /// words.
    async fn flush(&mut self, going_away: bool) -> io::Result<()> {
        let mut closed = false;
        loop {
            if self.pending.is_empty() {
                self.outbox.drain_into(&mut self.pending);
            }
            self.write_some()?;
            if self.pending.is_empty() && !self.wire.wants_flush() {
                if closed {
                    return Ok(());
                }
                self.wire.close(going_away);
                closed = true;
                continue;
            }
            std::future::poll_fn(|cx| self.wire.poll_write_ready(cx)).await?;
        }
    }

    /// Half-closes our side and waits briefly for the peer to close theirs.
    async fn linger(&mut self) -> io::Result<()> {
        let tcp = self.wire.tcp();
        socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 1024];
        let _ = timeout(LINGER, async {
            loop {
                tcp.readable().await?;
                match tcp.try_read(&mut sink) {
                    Ok(0) => return Ok::<_, io::Error>(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        Ok(())
    }
}
