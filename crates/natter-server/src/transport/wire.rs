//! How bytes move on a connection: the one thing that differs between plain TCP, TLS and
//! WebSocket. The [driver](super::driver) does everything else the same way over any wire.
//!
//! Every wire is driven by readiness: the driver polls it for readiness, then reads and
//! writes without waiting (`try_read`, `try_write_vectored`), and a wire that can go no
//! further answers `WouldBlock`. So one task serves both directions of a connection and holds
//! no buffers while it waits, whatever the wire. TLS and WebSocket are layers over this same
//! interface: rustls is driven sans-IO between the socket calls ([`super::tls`]), and
//! WebSocket frames are decoded and encoded on the way ([`super::websocket`]).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// A connection's way of moving bytes.
pub trait Wire: Send + 'static {
    /// Ready when input may be there: the socket is readable, or the wire holds input it
    /// decoded already.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads input into `buf` without waiting: `Ok(0)` at its end, `WouldBlock` when there is
    /// nothing now. For WebSocket the input is the messages, each ended with LF.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Ready when the socket takes more output.
    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Takes what it can of `bufs` (whole lines, but for a partly written first one) without
    /// waiting; returns how many of their bytes it took, or `WouldBlock`. A wire that frames
    /// or encrypts may keep what it took until [`Wire::try_flush`].
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Whether the wire holds output it took and has not yet written.
    fn wants_flush(&self) -> bool {
        false
    }
    /// Writes what the wire holds, without waiting; `true` once nothing is left.
    fn try_flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }
    /// Queues the wire's own last words (TLS close_notify, a WebSocket close frame); the
    /// driver flushes them. `going_away`: the server is shutting down.
    fn close(&mut self, _going_away: bool) {}
    /// The peer's address, for logs.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// The socket beneath, for its half-close and the last reads.
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::peer_addr(self)
    }

    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Retries `f` while it is interrupted.
pub fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
