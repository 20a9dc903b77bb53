//! Sessions that outlive their connection: a user whose client asked for a resume token
//! (`SESSION`) and then lost its connection stays, for the linger time, as if still there:
//! same name, same rooms, nobody told of a departure, and every line for it kept in its
//! outbox. A new connection that presents the token (`RESUME`) takes the user over and gets
//! those lines first, in order. A server shutting down keeps such sessions in the store and
//! the next one restores them, lingering, so clients resume across a restart too.

use super::{Hub, Linger, Registered, Room, RoomTopic, State, TokenHash, User, Welcome, pid};
use crate::backplane::Op;
use crate::client_id::{ClientId, PERSON, is_local};
use crate::event::Flavor;
use crate::outbox::Outbox;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use natter_proto::{ErrorCode, name, room as room_name};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What every resume token starts with, so that one is recognised in a leak.
const TOKEN_PREFIX: &str = "nr_";

/// Most tokens one user keeps (one per device, say); the oldest goes first.
const MAX_TOKENS: usize = 8;

fn hash(token: &str) -> TokenHash {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A session as the store keeps it over a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    name: String,
    /// Its tokens' hashes, in base64.
    tokens: Vec<String>,
    #[serde(default)]
    away: Option<String>,
    #[serde(default)]
    rooms: Vec<SavedRoom>,
    /// It said `TAGS ON`: what it misses while it waits is written with its tags.
    #[serde(default)]
    tags: bool,
    /// It said `MULTILINE ON`: what it misses is written with escaped texts.
    #[serde(default)]
    multiline: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRoom {
    name: String,
    op: bool,
    #[serde(default)]
    voice: bool,
    #[serde(default)]
    topic: Option<SavedTopic>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedTopic {
    by: String,
    text: String,
    at: u64,
}

impl Hub {
    /// A hub whose sessions linger as `linger` says.
    pub fn with_linger(mut self, linger: Linger) -> Self {
        self.linger = linger;
        self
    }

    /// How long a session whose connection was lost waits for its client.
    pub fn linger_time(&self) -> Duration {
        self.linger.time
    }

    /// A new resume token for the user of connection `conn` (`SESSION`).
    pub fn session_token(&self, conn: ClientId) -> Result<String, ErrorCode> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| ErrorCode::StoreUnavailable)?;
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let h = hash(&token);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        if !st.users.contains_key(&id) || !is_local(id) {
            return Err(ErrorCode::NotRegistered);
        }
        let tokens = st.tokens_of.entry(id).or_default();
        if tokens.len() >= MAX_TOKENS {
            let oldest = tokens.remove(0);
            st.resumable.remove(&oldest);
        }
        tokens.push(h);
        st.resumable.insert(h, id);
        Ok(token)
    }

    /// Connection `conn` was lost. If its user has a resume token and no other connection,
    /// the user stays, waiting to be resumed, until the linger time is up: `true`. Otherwise
    /// nothing is done (the caller leaves as usual).
    pub fn linger(self: &Arc<Self>, conn: ClientId) -> bool {
        if self.relays {
            // In a cluster the client may come back through another node, which knows
            // nothing of this one's sessions and would find the name held: users leave at
            // once, as they always have, and the other nodes are told.
            return false;
        }
        let closing = self.closing.load(std::sync::atomic::Ordering::Relaxed);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        if !st.tokens_of.contains_key(&id) {
            return false;
        }
        let Some(user) = st.users.get_mut(&id) else {
            return false;
        };
        if user.links().is_some_and(|l| l.len() > 1) {
            // The account stays online through its other connections.
            return false;
        }
        if user.take_links().is_some() {
            // Its one connection left is this one, whose outbox is the user's already.
            Self::relink(st, id);
        }
        if conn != id {
            st.person_of.remove(&conn);
        }
        let user = &st.users[&id];
        user.outbox.linger();
        st.next_linger += 1;
        let epoch = st.next_linger;
        st.lingering.insert(id, epoch);
        self.stats.set_lingering(st.lingering.len());
        if !closing {
            self.expire_later(id, epoch);
        }
        true
    }

    /// Ends the wait of user `id` after the linger time, unless it was resumed meanwhile.
    fn expire_later(self: &Arc<Self>, id: ClientId, epoch: u64) {
        let hub = self.clone();
        let time = self.linger.time;
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            hub.expire(id, epoch);
        });
    }

    /// The user `id` waited in vain: it leaves, as if its connection had just closed.
    fn expire(&self, id: ClientId, epoch: u64) {
        let mut guard = self.write();
        let st = &mut *guard;
        if st.lingering.get(&id) != Some(&epoch) {
            return;
        }
        info!(user = ?st.users.get(&id).map(|u| u.name.clone()), "session not resumed in time");
        self.end_lingering(st, id);
    }

    /// Removes a user that waited to be resumed, telling everyone it left.
    fn end_lingering(&self, st: &mut State, id: ClientId) {
        let key = st.users.get(&id).map(|u| name::fold(&u.name));
        self.remove_user(st, id, crate::event::DISCONNECTED);
        if let Some(key) = key
            && self.relays
        {
            self.backplane.publish(
                Some(Op::Offline {
                    c: id,
                    reason: crate::event::DISCONNECTED.to_owned(),
                }),
                Some((key, id)),
            );
        }
    }

    /// Connection `conn` (unregistered) takes over the session of `token` (`RESUME`): a
    /// waiting one gets `conn`'s outbox, after `answer` its missed lines in order; one still
    /// online elsewhere (an account's other connection) is joined as by `LOGIN`. Returns
    /// the user's name.
    pub fn resume(
        &self,
        conn: ClientId,
        token: &str,
        outbox: &Arc<Outbox>,
        flavor: Flavor,
        answer: &dyn Fn(&Welcome<'_>) -> Bytes,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(ErrorCode::NoSession);
        }
        let h = hash(token);
        let mut guard = self.write();
        let st = &mut *guard;
        if st.users.contains_key(&pid(st, conn)) {
            return Err(ErrorCode::NoSession);
        }
        let id = *st.resumable.get(&h).ok_or(ErrorCode::NoSession)?;
        if st.lingering.remove(&id).is_none() {
            return Ok(self.attach(st, conn, id, outbox, flavor, Some(answer)));
        }
        self.stats.set_lingering(st.lingering.len());
        let Some(user) = st.users.get_mut(&id) else {
            return Err(ErrorCode::NoSession);
        };
        let old = std::mem::replace(&mut user.outbox, outbox.clone());
        user.flavor = flavor;
        let mut missed = VecDeque::new();
        if old.drain_into(&mut missed) {
            // More was missed than a connection may have queued: the session cannot be
            // given back whole, so it ends.
            self.end_lingering(st, id);
            return Err(ErrorCode::NoSession);
        }
        if conn == id {
            st.person_of.remove(&conn);
        } else {
            // The user's one connection is not the one its id names: a seat tells which
            // connection a line came from by its link.
            st.person_of.insert(conn, id);
            if let Some(user) = st.users.get_mut(&id) {
                user.set_links(Some(Arc::new(vec![super::Link {
                    id: conn,
                    outbox: outbox.clone(),
                    flavor,
                }])));
            }
        }
        Self::relink(st, id);
        let user = &st.users[&id];
        let name = user.name.clone();
        let joined = Self::rooms_of(st, user);
        outbox.push(answer(&Welcome {
            name: &name,
            rooms: st.rooms.len(),
            everyone: None,
            joined: &joined,
        }));
        for line in missed {
            outbox.push(line);
        }
        Ok((Registered::New, name))
    }

    /// Every resumable session, as (key, state) for the store: called at shutdown, once
    /// every connection has ended (their sessions lingering).
    pub fn saved_sessions(&self) -> Vec<(String, String)> {
        let st = self.read();
        let mut out = Vec::new();
        for (&id, tokens) in &st.tokens_of {
            let Some(u) = st.users.get(&id).filter(|u| !u.irc) else {
                continue;
            };
            let rooms = u
                .rooms
                .iter()
                .filter_map(|k| st.rooms.get(k))
                .map(|r| SavedRoom {
                    name: r.name.to_string(),
                    op: r.members.get(id).is_some_and(|s| s.op),
                    voice: r.members.get(id).is_some_and(|s| s.voice),
                    topic: r.topic.as_ref().map(|t| SavedTopic {
                        by: t.by.to_string(),
                        text: t.text.to_string(),
                        at: t.at,
                    }),
                })
                .collect();
            let saved = Saved {
                name: u.name.to_string(),
                tokens: tokens.iter().map(|t| URL_SAFE_NO_PAD.encode(t)).collect(),
                away: u.away().map(|a| a.to_string()),
                rooms,
                tags: u.flavor.tagged(),
                multiline: u.flavor.multiline(),
            };
            match serde_json::to_string(&saved) {
                Ok(state) => out.push((name::fold(&u.name), state)),
                Err(e) => warn!(error = %e, "a session could not be kept"),
            }
        }
        out
    }

    /// Restores the sessions a previous server kept, each waiting to be resumed for the
    /// linger time from now. Called at start, before any client connects, so nobody is told.
    pub fn restore(self: &Arc<Self>, rows: Vec<(String, String, i64)>) -> usize {
        let mut restored = Vec::new();
        {
            let mut guard = self.write();
            let st = &mut *guard;
            for (key, state, _) in rows {
                let saved: Saved = match serde_json::from_str(&state) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(user = %key, error = %e, "a kept session could not be read");
                        continue;
                    }
                };
                if let Some(id) = self.restore_one(st, saved) {
                    restored.push((id, st.lingering[&id]));
                }
            }
            self.stats.set_registered(st.users.len());
            self.stats.set_rooms(st.rooms.len());
            self.stats.set_lingering(st.lingering.len());
        }
        for &(id, epoch) in &restored {
            self.expire_later(id, epoch);
        }
        restored.len()
    }

    fn restore_one(&self, st: &mut State, saved: Saved) -> Option<ClientId> {
        if name::validate(&saved.name).is_err() {
            return None;
        }
        let key = name::fold(&saved.name);
        if st.names.contains_key(key.as_str()) {
            return None;
        }
        st.next_person += 1;
        let id = PERSON | st.next_person;
        let outbox = Arc::new(Outbox::new(self.linger.outbox_limit));
        outbox.linger();
        let name: Arc<str> = Arc::from(saved.name.as_str());
        let account = self.accounts.is_reserved(&name);
        let mut user = User::new(
            name.clone(),
            None,
            outbox,
            Flavor::native(saved.tags, saved.multiline),
            true,
            false,
            account,
        );
        user.set_away(saved.away.as_deref().map(Arc::from));
        st.joins += 1;
        st.everyone.insert(user.seat(id, false, st.joins));
        st.everyone_names.add(&name);
        st.names.insert(super::name_key(key, &name), id);
        st.shapes.add(&name);
        st.users.insert(id, user);
        for r in saved.rooms {
            if room_name::validate(&r.name).is_err() || self.is_everyone(&r.name) {
                continue;
            }
            let rkey = room_name::fold(&r.name);
            let room = st
                .rooms
                .entry(rkey.clone())
                .or_insert_with(|| Room::new(&r.name, None));
            if room.topic.is_none()
                && let Some(t) = r.topic
            {
                room.topic = Some(RoomTopic {
                    by: Arc::from(t.by.as_str()),
                    text: Arc::from(t.text.as_str()),
                    at: t.at,
                });
            }
            st.joins += 1;
            let user = st.users.get_mut(&id)?;
            let (mut seat, links) = user.seat(id, r.op, st.joins);
            seat.voice = r.voice;
            room.members.insert((seat, links));
            user.rooms.push(rkey);
        }
        let mut hashes = Vec::new();
        for t in saved.tokens.iter().take(MAX_TOKENS) {
            if let Ok(bytes) = URL_SAFE_NO_PAD.decode(t)
                && let Ok(h) = TokenHash::try_from(bytes.as_slice())
            {
                st.resumable.insert(h, id);
                hashes.push(h);
            }
        }
        st.tokens_of.insert(id, hashes);
        st.next_linger += 1;
        st.lingering.insert(id, st.next_linger);
        Some(id)
    }
}
