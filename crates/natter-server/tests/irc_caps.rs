//! IRCv3 capabilities that shape the answers and relays, over real TCP: client-only tags on
//! PRIVMSG and NOTICE.

mod common;

use common::irc::Irc;
use common::{ClientExt, TestServer, answer};

/// An IRC user outside the everyone channel, so that only its rooms' events reach it.
async fn quiet_user(addr: std::net::SocketAddr, nick: &str, caps: &str) -> Irc {
    let mut c = if caps.is_empty() {
        Irc::user(addr, nick).await
    } else {
        Irc::with_caps(addr, nick, caps).await
    };
    c.part_everyone().await;
    c
}

#[tokio::test]
async fn client_only_tags_ride_with_privmsg_and_notice() {
    let s = TestServer::start().await;
    let mut snd = quiet_user(s.addr, "snd", "message-tags echo-message").await;
    let mut tagged = quiet_user(s.addr, "tagged", "message-tags").await;
    let mut bare = quiet_user(s.addr, "bare", "").await;
    let mut nat = s.user("nat").await;
    snd.join("#t").await;
    tagged.join("#t").await;
    bare.join("#t").await;
    assert!(answer(&mut nat, "JOIN #t").await.starts_with("OK JOIN #t"));
    snd.skip_to(":nat!nat@natter JOIN #t").await;
    tagged.skip_to(":nat!nat@natter JOIN #t").await;
    bare.skip_to(":nat!nat@natter JOIN #t").await;
    snd.quiet().await;
    tagged.quiet().await;

    // A server tag from a client is not relayed; client-only ones are, escaped as they came.
    let tags = r"+draft/react=lol;+example.com/x=a\sb;+flag;time=2000-01-01T00:00:00.000Z";
    let relayed = r"@+draft/react=lol;+example.com/x=a\sb;+flag";
    snd.send(&format!("@{tags} PRIVMSG #t :hi all")).await;
    assert_eq!(
        snd.line().await,
        format!("{relayed} :snd!snd@natter PRIVMSG #t :hi all")
    );
    let l = tagged.line().await;
    assert!(l.starts_with(&format!("{relayed};msgid=")), "{l}");
    assert!(l.ends_with(" :snd!snd@natter PRIVMSG #t :hi all"), "{l}");
    assert_eq!(bare.line().await, ":snd!snd@natter PRIVMSG #t :hi all");
    assert_eq!(nat.text().await, "SAY #t snd hi all");

    // To a user, and as a NOTICE (not kept, so no msgid).
    snd.send("@+draft/reply=7 NOTICE tagged :psst").await;
    assert_eq!(
        snd.line().await,
        "@+draft/reply=7 :snd!snd@natter NOTICE tagged psst"
    );
    assert_eq!(
        tagged.line().await,
        "@+draft/reply=7 :snd!snd@natter NOTICE tagged psst"
    );
    snd.send("@+draft/reply=8 PRIVMSG bare :hello").await;
    snd.skip_to(" PRIVMSG bare hello").await;
    assert_eq!(bare.line().await, ":snd!snd@natter PRIVMSG bare hello");

    // Too many tags: what fits in 4094 bytes goes.
    let many: Vec<String> = (0..300).map(|i| format!("+t{i:03}=0123456789")).collect();
    snd.send(&format!("@{} PRIVMSG tagged :many", many.join(";")))
        .await;
    let l = tagged.line().await;
    let (got, rest) = l.split_once(' ').unwrap();
    assert_eq!(rest, ":snd!snd@natter PRIVMSG tagged many");
    assert!(got.len() <= 4095, "{}", got.len());
    assert!(got.starts_with("@+t000=0123456789;+t001="), "{got}");
}
