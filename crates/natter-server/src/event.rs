//! What the hub fans out, and how each kind of client sees it.
//!
//! The hub describes every delivery as an [`Event`]. Recipients differ in how they want it
//! written: native clients read natter lines, IRC clients read IRC messages (with a
//! `server-time` tag if they asked for one). [`Lines`] renders an event lazily, at most once
//! per flavor, and hands every recipient of that flavor the same shared [`Bytes`]: a broadcast
//! to ten thousand clients is formatted once for the natives and once for the IRC users.

use bytes::Bytes;
use irc_proto::{Command, Message, message::Tag};
use natter_proto::{ServerLine, multiline};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::time::SystemTime;

/// How a recipient wants its lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// natter's line protocol.
    Native,
    /// natter's line protocol, each event after its time and message id (`TAGS ON`).
    Tagged,
    /// natter's line protocol, message texts escaped, several lines in one (`MULTILINE ON`).
    Multiline,
    /// `TAGS ON` and `MULTILINE ON`.
    TaggedMultiline,
    /// IRC, with the capabilities that change how events are written.
    Irc {
        /// Whether the client negotiated `server-time`.
        time: bool,
        /// `account-tag`: messages from logged-in users carry `account=<name>`.
        account_tag: bool,
        /// `extended-join`: JOIN carries the account (or `*`) and the real name.
        extended_join: bool,
        /// `account-notify`: `ACCOUNT` when someone in a shared channel logs in or out.
        account_notify: bool,
        /// `message-tags`: kept messages carry their `msgid`.
        message_tags: bool,
        /// `draft/multiline`: a message of several lines comes as one batch.
        multiline: bool,
    },
    /// A user on another node of the cluster: its own node delivers to it, so nothing here
    /// renders for it.
    Remote,
}

impl Flavor {
    /// IRC with `server-time` or not, and none of the account capabilities.
    pub fn irc(time: bool) -> Self {
        Flavor::Irc {
            time,
            account_tag: false,
            extended_join: false,
            account_notify: false,
            message_tags: false,
            multiline: false,
        }
    }

    /// A native flavor: with tags (`TAGS ON`) or not, escaped texts (`MULTILINE ON`) or not.
    pub fn native(tags: bool, multiline: bool) -> Self {
        match (tags, multiline) {
            (false, false) => Flavor::Native,
            (true, false) => Flavor::Tagged,
            (false, true) => Flavor::Multiline,
            (true, true) => Flavor::TaggedMultiline,
        }
    }

    /// Whether this native flavor said `TAGS ON`.
    pub fn tagged(self) -> bool {
        matches!(self, Flavor::Tagged | Flavor::TaggedMultiline)
    }

    /// Whether this native flavor said `MULTILINE ON`.
    pub fn multiline(self) -> bool {
        matches!(self, Flavor::Multiline | Flavor::TaggedMultiline)
    }

    /// The index of a native flavor's rendering.
    fn native_slot(self) -> usize {
        usize::from(self.tagged()) | usize::from(self.multiline()) << 1
    }

    /// An IRC flavor's capabilities as six bits, to index renderings by.
    fn irc_bits(self) -> usize {
        match self {
            Flavor::Irc {
                time,
                account_tag,
                extended_join,
                account_notify,
                message_tags,
                multiline,
            } => {
                usize::from(time)
                    | usize::from(account_tag) << 1
                    | usize::from(extended_join) << 2
                    | usize::from(account_notify) << 3
                    | usize::from(message_tags) << 4
                    | usize::from(multiline) << 5
            }
            _ => 0,
        }
    }
}

/// The bits of [`Flavor::irc_bits`].
const TIME: usize = 1;
const ACCOUNT_TAG: usize = 2;
const EXTENDED_JOIN: usize = 4;
const ACCOUNT_NOTIFY: usize = 8;
const MSGID: usize = 16;
const MULTILINE: usize = 32;
/// How many IRC renderings an event may have: one per capability bit but [`MULTILINE`], which
/// only messages care about, and they never about [`EXTENDED_JOIN`], so the two share a bit
/// (see [`Lines::get`]).
const IRC_FLAVORS: usize = 32;
/// How many IRC renderings a batch of events may have.
const BATCH_FLAVORS: usize = 64;
/// How many native renderings there are: tags or not, escaped texts or not.
const NATIVE_FLAVORS: usize = 4;

/// The reason a native user's departure is shown with when it simply closed or lost its
/// connection: IRC users see it as the quit message, natives' `OFFLINE` leaves it out.
pub const DISCONNECTED: &str = "disconnected";

/// Host part of every IRC source mask: users' addresses are nobody else's business.
const MASK_HOST: &str = "natter";

/// How a user appears in events: the natter name, and the IRC user name its mask shows.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The user's name.
    pub name: &'a str,
    /// The user's IRC user name (`ident`; a native's is its name).
    pub ident: &'a str,
    /// Whether the user is logged into an account (whose name is `name`).
    pub account: bool,
    /// The real name an IRC user gave (`USER`, `SETNAME`); natives have none.
    pub real: Option<&'a str>,
}

impl Who<'_> {
    /// The IRC source mask, `name!ident@natter`. Made when an event is rendered for IRC
    /// (once per event), so that no user has to keep one.
    pub fn mask(&self) -> String {
        format!("{}!{}@{MASK_HOST}", self.name, self.ident)
    }
}

/// Names the IRC side needs to render events; fixed for the life of the server.
#[derive(Debug, Clone)]
pub struct IrcNames {
    /// The server's name, the source of server messages.
    pub server: String,
    /// The channel through which IRC users take part in Everyone.
    pub everyone: String,
}

/// Something the hub delivers.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A broadcast to Everyone.
    Message {
        /// Sender.
        from: Who<'a>,
        /// Text.
        text: &'a str,
        /// Sent as an IRC NOTICE (IRC recipients see a NOTICE too).
        notice: bool,
    },
    /// A direct message.
    Dm {
        /// Sender.
        from: Who<'a>,
        /// The recipient's name (IRC writes it as the target).
        to: &'a str,
        /// Text.
        text: &'a str,
        /// Sent as an IRC NOTICE.
        notice: bool,
        /// Shown to the sender's other connections (natives see `SENT`; IRC users the
        /// message itself, as echo-message shows it).
        echo: bool,
    },
    /// A message to a room.
    Say {
        /// The room's name.
        room: &'a str,
        /// Sender.
        from: Who<'a>,
        /// Text.
        text: &'a str,
        /// Sent as an IRC NOTICE.
        notice: bool,
    },
    /// Someone registered. IRC users see it as a JOIN of the everyone channel if the new user
    /// is in it from the start (natives always are).
    Online {
        /// Who.
        who: Who<'a>,
        /// Whether the new user is in the everyone channel.
        in_everyone: bool,
    },
    /// Someone left the server (natives: OFFLINE; IRC: QUIT).
    Offline {
        /// Who.
        who: Who<'a>,
        /// Why, for IRC's QUIT.
        reason: &'a str,
    },
    /// Someone changed name (natives: RENAMED; IRC: NICK from the old mask).
    Renamed {
        /// The user before the change.
        old: Who<'a>,
        /// The new name.
        new: &'a str,
    },
    /// An IRC user joined or left the everyone channel; only IRC users see it.
    EveryoneMembership {
        /// Who.
        who: Who<'a>,
        /// Joined (or else left).
        joined: bool,
    },
    /// Someone joined a room.
    Joined {
        /// The room.
        room: &'a str,
        /// Who.
        who: Who<'a>,
    },
    /// Someone left a room. A departure by disconnect is shown to natives only: IRC users see
    /// the QUIT instead.
    Parted {
        /// The room.
        room: &'a str,
        /// Who.
        who: Who<'a>,
        /// Why, possibly empty.
        reason: &'a str,
        /// The user left by disconnecting.
        disconnect: bool,
    },
    /// An operator removed someone from a room.
    Kicked {
        /// The room.
        room: &'a str,
        /// Who was removed.
        name: &'a str,
        /// The operator.
        by: Who<'a>,
        /// Why, possibly empty.
        reason: &'a str,
    },
    /// A room's topic changed.
    Topic {
        /// The room.
        room: &'a str,
        /// Who set it.
        by: Who<'a>,
        /// The topic, empty when cleared.
        text: &'a str,
    },
    /// Someone became a room's operator.
    Operator {
        /// The room.
        room: &'a str,
        /// Who.
        name: &'a str,
    },
    /// An operator changed one of a room's modes.
    Mode {
        /// The room.
        room: &'a str,
        /// The operator.
        by: Who<'a>,
        /// The change as applied, `+b mask` (see [`natter_proto::mode`]).
        change: &'a str,
    },
    /// Someone is typing (or stopped); only clients that can show it get it.
    Typing {
        /// Who.
        from: Who<'a>,
        /// Where.
        place: Place<'a>,
        /// `active`, `paused` or `done`.
        state: &'a str,
        /// The IRC client-only tags to relay (`+typing=active`), `;`-separated.
        tags: &'a str,
        /// Its `msgid` for IRC clients (an id of the log's, nothing kept under it), if the
        /// server keeps history.
        msgid: Option<i64>,
    },
    /// Someone invited the recipient into a room.
    Invited {
        /// The room.
        room: &'a str,
        /// Who invited.
        by: Who<'a>,
        /// Who is invited (the recipient).
        to: &'a str,
    },
    /// Someone logged into their name's account (it was made one) or out of it (it was
    /// deleted); only IRC users with `account-notify` see it.
    Account {
        /// Who, as they are now.
        who: Who<'a>,
    },
    /// A CTCP request (or, as a notice, its reply) from one IRC user to another; natives
    /// cannot answer one, so they never see it.
    Ctcp {
        /// Sender.
        from: Who<'a>,
        /// The recipient's name.
        to: &'a str,
        /// What is between the two `\x01`s.
        body: &'a str,
        /// A reply (NOTICE) rather than a request.
        notice: bool,
    },
}

/// Where a typing notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// Everyone.
    Everyone,
    /// A room, by its name.
    Room(&'a str),
    /// A conversation with the recipient, named by the recipient's name.
    User(&'a str),
}

/// An event with its renderings, made on first use and shared by every recipient.
#[derive(Debug)]
pub struct Lines<'a> {
    /// What to render.
    event: Event<'a>,
    /// Names for IRC rendering.
    irc: &'a IrcNames,
    /// The kept message's id in the log, if the event carries one.
    id: Option<i64>,
    /// The natter lines, once rendered, by [`Flavor::native_slot`].
    natives: [OnceCell<Option<Bytes>>; NATIVE_FLAVORS],
    /// The IRC messages, once rendered, by the capability bits that matter to the event.
    irc_by_caps: [OnceCell<Option<Bytes>>; IRC_FLAVORS],
    /// When the event happened: a kept message's id says; otherwise taken on first use by a
    /// rendering that shows it.
    at: OnceCell<SystemTime>,
    /// The sender's client-only tags, escaped, for IRC clients with `message-tags`.
    client_tags: Option<&'a str>,
}

/// Something rendered once per flavor of recipient: one event, or a batch of them.
pub trait Render {
    /// The bytes for a recipient of `flavor`; `None` if such recipients see nothing.
    fn get(&self, flavor: Flavor) -> Option<&Bytes>;
}

impl Render for Lines<'_> {
    fn get(&self, flavor: Flavor) -> Option<&Bytes> {
        Lines::get(self, flavor)
    }
}

/// An event only natter's own clients see: IRC recipients get nothing of it (the everyone
/// channel's comings and goings once it is too large to announce them, see
/// [`crate::config::IrcConfig::everyone_presence`]).
pub struct NativesOnly<'r, R>(pub &'r R);

impl<R: Render> Render for NativesOnly<'_, R> {
    fn get(&self, flavor: Flavor) -> Option<&Bytes> {
        match flavor {
            Flavor::Irc { .. } => None,
            _ => self.0.get(flavor),
        }
    }
}

/// Several events that go to the same recipients, rendered as one buffer per flavor.
#[derive(Debug)]
pub struct Batch<'l, 'a> {
    /// The events, in order.
    events: &'l [Lines<'a>],
    /// One buffer per native flavor, once rendered (as in [`Lines`]), with where each event
    /// ends.
    natives: [OnceCell<Option<Rendered>>; NATIVE_FLAVORS],
    /// The same for each IRC flavor.
    irc_by_caps: [OnceCell<Option<Rendered>>; BATCH_FLAVORS],
}

/// A batch rendered for one flavor: the bytes, and the offset where each event's lines end.
type Rendered = (Bytes, Vec<usize>);

impl<'l, 'a> Batch<'l, 'a> {
    /// Wraps the events; nothing is rendered yet.
    pub fn new(events: &'l [Lines<'a>]) -> Self {
        Self {
            events,
            natives: Default::default(),
            irc_by_caps: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// The bytes for a recipient of `flavor`, and where in them each event's lines end, so
    /// that a recipient may be given only the lines after an event (`bytes.slice(end..)`).
    pub fn get_with_ends(&self, flavor: Flavor) -> Option<(&Bytes, &[usize])> {
        let cell = match flavor {
            Flavor::Native | Flavor::Tagged | Flavor::Multiline | Flavor::TaggedMultiline => {
                &self.natives[flavor.native_slot()]
            }
            Flavor::Irc { .. } => &self.irc_by_caps[flavor.irc_bits()],
            // Users on other nodes get their lines from their own node.
            Flavor::Remote => return None,
        };
        cell.get_or_init(|| {
            let mut out = bytes::BytesMut::new();
            let mut ends = Vec::with_capacity(self.events.len());
            for e in self.events {
                if let Some(b) = e.get(flavor) {
                    out.extend_from_slice(b);
                }
                ends.push(out.len());
            }
            (!out.is_empty()).then(|| (out.freeze(), ends))
        })
        .as_ref()
        .map(|(b, ends)| (b, &ends[..]))
    }
}

impl Render for Batch<'_, '_> {
    fn get(&self, flavor: Flavor) -> Option<&Bytes> {
        self.get_with_ends(flavor).map(|(b, _)| b)
    }
}

impl<'a> Lines<'a> {
    /// Wraps an event; nothing is rendered yet.
    pub fn new(event: Event<'a>, irc: &'a IrcNames) -> Self {
        Self::kept(event, irc, None)
    }

    /// Wraps an event that carries the message the log keeps as `id`, if any.
    pub fn kept(event: Event<'a>, irc: &'a IrcNames, id: Option<i64>) -> Self {
        let at = OnceCell::new();
        if let Some(id) = id {
            let _ = at.set(time_of(id));
        }
        Self {
            event,
            irc,
            id,
            natives: Default::default(),
            irc_by_caps: Default::default(),
            at,
            client_tags: None,
        }
    }

    /// The event with the sender's client-only tags (escaped, `+a=b;+c`), which IRC clients
    /// with `message-tags` get with it; none if `tags` is empty.
    pub fn with_client_tags(mut self, tags: &'a str) -> Self {
        self.client_tags = (!tags.is_empty()).then_some(tags);
        self
    }

    /// The capability bits that change how this event is written for IRC; the others are
    /// masked off, so clients that differ only in them share one rendering.
    fn relevant_bits(&self) -> usize {
        let msgid = if self.id.is_some() || self.client_tags.is_some() {
            MSGID
        } else {
            0
        };
        let lines = match self.event {
            Event::Message { text, .. } | Event::Dm { text, .. } | Event::Say { text, .. }
                if multiline::is_multiline(text) =>
            {
                MULTILINE
            }
            _ => 0,
        };
        TIME | msgid
            | lines
            | match self.event {
                Event::Message { from, .. } | Event::Dm { from, .. } | Event::Say { from, .. }
                    if from.account =>
                {
                    ACCOUNT_TAG
                }
                Event::Online {
                    in_everyone: true, ..
                }
                | Event::EveryoneMembership { joined: true, .. }
                | Event::Joined { .. } => EXTENDED_JOIN,
                Event::Account { .. } => ACCOUNT_NOTIFY,
                // Only clients with message-tags know TAGMSG.
                Event::Typing { .. } => MSGID,
                _ => 0,
            }
    }

    /// The bytes for a recipient of `flavor`; `None` if such recipients do not see this event.
    pub fn get(&self, flavor: Flavor) -> Option<&Bytes> {
        match flavor {
            Flavor::Native | Flavor::Multiline => self.natives[flavor.native_slot()]
                .get_or_init(|| native(&self.event, flavor.multiline())),
            Flavor::Tagged | Flavor::TaggedMultiline => {
                self.natives[flavor.native_slot()].get_or_init(|| {
                    let typing = typing_line(&self.event);
                    let lines = match &typing {
                        Some(t) => t,
                        None => self.get(Flavor::native(false, flavor.multiline()))?,
                    };
                    let at = timestamp(*self.at.get_or_init(SystemTime::now));
                    let mut out = bytes::BytesMut::with_capacity(lines.len() + 64);
                    // Each line of a message sent line by line carries the message's tags.
                    for line in lines.split_inclusive(|&b| b == b'\n') {
                        natter_proto::tags::write(&mut out, &at, self.id);
                        out.extend_from_slice(line);
                    }
                    Some(out.freeze())
                })
            }
            Flavor::Irc { .. } => {
                let bits = flavor.irc_bits() & self.relevant_bits();
                // No event is written differently for both extended-join and multiline.
                let slot = if bits & MULTILINE != 0 {
                    bits & !MULTILINE | EXTENDED_JOIN
                } else {
                    bits
                };
                self.irc_by_caps[slot].get_or_init(|| {
                    let at = (bits & TIME != 0).then(|| *self.at.get_or_init(SystemTime::now));
                    let msgid = self.id.filter(|_| bits & MSGID != 0);
                    let client = self.client_tags.filter(|_| bits & MSGID != 0);
                    irc(&self.event, self.irc, at, msgid, client, bits)
                })
            }
            Flavor::Remote => return None,
        }
        .as_ref()
    }
}

fn c(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// The `TYPING` line of a typing event (for natives that said `TAGS ON`); `None` for any
/// other event.
fn typing_line(e: &Event<'_>) -> Option<Bytes> {
    let Event::Typing {
        from, place, state, ..
    } = *e
    else {
        return None;
    };
    let place = match place {
        Place::Everyone => "*",
        Place::Room(r) => r,
        // The conversation is named as the recipient names it: by the other user.
        Place::User(_) => from.name,
    };
    Some(
        ServerLine::Typing {
            place: Cow::Borrowed(place),
            from: Cow::Borrowed(from.name),
            state: Cow::Borrowed(state),
        }
        .to_bytes(),
    )
}

/// The natter line of a message's text `text` (one of its lines, or all of it escaped).
fn text_line<'e>(e: &Event<'e>, text: &'e str) -> Option<ServerLine<'e>> {
    Some(match *e {
        Event::Message { from, .. } => ServerLine::Message {
            from: c(from.name),
            text: c(text),
        },
        Event::Dm { to, echo: true, .. } => ServerLine::Sent {
            to: c(to),
            text: c(text),
        },
        Event::Dm { from, .. } => ServerLine::Dm {
            from: c(from.name),
            text: c(text),
        },
        Event::Say { room, from, .. } => ServerLine::Say {
            room: c(room),
            from: c(from.name),
            text: c(text),
        },
        _ => return None,
    })
}

/// The natter lines of `e`: for `MULTILINE ON` readers (`escaped`) a message's text comes
/// escaped on one line; for the others, each of its lines that is not blank is one event line.
fn native(e: &Event<'_>, escaped: bool) -> Option<Bytes> {
    let line = match *e {
        Event::Message { text, .. } | Event::Dm { text, .. } | Event::Say { text, .. } => {
            if escaped {
                let text = multiline::escape(text);
                return Some(text_line(e, &text)?.to_bytes());
            }
            if !multiline::is_multiline(text) {
                return Some(text_line(e, text)?.to_bytes());
            }
            let mut out = bytes::BytesMut::with_capacity(text.len() + 64);
            for piece in multiline::lines(text) {
                text_line(e, piece)?.write_to(&mut out);
            }
            return Some(out.freeze());
        }
        Event::Online { who, .. } => ServerLine::Online { name: c(who.name) },
        Event::Offline { who, reason } => ServerLine::Offline {
            name: c(who.name),
            reason: c(if reason == DISCONNECTED { "" } else { reason }),
        },
        Event::Renamed { old, new } => ServerLine::Renamed {
            old: c(old.name),
            new: c(new),
        },
        // Typing reaches only natives that said TAGS ON (see `Lines::get`).
        Event::EveryoneMembership { .. }
        | Event::Account { .. }
        | Event::Ctcp { .. }
        | Event::Typing { .. } => {
            return None;
        }
        Event::Joined { room, who } => ServerLine::Joined {
            room: c(room),
            name: c(who.name),
        },
        Event::Parted {
            room, who, reason, ..
        } => ServerLine::Parted {
            room: c(room),
            name: c(who.name),
            reason: c(reason),
        },
        Event::Kicked {
            room,
            name,
            by,
            reason,
        } => ServerLine::Kicked {
            room: c(room),
            name: c(name),
            by: c(by.name),
            reason: c(reason),
        },
        Event::Topic { room, by, text } => ServerLine::Topic {
            room: c(room),
            by: c(by.name),
            text: c(text),
        },
        Event::Operator { room, name } => ServerLine::Operator {
            room: c(room),
            name: c(name),
        },
        // A new operator is the line natives have always had for one.
        Event::Mode { room, change, .. } if change.starts_with("+o ") => ServerLine::Operator {
            room: c(room),
            name: c(&change[3..]),
        },
        Event::Mode { room, by, change } => ServerLine::Mode {
            room: c(room),
            by: c(by.name),
            change: c(change),
        },
        Event::Invited { room, by, .. } => ServerLine::Invited {
            room: c(room),
            by: c(by.name),
        },
    };
    Some(line.to_bytes())
}

/// The IRC rendering of `e` for a client with the capability `bits` (those that matter to
/// it; see [`Lines::relevant_bits`]), `at` its time if `server-time` is among them.
fn irc<'e>(
    e: &Event<'e>,
    names: &'e IrcNames,
    at: Option<SystemTime>,
    msgid: Option<i64>,
    client: Option<&'e str>,
    bits: usize,
) -> Option<Bytes> {
    let verb = |notice: bool| if notice { "NOTICE" } else { "PRIVMSG" };
    let m = |who: Who<'_>| Cow::Owned(who.mask());
    // account-tag: the sender's account, if logged in (relevant_bits says so).
    let tag = |from: Who<'e>| Tags {
        at,
        account: (bits & ACCOUNT_TAG != 0).then_some(from.name),
        msgid,
        batch: None,
        client,
    };
    // extended-join: JOIN <channel> <account or *> :<real name>, the name standing for a
    // native's, which has none.
    let join = |who: Who<'e>, chan: &'e str| -> Vec<&'e str> {
        if bits & EXTENDED_JOIN != 0 {
            let real = who.real.unwrap_or(who.name);
            vec![chan, if who.account { who.name } else { "*" }, real]
        } else {
            vec![chan]
        }
    };
    let (source, cmd, args): (Cow<'_, str>, &str, Vec<&str>) = match *e {
        Event::Message { from, text, notice } => {
            return Some(irc_lines(
                tag(from),
                &from.mask(),
                verb(notice),
                &names.everyone,
                text,
                bits & MULTILINE != 0,
            ));
        }
        Event::Dm {
            from,
            to,
            text,
            notice,
            ..
        } => {
            return Some(irc_lines(
                tag(from),
                &from.mask(),
                verb(notice),
                to,
                text,
                bits & MULTILINE != 0,
            ));
        }
        Event::Say {
            room,
            from,
            text,
            notice,
        } => {
            return Some(irc_lines(
                tag(from),
                &from.mask(),
                verb(notice),
                room,
                text,
                bits & MULTILINE != 0,
            ));
        }
        Event::Online { who, in_everyone } => {
            if !in_everyone {
                return None;
            }
            (m(who), "JOIN", join(who, &names.everyone))
        }
        Event::Offline { who, reason } => (m(who), "QUIT", vec![reason]),
        Event::Renamed { old, new } => (m(old), "NICK", vec![new]),
        Event::EveryoneMembership { who, joined: true } => {
            (m(who), "JOIN", join(who, &names.everyone))
        }
        Event::EveryoneMembership { who, joined: false } => (m(who), "PART", vec![&names.everyone]),
        Event::Joined { room, who } => (m(who), "JOIN", join(who, room)),
        Event::Account { who } => {
            if bits & ACCOUNT_NOTIFY == 0 {
                return None;
            }
            (
                m(who),
                "ACCOUNT",
                vec![if who.account { who.name } else { "*" }],
            )
        }
        Event::Parted {
            disconnect: true, ..
        } => return None,
        Event::Parted {
            room, who, reason, ..
        } => {
            if reason.is_empty() {
                (m(who), "PART", vec![room])
            } else {
                (m(who), "PART", vec![room, reason])
            }
        }
        Event::Kicked {
            room,
            name,
            by,
            reason,
        } => (m(by), "KICK", vec![room, name, reason]),
        Event::Topic { room, by, text } => (m(by), "TOPIC", vec![room, text]),
        Event::Operator { room, name } => {
            (Cow::Borrowed(&names.server), "MODE", vec![room, "+o", name])
        }
        Event::Mode { room, by, change } => {
            let mut args = vec![room];
            args.extend(change.split(' '));
            (m(by), "MODE", args)
        }
        Event::Invited { room, by, to } => (m(by), "INVITE", vec![to, room]),
        Event::Typing {
            from,
            place,
            tags,
            msgid,
            ..
        } => {
            if bits & MSGID == 0 {
                return None;
            }
            let target = match place {
                Place::Everyone => names.everyone.as_str(),
                Place::Room(r) => r,
                Place::User(to) => to,
            };
            return Some(tagmsg(tags, msgid, at, &from.mask(), target));
        }
        Event::Ctcp {
            from,
            to,
            body,
            notice,
        } => {
            let body = format!("\u{1}{body}\u{1}");
            return Some(irc_message(
                at,
                Some(&from.mask()),
                verb(notice),
                &[to, &body],
            ));
        }
    };
    Some(irc_message(at, Some(&source), cmd, &args))
}

/// A message's text for IRC: a single line as [`irc_text`] writes it; several lines in one
/// `draft/multiline` batch for a client that has it (`batch`), else one message per line that
/// is not blank.
pub fn irc_lines(
    tags: Tags<'_>,
    source: &str,
    verb: &str,
    target: &str,
    text: &str,
    batch: bool,
) -> Bytes {
    if !multiline::is_multiline(text) {
        return irc_text(tags, source, verb, target, text);
    }
    let mut out = bytes::BytesMut::with_capacity(text.len() * 2 + 256);
    if !batch {
        // The message's id is on its first line only: a client that drops what it has seen
        // by msgid must not take the other lines for copies of the first.
        let mut tags = tags;
        for line in multiline::lines(text) {
            out.extend_from_slice(&irc_text(tags, source, verb, target, line));
            tags.msgid = None;
        }
        return out.freeze();
    }
    // Unique among this server's batches, so never one a client has open.
    static NEXT_BATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let reference = format!(
        "ml{}",
        NEXT_BATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    // The message's tags (time, account, msgid) go on the batch, which is the message.
    out.extend_from_slice(&irc_message_tagged(
        tags,
        Some(source),
        "BATCH",
        &[&format!("+{reference}"), "draft/multiline", target],
    ));
    let inner = Tags {
        batch: Some(&reference),
        ..Tags::default()
    };
    // ":source VERB target :" and CRLF around the text, and the batch tag before it.
    let room = natter_proto::irc::MAX_LINE
        .saturating_sub(source.len() + verb.len() + target.len() + 7)
        .max(64);
    for line in text.split('\n') {
        let mut first = true;
        let pieces = if line.len() <= room {
            vec![line]
        } else {
            split_bytes(line, room)
        };
        for piece in pieces {
            let mut line = irc_message_tagged(inner, Some(source), verb, &[target, piece]);
            if !first {
                // A piece of a line too long for one message joins the one before it.
                let mut joined = bytes::BytesMut::with_capacity(line.len() + 24);
                joined.extend_from_slice(b"@draft/multiline-concat;");
                joined.extend_from_slice(&line[1..]);
                line = joined.freeze();
            }
            first = false;
            out.extend_from_slice(&line);
        }
    }
    out.extend_from_slice(&irc_message(
        None,
        Some(source),
        "BATCH",
        &[&format!("-{reference}")],
    ));
    out.freeze()
}

/// `TAGMSG` from `source` to `target` with the client's tags (relayed as they came, already
/// escaped), its `msgid` and, for a client with `server-time`, `at`.
pub fn tagmsg(
    tags: &str,
    msgid: Option<i64>,
    at: Option<SystemTime>,
    source: &str,
    target: &str,
) -> Bytes {
    let mut line = format!("@{tags}");
    if let Some(id) = msgid {
        line.push_str(&format!(";msgid={id}"));
    }
    if let Some(t) = at {
        line.push_str(";time=");
        line.push_str(&timestamp(t));
    }
    line.push_str(&format!(" :{source} TAGMSG {target}\r\n"));
    Bytes::from(line)
}

/// `text` in pieces of at most `room` bytes, cut at character boundaries only: joined again
/// without anything between them, the pieces are the text, spaces included.
fn split_bytes(text: &str, room: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > room {
        let piece = natter_proto::text::prefix_within(rest, room);
        pieces.push(piece);
        rest = &rest[piece.len()..];
    }
    pieces.push(rest);
    pieces
}

/// A PRIVMSG or NOTICE, split into as many messages as IRC's 512-byte lines need (natter
/// texts may be eight times longer than an IRC line), at spaces, and inside a word only
/// when one word is longer than a line. A natter `/me ...` becomes a CTCP ACTION, each piece
/// one.
pub fn irc_text(tags: Tags<'_>, source: &str, verb: &str, target: &str, text: &str) -> Bytes {
    let action = if verb == "PRIVMSG" {
        text.strip_prefix("/me ")
    } else {
        None
    };
    let (text, wrap) = match action {
        Some(a) => (a, "\u{1}ACTION ".len() + 1),
        None => (text, 0),
    };
    // ":source VERB target :" and CRLF around the text.
    let room = natter_proto::irc::MAX_LINE
        .saturating_sub(source.len() + verb.len() + target.len() + 7 + wrap)
        .max(64);
    let message = |tags: Tags<'_>, piece: &str| {
        if wrap == 0 {
            irc_message_tagged(tags, Some(source), verb, &[target, piece])
        } else {
            let body = format!("\u{1}ACTION {piece}\u{1}");
            irc_message_tagged(tags, Some(source), verb, &[target, &body])
        }
    };
    if text.len() <= room {
        return message(tags, text);
    }
    let mut out = bytes::BytesMut::with_capacity(text.len() + 2 * room);
    // The msgid on the first piece only, as on the first line of several (`irc_lines`).
    let mut tags = tags;
    for piece in split_words(text, room) {
        out.extend_from_slice(&message(tags, piece));
        tags.msgid = None;
    }
    out.freeze()
}

/// `text` in pieces of at most `room` bytes, cut at spaces (which are dropped) where there
/// are any, else at a character boundary.
pub fn split_words(text: &str, room: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > room {
        let end = natter_proto::text::prefix_within(rest, room).len();
        // A space right after the piece ends it as well as one inside it.
        let space = rest.as_bytes()[..=end].iter().rposition(|&b| b == b' ');
        match space.filter(|&i| i > 0) {
            Some(space) => {
                pieces.push(&rest[..space]);
                rest = rest[space..].trim_start_matches(' ');
            }
            None => {
                pieces.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// The last line a killed client gets: `BYE KILLED ...` for a native client, IRC's
/// `ERROR :Closing Link: ...` for an IRC one.
pub fn kill_goodbye(irc: bool, name: &str, by: &str, comment: &str) -> Bytes {
    if irc {
        irc_message(
            None,
            None,
            "ERROR",
            &[&format!("Closing Link: {name} (Killed ({by} ({comment})))")],
        )
    } else {
        let text = kill_reason(by, comment);
        natter_proto::ServerLine::Bye {
            reason: natter_proto::ByeReason::Killed,
            text: std::borrow::Cow::Borrowed(&text),
        }
        .to_bytes()
    }
}

/// Why a killed user left, as others are told.
pub fn kill_reason(by: &str, comment: &str) -> String {
    if comment.is_empty() {
        format!("killed by {by}")
    } else {
        format!("killed by {by}: {comment}")
    }
}

/// Formats one IRC message with CRLF; `at` adds a `time` tag.
pub fn irc_message(
    at: Option<SystemTime>,
    source: Option<&str>,
    cmd: &str,
    args: &[&str],
) -> Bytes {
    irc_message_tagged(
        Tags {
            at,
            ..Tags::default()
        },
        source,
        cmd,
        args,
    )
}

/// The message tags natter writes: `server-time`'s and `account-tag`'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tags<'a> {
    /// `time=`, for clients with `server-time`.
    pub at: Option<SystemTime>,
    /// `account=`, for clients with `account-tag`, when the source is logged in.
    pub account: Option<&'a str>,
    /// `msgid=`, for clients with `message-tags`, when the message is kept.
    pub msgid: Option<i64>,
    /// `batch=`, for a message inside a batch.
    pub batch: Option<&'a str>,
    /// The sender's client-only tags (`+name=value;...`, escaped as received), for clients
    /// with `message-tags`.
    pub client: Option<&'a str>,
}

/// [`irc_message`] with any tags.
pub fn irc_message_tagged(tags: Tags<'_>, source: Option<&str>, cmd: &str, args: &[&str]) -> Bytes {
    let command = Command::Raw(cmd.to_owned(), args.iter().map(|a| clean(a)).collect());
    let mut list = Vec::new();
    if let Some(b) = tags.batch {
        list.push(Tag("batch".to_owned(), Some(b.to_owned())));
    }
    if let Some(a) = tags.account {
        list.push(Tag("account".to_owned(), Some(a.to_owned())));
    }
    if let Some(id) = tags.msgid {
        list.push(Tag("msgid".to_owned(), Some(id.to_string())));
    }
    if let Some(t) = tags.at {
        list.push(Tag("time".to_owned(), Some(timestamp(t))));
    }
    let msg = Message {
        tags: (!list.is_empty()).then_some(list),
        prefix: source.map(Into::into),
        command,
    };
    let line = msg.to_string();
    match tags.client.filter(|c| !c.is_empty()) {
        // Relayed as they came: they are escaped already.
        Some(client) => match line.strip_prefix('@') {
            Some(rest) => Bytes::from(format!("@{client};{rest}")),
            None => Bytes::from(format!("@{client} {line}")),
        },
        None => Bytes::from(line),
    }
}

/// IRC parameters may not hold CR, LF or NUL; natter text never does, but a last guard keeps
/// any such character from splitting a message.
fn clean(s: &str) -> String {
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        s.replace(['\r', '\n', '\0'], " ")
    } else {
        s.to_owned()
    }
}

/// When the message with log id `id` was sent.
pub fn time_of(id: i64) -> SystemTime {
    let ms = natter_store::MessageId(id).millis().max(0) as u64;
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// RFC 3339 UTC time with milliseconds, as IRCv3 `server-time` wants it.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names() -> IrcNames {
        IrcNames {
            server: "natter.test".into(),
            everyone: "#everyone".into(),
        }
    }

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_028_800_123);
        assert_eq!(timestamp(t), "2025-11-25T00:00:00.123Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn renders_each_flavor_once() {
        let n = names();
        let from = Who {
            name: "ann",
            ident: "ann",
            account: false,
            real: None,
        };
        let l = Lines::new(
            Event::Say {
                room: "#r",
                from,
                text: "hi there",
                notice: false,
            },
            &n,
        );
        assert_eq!(
            &l.get(Flavor::Native).unwrap()[..],
            b"SAY #r ann hi there\n"
        );
        assert_eq!(
            &l.get(Flavor::irc(false)).unwrap()[..],
            b":ann!ann@natter PRIVMSG #r :hi there\r\n"
        );
        let timed = l.get(Flavor::irc(true)).unwrap();
        assert!(timed.starts_with(b"@time="), "{timed:?}");
        assert!(std::ptr::eq(
            l.get(Flavor::Native).unwrap(),
            l.get(Flavor::Native).unwrap()
        ));
    }

    #[test]
    fn long_texts_are_split_for_irc() {
        let n = names();
        let text = "é".repeat(2000);
        let from = Who {
            name: "ann",
            ident: "ann",
            account: false,
            real: None,
        };
        let l = Lines::new(
            Event::Message {
                from,
                text: &text,
                notice: false,
            },
            &n,
        );
        let irc = l.get(Flavor::irc(false)).unwrap();
        let lines: Vec<&[u8]> = irc
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(lines.len() >= 8, "{}", lines.len());
        let mut joined = String::new();
        for line in lines {
            assert!(line.len() < 512, "{}", line.len());
            let s = std::str::from_utf8(line).unwrap().trim_end_matches('\r');
            let last = s
                .strip_prefix(":ann!ann@natter PRIVMSG #everyone ")
                .unwrap();
            joined.push_str(last.strip_prefix(':').unwrap_or(last));
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn long_texts_are_split_between_words_and_actions_stay_actions() {
        let words: Vec<String> = (0..400).map(|i| format!("w{i:04}")).collect();
        let text = words.join(" ");
        for (verb, body) in [
            ("PRIVMSG", text.clone()),
            ("PRIVMSG", format!("/me {text}")),
            ("NOTICE", text.clone()),
        ] {
            let out = irc_text(Tags::default(), "ann!ann@natter", verb, "#r", &body);
            let mut seen = Vec::new();
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(line.len() <= 512, "{} bytes", line.len());
                let s = std::str::from_utf8(line).unwrap().trim_end_matches('\r');
                let text = s.split_once(" :").unwrap().1;
                let text = if body.starts_with("/me ") {
                    text.strip_prefix("\u{1}ACTION ")
                        .and_then(|t| t.strip_suffix('\u{1}'))
                        .unwrap()
                } else {
                    text
                };
                seen.extend(text.split(' ').map(str::to_owned));
            }
            assert_eq!(seen, words, "{verb} {}", &body[..8]);
        }
        // One word longer than a line is cut where it must be, at a character boundary.
        let long = "é".repeat(600);
        let pieces = split_words(&long, 100);
        assert_eq!(pieces.concat(), long);
        assert!(pieces.iter().all(|p| p.len() <= 100));
        assert_eq!(split_words("a b", 1), ["a", "b"]);
    }

    #[test]
    fn some_events_are_for_one_side_only() {
        let n = names();
        let who = Who {
            name: "b",
            ident: "b",
            account: false,
            real: None,
        };
        let gone = Lines::new(
            Event::Parted {
                room: "#r",
                who,
                reason: "disconnected",
                disconnect: true,
            },
            &n,
        );
        assert!(gone.get(Flavor::Native).is_some());
        assert!(gone.get(Flavor::irc(false)).is_none());
        let joined = Lines::new(Event::EveryoneMembership { who, joined: true }, &n);
        assert!(joined.get(Flavor::Native).is_none());
        assert_eq!(
            &joined.get(Flavor::irc(false)).unwrap()[..],
            b":b!b@natter JOIN #everyone\r\n"
        );
    }
}
