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
use natter_proto::{ByeReason, ServerLine};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
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
            Self::BadCa { .. } => "unusable CA file".into(),
            Self::Certificate { .. } => "untrusted certificate".into(),
            Self::Tls { .. } => "TLS failed".into(),
            Self::Other { detail, .. } => detail.clone(),
        }
    }
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

/// A connection that is up and greeted: plain TCP or TLS.
#[derive(Debug)]
pub enum Connection {
    /// Plain TCP.
    Plain(Client),
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
    let attempt = async {
        match tls {
            None => Client::connect(&addrs[..]).await.map(Connection::Plain),
            Some((roots, name)) => TlsClient::connect_tls(&addrs[..], name, roots)
                .await
                .map(Connection::Tls),
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(c)) => Ok(c),
        // natter-conn reports a BYE in place of HELLO (a full server) as a refused connection
        // with the server's text; a refused TCP connection has the system's text.
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused && e.get_ref().is_some() => {
            Err(ConnectError::Turned {
                text: e.to_string(),
            })
        }
        Ok(Err(e)) if config.tls.is_some() => Err(classify_tls(&e, &target)),
        Ok(Err(e)) => Err(classify(&e, &target)),
    }
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
}
