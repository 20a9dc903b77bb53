//! IRCv3 capabilities that shape the answers and relays, over real TCP: invite-notify,
//! WALLOPS and user mode +w, and client-only tags on PRIVMSG and NOTICE.

mod common;

use common::irc::Irc;
use common::{ClientExt, PW, TestServer, answer, test_config};

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
async fn invite_notify_tells_the_channel_s_members() {
    let s = TestServer::start().await;
    let mut op = quiet_user(s.addr, "op", "invite-notify").await;
    let mut m = quiet_user(s.addr, "m", "invite-notify").await;
    let mut o = quiet_user(s.addr, "o", "").await;
    let mut x = quiet_user(s.addr, "x", "").await;
    let mut nat = s.user("nat").await;
    op.join("#inv").await;
    op.send("MODE #inv +i").await;
    op.skip_to(" MODE #inv +i").await;

    op.expect("INVITE m #inv", "341").await;
    assert_eq!(m.line().await, ":op!op@natter INVITE m #inv");
    m.join("#inv").await;
    op.skip_to(":m!m@natter JOIN #inv").await;
    // The inviter has its 341 and the invited its INVITE; the members with the cap hear.
    op.expect("INVITE o #inv", "341").await;
    assert_eq!(m.line().await, ":op!op@natter INVITE o #inv");
    assert_eq!(o.line().await, ":op!op@natter INVITE o #inv");
    o.join("#inv").await;
    op.skip_to(":o!o@natter JOIN #inv").await;
    m.skip_to(":o!o@natter JOIN #inv").await;

    // A native's invitation too, and a native invited.
    op.expect("INVITE nat #inv", "341").await;
    assert_eq!(m.line().await, ":op!op@natter INVITE nat #inv");
    assert_eq!(nat.text().await, "INVITED #inv op");
    assert!(
        answer(&mut nat, "JOIN #inv")
            .await
            .starts_with("OK JOIN #inv")
    );
    for c in [&mut op, &mut m, &mut o] {
        c.skip_to(":nat!nat@natter JOIN #inv").await;
    }
    op.send("MODE #inv +o nat").await;
    for c in [&mut op, &mut m, &mut o] {
        c.skip_to(" MODE #inv +o nat").await;
    }
    assert_eq!(answer(&mut nat, "INVITE #inv x").await, "OK INVITE #inv x");
    assert_eq!(x.line().await, ":nat!nat@natter INVITE x #inv");
    assert_eq!(op.line().await, ":nat!nat@natter INVITE x #inv");
    assert_eq!(m.line().await, ":nat!nat@natter INVITE x #inv");
    // Without the cap, nothing.
    o.quiet().await;
    x.quiet().await;
}

#[tokio::test]
async fn wallops_reach_users_with_mode_w() {
    let mut config = test_config();
    config.operators = vec!["root".into()];
    let s = TestServer::with(config).await;
    let mut root = quiet_user(s.addr, "root", "").await;
    // Not an operator before it holds the account.
    root.expect("WALLOPS :too soon", "481").await;
    root.send(&format!("PRIVMSG NickServ :REGISTER {PW}")).await;
    root.skip_to(" 900 ").await;
    root.skip_to("is now registered").await;
    let mut w = quiet_user(s.addr, "w", "").await;
    let mut u = quiet_user(s.addr, "u", "").await;

    assert_eq!(w.expect("MODE w", "221").await, ":natter 221 w +");
    w.send("MODE w +w").await;
    assert_eq!(w.line().await, ":w!w@natter MODE w +w");
    assert_eq!(w.expect("MODE w", "221").await, ":natter 221 w +w");
    // Setting it again changes nothing, and says nothing.
    w.send("MODE w +wi").await;
    w.quiet().await;
    w.expect("MODE u +w", "502").await;

    u.expect("WALLOPS :let me", "481").await;
    root.expect("WALLOPS", "461").await;
    root.send("WALLOPS :restart at noon").await;
    assert_eq!(w.line().await, ":root!root@natter WALLOPS :restart at noon");
    root.quiet().await;
    u.quiet().await;

    w.send("MODE w -w").await;
    assert_eq!(w.line().await, ":w!w@natter MODE w -w");
    root.send("WALLOPS :again").await;
    root.quiet().await;
    w.quiet().await;
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
