//! Telling protocols apart by a connection's first bytes, so one port serves every client.
//!
//! The server reads what a client sends first (at most a few bytes), and hands them with the
//! connection to the matching protocol. A client that sends nothing (a person at `nc`) is a
//! line-protocol client once the listener stops waiting.

/// The protocol a connection's first bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// natter's line protocol (also the answer for anything unrecognised).
    Line,
    /// An HTTP/1 request (or the HTTP/2 preface): browsers, WebSocket upgrades, metrics.
    Http,
    /// A TLS ClientHello.
    Tls,
    /// An IRC client's registration (`CAP`, `PASS`, `NICK` or `USER`).
    Irc,
    /// Not enough bytes to decide yet.
    NeedMore,
}

const HTTP_METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
];

const IRC_OPENERS: &[&[u8]] = &[b"CAP", b"PASS", b"NICK", b"USER"];

/// Classifies the first bytes a client sent.
pub fn sniff(prefix: &[u8]) -> Sniff {
    let Some(&first) = prefix.first() else {
        return Sniff::NeedMore;
    };
    if first == 0x16 {
        return Sniff::Tls;
    }
    let mut undecided = false;
    for m in HTTP_METHODS {
        if prefix.starts_with(m) {
            return Sniff::Http;
        }
        undecided |= m.starts_with(prefix);
    }
    for w in IRC_OPENERS {
        let n = w.len();
        if prefix.len() > n && prefix[..n].eq_ignore_ascii_case(w) {
            if matches!(prefix[n], b' ' | b'\r' | b'\n') {
                return Sniff::Irc;
            }
        } else if prefix.len() <= n && w[..prefix.len()].eq_ignore_ascii_case(prefix) {
            undecided = true;
        }
    }
    if undecided && !prefix.contains(&b'\n') {
        Sniff::NeedMore
    } else {
        Sniff::Line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(b"\x16\x03\x01"), Sniff::Tls);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Http);
        assert_eq!(sniff(b"GE"), Sniff::NeedMore);
        assert_eq!(sniff(b"NICK bob\r\n"), Sniff::Irc);
        assert_eq!(sniff(b"cap LS 302\r\n"), Sniff::Irc);
        assert_eq!(sniff(b"NIC"), Sniff::NeedMore);
        assert_eq!(sniff(b"NICKEL\n"), Sniff::Line);
        assert_eq!(sniff(b"REGISTER bob\n"), Sniff::Line);
        assert_eq!(sniff(b"HELP\n"), Sniff::Line);
        assert_eq!(sniff(b"H"), Sniff::NeedMore);
        assert_eq!(sniff(b"\n"), Sniff::Line);
        assert_eq!(sniff(b"\xff\xfe"), Sniff::Line);
    }
}
