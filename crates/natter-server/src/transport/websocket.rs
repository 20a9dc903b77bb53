//! WebSocket (RFC 6455) as a wire: natter's line protocol one line per text message, both
//! ways, over plain TCP or TLS.
//!
//! The framing is done here, on the connection's own buffers, rather than by a WebSocket
//! library that owns the socket: that keeps a WebSocket client inside the one readiness-driven
//! [driver](super::driver) with everyone else, under the same rules, and lets an idle browser
//! cost what an idle `nc` client costs.
//!
//! - In: frames are decoded in place, in the read buffer, as they arrive (a frame need not be
//!   complete): each message's payload is unmasked and moved down over the frame headers, and
//!   the end of a message becomes a LF. The driver's line framer then sees a byte stream like
//!   TCP's, so a message is a line with the same limit and the same `LINE_TOO_LONG`, and a
//!   long message costs no more memory than a long line. Pings are answered, a close is
//!   answered and ends the input.
//! - Out: each line the driver hands over becomes one text frame, written into a buffer that
//!   the wire beneath takes as the socket allows.

use super::wire::Wire;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::task::{Context, Poll};

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Status codes of a close frame.
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;

/// Longest control frame payload (RFC 6455, 5.5).
const MAX_CONTROL: usize = 125;
/// Payload framed per call before the frames are handed on, so one call's copy stays small.
const FRAME_BUDGET: usize = 16 * 1024;
/// Capacity the output buffer keeps once written; more is given back.
const KEEP_OUT: usize = 1024;

fn protocol_error(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Where the decoder is within the stream of frames.
#[derive(Debug, Default)]
struct Decoder {
    /// The header being read, while it is incomplete.
    head: [u8; 14],
    /// Bytes of `head` read so far; 0 between frames.
    head_len: u8,
    /// Payload bytes of the current frame still to come; 0 between frames.
    remaining: u64,
    /// The current frame's mask.
    mask: [u8; 4],
    /// Where the next payload byte falls in the mask.
    mask_at: u8,
    /// The current frame's opcode and FIN bit, once its header is complete.
    frame: Option<(u8, bool)>,
    /// A data message has begun whose last frame has not come yet.
    in_message: bool,
    /// The payload of a control frame, gathered until it is complete.
    control: Vec<u8>,
}

impl Decoder {
    /// The header's length once its first two bytes are known.
    fn head_size(&self) -> usize {
        let masked = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        match self.head[1] & 0x7F {
            126 => 4 + masked,
            127 => 10 + masked,
            _ => 2 + masked,
        }
    }
}

/// What decoding a read found besides payload.
#[derive(Debug, Default, PartialEq, Eq)]
struct Control {
    /// Frames to send back at once (pongs).
    reply: Vec<u8>,
    /// The peer closed the WebSocket, with this status code (empty if it gave none); the
    /// answer waits until the output before it is written.
    closed: Option<Vec<u8>>,
}

impl Decoder {
    /// Decodes `buf[1..]` in place into payload bytes at `buf[0..n]`, each complete message
    /// ended with LF; returns `n`. `buf[0]` is room for the LF that may end a message whose
    /// header came in an earlier read: every other LF replaces six bytes of header or more.
    fn decode(&mut self, buf: &mut [u8], ctl: &mut Control) -> io::Result<usize> {
        let mut r = 1;
        let mut w = 0;
        while r < buf.len() && ctl.closed.is_none() {
            let Some((opcode, _)) = self.frame else {
                // Gather the header.
                let need = if self.head_len < 2 {
                    2
                } else {
                    self.head_size()
                };
                let take = (need - usize::from(self.head_len)).min(buf.len() - r);
                let at = usize::from(self.head_len);
                self.head[at..at + take].copy_from_slice(&buf[r..r + take]);
                self.head_len += take as u8;
                r += take;
                if usize::from(self.head_len) < need || (self.head_len == 2 && self.head_size() > 2)
                {
                    continue;
                }
                self.start_frame()?;
                if self.remaining == 0 {
                    self.end_frame(buf, &mut w, ctl)?;
                }
                continue;
            };
            let take = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(buf.len() - r);
            let payload = &mut buf[r..r + take];
            for b in payload.iter_mut() {
                *b ^= self.mask[usize::from(self.mask_at)];
                self.mask_at = (self.mask_at + 1) & 3;
            }
            if opcode & 0x8 != 0 {
                self.control.extend_from_slice(&buf[r..r + take]);
            } else {
                buf.copy_within(r..r + take, w);
                w += take;
            }
            r += take;
            self.remaining -= take as u64;
            if self.remaining == 0 {
                self.end_frame(buf, &mut w, ctl)?;
            }
        }
        Ok(w)
    }

    /// Checks a complete header and sets up its frame.
    fn start_frame(&mut self) -> io::Result<()> {
        let (b0, b1) = (self.head[0], self.head[1]);
        if b0 & 0x70 != 0 {
            return Err(protocol_error("reserved bits set"));
        }
        if b1 & 0x80 == 0 {
            return Err(protocol_error("unmasked frame from a client"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let (len, mask_at) = match b1 & 0x7F {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut n = [0; 8];
                n.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        match opcode {
            TEXT | BINARY if self.in_message => {
                return Err(protocol_error("a new message inside a fragmented one"));
            }
            CONTINUATION if !self.in_message => {
                return Err(protocol_error("a continuation outside a message"));
            }
            TEXT | BINARY | CONTINUATION => self.in_message = !fin,
            CLOSE | PING | PONG => {
                if !fin || len > MAX_CONTROL as u64 {
                    return Err(protocol_error("a fragmented or long control frame"));
                }
            }
            _ => return Err(protocol_error("unknown opcode")),
        }
        self.mask.copy_from_slice(&self.head[mask_at..mask_at + 4]);
        self.mask_at = 0;
        self.remaining = len;
        self.frame = Some((opcode, fin));
        self.head_len = 0;
        Ok(())
    }

    /// A frame's payload is all in: ends its message, or acts on the control frame.
    fn end_frame(&mut self, buf: &mut [u8], w: &mut usize, ctl: &mut Control) -> io::Result<()> {
        let Some((opcode, fin)) = self.frame.take() else {
            return Ok(());
        };
        match opcode {
            TEXT | BINARY | CONTINUATION => {
                if fin {
                    buf[*w] = b'\n';
                    *w += 1;
                }
            }
            PING => {
                let body = std::mem::take(&mut self.control);
                frame(&mut ctl.reply, PONG, &body);
            }
            PONG => self.control = Vec::new(),
            CLOSE => {
                let body = std::mem::take(&mut self.control);
                // The peer's status code, to echo as RFC 6455 5.5.1 suggests.
                ctl.closed = Some(body.get(..2).unwrap_or(&[]).to_vec());
            }
            _ => unreachable!("checked in start_frame"),
        }
        Ok(())
    }
}

/// Appends one unmasked frame (a server's) to `out`.
fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Frames the lines of `bytes` (each ended by LF) into `out`, one text message each, as far
/// as whole lines go within `budget` bytes of payload (at least one line); returns how many
/// bytes of `bytes` were framed.
fn frame_lines(out: &mut Vec<u8>, bytes: &[u8], budget: usize) -> usize {
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        if from > 0 && end - from > budget {
            break;
        }
        let line = &bytes[from..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            frame(out, TEXT, line);
        }
        from = end + 1;
        if from >= budget {
            break;
        }
    }
    from
}

/// A WebSocket over the wire `W` (plain TCP or TLS).
#[derive(Debug)]
pub struct WebSocket<W> {
    /// The wire beneath.
    inner: W,
    /// Decoding state.
    decoder: Decoder,
    /// Frames not yet taken by `inner`: framed lines and control answers.
    out: Vec<u8>,
    /// How much of `out` `inner` took already.
    written: usize,
    /// Bytes that came with the upgrade request, decoded before anything is read.
    early: Option<Bytes>,
    /// The peer's close was read (or the input failed): the input has ended.
    ended: bool,
    /// The status code the peer closed with, for our answer.
    peer_code: Option<Vec<u8>>,
    /// A close frame has been queued; nothing follows it.
    closing: bool,
}

impl<W: Wire> WebSocket<W> {
    /// A WebSocket over `inner`, just upgraded; `early` holds what the peer sent after its
    /// upgrade request, read already.
    pub fn new(inner: W, early: Bytes) -> Self {
        Self {
            inner,
            decoder: Decoder::default(),
            out: Vec::new(),
            written: 0,
            early: (!early.is_empty()).then_some(early),
            ended: false,
            peer_code: None,
            closing: false,
        }
    }

    /// Writes what `out` holds; `true` once it is all written.
    fn push_out(&mut self) -> io::Result<bool> {
        while self.written < self.out.len() {
            let n = self
                .inner
                .try_write_vectored(&[IoSlice::new(&self.out[self.written..])])?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        self.written = 0;
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Ok(true)
    }

    fn would_block<T>(r: io::Result<T>) -> io::Result<Option<T>> {
        match r {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<W: Wire> Wire for WebSocket<W> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.early.is_some() || self.ended {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() < 2 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        loop {
            if self.ended {
                return Ok(0);
            }
            let n = match self.early.take() {
                Some(mut early) => {
                    let n = early.len().min(buf.len() - 1);
                    buf[1..=n].copy_from_slice(&early[..n]);
                    if n < early.len() {
                        self.early = Some(early.split_off(n));
                    }
                    n
                }
                None => match self.inner.try_read(&mut buf[1..]) {
                    Ok(0) => {
                        self.ended = true;
                        return Ok(0);
                    }
                    Ok(n) => n,
                    Err(e) => return Err(e),
                },
            };
            let mut ctl = Control::default();
            let decoded = self.decoder.decode(&mut buf[..=n], &mut ctl);
            if !ctl.reply.is_empty() && !self.closing {
                self.out.extend_from_slice(&ctl.reply);
                // Best effort now; the driver flushes the rest.
                Self::would_block(self.push_out())?;
            }
            let closed = ctl.closed.is_some();
            if let Some(code) = ctl.closed {
                self.peer_code = Some(code);
                self.ended = true;
            }
            match decoded {
                Ok(0) if !closed => continue,
                Ok(w) => return Ok(w),
                Err(e) => {
                    if !self.closing {
                        let code = PROTOCOL_ERROR.to_be_bytes();
                        frame(&mut self.out, CLOSE, &code);
                        self.closing = true;
                        let _ = Self::would_block(self.push_out());
                    }
                    return Err(e);
                }
            }
        }
    }

    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_write_ready(cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.push_out()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.closing {
            // Nothing may follow a close frame; the lines are dropped as written.
            return Ok(bufs.iter().map(|b| b.len()).sum());
        }
        let mut took = 0;
        for b in bufs {
            let budget = FRAME_BUDGET.saturating_sub(took);
            if budget == 0 {
                break;
            }
            let n = frame_lines(&mut self.out, b, budget);
            took += n;
            if n < b.len() {
                break;
            }
        }
        Self::would_block(self.push_out())?;
        Ok(took)
    }

    fn wants_flush(&self) -> bool {
        self.written < self.out.len() || self.inner.wants_flush()
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        match Self::would_block(self.push_out())? {
            Some(true) => self.inner.try_flush(),
            _ => Ok(false),
        }
    }

    fn close(&mut self, going_away: bool) {
        if !self.closing {
            let code = match self.peer_code.take() {
                Some(code) => code,
                None if going_away => GOING_AWAY.to_be_bytes().to_vec(),
                None => NORMAL.to_be_bytes().to_vec(),
            };
            frame(&mut self.out, CLOSE, &code);
            self.closing = true;
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    fn tcp(&self) -> &tokio::net::TcpStream {
        self.inner.tcp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame (masked).
    fn client(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    /// Decodes `wire` fed in pieces of `step` bytes; returns the payload stream and the
    /// control answers.
    fn decode_in_steps(wire: &[u8], step: usize) -> io::Result<(Vec<u8>, Control)> {
        let mut d = Decoder::default();
        let mut ctl = Control::default();
        let mut got = Vec::new();
        for piece in wire.chunks(step) {
            let mut buf = vec![0];
            buf.extend_from_slice(piece);
            let n = d.decode(&mut buf, &mut ctl)?;
            got.extend_from_slice(&buf[..n]);
            if ctl.closed.is_some() {
                break;
            }
        }
        Ok((got, ctl))
    }

    #[test]
    fn messages_become_lines_however_the_input_is_split() {
        let mut wire = Vec::new();
        wire.extend(client(TEXT, true, b"REGISTER ann"));
        wire.extend(client(PING, true, b"p1"));
        wire.extend(client(TEXT, false, b"MESS"));
        wire.extend(client(PING, true, b""));
        wire.extend(client(CONTINUATION, true, b"AGE hi"));
        wire.extend(client(TEXT, true, &[b'y'; 300]));
        wire.extend(client(BINARY, true, &[b'z'; 70_000]));
        wire.extend(client(TEXT, true, b""));
        let mut want = b"REGISTER ann\nMESSAGE hi\n".to_vec();
        want.extend_from_slice(&[b'y'; 300]);
        want.push(b'\n');
        want.extend_from_slice(&[b'z'; 70_000]);
        want.extend_from_slice(b"\n\n");
        let mut pongs = Vec::new();
        frame(&mut pongs, PONG, b"p1");
        frame(&mut pongs, PONG, b"");
        for step in [1, 2, 3, 5, 7, 13, 64, 1000, wire.len()] {
            let (got, ctl) = decode_in_steps(&wire, step).unwrap();
            assert_eq!(got, want, "step {step}");
            assert_eq!(ctl.reply, pongs, "step {step}");
            assert!(ctl.closed.is_none());
        }
    }

    #[test]
    fn a_close_is_answered_and_ends_the_input() {
        let mut wire = client(TEXT, true, b"bye");
        wire.extend(client(CLOSE, true, &NORMAL.to_be_bytes()));
        wire.extend(client(TEXT, true, b"after"));
        for step in [1, 4, wire.len()] {
            let (got, ctl) = decode_in_steps(&wire, step).unwrap();
            assert_eq!(got, b"bye\n");
            assert_eq!(ctl.closed, Some(NORMAL.to_be_bytes().to_vec()));
            assert!(
                ctl.reply.is_empty(),
                "the answer waits for the output before it"
            );
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let unmasked = vec![0x81, 0x01, b'x'];
        let long_ping = client(PING, true, &[0; 126]);
        let mut fragmented_ping = client(PING, true, b"x");
        fragmented_ping[0] &= 0x7F;
        let stray = client(CONTINUATION, true, b"x");
        let mut nested = client(TEXT, false, b"a");
        nested.extend(client(TEXT, true, b"b"));
        let mut reserved = client(TEXT, true, b"x");
        reserved[0] |= 0x40;
        let unknown = client(0x3, true, b"x");
        for bad in [
            unmasked,
            long_ping,
            fragmented_ping,
            stray,
            nested,
            reserved,
            unknown,
        ] {
            assert!(decode_in_steps(&bad, 1).is_err(), "{bad:?}");
            assert!(decode_in_steps(&bad, bad.len()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_are_framed_one_message_each_within_the_budget() {
        let mut out = Vec::new();
        let lines = b"OK REGISTER ann\nMESSAGE bob hi\r\n\nONLINE cy\n";
        assert_eq!(frame_lines(&mut out, lines, 1 << 20), lines.len());
        let mut want = Vec::new();
        frame(&mut want, TEXT, b"OK REGISTER ann");
        frame(&mut want, TEXT, b"MESSAGE bob hi");
        frame(&mut want, TEXT, b"ONLINE cy");
        assert_eq!(out, want);
        // A budget stops at a line's end, but always takes one line.
        out.clear();
        assert_eq!(frame_lines(&mut out, lines, 3), 16);
        out.clear();
        assert_eq!(frame_lines(&mut out, lines, 20), 32);
        let long = [b'x'; 70_000];
        let mut with_lf = long.to_vec();
        with_lf.push(b'\n');
        out.clear();
        assert_eq!(frame_lines(&mut out, &with_lf, 10), with_lf.len());
        assert_eq!(out[1], 127);
    }
}
