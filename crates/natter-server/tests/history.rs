//! The message log over real sockets on real SQLite files: what is kept, across restarts and
//! a `kill -9`; paging; who may read what (HISTORY and SEARCH); IRC messages in the same log;
//! and a store that is slow or broken.

mod common;

use common::binary::Binary;
use common::irc::Irc;
use common::{ClientExt, TestServer, account_holder, answer, within};
use natter_conn::Client;
use natter_proto::ServerLine;
use natter_store::Location;

/// A message as a `LOGGED` line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: i64,
    target: String,
    from: String,
    text: String,
}

/// Sends a HISTORY or SEARCH and returns its `LOGGED` lines and the answer that ends them.
async fn ask_log(c: &mut Client, line: &str) -> (Vec<Seen>, String) {
    c.say(line).await;
    let mut seen = Vec::new();
    loop {
        match c.line().await {
            ServerLine::Logged {
                target,
                id,
                at,
                from,
                text,
            } => {
                assert!(at.ends_with('Z') && at.len() == 24, "a time: {at}");
                seen.push(Seen {
                    id,
                    target: target.into(),
                    from: from.into(),
                    text: text.into(),
                });
            }
            l @ (ServerLine::Ok { .. } | ServerLine::Error { .. }) => {
                return (seen, l.to_string().trim_end().to_owned());
            }
            _ => {}
        }
    }
}

fn texts(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.text.as_str()).collect()
}

use common::on_sqlite as sqlite;

#[tokio::test]
async fn history_survives_a_restart_and_pages_both_ways_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(sqlite(&dir)).await;
    let mut alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    for i in 0..120 {
        assert_eq!(
            answer(&mut alice, &format!("MESSAGE m{i}")).await,
            "OK MESSAGE 1"
        );
    }
    assert_eq!(answer(&mut alice, "JOIN #Rust").await, "OK JOIN #Rust 1");
    assert_eq!(
        answer(&mut alice, "SAY #Rust in the room").await,
        "OK SAY #Rust 0"
    );
    // An IRC client's messages go into the same log.
    let mut irc = Irc::user(s.addr, "ircy").await;
    irc.send("JOIN #Rust").await;
    irc.skip_to(" 366 ").await;
    irc.send("PRIVMSG #Rust :from irc").await;
    while alice.text().await != "SAY #Rust ircy from irc" {}
    drop((alice, irc));
    bob.say("CLOSE").await;
    s.stop().await;

    let s = TestServer::with(sqlite(&dir)).await;
    let mut carol = s.user("carol").await;
    let (latest, ok) = ask_log(&mut carol, "HISTORY * 50").await;
    assert_eq!(ok, "OK HISTORY * 50");
    assert_eq!(
        texts(&latest),
        (70..120).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert!(latest.iter().all(|m| m.target == "*" && m.from == "alice"));
    assert!(latest.windows(2).all(|w| w[0].id < w[1].id));

    // Back from the oldest seen, 25 at a time, then forward from nothing, 33 at a time:
    // each meets all 120 once, in order.
    let mut back = latest.clone();
    loop {
        let (page, ok) = ask_log(&mut carol, &format!("HISTORY * 25 BEFORE {}", back[0].id)).await;
        assert_eq!(ok, format!("OK HISTORY * {}", page.len()));
        if page.is_empty() {
            break;
        }
        back.splice(0..0, page);
    }
    let all: Vec<String> = (0..120).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&back), all);
    let mut forward: Vec<Seen> = Vec::new();
    loop {
        let after = forward.last().map_or(0, |m| m.id);
        let (page, _) = ask_log(&mut carol, &format!("HISTORY * 33 AFTER {after}")).await;
        if page.is_empty() {
            break;
        }
        forward.extend(page);
    }
    assert_eq!(forward, back);

    // A room's history is its members': carol must join first. (alice's room stayed.)
    let (_, refused) = ask_log(&mut carol, "HISTORY #rust").await;
    assert!(refused.starts_with("ERROR NO_HISTORY "), "{refused}");
    assert_eq!(answer(&mut carol, "JOIN #rust").await, "OK JOIN #Rust 1");
    let (room, ok) = ask_log(&mut carol, "HISTORY #rust").await;
    assert_eq!(ok, "OK HISTORY #Rust 2");
    assert_eq!(texts(&room), ["in the room", "from irc"]);
    assert_eq!(
        room.iter().map(|m| m.from.as_str()).collect::<Vec<_>>(),
        ["alice", "ircy"]
    );
}

#[tokio::test]
async fn only_those_in_a_conversation_or_room_read_it_and_search_keeps_to_that() {
    let s = TestServer::start().await;
    let mut alice = account_holder(&s, "alice").await;
    let mut bob = account_holder(&s, "bob").await;
    let mut carol = account_holder(&s, "carol").await;
    let mut dave = s.user("dave").await;
    assert_eq!(
        answer(&mut alice, "JOIN #secret").await,
        "OK JOIN #secret 1"
    );
    assert_eq!(
        answer(&mut alice, "SAY #secret secret fox").await,
        "OK SAY #secret 0"
    );
    assert_eq!(answer(&mut alice, "DM bob private fox").await, "OK DM bob");
    assert_eq!(answer(&mut dave, "DM alice guest fox").await, "OK DM alice");
    assert!(
        answer(&mut dave, "MESSAGE public fox")
            .await
            .starts_with("OK MESSAGE ")
    );

    // carol: not in the room, not in the conversation.
    let (_, refused) = ask_log(&mut carol, "HISTORY #secret").await;
    assert!(refused.starts_with("ERROR NO_HISTORY "), "{refused}");
    assert_eq!(
        ask_log(&mut carol, "HISTORY alice").await,
        (vec![], "OK HISTORY alice 0".into())
    );
    let (found, ok) = ask_log(&mut carol, "SEARCH fox").await;
    assert_eq!(
        (texts(&found), ok.as_str()),
        (vec!["public fox"], "OK SEARCH 1")
    );
    let (_, refused) = ask_log(&mut carol, "SEARCH fox IN #secret").await;
    assert!(refused.starts_with("ERROR NO_HISTORY "), "{refused}");

    // bob: the conversation with alice, named by her name.
    let (dm, ok) = ask_log(&mut bob, "HISTORY ALICE").await;
    assert_eq!(ok, "OK HISTORY ALICE 1");
    assert_eq!(
        (dm[0].target.as_str(), dm[0].from.as_str()),
        ("ALICE", "alice")
    );
    assert_eq!(dm[0].text, "private fox");
    let (found, _) = ask_log(&mut bob, "SEARCH fox").await;
    assert_eq!(texts(&found), ["public fox", "private fox"]);
    assert_eq!(found[1].target, "alice");

    // alice: everything but the guest's DM, which is not kept (a guest's name may pass to
    // someone else); the guest has no conversations to read.
    let (found, _) = ask_log(&mut alice, "SEARCH fox").await;
    assert_eq!(texts(&found), ["public fox", "private fox", "secret fox"]);
    assert_eq!(
        found.iter().map(|m| m.target.as_str()).collect::<Vec<_>>(),
        ["*", "bob", "#secret"]
    );
    let (found, _) = ask_log(&mut alice, "SEARCH FOX in #secret").await;
    assert_eq!(texts(&found), ["secret fox"]);
    let (_, refused) = ask_log(&mut alice, "HISTORY dave").await;
    assert!(refused.starts_with("ERROR NO_HISTORY "), "{refused}");
    let (_, refused) = ask_log(&mut dave, "HISTORY alice").await;
    assert!(refused.starts_with("ERROR NO_HISTORY "), "{refused}");

    // Words are words: search syntax is not, and bad requests get their error only.
    let (found, _) = ask_log(&mut alice, "SEARCH \"fox OR NEAR(* -x").await;
    assert!(found.is_empty());
    for bad in [
        "HISTORY",
        "HISTORY * 0",
        "HISTORY * BEFORE x",
        "HISTORY ## 5",
        "SEARCH",
    ] {
        assert!(answer(&mut alice, bad).await.starts_with("ERROR "), "{bad}");
    }
    alice.expect_quiet().await;
}

/// The sender's `OK` comes only once the message is committed: every acknowledged message
/// is there after the server is killed mid-flood and started again.
#[tokio::test]
async fn every_acknowledged_message_survives_kill_9() {
    const SENT: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--flood-control", "false", "--exempt-loopback"];
    let mut server = Binary::start(dir.path(), &args);
    let addr = server.addr().await;
    let mut watcher = Client::connect(&addr).await.unwrap();
    within(watcher.register("watcher")).await.unwrap();
    let mut sender = Client::connect(&addr).await.unwrap();
    within(sender.register("sender")).await.unwrap();
    let (mut reader, mut writer) = sender.split();
    let flood = tokio::spawn(async move {
        for i in 0..SENT {
            writer.queue(&format!("MESSAGE m{i}"));
        }
        // The server may be gone before all of it is written.
        let _ = writer.flush().await;
        writer
    });
    let watching =
        tokio::spawn(async move { while let Ok(Some(_)) = watcher.reader.next_raw().await {} });
    let mut acknowledged = 0;
    while let Ok(Some(line)) = within(reader.next_text()).await {
        if line.starts_with("OK MESSAGE") {
            acknowledged += 1;
            if acknowledged == SENT / 4 {
                server.child.kill().unwrap();
            }
        } else if !line.starts_with("ONLINE") {
            panic!("unexpected answer: {line}");
        }
    }
    let _ = flood.await;
    let _ = watching.await;
    let _ = server.exit().await;
    assert!(acknowledged >= SENT / 4);

    let mut server = Binary::start(dir.path(), &args);
    let addr = server.addr().await;
    let mut reader = Client::connect(&addr).await.unwrap();
    within(reader.register("reader")).await.unwrap();
    let mut kept: Vec<Seen> = Vec::new();
    loop {
        let after = kept.last().map_or(0, |m| m.id);
        let (page, _) = ask_log(&mut reader, &format!("HISTORY * 500 AFTER {after}")).await;
        if page.is_empty() {
            break;
        }
        kept.extend(page);
    }
    eprintln!("{acknowledged} acknowledged of {SENT}, {} kept", kept.len());
    assert!(kept.len() >= acknowledged);
    for (i, m) in kept.iter().take(acknowledged).enumerate() {
        assert_eq!(m.text, format!("m{i}"));
    }
    server.child.kill().unwrap();
}

#[tokio::test]
async fn a_slow_or_broken_store_holds_up_nobody_but_the_sender_who_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let s = TestServer::with(sqlite(&dir)).await;
    let mut alice = s.user("alice").await;
    let mut bob = s.user("bob").await;
    assert_eq!(alice.text().await, "ONLINE bob");

    // Another program holds the database's write lock: the message is delivered at once,
    // and its sender's OK waits for the commit.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    alice.say("MESSAGE while locked").await;
    assert_eq!(bob.text().await, "MESSAGE alice while locked");
    db.execute_batch("COMMIT").unwrap();
    assert_eq!(alice.text().await, "OK MESSAGE 1");

    // The log's table is gone: delivered, and the sender hears it was not kept.
    db.execute_batch("DROP TABLE messages").unwrap();
    alice.say("MESSAGE after the table").await;
    assert_eq!(bob.text().await, "MESSAGE alice after the table");
    let failed = alice.text().await;
    assert!(
        failed.starts_with("ERROR STORE_UNAVAILABLE delivered, but not kept"),
        "{failed}"
    );
    let (_, refused) = ask_log(&mut bob, "HISTORY *").await;
    assert!(refused.starts_with("ERROR STORE_UNAVAILABLE "), "{refused}");
    // Everything else goes on.
    assert_eq!(answer(&mut bob, "DM alice still here").await, "OK DM alice");
    assert_eq!(alice.text().await, "DM bob still here");
    alice.expect_quiet().await;
}

#[tokio::test]
async fn answers_stay_in_order_behind_messages_waiting_to_be_kept() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let _bob = s.user("bob").await;
    assert_eq!(alice.text().await, "ONLINE bob");
    // One write: the messages' OKs come before the answer to the command after them.
    alice
        .writer
        .send_raw(b"MESSAGE one\nMESSAGE two\nLIST\nMESSAGE three\n")
        .await
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..6 {
        lines.push(alice.text().await);
    }
    assert_eq!(
        lines,
        [
            "OK MESSAGE 1",
            "OK MESSAGE 1",
            "USER alice",
            "USER bob",
            "OK LIST 2",
            "OK MESSAGE 1",
        ]
    );
    alice.expect_quiet().await;
}

#[tokio::test]
async fn a_full_disk_keeps_nothing_more_says_so_and_relaying_goes_on() {
    const SENT: usize = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--flood-control", "false", "--exempt-loopback"];
    let mut server = Binary::start(dir.path(), &args);
    let addr = server.addr().await;
    server.until_log("store open").await;
    let mut bob = Client::connect(&addr).await.unwrap();
    within(bob.register("bob")).await.unwrap();
    let mut alice = Client::connect(&addr).await.unwrap();
    within(alice.register("alice")).await.unwrap();
    assert_eq!(answer(&mut alice, "MESSAGE before").await, "OK MESSAGE 1");
    assert_eq!(bob.text().await, "ONLINE alice");
    assert_eq!(bob.text().await, "MESSAGE alice before");

    // The disk fills: the server's files may grow only a little past what they hold now (its
    // file-size limit stands in for the disk, as `ulimit -f` would).
    let pid = server.child.id() as i32;
    let size = |f: &str| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len());
    let full = size("natter.db").max(size("natter.db-wal")) + 128 * 1024;
    let (mut soft, mut hard) = (0, 0);
    rlimit::prlimit(
        pid,
        rlimit::Resource::FSIZE,
        None,
        Some((&mut soft, &mut hard)),
    )
    .unwrap();
    rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some((full, hard)), None).unwrap();

    let (mut reader, mut writer) = alice.split();
    let flood = tokio::spawn(async move {
        for i in 0..SENT {
            writer.queue(&format!("MESSAGE m{i} {}", "x".repeat(200)));
        }
        writer.flush().await.unwrap();
        writer
    });
    let mut kept = Vec::new();
    let mut refused = 0;
    for i in 0..SENT {
        let line = within(reader.next_text()).await.unwrap().unwrap();
        if line.starts_with("OK MESSAGE") {
            kept.push(format!("m{i}"));
        } else if line.starts_with("ERROR STORE_UNAVAILABLE delivered, but not kept") {
            refused += 1;
        } else {
            panic!("unexpected answer: {line}");
        }
    }
    // Everyone else got every message, in order, full disk or not.
    for i in 0..SENT {
        let line = bob.text().await;
        assert!(line.starts_with(&format!("MESSAGE alice m{i} ")), "{line}");
    }
    eprintln!("{} kept, {refused} refused as the disk filled", kept.len());
    assert!(refused > 0, "the disk never filled: {} kept", kept.len());
    assert!(!kept.is_empty(), "the disk was full from the start");
    let failed = common::probe::metric(addr.parse().unwrap(), "natter_history_failed_total");
    assert!(failed.await >= refused);
    let mut alice = Client {
        reader,
        writer: flood.await.unwrap(),
    };
    assert_eq!(answer(&mut bob, "DM alice still here").await, "OK DM alice");
    assert_eq!(alice.text().await, "DM bob still here");

    // Room again on the disk: messages are kept again, and every one acknowledged is there.
    rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some((soft, hard)), None).unwrap();
    let mut again = String::new();
    for _ in 0..100 {
        again = answer(&mut alice, "MESSAGE after").await;
        if again.starts_with("OK MESSAGE") {
            break;
        }
    }
    assert!(again.starts_with("OK MESSAGE"), "{again}");
    let mut history: Vec<Seen> = Vec::new();
    loop {
        let after = history.last().map_or(0, |m| m.id);
        let (page, _) = ask_log(&mut bob, &format!("HISTORY * 500 AFTER {after}")).await;
        if page.is_empty() {
            break;
        }
        history.extend(page);
    }
    let logged: std::collections::HashSet<&str> = history
        .iter()
        .map(|m| m.text.split(' ').next().unwrap())
        .collect();
    assert!(logged.contains("before") && logged.contains("after"));
    let lost: Vec<&String> = kept
        .iter()
        .filter(|t| !logged.contains(t.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not kept: {lost:?}");
    server.child.kill().unwrap();
}

#[tokio::test]
async fn a_store_file_the_server_may_not_write_is_refused_at_start_with_a_sentence() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("natter.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let server = Binary::start_unprivileged(dir.path(), &[]);
    let (status, log) = server.exit().await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("natter.db cannot be opened for writing (Permission denied"),
        "{log}"
    );
}

#[tokio::test]
async fn retention_removes_old_messages_before_the_server_serves() {
    use natter_store::{EVERYONE, Logged, MessageId, Options, Store};
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    let store = Store::open(
        &Location::Sqlite(dir.path().join("natter.db")),
        Options::default(),
    )
    .unwrap();
    let rows = [
        (100, "older than 90 days"),
        (30, "a"),
        (20, "b"),
        (10, "c"),
        (5, "d"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (days_ago, text))| Logged {
        id: MessageId::new(now - days_ago * day, i as u32, 0).0,
        target: EVERYONE.into(),
        sender: "old".into(),
        account: None,
        text: (*text).into(),
    })
    .collect();
    let (done, kept) = tokio::sync::oneshot::channel();
    store
        .log(rows, None, move |r| {
            let _ = done.send(r);
        })
        .unwrap();
    kept.await.unwrap().unwrap();
    store.close().await.unwrap();
    drop(store);

    let mut config = sqlite(&dir);
    config.history.max_per_target = Some(3);
    let s = TestServer::with(config).await;
    let mut c = s.user("reader").await;
    let (left, _) = ask_log(&mut c, "HISTORY *").await;
    assert_eq!(texts(&left), ["b", "c", "d"]);
}

#[tokio::test]
async fn deleting_an_account_deletes_its_conversations() {
    let s = TestServer::start().await;
    let mut alice = account_holder(&s, "alice").await;
    let mut bob = account_holder(&s, "bob").await;
    assert_eq!(answer(&mut alice, "DM bob hello").await, "OK DM bob");
    assert_eq!(
        ask_log(&mut bob, "HISTORY alice").await.1,
        "OK HISTORY alice 1"
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT DELETE {}", common::PW)).await,
        "OK ACCOUNT DELETE alice"
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT CREATE {}", common::PW)).await,
        "OK ACCOUNT CREATE alice"
    );
    assert_eq!(
        ask_log(&mut bob, "HISTORY alice").await.1,
        "OK HISTORY alice 0"
    );
}

#[tokio::test]
async fn a_dm_to_an_offline_account_waits_and_arrives_at_its_login_with_its_time() {
    let s = TestServer::start().await;
    let mut alice = account_holder(&s, "alice").await;
    let mut bob = account_holder(&s, "Bob").await;
    let mut dave = s.user("dave").await;
    bob.say("CLOSE").await;
    while alice.text().await != "OFFLINE Bob" {}
    let before = std::time::SystemTime::now();
    assert_eq!(
        answer(&mut alice, "DM bob are you there").await,
        "OK DM Bob QUEUED"
    );
    assert_eq!(
        answer(&mut alice, "DM BOB second").await,
        "OK DM Bob QUEUED"
    );
    // Only accounts' messages wait for an account; nobody waits for a guest's name.
    assert!(
        answer(&mut dave, "DM bob hi")
            .await
            .starts_with("ERROR NO_SUCH_USER ")
    );
    assert!(
        answer(&mut alice, "DM nobody hi")
            .await
            .starts_with("ERROR NO_SUCH_USER ")
    );

    let mut bob = s.client().await;
    assert_eq!(
        answer(&mut bob, &format!("LOGIN bob {}", common::PW)).await,
        "OK LOGIN Bob"
    );
    let mut waited = Vec::new();
    for _ in 0..2 {
        match bob.line().await {
            ServerLine::Logged {
                target,
                at,
                from,
                text,
                ..
            } => waited.push((target.to_string(), from.to_string(), text.to_string(), at)),
            other => panic!("expected a waiting DM, got {other}"),
        }
    }
    assert_eq!(
        waited
            .iter()
            .map(|(t, f, x, _)| (t.as_str(), f.as_str(), x.as_str()))
            .collect::<Vec<_>>(),
        [
            ("alice", "alice", "are you there"),
            ("alice", "alice", "second")
        ]
    );
    // Their own times, not the login's: no earlier than the sending began.
    let sent = natter_server::event::timestamp(before);
    assert!(
        waited[0].3.as_ref() >= &sent[..19],
        "{} before {sent}",
        waited[0].3
    );
    bob.expect_quiet().await;
    // Delivered once; still in the conversation.
    let mut again = s.client().await;
    assert_eq!(
        answer(&mut again, &format!("LOGIN bob {}", common::PW)).await,
        "OK LOGIN Bob"
    );
    again.expect_quiet().await;
    let (dm, _) = ask_log(&mut again, "HISTORY alice").await;
    assert_eq!(texts(&dm), ["are you there", "second"]);
}

#[tokio::test]
async fn an_irc_client_joining_a_channel_gets_its_last_lines_with_their_times() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    assert_eq!(answer(&mut alice, "JOIN #den").await, "OK JOIN #den 1");
    for i in 0..30 {
        assert_eq!(
            answer(&mut alice, &format!("SAY #den line {i}")).await,
            "OK SAY #den 0"
        );
    }
    // With server-time: the last 25, tagged with their times, after the join's burst.
    let mut timed = Irc::connect(s.addr).await;
    timed.send("CAP LS 302").await;
    timed.send("CAP REQ :server-time").await;
    timed.send("NICK timed").await;
    timed.send("USER timed 0 * :Timed").await;
    timed.send("CAP END").await;
    timed.skip_to(" 001 ").await;
    timed.send("JOIN #den").await;
    timed.skip_to(" 366 timed #den ").await;
    for i in 5..30 {
        let l = timed.line().await;
        assert!(l.starts_with("@time=20"), "{l}");
        assert!(
            l.ends_with(&format!(" :alice!alice@natter PRIVMSG #den :line {i}")),
            "{l}"
        );
    }
    // Without it: the time before the text. Then live lines, none of them twice.
    let mut plain = Irc::user(s.addr, "plain").await;
    plain.send("JOIN #den").await;
    plain.skip_to(" 366 plain #den ").await;
    let first = plain.line().await;
    assert!(
        first.starts_with(":alice!alice@natter PRIVMSG #den :[20"),
        "{first}"
    );
    assert!(first.ends_with(" UTC] line 5"), "{first}");
    for _ in 6..30 {
        plain.line().await;
    }
    assert_eq!(answer(&mut alice, "SAY #den live").await, "OK SAY #den 2");
    assert_eq!(plain.line().await, ":alice!alice@natter PRIVMSG #den live");
    // timed saw plain join; its next message is the live one.
    let next = timed.skip_to(" PRIVMSG ").await;
    assert!(
        next.ends_with(":alice!alice@natter PRIVMSG #den live"),
        "{next}"
    );
}

#[tokio::test]
async fn tags_on_give_every_event_its_time_and_every_kept_message_the_id_history_shows() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(sqlite(&dir)).await;
    // Said before registering, so that no event comes untagged.
    let mut alice = s.client().await;
    assert_eq!(alice.ask("TAGS ON").await, "OK TAGS ON");
    assert_eq!(alice.ask("REGISTER alice").await, "OK REGISTER alice");
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT CREATE {}", common::PW)).await,
        "OK ACCOUNT CREATE alice"
    );
    let mut bob = account_holder(&s, "bob").await;
    let online = alice.text().await;
    let (tags, rest) = natter_proto::tags::split(&online);
    assert_eq!(rest, "ONLINE bob");
    assert!(tags.time.is_some_and(|t| t.ends_with('Z')), "{online}");
    assert_eq!(tags.id, None, "presence is not kept: {online}");

    // Everyone, a room and a DM: each live line and each OK carry the id of the kept message.
    assert_eq!(answer(&mut alice, "JOIN #den").await, "OK JOIN #den 1");
    assert_eq!(answer(&mut bob, "JOIN #den").await, "OK JOIN #den 2");
    assert_eq!(answer(&mut bob, "MESSAGE hello").await, "OK MESSAGE 1");
    assert_eq!(
        answer(&mut bob, "SAY #den in the den").await,
        "OK SAY #den 1"
    );
    assert_eq!(answer(&mut bob, "DM alice psst").await, "OK DM alice");
    let mut live = Vec::new();
    while live.len() < 3 {
        let l = alice.text().await;
        let (tags, rest) = natter_proto::tags::split(&l);
        assert!(tags.time.is_some(), "{l}");
        if let Some(id) = tags.id {
            live.push((id, rest.to_owned()));
        }
    }
    assert_eq!(
        live.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        [
            "MESSAGE bob hello",
            "SAY #den bob in the den",
            "DM bob psst"
        ]
    );
    let (everyone, _) = ask_log(&mut alice, "HISTORY *").await;
    let (den, _) = ask_log(&mut alice, "HISTORY #den").await;
    let (dms, _) = ask_log(&mut alice, "HISTORY bob").await;
    assert_eq!(
        [everyone[0].id, den[0].id, dms[0].id],
        [live[0].0, live[1].0, live[2].0]
    );

    let ok = alice.ask("SAY #den back").await;
    let (tags, rest) = natter_proto::tags::split(&ok);
    assert_eq!(rest, "OK SAY #den 1");
    // bob never asked: his lines are the lab's.
    assert_eq!(bob.text().await, "SAY #den alice back");
    let (den, _) = ask_log(&mut bob, "HISTORY #den 1").await;
    assert_eq!(tags.id, Some(den[0].id), "{ok}");

    // Off again, and a guest's DM, which is not kept, has a time but no id.
    assert_eq!(alice.ask("TAGS OFF").await, "OK TAGS OFF");
    assert_eq!(answer(&mut bob, "SAY #den plain").await, "OK SAY #den 1");
    assert_eq!(alice.text().await, "SAY #den bob plain");
    assert_eq!(alice.ask("TAGS ON").await, "OK TAGS ON");
    let mut guest = s.user("guest").await;
    assert_eq!(answer(&mut guest, "DM alice hi").await, "OK DM alice");
    loop {
        let l = alice.text().await;
        let (tags, rest) = natter_proto::tags::split(&l);
        if rest == "DM guest hi" {
            assert!(tags.time.is_some() && tags.id.is_none(), "{l}");
            break;
        }
    }
    alice
        .expect_error("TAGS MAYBE", natter_proto::ErrorCode::BadParameter)
        .await;
}

/// The lines of one `chathistory` batch, their batch tags checked and taken off; each with
/// its msgid.
async fn batch(irc: &mut Irc, ask: &str) -> Vec<(i64, String)> {
    irc.send(ask).await;
    let open = irc.line().await;
    assert!(
        open.contains(" BATCH +history chathistory "),
        "{ask}: {open}"
    );
    let mut lines = Vec::new();
    loop {
        let l = irc.line().await;
        if l.ends_with(" BATCH -history") {
            return lines;
        }
        let (tags, rest) = l.split_once(' ').unwrap();
        assert!(tags.starts_with("@batch=history;msgid="), "{l}");
        assert!(tags.contains(";time=20"), "{l}");
        let id = tags["@batch=history;msgid=".len()..]
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        lines.push((id, rest.to_owned()));
    }
}

fn said_texts(lines: &[(i64, String)]) -> Vec<&str> {
    lines
        .iter()
        .map(|(_, l)| l.rsplit_once(" :").unwrap().1)
        .collect()
}

#[tokio::test]
async fn an_irc_client_reads_history_with_chathistory_in_batches_with_msgids() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(sqlite(&dir)).await;
    let mut bob = account_holder(&s, "bob").await;
    assert_eq!(bob.ask("CLOSE").await, "BYE CLOSED goodbye");
    let mut alice = account_holder(&s, "alice").await;
    assert_eq!(answer(&mut alice, "JOIN #den").await, "OK JOIN #den 1");
    for i in 0..10 {
        assert_eq!(
            answer(&mut alice, &format!("SAY #den line {i}")).await,
            "OK SAY #den 0"
        );
    }
    for i in 1..=2 {
        assert_eq!(
            answer(&mut alice, &format!("DM bob while away {i}")).await,
            "OK DM bob QUEUED"
        );
    }

    // bob logs in over IRC: the DMs that waited come after the welcome, with their times.
    let caps = "batch server-time message-tags draft/chathistory";
    let mut irc = Irc::logged_in(s.addr, caps, "bob").await;
    let isupport = irc.skip_to("CHATHISTORY=").await;
    assert!(isupport.contains("CHATHISTORY=500 "), "{isupport}");
    for i in 1..=2 {
        let l = irc.skip_to(" PRIVMSG bob ").await;
        assert!(l.starts_with("@msgid="), "{l}");
        assert!(
            l.ends_with(&format!(":alice!alice@natter PRIVMSG bob :while away {i}")),
            "{l}"
        );
    }
    // A client with chathistory asks for what it wants: nothing is replayed on JOIN.
    irc.send("JOIN #den").await;
    irc.skip_to(" 366 bob #den ").await;
    irc.quiet().await;

    let latest = batch(&mut irc, "CHATHISTORY LATEST #den * 3").await;
    assert_eq!(said_texts(&latest), ["line 7", "line 8", "line 9"]);
    assert!(
        latest[0]
            .1
            .starts_with(":alice!alice@natter PRIVMSG #den :")
    );
    let id = |n: usize| -> i64 { latest[n].0 };
    let before = batch(
        &mut irc,
        &format!("CHATHISTORY BEFORE #den msgid={} 2", id(0)),
    )
    .await;
    assert_eq!(said_texts(&before), ["line 5", "line 6"]);
    let five = before[0].0;
    let after = batch(&mut irc, &format!("CHATHISTORY AFTER #den msgid={five} 2")).await;
    assert_eq!(said_texts(&after), ["line 6", "line 7"]);
    let around = batch(&mut irc, &format!("CHATHISTORY AROUND #den msgid={five} 3")).await;
    assert_eq!(said_texts(&around), ["line 4", "line 5", "line 6"]);
    let between = format!("CHATHISTORY BETWEEN #den msgid={five} msgid={} 10", id(1));
    assert_eq!(
        said_texts(&batch(&mut irc, &between).await),
        ["line 6", "line 7"]
    );
    let back = format!("CHATHISTORY BETWEEN #den msgid={} msgid={five} 1", id(1));
    assert_eq!(said_texts(&batch(&mut irc, &back).await), ["line 7"]);
    // Times as references: the past and the future hold everything.
    let past = "timestamp=2000-01-01T00:00:00.000Z";
    let future = "timestamp=2999-01-01T00:00:00.000Z";
    let all = batch(&mut irc, &format!("CHATHISTORY AFTER #den {past} 100")).await;
    assert_eq!(all.len(), 10);
    let last = batch(&mut irc, &format!("CHATHISTORY BEFORE #den {future} 1")).await;
    assert_eq!(said_texts(&last), ["line 9"]);
    // The conversation, as the client would have seen it.
    let dms = batch(&mut irc, "CHATHISTORY LATEST alice * 10").await;
    assert_eq!(
        dms.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        [
            ":alice!alice@natter PRIVMSG bob :while away 1",
            ":alice!alice@natter PRIVMSG bob :while away 2"
        ]
    );

    // TARGETS: the conversation (newest), then the room; Everyone was silent.
    irc.send(&format!("CHATHISTORY TARGETS {past} {future} 10"))
        .await;
    assert!(
        irc.line()
            .await
            .ends_with(" BATCH +history draft/chathistory-targets")
    );
    let t1 = irc.line().await;
    let t2 = irc.line().await;
    assert!(
        t1.contains(" CHATHISTORY TARGETS alice timestamp=20"),
        "{t1}"
    );
    assert!(
        t2.contains(" CHATHISTORY TARGETS #den timestamp=20"),
        "{t2}"
    );
    assert!(t1.starts_with("@batch=history "), "{t1}");
    assert!(irc.line().await.ends_with(" BATCH -history"));

    // What may not be read, and what is not a request.
    for (ask, fail) in [
        (
            "CHATHISTORY LATEST #elsewhere * 10",
            "FAIL CHATHISTORY INVALID_TARGET LATEST #elsewhere",
        ),
        (
            "CHATHISTORY LATEST carol * 10",
            "FAIL CHATHISTORY INVALID_TARGET LATEST carol",
        ),
        (
            "CHATHISTORY LATEST #den x 10",
            "FAIL CHATHISTORY INVALID_PARAMS LATEST",
        ),
        (
            "CHATHISTORY BEFORE #den msgid=1 0",
            "FAIL CHATHISTORY INVALID_PARAMS BEFORE",
        ),
        (
            "CHATHISTORY SOON #den * 10",
            "FAIL CHATHISTORY UNKNOWN_COMMAND SOON",
        ),
    ] {
        irc.send(ask).await;
        let l = irc.line().await;
        assert!(l.contains(fail), "{ask}: {l}");
    }

    // Live messages carry the msgid that history shows.
    assert_eq!(answer(&mut alice, "SAY #den live").await, "OK SAY #den 1");
    let live = irc.skip_to(" PRIVMSG #den live").await;
    let newest = batch(&mut irc, "CHATHISTORY LATEST #den * 1").await;
    assert!(
        live.starts_with(&format!("@msgid={};time=", newest[0].0)),
        "{live} vs {newest:?}"
    );
}

#[tokio::test]
async fn messages_flow_on_while_the_last_ones_are_committed_and_answers_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    let s = TestServer::with(sqlite(&dir)).await;
    let mut alice = s.user("alice").await;
    let mut bob = s.user("bob").await;
    assert_eq!(alice.text().await, "ONLINE bob");
    // The commit of the first message is held up by another program's lock...
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    alice.say("MESSAGE one").await;
    assert_eq!(bob.text().await, "MESSAGE alice one");
    // ... and the next messages are relayed meanwhile, not held behind it.
    alice.say("MESSAGE two").await;
    assert_eq!(bob.text().await, "MESSAGE alice two");
    alice.say("DM bob three").await;
    assert_eq!(bob.text().await, "DM alice three");
    // Any other command waits for the answers before it, which wait for the commit.
    alice.say("LIST").await;
    db.execute_batch("COMMIT").unwrap();
    for want in ["OK MESSAGE 1", "OK MESSAGE 1", "OK DM bob"] {
        assert_eq!(alice.text().await, want);
    }
    let mut list = Vec::new();
    loop {
        let l = alice.text().await;
        if l.starts_with("OK ") {
            assert_eq!(l, "OK LIST 2");
            break;
        }
        list.push(l);
    }
    assert_eq!(list, ["USER alice", "USER bob"]);
    let (kept, _) = ask_log(&mut bob, "HISTORY *").await;
    assert_eq!(texts(&kept), ["one", "two"]);
}
