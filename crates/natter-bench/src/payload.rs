//! The text every benchmark message carries: who sent it, its sequence number and when.
//!
//! A payload is `~nb <sender> <seq> <sent_ns>` followed by optional padding to reach a chosen
//! size. Every field is plain ASCII, so it is valid natter text and a valid IRC trailing
//! parameter. Receivers find the marker anywhere in a line, so the same decoder works for
//! `MESSAGE <from> <text>`, `SAY <room> <from> <text>`, `DM <from> <text>` and
//! `:nick!user@host PRIVMSG #chan :<text>`.

/// The marker that starts every payload.
pub const MARKER: &[u8] = b"~nb ";

/// Byte used to pad payloads up to the requested size.
const PAD: u8 = b'.';

/// What a payload says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending client in the run.
    pub sender: u32,
    /// The sender's sequence number, from 0, without gaps.
    pub seq: u64,
    /// When it was written to the socket, in nanoseconds since the run's epoch.
    pub sent_ns: u64,
}

/// Appends the payload of `stamp` to `out`, padded with dots to at least `size` bytes.
pub fn encode(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    out.extend_from_slice(MARKER);
    push_u64(out, u64::from(stamp.sender));
    out.push(b' ');
    push_u64(out, stamp.seq);
    out.push(b' ');
    push_u64(out, stamp.sent_ns);
    let len = out.len() - start;
    if len < size {
        out.push(b' ');
        out.resize(start + size.max(len + 2), PAD);
    }
}

/// Finds and decodes the payload in a received line; `None` if it holds none (or a damaged one).
pub fn decode(line: &[u8]) -> Option<Stamp> {
    // A search for the marker's first byte: most lines without a payload (presence, answers)
    // are a few dozen bytes with no `~` at all, where a substring searcher's set-up would
    // cost more than the scan.
    let at = memchr::memchr_iter(MARKER[0], line).find(|&i| line[i..].starts_with(MARKER))?;
    let mut rest = &line[at + MARKER.len()..];
    let sender = u32::try_from(take_u64(&mut rest)?).ok()?;
    let seq = take_u64(&mut rest)?;
    let sent_ns = take_u64(&mut rest)?;
    Some(Stamp {
        sender,
        seq,
        sent_ns,
    })
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses a decimal number and the single space after it (if any).
fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in rest.iter() {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    *rest = &rest[n..];
    if let [b' ', tail @ ..] = *rest {
        *rest = tail;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_natter_and_irc_lines() {
        let s = Stamp {
            sender: 7,
            seq: 123_456,
            sent_ns: 98_765_432_100,
        };
        let mut p = Vec::new();
        encode(&mut p, s, 0);
        assert_eq!(p, b"~nb 7 123456 98765432100");
        for prefix in [
            &b"MESSAGE b0a "[..],
            b"SAY #bench b0a ",
            b"DM b0a ",
            // A `~` before the marker is not the marker.
            b"MESSAGE ~b0a~n ",
            b":b0a!b0a@127.0.0.1 PRIVMSG #bench :",
        ] {
            let line = [prefix, &p].concat();
            assert_eq!(decode(&line), Some(s));
        }
    }

    #[test]
    fn padding_reaches_the_size_and_still_decodes() {
        let s = Stamp {
            sender: 0,
            seq: 0,
            sent_ns: 5,
        };
        let mut p = b"MESSAGE x ".to_vec();
        encode(&mut p, s, 100);
        assert_eq!(p.len(), 10 + 100);
        assert_eq!(decode(&p), Some(s));
        assert!(natter_proto::text::validate(std::str::from_utf8(&p[10..]).unwrap()).is_ok());
    }

    #[test]
    fn lines_without_a_payload_are_not_deliveries() {
        assert_eq!(decode(b"OK MESSAGE 99"), None);
        assert_eq!(decode(b"MESSAGE a hello"), None);
        assert_eq!(decode(b"MESSAGE a ~nb x 1 2"), None);
        assert_eq!(decode(b"MESSAGE a ~nb 99999999999999999999999 1 2"), None);
    }
}
