//! Multi-line messages over real sockets: `MULTILINE ON` natives send and read escaped texts,
//! every other native (the lab's clients, `nc`) reads one event line per line; the same in
//! HISTORY and SEARCH; IRC's `draft/multiline` both ways, and one PRIVMSG per line for IRC
//! clients without it.

mod common;

use common::irc::Irc;
use common::{ClientExt, TestServer, answer, on_sqlite, within};
use natter_conn::Client;
use natter_proto::ErrorCode::*;
use natter_server::throttle::FloodLimits;
use std::time::{Duration, Instant};

/// A three-line code block, as typed.
const CODE: &str = "fn main() {\n    println!(\"hi\");\n}";
/// The same on the wire from and to a `MULTILINE ON` client.
const CODE_WIRE: &str = "fn main() {\\n    println!(\"hi\");\\n}";
/// Its lines.
const CODE_LINES: [&str; 3] = ["fn main() {", "    println!(\"hi\");", "}"];

/// A registered user that said `MULTILINE ON` before registering.
async fn multiline_user(s: &TestServer, name: &str) -> Client {
    let mut c = s.client().await;
    assert_eq!(c.ask("MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(
        c.ask(&format!("REGISTER {name}")).await,
        format!("OK REGISTER {name}")
    );
    c
}

/// Reads past presence and room events to the next line that starts with `prefix`.
async fn next_starting(c: &mut Client, prefix: &str) -> String {
    loop {
        let l = c.text().await;
        if l.starts_with(prefix) {
            return l;
        }
    }
}

/// Three users in `#r`: `ann` and `bob` said `MULTILINE ON`, `lab` did not (as `nc`).
async fn three(s: &TestServer) -> (Client, Client, Client) {
    let mut ann = multiline_user(s, "ann").await;
    let mut bob = multiline_user(s, "bob").await;
    let mut lab = s.user("lab").await;
    for c in [&mut ann, &mut bob, &mut lab] {
        assert!(answer(c, "JOIN #r").await.starts_with("OK JOIN #r"));
    }
    for c in [&mut ann, &mut bob] {
        while c.text().await != "JOINED #r lab" {}
    }
    (ann, bob, lab)
}

#[tokio::test]
async fn a_code_block_arrives_escaped_or_line_by_line_for_message_say_and_dm() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut lab) = three(&s).await;
    for (send, to_bob, to_lab) in [
        (
            format!("MESSAGE {CODE_WIRE}"),
            "MESSAGE ann ",
            "MESSAGE ann ",
        ),
        (format!("SAY #r {CODE_WIRE}"), "SAY #r ann ", "SAY #r ann "),
        (format!("DM bob {CODE_WIRE}"), "DM ann ", ""),
        (format!("DM lab {CODE_WIRE}"), "", "DM ann "),
    ] {
        let ok = ann.ask(&send).await;
        assert!(ok.starts_with("OK "), "{send}: {ok}");
        if !to_bob.is_empty() {
            assert_eq!(bob.text().await, format!("{to_bob}{CODE_WIRE}"));
        }
        if !to_lab.is_empty() {
            for line in CODE_LINES {
                assert_eq!(lab.text().await, format!("{to_lab}{line}"));
            }
        }
    }
    bob.expect_quiet().await;
    lab.expect_quiet().await;
    ann.expect_quiet().await;
}

#[tokio::test]
async fn tagged_plain_readers_get_each_line_with_the_message_tags() {
    let s = TestServer::start().await;
    let mut ann = multiline_user(&s, "ann").await;
    let mut tim = s.user("tim").await;
    assert_eq!(answer(&mut tim, "TAGS ON").await, "OK TAGS ON");
    let mut esc = s.client().await;
    assert_eq!(esc.ask("TAGS ON").await, "OK TAGS ON");
    assert_eq!(esc.ask("MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(esc.ask("REGISTER esc").await, "OK REGISTER esc");
    next_starting(&mut ann, "ONLINE esc").await;
    next_starting(&mut tim, "@").await;

    assert_eq!(
        ann.ask(&format!("MESSAGE {CODE_WIRE}")).await,
        "OK MESSAGE 2"
    );
    let mut ids = Vec::new();
    for line in CODE_LINES {
        let got = tim.text().await;
        let (tags, rest) = got.split_once(' ').unwrap();
        assert_eq!(rest, format!("MESSAGE ann {line}"));
        ids.push(
            tags.split(';')
                .find(|t| t.starts_with("id="))
                .unwrap()
                .to_owned(),
        );
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let got = esc.text().await;
    assert!(got.ends_with(&format!(" MESSAGE ann {CODE_WIRE}")), "{got}");
    assert!(got.contains(&format!(";{}", ids[0])), "{got} {ids:?}");
}

#[tokio::test]
async fn backslashes_mean_what_they_say_either_way() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut lab) = three(&s).await;
    // Lenient: a backslash before anything but n or another backslash is itself.
    assert!(
        ann.ask("SAY #r C:\\dir\\x and \\\\n end\\")
            .await
            .starts_with("OK SAY")
    );
    assert_eq!(
        bob.text().await,
        "SAY #r ann C:\\\\dir\\\\x and \\\\n end\\\\"
    );
    assert_eq!(lab.text().await, "SAY #r ann C:\\dir\\x and \\n end\\");
    // A plain client's backslash-n is two characters, and reaches everyone as such.
    assert!(lab.ask("SAY #r a\\nb").await.starts_with("OK SAY"));
    assert_eq!(ann.text().await, "SAY #r lab a\\\\nb");
    assert_eq!(bob.text().await, "SAY #r lab a\\\\nb");
    // MULTILINE OFF: back to literal texts, both ways.
    assert_eq!(answer(&mut bob, "MULTILINE OFF").await, "OK MULTILINE OFF");
    assert!(bob.ask("SAY #r x\\ny").await.starts_with("OK SAY"));
    assert_eq!(ann.text().await, "SAY #r bob x\\\\ny");
    assert!(ann.ask("SAY #r p\\nq").await.starts_with("OK SAY"));
    assert_eq!(bob.text().await, "SAY #r ann p");
    assert_eq!(bob.text().await, "SAY #r ann q");
}

#[tokio::test]
async fn line_rules_and_errors() {
    let s = TestServer::start().await;
    let (mut ann, mut bob, mut lab) = three(&s).await;
    ann.expect_error("MULTILINE maybe", BadParameter).await;
    ann.expect_error("MULTILINE", MissingParameter).await;
    let most = vec!["x"; 100].join("\\n");
    let over = vec!["x"; 101].join("\\n");
    ann.expect_error(&format!("SAY #r {over}"), TooManyLines)
        .await;
    ann.expect_error(&format!("MESSAGE {over}"), TooManyLines)
        .await;
    ann.expect_error(&format!("DM bob {over}"), TooManyLines)
        .await;
    ann.expect_error("SAY #r \\n  \\n", EmptyText).await;
    ann.expect_error("SAY #r a\\n\u{202E}b", BadText).await;
    assert!(
        ann.ask(&format!("SAY #r {most}"))
            .await
            .starts_with("OK SAY")
    );
    assert_eq!(bob.text().await, format!("SAY #r ann {most}"));
    for _ in 0..100 {
        assert_eq!(lab.text().await, "SAY #r ann x");
    }
    // Blank lines at the ends go, runs inside become one; a single line is a plain message.
    assert!(
        ann.ask("SAY #r \\n\\na\\n\\n\\n\\nb\\n")
            .await
            .starts_with("OK SAY")
    );
    assert_eq!(bob.text().await, "SAY #r ann a\\n\\nb");
    assert_eq!(lab.text().await, "SAY #r ann a");
    assert_eq!(lab.text().await, "SAY #r ann b");
    assert!(ann.ask("SAY #r \\nalone\\n").await.starts_with("OK SAY"));
    assert_eq!(bob.text().await, "SAY #r ann alone");
    assert_eq!(lab.text().await, "SAY #r ann alone");
    // Errors come in order with the messages around them.
    ann.writer.queue("MESSAGE one");
    ann.writer.queue(&format!("MESSAGE {over}"));
    ann.writer.queue("MESSAGE two");
    within(ann.writer.flush()).await.unwrap();
    assert_eq!(ann.text().await, "OK MESSAGE 2");
    assert!(ann.text().await.starts_with("ERROR TOO_MANY_LINES "));
    assert_eq!(ann.text().await, "OK MESSAGE 2");
    assert_eq!(bob.text().await, "MESSAGE ann one");
    assert_eq!(bob.text().await, "MESSAGE ann two");
    bob.expect_quiet().await;
}

#[tokio::test]
async fn history_and_search_show_one_message_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(on_sqlite(&dir)).await;
    let (mut ann, mut bob, mut lab) = three(&s).await;
    assert!(
        ann.ask(&format!("SAY #r {CODE_WIRE}"))
            .await
            .starts_with("OK SAY")
    );
    assert_eq!(bob.text().await, format!("SAY #r ann {CODE_WIRE}"));
    for line in CODE_LINES {
        assert_eq!(lab.text().await, format!("SAY #r ann {line}"));
    }
    // Kept once, with its lines: bob reads one LOGGED line, lab one per line, of one id. A
    // page of the log counts messages, whatever their lines.
    for (c, search) in [
        (&mut bob, "SEARCH println IN #r"),
        (&mut lab, "SEARCH println"),
    ] {
        c.say("HISTORY #r").await;
        let first = next_starting(c, "LOGGED ").await;
        let mut logged = vec![first];
        loop {
            let l = c.text().await;
            if l.starts_with("OK ") {
                assert_eq!(l, "OK HISTORY #r 1");
                break;
            }
            logged.push(l);
        }
        c.say(search).await;
        let mut found = Vec::new();
        loop {
            let l = c.text().await;
            if l.starts_with("OK ") {
                assert_eq!(l, "OK SEARCH 1");
                break;
            }
            found.push(l);
        }
        assert_eq!(found, logged);
        let parts: Vec<Vec<&str>> = logged.iter().map(|l| l.splitn(6, ' ').collect()).collect();
        let texts: Vec<&str> = parts.iter().map(|p| p[5]).collect();
        assert!(
            parts
                .iter()
                .all(|p| p[1] == "#r" && p[2] == parts[0][2] && p[4] == "ann")
        );
        if search.contains(" IN ") {
            assert_eq!(texts, [CODE_WIRE]);
        } else {
            assert_eq!(texts, CODE_LINES);
        }
    }
    ann.expect_quiet().await;
}

#[tokio::test]
async fn a_multi_line_message_counts_as_many_commands_as_it_has_lines() {
    let mut config = common::test_config();
    config.policy.flood = Some(FloodLimits {
        commands_per_sec: 20.0,
        command_burst: 8.0,
        grace: Duration::from_secs(60),
        ..FloodLimits::default()
    });
    let s = TestServer::with(config).await;
    let mut ann = multiline_user(&s, "ann").await;
    let mut lab = s.user("lab").await;
    next_starting(&mut ann, "ONLINE lab").await;
    // 40 lines in one command: about 35 tokens in debt, which come back at 20 a second.
    let block = vec!["line"; 40].join("\\n");
    let t0 = Instant::now();
    ann.writer.queue(&format!("MESSAGE {block}"));
    ann.writer.queue("MESSAGE after");
    within(ann.writer.flush()).await.unwrap();
    assert_eq!(ann.text().await, "OK MESSAGE 1");
    assert_eq!(ann.text().await, "OK MESSAGE 1");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1200),
        "the next line waited only {took:?}"
    );
    for _ in 0..40 {
        assert_eq!(lab.text().await, "MESSAGE ann line");
    }
    assert_eq!(lab.text().await, "MESSAGE ann after");
}

/// An IRC user with `caps`, out of the everyone channel, in `#r`.
async fn irc_in_r(s: &TestServer, nick: &str, caps: &str) -> Irc {
    let mut c = if caps.is_empty() {
        Irc::user(s.addr, nick).await
    } else {
        Irc::with_caps(s.addr, nick, caps).await
    };
    c.part_everyone().await;
    c.join("#r").await;
    c
}

/// The text of a PRIVMSG line.
fn privmsg_text(line: &str) -> &str {
    let (_, rest) = line.split_once(" PRIVMSG ").unwrap();
    let (_, text) = rest.split_once(' ').unwrap();
    text.strip_prefix(':').unwrap_or(text)
}

/// Reads a `draft/multiline` batch: its opening line, then the lines in it (tags and all)
/// up to its end, which must close it.
async fn read_batch(c: &mut Irc) -> (String, Vec<String>) {
    let open = c.skip_to(" BATCH +").await;
    let reference = open
        .split(" BATCH +")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(open.ends_with(" draft/multiline #r"), "{open}");
    let mut lines = Vec::new();
    loop {
        let l = c.line().await;
        if l.ends_with(&format!(" BATCH -{reference}")) {
            return (open, lines);
        }
        assert!(l.contains(&format!("batch={reference}")), "{l}");
        lines.push(l);
    }
}

#[tokio::test]
async fn an_irc_multiline_batch_is_one_message_and_goes_out_as_one_batch_or_line_by_line() {
    let s = TestServer::start().await;
    let (mut ann, _bob, mut lab) = three(&s).await;
    let mut ike = irc_in_r(&s, "ike", "batch draft/multiline echo-message server-time").await;
    let mut neo = irc_in_r(&s, "neo", "batch draft/multiline").await;
    let mut old = irc_in_r(&s, "old", "").await;
    ike.skip_to(" JOIN #r").await;
    ike.skip_to(" JOIN #r").await;
    neo.skip_to(" JOIN #r").await;
    for c in [&mut ann, &mut lab] {
        next_starting(c, "JOINED #r old").await;
    }

    ike.send("BATCH +b1 draft/multiline #r").await;
    for line in CODE_LINES {
        ike.send(&format!("@batch=b1 PRIVMSG #r :{line}")).await;
    }
    // A line too long for IRC, sent in two pieces joined again.
    ike.send("@batch=b1 PRIVMSG #r hello").await;
    ike.send("@batch=b1;draft/multiline-concat PRIVMSG #r : world")
        .await;
    ike.send("BATCH -b1").await;
    let whole = format!("{CODE}\nhello world");
    let escaped = natter_proto::multiline::escape(&whole).into_owned();
    assert_eq!(ann.text().await, format!("SAY #r ike {escaped}"));
    for line in CODE_LINES.iter().chain(&["hello world"]) {
        assert_eq!(lab.text().await, format!("SAY #r ike {line}"));
        let got = old.line().await;
        assert!(got.starts_with(":ike!ike@natter PRIVMSG #r "), "{got}");
        assert_eq!(privmsg_text(&got), *line);
    }
    let (open, lines) = read_batch(&mut neo).await;
    assert!(open.starts_with(":ike!ike@natter BATCH +"), "{open}");
    let texts: Vec<&str> = lines.iter().map(|l| privmsg_text(l)).collect();
    assert_eq!(
        texts,
        ["fn main() {", "    println!(\"hi\");", "}", "hello world"]
    );
    // echo-message: the sender gets its message back as the batch it sent, with its time.
    let (open, lines) = read_batch(&mut ike).await;
    assert!(open.starts_with("@time="), "{open}");
    assert_eq!(lines.len(), 4);
    old.quiet().await;
    neo.quiet().await;
    ike.quiet().await;
}

#[tokio::test]
async fn a_labeled_multiline_batch_is_answered_by_its_echo_with_the_label_on_it() {
    let s = TestServer::start().await;
    let caps = "batch draft/multiline labeled-response message-tags";
    let mut ike = irc_in_r(&s, "ike", &format!("{caps} echo-message")).await;
    let mut jo = irc_in_r(&s, "jo", caps).await;
    ike.skip_to(":jo!jo@natter JOIN #r").await;

    ike.send("@label=L1 BATCH +b1 draft/multiline #r").await;
    ike.send("@batch=b1 PRIVMSG #r :one").await;
    ike.send("@batch=b1 PRIVMSG #r :two").await;
    // Nothing answers the opening: the message is the answer.
    ike.quiet().await;
    ike.send("BATCH -b1").await;
    let open = ike.line().await;
    assert!(open.starts_with("@label=L1;msgid="), "{open}");
    assert!(open.ends_with(" draft/multiline #r"), "{open}");
    let reference = open
        .rsplit(" BATCH +")
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    for text in ["one", "two"] {
        let l = ike.line().await;
        assert!(l.starts_with(&format!("@batch={reference} ")), "{l}");
        assert_eq!(privmsg_text(&l), text);
    }
    assert!(ike.line().await.ends_with(&format!(" BATCH -{reference}")));
    ike.quiet().await;
    let (open, _) = read_batch(&mut jo).await;
    assert!(!open.contains("label="), "{open}");

    // Without echo-message, the end of the batch is answered ACK, labeled.
    jo.send("@label=L2 BATCH +b2 draft/multiline #r").await;
    jo.send("@batch=b2 PRIVMSG #r :three").await;
    jo.send("@batch=b2 PRIVMSG #r :four").await;
    jo.send("BATCH -b2").await;
    assert_eq!(jo.line().await, "@label=L2 :natter ACK");
    jo.quiet().await;
    read_batch(&mut ike).await;
    ike.quiet().await;
}

#[tokio::test]
async fn a_native_multi_line_message_reaches_irc_as_a_batch_or_one_privmsg_per_line() {
    let s = TestServer::start().await;
    let (mut ann, _bob, _lab) = three(&s).await;
    let mut neo = irc_in_r(&s, "neo", "batch draft/multiline").await;
    // Without batch, draft/multiline alone cannot be shown as a batch.
    let mut half = irc_in_r(&s, "half", "draft/multiline").await;
    let mut old = irc_in_r(&s, "old", "").await;
    neo.skip_to(" JOIN #r").await;
    neo.skip_to(" JOIN #r").await;
    half.skip_to(" JOIN #r").await;
    next_starting(&mut ann, "JOINED #r old").await;

    let long = "y".repeat(700);
    assert!(
        ann.ask(&format!("SAY #r one\\n\\n{long}"))
            .await
            .starts_with("OK SAY")
    );
    let (_, lines) = read_batch(&mut neo).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].ends_with(" PRIVMSG #r one"), "{}", lines[0]);
    // The blank line inside is kept, as an empty PRIVMSG.
    assert!(lines[1].ends_with(" PRIVMSG #r :"), "{}", lines[1]);
    assert!(!lines[2].contains("draft/multiline-concat"));
    assert!(
        lines[3].starts_with("@draft/multiline-concat;batch="),
        "{}",
        lines[3]
    );
    let joined: String = lines[2..].iter().map(|l| privmsg_text(l)).collect();
    assert_eq!(joined, long);
    for c in [&mut half, &mut old] {
        assert_eq!(c.line().await, ":ann!ann@natter PRIVMSG #r one");
        let mut rest = String::new();
        while rest.len() < long.len() {
            let l = c.line().await;
            rest.push_str(privmsg_text(&l));
        }
        assert_eq!(rest, long);
        c.quiet().await;
    }
    // DMs too.
    assert!(ann.ask("DM neo a\\nb").await.starts_with("OK DM"));
    let open = neo.skip_to(" BATCH +").await;
    assert!(open.ends_with(" draft/multiline neo"), "{open}");
    assert!(neo.line().await.ends_with(" PRIVMSG neo a"));
    assert!(neo.line().await.ends_with(" PRIVMSG neo b"));
    assert!(neo.line().await.contains(" BATCH -"));
}

#[tokio::test]
async fn bad_irc_batches_fail_and_deliver_nothing() {
    let s = TestServer::start().await;
    let (mut ann, _bob, _lab) = three(&s).await;
    let mut ike = irc_in_r(&s, "ike", "batch draft/multiline").await;
    let mut old = irc_in_r(&s, "old", "batch").await;
    next_starting(&mut ann, "JOINED #r old").await;
    ike.skip_to(" JOIN #r").await;

    // Too many lines; the rest of the batch is dropped with it.
    ike.send("BATCH +a draft/multiline #r").await;
    for i in 0..=100 {
        ike.send(&format!("@batch=a PRIVMSG #r :line {i}")).await;
    }
    assert!(
        ike.line()
            .await
            .ends_with(" FAIL BATCH MULTILINE_MAX_LINES 100 :Multiline batch max-lines exceeded")
    );
    ike.send("@batch=a PRIVMSG #r :more").await;
    ike.send("BATCH -a").await;
    ike.quiet().await;
    // Too many bytes.
    ike.send("BATCH +b draft/multiline #r").await;
    for _ in 0..10 {
        ike.send(&format!("@batch=b PRIVMSG #r :{}", "z".repeat(450)))
            .await;
    }
    assert!(
        ike.line()
            .await
            .contains(" FAIL BATCH MULTILINE_MAX_BYTES 4096 ")
    );
    ike.send("BATCH -b").await;
    // A line to another target.
    ike.send("BATCH +c draft/multiline #r").await;
    ike.send("@batch=c PRIVMSG old :hi").await;
    assert!(
        ike.line()
            .await
            .contains(" FAIL BATCH MULTILINE_INVALID_TARGET #r ")
    );
    ike.send("BATCH -c").await;
    // Blank lines only; a concat first; a bad target at the start.
    ike.send("BATCH +d draft/multiline #r").await;
    ike.send("@batch=d PRIVMSG #r :").await;
    ike.send("@batch=d PRIVMSG #r :  ").await;
    ike.send("BATCH -d").await;
    // The code alone, without a context, as draft/multiline writes it.
    let fail = ike.line().await;
    assert!(fail.contains(" FAIL BATCH MULTILINE_INVALID :"), "{fail}");
    // Another batch's line inside an open one: neither goes.
    ike.send("BATCH +d2 draft/multiline #r").await;
    ike.send("@batch=d2 PRIVMSG #r :mine").await;
    ike.send("@batch=zz PRIVMSG #r :theirs").await;
    let fail = ike.line().await;
    assert!(
        fail.contains(" FAIL BATCH MULTILINE_INVALID :A line of another batch"),
        "{fail}"
    );
    ike.send("@batch=d2 PRIVMSG #r :more").await;
    ike.send("BATCH -d2").await;
    ike.send("BATCH +e draft/multiline #r").await;
    ike.send("@batch=e;draft/multiline-concat PRIVMSG #r :x")
        .await;
    assert!(ike.line().await.contains(" FAIL BATCH MULTILINE_INVALID "));
    ike.send("BATCH -e").await;
    ike.send("BATCH +f draft/multiline a,b").await;
    assert!(
        ike.line()
            .await
            .contains(" FAIL BATCH MULTILINE_INVALID_TARGET ")
    );
    // Without the capability, no batch opens, and its lines go nowhere.
    old.send("BATCH +g draft/multiline #r").await;
    assert!(old.line().await.contains(" FAIL BATCH MULTILINE_INVALID "));
    old.send("@batch=g PRIVMSG #r :lost").await;
    old.send("BATCH -g").await;
    old.quiet().await;
    // A batch that never ends is dropped with its connection.
    ike.send("BATCH +h draft/multiline #r").await;
    ike.send("@batch=h PRIVMSG #r :never").await;
    ike.send("QUIT :bye").await;
    next_starting(&mut ann, "OFFLINE ike").await;
    // Nothing of any of them reached anyone.
    ann.expect_quiet().await;
}

#[tokio::test]
async fn irc_history_gives_a_privmsg_per_line_with_one_msgid() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::with(on_sqlite(&dir)).await;
    let mut ann = multiline_user(&s, "ann").await;
    assert!(answer(&mut ann, "JOIN #r").await.starts_with("OK JOIN #r"));
    assert!(
        ann.ask(&format!("SAY #r {CODE_WIRE}"))
            .await
            .starts_with("OK SAY")
    );

    // Replayed on JOIN, each line with the time before it.
    let mut late = Irc::user(s.addr, "late").await;
    late.send("JOIN #r").await;
    late.skip_to(" 366 ").await;
    for line in CODE_LINES {
        let got = late.line().await;
        let text = privmsg_text(&got);
        assert!(
            text.starts_with('[') && text.ends_with(&format!(" UTC] {line}")),
            "{got}"
        );
    }
    // CHATHISTORY: in its batch, one PRIVMSG per line, the first with the message's msgid
    // (a client that drops what it has seen by msgid keeps the others).
    let mut ch = irc_in_r(&s, "ch", "batch message-tags draft/chathistory").await;
    ch.send("CHATHISTORY LATEST #r * 10").await;
    ch.skip_to(" BATCH +history chathistory #r").await;
    let mut ids = Vec::new();
    for line in CODE_LINES {
        let got = ch.line().await;
        assert_eq!(privmsg_text(&got), line, "{got}");
        let tags = got.split(' ').next().unwrap();
        ids.push(tags.split(';').find(|t| t.starts_with("msgid=")).is_some());
    }
    assert!(ids[0], "{ids:?}");
    assert!(ids[1..].iter().all(|has| !has), "{ids:?}");
    assert!(ch.line().await.ends_with(" BATCH -history"));
}

#[tokio::test]
async fn the_senders_other_connections_see_sent_in_their_own_form() {
    let s = TestServer::start().await;
    let mut plain = common::account_holder(&s, "ann").await;
    let mut esc = s.client().await;
    assert_eq!(esc.ask("MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(
        answer(&mut esc, &format!("LOGIN ann {}", common::PW)).await,
        "OK LOGIN ann"
    );
    let mut bob = multiline_user(&s, "bob").await;
    next_starting(&mut plain, "ONLINE bob").await;
    next_starting(&mut esc, "ONLINE bob").await;

    assert_eq!(esc.ask(&format!("DM bob {CODE_WIRE}")).await, "OK DM bob");
    assert_eq!(bob.text().await, format!("DM ann {CODE_WIRE}"));
    for line in CODE_LINES {
        assert_eq!(plain.text().await, format!("SENT bob {line}"));
    }
    assert_eq!(answer(&mut plain, "MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(esc.ask("DM bob a\\\\b\\nc").await, "OK DM bob");
    assert_eq!(plain.text().await, "SENT bob a\\\\b\\nc");
    assert_eq!(bob.text().await, "DM ann a\\\\b\\nc");
}
