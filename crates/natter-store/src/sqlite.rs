//! The SQLite backend: a file in WAL mode, locked for one server, or a database in memory.

use crate::account::Account;
use crate::backend::{Backend, Dialect};
use crate::error::{OpenError, StoreError};
use crate::message::{Logged, Range, dm_includes, fts5_query};
use rusqlite::{Connection, OptionalExtension, params};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// A SQLite connection and, for a file, the lock that keeps other servers out.
pub(crate) struct Sqlite {
    // Declared first so it closes before the lock's descriptor: closing any descriptor of
    // the file drops SQLite's own POSIX locks on it.
    conn: Connection,
    _lock: Option<File>,
}

impl Sqlite {
    /// Opens (creating if need be) and locks the database file.
    pub(crate) fn open(path: &Path) -> Result<Sqlite, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| OpenError::File(path.to_owned(), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(OpenError::Locked(path.to_owned())),
            Err(TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        let conn = Connection::open(path).map_err(|e| OpenError::Database(e.to_string()))?;
        // WAL: readers never wait for the writer. FULL: a commit is on disk before it is
        // acknowledged, so power loss keeps what was answered OK; group commit pays for it.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.pragma_update(None, "foreign_keys", true))
            .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .map_err(|e| OpenError::Database(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| OpenError::Database(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Database(format!(
                "{} cannot use write-ahead logging (journal mode {mode})",
                path.display()
            )));
        }
        Ok(Sqlite {
            conn,
            _lock: Some(lock),
        })
    }

    /// A second connection to the writer's file, for reads only: in WAL mode it reads the
    /// last commit while the writer writes the next.
    pub(crate) fn reader(path: &Path) -> Result<Sqlite, OpenError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| OpenError::Database(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| OpenError::Database(e.to_string()))?;
        Ok(Sqlite { conn, _lock: None })
    }

    /// A database in memory, gone with the process.
    pub(crate) fn memory() -> Result<Sqlite, OpenError> {
        let conn = Connection::open_in_memory().map_err(|e| OpenError::Database(e.to_string()))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| OpenError::Database(e.to_string()))?;
        Ok(Sqlite { conn, _lock: None })
    }
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn integer(&mut self, sql: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten())
    }

    fn lock_schema(&mut self) -> Result<(), StoreError> {
        // `BEGIN IMMEDIATE` already holds the write lock, and the file lock keeps other
        // servers out.
        Ok(())
    }

    fn create_account(&mut self, a: &Account) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO accounts (key, name, hash, created) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key) DO NOTHING",
            params![a.key, a.name, a.hash, a.created],
        )?;
        Ok(n == 1)
    }

    fn account(&mut self, key: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT key, name, hash, created FROM accounts WHERE key = ?1")?
            .query_row([key], |r| {
                Ok(Account {
                    key: r.get(0)?,
                    name: r.get(1)?,
                    hash: r.get(2)?,
                    created: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn account_names(&mut self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM accounts ORDER BY key")?;
        let names = stmt.query_map([], |r| r.get(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE accounts SET hash = ?2 WHERE key = ?1",
            params![key, hash],
        )?;
        Ok(n == 1)
    }

    fn delete_account(&mut self, key: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM accounts WHERE key = ?1", [key])?;
        Ok(n == 1)
    }

    fn add_token(&mut self, key: &str, token: &[u8], now: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tokens (hash, account, created, used) VALUES (?1, ?2, ?3, ?3)",
            params![token, key, now],
        )?;
        Ok(())
    }

    fn token_account(&mut self, token: &[u8], now: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("UPDATE tokens SET used = ?2 WHERE hash = ?1 RETURNING account")?
            .query_row(params![token, now], |r| r.get(0))
            .optional()?)
    }

    fn drop_tokens(&mut self, key: &str) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM tokens WHERE account = ?1", [key])?;
        Ok(n as u64)
    }

    fn save_sessions(&mut self, sessions: &[(String, String)], now: i64) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM sessions", [])?;
        let mut stmt = self
            .conn
            .prepare("INSERT INTO sessions (key, state, saved) VALUES (?1, ?2, ?3)")?;
        for (key, state) in sessions {
            stmt.execute(params![key, state, now])?;
        }
        Ok(())
    }

    fn put_room(&mut self, key: &str, state: Option<&str>) -> Result<(), StoreError> {
        match state {
            Some(state) => self.conn.execute(
                "INSERT INTO rooms (key, state) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                params![key, state],
            )?,
            None => self
                .conn
                .execute("DELETE FROM rooms WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    fn rooms(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, state FROM rooms ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn take_sessions(&mut self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = {
            let mut stmt = self
                .conn
                .prepare("SELECT key, state, saved FROM sessions ORDER BY key")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        self.conn.execute("DELETE FROM sessions", [])?;
        Ok(rows)
    }

    fn append(&mut self, messages: &[Logged], waiting: Option<&str>) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO messages (id, target, sender, account, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for m in messages {
            stmt.execute(params![m.id, m.target, m.sender, m.account, m.text])?;
        }
        if let Some(account) = waiting {
            let mut stmt = self
                .conn
                .prepare_cached("INSERT INTO waiting (account, id) VALUES (?1, ?2)")?;
            for m in messages {
                stmt.execute(params![account, m.id])?;
            }
        }
        Ok(())
    }

    fn index_pending(&mut self, max: u32) -> Result<u32, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO messages_text (rowid, text) SELECT m.id, m.text FROM \
             (SELECT id FROM unindexed ORDER BY id LIMIT ?1) u JOIN messages m ON m.id = u.id",
            )?
            .execute([max])?;
        self.conn
            .prepare_cached(
                "DELETE FROM unindexed WHERE id IN (SELECT id FROM unindexed ORDER BY id LIMIT ?1)",
            )?
            .execute([max])?;
        Ok(n as u32)
    }

    fn take_waiting(&mut self, account: &str) -> Result<Vec<Logged>, StoreError> {
        let found = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT m.id, m.target, m.sender, m.account, m.text FROM waiting w \
                 JOIN messages m ON m.id = w.id WHERE w.account = ?1 ORDER BY w.id",
            )?;
            let rows = stmt.query_map([account], row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        self.conn
            .execute("DELETE FROM waiting WHERE account = ?1", [account])?;
        Ok(found)
    }

    fn history(
        &mut self,
        target: &str,
        range: Range,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError> {
        let (after, before, newest) = range.bounds();
        let sql = if newest {
            "SELECT id, target, sender, account, text FROM messages \
             WHERE target = ?1 AND id > ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"
        } else {
            "SELECT id, target, sender, account, text FROM messages \
             WHERE target = ?1 AND id > ?2 AND id < ?3 ORDER BY id ASC LIMIT ?4"
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![target, after, before, limit], row)?;
        let mut page = rows.collect::<Result<Vec<_>, _>>()?;
        if newest {
            page.reverse();
        }
        Ok(page)
    }

    fn search(
        &mut self,
        words: &str,
        targets: &[String],
        dms: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Logged>, StoreError> {
        let Some(query) = fts5_query(words) else {
            return Ok(Vec::new());
        };
        // Everything written so far is searched: what the writer has not indexed yet is
        // indexed first.
        while self.index_pending(4096)? > 0 {}
        // Newest first straight from the index, which walks its matches in id order; what
        // the asker may not see is skipped here, and the walk stops at the limit.
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.id, m.target, m.sender, m.account, m.text \
             FROM messages_text JOIN messages m ON m.id = messages_text.rowid \
             WHERE messages_text MATCH ?1 ORDER BY messages_text.rowid DESC",
        )?;
        let mut rows = stmt.query([query])?;
        let mut found = Vec::new();
        while found.len() < limit as usize {
            let Some(r) = rows.next()? else { break };
            let m = row(r)?;
            let visible =
                targets.contains(&m.target) || dms.is_some_and(|key| dm_includes(&m.target, key));
            if visible {
                found.push(m);
            }
        }
        Ok(found)
    }

    fn targets(
        &mut self,
        after: i64,
        before: i64,
        targets: &[String],
        dms: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT MAX(id) FROM messages WHERE target = ?1 AND id > ?2 AND id < ?3",
            )?;
            for t in targets {
                if let Some(id) = stmt.query_row(params![t, after, before], |r| r.get(0))? {
                    found.push((t.clone(), id));
                }
            }
        }
        if let Some(key) = dms {
            // Conversations' targets start with '@': the index's range of them, no more.
            let mut stmt = self.conn.prepare_cached(
                "SELECT target, MAX(id) FROM messages WHERE target >= '@' AND target < 'A' \
                 AND id > ?1 AND id < ?2 GROUP BY target",
            )?;
            let rows = stmt.query_map(params![after, before], |r| Ok((r.get(0)?, r.get(1)?)))?;
            for r in rows {
                let (t, id): (String, i64) = r?;
                if dm_includes(&t, key) {
                    found.push((t, id));
                }
            }
        }
        Ok(found)
    }

    fn prune(&mut self, before: i64, keep: Option<u32>) -> Result<u64, StoreError> {
        let mut gone = self
            .conn
            .execute("DELETE FROM messages WHERE id < ?1", [before])? as u64;
        if let Some(keep) = keep {
            let targets: Vec<String> = {
                let mut stmt = self.conn.prepare("SELECT DISTINCT target FROM messages")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut stmt = self.conn.prepare_cached(
                "DELETE FROM messages WHERE target = ?1 AND id < (SELECT id FROM messages \
                 WHERE target = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?;
            for t in targets {
                gone += stmt.execute(params![t, keep.saturating_sub(1)])? as u64;
            }
        }
        Ok(gone)
    }

    fn delete_dms(&mut self, key: &str) -> Result<u64, StoreError> {
        self.conn
            .execute("DELETE FROM waiting WHERE account = ?1", [key])?;
        // Conversations' targets are the ones from '@' up to 'A'.
        let n = self.conn.execute(
            "DELETE FROM messages WHERE target >= '@' AND target < 'A' \
             AND instr(' ' || target || ' ', ' @' || ?1 || ' ') > 0",
            [key],
        )?;
        Ok(n as u64)
    }
}

/// A message from a row of (id, target, sender, account, text).
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Logged> {
    Ok(Logged {
        id: r.get(0)?,
        target: r.get(1)?,
        sender: r.get(2)?,
        account: r.get(3)?,
        text: r.get(4)?,
    })
}
