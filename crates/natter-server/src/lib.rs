//! natter-server: the lab's chat protocol as an async server for tens of thousands of clients.
//!
//! # Layout
//! Bottom-up: each module uses only those above it in this list.
//! - [`stats`], [`throttle`], [`outbox`], [`client_id`], [`event`], [`tls`]: counters, flood
//!   control's token buckets, a client's bounded outgoing queue and the slow-consumer policy,
//!   who a client is, what the hub delivers (rendered once per kind of client), and the TLS
//!   certificates; [`watch`] and [`whowas`]: IRC's MONITOR lists and change notices, and
//!   the recent departures WHOWAS answers from.
//! - [`backplane`]: what the hub tells other nodes, and the single process's backplane.
//! - [`hub`]: who is registered, which rooms exist, and fan-out of events to outboxes; the
//!   cluster's users of other nodes mirrored in it.
//! - [`cluster`]: cluster mode, the Redis backplane: a shared stream, name claims, liveness.
//! - [`config`]: limits, timings and policies.
//! - [`handler`]: the seam between a connection and its protocol, and how a connection ends.
//! - [`claim`]: a name being claimed across the cluster.
//! - [`session`], [`irc`]: a native client's and an IRC client's protocol state; they turn
//!   lines into hub operations and replies ([`chathistory`] reads IRC's history requests).
//! - [`admission`]: per-address connection limits.
//! - [`transport`]: accepting connections, telling their protocols apart, and the one
//!   connection driver over plain TCP, TLS and WebSocket wires; HTTP and the page.
//! - [`server`]: [`run`] and [`run_all`], a server from start to graceful shutdown.
//! - [`settings`]: the command line and the TOML file that make a [`Config`].
//!
//! How one MESSAGE travels is told in ARCHITECTURE.md at the repository root.

pub mod account;
pub mod admission;
pub mod backplane;
pub mod chathistory;
pub mod claim;
pub mod client_id;
pub mod cluster;
pub mod config;
pub mod event;
pub mod handler;
pub mod history;
pub mod hub;
pub mod irc;
pub mod kept;
pub mod outbox;
pub mod server;
pub mod session;
pub mod settings;
pub mod shape;
pub mod stats;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod watch;
pub mod whowas;

pub use config::Config;
pub use server::{run, run_all};
pub use transport::Assume;
pub use transport::accept::{Listener, bind};
