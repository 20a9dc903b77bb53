//! natter's chat protocol, with no I/O: what clients send, what the server answers, and the
//! rules both sides share.
//!
//! Nothing here touches a socket or a clock, so every rule can be unit-tested, property-tested
//! and fuzzed in memory. The server, the client library, the benchmark and the GUI all speak the
//! protocol through this crate.
//!
//! # Layout
//! - [`limits`]: every size the protocol bounds, as named constants.
//! - [`framing`]: splits a byte stream into lines, bounded in memory, LF or CRLF.
//! - [`sniff`]: guesses from a connection's first bytes which protocol its client speaks.
//! - [`name`]: the user-name rule (IRC-compatible, unique ignoring ASCII case).
//! - [`room`]: the room-name rule (`#` and up to 49 safe characters, unique ignoring case).
//! - [`mode`]: room modes (`+i`, `+k key`, `+b mask`...) and ban masks, native and IRC alike.
//! - [`text`]: the rule for message text (no control characters, not empty).
//! - [`multiline`]: escapes for texts of several lines (`MULTILINE ON`), and their rule.
//! - [`command`]: a client line parsed into a typed [`Command`], one type per command.
//! - [`code`]: the stable error codes ([`ErrorCode`]) and disconnect reasons ([`ByeReason`]).
//! - [`server_line`]: every line the server sends, formatted and parsed ([`ServerLine`]).
//! - [`tags`]: the `@time=...;id=...` prefix of events for clients that said `TAGS ON`.
//! - [`help`]: the text of `HELP`, shared with PROTOCOL.md's command table.
//! - [`irc`]: bounded IRC parsing (over `irc-proto`) and IRC-to-natter text rules.

pub mod code;
pub mod command;
pub mod framing;
pub mod help;
pub mod irc;
pub mod limits;
pub mod mode;
pub mod multiline;
pub mod name;
pub mod password;
pub mod room;
pub mod sasl;
pub mod server_line;
pub mod sniff;
pub mod tags;
pub mod text;

pub use code::{ByeReason, ErrorCode};
pub use command::{Command, CommandError};
pub use framing::{Frame, LineFramer};
pub use server_line::ServerLine;
