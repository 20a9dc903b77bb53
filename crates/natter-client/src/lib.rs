//! natter-client: the desktop chat client for natter servers, built with eframe/egui.
//!
//! `natter-client [HOST] [PORT]` opens a window (`--tls`, with `--tls-ca` and `--tls-name`,
//! connects over TLS); without arguments it starts on a connect screen. After connecting it
//! asks for a name, then shows Everyone, the rooms you joined and one conversation per DM
//! partner, with the users online beside them. Each conversation shows its history from the
//! server's log (older pages as you scroll up, what was missed after a reconnect), and a
//! search finds messages in all of them.
//!
//! # Layout
//! - [`model`]: all client state and the pure reducer: server lines and user input in, state
//!   changes and command lines out. No I/O, no window; unit-tested on its own.
//! - [`input`]: what was typed in the message box: chat text or a `/command`.
//! - [`markup`]: a message's `code` and ``` blocks, for the view to show monospaced.
//! - [`net`]: the network thread (`natter-net`): tokio and natter-conn, connecting,
//!   forwarding lines, reconnecting with backoff; channels to and from the UI.
//! - [`app`]: [`ChatApp`], the eframe application: the one struct with the UI's state, gluing
//!   the model, the network and the drawing together.
//! - [`view`]: drawing the connect, name and chat screens from the model.
//! - [`theme`]: colours, sizes and spacing, and the fonts: egui's, the system's colour emoji
//!   font (drawn in colour by epaint's `color_fonts`), then the system's for other scripts
//!   (all found with fontconfig when the client starts).
//!
//! Data flow: the network thread sends [`net::NetEvent`]s through a channel and wakes the UI
//! with `request_repaint`; [`ChatApp`] feeds them to [`model::Model::on_net`] each frame, draws,
//! and hands the model's outgoing [`net::NetCommand`]s back to the thread.

pub mod app;
pub mod input;
pub mod markup;
pub mod model;
pub mod net;
pub mod theme;
pub mod view;

pub use app::{ChatApp, Options};
