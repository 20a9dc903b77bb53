//! Limits and timings of a server, with the defaults the binary uses.

use crate::hub::RoomLimits;
use crate::outbox::Patience;
use crate::throttle::FloodLimits;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A secret (the server password): compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Compares in time that does not depend on where the first difference is, so the
    /// password cannot be guessed byte by byte from response times.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, &x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Who may connect and how often, and what sessions must do in time.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The server password; `None` lets anyone register.
    pub password: Option<Secret>,
    /// Most connections from one address at once.
    pub per_ip_connections: usize,
    /// New connections per second from one address, sustained.
    pub per_ip_connect_rate: f64,
    /// New connections from one address that may come at once.
    pub per_ip_connect_burst: f64,
    /// Addresses the per-address limits do not apply to.
    pub exempt: Vec<IpAddr>,
    /// Whether loopback addresses are exempt from the per-address limits (benchmarks).
    pub exempt_loopback: bool,
    /// How long a client may stay unregistered.
    pub register_timeout: Duration,
    /// How long a registered native client may stay silent; `None`: forever.
    pub idle_timeout: Option<Duration>,
    /// Flood control; `None` turns it off (benchmarks against peers with theirs off).
    pub flood: Option<FloodLimits>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            password: None,
            per_ip_connections: 100,
            per_ip_connect_rate: 20.0,
            per_ip_connect_burst: 100.0,
            exempt: Vec::new(),
            exempt_loopback: false,
            register_timeout: Duration::from_secs(60),
            idle_timeout: None,
            flood: Some(FloodLimits::default()),
        }
    }
}

impl Policy {
    /// Whether the per-address limits apply to `ip`.
    pub fn limits_apply(&self, ip: IpAddr) -> bool {
        let exempt = self.exempt.contains(&ip) || (self.exempt_loopback && ip.is_loopback());
        !exempt
    }
}

/// Everything a running server can be tuned by.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most connections open at once; the next is told the server is full and closed.
    pub max_connections: usize,
    /// A client's backlog (bytes queued for it and not yet written) at which it is
    /// congested: its senders wait for it, and it must catch up or be dropped.
    pub outbox_bytes: usize,
    /// How long a congested client may take to catch up.
    pub patience: Patience,
    /// How long to wait for a silent client's first bytes before greeting it as a line client.
    pub sniff_wait: Duration,
    /// How long a client may leave queued output unread before it is dropped as stalled.
    pub write_stall: Duration,
    /// How long a shutdown waits for clients to take their last lines.
    pub shutdown_grace: Duration,
    /// How long a session whose connection was lost waits to be resumed.
    pub linger: Duration,
    /// TCP keepalive idle time, after which dead peers are probed and cleaned up.
    pub keepalive: Duration,
    /// Limits on rooms.
    pub rooms: RoomLimits,
    /// Who may open the WebSocket.
    pub web: Origins,
    /// The IRC side's settings.
    pub irc: IrcConfig,
    /// Admission, password, timeouts and flood control.
    pub policy: Policy,
    /// The certificate and key for TLS; `None`: no TLS.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// The folded names of the accounts that are server operators.
    pub operators: Vec<String>,
    /// Whether a name that looks like another in use, or an account's, is refused.
    pub refuse_lookalikes: bool,
    /// The message log's settings.
    pub history: crate::history::HistoryConfig,
    /// Where accounts are kept.
    pub store: natter_store::Location,
    /// Cluster mode's Redis and node id; `None`: a single process.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// Who may read `/metrics`, whose counters tell who talks how much.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// Addresses and networks allowed without a token.
    pub allow: Vec<ipnet::IpNet>,
    /// A bearer token that admits from anywhere.
    pub token: Option<Secret>,
}

impl Default for MetricsAccess {
    fn default() -> Self {
        MetricsAccess {
            allow: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            token: None,
        }
    }
}

impl MetricsAccess {
    /// Whether a request from `peer` with this `Authorization` header may read `/metrics`.
    pub fn admits(&self, peer: std::net::IpAddr, authorization: Option<&str>) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
            v4 => v4,
        };
        let by_address = self.allow.iter().any(|net| net.contains(&peer));
        let by_token = match (
            &self.token,
            authorization.and_then(|a| a.strip_prefix("Bearer ")),
        ) {
            (Some(token), Some(given)) => token.matches(given.trim()),
            _ => false,
        };
        by_address || by_token
    }
}

/// Who may open the WebSocket, besides clients that send no `Origin` (not browsers).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Origins (`https://host:port`) allowed whatever the request; `*` allows any.
    pub allowed: Vec<String>,
    /// Host names the server is reached by, besides `localhost` and IP addresses: a page
    /// from one of them, on the request's own host and port, is the server's own page.
    pub names: Vec<String>,
}

/// How the server presents itself to IRC clients.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    /// The server's name, the source of numerics (`:natter 001 ...`).
    pub server_name: String,
    /// One line describing the server (WHOIS, LINKS-style answers, the welcome).
    pub description: String,
    /// The channel through which IRC users take part in Everyone.
    pub everyone_channel: String,
    /// Whether IRC users join the everyone channel on registration.
    pub auto_join: bool,
    /// Up to how many members the everyone channel announces IRC users' comings and goings
    /// (JOIN, PART, QUIT, NICK, AWAY, ACCOUNT, SETNAME) to its IRC members; beyond, it is
    /// quiet like an auditorium: each hears only of those it shares a room with.
    pub everyone_presence: usize,
    /// Message of the day, line by line; none answers 422.
    pub motd: Option<String>,
    /// How long an IRC client may be silent before it is sent a PING.
    pub ping_after: Duration,
    /// How long it then has to answer before it is disconnected.
    pub ping_timeout: Duration,
}

impl Default for IrcConfig {
    fn default() -> Self {
        Self {
            server_name: "natter".into(),
            description: "natter chat".into(),
            everyone_channel: "#everyone".into(),
            auto_join: true,
            everyone_presence: 1000,
            motd: None,
            ping_after: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            outbox_bytes: 1024 * 1024,
            patience: Patience::default(),
            sniff_wait: Duration::from_millis(100),
            write_stall: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            linger: Duration::from_secs(60),
            keepalive: Duration::from_secs(60),
            rooms: RoomLimits::default(),
            web: Origins::default(),
            irc: IrcConfig::default(),
            policy: Policy::default(),
            tls: None,
            // The library's default keeps nothing, so embedding servers and tests leave no
            // files behind; the command line's default is a file (`Settings`).
            store: natter_store::Location::Memory,
            metrics: MetricsAccess::default(),
            operators: Vec::new(),
            refuse_lookalikes: true,
            history: crate::history::HistoryConfig::default(),
            cluster: None,
        }
    }
}
