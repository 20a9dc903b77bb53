//! What every connection shares, and the registry through which a shutdown reaches every
//! running session.

use crate::client_id::ClientId;
use crate::hub::Hub;
use crate::outbox::Outbox;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio_util::task::TaskTracker;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// Routing state.
    pub hub: Arc<Hub>,
    /// Limits and timings.
    pub config: crate::config::Config,
    /// The native greeting, formatted once.
    pub hello: Bytes,
    /// The IRC settings, shared by every IRC session.
    pub irc: Arc<crate::config::IrcConfig>,
    /// The source of connection identities.
    pub ids: AtomicU64,
    /// Every connection's task, so that a shutdown can wait for them all.
    pub tracker: TaskTracker,
    /// Per-address admission.
    pub admission: Arc<crate::admission::Admission>,
    /// Running sessions, for shutdown.
    pub live: Live,
    /// What every connection's driver shares: counters, the clock for far deadlines.
    pub env: Arc<super::driver::Env>,
    /// Admission, password, timeouts and flood control, shared by every session.
    pub policy: Arc<crate::config::Policy>,
    /// Where accounts are kept.
    pub store: natter_store::Store,
}

/// Running sessions by identity, so that a shutdown reaches each through its outbox instead
/// of every idle connection holding a wait future for it: one way to shut down, whatever
/// the wire and protocol.
#[derive(Debug, Default)]
pub struct Live {
    /// Every running session's outbox.
    outboxes: Mutex<HashMap<ClientId, Weak<Outbox>>>,
    /// Set (before the map is read) when the server begins to shut down.
    down: AtomicBool,
}

impl Live {
    /// Adds a session; tells it at once if the server is already shutting down.
    pub fn enrol(&self, id: ClientId, outbox: &Arc<Outbox>) {
        self.lock().insert(id, Arc::downgrade(outbox));
        // After the insert: a shutdown that began before it is seen here, one that begins
        // after it finds the outbox in the map.
        if self.down.load(Ordering::SeqCst) {
            outbox.shut_down();
        }
    }

    /// Removes a session that ended.
    pub fn leave(&self, id: ClientId) {
        self.lock().remove(&id);
    }

    /// Tells every session that the server is shutting down.
    pub fn shut_down_all(&self) {
        self.down.store(true, Ordering::SeqCst);
        let outboxes: Vec<_> = self.lock().values().filter_map(Weak::upgrade).collect();
        for o in outboxes {
            o.shut_down();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, Weak<Outbox>>> {
        self.outboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
