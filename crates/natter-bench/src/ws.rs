//! WebSocket (RFC 6455) for [`crate::conn::Conn`]: the upgrade to `/ws`, and the framing of
//! lines. natter serves its line protocol there one line per text message, both ways.
//!
//! The framing works on the connection's own buffers rather than through a WebSocket stream
//! type, so it keeps the connection's shape (readiness-driven socket calls, one thread-local
//! read buffer, TLS sans-IO underneath) and allocates nothing per line:
//! - out: the lines the dialect queued are framed into one buffer, written in one go;
//! - in: frames are decoded in place in the read buffer, each message's payload moved up
//!   against the previous one and ended with LF, so the connection splits them like TCP lines.
//!
//! The key and the accept check of the upgrade come from `tungstenite`.

use std::hash::{BuildHasher, Hasher};
use std::io;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;
/// Longest answer to the upgrade request accepted.
const MAX_RESPONSE: usize = 8 * 1024;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The client's side of the HTTP upgrade.
#[derive(Debug)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, which the server's accept value must answer.
    key: String,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self::new()
    }
}

impl Upgrade {
    /// An upgrade with a fresh random key.
    pub fn new() -> Self {
        Self {
            key: tungstenite::handshake::client::generate_key(),
        }
    }

    /// Appends the `GET /ws` upgrade request for `host` (`host:port`). It carries no Origin:
    /// natter refuses cross-origin upgrades from browsers, and accepts clients that send none.
    pub fn request(&self, out: &mut Vec<u8>, host: &str) {
        out.extend_from_slice(b"GET /ws HTTP/1.1\r\nHost: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        );
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
    }

    /// Checks the server's answer at the start of `buf`: `Some(n)` once it is complete and
    /// accepts the upgrade (`n` bytes of head; frames may follow), `None` while incomplete.
    pub fn response(&self, buf: &[u8]) -> io::Result<Option<usize>> {
        let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
            if buf.len() > MAX_RESPONSE {
                return Err(invalid("WebSocket upgrade: answer too long"));
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if status.split(' ').nth(1) != Some("101") {
            return Err(invalid(format!("WebSocket upgrade refused: {status}")));
        }
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return Err(invalid(
                "WebSocket upgrade: no `Upgrade: websocket` in the answer",
            ));
        }
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        if header("sec-websocket-accept") != Some(accept.as_str()) {
            return Err(invalid("WebSocket upgrade: wrong Sec-WebSocket-Accept"));
        }
        Ok(Some(end + 4))
    }
}

/// Where [`Ws::decode`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Decoded payloads end here: complete messages, each ended with LF, then the start of a
    /// fragmented message whose last frame has not arrived.
    pub lines_end: usize,
    /// Where the first incomplete frame starts (the end of the buffer if none).
    pub raw_from: usize,
}

/// One connection's WebSocket state.
#[derive(Debug)]
pub struct Ws {
    /// State of the mask generator.
    rng: u64,
    /// Payload received so far of a fragmented message.
    pub partial: Vec<u8>,
    /// Whether frames ahead continue a fragmented message.
    fragmented: bool,
    /// The server sent Close: nothing more will be read.
    pub closed: bool,
    /// Input is waiting in the connection's buffers that the socket will not signal again
    /// (frames that came with the upgrade's answer).
    pub unread: bool,
    /// Frames not yet written: the queued lines, framed, and any control answers.
    pub wire: Vec<u8>,
}

impl Default for Ws {
    fn default() -> Self {
        Self::new()
    }
}

impl Ws {
    /// A connection just upgraded.
    pub fn new() -> Self {
        // Masks keep page-controlled bytes from looking like anything to proxies between a
        // browser and a server; here they must only be present and vary, not be secret.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            rng: seed | 1,
            partial: Vec::new(),
            fragmented: false,
            closed: false,
            unread: false,
            wire: Vec::new(),
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    /// Appends one masked frame to the wire buffer.
    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let w = &mut self.wire;
        w.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => w.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                w.push(0x80 | 126);
                w.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                w.push(0x80 | 127);
                w.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = self.next_mask();
        let w = &mut self.wire;
        w.extend_from_slice(&mask);
        let start = w.len();
        w.extend_from_slice(payload);
        let body = &mut w[start..];
        let mut chunks = body.chunks_exact_mut(4);
        let m = u32::from_ne_bytes(mask);
        for c in &mut chunks {
            let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
            c.copy_from_slice(&v.to_ne_bytes());
        }
        for (b, k) in chunks.into_remainder().iter_mut().zip(mask) {
            *b ^= k;
        }
    }

    /// Frames each line of `lines` (ended by LF, or CRLF) as one text message. Empty lines
    /// are dropped: on TCP they only wake the server's protocol sniffing, which a WebSocket
    /// never goes through.
    pub fn frame_lines(&mut self, lines: &[u8]) {
        let mut from = 0;
        let ends = memchr::memchr_iter(b'\n', lines).chain(std::iter::once(lines.len()));
        for end in ends {
            let line = &lines[from..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                self.frame(TEXT, line);
            }
            from = end + 1;
            if from >= lines.len() {
                break;
            }
        }
    }

    /// Decodes the complete frames of `buf` from `from` on, in place, writing payloads from
    /// `from` too (so `buf[..from]` may hold the start of a fragmented message). Answers
    /// pings, notes a close (and stops there), and refuses messages over `max` bytes.
    pub fn decode(&mut self, buf: &mut [u8], from: usize, max: usize) -> io::Result<Decoded> {
        // A message's payload plus its LF never outgrows its frame, whose header is at least
        // two bytes: the write position `w` stays at or behind the read position `r`.
        let mut w = from;
        let mut r = from;
        let mut msg_start = if self.fragmented { 0 } else { from };
        while !self.closed {
            let avail = &buf[r..];
            if avail.len() < 2 {
                break;
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b0 & 0x70 != 0 {
                return Err(invalid("WebSocket: reserved bits set"));
            }
            if b1 & 0x80 != 0 {
                return Err(invalid("WebSocket: masked frame from the server"));
            }
            let (head, len) = match b1 & 0x7F {
                126 if avail.len() >= 4 => (4, u64::from(u16::from_be_bytes([avail[2], avail[3]]))),
                127 if avail.len() >= 10 => {
                    let mut n = [0; 8];
                    n.copy_from_slice(&avail[2..10]);
                    (10, u64::from_be_bytes(n))
                }
                126 | 127 => break,
                n => (2, u64::from(n)),
            };
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0F;
            let control = opcode & 0x8 != 0;
            if control && (len > 125 || !fin) {
                return Err(invalid("WebSocket: bad control frame"));
            }
            if !control && (w - msg_start) as u64 + len > max as u64 {
                return Err(invalid(format!("line longer than {max} bytes")));
            }
            let len = len as usize;
            if avail.len() < head + len {
                break;
            }
            let payload = r + head..r + head + len;
            r += head + len;
            match opcode {
                TEXT | BINARY | CONTINUATION => {
                    if (opcode == CONTINUATION) != self.fragmented {
                        return Err(invalid("WebSocket: frames out of sequence"));
                    }
                    if opcode != CONTINUATION {
                        msg_start = w;
                    }
                    buf.copy_within(payload, w);
                    w += len;
                    self.fragmented = !fin;
                    if fin {
                        buf[w] = b'\n';
                        w += 1;
                    }
                }
                PING => {
                    let body = buf[payload].to_vec();
                    self.frame(PONG, &body);
                }
                PONG => {}
                CLOSE => {
                    let code = buf[payload]
                        .get(..2)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    self.frame(CLOSE, &code);
                    self.closed = true;
                }
                _ => return Err(invalid(format!("WebSocket: unknown opcode {opcode}"))),
            }
        }
        Ok(Decoded {
            lines_end: w,
            raw_from: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn server(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// Unmasks the client frames of `wire` into (opcode, payload).
    fn unmask(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while !wire.is_empty() {
            assert_eq!(wire[0] & 0x80, 0x80, "FIN");
            assert_eq!(wire[1] & 0x80, 0x80, "masked");
            let (head, len) = match wire[1] & 0x7F {
                126 => (4, u16::from_be_bytes([wire[2], wire[3]]) as usize),
                127 => unreachable!(),
                n => (2, n as usize),
            };
            let mask = &wire[head..head + 4];
            let body = wire[head + 4..head + 4 + len]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            got.push((wire[0] & 0x0F, body));
            wire = &wire[head + 4 + len..];
        }
        got
    }

    #[test]
    fn lines_become_masked_text_frames() {
        let mut ws = Ws::new();
        let long = vec![b'x'; 300];
        let mut lines = b"\nREGISTER b1\nMESSAGE hi\r\n".to_vec();
        lines.extend_from_slice(&long);
        lines.push(b'\n');
        ws.frame_lines(&lines);
        let got = unmask(&ws.wire);
        assert_eq!(
            got,
            [
                (TEXT, b"REGISTER b1".to_vec()),
                (TEXT, b"MESSAGE hi".to_vec()),
                (TEXT, long)
            ]
        );
    }

    #[test]
    fn frames_decode_in_place_into_lines() {
        let mut ws = Ws::new();
        let mut buf = Vec::new();
        buf.extend(server(TEXT, true, b"OK REGISTER b1"));
        buf.extend(server(PING, true, b"p"));
        buf.extend(server(TEXT, false, b"MESS"));
        buf.extend(server(CONTINUATION, true, b"AGE b2 hi"));
        buf.extend(server(TEXT, true, &[b'y'; 200]));
        buf.extend(server(TEXT, false, b"half"));
        let whole = buf.len();
        buf.extend(&server(TEXT, true, b"cut")[..3]);
        let d = ws.decode(&mut buf, 0, 1024).unwrap();
        let mut want = b"OK REGISTER b1\nMESSAGE b2 hi\n".to_vec();
        want.extend_from_slice(&[b'y'; 200]);
        want.extend_from_slice(b"\nhalf");
        assert_eq!(&buf[..d.lines_end], want.as_slice());
        assert_eq!(d.raw_from, whole);
        assert_eq!(unmask(&ws.wire), [(PONG, b"p".to_vec())]);
        // The fragmented message goes on in the next read, after its start.
        let mut next = b"half".to_vec();
        next.extend(server(CONTINUATION, true, b"!"));
        next.extend(server(CLOSE, true, &[3, 232]));
        next.extend(server(TEXT, true, b"after close"));
        let d = ws.decode(&mut next, 4, 1024).unwrap();
        assert_eq!(&next[..d.lines_end], b"half!\n");
        assert!(ws.closed);
    }

    #[test]
    fn bad_frames_are_refused() {
        for bad in [
            server(TEXT, true, &[b'z'; 300]),
            server(CONTINUATION, true, b"x"),
            server(0x3, true, b"x"),
            vec![0x81, 0x81, 0, 0, 0, 0, b'x'],
        ] {
            let mut b = bad.clone();
            assert!(Ws::new().decode(&mut b, 0, 100).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_upgrade_answer_is_checked() {
        let up = Upgrade::new();
        let mut req = Vec::new();
        up.request(&mut req, "127.0.0.1:8090");
        assert!(req.starts_with(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8090\r\n"));
        let accept = tungstenite::handshake::derive_accept_key(up.key.as_bytes());
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-accept: {accept}\r\n\r\n\x01\x02hi"
        );
        assert_eq!(up.response(&ok.as_bytes()[..20]).unwrap(), None);
        assert_eq!(up.response(ok.as_bytes()).unwrap(), Some(ok.len() - 4));
        let forbidden = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n";
        let e = up.response(forbidden).unwrap_err();
        assert!(e.to_string().contains("403"), "{e}");
        let wrong = ok.replace(&accept, "AAAA");
        assert!(up.response(wrong.as_bytes()).is_err());
    }
}
