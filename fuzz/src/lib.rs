//! The checks behind natter's fuzz targets.
//!
//! Each target in `fuzz_targets/` is one call into this crate, so the invariants are read in
//! one place. Every check panics when an invariant breaks; libFuzzer reports the panic as a
//! crash and saves the input (README.md says how to reproduce and minimise it).
//!
//! # Layout
//! - [`line_protocol`]: bytes from a natter client, framed in several chunkings and parsed as
//!   commands; what the server would answer must be one safe line that parses back.
//! - [`irc_message`]: bytes from an IRC client, framed and parsed as IRC; accepted lines
//!   respect IRC's lengths and the text carried into natter is safe.
//! - [`server_line`]: bytes as a client reads them from the server (`ServerLine::parse`), and
//!   as the server sniffs a connection's first bytes (`sniff`).

use bytes::BytesMut;
use natter_proto::command::{
    Dm, Invite, Join, Kick, Message, ModeCmd, Part, Register, RoomArg, Say, Topic,
};
use natter_proto::framing::{Frame, LineFramer};
use natter_proto::limits::{MAX_LINE_BYTES, MAX_SERVER_LINE_BYTES};
use natter_proto::sniff::{Sniff, sniff};
use natter_proto::{Command, ServerLine, irc, name, room, text};
use std::borrow::Cow;
use std::ops::ControlFlow;

/// What framing a whole stream must give: its frames (`None` for a line too long), then
/// what `take_partial` returns. Borrows the input, so checking costs no allocation per line.
#[derive(Debug, PartialEq, Eq)]
struct Framed<'d> {
    frames: Vec<Option<&'d [u8]>>,
    partial: Option<&'d [u8]>,
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The framing rule written out plainly, on the whole stream at once: every LF-terminated
/// line is one frame (too long if it exceeds `max` without its CRLF or LF); an unterminated
/// tail is reported too long as soon as it cannot fit (more than `max` plus a CR), and
/// otherwise is what `take_partial` returns.
fn reference_framing(data: &[u8], max: usize) -> Framed<'_> {
    let mut frames = Vec::new();
    let mut segments = data.split(|&b| b == b'\n');
    let tail = segments.next_back().unwrap_or_default();
    for seg in segments {
        let line = strip_cr(seg);
        frames.push((line.len() <= max).then_some(line));
    }
    let partial = if tail.len() > max + 1 {
        frames.push(None);
        None
    } else {
        let line = strip_cr(tail);
        (!line.is_empty() && line.len() <= max).then_some(line)
    };
    Framed { frames, partial }
}

/// splitmix64: a fixed pseudo-random sequence per input, for chunkings and limits.
struct Rng(u64);

impl Rng {
    fn new(data: &[u8]) -> Self {
        // FNV-1a of the input seeds it, so each input has its own, reproducible, chunking.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    /// A read size as a socket gives them: mostly small, now and then empty or large.
    fn chunk_len(&mut self) -> usize {
        match self.below(16) {
            0 => 0,
            1 => usize::MAX,
            2 => 1 + self.below(4096),
            3 => 1,
            _ => 1 + self.below(24),
        }
    }
}

/// Feeds `data` to a framer of limit `max` in the chunk sizes `chunks` gives, checking its
/// frames against `want` as they come and the framer's own bounds after every read.
fn check_framer(data: &[u8], max: usize, want: &Framed<'_>, mut chunks: impl FnMut() -> usize) {
    let mut framer = LineFramer::new(max);
    let mut seen = 0;
    let mut rest = data;
    let mut empty_reads = 0;
    while !rest.is_empty() {
        let mut n = chunks().min(rest.len());
        if n == 0 {
            empty_reads += 1;
            if empty_reads > 8 {
                n = 1;
            }
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let flow = framer.feed(chunk, |f| {
            let got = match f {
                Frame::Line(l) => {
                    assert!(l.len() <= max, "a framed line exceeds the limit {max}");
                    assert!(!l.contains(&b'\n'), "a framed line contains LF");
                    Some(l)
                }
                Frame::TooLong => None,
            };
            assert_eq!(
                Some(&got),
                want.frames.get(seen),
                "frame {seen} (limit {max}) differs from the reference"
            );
            seen += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(flow, ControlFlow::Continue(()));
        assert!(
            framer.buffered() <= max + 1,
            "the framer holds {} bytes for a limit of {max}",
            framer.buffered()
        );
    }
    assert_eq!(seen, want.frames.len(), "frames missing (limit {max})");
    assert_eq!(
        framer.take_partial().as_deref(),
        want.partial,
        "unfinished line"
    );
    assert_eq!(framer.buffered(), 0, "take_partial left bytes behind");
}

/// Whether `s` holds a character natter never lets through.
fn has_forbidden(s: &str) -> bool {
    s.chars().any(text::is_forbidden)
}

/// Formats `line` as the server would and checks the result is one safe, bounded line that
/// parses back to `line` exactly.
fn round_trip(line: &ServerLine<'_>) {
    let mut out = BytesMut::with_capacity(256);
    line.write_to(&mut out);
    assert!(
        out.len() - 1 <= MAX_SERVER_LINE_BYTES,
        "{} is {} bytes, more than a server line may have",
        line.kind(),
        out.len() - 1
    );
    let written = std::str::from_utf8(&out).expect("server lines are UTF-8");
    let body = written.strip_suffix('\n').expect("server lines end in LF");
    assert!(!body.contains('\n'), "a server line contains an inner LF");
    assert!(!has_forbidden(body), "unsafe character in {body:?}");
    match ServerLine::parse(body) {
        Ok(back) => assert_eq!(&back, line, "{body:?} parses to something else"),
        Err(e) => panic!("{body:?} does not parse back: {e}"),
    }
}

/// What the session knows while replaying a client's lines.
struct Session<'a> {
    /// The name it registered last (the sender of its messages).
    name: &'a str,
    /// ERROR answers formatted and parsed back so far.
    errors_formatted: usize,
}

/// ERROR answers per input that are formatted and parsed back: an input of many short bad
/// lines would otherwise spend its time formatting the same long error text over and over.
/// Every error's text is still checked.
const ERRORS_FORMATTED: usize = 4;

/// One complete client line through `Command::parse`, then what the server would answer.
fn check_command<'a>(raw: &'a [u8], s: &mut Session<'a>) {
    assert!(raw.len() <= MAX_LINE_BYTES);
    let Ok(line) = std::str::from_utf8(raw) else {
        return; // the server answers INVALID_UTF8 without parsing
    };
    let cmd = match Command::parse(line) {
        Ok(None) => {
            assert!(line.trim().is_empty(), "{line:?} is not blank");
            return;
        }
        Err(e) => {
            assert!(!e.text.is_empty());
            assert!(
                !has_forbidden(&e.text),
                "error text {:?} for {line:?} holds a forbidden character",
                e.text
            );
            if let Some(verb) = e.verb {
                let word = line.trim_start_matches(' ').split(' ').next().unwrap();
                assert!(word.eq_ignore_ascii_case(verb));
            }
            if s.errors_formatted < ERRORS_FORMATTED {
                s.errors_formatted += 1;
                round_trip(&ServerLine::Error {
                    code: e.code,
                    text: e.text,
                });
            }
            return;
        }
        Ok(Some(cmd)) => cmd,
    };
    let word = line.trim_start_matches(' ').split(' ').next().unwrap();
    assert!(
        word.eq_ignore_ascii_case(cmd.verb()),
        "{line:?} is not {}",
        cmd.verb()
    );
    let texts_ok = |t: &str| {
        assert_eq!(text::validate(t), Ok(()), "{t:?} in {line:?}");
        // The same text from a MULTILINE ON client: whatever it decodes to, what is kept
        // has lines that obey the text rule, and comes back whole from its escaped form.
        let decoded = natter_proto::multiline::unescape(t);
        if let Ok(kept) = natter_proto::multiline::normalize(&decoded) {
            let lines: Vec<&str> = natter_proto::multiline::lines(&kept).collect();
            assert!(!lines.is_empty() && lines.len() <= natter_proto::limits::MAX_MESSAGE_LINES);
            for l in lines {
                assert_eq!(text::validate(l), Ok(()), "{l:?} of {t:?}");
            }
            let wire = natter_proto::multiline::escape(&kept);
            assert!(!wire.contains('\n'));
            assert!(wire.len() <= 2 * t.len(), "{t:?}");
            assert_eq!(natter_proto::multiline::unescape(&wire), kept);
        }
    };
    let b = Cow::Borrowed;
    match cmd {
        Command::Register(Register { name }) => {
            assert_eq!(name::validate(name), Ok(()));
            round_trip(&ServerLine::Renamed {
                old: b(s.name),
                new: b(name),
            });
            s.name = name;
        }
        Command::Help(h) => {
            if let Some(t) = h.topic {
                assert!(!t.is_empty() && !t.contains(' '));
            }
        }
        Command::Close | Command::List | Command::Rooms => {}
        Command::Message(Message { text }) => {
            texts_ok(text);
            round_trip(&ServerLine::Message {
                from: b(s.name),
                text: b(text),
            });
        }
        Command::Dm(Dm { to, text }) => {
            assert!(!to.is_empty() && !to.contains(' '));
            texts_ok(text);
            round_trip(&ServerLine::Dm {
                from: b(s.name),
                text: b(text),
            });
        }
        Command::Join(Join { room, .. })
        | Command::Who(RoomArg { room })
        | Command::Bans(RoomArg { room }) => {
            assert_eq!(room::validate(room), Ok(()));
            round_trip(&ServerLine::Member {
                room: b(room),
                name: b(s.name),
                op: true,
                voice: false,
            });
        }
        Command::Mode(ModeCmd {
            room,
            change: Some(change),
        }) => {
            assert_eq!(room::validate(room), Ok(()));
            round_trip(&ServerLine::Mode {
                room: b(room),
                by: b(s.name),
                change: Cow::Owned(change.to_string()),
            });
        }
        Command::Part(Part { room, reason }) => {
            assert_eq!(room::validate(room), Ok(()));
            if let Some(r) = reason {
                texts_ok(r);
            }
            round_trip(&ServerLine::Parted {
                room: b(room),
                name: b(s.name),
                reason: b(reason.unwrap_or("")),
            });
        }
        Command::Say(Say { room, text }) => {
            assert_eq!(room::validate(room), Ok(()));
            texts_ok(text);
            round_trip(&ServerLine::Say {
                room: b(room),
                from: b(s.name),
                text: b(text),
            });
        }
        Command::Topic(Topic { room, text }) => {
            assert_eq!(room::validate(room), Ok(()));
            if let Some(t) = text {
                texts_ok(t);
            }
            round_trip(&ServerLine::Topic {
                room: b(room),
                by: b(s.name),
                text: b(text.unwrap_or("")),
            });
        }
        Command::Typing(t) => {
            assert!(matches!(t.state, "active" | "paused" | "done"));
            round_trip(&ServerLine::Typing {
                place: b("*"),
                from: b(s.name),
                state: b(t.state),
            });
        }
        Command::Mode(ModeCmd { room, change: None }) => {
            assert_eq!(room::validate(room), Ok(()));
        }
        Command::Invite(Invite { room, user }) => {
            assert_eq!(room::validate(room), Ok(()));
            assert!(!user.is_empty() && !user.contains(' '));
            round_trip(&ServerLine::Invited {
                room: b(room),
                by: b(s.name),
            });
        }
        Command::Kick(Kick { room, user, reason }) => {
            assert_eq!(room::validate(room), Ok(()));
            assert!(!user.is_empty() && !user.contains(' '));
            if let Some(r) = reason {
                texts_ok(r);
            }
            round_trip(&ServerLine::Kicked {
                room: b(room),
                name: b(s.name),
                by: b(s.name),
                reason: b(reason.unwrap_or("")),
            });
        }
        Command::Password(p) => {
            // Taken whole; non-empty is all the rule there is.
            assert!(!p.password.is_empty());
        }
        Command::Login(l) => {
            assert_eq!(natter_proto::name::validate(l.name), Ok(()));
            assert!(!l.password.is_empty() && !l.password.contains(' '));
            round_trip(&ServerLine::Ok {
                verb: b("LOGIN"),
                detail: b(l.name),
            });
        }
        Command::Logout
        | Command::Session
        | Command::Accounts
        | Command::Tags(_)
        | Command::Multiline(_) => {}
        Command::History(h) => {
            assert!(h.limit.is_none_or(|l| l > 0));
        }
        Command::Search(q) => {
            assert!(!q.words.trim().is_empty());
        }
        Command::Resume(r) => {
            assert!(!r.token.is_empty() && !r.token.contains(' '));
            round_trip(&ServerLine::Ok {
                verb: b("RESUME"),
                detail: b(s.name),
            });
        }
        Command::Kill(k) => {
            assert!(!k.user.is_empty() && !k.user.contains(' '));
            if let Some(r) = k.reason {
                texts_ok(r);
            }
        }
        Command::Account(a) => {
            use natter_proto::command::Account;
            let words: &[&str] = match &a {
                Account::Create { password } | Account::Delete { password } => &[password],
                Account::Password { old, new } => &[old, new],
                Account::Token => &["token"],
            };
            for w in words {
                assert!(!w.is_empty() && !w.contains(' '));
            }
            let _ = natter_proto::password::acceptable(words[0]);
        }
    }
}

/// natter's line protocol: `data` is what a client sends.
///
/// The stream is framed twice, with the protocol's limit and with a small one, each in a
/// pseudo-random chunking chosen by the input (reads of one byte up to all of it), and each
/// framing must equal [`reference_framing`]. Every line is then parsed as a command and
/// answered as the server would.
pub fn line_protocol(data: &[u8]) {
    let mut rng = Rng::new(data);

    let want = reference_framing(data, MAX_LINE_BYTES);
    check_framer(data, MAX_LINE_BYTES, &want, || rng.chunk_len());
    let small = rng.below(48);
    check_framer(data, small, &reference_framing(data, small), || {
        rng.chunk_len()
    });

    let mut session = Session {
        name: "alice",
        errors_formatted: 0,
    };
    for line in want.frames.iter().flatten().chain(&want.partial) {
        check_command(line, &mut session);
    }
}

/// `irc::to_natter_text` on one text: the result is safe and never longer.
fn check_irc_text(text: &str) {
    let Some(out) = irc::to_natter_text(text) else {
        assert!(text.starts_with('\u{1}'), "only CTCP is dropped: {text:?}");
        return;
    };
    assert!(
        !has_forbidden(&out),
        "to_natter_text({text:?}) = {out:?} holds a forbidden character"
    );
    assert!(out.len() <= text.len(), "to_natter_text grew {text:?}");
    if !text.starts_with('\u{1}') && !has_forbidden(text) {
        assert_eq!(out, text, "safe text was changed");
    }
    let _ = text::validate(&out);
}

/// One IRC line (without its line ending) through `irc::parse`.
fn check_irc_line(line: &[u8]) {
    let parsed = irc::parse(line);
    let Ok(s) = std::str::from_utf8(line) else {
        assert_eq!(parsed.map(|_| ()), Err(irc::IrcError::Utf8));
        return;
    };
    check_irc_text(s);
    let msg = match parsed {
        Ok(Some(msg)) => msg,
        Ok(None) => {
            assert!(s.trim().is_empty(), "{s:?} is not blank");
            return;
        }
        Err(irc::IrcError::Utf8) => panic!("valid UTF-8 refused as not UTF-8"),
        Err(_) => return,
    };
    // IRC's lengths, measured on the line as received (leading spaces included): a tag
    // section (up to the space after `@tags`) of at most MAX_TAGS, then at most MAX_LINE
    // bytes counting the CRLF. And no NUL, CR or LF anywhere, tags included.
    let t = s.trim_start_matches(' ');
    let (tags, body) = match t.strip_prefix('@') {
        Some(t) => {
            let i = t.find(' ').expect("a tag section ends in a space");
            let body = &t[i + 1..];
            (s.len() - body.len(), body)
        }
        None => (0, s),
    };
    assert!(tags <= irc::MAX_TAGS, "accepted {tags} bytes of tags");
    assert!(
        body.len() + 2 <= irc::MAX_LINE,
        "accepted a {}-byte line (IRC allows {} with CRLF)",
        body.len(),
        irc::MAX_LINE - 2
    );
    assert!(!s.contains(['\0', '\r', '\n']), "accepted NUL, CR or LF");
    let verb = irc::command_word(s.trim_start_matches(' ')).expect("a parsed line has a verb");
    assert!(!verb.chars().any(|c| c.is_ascii_lowercase()));
    // What the server does with a message it does not handle: name its verb.
    let _ = String::from(&msg.command);
    use irc_proto::Command as C;
    match &msg.command {
        C::PRIVMSG(_, t) | C::NOTICE(_, t) => check_irc_text(t),
        C::PART(_, Some(t))
        | C::QUIT(Some(t))
        | C::TOPIC(_, Some(t))
        | C::KICK(_, _, Some(t))
        | C::AWAY(Some(t)) => check_irc_text(t),
        _ => {}
    }
}

/// IRC input: `data` is what an IRC client sends, framed as the server frames it.
pub fn irc_message(data: &[u8]) {
    let mut lines = Vec::new();
    let mut framer = LineFramer::new(irc::MAX_FRAME);
    let _ = framer.feed(data, |f| {
        if let Frame::Line(l) = f {
            lines.push(l.to_vec());
        }
        ControlFlow::Continue(())
    });
    lines.extend(framer.take_partial());
    for line in &lines {
        check_irc_line(line);
    }
    // The input as one line too, LFs and all: parse must refuse what framing would split.
    if data.contains(&b'\n') {
        check_irc_line(data);
    }
}

/// Whether every field of `line` is one the server can produce: names and rooms that pass
/// their rules, texts that pass the text rule (or are empty where the line allows it).
fn in_domain(line: &ServerLine<'_>) -> bool {
    let n = |s: &str| name::validate(s).is_ok();
    let r = |s: &str| room::validate(s).is_ok();
    let t = |s: &str| text::validate(s).is_ok();
    let t0 = |s: &str| s.is_empty() || t(s);
    match line {
        ServerLine::Hello { text } | ServerLine::Help { text } => t(text),
        ServerLine::Ok { verb, detail } => {
            !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_uppercase()) && t0(detail)
        }
        ServerLine::Error { text, .. } | ServerLine::Bye { text, .. } => t(text),
        ServerLine::User { name }
        | ServerLine::Account { name }
        | ServerLine::Online { name }
        => n(name),
        ServerLine::Offline { name, reason } => n(name) && t0(reason),
        ServerLine::Message { from, text }
        | ServerLine::Dm { from, text }
        | ServerLine::Sent { to: from, text } => n(from) && t(text),
        ServerLine::Renamed { old, new } => n(old) && n(new),
        ServerLine::Joined { room, name } | ServerLine::Operator { room, name } => {
            r(room) && n(name)
        }
        ServerLine::Parted { room, name, reason } => r(room) && n(name) && t0(reason),
        ServerLine::Kicked {
            room,
            name,
            by,
            reason,
        } => r(room) && n(name) && n(by) && t0(reason),
        ServerLine::Say { room, from, text } => r(room) && n(from) && t(text),
        ServerLine::Topic { room, by, text } => r(room) && n(by) && t0(text),
        ServerLine::Member { room, name, .. } => r(room) && n(name),
        ServerLine::Mode { room, by, change } => r(room) && n(by) && t(change),
        ServerLine::Invited { room, by } => r(room) && n(by),
        ServerLine::Typing { place, from, state } => {
            (place == "*" || r(place) || n(place))
                && n(from)
                && matches!(state.as_ref(), "active" | "paused" | "done")
        }
        ServerLine::Ban { room, mask, by, at } => {
            r(room)
                && n(by)
                && !mask.is_empty()
                && !mask.contains(' ')
                && !at.is_empty()
                && !at.contains(' ')
        }
        ServerLine::Room { room, topic, .. } => r(room) && t0(topic),
        ServerLine::Logged {
            target,
            at,
            from,
            text,
            ..
        } => {
            (target == "*" || r(target) || n(target))
                && !at.is_empty()
                && !at.contains(' ')
                && n(from)
                && t(text)
        }
    }
}

/// Server lines as a client parses them, and the sniffer on a connection's first bytes.
pub fn server_line(data: &[u8]) {
    // The sniffer: decides from the first byte it sees TLS on, never changes its mind as
    // more bytes arrive, and decides within the 16 bytes the server reads for it.
    let mut decided = None;
    for k in 0..=data.len().min(16) {
        let got = sniff(&data[..k]);
        if k == 0 {
            assert_eq!(got, Sniff::NeedMore);
        }
        if k >= 9 {
            assert_ne!(got, Sniff::NeedMore, "undecided after {k} bytes");
        }
        if k >= 1 {
            assert_eq!(got == Sniff::Tls, data[0] == 0x16);
        }
        match decided {
            Some(d) => assert_eq!(got, d, "changed its mind at {k} bytes"),
            None if got != Sniff::NeedMore => decided = Some(got),
            None => {}
        }
    }

    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let Ok(parsed) = ServerLine::parse(line) else {
            continue;
        };
        assert_eq!(parsed.clone().into_owned(), parsed);
        let _ = parsed.to_string();
        if line.len() <= MAX_SERVER_LINE_BYTES && in_domain(&parsed) {
            // A line the server could have sent: formatting it gives it back.
            round_trip(&parsed);
        } else {
            // Anything else still formats as one safe line.
            let mut out = BytesMut::new();
            parsed.write_to(&mut out);
            let written = std::str::from_utf8(&out).expect("server lines are UTF-8");
            let body = written.strip_suffix('\n').expect("server lines end in LF");
            assert!(!body.contains('\n'));
            assert!(!has_forbidden(body), "unsafe character in {body:?}");
        }
    }
}
