//! One client connection, built to read millions of lines a second on two cores.
//!
//! - Reads go into one big buffer per worker thread (a thread-local), not one per connection,
//!   so twenty thousand idle connections hold no read buffers; a connection keeps only the
//!   unfinished tail of its last line.
//! - Lines are split with `memchr` and handed on as borrowed slices: nothing is allocated
//!   per line.
//! - Writes are batched: callers queue any number of lines, and one `write` sends them.
//! - The socket is driven by readiness (`readable`/`writable`, then `try_read`/`try_write`), so
//!   one task can read and write the same connection without splitting it.
//! - TLS keeps that shape: rustls's connection is sans-IO, so it sits between the same
//!   readiness-driven socket calls and the same buffers. Plain TCP pays one branch for it.
//! - So does WebSocket ([`crate::ws`]), over either: queued lines are framed at flush time,
//!   and frames are decoded in the same read buffer into the same LF-ended lines.

use crate::dialect::{AccountStep, Control, Dialect};
use crate::transport::{Tls, Transport};
use crate::ws::{self, Ws};
use rustls::ClientConnection;
use std::cell::RefCell;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Size of each worker thread's read buffer.
const READ_BUF: usize = 256 * 1024;
/// Longest line accepted (natter's longest server line, with room for IRC prefixes).
const MAX_LINE: usize = 8 * 1024;
/// Capacity above which an emptied buffer is released, so idle connections stay small.
const KEEP: usize = 1024;

thread_local! {
    // Room before the read for what a connection keeps between reads: an unfinished line, or
    // over WebSocket an unfinished message and an unfinished frame (at most a control frame
    // or the rest of that message).
    static SCRATCH: RefCell<Vec<u8>> =
        RefCell::new(vec![0; READ_BUF + MAX_LINE + 2 * ws::MAX_HEADER + 125]);
}

/// Complete lines in a read, without their line endings.
#[derive(Debug)]
pub struct Lines<'a> {
    /// What is left, always ending in LF (or empty).
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    /// The lines of `buf`, which must end with a LF (or be empty).
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let i = memchr::memchr(b'\n', self.rest)?;
        let line = &self.rest[..i];
        self.rest = &self.rest[i + 1..];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Bytes arrived (maybe no complete line yet).
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The server closed the connection.
    Eof,
}

/// A client connection: socket, unfinished input line, and queued output.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    stream: TcpStream,
    /// The TLS session over the socket, if any (boxed: it is large, and plain TCP needs none).
    tls: Option<Box<ClientConnection>>,
    /// Whether TLS holds decrypted bytes not read yet: the socket will not signal them.
    tls_buffered: bool,
    /// The WebSocket over the stream, if any (boxed, as TLS).
    ws: Option<Box<Ws>>,
    /// The start of a line whose LF has not arrived yet (over WebSocket: of a frame).
    tail: Vec<u8>,
    /// Output queued and not yet written (over WebSocket: not yet framed).
    out: Vec<u8>,
    /// Bytes at the front of `out` (over WebSocket: of the frames) already written.
    written: usize,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn tls_error(e: rustls::Error) -> io::Error {
    invalid(format!("TLS: {e}"))
}

/// The socket as `std::io` for rustls, never waiting: `WouldBlock` means wait for readiness.
struct NoWait<'a>(&'a TcpStream);

impl io::Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `out[*written..]` to the socket as it takes it; `true` once all of it is written.
fn flush_plain(stream: &TcpStream, out: &[u8], written: &mut usize) -> io::Result<bool> {
    while *written < out.len() {
        match stream.try_write(&out[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Encrypts `out[*written..]` as rustls's buffer allows and writes the records to the socket
/// as it takes them; `true` once all of it (and anything else TLS had queued) is written.
fn flush_tls(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    out: &[u8],
    written: &mut usize,
) -> io::Result<bool> {
    loop {
        let mut took = 0;
        if *written < out.len() {
            took = tls.writer().write(&out[*written..])?;
            *written += took;
        }
        if !tls.wants_write() {
            if *written == out.len() {
                return Ok(true);
            }
            if took == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            continue;
        }
        match tls.write_tls(&mut NoWait(stream)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads decrypted bytes into `buf`, like `try_read`: `Ok(0)` at the end of the stream,
/// `WouldBlock` when neither TLS nor the socket has anything. The flag says whether TLS still
/// holds decrypted bytes afterwards.
fn read_tls(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    buf: &mut [u8],
) -> io::Result<(usize, bool)> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => {
                let more = tls.process_new_packets().map_err(tls_error)?;
                return Ok((n, more.plaintext_bytes_to_read() > 0));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The server closed the socket without close_notify: an end all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((0, false)),
            Err(e) => return Err(e),
        }
        // After an end of stream the reader answers above, so this loop ends.
        tls.read_tls(&mut NoWait(stream))?;
        let processed = tls.process_new_packets();
        // Alerts, and answers to the server's post-handshake messages; what the socket does
        // not take now goes with the next flush.
        if tls.wants_write() {
            let _ = tls.write_tls(&mut NoWait(stream));
        }
        processed.map_err(tls_error)?;
    }
}

/// Empties `buf`, releasing its memory if it grew large, so idle connections stay small.
fn release(buf: &mut Vec<u8>) {
    if buf.capacity() > 64 * KEEP {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

/// Replaces what `buf` keeps between reads with `rest`, releasing a large allocation.
fn keep(buf: &mut Vec<u8>, rest: &[u8]) {
    if buf.capacity() > KEEP && rest.len() <= KEEP {
        *buf = Vec::new();
    }
    buf.clear();
    buf.extend_from_slice(rest);
}

impl Conn {
    /// Connects to `addr` over `transport`, and over TLS when `tls` is given.
    pub async fn connect(
        transport: Transport,
        addr: SocketAddr,
        tls: Option<&Tls>,
    ) -> io::Result<Self> {
        let mut conn = Self {
            stream: transport.connect(addr).await?,
            tls: None,
            tls_buffered: false,
            ws: None,
            tail: Vec::new(),
            out: Vec::new(),
            written: 0,
        };
        if let Some(t) = tls {
            let session =
                ClientConnection::new(t.config.clone(), t.name.clone()).map_err(tls_error)?;
            conn.tls = Some(Box::new(session));
            conn.tls_handshake().await?;
        }
        if transport == Transport::Ws {
            conn.ws_upgrade(&addr.to_string()).await?;
        }
        Ok(conn)
    }

    /// Upgrades the connection to a WebSocket at `/ws` on `host`.
    async fn ws_upgrade(&mut self, host: &str) -> io::Result<()> {
        let up = ws::Upgrade::new();
        up.request(&mut self.out, host);
        self.flush().await?;
        let mut answer = Vec::new();
        let mut chunk = [0; 2048];
        let head = loop {
            match self.read_into(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the WebSocket upgrade",
                    ));
                }
                Ok(n) => {
                    answer.extend_from_slice(&chunk[..n]);
                    if let Some(head) = up.response(&answer)? {
                        break head;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        let mut ws = Ws::new();
        // The server's first frames may have come with its answer.
        self.tail = answer.split_off(head);
        ws.unread = !self.tail.is_empty();
        self.ws = Some(Box::new(ws));
        Ok(())
    }

    /// Drives the TLS handshake to its end, and sends its last flight.
    async fn tls_handshake(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        let stream = &self.stream;
        loop {
            if tls.wants_write() {
                match tls.write_tls(&mut NoWait(stream)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if !tls.is_handshaking() {
                break;
            }
            match tls.read_tls(&mut NoWait(stream)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ));
                }
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // Tell the server why (a certificate we do not trust), then give up.
                        let _ = tls.write_tls(&mut NoWait(stream));
                        return Err(tls_error(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The server's first records may have come with its last handshake flight.
        self.tls_buffered = true;
        Ok(())
    }

    /// The output buffer: append whole lines to it, then [`Conn::try_flush`].
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len() + self.ws.as_ref().map_or(0, |w| w.wire.len()) - self.written
    }

    /// Writes as much queued output as the socket takes now; `true` once all is written.
    pub fn try_flush(&mut self) -> io::Result<bool> {
        let wire = match self.ws.as_deref_mut() {
            None => &mut self.out,
            Some(ws) => {
                if !self.out.is_empty() {
                    ws.frame_lines(&self.out);
                    release(&mut self.out);
                }
                &mut ws.wire
            }
        };
        let done = match self.tls.as_deref_mut() {
            None => flush_plain(&self.stream, wire, &mut self.written)?,
            Some(tls) => flush_tls(tls, &self.stream, wire, &mut self.written)?,
        };
        if !done {
            return Ok(false);
        }
        self.written = 0;
        release(wire);
        Ok(true)
    }

    /// Writes all queued output, waiting for the socket as needed.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.try_flush()? {
            self.stream.writable().await?;
        }
        Ok(())
    }

    /// Waits until the socket may be read, or returns at once if TLS or the WebSocket holds
    /// input to read.
    pub async fn readable(&self) -> io::Result<()> {
        if self.tls_buffered || self.ws.as_ref().is_some_and(|w| w.unread || w.closed) {
            return Ok(());
        }
        self.stream.readable().await
    }

    /// Waits until the socket may be written.
    pub async fn writable(&self) -> io::Result<()> {
        self.stream.writable().await
    }

    /// Reads once from the socket (or TLS) into `into`, like `try_read`.
    fn read_into(&mut self, into: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => self.stream.try_read(into),
            Some(tls) => {
                let r = read_tls(tls, &self.stream, into);
                self.tls_buffered = matches!(r, Ok((_, true)));
                r.map(|(n, _)| n)
            }
        }
    }

    /// Reads once (without waiting) and hands the complete lines to `on_lines`.
    pub fn read_chunk(&mut self, on_lines: impl FnOnce(Lines<'_>)) -> io::Result<Read> {
        if self.ws.is_some() {
            return self.read_ws_chunk(on_lines);
        }
        SCRATCH.with_borrow_mut(|buf| {
            let t = self.tail.len();
            buf[..t].copy_from_slice(&self.tail);
            let n = match self.read_into(&mut buf[t..t + READ_BUF]) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Read::Data(0)),
                Err(e) => return Err(e),
            };
            let data = &buf[..t + n];
            let keep_from = match memchr::memrchr(b'\n', &data[t..]) {
                Some(i) => {
                    on_lines(Lines::new(&data[..=t + i]));
                    t + i + 1
                }
                None => 0,
            };
            let rest = &data[keep_from..];
            if rest.len() > MAX_LINE {
                return Err(invalid(format!("line longer than {MAX_LINE} bytes")));
            }
            keep(&mut self.tail, rest);
            Ok(Read::Data(n))
        })
    }

    /// [`Conn::read_chunk`] over WebSocket: the read buffer starts with the unfinished
    /// message (decoded) and the unfinished frame (not yet), then what the socket gives.
    fn read_ws_chunk(&mut self, on_lines: impl FnOnce(Lines<'_>)) -> io::Result<Read> {
        SCRATCH.with_borrow_mut(|buf| {
            let ws = self.ws.as_deref_mut().expect("a WebSocket");
            if ws.closed {
                return Ok(Read::Eof);
            }
            let unread = std::mem::take(&mut ws.unread);
            let p = ws.partial.len();
            buf[..p].copy_from_slice(&ws.partial);
            let t = p + self.tail.len();
            buf[p..t].copy_from_slice(&self.tail);
            let n = match self.read_into(&mut buf[t..t + READ_BUF]) {
                Ok(0) => return Ok(Read::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && unread => 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Read::Data(0)),
                Err(e) => return Err(e),
            };
            let ws = self.ws.as_deref_mut().expect("a WebSocket");
            let data = &mut buf[..t + n];
            let d = ws.decode(data, p, MAX_LINE)?;
            let partial_from = match memchr::memrchr(b'\n', &data[..d.lines_end]) {
                Some(i) => {
                    on_lines(Lines::new(&data[..=i]));
                    i + 1
                }
                None => 0,
            };
            keep(&mut ws.partial, &data[partial_from..d.lines_end]);
            keep(&mut self.tail, &data[d.raw_from..]);
            Ok(Read::Data(n))
        })
    }

    /// Registers `name` (logging into its account, or making it one, if asked; and joins
    /// `room` if given), answering PINGs, until done or `deadline`.
    /// Lines that arrive meanwhile (presence, MOTD, other clients' messages) are dropped.
    pub async fn handshake(
        &mut self,
        dialect: Dialect,
        name: &str,
        room: Option<&str>,
        account: Option<(AccountStep, &str)>,
        deadline: Instant,
    ) -> io::Result<()> {
        match account {
            Some((AccountStep::Login, password)) => dialect.login(self.out(), name, password),
            _ => dialect.register(self.out(), name),
        }
        self.flush().await?;
        self.wait_for(dialect, Control::Registered, deadline)
            .await?;
        if let Some((AccountStep::Create, password)) = account {
            dialect.create_account(self.out(), password);
            self.flush().await?;
            self.wait_for(dialect, Control::Account, deadline).await?;
        }
        if let Some(room) = room {
            dialect.join(self.out(), room);
            self.flush().await?;
            self.wait_for(dialect, Control::Joined, deadline).await?;
        }
        Ok(())
    }

    /// Reads until a line classified as `want`, answering PINGs; an error line fails.
    async fn wait_for(
        &mut self,
        dialect: Dialect,
        want: Control<'static>,
        deadline: Instant,
    ) -> io::Result<()> {
        let mut reply = Vec::new();
        loop {
            let mut outcome: Option<Result<(), String>> = None;
            let mut answers = Vec::new();
            let r = self.read_chunk(|lines| {
                for line in lines {
                    if outcome.is_some() {
                        continue;
                    }
                    match dialect.classify(line, &mut reply) {
                        c if c == want => outcome = Some(Ok(())),
                        Control::Error | Control::Closing => {
                            outcome = Some(Err(String::from_utf8_lossy(line).into_owned()))
                        }
                        Control::Reply(r) => answers.extend_from_slice(r),
                        _ => {}
                    }
                }
            })?;
            if !answers.is_empty() {
                self.out().extend_from_slice(&answers);
                self.flush().await?;
            }
            match outcome {
                Some(Ok(())) => return Ok(()),
                Some(Err(line)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("refused: {line}"),
                    ));
                }
                None => {}
            }
            match r {
                Read::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                Read::Data(_) => {}
                Read::WouldBlock => match timeout_at(deadline, self.readable()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no {want:?} before the deadline"),
                        ));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_lf_and_crlf() {
        let got: Vec<&[u8]> = Lines::new(b"a\r\nbc\n\nd\n").collect();
        assert_eq!(got, [&b"a"[..], b"bc", b"", b"d"]);
    }
}
