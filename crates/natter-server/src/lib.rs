//! natter-server: the lab's chat protocol as an async server for tens of thousands of clients.
//!
//! # Layout
//! - [`listener`]: accepts connections (limit, accept errors, graceful shutdown); [`run`] is
//!   the entry point.
//! - [`connection`]: the task that owns one socket: sniffs the protocol, reads and frames
//!   lines, writes the outbox in batches, closes cleanly.
//! - [`session`]: a native client's protocol state; turns commands into hub operations and
//!   replies.
//! - [`irc`]: an IRC client's session: registration, channels as rooms, numerics.
//! - [`hub`]: who is registered, which rooms exist, and fan-out of events to outboxes.
//! - [`event`]: what the hub delivers, rendered once per kind of client (native, IRC).
//! - [`backplane`]: what the hub tells other nodes, and the single process's backplane.
//! - [`cluster`]: cluster mode, the Redis backplane: a shared stream, name claims, liveness.
//! - [`outbox`]: a client's bounded outgoing queue and the slow-consumer policy.
//! - [`web`]: HTTP on the shared port: the browser client, `/healthz`, `/metrics`.
//! - [`websocket`]: the line protocol over WebSocket for the browser client.
//! - [`tls`]: TLS for every protocol, certificates reloadable on SIGHUP.
//! - [`rewind`]: replays the sniffed first bytes to the protocol that takes a connection.
//! - [`throttle`]: flood control, token buckets on each client's commands and bytes.
//! - [`stats`]: lock-free counters for logs and metrics.
//! - [`config`]: limits, timings and policies.
//! - [`settings`]: the command line and the TOML file that make a [`Config`].
//!
//! How one MESSAGE travels is told in ARCHITECTURE.md at the repository root.

pub mod backplane;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod event;
pub mod hub;
pub mod irc;
pub mod listener;
pub mod outbox;
pub mod rewind;
pub mod session;
pub mod settings;
pub mod stats;
pub mod throttle;
pub mod tls;
pub mod web;
pub mod websocket;

pub use config::Config;
pub use listener::{Listener, run, run_all};
