//! Many clients at once: fan-out exactly once, per-sender order, and slow consumers.

mod common;

use common::{ClientExt, TestServer, within};
use natter_conn::{Client, LineReader};
use natter_proto::ServerLine;
use natter_server::Config;
use std::collections::HashMap;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_reaches_999_others_exactly_once() {
    const N: usize = 1000;
    let s = TestServer::start().await;
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = s.client().await;
        c.say(&format!("REGISTER u{i}")).await;
        clients.push(c);
    }
    let mut set = JoinSet::new();
    let mut sender = None;
    for (i, mut c) in clients.into_iter().enumerate() {
        if i == 0 {
            // Registrations race each other; everyone is in once u0 has heard of all the rest.
            let mut online = 0;
            while online < N - 1 {
                if let ServerLine::Online { .. } = c.line().await {
                    online += 1;
                }
            }
            sender = Some(c);
            continue;
        }
        set.spawn(async move {
            let (_, skipped) = within(c.reader.until(|l| matches!(l, ServerLine::Message { .. })))
                .await
                .unwrap();
            assert!(
                skipped
                    .iter()
                    .all(|l| !matches!(l, ServerLine::Message { .. }))
            );
            c
        });
    }
    let mut sender = sender.unwrap();
    assert_eq!(
        sender.ask("MESSAGE to all").await,
        format!("OK MESSAGE {}", N - 1)
    );
    let mut received = 0;
    let mut done = Vec::new();
    while let Some(c) = set.join_next().await {
        received += 1;
        done.push(c.unwrap());
    }
    assert_eq!(received, N - 1);
    // Exactly once: after the one MESSAGE, the next thing each client sees is its own answer.
    let mut set = JoinSet::new();
    for mut c in done {
        set.spawn(async move {
            c.expect_quiet().await;
            c
        });
    }
    // Kept open until every client has checked: a closing one would be announced to the rest.
    let mut keep = Vec::new();
    while let Some(r) = set.join_next().await {
        keep.push(r.unwrap());
    }
}

/// Reads `MESSAGE` lines until `total` have arrived; returns them by sender, in arrival order.
async fn collect(mut r: LineReader, total: usize) -> HashMap<String, Vec<u32>> {
    let mut by_sender: HashMap<String, Vec<u32>> = HashMap::new();
    let mut n = 0;
    while n < total {
        match within(r.next_line()).await.unwrap().expect("closed") {
            ServerLine::Message { from, text } => {
                let seq = text.split(' ').nth(1).unwrap().parse().unwrap();
                by_sender.entry(from.into_owned()).or_default().push(seq);
                n += 1;
            }
            ServerLine::Online { .. } | ServerLine::Ok { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    by_sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_order_holds_under_concurrent_senders() {
    const CLIENTS: usize = 40;
    const SENDERS: usize = 8;
    const EACH: u32 = 300;
    let s = TestServer::start().await;
    let mut readers = JoinSet::new();
    let mut writers = Vec::new();
    let mut first = None;
    for i in 0..CLIENTS {
        let c = s.user(&format!("c{i}")).await;
        let (r, w) = c.split();
        if i == 0 {
            first = Some(r);
        } else {
            let expected = if i < SENDERS { SENDERS - 1 } else { SENDERS } * EACH as usize;
            readers.spawn(collect(r, expected));
        }
        writers.push(w);
    }
    // c0 is a sender too; its reader first drains the registrations so the count is right.
    readers.spawn(collect(first.unwrap(), (SENDERS - 1) * EACH as usize));
    let mut senders = JoinSet::new();
    // Writers must stay open to the end: closing one ends that client's session.
    let _idle: Vec<_> = writers.split_off(SENDERS);
    for (i, mut w) in writers.into_iter().enumerate() {
        senders.spawn(async move {
            for seq in 0..EACH {
                // Batches of lines in one write, so lines race inside the server too.
                w.queue(&format!(
                    "MESSAGE c{i} {seq} {}",
                    "x".repeat(seq as usize % 50)
                ));
                if seq % 10 == 9 {
                    w.flush().await.unwrap();
                }
            }
            w.flush().await.unwrap();
            w
        });
    }
    let mut keep = Vec::new();
    while let Some(w) = senders.join_next().await {
        keep.push(w.unwrap());
    }
    while let Some(got) = readers.join_next().await {
        let got = got.unwrap();
        for (from, seqs) in got {
            assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "from {from}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_nobody_else_loses_anything() {
    const READERS: usize = 3;
    const EACH: u32 = 5000;
    /// Messages the flooder may be ahead of the slowest reader: 16 x 2 KB stays well inside
    /// the readers' 64 KiB outboxes, while the sloth, who reads nothing, passes its own.
    const WINDOW: u32 = 16;
    let s = TestServer::with(Config {
        outbox_bytes: 64 * 1024,
        ..common::test_config()
    })
    .await;

    // The sloth registers, then never reads again; a tiny receive buffer keeps the kernel
    // from absorbing the flood on its behalf.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(s.addr).await.unwrap();
    let (sr, sw) = stream.into_split();
    let mut sloth = Client {
        reader: LineReader::new(sr),
        writer: natter_conn::LineWriter::new(sw),
    };
    sloth.say("").await;
    assert!(sloth.text().await.starts_with("HELLO"));
    assert_eq!(sloth.ask("REGISTER sloth").await, "OK REGISTER sloth");

    let mut readers = JoinSet::new();
    let mut progress = Vec::new();
    for i in 0..READERS {
        let c = s.user(&format!("r{i}")).await;
        let (mut r, w) = c.split();
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        progress.push(rx);
        readers.spawn(async move {
            let _w = w;
            let mut next = 0u32;
            let mut sloth_left = false;
            while next < EACH {
                match within(r.next_line()).await.unwrap().expect("closed") {
                    ServerLine::Message { text, .. } => {
                        let seq: u32 = text.split(' ').next().unwrap().parse().unwrap();
                        assert_eq!(seq, next, "lost or reordered");
                        next += 1;
                        let _ = tx.send(next);
                    }
                    ServerLine::Offline { name, .. } if name == "sloth" => sloth_left = true,
                    _ => {}
                }
            }
            if !sloth_left {
                within(
                    r.until(|l| matches!(l, ServerLine::Offline { name, .. } if name == "sloth")),
                )
                .await
                .unwrap();
            }
        });
    }
    let flooder = s.user("flood").await;
    let (mut fr, mut fw) = flooder.split();
    let payload = "p".repeat(2000);
    let send = async {
        for seq in 0..EACH {
            for rx in &mut progress {
                within(rx.wait_for(|&got| got + WINDOW > seq))
                    .await
                    .unwrap();
            }
            fw.send(&format!("MESSAGE {seq} {payload}")).await.unwrap();
        }
    };
    let read_acks = async {
        let mut acks = 0;
        while acks < EACH {
            if let ServerLine::Ok { .. } = within(fr.next_line()).await.unwrap().unwrap() {
                acks += 1;
            }
        }
    };
    tokio::join!(send, read_acks);
    while let Some(r) = readers.join_next().await {
        r.unwrap();
    }
    // The server closed the sloth's connection: reading it to the end terminates, short of
    // the whole flood.
    let mut lines = 0usize;
    while let Ok(Some(_)) = within(sloth.reader.next_raw()).await {
        lines += 1;
    }
    assert!(lines < EACH as usize, "the sloth got everything: {lines}");
}

/// What one client of a crowd heard: the ONLINEs before its LIST's answer, and the LIST.
struct Heard {
    name: String,
    online: Vec<String>,
    listed: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_arriving_at_once_hears_of_each_arrival_exactly_once() {
    // The server gathers arrivals and announces them together; whatever the gathering, of
    // any two users exactly the earlier one hears of the later, once, before any answer.
    const N: usize = 300;
    let s = TestServer::start().await;
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(s.client().await);
    }
    let mut set = JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        set.spawn(async move {
            let name = format!("c{i}");
            c.say(&format!("REGISTER {name}")).await;
            // Nobody hears of others before its own registration.
            assert_eq!(c.text().await, format!("OK REGISTER {name}"));
            (name, c)
        });
    }
    let mut registered = Vec::with_capacity(N);
    while let Some(c) = set.join_next().await {
        registered.push(c.unwrap());
    }
    let mut set = JoinSet::new();
    for (name, mut c) in registered {
        set.spawn(async move {
            c.say("LIST").await;
            let (mut online, mut listed) = (Vec::new(), Vec::new());
            loop {
                match c.line().await {
                    ServerLine::Online { name } => {
                        assert!(listed.is_empty(), "ONLINE {name} inside LIST's answer");
                        online.push(name.into_owned());
                    }
                    ServerLine::User { name } => listed.push(name.into_owned()),
                    ServerLine::Ok { verb, .. } if verb == "LIST" => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (
                Heard {
                    name,
                    online,
                    listed,
                },
                c,
            )
        });
    }
    let mut heard = Vec::with_capacity(N);
    let mut keep = Vec::with_capacity(N);
    while let Some(r) = set.join_next().await {
        let (h, c) = r.unwrap();
        heard.push(h);
        keep.push(c);
    }
    let mut told: HashMap<(&str, &str), usize> = HashMap::new();
    for h in &heard {
        assert_eq!(
            h.listed.len(),
            N,
            "{} listed {} users",
            h.name,
            h.listed.len()
        );
        for other in &h.online {
            assert_ne!(other, &h.name, "{} heard of its own arrival", h.name);
            *told.entry((h.name.as_str(), other.as_str())).or_default() += 1;
        }
    }
    for (i, a) in heard.iter().enumerate() {
        for b in &heard[i + 1..] {
            let ab = told
                .get(&(a.name.as_str(), b.name.as_str()))
                .copied()
                .unwrap_or(0);
            let ba = told
                .get(&(b.name.as_str(), a.name.as_str()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                ab + ba,
                1,
                "{} heard of {} {ab} times, and {} of {} {ba} times",
                a.name,
                b.name,
                b.name,
                a.name
            );
        }
    }
}

/// The same for a crowd of IRC clients put into the everyone channel as they register: each
/// one's NAMES lists those seated before it, a JOIN comes for each one seated after it, and
/// nobody is both listed and joined, or missing, or heard of twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_irc_clients_each_sees_everyone_exactly_once() {
    const N: usize = 200;
    let s = TestServer::start().await;
    let mut set = JoinSet::new();
    for i in 0..N {
        let addr = s.addr;
        set.spawn(async move {
            let nick = format!("i{i}");
            let mut c = common::irc::Irc::connect(addr).await;
            c.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}"))
                .await;
            // The welcome burst comes first, then the channel's JOIN, topic and NAMES.
            let first = c.line().await;
            assert!(first.contains(" 001 "), "{nick}: {first}");
            let mut listed = Vec::new();
            loop {
                let l = c.line().await;
                assert!(!l.contains(" PRIVMSG #"), "{nick}: {l}");
                if l.contains(" 353 ") {
                    let names = l.split_once(" #everyone ").unwrap().1;
                    let names = names.strip_prefix(':').unwrap_or(names);
                    listed.extend(
                        names
                            .split(' ')
                            .map(|n| n.trim_start_matches('@').to_owned()),
                    );
                }
                if l.contains(" 366 ") {
                    break;
                }
            }
            (nick, listed, c)
        });
    }
    let mut joined = Vec::new();
    while let Some(r) = set.join_next().await {
        joined.push(r.unwrap());
    }
    let mut seen = Vec::new();
    for (nick, listed, mut c) in joined {
        // Every JOIN queued for this client comes before the answer to its PING.
        c.send("PING :end").await;
        let mut joins = Vec::new();
        loop {
            let l = c.line().await;
            if l.ends_with("PONG natter end") {
                break;
            }
            if let Some(who) = l.strip_prefix(':')
                && l.contains(" JOIN #everyone")
            {
                joins.push(who.split('!').next().unwrap().to_owned());
            }
        }
        seen.push((nick, listed, joins, c));
    }
    for (nick, listed, joins, _) in &seen {
        let mut all: Vec<&String> = listed.iter().chain(joins).collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "{nick} heard of someone twice");
        assert_eq!(all.len(), N, "{nick} knows of {} of {N}", all.len());
        assert!(listed.contains(nick), "{nick} is not in its own NAMES");
        assert!(!joins.contains(nick), "{nick} heard of its own JOIN");
    }
}
