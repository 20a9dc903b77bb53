//! Rooms over real TCP: every command, operator rules, removal, limits and fan-out.

mod common;

use common::{ClientExt, QuietAfterEvents, TestServer, within};
use natter_proto::ErrorCode::*;
use natter_proto::ServerLine;
use natter_server::Config;
use natter_server::hub::RoomLimits;
use tokio::task::JoinSet;

/// Three registered users who have each heard of the others.
async fn trio(
    s: &TestServer,
) -> (
    natter_conn::Client,
    natter_conn::Client,
    natter_conn::Client,
) {
    let mut a = s.user("ann").await;
    let mut b = s.user("bob").await;
    let c = s.user("cy").await;
    assert_eq!(a.text().await, "ONLINE bob");
    assert_eq!(a.text().await, "ONLINE cy");
    assert_eq!(b.text().await, "ONLINE cy");
    (a, b, c)
}

#[tokio::test]
async fn join_say_part_rooms_and_who() {
    let s = TestServer::start().await;
    let (mut a, mut b, mut c) = trio(&s).await;

    assert_eq!(a.ask("JOIN #Rust").await, "MEMBER #Rust @ann");
    assert_eq!(a.text().await, "OK JOIN #Rust 1");
    // Room names ignore case; the creator's spelling is the room's name.
    assert_eq!(b.ask("join #RUST").await, "MEMBER #Rust @ann");
    assert_eq!(b.text().await, "MEMBER #Rust bob");
    assert_eq!(b.text().await, "OK JOIN #Rust 2");
    assert_eq!(a.text().await, "JOINED #Rust bob");

    assert_eq!(
        b.ask("SAY #rust  hello  rustaceans ").await,
        "OK SAY #Rust 1"
    );
    assert_eq!(a.text().await, "SAY #Rust bob hello  rustaceans ");
    c.expect_quiet().await;
    b.expect_quiet().await;
    c.expect_error("SAY #rust hi", NotInRoom).await;
    c.expect_error("SAY #nowhere hi", NoSuchRoom).await;

    assert_eq!(c.ask("ROOMS").await, "ROOM #Rust 2");
    assert_eq!(c.text().await, "OK ROOMS 1");
    assert_eq!(c.ask("WHO #rust").await, "MEMBER #Rust @ann");
    assert_eq!(c.text().await, "MEMBER #Rust bob");
    assert_eq!(c.text().await, "OK WHO #Rust 2");

    assert_eq!(b.ask("PART #rust off  to lunch").await, "OK PART #Rust");
    assert_eq!(a.text().await, "PARTED #Rust bob off  to lunch");
    b.expect_error("PART #rust", NotInRoom).await;
    b.expect_error("SAY #rust still here?", NotInRoom).await;
    assert_eq!(a.ask("SAY #rust alone").await, "OK SAY #Rust 0");
    b.expect_quiet().await;

    // MESSAGE and LIST are untouched by rooms: they still reach and name everyone.
    assert_eq!(a.ask("MESSAGE all of you").await, "OK MESSAGE 2");
    assert_eq!(b.text().await, "MESSAGE ann all of you");
    assert_eq!(c.text().await, "MESSAGE ann all of you");
    assert_eq!(c.ask("LIST").await, "USER ann");
    assert_eq!(c.text().await, "USER bob");
    assert_eq!(c.text().await, "USER cy");
    assert_eq!(c.text().await, "OK LIST 3");
}

#[tokio::test]
async fn topics_are_shown_on_join_and_set_by_operators() {
    let s = TestServer::with(Config {
        rooms: RoomLimits {
            topic_bytes: 20,
            ..RoomLimits::default()
        },
        ..common::test_config()
    })
    .await;
    let (mut a, mut b, mut c) = trio(&s).await;
    assert_eq!(a.ask("JOIN #t").await, "MEMBER #t @ann");
    assert_eq!(a.text().await, "OK JOIN #t 1");
    assert_eq!(a.ask("TOPIC #t").await, "OK TOPIC #t");
    assert_eq!(b.ask("JOIN #t").await, "MEMBER #t @ann");
    b.text().await;
    b.text().await;
    assert_eq!(a.text().await, "JOINED #t bob");

    assert_eq!(
        a.ask("TOPIC #t Rust  talk").await,
        "TOPIC #t ann Rust  talk"
    );
    assert_eq!(a.text().await, "OK TOPIC #t");
    assert_eq!(b.text().await, "TOPIC #t ann Rust  talk");
    b.expect_error("TOPIC #t mine now", NotOperator).await;
    a.expect_error(&format!("TOPIC #t {}", "x".repeat(21)), TopicTooLong)
        .await;
    a.expect_error("TOPIC #t \u{7}", BadText).await;
    c.expect_error("TOPIC #t hijack", NotInRoom).await;
    c.expect_error("TOPIC #none", NoSuchRoom).await;
    // Anyone may read it, and a new member gets it with the member list.
    assert_eq!(c.ask("TOPIC #T").await, "TOPIC #t ann Rust  talk");
    assert_eq!(c.text().await, "OK TOPIC #t");
    assert_eq!(c.ask("ROOMS").await, "ROOM #t 2 Rust  talk");
    assert_eq!(c.text().await, "OK ROOMS 1");
    assert_eq!(c.ask("JOIN #t").await, "MEMBER #t @ann");
    assert_eq!(c.text().await, "MEMBER #t bob");
    assert_eq!(c.text().await, "MEMBER #t cy");
    assert_eq!(c.text().await, "TOPIC #t ann Rust  talk");
    assert_eq!(c.text().await, "OK JOIN #t 3");
}

#[tokio::test]
async fn kick_is_for_operators_and_removes_the_member() {
    let s = TestServer::start().await;
    let (mut a, mut b, mut c) = trio(&s).await;
    for x in [&mut a, &mut b] {
        x.say("JOIN #k").await;
        within(x.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
            .await
            .unwrap();
    }
    assert_eq!(a.text().await, "JOINED #k bob");
    b.expect_error("KICK #k ann", NotOperator).await;
    c.expect_error("KICK #k ann", NotInRoom).await;
    a.expect_error("KICK #k nobody", NoSuchUser).await;
    a.expect_error("KICK #k cy", UserNotInRoom).await;
    a.expect_error("KICK #gone bob", NoSuchRoom).await;
    a.expect_error("KICK #k", MissingParameter).await;

    assert_eq!(
        a.ask("KICK #k BOB too  loud").await,
        "KICKED #k bob ann too  loud"
    );
    assert_eq!(a.text().await, "OK KICK #k bob");
    assert_eq!(b.text().await, "KICKED #k bob ann too  loud");
    b.expect_error("SAY #k let me back", NotInRoom).await;
    assert_eq!(a.ask("WHO #k").await, "MEMBER #k @ann");
    assert_eq!(a.text().await, "OK WHO #k 1");
    // A kicked user may come back (natter has no bans).
    assert_eq!(b.ask("JOIN #k").await, "MEMBER #k @ann");
}

#[tokio::test]
async fn the_longest_standing_member_takes_over_and_empty_rooms_vanish() {
    let s = TestServer::start().await;
    let (mut a, mut b, mut c) = trio(&s).await;
    for x in [&mut a, &mut b, &mut c] {
        x.say("JOIN #op").await;
        within(x.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
            .await
            .unwrap();
    }
    assert_eq!(a.text().await, "JOINED #op bob");
    assert_eq!(a.text().await, "JOINED #op cy");
    assert_eq!(a.ask("PART #op").await, "OK PART #op");
    for x in [&mut b, &mut c] {
        within(
            x.reader
                .until(|l| matches!(l, ServerLine::Parted { name, .. } if name == "ann")),
        )
        .await
        .unwrap();
        assert_eq!(x.text().await, "OPERATOR #op bob");
    }
    assert_eq!(
        b.ask("TOPIC #op bob's now").await,
        "TOPIC #op bob bob's now"
    );
    assert_eq!(b.text().await, "OK TOPIC #op");
    assert_eq!(b.ask("PART #op").await, "OK PART #op");
    assert_eq!(c.text().await, "TOPIC #op bob bob's now");
    assert_eq!(c.text().await, "PARTED #op bob");
    assert_eq!(c.text().await, "OPERATOR #op cy");
    assert_eq!(c.ask("PART #op").await, "OK PART #op");
    assert_eq!(c.ask("ROOMS").await, "OK ROOMS 0");
    c.expect_error("WHO #op", NoSuchRoom).await;
    // Joining again creates a fresh room: new operator, no topic.
    assert_eq!(a.ask("JOIN #OP").await, "MEMBER #OP @ann");
    assert_eq!(a.text().await, "OK JOIN #OP 1");
}

#[tokio::test]
async fn a_user_in_three_rooms_disconnects_and_all_three_see_it() {
    let s = TestServer::start().await;
    let (mut a, mut b, mut c) = trio(&s).await;
    for room in ["#one", "#two", "#three"] {
        for x in [&mut a, &mut b] {
            x.say(&format!("JOIN {room}")).await;
            within(x.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
                .await
                .unwrap();
        }
        assert_eq!(a.text().await, format!("JOINED {room} bob"));
    }
    c.say("JOIN #two").await;
    within(c.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
        .await
        .unwrap();
    assert_eq!(a.text().await, "JOINED #two cy");
    assert_eq!(b.text().await, "JOINED #two cy");
    drop(b);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(a.text().await);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "PARTED #one bob disconnected",
            "PARTED #three bob disconnected",
            "PARTED #two bob disconnected"
        ]
    );
    assert_eq!(a.text().await, "OFFLINE bob");
    assert_eq!(c.text().await, "PARTED #two bob disconnected");
    assert_eq!(c.text().await, "OFFLINE bob");
    assert_eq!(a.ask("SAY #two still two").await, "OK SAY #two 1");
}

#[tokio::test]
async fn room_commands_need_registration_and_valid_names() {
    let s = TestServer::start().await;
    let mut u = s.client().await;
    for line in [
        "JOIN #a",
        "PART #a",
        "SAY #a hi",
        "ROOMS",
        "WHO #a",
        "TOPIC #a",
        "KICK #a b",
        "JOIN",
    ] {
        u.expect_error(line, NotRegistered).await;
    }
    let mut a = s.user("ann").await;
    for bad in [
        "rust",
        "#",
        "#a,b",
        "#sp:ace",
        "#é",
        &format!("#{}", "x".repeat(50)),
    ] {
        a.expect_error(&format!("JOIN {bad}"), InvalidRoomName)
            .await;
        a.expect_error(&format!("SAY {bad} hi"), InvalidRoomName)
            .await;
    }
    a.expect_error("JOIN", MissingParameter).await;
    a.expect_error("JOIN #a key extra", TooManyParameters).await;
    a.expect_error("SAY #a", EmptyText).await;
    a.expect_error("WHO", MissingParameter).await;
    a.expect_error("ROOMS all", TooManyParameters).await;
    a.expect_error("PART #nowhere", NoSuchRoom).await;
    assert_eq!(a.ask("JOIN #a").await, "MEMBER #a @ann");
    a.text().await;
    a.expect_error("JOIN #A", AlreadyInRoom).await;
}

#[tokio::test]
async fn room_limits_are_enforced() {
    let s = TestServer::with(Config {
        rooms: RoomLimits {
            per_user: 2,
            members: 2,
            rooms: 3,
            topic_bytes: 10,
            ..RoomLimits::default()
        },
        ..common::test_config()
    })
    .await;
    let (mut a, mut b, mut c) = trio(&s).await;
    for room in ["#1", "#2"] {
        a.say(&format!("JOIN {room}")).await;
        within(a.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
            .await
            .unwrap();
    }
    a.expect_error("JOIN #3", TooManyRooms).await;
    b.say("JOIN #1").await;
    within(b.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
        .await
        .unwrap();
    assert_eq!(a.text().await, "JOINED #1 bob");
    c.expect_error("JOIN #1", RoomFull).await;
    c.say("JOIN #3").await;
    within(c.reader.until(|l| matches!(l, ServerLine::Ok { .. })))
        .await
        .unwrap();
    b.expect_error("JOIN #4", RoomLimit).await;
    // Leaving frees the places again.
    assert_eq!(a.ask("PART #2").await, "OK PART #2");
    assert_eq!(b.ask("JOIN #4").await, "MEMBER #4 @bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_members_receive_one_say_exactly_once() {
    const N: usize = 500;
    let s = TestServer::start().await;
    let mut speaker = s.user("speaker").await;
    assert_eq!(speaker.ask("JOIN #big").await, "MEMBER #big @speaker");
    assert_eq!(speaker.text().await, "OK JOIN #big 1");
    let mut members = Vec::new();
    for i in 0..N {
        let mut c = s.client().await;
        c.say(&format!("REGISTER m{i}")).await;
        c.say("JOIN #big").await;
        members.push(c);
    }
    // Everyone is in once the speaker has heard every JOINED.
    let mut joined = 0;
    while joined < N {
        if let ServerLine::Joined { .. } = speaker.line().await {
            joined += 1;
        }
    }
    let mut outsider = s.user("outsider").await;
    assert_eq!(speaker.text().await, "ONLINE outsider");
    assert_eq!(
        speaker.ask("SAY #BIG hello room").await,
        format!("OK SAY #big {N}")
    );
    let mut set = JoinSet::new();
    for mut c in members {
        set.spawn(async move {
            let (_, skipped) = within(c.reader.until(|l| matches!(l, ServerLine::Say { .. })))
                .await
                .unwrap();
            assert!(skipped.iter().all(|l| !matches!(l, ServerLine::Say { .. })));
            c.expect_quiet_after_events().await;
            c
        });
    }
    let mut keep = Vec::new();
    while let Some(c) = set.join_next().await {
        keep.push(c.unwrap());
    }
    assert_eq!(keep.len(), N);
    outsider.expect_quiet().await;
}

#[tokio::test]
async fn a_room_an_account_operates_stays_while_empty_and_across_a_restart() {
    use common::{account_holder, answer, on_sqlite};
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::with(on_sqlite(&dir)).await;
    let mut alice = account_holder(&s, "alice").await;
    let mut guest = s.user("guest").await;
    assert_eq!(answer(&mut alice, "JOIN #Kept").await, "OK JOIN #Kept 1");
    assert_eq!(
        answer(&mut alice, "TOPIC #Kept what stays").await,
        "OK TOPIC #Kept"
    );
    assert_eq!(answer(&mut alice, "PART #Kept").await, "OK PART #Kept");
    // A guest's room goes with its last member, as ever.
    assert_eq!(answer(&mut guest, "JOIN #temp").await, "OK JOIN #temp 1");
    assert_eq!(answer(&mut guest, "PART #temp").await, "OK PART #temp");
    assert_eq!(guest.ask("ROOMS").await, "ROOM #Kept 0 what stays");
    assert_eq!(guest.text().await, "OK ROOMS 1");
    // Its operators are its accounts: a guest who comes first is no operator.
    assert_eq!(guest.ask("JOIN #kept").await, "MEMBER #Kept guest");
    assert_eq!(guest.text().await, "TOPIC #Kept alice what stays");
    assert_eq!(guest.text().await, "OK JOIN #Kept 1");
    guest
        .expect_error("TOPIC #kept mine now", NotOperator)
        .await;
    // ... and nobody takes over when they leave.
    assert_eq!(answer(&mut guest, "PART #kept").await, "OK PART #Kept");
    assert_eq!(answer(&mut guest, "JOIN #kept").await, "OK JOIN #Kept 1");
    guest
        .expect_error("TOPIC #kept mine now", NotOperator)
        .await;
    assert_eq!(answer(&mut alice, "JOIN #kept").await, "OK JOIN #Kept 2");
    assert_eq!(guest.text().await, "JOINED #Kept alice");
    assert_eq!(guest.ask("WHO #kept").await, "MEMBER #Kept @alice");

    // A restart: the room is there, empty, with its topic and its operator.
    s.stop().await;
    let s = TestServer::with(on_sqlite(&dir)).await;
    let mut c = s.user("carol").await;
    assert_eq!(c.ask("ROOMS").await, "ROOM #Kept 0 what stays");
    assert_eq!(c.text().await, "OK ROOMS 1");
    assert_eq!(answer(&mut c, "JOIN #kept").await, "OK JOIN #Kept 1");
    let mut alice = s.client().await;
    assert_eq!(
        answer(&mut alice, &format!("LOGIN alice {}", common::PW)).await,
        "OK LOGIN alice"
    );
    assert_eq!(answer(&mut alice, "JOIN #kept").await, "OK JOIN #Kept 2");
    assert_eq!(
        answer(&mut alice, "TOPIC #kept changed").await,
        "OK TOPIC #Kept"
    );

    // Without an account to operate it, the room no longer stays.
    assert_eq!(
        answer(&mut alice, &format!("ACCOUNT DELETE {}", common::PW)).await,
        "OK ACCOUNT DELETE alice"
    );
    assert_eq!(answer(&mut alice, "PART #kept").await, "OK PART #Kept");
    assert_eq!(answer(&mut c, "PART #kept").await, "OK PART #Kept");
    assert_eq!(c.ask("ROOMS").await, "OK ROOMS 0");
}
