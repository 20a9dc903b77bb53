//! Every bound the protocol puts on input, in one place so that documentation, server and
//! clients agree.

/// Longest client line accepted, in bytes, not counting the LF or CRLF that ends it.
///
/// Four KiB holds any message a person types (about a page of text) while keeping the memory a
/// connection may pin for a partial line small.
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest line the server sends, in bytes, not counting the final LF.
///
/// A delivered message is its text (at most [`MAX_LINE_BYTES`], and at most twice that once
/// escaped for a `MULTILINE ON` reader: every backslash doubled) plus a type word and a sender
/// name, so clients that accept this much never see a line they must cut.
pub const MAX_SERVER_LINE_BYTES: usize = 2 * MAX_LINE_BYTES + 128;

/// Most lines in one multi-line message (see [`crate::multiline`]): a screenful of code, and
/// IRC's `draft/multiline` limit, so that a message fits one batch either way.
pub const MAX_MESSAGE_LINES: usize = 100;

/// Shortest user name, in characters.
pub const MIN_NAME_LEN: usize = 1;

/// Longest user name, in characters (and bytes: names are ASCII).
pub const MAX_NAME_LEN: usize = 32;

/// Longest room name, in characters after the `#`.
pub const MAX_ROOM_NAME_LEN: usize = 49;

/// Default longest room topic, in bytes (IRC servers commonly allow 300 to 390).
pub const DEFAULT_MAX_TOPIC_BYTES: usize = 390;
