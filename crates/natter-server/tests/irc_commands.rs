//! The IRC commands clients send on their own, over real TCP: real names, WHO masks and
//! WHOX, WHOWAS, MONITOR, LIST's parameters, TIME, SETNAME, away-notify, userhost-in-names,
//! and the answers to invalid UTF-8 and unknown CAP subcommands.

mod common;

use common::irc::Irc;
use common::{TestServer, account_holder};

#[tokio::test]
async fn real_names_show_in_who_and_whois() {
    let s = TestServer::start().await;
    let _nat = s.user("nat").await;
    let mut c = Irc::connect(s.addr).await;
    c.send("NICK rn").await;
    c.expect("USER rn 0 * :", "461").await;
    c.expect("USER rn 0 * :\u{2}\u{2} ", "461").await;
    c.send("USER rn 0 * :Real \u{2}Name\u{2}").await;
    c.skip_to(" 366 ").await;

    c.send("WHOIS rn").await;
    assert_eq!(c.line().await, ":natter 311 rn rn rn natter * :Real Name");
    c.skip_to(" 318 ").await;
    // Natives have no real name: they are shown as before.
    c.send("WHOIS nat").await;
    assert_eq!(
        c.line().await,
        ":natter 311 rn nat nat natter * :natter user"
    );
    c.skip_to(" 318 ").await;
    c.send("WHO rn").await;
    assert_eq!(
        c.line().await,
        ":natter 352 rn * rn natter natter rn H :0 Real Name"
    );
    assert_eq!(c.line().await, ":natter 315 rn rn :End of WHO list");
    c.send("WHO nat").await;
    assert_eq!(
        c.line().await,
        ":natter 352 rn * nat natter natter nat H :0 nat"
    );
    assert_eq!(c.line().await, ":natter 315 rn nat :End of WHO list");
}

#[tokio::test]
async fn who_takes_masks_and_whox_fields() {
    let s = TestServer::start().await;
    let _alice = s.user("alice").await;
    let _albert = s.user("Albert").await;
    let _acct = account_holder(&s, "acct").await;
    let mut w = Irc::user(s.addr, "w").await;

    w.send("WHO al*").await;
    assert_eq!(
        w.line().await,
        ":natter 352 w * Albert natter natter Albert H :0 Albert"
    );
    assert_eq!(
        w.line().await,
        ":natter 352 w * alice natter natter alice H :0 alice"
    );
    assert_eq!(w.line().await, ":natter 315 w al* :End of WHO list");
    w.send("WHO A?ICE").await;
    assert!(w.line().await.contains(" 352 w * alice "));
    w.skip_to(" 315 w A?ICE ").await;
    w.send("WHO w!w@natt?r").await;
    assert!(
        w.line()
            .await
            .contains(" 352 w * w natter natter w H :0 w real")
    );
    w.skip_to(" 315 ").await;
    // A mask longer than any nick!user@host matches nobody, without a look at anyone.
    w.expect(&format!("WHO {}", "*".repeat(65)), "315").await;
    // `o`: server operators only, and there are none.
    w.expect("WHO * o", "315").await;

    // What WeeChat and irssi send after a JOIN.
    w.send("WHO #everyone %tcuhnfdar,42").await;
    assert_eq!(
        w.line().await,
        ":natter 354 w 42 #everyone acct natter acct H 0 acct acct"
    );
    assert_eq!(
        w.line().await,
        ":natter 354 w 42 #everyone Albert natter Albert H 0 0 Albert"
    );
    assert_eq!(
        w.line().await,
        ":natter 354 w 42 #everyone alice natter alice H 0 0 alice"
    );
    assert_eq!(
        w.line().await,
        ":natter 354 w 42 #everyone w natter w H 0 0 :w real"
    );
    assert_eq!(w.line().await, ":natter 315 w #everyone :End of WHO list");
    // Fields come in WHOX's order whatever order they are asked in; a bad token is 0.
    w.send("WHO acct %nat,toolong").await;
    assert_eq!(w.line().await, ":natter 354 w 0 acct acct");
    w.skip_to(" 315 ").await;
    w.send("WHO alice %rlosidhu").await;
    assert_eq!(
        w.line().await,
        ":natter 354 w alice 255.255.255.255 natter natter 0 0 n/a alice"
    );
    w.skip_to(" 315 ").await;
}

#[tokio::test]
async fn monitor_follows_natives_and_irc_users() {
    let s = TestServer::start().await;
    let mut m = Irc::user(s.addr, "mon").await;
    m.expect("MONITOR +", "461").await;
    m.send("MONITOR + bob,Carol,bad!nick").await;
    assert_eq!(m.line().await, ":natter 731 mon bob,Carol");

    // A native arriving and leaving.
    let bob = s.user("bob").await;
    assert_eq!(m.skip_to(" 730 ").await, ":natter 730 mon bob!bob@natter");
    // The JOIN of the everyone channel may come after, gathered with other arrivals.
    m.send("MONITOR L").await;
    assert_eq!(m.skip_to(" 732 ").await, ":natter 732 mon bob,Carol");
    assert_eq!(m.line().await, ":natter 733 mon :End of MONITOR list");
    m.send("MONITOR S").await;
    assert_eq!(m.line().await, ":natter 730 mon bob!bob@natter");
    assert_eq!(m.line().await, ":natter 731 mon Carol");
    drop(bob);
    assert_eq!(m.skip_to(" 731 ").await, ":natter 731 mon bob");

    // An IRC user taking a monitored nick, and leaving it.
    let mut carl = Irc::user(s.addr, "carl").await;
    m.skip_to(":carl!carl@natter JOIN").await;
    carl.send("NICK carol").await;
    assert_eq!(
        m.skip_to(" 730 ").await,
        ":natter 730 mon carol!carl@natter"
    );
    carl.send("NICK carl").await;
    assert_eq!(m.skip_to(" 731 ").await, ":natter 731 mon carol");

    m.send("MONITOR - bob").await;
    m.send("MONITOR L").await;
    assert_eq!(m.line().await, ":natter 732 mon Carol");
    m.skip_to(" 733 ").await;
    m.send("MONITOR C").await;
    m.expect("MONITOR L", "733").await;

    // The list is bounded.
    let many: Vec<String> = (0..=100).map(|i| format!("n{i}")).collect();
    m.send(&format!("MONITOR + {}", many.join(","))).await;
    m.skip_to(" 731 ").await;
    assert_eq!(
        m.skip_to(" 734 ").await,
        ":natter 734 mon 100 n100 :Monitor list is full."
    );
    m.quiet().await;
}

#[tokio::test]
async fn whowas_remembers_who_left() {
    let s = TestServer::start().await;
    let mut asker = Irc::user(s.addr, "asker").await;
    let mut gone = Irc::user(s.addr, "gone").await;
    asker.skip_to(":gone!gone@natter JOIN").await;
    gone.send("NICK went").await;
    asker.skip_to(" NICK ").await;
    gone.send("QUIT :bye").await;
    asker.skip_to(" QUIT ").await;

    asker.send("WHOWAS went").await;
    assert_eq!(
        asker.line().await,
        ":natter 314 asker went gone natter * :gone real"
    );
    let when = asker.line().await;
    assert!(
        when.starts_with(":natter 312 asker went natter 20"),
        "{when}"
    );
    assert_eq!(asker.line().await, ":natter 369 asker went :End of WHOWAS");
    // The nick it had before, too.
    asker.send("WHOWAS GONE 1").await;
    assert!(
        asker
            .line()
            .await
            .starts_with(":natter 314 asker gone gone ")
    );
    asker.skip_to(" 369 ").await;
    asker.send("WHOWAS nobody").await;
    assert_eq!(
        asker.line().await,
        ":natter 406 asker nobody :There was no such nickname"
    );
    assert_eq!(
        asker.line().await,
        ":natter 369 asker nobody :End of WHOWAS"
    );
}

#[tokio::test]
async fn list_takes_names_and_user_counts() {
    let s = TestServer::start().await;
    let mut a = Irc::user(s.addr, "a").await;
    let mut b = Irc::user(s.addr, "b").await;
    a.send("JOIN #big,#small").await;
    a.skip_to(" 366 a #small").await;
    b.send("JOIN #big").await;
    b.skip_to(" 366 ").await;
    a.skip_to(":b!b@natter JOIN #big").await;

    a.send("LIST >1").await;
    assert!(a.line().await.contains(" 321 "));
    assert!(a.line().await.starts_with(":natter 322 a #everyone 2 "));
    assert_eq!(a.line().await, ":natter 322 a #big 2 :");
    assert!(a.line().await.contains(" 323 "));
    a.send("LIST <2").await;
    assert!(a.line().await.contains(" 321 "));
    assert_eq!(a.line().await, ":natter 322 a #small 1 :");
    assert!(a.line().await.contains(" 323 "));
    a.send("LIST #small,#nowhere,#SMALL").await;
    assert!(a.line().await.contains(" 321 "));
    assert_eq!(a.line().await, ":natter 322 a #small 1 :");
    assert!(a.line().await.contains(" 323 "));
    a.send("LIST #everyone").await;
    a.line().await;
    assert!(a.line().await.starts_with(":natter 322 a #everyone 2 "));
    assert!(a.line().await.contains(" 323 "));
    // Unknown parameters are ignored.
    a.send("LIST C>5,T<3").await;
    a.line().await;
    a.line().await;
    a.line().await;
    a.line().await;
    assert!(a.line().await.contains(" 323 "));
}

#[tokio::test]
async fn time_utf8_cap_errors_and_user_counts() {
    let s = TestServer::start().await;
    let mut c = Irc::connect(s.addr).await;
    c.send("NICK counter").await;
    c.send("USER counter 0 * :Counter").await;
    let mut isupport = String::new();
    loop {
        let l = c.line().await;
        if l.contains(" 005 ") {
            isupport.push_str(&l);
        }
        if l.contains(" 366 ") {
            break;
        }
    }
    for token in [" UTF8ONLY ", " WHOX ", " MONITOR=100 ", " ELIST=U "] {
        assert!(isupport.contains(token), "{token} missing from {isupport}");
    }

    let now = c.expect("TIME", "391").await;
    assert!(now.starts_with(":natter 391 counter natter 20"), "{now}");
    c.send("CAP FROB").await;
    assert_eq!(
        c.line().await,
        ":natter 410 counter FROB :Invalid CAP command"
    );
    c.w.send_raw(b"PRIVMSG #everyone :caf\xe9\r\n")
        .await
        .unwrap();
    let l = c.line().await;
    assert!(l.starts_with(":natter FAIL * INVALID_UTF8 :"), "{l}");

    let _one = s.user("one").await;
    let two = s.user("two").await;
    c.skip_to(":two!two@natter JOIN").await;
    drop(two);
    c.skip_to(":two!two@natter QUIT").await;
    c.send("LUSERS").await;
    let local = c.skip_to(" 265 ").await;
    assert_eq!(
        local,
        ":natter 265 counter 2 3 :Current local users 2, max 3"
    );
    assert_eq!(
        c.line().await,
        ":natter 266 counter 2 3 :Current global users 2, max 3"
    );
}

#[tokio::test]
async fn setname_away_notify_and_userhost_in_names() {
    let s = TestServer::start().await;
    let mut b = Irc::user(s.addr, "b").await;
    let mut loner = Irc::user(s.addr, "loner").await;
    loner.send("PART #everyone").await;
    loner.skip_to(" PART ").await;
    let mut a = Irc::with_caps(s.addr, "a", "setname away-notify userhost-in-names").await;
    b.skip_to(":a!a@natter JOIN").await;
    a.send("NAMES #everyone").await;
    assert_eq!(
        a.line().await,
        ":natter 353 a = #everyone :a!a@natter b!b@natter"
    );
    a.skip_to(" 366 ").await;

    b.expect("AWAY :lunch", "306").await;
    assert_eq!(a.line().await, ":b!b@natter AWAY lunch");
    b.expect("AWAY", "305").await;
    assert_eq!(a.line().await, ":b!b@natter AWAY");
    b.send("SETNAME :New Name").await;
    assert_eq!(a.line().await, ":b!b@natter SETNAME :New Name");
    // b has no setname cap: nothing comes back to it.
    b.quiet().await;
    a.send("WHOIS b").await;
    assert_eq!(a.line().await, ":natter 311 a b b natter * :New Name");
    a.skip_to(" 318 ").await;

    // Someone sharing no channel is not heard of, unless monitored with extended-monitor.
    let mut x = Irc::with_caps(s.addr, "x", "away-notify setname extended-monitor").await;
    x.send("PART #everyone").await;
    x.skip_to(" PART ").await;
    x.send("MONITOR + loner").await;
    x.skip_to(" 730 ").await;
    a.skip_to(":x!x@natter PART").await;
    b.skip_to(":x!x@natter PART").await;
    loner.expect("AWAY :out", "306").await;
    loner.send("SETNAME :Alone").await;
    loner.quiet().await;
    assert_eq!(x.line().await, ":loner!loner@natter AWAY out");
    assert_eq!(x.line().await, ":loner!loner@natter SETNAME Alone");
    a.quiet().await;

    a.send("SETNAME :").await;
    assert!(
        a.line()
            .await
            .starts_with(":natter FAIL SETNAME INVALID_REALNAME :")
    );
    a.send(&format!("SETNAME :{}", "x".repeat(101))).await;
    assert!(a.line().await.contains(" INVALID_REALNAME "));
    a.send("SETNAME :Me").await;
    assert_eq!(a.line().await, ":a!a@natter SETNAME Me");
    b.quiet().await;
}

#[tokio::test]
async fn userhost_in_names_holds_for_the_everyone_channel_s_names_on_registering() {
    let s = TestServer::start().await;
    let _b = Irc::user(s.addr, "b").await;
    let mut a = Irc::connect(s.addr).await;
    a.send("CAP LS 302").await;
    a.send("CAP REQ :userhost-in-names").await;
    a.skip_to(" ACK ").await;
    a.send("NICK a").await;
    a.send("USER a 0 * :A").await;
    a.send("CAP END").await;
    a.skip_to(" JOIN #everyone").await;
    let mut names = Vec::new();
    loop {
        let l = a.line().await;
        if l.contains(" 366 ") {
            break;
        }
        if l.contains(" 353 ") {
            names.extend(l.rsplit_once(" :").unwrap().1.split(' ').map(str::to_owned));
        }
    }
    names.sort();
    assert_eq!(names, ["a!a@natter", "b!b@natter"]);
}

#[tokio::test]
async fn an_away_user_joining_is_followed_by_its_away_for_away_notify() {
    let s = TestServer::start().await;
    let mut w = Irc::with_caps(s.addr, "w", "away-notify").await;
    w.part_everyone().await;
    w.join("#r").await;
    let mut plain = Irc::user(s.addr, "plain").await;
    plain.part_everyone().await;
    plain.join("#r").await;
    w.skip_to(":plain!plain@natter JOIN #r").await;

    let mut b = Irc::user(s.addr, "b").await;
    b.part_everyone().await;
    b.expect("AWAY :lunch", "306").await;
    b.join("#r").await;
    assert_eq!(w.line().await, ":b!b@natter JOIN #r");
    assert_eq!(w.line().await, ":b!b@natter AWAY lunch");
    // Without the cap, the JOIN alone.
    assert_eq!(plain.line().await, ":b!b@natter JOIN #r");
    plain.quiet().await;

    // The everyone channel too.
    w.send("PART #r").await;
    w.skip_to(" PART #r").await;
    w.join("#everyone").await;
    b.join("#everyone").await;
    assert_eq!(w.line().await, ":b!b@natter JOIN #everyone");
    assert_eq!(w.line().await, ":b!b@natter AWAY lunch");
    // Sharing a channel already, w knows b is away: a JOIN elsewhere tells nothing more.
    w.join("#s").await;
    b.join("#s").await;
    assert_eq!(w.line().await, ":b!b@natter JOIN #s");
    w.quiet().await;
    b.expect("AWAY", "305").await;
    assert_eq!(w.line().await, ":b!b@natter AWAY");
}
