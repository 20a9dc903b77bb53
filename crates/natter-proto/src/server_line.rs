//! Every line the server sends: formatted by the server, parsed by clients.
//!
//! A server line is an upper-case type word, then the type's fixed words, then (for some types)
//! a free text that runs to the end of the line. Each command gets exactly one final answer,
//! `OK <COMMAND> ...` or `ERROR <CODE> <text>` (`BYE` for CLOSE), after any data lines it
//! produces (`HELP`, `USER`, `MEMBER`, `ROOM`, `TOPIC`), so a program can pipeline commands
//! and pair answers with them in order. Everything else (`MESSAGE`, `DM`, `ONLINE`, ...) is an
//! event and may arrive at any time.

use crate::code::{ByeReason, ErrorCode};
use crate::text;
use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;

/// One line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `HELLO <text>`: the greeting, sent once on connect.
    Hello {
        /// Greeting for a person, naming the server and pointing to HELP.
        text: Cow<'a, str>,
    },
    /// `OK <COMMAND> [detail]`: the command succeeded; the detail depends on the command.
    Ok {
        /// The command word, upper case.
        verb: Cow<'a, str>,
        /// What the command produced (a name, a count...), possibly empty.
        detail: Cow<'a, str>,
    },
    /// `ERROR <CODE> <text>`: the command failed; nothing changed.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// The explanation for a person.
        text: Cow<'a, str>,
    },
    /// `HELP <text>`: one line of HELP's answer.
    Help {
        /// The help text.
        text: Cow<'a, str>,
    },
    /// `USER <name>`: one registered user, in LIST's answer.
    User {
        /// The user's name.
        name: Cow<'a, str>,
    },
    /// `ACCOUNT <name>`: one user logged into its name's account, in ACCOUNTS' answer.
    Account {
        /// The user's name (the account's).
        name: Cow<'a, str>,
    },
    /// `MESSAGE <from> <text>`: a broadcast to everyone.
    Message {
        /// The sender's name.
        from: Cow<'a, str>,
        /// The text, exactly as sent.
        text: Cow<'a, str>,
    },
    /// `DM <from> <text>`: a direct message to you.
    Dm {
        /// The sender's name.
        from: Cow<'a, str>,
        /// The text, exactly as sent.
        text: Cow<'a, str>,
    },
    /// `SENT <to> <text>`: a direct message you sent from another connection of your
    /// account, so that every connection shows the conversation whole.
    Sent {
        /// The recipient's name.
        to: Cow<'a, str>,
        /// The text, exactly as sent.
        text: Cow<'a, str>,
    },
    /// `ONLINE <name>`: someone registered.
    Online {
        /// The new user's name.
        name: Cow<'a, str>,
    },
    /// `OFFLINE <name>`: a registered user left.
    Offline {
        /// The leaving user's name.
        name: Cow<'a, str>,
    },
    /// `RENAMED <old> <new>`: a registered user changed name.
    Renamed {
        /// The name before.
        old: Cow<'a, str>,
        /// The name after.
        new: Cow<'a, str>,
    },
    /// `JOINED <room> <name>`: someone joined a room you are in.
    Joined {
        /// The room.
        room: Cow<'a, str>,
        /// Who joined.
        name: Cow<'a, str>,
    },
    /// `PARTED <room> <name> [reason]`: someone left a room you are in (PART or disconnect).
    Parted {
        /// The room.
        room: Cow<'a, str>,
        /// Who left.
        name: Cow<'a, str>,
        /// Why, possibly empty.
        reason: Cow<'a, str>,
    },
    /// `KICKED <room> <name> <by> [reason]`: an operator removed someone (maybe you).
    Kicked {
        /// The room.
        room: Cow<'a, str>,
        /// Who was removed.
        name: Cow<'a, str>,
        /// The operator who did it.
        by: Cow<'a, str>,
        /// Why, possibly empty.
        reason: Cow<'a, str>,
    },
    /// `SAY <room> <from> <text>`: a message to a room you are in.
    Say {
        /// The room.
        room: Cow<'a, str>,
        /// The sender's name.
        from: Cow<'a, str>,
        /// The text, exactly as sent.
        text: Cow<'a, str>,
    },
    /// `TOPIC <room> <by> [text]`: a room's topic, when it changes or is asked for; empty
    /// text means the topic was cleared.
    Topic {
        /// The room.
        room: Cow<'a, str>,
        /// Who set it.
        by: Cow<'a, str>,
        /// The topic, possibly empty.
        text: Cow<'a, str>,
    },
    /// `MEMBER <room> [@|+]<name>`: one member, in the answers to JOIN and WHO; `@` marks an
    /// operator, `+` a voiced member who is not one.
    Member {
        /// The room.
        room: Cow<'a, str>,
        /// The member's name.
        name: Cow<'a, str>,
        /// Whether the member is one of the room's operators.
        op: bool,
        /// Whether the member has voice (may speak when the room is moderated).
        voice: bool,
    },
    /// `MODE <room> <by> <change> [parameter]`: an operator changed one of a room's modes
    /// (`MODE #rust alice +k sesame`); a new operator is an `OPERATOR` line instead.
    Mode {
        /// The room.
        room: Cow<'a, str>,
        /// The operator who changed it.
        by: Cow<'a, str>,
        /// The change, `+m` or `+b mask`, as `MODE` writes it.
        change: Cow<'a, str>,
    },
    /// `INVITED <room> <by>`: someone invited you into a room.
    Invited {
        /// The room.
        room: Cow<'a, str>,
        /// Who invited you.
        by: Cow<'a, str>,
    },
    /// `BAN <room> <mask> <by> <time>`: one ban, in the answer to BANS.
    Ban {
        /// The room.
        room: Cow<'a, str>,
        /// The ban mask.
        mask: Cow<'a, str>,
        /// Who set it.
        by: Cow<'a, str>,
        /// When, RFC 3339 in UTC.
        at: Cow<'a, str>,
    },
    /// `ROOM <room> <members> [topic]`: one room, in the answer to ROOMS.
    Room {
        /// The room.
        room: Cow<'a, str>,
        /// How many members it has.
        members: usize,
        /// Its topic, possibly empty.
        topic: Cow<'a, str>,
    },
    /// `OPERATOR <room> <name>`: someone became an operator of a room (its last operator
    /// left, so the longest-standing member took over).
    Operator {
        /// The room.
        room: Cow<'a, str>,
        /// The new operator.
        name: Cow<'a, str>,
    },
    /// `LOGGED <target> <id> <time> <from> <text>`: a message from the log, in the answers
    /// to HISTORY and SEARCH. The target is `*`, a room, or the other user of a
    /// conversation; the id sorts in the order messages were sent; the time is the
    /// server's, in RFC 3339 UTC with milliseconds.
    Logged {
        /// Where it was said.
        target: Cow<'a, str>,
        /// Its id.
        id: i64,
        /// When.
        at: Cow<'a, str>,
        /// Who said it.
        from: Cow<'a, str>,
        /// What was said.
        text: Cow<'a, str>,
    },
    /// `BYE <REASON> <text>`: the server is closing this connection.
    Bye {
        /// Why, as a stable code.
        reason: ByeReason,
        /// The explanation for a person.
        text: Cow<'a, str>,
    },
}

/// A line that does not parse as a server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLineError(pub String);

impl fmt::Display for ParseLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed server line: {}", self.0)
    }
}

impl std::error::Error for ParseLineError {}

/// Appends `s`, replacing anything that could break the line or drive a terminal.
///
/// Commands are validated before anything is sent, so this never changes text in practice; it
/// makes "no control character ever leaves the server" a property of formatting itself.
fn put_clean(out: &mut BytesMut, s: &str) {
    if !s.chars().any(text::is_forbidden) {
        out.put_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        let c = if text::is_forbidden(c) { '\u{FFFD}' } else { c };
        let mut b = [0; 4];
        out.put_slice(c.encode_utf8(&mut b).as_bytes());
    }
}

/// Like [`put_clean`] for a word: spaces would split it, so they are replaced too.
fn put_word(out: &mut BytesMut, s: &str) {
    if s.contains(' ') {
        put_clean(out, &s.replace(' ', "_"));
    } else {
        put_clean(out, s);
    }
}

fn split(s: &str) -> (&str, Option<&str>) {
    match s.split_once(' ') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

impl<'a> ServerLine<'a> {
    /// Appends this line and its LF to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        let word = |out: &mut BytesMut, w: &str| {
            out.put_u8(b' ');
            put_word(out, w);
        };
        let text = |out: &mut BytesMut, t: &str| {
            out.put_u8(b' ');
            put_clean(out, t);
        };
        out.put_slice(self.kind().as_bytes());
        match self {
            Self::Hello { text: t } | Self::Help { text: t } => text(out, t),
            Self::Ok { verb, detail } => {
                word(out, verb);
                if !detail.is_empty() {
                    text(out, detail);
                }
            }
            Self::Error { code, text: t } => {
                word(out, code.as_str());
                text(out, t);
            }
            Self::Bye { reason, text: t } => {
                word(out, reason.as_str());
                text(out, t);
            }
            Self::User { name }
            | Self::Account { name }
            | Self::Online { name }
            | Self::Offline { name } => word(out, name),
            Self::Message { from, text: t }
            | Self::Dm { from, text: t }
            | Self::Sent { to: from, text: t } => {
                word(out, from);
                text(out, t);
            }
            Self::Renamed { old, new } => {
                word(out, old);
                word(out, new);
            }
            Self::Logged {
                target,
                id,
                at,
                from,
                text: t,
            } => {
                word(out, target);
                word(out, &id.to_string());
                word(out, at);
                word(out, from);
                text(out, t);
            }
            Self::Joined { room, name } | Self::Operator { room, name } => {
                word(out, room);
                word(out, name);
            }
            Self::Parted { room, name, reason } => {
                word(out, room);
                word(out, name);
                if !reason.is_empty() {
                    text(out, reason);
                }
            }
            Self::Kicked {
                room,
                name,
                by,
                reason,
            } => {
                word(out, room);
                word(out, name);
                word(out, by);
                if !reason.is_empty() {
                    text(out, reason);
                }
            }
            Self::Say {
                room,
                from,
                text: t,
            } => {
                word(out, room);
                word(out, from);
                text(out, t);
            }
            Self::Topic { room, by, text: t } => {
                word(out, room);
                word(out, by);
                if !t.is_empty() {
                    text(out, t);
                }
            }
            Self::Member {
                room,
                name,
                op,
                voice,
            } => {
                word(out, room);
                out.put_u8(b' ');
                if *op {
                    out.put_u8(b'@');
                } else if *voice {
                    out.put_u8(b'+');
                }
                put_word(out, name);
            }
            Self::Mode { room, by, change } => {
                word(out, room);
                word(out, by);
                text(out, change);
            }
            Self::Invited { room, by } => {
                word(out, room);
                word(out, by);
            }
            Self::Ban { room, mask, by, at } => {
                word(out, room);
                word(out, mask);
                word(out, by);
                word(out, at);
            }
            Self::Room {
                room,
                members,
                topic,
            } => {
                word(out, room);
                word(out, &members.to_string());
                if !topic.is_empty() {
                    text(out, topic);
                }
            }
        }
        out.put_u8(b'\n');
    }

    /// This line with its LF, as shareable bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len_hint());
        self.write_to(&mut out);
        out.freeze()
    }

    fn len_hint(&self) -> usize {
        let field = |s: &str| s.len() + 1;
        16 + match self {
            Self::Hello { text } | Self::Help { text } => field(text),
            Self::Ok { verb, detail } => field(verb) + field(detail),
            Self::Error { text, .. } | Self::Bye { text, .. } => 24 + field(text),
            Self::User { name }
            | Self::Account { name }
            | Self::Online { name }
            | Self::Offline { name } => field(name),
            Self::Message { from, text }
            | Self::Dm { from, text }
            | Self::Sent { to: from, text } => field(from) + field(text),
            Self::Renamed { old, new } => field(old) + field(new),
            Self::Logged {
                target,
                at,
                from,
                text,
                ..
            } => field(target) + 21 + field(at) + field(from) + field(text),
            Self::Joined { room, name } | Self::Operator { room, name } => {
                field(room) + field(name)
            }
            Self::Member { room, name, .. } => field(room) + field(name) + 1,
            Self::Mode { room, by, change } => field(room) + field(by) + field(change),
            Self::Invited { room, by } => field(room) + field(by),
            Self::Ban { room, mask, by, at } => field(room) + field(mask) + field(by) + field(at),
            Self::Parted { room, name, reason } => field(room) + field(name) + field(reason),
            Self::Kicked {
                room,
                name,
                by,
                reason,
            } => field(room) + field(name) + field(by) + field(reason),
            Self::Say { room, from, text } => field(room) + field(from) + field(text),
            Self::Topic { room, by, text } => field(room) + field(by) + field(text),
            Self::Room { room, topic, .. } => field(room) + 21 + field(topic),
        }
    }

    /// The type word.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "HELLO",
            Self::Ok { .. } => "OK",
            Self::Error { .. } => "ERROR",
            Self::Help { .. } => "HELP",
            Self::User { .. } => "USER",
            Self::Account { .. } => "ACCOUNT",
            Self::Message { .. } => "MESSAGE",
            Self::Dm { .. } => "DM",
            Self::Sent { .. } => "SENT",
            Self::Online { .. } => "ONLINE",
            Self::Offline { .. } => "OFFLINE",
            Self::Renamed { .. } => "RENAMED",
            Self::Joined { .. } => "JOINED",
            Self::Parted { .. } => "PARTED",
            Self::Kicked { .. } => "KICKED",
            Self::Say { .. } => "SAY",
            Self::Topic { .. } => "TOPIC",
            Self::Member { .. } => "MEMBER",
            Self::Mode { .. } => "MODE",
            Self::Invited { .. } => "INVITED",
            Self::Ban { .. } => "BAN",
            Self::Room { .. } => "ROOM",
            Self::Operator { .. } => "OPERATOR",
            Self::Bye { .. } => "BYE",
            Self::Logged { .. } => "LOGGED",
        }
    }

    /// Parses one line, without its LF (a trailing CR is tolerated).
    pub fn parse(line: &'a str) -> Result<ServerLine<'a>, ParseLineError> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bad = || ParseLineError(line.chars().take(80).collect());
        let (kind, rest) = split(line);
        let need = |r: Option<&'a str>| r.filter(|s| !s.is_empty()).ok_or_else(bad);
        let one_word = |r: Option<&'a str>| {
            need(r).and_then(|s| {
                if s.contains(' ') {
                    Err(bad())
                } else {
                    Ok(Cow::Borrowed(s))
                }
            })
        };
        let word_and_text = |r: Option<&'a str>| {
            let (w, t) = split(need(r)?);
            Ok::<_, ParseLineError>((w, Cow::Borrowed(need(t)?)))
        };
        Ok(match kind {
            "HELLO" => Self::Hello {
                text: Cow::Borrowed(need(rest)?),
            },
            "HELP" => Self::Help {
                text: Cow::Borrowed(need(rest)?),
            },
            "OK" => {
                let (verb, detail) = split(need(rest)?);
                Self::Ok {
                    verb: Cow::Borrowed(verb),
                    detail: Cow::Borrowed(detail.unwrap_or("")),
                }
            }
            "ERROR" => {
                let (code, text) = word_and_text(rest)?;
                Self::Error {
                    code: ErrorCode::from_word(code).ok_or_else(bad)?,
                    text,
                }
            }
            "BYE" => {
                let (reason, text) = word_and_text(rest)?;
                Self::Bye {
                    reason: ByeReason::from_word(reason).ok_or_else(bad)?,
                    text,
                }
            }
            "USER" => Self::User {
                name: one_word(rest)?,
            },
            "ACCOUNT" => Self::Account {
                name: one_word(rest)?,
            },
            "ONLINE" => Self::Online {
                name: one_word(rest)?,
            },
            "OFFLINE" => Self::Offline {
                name: one_word(rest)?,
            },
            "MESSAGE" => {
                let (from, text) = word_and_text(rest)?;
                Self::Message {
                    from: Cow::Borrowed(from),
                    text,
                }
            }
            "DM" => {
                let (from, text) = word_and_text(rest)?;
                Self::Dm {
                    from: Cow::Borrowed(from),
                    text,
                }
            }
            "SENT" => {
                let (to, text) = word_and_text(rest)?;
                Self::Sent {
                    to: Cow::Borrowed(to),
                    text,
                }
            }
            "RENAMED" => {
                let (old, new) = split(need(rest)?);
                Self::Renamed {
                    old: Cow::Borrowed(old),
                    new: one_word(new)?,
                }
            }
            "JOINED" | "OPERATOR" => {
                let (room, name) = split(need(rest)?);
                let (room, name) = (Cow::Borrowed(room), one_word(name)?);
                if kind == "JOINED" {
                    Self::Joined { room, name }
                } else {
                    Self::Operator { room, name }
                }
            }
            "PARTED" => {
                let (room, rest) = split(need(rest)?);
                let (name, reason) = split(need(rest)?);
                Self::Parted {
                    room: Cow::Borrowed(room),
                    name: Cow::Borrowed(name),
                    reason: Cow::Borrowed(reason.unwrap_or("")),
                }
            }
            "KICKED" => {
                let (room, rest) = split(need(rest)?);
                let (name, rest) = split(need(rest)?);
                let (by, reason) = split(need(rest)?);
                Self::Kicked {
                    room: Cow::Borrowed(room),
                    name: Cow::Borrowed(name),
                    by: Cow::Borrowed(by),
                    reason: Cow::Borrowed(reason.unwrap_or("")),
                }
            }
            "SAY" => {
                let (room, rest) = split(need(rest)?);
                let (from, text) = word_and_text(Some(need(rest)?))?;
                Self::Say {
                    room: Cow::Borrowed(room),
                    from: Cow::Borrowed(from),
                    text,
                }
            }
            "TOPIC" => {
                let (room, rest) = split(need(rest)?);
                let (by, text) = split(need(rest)?);
                Self::Topic {
                    room: Cow::Borrowed(room),
                    by: Cow::Borrowed(by),
                    text: Cow::Borrowed(text.unwrap_or("")),
                }
            }
            "MEMBER" => {
                let (room, name) = split(need(rest)?);
                let name = one_word(name)?;
                let (op, voice, name) = match name {
                    Cow::Borrowed(n) => match (n.strip_prefix('@'), n.strip_prefix('+')) {
                        (Some(n), _) if !n.is_empty() => (true, false, n),
                        (_, Some(n)) if !n.is_empty() => (false, true, n),
                        _ => (false, false, n),
                    },
                    Cow::Owned(_) => unreachable!("one_word borrows"),
                };
                Self::Member {
                    room: Cow::Borrowed(room),
                    name: Cow::Borrowed(name),
                    op,
                    voice,
                }
            }
            "MODE" => {
                let (room, rest) = split(need(rest)?);
                let (by, change) = word_and_text(rest)?;
                Self::Mode {
                    room: Cow::Borrowed(room),
                    by: Cow::Borrowed(by),
                    change,
                }
            }
            "INVITED" => {
                let (room, by) = split(need(rest)?);
                Self::Invited {
                    room: Cow::Borrowed(room),
                    by: one_word(by)?,
                }
            }
            "BAN" => {
                let (room, rest) = split(need(rest)?);
                let (mask, rest) = split(need(rest)?);
                let (by, at) = split(need(rest)?);
                Self::Ban {
                    room: Cow::Borrowed(room),
                    mask: Cow::Borrowed(mask),
                    by: Cow::Borrowed(by),
                    at: one_word(at)?,
                }
            }
            "LOGGED" => {
                let (target, rest) = split(need(rest)?);
                let (id, rest) = split(need(rest)?);
                let (at, rest) = split(need(rest)?);
                let (from, text) = word_and_text(rest)?;
                Self::Logged {
                    target: Cow::Borrowed(target),
                    id: id.parse().map_err(|_| bad())?,
                    at: Cow::Borrowed(at),
                    from: Cow::Borrowed(from),
                    text,
                }
            }
            "ROOM" => {
                let (room, rest) = split(need(rest)?);
                let (count, topic) = split(need(rest)?);
                Self::Room {
                    room: Cow::Borrowed(room),
                    members: count.parse().map_err(|_| bad())?,
                    topic: Cow::Borrowed(topic.unwrap_or("")),
                }
            }
            _ => return Err(bad()),
        })
    }

    /// A copy that owns its text, to keep beyond the buffer it was parsed from.
    pub fn into_owned(self) -> ServerLine<'static> {
        fn o(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        match self {
            Self::Hello { text } => ServerLine::Hello { text: o(text) },
            Self::Ok { verb, detail } => ServerLine::Ok {
                verb: o(verb),
                detail: o(detail),
            },
            Self::Error { code, text } => ServerLine::Error {
                code,
                text: o(text),
            },
            Self::Help { text } => ServerLine::Help { text: o(text) },
            Self::User { name } => ServerLine::User { name: o(name) },
            Self::Account { name } => ServerLine::Account { name: o(name) },
            Self::Message { from, text } => ServerLine::Message {
                from: o(from),
                text: o(text),
            },
            Self::Dm { from, text } => ServerLine::Dm {
                from: o(from),
                text: o(text),
            },
            Self::Sent { to, text } => ServerLine::Sent {
                to: o(to),
                text: o(text),
            },
            Self::Online { name } => ServerLine::Online { name: o(name) },
            Self::Offline { name } => ServerLine::Offline { name: o(name) },
            Self::Renamed { old, new } => ServerLine::Renamed {
                old: o(old),
                new: o(new),
            },
            Self::Bye { reason, text } => ServerLine::Bye {
                reason,
                text: o(text),
            },
            Self::Logged {
                target,
                id,
                at,
                from,
                text,
            } => ServerLine::Logged {
                target: o(target),
                id,
                at: o(at),
                from: o(from),
                text: o(text),
            },
            Self::Joined { room, name } => ServerLine::Joined {
                room: o(room),
                name: o(name),
            },
            Self::Operator { room, name } => ServerLine::Operator {
                room: o(room),
                name: o(name),
            },
            Self::Parted { room, name, reason } => ServerLine::Parted {
                room: o(room),
                name: o(name),
                reason: o(reason),
            },
            Self::Kicked {
                room,
                name,
                by,
                reason,
            } => ServerLine::Kicked {
                room: o(room),
                name: o(name),
                by: o(by),
                reason: o(reason),
            },
            Self::Say { room, from, text } => ServerLine::Say {
                room: o(room),
                from: o(from),
                text: o(text),
            },
            Self::Topic { room, by, text } => ServerLine::Topic {
                room: o(room),
                by: o(by),
                text: o(text),
            },
            Self::Member {
                room,
                name,
                op,
                voice,
            } => ServerLine::Member {
                room: o(room),
                name: o(name),
                op,
                voice,
            },
            Self::Mode { room, by, change } => ServerLine::Mode {
                room: o(room),
                by: o(by),
                change: o(change),
            },
            Self::Invited { room, by } => ServerLine::Invited {
                room: o(room),
                by: o(by),
            },
            Self::Ban { room, mask, by, at } => ServerLine::Ban {
                room: o(room),
                mask: o(mask),
                by: o(by),
                at: o(at),
            },
            Self::Room {
                room,
                members,
                topic,
            } => ServerLine::Room {
                room: o(room),
                members,
                topic: o(topic),
            },
        }
    }
}

impl fmt::Display for ServerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        let s = String::from_utf8_lossy(&out[..out.len() - 1]);
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    #[test]
    fn formats_exactly() {
        let l = ServerLine::Message {
            from: b("alice"),
            text: b("  hi  there "),
        };
        assert_eq!(&l.to_bytes()[..], b"MESSAGE alice   hi  there \n");
        let l = ServerLine::Ok {
            verb: b("LIST"),
            detail: b(""),
        };
        assert_eq!(&l.to_bytes()[..], b"OK LIST\n");
        let l = ServerLine::Error {
            code: ErrorCode::NameTaken,
            text: b("alice is taken"),
        };
        assert_eq!(l.to_string(), "ERROR NAME_TAKEN alice is taken");
    }

    #[test]
    fn never_emits_control_characters() {
        let l = ServerLine::Dm {
            from: b("a b\n"),
            text: b("x\r\nERROR FAKE\u{1b}[1m\u{85}"),
        };
        let bytes = l.to_bytes();
        let s = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
        assert!(!s.chars().any(text::is_forbidden), "{s:?}");
        assert_eq!(bytes.iter().filter(|&&c| c == b'\n').count(), 1);
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            ServerLine::parse("RENAMED a b\r"),
            Ok(ServerLine::Renamed {
                old: b("a"),
                new: b("b")
            })
        );
        for bad in [
            "",
            "NOPE x",
            "MESSAGE alice",
            "ERROR WHAT x",
            "USER a b",
            "ONLINE",
        ] {
            assert!(ServerLine::parse(bad).is_err(), "{bad}");
        }
    }
}
