//! Room moderation: bans, invitations, a key, a member limit, moderation with voice, secrecy,
//! and who may send or set the topic. One set of rules for every kind of client: natives
//! change them with `MODE`, `INVITE` and `BANS`, IRC clients with `MODE` and `INVITE`, and
//! both see the same state and the same refusals.

use super::{Hub, Room, State, now_secs, pid};
use crate::backplane::Op;
use crate::client_id::{ClientId, is_local};
use crate::event::{Event, Who};
use natter_proto::mode::{self, Change, Settings};
use natter_proto::{ErrorCode, name, room as room_name};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most bans a room may hold (IRC's `MAXLIST`).
pub const MAX_BANS: usize = 100;

/// Most invitations a room remembers; the oldest is forgotten first.
const MAX_INVITES: usize = 100;

/// A room's moderation state.
#[derive(Debug, Default)]
pub(super) struct RoomModes {
    /// Flags, key and limit.
    pub(super) settings: Settings,
    /// The ban list, in the order bans were set.
    pub(super) bans: Vec<Ban>,
    /// Folded names invited in and not yet come; an invitation is used up by the join it
    /// lets through.
    invited: VecDeque<String>,
    /// When the room was made, in seconds since the Unix epoch (IRC's 329).
    pub(super) created: u64,
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The mask, normalized ([`mode::normalize_mask`]).
    pub mask: Arc<str>,
    /// Who set it.
    pub by: Arc<str>,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// A room's modes as `MODE <room>` shows them.
#[derive(Debug, Clone)]
pub struct ModesView {
    /// The room's name.
    pub room: Arc<str>,
    /// The mode string and its parameters (`+ntk key`); the key only for members.
    pub modes: String,
    /// When the room was made, in seconds since the Unix epoch.
    pub created: u64,
}

impl RoomModes {
    /// The modes of a room made now.
    pub(super) fn new() -> Self {
        Self {
            created: now_secs(),
            ..Self::default()
        }
    }

    /// Whether a ban matches `who`.
    pub(super) fn banned(&self, who: Who<'_>) -> bool {
        if self.bans.is_empty() {
            return false;
        }
        let source = who.mask();
        let account = who.account.then_some(who.name);
        self.bans
            .iter()
            .any(|b| mode::mask_matches(&b.mask, &source, account))
    }

    /// Whether `who` may come in with `key`, `members` being in already; uses up the
    /// invitation that lets it in. An invitation opens `+i`, `+k` and `+l`, not a ban.
    pub(super) fn admit(
        &mut self,
        who: Who<'_>,
        key: Option<&str>,
        members: usize,
    ) -> Result<(), ErrorCode> {
        if self.banned(who) {
            return Err(ErrorCode::Banned);
        }
        let folded = name::fold(who.name);
        if let Some(i) = self.invited.iter().position(|n| *n == folded) {
            self.invited.remove(i);
            return Ok(());
        }
        let s = &self.settings;
        if s.invite_only {
            return Err(ErrorCode::InviteOnly);
        }
        if let Some(k) = &s.key
            && key != Some(&**k)
        {
            return Err(ErrorCode::BadKey);
        }
        if s.limit.is_some_and(|l| members >= l as usize) {
            return Err(ErrorCode::RoomFull);
        }
        Ok(())
    }

    /// Whether a member who is neither operator nor voiced may speak; the refusal if not.
    pub(super) fn may_speak(&self, who: Who<'_>) -> Result<(), ErrorCode> {
        if self.settings.moderated {
            return Err(ErrorCode::Moderated);
        }
        if self.banned(who) {
            return Err(ErrorCode::Banned);
        }
        Ok(())
    }

    /// The settings and bans a room that stays keeps.
    pub(super) fn kept(&self) -> (Option<String>, Vec<crate::kept::KeptBan>) {
        let modes = (self.settings != Settings::default()).then(|| self.settings.describe(true));
        let bans = self
            .bans
            .iter()
            .map(|b| crate::kept::KeptBan {
                mask: b.mask.to_string(),
                by: b.by.to_string(),
                at: b.at,
            })
            .collect();
        (modes, bans)
    }

    /// The modes of a room that stays, as the store kept them.
    pub(super) fn restored(modes: Option<&str>, bans: &[crate::kept::KeptBan]) -> Self {
        Self {
            settings: modes.and_then(Settings::parse).unwrap_or_default(),
            bans: bans
                .iter()
                .filter_map(|b| {
                    Some(Ban {
                        mask: Arc::from(mode::normalize_mask(&b.mask)?),
                        by: Arc::from(b.by.as_str()),
                        at: b.at,
                    })
                })
                .take(MAX_BANS)
                .collect(),
            invited: VecDeque::new(),
            created: now_secs(),
        }
    }
}

impl Hub {
    /// Whether `conn` is a local server operator (who may moderate any room).
    pub(super) fn server_op(&self, st: &State, id: ClientId) -> bool {
        is_local(id)
            && st
                .users
                .get(&id)
                .is_some_and(|u| self.accounts.is_operator(&u.name))
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
        let server_op = self.server_op(st, id);
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if is_local(id) && !server_op {
            let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
            if !seat.op {
                return Err(ErrorCode::NotOperator);
            }
        }
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
        let server_op = self.server_op(st, id);
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if is_local(id) && !server_op {
            let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
            if r.modes.settings.invite_only && !seat.op {
                return Err(ErrorCode::NotOperator);
            }
        }
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
        let folded = name::fold(&to.name);
        let invited = &mut r.modes.invited;
        if !invited.contains(&folded) {
            if invited.len() >= MAX_INVITES {
                invited.pop_front();
            }
            invited.push_back(folded);
        }
        let out = (r.name.clone(), to.name.clone());
        let lines = self.lines(Event::Invited {
            room: &out.0,
            by: by.who(),
            to: &out.1,
        });
        Self::send_to(st, target_id, &lines, None);
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

/// The room a join would make, with its modes new.
pub(super) fn new_room(name: &str, by: Option<std::net::IpAddr>) -> Room {
    Room {
        name: Arc::from(name),
        by,
        topic: None,
        members: Default::default(),
        kept: None,
        modes: RoomModes::new(),
    }
}
