//! The cluster's mirror in a hub: users of other nodes (ghosts) kept as ordinary users, so
//! every rule and fan-out works unchanged, and the operations other nodes publish applied
//! to them.

use super::{Hub, Parked, RoomView, State, User};
use crate::backplane::Op;
use crate::client_id::{ClientId, GHOST, is_local};
use crate::event::{Event, Flavor, Lines, Who};
use bytes::Bytes;
use natter_proto::{name, room as room_name};
use std::collections::HashSet;
use std::sync::Arc;

/// Longest real name taken from another node: a node keeps at most 100 bytes of one (IRC's
/// `USER` cuts it there, `SETNAME` refuses more), so a longer one came from no node.
const MAX_REAL: usize = 100;

/// Whether a name from another node may be shown here.
fn valid_name(n: &str) -> bool {
    name::validate(n).is_ok()
}

impl Hub {
    /// Applies another node's operation to this hub, on behalf of its ghost: local users see
    /// it as they would see a local user's doing; nothing is relayed again. Operations that
    /// do not fit this hub's state (an unknown ghost, an invalid name) are dropped.
    pub fn apply(&self, node: &str, op: Op) {
        match op {
            Op::Hello => {}
            Op::Sync { clients } => {
                let keep: HashSet<u64> = clients.into_iter().collect();
                let mut guard = self.write();
                let st = &mut *guard;
                st.parked
                    .retain(|(n, c), _| &**n != node || keep.contains(c));
                let gone: Vec<ClientId> = st
                    .ghosts
                    .iter()
                    .filter(|((n, c), _)| &**n == node && !keep.contains(c))
                    .map(|(_, &id)| id)
                    .collect();
                for id in gone {
                    self.remove_user(st, id, crate::event::DISCONNECTED);
                }
            }
            Op::Online {
                c,
                name,
                ident,
                irc,
                everyone,
            } => {
                let mut guard = self.write();
                let g = Ghost {
                    name,
                    ident,
                    irc,
                    everyone,
                };
                self.upsert_ghost(&mut guard, node, c, g, None, None);
            }
            Op::Snapshot {
                c,
                name,
                ident,
                irc,
                everyone,
                rooms,
                away,
                real,
            } => {
                let mut guard = self.write();
                let g = Ghost {
                    name,
                    ident,
                    irc,
                    everyone,
                };
                self.upsert_ghost(&mut guard, node, c, g, Some(rooms), Some(away));
                drop(guard);
                if let Some(real) = real {
                    self.apply(
                        node,
                        Op::RealName {
                            c,
                            real,
                            announce: false,
                        },
                    );
                }
            }
            Op::Renamed { c, name } => {
                if !valid_name(&name) {
                    return;
                }
                let mut guard = self.write();
                let st = &mut *guard;
                let k = (Arc::<str>::from(node), c);
                if let Some(p) = st.parked.get_mut(&k) {
                    p.name = name;
                    self.unpark(st);
                    return;
                }
                let Some(&id) = st.ghosts.get(&k) else {
                    return;
                };
                let key = name::fold(&name);
                match st.names.get(key.as_str()) {
                    Some(&o) if o == id => {}
                    Some(&o) if !is_local(o) => self.evict_ghost(st, o),
                    Some(_) => {
                        // A local user holds it until the cluster renames one of them.
                        let Some(u) = st.users.get(&id) else { return };
                        let p = Parked {
                            name,
                            ident: u.ident().to_string(),
                            irc: u.irc,
                            everyone: u.in_everyone,
                        };
                        self.remove_user(st, id, "renamed");
                        st.parked.insert(k, p);
                        return;
                    }
                    None => {}
                }
                if st.users.contains_key(&id) {
                    self.rename(st, id, &name, key, false);
                }
            }
            Op::Offline { c, reason } => {
                let mut guard = self.write();
                let st = &mut *guard;
                let k = (Arc::<str>::from(node), c);
                st.parked.remove(&k);
                if let Some(&id) = st.ghosts.get(&k) {
                    self.remove_user(st, id, &reason);
                }
            }
            Op::Message {
                c,
                text,
                notice,
                id: log_id,
            } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = self.broadcast_texts(id, std::iter::once(&*text), notice, log_id, "");
                }
            }
            Op::Dm {
                c,
                to,
                text,
                notice,
                id: log_id,
                ..
            } => {
                let st = self.read();
                let (Some(from), Some(target)) = (
                    st.ghosts
                        .get(&(Arc::from(node), c))
                        .and_then(|id| st.users.get(id)),
                    st.users.get(&to).filter(|_| is_local(to)),
                ) else {
                    return;
                };
                let ev = Lines::kept(
                    Event::Dm {
                        from: from.who(),
                        to: &target.name,
                        text: &text,
                        notice,
                        echo: false,
                    },
                    &self.irc,
                    log_id,
                );
                Self::send_to(&st, to, &ev, None);
                self.stats.routed(1);
            }
            Op::Say {
                c,
                room,
                text,
                notice,
                id: log_id,
            } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = self.say_kept(id, &room, &[&text], notice, log_id, "");
                }
            }
            Op::Join { c, room, op } => {
                if room_name::validate(&room).is_err() || self.is_everyone(&room) {
                    return;
                }
                let mut guard = self.write();
                let st = &mut *guard;
                if let Some(&id) = st.ghosts.get(&(Arc::from(node), c)) {
                    let _ = self.join_in(
                        st,
                        id,
                        &room,
                        Some(op),
                        None,
                        None,
                        None::<fn(&RoomView) -> Bytes>,
                    );
                }
            }
            Op::Part { c, room, reason } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = self.part(
                        id,
                        &room,
                        Some(&reason).filter(|r| !r.is_empty()).map(|r| r.as_str()),
                    );
                }
            }
            Op::Everyone { c, joined } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = if joined {
                        self.join_everyone(id, |_| Bytes::new())
                    } else {
                        self.part_everyone(id)
                    };
                }
            }
            Op::Topic { c, room, text } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = self.set_topic(id, &room, &text);
                }
            }
            Op::Kick {
                c,
                room,
                target,
                reason,
            } => {
                if let Some(id) = self.ghost(node, c) {
                    let reason = Some(reason.as_str()).filter(|r| !r.is_empty());
                    let _ = self.kick(id, &room, &target, reason);
                }
            }
            Op::Mode { c, room, change } => {
                if let Some(id) = self.ghost(node, c) {
                    self.mode_from_peer(id, &room, &change);
                }
            }
            Op::Invite { c, room, target } => {
                if let Some(id) = self.ghost(node, c) {
                    let _ = self.invite(id, &room, &target);
                }
            }
            Op::Kill {
                to, by, comment, ..
            } => {
                // The operator's node checked the right; this node does the deed, as if its
                // own operator had.
                if is_local(to) {
                    let name = self.name_of(to);
                    if let Some(name) = name
                        && self.kill(&name, &by, &comment).is_ok()
                    {
                        tracing::warn!(user = %name, by = %by, node, "killed from another node");
                    }
                }
            }
            Op::Account { name, exists } => {
                self.accounts().set_reserved(&name, exists);
                let mut st = self.write();
                self.set_account(&mut st, &name, exists);
            }
            Op::RealName { c, real, announce } => {
                // Its node cut it to what it keeps; anything longer did not come from one.
                if real.len() > MAX_REAL || real.contains(['\r', '\n', '\0']) {
                    return;
                }
                if let Some(id) = self.ghost(node, c) {
                    self.set_real_name(id, &real, announce);
                }
            }
            Op::Wallops { c, text } => {
                // Its node took it from an operator as a text; anything else did not.
                if natter_proto::text::validate(&text).is_err() {
                    return;
                }
                if let Some(id) = self.ghost(node, c) {
                    self.wallops(id, &text);
                }
            }
            Op::Away { c, away } => {
                if let Some(id) = self.ghost(node, c) {
                    self.set_away(id, away.as_deref());
                }
            }
        }
    }

    /// The ghost of client `c` of `node`.
    fn ghost(&self, node: &str, c: u64) -> Option<ClientId> {
        self.read().ghosts.get(&(Arc::from(node), c)).copied()
    }

    /// Removes every ghost of `node`, which is gone; their departures are told as usual.
    /// Returns how many there were.
    pub fn drop_node(&self, node: &str) -> usize {
        let mut guard = self.write();
        let st = &mut *guard;
        st.parked.retain(|(n, _), _| &**n != node);
        let gone: Vec<ClientId> = st
            .ghosts
            .iter()
            .filter(|((n, _), _)| &**n == node)
            .map(|(_, &id)| id)
            .collect();
        for &id in &gone {
            self.remove_user(st, id, "node lost");
        }
        gone.len()
    }

    /// The nodes this hub has ghosts (or parked ghosts) of.
    pub fn nodes(&self) -> Vec<Arc<str>> {
        let st = self.read();
        let set: HashSet<&Arc<str>> = st
            .ghosts
            .keys()
            .chain(st.parked.keys())
            .map(|(n, _)| n)
            .collect();
        set.into_iter().cloned().collect()
    }

    /// Creates or brings up to date the ghost of client `c` of `node`.
    fn upsert_ghost(
        &self,
        st: &mut State,
        node: &str,
        c: u64,
        g: Ghost,
        rooms: Option<Vec<(String, bool)>>,
        away: Option<Option<String>>,
    ) {
        if !valid_name(&g.name) || g.ident.is_empty() || g.ident.len() > 64 {
            return;
        }
        let k: (Arc<str>, u64) = (Arc::from(node), c);
        let key = name::fold(&g.name);
        let id = match st.ghosts.get(&k) {
            Some(&id) => {
                if st.users.get(&id).is_some_and(|u| *u.name != *g.name) {
                    match st.names.get(key.as_str()) {
                        Some(&o) if o != id && is_local(o) => {
                            // Wait, parked under the new name, for the local holder to go.
                            self.remove_user(st, id, "renamed");
                            st.parked.insert(
                                k,
                                Parked {
                                    name: g.name,
                                    ident: g.ident,
                                    irc: g.irc,
                                    everyone: g.everyone,
                                },
                            );
                            return;
                        }
                        Some(&o) if o != id => self.evict_ghost(st, o),
                        _ => {}
                    }
                    self.rename(st, id, &g.name, key, false);
                }
                id
            }
            None => {
                match st.names.get(key.as_str()) {
                    Some(&o) if is_local(o) => {
                        st.parked.insert(
                            k,
                            Parked {
                                name: g.name,
                                ident: g.ident,
                                irc: g.irc,
                                everyone: g.everyone,
                            },
                        );
                        return;
                    }
                    // Its own node gave the name up before this one claimed it.
                    Some(&o) => self.evict_ghost(st, o),
                    None => {}
                }
                st.parked.remove(&k);
                st.next_ghost += 1;
                let id = GHOST | st.next_ghost;
                let name: Arc<str> = Arc::from(g.name.as_str());
                let ident: Arc<str> = Arc::from(g.ident.as_str());
                let user = User::new(
                    name,
                    Some(ident),
                    self.ghost_outbox.clone(),
                    Flavor::Remote,
                    g.everyone,
                    g.irc,
                    self.accounts.is_reserved(&g.name),
                );
                st.ghosts.insert(k.clone(), id);
                st.ghost_of.insert(id, k);
                self.insert_user(st, id, key, user, false);
                id
            }
        };
        if let Some(away) = away
            && let Some(u) = st.users.get_mut(&id)
        {
            u.set_away(away.map(Arc::from));
        }
        if let Some(rooms) = rooms {
            let want: HashSet<String> = rooms.iter().map(|(r, _)| room_name::fold(r)).collect();
            let have: Vec<String> = st
                .users
                .get(&id)
                .map(|u| u.rooms.clone())
                .unwrap_or_default();
            for key in have.iter().filter(|k| !want.contains(*k)) {
                if let Some(u) = st.users.get_mut(&id) {
                    u.rooms.retain(|k2| k2 != key);
                }
                let Some(u) = st.users.get(&id) else { break };
                let (n, i) = (u.name.clone(), u.ident().clone());
                let who = Who {
                    name: &n,
                    ident: &i,
                    account: u.account,
                    real: None,
                };
                self.depart(st, key, id, who, "", false, false);
            }
            for (room, op) in rooms {
                if room_name::validate(&room).is_ok()
                    && !self.is_everyone(&room)
                    && !have.contains(&room_name::fold(&room))
                {
                    let _ = self.join_in(
                        st,
                        id,
                        &room,
                        Some(op),
                        None,
                        None,
                        None::<fn(&RoomView) -> Bytes>,
                    );
                }
            }
        }
    }

    /// Takes out a ghost whose name the cluster gave to someone else, and parks it: its own
    /// node renames it or lets it go soon.
    pub(super) fn evict_ghost(&self, st: &mut State, id: ClientId) {
        let (Some(k), Some(u)) = (st.ghost_of.get(&id).cloned(), st.users.get(&id)) else {
            return;
        };
        let p = Parked {
            name: u.name.to_string(),
            ident: u.ident().to_string(),
            irc: u.irc,
            everyone: u.in_everyone,
        };
        self.remove_user(st, id, "name taken over");
        st.parked.insert(k, p);
    }

    /// Brings in parked ghosts whose names are free now.
    pub(super) fn unpark(&self, st: &mut State) {
        if st.parked.is_empty() {
            return;
        }
        let free: Vec<(Arc<str>, u64)> = st
            .parked
            .iter()
            .filter(|(_, p)| !st.names.contains_key(name::fold(&p.name).as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in free {
            if let Some(p) = st.parked.remove(&k) {
                let g = Ghost {
                    name: p.name,
                    ident: p.ident,
                    irc: p.irc,
                    everyone: p.everyone,
                };
                self.upsert_ghost(st, &k.0, k.1, g, None, None);
            }
        }
    }
}

/// What a ghost is made of.
#[derive(Debug)]
struct Ghost {
    name: String,
    ident: String,
    irc: bool,
    everyone: bool,
}
