//! natter-client: the desktop chat client for natter servers, built with eframe/egui.
//!
//! `natter-client [HOST] [PORT]` opens a window; without arguments it starts on a connect
//! screen. After connecting it asks for a name, then shows Everyone, the rooms you joined and
//! one conversation per DM partner, with the users online beside them.
//!
//! # Layout
//! - [`model`]: all client state and the pure reducer: server lines and user input in, state
//!   changes and command lines out. No I/O, no window; unit-tested on its own.
//! - [`input`]: what was typed in the message box: chat text or a `/command`.
//! - [`net`]: the network thread (`natter-net`): tokio and natter-conn, connecting,
//!   forwarding lines, reconnecting with backoff; channels to and from the UI.

pub mod input;
pub mod model;
pub mod net;
