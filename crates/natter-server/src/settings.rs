//! Settings from the command line and a TOML file, and the [`Config`] they make.
//!
//! Every setting is a command-line flag and a key of the same name (underscores for hyphens)
//! in the file given with `--config`; a flag on the command line wins over the file, and the
//! file over the default. `--print-config` shows the effective values as a file would hold
//! them (the password never: only whether one is set).

use crate::config::{Config, IrcConfig, MetricsAccess, Origins, Policy, Secret};
use crate::hub::RoomLimits;
use crate::outbox::Patience;
use crate::throttle::FloodLimits;
use natter_store::Location;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting; `None` (or empty) means "not given here".
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Host name or address to listen on [default: localhost].
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// TCP port to listen on; 0 picks a free one [default: 8090].
    #[arg(value_name = "PORT")]
    pub port: Option<u16>,
    /// Also listen for IRC clients on HOST:PORT (they are welcome on the main port too).
    #[arg(long, value_name = "HOST:PORT")]
    pub irc: Vec<String>,
    /// Also serve HTTP (browser client, /healthz, /metrics) on HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub web: Vec<String>,
    /// Also listen on HOST:PORT for TLS only (any protocol inside); needs --tls-cert/--tls-key.
    #[arg(long, value_name = "HOST:PORT")]
    pub tls: Vec<String>,
    /// PEM certificate chain for TLS; with it, the main port also accepts TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (reloaded with the certificate on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads serving clients [default: one per core].
    #[arg(long)]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Most clients connected at once [default: the descriptor limit less 64].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// KiB queued for one client at which it is congested: senders then wait for it, and
    /// it must catch up or be dropped as a slow consumer [default: 1024].
    #[arg(long, value_parser = clap::value_parser!(u64).range(16..))]
    pub outbox_kib: Option<u64>,
    /// Seconds a congested client may take to catch up before it is dropped [default: 10].
    #[arg(long)]
    pub catch_up_secs: Option<u64>,
    /// Seconds a shutdown waits for clients to take their last lines [default: 5].
    #[arg(long)]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a session whose connection was lost waits for its client to RESUME it (or
    /// for the server to come back, after a restart) [default: 60].
    #[arg(long)]
    pub linger_secs: Option<u64>,
    /// Milliseconds a new connection may stay silent before it is taken for a line client
    /// and greeted; an HTTP or IRC client must speak within it [default: 100].
    #[arg(long)]
    pub sniff_wait_ms: Option<u64>,
    /// Seconds a client may leave queued output unread before it is dropped [default: 60].
    #[arg(long)]
    pub write_stall_secs: Option<u64>,
    /// Most rooms at once [default: 10000].
    #[arg(long)]
    pub max_rooms: Option<usize>,
    /// Most rooms that the users of one address may have created at once [default: 1000].
    #[arg(long)]
    pub max_rooms_per_address: Option<usize>,
    /// Most rooms one user may be in [default: 100].
    #[arg(long)]
    pub max_rooms_per_user: Option<usize>,
    /// Most members one room may have [default: 100000].
    #[arg(long)]
    pub max_room_members: Option<usize>,
    /// Longest room topic in bytes [default: 390].
    #[arg(long)]
    pub max_topic_bytes: Option<usize>,
    /// The server's name as IRC clients see it [default: natter].
    #[arg(long)]
    pub server_name: Option<String>,
    /// One line describing the server, shown to IRC clients [default: natter chat].
    #[arg(long)]
    pub server_description: Option<String>,
    /// The IRC channel that stands for Everyone [default: #everyone].
    #[arg(long)]
    pub everyone_channel: Option<String>,
    /// Whether IRC users join the everyone channel on registration [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub irc_auto_join: Option<bool>,
    /// Up to how many members the everyone channel shows IRC users its comings and goings;
    /// beyond, only their own and their roommates' [default: 1000].
    #[arg(long, value_name = "N")]
    pub irc_everyone_presence: Option<usize>,
    /// A file whose lines are the IRC message of the day.
    #[arg(long, value_name = "FILE")]
    pub motd_file: Option<PathBuf>,
    /// Seconds of silence after which an IRC client is sent a PING [default: 120].
    #[arg(long)]
    pub irc_ping_secs: Option<u64>,
    /// Seconds an IRC client has to answer a PING [default: 60].
    #[arg(long)]
    pub irc_ping_timeout_secs: Option<u64>,
    /// Origins (e.g. https://chat.example) allowed to open the WebSocket besides the page's
    /// own; `*` allows any.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Host names the server is reached by, for the WebSocket origin check (pages served
    /// under another name are refused) [default: HOST and this machine's name].
    #[arg(long, value_name = "NAME")]
    pub public_name: Vec<String>,
    /// The server password (better: NATTER_PASSWORD or --password-file; flags show in `ps`).
    #[arg(long, env = "NATTER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A file whose first line is the server password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Addresses (IP or CIDR, repeatable) allowed to read /metrics [default: loopback only].
    #[arg(long, value_name = "CIDR")]
    pub metrics_allow: Vec<String>,
    /// A bearer token that admits to /metrics from anywhere (better: NATTER_METRICS_TOKEN).
    #[arg(long, env = "NATTER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Refuse names that look like another in use or an account's, such as aIice beside
    /// alice (Unicode's confusable skeletons) [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub refuse_lookalike_names: Option<bool>,
    /// Keep every MESSAGE, SAY and DM between accounts in the store, for HISTORY and
    /// SEARCH [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub history: Option<bool>,
    /// Messages a HISTORY without a limit returns [default: 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_limit: Option<u32>,
    /// The most messages one HISTORY or SEARCH returns [default: 500].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_max_limit: Option<u32>,
    /// Days a message is kept, 0 for ever [default: 90].
    #[arg(long)]
    pub history_days: Option<u32>,
    /// The most messages kept for Everyone, for each room and each conversation, the oldest
    /// going first; 0 for no limit [default: 0].
    #[arg(long)]
    pub history_max_per_target: Option<u32>,
    /// Messages of a channel replayed to an IRC client as it joins, with their times (for
    /// clients that cannot ask for history); 0 for none [default: 25].
    #[arg(long)]
    pub irc_replay_lines: Option<u32>,
    /// Accounts that are server operators (repeatable): they may KICK in any room and KILL.
    #[arg(long = "operator", value_name = "NAME")]
    #[serde(rename = "operators")]
    pub operators: Vec<String>,
    /// Most connections from one address at once [default: 100].
    #[arg(long)]
    pub per_ip_connections: Option<usize>,
    /// New connections per second from one address [default: 20].
    #[arg(long)]
    pub per_ip_connect_rate: Option<f64>,
    /// New connections from one address that may come at once [default: 100].
    #[arg(long)]
    pub per_ip_connect_burst: Option<f64>,
    /// Addresses the per-address limits do not apply to.
    #[arg(long, value_name = "IP")]
    pub exempt: Vec<IpAddr>,
    /// Exempt loopback addresses from the per-address limits (benchmarks) [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub exempt_loopback: Option<bool>,
    /// Seconds a client may stay unregistered [default: 60].
    #[arg(long)]
    pub register_timeout_secs: Option<u64>,
    /// Seconds a registered native client may stay silent; 0: forever [default: 0].
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Flood control on commands and bytes [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub flood_control: Option<bool>,
    /// Commands per second a client may send, sustained [default: 20].
    #[arg(long)]
    pub flood_commands_per_sec: Option<f64>,
    /// Commands a client may send at once [default: 60].
    #[arg(long)]
    pub flood_command_burst: Option<f64>,
    /// Bytes per second a client may send, sustained [default: 65536].
    #[arg(long)]
    pub flood_bytes_per_sec: Option<f64>,
    /// Bytes a client may send at once [default: 262144].
    #[arg(long)]
    pub flood_byte_burst: Option<f64>,
    /// Seconds a client may stay over its rate before it is disconnected [default: 10].
    #[arg(long)]
    pub flood_grace_secs: Option<u64>,
    /// Cluster mode: share users, rooms and messages with other nodes through this Redis
    /// (redis://HOST:PORT) [default: none, a single process].
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// This node's id in the cluster; unique per process [default: HOSTNAME-PID-RANDOM].
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Where accounts are kept: sqlite:PATH, memory (nothing kept) or
    /// postgres://USER:PASS@HOST/DB (the same on every node of a cluster)
    /// [default: sqlite:natter.db].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// Descriptors kept back from the connection limit for the listener, logs and the like.
const FD_RESERVE: u64 = 64;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &std::path::Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
    }

    /// These settings, with every one that `self` lacks taken from `under`.
    pub fn over(self, mut under: Settings) -> Settings {
        // The password and the password file are one setting: whichever this side gives
        // replaces both of the other side's.
        if self.password.is_some() || self.password_file.is_some() {
            under.password = None;
            under.password_file = None;
        }
        macro_rules! pick {
            ($($f:ident),* ; $($v:ident),*) => {
                Settings {
                    $($f: self.$f.or(under.$f),)*
                    $($v: if self.$v.is_empty() { under.$v } else { self.$v },)*
                }
            };
        }
        pick!(host, port, tls_cert, tls_key, threads, max_connections, outbox_kib, catch_up_secs, sniff_wait_ms, shutdown_grace_secs,
            linger_secs, write_stall_secs, max_rooms, max_rooms_per_address, max_rooms_per_user, max_room_members, max_topic_bytes,
            server_name, server_description, everyone_channel, irc_auto_join, irc_everyone_presence, motd_file,
            irc_ping_secs, irc_ping_timeout_secs, password, password_file, metrics_token, per_ip_connections,
            per_ip_connect_rate, per_ip_connect_burst, exempt_loopback, register_timeout_secs,
            idle_timeout_secs, flood_control, flood_commands_per_sec, flood_command_burst,
            flood_bytes_per_sec, flood_byte_burst, flood_grace_secs, cluster, node_id, store, refuse_lookalike_names,
            history, history_limit, history_max_limit, history_days, history_max_per_target, irc_replay_lines;
            irc, web, tls, allow_origin, public_name, exempt, metrics_allow, operators)
    }

    /// Every setting filled in with its default; the password replaced by a note of whether
    /// one is set.
    pub fn effective(&self, fd_limit: u64) -> Settings {
        let d = Config::default();
        let irc = IrcConfig::default();
        let flood = FloodLimits::default();
        let (policy, rooms) = (Policy::default(), RoomLimits::default());
        let has_password = self.password.is_some();
        self.clone()
            .over(Settings {
                host: Some("localhost".into()),
                port: Some(8090),
                threads: std::num::NonZeroUsize::new(default_threads()),
                max_connections: Some(default_max_connections(fd_limit)),
                outbox_kib: Some((d.outbox_bytes / 1024) as u64),
                catch_up_secs: Some(d.patience.grace.as_secs()),
                sniff_wait_ms: Some(d.sniff_wait.as_millis() as u64),
                shutdown_grace_secs: Some(d.shutdown_grace.as_secs()),
                linger_secs: Some(d.linger.as_secs()),
                write_stall_secs: Some(d.write_stall.as_secs()),
                max_rooms: Some(rooms.rooms),
                max_rooms_per_address: Some(rooms.per_address),
                max_rooms_per_user: Some(rooms.per_user),
                max_room_members: Some(rooms.members),
                max_topic_bytes: Some(rooms.topic_bytes),
                server_name: Some(irc.server_name),
                server_description: Some(irc.description),
                everyone_channel: Some(irc.everyone_channel),
                irc_auto_join: Some(irc.auto_join),
                irc_everyone_presence: Some(irc.everyone_presence),
                irc_ping_secs: Some(irc.ping_after.as_secs()),
                irc_ping_timeout_secs: Some(irc.ping_timeout.as_secs()),
                per_ip_connections: Some(policy.per_ip_connections),
                per_ip_connect_rate: Some(policy.per_ip_connect_rate),
                per_ip_connect_burst: Some(policy.per_ip_connect_burst),
                exempt_loopback: Some(policy.exempt_loopback),
                register_timeout_secs: Some(policy.register_timeout.as_secs()),
                idle_timeout_secs: Some(0),
                flood_control: Some(true),
                flood_commands_per_sec: Some(flood.commands_per_sec),
                flood_command_burst: Some(flood.command_burst),
                flood_bytes_per_sec: Some(flood.bytes_per_sec),
                flood_byte_burst: Some(flood.byte_burst),
                flood_grace_secs: Some(flood.grace.as_secs()),
                store: Some(Location::default_file().to_string()),
                refuse_lookalike_names: Some(true),
                history: Some(d.history.enabled),
                history_limit: Some(d.history.default_limit),
                history_max_limit: Some(d.history.max_limit),
                history_days: Some(d.history.days.unwrap_or(0)),
                history_max_per_target: Some(d.history.max_per_target.unwrap_or(0)),
                irc_replay_lines: Some(d.history.irc_replay),
                ..Settings::default()
            })
            .redacted(has_password)
    }

    fn redacted(mut self, _has_password: bool) -> Settings {
        self.password = None;
        self.metrics_token = None;
        // A PostgreSQL URL may carry a password of its own.
        self.store = self
            .store
            .map(|url| url.parse::<Location>().map_or(url, |l| l.to_string()));
        self
    }

    /// The effective settings as a TOML file; whether a password is set shows as a comment.
    pub fn to_toml(&self, fd_limit: u64) -> String {
        let note = if self.password.is_some() {
            "# a server password is set (never shown)\n"
        } else {
            ""
        };
        let body = toml::to_string(&self.effective(fd_limit)).unwrap_or_default();
        format!("{note}{body}")
    }

    /// The server configuration these settings make, reading the files they name.
    pub fn config(&self, fd_limit: u64) -> io::Result<Config> {
        let s = self.clone().over(Settings::default());
        let d = Config::default();
        let everyone = s
            .everyone_channel
            .clone()
            .unwrap_or_else(|| IrcConfig::default().everyone_channel);
        if natter_proto::room::validate(&everyone).is_err() {
            return Err(bad(
                "everyone_channel must be a valid room name such as #everyone",
            ));
        }
        let motd = s
            .motd_file
            .as_ref()
            .map(std::fs::read_to_string)
            .transpose()?;
        let password = match (&s.password, &s.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if password.as_deref() == Some("") {
            return Err(bad("the server password is empty"));
        }
        let tls = match (&s.tls_cert, &s.tls_key) {
            (Some(c), Some(k)) => Some(std::sync::Arc::new(crate::tls::Tls::new(c, k)?)),
            (None, None) => None,
            _ => return Err(bad("TLS needs both tls_cert and tls_key")),
        };
        if !s.tls.is_empty() && tls.is_none() {
            return Err(bad("a TLS listener needs tls_cert and tls_key"));
        }
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        let irc_d = IrcConfig::default();
        let p = Policy::default();
        let f = FloodLimits::default();
        let r = RoomLimits::default();
        Ok(Config {
            max_connections: s
                .max_connections
                .unwrap_or_else(|| default_max_connections(fd_limit)),
            outbox_bytes: s.outbox_kib.map_or(d.outbox_bytes, |k| {
                usize::try_from(k * 1024).unwrap_or(usize::MAX)
            }),
            shutdown_grace: secs(s.shutdown_grace_secs, d.shutdown_grace),
            linger: secs(s.linger_secs, d.linger),
            write_stall: secs(s.write_stall_secs, d.write_stall),
            sniff_wait: s.sniff_wait_ms.map_or(d.sniff_wait, Duration::from_millis),
            patience: Patience {
                grace: secs(s.catch_up_secs, d.patience.grace),
                ..d.patience
            },
            rooms: RoomLimits {
                per_user: s.max_rooms_per_user.unwrap_or(r.per_user),
                members: s.max_room_members.unwrap_or(r.members),
                rooms: s.max_rooms.unwrap_or(r.rooms),
                per_address: s.max_rooms_per_address.unwrap_or(r.per_address),
                topic_bytes: s.max_topic_bytes.unwrap_or(r.topic_bytes),
            },
            web: Origins {
                allowed: s.allow_origin.clone(),
                names: public_names(&s),
            },
            irc: IrcConfig {
                server_name: s.server_name.clone().unwrap_or(irc_d.server_name),
                description: s.server_description.clone().unwrap_or(irc_d.description),
                everyone_channel: everyone,
                auto_join: s.irc_auto_join.unwrap_or(irc_d.auto_join),
                everyone_presence: s.irc_everyone_presence.unwrap_or(irc_d.everyone_presence),
                motd,
                ping_after: secs(s.irc_ping_secs, irc_d.ping_after),
                ping_timeout: secs(s.irc_ping_timeout_secs, irc_d.ping_timeout),
            },
            policy: Policy {
                password: password.map(Secret::new),
                per_ip_connections: s.per_ip_connections.unwrap_or(p.per_ip_connections),
                per_ip_connect_rate: s.per_ip_connect_rate.unwrap_or(p.per_ip_connect_rate),
                per_ip_connect_burst: s.per_ip_connect_burst.unwrap_or(p.per_ip_connect_burst),
                exempt: s.exempt.clone(),
                exempt_loopback: s.exempt_loopback.unwrap_or(p.exempt_loopback),
                register_timeout: secs(s.register_timeout_secs, p.register_timeout),
                idle_timeout: s
                    .idle_timeout_secs
                    .filter(|&n| n > 0)
                    .map(Duration::from_secs),
                flood: s.flood_control.unwrap_or(true).then(|| FloodLimits {
                    commands_per_sec: s.flood_commands_per_sec.unwrap_or(f.commands_per_sec),
                    command_burst: s.flood_command_burst.unwrap_or(f.command_burst),
                    bytes_per_sec: s.flood_bytes_per_sec.unwrap_or(f.bytes_per_sec),
                    byte_burst: s.flood_byte_burst.unwrap_or(f.byte_burst),
                    grace: secs(s.flood_grace_secs, f.grace),
                }),
            },
            tls,
            metrics: MetricsAccess {
                allow: if s.metrics_allow.is_empty() {
                    MetricsAccess::default().allow
                } else {
                    s.metrics_allow
                        .iter()
                        .map(|a| parse_net(a))
                        .collect::<io::Result<_>>()?
                },
                token: match s.metrics_token.as_deref() {
                    Some("") => return Err(bad("the metrics token is empty")),
                    t => t.map(Secret::new),
                },
            },
            operators: s
                .operators
                .iter()
                .map(|o| {
                    natter_proto::name::validate(o)
                        .map(|()| natter_proto::name::fold(o))
                        .map_err(|e| bad(format!("operator {o}: {e}")))
                })
                .collect::<io::Result<_>>()?,
            refuse_lookalikes: s.refuse_lookalike_names.unwrap_or(true),
            history: {
                let h = &d.history;
                let max_limit = s.history_max_limit.unwrap_or(h.max_limit);
                crate::history::HistoryConfig {
                    enabled: s.history.unwrap_or(h.enabled),
                    default_limit: s.history_limit.unwrap_or(h.default_limit).min(max_limit),
                    max_limit,
                    days: s.history_days.map_or(h.days, |d| (d > 0).then_some(d)),
                    max_per_target: s
                        .history_max_per_target
                        .map_or(h.max_per_target, |n| (n > 0).then_some(n)),
                    irc_replay: s.irc_replay_lines.unwrap_or(h.irc_replay),
                }
            },
            store: store(&s)?,
            cluster: cluster(&s)?,
            ..Config::default()
        })
    }
}

/// The names the page may be served under: those given, the host the server listens on (if
/// it is a name), and this machine's name.
fn public_names(s: &Settings) -> Vec<String> {
    let mut names = s.public_name.clone();
    if let Some(h) = &s.host
        && h.parse::<IpAddr>().is_err()
    {
        names.push(h.clone());
    }
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_owned());
        }
    }
    names
}

/// An address or network, as `--metrics-allow` takes it.
fn parse_net(s: &str) -> io::Result<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            bad(format!(
                "metrics_allow takes addresses or networks (CIDR), not {s}"
            ))
        })
}

/// Where the store is, checked: a cluster's nodes must share theirs.
fn store(s: &Settings) -> io::Result<Location> {
    let location = match &s.store {
        Some(url) => url.parse::<Location>().map_err(|e| bad(e.to_string()))?,
        None => Location::default_file(),
    };
    if s.cluster.is_some() && !location.is_shared() {
        return Err(bad(format!(
            "a cluster's nodes share their accounts, so they need one PostgreSQL store: pass \
             --store postgres://USER:PASS@HOST/DB (the same on every node), not {location}"
        )));
    }
    Ok(location)
}

/// The cluster settings, checked: a Redis URL and a node id fit for Redis keys.
fn cluster(s: &Settings) -> io::Result<Option<crate::cluster::ClusterConfig>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let Some(url) = &s.cluster else {
        if s.node_id.is_some() {
            return Err(bad("node_id needs cluster".into()));
        }
        return Ok(None);
    };
    if !url.starts_with("redis://") {
        return Err(bad(format!(
            "cluster must be a redis://HOST:PORT URL, not {url}"
        )));
    }
    let node_id = s
        .node_id
        .clone()
        .unwrap_or_else(crate::cluster::default_node_id);
    if node_id.is_empty()
        || node_id.len() > 100
        || !node_id.chars().all(crate::cluster::valid_id_char)
    {
        return Err(bad(
            "node_id must be 1 to 100 letters, digits and - _ . : only".into(),
        ));
    }
    Ok(Some(crate::cluster::ClusterConfig {
        url: url.clone(),
        node_id,
    }))
}

/// Worker threads without `threads`: one per core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default connection limit: what the descriptor limit allows.
pub fn default_max_connections(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .min(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_are_checked() {
        let s: Settings =
            toml::from_str("cluster = \"redis://127.0.0.1:6379\"\nnode_id = \"a-1\"\nstore = \"postgres://n@db/n\"\n").unwrap();
        let c = s.config(1024).unwrap().cluster.unwrap();
        assert_eq!(
            (c.url.as_str(), c.node_id.as_str()),
            ("redis://127.0.0.1:6379", "a-1")
        );
        let default = Settings {
            cluster: Some("redis://127.0.0.1:6379".into()),
            store: Some("postgres://n@db/n".into()),
            ..Settings::default()
        };
        let id = default.config(1024).unwrap().cluster.unwrap().node_id;
        assert!(id.chars().all(crate::cluster::valid_id_char), "{id}");
        for bad in [
            "cluster = \"http://x\"\nstore = \"postgres://n@db/n\"\n",
            "cluster = \"redis://x:1\"\nnode_id = \"a b\"\nstore = \"postgres://n@db/n\"\n",
            "node_id = \"a\"\n",
        ] {
            let s: Settings = toml::from_str(bad).unwrap();
            assert!(s.config(1024).is_err(), "{bad}");
        }
        assert!(Settings::default().config(1024).unwrap().cluster.is_none());
    }

    #[test]
    fn command_line_wins_over_file_and_file_over_defaults() {
        let file: Settings = toml::from_str(
            "port = 9000\nmax_rooms = 5\nirc = [\"127.0.0.1:6667\"]\nflood_control = false\nthreads = 3\n",
        )
        .unwrap();
        let cli = Settings {
            port: Some(9100),
            ..Settings::default()
        };
        let s = cli.over(file);
        assert_eq!(s.port, Some(9100));
        assert_eq!(s.max_rooms, Some(5));
        assert_eq!(s.irc, ["127.0.0.1:6667"]);
        assert_eq!(s.threads.map(|n| n.get()), Some(3));
        assert!(toml::from_str::<Settings>("threads = 0\n").is_err());
        let c = s.config(1024).unwrap();
        assert_eq!(c.rooms.rooms, 5);
        assert!(c.policy.flood.is_none());
        assert_eq!(c.max_connections, 960);
    }

    #[test]
    fn the_store_is_a_file_by_default_and_shared_in_a_cluster() {
        let default = Settings::default().config(1024).unwrap();
        assert_eq!(default.store, Location::Sqlite("natter.db".into()));
        let memory: Settings = toml::from_str("store = \"memory\"\n").unwrap();
        assert_eq!(memory.config(1024).unwrap().store, Location::Memory);
        let bad: Settings = toml::from_str("store = \"natter.db\"\n").unwrap();
        let err = bad.config(1024).unwrap_err().to_string();
        assert!(err.contains("sqlite:PATH, memory or postgres://"), "{err}");
        for store in ["", "store = \"sqlite:x.db\"\n", "store = \"memory\"\n"] {
            let s: Settings =
                toml::from_str(&format!("cluster = \"redis://127.0.0.1:6379\"\n{store}")).unwrap();
            let err = s.config(1024).unwrap_err().to_string();
            assert!(err.contains("need one PostgreSQL store"), "{store}: {err}");
        }
    }

    #[test]
    fn operators_and_metrics_access_are_checked() {
        let s: Settings = toml::from_str(
            "operators = [\"Root\", \"ops\"]\nmetrics_allow = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
        )
        .unwrap();
        let c = s.config(1024).unwrap();
        assert_eq!(c.operators, ["root", "ops"]);
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        assert!(c.metrics.admits(ip("10.1.2.3"), None));
        assert!(c.metrics.admits(ip("192.0.2.7"), None));
        assert!(
            !c.metrics.admits(ip("127.0.0.1"), None),
            "the list replaces loopback"
        );
        let d = Settings::default().config(1024).unwrap();
        assert!(
            d.metrics.admits(ip("127.0.0.1"), None)
                && d.metrics.admits(ip("::ffff:127.0.0.1"), None)
        );
        assert!(!d.metrics.admits(ip("192.0.2.7"), Some("Bearer x")));
        for bad in [
            "operators = [\"9x\"]\n",
            "metrics_allow = [\"nonsense\"]\n",
            "metrics_token = \"\"\n",
        ] {
            let s: Settings = toml::from_str(bad).unwrap();
            assert!(s.config(1024).is_err(), "{bad}");
        }
        let t = Settings {
            metrics_token: Some("s3cr3t-token".into()),
            ..Settings::default()
        };
        assert!(!t.to_toml(1024).contains("s3cr3t-token"));
        assert!(
            t.config(1024)
                .unwrap()
                .metrics
                .admits(ip("192.0.2.7"), Some("Bearer s3cr3t-token"))
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("prot = 1\n").is_err());
    }

    #[test]
    fn printed_config_never_shows_the_password_and_reads_back() {
        let s = Settings {
            password: Some("hunter2".into()),
            store: Some("postgres://natter:swordfish@db/natter".into()),
            ..Settings::default()
        };
        let text = s.to_toml(1024);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("swordfish"), "{text}");
        assert!(
            text.contains("store = \"postgres://natter:***@db/natter\""),
            "{text}"
        );
        assert!(
            Settings::default()
                .to_toml(1024)
                .contains("store = \"sqlite:natter.db\"")
        );
        assert!(text.contains("max_rooms = 10000"), "{text}");
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back.port, Some(8090));
    }
}
