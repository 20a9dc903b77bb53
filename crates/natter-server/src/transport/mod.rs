//! Connections: accepting them, telling their protocols apart, and running each under the
//! one [driver] over its [wire](wire::Wire).
//!
//! # Layout
//! - [`accept`]: listening sockets, the accept loops, admission of each connection.
//! - [`connection`]: what a new connection speaks, decided from its first bytes (TLS, HTTP,
//!   IRC or natter's line protocol), and which wire and session it runs with.
//! - [`shared`]: what every connection shares, and the registry that shuts sessions down.
//! - [`driver`]: the one connection loop, for every wire and session.
//! - [`wire`]: how bytes move; plain TCP is the socket itself.
//! - [`tls`]: rustls, sans-IO, as a wire.
//! - [`websocket`]: WebSocket framing as a wire over TCP or TLS.
//! - [`http`]: hyper and the page, the WebSocket upgrade, `/healthz` and `/metrics`.
//! - [`rewind`]: replays sniffed bytes to hyper.

pub mod accept;
pub mod alarm;
pub mod connection;
pub mod driver;
pub mod http;
pub mod rewind;
pub mod shared;
pub mod tls;
pub mod websocket;
pub mod wire;

pub use connection::Assume;
pub use shared::Shared;
