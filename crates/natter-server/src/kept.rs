//! Rooms that stay: a room with an account among its operators outlives its last member and
//! the server, with its topic and its operators. What the store keeps of one, and the task
//! that writes the changes in order without holding up the hub.

use natter_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// What the store keeps of a room that stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRoom {
    /// The name as its creator typed it.
    pub name: String,
    /// The topic, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<KeptTopic>,
    /// The folded names of the accounts that operate it.
    pub operators: Vec<String>,
    /// Its flags, key and limit (`+ntk key`), unless they are a new room's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<String>,
    /// Its bans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bans: Vec<KeptBan>,
}

/// A kept room's ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBan {
    /// The mask.
    pub mask: String,
    /// Who set it.
    pub by: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// A kept room's topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptTopic {
    /// Who set it.
    pub by: String,
    /// The topic.
    pub text: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// A change for the writer, or a question whether the changes before it are written.
#[derive(Debug)]
enum Change {
    Put(String, Option<String>),
    Flush(oneshot::Sender<()>),
}

/// Hands rooms' changes to the store in the order they were made; the hub never waits.
/// Changes are few (a room made, an operator added, a topic set), so the queue is not
/// bounded: it cannot grow faster than operators act.
#[derive(Debug, Clone)]
pub struct Keeper {
    tx: mpsc::UnboundedSender<Change>,
}

impl Keeper {
    /// Starts the task that writes the changes into `store`.
    pub fn start(store: Store) -> Keeper {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                match change {
                    Change::Put(key, state) => {
                        if let Err(e) = store.put_room(key.clone(), state).await {
                            // The room is as it was in memory; only the next start misses
                            // the change.
                            warn!(room = %key, error = %e, "a room's change could not be kept");
                        }
                    }
                    Change::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Keeper { tx }
    }

    /// Keeps `room` under `key`, or forgets the room (`None`).
    pub fn put(&self, key: &str, room: Option<&KeptRoom>) {
        let state = room.map(|r| serde_json::to_string(r).expect("a room serializes"));
        let _ = self.tx.send(Change::Put(key.to_owned(), state));
    }

    /// Waits until every change made before it is in the store.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Change::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

/// The rooms the store keeps; a room whose state cannot be read is skipped, with a warning.
pub async fn load(store: &Store) -> Result<Vec<KeptRoom>, StoreError> {
    let rooms = store.rooms().await?;
    Ok(rooms
        .into_iter()
        .filter_map(|(key, state)| match serde_json::from_str(&state) {
            Ok(room) => Some(room),
            Err(e) => {
                warn!(room = %key, error = %e, "a kept room cannot be read; it is left out");
                None
            }
        })
        .collect())
}
