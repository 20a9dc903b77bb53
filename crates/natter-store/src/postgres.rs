//! The PostgreSQL backend, for servers that share their accounts (a cluster).

use crate::account::Account;
use crate::backend::{Backend, Dialect};
use crate::error::{OpenError, StoreError, describe};
use crate::message::{Logged, Range};
use postgres::{Client, NoTls};

/// One connection to the database.
pub(crate) struct Postgres {
    client: Client,
    config: postgres::Config,
}

impl Postgres {
    /// Connects to the database at the URL.
    pub(crate) fn connect(url: &str) -> Result<Postgres, OpenError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| OpenError::Database(describe(&e)))?;
        let client = config
            .connect(NoTls)
            .map_err(|e| OpenError::Database(describe(&e)))?;
        Ok(Postgres { client, config })
    }
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn integer(&mut self, sql: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client
            .query_opt(sql, &[])?
            .and_then(|row| row.get::<_, Option<i64>>(0)))
    }

    fn heal(&mut self) {
        if self.client.is_closed() {
            match self.config.connect(NoTls) {
                Ok(client) => {
                    self.client = client;
                    tracing::info!("store reconnected to PostgreSQL");
                }
                Err(e) => tracing::warn!(error = %e, "store cannot reconnect to PostgreSQL"),
            }
        }
    }

    fn lock_schema(&mut self) -> Result<(), StoreError> {
        // Servers of a cluster starting together must not migrate at once; the number is
        // natter's own advisory lock, released when the transaction ends.
        self.client
            .batch_execute("SELECT pg_advisory_xact_lock(7061372814)")?;
        Ok(())
    }

    fn create_account(&mut self, a: &Account) -> Result<bool, StoreError> {
        let n = self.client.execute(
            "INSERT INTO accounts (key, name, hash, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO NOTHING",
            &[&a.key, &a.name, &a.hash, &a.created],
        )?;
        Ok(n == 1)
    }

    fn account(&mut self, key: &str) -> Result<Option<Account>, StoreError> {
        let row = self.client.query_opt(
            "SELECT key, name, hash, created FROM accounts WHERE key = $1",
            &[&key],
        )?;
        Ok(row.map(|r| Account {
            key: r.get(0),
            name: r.get(1),
            hash: r.get(2),
            created: r.get(3),
        }))
    }

    fn account_names(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client
            .query("SELECT name FROM accounts ORDER BY key", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn set_hash(&mut self, key: &str, hash: &str) -> Result<bool, StoreError> {
        let n = self.client.execute(
            "UPDATE accounts SET hash = $2 WHERE key = $1",
            &[&key, &hash],
        )?;
        Ok(n == 1)
    }

    fn delete_account(&mut self, key: &str) -> Result<bool, StoreError> {
        let n = self
            .client
            .execute("DELETE FROM accounts WHERE key = $1", &[&key])?;
        Ok(n == 1)
    }

    fn add_token(&mut self, key: &str, token: &[u8], now: i64) -> Result<(), StoreError> {
        self.client.execute(
            "INSERT INTO tokens (hash, account, created, used) VALUES ($1, $2, $3, $3)",
            &[&token, &key, &now],
        )?;
        Ok(())
    }

    fn token_account(&mut self, token: &[u8], now: i64) -> Result<Option<String>, StoreError> {
        let row = self.client.query_opt(
            "UPDATE tokens SET used = $2 WHERE hash = $1 RETURNING account",
            &[&token, &now],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn drop_tokens(&mut self, key: &str) -> Result<u64, StoreError> {
        Ok(self
            .client
            .execute("DELETE FROM tokens WHERE account = $1", &[&key])?)
    }

    fn save_sessions(&mut self, sessions: &[(String, String)], now: i64) -> Result<(), StoreError> {
        self.client.execute("DELETE FROM sessions", &[])?;
        let stmt = self
            .client
            .prepare("INSERT INTO sessions (key, state, saved) VALUES ($1, $2, $3)")?;
        for (key, state) in sessions {
            self.client.execute(&stmt, &[key, state, &now])?;
        }
        Ok(())
    }

    fn put_room(&mut self, key: &str, state: Option<&str>) -> Result<(), StoreError> {
        match state {
            Some(state) => self.client.execute(
                "INSERT INTO rooms (key, state) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                &[&key, &state],
            )?,
            None => self
                .client
                .execute("DELETE FROM rooms WHERE key = $1", &[&key])?,
        };
        Ok(())
    }

    fn rooms(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .client
            .query("SELECT key, state FROM rooms ORDER BY key", &[])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn take_sessions(&mut self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = self
            .client
            .query("DELETE FROM sessions RETURNING key, state, saved", &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn node_number(&mut self) -> Result<u16, StoreError> {
        // Numbers go round: two servers share one only if 1,024 others started between them.
        let n = self
            .integer("SELECT nextval('natter_nodes') % 1024")?
            .unwrap_or(0);
        Ok(n as u16)
    }

    fn append(&mut self, messages: &[Logged], waiting: Option<&str>) -> Result<(), StoreError> {
        // One statement for the whole batch: a round trip per message would cap the writer
        // at the server's round trips a second.
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let targets: Vec<&str> = messages.iter().map(|m| m.target.as_str()).collect();
        let senders: Vec<&str> = messages.iter().map(|m| m.sender.as_str()).collect();
        let accounts: Vec<Option<&str>> = messages.iter().map(|m| m.account.as_deref()).collect();
        let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
        self.client.execute(
            "INSERT INTO messages (id, target, sender, account, text) \
             SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
            &[&ids, &targets, &senders, &accounts, &texts],
        )?;
        if let Some(account) = waiting {
            self.client.execute(
                "INSERT INTO waiting (account, id) SELECT $1, unnest($2::BIGINT[])",
                &[&account, &ids],
            )?;
        }
        Ok(())
    }

    fn take_waiting(&mut self, account: &str) -> Result<Vec<Logged>, StoreError> {
        let rows = self.client.query(
            "WITH taken AS (DELETE FROM waiting WHERE account = $1 RETURNING id) \
             SELECT m.id, m.target, m.sender, m.account, m.text FROM taken \
             JOIN messages m ON m.id = taken.id ORDER BY m.id",
            &[&account],
        )?;
        Ok(rows.iter().map(row).collect())
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
             WHERE target = $1 AND id > $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        } else {
            "SELECT id, target, sender, account, text FROM messages \
             WHERE target = $1 AND id > $2 AND id < $3 ORDER BY id ASC LIMIT $4"
        };
        let rows = self
            .client
            .query(sql, &[&target, &after, &before, &i64::from(limit)])?;
        let mut page: Vec<Logged> = rows.iter().map(row).collect();
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
        if words.split_whitespace().next().is_none() {
            return Ok(Vec::new());
        }
        // The matches are taken from the word index first (MATERIALIZED), then sorted: left
        // to itself, the planner walks the whole table newest first for the LIMIT, testing
        // every row's words, which takes a second at a million messages when the words are
        // rare (as searched words are).
        let rows = self.client.query(
            "WITH hits AS MATERIALIZED (SELECT id, target, sender, account, text FROM messages \
                 WHERE words @@ plainto_tsquery('simple', $1)) \
             SELECT id, target, sender, account, text FROM hits \
             WHERE target = ANY($2) OR ($3::TEXT IS NOT NULL \
                  AND target >= '@' AND target < 'A' \
                  AND strpos(' ' || target || ' ', ' @' || $3 || ' ') > 0) \
             ORDER BY id DESC LIMIT $4",
            &[&words, &targets, &dms, &i64::from(limit)],
        )?;
        Ok(rows.iter().map(row).collect())
    }

    fn targets(
        &mut self,
        after: i64,
        before: i64,
        targets: &[String],
        dms: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        for t in targets {
            let row = self.client.query_one(
                "SELECT MAX(id) FROM messages WHERE target = $1 AND id > $2 AND id < $3",
                &[t, &after, &before],
            )?;
            if let Some(id) = row.get::<_, Option<i64>>(0) {
                found.push((t.clone(), id));
            }
        }
        if let Some(key) = dms {
            // Conversations' targets start with '@': the index's range of them, no more.
            let rows = self.client.query(
                "SELECT target, MAX(id) FROM messages WHERE target >= '@' AND target < 'A' \
                 AND id > $1 AND id < $2 \
                 AND strpos(' ' || target || ' ', ' @' || $3::TEXT || ' ') > 0 GROUP BY target",
                &[&after, &before, &key],
            )?;
            found.extend(rows.iter().map(|r| (r.get(0), r.get(1))));
        }
        Ok(found)
    }

    fn prune(&mut self, before: i64, keep: Option<u32>) -> Result<u64, StoreError> {
        let mut gone = self
            .client
            .execute("DELETE FROM messages WHERE id < $1", &[&before])?;
        if let Some(keep) = keep {
            gone += self.client.execute(
                "DELETE FROM messages m USING (SELECT id, row_number() OVER \
                 (PARTITION BY target ORDER BY id DESC) AS n FROM messages) r \
                 WHERE m.id = r.id AND r.n > $1",
                &[&i64::from(keep)],
            )?;
        }
        Ok(gone)
    }

    fn delete_dms(&mut self, key: &str) -> Result<u64, StoreError> {
        self.client
            .execute("DELETE FROM waiting WHERE account = $1", &[&key])?;
        Ok(self.client.execute(
            "DELETE FROM messages WHERE target >= '@' AND target < 'A' \
             AND strpos(' ' || target || ' ', ' @' || $1 || ' ') > 0",
            &[&key],
        )?)
    }
}

/// A message from a row of (id, target, sender, account, text).
fn row(r: &postgres::Row) -> Logged {
    Logged {
        id: r.get(0),
        target: r.get(1),
        sender: r.get(2),
        account: r.get(3),
        text: r.get(4),
    }
}
