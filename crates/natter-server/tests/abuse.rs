//! Abuse: what hostile or broken clients do to a real server over real sockets (issue #5).
//!
//! Every case checks three things: the attacker gets a clear `ERROR`/`BYE` line or is
//! disconnected (and when a last line is sent, which one), the server is still up, and a
//! normal client still connects, registers and gets a MESSAGE round-trip promptly
//! ([`assert_healthy`]).
//!
//! The cases run one at a time (see [`SERIAL`]): two of them measure the memory of this
//! process, which the server shares, and the timing checks of the flood case should not
//! compete with a storm of 500 clients on a two-core machine.

mod common;

use common::{ClientExt, LIMIT, QuietAfterEvents, TestServer, test_config, within};
use natter_conn::{Client, LineReader, LineWriter};
use natter_proto::{ErrorCode, ServerLine};
use natter_server::Assume;
use natter_server::Config;
use natter_server::config::Secret;
use natter_server::throttle::FloodLimits;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The address attackers (and most test clients) connect from.
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address, for a bystander the per-address limits must not touch.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Held by every test of this file, so they run one at a time whatever the harness's thread
/// count: memory is measured for the whole process, and timing checks need a quiet machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Numbers the health-check clients, so their names never collide.
static HEALTH: AtomicUsize = AtomicUsize::new(0);

/// A TCP connection from `from` (a loopback address) to `addr`.
async fn tcp_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = within(sock.connect(addr)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn client_of(stream: TcpStream) -> Client {
    let (r, w) = stream.into_split();
    Client {
        reader: LineReader::new(r),
        writer: LineWriter::new(w),
    }
}

/// A native client from `from`, past the greeting.
async fn client_from(from: IpAddr, addr: SocketAddr) -> Client {
    let mut c = client_of(tcp_from(from, addr).await);
    c.say("").await;
    let hello = c.text().await;
    assert!(hello.starts_with("HELLO "), "expected HELLO, got {hello:?}");
    c
}

/// The server is up and serves normal clients promptly: two fresh clients connect, register
/// and exchange a MESSAGE.
async fn assert_healthy(s: &TestServer) {
    healthy(s.addr, LOCAL, None).await;
}

/// [`assert_healthy`] against any address, from any loopback address, with a password if the
/// server wants one.
async fn healthy(addr: SocketAddr, from: IpAddr, password: Option<&str>) {
    let started = std::time::Instant::now();
    let n = HEALTH.fetch_add(1, Ordering::Relaxed);
    let (an, bn) = (format!("healthy{n}a"), format!("healthy{n}b"));
    let mut a = client_from(from, addr).await;
    let mut b = client_from(from, addr).await;
    if let Some(pw) = password {
        for c in [&mut a, &mut b] {
            assert_eq!(c.ask(&format!("PASSWORD {pw}")).await, "OK PASSWORD");
        }
    }
    for (c, name) in [(&mut a, &an), (&mut b, &bn)] {
        let (got, _) = within(c.register(name))
            .await
            .unwrap_or_else(|e| panic!("health check: REGISTER {name} failed: {e}"));
        assert_eq!(&got, name);
    }
    let text = format!("round trip {n}");
    a.say(&format!("MESSAGE {text}")).await;
    within(
        a.reader
            .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "MESSAGE")),
    )
    .await
    .unwrap();
    within(b.reader.until(
        |l| matches!(l, ServerLine::Message { from, text: t } if *from == an && *t == text),
    ))
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "health check took {took:?}: the server is slow to serve normal clients"
    );
}

/// How a connection ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The server closed it (FIN).
    Closed,
    /// The server reset it (RST): it closed with input of ours still unread.
    Reset,
    /// Still open when the wait ended.
    Open,
}

/// Reads lines until the server closes the connection or `limit` passes (paused time in
/// paused tests); returns the lines (lossily decoded) and how it ended.
async fn read_to_close<R: tokio::io::AsyncRead + Unpin>(
    r: &mut LineReader<R>,
    limit: Duration,
) -> (Vec<String>, Ending) {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, r.next_raw()).await {
            Err(_) => return (lines, Ending::Open),
            Ok(Ok(Some(l))) => lines.push(String::from_utf8_lossy(&l).into_owned()),
            Ok(Ok(None)) => return (lines, Ending::Closed),
            // A partial last line: the connection was cut in the middle of a line.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return (lines, Ending::Closed);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return (lines, Ending::Reset);
            }
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }
}

/// What a connection refused at accept receives: connects from `from` without sending
/// anything (so the refusal closes with a FIN, never a reset) and reads to the end.
async fn refused_with(addr: SocketAddr, from: IpAddr) -> Vec<String> {
    let (r, _w) = tcp_from(from, addr).await.into_split();
    let (lines, ending) = read_to_close(&mut LineReader::new(r), LIMIT).await;
    assert_eq!(
        ending,
        Ending::Closed,
        "refused connection not closed: {lines:?}"
    );
    lines
}

/// Writes `data` one byte per `every`, until it is all sent or the server has closed the
/// connection; returns how many bytes went out.
async fn trickle(mut w: OwnedWriteHalf, data: Vec<u8>, every: Duration) -> usize {
    for (i, b) in data.iter().enumerate() {
        tokio::time::sleep(every).await;
        if w.write_all(&[*b]).await.is_err() {
            return i;
        }
    }
    data.len()
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// One HTTP/1.1 GET from `from`; returns the status and the body.
async fn http_get(addr: SocketAddr, from: IpAddr, path: &str) -> (u16, String) {
    let mut s = tcp_from(from, addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    within(s.write_all(req.as_bytes())).await.unwrap();
    let mut raw = Vec::new();
    within(s.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// One metric from `/metrics` (asked from [`OTHER`], outside the attackers' address).
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, body) = http_get(addr, OTHER, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from {body}"))
        .parse()
        .unwrap()
}

/// Polls `/metrics` until `name` equals `want` (the server counts a connection closed only
/// once its task has finished, a moment after the client sees the close).
async fn metric_becomes(addr: SocketAddr, name: &str, want: u64) {
    let mut last = u64::MAX;
    for _ in 0..500 {
        last = metric(addr, name).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} stayed at {last}, expected {want}");
}

/// Seeded pseudo-random bytes (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// A raw IRC connection: lines out with CRLF, lines in without.
struct Irc {
    r: LineReader,
    w: LineWriter,
}

impl Irc {
    async fn connect(addr: SocketAddr) -> Self {
        let (r, w) = tcp_from(LOCAL, addr).await.into_split();
        Self {
            r: LineReader::new(r),
            w: LineWriter::new(w),
        }
    }

    /// Connects and registers as `nick`, up to the everyone channel's NAMES.
    async fn user(addr: SocketAddr, nick: &str) -> Self {
        let mut c = Self::connect(addr).await;
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick}")).await;
        c.skip_to(" 366 ").await;
        c
    }

    async fn send(&mut self, line: &str) {
        within(self.w.send_raw(format!("{line}\r\n").as_bytes()))
            .await
            .unwrap();
    }

    async fn line(&mut self) -> String {
        within(self.r.next_text())
            .await
            .unwrap()
            .expect("connection closed")
    }

    async fn skip_to(&mut self, needle: &str) -> String {
        loop {
            let l = self.line().await;
            if l.contains(needle) {
                return l;
            }
        }
    }
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
        natter_server::Listener {
            socket: main,
            assume: Assume::Line,
        },
        natter_server::Listener {
            socket: irc,
            assume: Assume::Irc,
        },
        natter_server::Listener {
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

#[tokio::test(start_paused = true)]
async fn slowloris_trickling_a_line_is_cut_at_the_registration_deadline() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    assert_eq!(test_config().policy.register_timeout, REGISTER_TIMEOUT);
    let start = Instant::now();
    let (r, w) = tcp_from(LOCAL, s.addr).await.into_split();
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

#[tokio::test(start_paused = true)]
async fn slowloris_on_irc_is_cut_at_the_registration_deadline() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let mut watcher = s.user("watcher").await;
    let start = Instant::now();
    let (r, mut w) = tcp_from(LOCAL, s.addr).await.into_split();
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
async fn slowloris_on_http_headers_is_cut_by_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let start = Instant::now();
    let (r, mut w) = tcp_from(LOCAL, s.addr).await.into_split();
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

#[tokio::test(start_paused = true)]
async fn registration_and_idle_deadlines_end_silent_and_stalling_clients() {
    const IDLE: Duration = Duration::from_secs(300);
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.idle_timeout = Some(IDLE);
    let s = TestServer::with(config).await;
    let start = Instant::now();

    // Connects and never says a word: greeted once the sniffer stops waiting, then timed out.
    let silent = async {
        let (r, _w) = tcp_from(LOCAL, s.addr).await.into_split();
        let (lines, ending) = read_to_close(&mut LineReader::new(r), 2 * REGISTER_TIMEOUT).await;
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
        let mut c = client_from(LOCAL, s.addr).await;
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
        let mut c = Irc::connect(s.addr).await;
        c.send("NICK stalled").await;
        let (lines, ending) = read_to_close(&mut c.r, 2 * REGISTER_TIMEOUT).await;
        assert_eq!(lines, ["ERROR :Closing Link: (Registration timeout)"]);
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // Registered and then silent: the idle timeout (off by default) ends it.
    let idler = async {
        let mut c = s.user("idler").await;
        let (lines, ending) = read_to_close(&mut c.reader, 2 * IDLE).await;
        let lines: Vec<_> = lines
            .into_iter()
            .filter(|l| !l.starts_with("ONLINE ") && !l.starts_with("OFFLINE "))
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("BYE TIMEOUT "), "{lines:?}");
        assert_ne!(ending, Ending::Open);
        start.elapsed()
    };
    // Registered and speaking now and then: never idle for long enough.
    let talker = async {
        let mut c = s.user("talker").await;
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

/// A registered client dropped by the idle timeout is told why (`idle for too long`), not
/// told to register.
#[tokio::test(start_paused = true)]
async fn an_idle_registered_client_is_told_why() {
    const IDLE: Duration = Duration::from_secs(300);
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.idle_timeout = Some(IDLE);
    let s = TestServer::with(config).await;
    let mut c = s.user("idler").await;
    let start = Instant::now();
    let (lines, ending) = read_to_close(&mut c.reader, 2 * IDLE).await;
    let took = start.elapsed();
    assert_ne!(ending, Ending::Open);
    assert!(
        (IDLE..IDLE + Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    assert_eq!(
        lines,
        ["BYE TIMEOUT idle for too long"],
        "a registered client timed out for idleness must be told why"
    );
    assert_healthy(&s).await;
}

// ---------------------------------------------------------------------------------------------
// Hostile bytes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_ten_mib_line_gets_one_error_and_costs_no_memory() {
    const MIB: usize = 1024 * 1024;
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let mut a = s.user("long").await;
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
    eprintln!("10 MiB line: RSS grew {grown} KiB");
    assert!(
        grown < 4 * 1024,
        "RSS grew by {grown} KiB for a 10 MiB line: is the line being kept?"
    );
    assert_eq!(a.ask("MESSAGE still here").await, "OK MESSAGE 1");
    assert_eq!(w.text().await, "MESSAGE long still here");

    // The same on IRC: one 417, and the connection goes on.
    let mut irc = Irc::user(s.addr, "longirc").await;
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
    assert_healthy(&s).await;
}

/// A client streaming bytes faster than `bytes_per_sec` for longer than the grace gets
/// `BYE FLOOD`: it is relieved only when a read finds its socket empty, which never happens
/// to a client that sends without pause.
#[tokio::test(start_paused = true)]
async fn a_byte_flood_under_default_limits_is_disconnected() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.flood = Some(FloodLimits::default());
    let limits = FloodLimits::default();
    let s = TestServer::with(config).await;
    let a = s.user("bytes").await;
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
        "after {took:?} of a 10 MiB line at {} B/s (grace {:?}) the byte flooder is \
         still connected; lines: {lines:?}",
        limits.bytes_per_sec,
        limits.grace,
    );
    assert_healthy(&s).await;
}

#[tokio::test]
async fn random_binary_gets_errors_and_the_connection_stays_usable() {
    const SEEDS: [u64; 4] = [1, 0x5eed, 0xdead_beef, 0x1234_5678_9abc_def0];
    const SIZE: usize = 256 * 1024;
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
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
            let (r, mut w) = tcp_from(LOCAL, s.addr).await.into_split();
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
    let mut irc = Irc::user(s.addr, "junkirc").await;
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
    assert_healthy(&s).await;
}

#[tokio::test]
async fn nul_bytes_are_refused_wherever_they_appear() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let mut watcher = s.user("watcher").await;

    // NULs as the very first bytes of a connection.
    let mut c = client_of(tcp_from(LOCAL, s.addr).await);
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
    let mut irc = Irc::user(s.addr, "nulirc").await;
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
    // The watcher got no message and no rename.
    watcher.expect_quiet().await;
    assert_healthy(&s).await;
}

// ---------------------------------------------------------------------------------------------
// The wrong protocol on a port
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_tls_client_hello_on_the_plain_shared_port_is_closed_without_an_answer() {
    let _serial = SERIAL.lock().await;
    let s = TestServer::start().await;
    let accepted = metric(s.addr, "natter_connections_accepted_total").await;
    let mut tls = tcp_from(LOCAL, s.addr).await;
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
    assert_healthy(&s).await;
}

#[tokio::test]
async fn the_line_protocol_on_the_web_listener_gets_a_400() {
    let _serial = SERIAL.lock().await;
    let m = multi(test_config()).await;
    let (r, mut w) = tcp_from(LOCAL, m.web).await.into_split();
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
    let m = multi(test_config()).await;
    let mut watcher = client_from(LOCAL, m.main).await;
    assert_eq!(watcher.ask("REGISTER watcher").await, "OK REGISTER watcher");

    let body =
        "NICK victim\r\nUSER victim 0 * :victim\r\nPRIVMSG #everyone :forged by a web page\r\n";
    let post = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        m.irc,
        body.len()
    );
    let (r, mut w) = tcp_from(LOCAL, m.irc).await.into_split();
    w.write_all(post.as_bytes()).await.unwrap();
    let (post_lines, post_ending) =
        read_to_close(&mut LineReader::new(r), Duration::from_secs(3)).await;

    let (r, mut w) = tcp_from(LOCAL, m.irc).await.into_split();
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

// ---------------------------------------------------------------------------------------------
// Many clients
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sloths_in_a_broadcast_storm_are_dropped_and_memory_stays_bounded() {
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
        ..test_config()
    })
    .await;
    let before = rss_kib();

    // Readers check that every storm message arrives once, in order; they report progress as
    // (sloths online, sloths offline, next message expected).
    let mut readers = JoinSet::new();
    let mut progress = Vec::new();
    for i in 0..READERS {
        let (mut r, w) = s.user(&format!("reader{i}")).await.split();
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
                    ServerLine::Offline { name } if name.starts_with("sloth") => {
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
    let (mut storm_r, mut storm_w) = s.user("storm").await.split();

    // The sloths register and never read again; a tiny receive buffer keeps the kernel from
    // absorbing the storm on their behalf.
    let mut sloths = Vec::with_capacity(SLOTHS);
    for i in 0..SLOTHS {
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut st = within(sock.connect(s.addr)).await.unwrap();
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
        "sloth storm: {seq} messages of 1 KB in {storm_took:?}; RSS {before} KiB before, \
         {with_sloths} KiB with {SLOTHS} sloths, {after} KiB after"
    );
    // Each sloth may cost about twice its outbox before it is dropped (16 MiB for all of
    // them, at once); 64 MiB leaves room for the allocator and the runtime.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_rapid_connect_disconnect_cycles_leak_nothing() {
    const CYCLES: usize = 2000;
    const WORKERS: usize = 4;
    const PER_IP: usize = 64;
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
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
            for k in 0..CYCLES / WORKERS {
                let i = k * WORKERS + wk;
                match i % 5 {
                    // Connect and vanish without a word.
                    0 => drop(tcp_from(LOCAL, addr).await),
                    // A command and gone, without reading anything.
                    1 => {
                        let mut st = tcp_from(LOCAL, addr).await;
                        within(st.write_all(b"HELP\n")).await.unwrap();
                    }
                    // Register and CLOSE politely.
                    2 => {
                        let mut c = client_from(LOCAL, addr).await;
                        within(c.register(&format!("cyc{i}"))).await.unwrap();
                        c.say("CLOSE").await;
                        let (_, ending) = read_to_close(&mut c.reader, LIMIT).await;
                        assert_ne!(ending, Ending::Open);
                        registered += 1;
                    }
                    // Register and drop the connection.
                    3 => {
                        let mut c = client_from(LOCAL, addr).await;
                        within(c.register(&format!("cyc{i}"))).await.unwrap();
                        registered += 1;
                    }
                    // Register and reset the connection.
                    _ => {
                        let st = tcp_from(LOCAL, addr).await;
                        socket2::SockRef::from(&st)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        let mut c = client_of(st);
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
                ServerLine::Offline { name } => {
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
    assert!(metric(addr, "natter_connections_accepted_total").await >= CYCLES as u64);
    // The per-address count is back to the observer alone: PER_IP - 1 more fit, and no more.
    let mut more = Vec::new();
    for _ in 1..PER_IP {
        more.push(client_from(LOCAL, addr).await);
    }
    assert_eq!(
        refused_with(addr, LOCAL).await,
        ["BYE TOO_MANY_CONNECTIONS too many connections from your address"]
    );
    eprintln!("{CYCLES} connect/disconnect cycles in {cycles_took:?}");
    drop(more);
    healthy(addr, OTHER, None).await;
}

#[tokio::test]
async fn half_closed_sockets_get_their_answers_then_are_closed() {
    const HALF: usize = 50;
    let _serial = SERIAL.lock().await;
    let s = TestServer::with(Config {
        shutdown_grace: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let mut watcher = s.user("watcher").await;

    // Fifty at once: commands, the last without its newline, then shutdown(Write).
    let mut set = JoinSet::new();
    for i in 0..HALF {
        let addr = s.addr;
        set.spawn(async move {
            let (r, mut w) = tcp_from(LOCAL, addr).await.into_split();
            w.write_all(format!("REGISTER half{i}\nLIST\nHELP CLOSE").as_bytes())
                .await
                .unwrap();
            w.shutdown().await.unwrap();
            let (lines, ending) = read_to_close(&mut LineReader::new(r), LIMIT).await;
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

    // IRC: registration and a PING, then shutdown(Write).
    let (r, mut w) = tcp_from(LOCAL, s.addr).await.into_split();
    w.write_all(b"NICK halfirc\r\nUSER halfirc 0 * :h\r\nPING :last\r\n")
        .await
        .unwrap();
    w.shutdown().await.unwrap();
    let (lines, ending) = read_to_close(&mut LineReader::new(r), LIMIT).await;
    assert_eq!(ending, Ending::Closed);
    assert!(lines[0].starts_with(":natter 001 halfirc "), "{lines:?}");
    assert!(
        lines.contains(&":natter PONG natter last".to_owned()),
        "{lines:?}"
    );

    // Half-closed and never reading, with output piling up: the server stops trying after
    // its grace and lets go of the connection.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut mute = within(sock.connect(s.addr)).await.unwrap();
    let mut cmds = b"REGISTER mute\n".to_vec();
    for _ in 0..500 {
        cmds.extend_from_slice(b"HELP\n");
    }
    within(mute.write_all(&cmds)).await.unwrap();
    within(mute.shutdown()).await.unwrap();

    // Everyone came and went; the watcher and the /metrics request are all that is left.
    let mut gone = HashSet::new();
    while gone.len() < HALF + 2 {
        match watcher.line().await {
            ServerLine::Offline { name } => {
                gone.insert(name.into_owned());
            }
            ServerLine::Online { .. } => {}
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
    assert!(gone.contains("mute") && gone.contains("halfirc"));
    metric_becomes(s.addr, "natter_connected_clients", 2).await;
    assert_healthy(&s).await;
}

// ---------------------------------------------------------------------------------------------
// Flood control and admission
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_command_flood_is_delayed_then_disconnected_and_nobody_else_waits() {
    const RATE: f64 = 2.0;
    let _serial = SERIAL.lock().await;
    let limits = FloodLimits {
        commands_per_sec: RATE,
        command_burst: 8.0,
        grace: Duration::from_secs(4),
        ..FloodLimits::default()
    };
    let mut config = test_config();
    config.policy.flood = Some(limits.clone());
    let s = TestServer::with(config).await;
    let mut watcher = s.user("watcher").await;
    let mut calm = s.user("calm").await;
    let mut flood = s.user("flood").await;
    let mut irc = Irc::user(s.addr, "ircflood").await;
    for name in ["calm", "flood", "ircflood"] {
        assert_eq!(watcher.text().await, format!("ONLINE {name}"));
    }
    assert_eq!(calm.text().await, "ONLINE flood");
    assert_eq!(calm.text().await, "ONLINE ircflood");
    assert_eq!(flood.text().await, "ONLINE ircflood");

    // Over the burst but briefly: the extra lines wait their turn, none is lost. The flooder
    // has spent 2 of its 8 tokens (the greeting's blank line and REGISTER), so 4 of these 10
    // wait for tokens, 2 a second.
    let t = std::time::Instant::now();
    for i in 0..10 {
        flood.writer.queue(&format!("MESSAGE a{i}"));
    }
    within(flood.writer.flush()).await.unwrap();
    for _ in 0..10 {
        assert_eq!(flood.text().await, "OK MESSAGE 3");
    }
    let delayed = t.elapsed();
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
    let t = std::time::Instant::now();
    for i in 0..5 {
        calm.say(&format!("MESSAGE c{i}")).await;
        within(
            calm.reader
                .until(|l| matches!(l, ServerLine::Ok { verb, .. } if verb == "MESSAGE")),
        )
        .await
        .unwrap();
    }
    let calm_took = t.elapsed();
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
            ServerLine::Offline { name } if name == "flood" || name == "ircflood" => left += 1,
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
    let want: Vec<String> = (0..accepted).map(|i| format!("b{i}")).collect();
    assert_eq!(messages, want);
    assert!((1..=20).contains(&dms.len()), "{} DMs", dms.len());
    let want: Vec<String> = (0..dms.len()).map(|i| format!("x{i}")).collect();
    assert_eq!(dms, want);
    assert_eq!(calm_seen, 5);
    calm.expect_quiet_after_events_ok().await;
    assert_healthy(&s).await;
}

/// Lets events through, then proves nothing else is queued.
trait QuietOk {
    async fn expect_quiet_after_events_ok(&mut self);
}

impl QuietOk for Client {
    async fn expect_quiet_after_events_ok(&mut self) {
        self.say("HELP CLOSE").await;
        loop {
            match self.line().await {
                ServerLine::Help { .. } => break,
                ServerLine::Online { .. }
                | ServerLine::Offline { .. }
                | ServerLine::Message { .. }
                | ServerLine::Dm { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(self.text().await, "OK HELP");
    }
}

#[tokio::test]
async fn the_per_address_connection_limit_refuses_the_extra_connection() {
    const PER_IP: usize = 3;
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.exempt_loopback = false;
    config.policy.per_ip_connections = PER_IP;
    config.policy.per_ip_connect_rate = 1000.0;
    config.policy.per_ip_connect_burst = 1000.0;
    let s = TestServer::with(config).await;
    let mut held = Vec::new();
    for _ in 0..PER_IP {
        held.push(client_from(LOCAL, s.addr).await);
    }
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE TOO_MANY_CONNECTIONS too many connections from your address"]
    );
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
        let mut c = client_of(tcp_from(LOCAL, s.addr).await);
        c.say("").await;
        match within(c.reader.next_text()).await {
            Ok(Some(l)) if l.starts_with("HELLO ") => break c,
            Ok(Some(l)) => assert!(l.starts_with("BYE TOO_MANY_CONNECTIONS "), "{l}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    held.push(again);
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE TOO_MANY_CONNECTIONS too many connections from your address"]
    );
    healthy(s.addr, OTHER, None).await;
}

#[tokio::test(start_paused = true)]
async fn the_per_address_connect_rate_refuses_bursts() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.exempt_loopback = false;
    config.policy.per_ip_connect_rate = 0.1;
    config.policy.per_ip_connect_burst = 5.0;
    let s = TestServer::with(config).await;
    // Five at once are fine, even closed again at once...
    for _ in 0..5 {
        drop(client_from(LOCAL, s.addr).await);
    }
    // ...the sixth is too fast, though nothing of this address is open any more.
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE CONNECT_RATE connecting too fast from your address; try again shortly"]
    );
    // Another address has its own budget.
    healthy(s.addr, OTHER, None).await;
    // One more token after 10 s (paused time), and only one.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut c = client_from(LOCAL, s.addr).await;
    assert_eq!(c.ask("REGISTER patient").await, "OK REGISTER patient");
    assert_eq!(
        refused_with(s.addr, LOCAL).await,
        ["BYE CONNECT_RATE connecting too fast from your address; try again shortly"]
    );
}

// ---------------------------------------------------------------------------------------------
// The server password
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_and_missing_passwords_are_refused() {
    const PASSWORD: &str = "letmein";
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.policy.password = Some(Secret::new(PASSWORD));
    // The password never shows in the configuration's debug output (logs).
    assert!(!format!("{config:?}").contains(PASSWORD));
    let s = TestServer::with(config).await;
    let mut member = client_from(LOCAL, s.addr).await;
    assert_eq!(
        member.ask(&format!("PASSWORD {PASSWORD}")).await,
        "OK PASSWORD"
    );
    assert_eq!(member.ask("REGISTER member").await, "OK REGISTER member");

    // Native: no password, then wrong ones; the third wrong one ends the connection.
    let mut m = client_from(LOCAL, s.addr).await;
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
    let mut late = client_from(LOCAL, s.addr).await;
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
    for pass in [Some("guess"), None] {
        let mut c = Irc::connect(s.addr).await;
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
    let mut c = Irc::connect(s.addr).await;
    c.send(&format!("PASS {PASSWORD}")).await;
    c.send("NICK ircok").await;
    c.send("USER ircok 0 * :ok").await;
    c.skip_to(" 001 ircok ").await;
    // The refused ones never appeared.
    assert_eq!(member.text().await, "ONLINE ircok");
    member.expect_quiet().await;
    healthy(s.addr, LOCAL, Some(PASSWORD)).await;
}
