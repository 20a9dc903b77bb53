//! The store's one thread: it takes requests from a bounded queue and runs as many as are
//! waiting in one transaction (group commit), answering each only once it is committed.

use crate::backend::{Backend, Dialect};
use crate::error::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A request the writer runs inside a transaction and answers after the commit.
pub(crate) trait Work: Send {
    /// Runs against the database; `false` if it failed and its changes must be undone.
    fn run(&mut self, db: &mut dyn Backend) -> bool;
    /// Answers the requester once the transaction has ended.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
    /// Whether the writer is to stop after this request's transaction, closing the database
    /// before it answers.
    fn stops(&self) -> bool {
        false
    }
}

/// The request that stops the writer.
pub(crate) struct Stop(pub(crate) oneshot::Sender<()>);

impl Work for Stop {
    fn run(&mut self, _: &mut dyn Backend) -> bool {
        true
    }

    fn finish(self: Box<Self>, _: Result<(), StoreError>) {
        let _ = self.0.send(());
    }

    fn stops(&self) -> bool {
        true
    }
}

/// A closure and the channel its answer goes back on.
pub(crate) struct Task<T, F> {
    job: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Task<T, F> {
    /// A request, and where its answer will arrive.
    pub(crate) fn new(job: F) -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            job: Some(job),
            result: None,
            reply,
        };
        (task, answer)
    }
}

impl<T, F> Work for Task<T, F>
where
    T: Send,
    F: FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, db: &mut dyn Backend) -> bool {
        let result = self.job.take().map(|job| job(db));
        let ok = matches!(result, Some(Ok(_)));
        self.result = result;
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Task { result, reply, .. } = *self;
        let answer = committed.and_then(|()| result.unwrap_or(Err(StoreError::Closed)));
        // The requester may have gone away; its answer is then nobody's business.
        let _ = reply.send(answer);
    }
}

/// What the writer has done, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Transactions committed.
    pub(crate) commits: AtomicU64,
    /// Requests answered after a commit.
    pub(crate) requests: AtomicU64,
    /// Requests that failed (the database refused them, or their transaction did).
    pub(crate) failures: AtomicU64,
}

/// Runs the writer until every sender is gone.
pub(crate) fn run(
    mut db: Box<dyn Backend>,
    mut queue: mpsc::Receiver<Box<dyn Work>>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let mut batch: Vec<Box<dyn Work>> = Vec::with_capacity(max_batch);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        let outcome = commit(db.as_mut(), &mut batch);
        let n = batch.len() as u64;
        match &outcome {
            Ok(()) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.requests.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                counters.failures.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, requests = n, "store transaction failed");
            }
        }
        let mut stops = Vec::new();
        for work in batch.drain(..) {
            if work.stops() {
                stops.push(work);
            } else {
                work.finish(outcome.clone());
            }
        }
        // Idle: index for search what was written, a little at a time, as long as nothing
        // else waits (a search indexes the rest itself).
        while stops.is_empty() && queue.is_empty() {
            match index(db.as_mut()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "indexing messages for search failed");
                    break;
                }
            }
        }
        if !stops.is_empty() {
            // Closed (and, for a file, unlocked) before the stop is answered, so whoever
            // asked may open it again at once.
            drop(db);
            for stop in stops {
                stop.finish(Ok(()));
            }
            return;
        }
    }
}

/// Runs the reader: each request on its own, outside any transaction (a read sees the last
/// commit), until every sender is gone or a stop comes.
pub(crate) fn read(mut db: Box<dyn Backend>, mut queue: mpsc::Receiver<Box<dyn Work>>) {
    while let Some(mut work) = queue.blocking_recv() {
        if work.stops() {
            drop(db);
            work.finish(Ok(()));
            return;
        }
        db.heal();
        work.run(db.as_mut());
        work.finish(Ok(()));
    }
}

/// Indexes a slice of the messages written but not yet indexed, in a transaction of its own.
fn index(db: &mut dyn Backend) -> Result<u32, StoreError> {
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.batch(begin)?;
    match db
        .index_pending(256)
        .and_then(|n| db.batch("COMMIT").map(|()| n))
    {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Runs a batch in one transaction, each request under a savepoint of its own so one that
/// fails undoes only itself.
fn commit(db: &mut dyn Backend, batch: &mut [Box<dyn Work>]) -> Result<(), StoreError> {
    db.heal();
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.batch(begin)?;
    let ran = batch.iter_mut().try_for_each(|work| {
        db.batch("SAVEPOINT request")?;
        let end = if work.run(db) {
            "RELEASE request"
        } else {
            "ROLLBACK TO request; RELEASE request"
        };
        db.batch(end)
    });
    match ran.and_then(|()| db.batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Whatever state the transaction is in, it is over.
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}
