//! The seam between the writer and a database: the statements natter runs, each backend
//! in its own dialect.

use crate::account::Account;
use crate::error::StoreError;
use crate::message::{Logged, Range};

/// Which SQL dialect a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// One open database connection, used by one thread at a time.
pub(crate) trait Backend: Send {
    /// Its dialect, for the few statements that differ.
    fn dialect(&self) -> Dialect;
    /// Runs statements that return nothing (transaction control, schema changes).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Runs a query whose answer is one integer, or none.
    fn integer(&mut self, sql: &str) -> Result<Option<i64>, StoreError>;
    /// Serialises schema changes between servers sharing the database, until the transaction
    /// ends.
    fn lock_schema(&mut self) -> Result<(), StoreError>;
    /// Reconnects if the connection was lost, before a transaction; errors show in the
    /// transaction itself.
    fn heal(&mut self) {}

    /// Adds an account; `false` if its key is taken.
    fn create_account(&mut self, account: &Account) -> Result<bool, StoreError>;
    /// The account with this key.
    fn account(&mut self, key: &str) -> Result<Option<Account>, StoreError>;
    /// Every account's name as spelled, for the cache of reserved names.
    fn account_names(&mut self) -> Result<Vec<String>, StoreError>;
    /// Replaces an account's password hash; `false` if there is no such account.
    fn set_hash(&mut self, key: &str, hash: &str) -> Result<bool, StoreError>;
    /// Removes an account and its tokens; `false` if there was none.
    fn delete_account(&mut self, key: &str) -> Result<bool, StoreError>;
    /// Keeps a token's hash for an account.
    fn add_token(&mut self, key: &str, token: &[u8], now: i64) -> Result<(), StoreError>;
    /// The account a token's hash belongs to, marking the token used now.
    fn token_account(&mut self, token: &[u8], now: i64) -> Result<Option<String>, StoreError>;
    /// Revokes every token of an account; how many there were.
    fn drop_tokens(&mut self, key: &str) -> Result<u64, StoreError>;
    /// Replaces the kept sessions with these (key, state) pairs.
    fn save_sessions(&mut self, sessions: &[(String, String)], now: i64) -> Result<(), StoreError>;
    /// The kept sessions' (key, state, saved) rows, deleting them.
    fn take_sessions(&mut self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// Keeps a room's state under its key, or forgets the room (`None`).
    fn put_room(&mut self, key: &str, state: Option<&str>) -> Result<(), StoreError>;
    /// Every kept room's (key, state).
    fn rooms(&mut self) -> Result<Vec<(String, String)>, StoreError>;

    /// A number for this server among those sharing the database, for its message ids:
    /// a server alone on its database is number 0.
    fn node_number(&mut self) -> Result<u16, StoreError> {
        Ok(0)
    }
    /// Adds messages to the log, and, if `waiting` names an account, notes them as waiting
    /// for it.
    fn append(&mut self, messages: &[Logged], waiting: Option<&str>) -> Result<(), StoreError>;
    /// Indexes for search up to `max` messages written since the last time; how many. A
    /// backend that indexes as it writes has none.
    fn index_pending(&mut self, _max: u32) -> Result<u32, StoreError> {
        Ok(0)
    }
    /// The messages waiting for the account, oldest first, no longer waiting.
    fn take_waiting(&mut self, account: &str) -> Result<Vec<Logged>, StoreError>;
    /// The newest message id in the log, if any.
    fn last_id(&mut self) -> Result<Option<i64>, StoreError> {
        self.integer("SELECT MAX(id) FROM messages")
    }
    /// Up to `limit` messages of `target` in `range`, oldest first.
    fn history(
        &mut self,
        target: &str,
        range: Range,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError>;
    /// Up to `limit` messages holding every one of `words`, newest first, said in one of
    /// `targets` or in a conversation of the account `dms`.
    fn search(
        &mut self,
        words: &str,
        targets: &[String],
        dms: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError>;
    /// The targets among `targets`, and the conversations of the account `dms`, with
    /// messages whose ids are strictly between `after` and `before`, each with the newest
    /// such id; in no order.
    fn targets(
        &mut self,
        after: i64,
        before: i64,
        targets: &[String],
        dms: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Deletes messages with ids below `before`, and all but the newest `keep` of each
    /// target; how many went.
    fn prune(&mut self, before: i64, keep: Option<u32>) -> Result<u64, StoreError>;
    /// Deletes every conversation the account (by its key) is in; how many messages went.
    fn delete_dms(&mut self, key: &str) -> Result<u64, StoreError>;
}
