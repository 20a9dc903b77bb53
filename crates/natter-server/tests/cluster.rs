//! Cluster mode over a real Redis: three nodes behave as one server, and survive a node's
//! death, Redis blips and a Redis that comes back empty.
//!
//! Each test starts its own `redis-server` (installed by `scripts/test.sh`) on a free
//! loopback port, without persistence, and its own nodes. The tests take a shared lock and
//! run one at a time: their timings (death detection, blips) are part of what they check,
//! and the machine may be small.

mod common;

use common::{ClientExt, LIMIT, TestServer, test_config, within};
use natter_conn::Client;
use natter_server::cluster::ClusterConfig;
use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test's own, and the PostgreSQL database its nodes share.
struct Redis {
    port: u16,
    child: Option<Child>,
    store: String,
}

impl Redis {
    fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
            store: natter_store::throwaway::Postgres::shared()
                .database()
                .expect("a throwaway PostgreSQL database"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let end = Instant::now() + LIMIT;
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < end, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node in this process.
async fn node(redis: &Redis, id: &str) -> TestServer {
    node_with_operators(redis, id, &[]).await
}

/// A node in this process whose server operators are these accounts.
async fn node_with_operators(redis: &Redis, id: &str, operators: &[&str]) -> TestServer {
    let mut c = test_config();
    c.operators = operators.iter().map(|o| o.to_string()).collect();
    c.cluster = Some(ClusterConfig {
        url: redis.url(),
        node_id: id.to_owned(),
    });
    c.store = natter_store::Location::Postgres(redis.store.clone());
    TestServer::with(c).await
}

/// A node as its own process, so that it can be killed outright.
struct ProcessNode {
    addr: std::net::SocketAddr,
    child: Child,
}

impl ProcessNode {
    async fn start(redis: &Redis, id: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_natter-server"))
            .args(["127.0.0.1", &port.to_string()])
            .args(["--cluster", &redis.url(), "--node-id", id])
            .args(["--store", &redis.store])
            .args(["--exempt-loopback", "--flood-control", "false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = Instant::now() + LIMIT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < end, "the node did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { addr, child }
    }

    async fn user(&self, name: &str) -> Client {
        let mut c = within(Client::connect(self.addr)).await.unwrap();
        let (got, _) = within(c.register(name)).await.unwrap();
        assert_eq!(got, name);
        c
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines until one satisfies `want`; returns it.
async fn wait_line(c: &mut Client, want: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + LIMIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let l = tokio::time::timeout(left, c.reader.next_text())
            .await
            .expect("timed out waiting for a line")
            .unwrap()
            .expect("connection closed");
        if want(&l) {
            return l;
        }
    }
}

/// The names LIST shows, sorted as the server sorts them.
async fn list(c: &mut Client) -> Vec<String> {
    c.say("LIST").await;
    let mut names = Vec::new();
    loop {
        let l = c.text().await;
        if let Some(n) = l.strip_prefix("USER ") {
            names.push(n.to_owned());
        } else if l.starts_with("OK LIST") {
            return names;
        }
    }
}

/// Polls LIST on every client until each shows exactly `want` (any order).
async fn await_list(clients: &mut [&mut Client], want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_ascii_lowercase()).collect();
    want.sort();
    let end = Instant::now() + LIMIT;
    for c in clients.iter_mut() {
        loop {
            let mut got: Vec<String> = list(c)
                .await
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect();
            got.sort();
            if got == want {
                break;
            }
            assert!(Instant::now() < end, "LIST shows {got:?}, not {want:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The MESSAGE texts from `from` up to and including `last`, in arrival order.
async fn messages_until(c: &mut Client, from: &str, last: &str) -> Vec<String> {
    let prefix = format!("MESSAGE {from} ");
    let mut got = Vec::new();
    loop {
        let l = wait_line(c, |l| l.starts_with(&prefix)).await;
        let text = l[prefix.len()..].to_owned();
        let done = text == last;
        got.push(text);
        if done {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_messages_dms_and_presence_span_nodes() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2, n3) = (
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    );
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    let mut c = n3.user("cy").await;
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;

    // A name is taken across the cluster, ignoring case.
    let mut dup = n3.client().await;
    dup.expect_error("REGISTER ANN", natter_proto::ErrorCode::NameTaken)
        .await;

    // One MESSAGE reaches everyone else once; the count covers every node.
    assert_eq!(a.ask("MESSAGE hello all").await, "OK MESSAGE 2");
    a.say("MESSAGE end").await;
    for r in [&mut b, &mut c] {
        assert_eq!(messages_until(r, "ann", "end").await, ["hello all", "end"]);
    }

    // A DM reaches its target on another node, and only it.
    assert_eq!(b.ask("DM cy psst").await, "OK DM cy");
    assert_eq!(
        wait_line(&mut c, |l| l.starts_with("DM ")).await,
        "DM bob psst"
    );

    // Presence: a rename and a departure are seen on every node.
    assert_eq!(c.ask("REGISTER cyd").await, "OK REGISTER cyd");
    for r in [&mut a, &mut b] {
        wait_line(r, |l| l == "RENAMED cy cyd").await;
    }
    c.say("CLOSE").await;
    for r in [&mut a, &mut b] {
        wait_line(r, |l| l == "OFFLINE cyd").await;
    }
    await_list(&mut [&mut a, &mut b], &["ann", "bob"]).await;
    // The name is free again, on any node.
    let again = n1.user("cyd").await;
    drop(again);
    // A newcomer node learns who is there already.
    let n4 = node(&redis, "n4").await;
    let mut d = n4.user("dee").await;
    await_list(&mut [&mut d, &mut a], &["ann", "bob", "dee"]).await;

    // The backplane's figures are on /metrics.
    let mut http = tokio::net::TcpStream::connect(n1.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    within(http.read_to_string(&mut body)).await.unwrap();
    assert!(body.contains("natter_backplane_published_total"), "{body}");
    assert!(body.contains("natter_backplane_relayed_total"), "{body}");
    assert!(
        !body.contains("natter_backplane_published_total 0\n"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_span_nodes() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "r1").await, node(&redis, "r2").await);
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    await_list(&mut [&mut a, &mut b], &["ann", "bob"]).await;

    assert_eq!(a.ask("JOIN #Rust").await, "MEMBER #Rust @ann");
    assert_eq!(a.text().await, "OK JOIN #Rust 1");
    // Poll until node 2 knows the room, then join it there.
    let end = Instant::now() + LIMIT;
    loop {
        b.say("WHO #rust").await;
        let l = b.text().await;
        if l == "MEMBER #Rust @ann" {
            assert_eq!(b.text().await, "OK WHO #Rust 1");
            break;
        }
        assert!(Instant::now() < end, "node 2 never saw the room: {l}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.ask("JOIN #RUST").await, "MEMBER #Rust @ann");
    assert_eq!(b.text().await, "MEMBER #Rust bob");
    assert_eq!(b.text().await, "OK JOIN #Rust 2");
    wait_line(&mut a, |l| l == "JOINED #Rust bob").await;

    assert_eq!(a.ask("SAY #rust hi room").await, "OK SAY #Rust 1");
    wait_line(&mut b, |l| l.starts_with("SAY ")).await;

    // Topic: the operator's is seen on the other node; a non-operator's is refused.
    assert_eq!(
        a.ask("TOPIC #rust all about rust").await,
        "TOPIC #Rust ann all about rust"
    );
    assert_eq!(a.text().await, "OK TOPIC #Rust");
    wait_line(&mut b, |l| l == "TOPIC #Rust ann all about rust").await;
    b.expect_error("TOPIC #rust mine", natter_proto::ErrorCode::NotOperator)
        .await;

    // An operator on one node removes a member on another.
    assert_eq!(
        a.ask("KICK #rust bob bye").await,
        "KICKED #Rust bob ann bye"
    );
    assert_eq!(a.text().await, "OK KICK #Rust bob");
    wait_line(&mut b, |l| l == "KICKED #Rust bob ann bye").await;
    b.expect_error("SAY #rust still here?", natter_proto::ErrorCode::NotInRoom)
        .await;

    // When the operator leaves, the remaining member takes the room over on its node.
    assert_eq!(b.ask("JOIN #rust").await, "MEMBER #Rust @ann");
    wait_line(&mut b, |l| l.starts_with("OK JOIN")).await;
    wait_line(&mut a, |l| l == "JOINED #Rust bob").await;
    assert!(a.ask("PART #rust").await.starts_with("OK PART"));
    wait_line(&mut b, |l| l.starts_with("PARTED #Rust ann")).await;
    wait_line(&mut b, |l| l == "OPERATOR #Rust bob").await;
    assert_eq!(
        b.ask("TOPIC #rust mine now").await,
        "TOPIC #Rust bob mine now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_line_message_crosses_nodes_with_its_lines() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "m1").await, node(&redis, "m2").await);
    let mut a = n1.client().await;
    assert_eq!(a.ask("MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(a.ask("REGISTER ann").await, "OK REGISTER ann");
    let mut b = n2.user("bob").await;
    let mut c = n2.client().await;
    assert_eq!(c.ask("MULTILINE ON").await, "OK MULTILINE ON");
    assert_eq!(c.ask("REGISTER cy").await, "OK REGISTER cy");
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;

    a.say("MESSAGE one \\\\ two\\n\\n  three").await;
    assert_eq!(
        wait_line(&mut a, |l| l.starts_with("OK ")).await,
        "OK MESSAGE 2"
    );
    assert_eq!(
        messages_until(&mut b, "ann", "  three").await,
        ["one \\ two", "  three"]
    );
    assert_eq!(
        messages_until(&mut c, "ann", "one \\\\ two\\n\\n  three").await,
        ["one \\\\ two\\n\\n  three"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_senders_order_holds_across_nodes() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2, n3) = (
        node(&redis, "o1").await,
        node(&redis, "o2").await,
        node(&redis, "o3").await,
    );
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    let mut c = n3.user("cy").await;
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;
    const N: usize = 1000;
    let (mut rd, mut wr) = a.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            wr.queue(&format!("MESSAGE m{i}"));
            if i % 100 == 99 {
                wr.flush().await.unwrap();
            }
        }
        wr.flush().await.unwrap();
        wr
    });
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    let last = format!("m{}", N - 1);
    for r in [&mut b, &mut c] {
        assert_eq!(messages_until(r, "ann", &last).await, want);
    }
    let _wr = sender.await.unwrap();
    let mut oks = 0;
    while oks < N {
        let l = within(rd.next_text()).await.unwrap().unwrap();
        if l.starts_with("OK MESSAGE") {
            oks += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_two_racing_registrations_wins() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "x1").await, node(&redis, "x2").await);
    let mut keep = Vec::new();
    for round in 0..50 {
        let mut x = n1.client().await;
        let mut y = n2.client().await;
        let name = format!("race{round}");
        let line = format!("REGISTER {name}");
        let (rx, ry) = tokio::join!(x.ask(&line), y.ask(&line));
        let ok = format!("OK REGISTER {name}");
        let wins = [&rx, &ry].iter().filter(|r| ***r == ok).count();
        assert_eq!(wins, 1, "round {round}: {rx:?} / {ry:?}");
        for r in [&rx, &ry] {
            assert!(*r == ok || r.starts_with("ERROR NAME_TAKEN "), "{r}");
        }
        keep.push((x, y));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_leave_within_ten_seconds() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let n1 = node(&redis, "k1").await;
    let n2 = node(&redis, "k2").await;
    let mut doomed = ProcessNode::start(&redis, "k3").await;
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    let mut z = doomed.user("zed").await;
    await_list(&mut [&mut a, &mut b, &mut z], &["ann", "bob", "zed"]).await;

    let killed = Instant::now();
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    for r in [&mut a, &mut b] {
        wait_line(r, |l| l == "OFFLINE zed node lost").await;
    }
    let took = killed.elapsed();
    eprintln!("a killed node's users were gone after {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    await_list(&mut [&mut a, &mut b], &["ann", "bob"]).await;
    // Its names are free again.
    let _z = n2.user("zed").await;
    wait_line(&mut a, |l| l == "ONLINE zed").await;
}

/// Sends `n` messages from `c`, `gap` apart, then "end".
async fn trickle(c: &mut Client, n: usize, gap: Duration) {
    for i in 0..n {
        c.say(&format!("MESSAGE t{i}")).await;
        tokio::time::sleep(gap).await;
    }
    c.say("MESSAGE end").await;
}

/// Checks that every receiver got `t0..t{n-1}` and `end` exactly once, in order.
async fn each_once(receivers: &mut [&mut Client], from: &str, n: usize) {
    let mut want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    want.push("end".into());
    for r in receivers.iter_mut() {
        let got = messages_until(r, from, "end").await;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for g in &got {
            *counts.entry(g).or_default() += 1;
        }
        let lost = want
            .iter()
            .filter(|w| !counts.contains_key(w.as_str()))
            .count();
        let dup = counts.values().filter(|&&c| c > 1).count();
        eprintln!("{} messages: {lost} lost, {dup} duplicated", want.len());
        assert_eq!(got, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_blip_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2, n3) = (
        node(&redis, "b1").await,
        node(&redis, "b2").await,
        node(&redis, "b3").await,
    );
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    let mut c = n3.user("cy").await;
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;

    // Every connection cut, then Redis frozen for 2 s, while ann keeps talking.
    let blip = {
        let port = redis.port;
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            let cli = |args: &[&str]| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string()])
                    .args(args)
                    .output()
                    .unwrap()
            };
            cli(&["CLIENT", "KILL", "TYPE", "normal"]);
            std::thread::sleep(Duration::from_millis(300));
            cli(&["CLIENT", "PAUSE", "2000", "ALL"]);
            std::thread::sleep(Duration::from_millis(2100));
            cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        })
    };
    trickle(&mut a, 200, Duration::from_millis(15)).await;
    blip.await.unwrap();
    each_once(&mut [&mut b, &mut c], "ann", 200).await;
    // The blip was no death: everyone is still there.
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_converges_and_settles_a_name() {
    let _serial = SERIAL.lock().await;
    let mut redis = Redis::start();
    let (n1, n2, n3) = (
        node(&redis, "e1").await,
        node(&redis, "e2").await,
        node(&redis, "e3").await,
    );
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    let mut c = n3.user("cy").await;
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;

    // Redis dies and comes back empty 2 s later; ann talks all along.
    redis.kill();
    let mut redis = {
        let (port, store) = (redis.port, redis.store.clone());
        std::mem::forget(redis);
        let restart = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(2));
            let mut r = Redis {
                port,
                child: None,
                store,
            };
            r.spawn();
            r
        });
        trickle(&mut a, 150, Duration::from_millis(20)).await;
        restart.await.unwrap()
    };
    each_once(&mut [&mut b, &mut c], "ann", 150).await;
    await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;
    assert_eq!(redis.cli(&["HGET", "natter:names", "ann"]).trim(), "e1 1");

    // Redis empty again, and a user of another node asks for bob's name while it is away:
    // its claim, already waiting, usually reaches the new Redis before bob's node notices
    // and re-asserts bob. Exactly one keeps the name; the other is renamed and told.
    redis.kill();
    let mut thief = n3.client().await;
    thief.say("REGISTER bob").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.spawn();
    let got = thief.text().await;
    eprintln!("a REGISTER racing a re-assertion got {got:?}");
    if got == "OK REGISTER bob" {
        let renamed = wait_line(&mut b, |l| l.starts_with("RENAMED bob ")).await;
        let new = renamed["RENAMED bob ".len()..].to_owned();
        // Elsewhere bob's old holder is renamed, or (if the newcomer's arrival came first)
        // comes back under the new name.
        let seen = format!("RENAMED bob {new}");
        let back = format!("ONLINE {new}");
        wait_line(&mut a, |l| l == seen || l == back).await;
        await_list(
            &mut [&mut a, &mut b, &mut c, &mut thief],
            &["ann", "bob", "cy", &new],
        )
        .await;
    } else {
        assert!(got.starts_with("ERROR NAME_TAKEN "), "{got}");
        await_list(&mut [&mut a, &mut b, &mut c], &["ann", "bob", "cy"]).await;
    }
    redis.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_and_native_users_talk_across_nodes() {
    use natter_conn::{LineReader, LineWriter};
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "i1").await, node(&redis, "i2").await);
    let mut ann = n2.user("ann").await;

    let s = tokio::net::TcpStream::connect(n1.addr).await.unwrap();
    let (r, w) = s.into_split();
    let (mut r, mut w) = (LineReader::new(r), LineWriter::new(w));
    w.send("NICK dave\r\nUSER dave 0 * :Dave").await.unwrap();
    let mut irc_line = async |want: &dyn Fn(&str) -> bool| loop {
        let l = within(r.next_text()).await.unwrap().expect("closed");
        if want(&l) {
            return l;
        }
    };
    irc_line(&|l| l.contains(" 366 ")).await;
    wait_line(&mut ann, |l| l == "ONLINE dave").await;
    await_list(&mut [&mut ann], &["ann", "dave"]).await;

    w.send("PRIVMSG #everyone :hi from irc").await.unwrap();
    wait_line(&mut ann, |l| l == "MESSAGE dave hi from irc").await;
    ann.say("MESSAGE hello irc").await;
    irc_line(&|l| l == ":ann!ann@natter PRIVMSG #everyone :hello irc").await;
    ann.say("DM dave psst there").await;
    wait_line(&mut ann, |l| l.starts_with("OK DM")).await;
    irc_line(&|l| l == ":ann!ann@natter PRIVMSG dave :psst there").await;
    // An IRC name is claimed across the cluster too.
    let mut dup = n2.client().await;
    dup.expect_error("REGISTER Dave", natter_proto::ErrorCode::NameTaken)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_after_a_register_wait_for_its_claim() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "w1").await, node(&redis, "w2").await);
    let mut ann = n2.user("ann").await;
    // Once both nodes know ann, a MESSAGE from w1 has a recipient.
    let mut wat = n1.user("wat").await;
    await_list(&mut [&mut wat, &mut ann], &["ann", "wat"]).await;

    // Plain TCP: the commands after REGISTER, sent in the same write, are taken only once
    // the cluster granted the name.
    let mut tcp = n1.client().await;
    tcp.say("REGISTER tess\nMESSAGE from tcp\nDM ann psst there")
        .await;
    assert_eq!(tcp.text().await, "OK REGISTER tess");
    wait_line(&mut tcp, |l| l.starts_with("OK MESSAGE")).await;
    wait_line(&mut tcp, |l| l == "OK DM ann").await;
    wait_line(&mut ann, |l| l == "MESSAGE tess from tcp").await;
    wait_line(&mut ann, |l| l == "DM tess psst there").await;

    // WebSocket: the same, one frame after the other.
    let (mut ws, _) = within(tokio_tungstenite::connect_async(format!(
        "ws://{}/ws",
        n1.addr
    )))
    .await
    .unwrap();
    for line in ["REGISTER wendy", "MESSAGE from ws"] {
        within(ws.send(Message::text(line))).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        match within(ws.next()).await.expect("closed").unwrap() {
            Message::Text(t) if t.starts_with("OK ") || t.starts_with("ERROR ") => {
                got.push(t.to_string())
            }
            _ => {}
        }
    }
    assert_eq!(got[0], "OK REGISTER wendy");
    assert!(got[1].starts_with("OK MESSAGE"), "{got:?}");
    wait_line(&mut ann, |l| l == "MESSAGE wendy from ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_on_every_node_at_once_reach_everyone_exactly_once() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let nodes = [
        node(&redis, "c1").await,
        node(&redis, "c2").await,
        node(&redis, "c3").await,
    ];
    // Four users per node; the first of each node talks.
    let mut users = Vec::new();
    let mut names = Vec::new();
    for (n, s) in nodes.iter().enumerate() {
        for u in 0..4 {
            let name = format!("u{n}x{u}");
            users.push(s.user(&name).await);
            names.push(name);
        }
    }
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    await_list(&mut users.iter_mut().collect::<Vec<_>>(), &want).await;
    const N: usize = 300;
    let senders = [0, 4, 8];
    let mut split: Vec<_> = users.into_iter().map(|c| Some(c.split())).collect();
    let mut tasks = Vec::new();
    for &s in &senders {
        let (rd, mut wr) = split[s].take().unwrap();
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                wr.queue(&format!("MESSAGE s{s}m{i}"));
                if i % 50 == 49 {
                    wr.flush().await.unwrap();
                }
            }
            wr.flush().await.unwrap();
            (rd, wr)
        }));
    }
    // Every user hears each other sender's N messages once, in each sender's order.
    let mut checks = Vec::new();
    for (i, slot) in split.iter_mut().enumerate() {
        let Some((mut rd, wr)) = slot.take() else {
            continue;
        };
        let senders: Vec<usize> = senders.iter().copied().filter(|&s| s != i).collect();
        let names = names.clone();
        checks.push(tokio::spawn(async move {
            let mut next: HashMap<String, usize> =
                senders.iter().map(|&s| (names[s].clone(), 0)).collect();
            while next.values().any(|&n| n < N) {
                let l = within(rd.next_text()).await.unwrap().expect("closed");
                let Some(rest) = l.strip_prefix("MESSAGE ") else {
                    continue;
                };
                let (from, text) = rest.split_once(' ').unwrap();
                let n = next.get_mut(from).expect("a message from a non-sender");
                let s = names.iter().position(|x| x == from).unwrap();
                assert_eq!(text, format!("s{s}m{n}"), "user {i}");
                *n += 1;
            }
            (rd, wr)
        }));
    }
    for c in checks {
        c.await.unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_comes_back_with_its_users() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let n1 = node(&redis, "f1").await;
    let frozen = ProcessNode::start(&redis, "f2").await;
    let mut a = n1.user("ann").await;
    let mut z = frozen.user("zed").await;
    await_list(&mut [&mut a, &mut z], &["ann", "zed"]).await;

    // Stopped longer than its liveness key lives (a long pause or partition): the others
    // take it for dead. When it runs again it finds itself forgotten and re-asserts.
    let pid = frozen.child.id().to_string();
    let signal = |s: &str| {
        // The shell's own kill: no procps needed.
        let ok = Command::new("sh")
            .args(["-c", &format!("kill {s} {pid}")])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let stopped = Instant::now();
    wait_line(&mut a, |l| l == "OFFLINE zed node lost").await;
    eprintln!(
        "a stopped node was taken for dead after {:?}",
        stopped.elapsed()
    );
    signal("-CONT");
    wait_line(&mut a, |l| l == "ONLINE zed").await;
    await_list(&mut [&mut a, &mut z], &["ann", "zed"]).await;
    z.say("MESSAGE back again").await;
    wait_line(&mut a, |l| l == "MESSAGE zed back again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_irc_nick_and_a_native_name_race_with_one_winner() {
    use natter_conn::{LineReader, LineWriter};
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "y1").await, node(&redis, "y2").await);
    let mut keep = Vec::new();
    for round in 0..20 {
        let name = format!("nick{round}");
        let s = tokio::net::TcpStream::connect(n1.addr).await.unwrap();
        let (r, w) = s.into_split();
        let (mut r, mut w) = (LineReader::new(r), LineWriter::new(w));
        let mut native = n2.client().await;
        let irc = async {
            w.send(&format!("NICK {name}\r\nUSER {name} 0 * :x"))
                .await
                .unwrap();
            loop {
                let l = within(r.next_text()).await.unwrap().expect("closed");
                if l.contains(" 001 ") {
                    return true;
                }
                if l.contains(" 433 ") {
                    return false;
                }
            }
        };
        let register = format!("REGISTER {name}");
        let (irc_won, answer) = tokio::join!(irc, native.ask(&register));
        let native_won = answer == format!("OK REGISTER {name}");
        assert!(
            native_won || answer.starts_with("ERROR NAME_TAKEN "),
            "{answer}"
        );
        assert!(
            irc_won != native_won,
            "round {round}: irc {irc_won}, native {answer}"
        );
        keep.push((r, w, native));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_claimed_twice_after_a_reset_is_settled_by_renaming_one() {
    let _serial = SERIAL.lock().await;
    let mut redis = Redis::start();
    let n1 = node(&redis, "g1").await;
    let held = ProcessNode::start(&redis, "g2").await;
    let mut a = n1.user("ann").await;
    let mut b = held.user("bob").await;
    await_list(&mut [&mut a, &mut b], &["ann", "bob"]).await;

    // bob's node is held still (briefly: well within the others' patience) while Redis
    // comes back empty and a user of another node claims bob's name. When bob's node runs
    // again it re-asserts bob, loses, and renames bob.
    let pid = held.child.id().to_string();
    let signal = |s: &str| {
        let ok = Command::new("sh")
            .args(["-c", &format!("kill {s} {pid}")])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    redis.kill();
    redis.spawn();
    let mut thief = n1.client().await;
    assert_eq!(thief.ask("REGISTER bob").await, "OK REGISTER bob");
    signal("-CONT");
    let renamed = wait_line(&mut b, |l| l.starts_with("RENAMED bob ")).await;
    let new = renamed["RENAMED bob ".len()..].to_owned();
    assert!(new.starts_with("bob") && new.len() > 3, "{new}");
    // Elsewhere the loser comes back under its new name; nobody ever saw two bobs.
    wait_line(&mut a, |l| l == format!("ONLINE {new}")).await;
    await_list(&mut [&mut a, &mut b, &mut thief], &["ann", "bob", &new]).await;
    assert_eq!(b.ask("MESSAGE still here").await, "OK MESSAGE 2");
    wait_line(&mut a, |l| l == format!("MESSAGE {new} still here")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_accounts_through_postgresql() {
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (
        node_with_operators(&redis, "p1", &["ann"]).await,
        node_with_operators(&redis, "p2", &["ann"]).await,
    );
    let mut a = n1.user("ann").await;
    let mut b = n2.user("bob").await;
    await_list(&mut [&mut a, &mut b], &["ann", "bob"]).await;
    a.say("ACCOUNT CREATE correct-horse").await;
    wait_line(&mut a, |l| l == "OK ACCOUNT CREATE ann").await;
    // ann's MESSAGE follows her account's news through the cluster's stream, so once bob
    // has it, his node knows the name is an account's.
    a.say("MESSAGE made it").await;
    wait_line(&mut b, |l| l == "MESSAGE ann made it").await;
    a.say("CLOSE").await;
    wait_line(&mut b, |l| l == "OFFLINE ann").await;
    let mut c = n2.client().await;
    c.say("REGISTER ann").await;
    let refused = wait_line(&mut c, |l| l.starts_with("ERROR ")).await;
    assert!(refused.starts_with("ERROR NAME_RESERVED "), "{refused}");
    // The other node checks the password against the same store.
    c.say("LOGIN ann correct-horse").await;
    wait_line(&mut c, |l| l == "OK LOGIN ann").await;
    wait_line(&mut b, |l| l == "ONLINE ann").await;

    // An operator on one node disconnects a user of another.
    let mut e = n1.user("eve").await;
    wait_line(&mut b, |l| l == "ONLINE eve").await;
    wait_line(&mut c, |l| l == "ONLINE eve").await;
    c.say("KILL eve spamming").await;
    wait_line(&mut c, |l| l == "OK KILL eve").await;
    let last = e.until_closed().await;
    assert!(
        last.iter()
            .any(|l| l == "BYE KILLED killed by ann: spamming"),
        "{last:?}"
    );
    wait_line(&mut b, |l| l == "OFFLINE eve killed by ann: spamming").await;
    // In a cluster a lost connection's session does not wait: the client may come back
    // through another node, which must find the name free.
    let mut f = n1.user("fay").await;
    f.say("SESSION").await;
    wait_line(&mut f, |l| l.starts_with("OK SESSION nr_")).await;
    drop(f);
    wait_line(&mut b, |l| l == "OFFLINE fay").await;

    // A node started later reads the accounts from the store.
    let n3 = node(&redis, "p3").await;
    let mut d = n3.client().await;
    d.say("REGISTER ANN").await;
    let refused = wait_line(&mut d, |l| l.starts_with("ERROR ")).await;
    assert!(refused.starts_with("ERROR NAME_RESERVED "), "{refused}");
}

/// The `LOGGED` lines of a `HISTORY`, as (id, from, text).
async fn history(c: &mut Client, target: &str) -> Vec<(i64, String, String)> {
    c.say(&format!("HISTORY {target} 500")).await;
    let mut seen = Vec::new();
    loop {
        match c.line().await {
            natter_proto::ServerLine::Logged { id, from, text, .. } => {
                seen.push((id, from.into_owned(), text.into_owned()))
            }
            natter_proto::ServerLine::Ok { .. } => return seen,
            other => assert!(
                !matches!(other, natter_proto::ServerLine::Error { .. }),
                "{other:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_keep_one_history_with_unique_ids() {
    use common::{account_holder, answer};
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "n1").await, node(&redis, "n2").await);
    let mut alice = account_holder(&n1, "alice").await;
    let mut bob = n2.client().await;
    assert_eq!(bob.ask("TAGS ON").await, "OK TAGS ON");
    assert_eq!(answer(&mut bob, "REGISTER bob").await, "OK REGISTER bob");
    assert_eq!(
        answer(&mut bob, &format!("ACCOUNT CREATE {}", common::PW)).await,
        "OK ACCOUNT CREATE bob"
    );
    assert_eq!(answer(&mut alice, "JOIN #den").await, "OK JOIN #den 1");
    // Node 2 learns of the room through Redis: bob joins it once it has.
    let end = Instant::now() + LIMIT;
    loop {
        bob.say("WHO #den").await;
        let l = bob.text().await;
        if l == "MEMBER #den @alice" {
            assert_eq!(bob.text().await, "OK WHO #den 1");
            break;
        }
        assert!(Instant::now() < end, "node 2 never saw the room: {l}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&mut bob, "JOIN #den").await, "OK JOIN #den 2");
    wait_line(&mut alice, |l| l == "JOINED #den bob").await;

    // Both nodes write into the one log at once.
    for i in 0..20 {
        alice.say(&format!("SAY #den a{i}")).await;
        bob.say(&format!("SAY #den b{i}")).await;
    }
    for _ in 0..20 {
        assert_eq!(common::next_answer(&mut alice).await, "OK SAY #den 1");
    }
    assert_eq!(answer(&mut alice, "DM bob from n1").await, "OK DM bob");
    // bob's answers, and alice's lines as bob saw them live, with their ids.
    let mut live = HashMap::new();
    let mut answered = 0;
    while answered < 20 || live.len() < 21 {
        let l = bob.text().await;
        let (tags, rest) = natter_proto::tags::split(&l);
        if rest.starts_with("OK SAY") {
            answered += 1;
        } else if let Some(id) = tags.id {
            live.insert(rest.to_owned(), id);
        }
    }
    let on_n1 = history(&mut alice, "#den").await;
    let on_n2 = history(&mut bob, "#den").await;
    assert_eq!(on_n1, on_n2, "one history, read from either node");
    assert_eq!(on_n1.len(), 40);
    let ids: Vec<i64> = on_n1.iter().map(|(id, _, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "unique, in order");
    // Each node's ids carry its own number, so they never collide.
    let node_of = |from: &str| -> Vec<i64> {
        let mut n: Vec<i64> = on_n1
            .iter()
            .filter(|(_, f, _)| f == from)
            .map(|(id, _, _)| id & 1023)
            .collect();
        n.dedup();
        n
    };
    let (na, nb) = (node_of("alice"), node_of("bob"));
    assert!(na.len() == 1 && nb.len() == 1 && na != nb, "{na:?} {nb:?}");
    // Each sender's messages in the order sent; the id bob saw live is the kept one.
    let texts = |from: &str| -> Vec<&str> {
        on_n1
            .iter()
            .filter(|(_, f, _)| f == from)
            .map(|(_, _, t)| t.as_str())
            .collect()
    };
    assert_eq!(
        texts("alice"),
        (0..20).map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        texts("bob"),
        (0..20).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
    for (id, from, text) in on_n1.iter().filter(|(_, f, _)| f == "alice") {
        assert_eq!(live.get(&format!("SAY #den {from} {text}")), Some(id));
    }
    // The conversation across the nodes is one too.
    let dm = history(&mut bob, "alice").await;
    assert_eq!(dm, history(&mut alice, "bob").await);
    assert_eq!(dm.len(), 1);
    assert_eq!(live.get("DM alice from n1"), Some(&dm[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_real_names_reach_the_other_nodes() {
    use common::irc::Irc;
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "r1").await, node(&redis, "r2").await);
    let mut watcher = Irc::with_caps(n2.addr, "watcher", "setname").await;
    let mut ann = Irc::user(n1.addr, "ann").await;
    watcher.skip_to(":ann!ann@natter JOIN #everyone").await;
    // A node's operations arrive in order: after her message, her real name is known.
    ann.send("PRIVMSG #everyone :hi").await;
    watcher
        .skip_to(":ann!ann@natter PRIVMSG #everyone hi")
        .await;
    watcher.send("WHOIS ann").await;
    assert_eq!(
        watcher.line().await,
        ":natter 311 watcher ann ann natter * :ann real"
    );
    watcher.skip_to(" 318 ").await;

    // A change is told on the other node to those with `setname`, and kept there.
    ann.send("SETNAME :Ann Smith").await;
    assert_eq!(watcher.line().await, ":ann!ann@natter SETNAME :Ann Smith");
    watcher.send("WHO ann").await;
    assert_eq!(
        watcher.line().await,
        ":natter 352 watcher * ann natter natter ann H :0 Ann Smith"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallops_reach_mode_w_users_on_every_node() {
    use common::irc::Irc;
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (
        node_with_operators(&redis, "o1", &["root"]).await,
        node_with_operators(&redis, "o2", &["root"]).await,
    );
    let mut far = Irc::user(n2.addr, "far").await;
    far.part_everyone().await;
    far.send("MODE far +w").await;
    assert_eq!(far.line().await, ":far!far@natter MODE far +w");
    let mut deaf = Irc::user(n2.addr, "deaf").await;
    deaf.part_everyone().await;
    let mut root = Irc::user(n1.addr, "root").await;
    root.part_everyone().await;
    root.send(&format!("PRIVMSG NickServ :REGISTER {}", common::PW))
        .await;
    root.skip_to(" 900 ").await;
    root.skip_to("is now registered").await;
    root.send("WALLOPS :restart at noon").await;
    assert_eq!(
        far.line().await,
        ":root!root@natter WALLOPS :restart at noon"
    );
    deaf.quiet().await;
    root.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_notify_reaches_members_on_other_nodes() {
    use common::irc::Irc;
    let _serial = SERIAL.lock().await;
    let redis = Redis::start();
    let (n1, n2) = (node(&redis, "v1").await, node(&redis, "v2").await);
    let mut m = Irc::with_caps(n2.addr, "m", "invite-notify").await;
    m.part_everyone().await;
    m.join("#inv").await;
    let mut op = Irc::user(n1.addr, "op").await;
    op.part_everyone().await;
    let mut x = Irc::user(n1.addr, "x").await;
    x.part_everyone().await;
    op.join("#inv").await;
    m.skip_to(":op!op@natter JOIN #inv").await;
    op.expect("INVITE x #inv", "341").await;
    assert_eq!(x.line().await, ":op!op@natter INVITE x #inv");
    assert_eq!(m.line().await, ":op!op@natter INVITE x #inv");
}
