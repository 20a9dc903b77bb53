//! The hub: who is registered, and fan-out of every line to the right outboxes.
//!
//! All routing state sits behind one `RwLock`. Every message (MESSAGE, DM) takes it for
//! reading only, so messages from different clients never wait for each other; only changes of
//! membership (register, rename, leave) take it for writing, briefly. It is a std lock, never
//! held across an `.await`: pushing to an outbox never waits, so neither does fan-out.
//!
//! A broadcast is formatted once into a [`Bytes`] and every recipient's outbox gets a
//! reference-counted handle to the same memory.
//!
//! Membership events (ONLINE, RENAMED, OFFLINE) are pushed while the write lock is held, so
//! every client sees membership change in one global order, consistent with the messages
//! around it.

use crate::outbox::{Outbox, Pushed};
use crate::stats::Stats;
use bytes::Bytes;
use natter_proto::{ErrorCode, ServerLine, name};
use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Identifies one connection for the life of the server.
pub type ClientId = u64;

/// Shared routing state; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Hub {
    /// Registered users; see the module docs for the locking rule.
    state: RwLock<State>,
    /// Counters for logs and (later) metrics.
    stats: Arc<Stats>,
    /// Set when the server shuts down: leaves are then not announced, since everyone is
    /// leaving and announcing each to all would cost the square of the number of clients.
    closing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Registered users by folded name.
    users: HashMap<String, Member>,
}

/// A registered user, as the hub routes to them.
#[derive(Debug, Clone)]
struct Member {
    /// Connection identity, to tell this user from another of the same name later.
    id: ClientId,
    /// The name as the user typed it (case kept).
    name: Arc<str>,
    /// Where lines for this user go.
    outbox: Arc<Outbox>,
}

/// What a successful REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// First registration under this name.
    New,
    /// A rename from the previous name.
    Renamed {
        /// The name before.
        old: Arc<str>,
    },
    /// The client already had exactly this name.
    Unchanged,
}

fn line(l: ServerLine<'_>) -> Bytes {
    l.to_bytes()
}

impl Hub {
    /// An empty hub reporting to `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            state: RwLock::new(State::default()),
            stats,
            closing: AtomicBool::new(false),
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing that holds this lock can panic halfway through a change (pushes cannot
        // panic), so a poisoned lock still holds consistent state.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers client `id` as `name`, or renames it if it already has a name (`current`).
    pub fn register(
        &self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        current: Option<&Arc<str>>,
        name: &str,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        let key = name::fold(name);
        let mut st = self.write();
        let new_name: Arc<str> = Arc::from(name);
        if let Some(cur) = current {
            if **cur == *name {
                return Ok((Registered::Unchanged, cur.clone()));
            }
            if let Some(m) = st.users.get(&key)
                && m.id != id
            {
                return Err(ErrorCode::NameTaken);
            }
            let old_key = name::fold(cur);
            let Some(mut m) = st.users.remove(&old_key) else {
                // The session and the hub disagree; treat it as a fresh registration.
                return self.insert(&mut st, key, id, outbox, new_name, Registered::New);
            };
            m.name = new_name.clone();
            st.users.insert(key, m);
            let ev = line(ServerLine::Renamed {
                old: Cow::Borrowed(cur),
                new: Cow::Borrowed(name),
            });
            Self::fan_out(&st, id, &ev);
            return Ok((Registered::Renamed { old: cur.clone() }, new_name));
        }
        if st.users.contains_key(&key) {
            return Err(ErrorCode::NameTaken);
        }
        self.insert(&mut st, key, id, outbox, new_name, Registered::New)
    }

    fn insert(
        &self,
        st: &mut State,
        key: String,
        id: ClientId,
        outbox: &Arc<Outbox>,
        name: Arc<str>,
        how: Registered,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        match st.users.entry(key) {
            Entry::Occupied(_) => Err(ErrorCode::NameTaken),
            Entry::Vacant(v) => {
                v.insert(Member {
                    id,
                    name: name.clone(),
                    outbox: outbox.clone(),
                });
                self.stats.set_registered(st.users.len());
                let ev = line(ServerLine::Online {
                    name: Cow::Borrowed(&name),
                });
                Self::fan_out(st, id, &ev);
                Ok((how, name))
            }
        }
    }

    /// Marks the hub as shutting down (see the `closing` field).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Removes a registered user and tells everyone else.
    pub fn leave(&self, id: ClientId, name: &str) {
        let mut st = self.write();
        let key = name::fold(name);
        if st.users.get(&key).is_some_and(|m| m.id == id) {
            st.users.remove(&key);
            self.stats.set_registered(st.users.len());
            if self.closing.load(Ordering::Relaxed) {
                return;
            }
            let ev = line(ServerLine::Offline {
                name: Cow::Borrowed(name),
            });
            Self::fan_out(&st, id, &ev);
        }
    }

    /// Sends `bytes` (whole lines) to every registered user but `from`; returns how many got it.
    pub fn broadcast(&self, from: ClientId, bytes: &Bytes) -> usize {
        Self::fan_out(&self.read(), from, bytes)
    }

    /// Sends `bytes` to the user named `to` (ignoring case).
    /// Returns the recipient's name as registered.
    pub fn direct(&self, to: &str, bytes: Bytes) -> Result<Arc<str>, ErrorCode> {
        let st = self.read();
        let m = st.users.get(&name::fold(to)).ok_or(ErrorCode::NoSuchUser)?;
        Self::deliver(&m.outbox, bytes);
        Ok(m.name.clone())
    }

    /// The registered users' names, sorted ignoring case.
    pub fn names(&self) -> Vec<Arc<str>> {
        let st = self.read();
        let mut v: Vec<(&String, Arc<str>)> =
            st.users.iter().map(|(k, m)| (k, m.name.clone())).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, n)| n).collect()
    }

    fn fan_out(st: &State, from: ClientId, bytes: &Bytes) -> usize {
        let mut n = 0;
        for m in st.users.values() {
            if m.id != from {
                Self::deliver(&m.outbox, bytes.clone());
                n += 1;
            }
        }
        n
    }

    fn deliver(outbox: &Outbox, bytes: Bytes) {
        // An overflow is handled by the recipient's own connection task, which the push woke;
        // the sender just moves on.
        let _: Pushed = outbox.push(bytes);
    }
}
