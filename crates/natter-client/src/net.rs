//! The network thread: one named thread running a tokio runtime, speaking to the server with
//! natter-conn and to the UI through channels.
//!
//! The UI sends [`NetCommand`]s; the thread answers with [`NetEvent`]s and wakes the UI with
//! `request_repaint` after each one. The thread knows nothing of names, rooms or answers: it
//! connects, forwards lines both ways, and when a connection that was up is lost it reconnects
//! with backoff until told otherwise. What to send after a reconnect is the model's decision.
//!
//! With [`NetConfig::tls`] every connection, reconnects included, is TLS, checked against
//! the configured roots; a certificate that does not check out is a [`ConnectError`] for the
//! user to read, never a fallback to plain TCP.

use natter_conn::rustls;
use natter_conn::{Client, LineReader, LineWriter, TlsClient};
use natter_proto::limits::MAX_SERVER_LINE_BYTES;
use natter_proto::{ByeReason, ServerLine};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc as tmpsc;

/// What the UI asks the network thread to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCommand {
    /// Connect to `host:port`, closing any current connection first.
    Connect {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Send one command line (without its LF).
    Send(String),
    /// Skip the rest of the backoff wait and try to reconnect now.
    RetryNow,
    /// Send `CLOSE`, wait briefly for `BYE`, and stay disconnected.
    Close,
}

/// What the network thread reports to the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A connection is up and the server greeted us; `reconnect` is true after a loss.
    Connected {
        /// The address connected to.
        addr: String,
        /// Whether this replaces a connection that was lost.
        reconnect: bool,
        /// Whether the connection is TLS (and the server's certificate checked out).
        tls: bool,
    },
    /// One line from the server, with the tags it came with (after `TAGS ON`).
    Line(ServerLine<'static>, LineTags),
    /// A line that is not a valid server line, shown as it came.
    Garbled(String),
    /// The first connection attempt failed; nothing more happens until the next `Connect`.
    Failed(ConnectError),
    /// A connection that was up is gone; the thread tries again after `retry_in`.
    Lost {
        /// Why the connection ended (attempt 0), or why the last attempt failed.
        error: String,
        /// How many attempts have failed since the connection was lost (0 right after it).
        attempt: u32,
        /// How long until the next attempt.
        retry_in: Duration,
    },
    /// The connection was closed at our request.
    Closed,
}

/// The tags before a server line (`@time=...;id=... `), owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTags {
    /// The server's time, RFC 3339 in UTC.
    pub time: Option<String>,
    /// The id of the kept message the line carries or acknowledges.
    pub id: Option<i64>,
}

impl LineTags {
    /// Splits a raw line into its tags and the line itself.
    pub fn split(raw: &str) -> (Self, &str) {
        let (tags, rest) = natter_proto::tags::split(raw);
        let owned = Self {
            time: tags.time.map(str::to_owned),
            id: tags.id,
        };
        (owned, rest)
    }
}

/// Why a connection attempt failed, in the terms a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The port is not a number from 1 to 65535.
    BadPort(String),
    /// The host name does not resolve.
    UnknownHost {
        /// The name as typed.
        host: String,
    },
    /// Nothing listens there.
    Refused {
        /// `host:port` as typed.
        target: String,
    },
    /// No connection or no greeting within the time limit.
    TimedOut {
        /// `host:port` as typed.
        target: String,
        /// The limit that passed.
        after: Duration,
    },
    /// Something answered, but not a natter server: what it looked like.
    NotNatter {
        /// `host:port` as typed.
        target: String,
        /// What answered.
        what: Stranger,
    },
    /// The server answered `BYE` instead of `HELLO` (it is full).
    Turned {
        /// The server's reason.
        text: String,
    },
    /// The CA file given for TLS cannot be read or holds no usable certificate.
    BadCa {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The server's certificate is not trusted (unknown issuer, wrong name, expired...).
    Certificate {
        /// `host:port` as typed.
        target: String,
        /// rustls's reason.
        detail: String,
    },
    /// The TLS handshake failed for another reason (often: no TLS on that port).
    Tls {
        /// `host:port` as typed.
        target: String,
        /// The reason.
        detail: String,
    },
    /// Anything else, with the system's words.
    Other {
        /// `host:port` as typed.
        target: String,
        /// The error.
        detail: String,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPort(p) => write!(f, "Invalid port \"{p}\": use a number from 1 to 65535."),
            Self::UnknownHost { host } => {
                write!(
                    f,
                    "Unknown host \"{host}\": the name could not be resolved."
                )
            }
            Self::Refused { target } => write!(
                f,
                "Connection refused by {target}: is natter-server running on that port?"
            ),
            Self::TimedOut { target, after } => write!(
                f,
                "Timed out: {target} did not answer within {} s.",
                after.as_secs_f32()
            ),
            Self::Turned { text } => write!(f, "The server turned us away: {text}."),
            Self::NotNatter { target, what } => match what {
                Stranger::Http(first) => write!(
                    f,
                    "{target} is a web server, not a natter server: it answered \"{first}\". \
                     Is that the right port?"
                ),
                Stranger::Irc(first) => write!(
                    f,
                    "{target} is an IRC server, not a natter server: it answered \"{first}\". \
                     Use an IRC client there, or natter's own port here."
                ),
                Stranger::Tls => write!(
                    f,
                    "{target} speaks TLS: it answered with a TLS record instead of a greeting. \
                     Start natter-client with --tls to connect to it."
                ),
                Stranger::Silent(after) => write!(
                    f,
                    "Timed out: {target} accepted the connection but said nothing within {} s. \
                     A natter server greets at once, so this is probably another kind of \
                     server: a web server, or one that expects TLS (then use --tls).",
                    after.as_secs_f32()
                ),
                Stranger::Closed => write!(
                    f,
                    "{target} closed the connection at once, without a greeting: it is not a \
                     natter server, or it does not accept connections from here."
                ),
                Stranger::Other(first) => write!(
                    f,
                    "{target} is not a natter server: it answered \"{first}\" instead of \
                     natter's HELLO."
                ),
            },
            Self::BadCa { path, detail } => {
                write!(f, "Cannot use the CA file {path} for TLS: {detail}.")
            }
            Self::Certificate { target, detail } => write!(
                f,
                "Certificate error: {target} presented a certificate this client does not \
                 trust ({detail}). Trust the CA that signed it with --tls-ca, or give the \
                 name it was issued for with --tls-name."
            ),
            Self::Tls { target, detail } => write!(
                f,
                "TLS with {target} failed: {detail}. Does the server speak TLS on that port?"
            ),
            Self::Other { target, detail } => write!(f, "Could not connect to {target}: {detail}."),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// A few words for a status line ("connection refused").
    pub fn short(&self) -> String {
        match self {
            Self::BadPort(_) => "invalid port".into(),
            Self::UnknownHost { .. } => "unknown host".into(),
            Self::Refused { .. } => "connection refused".into(),
            Self::TimedOut { .. } => "timed out".into(),
            Self::Turned { text } => text.clone(),
            Self::NotNatter { what, .. } => match what {
                Stranger::Http(_) => "a web server, not natter".into(),
                Stranger::Irc(_) => "an IRC server, not natter".into(),
                Stranger::Tls => "a TLS server: use --tls".into(),
                Stranger::Silent(_) => "no greeting".into(),
                Stranger::Closed => "closed without a greeting".into(),
                Stranger::Other(_) => "not a natter server".into(),
            },
            Self::BadCa { .. } => "unusable CA file".into(),
            Self::Certificate { .. } => "untrusted certificate".into(),
            Self::Tls { .. } => "TLS failed".into(),
            Self::Other { detail, .. } => detail.clone(),
        }
    }
}

/// What answered in place of a natter server's `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stranger {
    /// A web server; its status line.
    Http(String),
    /// An IRC server; its first line.
    Irc(String),
    /// A TLS server: it sent a handshake or an alert record.
    Tls,
    /// It accepted the connection and said nothing for this long.
    Silent(Duration),
    /// It closed the connection without a word.
    Closed,
    /// Something else; its first line.
    Other(String),
}

/// How much of a stranger's first line an error message quotes.
const QUOTE_CHARS: usize = 60;

/// Sorts out what sent `first` (the first bytes read, possibly none) where a natter greeting
/// was expected. Pure, so every kind of stranger is unit-tested.
pub fn what_answered(first: &[u8]) -> Stranger {
    // TLS records start with their content type: 0x16 a handshake, 0x15 an alert, then the
    // major version 3. Most TLS servers wait for a whole record header (five bytes) before
    // answering our one-byte blank line, so for them the sign is silence; this catches those
    // that speak first or answer at once.
    if let [0x15 | 0x16, rest @ ..] = first
        && rest.first().is_none_or(|&b| b == 3)
    {
        return Stranger::Tls;
    }
    let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    if line.is_empty() {
        return Stranger::Closed;
    }
    let quoted: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTE_CHARS)
        .collect();
    if line.starts_with("HTTP/") {
        return Stranger::Http(quoted);
    }
    let mut words = line.split(' ');
    let numeric =
        |w: Option<&str>| w.is_some_and(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()));
    let first_word = words.clone().next();
    if line.starts_with(':')
        || matches!(first_word, Some("NOTICE" | "PING"))
        || numeric(first_word)
        || numeric(words.nth(1))
    {
        return Stranger::Irc(quoted);
    }
    Stranger::Other(quoted)
}

/// How to connect over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates to trust instead of the Mozilla roots.
    pub ca: Option<PathBuf>,
    /// The name to check the server's certificate for (and send as SNI); default: the host.
    pub name: Option<String>,
}

/// Tunables of the network thread.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The longest a name lookup, a TCP connect or the wait for `HELLO` may take.
    pub connect_timeout: Duration,
    /// The first reconnect delay; it doubles with each failure.
    pub backoff_start: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// Connect over TLS with these settings; `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(8),
            backoff_start: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            tls: None,
        }
    }
}

/// The reconnect delay after `attempt` failures (0 is the first retry), with ±20 % jitter so
/// that many clients of one restarted server do not all come back at once.
pub fn backoff(config: &NetConfig, attempt: u32) -> Duration {
    let base = config
        .backoff_start
        .saturating_mul(1u32 << attempt.min(16))
        .min(config.backoff_max);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // 0.8 ..= 1.2, from the clock's low bits: good enough to spread clients out.
    let factor = 0.8 + f64::from(nanos % 1000) / 2500.0;
    base.mul_f64(factor)
}

/// Classifies an I/O error from connecting, in the words [`ConnectError`] shows.
pub fn classify(error: &io::Error, target: &str) -> ConnectError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused {
            target: target.to_owned(),
        },
        io::ErrorKind::TimedOut => ConnectError::TimedOut {
            target: target.to_owned(),
            after: Duration::ZERO,
        },
        _ => ConnectError::Other {
            target: target.to_owned(),
            detail: error.to_string(),
        },
    }
}

/// Where events go: the UI's channel, and the context to wake.
struct Outlet {
    /// The channel the UI drains.
    tx: mpsc::Sender<NetEvent>,
    /// Wakes the UI so it drains the channel now, not at its next input.
    ctx: egui::Context,
}

impl Outlet {
    /// Sends an event and wakes the UI; false once the UI is gone.
    fn send(&self, ev: NetEvent) -> bool {
        let ok = self.tx.send(ev).is_ok();
        self.ctx.request_repaint();
        ok
    }
}

/// The UI's handle on the network thread.
#[derive(Debug)]
pub struct Net {
    /// Commands to the thread.
    tx: tmpsc::UnboundedSender<NetCommand>,
    /// Events from the thread.
    rx: mpsc::Receiver<NetEvent>,
    /// Events taken by [`Net::wait`] and not yet handed out by [`Net::try_recv`].
    held: std::collections::VecDeque<NetEvent>,
    /// The thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl Net {
    /// Starts the network thread; it wakes `ctx` after each event.
    pub fn start(ctx: egui::Context, config: NetConfig) -> io::Result<Self> {
        let (tx, cmd_rx) = tmpsc::unbounded_channel();
        let (ev_tx, rx) = mpsc::channel();
        let outlet = Outlet { tx: ev_tx, ctx };
        let thread = std::thread::Builder::new()
            .name("natter-net".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        outlet.send(NetEvent::Failed(ConnectError::Other {
                            target: "the network".into(),
                            detail: format!("cannot start the network runtime: {e}"),
                        }));
                        return;
                    }
                };
                rt.block_on(run(cmd_rx, outlet, config));
            })?;
        Ok(Self {
            tx,
            rx,
            held: Default::default(),
            thread: Some(thread),
        })
    }

    /// Queues a command for the thread.
    pub fn send(&self, cmd: NetCommand) {
        // The thread only stops when this handle drops, so sending cannot fail before that.
        let _ = self.tx.send(cmd);
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&mut self) -> Option<NetEvent> {
        self.held.pop_front().or_else(|| self.rx.try_recv().ok())
    }

    /// Blocks until an event is waiting or `timeout` passes; true if one is.
    ///
    /// The UI never calls this (it is woken by `request_repaint`); tests and tools use it to
    /// wait for the network without sleeping or spinning.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => {
                self.held.push_back(ev);
                true
            }
            Err(_) => false,
        }
    }

    /// Sends `CLOSE` and waits up to `within` for the thread to confirm, so the server hears
    /// the goodbye before the process exits; true if the server answered `BYE CLOSED`.
    /// Events that arrive meanwhile are dropped.
    pub fn close_and_wait(&mut self, within: Duration) -> bool {
        self.send(NetCommand::Close);
        let deadline = std::time::Instant::now() + within;
        let mut answered = false;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(NetEvent::Line(
                    ServerLine::Bye {
                        reason: ByeReason::Closed,
                        ..
                    },
                    _,
                )) => answered = true,
                Ok(NetEvent::Closed | NetEvent::Failed(_)) | Err(_) => return answered,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Dropping the sender ends the thread's loop: it says CLOSE if connected, then returns.
        let (dead, _) = tmpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sorts out an error from a TLS connection attempt: the certificate, the handshake, or
/// (without a TLS reason) the usual [`classify`].
pub fn classify_tls(error: &io::Error, target: &str) -> ConnectError {
    let target = target.to_owned();
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => ConnectError::Certificate {
            target,
            detail: match why {
                rustls::CertificateError::UnknownIssuer => "unknown issuer".into(),
                other => other.to_string(),
            },
        },
        Some(e) => ConnectError::Tls {
            target,
            detail: e.to_string(),
        },
        // A server without TLS there hangs up on a ClientHello, or resets the connection.
        None if matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::InvalidData
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        ) =>
        {
            ConnectError::Tls {
                target,
                detail: error.to_string(),
            }
        }
        None => classify(error, &target),
    }
}

/// A plain TCP connection's read side: what was read with the greeting, then the socket.
type PlainReader = tokio::io::Chain<io::Cursor<Vec<u8>>, OwnedReadHalf>;

/// A connection that is up and greeted: plain TCP or TLS.
#[derive(Debug)]
pub enum Connection {
    /// Plain TCP.
    Plain(Client<PlainReader, OwnedWriteHalf>),
    /// TLS over TCP.
    Tls(TlsClient),
}

impl Connection {
    /// Whether this is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

/// How one connection ended.
enum Ended {
    /// We sent CLOSE (or the server said `BYE CLOSED`).
    Closed,
    /// The UI is gone.
    Quit,
    /// The connection failed or the server dropped it.
    Lost(String),
    /// The UI asked for another server.
    Switch(String, u16),
}

/// The thread's main loop: wait for `Connect`, then serve connections until told to stop.
async fn run(mut rx: tmpsc::UnboundedReceiver<NetCommand>, out: Outlet, config: NetConfig) {
    let mut next: Option<(String, u16)> = None;
    loop {
        let (host, port) = match next.take() {
            Some(t) => t,
            None => loop {
                match rx.recv().await {
                    Some(NetCommand::Connect { host, port }) => break (host, port),
                    Some(_) => {} // nothing to send to or close while disconnected
                    None => return,
                }
            },
        };
        let client = match connect(&host, port, &config).await {
            Ok(c) => c,
            Err(e) => {
                if !out.send(NetEvent::Failed(e)) {
                    return;
                }
                continue;
            }
        };
        if !out.send(NetEvent::Connected {
            addr: format!("{host}:{port}"),
            reconnect: false,
            tls: client.is_tls(),
        }) {
            return;
        }
        let mut client = client;
        loop {
            let ended = match client {
                Connection::Plain(c) => session(c, &mut rx, &out).await,
                Connection::Tls(c) => session(c, &mut rx, &out).await,
            };
            match ended {
                Ended::Quit => return,
                Ended::Closed => {
                    out.send(NetEvent::Closed);
                    break;
                }
                Ended::Switch(h, p) => {
                    next = Some((h, p));
                    break;
                }
                Ended::Lost(error) => {
                    match reconnect(&host, port, error, &mut rx, &out, &config).await {
                        Reconnected::Up(c) => client = c,
                        Reconnected::Quit => return,
                        Reconnected::Closed => {
                            out.send(NetEvent::Closed);
                            break;
                        }
                        Reconnected::Switch(h, p) => {
                            next = Some((h, p));
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// How a reconnect loop ended.
enum Reconnected {
    /// A new connection is up.
    Up(Connection),
    /// The UI is gone.
    Quit,
    /// The UI asked to stay disconnected.
    Closed,
    /// The UI asked for another server.
    Switch(String, u16),
}

/// Retries `host:port` with backoff until it answers or the UI says otherwise.
async fn reconnect(
    host: &str,
    port: u16,
    mut error: String,
    rx: &mut tmpsc::UnboundedReceiver<NetCommand>,
    out: &Outlet,
    config: &NetConfig,
) -> Reconnected {
    let mut attempt = 0;
    loop {
        let wait = backoff(config, attempt);
        if !out.send(NetEvent::Lost {
            error: error.clone(),
            attempt,
            retry_in: wait,
        }) {
            return Reconnected::Quit;
        }
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = rx.recv() => match cmd {
                    None => return Reconnected::Quit,
                    Some(NetCommand::Close) => return Reconnected::Closed,
                    Some(NetCommand::Connect { host, port }) => {
                        return Reconnected::Switch(host, port);
                    }
                    Some(NetCommand::RetryNow) => break,
                    Some(NetCommand::Send(_)) => {} // the model does not send while down
                },
            }
        }
        match connect(host, port, config).await {
            Ok(c) => {
                if !out.send(NetEvent::Connected {
                    addr: format!("{host}:{port}"),
                    reconnect: true,
                    tls: c.is_tls(),
                }) {
                    return Reconnected::Quit;
                }
                return Reconnected::Up(c);
            }
            Err(e) => error = e.short(),
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Resolves, connects (over TLS if `config` says so) and waits for `HELLO`, each within
/// the connect timeout.
pub async fn connect(
    host: &str,
    port: u16,
    config: &NetConfig,
) -> Result<Connection, ConnectError> {
    let limit = config.connect_timeout;
    let target = format!("{host}:{port}");
    let timed_out = || ConnectError::TimedOut {
        target: target.clone(),
        after: limit,
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => {
                return Err(ConnectError::UnknownHost {
                    host: host.to_owned(),
                });
            }
            Ok(Ok(a)) => a.collect(),
        };
    if addrs.is_empty() {
        return Err(ConnectError::UnknownHost {
            host: host.to_owned(),
        });
    }
    let tls = match &config.tls {
        None => None,
        Some(t) => {
            let roots = natter_conn::tls::client_config(t.ca.as_deref()).map_err(|e| {
                ConnectError::BadCa {
                    path: t
                        .ca
                        .as_deref()
                        .unwrap_or("?".as_ref())
                        .display()
                        .to_string(),
                    detail: e.to_string(),
                }
            })?;
            Some((roots, t.name.as_deref().unwrap_or(host)))
        }
    };
    let Some((roots, name)) = tls else {
        // Plain TCP: the greeting is read here rather than by natter-conn, so that whatever
        // answers instead of natter can be named.
        let stream = match tokio::time::timeout(limit, TcpStream::connect(&addrs[..])).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(classify(&e, &target)),
            Ok(Ok(s)) => s,
        };
        return greeted(stream, limit, &target).await.map(Connection::Plain);
    };
    let attempt = TlsClient::connect_tls(&addrs[..], name, roots);
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(c)) => Ok(Connection::Tls(c)),
        // natter-conn reports a BYE in place of HELLO (a full server) as a refused connection
        // with the server's text; a refused TCP connection has the system's text.
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused && e.get_ref().is_some() => {
            Err(ConnectError::Turned {
                text: e.to_string(),
            })
        }
        Ok(Err(e)) => Err(classify_tls(&e, &target)),
    }
}

/// Nudges the server with a blank line (the protocol ignores it, and it makes the server
/// greet at once instead of waiting to see which protocol the client speaks), then reads its
/// first line within `limit`: `HELLO`, or an error naming what answered instead.
async fn greeted(
    stream: TcpStream,
    limit: Duration,
    target: &str,
) -> Result<Client<PlainReader, OwnedWriteHalf>, ConnectError> {
    let failed = |e: io::Error| classify(&e, target);
    stream.set_nodelay(true).map_err(failed)?;
    let (mut r, mut w) = stream.into_split();
    w.write_all(b"\n").await.map_err(failed)?;
    let mut got = Vec::with_capacity(512);
    let first_line = async {
        loop {
            let whole = got.contains(&b'\n') || got.len() > MAX_SERVER_LINE_BYTES + 2;
            // TLS records hold no line ending: their first bytes are enough.
            let tls = got.len() >= 3 && matches!(got[0], 0x15 | 0x16);
            if whole || tls {
                return Ok::<(), io::Error>(());
            }
            if r.read_buf(&mut got).await? == 0 {
                return Ok(());
            }
        }
    };
    let read = tokio::time::timeout(limit, first_line).await;
    let stranger = |got: &[u8]| ConnectError::NotNatter {
        target: target.to_owned(),
        what: what_answered(got),
    };
    match read {
        Err(_) if got.is_empty() => {
            return Err(ConnectError::NotNatter {
                target: target.to_owned(),
                what: Stranger::Silent(limit),
            });
        }
        Err(_) => return Err(stranger(&got)),
        // Hanging up on our blank line unread resets the connection rather than closing it.
        Ok(Err(e)) if got.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(stranger(&got));
        }
        Ok(Err(e)) if got.is_empty() => return Err(failed(e)),
        // A reset after some bytes (a TLS alert, an HTTP error) still says who it was.
        Ok(Err(_)) => return Err(stranger(&got)),
        Ok(Ok(())) => {}
    }
    let Some(end) = got.iter().position(|&b| b == b'\n') else {
        return Err(stranger(&got));
    };
    let line = String::from_utf8_lossy(&got[..end]);
    match ServerLine::parse(line.trim_end_matches('\r')) {
        Ok(ServerLine::Hello { .. }) => {}
        Ok(ServerLine::Bye { text, .. }) => {
            return Err(ConnectError::Turned {
                text: text.into_owned(),
            });
        }
        _ => return Err(stranger(&got)),
    }
    let rest = got.split_off(end + 1);
    Ok(Client {
        reader: LineReader::new(io::Cursor::new(rest).chain(r)),
        writer: LineWriter::new(w),
    })
}

/// Serves one connection: server lines to the UI, the UI's lines to the server.
async fn session<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: Client<R, W>,
    rx: &mut tmpsc::UnboundedReceiver<NetCommand>,
    out: &Outlet,
) -> Ended {
    let (mut reader, mut writer) = client.split();
    loop {
        tokio::select! {
            // next_raw is cancel-safe: bytes read stay in the reader's buffer.
            line = reader.next_raw() => {
                let raw = match line {
                    Ok(Some(raw)) => raw,
                    Ok(None) => return Ended::Lost("the server closed the connection".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                };
                let text = String::from_utf8_lossy(&raw);
                let (tags, bare) = LineTags::split(&text);
                let ev = match ServerLine::parse(bare) {
                    Ok(l) => {
                        // BYE is the end: do not wait for the server to close the socket
                        // (at shutdown it may give clients seconds to read).
                        if let ServerLine::Bye { reason, text } = &l {
                            let (closed, text) = (*reason == ByeReason::Closed, text.to_string());
                            out.send(NetEvent::Line(l.into_owned(), tags));
                            return if closed {
                                Ended::Closed
                            } else {
                                Ended::Lost(text)
                            };
                        }
                        NetEvent::Line(l.into_owned(), tags)
                    }
                    Err(_) => NetEvent::Garbled(text.into_owned()),
                };
                if !out.send(ev) {
                    let _ = writer.send("CLOSE").await;
                    return Ended::Quit;
                }
            }
            cmd = rx.recv() => match cmd {
                Some(NetCommand::Send(line)) => {
                    if let Err(e) = writer.send(&line).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                Some(NetCommand::RetryNow) => {}
                Some(NetCommand::Close) => {
                    close(&mut reader, &mut writer, out).await;
                    return Ended::Closed;
                }
                Some(NetCommand::Connect { host, port }) => {
                    close(&mut reader, &mut writer, out).await;
                    return Ended::Switch(host, port);
                }
                None => {
                    // The window closed without asking: still say goodbye, briefly.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(500),
                        writer.send("CLOSE"),
                    )
                    .await;
                    return Ended::Quit;
                }
            },
        }
    }
}

/// Sends `CLOSE` and forwards what arrives until `BYE` or a short limit.
async fn close<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut LineReader<R>,
    writer: &mut LineWriter<W>,
    out: &Outlet,
) {
    let goodbye = async {
        writer.send("CLOSE").await?;
        while let Some(raw) = reader.next_raw().await? {
            let text = String::from_utf8_lossy(&raw);
            let (tags, bare) = LineTags::split(&text);
            let Ok(l) = ServerLine::parse(bare) else {
                continue;
            };
            let done = matches!(l, ServerLine::Bye { .. });
            out.send(NetEvent::Line(l.into_owned(), tags));
            if done {
                break;
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap() {
        let c = NetConfig::default();
        let d0 = backoff(&c, 0);
        assert!(d0 >= Duration::from_millis(200) && d0 <= Duration::from_millis(300));
        let d3 = backoff(&c, 3);
        assert!(d3 >= Duration::from_millis(1600) && d3 <= Duration::from_millis(2400));
        let big = backoff(&c, 40);
        assert!(big <= Duration::from_secs(18) && big >= Duration::from_secs(12));
    }

    #[test]
    fn errors_read_well() {
        let e = classify(
            &io::Error::from(io::ErrorKind::ConnectionRefused),
            "localhost:8090",
        );
        assert_eq!(
            e.to_string(),
            "Connection refused by localhost:8090: is natter-server running on that port?"
        );
        let e = ConnectError::UnknownHost {
            host: "nope".into(),
        };
        assert!(e.to_string().starts_with("Unknown host \"nope\""));
        let e = ConnectError::TimedOut {
            target: "h:1".into(),
            after: Duration::from_secs(8),
        };
        assert_eq!(e.to_string(), "Timed out: h:1 did not answer within 8 s.");
    }

    #[test]
    fn tls_errors_are_told_apart() {
        let bad_cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = classify_tls(&bad_cert, "h:1");
        assert_eq!(
            e,
            ConnectError::Certificate {
                target: "h:1".into(),
                detail: "unknown issuer".into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("Certificate error: h:1 presented")
        );
        assert_eq!(e.short(), "untrusted certificate");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            classify_tls(&reset, "h:1"),
            ConnectError::Tls { .. }
        ));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify_tls(&refused, "h:1"),
            ConnectError::Refused { .. }
        ));
    }

    #[test]
    fn what_answered_instead_of_natter_is_named() {
        let http = what_answered(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(http, Stranger::Http("HTTP/1.1 400 Bad Request".into()));
        let irc = b":irc.example.net NOTICE * :*** Looking up your hostname\r\n";
        assert!(matches!(what_answered(irc), Stranger::Irc(_)));
        assert!(matches!(
            what_answered(b"NOTICE AUTH :hello\r\n"),
            Stranger::Irc(_)
        ));
        assert!(matches!(
            what_answered(b"irc.example 451 * :register\r\n"),
            Stranger::Irc(_)
        ));
        assert_eq!(
            what_answered(&[0x15, 0x03, 0x03, 0x00, 0x02]),
            Stranger::Tls
        );
        assert_eq!(what_answered(&[0x16]), Stranger::Tls);
        assert_eq!(what_answered(b""), Stranger::Closed);
        assert_eq!(
            what_answered(b"SSH-2.0-OpenSSH_9.6\r\n"),
            Stranger::Other("SSH-2.0-OpenSSH_9.6".into())
        );
        // Control characters are not quoted as they came, and the quote is short.
        let long = format!("x\u{7}{}", "y".repeat(200));
        let Stranger::Other(q) = what_answered(long.as_bytes()) else {
            panic!("not Other");
        };
        assert_eq!(q.chars().count(), QUOTE_CHARS);
        assert!(q.starts_with("x y"));
    }

    #[test]
    fn strangers_are_explained_in_a_sentence() {
        let e = ConnectError::NotNatter {
            target: "h:80".into(),
            what: Stranger::Http("HTTP/1.1 400 Bad Request".into()),
        };
        assert_eq!(
            e.to_string(),
            "h:80 is a web server, not a natter server: it answered \"HTTP/1.1 400 Bad \
             Request\". Is that the right port?"
        );
        let e = ConnectError::NotNatter {
            target: "h:1".into(),
            what: Stranger::Silent(Duration::from_secs(8)),
        };
        assert!(
            e.to_string()
                .starts_with("Timed out: h:1 accepted the connection")
        );
        assert_eq!(e.short(), "no greeting");
    }
}
