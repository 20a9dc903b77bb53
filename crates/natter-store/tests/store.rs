//! The store against real databases: SQLite files in a temporary directory, SQLite in
//! memory, and a throwaway PostgreSQL server.

use natter_store::throwaway::Postgres;
use natter_store::{Account, Location, OpenError, Options, SCHEMA_VERSION, Store, StoreError};

fn account(name: &str, hash: &str) -> Account {
    Account {
        key: name.to_ascii_lowercase(),
        name: name.into(),
        hash: hash.into(),
        created: 1_700_000_000,
    }
}

/// Each kind of store, fresh.
fn every_backend(dir: &tempfile::TempDir) -> Vec<Location> {
    vec![
        Location::Sqlite(dir.path().join("natter.db")),
        Location::Memory,
        Location::Postgres(Postgres::shared().database().unwrap()),
    ]
}

fn open(location: &Location) -> Store {
    Store::open(location, Options::default()).unwrap()
}

#[tokio::test]
async fn accounts_are_created_read_changed_and_deleted_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        assert_eq!(store.create_account(account("Alice", "h1")).await, Ok(true));
        assert_eq!(
            store.create_account(account("ALICE", "h2")).await,
            Ok(false),
            "{location}: the key is taken whatever the case"
        );
        assert_eq!(store.create_account(account("bob", "h3")).await, Ok(true));
        assert_eq!(store.account_names().await.unwrap(), ["Alice", "bob"]);
        assert_eq!(
            store.account("alice").await.unwrap(),
            Some(account("Alice", "h1"))
        );
        assert_eq!(store.account("carol").await.unwrap(), None);

        store.add_token("alice", vec![7; 32], 10).await.unwrap();
        store.add_token("bob", vec![8; 32], 10).await.unwrap();
        assert_eq!(
            store
                .token_account(vec![7; 32], 11)
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        assert_eq!(store.token_account(vec![9; 32], 11).await.unwrap(), None);

        assert_eq!(store.set_password("alice", "h4".into()).await, Ok(true));
        assert_eq!(store.account("alice").await.unwrap().unwrap().hash, "h4");
        assert_eq!(
            store.token_account(vec![7; 32], 12).await.unwrap(),
            None,
            "{location}: a new password revokes the old tokens"
        );
        assert_eq!(store.set_password("carol", "h".into()).await, Ok(false));

        assert_eq!(store.delete_account("bob").await, Ok(true));
        assert_eq!(store.delete_account("bob").await, Ok(false));
        assert_eq!(store.token_account(vec![8; 32], 12).await.unwrap(), None);
        assert_eq!(store.account_names().await.unwrap(), ["Alice"]);
        let stats = store.stats();
        assert_eq!(stats.failures, 0, "{location}");
        assert!(stats.commits > 0 && stats.requests >= stats.commits);
    }
}

#[tokio::test]
async fn sessions_are_kept_once_and_taken_once_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        assert_eq!(store.take_sessions().await.unwrap(), []);
        let first = vec![("old".to_owned(), "{}".to_owned())];
        store.save_sessions(first, 5).await.unwrap();
        // A later save replaces the earlier one whole.
        let kept = vec![
            ("alice".to_owned(), r#"{"name":"alice"}"#.to_owned()),
            ("bob".to_owned(), r#"{"name":"bob"}"#.to_owned()),
        ];
        store.save_sessions(kept, 9).await.unwrap();
        let taken = store.take_sessions().await.unwrap();
        assert_eq!(
            taken,
            [
                ("alice".into(), r#"{"name":"alice"}"#.into(), 9),
                ("bob".into(), r#"{"name":"bob"}"#.into(), 9)
            ],
            "{location}"
        );
        assert_eq!(store.take_sessions().await.unwrap(), [], "{location}");
    }
}

#[tokio::test]
async fn a_sqlite_file_keeps_its_accounts_and_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Sqlite(dir.path().join("sub/dir/natter.db"));
    {
        let store = open(&location);
        store.create_account(account("alice", "h")).await.unwrap();
    }
    // The writer lets go of the file once its last handle is gone.
    let store = reopen(&location).await;
    assert_eq!(store.account_names().await.unwrap(), ["alice"]);
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("sub/dir/natter.db")).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Opens a file whose previous writer thread may still be closing it.
async fn reopen(location: &Location) -> Store {
    loop {
        match Store::open(location, Options::default()) {
            Ok(store) => return store,
            Err(OpenError::Locked(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Sqlite(dir.path().join("natter.db"));
    let first = open(&location);
    let err = Store::open(&location, Options::default()).unwrap_err();
    assert!(matches!(err, OpenError::Locked(_)), "{err:?}");
    assert!(
        err.to_string().contains("in use by another natter-server"),
        "{err}"
    );
    first.flush().await.unwrap();
}

#[tokio::test]
async fn a_database_of_the_first_schema_is_migrated_and_keeps_its_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let location = Location::Sqlite(path.clone());
    let store = open(&location);
    assert_eq!(store.create_account(account("Alice", "h1")).await, Ok(true));
    store.close().await.unwrap();
    drop(store);
    // As version 1 left it: no sessions table.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DROP TABLE sessions; UPDATE natter_schema SET version = 1")
        .unwrap();
    drop(db);
    let store = reopen(&location).await;
    assert_eq!(
        store.account("alice").await.unwrap(),
        Some(account("Alice", "h1"))
    );
    let kept = vec![("alice".to_owned(), "{}".to_owned())];
    store.save_sessions(kept, 3).await.unwrap();
    assert_eq!(
        store.take_sessions().await.unwrap(),
        [("alice".into(), "{}".into(), 3)]
    );
    store.close().await.unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = db
        .query_row("SELECT MAX(version) FROM natter_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_database_from_a_newer_natter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    drop(open(&Location::Sqlite(path.clone())));
    let newer = SCHEMA_VERSION + 1;
    loop {
        // Waits for the writer thread to close the file; SQLite's own lock says so.
        let db = rusqlite::Connection::open(&path).unwrap();
        if db
            .execute("UPDATE natter_schema SET version = ?1", [newer])
            .is_ok()
        {
            break;
        }
    }
    let err = reopen_err(&Location::Sqlite(path)).await;
    assert!(
        matches!(err, OpenError::Newer { found, known } if found == newer && known == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("newer than this natter-server"),
        "{err}"
    );

    let url = Postgres::shared().database().unwrap();
    drop(open(&Location::Postgres(url.clone())));
    let pg = Location::Postgres(url.clone());
    std::thread::spawn(move || {
        let mut c = postgres_client(&url);
        c.execute("UPDATE natter_schema SET version = $1", &[&newer])
            .unwrap();
    })
    .join()
    .unwrap();
    let err = Store::open(&pg, Options::default()).unwrap_err();
    assert!(matches!(err, OpenError::Newer { .. }), "{err:?}");
}

async fn reopen_err(location: &Location) -> OpenError {
    loop {
        match Store::open(location, Options::default()) {
            Err(OpenError::Locked(_)) => tokio::task::yield_now().await,
            Err(e) => return e,
            Ok(_) => panic!("a newer database was opened"),
        }
    }
}

fn postgres_client(url: &str) -> postgres::Client {
    url.parse::<postgres::Config>()
        .unwrap()
        .connect(postgres::NoTls)
        .unwrap()
}

#[tokio::test]
async fn two_servers_share_one_postgres_database() {
    let url = Postgres::shared().database().unwrap();
    let pg = Location::Postgres(url);
    // Both migrate at once: the schema lock makes one wait for the other.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| open(&pg));
        let b = s.spawn(|| open(&pg));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.create_account(account("alice", "h")).await, Ok(true));
    assert_eq!(b.create_account(account("Alice", "h")).await, Ok(false));
    assert_eq!(b.account("alice").await.unwrap().unwrap().name, "alice");
}

#[tokio::test]
async fn a_lost_postgres_server_fails_requests_and_is_reconnected_when_back() {
    let pg = Postgres::start().unwrap();
    let store = open(&Location::Postgres(pg.database().unwrap()));
    assert_eq!(store.create_account(account("alice", "h")).await, Ok(true));
    pg.stop().unwrap();
    let err = store.create_account(account("bob", "h")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(store.stats().failures, 1);
    pg.resume().unwrap();
    assert_eq!(store.create_account(account("bob", "h")).await, Ok(true));
    assert_eq!(store.account_names().await.unwrap(), ["alice", "bob"]);
}

#[tokio::test]
async fn a_broken_sqlite_file_fails_requests_without_stopping_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let store = open(&Location::Sqlite(path.clone()));
    store.create_account(account("alice", "h")).await.unwrap();
    // Another program drops the table under the server's feet.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DROP TABLE tokens; DROP TABLE accounts")
        .unwrap();
    let err = store.create_account(account("bob", "h")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    store.flush().await.unwrap();
}
