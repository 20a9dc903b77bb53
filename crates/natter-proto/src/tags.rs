//! The tags before an event, for a client that said `TAGS ON`: `@time=<t>;id=<id> <line>`.
//!
//! `time` is the server's time (RFC 3339, UTC, milliseconds) and is on every tagged line;
//! `id` is the message's id in the log and is only on lines that carry (or acknowledge) a
//! kept message, the same id `HISTORY` shows. The syntax is IRCv3's message tags, so that
//! more may follow: readers take the tags they know, in any order, and skip the rest.

use bytes::{BufMut, BytesMut};

/// The tags of one line, as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags<'a> {
    /// The server's time, as sent.
    pub time: Option<&'a str>,
    /// The kept message's id.
    pub id: Option<i64>,
}

/// Splits a line (without its line end) into its tags and the line itself; a line without
/// tags has none. Unknown tags and malformed values are skipped.
pub fn split(line: &str) -> (Tags<'_>, &str) {
    let mut tags = Tags::default();
    let Some(rest) = line.strip_prefix('@') else {
        return (tags, line);
    };
    let (list, line) = rest.split_once(' ').unwrap_or((rest, ""));
    for tag in list.split(';') {
        match tag.split_once('=') {
            Some(("time", t)) if !t.is_empty() => tags.time = Some(t),
            Some(("id", id)) => tags.id = id.parse().ok().or(tags.id),
            _ => {}
        }
    }
    (tags, line)
}

/// Writes the prefix for a line with `time` and, if it carries a kept message, `id`.
pub fn write(out: &mut BytesMut, time: &str, id: Option<i64>) {
    out.put_slice(b"@time=");
    out.put_slice(time.as_bytes());
    if let Some(id) = id {
        out.put_slice(b";id=");
        out.put_slice(id.to_string().as_bytes());
    }
    out.put_u8(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_tags() {
        let mut out = BytesMut::new();
        write(&mut out, "2026-12-03T17:45:10.123Z", Some(42));
        out.put_slice(b"SAY #den carol hi");
        let line = std::str::from_utf8(&out).unwrap();
        let (tags, rest) = split(line);
        assert_eq!(tags.time, Some("2026-12-03T17:45:10.123Z"));
        assert_eq!(tags.id, Some(42));
        assert_eq!(rest, "SAY #den carol hi");
        let (tags, rest) = split("@x=1;id=nope;time=t ONLINE ann");
        assert_eq!((tags.time, tags.id, rest), (Some("t"), None, "ONLINE ann"));
        assert_eq!(split("ONLINE ann"), (Tags::default(), "ONLINE ann"));
        assert_eq!(split("@"), (Tags::default(), ""));
    }
}
