//! `natter-server [HOST] [PORT]`: the command line around [`natter_server::run`].

use clap::Parser;
use natter_server::config::IrcConfig;
use natter_server::connection::Assume;
use natter_server::hub::RoomLimits;
use natter_server::{Config, Listener};
use std::io::IsTerminal;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// natter's chat server: the lab's line protocol for nc, the lab's clients and natter-client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Host name or address to listen on.
    #[arg(default_value = "localhost")]
    host: String,
    /// TCP port to listen on (0 picks a free one).
    #[arg(default_value_t = 8090)]
    port: u16,
    /// Log every command received (-v); same as RUST_LOG=debug.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Most clients connected at once [default: the file-descriptor limit less a reserve].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most KiB queued for one client before it is dropped as a slow consumer.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..))]
    outbox_kib: u64,
    /// Seconds a shutdown waits for clients to take their last lines.
    #[arg(long, default_value_t = 5)]
    shutdown_grace: u64,
    /// Most rooms that may exist at once.
    #[arg(long, default_value_t = RoomLimits::default().rooms)]
    max_rooms: usize,
    /// Most rooms one user may be in.
    #[arg(long, default_value_t = RoomLimits::default().per_user)]
    max_rooms_per_user: usize,
    /// Most members one room may have.
    #[arg(long, default_value_t = RoomLimits::default().members)]
    max_room_members: usize,
    /// Longest room topic, in bytes.
    #[arg(long, default_value_t = RoomLimits::default().topic_bytes)]
    max_topic_bytes: usize,
    /// Also listen for IRC clients on HOST:PORT (IRC clients are welcome on the main port
    /// too; this is for clients configured for the usual 6667).
    #[arg(long, value_name = "HOST:PORT")]
    irc: Vec<String>,
    /// The server's name as IRC clients see it.
    #[arg(long, default_value_t = IrcConfig::default().server_name)]
    server_name: String,
    /// One line describing the server, shown to IRC clients.
    #[arg(long, default_value_t = IrcConfig::default().description)]
    server_description: String,
    /// The IRC channel that stands for Everyone.
    #[arg(long, default_value_t = IrcConfig::default().everyone_channel)]
    everyone_channel: String,
    /// Do not put IRC users into the everyone channel when they register.
    #[arg(long)]
    no_auto_join: bool,
    /// A file whose lines are the IRC message of the day.
    #[arg(long, value_name = "FILE")]
    motd_file: Option<std::path::PathBuf>,
    /// Also serve HTTP (the browser client, /healthz, /metrics) on HOST:PORT; the main port
    /// serves it too.
    #[arg(long, value_name = "HOST:PORT")]
    web: Vec<String>,
    /// Let pages from this origin (e.g. https://chat.example) open the WebSocket; `*` lets
    /// any. The page's own origin is always allowed.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
}

/// Descriptors kept back from the connection limit for the listener, logs and the like.
const FD_RESERVE: u64 = 64;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let default = if args.verbose > 0 { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let fd_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "could not raise the file-descriptor limit");
            1024
        }
    };
    let fd_bound = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if natter_proto::room::validate(&args.everyone_channel).is_err() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--everyone-channel must be a valid room name such as #everyone",
        ));
    }
    let motd = match &args.motd_file {
        Some(path) => Some(std::fs::read_to_string(path)?),
        None => None,
    };
    let config = Config {
        max_connections: args.max_connections.unwrap_or(fd_bound.min(1_000_000)),
        outbox_bytes: usize::try_from(args.outbox_kib * 1024).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        rooms: RoomLimits {
            per_user: args.max_rooms_per_user,
            members: args.max_room_members,
            rooms: args.max_rooms,
            topic_bytes: args.max_topic_bytes,
        },
        allowed_origins: args.allow_origin.clone(),
        irc: IrcConfig {
            server_name: args.server_name.clone(),
            description: args.server_description.clone(),
            everyone_channel: args.everyone_channel.clone(),
            auto_join: !args.no_auto_join,
            motd,
            ..IrcConfig::default()
        },
        ..Config::default()
    };

    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    info!(
        %addr,
        max_connections = config.max_connections,
        "natter-server listening on {addr}; try: nc {} {}",
        addr.ip(),
        addr.port()
    );
    let mut listeners = vec![Listener {
        socket: listener,
        assume: Assume::Line,
    }];
    info!("open http://{addr}/ in a browser to chat");
    for web in &args.web {
        let socket = TcpListener::bind(web.as_str()).await?;
        info!(addr = %socket.local_addr()?, "browsers welcome on http://{web}/ too");
        listeners.push(Listener {
            socket,
            assume: Assume::Http,
        });
    }
    for irc in &args.irc {
        let socket = TcpListener::bind(irc.as_str()).await?;
        info!(addr = %socket.local_addr()?, "IRC clients welcome on {irc} too");
        listeners.push(Listener {
            socket,
            assume: Assume::Irc,
        });
    }
    natter_server::run_all(listeners, config, shutdown).await
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are installed here, before the
/// server accepts anyone, so a signal can never find the default action (instant death) in
/// place and skip the goodbyes.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
