//! Accepting connections: the connection limit, accept errors, and graceful shutdown.

use crate::config::Config;
use crate::config::Policy;
use crate::connection::{self, Assume, Shared};
use crate::event::IrcNames;
use crate::hub::Hub;
use crate::session::bye;
use crate::stats::Stats;
use crate::throttle::Bucket;
use natter_proto::{ByeReason, ServerLine};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Connections the kernel may queue for accepting (it caps this at `net.core.somaxconn`). The
/// standard library's 128 overflows when a crowd connects at once, and each SYN dropped then
/// costs its client a second, TCP's first retransmission timeout.
const BACKLOG: u32 = 4096;

/// Binds a listening socket like `TcpListener::bind` (the first address `addr` resolves to that
/// can be bound), with a backlog fit for a crowd arriving.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

fn bind_one(a: SocketAddr) -> io::Result<TcpListener> {
    let s = if a.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(a)?;
    s.listen(BACKLOG)
}

/// A bound socket and the protocol to assume for clients that do not announce one.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// What its silent clients speak.
    pub assume: Assume,
}

/// Serves clients from `listener` (natter's shared port) until `shutdown` completes; see
/// [`run_all`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let main = Listener {
        socket: listener,
        assume: Assume::Line,
    };
    run_all(vec![main], config, shutdown).await
}

/// Serves clients from every listener until `shutdown` completes, then says goodbye to every
/// client, waits for them (up to the configured grace) and returns.
///
/// The caller binds the sockets and chooses the shutdown signal, so tests can bind ephemeral
/// ports and stop the server whenever they like.
pub async fn run_all(
    listeners: Vec<Listener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let stats = Arc::new(Stats::default());
    let mut hub = Hub::new(
        stats.clone(),
        config.rooms.clone(),
        IrcNames {
            server: config.irc.server_name.clone(),
            everyone: config.irc.everyone_channel.clone(),
        },
    );
    let cluster = match &config.cluster {
        Some(c) => {
            let redis = crate::cluster::Redis::new(c, stats.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            hub = hub.with_backplane(redis.clone());
            info!(node = %c.node_id, redis = %c.url, "cluster mode");
            Some(redis)
        }
        None => None,
    };
    let hub = Arc::new(hub);
    let backplane_stop = CancellationToken::new();
    tokio::spawn(hub.clone().announce_arrivals_until(backplane_stop.clone()));
    if let Some(redis) = &cluster {
        redis.start(hub.clone(), backplane_stop.clone());
    }
    let shared = Arc::new(Shared {
        hub,
        hello: ServerLine::Hello {
            text: Cow::Owned(format!(
                "natter {}: type HELP for the list of commands",
                env!("CARGO_PKG_VERSION")
            )),
        }
        .to_bytes(),
        irc: Arc::new(config.irc.clone()),
        policy: Arc::new(config.policy.clone()),
        config,
        ids: AtomicU64::new(0),
        tracker: TaskTracker::new(),
        admission: Arc::new(Admission::default()),
        live: Default::default(),
    });
    let token = CancellationToken::new();
    let connections = shared.tracker.clone();
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(accept_loop(l, shared.clone(), token.clone())));
    }
    shutdown.await;

    info!(
        clients = stats.connected(),
        "shutting down: saying goodbye to every client"
    );
    shared.hub.close();
    token.cancel();
    shared.live.shut_down_all();
    for a in accepting {
        let _ = a.await;
    }
    connections.close();
    let wait = shared.config.shutdown_grace + Duration::from_secs(3);
    if tokio::time::timeout(wait, connections.wait())
        .await
        .is_err()
    {
        warn!(
            left = stats.connected(),
            "some connections did not finish in time"
        );
    }
    if let Some(redis) = &cluster {
        // The other nodes learn of this node's users' departures before it goes.
        redis.flush(Duration::from_secs(2)).await;
    }
    backplane_stop.cancel();
    info!("server stopped");
    Ok(())
}

/// Accepts from one listener until the token is cancelled; the socket closes when it returns.
async fn accept_loop(l: Listener, shared: Arc<Shared>, token: CancellationToken) {
    let stats = shared.hub.stats().clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            r = l.socket.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: the machine is out of something. Retrying at
                // once would spin; waiting lets connections close and free it.
                error!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if stats.connected() >= shared.config.max_connections {
            warn!(%peer, limit = shared.config.max_connections, "refused: server full");
            let _ = stream.try_write(&bye(ByeReason::ServerFull));
            continue;
        }
        let ip = peer.ip();
        let limited = shared.policy.limits_apply(ip);
        if limited && let Err(reason) = shared.admission.admit(ip, &shared.policy) {
            warn!(%peer, reason = %reason, "refused");
            let _ = stream.try_write(&bye(reason));
            continue;
        }
        let id = shared.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let connected = stats.connect();
        info!(%peer, connected, registered = stats.registered(), "connected");
        let guard = Disconnect {
            stats: stats.clone(),
            ip: limited.then(|| (shared.admission.clone(), ip)),
        };
        shared.tracker.spawn(connection::serve(
            stream,
            id,
            shared.clone(),
            token.clone(),
            l.assume,
            guard,
        ));
    }
}

/// Errors that concern one connection attempt only; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Counts the connection as closed when its task ends, even by panic.
#[derive(Debug)]
pub struct Disconnect {
    /// The server's counters.
    stats: Arc<Stats>,
    /// The per-address count to release, if the address is limited.
    ip: Option<(Arc<Admission>, IpAddr)>,
}

impl Disconnect {
    /// A guard for a connection already counted with [`Stats::connect`].
    pub fn new(stats: Arc<Stats>) -> Self {
        Self { stats, ip: None }
    }
}

impl Drop for Disconnect {
    fn drop(&mut self) {
        self.stats.disconnect();
        if let Some((admission, ip)) = &self.ip {
            admission.release(*ip);
        }
    }
}

/// Per-address admission: how many connections each address has open, and how fast it has
/// been opening them.
#[derive(Debug, Default)]
pub struct Admission {
    /// By address; a std mutex held only for a lookup and an update.
    table: Mutex<HashMap<IpAddr, PerIp>>,
}

#[derive(Debug)]
struct PerIp {
    /// Connections open now.
    open: usize,
    /// New connections allowed.
    bucket: Bucket,
}

impl Admission {
    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr, policy: &Policy) -> Result<(), ByeReason> {
        let now = tokio::time::Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() > 4096 {
            // Forget addresses with nothing open whose bucket has refilled.
            table
                .retain(|_, p| p.open > 0 || p.bucket.available(now) < policy.per_ip_connect_burst);
        }
        let entry = table.entry(ip).or_insert_with(|| PerIp {
            open: 0,
            bucket: Bucket::new(policy.per_ip_connect_rate, policy.per_ip_connect_burst, now),
        });
        if entry.open >= policy.per_ip_connections {
            return Err(ByeReason::TooManyConnections);
        }
        if !entry.bucket.take(1.0, now) {
            return Err(ByeReason::ConnectRate);
        }
        entry.open += 1;
        Ok(())
    }

    /// Releases one connection of `ip`.
    pub fn release(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = table.get_mut(&ip) {
            p.open = p.open.saturating_sub(1);
        }
    }
}
