//! Limits and timings of a server, with the defaults the binary uses.

use crate::hub::RoomLimits;
use std::time::Duration;

/// Everything a running server can be tuned by.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most connections open at once; the next is told the server is full and closed.
    pub max_connections: usize,
    /// Most bytes queued for one client before it counts as a slow consumer and is dropped.
    pub outbox_bytes: usize,
    /// How long to wait for a silent client's first bytes before greeting it as a line client.
    pub sniff_wait: Duration,
    /// How long a client may leave queued output unread before it is dropped as stalled.
    pub write_stall: Duration,
    /// How long a shutdown waits for clients to take their last lines.
    pub shutdown_grace: Duration,
    /// TCP keepalive idle time, after which dead peers are probed and cleaned up.
    pub keepalive: Duration,
    /// Limits on rooms.
    pub rooms: RoomLimits,
    /// Origins (`http://host:port`) allowed to open the WebSocket besides the page's own;
    /// `*` allows any.
    pub allowed_origins: Vec<String>,
    /// The IRC side's settings.
    pub irc: IrcConfig,
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
            sniff_wait: Duration::from_millis(100),
            write_stall: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            keepalive: Duration::from_secs(60),
            rooms: RoomLimits::default(),
            allowed_origins: Vec::new(),
            irc: IrcConfig::default(),
        }
    }
}
