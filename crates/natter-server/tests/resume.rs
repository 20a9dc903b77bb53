//! Sessions that outlive their connection: SESSION gives a token, a lost connection leaves
//! the session waiting, RESUME takes it over with what it missed, and a restart keeps it.

mod common;

use common::probe::metric_becomes;
use common::{ClientExt, TestServer, test_config};
use natter_conn::Client;
use natter_proto::ErrorCode;
use natter_store::Location;
use std::time::Duration;

/// Asks for a resume token; returns it.
async fn token(c: &mut Client) -> String {
    let ok = c.ask("SESSION").await;
    let mut words = ok.split(' ');
    assert_eq!(
        (words.next(), words.next()),
        (Some("OK"), Some("SESSION")),
        "{ok}"
    );
    let token = words.next().unwrap().to_owned();
    assert!(token.starts_with("nr_") && token.len() > 40, "{ok}");
    token
}

/// Joins `room`; returns the final answer (after the MEMBER lines).
async fn join(c: &mut Client, room: &str) -> String {
    c.say(&format!("JOIN {room}")).await;
    loop {
        let l = c.text().await;
        if !l.starts_with("MEMBER ") {
            return l;
        }
    }
}

#[tokio::test]
async fn a_lost_connection_resumes_with_what_it_missed_and_nobody_sees_it_leave() {
    let s = TestServer::start().await;
    let mut carol = s.user("carol").await;
    let mut alice = s.user("alice").await;
    assert_eq!(carol.text().await, "ONLINE alice");
    assert_eq!(join(&mut alice, "#den").await, "OK JOIN #den 1");
    assert_eq!(join(&mut carol, "#den").await, "OK JOIN #den 2");
    assert_eq!(alice.text().await, "JOINED #den carol");
    let t = token(&mut alice).await;

    // The connection is lost: the session waits, and nobody is told.
    drop(alice);
    metric_becomes(s.addr, "natter_lingering_sessions", 1).await;
    assert_eq!(carol.ask("MESSAGE one").await, "OK MESSAGE 1");
    assert_eq!(carol.ask("SAY #den two").await, "OK SAY #den 1");
    assert_eq!(carol.ask("DM alice three").await, "OK DM alice");
    assert_eq!(carol.ask("LIST").await, "USER alice");
    assert_eq!(carol.text().await, "USER carol");
    assert_eq!(carol.text().await, "OK LIST 2");
    // Its name is still its own.
    let mut other = s.client().await;
    other
        .expect_error("REGISTER alice", ErrorCode::NameTaken)
        .await;
    other
        .expect_error("RESUME nr_wrong", ErrorCode::NoSession)
        .await;

    // A new connection resumes it: the answer, its rooms, then what it missed, in order.
    let mut back = s.client().await;
    assert_eq!(back.ask(&format!("RESUME {t}")).await, "OK RESUME alice");
    assert_eq!(back.text().await, "JOINED #den alice");
    assert_eq!(back.text().await, "MESSAGE carol one");
    assert_eq!(back.text().await, "SAY #den carol two");
    assert_eq!(back.text().await, "DM carol three");
    assert_eq!(back.ask("MESSAGE back").await, "OK MESSAGE 1");
    assert_eq!(carol.text().await, "MESSAGE alice back");
    carol.expect_quiet().await;
    metric_becomes(s.addr, "natter_lingering_sessions", 0).await;

    // The token still works for the next loss, and only for a new connection.
    back.expect_error(&format!("RESUME {t}"), ErrorCode::NoSession)
        .await;
    drop(back);
    metric_becomes(s.addr, "natter_lingering_sessions", 1).await;
    let mut again = s.client().await;
    assert_eq!(again.ask(&format!("RESUME {t}")).await, "OK RESUME alice");
    assert_eq!(again.text().await, "JOINED #den alice");
    again.expect_quiet().await;
    carol.expect_quiet().await;
    // CLOSE is leaving on purpose: no wait.
    assert_eq!(again.ask("CLOSE").await, "BYE CLOSED goodbye");
    assert_eq!(carol.text().await, "PARTED #den alice disconnected");
    assert_eq!(carol.text().await, "OPERATOR #den carol");
    assert_eq!(carol.text().await, "OFFLINE alice");
}

#[tokio::test]
async fn a_session_not_resumed_in_time_leaves_and_its_token_is_refused() {
    let mut config = test_config();
    config.linger = Duration::from_millis(200);
    let s = TestServer::with(config).await;
    let mut carol = s.user("carol").await;
    let mut alice = s.user("alice").await;
    assert_eq!(carol.text().await, "ONLINE alice");
    let t = token(&mut alice).await;
    // A client that never asked for a token leaves at once, as always.
    let bob = s.user("bob").await;
    assert_eq!(carol.text().await, "ONLINE bob");
    drop(bob);
    assert_eq!(carol.text().await, "OFFLINE bob");

    drop(alice);
    // After the linger time, alice leaves as if the connection had just closed.
    assert_eq!(carol.text().await, "OFFLINE alice");
    let mut late = s.client().await;
    late.expect_error(&format!("RESUME {t}"), ErrorCode::NoSession)
        .await;
    assert_eq!(late.ask("REGISTER alice").await, "OK REGISTER alice");
    late.expect_error("SESSION extra", ErrorCode::TooManyParameters)
        .await;
    let mut fresh = s.client().await;
    fresh
        .expect_error("SESSION", ErrorCode::NotRegistered)
        .await;
}

#[tokio::test]
async fn sessions_resume_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.store = Location::Sqlite(dir.path().join("natter.db"));
    let mut first = TestServer::with(config.clone()).await;
    let mut alice = first.user("alice").await;
    assert_eq!(join(&mut alice, "#den").await, "OK JOIN #den 1");
    assert_eq!(
        alice.ask("TOPIC #den plans").await,
        "TOPIC #den alice plans"
    );
    assert_eq!(alice.text().await, "OK TOPIC #den");
    let t = token(&mut alice).await;
    first.begin_stop();
    assert_eq!(
        alice.text().await,
        "BYE SHUTDOWN the server is shutting down"
    );
    drop(alice);
    first.stopped().await;

    let second = TestServer::with(config).await;
    // The session waits on the new server: its name is taken, it is listed.
    let mut bob = second.user("bob").await;
    bob.expect_error("REGISTER alice", ErrorCode::NameTaken)
        .await;
    let mut back = second.client().await;
    assert_eq!(back.ask(&format!("RESUME {t}")).await, "OK RESUME alice");
    assert_eq!(back.text().await, "JOINED #den alice");
    // What happened on the new server before the resume was kept for it.
    assert_eq!(back.text().await, "ONLINE bob");
    assert_eq!(back.ask("WHO #den").await, "MEMBER #den @alice");
    assert_eq!(back.text().await, "OK WHO #den 1");
    assert_eq!(back.ask("TOPIC #den").await, "TOPIC #den alice plans");
    assert_eq!(back.text().await, "OK TOPIC #den");
    bob.expect_quiet().await;
}

#[tokio::test]
async fn a_session_kept_over_a_restart_keeps_its_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.store = Location::Sqlite(dir.path().join("natter.db"));
    let mut first = TestServer::with(config.clone()).await;
    let mut alice = first.client().await;
    assert_eq!(alice.ask("TAGS ON").await, "OK TAGS ON");
    assert_eq!(alice.ask("REGISTER alice").await, "OK REGISTER alice");
    let t = token(&mut alice).await;
    first.begin_stop();
    drop(alice);
    first.stopped().await;

    let second = TestServer::with(config).await;
    let mut bob = second.user("bob").await;
    assert_eq!(bob.ask("MESSAGE while you were away").await, "OK MESSAGE 1");
    let mut back = second.client().await;
    assert_eq!(back.ask("TAGS ON").await, "OK TAGS ON");
    assert_eq!(back.ask(&format!("RESUME {t}")).await, "OK RESUME alice");
    // Missed while it waited, written for it as it had asked: with the time and the id.
    let (tags, line) = loop {
        let l = back.text().await;
        let (tags, rest) = natter_proto::tags::split(&l);
        if rest.starts_with("MESSAGE ") {
            break (tags.id, rest.to_owned());
        }
    };
    assert_eq!(line, "MESSAGE bob while you were away");
    assert!(tags.is_some(), "the missed message has its id");
}
