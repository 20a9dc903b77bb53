//! A client's outgoing queue: bounded in bytes, shared lines, one writer.
//!
//! Anyone may push (the client's own session, the hub fanning out a broadcast); only the
//! client's connection task drains it to the socket. A push never waits: when the queue would
//! pass its bound the client is marked as a slow consumer, its backlog is dropped, and its
//! connection task says why and disconnects it. So one client that stops reading costs at most
//! its bound, and never slows the client who is talking to it.

use bytes::Bytes;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

/// The outgoing queue of one client.
#[derive(Debug)]
pub struct Outbox {
    /// Queue and flags; a std mutex because it is held only for a push or a drain, never
    /// across an `.await`.
    state: Mutex<State>,
    /// Most bytes queued at once before the client counts as a slow consumer.
    limit: usize,
    /// Set when the server shuts down; read without the lock on every turn of a connection.
    shut_down: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Lines waiting for the socket, in order.
    queue: VecDeque<Bytes>,
    /// What `queue` costs in memory: its lines' lengths plus a queue slot each.
    bytes: usize,
    /// Set once the bound was passed; from then on pushes are dropped.
    overflowed: bool,
    /// The connection task waiting for lines or for an overflow. A bare waker rather than a
    /// `Notify`: it is polled, so an idle connection keeps no wait future in its task.
    waker: Option<Waker>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// This push passed the bound: the client is now a slow consumer.
    Overflowed,
    /// The client was already a slow consumer; nothing was queued.
    Dropped,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limit,
            shut_down: AtomicBool::new(false),
        }
    }

    /// Queues one or more whole lines.
    pub fn push(&self, line: Bytes) -> Pushed {
        let mut s = self.lock();
        if s.overflowed {
            return Pushed::Dropped;
        }
        // A client passes its bound when its queue is already full, not when one large answer
        // (a LIST of many users) would cross it: memory stays within the bound plus one item.
        if s.bytes >= self.limit {
            s.overflowed = true;
            s.queue = VecDeque::new();
            s.bytes = 0;
            let waker = s.waker.take();
            drop(s);
            wake(waker);
            return Pushed::Overflowed;
        }
        let was_empty = s.queue.is_empty();
        s.bytes += cost(&line);
        s.queue.push_back(line);
        // The drainer takes everything at once, so only the first push after a drain needs to
        // wake it.
        let waker = if was_empty { s.waker.take() } else { None };
        drop(s);
        wake(waker);
        Pushed::Queued
    }

    /// Queues a last line regardless of the bound (a `BYE`), even for a slow consumer.
    pub fn push_final(&self, line: Bytes) {
        let mut s = self.lock();
        s.bytes += cost(&line);
        s.queue.push_back(line);
        let waker = s.waker.take();
        drop(s);
        wake(waker);
    }

    /// Moves every queued line into `into`, which must be empty; returns whether the client
    /// overflowed.
    pub fn drain_into(&self, into: &mut VecDeque<Bytes>) -> bool {
        debug_assert!(into.is_empty());
        let mut s = self.lock();
        std::mem::swap(into, &mut s.queue);
        s.bytes = 0;
        s.overflowed
    }

    /// Whether the client passed its bound.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Tells the connection task that the server is shutting down.
    pub fn shut_down(&self) {
        self.shut_down.store(true, Ordering::Relaxed);
        let waker = self.lock().waker.take();
        wake(waker);
    }

    /// Whether the server is shutting down.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Relaxed)
    }

    /// Waits until something is queued or the client is cut off.
    pub async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx, true)).await
    }

    /// Ready once the client overflowed, or, if `lines`, once something is queued; otherwise
    /// `cx` is woken by the next push that matters. Only one task may wait.
    pub fn poll_ready(&self, cx: &mut Context<'_>, lines: bool) -> Poll<()> {
        let mut s = self.lock();
        if s.overflowed || self.is_shut_down() || (lines && !s.queue.is_empty()) {
            return Poll::Ready(());
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

/// What one queued line costs: its bytes, and its slot in the queue, so that a flood of
/// short lines (presence events are a dozen bytes) cannot hold several times the bound.
fn cost(line: &Bytes) -> usize {
    line.len() + std::mem::size_of::<Bytes>()
}

/// Wakes outside the lock, so the woken task never finds it held.
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_drops_backlog_on_overflow() {
        let o = Outbox::new(60);
        assert_eq!(o.push(Bytes::from_static(b"12345")), Pushed::Queued);
        assert_eq!(o.push(Bytes::from_static(b"123456789")), Pushed::Queued);
        assert_eq!(o.push(Bytes::from_static(b"1")), Pushed::Overflowed);
        assert_eq!(o.push(Bytes::from_static(b"1")), Pushed::Dropped);
        o.push_final(Bytes::from_static(b"BYE\n"));
        let mut q = VecDeque::new();
        assert!(o.drain_into(&mut q));
        assert_eq!(q, [Bytes::from_static(b"BYE\n")]);
    }

    #[test]
    fn drain_keeps_order_and_frees_room() {
        let o = Outbox::new(3 + 2 * std::mem::size_of::<Bytes>());
        let mut q = VecDeque::new();
        let mut firsts = Vec::new();
        for i in 0..10u8 {
            assert_eq!(o.push(Bytes::from(vec![i; 2])), Pushed::Queued);
            assert_eq!(o.push(Bytes::from(vec![i + 100; 2])), Pushed::Queued);
            assert!(!o.drain_into(&mut q));
            firsts.extend(q.drain(..).map(|b| b[0]));
        }
        let want: Vec<u8> = (0..10).flat_map(|i| [i, i + 100]).collect();
        assert_eq!(firsts, want);
    }
}
