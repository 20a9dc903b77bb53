//! How the hub reaches the other nodes of a cluster, whatever carries it.
//!
//! The hub describes every change that other nodes must see as an [`Op`] and hands it to its
//! [`Backplane`]. A single process uses [`Local`], which relays nothing: the hub then builds no
//! operation at all, so the fast path pays one predictable branch. In cluster mode the Redis
//! backplane ([`crate::cluster`]) appends operations to a shared stream and applies the other
//! nodes' operations to this hub on behalf of their users, which it represents as ghosts.

use crate::client_id::ClientId;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use tokio::sync::oneshot;

/// One change a node tells the others about, always on behalf of one of its own clients `c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Op {
    /// A node joined the cluster: the others re-assert their users, so it learns them.
    Hello,
    /// These are all the node's users: the others forget every ghost of it not listed.
    Sync {
        /// The node's clients that stay.
        clients: Vec<u64>,
    },
    /// A user registered.
    Online {
        /// The client.
        c: u64,
        /// Its name.
        name: String,
        /// Its IRC user name.
        ident: String,
        /// Whether it speaks IRC.
        irc: bool,
        /// Whether it is in Everyone.
        everyone: bool,
    },
    /// A user's whole state, re-asserted after the backplane lost it; applied idempotently.
    Snapshot {
        /// The client.
        c: u64,
        /// Its name.
        name: String,
        /// Its IRC user name.
        ident: String,
        /// Whether it speaks IRC.
        irc: bool,
        /// Whether it is in Everyone.
        everyone: bool,
        /// The rooms it is in (as named by their creators) and whether it operates each.
        rooms: Vec<(String, bool)>,
        /// Its away message.
        away: Option<String>,
        /// Its real name, if it gave one (absent from nodes that did not send real names).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        real: Option<String>,
    },
    /// A user changed name.
    Renamed {
        /// The client.
        c: u64,
        /// The new name.
        name: String,
    },
    /// A user left.
    Offline {
        /// The client.
        c: u64,
        /// Why.
        reason: String,
    },
    /// A broadcast to Everyone.
    Message {
        /// The sender.
        c: u64,
        /// Text.
        text: String,
        /// An IRC NOTICE.
        notice: bool,
        /// The message's id in the log, if it is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    /// A direct message to a user of another node.
    Dm {
        /// The sender.
        c: u64,
        /// The recipient's node.
        node: String,
        /// The recipient on that node.
        to: u64,
        /// Text.
        text: String,
        /// An IRC NOTICE.
        notice: bool,
        /// The message's id in the log, if it is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    /// A message to a room.
    Say {
        /// The sender.
        c: u64,
        /// The room.
        room: String,
        /// Text.
        text: String,
        /// An IRC NOTICE.
        notice: bool,
        /// The message's id in the log, if it is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    /// A user joined a room.
    Join {
        /// The client.
        c: u64,
        /// The room.
        room: String,
        /// Whether it operates the room from the start.
        op: bool,
    },
    /// A user left a room.
    Part {
        /// The client.
        c: u64,
        /// The room.
        room: String,
        /// Why, possibly empty.
        reason: String,
    },
    /// An IRC user joined or left the everyone channel.
    Everyone {
        /// The client.
        c: u64,
        /// Joined (or else left).
        joined: bool,
    },
    /// An operator set a room's topic.
    Topic {
        /// The operator.
        c: u64,
        /// The room.
        room: String,
        /// The topic, empty when cleared.
        text: String,
    },
    /// An operator removed someone from a room.
    Kick {
        /// The operator.
        c: u64,
        /// The room.
        room: String,
        /// Who was removed.
        target: String,
        /// Why, possibly empty.
        reason: String,
    },
    /// An operator changed a room's mode.
    Mode {
        /// The operator.
        c: u64,
        /// The room.
        room: String,
        /// The change as applied, `+b mask`.
        change: String,
    },
    /// A member invited someone into a room.
    Invite {
        /// The member.
        c: u64,
        /// The room.
        room: String,
        /// Who was invited.
        target: String,
    },
    /// An IRC user gave its real name (`USER`, at registration) or changed it (`SETNAME`).
    RealName {
        /// The client.
        c: u64,
        /// The real name.
        real: String,
        /// Whether it is a change, told to those with `setname` who share a channel.
        announce: bool,
    },
    /// A server operator's `WALLOPS`, for the `+w` users of every node.
    Wallops {
        /// The operator's client.
        c: u64,
        /// The text.
        text: String,
    },
    /// A user set or cleared its away message.
    Away {
        /// The client.
        c: u64,
        /// The message.
        away: Option<String>,
    },
    /// A name became an account, or stopped being one (the store has it; this tells the
    /// other nodes' caches of reserved names).
    Account {
        /// The name as its owner spelled it.
        name: String,
        /// Whether the account exists now.
        exists: bool,
    },
    /// A server operator disconnects a user of another node (`KILL`); that node does it.
    Kill {
        /// The user's node.
        node: String,
        /// The user on that node.
        to: u64,
        /// The operator.
        by: String,
        /// Why.
        comment: String,
    },
}

/// Where the hub sends what other nodes must see. Every method is called under the hub's lock
/// and must not block.
pub trait Backplane: Send + Sync + Debug {
    /// Whether anything is relayed; when not, the hub builds no operations.
    fn relays(&self) -> bool;
    /// Queues `op`, in order after everything queued before; then, once it is out, gives up
    /// the claim of client `release.1` on the folded name `release.0`, if one is given.
    fn publish(&self, op: Option<Op>, release: Option<(String, ClientId)>);
    /// Starts claiming the folded name for client `id` across the cluster; the answer says
    /// whether it is now this client's. `None` when names need no claim (a single process).
    fn claim(&self, folded: &str, id: ClientId) -> Option<oneshot::Receiver<bool>>;
    /// Claims in the background a name that was registered without waiting for a claim; a
    /// client that loses is renamed.
    fn assert_name(&self, folded: &str, id: ClientId);
}

/// The backplane of a single process: nothing to relay, every name is decided locally.
#[derive(Debug, Default)]
pub struct Local;

impl Backplane for Local {
    fn relays(&self) -> bool {
        false
    }
    fn publish(&self, _: Option<Op>, _: Option<(String, ClientId)>) {}
    fn claim(&self, _: &str, _: ClientId) -> Option<oneshot::Receiver<bool>> {
        None
    }
    fn assert_name(&self, _: &str, _: ClientId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_garbage_is_refused() {
        let op = Op::Say {
            c: 7,
            room: "#r".into(),
            text: "hi \"there\"\n  second line \\ end".into(),
            notice: false,
            id: Some(7),
        };
        let s = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), op);
        for bad in [
            "",
            "{",
            "{\"t\":\"nope\"}",
            "{\"t\":\"say\",\"c\":-1}",
            "[1,2]",
        ] {
            assert!(serde_json::from_str::<Op>(bad).is_err(), "{bad}");
        }
    }
}
