//! Abuse: what hostile or broken clients do to a real server over real sockets.
//!
//! Every case checks three things: the attacker gets a clear `ERROR`/`BYE` line or is
//! disconnected (and when a last line is sent, which one), the server is still up, and
//! normal clients on every transport still connect, register and get a MESSAGE round-trip
//! promptly ([`assert_healthy`]).
//!
//! The cases that apply to any transport run over each of them, plain TCP, TLS and WebSocket
//! (`on_every_transport!`), from one body written once: the server has one connection driver
//! and must keep the same rules on every wire. Cases about one protocol's bytes (a TLS hello
//! on a plain port, HTTP on the IRC port) run where they belong.
//!
//! The cases run one at a time (see [`SERIAL`]): some measure the memory of this process,
//! which the server shares, and the timing checks of the flood cases should not compete with
//! a storm of 500 clients on a two-core machine.

mod common;

use common::irc::Irc;
use common::probe::{
    Ending, Rng, metric, metric_becomes, read_to_close, refused_with, rss_kib, tcp, trickle,
};
use common::wire::{
    self, AnyClient, LOCAL, OTHER, Transport, halves, open, open_with, upgrade_status, with_tls,
};
use common::{
    ClientExt, LIMIT, QuietAfterEvents, TestServer, healthy, healthy_over, test_config, within,
};
use natter_conn::{Client, LineReader};
use natter_proto::{ErrorCode, ServerLine};
use natter_server::Config;
use natter_server::config::Secret;
use natter_server::throttle::FloodLimits;
use natter_server::{Assume, Listener};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Held by every test of this file, so they run one at a time whatever the harness's thread
/// count: memory is measured for the whole process, and timing checks need a quiet machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `$name(transport)` as one test per transport: `$name::tcp`, `$name::tls`, `$name::ws`.
macro_rules! on_every_transport {
    ($(#[$attr:meta])* fn $name:ident) => {
        mod $name {
            use super::*;
            $(#[$attr])*
            async fn tcp() {
                super::$name(Transport::Tcp).await
            }
            $(#[$attr])*
            async fn tls() {
                super::$name(Transport::Tls).await
            }
            $(#[$attr])*
            async fn ws() {
                super::$name(Transport::Ws).await
            }
        }
    };
}

/// The abuse cases' server: the tests' defaults, and TLS on the shared port, keeping no
/// history. Many of these cases run on a paused clock, which runs ahead whenever every task
/// waits, as a sender waiting for the store's thread to commit its message does; the log's
/// own abuse cases (a full, slow or broken store) are in `tests/history.rs`.
fn config() -> Config {
    let mut c = with_tls(test_config());
    c.history.enabled = false;
    c
}

async fn server() -> TestServer {
    TestServer::with(config()).await
}

/// Every transport still serves normal clients (see [`healthy`]).
async fn assert_healthy(s: &TestServer) {
    healthy(s.addr, LOCAL, None).await;
}

/// A native client over `t` from LOCAL, past the greeting.
async fn client(t: Transport, addr: SocketAddr) -> AnyClient {
    wire::client(t, LOCAL, addr).await
}

/// A native client over `t`, registered as `name`.
async fn user(t: Transport, addr: SocketAddr, name: &str) -> AnyClient {
    wire::user(t, addr, name).await
}

/// IRC is spoken over TCP and TLS; WebSocket carries natter's line protocol only.
fn speaks_irc(t: Transport) -> bool {
    t != Transport::Ws
}

/// A server on three listeners, as `natter-server --irc ... --web ...` runs it: the shared
/// port, a dedicated IRC port and a dedicated web port. Dropping it stops the server.
struct Multi {
    main: SocketAddr,
    irc: SocketAddr,
    web: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn multi(config: Config) -> Multi {
    common::raise_fd_limit();
    let bind = || TcpListener::bind("127.0.0.1:0");
    let (main, irc, web) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let addrs = (
        main.local_addr().unwrap(),
        irc.local_addr().unwrap(),
        web.local_addr().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = vec![
        Listener {
            socket: main,
            assume: Assume::Line,
        },
        Listener {
            socket: irc,
            assume: Assume::Irc,
        },
        Listener {
            socket: web,
            assume: Assume::Http,
        },
    ];
    tokio::spawn(natter_server::run_all(listeners, config, async {
        let _ = stopped.await;
    }));
    Multi {
        main: addrs.0,
        irc: addrs.1,
        web: addrs.2,
        _stop: stop,
    }
}

/// A TLS 1.3 ClientHello for `natter.test`, as a TLS client sends it first.
fn client_hello() -> Vec<u8> {
    let sni = b"natter.test";
    let mut ext = Vec::new();
    // server_name
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((sni.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((sni.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(sni);
    // supported_versions: TLS 1.3
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&Rng(7).bytes(32));
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression only
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

// ---------------------------------------------------------------------------------------------
// Slowloris and deadlines
// ---------------------------------------------------------------------------------------------

const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

async fn slowloris_trickling_a_line_is_cut_at_the_registration_deadline(t: Transport) {
    let _serial = SERIAL.lock().await;
    let s = server().await;
    assert_eq!(test_config().policy.register_timeout, REGISTER_TIMEOUT);
    let start = Instant::now();
    let (r, w) = tokio::io::split(open(t, LOCAL, s.addr).await);
    // One byte a second, never a newline: the line never completes.
    let mut payload = b"REGISTER ".to_vec();
    payload.extend_from_slice(&[b's'; 200]);
    let trickler = tokio::spawn(trickle(w, payload.clone(), Duration::from_secs(1)));
    let mut r = LineReader::new(r);
    let (lines, ending) = read_to_close(&mut r, 3 * REGISTER_TIMEOUT).await;
    let took = start.elapsed();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("HELLO "), "{lines:?}");
    assert_eq!(
        lines[1],
        "BYE TIMEOUT register within the time allowed (REGISTER <name>)"
    );
    assert_ne!(ending, Ending::Open);
    assert!(
        (REGISTER_TIMEOUT..REGISTER_TIMEOUT + Duration::from_secs(5)).contains(&took),
        "cut after {took:?}"
    );
    // The trickle was still going when the server cut it off.
    let sent = trickler.await.unwrap();
    assert!((50..payload.len()).contains(&sent), "{sent} bytes trickled");
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test(start_paused = true)] fn slowloris_trickling_a_line_is_cut_at_the_registration_deadline);

async fn slowloris_on_irc_is_cut_at_the_registration_deadline(t: Transport) {
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let mut watcher = s.user("watcher").await;
    let start = Instant::now();
    let (r, mut w) = tokio::io::split(open(t, LOCAL, s.addr).await);
    // NICK at once (so the shared port knows it is IRC), then USER byte by byte.
    w.write_all(b"NICK slowirc\r\n").await.unwrap();
    let trickler = tokio::spawn(trickle(
        w,
        [b"USER slowirc 0 * :".as_slice(), &[b's'; 200]].concat(),
        Duration::from_secs(1),
    ));
    let (lines, ending) = read_to_close(&mut LineReader::new(r), 3 * REGISTER_TIMEOUT).await;
    let took = start.elapsed();
    assert_eq!(lines, ["ERROR :Closing Link: (Registration timeout)"]);
    assert_ne!(ending, Ending::Open);
    assert!(
        (REGISTER_TIMEOUT..REGISTER_TIMEOUT + Duration::from_secs(5)).contains(&took),
        "cut after {took:?}"
    );
    assert!(trickler.await.unwrap() >= 50);
    // It never became a user.
    watcher.expect_quiet().await;
    assert_healthy(&s).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_on_irc_is_cut_at_the_registration_deadline_over_tcp() {
    slowloris_on_irc_is_cut_at_the_registration_deadline(Transport::Tcp).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_on_irc_is_cut_at_the_registration_deadline_over_tls() {
    slowloris_on_irc_is_cut_at_the_registration_deadline(Transport::Tls).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_on_http_headers_is_cut_by_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let start = Instant::now();
    let (r, mut w) = tcp(s.addr).await.into_split();
    w.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let trickler = tokio::spawn(trickle(
        w,
        [b"Host: natter\r\nX-Slow: ".as_slice(), &[b'a'; 200]].concat(),
        Duration::from_secs(1),
    ));
    let mut r = LineReader::new(r);
    let (lines, ending) = read_to_close(&mut r, 3 * REGISTER_TIMEOUT).await;
    let took = start.elapsed();
    // hyper gives up on the headers after 10 s and closes without an answer.
    assert!(lines.is_empty(), "{lines:?}");
    assert_ne!(ending, Ending::Open);
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(15)).contains(&took),
        "cut after {took:?}"
    );
    assert!(trickler.await.unwrap() < 30);
    assert_healthy(&s).await;
}

async fn registration_and_idle_deadlines_end_silent_and_stalling_clients(t: Transport) {
    const IDLE: Duration = Duration::from_secs(300);
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.idle_timeout = Some(IDLE);
    let s = TestServer::with(config).await;
    let start = Instant::now();

    // Connects and never says a word: greeted (over TCP once the sniffer stops waiting),
    // then timed out.
    let silent = async {
        let (r, _w) = halves(open(t, LOCAL, s.addr).await);
        let mut r = r;
        let (lines, ending) = read_to_close(&mut r, 2 * REGISTER_TIMEOUT).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("HELLO "));
        assert_eq!(
            lines[1],
            "BYE TIMEOUT register within the time allowed (REGISTER <name>)"
        );
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // Busy but never registers: activity does not move the registration deadline.
    let stalling = async {
        let mut c = client(t, s.addr).await;
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(25)).await;
            c.expect_quiet().await;
        }
        let (lines, ending) = read_to_close(&mut c.reader, 2 * REGISTER_TIMEOUT).await;
        assert_eq!(
            lines,
            ["BYE TIMEOUT register within the time allowed (REGISTER <name>)"]
        );
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // IRC: NICK but no USER.
    let irc = async {
        if !speaks_irc(t) {
            return REGISTER_TIMEOUT;
        }
        let mut c = Irc::connect_over(t, s.addr).await;
        c.send("NICK stalled").await;
        let (lines, ending) = read_to_close(&mut c.r, 2 * REGISTER_TIMEOUT).await;
        assert_eq!(lines, ["ERROR :Closing Link: (Registration timeout)"]);
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // Registered and then silent: the idle timeout (off by default) ends it.
    let idler = async {
        let mut c = user(t, s.addr, "idler").await;
        let (lines, ending) = read_to_close(&mut c.reader, 2 * IDLE).await;
        let lines: Vec<_> = lines
            .into_iter()
            .filter(|l| !l.starts_with("ONLINE ") && !l.starts_with("OFFLINE "))
            .collect();
        assert_eq!(lines, ["BYE TIMEOUT idle for too long"]);
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // Registered and speaking now and then: never idle for long enough.
    let talker = async {
        let mut c = user(t, s.addr, "talker").await;
        for _ in 0..3 {
            tokio::time::sleep(IDLE * 2 / 3).await;
            c.say("LIST").await;
            within(
                c.reader
                    .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "LIST")),
            )
            .await
            .unwrap();
        }
        assert_eq!(c.ask("CLOSE").await, "BYE CLOSED goodbye");
        start.elapsed()
    };
    let (silent, stalling, irc, idler, talker) = tokio::join!(silent, stalling, irc, idler, talker);
    let near = |t: Duration, want: Duration| (want..want + Duration::from_secs(3)).contains(&t);
    assert!(near(silent, REGISTER_TIMEOUT), "silent: {silent:?}");
    assert!(near(stalling, REGISTER_TIMEOUT), "stalling: {stalling:?}");
    assert!(near(irc, REGISTER_TIMEOUT), "irc: {irc:?}");
    assert!(near(idler, IDLE), "idler: {idler:?}");
    assert!(talker >= IDLE * 2, "talker: {talker:?}");
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test(start_paused = true)] fn registration_and_idle_deadlines_end_silent_and_stalling_clients);

// ---------------------------------------------------------------------------------------------
// Hostile bytes
// ---------------------------------------------------------------------------------------------

async fn a_ten_mib_line_gets_one_error_and_costs_no_memory(t: Transport) {
    const MIB: usize = 1024 * 1024;
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let mut a = user(t, s.addr, "long").await;
    let mut w = s.user("watch").await;
    assert_eq!(a.text().await, "ONLINE watch");
    let chunk = vec![b'x'; MIB];
    let before = rss_kib();
    for _ in 0..10 {
        within(a.writer.send_raw(&chunk)).await.unwrap();
    }
    within(a.writer.send_raw(b"\n")).await.unwrap();
    assert!(a.text().await.starts_with("ERROR LINE_TOO_LONG "));
    // Exactly one error: the HELP answer comes next.
    a.expect_quiet().await;
    let grown = rss_kib().saturating_sub(before);
    eprintln!("10 MiB line over {t:?}: RSS grew {grown} KiB");
    assert!(
        grown < 4 * 1024,
        "RSS grew by {grown} KiB for a 10 MiB line: is the line being kept?"
    );
    assert_eq!(a.ask("MESSAGE still here").await, "OK MESSAGE 1");
    assert_eq!(w.text().await, "MESSAGE long still here");

    // The same on IRC: one 417, and the connection goes on.
    if speaks_irc(t) {
        let mut irc = Irc::user_over(t, s.addr, "longirc").await;
        for _ in 0..10 {
            within(irc.w.send_raw(&chunk)).await.unwrap();
        }
        within(irc.w.send_raw(b"\r\n")).await.unwrap();
        assert_eq!(
            irc.line().await,
            ":natter 417 longirc :Input line was too long"
        );
        irc.send("PING :after").await;
        assert_eq!(irc.line().await, ":natter PONG natter after");
    }
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test] fn a_ten_mib_line_gets_one_error_and_costs_no_memory);

/// A client streaming bytes faster than `bytes_per_sec` for longer than the grace gets
/// `BYE FLOOD`: it is relieved only when a read finds its input empty, which never happens
/// to a client that sends without pause.
async fn a_byte_flood_under_default_limits_is_disconnected(t: Transport) {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.flood = Some(FloodLimits::default());
    let limits = FloodLimits::default();
    let s = TestServer::with(config).await;
    let a = user(t, s.addr, "bytes").await;
    let (mut r, mut w) = a.split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..10 {
            if w.send_raw(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.send_raw(b"\n").await;
    });
    // Burst + grace at the byte rate is about 14 s; a minute is plenty.
    let (lines, ending) = read_to_close(&mut r, Duration::from_secs(60)).await;
    writer.abort();
    let took = start.elapsed();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("ERROR LINE_TOO_LONG ")),
        "{lines:?}"
    );
    assert_eq!(
        (lines.get(1).map(String::as_str), ending != Ending::Open),
        (
            Some("BYE FLOOD you kept sending faster than the server allows"),
            true
        ),
        "after {took:?} of a 10 MiB line at {} B/s (grace {:?}) over {t:?} the byte flooder \
         is still connected; lines: {lines:?}",
        limits.bytes_per_sec,
        limits.grace,
    );
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test(start_paused = true)] fn a_byte_flood_under_default_limits_is_disconnected);

async fn random_binary_gets_errors_and_the_connection_stays_usable(t: Transport) {
    const SEEDS: [u64; 4] = [1, 0x5eed, 0xdead_beef, 0x1234_5678_9abc_def0];
    const SIZE: usize = 256 * 1024;
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let mut watcher = s.user("watcher").await;
    for seed in SEEDS {
        let mut junk = Rng(seed).bytes(SIZE);
        // A first byte of 0x16 would be a TLS ClientHello, which has its own case.
        if junk[0] == 0x16 {
            junk[0] = 0x17;
        }
        let newlines = junk.iter().filter(|&&b| b == b'\n').count();
        // As the very first bytes of a connection (the sniffer sees them), then registered.
        for registered in [false, true] {
            let (r, mut w) = tokio::io::split(open(t, LOCAL, s.addr).await);
            let mut r = LineReader::new(r);
            if registered {
                w.write_all(format!("REGISTER junk{seed:x}\n").as_bytes())
                    .await
                    .unwrap();
            }
            let sender = tokio::spawn({
                let junk = junk.clone();
                async move {
                    w.write_all(&junk).await.unwrap();
                    w.write_all(b"\nHELP CLOSE\n").await.unwrap();
                    w
                }
            });
            let mut errors = 0;
            loop {
                let line = within(r.next_line())
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed:#x}: unparsable line: {e}"))
                    .unwrap_or_else(|| panic!("seed {seed:#x}: closed"));
                match line {
                    ServerLine::Hello { .. }
                    | ServerLine::Ok { .. }
                    | ServerLine::Online { .. } => {}
                    ServerLine::Error { .. } => errors += 1,
                    ServerLine::Help { text } if text.starts_with("CLOSE") => break,
                    other => panic!("seed {seed:#x}: unexpected {other:?}"),
                }
            }
            assert_eq!(within(r.next_text()).await.unwrap().unwrap(), "OK HELP");
            assert!(
                (1..=newlines + 1).contains(&errors),
                "seed {seed:#x}: {errors} errors for {newlines} lines"
            );
            // Still usable.
            let mut w = within(sender).await.unwrap();
            w.write_all(b"HELP HELP\n").await.unwrap();
            let l = within(r.next_text()).await.unwrap().unwrap();
            assert!(l.starts_with("HELP HELP"), "{l}");
        }
    }
    // Nothing of it reached anyone as a chat line.
    watcher.expect_quiet_after_events().await;

    // IRC: random lines answered with numerics (or ignored), PING still answered.
    if speaks_irc(t) {
        let mut irc = Irc::user_over(t, s.addr, "junkirc").await;
        let junk = Rng(42).bytes(SIZE);
        let mut w = irc.w;
        let sender = tokio::spawn(async move {
            w.send_raw(&junk).await.unwrap();
            w.send_raw(b"\r\nPING :sentinel\r\n").await.unwrap();
            w
        });
        loop {
            let l = within(irc.r.next_text())
                .await
                .unwrap()
                .expect("IRC junk client closed");
            if l == ":natter PONG natter sentinel" {
                break;
            }
            assert!(
                l.starts_with(":natter 4") || l.starts_with(':'),
                "unexpected {l:?}"
            );
        }
        irc.w = within(sender).await.unwrap();
        irc.send("PING :again").await;
        assert_eq!(irc.line().await, ":natter PONG natter again");
    }
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test] fn random_binary_gets_errors_and_the_connection_stays_usable);

async fn nul_bytes_are_refused_wherever_they_appear(t: Transport) {
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let mut watcher = s.user("watcher").await;

    // NULs as the very first bytes of a connection.
    let (reader, writer) = halves(open(t, LOCAL, s.addr).await);
    let mut c = Client { reader, writer };
    c.writer.send_raw(b"\0\0\0\0").await.unwrap();
    assert!(c.text().await.starts_with("HELLO "));
    c.writer.send_raw(b"\n").await.unwrap();
    assert!(c.text().await.starts_with("ERROR UNKNOWN_COMMAND "));
    c.writer.send_raw(b"REGISTER a\0b\n").await.unwrap();
    assert!(c.text().await.starts_with("ERROR INVALID_NAME "));
    assert_eq!(c.ask("REGISTER nul").await, "OK REGISTER nul");
    assert_eq!(watcher.text().await, "ONLINE nul");
    for (line, code) in [
        (&b"MESSAGE a\0b\n"[..], ErrorCode::BadText),
        (&b"MESSAGE \0\n"[..], ErrorCode::BadText),
        (&b"DM watcher \0\n"[..], ErrorCode::BadText),
        (&b"JOIN #a\0b\n"[..], ErrorCode::InvalidRoomName),
        (&b"\0MESSAGE hi\n"[..], ErrorCode::UnknownCommand),
    ] {
        c.writer.send_raw(line).await.unwrap();
        let got = c.text().await;
        assert!(
            got.starts_with(&format!("ERROR {code} ")),
            "{line:?}: {got:?}"
        );
    }
    // A line of 8 KiB of NULs is too long, once.
    c.writer.send_raw(&[0u8; 8192]).await.unwrap();
    c.writer.send_raw(b"\n").await.unwrap();
    assert!(c.text().await.starts_with("ERROR LINE_TOO_LONG "));
    c.expect_quiet().await;

    // IRC: a NUL makes the message malformed; it is answered and goes nowhere.
    let mut _irc = None;
    if speaks_irc(t) {
        let irc = _irc.insert(Irc::user_over(t, s.addr, "nulirc").await);
        assert_eq!(watcher.text().await, "ONLINE nulirc");
        irc.w
            .send_raw(b"PRIVMSG #everyone :a\0b\r\n")
            .await
            .unwrap();
        assert_eq!(
            irc.line().await,
            ":natter 461 nulirc PRIVMSG :Not enough parameters"
        );
        irc.w.send_raw(b"NICK a\0b\r\n").await.unwrap();
        assert_eq!(
            irc.line().await,
            ":natter 461 nulirc NICK :Not enough parameters"
        );
        irc.send("PING :ok").await;
        assert_eq!(irc.line().await, ":natter PONG natter ok");
    }
    // The watcher got no message and no rename.
    watcher.expect_quiet().await;
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test] fn nul_bytes_are_refused_wherever_they_appear);

// ---------------------------------------------------------------------------------------------
// The wrong protocol on a port
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_tls_client_hello_on_the_plain_shared_port_is_closed_without_an_answer() {
    let _serial = SERIAL.lock().await;
    // A server without TLS.
    let s = TestServer::start().await;
    let accepted = metric(s.addr, "natter_connections_accepted_total").await;
    let mut tls = tcp(s.addr).await;
    within(tls.write_all(&client_hello())).await.unwrap();
    let mut got = Vec::new();
    let ended = within(tls.read_to_end(&mut got)).await;
    // Closed at once (a reset: the rest of the hello was never read), and not one byte of
    // natter's protocol sent to a TLS client.
    assert!(
        ended.is_ok()
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
        "{ended:?}"
    );
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    // It was a connection like any other, and it is gone.
    assert!(metric(s.addr, "natter_connections_accepted_total").await >= accepted + 2);
    metric_becomes(s.addr, "natter_connected_clients", 1).await;
    healthy_over(s.addr, LOCAL, None, &[Transport::Tcp, Transport::Ws]).await;
}

#[tokio::test]
async fn the_line_protocol_on_the_web_listener_gets_a_400() {
    let _serial = SERIAL.lock().await;
    let m = multi(config()).await;
    let (r, mut w) = tcp(m.web).await.into_split();
    w.write_all(b"REGISTER sneaky\nLIST\n").await.unwrap();
    let (lines, ending) = read_to_close(&mut LineReader::new(r), LIMIT).await;
    assert_eq!(
        lines.first().map(String::as_str),
        Some("HTTP/1.1 400 Bad Request")
    );
    assert_ne!(ending, Ending::Open);
    healthy(m.main, LOCAL, None).await;
}

/// An HTTP request (or a TLS ClientHello) on the dedicated IRC listener is refused with
/// `ERROR :Closing Link` and closed before any of its lines runs: otherwise a web page could
/// make a visitor's browser POST IRC commands to the IRC port (cross-protocol forgery).
#[tokio::test]
async fn an_http_request_on_the_irc_listener_is_refused() {
    let _serial = SERIAL.lock().await;
    let m = multi(config()).await;
    let mut watcher = wire::user(Transport::Tcp, m.main, "watcher").await;

    let body =
        "NICK victim\r\nUSER victim 0 * :victim\r\nPRIVMSG #everyone :forged by a web page\r\n";
    let post = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        m.irc,
        body.len()
    );
    let (r, mut w) = tcp(m.irc).await.into_split();
    w.write_all(post.as_bytes()).await.unwrap();
    let (post_lines, post_ending) =
        read_to_close(&mut LineReader::new(r), Duration::from_secs(3)).await;

    let (r, mut w) = tcp(m.irc).await.into_split();
    w.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", m.irc).as_bytes())
        .await
        .unwrap();
    let (get_lines, get_ending) =
        read_to_close(&mut LineReader::new(r), Duration::from_secs(3)).await;

    // What reached the watcher because of the POST.
    watcher.say("HELP CLOSE").await;
    let mut forged = Vec::new();
    loop {
        let l = watcher.text().await;
        if l.starts_with("HELP CLOSE") {
            break;
        }
        forged.push(l);
    }
    assert_eq!(watcher.text().await, "OK HELP");

    let closed = |lines: &[String], ending| {
        ending != Ending::Open && lines.iter().all(|l| l.starts_with("ERROR :Closing Link"))
    };
    assert!(
        forged.is_empty() && closed(&post_lines, post_ending) && closed(&get_lines, get_ending),
        "HTTP on the dedicated IRC listener must be refused.\n\
         POST with IRC commands in its body: the attacker got {} lines ({:?}), connection {:?}; \
         the watcher saw {forged:?}.\n\
         GET: the client got {get_lines:?}, connection {get_ending:?} after 3 s \
         (expected ERROR and close).",
        post_lines.len(),
        post_lines.iter().take(2).collect::<Vec<_>>(),
        post_ending,
    );
    healthy(m.main, LOCAL, None).await;
}

/// A page served under a name the server is not reached by (a DNS-rebinding attack: the
/// attacker's name resolves to this server) cannot open the WebSocket, even though its
/// `Origin` matches the `Host` it sent; nor can a request with two `Origin` headers.
#[tokio::test]
async fn a_rebinding_host_and_origin_pair_is_refused() {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.web.names = vec!["chat.example".into()];
    let s = TestServer::with(config).await;
    let port = s.addr.port();
    let evil = format!("evil.example:{port}");
    assert_eq!(
        upgrade_status(s.addr, &evil, &[&format!("http://{evil}")]).await,
        403
    );
    // The names it is reached by, IP addresses and localhost are its own pages.
    let own = format!("chat.example:{port}");
    assert_eq!(
        upgrade_status(s.addr, &own, &[&format!("https://{own}")]).await,
        101
    );
    let ip = s.addr.to_string();
    assert_eq!(
        upgrade_status(s.addr, &ip, &[&format!("http://{ip}")]).await,
        101
    );
    let local = format!("localhost:{port}");
    assert_eq!(
        upgrade_status(s.addr, &local, &[&format!("http://{local}")]).await,
        101
    );
    // Two Origins: refused, even if both are the server's own.
    let origin = format!("http://{own}");
    assert_eq!(upgrade_status(s.addr, &own, &[&origin, &origin]).await, 403);
    // Another port on an allowed name is another origin.
    assert_eq!(
        upgrade_status(
            s.addr,
            &own,
            &[&format!("http://chat.example:{}", port + 1)]
        )
        .await,
        403
    );
    assert_healthy(&s).await;
}

// ---------------------------------------------------------------------------------------------
// Many clients
// ---------------------------------------------------------------------------------------------

async fn five_hundred_sloths_in_a_broadcast_storm_are_dropped_and_memory_stays_bounded(
    t: Transport,
) {
    const SLOTHS: usize = 500;
    const READERS: usize = 3;
    /// Messages the storm may be ahead of its slowest reader: 8 x 1 KB is far inside the
    /// readers' outboxes, so only the sloths can overflow theirs.
    const WINDOW: u64 = 8;
    const MAX_MESSAGES: u64 = 20_000;
    const OUTBOX: usize = 32 * 1024;
    let _serial = SERIAL.lock().await;
    let s = TestServer::with(Config {
        outbox_bytes: OUTBOX,
        ..config()
    })
    .await;
    let before = rss_kib();

    // Readers check that every storm message arrives once, in order; they report progress as
    // (sloths online, sloths offline, next message expected).
    let mut readers = JoinSet::new();
    let mut progress = Vec::new();
    for i in 0..READERS {
        let (mut r, w) = user(t, s.addr, &format!("reader{i}")).await.split();
        let (tx, rx) = watch::channel((0usize, 0usize, 0u64));
        progress.push(rx);
        readers.spawn(async move {
            let (mut online, mut offline) = (HashSet::new(), HashSet::new());
            let mut next = 0u64;
            let mut end = None;
            while end.is_none() || offline.len() < SLOTHS {
                match within(r.next_line())
                    .await
                    .unwrap()
                    .expect("a reader was dropped")
                {
                    ServerLine::Message { from, text } if from == "storm" => {
                        if let Some(total) = text.strip_prefix("end ") {
                            end = Some(total.parse::<u64>().unwrap());
                        } else {
                            let seq: u64 = text.split(' ').next().unwrap().parse().unwrap();
                            assert_eq!(seq, next, "a storm message was lost or reordered");
                            next += 1;
                        }
                    }
                    ServerLine::Online { name } if name.starts_with("sloth") => {
                        online.insert(name.into_owned());
                    }
                    ServerLine::Offline { name, .. } if name.starts_with("sloth") => {
                        offline.insert(name.into_owned());
                    }
                    _ => {}
                }
                tx.send_replace((online.len(), offline.len(), next));
            }
            assert_eq!(end, Some(next), "messages before the end marker");
            (next, r, w)
        });
    }
    let (mut storm_r, mut storm_w) = user(t, s.addr, "storm").await.split();

    // The sloths register and never read again; a tiny receive buffer keeps the kernel from
    // absorbing the storm on their behalf.
    let mut sloths = Vec::with_capacity(SLOTHS);
    for i in 0..SLOTHS {
        let mut st = open_with(t, LOCAL, s.addr, Some(4096)).await;
        within(st.write_all(format!("REGISTER sloth{i}\n").as_bytes()))
            .await
            .unwrap();
        sloths.push(st);
    }
    within(progress[0].wait_for(|p| p.0 == SLOTHS))
        .await
        .unwrap();
    let with_sloths = rss_kib();

    let (acks_tx, mut acks_rx) = watch::channel(0u64);
    let acks = tokio::spawn(async move {
        let mut n = 0;
        loop {
            match within(storm_r.next_line()).await.unwrap() {
                Some(ServerLine::Ok { .. }) => {
                    n += 1;
                    acks_tx.send_replace(n);
                }
                Some(ServerLine::Error { code, text }) => panic!("storm: ERROR {code} {text}"),
                Some(_) => {}
                None => panic!("the storm sender was dropped"),
            }
        }
    });
    let payload = "p".repeat(1000);
    let started = std::time::Instant::now();
    let mut seq = 0u64;
    while seq < MAX_MESSAGES && progress[0].borrow().1 < SLOTHS {
        for rx in &mut progress {
            within(rx.wait_for(|p| p.2 + WINDOW > seq)).await.unwrap();
        }
        storm_w
            .send(&format!("MESSAGE {seq} {payload}"))
            .await
            .unwrap();
        seq += 1;
    }
    storm_w.send(&format!("MESSAGE end {seq}")).await.unwrap();
    within(acks_rx.wait_for(|&n| n == seq + 1)).await.unwrap();
    acks.abort();
    // Kept open to the end, so that the counts below know who is connected.
    let mut keep = Vec::new();
    while let Some(r) = readers.join_next().await {
        let (got, r, w) = r.unwrap();
        assert_eq!(got, seq, "a reader missed storm messages");
        keep.push((r, w));
    }
    let storm_took = started.elapsed();
    assert!(seq < MAX_MESSAGES, "some sloths were never dropped");
    // Every sloth was dropped as a slow consumer (counted once its connection has closed),
    // and nobody else was.
    metric_becomes(s.addr, "natter_slow_consumers_total", SLOTHS as u64).await;
    let after = rss_kib();
    eprintln!(
        "sloth storm over {t:?}: {seq} messages of 1 KB in {storm_took:?}; RSS {before} KiB \
         before, {with_sloths} KiB with {SLOTHS} sloths, {after} KiB after"
    );
    // Each sloth may cost about twice its outbox before it is dropped (32 MiB for all of
    // them, at once), plus its TLS session's buffers over TLS; 64 MiB leaves room for the
    // allocator and the runtime.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB during the storm"
    );

    // The server let go of every sloth socket: only the readers, the storm and this
    // /metrics request are open. (What a sloth reads afterwards, the storm's start and
    // `BYE SLOW_CONSUMER` if its buffers had room, comes at the pace of the kernel's
    // zero-window probes, so it is not read here.)
    metric_becomes(s.addr, "natter_connected_clients", READERS as u64 + 2).await;
    assert_eq!(
        metric(s.addr, "natter_registered_users").await,
        READERS as u64 + 1
    );
    drop(sloths);
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] fn five_hundred_sloths_in_a_broadcast_storm_are_dropped_and_memory_stays_bounded);

/// A client that reads is never dropped, however large the burst it is behind: a writer's
/// 1.1 MB in one write (flood control off, as for load tests) reaches a reader that reads
/// continuously, every message in order; so do 40 lines of 4,000 bytes in one write under
/// default flood control with a 128 KiB outbox. The sender is held back while its reader
/// catches up, instead of the reader being dropped for being behind.
async fn a_reader_behind_a_burst_gets_every_message(t: Transport) {
    let _serial = SERIAL.lock().await;
    for (flood, outbox_kib, count, size) in
        [(false, 1024, 1200usize, 900usize), (true, 128, 40, 4000)]
    {
        let mut config = config();
        config.outbox_bytes = outbox_kib * 1024;
        if flood {
            config.policy.flood = Some(FloodLimits::default());
        }
        let s = TestServer::with(config).await;
        let mut reader = user(t, s.addr, "reader").await;
        let mut writer = user(t, s.addr, "writer").await;
        assert_eq!(reader.text().await, "ONLINE writer");
        let filler = "x".repeat(size);
        let mut burst = String::new();
        for i in 0..count {
            burst.push_str(&format!("MESSAGE storm-{i} {filler}\n"));
        }
        // The reader reads without pause, in a task of its own.
        let reading = tokio::spawn(async move {
            let mut next = 0;
            while next < count {
                match within(reader.recv()).await.unwrap() {
                    Some(ServerLine::Message { from, text }) if from == "writer" => {
                        let (seq, rest) = text.split_once(' ').unwrap();
                        assert_eq!(seq, format!("storm-{next}"), "lost or out of order");
                        assert_eq!(rest.len(), size);
                        next += 1;
                    }
                    Some(ServerLine::Bye { reason, text }) => {
                        panic!("the reader was dropped after {next} messages: {reason} {text}")
                    }
                    Some(_) => {}
                    None => panic!("the reader's connection closed after {next} messages"),
                }
            }
            reader
        });
        within(writer.writer.send_raw(burst.as_bytes()))
            .await
            .unwrap();
        let mut oks = 0;
        while oks < count {
            match within(writer.recv()).await.unwrap() {
                Some(ServerLine::Ok { verb, .. }) if verb == "MESSAGE" => oks += 1,
                other => panic!("writer: unexpected {other:?}"),
            }
        }
        let mut reader = within(reading).await.unwrap();
        reader.expect_quiet().await;
        assert_eq!(metric(s.addr, "natter_slow_consumers_total").await, 0);
        assert_healthy(&s).await;
    }
}
on_every_transport!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] fn a_reader_behind_a_burst_gets_every_message);

/// No answer pins the server's memory: 10,000 rooms with long topics, then 100 connections
/// from one address that each ask for the list of rooms twice and never read. Each answer is
/// made as its client takes it, so each connection holds at most its bound (1 MiB) before it
/// is dropped as a slow consumer; before, each `LIST` queued its whole 4 MB answer.
async fn non_readers_asking_for_every_room_are_bounded_and_dropped(t: Transport) {
    const ROOMS: usize = 10_000;
    const ASKERS: usize = 100;
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.rooms.per_user = ROOMS;
    config.rooms.rooms = ROOMS;
    // The server is busy while the askers connect; an IRC client whose first line is late
    // must not be taken for a line client, which this case is not about.
    config.sniff_wait = Duration::from_secs(5);
    let s = TestServer::with(config).await;
    // One user opens every room and gives it a topic of 389 bytes.
    let mut owner = user(Transport::Tcp, s.addr, "owner").await;
    let topic = "t".repeat(389);
    let mut cmds = String::new();
    for i in 0..ROOMS {
        cmds.push_str(&format!("JOIN #r{i}\nTOPIC #r{i} {topic}\n"));
    }
    let filling = tokio::spawn(async move {
        within(owner.writer.send_raw(cmds.as_bytes()))
            .await
            .unwrap();
        owner
    });
    let mut owner_r = within(filling).await.unwrap();
    let mut topics = 0;
    while topics < ROOMS {
        if let ServerLine::Ok { verb, .. } = owner_r.line().await
            && verb == "TOPIC"
        {
            topics += 1;
        }
    }
    let before = rss_kib();
    let mut askers = Vec::new();
    for i in 0..ASKERS {
        let mut c = open_with(t, LOCAL, s.addr, Some(4096)).await;
        // Native ROOMS on every transport; IRC LIST where IRC is spoken, for half of them.
        let ask = if speaks_irc(t) && i % 2 == 1 {
            format!("NICK asker{i}\r\nUSER a 0 * :a\r\nLIST\r\nLIST\r\n")
        } else {
            format!("REGISTER asker{i}\nROOMS\nROOMS\n")
        };
        within(c.write_all(ask.as_bytes())).await.unwrap();
        askers.push(c);
    }
    let asked = std::time::Instant::now();
    while metric(s.addr, "natter_slow_consumers_total").await < ASKERS as u64 {
        assert!(
            asked.elapsed() < LIMIT,
            "{} of {ASKERS} non-readers dropped after {:?}",
            metric(s.addr, "natter_slow_consumers_total").await,
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = rss_kib();
    let grown = peak.saturating_sub(before);
    eprintln!(
        "{ASKERS} non-readers asking for {ROOMS} rooms over {t:?}: RSS {before} KiB before, \
         {peak} KiB once all were dropped"
    );
    // Each holds at most its 1 MiB bound and one page; 64 MiB more for the allocator.
    let bound = ASKERS as u64 * (1024 + 64) + 64 * 1024;
    assert!(grown < bound, "RSS grew by {grown} KiB (bound {bound} KiB)");
    drop(askers);
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] fn non_readers_asking_for_every_room_are_bounded_and_dropped);

async fn two_thousand_rapid_connect_disconnect_cycles_leak_nothing(t: Transport) {
    const WORKERS: usize = 4;
    const PER_IP: usize = 64;
    // TLS and WebSocket handshakes cost more than a TCP connect: fewer cycles there.
    let cycles = if t == Transport::Tcp { 2000 } else { 1000 };
    let _serial = SERIAL.lock().await;
    let mut config = config();
    // The per-address limits are on (with rates no cycle reaches), so that their bookkeeping
    // is checked too: after the cycles this address must have exactly its observer open.
    config.policy.exempt_loopback = false;
    config.policy.per_ip_connections = PER_IP;
    config.policy.per_ip_connect_rate = 1e6;
    config.policy.per_ip_connect_burst = 1e6;
    let s = TestServer::with(config).await;
    let addr = s.addr;
    let mut observer = s.user("observer").await;
    let started = std::time::Instant::now();

    let mut workers = JoinSet::new();
    for wk in 0..WORKERS {
        workers.spawn(async move {
            let mut registered = 0;
            for k in 0..cycles / WORKERS {
                let i = k * WORKERS + wk;
                match i % 5 {
                    // Connect and vanish without a word.
                    0 => drop(open(t, LOCAL, addr).await),
                    // A command and gone, without reading anything.
                    1 => {
                        let mut st = open(t, LOCAL, addr).await;
                        within(st.write_all(b"HELP\n")).await.unwrap();
                    }
                    // Register and CLOSE politely.
                    2 => {
                        let mut c = client(t, addr).await;
                        within(c.register(&format!("cyc{i}"))).await.unwrap();
                        c.say("CLOSE").await;
                        let (_, ending) = read_to_close(&mut c.reader, LIMIT).await;
                        assert_ne!(ending, Ending::Open);
                        registered += 1;
                    }
                    // Register and drop the connection.
                    3 => {
                        let mut c = client(t, addr).await;
                        within(c.register(&format!("cyc{i}"))).await.unwrap();
                        registered += 1;
                    }
                    // Register and reset the connection.
                    _ => {
                        let st = wire::tcp_from(LOCAL, addr, None).await;
                        socket2::SockRef::from(&st)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        let (r, w) = tokio::io::split(st);
                        let mut c = Client {
                            reader: LineReader::new(r),
                            writer: natter_conn::LineWriter::new(w),
                        };
                        c.say("").await;
                        c.text().await;
                        within(c.register(&format!("cyc{i}"))).await.unwrap();
                        registered += 1;
                    }
                }
            }
            registered
        });
    }
    let mut registered = 0;
    while let Some(r) = workers.join_next().await {
        registered += r.unwrap();
    }
    let cycles_took = started.elapsed();

    // Every user that came online went offline again; LIST (rendered in order with those
    // events) comes down to the observer alone.
    let (mut online, mut offline) = (HashSet::new(), HashSet::new());
    let mut listed = 0;
    for _ in 0..1000 {
        observer.say("LIST").await;
        let mut users = 0;
        loop {
            match observer.line().await {
                ServerLine::Online { name } => {
                    online.insert(name.into_owned());
                }
                ServerLine::Offline { name, .. } => {
                    offline.insert(name.into_owned());
                }
                ServerLine::User { .. } => users += 1,
                ServerLine::Ok { verb, .. } if verb == "LIST" => break,
                other => panic!("observer: unexpected {other:?}"),
            }
        }
        listed = users;
        if users == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(listed, 1, "registrations leaked");
    assert_eq!(
        online.len(),
        registered,
        "every registration was announced once"
    );
    assert_eq!(online, offline);
    // The server's counters agree: the observer and the /metrics request itself.
    metric_becomes(addr, "natter_connected_clients", 2).await;
    assert_eq!(metric(addr, "natter_registered_users").await, 1);
    assert!(metric(addr, "natter_connections_accepted_total").await >= cycles as u64);
    // The per-address count is back to the observer alone: PER_IP - 1 more fit, and no more.
    let mut more = Vec::new();
    for _ in 1..PER_IP {
        more.push(client(t, addr).await);
    }
    assert_eq!(
        refused_with(addr, LOCAL).await,
        ["BYE TOO_MANY_CONNECTIONS too many connections from your address"]
    );
    eprintln!("{cycles} connect/disconnect cycles over {t:?} in {cycles_took:?}");
    drop(more);
    healthy(addr, OTHER, None).await;
}
on_every_transport!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] fn two_thousand_rapid_connect_disconnect_cycles_leak_nothing);

async fn half_closed_connections_get_their_answers_then_are_closed(t: Transport) {
    const HALF: usize = 50;
    let _serial = SERIAL.lock().await;
    let s = TestServer::with(Config {
        shutdown_grace: Duration::from_secs(1),
        ..config()
    })
    .await;
    let mut watcher = s.user("watcher").await;

    // Fifty at once: commands, the last without its newline, then the end of their input.
    let mut set = JoinSet::new();
    for i in 0..HALF {
        let addr = s.addr;
        set.spawn(async move {
            let (mut r, mut w) = halves(open(t, LOCAL, addr).await);
            w.send_raw(format!("REGISTER half{i}\nLIST\nHELP CLOSE").as_bytes())
                .await
                .unwrap();
            w.shutdown().await.unwrap();
            let (lines, ending) = read_to_close(&mut r, LIMIT).await;
            assert_eq!(ending, Ending::Closed, "half{i}: {lines:?}");
            // The answers, in order, between other users' comings and goings.
            let answers: Vec<&str> = lines
                .iter()
                .map(String::as_str)
                .filter(|l| {
                    !l.starts_with("ONLINE ")
                        && !l.starts_with("OFFLINE ")
                        && !l.starts_with("USER ")
                })
                .collect();
            assert_eq!(answers.len(), 5, "half{i}: {lines:?}");
            assert!(answers[0].starts_with("HELLO "));
            assert_eq!(answers[1], format!("OK REGISTER half{i}"));
            assert!(answers[2].starts_with("OK LIST "), "{lines:?}");
            assert!(answers[3].starts_with("HELP CLOSE "), "{lines:?}");
            assert_eq!(answers[4], "OK HELP");
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }

    // IRC: registration and a PING, then the end of its input.
    if speaks_irc(t) {
        let mut c = Irc::connect_over(t, s.addr).await;
        c.w.send_raw(b"NICK halfirc\r\nUSER halfirc 0 * :h\r\nPING :last\r\n")
            .await
            .unwrap();
        c.w.shutdown().await.unwrap();
        let (lines, ending) = read_to_close(&mut c.r, LIMIT).await;
        assert_eq!(ending, Ending::Closed);
        assert!(lines[0].starts_with(":natter 001 halfirc "), "{lines:?}");
        assert!(
            lines.contains(&":natter PONG natter last".to_owned()),
            "{lines:?}"
        );
    }

    // Half-closed and never reading, with output piling up: the server stops trying after
    // its grace and lets go of the connection.
    let mut mute = open_with(t, LOCAL, s.addr, Some(4096)).await;
    let mut cmds = b"REGISTER mute\n".to_vec();
    for _ in 0..500 {
        cmds.extend_from_slice(b"HELP\n");
    }
    within(mute.write_all(&cmds)).await.unwrap();
    within(mute.shutdown()).await.unwrap();

    // Everyone came and went; the watcher and the /metrics request are all that is left.
    let mut gone = HashSet::new();
    let want = HALF + 1 + usize::from(speaks_irc(t));
    while gone.len() < want {
        match watcher.line().await {
            ServerLine::Offline { name, .. } => {
                gone.insert(name.into_owned());
            }
            ServerLine::Online { .. } => {}
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
    assert!(gone.contains("mute"));
    metric_becomes(s.addr, "natter_connected_clients", 2).await;
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test] fn half_closed_connections_get_their_answers_then_are_closed);

async fn shutdown_says_bye_after_the_queued_lines(t: Transport) {
    let _serial = SERIAL.lock().await;
    let mut s = server().await;
    let mut a = user(t, s.addr, "a").await;
    let mut b = user(t, s.addr, "b").await;
    let mut lurker = client(t, s.addr).await;
    assert_eq!(a.text().await, "ONLINE b");
    assert_eq!(b.ask("MESSAGE before shutdown").await, "OK MESSAGE 1");
    s.begin_stop();
    let bye = "BYE SHUTDOWN the server is shutting down";
    let (lines, ending) = read_to_close(&mut a.reader, LIMIT).await;
    assert_eq!(lines, ["MESSAGE b before shutdown", bye]);
    assert_eq!(ending, Ending::Closed);
    for c in [&mut b, &mut lurker] {
        let (lines, ending) = read_to_close(&mut c.reader, LIMIT).await;
        assert_eq!(lines, [bye]);
        assert_eq!(ending, Ending::Closed);
    }
    s.stopped().await;
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
}
on_every_transport!(#[tokio::test] fn shutdown_says_bye_after_the_queued_lines);

// ---------------------------------------------------------------------------------------------
// Flood control and admission
// ---------------------------------------------------------------------------------------------

async fn a_command_flood_is_delayed_then_disconnected_and_nobody_else_waits(t: Transport) {
    const RATE: f64 = 2.0;
    let _serial = SERIAL.lock().await;
    let limits = FloodLimits {
        commands_per_sec: RATE,
        command_burst: 8.0,
        grace: Duration::from_secs(4),
        ..FloodLimits::default()
    };
    let mut config = config();
    config.policy.flood = Some(limits.clone());
    let s = TestServer::with(config).await;
    let mut watcher = s.user("watcher").await;
    let mut calm = s.user("calm").await;
    let mut flood = user(t, s.addr, "flood").await;
    let irc_t = if speaks_irc(t) { t } else { Transport::Tcp };
    let mut irc = Irc::user_over(irc_t, s.addr, "ircflood").await;
    for name in ["calm", "flood", "ircflood"] {
        assert_eq!(watcher.text().await, format!("ONLINE {name}"));
    }
    assert_eq!(calm.text().await, "ONLINE flood");
    assert_eq!(calm.text().await, "ONLINE ircflood");
    assert_eq!(flood.text().await, "ONLINE ircflood");

    // Over the burst but briefly: the extra lines wait their turn, none is lost. The flooder
    // has spent 2 of its 8 tokens (the greeting's blank line and REGISTER), so 4 of these 10
    // wait for tokens, 2 a second.
    let t0 = std::time::Instant::now();
    for i in 0..10 {
        flood.writer.queue(&format!("MESSAGE a{i}"));
    }
    within(flood.writer.flush()).await.unwrap();
    for _ in 0..10 {
        assert_eq!(flood.text().await, "OK MESSAGE 3");
    }
    let delayed = t0.elapsed();
    assert!(
        (Duration::from_millis(1200)..limits.grace).contains(&delayed),
        "the burst took {delayed:?}"
    );
    for i in 0..10 {
        assert_eq!(watcher.text().await, format!("MESSAGE flood a{i}"));
        assert_eq!(calm.text().await, format!("MESSAGE flood a{i}"));
    }

    // Both flooders keep going: held back for longer than the grace, then told (in their
    // protocol's words) and disconnected.
    for i in 0..200 {
        flood.writer.queue(&format!("MESSAGE b{i}"));
    }
    within(flood.writer.flush()).await.unwrap();
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(format!("PRIVMSG watcher :x{i}\r\n").as_bytes());
    }
    within(irc.w.send_raw(&burst)).await.unwrap();
    // Meanwhile another client's commands are answered at once (were it held back with the
    // flooders, these five would take 2.5 s).
    let t0 = std::time::Instant::now();
    for i in 0..5 {
        calm.say(&format!("MESSAGE c{i}")).await;
        within(
            calm.reader
                .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "MESSAGE")),
        )
        .await
        .unwrap();
    }
    let calm_took = t0.elapsed();
    assert!(
        calm_took < Duration::from_secs(1),
        "a calm client waited {calm_took:?} while others flooded"
    );
    let (lines, ending) = read_to_close(&mut flood.reader, LIMIT).await;
    assert_eq!(ending, Ending::Closed);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("BYE FLOOD you kept sending faster than the server allows"),
        "{lines:?}"
    );
    let accepted = lines
        .iter()
        .filter(|l| l.starts_with("OK MESSAGE "))
        .count();
    assert!(
        (1..=20).contains(&accepted),
        "{accepted} of 200 accepted before the flooder was dropped"
    );
    let (lines, ending) = read_to_close(&mut irc.r, LIMIT).await;
    assert_eq!(ending, Ending::Closed);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ERROR :Closing Link: ircflood (Excess Flood)"),
        "{lines:?}"
    );

    // Every line the server accepted was delivered, in order; then the flooders left.
    let (mut messages, mut dms, mut calm_seen) = (Vec::new(), Vec::new(), 0);
    let mut left = 0;
    while left < 2 {
        match watcher.line().await {
            ServerLine::Message { from, text } if from == "flood" => {
                messages.push(text.into_owned());
            }
            ServerLine::Message { from, .. } if from == "calm" => calm_seen += 1,
            ServerLine::Dm { from, text } if from == "ircflood" => dms.push(text.into_owned()),
            ServerLine::Offline { name, .. } if name == "flood" || name == "ircflood" => left += 1,
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
    let want: Vec<String> = (0..accepted).map(|i| format!("b{i}")).collect();
    assert_eq!(messages, want);
    assert!((1..=20).contains(&dms.len()), "{} DMs", dms.len());
    let want: Vec<String> = (0..dms.len()).map(|i| format!("x{i}")).collect();
    assert_eq!(dms, want);
    assert_eq!(calm_seen, 5);
    // Lets events through, then proves nothing else is queued.
    calm.say("HELP CLOSE").await;
    loop {
        match calm.line().await {
            ServerLine::Help { .. } => break,
            ServerLine::Online { .. }
            | ServerLine::Offline { .. }
            | ServerLine::Message { .. }
            | ServerLine::Dm { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(calm.text().await, "OK HELP");
    assert_healthy(&s).await;
}
on_every_transport!(#[tokio::test] fn a_command_flood_is_delayed_then_disconnected_and_nobody_else_waits);

/// Every connection counts towards its address's limit, whatever it speaks: with the
/// default limit (100), 110 connections from one address leave the last 10 refused.
async fn the_per_address_connection_limit_refuses_the_extra_connections(t: Transport) {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.exempt_loopback = false;
    config.policy.per_ip_connect_rate = 1000.0;
    config.policy.per_ip_connect_burst = 1000.0;
    let per_ip = config.policy.per_ip_connections;
    assert_eq!(per_ip, 100);
    let s = TestServer::with(config).await;
    let mut held = Vec::new();
    for _ in 0..per_ip {
        held.push(client(t, s.addr).await);
    }
    for _ in 0..10 {
        assert_eq!(
            refused_with(s.addr, LOCAL).await,
            ["BYE TOO_MANY_CONNECTIONS too many connections from your address"]
        );
    }
    // Another address is not affected while this one is at its limit.
    healthy(s.addr, OTHER, None).await;
    // A place frees once a connection closes (counted when its task ends, so retried).
    let mut first = held.remove(0);
    assert_eq!(first.ask("CLOSE").await, "BYE CLOSED goodbye");
    let (_, ending) = read_to_close(&mut first.reader, LIMIT).await;
    assert_eq!(ending, Ending::Closed);
    drop(first);
    let mut attempts = 0;
    let again = loop {
        attempts += 1;
        assert!(attempts <= 200, "the closed connection's place never freed");
        let (reader, writer) = halves(open(Transport::Tcp, LOCAL, s.addr).await);
        let mut c = Client { reader, writer };
        c.say("").await;
        match within(c.reader.next_text()).await {
            Ok(Some(l)) if l.starts_with("HELLO ") => break c,
            Ok(Some(l)) => assert!(l.starts_with("BYE TOO_MANY_CONNECTIONS "), "{l}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(again);
    drop(held);
    healthy(s.addr, OTHER, None).await;
}
on_every_transport!(#[tokio::test] fn the_per_address_connection_limit_refuses_the_extra_connections);

async fn the_per_address_connect_rate_refuses_bursts(t: Transport) {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.exempt_loopback = false;
    config.policy.per_ip_connect_rate = 0.1;
    config.policy.per_ip_connect_burst = 5.0;
    let s = TestServer::with(config).await;
    // Five at once are fine, even closed again at once...
    for _ in 0..5 {
        drop(client(t, s.addr).await);
    }
    // ...the sixth is too fast, though nothing of this address is open any more.
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE CONNECT_RATE connecting too fast from your address; try again shortly"]
    );
    // Another address has its own budget (two connections of it, within its burst).
    healthy_over(s.addr, OTHER, None, &[t]).await;
    // One more token after 10 s (paused time), and only one.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut c = client(t, s.addr).await;
    assert_eq!(c.ask("REGISTER patient").await, "OK REGISTER patient");
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE CONNECT_RATE connecting too fast from your address; try again shortly"]
    );
}
on_every_transport!(#[tokio::test(start_paused = true)] fn the_per_address_connect_rate_refuses_bursts);

/// One address cannot use up the server's rooms: once its users have created as many as one
/// address may, it is refused, and a user from another address still creates one.
async fn rooms_created_from_one_address_are_limited(t: Transport) {
    const PER_ADDRESS: usize = 5;
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.exempt_loopback = false;
    config.rooms.per_address = PER_ADDRESS;
    config.rooms.per_user = 3;
    let s = TestServer::with(config).await;
    let mut a = user(t, s.addr, "ann").await;
    let mut b = user(t, s.addr, "bob").await;
    assert_eq!(a.text().await, "ONLINE bob");
    for i in 0..3 {
        assert_eq!(
            a.ask(&format!("JOIN #a{i}")).await,
            format!("MEMBER #a{i} @ann")
        );
        assert_eq!(a.text().await, format!("OK JOIN #a{i} 1"));
    }
    for i in 0..2 {
        assert_eq!(
            b.ask(&format!("JOIN #b{i}")).await,
            format!("MEMBER #b{i} @bob")
        );
        assert_eq!(b.text().await, format!("OK JOIN #b{i} 1"));
    }
    // This address has its five: a sixth room is refused, joining an existing one is not.
    b.expect_error("JOIN #b2", ErrorCode::RoomLimit).await;
    b.say("JOIN #a0").await;
    within(
        b.reader
            .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "JOIN")),
    )
    .await
    .unwrap();
    // Another address creates rooms of its own.
    let mut c = wire::client(t, OTHER, s.addr).await;
    assert_eq!(c.ask("REGISTER cy").await, "OK REGISTER cy");
    assert_eq!(c.ask("JOIN #c0").await, "MEMBER #c0 @cy");
    assert_eq!(c.text().await, "OK JOIN #c0 1");
    // A room that goes away gives its address's place back.
    b.say("PART #b0").await;
    within(
        b.reader
            .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "PART")),
    )
    .await
    .unwrap();
    assert_eq!(b.ask("JOIN #b2").await, "MEMBER #b2 @bob");
    healthy(s.addr, OTHER, None).await;
}
on_every_transport!(#[tokio::test] fn rooms_created_from_one_address_are_limited);

// ---------------------------------------------------------------------------------------------
// The server password
// ---------------------------------------------------------------------------------------------

async fn wrong_and_missing_passwords_are_refused(t: Transport) {
    const PASSWORD: &str = "letmein";
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.policy.password = Some(Secret::new(PASSWORD));
    // The password never shows in the configuration's debug output (logs).
    assert!(!format!("{config:?}").contains(PASSWORD));
    let s = TestServer::with(config).await;
    let mut member = client(Transport::Tcp, s.addr).await;
    assert_eq!(
        member.ask(&format!("PASSWORD {PASSWORD}")).await,
        "OK PASSWORD"
    );
    assert_eq!(member.ask("REGISTER member").await, "OK REGISTER member");

    // Native: no password, then wrong ones; the third wrong one ends the connection.
    let mut m = client(t, s.addr).await;
    m.expect_error("REGISTER mallory", ErrorCode::PasswordRequired)
        .await;
    m.expect_error("MESSAGE hi", ErrorCode::NotRegistered).await;
    m.expect_error("PASSWORD guess1", ErrorCode::BadPassword)
        .await;
    m.expect_error("REGISTER mallory", ErrorCode::PasswordRequired)
        .await;
    m.expect_error("PASSWORD guess2", ErrorCode::BadPassword)
        .await;
    m.say("PASSWORD guess3").await;
    let (lines, ending) = read_to_close(&mut m.reader, LIMIT).await;
    assert_eq!(lines, ["BYE BAD_PASSWORD too many wrong passwords"]);
    assert_eq!(ending, Ending::Closed);

    // Two wrong guesses do not lock out the right password.
    let mut late = client(t, s.addr).await;
    late.expect_error("PASSWORD nope", ErrorCode::BadPassword)
        .await;
    late.expect_error("PASSWORD nope", ErrorCode::BadPassword)
        .await;
    assert_eq!(
        late.ask(&format!("PASSWORD {PASSWORD}")).await,
        "OK PASSWORD"
    );
    assert_eq!(late.ask("REGISTER late").await, "OK REGISTER late");
    assert_eq!(member.text().await, "ONLINE late");

    // IRC: a wrong PASS, and none at all: 464, then ERROR, then closed.
    let mut _ok = None;
    if speaks_irc(t) {
        for pass in [Some("guess"), None] {
            let mut c = Irc::connect_over(t, s.addr).await;
            if let Some(p) = pass {
                c.send(&format!("PASS {p}")).await;
            }
            c.send("NICK ircmal").await;
            c.send("USER ircmal 0 * :m").await;
            let (lines, ending) = read_to_close(&mut c.r, LIMIT).await;
            assert_eq!(
                lines,
                [
                    ":natter 464 * :Password incorrect",
                    "ERROR :Closing Link: (Bad password)"
                ],
                "PASS {pass:?}"
            );
            assert_ne!(ending, Ending::Open);
        }
        // ...and the right one works.
        let c = _ok.insert(Irc::connect_over(t, s.addr).await);
        c.send(&format!("PASS {PASSWORD}")).await;
        c.send("NICK ircok").await;
        c.send("USER ircok 0 * :ok").await;
        c.skip_to(" 001 ircok ").await;
        assert_eq!(member.text().await, "ONLINE ircok");
    }
    // The refused ones never appeared.
    member.expect_quiet().await;
    healthy(s.addr, LOCAL, Some(PASSWORD)).await;
}
on_every_transport!(#[tokio::test] fn wrong_and_missing_passwords_are_refused);
