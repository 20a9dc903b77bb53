//! IRC behaviour that public conformance suites check (irctest, see bench/irctest.md), each
//! over real TCP with raw lines.

mod common;

use common::TestServer;
use common::irc::Irc;

#[tokio::test]
async fn client_tags_over_4094_bytes_are_refused_with_417() {
    let s = TestServer::start().await;
    let mut a = Irc::with_caps(s.addr, "a", "message-tags").await;
    let mut b = Irc::with_caps(s.addr, "b", "message-tags").await;
    a.part_everyone().await;
    b.part_everyone().await;
    a.join("#xyz").await;
    b.join("#xyz").await;
    a.skip_to(":b!b@natter JOIN #xyz").await;
    let tag = format!("+clientOnlyTagExample={}", "a".repeat(4096));
    a.expect(&format!("@{tag} PRIVMSG #xyz hi!"), "417").await;
    a.quiet().await;
    // Nothing was relayed: b's next line is the answer to its own PING.
    b.quiet().await;
}

#[tokio::test]
async fn an_empty_channel_key_is_refused() {
    let s = TestServer::start().await;
    let mut op = Irc::user(s.addr, "op").await;
    op.part_everyone().await;
    op.join("#chan").await;
    let l = op.expect("MODE #chan +k :", "696").await;
    assert!(l.contains(" #chan k "), "{l}");
    op.quiet().await;
    // No key was set: anyone may join without one.
    let mut other = Irc::user(s.addr, "other").await;
    other.send("JOIN #chan").await;
    assert_eq!(other.line().await, ":other!other@natter JOIN #chan");
}
