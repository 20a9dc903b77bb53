//! What IRC clients ask about users beyond membership: `MONITOR` (told when a nick comes
//! and goes, natives included), `WHOWAS`, real names, `WHO` and WHOX's details, and the
//! `AWAY` and `SETNAME` notices for clients with `away-notify` and `setname`.
//!
//! The hub calls in here on every arrival, departure and rename; with nobody monitoring
//! anything that costs one check of an empty map.

use super::{Hub, Page, RoomSummary, State, User, first_seats, now_secs, page_of, pid};
use crate::backplane::Op;
use crate::client_id::{ClientId, is_local};
use crate::event::irc_message;
use crate::watch::{Added, Notify};
use crate::whowas::Gone;
use natter_proto::{ErrorCode, name, room as room_name};
use std::sync::Arc;

/// One user as `WHO` and WHOX show them.
#[derive(Debug, Clone)]
pub struct WhoEntry {
    /// The name as registered.
    pub name: Arc<str>,
    /// The IRC user name.
    pub ident: Arc<str>,
    /// The real name, for an IRC user that gave one.
    pub real: Option<Arc<str>>,
    /// Whether the user speaks IRC.
    pub irc: bool,
    /// Whether the user set an away message.
    pub away: bool,
    /// Whether the user operates the channel asked about.
    pub op: bool,
    /// Whether the user has voice in the channel asked about.
    pub voice: bool,
    /// Whether the user is logged into its name's account.
    pub account: bool,
}

/// The answer to a `MONITOR` request: who of the nicks asked about is online, who is not.
#[derive(Debug, Default)]
pub struct Monitored {
    /// The masks of those online.
    pub online: Vec<Arc<str>>,
    /// The nicks, as given, of those offline.
    pub offline: Vec<String>,
    /// The nicks, as given, that did not fit in the list.
    pub refused: Vec<String>,
}

impl User {
    /// The real name, if the user gave one.
    fn real(&self) -> Option<&Arc<str>> {
        self.rare.as_ref().and_then(|r| r.real.as_ref())
    }

    fn who_entry(&self, op: bool, voice: bool) -> WhoEntry {
        WhoEntry {
            name: self.name.clone(),
            ident: self.ident().clone(),
            real: self.real().cloned(),
            irc: self.irc,
            away: self.away().is_some(),
            op,
            voice,
            account: self.account,
        }
    }
}

/// Whether two users share a channel: a room, or the everyone channel unless it is quiet
/// (see [`Hub::everyone_quiet`]).
fn share_a_channel(a: &User, b: &User, everyone_quiet: bool) -> bool {
    (!everyone_quiet && a.in_everyone && b.in_everyone)
        || a.rooms.iter().any(|r| b.rooms.contains(r))
}

impl Hub {
    /// Pushes `:server <code> <watcher's nick> <arg>` to connection `conn`, if registered.
    fn tell_watcher(&self, st: &State, conn: ClientId, code: &str, arg: &str) {
        if let Some(u) = st.users.get(&pid(st, conn)) {
            let line = irc_message(None, Some(&self.irc.server), code, &[&u.name, arg]);
            u.outbox_of(conn).push(line);
        }
    }

    /// After user `id` arrived: its monitors get `730`.
    pub(super) fn watched_online(&self, st: &State, id: ClientId) {
        if st.watchers.is_empty() {
            return;
        }
        let Some(u) = st.users.get(&id) else { return };
        let watching = st.watchers.watching(&name::fold(&u.name));
        if watching.is_empty() {
            return;
        }
        let mask = u.who().mask();
        for &conn in watching {
            self.tell_watcher(st, conn, "730", &mask);
        }
    }

    /// After `user`, whose folded name is `key`, left: kept for WHOWAS, and its monitors
    /// get `731`.
    pub(super) fn watched_gone(&self, st: &mut State, user: &User, key: &str) {
        st.whowas.record(key, gone(user, &user.name, user.ident()));
        for &conn in st.watchers.watching(key) {
            self.tell_watcher(st, conn, "731", &user.name);
        }
    }

    /// After user `id` was renamed from `old` (folded `old_key`, with the ident
    /// `old_ident`): the old nick is kept for WHOWAS; its monitors get `731`, the new
    /// nick's `730`.
    pub(super) fn watched_renamed(
        &self,
        st: &mut State,
        id: ClientId,
        old: &Arc<str>,
        old_key: &str,
        old_ident: &Arc<str>,
    ) {
        let Some(u) = st.users.get(&id) else { return };
        if name::fold(&u.name) == old_key {
            return;
        }
        st.whowas.record(old_key, gone(u, old, old_ident));
        for &conn in st.watchers.watching(old_key) {
            self.tell_watcher(st, conn, "731", old);
        }
        self.watched_online(st, id);
    }

    /// `MONITOR +`: connection `conn` monitors `nicks` from now on (invalid names are
    /// skipped); which of them are online.
    pub fn monitor_add(&self, conn: ClientId, nicks: &[&str]) -> Monitored {
        let mut st = self.write();
        let st = &mut *st;
        let mut out = Monitored::default();
        for &nick in nicks {
            if name::validate(nick).is_err() {
                continue;
            }
            let key = name::fold(nick);
            match st.watchers.add(conn, &key, nick) {
                Added::Full => out.refused.push(nick.to_owned()),
                Added::New | Added::Already => Self::status(st, &key, nick, &mut out),
            }
        }
        out
    }

    fn status(st: &State, key: &str, nick: &str, out: &mut Monitored) {
        match st.names.get(key).and_then(|id| st.users.get(id)) {
            Some(u) => out.online.push(Arc::from(u.who().mask())),
            None => out.offline.push(nick.to_owned()),
        }
    }

    /// `MONITOR -`: connection `conn` stops monitoring `nicks`.
    pub fn monitor_remove(&self, conn: ClientId, nicks: &[&str]) {
        let mut st = self.write();
        for nick in nicks {
            st.watchers.remove(conn, &name::fold(nick));
        }
    }

    /// `MONITOR C`, and a connection that ended: it monitors nothing any more.
    pub fn monitor_clear(&self, conn: ClientId) {
        let mut st = self.write();
        st.watchers.clear(conn);
    }

    /// Forgets what connection `conn` watched and which notices it wanted.
    pub fn unwatch(&self, conn: ClientId) {
        let mut st = self.write();
        st.watchers.forget(conn);
    }

    /// `MONITOR L`: the nicks connection `conn` monitors, as it gave them.
    pub fn monitor_list(&self, conn: ClientId) -> Vec<String> {
        let st = self.read();
        st.watchers.list(conn).map(str::to_owned).collect()
    }

    /// `MONITOR S`: which of the nicks connection `conn` monitors are online.
    pub fn monitor_status(&self, conn: ClientId) -> Monitored {
        let st = self.read();
        let mut out = Monitored::default();
        for nick in st.watchers.list(conn) {
            Self::status(&st, &name::fold(nick), nick, &mut out);
        }
        out
    }

    /// Sets which change notices (`away-notify`, `setname`) connection `conn` wants.
    pub fn set_notify(&self, conn: ClientId, notify: Notify) {
        let mut st = self.write();
        st.watchers.set_notify(conn, notify);
    }

    /// Tells the connections with `away-notify` that share a channel with user `id` of its
    /// away message, as `AWAY [:message]`.
    pub(super) fn tell_away(&self, st: &State, id: ClientId) {
        let Some(u) = st.users.get(&id) else { return };
        let mask = u.who().mask();
        let line = match u.away() {
            Some(a) => irc_message(None, Some(&mask), "AWAY", &[a]),
            None => irc_message(None, Some(&mask), "AWAY", &[]),
        };
        self.tell_notified(st, id, |n| n.away, &line);
    }

    /// After user `id`'s JOIN, tells the connections with `away-notify` of the channel's
    /// other members (`member`: by id and user) that it is away, if it is: IRCv3's
    /// away-notify has an away user's JOIN followed by its AWAY, so that a client need not
    /// ask. Called before the user's channels hold the new one: those who share another
    /// with it were told already.
    pub(super) fn tell_away_joined(
        &self,
        st: &State,
        id: ClientId,
        member: impl Fn(ClientId, &User) -> bool,
    ) {
        let Some(u) = st.users.get(&id) else { return };
        let Some(away) = u.away() else { return };
        let line = irc_message(None, Some(&u.who().mask()), "AWAY", &[away]);
        let quiet = self.everyone_quiet(st);
        for (conn, _) in st.watchers.notified().filter(|(_, n)| n.away) {
            let other = pid(st, conn);
            if other != id
                && let Some(o) = st.users.get(&other)
                && member(other, o)
                && !share_a_channel(u, o, quiet)
            {
                o.outbox_of(conn).push(line.clone());
            }
        }
    }

    /// Pushes `line` to every connection that wants it (`wants`) and whose user shares a
    /// channel with user `id` (or that monitors it, with `extended-monitor`), but not to
    /// `id`'s own.
    fn tell_notified(
        &self,
        st: &State,
        id: ClientId,
        wants: fn(Notify) -> bool,
        line: &bytes::Bytes,
    ) {
        let Some(u) = st.users.get(&id) else { return };
        let monitors = st.watchers.watching(&name::fold(&u.name));
        let quiet = self.everyone_quiet(st);
        for (conn, n) in st.watchers.notified() {
            let other = pid(st, conn);
            if other == id || !wants(n) {
                continue;
            }
            if let Some(o) = st.users.get(&other)
                && (share_a_channel(u, o, quiet) || n.monitored && monitors.contains(&conn))
            {
                o.outbox_of(conn).push(line.clone());
            }
        }
    }

    /// Tells the connections with `invite-notify` whose users are in room `key` that user
    /// `to` was invited there by user `by` (`line`); those two know already.
    pub(super) fn tell_invited(
        &self,
        st: &State,
        key: &str,
        by: ClientId,
        to: ClientId,
        line: &bytes::Bytes,
    ) {
        let Some(r) = st.rooms.get(key) else { return };
        for (conn, n) in st.watchers.notified() {
            let user = pid(st, conn);
            if n.invite
                && user != by
                && user != to
                && r.members.contains(user)
                && let Some(u) = st.users.get(&user)
            {
                u.outbox_of(conn).push(line.clone());
            }
        }
    }

    /// `WALLOPS`: `text` from the server operator `conn`'s user to the connections with user
    /// mode `+w` (the operator's own included, as IRC servers do), of this node and, from a
    /// local operator, of the others; how many of this node's got it.
    pub fn wallops(&self, conn: ClientId, text: &str) -> usize {
        let st = self.read();
        let id = pid(&st, conn);
        let Some(from) = st.users.get(&id) else {
            return 0;
        };
        if self.relays && is_local(id) {
            let op = Op::Wallops {
                c: id,
                text: text.to_owned(),
            };
            self.backplane.publish(Some(op), None);
        }
        let line = irc_message(None, Some(&from.who().mask()), "WALLOPS", &[text]);
        let mut told = 0;
        for (c, _) in st.watchers.notified().filter(|(_, n)| n.wallops) {
            if let Some(u) = st.users.get(&pid(&st, c)) {
                u.outbox_of(c).push(line.clone());
                told += 1;
            }
        }
        told
    }

    /// Sets the real name of connection `conn`'s user; with `announce`, tells the
    /// connections with `setname` that share a channel with it (`SETNAME :<real name>`).
    pub fn set_real_name(&self, conn: ClientId, real: &str, announce: bool) {
        let mut st = self.write();
        let id = pid(&st, conn);
        let Some(u) = st.users.get_mut(&id) else {
            return;
        };
        let real: Arc<str> = Arc::from(real);
        u.change_rare(|r| r.real = Some(real.clone()));
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::RealName {
                    c: id,
                    real: real.to_string(),
                    announce,
                }),
                None,
            );
        }
        if announce {
            let mask = u.who().mask();
            let line = irc_message(None, Some(&mask), "SETNAME", &[&real]);
            self.tell_notified(&st, id, |n| n.setname, &line);
        }
    }

    /// Up to `max` of the latest users of the nick `nick` who left it, newest first.
    pub fn whowas(&self, nick: &str, max: usize) -> Vec<Gone> {
        let st = self.read();
        st.whowas.lookup(&name::fold(nick), max)
    }

    /// The user named `nick`, as `WHO` shows it.
    pub fn who_user(&self, nick: &str) -> Option<WhoEntry> {
        let st = self.read();
        let id = st.names.get(name::fold(nick).as_str())?;
        st.users.get(id).map(|u| u.who_entry(false, false))
    }

    /// Up to `max` registered users after `after` (a folded name) whose names `matches`
    /// accepts, in order of their folded names, for `WHO <mask>`. Up to `max` names are
    /// looked at, so a page may hold none.
    pub fn who_page(
        &self,
        after: Option<&str>,
        max: usize,
        matches: impl Fn(&str) -> bool,
    ) -> Page<WhoEntry> {
        let st = self.read();
        page_of(&st.names, after, max, |id| {
            st.users
                .get(id)
                .filter(|u| matches(&u.name))
                .map(|u| u.who_entry(false, false))
        })
    }

    /// Up to `max` members of `room` after `after`, as `WHO #channel` shows them, in the
    /// order of `members_page`.
    pub fn who_members_page(
        &self,
        room: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Arc<str>, Page<WhoEntry>), ErrorCode> {
        let st = self.read();
        let (name, audience) = self.audience_of(&st, room)?;
        let next = first_seats(&st, audience, after, max);
        let mut page = Page {
            done: next.len() < max,
            ..Page::default()
        };
        for (key, u, s) in next {
            page.items.push(u.who_entry(s.op, s.voice));
            page.last = Some(key);
        }
        Ok((name, page))
    }

    /// One room as `LIST` shows it to connection `asker`, if it exists (and is not secret
    /// and `asker` outside it).
    pub fn room_summary(&self, asker: ClientId, room: &str) -> Option<RoomSummary> {
        let st = self.read();
        let r = st.rooms.get(&room_name::fold(room))?;
        if r.modes.settings.secret && !r.members.contains(pid(&st, asker)) {
            return None;
        }
        Some(RoomSummary {
            name: r.name.clone(),
            members: r.members.len(),
            topic: r.topic.as_ref().map(|t| t.text.clone()),
        })
    }

    /// The real name of the user named `nick`, if it gave one.
    pub fn real_name(&self, nick: &str) -> Option<Arc<str>> {
        let st = self.read();
        let id = st.names.get(name::fold(nick).as_str())?;
        st.users.get(id).and_then(|u| u.real().cloned())
    }
}

/// `user` as WHOWAS shows it, under the name `name` and ident `ident` it had.
fn gone(user: &User, name: &Arc<str>, ident: &Arc<str>) -> Gone {
    Gone {
        name: name.clone(),
        ident: ident.clone(),
        real: user.real().cloned(),
        irc: user.irc,
        at: now_secs(),
    }
}
