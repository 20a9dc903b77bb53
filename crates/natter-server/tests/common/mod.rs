//! Test harness: a real server on an ephemeral loopback port, and clients that talk to it.
//!
//! Every wait is bounded by [`LIMIT`] so a broken server fails a test instead of hanging it;
//! the limit is a safety net, never the way a test synchronises.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of the harness.

pub mod binary;
pub mod irc;
pub mod probe;
pub mod wire;

use natter_conn::Client;
use natter_proto::{ErrorCode, ServerLine};
use natter_server::Config;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The configuration [`TestServer::start`] uses; see there.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.policy.exempt_loopback = true;
    c.policy.flood = None;
    c
}

/// [`test_config`] with its store in a SQLite file in `dir`, so that a server started again
/// on it finds what the last one kept.
pub fn on_sqlite(dir: &tempfile::TempDir) -> Config {
    let mut c = test_config();
    c.store = natter_store::Location::Sqlite(dir.path().join("natter.db"));
    c
}

/// The password test accounts use.
pub const PW: &str = "correct-horse";

/// Sends `line` and returns the answer to it (the first OK or ERROR line), skipping events.
pub async fn answer(c: &mut Client, line: &str) -> String {
    c.say(line).await;
    next_answer(c).await
}

/// The next answer (OK, ERROR or BYE line), skipping events.
pub async fn next_answer(c: &mut Client) -> String {
    loop {
        let l = c.text().await;
        if l.starts_with("OK ") || l.starts_with("ERROR ") || l.starts_with("BYE ") {
            return l;
        }
    }
}

/// A user who made their name an account.
pub async fn account_holder(s: &TestServer, name: &str) -> Client {
    let mut c = s.user(name).await;
    assert_eq!(
        answer(&mut c, &format!("ACCOUNT CREATE {PW}")).await,
        format!("OK ACCOUNT CREATE {name}")
    );
    c
}

/// The longest any single wait in a test may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server with the defaults, except that loopback is exempt from the per-address limits
    /// and flood control is off: most tests open many clients from one address and send as
    /// fast as they can. The abuse tests turn both on.
    pub async fn start() -> Self {
        Self::with(test_config()).await
    }

    pub async fn with(config: Config) -> Self {
        raise_fd_limit();
        // Server logs show with a failing test's output; RUST_LOG=debug for every command.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(natter_server::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Connects a client and reads the greeting.
    pub async fn client(&self) -> Client {
        within(Client::connect(self.addr)).await.unwrap()
    }

    /// Connects and registers `name`.
    pub async fn user(&self, name: &str) -> Client {
        let mut c = self.client().await;
        let (got, _) = within(c.register(name)).await.unwrap();
        assert_eq!(got, name);
        c
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            within(t).await.unwrap().unwrap();
        }
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits for a shutdown begun with [`begin_stop`](Self::begin_stop).
    pub async fn stopped(&mut self) {
        self.stop().await;
    }
}

pub fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// Runs `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out: the server did not answer")
}

/// Client conveniences for tests.
pub trait ClientExt {
    /// The next line, which must exist.
    fn line(&mut self) -> impl Future<Output = ServerLine<'static>>;
    /// The next line as text, which must exist.
    fn text(&mut self) -> impl Future<Output = String>;
    /// Sends a line.
    fn say(&mut self, line: &str) -> impl Future<Output = ()>;
    /// Sends a line and returns the next line received.
    fn ask(&mut self, line: &str) -> impl Future<Output = String>;
    /// Sends a line and expects `ERROR <code> ...` as the next line.
    fn expect_error(&mut self, line: &str, code: ErrorCode) -> impl Future<Output = ()>;
    /// Reads until the server closes the connection; returns the lines before that.
    fn until_closed(&mut self) -> impl Future<Output = Vec<String>>;
    /// Proves nothing else is queued for this client: a LIST's answer must come next.
    fn expect_quiet(&mut self) -> impl Future<Output = ()>;
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> ClientExt for Client<R, W> {
    async fn line(&mut self) -> ServerLine<'static> {
        within(self.recv())
            .await
            .unwrap()
            .expect("connection closed")
    }

    async fn text(&mut self) -> String {
        within(self.reader.next_text())
            .await
            .unwrap()
            .expect("connection closed")
    }

    async fn say(&mut self, line: &str) {
        within(self.send(line)).await.unwrap();
    }

    async fn ask(&mut self, line: &str) -> String {
        self.say(line).await;
        self.text().await
    }

    async fn expect_error(&mut self, line: &str, code: ErrorCode) {
        let got = self.ask(line).await;
        let want = format!("ERROR {} ", code.as_str());
        assert!(
            got.starts_with(&want),
            "{line:?}: expected {want:?}..., got {got:?}"
        );
    }

    async fn until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(l) = within(self.reader.next_text()).await.unwrap() {
            lines.push(l);
        }
        lines
    }

    async fn expect_quiet(&mut self) {
        self.say("HELP CLOSE").await;
        let first = self.text().await;
        assert!(first.starts_with("HELP CLOSE"), "unexpected line {first:?}");
        assert_eq!(self.text().await, "OK HELP");
    }
}

/// Like [`ClientExt::expect_quiet`], but lets presence and room events through: proves no
/// further chat line (MESSAGE, DM or SAY) is queued for this client.
pub trait QuietAfterEvents {
    fn expect_quiet_after_events(&mut self) -> impl Future<Output = ()>;
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> QuietAfterEvents for Client<R, W> {
    async fn expect_quiet_after_events(&mut self) {
        self.say("HELP CLOSE").await;
        loop {
            match self.line().await {
                ServerLine::Help { .. } => break,
                ServerLine::Message { .. } | ServerLine::Dm { .. } | ServerLine::Say { .. } => {
                    panic!("a chat line arrived twice")
                }
                _ => {}
            }
        }
        assert_eq!(self.text().await, "OK HELP");
    }
}

/// The server is up and serves normal clients promptly over every transport: on each, two
/// fresh clients connect from `from`, give the password if one is needed, register and
/// exchange a MESSAGE. The server must have TLS ([`wire::with_tls`]).
pub async fn healthy(addr: SocketAddr, from: std::net::IpAddr, password: Option<&str>) {
    healthy_over(addr, from, password, &wire::Transport::ALL).await;
}

/// [`healthy`] over the given transports only.
pub async fn healthy_over(
    addr: SocketAddr,
    from: std::net::IpAddr,
    password: Option<&str>,
    transports: &[wire::Transport],
) {
    static HEALTH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for &t in transports {
        let started = std::time::Instant::now();
        let n = HEALTH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (an, bn) = (format!("healthy{n}a"), format!("healthy{n}b"));
        let mut a = wire::client(t, from, addr).await;
        let mut b = wire::client(t, from, addr).await;
        if let Some(pw) = password {
            for c in [&mut a, &mut b] {
                assert_eq!(c.ask(&format!("PASSWORD {pw}")).await, "OK PASSWORD");
            }
        }
        for (c, name) in [(&mut a, &an), (&mut b, &bn)] {
            let (got, _) = within(c.register(name))
                .await
                .unwrap_or_else(|e| panic!("health check over {t:?}: REGISTER {name}: {e}"));
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
            "health check over {t:?} took {took:?}: the server is slow to serve normal clients"
        );
    }
}
