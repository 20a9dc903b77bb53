//! A client's outgoing queue: bounded in bytes, shared lines, one writer.
//!
//! Anyone may push (the client's own session, the hub fanning out a broadcast); only the
//! client's connection drains it to the socket. A push never waits. The bound counts
//! everything held for the client until its socket takes it: the queue and the batch its
//! connection is writing.
//!
//! The slow-consumer policy has to tell a client that stopped reading from one that reads
//! but is behind a burst, and drop only the first:
//! - A client whose backlog reaches its bound is *congested*. Whoever pushed to it (a sender
//!   broadcasting, say) is told, and the sender's connection reads no further input of its
//!   own until the backlog is down to half the bound: a burst is paced to the speed of its
//!   readers instead of piling up in their queues. A congested client's own input is not
//!   read either, so a client that asks for answers without reading them stops asking.
//! - A congested client that takes no bytes at all for the stall time, or that stays
//!   congested for the grace time (it reads, but slower than it is sent to), is a *slow
//!   consumer*: its connection says why and drops it, which releases the senders held for it.
//! - Twice the bound is a hard limit: a push that finds the backlog there drops the client at
//!   once. Senders are held, so only a crowd of them pushing at the same moment gets there.
//!
//! So one client costs at most twice its bound, a reader is never dropped for being behind,
//! and a client that stops reading slows the clients talking to it for at most the stall
//! time, once.

use bytes::Bytes;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// The outgoing queue of one client.
#[derive(Debug)]
pub struct Outbox {
    /// Queue and flags; a std mutex because it is held only for a push or a drain, never
    /// across an `.await`.
    state: Mutex<State>,
    /// Backlog in bytes at which the client is congested; twice this is the hard bound.
    limit: usize,
    /// The backlog: what the queue and the batch being written cost, each line its bytes
    /// plus a queue slot. Atomic, so that the connection counts what it wrote without the
    /// lock; changed under the lock everywhere else.
    bytes: AtomicUsize,
    /// Set when the server shuts down; read without the lock on every turn of a connection.
    shut_down: AtomicBool,
    /// Set when the client is to be disconnected once its queue is written (a `KILL`).
    ended: AtomicBool,
    /// Whether the client waits for a congested recipient (`Rare::hold`): read without
    /// the lock before each line.
    held: AtomicBool,
    /// Whether the client is congested (`Rare::congestion`): read without the lock before
    /// each line.
    congested: AtomicBool,
    /// Set while nobody drains it: its session waits to be resumed. Such an outbox never
    /// holds senders back (nobody would release them); it only fills, up to the hard bound.
    lingering: AtomicBool,
    /// Set while its session gathers the answer to one command ([`Outbox::capture`]): read
    /// without the lock on every push, so the thread-local is looked at only then.
    capturing: AtomicBool,
}

thread_local! {
    /// The outbox whose session is gathering an answer on this thread (by address), and what
    /// this thread pushed to it meanwhile.
    static CAPTURED: std::cell::RefCell<Option<(usize, Vec<Bytes>)>> =
        const { std::cell::RefCell::new(None) };
}

#[derive(Debug, Default)]
struct State {
    /// Lines waiting for the connection to take them, in order.
    queue: VecDeque<Bytes>,
    /// Set once the client is a slow consumer; from then on pushes are dropped.
    overflowed: bool,
    /// The connection waiting for lines or for an overflow. A bare waker rather than a
    /// `Notify`: it is polled, so an idle connection keeps no wait future in its task.
    waker: Option<Waker>,
    /// Congestion and holds (boxed: rare, and every idle client carries the pointer).
    rare: Option<Box<Rare>>,
}

/// What an outbox holds only while its client is congested or waits for another.
#[derive(Debug, Default)]
struct Rare {
    /// While the backlog is over the bound.
    congestion: Option<Congestion>,
    /// A congested recipient this client's input waits for.
    hold: Option<Arc<Outbox>>,
}

impl State {
    fn congestion(&self) -> Option<&Congestion> {
        self.rare.as_ref()?.congestion.as_ref()
    }

    fn congestion_mut(&mut self) -> Option<&mut Congestion> {
        self.rare.as_mut()?.congestion.as_mut()
    }

    /// Ends the congestion, if any; returns who waited for it.
    fn end_congestion(&mut self) -> Vec<Waker> {
        let waiters = match self.rare.as_mut() {
            Some(r) => r.congestion.take().map(|c| c.waiters).unwrap_or_default(),
            None => Vec::new(),
        };
        self.tidy();
        waiters
    }

    /// Lets go of the rare state once there is none.
    fn tidy(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.congestion.is_none() && r.hold.is_none())
        {
            self.rare = None;
        }
    }
}

/// A congested client's state.
#[derive(Debug)]
struct Congestion {
    /// Since when the backlog has been over the bound.
    since: Instant,
    /// When the connection last took bytes.
    progress: Instant,
    /// Connections whose input waits for this backlog to go down.
    waiters: Vec<Waker>,
}

/// How long a slow consumer may take, by the policy in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// A congested client that takes nothing for this long is dropped.
    pub stall: Duration,
    /// A client congested for this long without a break is dropped.
    pub grace: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            stall: Duration::from_secs(1),
            grace: Duration::from_secs(10),
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the client is congested: the sender should wait for it.
    Congested,
    /// This push found the hard bound reached: the client is now a slow consumer.
    Overflowed,
    /// The client was already a slow consumer; nothing was queued.
    Dropped,
}

impl Outbox {
    /// An empty outbox whose client is congested at `limit` bytes of backlog.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limit,
            bytes: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            held: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            lingering: AtomicBool::new(false),
            capturing: AtomicBool::new(false),
        }
    }

    /// From now until [`Outbox::captured`], what this thread pushes here is set aside
    /// instead of queued: a session handling a command runs the hub's calls on its own
    /// thread, so that is its answer, wherever it was written (under the hub's lock or not),
    /// and nothing another thread pushes meanwhile (others' messages) is mistaken for it.
    pub fn capture(&self) {
        CAPTURED.with(|c| *c.borrow_mut() = Some((self.addr(), Vec::new())));
        self.capturing.store(true, Ordering::Relaxed);
    }

    /// Ends [`Outbox::capture`]: what was set aside, in order, to be queued by the caller.
    pub fn captured(&self) -> Vec<Bytes> {
        self.capturing.store(false, Ordering::Relaxed);
        CAPTURED
            .with(|c| c.borrow_mut().take())
            .filter(|(addr, _)| *addr == self.addr())
            .map(|(_, lines)| lines)
            .unwrap_or_default()
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Queues one or more whole lines (or sets them aside, see [`Outbox::capture`]).
    pub fn push(&self, line: Bytes) -> Pushed {
        if self.capturing.load(Ordering::Relaxed) {
            let kept = CAPTURED.with(|c| match &mut *c.borrow_mut() {
                Some((addr, lines)) if *addr == self.addr() => {
                    lines.push(line.clone());
                    true
                }
                _ => false,
            });
            if kept {
                return Pushed::Queued;
            }
        }
        self.push_past_capture(line)
    }

    /// Queues lines even while this thread captures an answer here: lines that are not part
    /// of it (others' arrivals, announced before anything else).
    pub fn push_past_capture(&self, line: Bytes) -> Pushed {
        let mut s = self.lock();
        if s.overflowed {
            return Pushed::Dropped;
        }
        // The hard bound is tested before the push, so one large item (a long batch) can
        // cross it without penalty: memory stays within it plus one item.
        if self.bytes.load(Ordering::Relaxed) >= 2 * self.limit {
            let wake_up = self.overflow(&mut s);
            drop(s);
            wake_up.wake();
            return Pushed::Overflowed;
        }
        let was_empty = s.queue.is_empty();
        let bytes = self.bytes.fetch_add(cost(&line), Ordering::Relaxed) + cost(&line);
        s.queue.push_back(line);
        let congested = bytes >= self.limit && !self.lingering.load(Ordering::Relaxed);
        if congested && s.congestion().is_none() {
            let now = Instant::now();
            s.rare.get_or_insert_with(Box::default).congestion = Some(Congestion {
                since: now,
                progress: now,
                waiters: Vec::new(),
            });
            self.congested.store(true, Ordering::Relaxed);
        }
        // The drainer takes everything at once, so only the first push after a drain needs to
        // wake it.
        let waker = if was_empty { s.waker.take() } else { None };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        if congested {
            Pushed::Congested
        } else {
            Pushed::Queued
        }
    }

    /// Queues a last line regardless of the bound (a `BYE`), even for a slow consumer.
    pub fn push_final(&self, line: Bytes) {
        let mut s = self.lock();
        self.bytes.fetch_add(cost(&line), Ordering::Relaxed);
        s.queue.push_back(line);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Marks the client a slow consumer: drops its queue and releases everyone.
    fn overflow(&self, s: &mut State) -> WakeUp {
        s.overflowed = true;
        s.queue = VecDeque::new();
        self.bytes.store(0, Ordering::Relaxed);
        self.congested.store(false, Ordering::Relaxed);
        WakeUp {
            owner: s.waker.take(),
            waiters: s.end_congestion(),
        }
    }

    /// Moves every queued line into `into`, which must be empty; returns whether the client
    /// overflowed. The lines still count towards the backlog until [`Outbox::taken`].
    pub fn drain_into(&self, into: &mut VecDeque<Bytes>) -> bool {
        debug_assert!(into.is_empty());
        let mut s = self.lock();
        std::mem::swap(into, &mut s.queue);
        s.overflowed
    }

    /// Puts back lines taken by [`Outbox::drain_into`] and not written, before the rest, so
    /// that whoever drains next gets them first, in order.
    pub fn unread(&self, mut lines: VecDeque<Bytes>) {
        if lines.is_empty() {
            return;
        }
        let mut s = self.lock();
        lines.append(&mut s.queue);
        s.queue = lines;
    }

    /// The connection wrote lines costing `cost` (see [`line_cost`]) to the socket.
    pub fn taken(&self, cost: usize) {
        let left = match self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(cost))
            }) {
            Ok(before) | Err(before) => before.saturating_sub(cost),
        };
        // Only a congested client's progress matters to anyone else; the common case takes
        // no lock.
        if !self.congested() {
            return;
        }
        let mut s = self.lock();
        let Some(c) = s.congestion_mut() else {
            return;
        };
        c.progress = Instant::now();
        if left < self.limit / 2 {
            let waiters = s.end_congestion();
            self.congested.store(false, Ordering::Relaxed);
            drop(s);
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    /// Whether the client passed its bound.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The backlog in bytes (lines plus their queue slots).
    pub fn backlog(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The backlog at which the client is congested.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the backlog is over the bound (and not yet down to half of it).
    pub fn congested(&self) -> bool {
        self.congested.load(Ordering::Relaxed)
    }

    /// When this congested client becomes a slow consumer unless it takes bytes, by
    /// `patience`; `None` while it is not congested.
    pub fn slow_at(&self, patience: Patience) -> Option<Instant> {
        if !self.congested() {
            return None;
        }
        let s = self.lock();
        let c = s.congestion()?;
        Some((c.since + patience.grace).min(c.progress + patience.stall))
    }

    /// Ready once this client is no longer congested (or was dropped); otherwise `cx` is
    /// woken when it is.
    pub fn poll_uncongested(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        match s.congestion_mut() {
            None => Poll::Ready(()),
            Some(c) => {
                if !c.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    c.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Makes this client's input wait for `recipient`, which a push of its found congested.
    pub fn hold_for(&self, recipient: &Arc<Outbox>) {
        let mut s = self.lock();
        let rare = s.rare.get_or_insert_with(Box::default);
        if rare.hold.is_none() {
            rare.hold = Some(recipient.clone());
            self.held.store(true, Ordering::Relaxed);
        }
    }

    /// Whether this client's input waits for a congested recipient.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Ready once the recipient this client's input waits for is uncongested; the wait is
    /// then over. `until` is set to when that recipient becomes a slow consumer unless it
    /// moves, by `patience`, so the connection checks again then.
    pub fn poll_hold(
        &self,
        cx: &mut Context<'_>,
        patience: Patience,
        until: &mut Option<Instant>,
    ) -> Poll<()> {
        let Some(r) = self.lock().rare.as_ref().and_then(|r| r.hold.clone()) else {
            return Poll::Ready(());
        };
        let slow_at = r.slow_at(patience);
        let expired = slow_at.is_some_and(|t| Instant::now() >= t + patience.stall);
        if !expired && r.poll_uncongested(cx).is_pending() {
            *until = slow_at.map(|t| t + patience.stall);
            return Poll::Pending;
        }
        // Uncongested, dropped, or past the time its own connection should have dropped it
        // (a connection gone without releasing its waiters): the wait is over.
        let mut s = self.lock();
        if let Some(rare) = s.rare.as_mut() {
            rare.hold = None;
        }
        s.tidy();
        self.held.store(false, Ordering::Relaxed);
        Poll::Ready(())
    }

    /// The connection is over: releases whoever waits for this client, and lets go of any
    /// recipient it waited for.
    pub fn close(&self) {
        let mut s = self.lock();
        if let Some(rare) = s.rare.as_mut() {
            rare.hold = None;
        }
        let waiters = s.end_congestion();
        self.held.store(false, Ordering::Relaxed);
        self.congested.store(false, Ordering::Relaxed);
        drop(s);
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Its connection is gone and its session waits to be resumed: lines keep queueing for
    /// whoever resumes it (up to the hard bound), and nobody waits for it any more.
    pub fn linger(&self) {
        self.lingering.store(true, Ordering::Relaxed);
        self.close();
    }

    /// Whether its session waits to be resumed (see [`Outbox::linger`]).
    pub fn is_lingering(&self) -> bool {
        self.lingering.load(Ordering::Relaxed)
    }

    /// Tells the connection task that the server is shutting down.
    pub fn shut_down(&self) {
        self.raise(&self.shut_down);
    }

    /// Sets a flag the connection reads on every turn, and wakes it to read it.
    fn raise(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Relaxed);
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the server is shutting down.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Relaxed)
    }

    /// Tells the connection to close once what is queued (its goodbye last) is written.
    pub fn end(&self) {
        self.raise(&self.ended);
    }

    /// Whether the connection is to close (see [`Outbox::end`]).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Waits until something is queued or the client is cut off.
    pub async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx, true)).await
    }

    /// Ready once the client overflowed, or, if `lines`, once something is queued; otherwise
    /// `cx` is woken by the next push that matters. Only one task may wait.
    ///
    /// A connection waiting for lines with nothing else to do is going idle, and gives back
    /// the queue's capacity. (The queue and the connection's batch trade places at each
    /// drain, so a busy connection reuses them; an idle one keeps neither.)
    pub fn poll_ready(&self, cx: &mut Context<'_>, lines: bool) -> Poll<()> {
        let mut s = self.lock();
        if s.overflowed || self.is_shut_down() || (lines && !s.queue.is_empty()) {
            return Poll::Ready(());
        }
        if lines && s.queue.capacity() > 0 {
            s.queue = VecDeque::new();
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the client, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Wakers to wake once a lock is released, so no woken task finds it held.
struct WakeUp {
    owner: Option<Waker>,
    waiters: Vec<Waker>,
}

impl WakeUp {
    fn wake(self) {
        if let Some(w) = self.owner {
            w.wake();
        }
        self.waiters.into_iter().for_each(Waker::wake);
    }
}

/// What one queued line costs: its bytes, and its slot in the queue, so that a flood of
/// short lines (presence events are a dozen bytes) cannot hold several times the bound.
fn cost(line: &Bytes) -> usize {
    line.len() + std::mem::size_of::<Bytes>()
}

/// What a line taken from the outbox costs, for [`Outbox::taken`] once it is written.
pub fn line_cost(line: &Bytes) -> usize {
    cost(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    const SLOT: usize = std::mem::size_of::<Bytes>();

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn line(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn congested_at_the_bound_and_dropped_at_twice_the_bound() {
        let o = Outbox::new(100);
        assert_eq!(o.push(line(50 - SLOT)), Pushed::Queued);
        assert_eq!(o.push(line(50 - SLOT)), Pushed::Congested);
        assert!(o.congested());
        assert_eq!(o.push(line(100 - SLOT)), Pushed::Congested);
        assert_eq!(o.push(line(1)), Pushed::Overflowed);
        assert_eq!(o.push(line(1)), Pushed::Dropped);
        assert!(!o.congested(), "an overflow ends the congestion");
        o.push_final(Bytes::from_static(b"BYE\n"));
        let mut q = VecDeque::new();
        assert!(o.drain_into(&mut q));
        assert_eq!(q, [Bytes::from_static(b"BYE\n")]);
    }

    #[test]
    fn the_batch_being_written_counts_until_taken() {
        let o = Outbox::new(1000);
        let mut q = VecDeque::new();
        for _ in 0..3 {
            o.push(line(200 - SLOT));
        }
        assert!(!o.drain_into(&mut q));
        assert_eq!(o.backlog(), 600);
        o.push(line(400 - SLOT));
        assert!(o.congested(), "the drained batch still counts");
        o.taken(q.drain(..).map(|l| line_cost(&l)).sum());
        assert_eq!(o.backlog(), 400);
        assert!(!o.congested(), "down to under half the bound");
    }

    #[test]
    fn senders_held_for_a_congested_client_are_released_when_it_catches_up() {
        let reader = Arc::new(Outbox::new(100));
        let sender = Outbox::new(100);
        assert_eq!(reader.push(line(100)), Pushed::Congested);
        sender.hold_for(&reader);
        assert!(sender.is_held());
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        let mut until = None;
        let patience = Patience::default();
        assert!(sender.poll_hold(&mut cx, patience, &mut until).is_pending());
        assert!(until.is_some());
        reader.taken(10);
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            0,
            "still over half the bound"
        );
        reader.taken(100);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(sender.poll_hold(&mut cx, patience, &mut until).is_ready());
        assert!(!sender.is_held());
    }

    #[test]
    fn closing_a_congested_client_releases_its_senders() {
        let reader = Arc::new(Outbox::new(100));
        assert_eq!(reader.push(line(100)), Pushed::Congested);
        let (woken, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(reader.poll_uncongested(&mut cx).is_pending());
        reader.close();
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(reader.poll_uncongested(&mut cx).is_ready());
    }

    #[test]
    fn a_congested_client_becomes_slow_without_progress_or_after_the_grace() {
        let o = Outbox::new(100);
        let patience = Patience {
            stall: Duration::from_secs(1),
            grace: Duration::from_secs(10),
        };
        assert_eq!(o.slow_at(patience), None);
        let before = Instant::now();
        o.push(line(200));
        let at = o.slow_at(patience).unwrap();
        assert!(at >= before + patience.stall && at <= Instant::now() + patience.stall);
    }

    #[test]
    fn drain_keeps_order() {
        let o = Outbox::new(1 << 20);
        let mut q = VecDeque::new();
        let mut firsts = Vec::new();
        for i in 0..10u8 {
            assert_eq!(o.push(Bytes::from(vec![i; 2])), Pushed::Queued);
            assert_eq!(o.push(Bytes::from(vec![i + 100; 2])), Pushed::Queued);
            assert!(!o.drain_into(&mut q));
            o.taken(q.iter().map(line_cost).sum());
            firsts.extend(q.drain(..).map(|b| b[0]));
        }
        let want: Vec<u8> = (0..10).flat_map(|i| [i, i + 100]).collect();
        assert_eq!(firsts, want);
        assert_eq!(o.backlog(), 0);
    }
}
