//! `WHOWAS`: who held a nick recently. A ring of the last departures and renames, with a cap
//! per nick, so the memory it takes is bounded whatever the clients do.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Most departures kept, all nicks together.
pub const KEPT: usize = 1_000;

/// Most departures kept of one nick.
pub const PER_NICK: usize = 8;

/// A user as it was when it left a nick.
#[derive(Debug, Clone)]
pub struct Gone {
    /// The nick as it was spelled.
    pub name: Arc<str>,
    /// The IRC user name.
    pub ident: Arc<str>,
    /// The real name, for an IRC user that gave one.
    pub real: Option<Arc<str>>,
    /// Whether it spoke IRC.
    pub irc: bool,
    /// When it left the nick, in seconds since the Unix epoch.
    pub at: u64,
}

/// The last departures, oldest first, and how many each folded nick has among them.
#[derive(Debug, Default)]
pub struct Whowas {
    /// The departures with their folded nicks, oldest first.
    ring: VecDeque<(Box<str>, Gone)>,
    /// How many entries of the ring each folded nick has.
    counts: HashMap<Box<str>, usize>,
}

impl Whowas {
    /// Records that a user left the nick folded as `key`.
    pub fn record(&mut self, key: &str, gone: Gone) {
        let count = self.counts.get(key).copied().unwrap_or(0);
        if count >= PER_NICK
            && let Some(i) = self.ring.iter().position(|(k, _)| &**k == key)
        {
            self.ring.remove(i);
            self.drop_one(key);
        }
        if self.ring.len() >= KEPT
            && let Some((old, _)) = self.ring.pop_front()
        {
            self.drop_one(&old);
        }
        *self.counts.entry(key.into()).or_default() += 1;
        self.ring.push_back((key.into(), gone));
    }

    fn drop_one(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// Up to `max` departures from the folded nick `key`, newest first.
    pub fn lookup(&self, key: &str, max: usize) -> Vec<Gone> {
        if !self.counts.contains_key(key) {
            return Vec::new();
        }
        self.ring
            .iter()
            .rev()
            .filter(|(k, _)| &**k == key)
            .take(max)
            .map(|(_, g)| g.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(name: &str, at: u64) -> Gone {
        Gone {
            name: Arc::from(name),
            ident: Arc::from(name),
            real: None,
            irc: true,
            at,
        }
    }

    #[test]
    fn bounded_overall_and_per_nick() {
        let mut w = Whowas::default();
        for i in 0..(PER_NICK as u64 + 3) {
            w.record("bob", gone("Bob", i));
        }
        let bob = w.lookup("bob", 100);
        assert_eq!(bob.len(), PER_NICK);
        assert_eq!(bob[0].at, PER_NICK as u64 + 2, "newest first");
        assert_eq!(w.lookup("bob", 2).len(), 2);
        for i in 0..KEPT as u64 {
            w.record(&format!("n{i}"), gone("n", i));
        }
        assert_eq!(w.ring.len(), KEPT);
        assert!(w.lookup("bob", 10).is_empty());
        assert!(!w.counts.contains_key("bob"));
        assert_eq!(w.lookup(&format!("n{}", KEPT - 1), 10).len(), 1);
    }
}
