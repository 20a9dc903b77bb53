//! The database's tables, as a list of versioned migrations run at start.

use crate::backend::{Backend, Dialect};
use crate::error::{OpenError, StoreError};

/// One step of the schema: the statements that take a database from the version before it
/// to its own, in each dialect.
struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every step, oldest first. A released step is never edited: changes are new steps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: "
        CREATE TABLE accounts (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL,
            created INTEGER NOT NULL
        );
        CREATE TABLE tokens (
            hash BLOB PRIMARY KEY,
            account TEXT NOT NULL REFERENCES accounts (key) ON DELETE CASCADE,
            created INTEGER NOT NULL,
            used INTEGER NOT NULL
        );
        CREATE INDEX tokens_by_account ON tokens (account);
    ",
        postgres: "
        CREATE TABLE accounts (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL,
            created BIGINT NOT NULL
        );
        CREATE TABLE tokens (
            hash BYTEA PRIMARY KEY,
            account TEXT NOT NULL REFERENCES accounts (key) ON DELETE CASCADE,
            created BIGINT NOT NULL,
            used BIGINT NOT NULL
        );
        CREATE INDEX tokens_by_account ON tokens (account);
    ",
    },
    Migration {
        version: 2,
        // Sessions kept over a restart, to be resumed: one row per user, its state as JSON
        // (the server's business), taken and deleted at the next start.
        sqlite: "
        CREATE TABLE sessions (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved INTEGER NOT NULL
        );
    ",
        postgres: "
        CREATE TABLE sessions (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            saved BIGINT NOT NULL
        );
    ",
    },
    Migration {
        version: 3,
        // The message log. The id sorts in the order messages were sent and holds their
        // time (`MessageId`); a target is `*`, a folded room name or two accounts' keys.
        // Words are indexed for search: in SQLite by FTS5 over the table's own text, off
        // the path of the writes (a new message is noted in `unindexed`, which the writer
        // indexes when it is idle and before any search: `Backend::index_pending`), with
        // no positions kept (a search is every word, not phrases); in PostgreSQL by a
        // generated tsvector.
        sqlite: "
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            target TEXT NOT NULL,
            sender TEXT NOT NULL,
            account TEXT,
            text TEXT NOT NULL
        );
        CREATE INDEX messages_by_target ON messages (target, id);
        CREATE VIRTUAL TABLE messages_text USING fts5 (
            text, content = 'messages', content_rowid = 'id', detail = none, columnsize = 0
        );
        CREATE TABLE unindexed (id INTEGER PRIMARY KEY);
        CREATE TRIGGER messages_noted AFTER INSERT ON messages BEGIN
            INSERT INTO unindexed (id) VALUES (new.id);
        END;
        CREATE TRIGGER messages_forgotten AFTER DELETE ON messages BEGIN
            INSERT INTO messages_text (messages_text, rowid, text)
                SELECT 'delete', old.id, old.text
                WHERE NOT EXISTS (SELECT 1 FROM unindexed WHERE id = old.id);
            DELETE FROM unindexed WHERE id = old.id;
        END;
    ",
        postgres: "
        CREATE TABLE messages (
            id BIGINT PRIMARY KEY,
            target TEXT NOT NULL,
            sender TEXT NOT NULL,
            account TEXT,
            text TEXT NOT NULL,
            words TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
        );
        CREATE INDEX messages_by_target ON messages (target, id);
        CREATE INDEX messages_by_word ON messages USING GIN (words);
        CREATE SEQUENCE natter_nodes;
    ",
    },
    Migration {
        version: 4,
        // Direct messages sent to an account while it was offline, until it next logs in.
        sqlite: "
        CREATE TABLE waiting (
            account TEXT NOT NULL,
            id INTEGER NOT NULL,
            PRIMARY KEY (account, id)
        ) WITHOUT ROWID;
    ",
        postgres: "
        CREATE TABLE waiting (
            account TEXT NOT NULL,
            id BIGINT NOT NULL,
            PRIMARY KEY (account, id)
        );
    ",
    },
    Migration {
        version: 5,
        // Rooms that stay while empty and across restarts (those with an account among
        // their operators): one row per room, its state as JSON (the server's business).
        sqlite: "
        CREATE TABLE rooms (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL
        );
    ",
        postgres: "
        CREATE TABLE rooms (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL
        );
    ",
    },
];

/// The newest schema this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Brings the database up to [`LATEST`] in one transaction, or refuses a newer one.
pub(crate) fn migrate(db: &mut dyn Backend) -> Result<(), OpenError> {
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.batch(begin).map_err(database)?;
    let result = steps(db);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = db.batch(end).map_err(database);
    result.and(ended)
}

fn steps(db: &mut dyn Backend) -> Result<(), OpenError> {
    db.lock_schema().map_err(database)?;
    db.batch("CREATE TABLE IF NOT EXISTS natter_schema (version BIGINT NOT NULL)")
        .map_err(database)?;
    let found = db
        .integer("SELECT MAX(version) FROM natter_schema")
        .map_err(database)?
        .unwrap_or(0);
    if found > LATEST {
        return Err(OpenError::Newer {
            found,
            known: LATEST,
        });
    }
    for step in MIGRATIONS.iter().filter(|m| m.version > found) {
        let sql = match db.dialect() {
            Dialect::Sqlite => step.sqlite,
            Dialect::Postgres => step.postgres,
        };
        db.batch(sql).map_err(database)?;
        tracing::info!(version = step.version, "store schema migrated");
    }
    db.batch(&format!(
        "DELETE FROM natter_schema; INSERT INTO natter_schema (version) VALUES ({})",
        LATEST.max(found)
    ))
    .map_err(database)
}

fn database(e: StoreError) -> OpenError {
    OpenError::Database(e.to_string())
}
