//! The seam between a connection and its protocol: what a session ([`crate::session`] for
//! natter's line protocol, [`crate::irc`] for IRC) gives the [driver](crate::transport), and
//! how a connection ends.
//!
//! A session is synchronous and owns no I/O: lines in, hub calls and outbox pushes out, and
//! a [`Flow`] back. The driver owns the socket, framing, flood control, deadlines and the
//! outbox's drain, the same for every protocol and every wire.

use bytes::Bytes;
use natter_proto::{ByeReason, ServerLine};
use std::borrow::Cow;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// What the connection should do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The session is over (CLOSE, QUIT, a timeout): flush and disconnect.
    Close,
}

/// What a protocol session gives the connection: lines in, flow out, and the lines that end
/// a connection in that protocol's words.
pub trait Handler {
    /// Handles one complete line (without its line ending).
    fn on_line(&mut self, line: &[u8]) -> Flow;
    /// Commands the lines handled since the last call count for beyond one each (the
    /// further lines of multi-line messages), for flood control; taken, so that the next call
    /// counts from zero.
    fn extra_commands(&mut self) -> usize {
        0
    }
    /// Reports a line that was longer than the framer's limit.
    fn on_too_long(&mut self);
    /// Every line read so far has been handled; anything gathered across lines goes out now.
    fn end_of_input(&mut self) {}
    /// When the session next needs [`Handler::on_deadline`], if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Called at the deadline (pings, registration timeouts).
    fn on_deadline(&mut self) -> Flow;
    /// Leaves the hub; called once when the connection ends.
    fn leave(&mut self, end: End);
    /// The last line for a client the server disconnects, in this protocol's words.
    fn goodbye(&self, reason: ByeReason) -> Bytes;
    /// The longest line the framer accepts.
    fn max_line(&self) -> usize;
    /// The client's address, for the connection's log lines.
    fn peer(&self) -> std::net::SocketAddr;
    /// The connection's identity.
    fn id(&self) -> crate::client_id::ClientId;
    /// Whether the session waits for something (a cluster's answer about a name) before it
    /// may take another line; the connection then holds further input back.
    fn waiting(&self) -> bool {
        false
    }
    /// Whether the connection must hold further input back while the session waits; a
    /// session may wait without that (answers to messages being kept, while more messages
    /// are relayed).
    fn blocks_input(&self) -> bool {
        self.waiting()
    }
    /// Polls for it (bounded in time) and, once it came, finishes what the line began.
    fn poll_resume(&mut self, _cx: &mut Context<'_>) -> Poll<Flow> {
        Poll::Ready(Flow::Continue)
    }
    /// Whether a long answer (a list of rooms, users or members) is still being written;
    /// the connection takes no other line until it is done, so answers stay in order.
    fn answering(&self) -> bool {
        false
    }
    /// Queues the next part of that answer. The connection calls it while the client's
    /// backlog is under its bound, so an answer is made as the client takes it, never whole.
    fn answer_more(&mut self) {}
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed the connection (or its half of it).
    PeerClosed,
    /// The session ended it (CLOSE, QUIT, a timeout, too many wrong passwords).
    Close,
    /// The server is shutting down.
    Shutdown,
    /// The client did not take its output: its backlog passed the hard bound, or stayed
    /// over its bound without any progress, or for too long.
    SlowConsumer,
    /// Output waited and the client took none of it for the write-stall time.
    Stalled,
    /// The client kept sending faster than flood control allows, beyond the grace.
    Flood,
    /// The connection failed (a reset, a TLS or WebSocket protocol error).
    Error,
}

impl End {
    /// What the others are told, where a departure carries a reason (IRC's QUIT).
    pub fn leave_reason(self) -> &'static str {
        match self {
            End::PeerClosed | End::Error => "connection closed",
            End::Close => "quit",
            End::Shutdown => "server shutting down",
            End::SlowConsumer => "too slow to read",
            End::Stalled => "stopped reading",
            End::Flood => "flooding",
        }
    }

    /// The last line the server sends for this ending, if it sends one (a session that
    /// closes itself has queued its own).
    pub fn goodbye(self) -> Option<ByeReason> {
        match self {
            End::Shutdown => Some(ByeReason::Shutdown),
            End::Flood => Some(ByeReason::Flood),
            End::SlowConsumer => Some(ByeReason::SlowConsumer),
            End::PeerClosed | End::Close | End::Stalled | End::Error => None,
        }
    }
}

/// A native `BYE` line for `reason`, with its default text.
pub fn bye(reason: ByeReason) -> Bytes {
    ServerLine::Bye {
        reason,
        text: Cow::Borrowed(reason.default_text()),
    }
    .to_bytes()
}
