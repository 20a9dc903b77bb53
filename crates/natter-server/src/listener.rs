//! Accepting connections: the connection limit, accept errors, and graceful shutdown.

use crate::config::Config;
use crate::connection::{self, Shared};
use crate::event::IrcNames;
use crate::hub::Hub;
use crate::session::bye;
use crate::stats::Stats;
use natter_proto::{ByeReason, ServerLine};
use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Serves clients from `listener` until `shutdown` completes, then says goodbye to every
/// client, waits for them (up to the configured grace) and returns.
///
/// The caller binds the socket and chooses the shutdown signal, so tests can bind an ephemeral
/// port and stop the server whenever they like.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        hub: Arc::new(Hub::new(
            stats.clone(),
            config.rooms.clone(),
            IrcNames {
                server: config.irc.server_name.clone(),
                everyone: config.irc.everyone_channel.clone(),
            },
        )),
        hello: ServerLine::Hello {
            text: Cow::Owned(format!(
                "natter {}: type HELP for the list of commands",
                env!("CARGO_PKG_VERSION")
            )),
        }
        .to_bytes(),
        config,
    });
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut next_id = 0u64;
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
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
                    _ = &mut shutdown => break,
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
        next_id += 1;
        let connected = stats.connect();
        info!(%peer, connected, registered = stats.registered(), "connected");
        let guard = Disconnect(stats.clone());
        tracker.spawn(connection::serve(
            stream,
            peer,
            next_id,
            shared.clone(),
            token.clone(),
            guard,
        ));
    }

    drop(listener);
    info!(
        clients = stats.connected(),
        "shutting down: saying goodbye to every client"
    );
    shared.hub.close();
    token.cancel();
    tracker.close();
    let wait = shared.config.shutdown_grace + Duration::from_secs(3);
    if tokio::time::timeout(wait, tracker.wait()).await.is_err() {
        warn!(
            left = stats.connected(),
            "some connections did not finish in time"
        );
    }
    info!("server stopped");
    Ok(())
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
pub struct Disconnect(Arc<Stats>);

impl Drop for Disconnect {
    fn drop(&mut self) {
        self.0.disconnect();
    }
}
