//! Splitting a byte stream into lines, with memory bounded by the line limit.
//!
//! Lines end in LF; a CR before the LF is dropped, so LF-only clients (the lab's) and CRLF
//! clients (telnet, IRC) both work. A line longer than the limit is reported once, as soon as
//! it is known to be too long, and its bytes are then skipped up to the next LF without being
//! kept: a client sending megabytes without a newline costs at most the limit in memory.

use std::ops::ControlFlow;

/// What the framer found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its line ending.
    Line(&'a [u8]),
    /// A line was longer than the limit; it is being discarded up to its LF.
    TooLong,
}

/// Incremental line splitter; holds only the unfinished tail of a line.
#[derive(Debug)]
pub struct LineFramer {
    /// The start of a line whose LF has not arrived yet.
    partial: Vec<u8>,
    /// Skipping the rest of an over-long line until its LF.
    discarding: bool,
    /// The most bytes a line may have, without its line ending.
    max: usize,
    /// `partial` was handed out as a line by [`LineFramer::next`] and must be cleared first.
    emitted: bool,
}

/// Capacity above which an emptied partial buffer is released, so idle connections stay small.
const KEEP_CAPACITY: usize = 256;

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            discarding: false,
            max,
            emitted: false,
        }
    }

    /// Bytes held for an unfinished line.
    pub fn buffered(&self) -> usize {
        if self.emitted { 0 } else { self.partial.len() }
    }

    /// Feeds `input`, calling `on` for every frame in order. Stops early, dropping the rest of
    /// the input, when `on` breaks.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on: impl FnMut(Frame<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        while let Some(frame) = self.next(&mut input) {
            on(frame)?;
        }
        ControlFlow::Continue(())
    }

    /// The next frame in `input`, advancing it past what was used; `None` once `input` holds
    /// no complete line (its tail, if any, is kept for the next call). A caller that stops
    /// early keeps the rest of `input` for later: this is how flood control delays lines.
    pub fn next<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Option<Frame<'s>> {
        if std::mem::take(&mut self.emitted) {
            self.clear_partial();
        }
        while !input.is_empty() {
            let Some(i) = memchr::memchr(b'\n', input) else {
                let rest = std::mem::take(input);
                if self.discarding {
                    return None;
                }
                // One byte of slack: the tail may end in the CR of a CRLF.
                if self.partial.len() + rest.len() > self.max + 1 {
                    self.clear_partial();
                    self.discarding = true;
                    return Some(Frame::TooLong);
                }
                self.partial.extend_from_slice(rest);
                return None;
            };
            let chunk = &input[..i];
            *input = &input[i + 1..];
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let line = if self.partial.is_empty() {
                strip_cr(chunk)
            } else {
                self.partial.extend_from_slice(chunk);
                self.emitted = true;
                strip_cr(&self.partial)
            };
            return Some(if line.len() > self.max {
                Frame::TooLong
            } else {
                Frame::Line(line)
            });
        }
        None
    }

    /// Takes an unfinished last line (the peer closed without sending its LF), if any.
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        if std::mem::take(&mut self.emitted) {
            self.clear_partial();
        }
        let discarding = std::mem::take(&mut self.discarding);
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (!discarding && !line.is_empty() && line.len() <= self.max).then_some(line)
    }

    /// Gives back the buffer of unfinished lines if none is unfinished: the connection is
    /// going idle, and an idle connection keeps nothing.
    pub fn trim(&mut self) {
        if (self.emitted || self.partial.is_empty()) && self.partial.capacity() > 0 {
            self.partial = Vec::new();
            self.emitted = false;
        }
    }

    fn clear_partial(&mut self) {
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_an_unfinished_line_and_frees_a_finished_one() {
        let mut f = super::LineFramer::new(100);
        let mut input: &[u8] = b"HEL";
        assert!(f.next(&mut input).is_none());
        f.trim();
        let mut input: &[u8] = b"LO\nWOR";
        assert!(matches!(
            f.next(&mut input),
            Some(super::Frame::Line(b"HELLO"))
        ));
        assert!(f.next(&mut input).is_none());
        f.trim();
        assert_eq!(f.buffered(), 3, "an unfinished line is kept");
        let mut input: &[u8] = b"LD\n";
        assert!(matches!(
            f.next(&mut input),
            Some(super::Frame::Line(b"WORLD"))
        ));
        f.trim();
        assert_eq!(f.partial.capacity(), 0);
        assert_eq!(f.buffered(), 0);
    }

    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Result<String, ()>> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            let _ = f.feed(c, |fr| {
                out.push(match fr {
                    Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Frame::TooLong => Err(()),
                });
                ControlFlow::Continue(())
            });
        }
        out
    }

    #[test]
    fn lf_and_crlf() {
        assert_eq!(
            frames(10, &[b"a\nb\r\n\nc"]),
            vec![Ok("a".into()), Ok("b".into()), Ok("".into())]
        );
    }

    #[test]
    fn split_across_reads_and_byte_by_byte() {
        let input = b"REGISTER bob\r\nLIST\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            frames(64, &chunks),
            vec![Ok("REGISTER bob".into()), Ok("LIST".into())]
        );
    }

    #[test]
    fn exactly_max_is_fine_with_crlf() {
        assert_eq!(frames(3, &[b"abc\r", b"\n"]), vec![Ok("abc".into())]);
        assert_eq!(frames(3, &[b"abc\r\n"]), vec![Ok("abc".into())]);
        assert_eq!(frames(3, &[b"abcd\n"]), vec![Err(())]);
        assert_eq!(frames(3, &[b"ab", b"cd\n"]), vec![Err(())]);
    }

    #[test]
    fn long_line_reported_early_then_skipped() {
        let mut f = LineFramer::new(4);
        let mut n = 0;
        for _ in 0..1000 {
            let _ = f.feed(&[b'x'; 1024], |fr| {
                assert_eq!(fr, Frame::TooLong);
                n += 1;
                ControlFlow::Continue(())
            });
            assert_eq!(f.buffered(), 0);
        }
        assert_eq!(n, 1);
        assert_eq!(
            frames(4, &[&[b'x'; 100], b"yy\nok\n"]),
            vec![Err(()), Ok("ok".into())]
        );
    }

    #[test]
    fn unfinished_last_line() {
        let mut f = LineFramer::new(4);
        let _ = f.feed(b"a\nbc\r", |_| ControlFlow::Continue(()));
        assert_eq!(f.take_partial(), Some(b"bc".to_vec()));
        assert_eq!(f.take_partial(), None);
        let _ = f.feed(b"toolong", |_| ControlFlow::Continue(()));
        assert_eq!(f.take_partial(), None);
    }

    #[test]
    fn next_leaves_the_rest_for_later() {
        let mut f = LineFramer::new(16);
        let mut input: &[u8] = b"one\ntw";
        assert_eq!(f.next(&mut input), Some(Frame::Line(b"one")));
        assert_eq!(input, b"tw");
        assert_eq!(f.next(&mut input), None);
        let mut more: &[u8] = b"o\nthree\nfour\n";
        assert_eq!(f.next(&mut more), Some(Frame::Line(b"two")));
        assert_eq!(f.next(&mut more), Some(Frame::Line(b"three")));
        // A caller may stop here and come back with the same rest.
        assert_eq!(more, b"four\n");
        assert_eq!(f.next(&mut more), Some(Frame::Line(b"four")));
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn break_stops_early() {
        let mut f = LineFramer::new(10);
        let mut seen = 0;
        let flow = f.feed(b"a\nb\nc\n", |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!(flow, ControlFlow::Break(()));
        assert_eq!(seen, 1);
    }
}
