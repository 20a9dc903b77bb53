//! Who watches whom for IRC: the `MONITOR` lists (a nick, folded, to the connections
//! watching it), and the connections that asked to hear of others' away and real-name
//! changes (`away-notify`, `setname`), of invitations (`invite-notify`) and of `WALLOPS`
//! (user mode `+w`). The hub consults it on every arrival, departure and
//! rename, so a nick nobody monitors costs one lookup in an empty map, or none at all.

use crate::client_id::ClientId;
use std::collections::HashMap;

/// Most nicks one connection may monitor (`MONITOR=` in ISUPPORT).
pub const MONITOR_LIMIT: usize = 100;

/// The capabilities that make a connection hear of changes to the users it shares a
/// channel with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    /// `away-notify`: `AWAY` when they set or clear an away message.
    pub away: bool,
    /// `setname`: `SETNAME` when they change their real name.
    pub setname: bool,
    /// `extended-monitor`: those notices for the nicks it monitors too, shared channel or
    /// not.
    pub monitored: bool,
    /// `invite-notify`: `INVITE` when someone is invited to a channel it is in.
    pub invite: bool,
    /// User mode `+w`: `WALLOPS` from server operators.
    pub wallops: bool,
}

/// A monitored nick: folded, and as the client spelled it (which `MONITOR L` gives back).
type Watched = (Box<str>, Box<str>);

/// Watchers by nick and by connection, and who wants change notices.
#[derive(Debug, Default)]
pub struct Watchers {
    /// The connections monitoring each folded nick.
    by_nick: HashMap<Box<str>, Vec<ClientId>>,
    /// Each monitoring connection's nicks, folded and as it spelled them, in the order added.
    by_conn: HashMap<ClientId, Vec<Watched>>,
    /// The connections with `away-notify` or `setname`.
    notify: HashMap<ClientId, Notify>,
}

/// What became of a nick given to [`Watchers::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Now monitored.
    New,
    /// Monitored already.
    Already,
    /// The connection's list is full.
    Full,
}

impl Watchers {
    /// Whether nobody monitors anything (the common case, checked before any lookup).
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }

    /// Starts `conn` monitoring the nick `spelled`, whose folded form is `key`.
    pub fn add(&mut self, conn: ClientId, key: &str, spelled: &str) -> Added {
        let list = self.by_conn.entry(conn).or_default();
        if list.iter().any(|(k, _)| &**k == key) {
            return Added::Already;
        }
        if list.len() >= MONITOR_LIMIT {
            return Added::Full;
        }
        list.push((key.into(), spelled.into()));
        self.by_nick.entry(key.into()).or_default().push(conn);
        Added::New
    }

    /// Stops `conn` monitoring the folded nick `key`.
    pub fn remove(&mut self, conn: ClientId, key: &str) {
        if let Some(list) = self.by_conn.get_mut(&conn) {
            list.retain(|(k, _)| &**k != key);
            if list.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        self.unwatch(conn, key);
    }

    /// Empties `conn`'s list.
    pub fn clear(&mut self, conn: ClientId) {
        for (key, _) in self.by_conn.remove(&conn).unwrap_or_default() {
            self.unwatch(conn, &key);
        }
    }

    /// Forgets a connection that ended: its list and its notices.
    pub fn forget(&mut self, conn: ClientId) {
        self.clear(conn);
        self.notify.remove(&conn);
    }

    fn unwatch(&mut self, conn: ClientId, key: &str) {
        if let Some(w) = self.by_nick.get_mut(key) {
            w.retain(|&c| c != conn);
            if w.is_empty() {
                self.by_nick.remove(key);
            }
        }
    }

    /// The nicks `conn` monitors, as it spelled them.
    pub fn list(&self, conn: ClientId) -> impl Iterator<Item = &str> {
        self.by_conn
            .get(&conn)
            .into_iter()
            .flatten()
            .map(|(_, spelled)| &**spelled)
    }

    /// The connections monitoring the folded nick `key`.
    pub fn watching(&self, key: &str) -> &[ClientId] {
        if self.by_nick.is_empty() {
            return &[];
        }
        self.by_nick.get(key).map_or(&[][..], Vec::as_slice)
    }

    /// Sets which change notices `conn` wants.
    pub fn set_notify(&mut self, conn: ClientId, notify: Notify) {
        if !notify.away && !notify.setname && !notify.invite && !notify.wallops {
            self.notify.remove(&conn);
        } else {
            self.notify.insert(conn, notify);
        }
    }

    /// The connections that want change notices, with which.
    pub fn notified(&self) -> impl Iterator<Item = (ClientId, Notify)> + '_ {
        self.notify.iter().map(|(&c, &n)| (c, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_bounded_and_cleared() {
        let mut w = Watchers::default();
        assert!(w.is_empty());
        for i in 0..MONITOR_LIMIT {
            assert_eq!(w.add(1, &format!("n{i}"), &format!("N{i}")), Added::New);
        }
        assert_eq!(w.add(1, "n0", "N0"), Added::Already);
        assert_eq!(w.add(1, "extra", "extra"), Added::Full);
        assert_eq!(w.add(2, "n0", "n0"), Added::New);
        assert_eq!(w.watching("n0"), &[1, 2]);
        assert_eq!(w.list(1).next(), Some("N0"));
        w.remove(1, "n0");
        assert_eq!(w.watching("n0"), &[2]);
        w.forget(1);
        w.forget(2);
        assert!(w.is_empty());
        assert_eq!(w.list(1).count(), 0);
    }
}
