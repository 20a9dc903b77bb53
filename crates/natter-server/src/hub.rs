//! The hub: who is registered, which rooms exist, and fan-out of every event to the right
//! outboxes.
//!
//! All routing state sits behind one `RwLock`. Every message (MESSAGE, DM, SAY) takes it for
//! reading only, so messages from different clients never wait for each other; only changes of
//! membership (register, rename, join, part, kick, topic, leave) take it for writing, briefly.
//! It is a std lock, never held across an `.await`: pushing to an outbox never waits, so
//! neither does fan-out.
//!
//! Everyone and every room are the same thing, an [`Audience`]: a vector of seats, each holding
//! its member's outbox and how it wants lines written. An event is rendered at most once per
//! flavor ([`Lines`]) and every seat's outbox gets a reference-counted handle to the same
//! bytes, so a delivery costs the same in a busy room as in Everyone.
//!
//! Membership events are pushed while the write lock is held, so every client sees membership
//! change in one global order, consistent with the messages around it.
//!
//! IRC users take part in Everyone through a channel (`IrcNames::everyone`) that they may
//! leave; natives are always in Everyone. IRC users see presence only for people they share a
//! channel with, as IRC clients expect.

use crate::event::{Event, Flavor, IrcNames, Lines, Render, Who};
use crate::outbox::Outbox;
use crate::stats::Stats;
use bytes::Bytes;
use natter_proto::{ErrorCode, name, room as room_name};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Identifies one connection for the life of the server.
pub type ClientId = u64;

/// Host part of every IRC source mask: users' addresses are nobody else's business.
const MASK_HOST: &str = "natter";

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
    /// Names the IRC side renders with.
    irc: IrcNames,
}

#[derive(Debug, Default)]
struct State {
    /// Registered users by connection.
    users: HashMap<ClientId, User>,
    /// Registered users by folded name: the uniqueness of names.
    names: HashMap<String, ClientId>,
    /// Everyone: every native user and the IRC users in the everyone channel.
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
    /// The IRC user name (`ident`), shown in masks and WHOIS.
    ident: Arc<str>,
    /// The IRC source mask, `name!ident@host`.
    mask: Arc<str>,
    /// Where lines for this user go.
    outbox: Arc<Outbox>,
    /// How this user wants lines written.
    flavor: Flavor,
    /// Folded names of the rooms the user is in.
    rooms: Vec<String>,
    /// Whether the user is in the Everyone audience.
    in_everyone: bool,
    /// The away message, if the user set one (IRC AWAY).
    away: Option<Arc<str>>,
}

impl User {
    fn who(&self) -> Who<'_> {
        Who {
            name: &self.name,
            mask: &self.mask,
        }
    }

    fn seat(&self, id: ClientId, op: bool, since: u64) -> Seat {
        Seat {
            id,
            outbox: self.outbox.clone(),
            flavor: self.flavor,
            op,
            since,
        }
    }
}

/// The IRC source mask of a user: `name!ident@natter`.
pub fn mask(name: &str, ident: &str) -> Arc<str> {
    Arc::from(format!("{name}!{ident}@{MASK_HOST}"))
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

/// A room's topic and who set it.
#[derive(Debug, Clone)]
pub struct RoomTopic {
    /// Who set it.
    pub by: Arc<str>,
    /// The topic.
    pub text: Arc<str>,
    /// When it was set, in seconds since the Unix epoch (IRC shows it).
    pub at: u64,
}

/// A set of recipients that an event can be sent to in one pass.
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
    /// How the member wants lines written, here for the same reason.
    flavor: Flavor,
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

    fn get_mut(&mut self, id: ClientId) -> Option<&mut Seat> {
        self.index.get(&id).map(|&i| &mut self.seats[i])
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

    /// Sends the event to every member but `except`; returns how many got it.
    fn send(&self, lines: &impl Render, except: Option<ClientId>) -> usize {
        let mut n = 0;
        for s in &self.seats {
            if Some(s.id) != except
                && let Some(bytes) = lines.get(s.flavor)
            {
                // An overflow is handled by the recipient's own connection task, which the
                // push woke; the sender just moves on.
                s.outbox.push(bytes.clone());
                n += 1;
            }
        }
        n
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

/// A room as ROOMS and LIST show it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    /// The room's name.
    pub name: Arc<str>,
    /// How many members it has.
    pub members: usize,
    /// Its topic, if any.
    pub topic: Option<Arc<str>>,
}

/// One member as JOIN, WHO and NAMES show it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// The member's name.
    pub name: Arc<str>,
    /// The member's IRC user name.
    pub ident: Arc<str>,
    /// Whether the member is an operator of the room.
    pub op: bool,
    /// Whether the member set an away message.
    pub away: bool,
}

/// A room (or the everyone channel) as its members are shown.
#[derive(Debug, Clone)]
pub struct RoomView {
    /// The room's name.
    pub name: Arc<str>,
    /// Its topic, if any.
    pub topic: Option<RoomTopic>,
    /// Its members, operators first, then by name ignoring case.
    pub members: Vec<MemberView>,
}

/// A user as WHOIS and USERHOST show it.
#[derive(Debug, Clone)]
pub struct UserView {
    /// The name.
    pub name: Arc<str>,
    /// The IRC user name.
    pub ident: Arc<str>,
    /// Whether the user speaks IRC (or else natter's line protocol).
    pub irc: bool,
    /// The rooms the user is in, `@` before those they operate.
    pub rooms: Vec<String>,
    /// The away message, if any.
    pub away: Option<Arc<str>>,
}

/// Who a DM reached.
#[derive(Debug, Clone)]
pub struct DmTarget {
    /// The recipient's name as registered.
    pub name: Arc<str>,
    /// The recipient's away message, if any (IRC answers 301 with it).
    pub away: Option<Arc<str>>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Hub {
    /// An empty hub reporting to `stats`.
    pub fn new(stats: Arc<Stats>, limits: RoomLimits, irc: IrcNames) -> Self {
        Self {
            state: RwLock::new(State::default()),
            stats,
            closing: AtomicBool::new(false),
            limits,
            irc,
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The names IRC rendering uses.
    pub fn irc_names(&self) -> &IrcNames {
        &self.irc
    }

    /// The room limits.
    pub fn limits(&self) -> &RoomLimits {
        &self.limits
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing that holds this lock can panic halfway through a change (pushes cannot
        // panic), so a poisoned lock still holds consistent state.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lines<'a>(&'a self, e: Event<'a>) -> Lines<'a> {
        Lines::new(e, &self.irc)
    }

    /// Marks the hub as shutting down (see the `closing` field).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    fn is_everyone(&self, room: &str) -> bool {
        room.eq_ignore_ascii_case(&self.irc.everyone)
    }

    /// Registers client `id` as `name`, or renames it if it is registered already.
    ///
    /// Natives are in Everyone from the start; IRC users join the everyone channel separately
    /// ([`Hub::join_everyone`]). `ident` is the IRC user name (the name itself for natives).
    /// `answer`, given the name as registered, renders the client's own answer, which is
    /// queued under the lock so that it precedes every event that follows the registration.
    pub fn register(
        &self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        name: &str,
        flavor: Flavor,
        ident: Option<&str>,
        answer: Option<&dyn Fn(&str) -> Bytes>,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        let key = name::fold(name);
        let mut guard = self.write();
        let st = &mut *guard;
        let answer = |name: &str| {
            if let Some(a) = answer {
                outbox.push(a(name));
            }
        };
        let taken_by_other = st.names.get(&key).is_some_and(|&other| other != id);
        if let Some(user) = st.users.get(&id) {
            if *user.name == *name {
                answer(name);
                return Ok((Registered::Unchanged, user.name.clone()));
            }
            if taken_by_other {
                return Err(ErrorCode::NameTaken);
            }
            answer(name);
            return Ok(self.rename(st, id, name, key));
        }
        if taken_by_other {
            return Err(ErrorCode::NameTaken);
        }
        answer(name);
        let name: Arc<str> = Arc::from(name);
        let ident: Arc<str> = ident.map_or_else(|| name.clone(), Arc::from);
        let in_everyone = flavor == Flavor::Native;
        let user = User {
            mask: mask(&name, &ident),
            name: name.clone(),
            ident,
            outbox: outbox.clone(),
            flavor,
            rooms: Vec::new(),
            in_everyone,
            away: None,
        };
        st.joins += 1;
        if in_everyone {
            st.everyone.insert(user.seat(id, false, st.joins));
        }
        let ev = self.lines(Event::Online {
            who: user.who(),
            in_everyone,
        });
        st.everyone.send(&ev, Some(id));
        drop(ev);
        st.names.insert(key, id);
        st.users.insert(id, user);
        self.stats.set_registered(st.users.len());
        Ok((Registered::New, name))
    }

    fn rename(
        &self,
        st: &mut State,
        id: ClientId,
        name: &str,
        key: String,
    ) -> (Registered, Arc<str>) {
        let Some(user) = st.users.get_mut(&id) else {
            unreachable!("rename of a registered user");
        };
        let old_name = std::mem::replace(&mut user.name, Arc::from(name));
        if user.flavor == Flavor::Native {
            // Natives have no IRC user name of their own; theirs follows their name.
            user.ident = user.name.clone();
        }
        let old_mask = std::mem::replace(&mut user.mask, mask(name, &user.ident));
        st.names.remove(&name::fold(&old_name));
        st.names.insert(key, id);
        let user = &st.users[&id];
        let ev = self.lines(Event::Renamed {
            old: Who {
                name: &old_name,
                mask: &old_mask,
            },
            new: name,
        });
        st.everyone.send(&ev, Some(id));
        // IRC users outside the everyone channel hear of it if they share a room.
        for id in Self::irc_roommates_outside_everyone(st, user) {
            Self::send_to(st, id, &ev);
        }
        (
            Registered::Renamed { old: old_name },
            st.users[&id].name.clone(),
        )
    }

    /// IRC users who share a room with `user` but are not in Everyone, each once.
    fn irc_roommates_outside_everyone(st: &State, user: &User) -> Vec<ClientId> {
        let mut seen = HashSet::new();
        for key in &user.rooms {
            if let Some(r) = st.rooms.get(key) {
                for s in &r.members.seats {
                    if matches!(s.flavor, Flavor::Irc { .. })
                        && !st.everyone.contains(s.id)
                        && st.users.get(&s.id).is_some_and(|u| !std::ptr::eq(u, user))
                    {
                        seen.insert(s.id);
                    }
                }
            }
        }
        seen.into_iter().collect()
    }

    fn send_to(st: &State, id: ClientId, lines: &Lines<'_>) {
        if let Some(u) = st.users.get(&id)
            && let Some(b) = lines.get(u.flavor)
        {
            u.outbox.push(b.clone());
        }
    }

    /// Removes a registered user from every room and from Everyone, telling those who stay.
    pub fn leave(&self, id: ClientId, reason: &str) {
        let mut guard = self.write();
        let st = &mut *guard;
        let Some(user) = st.users.get(&id) else {
            return;
        };
        let quiet = self.closing.load(Ordering::Relaxed);
        let irc_quit = if quiet {
            Vec::new()
        } else {
            Self::irc_roommates_outside_everyone(st, user)
        };
        let Some(user) = st.users.remove(&id) else {
            return;
        };
        st.names.remove(&name::fold(&user.name));
        st.everyone.remove(id);
        self.stats.set_registered(st.users.len());
        for key in &user.rooms {
            self.depart(st, key, id, user.who(), reason, true, quiet);
        }
        if !quiet {
            let ev = self.lines(Event::Offline {
                who: user.who(),
                reason,
            });
            st.everyone.send(&ev, None);
            for other in irc_quit {
                Self::send_to(st, other, &ev);
            }
        }
    }

    /// Takes `id` out of the room `key` and tells the members who stay; removes the room
    /// when it is empty and hands it to a new operator when its last one left.
    #[allow(clippy::too_many_arguments)] // All of them describe the one departure.
    fn depart(
        &self,
        st: &mut State,
        key: &str,
        id: ClientId,
        who: Who<'_>,
        reason: &str,
        disconnect: bool,
        quiet: bool,
    ) {
        let Some(room) = st.rooms.get_mut(key) else {
            return;
        };
        room.members.remove(id);
        if room.members.len() == 0 {
            st.rooms.remove(key);
            self.stats.set_rooms(st.rooms.len());
            return;
        }
        if !quiet {
            room.members.send(
                &self.lines(Event::Parted {
                    room: &room.name,
                    who,
                    reason,
                    disconnect,
                }),
                None,
            );
        }
        self.hand_over(room, &st.users);
    }

    fn hand_over(&self, room: &mut Room, users: &HashMap<ClientId, User>) {
        if let Some(op) = room.members.ensure_operator()
            && let Some(u) = users.get(&op)
        {
            room.members.send(
                &self.lines(Event::Operator {
                    room: &room.name,
                    name: &u.name,
                }),
                None,
            );
        }
    }

    /// Sends `text` from `id` to Everyone but the sender; returns how many got it.
    pub fn broadcast(&self, id: ClientId, text: &str, notice: bool) -> Result<usize, ErrorCode> {
        let st = self.read();
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if !from.in_everyone {
            return Err(ErrorCode::NotInRoom);
        }
        let ev = self.lines(Event::Message {
            from: from.who(),
            text,
            notice,
        });
        let n = st.everyone.send(&ev, Some(id));
        self.stats.routed(n);
        Ok(n)
    }

    /// Sends several MESSAGEs from `id` to everyone, in order, as one buffer per recipient;
    /// returns how many received them (each received all).
    pub fn broadcast_many<'t>(
        &self,
        id: ClientId,
        texts: impl Iterator<Item = &'t str>,
    ) -> Result<usize, ErrorCode> {
        let st = self.read();
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if !from.in_everyone {
            return Err(ErrorCode::NotInRoom);
        }
        let events: Vec<Lines<'_>> = texts
            .map(|text| {
                self.lines(Event::Message {
                    from: from.who(),
                    text,
                    notice: false,
                })
            })
            .collect();
        let k = events.len();
        let n = match events.len() {
            1 => st.everyone.send(&events[0], Some(id)),
            _ => st
                .everyone
                .send(&crate::event::Batch::new(&events), Some(id)),
        };
        self.stats.routed(n * k);
        Ok(n)
    }

    /// Sends several DMs from `id` to the user named `to` (ignoring case), in order, as one
    /// buffer.
    pub fn direct_many<'t>(
        &self,
        id: ClientId,
        to: &str,
        texts: impl Iterator<Item = &'t str>,
    ) -> Result<DmTarget, ErrorCode> {
        let st = self.read();
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let target = st
            .names
            .get(&name::fold(to))
            .and_then(|id| st.users.get(id))
            .ok_or(ErrorCode::NoSuchUser)?;
        if std::ptr::eq(from, target) {
            return Err(ErrorCode::CannotDmSelf);
        }
        let events: Vec<Lines<'_>> = texts
            .map(|text| {
                self.lines(Event::Dm {
                    from: from.who(),
                    to: &target.name,
                    text,
                    notice: false,
                })
            })
            .collect();
        let batch = crate::event::Batch::new(&events);
        let bytes = match &events[..] {
            [one] => one.get(target.flavor),
            _ => batch.get(target.flavor),
        };
        if let Some(b) = bytes {
            target.outbox.push(b.clone());
        }
        self.stats.routed(events.len());
        Ok(DmTarget {
            name: target.name.clone(),
            away: target.away.clone(),
        })
    }

    /// Sends `text` from `id` to the user named `to` (ignoring case).
    pub fn direct(
        &self,
        id: ClientId,
        to: &str,
        text: &str,
        notice: bool,
    ) -> Result<DmTarget, ErrorCode> {
        let st = self.read();
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let target = st
            .names
            .get(&name::fold(to))
            .and_then(|id| st.users.get(id))
            .ok_or(ErrorCode::NoSuchUser)?;
        if std::ptr::eq(from, target) {
            return Err(ErrorCode::CannotDmSelf);
        }
        let ev = self.lines(Event::Dm {
            from: from.who(),
            to: &target.name,
            text,
            notice,
        });
        if let Some(b) = ev.get(target.flavor) {
            target.outbox.push(b.clone());
        }
        self.stats.routed(1);
        Ok(DmTarget {
            name: target.name.clone(),
            away: target.away.clone(),
        })
    }

    /// Renders the registered users' names, sorted ignoring case, and queues the result to
    /// `outbox` while the lock is held, so it agrees with the presence events around it.
    pub fn answer_names(&self, outbox: &Outbox, render: impl FnOnce(&[&str]) -> Bytes) {
        let st = self.read();
        let mut v: Vec<(&String, &ClientId)> = st.names.iter().collect();
        v.sort_unstable();
        let names: Vec<&str> = v
            .into_iter()
            .filter_map(|(_, id)| st.users.get(id).map(|u| &*u.name))
            .collect();
        outbox.push(render(&names));
    }

    /// A user's details, for WHOIS, USERHOST and ISON.
    pub fn user(&self, name: &str) -> Option<UserView> {
        let st = self.read();
        let id = *st.names.get(&name::fold(name))?;
        let u = st.users.get(&id)?;
        let mut rooms: Vec<String> = u
            .rooms
            .iter()
            .filter_map(|k| st.rooms.get(k))
            .map(|r| {
                let op = r.members.get(id).is_some_and(|s| s.op);
                format!("{}{}", if op { "@" } else { "" }, r.name)
            })
            .collect();
        if u.in_everyone {
            rooms.insert(0, self.irc.everyone.clone());
        }
        Some(UserView {
            name: u.name.clone(),
            ident: u.ident.clone(),
            irc: matches!(u.flavor, Flavor::Irc { .. }),
            rooms,
            away: u.away.clone(),
        })
    }

    /// Sets or clears a user's away message.
    pub fn set_away(&self, id: ClientId, away: Option<&str>) {
        if let Some(u) = self.write().users.get_mut(&id) {
            u.away = away.map(Arc::from);
        }
    }

    fn view(
        users: &HashMap<ClientId, User>,
        name: &Arc<str>,
        topic: Option<&RoomTopic>,
        members: &Audience,
    ) -> RoomView {
        let mut members: Vec<MemberView> = members
            .seats
            .iter()
            .filter_map(|s| {
                users.get(&s.id).map(|u| MemberView {
                    name: u.name.clone(),
                    ident: u.ident.clone(),
                    op: s.op,
                    away: u.away.is_some(),
                })
            })
            .collect();
        members.sort_unstable_by(|a, b| {
            b.op.cmp(&a.op).then_with(|| {
                a.name
                    .to_ascii_lowercase()
                    .cmp(&b.name.to_ascii_lowercase())
            })
        });
        RoomView {
            name: name.clone(),
            topic: topic.cloned(),
            members,
        }
    }

    /// Joins `id` to `room`, creating it (with `id` as operator) if it does not exist.
    ///
    /// `answer` renders the joiner's answer from the room as it is after the join; it is
    /// queued here, under the lock, so it reaches the joiner before anything said in the room
    /// after the join.
    pub fn join(
        &self,
        id: ClientId,
        room: &str,
        answer: impl FnOnce(&RoomView) -> Bytes,
    ) -> Result<(), ErrorCode> {
        if self.is_everyone(room) {
            return Err(ErrorCode::InvalidRoomName);
        }
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let user = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if user.rooms.len() >= self.limits.per_user {
            return Err(ErrorCode::TooManyRooms);
        }
        if let Some(r) = st.rooms.get(&key) {
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
        r.members.insert(user.seat(id, creator, st.joins));
        r.members.send(
            &self.lines(Event::Joined {
                room: &r.name,
                who: user.who(),
            }),
            Some(id),
        );
        let view = Self::view(&st.users, &r.name, r.topic.as_ref(), &r.members);
        user.outbox.push(answer(&view));
        if let Some(u) = st.users.get_mut(&id) {
            u.rooms.push(key);
        }
        self.stats.set_rooms(st.rooms.len());
        Ok(())
    }

    /// Puts an IRC user into the everyone channel; `answer` as for [`Hub::join`].
    pub fn join_everyone(
        &self,
        id: ClientId,
        answer: impl FnOnce(&RoomView) -> Bytes,
    ) -> Result<(), ErrorCode> {
        let mut guard = self.write();
        let st = &mut *guard;
        let user = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if user.in_everyone {
            return Err(ErrorCode::AlreadyInRoom);
        }
        st.joins += 1;
        st.everyone.insert(user.seat(id, false, st.joins));
        st.everyone.send(
            &self.lines(Event::EveryoneMembership {
                who: user.who(),
                joined: true,
            }),
            Some(id),
        );
        let name: Arc<str> = Arc::from(self.irc.everyone.as_str());
        let view = Self::view(&st.users, &name, None, &st.everyone);
        user.outbox.push(answer(&view));
        if let Some(u) = st.users.get_mut(&id) {
            u.in_everyone = true;
        }
        Ok(())
    }

    /// Takes an IRC user out of the everyone channel.
    pub fn part_everyone(&self, id: ClientId) -> Result<(), ErrorCode> {
        let mut guard = self.write();
        let st = &mut *guard;
        let user = st.users.get_mut(&id).ok_or(ErrorCode::NotRegistered)?;
        if !user.in_everyone || user.flavor == Flavor::Native {
            return Err(ErrorCode::NotInRoom);
        }
        user.in_everyone = false;
        st.everyone.remove(id);
        let user = &st.users[&id];
        st.everyone.send(
            &self.lines(Event::EveryoneMembership {
                who: user.who(),
                joined: false,
            }),
            None,
        );
        Ok(())
    }

    /// The everyone channel as NAMES shows it.
    pub fn everyone_view(&self) -> RoomView {
        let st = self.read();
        let name: Arc<str> = Arc::from(self.irc.everyone.as_str());
        Self::view(&st.users, &name, None, &st.everyone)
    }

    /// Whether `id` is in the Everyone audience.
    pub fn in_everyone(&self, id: ClientId) -> bool {
        self.read().everyone.contains(id)
    }

    /// Takes `id` out of `room`; returns the room's name.
    pub fn part(
        &self,
        id: ClientId,
        room: &str,
        reason: Option<&str>,
    ) -> Result<Arc<str>, ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let r = st.rooms.get(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if !r.members.contains(id) {
            return Err(ErrorCode::NotInRoom);
        }
        let name = r.name.clone();
        let user = st.users.get_mut(&id).ok_or(ErrorCode::NotRegistered)?;
        user.rooms.retain(|k| *k != key);
        let (who_name, who_mask) = (user.name.clone(), user.mask.clone());
        // The IRC user who parts sees its own PART, as IRC clients expect.
        if let Flavor::Irc { .. } = user.flavor {
            let own = self.lines(Event::Parted {
                room: &name,
                who: Who {
                    name: &who_name,
                    mask: &who_mask,
                },
                reason: reason.unwrap_or(""),
                disconnect: false,
            });
            Self::send_to(st, id, &own);
        }
        let who = Who {
            name: &who_name,
            mask: &who_mask,
        };
        self.depart(st, &key, id, who, reason.unwrap_or(""), false, false);
        Ok(name)
    }

    /// Sends `text` from `id` to the other members of `room`; returns the room's name and how
    /// many got it.
    pub fn say(
        &self,
        id: ClientId,
        room: &str,
        text: &str,
        notice: bool,
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
        let ev = self.lines(Event::Say {
            room: &r.name,
            from: from.who(),
            text,
            notice,
        });
        let n = r.members.send(&ev, Some(id));
        self.stats.routed(n);
        Ok((r.name.clone(), n))
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

    /// How many are in the Everyone audience.
    pub fn everyone_count(&self) -> usize {
        self.read().everyone.len()
    }

    /// A room's members and topic.
    pub fn room(&self, room: &str) -> Result<RoomView, ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        Ok(Self::view(&st.users, &r.name, r.topic.as_ref(), &r.members))
    }

    /// Sets (or, with an empty text, clears) the topic of `room`; an operator's right. Every
    /// member, the setter too, gets the topic event. Returns the room's name.
    pub fn set_topic(&self, id: ClientId, room: &str, text: &str) -> Result<Arc<str>, ErrorCode> {
        if text.len() > self.limits.topic_bytes {
            return Err(ErrorCode::TopicTooLong);
        }
        let mut guard = self.write();
        let st = &mut *guard;
        let r = st
            .rooms
            .get_mut(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
        if !seat.op {
            return Err(ErrorCode::NotOperator);
        }
        let by = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        r.topic = (!text.is_empty()).then(|| RoomTopic {
            by: by.name.clone(),
            text: Arc::from(text),
            at: now_secs(),
        });
        r.members.send(
            &self.lines(Event::Topic {
                room: &r.name,
                by: by.who(),
                text,
            }),
            None,
        );
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
        let mut guard = self.write();
        let st = &mut *guard;
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
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
        let victim_name = victim.name.clone();
        let room_display = r.name.clone();
        r.members.send(
            &self.lines(Event::Kicked {
                room: &room_display,
                name: &victim_name,
                by: by.who(),
                reason: reason.unwrap_or(""),
            }),
            None,
        );
        // Everyone who stays has seen the kick already; no PARTED as well.
        r.members.remove(target_id);
        if r.members.len() == 0 {
            st.rooms.remove(&key);
            self.stats.set_rooms(st.rooms.len());
        } else {
            self.hand_over(r, &st.users);
        }
        if let Some(u) = st.users.get_mut(&target_id) {
            u.rooms.retain(|k| *k != key);
        }
        Ok((room_display, victim_name))
    }

    /// Makes `target` an operator of `room` on behalf of operator `id` (IRC `MODE +o`).
    pub fn op(&self, id: ClientId, room: &str, target: &str) -> Result<(), ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if !r.members.get(id).ok_or(ErrorCode::NotInRoom)?.op {
            return Err(ErrorCode::NotOperator);
        }
        let target_id = *st
            .names
            .get(&name::fold(target))
            .ok_or(ErrorCode::NoSuchUser)?;
        let seat = r
            .members
            .get_mut(target_id)
            .ok_or(ErrorCode::UserNotInRoom)?;
        if !seat.op {
            seat.op = true;
            let name = st.users[&target_id].name.clone();
            r.members.send(
                &self.lines(Event::Operator {
                    room: &r.name,
                    name: &name,
                }),
                None,
            );
        }
        Ok(())
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
                flavor: Flavor::Native,
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
    }
}
