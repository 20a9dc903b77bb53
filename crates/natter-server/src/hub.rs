//! The hub: who is registered, which rooms exist, and fan-out of every line to the right
//! outboxes.
//!
//! All routing state sits behind one `RwLock`. Every message (MESSAGE, DM, SAY) takes it for
//! reading only, so messages from different clients never wait for each other; only changes of
//! membership (register, rename, join, part, kick, topic, leave) take it for writing, briefly.
//! It is a std lock, never held across an `.await`: pushing to an outbox never waits, so
//! neither does fan-out.
//!
//! Everyone and every room are the same thing, an [`Audience`]: a vector of seats, each holding
//! its member's outbox. A line is formatted once into a [`Bytes`] and every seat's outbox gets
//! a reference-counted handle to the same memory, so a delivery costs the same in a busy room
//! as in Everyone.
//!
//! Membership events (ONLINE, RENAMED, OFFLINE, JOINED, PARTED, KICKED, TOPIC, OPERATOR) are
//! pushed while the write lock is held, so every client sees membership change in one global
//! order, consistent with the messages around it.

use crate::outbox::Outbox;
use crate::stats::Stats;
use bytes::{Bytes, BytesMut};
use natter_proto::{ErrorCode, ServerLine, name, room as room_name};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Identifies one connection for the life of the server.
pub type ClientId = u64;

/// Limits on rooms, all configurable.
#[derive(Debug, Clone)]
pub struct RoomLimits {
    /// Most rooms one user may be in at once.
    pub per_user: usize,
    /// Most members one room may have.
    pub members: usize,
    /// Most rooms that may exist at once.
    pub rooms: usize,
    /// Longest topic, in bytes.
    pub topic_bytes: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            per_user: 100,
            members: 100_000,
            rooms: 10_000,
            topic_bytes: natter_proto::limits::DEFAULT_MAX_TOPIC_BYTES,
        }
    }
}

/// Shared routing state; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Hub {
    /// Users and rooms; see the module docs for the locking rule.
    state: RwLock<State>,
    /// Counters for logs and metrics.
    stats: Arc<Stats>,
    /// Set when the server shuts down: leaves are then not announced, since everyone is
    /// leaving and announcing each to all would cost the square of the number of clients.
    closing: AtomicBool,
    /// Room limits.
    limits: RoomLimits,
}

#[derive(Debug, Default)]
struct State {
    /// Registered users by connection.
    users: HashMap<ClientId, User>,
    /// Registered users by folded name: the uniqueness of names.
    names: HashMap<String, ClientId>,
    /// Every registered user: the audience of MESSAGE and of presence events.
    everyone: Audience,
    /// Rooms by folded name.
    rooms: HashMap<String, Room>,
    /// Orders joins, so the longest-standing member can take over a room.
    joins: u64,
}

/// A registered user.
#[derive(Debug)]
struct User {
    /// The name as the user typed it (case kept).
    name: Arc<str>,
    /// Where lines for this user go.
    outbox: Arc<Outbox>,
    /// Folded names of the rooms the user is in.
    rooms: Vec<String>,
}

/// A room.
#[derive(Debug)]
struct Room {
    /// The name as its creator typed it.
    name: Arc<str>,
    /// The topic, if one is set.
    topic: Option<RoomTopic>,
    /// The members.
    members: Audience,
}

/// A set of recipients that a line can be sent to in one pass.
#[derive(Debug, Default)]
struct Audience {
    /// The members, in no particular order; iterated for every delivery.
    seats: Vec<Seat>,
    /// Where each member sits in `seats`, for removal in constant time.
    index: HashMap<ClientId, usize>,
}

/// One member of an audience.
#[derive(Debug, Clone)]
struct Seat {
    /// The member.
    id: ClientId,
    /// The member's outbox, here so that fan-out needs no lookup.
    outbox: Arc<Outbox>,
    /// Whether the member is an operator (rooms only).
    op: bool,
    /// When the member joined, in join order.
    since: u64,
}

impl Audience {
    fn len(&self) -> usize {
        self.seats.len()
    }

    fn contains(&self, id: ClientId) -> bool {
        self.index.contains_key(&id)
    }

    fn get(&self, id: ClientId) -> Option<&Seat> {
        self.index.get(&id).map(|&i| &self.seats[i])
    }

    fn insert(&mut self, seat: Seat) {
        self.index.insert(seat.id, self.seats.len());
        self.seats.push(seat);
    }

    fn remove(&mut self, id: ClientId) -> Option<Seat> {
        let i = self.index.remove(&id)?;
        let seat = self.seats.swap_remove(i);
        if let Some(moved) = self.seats.get(i) {
            self.index.insert(moved.id, i);
        }
        Some(seat)
    }

    /// Sends `bytes` to every member but `except`; returns how many got it.
    fn send_except(&self, except: ClientId, bytes: &Bytes) -> usize {
        let mut n = 0;
        for s in &self.seats {
            if s.id != except {
                // An overflow is handled by the recipient's own connection task, which the
                // push woke; the sender just moves on.
                s.outbox.push(bytes.clone());
                n += 1;
            }
        }
        n
    }

    fn send_all(&self, bytes: &Bytes) {
        self.send_except(ClientId::MAX, bytes);
    }

    /// If nobody is an operator, makes the longest-standing member one and returns its id.
    fn ensure_operator(&mut self) -> Option<ClientId> {
        if self.seats.is_empty() || self.seats.iter().any(|s| s.op) {
            return None;
        }
        let eldest = self.seats.iter_mut().min_by_key(|s| s.since)?;
        eldest.op = true;
        Some(eldest.id)
    }
}

fn line(l: ServerLine<'_>) -> Bytes {
    l.to_bytes()
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
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

/// A room's topic and who set it.
#[derive(Debug, Clone)]
pub struct RoomTopic {
    /// Who set it.
    pub by: Arc<str>,
    /// The topic.
    pub text: Arc<str>,
}

/// A room as ROOMS shows it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    /// The room's name.
    pub name: Arc<str>,
    /// How many members it has.
    pub members: usize,
    /// Its topic, if any.
    pub topic: Option<Arc<str>>,
}

/// Why a user leaves a room, for the PARTED line.
#[derive(Debug, Clone, Copy)]
enum Departure<'a> {
    /// PART, with the user's reason.
    Part(Option<&'a str>),
    /// The connection ended.
    Disconnect,
}

impl Hub {
    /// An empty hub reporting to `stats`.
    pub fn new(stats: Arc<Stats>, limits: RoomLimits) -> Self {
        Self {
            state: RwLock::new(State::default()),
            stats,
            closing: AtomicBool::new(false),
            limits,
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

    /// Marks the hub as shutting down (see the `closing` field).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Registers client `id` as `name`, or renames it if it is registered already.
    pub fn register(
        &self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        name: &str,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        let key = name::fold(name);
        let mut st = self.write();
        let st = &mut *st;
        let taken_by_other = st.names.get(&key).is_some_and(|&other| other != id);
        if let Some(user) = st.users.get_mut(&id) {
            if *user.name == *name {
                return Ok((Registered::Unchanged, user.name.clone()));
            }
            if taken_by_other {
                return Err(ErrorCode::NameTaken);
            }
            let old = std::mem::replace(&mut user.name, Arc::from(name));
            st.names.remove(&name::fold(&old));
            st.names.insert(key, id);
            let ev = line(ServerLine::Renamed {
                old: b(&old),
                new: b(name),
            });
            st.everyone.send_except(id, &ev);
            return Ok((Registered::Renamed { old }, user.name.clone()));
        }
        if taken_by_other {
            return Err(ErrorCode::NameTaken);
        }
        let name: Arc<str> = Arc::from(name);
        st.names.insert(key, id);
        st.users.insert(
            id,
            User {
                name: name.clone(),
                outbox: outbox.clone(),
                rooms: Vec::new(),
            },
        );
        st.joins += 1;
        st.everyone.insert(Seat {
            id,
            outbox: outbox.clone(),
            op: false,
            since: st.joins,
        });
        self.stats.set_registered(st.users.len());
        let ev = line(ServerLine::Online { name: b(&name) });
        st.everyone.send_except(id, &ev);
        Ok((Registered::New, name))
    }

    /// Removes a registered user from every room and from Everyone, telling those who stay.
    pub fn leave(&self, id: ClientId) {
        let mut st = self.write();
        let st = &mut *st;
        let Some(user) = st.users.remove(&id) else {
            return;
        };
        st.names.remove(&name::fold(&user.name));
        st.everyone.remove(id);
        self.stats.set_registered(st.users.len());
        let quiet = self.closing.load(Ordering::Relaxed);
        for key in &user.rooms {
            Self::depart(st, key, id, &user.name, Departure::Disconnect, quiet);
        }
        if !quiet {
            let ev = line(ServerLine::Offline {
                name: b(&user.name),
            });
            st.everyone.send_all(&ev);
        }
    }

    /// Takes `id` out of the room `key` and tells the members who stay; removes the room
    /// when it is empty and hands it to a new operator when its last one left.
    fn depart(st: &mut State, key: &str, id: ClientId, who: &str, why: Departure<'_>, quiet: bool) {
        let Some(room) = st.rooms.get_mut(key) else {
            return;
        };
        room.members.remove(id);
        if room.members.len() == 0 {
            st.rooms.remove(key);
            return;
        }
        if !quiet {
            let reason = match why {
                Departure::Part(r) => r.unwrap_or(""),
                Departure::Disconnect => "disconnected",
            };
            room.members.send_all(&line(ServerLine::Parted {
                room: b(&room.name),
                name: b(who),
                reason: b(reason),
            }));
        }
        Self::hand_over(room, &st.users);
    }

    fn hand_over(room: &mut Room, users: &HashMap<ClientId, User>) {
        if let Some(op) = room.members.ensure_operator()
            && let Some(u) = users.get(&op)
        {
            room.members.send_all(&line(ServerLine::Operator {
                room: b(&room.name),
                name: b(&u.name),
            }));
        }
    }

    /// Sends `bytes` (whole lines) to every registered user but `from`; returns how many got it.
    pub fn broadcast(&self, from: ClientId, bytes: &Bytes) -> usize {
        self.read().everyone.send_except(from, bytes)
    }

    /// Sends `bytes` to the user named `to` (ignoring case); returns the name as registered.
    pub fn direct(&self, to: &str, bytes: Bytes) -> Result<Arc<str>, ErrorCode> {
        let st = self.read();
        let user = st
            .names
            .get(&name::fold(to))
            .and_then(|id| st.users.get(id))
            .ok_or(ErrorCode::NoSuchUser)?;
        user.outbox.push(bytes);
        Ok(user.name.clone())
    }

    /// The registered users' names, sorted ignoring case.
    pub fn names(&self) -> Vec<Arc<str>> {
        let st = self.read();
        let mut v: Vec<(&String, &ClientId)> = st.names.iter().collect();
        v.sort_unstable();
        v.into_iter()
            .filter_map(|(_, id)| st.users.get(id).map(|u| u.name.clone()))
            .collect()
    }

    /// Joins `id` to `room`, creating it (with `id` as operator) if it does not exist.
    ///
    /// The joiner's answer (members, topic, `OK JOIN`) is queued here, under the lock, so it
    /// reaches the joiner before anything said in the room after the join.
    pub fn join(&self, id: ClientId, room: &str) -> Result<(), ErrorCode> {
        let key = room_name::fold(room);
        let mut st = self.write();
        let st = &mut *st;
        let user = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if user.rooms.len() >= self.limits.per_user {
            return Err(ErrorCode::TooManyRooms);
        }
        let exists = st.rooms.get(&key);
        if let Some(r) = exists {
            if r.members.contains(id) {
                return Err(ErrorCode::AlreadyInRoom);
            }
            if r.members.len() >= self.limits.members {
                return Err(ErrorCode::RoomFull);
            }
        } else if st.rooms.len() >= self.limits.rooms {
            return Err(ErrorCode::RoomLimit);
        }
        let r = st.rooms.entry(key.clone()).or_insert_with(|| Room {
            name: Arc::from(room),
            topic: None,
            members: Audience::default(),
        });
        let creator = r.members.len() == 0;
        st.joins += 1;
        r.members.insert(Seat {
            id,
            outbox: user.outbox.clone(),
            op: creator,
            since: st.joins,
        });
        let outbox = user.outbox.clone();
        let joiner = user.name.clone();
        r.members.send_except(
            id,
            &line(ServerLine::Joined {
                room: b(&r.name),
                name: b(&joiner),
            }),
        );
        let mut out = BytesMut::new();
        Self::write_members(&mut out, r, &st.users);
        if let Some(t) = &r.topic {
            ServerLine::Topic {
                room: b(&r.name),
                by: b(&t.by),
                text: b(&t.text),
            }
            .write_to(&mut out);
        }
        ServerLine::Ok {
            verb: b("JOIN"),
            detail: Cow::Owned(format!("{} {}", r.name, r.members.len())),
        }
        .write_to(&mut out);
        outbox.push(out.freeze());
        if let Some(u) = st.users.get_mut(&id) {
            u.rooms.push(key);
        }
        Ok(())
    }

    /// `MEMBER` lines for a room: operators first, then by name.
    fn write_members(out: &mut BytesMut, r: &Room, users: &HashMap<ClientId, User>) {
        let mut members: Vec<(bool, &Arc<str>)> = r
            .members
            .seats
            .iter()
            .filter_map(|s| users.get(&s.id).map(|u| (s.op, &u.name)))
            .collect();
        members.sort_unstable_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.to_ascii_lowercase().cmp(&b.1.to_ascii_lowercase()))
        });
        for (op, name) in members {
            ServerLine::Member {
                room: b(&r.name),
                name: b(name),
                op,
            }
            .write_to(out);
        }
    }

    /// Takes `id` out of `room`; returns the room's name.
    pub fn part(
        &self,
        id: ClientId,
        room: &str,
        reason: Option<&str>,
    ) -> Result<Arc<str>, ErrorCode> {
        let key = room_name::fold(room);
        let mut st = self.write();
        let st = &mut *st;
        let r = st.rooms.get(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if !r.members.contains(id) {
            return Err(ErrorCode::NotInRoom);
        }
        let name = r.name.clone();
        let Some(user) = st.users.get_mut(&id) else {
            return Err(ErrorCode::NotRegistered);
        };
        user.rooms.retain(|k| *k != key);
        let who = user.name.clone();
        Self::depart(st, &key, id, &who, Departure::Part(reason), false);
        Ok(name)
    }

    /// Sends `text` from `id` to the other members of `room`; returns the room's name and how
    /// many got it.
    pub fn say(
        &self,
        id: ClientId,
        room: &str,
        text: &str,
    ) -> Result<(Arc<str>, usize), ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        if !r.members.contains(id) {
            return Err(ErrorCode::NotInRoom);
        }
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let bytes = line(ServerLine::Say {
            room: b(&r.name),
            from: b(&from.name),
            text: b(text),
        });
        Ok((r.name.clone(), r.members.send_except(id, &bytes)))
    }

    /// Every room, sorted by name.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let st = self.read();
        let mut v: Vec<(&String, RoomSummary)> = st
            .rooms
            .iter()
            .map(|(k, r)| {
                (
                    k,
                    RoomSummary {
                        name: r.name.clone(),
                        members: r.members.len(),
                        topic: r.topic.as_ref().map(|t| t.text.clone()),
                    },
                )
            })
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// The `MEMBER` lines of `room` and `OK WHO` after them.
    pub fn who(&self, room: &str) -> Result<Bytes, ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let mut out = BytesMut::new();
        Self::write_members(&mut out, r, &st.users);
        ServerLine::Ok {
            verb: b("WHO"),
            detail: Cow::Owned(format!("{} {}", r.name, r.members.len())),
        }
        .write_to(&mut out);
        Ok(out.freeze())
    }

    /// The topic of `room` (its name, and who set what), if it exists.
    pub fn topic(&self, room: &str) -> Result<(Arc<str>, Option<RoomTopic>), ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        Ok((r.name.clone(), r.topic.clone()))
    }

    /// Sets (or, with an empty text, clears) the topic of `room`; an operator's right. Every
    /// member, the setter too, gets the `TOPIC` line. Returns the room's name.
    pub fn set_topic(&self, id: ClientId, room: &str, text: &str) -> Result<Arc<str>, ErrorCode> {
        if text.len() > self.limits.topic_bytes {
            return Err(ErrorCode::TopicTooLong);
        }
        let mut st = self.write();
        let st = &mut *st;
        let r = st
            .rooms
            .get_mut(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
        if !seat.op {
            return Err(ErrorCode::NotOperator);
        }
        let by = st
            .users
            .get(&id)
            .ok_or(ErrorCode::NotRegistered)?
            .name
            .clone();
        r.topic = (!text.is_empty()).then(|| RoomTopic {
            by: by.clone(),
            text: Arc::from(text),
        });
        r.members.send_all(&line(ServerLine::Topic {
            room: b(&r.name),
            by: b(&by),
            text: b(text),
        }));
        Ok(r.name.clone())
    }

    /// Removes `target` from `room` on behalf of operator `id`; returns the room's name and
    /// the target's name as registered.
    pub fn kick(
        &self,
        id: ClientId,
        room: &str,
        target: &str,
        reason: Option<&str>,
    ) -> Result<(Arc<str>, Arc<str>), ErrorCode> {
        let key = room_name::fold(room);
        let mut st = self.write();
        let st = &mut *st;
        let r = st.rooms.get(&key).ok_or(ErrorCode::NoSuchRoom)?;
        let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
        if !seat.op {
            return Err(ErrorCode::NotOperator);
        }
        let target_id = *st
            .names
            .get(&name::fold(target))
            .ok_or(ErrorCode::NoSuchUser)?;
        if !r.members.contains(target_id) {
            return Err(ErrorCode::UserNotInRoom);
        }
        let (Some(by), Some(victim)) = (st.users.get(&id), st.users.get(&target_id)) else {
            return Err(ErrorCode::NoSuchUser);
        };
        let (by, victim) = (by.name.clone(), victim.name.clone());
        let room_display = r.name.clone();
        r.members.send_all(&line(ServerLine::Kicked {
            room: b(&room_display),
            name: b(&victim),
            by: b(&by),
            reason: b(reason.unwrap_or("")),
        }));
        if let Some(u) = st.users.get_mut(&target_id) {
            u.rooms.retain(|k| *k != key);
        }
        // Everyone who stays has seen the KICKED line already; no PARTED as well.
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        r.members.remove(target_id);
        if r.members.len() == 0 {
            st.rooms.remove(&key);
        } else {
            Self::hand_over(r, &st.users);
        }
        Ok((room_display, victim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_removal_keeps_index_consistent() {
        let mut a = Audience::default();
        for id in 0..10 {
            a.insert(Seat {
                id,
                outbox: Arc::new(Outbox::new(1024)),
                op: false,
                since: id,
            });
        }
        for id in [3, 0, 9, 5] {
            assert!(a.remove(id).is_some());
            assert!(a.remove(id).is_none());
        }
        assert_eq!(a.len(), 6);
        for (i, s) in a.seats.iter().enumerate() {
            assert_eq!(a.index[&s.id], i);
        }
        assert_eq!(a.ensure_operator(), Some(1));
        assert_eq!(a.ensure_operator(), None);
        assert_eq!(a.send_except(1, &Bytes::from_static(b"x\n")), 5);
    }
}
