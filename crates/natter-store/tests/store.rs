//! The store against real databases: SQLite files in a temporary directory, SQLite in
//! memory, and a throwaway PostgreSQL server.

use natter_store::throwaway::Postgres;
use natter_store::{
    Account, EVERYONE, Location, Logged, MessageId, OpenError, Options, Range, SCHEMA_VERSION,
    Store, StoreError, dm_target,
};

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
async fn rooms_are_kept_changed_and_forgotten_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        assert_eq!(store.rooms().await.unwrap(), [], "{location}");
        let put = |key: &str, state: Option<&str>| {
            store.put_room(key.to_owned(), state.map(str::to_owned))
        };
        put("#rust", Some("one")).await.unwrap();
        put("#go", Some("two")).await.unwrap();
        put("#rust", Some("three")).await.unwrap();
        put("#none", None).await.unwrap();
        assert_eq!(
            store.rooms().await.unwrap(),
            [
                ("#go".to_owned(), "two".to_owned()),
                ("#rust".to_owned(), "three".to_owned())
            ],
            "{location}"
        );
        put("#go", None).await.unwrap();
        if matches!(location, Location::Memory) {
            continue;
        }
        store.close().await.unwrap();
        drop(store);
        let store = reopen(&location).await;
        assert_eq!(
            store.rooms().await.unwrap(),
            [("#rust".to_owned(), "three".to_owned())],
            "{location}"
        );
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
    // As version 1 left it: no sessions, no message log.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "DROP TABLE sessions; DROP TABLE messages_text; DROP TABLE messages; DROP TABLE waiting; \
         DROP TABLE unindexed; DROP TABLE rooms; \
         UPDATE natter_schema SET version = 1",
    )
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
    let store = reopen(&location).await;
    log(
        &store,
        vec![said(1, EVERYONE, "alice", "after the migration")],
    )
    .await;
    assert_eq!(
        store
            .history(EVERYONE, Range::Latest, 10)
            .await
            .unwrap()
            .len(),
        1
    );
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
async fn servers_sharing_a_database_get_different_node_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open(&Location::Sqlite(dir.path().join("natter.db")));
    assert_eq!(sqlite.node_number().await, Ok(0));
    let url = Postgres::shared().database().unwrap();
    let (a, b) = (
        open(&Location::Postgres(url.clone())),
        open(&Location::Postgres(url)),
    );
    let (a, b) = (
        a.node_number().await.unwrap(),
        b.node_number().await.unwrap(),
    );
    assert_ne!(a, b);
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

fn said(id: i64, target: &str, sender: &str, text: &str) -> Logged {
    Logged {
        id,
        target: target.into(),
        sender: sender.into(),
        account: None,
        text: text.into(),
    }
}

/// Logs messages and waits until they are committed.
async fn log(store: &Store, messages: Vec<Logged>) {
    log_waiting(store, messages, None).await;
}

/// Logs messages waiting for an account (or none) and waits until they are committed.
async fn log_waiting(store: &Store, messages: Vec<Logged>, waiting: Option<&str>) {
    let (done, committed) = tokio::sync::oneshot::channel();
    store
        .log(messages, waiting.map(str::to_owned), move |r| {
            let _ = done.send(r);
        })
        .unwrap();
    committed.await.unwrap().unwrap();
}

fn ids(page: &[Logged]) -> Vec<i64> {
    page.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn history_pages_back_and_forth_in_order_without_gaps_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        let mut batch = Vec::new();
        for i in 1..=250 {
            let target = if i % 2 == 0 { EVERYONE } else { "#rust" };
            batch.push(said(i, target, "alice", &format!("message {i}")));
        }
        log(&store, batch).await;
        assert_eq!(
            store.last_message_id().await.unwrap(),
            Some(250),
            "{location}"
        );

        let latest = store.history("#rust", Range::Latest, 10).await.unwrap();
        assert_eq!(ids(&latest), (231..=249).step_by(2).collect::<Vec<_>>());
        assert_eq!(latest[9].text, "message 249");
        // Paging back from the oldest seen, then forward again, meets every one once.
        let mut seen = ids(&latest);
        let mut oldest = latest[0].id;
        loop {
            let page = store
                .history("#rust", Range::Before(oldest), 7)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            oldest = page[0].id;
            seen.splice(0..0, ids(&page));
        }
        assert_eq!(seen, (1..=249).step_by(2).collect::<Vec<_>>(), "{location}");
        let mut forward = Vec::new();
        let mut newest = 0;
        loop {
            let page = store
                .history(EVERYONE, Range::After(newest), 33)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            newest = last.id;
            forward.extend(ids(&page));
        }
        assert_eq!(
            forward,
            (2..=250).step_by(2).collect::<Vec<_>>(),
            "{location}"
        );
        assert!(
            store
                .history("#none", Range::Latest, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Between two ids, from either end.
        let within = |after, before, newest| Range::Within {
            after,
            before,
            newest,
        };
        let oldest = store.history("#rust", within(10, 30, false), 3).await;
        assert_eq!(ids(&oldest.unwrap()), [11, 13, 15], "{location}");
        let newest = store.history("#rust", within(10, 30, true), 3).await;
        assert_eq!(ids(&newest.unwrap()), [25, 27, 29], "{location}");

        // Which targets were spoken in between two ids, newest first, as far as one may see.
        log(
            &store,
            vec![
                said(300, "@alice @bob", "alice", "hi"),
                said(301, "@bob @carol", "bob", "yo"),
                said(302, "#rust", "alice", "late"),
            ],
        )
        .await;
        let seen = |after, dms: Option<&str>| {
            let store = store.clone();
            let dms = dms.map(str::to_owned);
            async move {
                store
                    .targets(
                        after,
                        i64::MAX,
                        vec![EVERYONE.to_owned(), "#rust".to_owned(), "#go".to_owned()],
                        dms,
                        10,
                    )
                    .await
                    .unwrap()
            }
        };
        let t = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|(s, i)| (s.to_string(), *i)).collect()
        };
        assert_eq!(
            seen(0, Some("alice")).await,
            t(&[("#rust", 302), ("@alice @bob", 300), (EVERYONE, 250)]),
            "{location}"
        );
        assert_eq!(
            seen(250, Some("carol")).await,
            t(&[("#rust", 302), ("@bob @carol", 301)]),
            "{location}"
        );
        assert_eq!(seen(302, None).await, t(&[]), "{location}");
    }
}

#[tokio::test]
async fn search_finds_words_only_where_the_asker_may_look_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        let alice_bob = dm_target("alice", "bob");
        let bob_carol = dm_target("carol", "bob");
        log(
            &store,
            vec![
                said(1, EVERYONE, "alice", "the quick brown fox"),
                said(2, "#secret", "bob", "the fox hides here"),
                said(3, &alice_bob, "bob", "a fox for alice"),
                said(4, &bob_carol, "bob", "a fox for carol"),
                said(5, EVERYONE, "carol", "Fox again, \"quoted\" OR not"),
                said(6, EVERYONE, "dave", "nothing to see"),
            ],
        )
        .await;
        let everyone = vec![EVERYONE.to_owned()];
        let found = store
            .search("fox", everyone.clone(), Some("alice".into()), 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&found),
            [5, 3, 1],
            "{location}: newest first, visible only"
        );
        let found = store
            .search("fox", vec![EVERYONE.into(), "#secret".into()], None, 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&found),
            [5, 2, 1],
            "{location}: no conversation without an account"
        );
        let found = store
            .search("fox", everyone.clone(), Some("carol".into()), 1)
            .await
            .unwrap();
        assert_eq!(ids(&found), [5], "{location}: the limit");
        let found = store
            .search("quick fox", everyone.clone(), None, 10)
            .await
            .unwrap();
        assert_eq!(ids(&found), [1], "{location}: every word");
        for odd in ["OR", "\"quoted\"", "NEAR(fox", "fox*", "-fox", "   "] {
            let r = store.search(odd, everyone.clone(), None, 10).await;
            assert!(r.is_ok(), "{location}: {odd:?} is words, not syntax: {r:?}");
        }
        let found = store
            .search("bo", everyone, Some("bo".into()), 10)
            .await
            .unwrap();
        assert!(
            found.is_empty(),
            "{location}: a prefix of a name is not the name"
        );
    }
}

#[tokio::test]
async fn retention_and_account_deletion_remove_messages_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        let day = 86_400_000;
        let t0 = 1_764_000_000_000;
        let id = |ms: i64, seq: u32| MessageId::new(ms, seq, 0).0;
        let mut batch = Vec::new();
        for i in 0..20 {
            batch.push(said(id(t0 + i * day, 0), EVERYONE, "alice", "old and new"));
            batch.push(said(id(t0 + i * day, 1), "#rust", "alice", "room"));
        }
        batch.push(said(id(t0, 2), &dm_target("alice", "bob"), "bob", "hi"));
        batch.push(said(id(t0, 3), &dm_target("bob", "carol"), "bob", "hi"));
        log(&store, batch).await;
        // Keep ten days, and at most five a target.
        let gone = store
            .prune(MessageId::at(t0 + 10 * day).0, Some(5))
            .await
            .unwrap();
        assert_eq!(gone, 2 + 10 + 10 + 5 + 5, "{location}");
        let left = store.history(EVERYONE, Range::Latest, 100).await.unwrap();
        assert_eq!(
            ids(&left),
            (15..20).map(|i| id(t0 + i * day, 0)).collect::<Vec<_>>()
        );

        log(
            &store,
            vec![
                said(
                    id(t0 + 30 * day, 0),
                    &dm_target("alice", "bob"),
                    "bob",
                    "hi",
                ),
                said(
                    id(t0 + 30 * day, 1),
                    &dm_target("bob", "carol"),
                    "bob",
                    "hi",
                ),
            ],
        )
        .await;
        assert_eq!(store.delete_dms("alice").await, Ok(1), "{location}");
        assert_eq!(
            store
                .history(&dm_target("bob", "carol"), Range::Latest, 9)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn messages_wait_for_an_offline_account_once_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for location in every_backend(&dir) {
        let store = open(&location);
        let dm = dm_target("alice", "bob");
        log_waiting(&store, vec![said(1, &dm, "alice", "one")], Some("bob")).await;
        log(&store, vec![said(2, &dm, "bob", "not waiting")]).await;
        log_waiting(&store, vec![said(3, &dm, "alice", "two")], Some("bob")).await;
        let waited = store.take_waiting("bob").await.unwrap();
        assert_eq!(ids(&waited), [1, 3], "{location}");
        assert_eq!(waited[1].text, "two");
        assert!(
            store.take_waiting("bob").await.unwrap().is_empty(),
            "{location}"
        );
        // They stay in the conversation's history.
        assert_eq!(
            store.history(&dm, Range::Latest, 10).await.unwrap().len(),
            3
        );
        log_waiting(&store, vec![said(4, &dm, "alice", "three")], Some("bob")).await;
        store.delete_dms("bob").await.unwrap();
        assert!(
            store.take_waiting("bob").await.unwrap().is_empty(),
            "{location}"
        );
    }
}

#[tokio::test]
async fn committed_messages_are_in_the_file_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Sqlite(dir.path().join("natter.db"));
    let store = open(&location);
    for i in 1..=100 {
        log(&store, vec![said(i, EVERYONE, "alice", "kept")]).await;
    }
    store.close().await.unwrap();
    drop(store);
    let store = reopen(&location).await;
    assert_eq!(store.last_message_id().await.unwrap(), Some(100));
    assert_eq!(
        store
            .history(EVERYONE, Range::Latest, 1000)
            .await
            .unwrap()
            .len(),
        100
    );
}

#[tokio::test]
async fn a_full_queue_refuses_messages_at_once_and_a_failed_write_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let store = Store::open(
        &Location::Sqlite(path.clone()),
        Options { queue: 2, batch: 1 },
    )
    .unwrap();
    // Nobody waits on a full queue: the first refusals come back before anything is done.
    let mut refused = 0;
    let mut answers = Vec::new();
    for i in 1..=50 {
        let (done, committed) = tokio::sync::oneshot::channel();
        match store.log(vec![said(i, EVERYONE, "a", "x")], None, move |r| {
            let _ = done.send(r);
        }) {
            Ok(()) => answers.push(committed),
            Err((StoreError::Busy, back)) => {
                assert_eq!(back.len(), 1, "the refused messages come back");
                refused += 1;
            }
            Err((e, _)) => panic!("{e:?}"),
        }
    }
    assert!(refused > 0, "a queue of two took fifty at once");
    for a in answers {
        a.await.unwrap().unwrap();
    }
    // The table gone under the server's feet: the write fails and is answered as failed.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DROP TABLE messages").unwrap();
    let (done, committed) = tokio::sync::oneshot::channel();
    store
        .log(vec![said(999, EVERYONE, "a", "x")], None, move |r| {
            let _ = done.send(r);
        })
        .unwrap();
    let r = committed.await.unwrap();
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    store.flush().await.unwrap();
}

#[tokio::test]
async fn the_search_index_stays_whole_when_indexed_and_unindexed_messages_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let store = open(&Location::Sqlite(path.clone()));
    let batch = |from: i64| {
        (from..from + 3)
            .map(|i| said(i, EVERYONE, "a", "fox"))
            .collect()
    };
    log(&store, batch(1)).await;
    // A search indexes what is written before it looks.
    let found = store
        .search("fox", vec![EVERYONE.into()], None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&found), [3, 2, 1]);
    log(&store, batch(4)).await;
    // Retention takes indexed and unindexed messages alike.
    assert_eq!(store.prune(5, None).await, Ok(4));
    let found = store
        .search("fox", vec![EVERYONE.into()], None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&found), [6, 5]);
    store.close().await.unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "INSERT INTO messages_text (messages_text, rank) VALUES ('integrity-check', 1)",
    )
    .unwrap();
}
