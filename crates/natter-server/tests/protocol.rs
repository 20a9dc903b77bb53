//! The lab's protocol over real TCP: every command, every error code, the registration gate.

mod common;

use common::{ClientExt, TestServer};
use natter_proto::ErrorCode::*;
use natter_proto::{ServerLine, help};

#[tokio::test]
async fn greets_and_lists_commands() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.say("HELP").await;
    for e in help::ENTRIES {
        let l = c.text().await;
        assert!(l.starts_with(&format!("HELP {}", e.usage)), "{l}");
    }
    assert_eq!(c.text().await, "OK HELP");
    let one = c.ask("help dm").await;
    assert!(one.starts_with("HELP DM <user> <text>"), "{one}");
    assert_eq!(c.text().await, "OK HELP");
    c.expect_error("HELP FLY", UnknownCommand).await;
}

#[tokio::test]
async fn greeting_comes_first_even_when_the_client_speaks_first() {
    let s = TestServer::start().await;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (r, w) = stream.into_split();
    let mut w = natter_conn::LineWriter::new(w);
    let mut r = natter_conn::LineReader::new(r);
    w.send("REGISTER early").await.unwrap();
    let hello = r.next_text().await.unwrap().unwrap();
    assert!(hello.starts_with("HELLO natter "), "{hello}");
    assert!(hello.contains("HELP"));
    assert_eq!(r.next_text().await.unwrap().unwrap(), "OK REGISTER early");
}

#[tokio::test]
async fn unregistered_clients_may_only_register_help_and_close() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for line in [
        "LIST",
        "MESSAGE hi",
        "DM bob hi",
        "message",
        "DM",
        "list extra",
    ] {
        c.expect_error(line, NotRegistered).await;
    }
    c.expect_error("JUMP", UnknownCommand).await;
    c.expect_error("REGISTER", MissingParameter).await;
    assert_eq!(c.ask("REGISTER amy").await, "OK REGISTER amy");
    assert_eq!(c.ask("LIST").await, "USER amy");
    assert_eq!(c.text().await, "OK LIST 1");
}

#[tokio::test]
async fn commands_ignore_case_and_accept_lf_or_crlf() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    a.writer
        .send_raw(b"register ann\r\nhElP close\nLiSt\r\n")
        .await
        .unwrap();
    assert_eq!(a.text().await, "OK REGISTER ann");
    assert!(a.text().await.starts_with("HELP CLOSE"));
    assert_eq!(a.text().await, "OK HELP");
    assert_eq!(a.text().await, "USER ann");
    assert_eq!(a.text().await, "OK LIST 1");
    // Blank lines and lone CRs are ignored, not errors.
    a.writer.send_raw(b"\n\r\n   \n").await.unwrap();
    a.expect_quiet().await;
}

#[tokio::test]
async fn names_are_unique_ignoring_case() {
    let s = TestServer::start().await;
    let _alice = s.user("Alice").await;
    let mut b = s.client().await;
    b.expect_error("REGISTER alice", NameTaken).await;
    b.expect_error("REGISTER ALICE", NameTaken).await;
    assert_eq!(b.ask("REGISTER bob").await, "OK REGISTER bob");
    b.expect_error("REGISTER aLiCe", NameTaken).await;
}

#[tokio::test]
async fn invalid_names_are_refused_with_the_reason() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for bad in [
        "two words",
        "9lives",
        "-dash",
        "a:b",
        "zoë",
        &"x".repeat(33),
    ] {
        c.expect_error(&format!("REGISTER {bad}"), InvalidName)
            .await;
    }
    let l = c.ask("REGISTER two words").await;
    assert!(l.contains("spaces"), "{l}");
    assert_eq!(
        c.ask(&format!("REGISTER {}", "x".repeat(32))).await,
        format!("OK REGISTER {}", "x".repeat(32))
    );
}

#[tokio::test]
async fn message_reaches_every_other_registered_user_exactly_as_typed() {
    let s = TestServer::start().await;
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    let mut c = s.user("c").await;
    let mut lurker = s.client().await;
    assert_eq!(a.text().await, "ONLINE b");
    assert_eq!(a.text().await, "ONLINE c");
    assert_eq!(b.text().await, "ONLINE c");

    assert_eq!(a.ask("MESSAGE  hello   there  ").await, "OK MESSAGE 2");
    for r in [&mut b, &mut c] {
        assert_eq!(r.text().await, "MESSAGE a hello   there  ");
    }
    // The sender does not get its own broadcast; the unregistered client gets nothing.
    a.expect_quiet().await;
    lurker.expect_quiet().await;
    assert_eq!(b.ask("message émoji 🎉 and\ttab").await, "OK MESSAGE 2");
    assert_eq!(
        a.line().await,
        ServerLine::Message {
            from: "b".into(),
            text: "émoji 🎉 and\ttab".into()
        }
    );
}

#[tokio::test]
async fn message_errors() {
    let s = TestServer::start().await;
    let mut a = s.user("solo").await;
    a.expect_error("MESSAGE hi", NoRecipients).await;
    let _b = s.user("other").await;
    assert_eq!(a.text().await, "ONLINE other");
    a.expect_error("MESSAGE", EmptyText).await;
    a.expect_error("MESSAGE      ", EmptyText).await;
    a.expect_error("MESSAGE bell\u{7}", BadText).await;
    a.expect_error("MESSAGE \u{1b}[2Jclear screen", BadText)
        .await;
    a.expect_error("MESSAGE c1 \u{9b}", BadText).await;
    // Invisible text is blank; a tower of accents and a directional mark are refused.
    a.expect_error("MESSAGE \u{200B}\u{2800} \u{3164}", EmptyText)
        .await;
    a.expect_error(&format!("MESSAGE e{}", "\u{301}".repeat(300)), BadText)
        .await;
    a.expect_error("MESSAGE abc\u{200F}def", BadText).await;
    a.expect_error("TOPIC #nowhere \u{200B}", NoSuchRoom).await;
    assert_eq!(a.ask("MESSAGE ok").await, "OK MESSAGE 1");
}

#[tokio::test]
async fn dm_reaches_only_its_target() {
    let s = TestServer::start().await;
    let mut a = s.user("amy").await;
    let mut b = s.user("Bea").await;
    let mut c = s.user("cat").await;
    assert_eq!(a.text().await, "ONLINE Bea");
    assert_eq!(a.text().await, "ONLINE cat");
    assert_eq!(a.ask("DM bea  psst,  quiet ").await, "OK DM Bea");
    assert_eq!(b.text().await, "ONLINE cat");
    assert_eq!(b.text().await, "DM amy psst,  quiet ");
    c.expect_quiet().await;
    b.expect_quiet().await;
    a.expect_error("DM nobody hi", NoSuchUser).await;
    a.expect_error("DM AMY hi", CannotDmSelf).await;
    a.expect_error("DM bea", EmptyText).await;
    a.expect_error("DM bea    ", EmptyText).await;
    a.expect_error("DM", MissingParameter).await;
    a.expect_error("DM bea \u{0}", BadText).await;
}

#[tokio::test]
async fn parameters_are_checked() {
    let s = TestServer::start().await;
    let mut a = s.user("p").await;
    a.expect_error("LIST everyone", TooManyParameters).await;
    a.expect_error("CLOSE now", TooManyParameters).await;
    a.expect_error("HELP a b", TooManyParameters).await;
    a.expect_error("SHOUT hi", UnknownCommand).await;
    let unknown = a.ask("\u{1b}[31m hi").await;
    assert!(unknown.starts_with("ERROR UNKNOWN_COMMAND"), "{unknown}");
    assert!(!unknown.contains('\u{1b}'));
}

#[tokio::test]
async fn register_again_renames_and_everyone_is_told() {
    let s = TestServer::start().await;
    let mut a = s.user("old").await;
    let mut b = s.user("watcher").await;
    assert_eq!(a.text().await, "ONLINE watcher");
    assert_eq!(a.ask("REGISTER new").await, "OK REGISTER new");
    assert_eq!(b.text().await, "RENAMED old new");
    // Same name again is a no-op; a case change is a rename.
    assert_eq!(a.ask("REGISTER new").await, "OK REGISTER new");
    assert_eq!(a.ask("REGISTER NEW").await, "OK REGISTER NEW");
    assert_eq!(b.text().await, "RENAMED new NEW");
    b.expect_quiet().await;
    // The old name is free again; the new one is taken.
    b.expect_error("REGISTER new", NameTaken).await;
    let _c = s.user("old").await;
    assert_eq!(b.text().await, "ONLINE old");
    assert_eq!(b.ask("DM new hi").await, "OK DM NEW");
    assert_eq!(a.text().await, "ONLINE old");
    assert_eq!(a.text().await, "DM watcher hi");
}

#[tokio::test]
async fn leaving_is_announced_and_frees_the_name() {
    let s = TestServer::start().await;
    let mut a = s.user("stay").await;
    let mut b = s.user("go").await;
    assert_eq!(a.text().await, "ONLINE go");
    assert_eq!(b.ask("CLOSE").await, "BYE CLOSED goodbye");
    assert!(b.until_closed().await.is_empty());
    assert_eq!(a.text().await, "OFFLINE go");

    let c = s.user("drop").await;
    assert_eq!(a.text().await, "ONLINE drop");
    drop(c);
    assert_eq!(a.text().await, "OFFLINE drop");
    let _again = s.user("go").await;
    assert_eq!(a.text().await, "ONLINE go");
    assert_eq!(a.ask("LIST").await, "USER go");
    assert_eq!(a.text().await, "USER stay");
    assert_eq!(a.text().await, "OK LIST 2");
}

#[tokio::test]
async fn close_works_before_registering_and_drops_the_rest() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.writer.send_raw(b"CLOSE\nREGISTER ghost\n").await.unwrap();
    assert_eq!(c.until_closed().await, vec!["BYE CLOSED goodbye"]);
    let mut d = s.client().await;
    assert_eq!(d.ask("REGISTER ghost").await, "OK REGISTER ghost");
}

#[tokio::test]
async fn long_lines_are_refused_and_the_connection_stays_usable() {
    let s = TestServer::start().await;
    let mut a = s.user("long").await;
    let mut b = s.user("reader").await;
    let max = natter_proto::limits::MAX_LINE_BYTES;
    // Exactly at the limit is fine.
    let text = "y".repeat(max - "MESSAGE ".len());
    assert_eq!(a.text().await, "ONLINE reader");
    assert_eq!(a.ask(&format!("MESSAGE {text}")).await, "OK MESSAGE 1");
    assert_eq!(b.text().await, format!("MESSAGE long {text}"));
    // One byte over is not.
    a.expect_error(&format!("MESSAGE {text}z"), LineTooLong)
        .await;
    // Ten MiB without a newline: one error, then the connection still works.
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..10 {
        a.writer.send_raw(&chunk).await.unwrap();
    }
    assert!(a.text().await.starts_with("ERROR LINE_TOO_LONG "));
    a.writer.send_raw(b"\n").await.unwrap();
    assert_eq!(a.ask("MESSAGE still here").await, "OK MESSAGE 1");
    assert_eq!(b.text().await, "MESSAGE long still here");
}

#[tokio::test]
async fn invalid_utf8_and_binary_get_errors_without_harm() {
    let s = TestServer::start().await;
    let mut a = s.user("bin").await;
    a.writer.send_raw(b"MESSAGE \xff\xfe\n").await.unwrap();
    assert!(a.text().await.starts_with("ERROR INVALID_UTF8 "));
    a.writer.send_raw(b"\0\0\0\n").await.unwrap();
    assert!(a.text().await.starts_with("ERROR UNKNOWN_COMMAND "));
    a.writer.send_raw(b"MESSAGE a\rb\n").await.unwrap();
    assert!(a.text().await.starts_with("ERROR BAD_TEXT "));
    a.expect_quiet().await;
}

#[tokio::test]
async fn half_closed_client_still_gets_its_answers() {
    let s = TestServer::start().await;
    let mut watcher = s.user("w").await;
    let mut c = s.client().await;
    c.writer.send_raw(b"REGISTER half\nLIST").await.unwrap();
    c.writer.shutdown().await.unwrap();
    assert_eq!(
        c.until_closed().await,
        vec!["OK REGISTER half", "USER half", "USER w", "OK LIST 2"]
    );
    assert_eq!(watcher.text().await, "ONLINE half");
    assert_eq!(watcher.text().await, "OFFLINE half");
}

/// MESSAGEs that arrive together go out together, but every answer, error and delivery keeps
/// the order of the commands, whatever sits between them.
#[tokio::test]
async fn pipelined_messages_keep_their_order_around_other_commands() {
    let s = TestServer::start().await;
    let mut amy = s.user("amy").await;
    let mut bob = s.user("bob").await;
    assert_eq!(amy.text().await, "ONLINE bob");
    let mut burst = String::new();
    for i in 0..50 {
        burst.push_str(&format!("MESSAGE m{i}\n"));
        match i {
            10 => burst.push_str("FOO\n"),
            20 => burst.push_str("DM amy direct\n"),
            25 => burst.push_str("DM amy d1\nDM AMY d2\nDM nobody x\nDM amy d3\n"),
            30 => burst.push_str("MESSAGE\n"),
            40 => burst.push_str("LIST\n"),
            _ => {}
        }
    }
    common::within(bob.writer.send_raw(burst.as_bytes()))
        .await
        .unwrap();
    for i in 0..50 {
        assert_eq!(bob.text().await, "OK MESSAGE 1");
        match i {
            10 => assert!(bob.text().await.starts_with("ERROR UNKNOWN_COMMAND ")),
            20 => assert_eq!(bob.text().await, "OK DM amy"),
            25 => {
                assert_eq!(bob.text().await, "OK DM amy");
                assert_eq!(bob.text().await, "OK DM amy");
                assert!(bob.text().await.starts_with("ERROR NO_SUCH_USER "));
                assert_eq!(bob.text().await, "OK DM amy");
            }
            30 => assert!(bob.text().await.starts_with("ERROR EMPTY_TEXT ")),
            40 => {
                assert_eq!(bob.text().await, "USER amy");
                assert_eq!(bob.text().await, "USER bob");
                assert_eq!(bob.text().await, "OK LIST 2");
            }
            _ => {}
        }
    }
    for i in 0..50 {
        assert_eq!(amy.text().await, format!("MESSAGE bob m{i}"));
        if i == 20 {
            assert_eq!(amy.text().await, "DM bob direct");
        }
        if i == 25 {
            for d in ["d1", "d2", "d3"] {
                assert_eq!(amy.text().await, format!("DM bob {d}"));
            }
        }
    }
    // Nothing was held back: a lone MESSAGE is delivered without anything after it.
    bob.say("MESSAGE last").await;
    assert_eq!(amy.text().await, "MESSAGE bob last");
    assert_eq!(bob.text().await, "OK MESSAGE 1");
}
