//! Who a client is to the server: a number for the life of the process, and the mark that
//! tells this node's connections from the users of other nodes (ghosts) in a cluster.

/// Identifies one connection for the life of the server.
pub type ClientId = u64;

/// Set in the ids of ghosts (users of other nodes), so they never meet a connection's id.
pub const GHOST: ClientId = 1 << 63;

/// Whether `id` is one of this node's connections (or else a ghost).
pub fn is_local(id: ClientId) -> bool {
    id & GHOST == 0
}

/// Set in the ids the hub makes up for users that no connection's id names any more (one
/// of an account's several connections left the others and became someone else).
pub const PERSON: ClientId = 1 << 62;
