//! Typing notifications over real sockets: `TYPING` between natives that said `TAGS ON`,
//! `TAGMSG +typing` between IRC clients with `message-tags`, and each to the other; nothing
//! for clients that cannot show them.

mod common;

use common::irc::Irc;
use common::{ClientExt, TestServer, answer};
use natter_proto::ErrorCode::*;

/// An IRC user with `message-tags`, out of the everyone channel, in `#r`.
async fn tagged_irc(s: &TestServer, nick: &str) -> Irc {
    let mut c = Irc::connect(s.addr).await;
    c.send("CAP LS 302").await;
    c.send("CAP REQ :message-tags").await;
    c.skip_to(" ACK ").await;
    c.send("CAP END").await;
    c.send(&format!("NICK {nick}")).await;
    c.send(&format!("USER {nick} 0 * :{nick}")).await;
    c.skip_to(" 366 ").await;
    c.part_everyone().await;
    c.join("#r").await;
    c
}

#[tokio::test]
async fn natives_that_said_tags_on_see_typing_in_rooms_dms_and_everyone() {
    let s = TestServer::start().await;
    let mut ann = s.user("ann").await;
    let mut bob = s.user("bob").await;
    let mut lab = s.user("lab").await;
    assert_eq!(answer(&mut bob, "TAGS ON").await, "OK TAGS ON");
    for c in [&mut ann, &mut bob, &mut lab] {
        assert_eq!(answer(c, "JOIN #r").await.split(' ').nth(1), Some("JOIN"));
    }
    while !bob.text().await.ends_with("JOINED #r lab") {}
    while ann.text().await != "JOINED #r lab" {}

    assert_eq!(ann.ask("TYPING #r active").await, "OK TYPING active");
    let got = bob.text().await;
    assert!(
        got.starts_with("@time=") && got.ends_with(" TYPING #r ann active"),
        "{got}"
    );
    assert_eq!(ann.ask("TYPING bob paused").await, "OK TYPING paused");
    assert!(bob.text().await.ends_with(" TYPING ann ann paused"));
    assert_eq!(ann.ask("TYPING * done").await, "OK TYPING done");
    assert!(bob.text().await.ends_with(" TYPING * ann done"));
    // A client that never said TAGS ON (the lab's, nc) sees none of it.
    lab.expect_quiet().await;
    ann.expect_quiet().await;

    ann.expect_error("TYPING #elsewhere active", NoSuchRoom)
        .await;
    ann.expect_error("TYPING nobody active", NoSuchUser).await;
    ann.expect_error("TYPING ann active", CannotDmSelf).await;
    ann.expect_error("TYPING #r soon", BadParameter).await;
    assert_eq!(answer(&mut lab, "PART #r").await, "OK PART #r");
    lab.expect_error("TYPING #r active", NotInRoom).await;
}

#[tokio::test]
async fn irc_typing_and_client_tags_reach_irc_and_native_users() {
    let s = TestServer::start().await;
    let mut ann = s.user("ann").await;
    assert_eq!(answer(&mut ann, "TAGS ON").await, "OK TAGS ON");
    assert_eq!(answer(&mut ann, "JOIN #r").await, "OK JOIN #r 1");
    let mut ike = tagged_irc(&s, "ike").await;
    let mut jo = tagged_irc(&s, "jo").await;
    // An IRC user without message-tags.
    let mut old = Irc::user(s.addr, "old").await;
    old.part_everyone().await;
    old.join("#r").await;
    ike.skip_to(" JOIN #r").await;
    ike.skip_to(" JOIN #r").await;
    jo.skip_to(" JOIN #r").await;

    ike.send("@+typing=active;+draft/react=\\:) TAGMSG #r")
        .await;
    let got = jo.line().await;
    // The client's tags as they came, then a msgid of the server's.
    let (tags, rest) = got.split_once(' ').unwrap();
    assert_eq!(rest, ":ike!ike@natter TAGMSG #r");
    let msgid = tags
        .strip_prefix("@+typing=active;+draft/react=\\:);msgid=")
        .unwrap_or_else(|| panic!("{got}"));
    assert!(msgid.parse::<i64>().is_ok(), "{got}");
    let got = loop {
        let l = ann.text().await;
        if l.contains("TYPING") {
            break l;
        }
    };
    assert!(got.ends_with(" TYPING #r ike active"), "{got}");
    old.quiet().await;

    // A native's TYPING reaches IRC users as TAGMSG, in the room and in a DM.
    assert_eq!(ann.ask("TYPING #r active").await, "OK TYPING active");
    assert!(jo.line().await.contains("+typing=active"));
    assert!(ike.line().await.ends_with(" :ann!ann@natter TAGMSG #r"));
    assert_eq!(ann.ask("TYPING jo done").await, "OK TYPING done");
    let dm = jo.line().await;
    assert!(
        dm.starts_with("@+typing=done") && dm.ends_with(" TAGMSG jo"),
        "{dm}"
    );
    old.quiet().await;

    // A TAGMSG where its sender may not send is refused as a PRIVMSG would be.
    jo.expect("@+typing=active TAGMSG #nowhere", "403").await;
    jo.expect("@+typing=active TAGMSG nobody", "401").await;
    jo.send("PART #r").await;
    jo.skip_to(" PART #r").await;
    jo.expect("@+typing=active TAGMSG #r", "404").await;
}
