//! The message log as the server uses it: each message's id, handing messages to the store
//! without holding up their delivery, and the wait that keeps an `OK` until they are kept.
//!
//! The hub gives every MESSAGE, SAY and DM an id as it delivers it and hands the ones that
//! are kept to the store's writer, whose queue it never waits on. The sender's session
//! then waits (taking no further input) until the writer has committed them, and only then
//! answers `OK`: an acknowledged message survives a crash. When the queue is full, the
//! session waits for room before it takes more input, so a store slower than the traffic
//! slows its senders and loses nothing; when the store fails, the sender is told.

use crate::stats::Stats;
use bytes::Bytes;
use natter_store::{Logged, MessageId, Store, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The message log's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Whether messages are kept at all.
    pub enabled: bool,
    /// Messages a `HISTORY` without a limit returns.
    pub default_limit: u32,
    /// The most messages one `HISTORY` or `SEARCH` returns.
    pub max_limit: u32,
    /// Days a message is kept; `None` keeps them for ever.
    pub days: Option<u32>,
    /// The most messages kept per target (Everyone, a room, a conversation); `None`: no limit.
    pub max_per_target: Option<u32>,
    /// Messages of a channel replayed to an IRC client that joins it (0: none).
    pub irc_replay: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            default_limit: 50,
            max_limit: 500,
            days: Some(90),
            max_per_target: None,
            irc_replay: 25,
        }
    }
}

/// The log: where messages go and the ids they get.
#[derive(Debug)]
pub struct History {
    store: Store,
    config: HistoryConfig,
    /// The last id made, which the next one follows.
    last: AtomicI64,
    /// This server's number among the servers sharing the store.
    node: u16,
    stats: Arc<Stats>,
}

impl History {
    /// The log in `store`, its ids following `last` (the newest id kept) and carrying `node`.
    pub fn new(
        store: Store,
        config: HistoryConfig,
        last: Option<i64>,
        node: u16,
        stats: Arc<Stats>,
    ) -> History {
        History {
            store,
            config,
            last: AtomicI64::new(last.unwrap_or(0)),
            node,
            stats,
        }
    }

    /// Whether messages are kept.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The settings.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The store behind it, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The newest id made so far (or found in the store at start): every message with an
    /// id above it was sent after this call.
    pub fn last_id(&self) -> i64 {
        self.last.load(Ordering::Relaxed)
    }

    /// A new id, after every id made before (here or found in the store), in this
    /// millisecond unless more than 4,096 were made in it.
    pub fn next_id(&self) -> i64 {
        let now = MessageId::new(unix_millis(), 0, self.node).0;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // The next sequence number after the last id, with this node's number.
            let after = (((last >> MessageId::NODE_BITS) + 1) << MessageId::NODE_BITS)
                | i64::from(self.node);
            let next = now.max(after);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Hands messages to the writer without waiting; what the sender waits on before its
    /// `OK`. `waiting` names the offline account they wait for, if any. `None` if there is
    /// nothing to keep.
    pub fn keep(&self, messages: Vec<Logged>, waiting: Option<String>) -> Option<Keeping> {
        if messages.is_empty() {
            return None;
        }
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let (done, kept) = self.answer(messages.len());
        match self.store.log(messages, waiting.clone(), done) {
            Ok(()) => Some(Keeping {
                ids,
                backlog: false,
                wait: Box::pin(async move { kept.await.unwrap_or(Err(StoreError::Closed)) }),
            }),
            Err((StoreError::Busy, messages)) => {
                self.stats.history.waited.fetch_add(1, Ordering::Relaxed);
                let (done, kept) = self.answer(messages.len());
                let store = self.store.clone();
                Some(Keeping {
                    ids,
                    backlog: true,
                    wait: Box::pin(async move {
                        store.log_when_room(messages, waiting, done).await?;
                        kept.await.unwrap_or(Err(StoreError::Closed))
                    }),
                })
            }
            Err((e, messages)) => {
                self.stats
                    .history
                    .failed
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                Some(Keeping {
                    ids,
                    backlog: false,
                    wait: Box::pin(std::future::ready(Err(e))),
                })
            }
        }
    }

    /// The callback the writer calls once `n` messages are committed (or not), counting
    /// them, and where its word arrives.
    fn answer(
        &self,
        n: usize,
    ) -> (
        impl FnOnce(Result<(), StoreError>) + Send + 'static,
        Committed,
    ) {
        let (tx, rx) = oneshot::channel();
        let stats = self.stats.clone();
        let done = move |r: Result<(), StoreError>| {
            let counter = match r {
                Ok(()) => &stats.history.kept,
                Err(_) => &stats.history.failed,
            };
            counter.fetch_add(n as u64, Ordering::Relaxed);
            let _ = tx.send(r);
        };
        (done, rx)
    }
}

/// Where the writer's word on a batch of messages arrives.
type Committed = oneshot::Receiver<Result<(), StoreError>>;

/// How often retention runs, after once at start.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes what retention no longer keeps: messages older than the days kept, and the oldest
/// beyond the most kept per target. Returns how many went.
pub async fn prune(store: &Store, config: &HistoryConfig) -> Result<u64, StoreError> {
    if config.days.is_none() && config.max_per_target.is_none() {
        return Ok(0);
    }
    let before = config.days.map_or(0, |d| {
        MessageId::at(unix_millis() - i64::from(d) * 86_400_000).0
    });
    store.prune(before, config.max_per_target).await
}

/// Messages on their way into the log; ready once they are committed (or have failed).
pub struct Keeping {
    /// The messages' ids, in order.
    pub ids: Vec<i64>,
    /// Whether the store's queue was full, so that the sender must wait for room before it
    /// sends more (a client that is not answered per message waits only then).
    pub backlog: bool,
    wait: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
}

impl std::fmt::Debug for Keeping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeping")
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl Future for Keeping {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.wait.as_mut().poll(cx)
    }
}

/// Something a session waits for before it answers and takes its next line: messages being
/// kept, or a question to the store. Ready with the lines to send.
pub struct Later {
    wait: Pin<Box<dyn Future<Output = Bytes> + Send>>,
    /// A line read before the wait began, to be handled once it is over.
    pub deferred: Option<Box<[u8]>>,
    /// More messages may be read and relayed meanwhile (their answers queue behind this
    /// one's): the wait is for answers only, not for input.
    pub flowing: bool,
}

impl Later {
    /// Waits for `f`, whose output is the answer to send.
    pub fn new(f: impl Future<Output = Bytes> + Send + 'static) -> Later {
        Later {
            wait: Box::pin(f),
            deferred: None,
            flowing: false,
        }
    }

    /// This wait's answer, then `next`'s: one wait for both, in order. It lets input flow
    /// only if both do.
    pub fn then(self, next: Later) -> Later {
        debug_assert!(
            self.deferred.is_none(),
            "no line waits behind a flowing wait"
        );
        let flowing = self.flowing && next.flowing;
        let (first, second) = (self.wait, next.wait);
        let mut both = Later::new(async move {
            let a = first.await;
            let b = second.await;
            if a.is_empty() {
                b
            } else if b.is_empty() {
                a
            } else {
                let mut out = bytes::BytesMut::with_capacity(a.len() + b.len());
                out.extend_from_slice(&a);
                out.extend_from_slice(&b);
                out.freeze()
            }
        });
        both.flowing = flowing;
        both
    }

    /// Polls for the answer.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        self.wait.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Later")
            .field("deferred", &self.deferred.as_ref().map(|d| d.len()))
            .field("flowing", &self.flowing)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(last: Option<i64>, node: u16) -> History {
        let store = Store::open(&natter_store::Location::Memory, Default::default()).unwrap();
        History::new(
            store,
            HistoryConfig::default(),
            last,
            node,
            Arc::new(Stats::default()),
        )
    }

    #[test]
    fn ids_increase_carry_the_node_and_follow_what_the_store_holds() {
        let h = history(None, 5);
        let ids: Vec<i64> = (0..10_000).map(|_| h.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| id & 1023 == 5));
        let now = unix_millis();
        assert!((MessageId(ids[0]).millis() - now).abs() < 1000);
        // An id from the future (another node's clock, or ours before it was set back).
        let ahead = MessageId::new(now + 60_000, 7, 9).0;
        let h = history(Some(ahead), 5);
        let next = h.next_id();
        assert!(next > ahead && next & 1023 == 5);
    }
}
