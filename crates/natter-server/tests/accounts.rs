//! Accounts over real sockets, on real stores: create, log in, reserved names, passwords,
//! lock-outs, restarts, a failing store, and what IRC clients see.

mod common;

use common::binary::Binary;
use common::irc::Irc;
use common::{ClientExt, PW, TestServer, account_holder, answer, next_answer, test_config, within};
use natter_conn::Client;
use natter_proto::ServerLine;
use natter_store::Location;
use natter_store::throwaway::Postgres;

/// Closes a client and waits until its name is free (its OFFLINE reached `witness`).
async fn gone(mut c: Client, name: &str, witness: &mut Client) {
    c.say("CLOSE").await;
    let offline = format!("OFFLINE {name}");
    loop {
        if witness.text().await == offline {
            return;
        }
    }
}

#[tokio::test]
async fn an_account_reserves_its_name_even_while_its_owner_is_offline() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    assert!(
        answer(&mut alice, "ACCOUNT CREATE short")
            .await
            .starts_with("ERROR WEAK_PASSWORD ")
    );
    assert!(
        answer(&mut alice, "ACCOUNT CREATE has spaces")
            .await
            .starts_with("ERROR TOO_MANY_PARAMETERS ")
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT CREATE {PW}")).await,
        "OK ACCOUNT CREATE alice"
    );
    assert!(
        answer(&mut alice, &format!("ACCOUNT CREATE {PW}"))
            .await
            .starts_with("ERROR ACCOUNT_EXISTS ")
    );
    let mut bob = s.user("bob").await;
    assert!(
        answer(&mut bob, "REGISTER alice")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
    gone(alice, "alice", &mut bob).await;
    for name in ["alice", "ALICE", "Alice"] {
        let got = answer(&mut bob, &format!("REGISTER {name}")).await;
        assert!(got.starts_with("ERROR NAME_RESERVED "), "{name}: {got}");
        assert!(got.contains("LOGIN"), "{got}");
    }
    // Names without an account are as they always were.
    assert_eq!(
        answer(&mut bob, "REGISTER bobby").await,
        "OK REGISTER bobby"
    );
    let mut fresh = s.client().await;
    assert!(
        answer(&mut fresh, "REGISTER alice")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
}

#[tokio::test]
async fn login_takes_the_name_and_wrong_logins_say_nothing_of_which_part_was_wrong() {
    let s = TestServer::start().await;
    let alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    gone(alice, "alice", &mut bob).await;

    let mut c = s.client().await;
    let wrong_password = answer(&mut c, "LOGIN alice wrong-horse").await;
    let no_account = answer(&mut c, "LOGIN carol wrong-horse").await;
    assert_eq!(wrong_password, "ERROR BAD_LOGIN wrong name or password");
    assert_eq!(no_account, wrong_password);
    assert!(
        answer(&mut c, "LIST")
            .await
            .starts_with("ERROR NOT_REGISTERED ")
    );
    assert_eq!(
        answer(&mut c, &format!("LOGIN ALICE {PW}")).await,
        "OK LOGIN alice"
    );
    assert_eq!(bob.text().await, "ONLINE alice");
    // Logged in: the account's own commands work, REGISTER of the same name too.
    assert_eq!(answer(&mut c, "REGISTER Alice").await, "OK REGISTER Alice");
    assert!(
        answer(&mut c, &format!("ACCOUNT CREATE {PW}"))
            .await
            .starts_with("ERROR ACCOUNT_EXISTS ")
    );

    // LOGIN after REGISTER switches to the account's name.
    let mut d = s.user("guest7").await;
    assert!(
        answer(&mut d, "ACCOUNT PASSWORD a b")
            .await
            .starts_with("ERROR NOT_LOGGED_IN ")
    );
    assert!(
        answer(&mut d, "LOGOUT")
            .await
            .starts_with("ERROR NOT_LOGGED_IN ")
    );
    let dave = account_holder(&s, "dave").await;
    gone(dave, "dave", &mut bob).await;
    assert_eq!(
        answer(&mut d, &format!("LOGIN dave {PW}")).await,
        "OK LOGIN dave"
    );
    let listed = answer_list(&mut d).await;
    assert!(
        listed.contains(&"dave".to_owned()) && !listed.contains(&"guest7".to_owned()),
        "{listed:?}"
    );
}

/// The names LIST gives.
async fn answer_list(c: &mut Client) -> Vec<String> {
    c.say("LIST").await;
    let mut names = Vec::new();
    loop {
        match c.line().await {
            ServerLine::User { name } => names.push(name.into_owned()),
            ServerLine::Ok { verb, .. } if verb == "LIST" => return names,
            _ => {}
        }
    }
}

#[tokio::test]
async fn logout_leaves_the_name_and_the_account_can_change_password_and_be_deleted() {
    let s = TestServer::start().await;
    let mut alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    assert_eq!(answer(&mut alice, "LOGOUT").await, "OK LOGOUT");
    assert_eq!(bob.text().await, "OFFLINE alice logged out");
    assert!(
        answer(&mut alice, "LIST")
            .await
            .starts_with("ERROR NOT_REGISTERED ")
    );
    assert!(
        answer(&mut alice, "REGISTER alice")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
    assert_eq!(
        answer(&mut alice, &format!("LOGIN alice {PW}")).await,
        "OK LOGIN alice"
    );

    assert_eq!(
        answer(&mut alice, "ACCOUNT PASSWORD wrong-horse battery-staple").await,
        "ERROR BAD_LOGIN wrong name or password"
    );
    assert!(
        answer(&mut alice, &format!("ACCOUNT PASSWORD {PW} short"))
            .await
            .starts_with("ERROR WEAK_PASSWORD ")
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT PASSWORD {PW} battery-staple")).await,
        "OK ACCOUNT PASSWORD"
    );
    let mut other = s.client().await;
    assert!(
        answer(&mut other, &format!("LOGIN alice {PW}"))
            .await
            .starts_with("ERROR BAD_LOGIN ")
    );
    assert!(
        answer(&mut other, "ACCOUNT DELETE battery-staple")
            .await
            .starts_with("ERROR NOT_REGISTERED ")
    );
    assert_eq!(
        answer(&mut alice, "ACCOUNT DELETE battery-staple").await,
        "OK ACCOUNT DELETE alice"
    );
    // Still online under the name, now a guest's; once gone, anyone may take it.
    assert!(
        answer(&mut alice, "LOGOUT")
            .await
            .starts_with("ERROR NOT_LOGGED_IN ")
    );
    gone(alice, "alice", &mut bob).await;
    assert_eq!(
        answer(&mut other, "REGISTER alice").await,
        "OK REGISTER alice"
    );
}

#[tokio::test]
async fn accounts_and_passwords_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = test_config();
        c.store = Location::Sqlite(dir.path().join("natter.db"));
        c
    };
    let mut s = TestServer::with(config()).await;
    let alice = account_holder(&s, "alice").await;
    drop(alice);
    s.stop().await;

    let s = TestServer::with(config()).await;
    let mut c = s.client().await;
    assert!(
        answer(&mut c, "REGISTER alice")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
    assert!(
        answer(&mut c, "LOGIN alice wrong-horse")
            .await
            .starts_with("ERROR BAD_LOGIN ")
    );
    assert_eq!(
        answer(&mut c, &format!("LOGIN alice {PW}")).await,
        "OK LOGIN alice"
    );
}

#[tokio::test]
async fn wrong_logins_lock_the_account_and_end_the_connection() {
    let s = TestServer::start().await;
    let alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    gone(alice, "alice", &mut bob).await;

    // Three on one connection end it.
    let mut c = s.client().await;
    for _ in 0..2 {
        assert!(
            answer(&mut c, "LOGIN alice wrong-horse")
                .await
                .starts_with("ERROR BAD_LOGIN ")
        );
    }
    assert_eq!(
        answer(&mut c, "LOGIN alice wrong-horse").await,
        "BYE BAD_LOGIN too many failed logins"
    );
    assert_eq!(c.until_closed().await, Vec::<String>::new());

    // Five in a row on the account lock it, even against the right password, for a while;
    // other accounts are not affected.
    let mut d = s.client().await;
    for _ in 0..2 {
        assert!(
            answer(&mut d, "LOGIN alice wrong-horse")
                .await
                .starts_with("ERROR BAD_LOGIN ")
        );
    }
    let mut e = s.client().await;
    assert!(
        answer(&mut e, &format!("LOGIN alice {PW}"))
            .await
            .starts_with("ERROR LOGIN_LOCKED ")
    );
    let carol = account_holder(&s, "carol").await;
    gone(carol, "carol", &mut bob).await;
    assert_eq!(
        answer(&mut e, &format!("LOGIN carol {PW}")).await,
        "OK LOGIN carol"
    );
}

#[tokio::test]
async fn a_broken_store_fails_what_needs_it_and_relaying_goes_on() {
    let pg = Postgres::start().unwrap();
    let mut config = test_config();
    config.store = Location::Postgres(pg.database().unwrap());
    let s = TestServer::with(config).await;
    let mut alice = s.user("alice").await;
    let mut bob = s.user("bob").await;
    pg.stop().unwrap();
    assert!(
        answer(&mut alice, &format!("ACCOUNT CREATE {PW}"))
            .await
            .starts_with("ERROR STORE_UNAVAILABLE ")
    );
    assert!(
        answer(&mut bob, &format!("LOGIN carol {PW}"))
            .await
            .starts_with("ERROR STORE_UNAVAILABLE ")
    );
    // Delivered, but the log could not keep it, and the sender is told so.
    assert!(
        answer(&mut alice, "MESSAGE still here")
            .await
            .starts_with("ERROR STORE_UNAVAILABLE delivered, but not kept")
    );
    assert_eq!(bob.text().await, "MESSAGE alice still here");
    pg.resume().unwrap();
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT CREATE {PW}")).await,
        "OK ACCOUNT CREATE alice"
    );
}

#[tokio::test]
async fn a_login_storm_waits_its_turn_without_holding_up_anyone_else() {
    let s = TestServer::start().await;
    let alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    gone(alice, "alice", &mut bob).await;
    let mut stormers = Vec::new();
    for _ in 0..30 {
        let mut c = s.client().await;
        c.say("LOGIN alice wrong-horse").await;
        stormers.push(c);
    }
    // Hashing runs a few at a time, so most of the storm is still queued when another
    // client's round trip is answered.
    assert_eq!(
        answer(&mut bob, "MESSAGE hi").await,
        "ERROR NO_RECIPIENTS nobody else is registered to receive it"
    );
    let mut answered = 0;
    for c in &mut stormers {
        let got = within(next_answer(c)).await;
        assert!(
            got.starts_with("ERROR BAD_LOGIN ") || got.starts_with("ERROR LOGIN_LOCKED "),
            "{got}"
        );
        answered += 1;
    }
    assert_eq!(answered, 30);
}

#[tokio::test]
async fn irc_clients_cannot_take_a_reserved_nick() {
    let s = TestServer::start().await;
    let alice = account_holder(&s, "alice").await;
    let mut bob = s.user("bob").await;
    gone(alice, "alice", &mut bob).await;
    let mut irc = Irc::connect(s.addr).await;
    irc.send("NICK alice").await;
    irc.send("USER a 0 * :A").await;
    let refused = irc.skip_to(" 433 ").await;
    assert!(refused.contains("alice"), "{refused}");
    let why = irc.skip_to("NOTICE").await;
    assert!(why.contains("belongs to an account"), "{why}");
    irc.send("NICK ally").await;
    irc.skip_to(" 001 ").await;
    irc.send("NICK ALICE").await;
    irc.skip_to(" 433 ").await;
}

#[tokio::test]
async fn passwords_never_reach_the_log_even_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::start(dir.path(), &["-v", "--store", "memory"]);
    let addr = server.addr().await;
    let mut c = within(Client::connect(addr.as_str())).await.unwrap();
    assert_eq!(answer(&mut c, "REGISTER alice").await, "OK REGISTER alice");
    assert_eq!(
        answer(&mut c, "ACCOUNT CREATE sekrit-one").await,
        "OK ACCOUNT CREATE alice"
    );
    assert_eq!(
        answer(&mut c, "ACCOUNT PASSWORD sekrit-one sekrit-two").await,
        "OK ACCOUNT PASSWORD"
    );
    assert!(
        answer(&mut c, "LOGIN alice sekrit-bad")
            .await
            .starts_with("ERROR BAD_LOGIN ")
    );
    assert!(
        answer(&mut c, "LOGIN alice sekrit-bad extra")
            .await
            .starts_with("ERROR TOO_MANY_PARAMETERS ")
    );
    assert!(
        answer(&mut c, "ACCOUNT DELETE")
            .await
            .starts_with("ERROR MISSING_PARAMETER ")
    );
    assert_eq!(
        answer(&mut c, "ACCOUNT DELETE sekrit-two").await,
        "OK ACCOUNT DELETE alice"
    );
    assert_eq!(
        answer(&mut c, "MESSAGE visible-at-debug").await,
        "ERROR NO_RECIPIENTS nobody else is registered to receive it"
    );
    // IRC's ways: draft/account-registration's REGISTER, NickServ, SASL.
    let mut irc = Irc::user(addr.parse().unwrap(), "bob").await;
    irc.send("REGISTER * * sekrit-three").await;
    irc.skip_to("REGISTER SUCCESS bob").await;
    irc.send("PRIVMSG NickServ :IDENTIFY bob sekrit-four").await;
    irc.skip_to("Invalid account or password").await;
    irc.send("AUTHENTICATE sekrit-five").await;
    irc.skip_to(" 904 ").await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let (_, log) = server.exit().await;
    assert!(log.contains("visible-at-debug"), "-v logs commands: {log}");
    assert!(
        log.contains("LOGIN <redacted>") && log.contains("ACCOUNT <redacted>"),
        "{log}"
    );
    assert!(!log.contains("sekrit"), "{log}");
}

use common::irc::sasl_plain as plain;

/// An account, created and left, whose name is free of connections.
async fn offline_account(s: &TestServer, name: &str) {
    let holder = account_holder(s, name).await;
    let mut witness = s.user(&format!("w{name}")).await;
    gone(holder, name, &mut witness).await;
}

#[tokio::test]
async fn irc_clients_log_in_with_sasl_plain() {
    let s = TestServer::start().await;
    offline_account(&s, "alice").await;
    let mut irc = Irc::connect(s.addr).await;
    irc.send("CAP LS 302").await;
    let ls = irc.skip_to("CAP * LS").await;
    assert!(ls.contains("sasl=PLAIN"), "{ls}");
    irc.send("CAP REQ :sasl").await;
    irc.skip_to("ACK").await;
    // The nick asked for is not the account's: registration takes the account's.
    irc.send("NICK someone").await;
    irc.send("USER a 0 * :A").await;
    irc.send("AUTHENTICATE SCRAM-SHA-256").await;
    assert!(irc.skip_to(" 908 ").await.contains("PLAIN"));
    irc.skip_to(" 904 ").await;
    irc.send("AUTHENTICATE PLAIN").await;
    assert_eq!(irc.line().await, "AUTHENTICATE +");
    irc.send(&format!("AUTHENTICATE {}", plain("alice", "wrong-horse")))
        .await;
    irc.skip_to(" 904 ").await;
    irc.send("AUTHENTICATE PLAIN").await;
    irc.skip_to("AUTHENTICATE +").await;
    irc.send(&format!("AUTHENTICATE {}", plain("alice", PW)))
        .await;
    let logged_in = irc.skip_to(" 900 ").await;
    assert!(
        logged_in.contains(" alice ") && logged_in.contains("You are now logged in as alice"),
        "{logged_in}"
    );
    irc.skip_to(" 903 ").await;
    irc.send("AUTHENTICATE PLAIN").await;
    irc.skip_to(" 907 ").await;
    irc.send("CAP END").await;
    let welcome = irc.skip_to(" 001 ").await;
    assert!(welcome.contains(" 001 alice "), "{welcome}");
}

#[tokio::test]
async fn irc_clients_log_in_and_register_through_nickserv() {
    let s = TestServer::start().await;
    offline_account(&s, "alice").await;
    let mut native = s.user("watcher").await;
    let mut irc = Irc::user(s.addr, "guest1").await;
    irc.send("PRIVMSG NickServ :IDENTIFY alice wrong-horse")
        .await;
    assert!(
        irc.skip_to("NOTICE")
            .await
            .contains("Invalid account or password")
    );
    irc.send(&format!("PRIVMSG NickServ :IDENTIFY alice {PW}"))
        .await;
    let renamed = irc.skip_to(" NICK ").await;
    assert!(
        renamed.starts_with(":guest1!") && renamed.ends_with("alice"),
        "{renamed}"
    );
    irc.skip_to(" 900 ").await;
    assert!(irc.skip_to("NOTICE").await.contains("identified for alice"));
    loop {
        if native.text().await == "RENAMED guest1 alice" {
            break;
        }
    }

    // REGISTER makes the current nick an account.
    let mut bob = Irc::user(s.addr, "bob").await;
    bob.send("PRIVMSG NickServ :REGISTER short").await;
    assert!(bob.skip_to("NOTICE").await.contains("8 to 128"));
    bob.send(&format!("PRIVMSG NickServ :REGISTER {PW}")).await;
    bob.skip_to(" 900 ").await;
    bob.send("QUIT").await;
    loop {
        if native.text().await == "OFFLINE bob Quit" {
            break;
        }
    }
    assert!(
        answer(&mut native, "REGISTER bob")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
    assert_eq!(
        answer(&mut native, &format!("LOGIN bob {PW}")).await,
        "OK LOGIN bob"
    );
    // Nobody may pose as the service.
    let mut c = s.client().await;
    assert!(
        answer(&mut c, "REGISTER NickServ")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
}

#[tokio::test]
async fn server_operators_kick_in_any_room_and_kill_on_every_kind_of_client() {
    let mut config = test_config();
    config.operators = vec!["root".into()];
    let s = TestServer::with(config).await;
    // A guest named like an operator is no operator: the name must be the account's.
    let mut root = s.user("root").await;
    assert!(
        answer(&mut root, "KILL nobody")
            .await
            .starts_with("ERROR NOT_OPERATOR ")
    );
    assert_eq!(
        answer(&mut root, &format!("ACCOUNT CREATE {PW}")).await,
        "OK ACCOUNT CREATE root"
    );

    let mut alice = s.user("alice").await;
    assert!(
        answer(&mut alice, "JOIN #r")
            .await
            .starts_with("OK JOIN #r")
    );
    let mut bob = s.user("bob").await;
    assert!(answer(&mut bob, "JOIN #r").await.starts_with("OK JOIN #r"));
    assert!(
        answer(&mut bob, "KILL alice")
            .await
            .starts_with("ERROR NOT_OPERATOR ")
    );
    assert!(
        answer(&mut bob, "KICK #r alice")
            .await
            .starts_with("ERROR NOT_OPERATOR ")
    );
    // Not a member, not the room's operator: still allowed.
    assert_eq!(
        answer(&mut root, "KICK #r bob rules").await,
        "OK KICK #r bob"
    );

    assert_eq!(
        answer(&mut root, "KILL alice spamming").await,
        "OK KILL alice"
    );
    assert_eq!(
        alice.until_closed().await.last().map(String::as_str),
        Some("BYE KILLED killed by root: spamming")
    );
    loop {
        if bob.text().await == "OFFLINE alice killed by root: spamming" {
            break;
        }
    }
    assert!(
        answer(&mut root, "KILL alice")
            .await
            .starts_with("ERROR NO_SUCH_USER ")
    );

    // IRC: KILL and OPER, each way.
    let mut irc = Irc::user(s.addr, "ircer").await;
    irc.send("KILL bob :no").await;
    irc.skip_to(" 481 ").await;
    irc.send("OPER ircer x").await;
    irc.skip_to(" 491 ").await;
    assert_eq!(
        answer(&mut root, "KILL ircer bye now").await,
        "OK KILL ircer"
    );
    let last = irc.skip_to("ERROR").await;
    assert_eq!(last, "ERROR :Closing Link: ircer (Killed (root (bye now)))");
    let mut op = Irc::connect(s.addr).await;
    op.send("CAP REQ :sasl").await;
    op.send("NICK x").await;
    op.send("USER r 0 * :R").await;
    op.send("AUTHENTICATE PLAIN").await;
    root.say("CLOSE").await;
    loop {
        if bob.text().await == "OFFLINE root" {
            break;
        }
    }
    op.send(&format!("AUTHENTICATE {}", plain("root", PW)))
        .await;
    op.skip_to(" 903 ").await;
    op.send("CAP END").await;
    op.skip_to(" 001 root ").await;
    op.send("OPER root x").await;
    op.skip_to(" 381 ").await;
    op.send("KILL bob :enough").await;
    assert_eq!(
        bob.until_closed().await.last().map(String::as_str),
        Some("BYE KILLED killed by root: enough")
    );
}

#[tokio::test]
async fn names_that_look_like_others_are_refused_unless_turned_off() {
    let s = TestServer::start().await;
    let _alice = s.user("alice").await;
    offline_account(&s, "ROOT").await;
    let mut c = s.client().await;
    for lookalike in ["aIice", "R00T", "A1ICE"] {
        let got = answer(&mut c, &format!("REGISTER {lookalike}")).await;
        assert!(
            got.starts_with("ERROR NAME_CONFUSABLE "),
            "{lookalike}: {got}"
        );
    }
    // The same name in another case is the same name, not a lookalike.
    assert!(
        answer(&mut c, "REGISTER ALICE")
            .await
            .starts_with("ERROR NAME_TAKEN ")
    );
    assert_eq!(answer(&mut c, "REGISTER alex").await, "OK REGISTER alex");
    assert!(
        answer(&mut c, "REGISTER aIice")
            .await
            .starts_with("ERROR NAME_CONFUSABLE ")
    );
    let mut irc = Irc::connect(s.addr).await;
    irc.send("NICK aIice").await;
    irc.send("USER a 0 * :A").await;
    let refused = irc.skip_to(" 432 ").await;
    assert!(refused.contains("looks too much like"), "{refused}");

    let mut config = test_config();
    config.refuse_lookalikes = false;
    let open = TestServer::with(config).await;
    let _alice = open.user("alice").await;
    let _lookalike = open.user("aIice").await;
}

#[tokio::test]
async fn a_token_logs_in_until_the_password_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = test_config();
        c.store = Location::Sqlite(dir.path().join("natter.db"));
        c
    };
    let mut s = TestServer::with(config()).await;
    let mut alice = account_holder(&s, "Alice").await;
    let got = answer(&mut alice, "ACCOUNT TOKEN").await;
    let token = got
        .strip_prefix("OK ACCOUNT TOKEN ")
        .expect(&got)
        .to_owned();
    assert!(token.starts_with("nt_") && token.len() == 46, "{token}");
    let again = answer(&mut alice, "ACCOUNT TOKEN").await;
    assert_ne!(again, got, "each token is new");
    let mut guest = s.user("guest").await;
    assert!(
        answer(&mut guest, "ACCOUNT TOKEN")
            .await
            .starts_with("ERROR NOT_LOGGED_IN ")
    );
    drop(alice);
    s.stop().await;

    // Across a restart, in place of the password, for its own account only.
    let s = TestServer::with(config()).await;
    let mut other = account_holder(&s, "bob").await;
    assert!(
        answer(&mut other, &format!("LOGIN alice {token}"))
            .await
            .starts_with("OK LOGIN Alice")
    );
    let mut c = s.client().await;
    let forged = format!("nt_{}", "A".repeat(43));
    assert!(
        answer(&mut c, &format!("LOGIN alice {forged}"))
            .await
            .starts_with("ERROR BAD_LOGIN ")
    );
    assert_eq!(
        answer(&mut other, &format!("ACCOUNT PASSWORD {PW} battery-staple")).await,
        "OK ACCOUNT PASSWORD"
    );
    assert!(answer(&mut other, "LOGOUT").await.starts_with("OK LOGOUT"));
    // A new password revokes every token.
    assert!(
        answer(&mut c, &format!("LOGIN alice {token}"))
            .await
            .starts_with("ERROR BAD_LOGIN ")
    );
}

/// Logs `c` (connected, unregistered) into `name`'s account.
async fn login(c: &mut Client, name: &str) -> String {
    answer(c, &format!("LOGIN {name} {PW}")).await
}

/// Reads `c`'s lines until `want`, failing on any line `unwanted` matches.
async fn until(c: &mut Client, want: &str, unwanted: impl Fn(&str) -> bool) {
    loop {
        let l = c.text().await;
        assert!(!unwanted(&l), "unexpected {l:?} before {want:?}");
        if l == want {
            return;
        }
    }
}

#[tokio::test]
async fn two_connections_of_one_account_are_one_person() {
    let s = TestServer::start().await;
    let mut carol = s.user("carol").await;
    let mut laptop = account_holder(&s, "alice").await;
    until(&mut carol, "ONLINE alice", |_| false).await;
    assert_eq!(answer(&mut laptop, "JOIN #den").await, "OK JOIN #den 1");

    // The phone logs in while the laptop is online: it joins the account, told its rooms.
    let mut phone = s.client().await;
    assert_eq!(login(&mut phone, "alice").await, "OK LOGIN alice");
    assert_eq!(phone.text().await, "JOINED #den alice");
    // LIST shows alice once, and nobody heard a second ONLINE.
    carol.say("LIST").await;
    until(&mut carol, "OK LIST 2", |l| l.starts_with("ONLINE")).await;

    // Both connections receive what is addressed to alice.
    assert_eq!(answer(&mut carol, "DM alice hi both").await, "OK DM alice");
    assert_eq!(laptop.text().await, "DM carol hi both");
    assert_eq!(phone.text().await, "DM carol hi both");

    // Each sees what the other sent: a broadcast, a room line, a DM.
    assert_eq!(
        answer(&mut phone, "MESSAGE from the phone").await,
        "OK MESSAGE 1"
    );
    assert_eq!(laptop.text().await, "MESSAGE alice from the phone");
    assert_eq!(carol.text().await, "MESSAGE alice from the phone");
    assert_eq!(
        answer(&mut laptop, "DM carol from the laptop").await,
        "OK DM carol"
    );
    assert_eq!(carol.text().await, "DM alice from the laptop");
    assert_eq!(phone.text().await, "SENT carol from the laptop");
    assert_eq!(
        answer(&mut phone, "SAY #den to myself").await,
        "OK SAY #den 0"
    );
    assert_eq!(laptop.text().await, "SAY #den alice to myself");
    // Rooms are the account's: a room joined on one connection is joined on both.
    assert_eq!(answer(&mut phone, "JOIN #porch").await, "OK JOIN #porch 1");
    assert_eq!(laptop.text().await, "JOINED #porch alice");
    assert_eq!(answer(&mut laptop, "PART #porch").await, "OK PART #porch");
    assert_eq!(phone.text().await, "PARTED #porch alice");
    // A DM to oneself is still refused, from either connection.
    phone
        .expect_error("DM alice me", natter_proto::ErrorCode::CannotDmSelf)
        .await;

    // The laptop leaves: nobody hears OFFLINE, and alice is still there.
    laptop.say("CLOSE").await;
    laptop.until_closed().await;
    assert_eq!(answer(&mut carol, "DM alice still?").await, "OK DM alice");
    assert_eq!(phone.text().await, "DM carol still?");
    assert_eq!(answer(&mut phone, "MESSAGE yes").await, "OK MESSAGE 1");
    assert_eq!(carol.text().await, "MESSAGE alice yes");
    // The last connection leaves: OFFLINE, once.
    phone.say("CLOSE").await;
    phone.until_closed().await;
    assert_eq!(carol.text().await, "OFFLINE alice");
    carol.expect_quiet().await;
}

#[tokio::test]
async fn one_connection_of_an_account_can_leave_it_or_be_someone_else() {
    let mut config = test_config();
    config.operators = vec!["carol".into()];
    let s = TestServer::with(config).await;
    let mut carol = account_holder(&s, "carol").await;
    let mut first = account_holder(&s, "alice").await;
    until(&mut carol, "ONLINE alice", |_| false).await;
    let mut second = s.client().await;
    assert_eq!(login(&mut second, "alice").await, "OK LOGIN alice");

    // The first connection, whose id the account was known by, takes a guest name.
    assert_eq!(
        answer(&mut first, "REGISTER guest").await,
        "OK REGISTER guest"
    );
    assert_eq!(carol.text().await, "ONLINE guest");
    assert_eq!(second.text().await, "ONLINE guest");
    assert_eq!(answer(&mut carol, "DM alice there?").await, "OK DM alice");
    assert_eq!(second.text().await, "DM carol there?");
    assert_eq!(answer(&mut carol, "DM guest you?").await, "OK DM guest");
    assert_eq!(first.text().await, "DM carol you?");
    // It logs back in, then out: LOGOUT leaves alice to the other connection.
    assert_eq!(login(&mut first, "alice").await, "OK LOGIN alice");
    assert_eq!(carol.text().await, "OFFLINE guest logged in elsewhere");
    assert_eq!(answer(&mut first, "LOGOUT").await, "OK LOGOUT");
    first
        .expect_error("MESSAGE nobody", natter_proto::ErrorCode::NotRegistered)
        .await;
    assert_eq!(
        answer(&mut second, "MESSAGE still here").await,
        "OK MESSAGE 1"
    );
    assert_eq!(carol.text().await, "MESSAGE alice still here");
    // A KILL ends every connection of the account.
    assert_eq!(login(&mut first, "alice").await, "OK LOGIN alice");
    carol.say("KILL alice enough").await;
    assert_eq!(carol.text().await, "OFFLINE alice killed by carol: enough");
    assert_eq!(carol.text().await, "OK KILL alice");
    assert!(
        first
            .until_closed()
            .await
            .iter()
            .any(|l| l.starts_with("BYE KILLED"))
    );
    assert!(
        second
            .until_closed()
            .await
            .iter()
            .any(|l| l.starts_with("BYE KILLED"))
    );
    carol.expect_quiet().await;
}

#[tokio::test]
async fn a_native_and_an_irc_connection_of_one_account() {
    let s = TestServer::start().await;
    let mut carol = s.user("carol").await;
    let mut native = account_holder(&s, "alice").await;
    until(&mut carol, "ONLINE alice", |_| false).await;
    assert_eq!(answer(&mut native, "JOIN #den").await, "OK JOIN #den 1");
    assert_eq!(answer(&mut carol, "JOIN #den").await, "OK JOIN #den 2");
    assert_eq!(native.text().await, "JOINED #den carol");

    let mut irc = Irc::connect(s.addr).await;
    irc.send("CAP REQ :sasl").await;
    irc.skip_to("ACK").await;
    irc.send("NICK alice").await;
    irc.send("USER a 0 * :A").await;
    irc.send("AUTHENTICATE PLAIN").await;
    irc.skip_to("AUTHENTICATE +").await;
    irc.send(&format!("AUTHENTICATE {}", plain("alice", PW)))
        .await;
    irc.skip_to(" 903 ").await;
    irc.send("CAP END").await;
    assert!(irc.skip_to(" 001 ").await.contains(" 001 alice "));
    // It is told the account's rooms, the everyone channel first.
    assert!(irc.skip_to(" JOIN ").await.ends_with("JOIN #everyone"));
    assert!(irc.skip_to(" JOIN ").await.ends_with("JOIN #den"));
    let names = irc.skip_to(" 353 ").await;
    assert!(
        names.contains("alice") && names.contains("carol"),
        "{names}"
    );
    irc.skip_to(" 366 ").await;

    // What carol says reaches both; what either sends, the other sees.
    assert_eq!(answer(&mut carol, "SAY #den hello").await, "OK SAY #den 1");
    assert_eq!(native.text().await, "SAY #den carol hello");
    let hello = irc.skip_to("PRIVMSG").await;
    assert!(hello.ends_with("PRIVMSG #den hello"), "{hello}");
    irc.send("PRIVMSG carol :from irc").await;
    assert_eq!(carol.text().await, "DM alice from irc");
    assert_eq!(native.text().await, "SENT carol from irc");
    assert_eq!(
        answer(&mut native, "SAY #den from native").await,
        "OK SAY #den 1"
    );
    let echo = irc.skip_to("PRIVMSG").await;
    assert!(
        echo.starts_with(":alice!") && echo.ends_with("PRIVMSG #den :from native"),
        "{echo}"
    );
    irc.quiet().await;
    // The IRC connection quits: the account stays, so carol hears nothing.
    irc.send("QUIT :bye").await;
    assert_eq!(answer(&mut carol, "DM alice still").await, "OK DM alice");
    assert_eq!(native.text().await, "DM carol still");
}

#[tokio::test]
async fn irc_clients_see_accounts_and_register_them_with_account_registration() {
    let s = TestServer::start().await;
    let mut watch = Irc::connect(s.addr).await;
    watch.send("CAP LS 302").await;
    let ls = watch.skip_to("CAP * LS").await;
    for cap in [
        "account-tag",
        "account-notify",
        "extended-join",
        "draft/account-registration",
    ] {
        assert!(ls.contains(cap), "{ls}");
    }
    watch
        .send("CAP REQ :account-tag account-notify extended-join")
        .await;
    watch.skip_to("ACK").await;
    watch.send("NICK watch").await;
    watch.send("USER w 0 * :W").await;
    watch.send("CAP END").await;
    watch.skip_to(" 366 ").await;

    // A guest's JOIN says no account; making the name an account is an ACCOUNT; its
    // messages carry account=; deleting the account is ACCOUNT *.
    let mut alice = s.user("alice").await;
    assert_eq!(
        watch.line().await,
        ":alice!alice@natter JOIN #everyone * alice"
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT CREATE {PW}")).await,
        "OK ACCOUNT CREATE alice"
    );
    assert_eq!(watch.line().await, ":alice!alice@natter ACCOUNT alice");
    assert_eq!(answer(&mut alice, "MESSAGE hi").await, "OK MESSAGE 1");
    assert_eq!(
        watch.line().await,
        "@account=alice :alice!alice@natter PRIVMSG #everyone hi"
    );
    watch.send("WHOIS alice").await;
    let account = watch.skip_to(" 330 ").await;
    assert!(
        account.ends_with(" 330 watch alice alice :is logged in as"),
        "{account}"
    );
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT DELETE {PW}")).await,
        "OK ACCOUNT DELETE alice"
    );
    watch.skip_to(" 318 ").await;
    assert_eq!(watch.line().await, ":alice!alice@natter ACCOUNT *");
    // A logged-in user's JOIN names its account.
    offline_account(&s, "dora").await;
    // Its holder and then the witness left.
    watch.skip_to(":wdora!wdora@natter QUIT").await;
    let mut dora = s.client().await;
    assert_eq!(login(&mut dora, "dora").await, "OK LOGIN dora");
    assert_eq!(
        watch.line().await,
        ":dora!dora@natter JOIN #everyone dora dora"
    );
    watch.quiet().await;

    // draft/account-registration: the nick becomes an account.
    let mut carol = Irc::connect(s.addr).await;
    carol.send("NICK carol").await;
    carol.send("REGISTER * * correct-horse").await;
    assert!(
        carol
            .skip_to("FAIL REGISTER COMPLETE_CONNECTION_REQUIRED")
            .await
            .contains(" * :")
    );
    carol.send("USER c 0 * :C").await;
    carol.skip_to(" 001 ").await;
    carol.send("REGISTER * * short").await;
    carol.skip_to("FAIL REGISTER WEAK_PASSWORD carol").await;
    carol.send("REGISTER bob * correct-horse").await;
    carol
        .skip_to("FAIL REGISTER ACCOUNT_NAME_MUST_BE_NICK bob")
        .await;
    carol
        .send("REGISTER carol carol@example.org correct-horse")
        .await;
    carol.skip_to("REGISTER SUCCESS carol").await;
    carol.skip_to(" 900 ").await;
    carol.send("REGISTER * * correct-horse").await;
    carol
        .skip_to("FAIL REGISTER ALREADY_AUTHENTICATED carol")
        .await;
    carol.send("VERIFY carol 1234").await;
    carol.skip_to("FAIL VERIFY INVALID_CODE carol").await;
    assert_eq!(
        watch.skip_to("ACCOUNT").await,
        ":carol!c@natter ACCOUNT carol"
    );
    // The account is real: another connection is refused the name, and logs into it.
    let mut other = s.client().await;
    assert!(
        answer(&mut other, "REGISTER carol")
            .await
            .starts_with("ERROR NAME_RESERVED ")
    );
    assert_eq!(login(&mut other, "carol").await, "OK LOGIN carol");
}

#[tokio::test]
async fn accounts_lists_who_is_logged_into_an_account() {
    let s = TestServer::start().await;
    let mut carol = s.user("carol").await;
    let mut alice = account_holder(&s, "alice").await;
    let _bob = account_holder(&s, "bob").await;
    carol.say("ACCOUNTS").await;
    until(&mut carol, "ACCOUNT alice", |l| l == "ACCOUNT bob").await;
    assert_eq!(carol.text().await, "ACCOUNT bob");
    assert_eq!(carol.text().await, "OK ACCOUNTS 2");
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT DELETE {PW}")).await,
        "OK ACCOUNT DELETE alice"
    );
    carol.say("ACCOUNTS").await;
    until(&mut carol, "ACCOUNT bob", |l| l == "ACCOUNT alice").await;
    assert_eq!(carol.text().await, "OK ACCOUNTS 1");
    carol
        .expect_error("ACCOUNTS all", natter_proto::ErrorCode::TooManyParameters)
        .await;
}
