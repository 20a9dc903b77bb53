//! IRCv3 capabilities that shape the answers and relays, over real TCP: labeled-response
//! (with batch) on every command, invite-notify, WALLOPS and user mode +w, and client-only
//! tags on PRIVMSG and NOTICE.

mod common;

use common::irc::Irc;
use common::{ClientExt, PW, TestServer, answer, test_config};

/// Sends `line` with the label `label` and reads its whole answer, which must come first
/// and be labeled: one line with the label, an `ACK`, or a `labeled-response` batch opened
/// with the label whose every line carries its reference (or an inner batch's, opened in
/// it). Returns the answer's lines without those tags; nothing may follow it but the PONG
/// of a PING sent after.
async fn labeled(c: &mut Irc, label: &str, line: &str) -> Vec<String> {
    c.send(&format!("@label={label} {line}")).await;
    read_labeled(c, label, line).await
}

/// Whether some line of `answer` has `word` as its command or numeric.
fn has(answer: &[String], word: &str) -> bool {
    answer.iter().any(|l| l.split(' ').nth(1) == Some(word))
}

#[tokio::test]
async fn labeled_response_on_every_command() {
    let s = TestServer::start().await;
    let mut nat = s.user("nat").await;
    let mut peer = Irc::user(s.addr, "peer").await;
    let mut c = quiet_user(s.addr, "c", "labeled-response batch message-tags").await;
    assert!(answer(&mut nat, "JOIN #r").await.starts_with("OK JOIN #r"));

    // What each command answers: its command or numeric words, one line or a batch.
    let script: &[(&str, &[&str])] = &[
        ("JOIN #room", &["JOIN", "353", "366"]),
        ("TOPIC #room :hello there", &["TOPIC"]),
        ("TOPIC #room", &["332", "333"]),
        ("NAMES #room", &["353", "366"]),
        ("WHO #room", &["352", "315"]),
        ("WHOIS peer", &["311", "318"]),
        ("WHOWAS nobody", &["406", "369"]),
        ("LIST", &["321", "322", "323"]),
        ("MODE #room", &["324"]),
        ("MODE #room +m", &["MODE"]),
        ("MODE c", &["221"]),
        ("INVITE peer #room", &["341"]),
        ("AWAY :lunch", &["306"]),
        ("AWAY", &["305"]),
        ("MONITOR + peer", &["730"]),
        ("MONITOR - peer", &["ACK"]),
        ("ISON peer nat", &["303"]),
        ("USERHOST peer", &["302"]),
        ("TIME", &["391"]),
        ("PING label", &["PONG"]),
        ("SETNAME :Someone Else", &["ACK"]),
        ("PRIVMSG #room :hi room", &["ACK"]),
        ("PRIVMSG peer :hi peer", &["ACK"]),
        ("NOTICE peer :psst", &["ACK"]),
        ("PRIVMSG nobody :hello?", &["401"]),
        ("@+typing=active TAGMSG #room", &["ACK"]),
        ("CHATHISTORY LATEST #room * 10", &["BATCH"]),
        ("LUSERS", &["251", "255"]),
        ("VERSION", &["351"]),
        ("JOIN #r", &["JOIN", "353", "366"]),
        ("KICK #room peer :out", &["KICK"]),
        ("PART #room", &["PART"]),
        ("PART #nowhere", &["403"]),
        ("NICK c2", &["NICK"]),
        ("NICK c", &["NICK"]),
        ("FROBNICATE", &["421"]),
        // Lines that do not parse are answered labeled too.
        ("JOIN", &["461"]),
        ("KICK #room", &["461"]),
        ("MODE #room +z", &["472"]),
        ("WALLOPS :hi", &["481"]),
        ("CAP LIST", &["CAP"]),
    ];
    for (i, (line, words)) in script.iter().enumerate() {
        if line.starts_with("KICK #room peer") {
            // KICK needs peer in the room; joined here, with nothing for c to hear.
            peer.join("#room").await;
            c.skip_to(":peer!peer@natter JOIN #room").await;
            c.quiet().await;
        }
        // A tag before the label is kept with the command.
        let (tags, line) = match line.strip_prefix('@') {
            Some(rest) => {
                let (t, l) = rest.split_once(' ').unwrap();
                (format!("{t};"), l)
            }
            None => (String::new(), *line),
        };
        c.send(&format!("@{tags}label=L{i} {line}")).await;
        let got = read_labeled(&mut c, &format!("L{i}"), line).await;
        for w in *words {
            assert!(has(&got, w), "{line:?} should answer with {w}, got {got:?}");
        }
    }

    // Not UTF-8: its label is read all the same (escaped as tags are).
    common::within(c.w.send_raw(b"@label=a\\sb PRIVMSG #r :\xff\r\n"))
        .await
        .unwrap();
    assert_eq!(
        c.line().await,
        "@label=a\\sb :natter FAIL * INVALID_UTF8 :Message rejected: this server takes UTF-8 only"
    );
    c.quiet().await;

    // A label longer than 64 bytes is not repeated.
    c.send(&format!("@label={} TIME", "y".repeat(65))).await;
    assert!(c.line().await.starts_with(":natter 391 c "));
    c.quiet().await;

    // echo-message: the echo is the labeled answer.
    let mut e = Irc::with_caps(s.addr, "e", "labeled-response batch echo-message").await;
    e.join("#r").await;
    let echo = labeled(&mut e, "e1", "PRIVMSG #r :said once").await;
    assert_eq!(echo, [":e!e@natter PRIVMSG #r :said once"]);
    let echo = labeled(&mut e, "e2", "PRIVMSG peer,nobody :two").await;
    assert_eq!(
        echo,
        [
            ":e!e@natter PRIVMSG peer two",
            ":natter 401 e nobody :No such nick/channel"
        ]
    );

    // Without batch a label is not repeated: the specification needs both.
    let mut plain = Irc::with_caps(s.addr, "plain", "labeled-response").await;
    plain.send("@label=x TIME").await;
    assert!(plain.line().await.starts_with(":natter 391 plain "));
    plain.quiet().await;
}

/// Reads the labeled answer to `line` (see [`labeled`]).
async fn read_labeled(c: &mut Irc, label: &str, line: &str) -> Vec<String> {
    let first = c.line().await;
    let tag = format!("@label={label} ");
    let Some(rest) = first.strip_prefix(&tag) else {
        panic!("{line:?}: the first line is not labeled: {first:?}");
    };
    let Some(open) = rest
        .strip_prefix(":natter BATCH +")
        .and_then(|r| r.strip_suffix(" labeled-response"))
    else {
        c.quiet().await;
        return vec![rest.to_owned()];
    };
    let id = open.to_owned();
    let mut inner: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    loop {
        let l = c.line().await;
        if l == format!(":natter BATCH -{id}") {
            break;
        }
        let (tags, rest) = l
            .strip_prefix('@')
            .and_then(|l| l.split_once(' '))
            .unwrap_or_else(|| panic!("{line:?}: a line outside the batch: {l:?}"));
        let reference = tags
            .split(';')
            .find_map(|t| t.strip_prefix("batch="))
            .unwrap_or_else(|| panic!("{line:?}: a line outside the batch: {l:?}"));
        assert!(
            reference == id || inner.iter().any(|i| i == reference),
            "{line:?}: a line of another batch: {l:?}"
        );
        if let Some(nested) = rest.strip_prefix(":natter BATCH +") {
            inner.push(nested.split(' ').next().unwrap().to_owned());
        }
        assert!(!tags.contains("label="), "{line:?}: labeled twice: {l:?}");
        lines.push(rest.to_owned());
    }
    assert!(lines.len() > 1, "{line:?}: a batch of one line: {lines:?}");
    c.quiet().await;
    lines
}

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
async fn the_echo_carries_the_msgid_and_time_the_others_got() {
    let s = TestServer::start().await;
    let mut snd = quiet_user(s.addr, "snd", "message-tags server-time echo-message").await;
    let mut other = quiet_user(s.addr, "other", "message-tags server-time").await;
    snd.join("#t").await;
    other.join("#t").await;
    snd.skip_to(":other!other@natter JOIN #t").await;

    snd.send("PRIVMSG #t :hello").await;
    let echo = snd.line().await;
    assert!(
        echo.starts_with("@msgid=") && echo.contains(";time="),
        "{echo}"
    );
    assert_eq!(other.line().await, echo);

    // A native's long message, split for IRC's line length: the msgid on the first piece
    // only (a client that drops what it has seen by msgid keeps the rest), the time on each.
    let mut nat = s.user("nat").await;
    assert!(answer(&mut nat, "JOIN #t").await.starts_with("OK JOIN #t"));
    other.skip_to(":nat!nat@natter JOIN #t").await;
    snd.skip_to(":nat!nat@natter JOIN #t").await;
    let long = "word ".repeat(150);
    assert!(
        answer(&mut nat, &format!("SAY #t {long}"))
            .await
            .starts_with("OK SAY")
    );
    let (first, second) = (other.line().await, other.line().await);
    assert!(first.starts_with("@msgid="), "{first}");
    assert!(second.starts_with("@time="), "{second}");
    assert_eq!(snd.line().await, first);
    assert_eq!(snd.line().await, second);

    // A TAGMSG comes back too, with the msgid the others got (a reaction may point at it).
    snd.send("@+draft/react=yes TAGMSG #t").await;
    let echo = snd.line().await;
    assert!(echo.starts_with("@+draft/react=yes;msgid="), "{echo}");
    assert!(echo.ends_with(" :snd!snd@natter TAGMSG #t"), "{echo}");
    let got = other.skip_to(" TAGMSG #t").await;
    let msgid = |l: &str| {
        l.split(';')
            .find(|t| t.starts_with("msgid="))
            .map(str::to_owned)
    };
    assert_eq!(msgid(&got), msgid(&echo));
    snd.quiet().await;
    other.quiet().await;
}

#[tokio::test]
async fn extended_join_gives_an_irc_users_real_name() {
    let s = TestServer::start().await;
    let mut w = quiet_user(s.addr, "w", "extended-join").await;
    w.join("#x").await;
    let mut r = quiet_user(s.addr, "r", "").await;
    r.join("#x").await;
    assert_eq!(w.line().await, ":r!r@natter JOIN #x * :r real");
    r.send("SETNAME :Someone Else").await;
    r.send("PART #x").await;
    r.skip_to(" PART #x").await;
    r.join("#x").await;
    assert_eq!(w.line().await, ":r!r@natter PART #x");
    assert_eq!(w.line().await, ":r!r@natter JOIN #x * :Someone Else");
    // A native has no real name: its name stands for it.
    let mut nat = s.user("nat").await;
    assert!(answer(&mut nat, "JOIN #x").await.starts_with("OK JOIN #x"));
    assert_eq!(w.line().await, ":nat!nat@natter JOIN #x * nat");
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
    let l = tagged.line().await;
    assert!(l.starts_with(&format!("{relayed};msgid=")), "{l}");
    assert!(l.ends_with(" :snd!snd@natter PRIVMSG #t :hi all"), "{l}");
    // The echo is the same line, msgid included.
    assert_eq!(snd.line().await, l);
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

    // Tags up to the 4094 bytes a client may send all go; one byte more and the line is
    // refused with 417, relayed to no one.
    let mut many: Vec<String> = (0..240).map(|i| format!("+t{i:03}=0123456789")).collect();
    let pad = 4094 - many.join(";").len() - ";+x=".len();
    many.push(format!("+x={}", "y".repeat(pad)));
    assert_eq!(many.join(";").len(), 4094);
    snd.send(&format!("@{} PRIVMSG tagged :many", many.join(";")))
        .await;
    let l = tagged.line().await;
    let (got, rest) = l.split_once(' ').unwrap();
    assert_eq!(rest, ":snd!snd@natter PRIVMSG tagged many");
    assert_eq!(got, format!("@{}", many.join(";")));
    snd.skip_to(" PRIVMSG tagged many").await;
    many.last_mut().unwrap().push('3');
    snd.expect(
        &format!("@{} PRIVMSG tagged :too many", many.join(";")),
        "417",
    )
    .await;
    snd.quiet().await;
    tagged.quiet().await;
}
