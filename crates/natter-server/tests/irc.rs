//! IRC clients over real TCP: registration, channels as rooms, numerics, and conversations
//! with native clients in both directions.

mod common;

use common::irc::Irc;
use common::{ClientExt, LIMIT, TestServer, within};
use natter_server::Config;
use natter_server::config::IrcConfig;
use std::time::Duration;

#[tokio::test]
async fn registration_without_cap_gets_the_welcome_burst() {
    let s = TestServer::start().await;
    let mut native = s.user("nat").await;
    let mut c = Irc::connect(s.addr).await;
    c.send("NICK ircy").await;
    c.send("USER ircy 0 * :Irc Y").await;
    let mut codes = Vec::new();
    let mut isupport = String::new();
    loop {
        let l = c.line().await;
        let code = l.split(' ').nth(1).unwrap().to_owned();
        if code == "005" {
            isupport.push_str(&l);
        }
        codes.push(code.clone());
        if code == "422" {
            break;
        }
    }
    for token in [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=50",
        "PREFIX=(ov)@+",
        "TARGMAX=",
    ] {
        assert!(isupport.contains(token), "{token} missing from {isupport}");
    }
    // The ISUPPORT tokens take two lines, each within the 13 parameters clients read.
    assert_eq!(
        codes,
        [
            "001", "002", "003", "004", "005", "005", "251", "252", "254", "255", "265", "266",
            "422"
        ]
    );
    assert_eq!(c.line().await, ":ircy!ircy@natter JOIN #everyone");
    assert!(c.line().await.starts_with(":natter 332 ircy #everyone :"));
    // The everyone channel's names come in the order people arrived.
    assert_eq!(c.line().await, ":natter 353 ircy = #everyone :nat ircy");
    assert_eq!(
        c.line().await,
        ":natter 366 ircy #everyone :End of /NAMES list."
    );
    assert_eq!(native.text().await, "ONLINE ircy");
}

#[tokio::test]
async fn cap_negotiation_holds_registration_and_enables_server_time() {
    let s = TestServer::start().await;
    let mut native = s.user("nat").await;
    let mut c = Irc::connect(s.addr).await;
    c.send("CAP LS 302").await;
    assert_eq!(
        c.line().await,
        ":natter CAP * LS :account-notify account-tag away-notify batch draft/account-registration draft/chathistory draft/multiline=max-bytes=4096,max-lines=100 echo-message extended-join extended-monitor invite-notify labeled-response message-tags multi-prefix sasl=PLAIN server-time setname userhost-in-names"
    );
    c.send("NICK capper").await;
    c.send("USER capper 0 * :Cap").await;
    c.send("CAP REQ :server-time bogus").await;
    assert_eq!(c.line().await, ":natter CAP * NAK :server-time bogus");
    c.send("CAP REQ :server-time echo-message").await;
    assert_eq!(
        c.line().await,
        ":natter CAP * ACK :server-time echo-message"
    );
    c.send("CAP LIST").await;
    assert_eq!(
        c.line().await,
        ":natter CAP * LIST :echo-message server-time"
    );
    // Nothing was registered while negotiating: the next line answers the PING.
    c.quiet().await;
    c.send("CAP END").await;
    assert!(c.line().await.starts_with(":natter 001 capper "));
    c.skip_to(" 366 ").await;
    assert_eq!(native.text().await, "ONLINE capper");
    assert_eq!(native.ask("MESSAGE timed").await, "OK MESSAGE 1");
    let l = c.line().await;
    assert!(l.starts_with("@time=20"), "{l}");
    assert!(
        l.ends_with(" :nat!nat@natter PRIVMSG #everyone timed"),
        "{l}"
    );
    // echo-message: our own message comes back to us.
    c.send("PRIVMSG #everyone :echo me").await;
    let echo = c.line().await;
    assert!(
        echo.ends_with(":capper!capper@natter PRIVMSG #everyone :echo me"),
        "{echo}"
    );
    assert_eq!(native.text().await, "MESSAGE capper echo me");
}

#[tokio::test]
async fn unregistered_clients_get_451_but_ping_works() {
    let s = TestServer::start().await;
    let mut c = Irc::connect(s.addr).await;
    // An IRC client is recognised by its first line: CAP, PASS, NICK or USER.
    c.send("CAP LS").await;
    c.line().await;
    c.expect("PING :early", "PONG").await;
    c.expect("JOIN #a", "451").await;
    c.expect("PRIVMSG x :y", "451").await;
    c.send("NICK late").await;
    c.send("USER late 0 * :Late").await;
    c.send("CAP END").await;
    assert!(c.line().await.starts_with(":natter 001 late "));
}

#[tokio::test]
async fn nick_errors_and_collisions_in_both_directions() {
    let s = TestServer::start().await;
    let mut native = s.user("Taken").await;
    let mut c = Irc::connect(s.addr).await;
    c.expect("NICK", "431").await;
    c.expect("NICK 9lives", "432").await;
    c.send("USER x 0 * :X").await;
    // The native's name, in another case, is taken for IRC too.
    let l = c.expect("NICK taken", "433").await;
    assert!(l.contains("Nickname is already in use"), "{l}");
    c.send("NICK free").await;
    c.skip_to(" 366 ").await;
    // And an IRC nick is taken for natives.
    assert_eq!(native.text().await, "ONLINE free");
    native
        .expect_error("REGISTER FREE", natter_proto::ErrorCode::NameTaken)
        .await;
    c.expect("NICK taken", "433").await;
    c.expect("USER again 0 * :Again", "462").await;
    c.expect("PASS secret", "462").await;
}

#[tokio::test]
async fn error_numerics() {
    let s = TestServer::start().await;
    let _native = s.user("nat").await;
    let mut c = Irc::user(s.addr, "errs").await;
    c.expect("FROB", "421").await;
    c.expect("JOIN", "461").await;
    c.expect("OPER errs", "461").await;
    c.expect("KILL nat", "461").await;
    c.expect("PRIVMSG", "411").await;
    c.expect("PRIVMSG :only text here", "411").await;
    c.expect("PRIVMSG nat", "412").await;
    c.expect("PRIVMSG nat :\u{2}\u{2}", "412").await;
    c.expect("PRIVMSG nobody :hi", "401").await;
    c.expect("PRIVMSG #nowhere :hi", "403").await;
    c.expect("PART #nowhere", "403").await;
    c.expect("JOIN bad,#bad:name", "476").await;
    c.line().await;
    // A room that exists but that we are not in.
    let mut other = Irc::user(s.addr, "other").await;
    c.skip_to(":other!other@natter JOIN #everyone").await;
    other.send("JOIN #theirs").await;
    other.skip_to(" 366 other #theirs").await;
    c.expect("PART #theirs", "442").await;
    c.expect("PRIVMSG #theirs :hello?", "404").await;
    c.expect("TOPIC #theirs :mine", "442").await;
    c.expect("KICK #theirs other", "442").await;
    c.send("JOIN #theirs").await;
    c.skip_to(" 366 ").await;
    c.expect("TOPIC #theirs :mine", "482").await;
    c.expect("KICK #theirs other", "482").await;
    c.expect("MODE #theirs +o errs", "482").await;
    c.expect("WHOIS ghost", "401").await;
    assert!(c.line().await.contains(" 318 "));
    c.expect("MODE other", "502").await;
    let long = format!("PRIVMSG #theirs :{}", "x".repeat(600));
    c.expect(&long, "417").await;
    // NOTICE never answers with an error.
    c.send("NOTICE nobody :hi").await;
    c.quiet().await;
}

#[tokio::test]
async fn channels_are_rooms() {
    let s = TestServer::start().await;
    let mut native = s.user("nat").await;
    let mut a = Irc::user(s.addr, "alpha").await;
    let mut b = Irc::user(s.addr, "beta").await;
    assert_eq!(native.text().await, "ONLINE alpha");
    assert_eq!(native.text().await, "ONLINE beta");
    a.skip_to("JOIN #everyone").await;

    a.send("JOIN #one,#two").await;
    assert_eq!(a.line().await, ":alpha!alpha@natter JOIN #one");
    assert_eq!(a.line().await, ":natter 353 alpha = #one @alpha");
    assert_eq!(
        a.line().await,
        ":natter 366 alpha #one :End of /NAMES list."
    );
    assert_eq!(a.line().await, ":alpha!alpha@natter JOIN #two");
    a.skip_to(" 366 alpha #two").await;
    a.send("TOPIC #one :the first").await;
    assert_eq!(a.line().await, ":alpha!alpha@natter TOPIC #one :the first");

    assert_eq!(native.ask("JOIN #ONE").await, "MEMBER #one @alpha");
    assert_eq!(native.text().await, "MEMBER #one nat");
    assert_eq!(native.text().await, "TOPIC #one alpha the first");
    assert_eq!(native.text().await, "OK JOIN #one 2");
    assert_eq!(a.line().await, ":nat!nat@natter JOIN #one");

    b.send("JOIN #one").await;
    assert_eq!(b.line().await, ":beta!beta@natter JOIN #one");
    assert_eq!(b.line().await, ":natter 332 beta #one :the first");
    assert!(b.line().await.starts_with(":natter 333 beta #one alpha "));
    assert_eq!(b.line().await, ":natter 353 beta = #one :@alpha beta nat");
    b.skip_to(" 366 ").await;
    assert_eq!(a.line().await, ":beta!beta@natter JOIN #one");
    assert_eq!(native.text().await, "JOINED #one beta");

    b.send("NAMES #one").await;
    assert_eq!(b.line().await, ":natter 353 beta = #one :@alpha beta nat");
    b.skip_to(" 366 ").await;
    b.send("WHO #one").await;
    assert_eq!(
        b.line().await,
        ":natter 352 beta #one alpha natter natter alpha H@ :0 alpha real"
    );
    b.skip_to(" 315 ").await;
    b.send("LIST").await;
    assert!(b.line().await.contains(" 321 "));
    assert!(b.line().await.starts_with(":natter 322 beta #everyone 3 "));
    assert_eq!(b.line().await, ":natter 322 beta #one 3 :the first");
    assert_eq!(b.line().await, ":natter 322 beta #two 1 :");
    assert!(b.line().await.contains(" 323 "));

    // Channel messages are room messages, both ways.
    b.send("PRIVMSG #one :hi room").await;
    assert_eq!(a.line().await, ":beta!beta@natter PRIVMSG #one :hi room");
    assert_eq!(native.text().await, "SAY #one beta hi room");
    assert_eq!(native.ask("SAY #one hi irc").await, "OK SAY #one 2");
    assert_eq!(a.line().await, ":nat!nat@natter PRIVMSG #one :hi irc");
    assert_eq!(b.line().await, ":nat!nat@natter PRIVMSG #one :hi irc");

    // Operators: MODE +o, then KICK.
    a.send("MODE #one +o beta").await;
    assert_eq!(a.line().await, ":alpha!alpha@natter MODE #one +o beta");
    assert_eq!(b.line().await, ":alpha!alpha@natter MODE #one +o beta");
    assert_eq!(native.text().await, "OPERATOR #one beta");
    b.send("KICK #one nat :behave").await;
    assert_eq!(b.line().await, ":beta!beta@natter KICK #one nat behave");
    assert_eq!(a.line().await, ":beta!beta@natter KICK #one nat behave");
    assert_eq!(native.text().await, "KICKED #one nat beta behave");

    // PART with a reason reaches both kinds of member.
    native.say("JOIN #two").await;
    native.text().await;
    native.text().await;
    native.text().await;
    assert_eq!(a.line().await, ":nat!nat@natter JOIN #two");
    a.send("PART #two :bye now").await;
    assert_eq!(a.line().await, ":alpha!alpha@natter PART #two :bye now");
    assert_eq!(native.text().await, "PARTED #two alpha bye now");
    a.send("MODE #one").await;
    assert_eq!(a.line().await, ":natter 324 alpha #one +nt");
    assert!(a.line().await.contains(" 329 alpha #one "));
    a.send("MODE #one b").await;
    assert!(a.line().await.contains(" 368 alpha #one "));
}

#[tokio::test]
async fn everyone_dm_rename_and_leave_across_protocols() {
    let s = TestServer::start().await;
    let mut native = s.user("nat").await;
    let mut irc = Irc::user(s.addr, "ircy").await;
    assert_eq!(native.text().await, "ONLINE ircy");

    // MESSAGE <-> PRIVMSG #everyone
    assert_eq!(native.ask("MESSAGE hello  irc").await, "OK MESSAGE 1");
    assert_eq!(
        irc.line().await,
        ":nat!nat@natter PRIVMSG #everyone :hello  irc"
    );
    irc.send("PRIVMSG #everyone :hello native").await;
    assert_eq!(native.text().await, "MESSAGE ircy hello native");
    irc.send("NOTICE #Everyone :noted").await;
    assert_eq!(native.text().await, "MESSAGE ircy noted");

    // DM <-> PRIVMSG nick, formatting stripped, ACTION kept as /me.
    assert_eq!(native.ask("DM IRCY psst").await, "OK DM ircy");
    assert_eq!(irc.line().await, ":nat!nat@natter PRIVMSG ircy psst");
    irc.send("PRIVMSG NAT :\u{2}bold\u{2} reply").await;
    assert_eq!(native.text().await, "DM ircy bold reply");
    irc.send("PRIVMSG nat :\u{1}ACTION waves\u{1}").await;
    assert_eq!(native.text().await, "DM ircy /me waves");

    // Renames both ways.
    assert_eq!(native.ask("REGISTER natty").await, "OK REGISTER natty");
    assert_eq!(irc.line().await, ":nat!nat@natter NICK natty");
    irc.send("NICK ircz").await;
    assert_eq!(irc.line().await, ":ircy!ircy@natter NICK ircz");
    assert_eq!(native.text().await, "RENAMED ircy ircz");
    assert_eq!(native.ask("DM ircz again").await, "OK DM ircz");
    assert_eq!(irc.line().await, ":natty!natty@natter PRIVMSG ircz again");

    // AWAY shows to the sender of a DM; ISON and USERHOST see natives too.
    irc.expect("AWAY :lunch", "306").await;
    let mut other = Irc::user(s.addr, "other").await;
    other.send("PRIVMSG ircz :you there?").await;
    assert_eq!(other.line().await, ":natter 301 other ircz lunch");
    other.expect("ISON natty nobody ircz", "303").await;
    let uh = other.expect("USERHOST natty ircz", "302").await;
    // An IRC user name stays as USER gave it when the nick changes.
    assert!(
        uh.ends_with(":natty=+natty@natter ircz=-ircy@natter"),
        "{uh}"
    );
    irc.skip_to("JOIN #everyone").await;
    irc.skip_to("PRIVMSG ircz :you there?").await;
    irc.expect("AWAY", "305").await;

    // Leaving, both ways.
    irc.send("QUIT :gone fishing").await;
    assert_eq!(
        irc.line().await,
        "ERROR :Closing Link: ircz (Quit: gone fishing)"
    );
    assert!(within(irc.r.next_text()).await.unwrap().is_none());
    native
        .reader
        .until(|l| matches!(l, natter_proto::ServerLine::Offline { name, .. } if name == "ircz"))
        .await
        .unwrap();
    assert_eq!(native.ask("CLOSE").await, "BYE CLOSED goodbye");
    other.skip_to(":natty!natty@natter QUIT disconnected").await;
}

#[tokio::test]
async fn lines_split_across_reads_and_byte_by_byte() {
    let s = TestServer::start().await;
    let mut native = s.user("nat").await;
    let mut c = Irc::connect(s.addr).await;
    for b in b"NICK bytes\r\nUSER bytes 0 * :B\r\n" {
        within(c.w.send_raw(&[*b])).await.unwrap();
    }
    c.skip_to(" 366 ").await;
    assert_eq!(native.text().await, "ONLINE bytes");
    within(c.w.send_raw(b"PRIVMSG nat :sp")).await.unwrap();
    within(c.w.send_raw(b"lit\r")).await.unwrap();
    within(c.w.send_raw(b"\nPRIVMSG nat :bare LF\n"))
        .await
        .unwrap();
    assert_eq!(native.text().await, "DM bytes split");
    assert_eq!(native.text().await, "DM bytes bare LF");
}

#[tokio::test]
async fn pings_are_answered_in_order_with_other_commands() {
    let s = TestServer::start().await;
    let mut c = Irc::connect(s.addr).await;
    c.send("NICK order\r\nPING one\r\nPING two\r\nUSER o 0 * :O\r\nPING three")
        .await;
    assert_eq!(c.line().await, ":natter PONG natter one");
    assert_eq!(c.line().await, ":natter PONG natter two");
    assert!(c.line().await.starts_with(":natter 001 order "));
    c.skip_to(" 366 ").await;
    assert_eq!(c.line().await, ":natter PONG natter three");
    c.send("PING a\r\nWHOIS nobody\r\nPING b").await;
    assert_eq!(c.line().await, ":natter PONG natter a");
    assert!(c.line().await.contains(" 401 "));
    assert!(c.line().await.contains(" 318 "));
    assert_eq!(c.line().await, ":natter PONG natter b");
}

#[tokio::test(start_paused = true)]
async fn silent_irc_clients_are_pinged_then_timed_out() {
    let s = TestServer::with(Config {
        irc: IrcConfig {
            // Shorter than the tests' own time limit, which paused time advances too.
            ping_after: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(4),
            ..IrcConfig::default()
        },
        ..common::test_config()
    })
    .await;
    let mut native = s.user("nat").await;
    let mut c = Irc::user(s.addr, "sleepy").await;
    assert_eq!(native.text().await, "ONLINE sleepy");
    // Time only passes while every task waits, so these waits take no real time.
    assert_eq!(c.line().await, "PING natter");
    c.send("PONG natter").await;
    assert_eq!(c.line().await, "PING natter");
    assert_eq!(c.line().await, "ERROR :Closing Link: sleepy (Ping timeout)");
    assert_eq!(native.text().await, "OFFLINE sleepy Ping timeout");
    let _ = LIMIT;
}

#[tokio::test]
async fn a_dedicated_irc_listener_serves_irc_only() {
    common::raise_fd_limit();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let irc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, irc_addr) = (main.local_addr().unwrap(), irc.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(natter_server::run_all(
        vec![
            natter_server::Listener {
                socket: main,
                assume: natter_server::Assume::Line,
            },
            natter_server::Listener {
                socket: irc,
                assume: natter_server::Assume::Irc,
            },
        ],
        common::test_config(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut native = within(natter_conn::Client::connect(main_addr))
        .await
        .unwrap();
    assert_eq!(native.ask("REGISTER nat").await, "OK REGISTER nat");
    // No sniffing delay on the IRC port: registration works at once.
    let mut c = Irc::user(irc_addr, "port6667").await;
    assert_eq!(native.text().await, "ONLINE port6667");
    c.send("PRIVMSG nat :via the IRC port").await;
    assert_eq!(native.text().await, "DM port6667 via the IRC port");
    let _ = stop.send(());
    assert_eq!(
        c.line().await,
        "ERROR :Closing Link: port6667 (Server shutting down)"
    );
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn actions_are_actions_both_ways_and_long_texts_split_between_words() {
    let s = TestServer::start().await;
    let mut nat = s.user("nat").await;
    let mut bob = Irc::connect(s.addr).await;
    bob.send("CAP REQ :echo-message").await;
    bob.send("NICK bob").await;
    bob.send("USER bob 0 * :Bob").await;
    bob.send("CAP END").await;
    bob.skip_to(" 366 bob #everyone ").await;
    let mut cy = Irc::user(s.addr, "cy").await;

    // A native's /me reaches IRC users as CTCP ACTION.
    assert_eq!(
        common::answer(&mut nat, "MESSAGE /me waves").await,
        "OK MESSAGE 2"
    );
    for irc in [&mut bob, &mut cy] {
        let l = irc.skip_to(" PRIVMSG #everyone ").await;
        assert_eq!(
            l,
            ":nat!nat@natter PRIVMSG #everyone :\u{1}ACTION waves\u{1}"
        );
    }
    // An IRC user's action stays one for IRC users (its echo too), and is /me for natives.
    bob.send("PRIVMSG #everyone :\u{1}ACTION nods\u{1}").await;
    let action = ":bob!bob@natter PRIVMSG #everyone :\u{1}ACTION nods\u{1}";
    assert_eq!(bob.skip_to(" PRIVMSG #everyone ").await, action);
    assert_eq!(cy.skip_to(" PRIVMSG #everyone ").await, action);
    loop {
        let l = nat.text().await;
        if l.starts_with("MESSAGE ") {
            assert_eq!(l, "MESSAGE bob /me nods");
            break;
        }
    }

    // A long text is cut between words, each line within IRC's 512 bytes.
    let words: Vec<String> = (0..300).map(|i| format!("w{i:04}")).collect();
    let text = words.join(" ");
    assert_eq!(nat.ask(&format!("MESSAGE {text}")).await, "OK MESSAGE 2");
    let mut seen = Vec::new();
    while seen.len() < words.len() {
        let l = cy.skip_to(" PRIVMSG #everyone ").await;
        assert!(l.len() + 2 <= 512, "{} bytes", l.len() + 2);
        let piece = l.split_once(" :").unwrap().1;
        seen.extend(piece.split(' ').map(str::to_owned));
    }
    assert_eq!(seen, words);
}

#[tokio::test]
async fn ctcp_requests_reach_irc_users_and_the_server_answers_for_natives() {
    let s = TestServer::start().await;
    let _nat = s.user("nat").await;
    let mut bob = Irc::user(s.addr, "bob").await;
    let mut cy = Irc::user(s.addr, "cy").await;
    // An IRC user answers for itself.
    bob.send("PRIVMSG cy :\u{1}VERSION\u{1}").await;
    assert_eq!(
        cy.skip_to(" PRIVMSG cy ").await,
        ":bob!bob@natter PRIVMSG cy \u{1}VERSION\u{1}"
    );
    cy.send("NOTICE bob :\u{1}VERSION irssi 1.4\u{1}").await;
    assert_eq!(
        bob.skip_to(" NOTICE bob ").await,
        ":cy!cy@natter NOTICE bob :\u{1}VERSION irssi 1.4\u{1}"
    );
    // A native cannot: the server answers in its stead, under its name.
    bob.send("PRIVMSG nat :\u{1}VERSION\u{1}").await;
    let v = bob.skip_to(" NOTICE bob ").await;
    assert!(
        v.starts_with(":nat!nat@natter NOTICE bob :\u{1}VERSION natter-"),
        "{v}"
    );
    bob.send("PRIVMSG nat :\u{1}PING 12345\u{1}").await;
    assert_eq!(
        bob.skip_to(" NOTICE bob ").await,
        ":nat!nat@natter NOTICE bob :\u{1}PING 12345\u{1}"
    );
    bob.send("PRIVMSG nat :\u{1}TIME\u{1}").await;
    let t = bob.skip_to(" NOTICE bob ").await;
    assert!(t.contains(":\u{1}TIME 20"), "{t}");
    bob.send("PRIVMSG nat :\u{1}FINGER\u{1}").await;
    let f = bob.skip_to(" NOTICE bob ").await;
    assert!(
        f.ends_with("nat uses a natter client, which cannot answer CTCP FINGER"),
        "{f}"
    );
    bob.send("PRIVMSG nobody :\u{1}VERSION\u{1}").await;
    bob.skip_to(" 401 bob nobody ").await;
    bob.quiet().await;
}

/// The everyone channel's names in a welcome burst, in any order.
async fn welcome_names(irc: &mut Irc) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let l = irc.line().await;
        if l.contains(" 366 ") {
            names.sort();
            return names;
        }
        if l.contains(" 353 ") {
            let list = l.rsplit_once(" #everyone ").unwrap().1;
            names.extend(list.trim_start_matches(':').split(' ').map(str::to_owned));
        }
    }
}

#[tokio::test]
async fn the_welcome_names_follow_arrivals_renames_and_departures() {
    let s = TestServer::start().await;
    let mut ann = s.user("ann").await;
    let mut bob = s.user("bob").await;
    let cy = s.user("cy").await;
    let mut first = Irc::connect(s.addr).await;
    first.send("NICK ike").await;
    first.send("USER ike 0 * :Ike").await;
    assert_eq!(welcome_names(&mut first).await, ["ann", "bob", "cy", "ike"]);
    // A rename and a departure, then another arrival: its list is the server's as it is.
    assert_eq!(
        common::answer(&mut bob, "REGISTER bobby").await,
        "OK REGISTER bobby"
    );
    drop(cy);
    while ann.text().await != "OFFLINE cy" {}
    let mut second = Irc::connect(s.addr).await;
    second.send("NICK jo").await;
    second.send("USER jo 0 * :Jo").await;
    assert_eq!(
        welcome_names(&mut second).await,
        ["ann", "bobby", "ike", "jo"]
    );
    // And one more arrival appends to the list the last one left.
    let mut third = Irc::connect(s.addr).await;
    third.send("NICK kim").await;
    third.send("USER kim 0 * :Kim").await;
    assert_eq!(
        welcome_names(&mut third).await,
        ["ann", "bobby", "ike", "jo", "kim"]
    );
}

#[tokio::test]
async fn a_crowd_s_names_are_split_into_lines_that_fit_irc() {
    let s = TestServer::start().await;
    let mut natives = Vec::new();
    for i in 0..120 {
        natives.push(s.user(&format!("somebody_with_a_long_name_{i:03}")).await);
    }
    let mut irc = Irc::connect(s.addr).await;
    irc.send("NICK ike").await;
    irc.send("USER ike 0 * :Ike").await;
    let mut names = 0;
    loop {
        let l = irc.line().await;
        assert!(l.len() + 2 <= 512, "{} bytes: {l}", l.len() + 2);
        if l.contains(" 353 ") {
            names += l.rsplit_once(" :").unwrap().1.split(' ').count();
        }
        if l.contains(" 366 ") {
            break;
        }
    }
    assert_eq!(names, 121);
}

#[tokio::test]
async fn a_crowded_everyone_channel_is_quiet_for_its_irc_members_but_roommates_and_natives_hear() {
    let mut config = common::test_config();
    config.irc.everyone_presence = 3;
    let s = TestServer::with(config).await;
    let mut nat = s.user("nat").await;
    let mut a = Irc::user(s.addr, "a").await;
    assert_eq!(nat.text().await, "ONLINE a");
    let mut b = Irc::user(s.addr, "b").await;
    assert_eq!(nat.text().await, "ONLINE b");
    // Three members: still announced.
    assert!(a.line().await.ends_with(" JOIN #everyone"));
    a.join("#den").await;
    b.join("#den").await;
    assert!(a.line().await.contains(" JOIN #den"));

    // The fourth arrival finds the channel crowded: it sees itself alone and is told why;
    // nobody's IRC client hears of it; natives do.
    let mut c = Irc::connect(s.addr).await;
    c.send("NICK c").await;
    c.send("USER c 0 * :c").await;
    c.skip_to(" JOIN #everyone").await;
    c.skip_to(" 332 ").await;
    assert_eq!(c.line().await, ":natter 353 c = #everyone :c");
    assert!(c.line().await.starts_with(":natter 366 c #everyone"));
    let why = c.line().await;
    assert!(
        why.starts_with(":natter NOTICE c :#everyone has 4 members") && why.contains("/NAMES"),
        "{why}"
    );
    assert_eq!(nat.text().await, "ONLINE c");

    let mut d = Irc::user(s.addr, "d").await;
    assert!(
        d.line()
            .await
            .contains(" NOTICE d :#everyone has 5 members")
    );
    assert_eq!(nat.text().await, "ONLINE d");

    // A rename, a quit by someone shared with no room: natives only; a roommate's quit is
    // heard in the room.
    c.send("NICK c2").await;
    c.skip_to(" NICK c2").await;
    assert_eq!(nat.text().await, "RENAMED c c2");
    b.send("QUIT :bye").await;
    assert_eq!(a.line().await, ":b!b@natter QUIT :Quit: bye");
    assert_eq!(nat.text().await, "OFFLINE b Quit: bye");
    c.send("QUIT").await;
    assert!(nat.text().await.starts_with("OFFLINE c2"));
    a.quiet().await;
    d.quiet().await;

    // What is said there still reaches everyone, and NAMES asked for lists everyone.
    assert!(nat.ask("MESSAGE hello").await.starts_with("OK MESSAGE"));
    assert_eq!(a.line().await, ":nat!nat@natter PRIVMSG #everyone hello");
    a.send("NAMES #everyone").await;
    let names = a.skip_to(" 353 ").await;
    for name in ["a", "nat", "d"] {
        assert!(names.split([' ', ':']).any(|n| n == name), "{names}");
    }
    a.skip_to(" 366 ").await;
    a.quiet().await;
}

#[tokio::test]
async fn privmsgs_read_together_arrive_in_order_with_their_errors_before_what_follows() {
    let s = TestServer::start().await;
    let mut nat = s.user("nat").await;
    assert!(nat.ask("JOIN #den").await.starts_with("MEMBER #den"));
    nat.text().await;
    let mut a = Irc::with_caps(s.addr, "a", "echo-message").await;
    assert_eq!(nat.text().await, "ONLINE a");
    a.join("#den").await;
    assert_eq!(nat.text().await, "JOINED #den a");
    // One write: five to the room, three to a room it is not in, one to a user, a PING.
    let mut burst = String::new();
    for i in 0..5 {
        burst.push_str(&format!("PRIVMSG #den :line {i}\r\n"));
    }
    for i in 0..3 {
        burst.push_str(&format!("PRIVMSG #elsewhere :lost {i}\r\n"));
    }
    burst.push_str("PRIVMSG nat :a word\r\nPRIVMSG #den :last\r\nPING :after\r\n");
    a.send(burst.trim_end()).await;
    for i in 0..5 {
        assert_eq!(
            a.line().await,
            format!(":a!a@natter PRIVMSG #den :line {i}")
        );
    }
    for _ in 0..3 {
        assert!(a.line().await.starts_with(":natter 403 a #elsewhere "));
    }
    assert_eq!(a.line().await, ":a!a@natter PRIVMSG nat :a word");
    assert_eq!(a.line().await, ":a!a@natter PRIVMSG #den last");
    assert_eq!(a.line().await, ":natter PONG natter after");
    for i in 0..5 {
        assert_eq!(nat.text().await, format!("SAY #den a line {i}"));
    }
    assert_eq!(nat.text().await, "DM a a word");
    assert_eq!(nat.text().await, "SAY #den a last");
    nat.expect_quiet().await;
}

#[tokio::test]
async fn an_irc_client_that_speaks_after_its_greeting_is_still_served_as_irc() {
    let s = TestServer::start().await;
    let mut nat = s.user("nat").await;
    // Silent past the sniffing wait: the server greets it as a line client...
    let mut late = Irc::connect(s.addr).await;
    assert!(late.line().await.starts_with("HELLO natter"));
    // ...and its IRC registration still makes it an IRC client.
    late.send("NICK late").await;
    late.send("USER late 0 * :Late").await;
    late.skip_to(" 001 late ").await;
    late.skip_to(" 366 ").await;
    assert_eq!(nat.text().await, "ONLINE late");
    // A line client that waits before speaking is a line client as ever.
    use common::wire::{LOCAL, Transport, halves, open};
    let (reader, writer) = halves(open(Transport::Tcp, LOCAL, s.addr).await);
    let mut slow = natter_conn::Client { reader, writer };
    assert!(slow.text().await.starts_with("HELLO natter"));
    assert!(slow.ask("REGISTER slow").await.starts_with("OK REGISTER"));
    late.skip_to(" JOIN #everyone").await;
}

#[tokio::test]
async fn actions_and_long_texts_between_websocket_and_irc_users() {
    use common::wire::{Transport, user};
    let s = TestServer::start().await;
    let mut web = user(Transport::Ws, s.addr, "web").await;
    let mut ircy = Irc::user(s.addr, "ircy").await;
    let mut other = Irc::user(s.addr, "other").await;
    // A WebSocket user's /me is an action for IRC users, and theirs /me for it.
    web.say("MESSAGE /me waves").await;
    while !web.text().await.starts_with("OK MESSAGE") {}
    let action = ":web!web@natter PRIVMSG #everyone :\u{1}ACTION waves\u{1}";
    assert_eq!(ircy.skip_to(" PRIVMSG #everyone ").await, action);
    ircy.send("PRIVMSG #everyone :\u{1}ACTION nods\u{1}").await;
    let nods = ":ircy!ircy@natter PRIVMSG #everyone :\u{1}ACTION nods\u{1}";
    assert_eq!(other.skip_to(" PRIVMSG #everyone ").await, action);
    assert_eq!(other.skip_to(" PRIVMSG #everyone ").await, nods);
    loop {
        let l = web.text().await;
        if l.starts_with("MESSAGE ") {
            assert_eq!(l, "MESSAGE ircy /me nods");
            break;
        }
    }
    // A WebSocket user's long text reaches IRC users cut between words, within 512 bytes.
    let words: Vec<String> = (0..300).map(|i| format!("w{i:04}")).collect();
    web.say(&format!("MESSAGE {}", words.join(" "))).await;
    while !web.text().await.starts_with("OK MESSAGE") {}
    let mut seen = Vec::new();
    while seen.len() < words.len() {
        let l = ircy.skip_to(" PRIVMSG #everyone ").await;
        assert!(l.len() + 2 <= 512, "{} bytes", l.len() + 2);
        seen.extend(l.split_once(" :").unwrap().1.split(' ').map(str::to_owned));
    }
    assert_eq!(seen, words);
    // An IRC user's line that fits an IRC line reaches IRC users whole, and natives whole.
    let long = "x".repeat(400);
    ircy.send(&format!("PRIVMSG #everyone :{long} end")).await;
    let whole = other.skip_to(":ircy!ircy@natter PRIVMSG #everyone ").await;
    assert_eq!(
        whole,
        format!(":ircy!ircy@natter PRIVMSG #everyone :{long} end")
    );
    loop {
        let l = web.text().await;
        if l.starts_with("MESSAGE ircy x") {
            assert_eq!(l, format!("MESSAGE ircy {long} end"));
            break;
        }
    }
}
