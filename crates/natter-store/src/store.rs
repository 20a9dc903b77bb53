//! The handle the server holds: requests go through a bounded queue to the writer thread.

use crate::account::Account;
use crate::backend::Backend;
use crate::error::{OpenError, StoreError};
use crate::location::Location;
use crate::message::{Logged, Range};
use crate::postgres::Postgres;
use crate::sqlite::Sqlite;
use crate::writer::{self, Counters, Task, Work};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// How the writer is sized.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Requests that may wait for the writer; past it, [`Store::try_request`] says busy.
    pub queue: usize,
    /// Most requests committed in one transaction.
    pub batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: 4096,
            batch: 512,
        }
    }
}

/// An open store. Clones share the one writer, which stops when the last clone is gone.
#[derive(Clone)]
pub struct Store {
    queue: mpsc::Sender<Box<dyn Work>>,
    /// The reader's queue, for a store that has one (a file or a server: not memory).
    reads: Option<mpsc::Sender<Box<dyn Work>>>,
    location: Arc<Location>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the writer's work, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Requests answered after a commit.
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Requests waiting for the writer now.
    pub queued: u64,
}

impl Store {
    /// Opens the store on a thread of its own, migrating its schema, and waits until it is
    /// ready or has failed. Blocks: call it before serving, not from a task.
    pub fn open(location: &Location, options: Options) -> Result<Store, OpenError> {
        let (queue, requests) = mpsc::channel(options.queue.max(1));
        let (ready, opened) = std::sync::mpsc::sync_channel(1);
        let counters = Arc::new(Counters::default());
        let place = location.clone();
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("natter-store".into())
            .spawn(move || {
                let db = match connect(&place) {
                    Ok(db) => {
                        let _ = ready.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                writer::run(db, requests, options.batch.max(1), thread_counters);
            })?;
        opened
            .recv()
            .map_err(|_| OpenError::Database("the store's thread died while opening".into()))??;
        // Reads (history pages) have a connection and thread of their own, so that they
        // never wait behind a batch of writes or the indexing that follows one.
        let reads = if matches!(location, Location::Memory) {
            None
        } else {
            let (tx, rx) = mpsc::channel(options.queue.max(1));
            let (ready, opened) = std::sync::mpsc::sync_channel(1);
            let place = location.clone();
            // Connected on its own thread, as the writer is: a client that blocks must not
            // run on the caller's (perhaps an async runtime's).
            std::thread::Builder::new()
                .name("natter-store-reader".into())
                .spawn(move || {
                    let db: Result<Box<dyn Backend>, OpenError> = match &place {
                        Location::Sqlite(path) => {
                            Sqlite::reader(path).map(|d| Box::new(d) as Box<dyn Backend>)
                        }
                        Location::Postgres(url) => {
                            Postgres::connect(url).map(|d| Box::new(d) as Box<dyn Backend>)
                        }
                        Location::Memory => unreachable!("no reader for memory"),
                    };
                    match db {
                        Ok(db) => {
                            let _ = ready.send(Ok(()));
                            writer::read(db, rx);
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                })?;
            opened.recv().map_err(|_| {
                OpenError::Database("the store's reader died while opening".into())
            })??;
            Some(tx)
        };
        Ok(Store {
            queue,
            reads,
            location: Arc::new(location.clone()),
            counters,
        })
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
        }
    }

    /// Runs a request in the writer's next transaction, waiting for room in the queue.
    async fn request<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let (task, answer) = Task::new(job);
        self.queue
            .send(Box::new(task))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on the reader's connection (the writer's, for a store in memory): it sees
    /// what was committed before it, not what waits in the writer's queue.
    async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(reads) = &self.reads else {
            return self.request(job).await;
        };
        let (task, answer) = Task::new(job);
        reads
            .send(Box::new(task))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until everything queued before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.request(|_| Ok(())).await
    }

    /// Commits everything queued before it, then closes the database (and lets go of its
    /// file) whatever handles remain; requests after it fail with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        if let Some(reads) = &self.reads {
            let (done, closed) = tokio::sync::oneshot::channel();
            if reads.send(Box::new(writer::Stop(done))).await.is_ok() {
                let _ = closed.await;
            }
        }
        let (done, closed) = tokio::sync::oneshot::channel();
        self.queue
            .send(Box::new(writer::Stop(done)))
            .await
            .map_err(|_| StoreError::Closed)?;
        closed.await.map_err(|_| StoreError::Closed)
    }

    /// Creates an account; `false` if the name is already an account's.
    pub async fn create_account(&self, account: Account) -> Result<bool, StoreError> {
        self.request(move |db| db.create_account(&account)).await
    }

    /// The account with this key (the folded name).
    pub async fn account(&self, key: &str) -> Result<Option<Account>, StoreError> {
        let key = key.to_owned();
        self.request(move |db| db.account(&key)).await
    }

    /// Every account's name, as its owner spelled it.
    pub async fn account_names(&self) -> Result<Vec<String>, StoreError> {
        self.request(|db| db.account_names()).await
    }

    /// Changes an account's password hash and revokes its tokens; `false` if there is no
    /// such account.
    pub async fn set_password(&self, key: &str, hash: String) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.request(move |db| {
            let found = db.set_hash(&key, &hash)?;
            db.drop_tokens(&key)?;
            Ok(found)
        })
        .await
    }

    /// Deletes an account, its tokens and its conversations; `false` if there was none.
    pub async fn delete_account(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.request(move |db| {
            db.drop_tokens(&key)?;
            db.delete_dms(&key)?;
            db.delete_account(&key)
        })
        .await
    }

    /// Keeps a token (by its hash) that logs into the account.
    pub async fn add_token(&self, key: &str, token: Vec<u8>, now: i64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.request(move |db| db.add_token(&key, &token, now))
            .await
    }

    /// The account a token (by its hash) logs into, if it is still valid.
    pub async fn token_account(
        &self,
        token: Vec<u8>,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.request(move |db| db.token_account(&token, now)).await
    }

    /// Keeps a room's state (the server's description) under its key, or forgets the room.
    pub async fn put_room(&self, key: String, state: Option<String>) -> Result<(), StoreError> {
        self.request(move |db| db.put_room(&key, state.as_deref()))
            .await
    }

    /// Every kept room's (key, state).
    pub async fn rooms(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.request(|db| db.rooms()).await
    }

    /// Keeps these sessions (a key and the server's description of each) for the next
    /// start, in place of any kept before.
    pub async fn save_sessions(
        &self,
        sessions: Vec<(String, String)>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.request(move |db| db.save_sessions(&sessions, now))
            .await
    }

    /// The sessions kept by the last server as (key, state, when saved), which are deleted:
    /// each is resumed once, or never.
    pub async fn take_sessions(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.request(|db| db.take_sessions()).await
    }

    /// Queues messages for the log without waiting: `done` is called on the writer's thread
    /// once they are committed (or have failed). `waiting` names the account they wait for,
    /// if they are direct messages to an account that is offline ([`Store::take_waiting`]).
    /// If the queue is full ([`StoreError::Busy`]) or the store has stopped, the messages
    /// come back with the error at once and `done` is dropped uncalled.
    pub fn log(
        &self,
        messages: Vec<Logged>,
        waiting: Option<String>,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), (StoreError, Vec<Logged>)> {
        let permit = match self.queue.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(())) => return Err((StoreError::Busy, messages)),
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err((StoreError::Closed, messages));
            }
        };
        permit.send(Box::new(Log {
            messages,
            waiting,
            failed: None,
            done: Box::new(done),
        }));
        Ok(())
    }

    /// Like [`Store::log`], but waits for room in the queue instead of refusing.
    pub async fn log_when_room(
        &self,
        messages: Vec<Logged>,
        waiting: Option<String>,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let work = Log {
            messages,
            waiting,
            failed: None,
            done: Box::new(done),
        };
        self.queue
            .send(Box::new(work))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// The direct messages that waited for the account (by its key) while it was offline,
    /// oldest first; they wait no more.
    pub async fn take_waiting(&self, account: &str) -> Result<Vec<Logged>, StoreError> {
        let account = account.to_owned();
        self.request(move |db| db.take_waiting(&account)).await
    }

    /// A number for this server among the servers sharing its database (0 for one alone),
    /// which its message ids carry so that no two servers make the same id.
    pub async fn node_number(&self) -> Result<u16, StoreError> {
        self.request(|db| db.node_number()).await
    }

    /// The newest message id in the log, so that new ids follow it.
    pub async fn last_message_id(&self) -> Result<Option<i64>, StoreError> {
        self.request(|db| db.last_id()).await
    }

    /// Up to `limit` messages of `target` in `range`, oldest first, as committed: read on
    /// the reader's connection, so it never waits for writes.
    pub async fn history(
        &self,
        target: &str,
        range: Range,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError> {
        let target = target.to_owned();
        self.read(move |db| db.history(&target, range, limit)).await
    }

    /// [`Store::history`] read after every write queued before it is committed, so that it
    /// holds every message handed to [`Store::log`] before the call.
    pub async fn history_after_writes(
        &self,
        target: &str,
        range: Range,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError> {
        let target = target.to_owned();
        self.request(move |db| db.history(&target, range, limit))
            .await
    }

    /// Up to `limit` messages holding every one of `words` (each taken literally), newest
    /// first, said in one of `targets` or in a conversation of the account `dms`.
    pub async fn search(
        &self,
        words: &str,
        targets: Vec<String>,
        dms: Option<String>,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError> {
        let words = words.to_owned();
        self.request(move |db| db.search(&words, &targets, dms.as_deref(), limit))
            .await
    }

    /// The targets among `targets`, and the conversations of the account `dms`, with
    /// messages whose ids are strictly between `after` and `before`, each with the newest
    /// such id, newest first, at most `limit`.
    pub async fn targets(
        &self,
        after: i64,
        before: i64,
        targets: Vec<String>,
        dms: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(move |db| {
            let mut found = db.targets(after, before, &targets, dms.as_deref())?;
            found.sort_by_key(|t| std::cmp::Reverse(t.1));
            found.truncate(limit as usize);
            Ok(found)
        })
        .await
    }

    /// Deletes messages with ids below `before` (see [`crate::MessageId::at`]) and all but
    /// the newest `keep` of each target; how many went.
    pub async fn prune(&self, before: i64, keep: Option<u32>) -> Result<u64, StoreError> {
        self.request(move |db| db.prune(before, keep)).await
    }

    /// Deletes every conversation the account (by its key) is in; how many messages went.
    pub async fn delete_dms(&self, key: &str) -> Result<u64, StoreError> {
        let key = key.to_owned();
        self.request(move |db| db.delete_dms(&key)).await
    }
}

/// Messages for the log, answered through a callback rather than a channel: whoever sent
/// them does not wait, and the answer (an `OK` to the sender) is queued from the writer.
struct Log {
    messages: Vec<Logged>,
    waiting: Option<String>,
    failed: Option<StoreError>,
    done: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

impl Work for Log {
    fn run(&mut self, db: &mut dyn Backend) -> bool {
        match db.append(&self.messages, self.waiting.as_deref()) {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Log { failed, done, .. } = *self;
        done(committed.and(failed.map_or(Ok(()), Err)));
    }
}

fn connect(location: &Location) -> Result<Box<dyn Backend>, OpenError> {
    let mut db: Box<dyn Backend> = match location {
        Location::Sqlite(path) => Box::new(Sqlite::open(path)?),
        Location::Memory => Box::new(Sqlite::memory()?),
        Location::Postgres(url) => Box::new(Postgres::connect(url)?),
    };
    crate::schema::migrate(db.as_mut())?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account {
            key: name.to_ascii_lowercase(),
            name: name.into(),
            hash: "$argon2id$x".into(),
            created: 1,
        }
    }

    /// Holds the writer inside a request until told to go on, so what is queued meanwhile
    /// is known to wait for the next transaction.
    async fn hold(store: &Store) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = tokio::sync::oneshot::channel();
        let held = store.clone();
        let task = tokio::spawn(async move {
            held.request(move |_| {
                let _ = entered.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
            .unwrap();
        });
        inside.await.unwrap();
        (go, task)
    }

    #[tokio::test]
    async fn requests_waiting_together_are_committed_together() {
        let store = Store::open(&Location::Memory, Options::default()).unwrap();
        let (go, held) = hold(&store).await;
        let mut creates = Vec::new();
        for i in 0..100 {
            let s = store.clone();
            creates.push(tokio::spawn(async move {
                s.create_account(account(&format!("u{i}"))).await
            }));
        }
        while store.stats().queued < 100 {
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        held.await.unwrap();
        for c in creates {
            assert_eq!(c.await.unwrap(), Ok(true));
        }
        let stats = store.stats();
        assert_eq!((stats.commits, stats.requests, stats.failures), (2, 101, 0));
        assert_eq!(store.account_names().await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn a_failing_request_undoes_only_itself() {
        let store = Store::open(&Location::Memory, Options::default()).unwrap();
        let (go, held) = hold(&store).await;
        let a = store.create_account(account("a"));
        // The token's account does not exist: the foreign key refuses it.
        let orphan = store.add_token("nobody", vec![1; 32], 5);
        let b = store.create_account(account("b"));
        let ((a, orphan, b), ()) = tokio::join!(async { tokio::join!(a, orphan, b) }, async {
            while store.stats().queued < 3 {
                tokio::task::yield_now().await;
            }
            go.send(()).unwrap();
        });
        held.await.unwrap();
        assert_eq!((a, b), (Ok(true), Ok(true)));
        assert!(
            matches!(orphan, Err(StoreError::Unavailable(_))),
            "{orphan:?}"
        );
        assert_eq!(store.stats().commits, 2);
        assert_eq!(store.account_names().await.unwrap(), ["a", "b"]);
    }
}
