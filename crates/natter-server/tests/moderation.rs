//! Room moderation over real sockets: modes, bans, invitations, keys, limits, moderation with
//! voice and secrecy, set by one kind of client and enforced on the other.

mod common;

use common::irc::Irc;
use common::{ClientExt, TestServer, account_holder, answer, on_sqlite};
use natter_conn::Client;
use natter_proto::ErrorCode::*;

/// Registers `names` in order, each having heard of those after it, so that nothing is
/// left to read.
async fn crowd(s: &TestServer, names: &[&str]) -> Vec<Client> {
    let mut all: Vec<Client> = Vec::new();
    for name in names {
        let c = s.user(name).await;
        for earlier in &mut all {
            assert_eq!(earlier.text().await, format!("ONLINE {name}"));
        }
        all.push(c);
    }
    all
}

/// `ann` makes `#r` (its operator) and `bob` joins it; `others` are registered, outside it.
async fn room_of_two(s: &TestServer, others: &[&str]) -> (Client, Client, Vec<Client>) {
    let mut names = vec!["ann", "bob"];
    names.extend(others);
    let mut all = crowd(s, &names).await;
    let rest = all.split_off(2);
    let mut bob = all.pop().unwrap();
    let mut ann = all.pop().unwrap();
    assert_eq!(answer(&mut ann, "JOIN #r").await, "OK JOIN #r 1");
    assert_eq!(answer(&mut bob, "JOIN #r").await, "OK JOIN #r 2");
    assert_eq!(ann.text().await, "JOINED #r bob");
    (ann, bob, rest)
}

/// Sends a mode change from `op` and checks that `op` (as a member) and `other` both see it
/// before the answer.
async fn set(op: &mut Client, other: &mut Client, by: &str, change: &str) {
    op.say(&format!("MODE #r {change}")).await;
    let event = format!("MODE #r {by} {change}");
    assert_eq!(op.text().await, event);
    assert_eq!(op.text().await, format!("OK MODE #r {change}"));
    assert_eq!(other.text().await, event);
}

#[tokio::test]
async fn modes_are_shown_changed_by_operators_only_and_told_to_every_member() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut rest) = room_of_two(&s, &["cy"]).await;
    let cy = &mut rest[0];
    assert_eq!(bob.ask("MODE #r").await, "OK MODE #r +nt");
    bob.expect_error("MODE #r +m", NotOperator).await;
    bob.expect_error("MODE #r +q", UnknownMode).await;
    bob.expect_error("MODE #r +l none", BadParameter).await;
    bob.expect_error("MODE #r +k", MissingParameter).await;
    bob.expect_error("MODE #nowhere +m", NoSuchRoom).await;

    set(&mut ann, &mut bob, "ann", "+k sesame").await;
    set(&mut ann, &mut bob, "ann", "+l 5").await;
    set(&mut ann, &mut bob, "ann", "+s").await;
    // A change that changes nothing is answered, and nobody is told.
    assert_eq!(ann.ask("MODE #r +s").await, "OK MODE #r +s");
    assert_eq!(bob.ask("MODE #r").await, "OK MODE #r +nstkl sesame 5");
    // The key is for members' eyes.
    assert_eq!(
        cy.ask("MODE #r").await,
        "ERROR NO_SUCH_ROOM no room named #r"
    );
    set(&mut ann, &mut bob, "ann", "-s").await;
    assert_eq!(cy.ask("MODE #r").await, "OK MODE #r +ntkl 5");

    // Operators: a new one is the OPERATOR line natives know; taking it is a MODE line.
    ann.say("MODE #r +o bob").await;
    assert_eq!(ann.text().await, "OPERATOR #r bob");
    assert_eq!(ann.text().await, "OK MODE #r +o bob");
    assert_eq!(bob.text().await, "OPERATOR #r bob");
    set(&mut bob, &mut ann, "bob", "-o ann").await;
    ann.expect_error("MODE #r -k", NotOperator).await;
    // The last operator cannot leave the room without one.
    bob.expect_error("MODE #r -o bob", BadParameter).await;
    bob.expect_error("MODE #r +v nobody", NoSuchUser).await;
    bob.expect_error("MODE #r +v cy", UserNotInRoom).await;
    bob.expect_quiet().await;
    ann.expect_quiet().await;
}

#[tokio::test]
async fn a_key_a_limit_and_an_invitation_decide_who_comes_in() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut rest) = room_of_two(&s, &["cy", "dee"]).await;
    let (cy, dee) = rest.split_at_mut(1);
    let (cy, dee) = (&mut cy[0], &mut dee[0]);
    set(&mut ann, &mut bob, "ann", "+k sesame").await;
    cy.expect_error("JOIN #r", BadKey).await;
    cy.expect_error("JOIN #r open", BadKey).await;
    assert_eq!(answer(cy, "JOIN #r sesame").await, "OK JOIN #r 3");
    assert_eq!(ann.text().await, "JOINED #r cy");
    assert_eq!(bob.text().await, "JOINED #r cy");
    set(&mut ann, &mut bob, "ann", "-k").await;
    assert_eq!(cy.text().await, "MODE #r ann -k");
    set(&mut ann, &mut bob, "ann", "+l 3").await;
    dee.expect_error("JOIN #r", RoomFull).await;
    assert_eq!(answer(cy, "PART #r").await, "OK PART #r");
    assert_eq!(ann.text().await, "PARTED #r cy");
    assert_eq!(bob.text().await, "PARTED #r cy");
    set(&mut ann, &mut bob, "ann", "-l").await;

    set(&mut ann, &mut bob, "ann", "+i").await;
    cy.expect_error("JOIN #r", InviteOnly).await;
    // Only an operator invites into an invite-only room.
    bob.expect_error("INVITE #r cy", NotOperator).await;
    ann.expect_error("INVITE #r bob", UserInRoom).await;
    ann.expect_error("INVITE #r nobody", NoSuchUser).await;
    assert_eq!(ann.ask("INVITE #r cy").await, "OK INVITE #r cy");
    assert_eq!(cy.text().await, "INVITED #r ann");
    // The invitation opens the key and the limit too, once.
    set(&mut ann, &mut bob, "ann", "+k sesame").await;
    set(&mut ann, &mut bob, "ann", "+l 2").await;
    assert_eq!(answer(cy, "JOIN #R").await, "OK JOIN #r 3");
    assert_eq!(answer(cy, "PART #r").await, "OK PART #r");
    cy.expect_error("JOIN #r sesame", InviteOnly).await;
    dee.expect_quiet().await;
}

#[tokio::test]
async fn a_ban_keeps_out_and_silences_until_it_is_lifted() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, _) = room_of_two(&s, &[]).await;
    ann.say("MODE #r +b bob").await;
    // The mask is kept in its full form, and the answer says so.
    assert_eq!(bob.text().await, "MODE #r ann +b bob!*@*");
    assert_eq!(ann.text().await, "MODE #r ann +b bob!*@*");
    assert_eq!(ann.text().await, "OK MODE #r +b bob!*@*");
    bob.expect_error("SAY #r let me speak", Banned).await;
    let bans = bob.ask("BANS #r").await;
    assert!(bans.starts_with("BAN #r bob!*@* ann 20"), "{bans}");
    assert_eq!(bob.text().await, "OK BANS #r 1");
    assert_eq!(answer(&mut bob, "PART #r").await, "OK PART #r");
    assert_eq!(ann.text().await, "PARTED #r bob");
    bob.expect_error("JOIN #r", Banned).await;
    // An invitation does not open a ban.
    assert_eq!(ann.ask("INVITE #r bob").await, "OK INVITE #r bob");
    assert_eq!(bob.text().await, "INVITED #r ann");
    bob.expect_error("JOIN #r", Banned).await;
    ann.say("MODE #r -b BOB!*@*").await;
    assert_eq!(ann.text().await, "MODE #r ann -b bob!*@*");
    assert_eq!(ann.text().await, "OK MODE #r -b bob!*@*");
    assert_eq!(answer(&mut bob, "JOIN #r").await, "OK JOIN #r 2");
}

#[tokio::test]
async fn an_account_ban_follows_the_account_whatever_its_name() {
    let s = TestServer::start().await;
    let mut carol = account_holder(&s, "carol").await;
    let mut ann = s.user("ann").await;
    assert_eq!(answer(&mut ann, "JOIN #r").await, "OK JOIN #r 1");
    assert_eq!(
        answer(&mut ann, "MODE #r +b $a:carol").await,
        "OK MODE #r +b $a:carol"
    );
    assert_eq!(carol.text().await, "ONLINE ann");
    carol.expect_error("JOIN #r", Banned).await;
    // A guest under another name is not the account.
    let mut guest = s.user("notcarol").await;
    assert_eq!(answer(&mut guest, "JOIN #r").await, "OK JOIN #r 2");
    let refused = answer(&mut ann, "MODE #r +b $a:9").await;
    assert!(refused.starts_with("ERROR BAD_PARAMETER "), "{refused}");
}

#[tokio::test]
async fn a_moderated_room_hears_only_operators_and_voiced_members() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, _) = room_of_two(&s, &[]).await;
    set(&mut ann, &mut bob, "ann", "+m").await;
    bob.expect_error("SAY #r hello?", Moderated).await;
    assert_eq!(
        answer(&mut ann, "SAY #r operators speak").await,
        "OK SAY #r 1"
    );
    assert_eq!(bob.text().await, "SAY #r ann operators speak");
    ann.say("MODE #r +v bob").await;
    assert_eq!(ann.text().await, "MODE #r ann +v bob");
    assert_eq!(ann.text().await, "OK MODE #r +v bob");
    assert_eq!(bob.text().await, "MODE #r ann +v bob");
    assert_eq!(answer(&mut bob, "SAY #r now I may").await, "OK SAY #r 1");
    assert_eq!(ann.text().await, "SAY #r bob now I may");
    // Members show their voice.
    assert_eq!(bob.ask("WHO #r").await, "MEMBER #r @ann");
    assert_eq!(bob.text().await, "MEMBER #r +bob");
    assert_eq!(bob.text().await, "OK WHO #r 2");
}

#[tokio::test]
async fn open_rooms_let_members_set_the_topic_and_outsiders_speak() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut rest) = room_of_two(&s, &["cy"]).await;
    let cy = &mut rest[0];
    bob.expect_error("TOPIC #r mine", NotOperator).await;
    cy.expect_error("SAY #r from outside", NotInRoom).await;
    set(&mut ann, &mut bob, "ann", "-t").await;
    set(&mut ann, &mut bob, "ann", "-n").await;
    assert_eq!(bob.ask("TOPIC #r mine").await, "TOPIC #r bob mine");
    assert_eq!(ann.text().await, "TOPIC #r bob mine");
    assert_eq!(answer(cy, "SAY #r from outside").await, "OK SAY #r 2");
    assert_eq!(ann.text().await, "SAY #r cy from outside");
}

#[tokio::test]
async fn a_secret_room_is_hidden_from_those_outside_it() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut rest) = room_of_two(&s, &["cy"]).await;
    let cy = &mut rest[0];
    set(&mut ann, &mut bob, "ann", "+s").await;
    assert_eq!(cy.ask("ROOMS").await, "OK ROOMS 0");
    cy.expect_error("WHO #r", NoSuchRoom).await;
    cy.expect_error("TOPIC #r", NoSuchRoom).await;
    cy.expect_error("BANS #r", NoSuchRoom).await;
    assert_eq!(bob.ask("ROOMS").await, "ROOM #r 2");
    assert_eq!(bob.text().await, "OK ROOMS 1");
    // Hidden is not closed: it may still be joined.
    assert_eq!(answer(cy, "JOIN #r").await, "OK JOIN #r 3");
}

#[tokio::test]
async fn a_kept_room_keeps_its_modes_and_bans_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(on_sqlite(&dir)).await;
    let mut alice = account_holder(&s, "alice").await;
    assert_eq!(answer(&mut alice, "JOIN #Kept").await, "OK JOIN #Kept 1");
    assert_eq!(
        answer(&mut alice, "MODE #kept +k sesame").await,
        "OK MODE #Kept +k sesame"
    );
    assert_eq!(
        answer(&mut alice, "MODE #kept +m").await,
        "OK MODE #Kept +m"
    );
    assert_eq!(
        answer(&mut alice, "MODE #kept +b troll").await,
        "OK MODE #Kept +b troll!*@*"
    );
    s.stop().await;

    let s = TestServer::with(on_sqlite(&dir)).await;
    let mut troll = s.user("troll").await;
    troll.expect_error("JOIN #kept sesame", Banned).await;
    let mut c = s.user("carol").await;
    c.expect_error("JOIN #kept", BadKey).await;
    assert_eq!(answer(&mut c, "JOIN #kept sesame").await, "OK JOIN #Kept 1");
    assert_eq!(c.ask("MODE #kept").await, "OK MODE #Kept +mntk sesame");
    c.expect_error("SAY #kept hello", Moderated).await;
}

#[tokio::test]
async fn irc_and_native_operators_moderate_each_other_s_users() {
    let s = TestServer::start().await;
    let mut ann = s.user("ann").await;
    assert_eq!(answer(&mut ann, "JOIN #r").await, "OK JOIN #r 1");
    let mut irc = Irc::user(s.addr, "ike").await;
    irc.part_everyone().await;
    irc.join("#r").await;
    while ann.text().await != "JOINED #r ike" {}

    // A native operator's changes reach the IRC member as MODE lines from the operator.
    assert_eq!(answer(&mut ann, "MODE #r +m").await, "OK MODE #r +m");
    assert_eq!(irc.line().await, ":ann!ann@natter MODE #r +m");
    irc.expect("PRIVMSG #r :may I?", "404").await;
    assert_eq!(
        answer(&mut ann, "MODE #r +v ike").await,
        "OK MODE #r +v ike"
    );
    assert_eq!(irc.line().await, ":ann!ann@natter MODE #r +v ike");
    irc.send("PRIVMSG #r :thank you").await;
    assert_eq!(ann.text().await, "SAY #r ike thank you");
    irc.send("NAMES #r").await;
    assert!(irc.line().await.ends_with(" = #r :@ann +ike"));
    irc.skip_to(" 366 ").await;
    irc.expect("MODE #r +k key", "482").await;

    // The IRC user made operator moderates natives.
    assert_eq!(
        answer(&mut ann, "MODE #r +o ike").await,
        "OK MODE #r +o ike"
    );
    assert_eq!(irc.line().await, ":ann!ann@natter MODE #r +o ike");
    irc.send("MODE #r +ik-m sesame").await;
    assert_eq!(ann.text().await, "MODE #r ike +i");
    assert_eq!(ann.text().await, "MODE #r ike +k sesame");
    assert_eq!(ann.text().await, "MODE #r ike -m");
    assert_eq!(irc.line().await, ":ike!ike@natter MODE #r +i");
    assert_eq!(irc.line().await, ":ike!ike@natter MODE #r +k sesame");
    assert_eq!(irc.line().await, ":ike!ike@natter MODE #r -m");
    irc.send("MODE #r").await;
    assert!(irc.line().await.ends_with(" 324 ike #r +intk sesame"));
    assert!(irc.line().await.contains(" 329 ike #r "));
    irc.send("MODE #r +b dee").await;
    assert_eq!(irc.line().await, ":ike!ike@natter MODE #r +b dee!*@*");
    assert_eq!(ann.text().await, "MODE #r ike +b dee!*@*");
    irc.send("MODE #r b").await;
    assert!(irc.line().await.contains(" 367 ike #r dee!*@* ike "));
    assert!(irc.line().await.contains(" 368 ike #r "));
    irc.expect("MODE #r +x", "472").await;
    irc.expect("MODE #r +l zero", "696").await;

    let mut dee = s.user("dee").await;
    dee.expect_error("JOIN #r", Banned).await;
    let mut cy = s.user("cy").await;
    cy.expect_error("JOIN #r", InviteOnly).await;
    irc.expect("INVITE cy #r", "341").await;
    assert_eq!(cy.text().await, "INVITED #r ike");
    assert_eq!(answer(&mut cy, "JOIN #r").await, "OK JOIN #r 3");
    irc.skip_to(" JOIN #r").await;

    // And the other way: IRC users refused by what natives set.
    let mut jo = Irc::user(s.addr, "jo").await;
    jo.part_everyone().await;
    jo.expect("JOIN #r", "473").await;
    assert_eq!(answer(&mut ann, "MODE #r -i").await, "OK MODE #r -i");
    jo.expect("JOIN #r", "475").await;
    jo.expect("JOIN #r wrong", "475").await;
    assert_eq!(answer(&mut ann, "MODE #r +l 3").await, "OK MODE #r +l 3");
    jo.expect("JOIN #r sesame", "471").await;
    assert_eq!(
        answer(&mut ann, "MODE #r +b jo").await,
        "OK MODE #r +b jo!*@*"
    );
    jo.expect("JOIN #r sesame", "474").await;
    assert_eq!(answer(&mut ann, "INVITE #r jo").await, "OK INVITE #r jo");
    assert_eq!(jo.line().await, ":ann!ann@natter INVITE jo #r");
    assert_eq!(
        answer(&mut ann, "MODE #r -b jo").await,
        "OK MODE #r -b jo!*@*"
    );
    jo.send("JOIN #r").await;
    assert!(jo.line().await.ends_with(" JOIN #r"));
}

#[tokio::test]
async fn irc_clients_see_the_modes_natter_has_in_isupport_and_multi_prefix() {
    let s = TestServer::start().await;
    let mut c = Irc::connect(s.addr).await;
    c.send("CAP LS 302").await;
    c.send("CAP REQ :multi-prefix").await;
    c.skip_to(" ACK ").await;
    c.send("CAP END").await;
    c.send("NICK ike").await;
    c.send("USER ike 0 * :Ike").await;
    let myinfo = c.skip_to(" 004 ").await;
    assert!(myinfo.ends_with(" iw biklmnostv bklov"), "{myinfo}");
    let isupport = c.skip_to(" 005 ").await;
    for token in [
        "PREFIX=(ov)@+",
        "CHANMODES=b,k,l,imnst",
        "MODES=4",
        "MAXLIST=b:100",
    ] {
        assert!(isupport.contains(token), "{token} in {isupport}");
    }
    c.skip_to(" 366 ").await;
    c.join("#r").await;
    c.send("MODE #r +v ike").await;
    assert_eq!(c.line().await, ":ike!ike@natter MODE #r +v ike");
    c.send("NAMES #r").await;
    let names = c.line().await;
    assert!(names.ends_with(" = #r @+ike"), "{names}");
    c.skip_to(" 366 ").await;
    c.send("WHO #r").await;
    assert!(c.line().await.contains(" ike H@+ :0 "));
    c.skip_to(" 315 ").await;
    c.send("MODE #everyone").await;
    assert!(c.line().await.ends_with(" 324 ike #everyone +nt"));
    c.expect("MODE #everyone +m", "482").await;
}
