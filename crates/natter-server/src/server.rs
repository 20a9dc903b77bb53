//! The server: a hub, its listeners and their connections, from start to graceful shutdown.

use crate::account::Accounts;
use crate::config::Config;
use crate::event::IrcNames;
use crate::hub::Hub;
use crate::stats::Stats;
use crate::transport::accept::{Listener, accept_loop};
use crate::transport::alarm::Alarms;
use crate::transport::driver::Env;
use crate::transport::{Assume, Shared};
use natter_proto::ServerLine;
use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

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
    let Opened {
        accounts,
        kept,
        rooms,
        node,
        last_id,
    } = open_store(&config.store, config.cluster.is_none(), &config.history).await?;
    let accounts = accounts.with_operators(config.operators.clone());
    let store = accounts.store().clone();
    info!(accounts = accounts.count(), "accounts loaded");
    let stats = Arc::new(Stats::default());
    let mut hub = Hub::new(
        stats.clone(),
        config.rooms.clone(),
        IrcNames {
            server: config.irc.server_name.clone(),
            everyone: config.irc.everyone_channel.clone(),
        },
        Arc::new(accounts),
    );
    let history = crate::history::History::new(
        store.clone(),
        config.history.clone(),
        last_id,
        node,
        stats.clone(),
    );
    hub = hub
        .with_history(Arc::new(history))
        .with_irc_auto_join(config.irc.auto_join)
        .with_irc_everyone_presence(config.irc.everyone_presence)
        .with_lookalikes_refused(config.refuse_lookalikes)
        .with_linger(crate::hub::Linger {
            time: config.linger,
            outbox_limit: config.outbox_bytes,
        });
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
    hub = hub.with_keeper(crate::kept::Keeper::start(store.clone()));
    let hub = Arc::new(hub);
    let n = hub.restore_rooms(rooms);
    if n > 0 {
        info!(rooms = n, "rooms that stay are back");
    }
    if !kept.is_empty() {
        // Sessions the last server kept wait for their clients again (a cluster's nodes
        // share one database, so they keep none).
        let n = hub.restore(kept);
        info!(
            sessions = n,
            "sessions kept over the restart wait to be resumed"
        );
    }
    let backplane_stop = CancellationToken::new();
    if config.history.enabled {
        let (store, history, stop) = (
            store.clone(),
            config.history.clone(),
            backplane_stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(crate::history::PRUNE_EVERY) => {}
                }
                match crate::history::prune(&store, &history).await {
                    Ok(0) => {}
                    Ok(n) => info!(messages = n, "messages past their retention deleted"),
                    Err(e) => warn!(error = %e, "retention could not run"),
                }
            }
        });
    }
    tokio::spawn(hub.clone().announce_arrivals_until(backplane_stop.clone()));
    let env = Arc::new(Env {
        stats: stats.clone(),
        alarms: Alarms::default(),
    });
    tokio::spawn({
        let (env, stop) = (env.clone(), backplane_stop.clone());
        async move { env.alarms.run(stop).await }
    });
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
        admission: Arc::new(crate::admission::Admission::new(stats.clone())),
        live: Default::default(),
        env: env.clone(),
        store,
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
    if cluster.is_none() {
        let sessions = shared.hub.saved_sessions();
        if !sessions.is_empty() {
            let n = sessions.len();
            let now = crate::account::unix_now();
            match shared.store.save_sessions(sessions, now).await {
                Ok(()) => info!(sessions = n, "sessions kept for the next start"),
                Err(e) => warn!(error = %e, "the sessions could not be kept"),
            }
        }
    }
    if let Some(keeper) = shared.hub.keeper()
        && tokio::time::timeout(Duration::from_secs(5), keeper.flush())
            .await
            .is_err()
    {
        warn!("the rooms' last changes were not kept in time");
    }
    match tokio::time::timeout(Duration::from_secs(5), shared.store.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "the store's last writes failed"),
        Err(_) => warn!("the store did not finish its last writes in time"),
    }
    info!("server stopped");
    Ok(())
}

/// Opens the store and reads its accounts, on a blocking thread: opening may wait on a file
/// or a network, and the runtime then knows the server is busy starting (a test's paused
/// clock does not run ahead meanwhile).
async fn open_store(
    location: &natter_store::Location,
    sessions: bool,
    history: &crate::history::HistoryConfig,
) -> io::Result<Opened> {
    let place = location.clone();
    let history = history.clone();
    let runtime = tokio::runtime::Handle::current();
    let opened = tokio::task::spawn_blocking(move || {
        let store = natter_store::Store::open(&place, natter_store::Options::default())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        runtime.block_on(async {
            let kept = if sessions {
                store.take_sessions().await.unwrap_or_else(|e| {
                    warn!(error = %e, "the kept sessions could not be read");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            let unreadable = |e| io::Error::other(format!("the store cannot be read: {e}"));
            // Retention runs once before the server serves, so nothing it no longer keeps
            // is ever shown; then hourly.
            match crate::history::prune(&store, &history).await {
                Ok(0) => {}
                Ok(n) => info!(messages = n, "messages past their retention deleted"),
                Err(e) => warn!(error = %e, "retention could not run"),
            }
            let rooms = crate::kept::load(&store).await.map_err(unreadable)?;
            let node = store.node_number().await.map_err(unreadable)?;
            let last_id = store.last_message_id().await.map_err(unreadable)?;
            let accounts = Accounts::load(store).await.map_err(unreadable)?;
            Ok::<_, io::Error>(Opened {
                accounts,
                kept,
                rooms,
                node,
                last_id,
            })
        })
    })
    .await
    .map_err(io::Error::other)??;
    info!(
        store = %location,
        schema = natter_store::SCHEMA_VERSION,
        "store open"
    );
    Ok(opened)
}

/// What the store holds that the server starts from.
struct Opened {
    /// The accounts.
    accounts: Accounts,
    /// The sessions the last server kept.
    kept: Vec<(String, String, i64)>,
    /// The rooms that stay.
    rooms: Vec<crate::kept::KeptRoom>,
    /// This server's number among those sharing the store, for message ids.
    node: u16,
    /// The newest message id kept, which new ids follow.
    last_id: Option<i64>,
}
