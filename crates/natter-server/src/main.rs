//! `natter-server [HOST] [PORT]`: the command line around [`natter_server::run_all`].

use clap::Parser;
use natter_server::settings::Settings;
use natter_server::{Assume, Listener};
use std::io::IsTerminal;
use std::path::PathBuf;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the C library's allocator: after a burst (a crowd arriving queues
/// millions of presence lines) glibc keeps most of the freed memory in fragmented arenas,
/// where jemalloc gives it back to the system (its settings: `.cargo/config.toml`).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// natter's chat server: the lab's line protocol for nc and the lab's clients, natter-client,
/// browsers and IRC clients, all on one port.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Log every command received (-v); same as RUST_LOG=debug.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Read settings from this TOML file (keys as the flags, with underscores); flags win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective settings as a TOML file and exit.
    #[arg(long)]
    print_config: bool,
    /// Every setting.
    #[command(flatten)]
    settings: Settings,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error's own words, not its Debug form: they say what to change.
            eprintln!("natter-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
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
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = args.settings.over(file);
    if args.print_config {
        print!("{}", settings.to_toml(fd_limit));
        return Ok(());
    }
    let config = settings.config(fd_limit)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            settings
                .threads
                .map_or_else(natter_server::settings::default_threads, |n| n.get()),
        )
        .enable_all()
        .build()?
        .block_on(serve(settings, config))
}

/// Binds the listeners and serves until Ctrl-C or SIGTERM.
async fn serve(settings: Settings, config: natter_server::Config) -> std::io::Result<()> {
    let (host, port) = (
        settings.host.as_deref().unwrap_or("localhost"),
        settings.port.unwrap_or(8090),
    );
    let shutdown = shutdown_signal()?;
    survive_file_size_limit()?;
    let listener = natter_server::bind((host, port)).await?;
    let addr = listener.local_addr()?;
    info!(
        %addr,
        threads = tokio::runtime::Handle::current().metrics().num_workers(),
        max_connections = config.max_connections,
        tls = config.tls.is_some(),
        "natter-server listening on {addr}; try: nc {} {}",
        addr.ip(),
        addr.port()
    );
    info!("open http://{addr}/ in a browser to chat");
    let mut listeners = vec![Listener {
        socket: listener,
        assume: Assume::Line,
    }];
    for (addrs, assume, what) in [
        (&settings.web, Assume::Http, "browsers"),
        (&settings.irc, Assume::Irc, "IRC clients"),
        (&settings.tls, Assume::Tls, "TLS clients"),
    ] {
        for a in addrs {
            let socket = natter_server::bind(a.as_str()).await?;
            info!(addr = %socket.local_addr()?, "{what} welcome on {a} too");
            listeners.push(Listener { socket, assume });
        }
    }
    if let Some(tls) = config.tls.clone() {
        reload_on_hangup(tls)?;
    }
    natter_server::run_all(listeners, config, shutdown).await
}

/// Reloads the TLS certificate and key on SIGHUP; a failed reload keeps the old ones.
#[cfg(unix)]
fn reload_on_hangup(tls: std::sync::Arc<natter_server::tls::Tls>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => info!("TLS certificate reloaded"),
                Err(e) => warn!(error = %e, "TLS reload failed; keeping the old certificate"),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_hangup(_: std::sync::Arc<natter_server::tls::Tls>) -> std::io::Result<()> {
    Ok(())
}

/// Takes SIGXFSZ, whose default action kills the process, so that a file reaching the
/// file-size limit (`ulimit -f`) fails the write that went past it, which the store reports as
/// a store that cannot write, and the server goes on relaying.
#[cfg(unix)]
fn survive_file_size_limit() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut xfsz = signal(SignalKind::from_raw(libc::SIGXFSZ))?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            warn!("a file reached the file-size limit (ulimit -f); its write failed");
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn survive_file_size_limit() -> std::io::Result<()> {
    Ok(())
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
