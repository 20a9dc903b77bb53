//! Room moderation: the commands that change a room's modes (see [`super::modes`]), invite
//! into it and list its bans. One set of rules for every kind of client: natives change them
//! with `MODE`, `INVITE` and `BANS`, IRC clients with `MODE` and `INVITE`, and both see the
//! same state and the same refusals.

use super::modes::{Ban, MAX_BANS, ModesView};
use super::{Hub, Room, State, now_secs, pid};
use crate::backplane::Op;
use crate::client_id::{ClientId, is_local};
use crate::event::{Event, irc_message};
use natter_proto::mode::{self, Change};
use natter_proto::{ErrorCode, name, room as room_name};
use std::sync::Arc;

impl Hub {
    /// Whether `conn` is a local server operator (who may moderate any room).
    pub(super) fn server_op(&self, st: &State, id: ClientId) -> bool {
        is_local(id)
            && st
                .users
                .get(&id)
                .is_some_and(|u| self.accounts.is_operator(&u.name))
    }

    /// Whether `id` may act on the room whose folded name is `key`: a local server operator,
    /// or another node's user (whose node checked), always; anyone else only as a member, and
    /// as an operator of it when `need_op` says the act needs one.
    pub(super) fn room_right(
        &self,
        st: &State,
        id: ClientId,
        key: &str,
        need_op: impl FnOnce(&Room) -> bool,
    ) -> Result<(), ErrorCode> {
        let r = st.rooms.get(key).ok_or(ErrorCode::NoSuchRoom)?;
        if !is_local(id) || self.server_op(st, id) {
            return Ok(());
        }
        let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
        if !seat.op && need_op(r) {
            return Err(ErrorCode::NotOperator);
        }
        Ok(())
    }

    /// A room's modes as `conn` may see them (the key only if it is a member).
    pub fn modes(&self, conn: ClientId, room: &str) -> Result<ModesView, ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let member = r.members.contains(id);
        if r.modes.settings.secret && !member && !self.server_op(&st, id) {
            return Err(ErrorCode::NoSuchRoom);
        }
        Ok(ModesView {
            room: r.name.clone(),
            modes: r.modes.settings.describe(member),
            created: r.modes.created,
        })
    }

    /// A room's ban list; hidden, like the room, from outsiders of a secret room.
    pub fn bans(&self, conn: ClientId, room: &str) -> Result<(Arc<str>, Vec<Ban>), ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        if r.modes.settings.secret && !r.members.contains(id) && !self.server_op(&st, id) {
            return Err(ErrorCode::NoSuchRoom);
        }
        Ok((r.name.clone(), r.modes.bans.clone()))
    }

    /// Whether `room` is secret and `conn` is not in it: it is then hidden from `conn`.
    pub fn hidden_from(&self, conn: ClientId, room: &str) -> bool {
        let st = self.read();
        let id = pid(&st, conn);
        st.rooms
            .get(&room_name::fold(room))
            .is_some_and(|r| r.modes.settings.secret && !r.members.contains(id))
    }

    /// Applies one mode change to `room` on behalf of `conn`; every member (the setter
    /// included) is told. Returns the room's name and the change as applied (a ban's mask
    /// normalized, a name as registered), or `None` for a change that changed nothing.
    pub fn mode(
        &self,
        conn: ClientId,
        room: &str,
        change: &Change<'_>,
    ) -> Result<(Arc<str>, Option<String>), ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        self.room_right(st, id, &key, |_| true)?;
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        let by = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let applied: Option<String> = match *change {
            Change::Flag { .. } | Change::Key(_) | Change::Limit(_) => {
                r.modes.settings.apply(change).then(|| change.to_string())
            }
            Change::Ban { on, mask } => {
                let mask = mode::normalize_mask(mask).ok_or(ErrorCode::BadParameter)?;
                let at = r
                    .modes
                    .bans
                    .iter()
                    .position(|b| b.mask.eq_ignore_ascii_case(&mask));
                match (on, at) {
                    (true, Some(_)) | (false, None) => None,
                    (true, None) => {
                        if r.modes.bans.len() >= MAX_BANS {
                            return Err(ErrorCode::ListFull);
                        }
                        r.modes.bans.push(Ban {
                            mask: Arc::from(mask.as_str()),
                            by: by.name.clone(),
                            at: now_secs(),
                        });
                        Some(format!("+b {mask}"))
                    }
                    (false, Some(i)) => {
                        let gone = r.modes.bans.remove(i);
                        Some(format!("-b {}", gone.mask))
                    }
                }
            }
            Change::Voice { on, name: target } | Change::Op { on, name: target } => {
                let voice = matches!(change, Change::Voice { .. });
                let target_id = *st
                    .names
                    .get(name::fold(target).as_str())
                    .ok_or(ErrorCode::NoSuchUser)?;
                let target_user = st.users.get(&target_id).ok_or(ErrorCode::NoSuchUser)?;
                let seat = r.members.get(target_id).ok_or(ErrorCode::UserNotInRoom)?;
                let now = if voice { seat.voice } else { seat.op };
                if now == on {
                    None
                } else {
                    if !voice && !on && r.members.seats.iter().filter(|s| s.op).count() == 1 {
                        // A room is never left without someone who can moderate it.
                        return Err(ErrorCode::BadParameter);
                    }
                    let tname = target_user.name.clone();
                    let account = target_user.account;
                    if let Some(seat) = r.members.get_mut(target_id) {
                        if voice {
                            seat.voice = on;
                        } else {
                            seat.op = on;
                        }
                    }
                    if !voice && account && is_local(id) {
                        let folded = name::fold(&tname);
                        if on {
                            self.keep_operator(&mut st.rooms_by, &key, r, folded);
                        } else if let Some(ops) = r.kept.as_mut() {
                            ops.retain(|o| *o != folded);
                            if ops.is_empty() {
                                // Its last account operator is gone: it no longer stays.
                                r.kept = None;
                            }
                            self.write_room(&key, r);
                        }
                    }
                    let letter = if voice { 'v' } else { 'o' };
                    Some(format!("{}{letter} {tname}", if on { '+' } else { '-' }))
                }
            }
            Change::ListBans => None,
        };
        let Some(applied) = applied else {
            return Ok((r.name.clone(), None));
        };
        let by = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        r.members.send(
            &self.lines(Event::Mode {
                room: &r.name,
                by: by.who(),
                change: &applied,
            }),
            None,
        );
        if r.kept.is_some() && is_local(id) {
            self.write_room(&key, r);
        }
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Mode {
                    c: id,
                    room: r.name.to_string(),
                    change: applied.clone(),
                }),
                None,
            );
        }
        Ok((r.name.clone(), Some(applied)))
    }

    /// Invites `target` into `room` on behalf of `conn`: a member may invite, only an
    /// operator into an invite-only room. The invitation lets `target` past `+i`, `+k` and
    /// `+l` once; `target` is told. Returns the room's and the target's names.
    pub fn invite(
        &self,
        conn: ClientId,
        room: &str,
        target: &str,
    ) -> Result<(Arc<str>, Arc<str>), ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        self.room_right(st, id, &key, |r| r.modes.settings.invite_only)?;
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        let target_id = *st
            .names
            .get(name::fold(target).as_str())
            .ok_or(ErrorCode::NoSuchUser)?;
        if r.members.contains(target_id) {
            return Err(ErrorCode::UserInRoom);
        }
        let (Some(by), Some(to)) = (st.users.get(&id), st.users.get(&target_id)) else {
            return Err(ErrorCode::NoSuchUser);
        };
        r.modes.invite(name::fold(&to.name));
        let out = (r.name.clone(), to.name.clone());
        let lines = self.lines(Event::Invited {
            room: &out.0,
            by: by.who(),
            to: &out.1,
        });
        Self::send_to(st, target_id, &lines, None);
        let line = irc_message(None, Some(&by.who().mask()), "INVITE", &[&out.1, &out.0]);
        self.tell_invited(st, &key, id, target_id, &line);
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Invite {
                    c: id,
                    room: out.0.to_string(),
                    target: out.1.to_string(),
                }),
                None,
            );
        }
        Ok(out)
    }

    /// Applies a mode change another node's user made (its node checked the right).
    pub(super) fn mode_from_peer(&self, id: ClientId, room: &str, change: &str) {
        let (word, arg) = match change.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (change, None),
        };
        if let Ok(c) = mode::parse_one(word, arg) {
            let _ = self.mode(id, room, &c);
        }
    }
}
