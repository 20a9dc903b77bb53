//! The message log's rows, the questions asked of it, and the shape of its ids.

/// One message kept in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its id: unique across a cluster, sorting in the order it was sent ([`MessageId`]).
    pub id: i64,
    /// Where it was said: [`EVERYONE`], a folded room name (`#…`), or [`dm_target`].
    pub target: String,
    /// The sender's name as it was shown.
    pub sender: String,
    /// The sender's account (its key), if the sender was logged in.
    pub account: Option<String>,
    /// What was said.
    pub text: String,
}

/// The target of Everyone's messages.
pub const EVERYONE: &str = "*";

/// The target of the direct messages between two accounts (by their keys), the same
/// whichever of them is `a`.
pub fn dm_target(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    format!("@{a} @{b}")
}

/// Whether `target` is a conversation between accounts that `key` is in.
pub fn dm_includes(target: &str, key: &str) -> bool {
    target.split(' ').any(|p| p.strip_prefix('@') == Some(key))
}

/// Which messages of a target a page of history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest.
    Latest,
    /// The newest of those older than this id.
    Before(i64),
    /// The oldest of those newer than this id.
    After(i64),
    /// Of those with ids strictly between `after` and `before`, the newest (or else the
    /// oldest).
    Within {
        /// The ids are above this.
        after: i64,
        /// The ids are below this.
        before: i64,
        /// The newest of them are taken, rather than the oldest.
        newest: bool,
    },
}

impl Range {
    /// The ids the range allows, exclusive at both ends, and whether the newest of them are
    /// taken (else the oldest).
    pub fn bounds(self) -> (i64, i64, bool) {
        match self {
            Range::Latest => (-1, i64::MAX, true),
            Range::Before(id) => (-1, id, true),
            Range::After(id) => (id, i64::MAX, false),
            Range::Within {
                after,
                before,
                newest,
            } => (after, before, newest),
        }
    }
}

/// A message id: the millisecond it was sent (since the Unix epoch), then a sequence number
/// within that millisecond, then the node that sent it, so that ids made by different nodes
/// of a cluster never collide and all of them sort by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MessageId(pub i64);

impl MessageId {
    /// Bits for the node.
    pub const NODE_BITS: u32 = 10;
    /// Bits for the sequence within a millisecond.
    pub const SEQ_BITS: u32 = 12;

    /// The id of message `seq` of millisecond `ms` on node `node`.
    pub fn new(ms: i64, seq: u32, node: u16) -> MessageId {
        let node = i64::from(node) & ((1 << Self::NODE_BITS) - 1);
        let seq = i64::from(seq) & ((1 << Self::SEQ_BITS) - 1);
        MessageId((ms << (Self::SEQ_BITS + Self::NODE_BITS)) | (seq << Self::NODE_BITS) | node)
    }

    /// The millisecond (since the Unix epoch) the message was sent.
    pub fn millis(self) -> i64 {
        self.0 >> (Self::SEQ_BITS + Self::NODE_BITS)
    }

    /// The first id of millisecond `ms`, for asking by time; a time beyond what ids can
    /// hold (the year 2109) is after every id, one before it before every id.
    pub fn at(ms: i64) -> MessageId {
        const LAST_MS: i64 = i64::MAX >> (MessageId::SEQ_BITS + MessageId::NODE_BITS);
        if ms > LAST_MS {
            MessageId(i64::MAX)
        } else {
            MessageId::new(ms.max(0), 0, 0)
        }
    }
}

/// Turns a person's words into an FTS5 query that matches messages holding all of them,
/// each taken literally (no operators): the words are cut where the index cuts them (at
/// anything but letters and digits), and each piece is one quoted term, since the index
/// keeps no positions to match phrases with.
pub(crate) fn fts5_query(words: &str) -> Option<String> {
    let quoted: Vec<String> = words
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_then_sequence_and_keep_their_parts() {
        let a = MessageId::new(1_764_000_000_000, 0, 3);
        let b = MessageId::new(1_764_000_000_000, 1, 0);
        let c = MessageId::new(1_764_000_000_001, 0, 0);
        assert!(a < b && b < c);
        assert_eq!(a.millis(), 1_764_000_000_000);
        assert!(MessageId::at(a.millis()) <= a);
        assert!(MessageId::new(i64::MAX >> 22, 4095, 1023).0 > 0);
    }

    #[test]
    fn a_dm_target_is_the_same_from_both_sides() {
        assert_eq!(dm_target("bob", "alice"), dm_target("alice", "bob"));
        assert!(dm_includes(&dm_target("bob", "alice"), "bob"));
        assert!(!dm_includes(&dm_target("bob", "alice"), "bo"));
    }

    #[test]
    fn search_words_are_taken_literally() {
        assert_eq!(fts5_query("  "), None);
        assert_eq!(fts5_query("\"*("), None);
        assert_eq!(
            fts5_query("rust OR \"x NEAR(fox-y"),
            Some("\"rust\" \"OR\" \"x\" \"NEAR\" \"fox\" \"y\"".into())
        );
    }
}
