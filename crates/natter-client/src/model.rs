//! The client's state and the pure reducer that changes it.
//!
//! Everything the window shows comes from [`Model`], and everything that changes it comes
//! through three doors: [`Model::on_net`] (a network event, usually a server line), the user
//! methods ([`Model::connect`], [`Model::register`], [`Model::submit`], ...), and nothing else.
//! The model never does I/O: what it wants sent waits in an outbox that the app drains with
//! [`Model::take_commands`]. The time is an argument, so tests run without a clock, a window
//! or a server.
//!
//! The protocol answers every command with exactly one final `OK` or `ERROR`, in order, after
//! any data lines. The model keeps a queue of the commands it sent (`Pending`) and pairs each
//! final line with the oldest one, which is how a `NAME_TAKEN` lands next to the name field and
//! a failed message is marked as failed.
//!
//! History: every connection starts with `TAGS ON`, so each event comes with the server's time
//! and each kept message with its id in the server's log. A conversation asks for its recent
//! history (`HISTORY`) when it is first opened, older pages when scrolled to the top, and
//! what it missed (`AFTER` the last id it holds) after a reconnect; messages are merged by id,
//! so none shows twice however it arrived.
//!
//! Texts of several lines: after `TAGS ON` comes `MULTILINE ON`, so a message of several lines
//! is one event whose text writes each line break as `\n` and each backslash as `\\`; the
//! model reads them back into real line breaks, and writes what is sent the same way.
//!
//! Typing: `TAGS ON` also brings `TYPING` lines; who is typing shows for 6 s unless they say
//! it again, and ends with their `done` or their message. While the user writes, the model
//! says `TYPING <target> active` at most every 3 s, and `done` when the box is emptied (a
//! sent message says it by itself), as the browser page does.
//!
//! Moderation: joining a room asks its modes (`MODE <room>`), which `MODE` lines keep up to
//! date, with members' voice and operator status and, once asked, the bans. An operator's
//! changes go as `MODE <room> <change>`, `INVITE` and `KICK`; every change, whoever made it,
//! reads as a sentence in the room ("ann made #den invite-only."), and a refusal as "Could
//! not ...: <the server's reason>".

use crate::input::{self, Action};
use crate::net::{LineTags, NetCommand, NetEvent};
use natter_proto::mode::{self, Change, Settings};
use natter_proto::{ByeReason, ErrorCode, ServerLine, multiline};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

/// A point in time, in the user's time zone.
pub type Stamp = chrono::DateTime<chrono::Local>;

/// The most lines one conversation keeps; older ones are dropped.
pub const MAX_LINES: usize = 5000;

/// Messages asked for in one page of history.
pub const PAGE: usize = 50;

/// Messages asked for in one page of what was missed during a reconnect: larger, since the
/// pages repeat until the conversation has caught up.
pub const CATCH_UP_PAGE: usize = 200;

/// How long someone shows as typing without a word from them (IRCv3's 6 seconds).
pub const TYPING_SHOWN: chrono::TimeDelta = chrono::TimeDelta::seconds(6);

/// How often we say again that we are typing, at most (IRCv3's 3 seconds).
pub const TYPING_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// The most people one conversation shows as typing: a flood of names is not kept.
const MAX_TYPISTS: usize = 50;

/// The most `BAN` lines kept from one answer (a server keeps at most 100 a room).
const MAX_BANS: usize = 500;

/// Which conversation: names and rooms are folded, since the protocol ignores their case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConvId {
    /// Everyone: `MESSAGE` to and from all registered users.
    Everyone,
    /// A room, by folded name.
    Room(String),
    /// Direct messages with one user, by folded name.
    Dm(String),
}

impl ConvId {
    /// The conversation of a room.
    pub fn room(name: &str) -> Self {
        Self::Room(natter_proto::room::fold(name))
    }

    /// The direct-message conversation with a user.
    pub fn dm(name: &str) -> Self {
        Self::Dm(natter_proto::name::fold(name))
    }
}

/// What became of a line we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Sent; the server has not answered yet.
    Sending,
    /// The server accepted it.
    Delivered,
    /// The server refused it (an error line follows it).
    Failed,
    /// The connection was lost before the answer: it may or may not have arrived.
    Unconfirmed,
}

/// What kind of line, which decides how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Someone else's text.
    Chat,
    /// Our own text, with its fate.
    Own(Delivery),
    /// Something that happened: joins, leaves, renames, topics, connection changes.
    Event,
    /// Something went wrong: an `ERROR` answer, a mistake in a command, a lost connection.
    Error,
    /// An answer we asked for: `/help`, `/list`, `/who`, `/rooms`.
    Info,
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unique in this model, so an answer can find the line it confirms.
    pub id: u64,
    /// When it arrived or was sent.
    pub at: Stamp,
    /// Who wrote it (chat lines only).
    pub from: Option<String>,
    /// The text, exactly as sent.
    pub text: String,
    /// How to show it.
    pub kind: LineKind,
    /// The message's id in the server's log, for a kept message.
    pub msg: Option<i64>,
    /// Someone else's chat line with our name in it as a word.
    pub mention: bool,
}

impl Line {
    /// For a chat line sent as `/me waves`, the action ("waves").
    pub fn action(&self) -> Option<&str> {
        self.from.as_ref()?;
        self.text.strip_prefix("/me ")
    }
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name as registered.
    pub name: String,
    /// Whether the member is one of the room's operators.
    pub op: bool,
    /// Whether the member has voice (may speak in a moderated room).
    pub voice: bool,
}

/// One ban of a room, from `BANS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The mask, in its full form (`bob!*@*`, `$a:bob`).
    pub mask: String,
    /// The operator who set it.
    pub by: String,
    /// When, as the server wrote it (RFC 3339).
    pub at: String,
}

/// Someone typing in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typist {
    /// The name, as the server wrote it.
    pub name: String,
    /// When they stop showing unless they say more.
    pub until: Stamp,
}

/// What the server's history has given a conversation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStatus {
    /// Not asked yet: asked when the conversation is first opened.
    NotAsked,
    /// The newest page is on its way.
    Loading,
    /// The newest page came; older ones come on scrolling up.
    Loaded,
    /// The server keeps none we may read (a guest's DM, a server without history) or could not
    /// read its store; asked again after the next sign-in.
    Unavailable,
}

/// A conversation's place in the server's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryState {
    /// How far it got.
    pub status: HistoryStatus,
    /// The oldest id of the pages received: older pages are asked for before it.
    pub floor: Option<i64>,
    /// Whether older messages may remain on the server (the last page was full).
    pub more: bool,
    /// An older page is on its way.
    pub loading_older: bool,
}

impl HistoryState {
    fn new() -> Self {
        Self {
            status: HistoryStatus::NotAsked,
            floor: None,
            more: false,
            loading_older: false,
        }
    }

    /// Whether older messages can be asked for now.
    pub fn can_load_older(&self) -> bool {
        self.status == HistoryStatus::Loaded
            && self.more
            && !self.loading_older
            && self.floor.is_some()
    }
}

/// One conversation: Everyone, a room or a DM partner.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// Which one.
    pub id: ConvId,
    /// Its name as shown: "Everyone", "#rust", "bob".
    pub title: String,
    /// The history, oldest first, at most [`MAX_LINES`].
    pub lines: VecDeque<Line>,
    /// Chat lines that arrived while another conversation was open.
    pub unread: usize,
    /// Those of the unread lines that mention us.
    pub mentioned: usize,
    /// Muted by the user: nothing here counts as unread or asks for attention.
    pub muted: bool,
    /// Rooms: we are a member (and rejoin after a reconnect). DMs: the partner is online.
    pub joined: bool,
    /// Rooms: the members, sorted by name ignoring case.
    pub members: Vec<Member>,
    /// Rooms: the topic, if one is set.
    pub topic: Option<String>,
    /// Its history on the server, as far as it was read.
    pub history: HistoryState,
    /// The first line (by [`Line::id`]) that arrived while this conversation was not on
    /// screen: the "new messages" marker goes above it.
    pub new_since: Option<u64>,
    /// Who said they are typing here, in the order they started.
    pub typing: Vec<Typist>,
    /// Rooms: the modes, once the server told them (asked on joining).
    pub modes: Option<Settings>,
    /// Rooms: the bans, once asked for (`BANS`), then kept up to date by `MODE` lines.
    pub bans: Option<Vec<Ban>>,
    /// The log ids of the lines, so a message that comes twice is shown once.
    ids: HashSet<i64>,
}

impl Conversation {
    fn new(id: ConvId, title: &str) -> Self {
        Self {
            joined: id == ConvId::Everyone,
            id,
            title: title.to_owned(),
            lines: VecDeque::new(),
            unread: 0,
            mentioned: 0,
            muted: false,
            members: Vec::new(),
            topic: None,
            history: HistoryState::new(),
            new_since: None,
            typing: Vec::new(),
            modes: None,
            bans: None,
            ids: HashSet::new(),
        }
    }

    /// The line above the message box: who is typing here at `now`, if anybody.
    pub fn typing_line(&self, now: Stamp) -> Option<String> {
        let mut names: Vec<&str> = self
            .typing
            .iter()
            .filter(|t| t.until > now)
            .map(|t| t.name.as_str())
            .collect();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        match names.as_slice() {
            [] => None,
            [one] => Some(format!("{one} is typing…")),
            [rest @ .., last] if names.len() <= 3 => {
                Some(format!("{} and {last} are typing…", rest.join(", ")))
            }
            _ => Some(format!("{} people are typing…", names.len())),
        }
    }

    /// `name` stopped typing here (said `done`, sent their message, left).
    fn stopped_typing(&mut self, name: &str) {
        self.typing.retain(|t| !same(&t.name, name));
    }

    /// Whether a message with this log id is among the lines.
    pub fn holds(&self, msg: i64) -> bool {
        self.ids.contains(&msg)
    }

    /// The newest log id among the lines.
    pub fn last_msg(&self) -> Option<i64> {
        self.lines.iter().rev().filter_map(|l| l.msg).max()
    }

    /// The target that names this conversation in `HISTORY` and `SEARCH`.
    fn target(&self) -> String {
        match self.id {
            ConvId::Everyone => "*".to_owned(),
            ConvId::Room(_) | ConvId::Dm(_) => self.title.clone(),
        }
    }

    /// Counts a chat line that came while another conversation was open.
    fn note_unseen(&mut self, line: &Line, active: bool) {
        if line.kind == LineKind::Chat && !active && !self.muted {
            self.unread += 1;
            self.mentioned += usize::from(line.mention);
            if self.new_since.is_none() {
                self.new_since = Some(line.id);
            }
        }
    }

    /// Whether this is a room.
    pub fn is_room(&self) -> bool {
        matches!(self.id, ConvId::Room(_))
    }

    /// Whether this is a direct-message conversation.
    pub fn is_dm(&self) -> bool {
        matches!(self.id, ConvId::Dm(_))
    }

    /// Adds a line at the end; false if it is a message already shown.
    fn push(&mut self, line: Line, active: bool) -> bool {
        if let Some(m) = line.msg
            && !self.ids.insert(m)
        {
            return false;
        }
        self.note_unseen(&line, active);
        self.lines.push_back(line);
        self.trim();
        true
    }

    /// Drops the oldest lines beyond [`MAX_LINES`]; the history then starts later again.
    fn trim(&mut self) {
        let mut dropped = false;
        while self.lines.len() > MAX_LINES {
            if let Some(m) = self.lines.pop_front().and_then(|l| l.msg) {
                self.ids.remove(&m);
                dropped = true;
            }
        }
        if dropped {
            self.history.floor = self.lines.iter().find_map(|l| l.msg);
            self.history.more = true;
        }
    }

    /// Merges messages from the server's log, each in its place by id (and, beside lines
    /// that are not messages, by time), skipping those already shown. `fresh`: they are
    /// new to the user (missed while disconnected, or waiting since the last login), so they
    /// count as unread like live ones. Returns how many were added.
    fn merge(&mut self, mut msgs: Vec<Line>, active: bool, fresh: bool) -> usize {
        msgs.sort_by_key(|l| l.msg);
        let mut added = 0;
        for line in msgs {
            let Some(m) = line.msg else { continue };
            if self.ids.contains(&m) {
                continue;
            }
            // The message is shown already, without its id: our own line whose answer the
            // lost connection never brought, or a line missed across a server restart, which
            // the restored session sends without tags.
            if let Some(shown) = self
                .lines
                .iter_mut()
                .find(|l| l.msg.is_none() && l.text == line.text && same_sender(l, &line))
            {
                shown.msg = Some(m);
                shown.at = line.at;
                if let LineKind::Own(_) = shown.kind {
                    shown.kind = LineKind::Own(Delivery::Delivered);
                }
                self.ids.insert(m);
                continue;
            }
            let after = |l: &Line| match l.msg {
                Some(id) => id > m,
                None => l.at > line.at,
            };
            let at = self
                .lines
                .iter()
                .rposition(|l| !after(l))
                .map_or(0, |i| i + 1);
            if fresh {
                let before_marker = self
                    .new_since
                    .and_then(|n| self.lines.iter().position(|l| l.id == n))
                    .is_some_and(|p| at <= p);
                if before_marker && line.kind == LineKind::Chat && !active {
                    self.new_since = Some(line.id);
                }
                self.note_unseen(&line, active);
            }
            self.ids.insert(m);
            self.lines.insert(at, line);
            added += 1;
        }
        self.trim();
        added
    }

    fn add_member(&mut self, name: &str, op: bool) {
        if let Some(m) = self.members.iter_mut().find(|m| same(&m.name, name)) {
            m.name = name.to_owned();
            m.op |= op;
            return;
        }
        self.members.push(Member {
            name: name.to_owned(),
            op,
            voice: false,
        });
        sort_members(&mut self.members);
    }

    fn remove_member(&mut self, name: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|m| !same(&m.name, name));
        before != self.members.len()
    }
}

/// One room in the server's directory (`ROOMS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its name.
    pub name: String,
    /// How many members it has.
    pub members: usize,
    /// Its topic, possibly empty.
    pub topic: String,
}

/// The state of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not connected and not trying: the connect screen.
    Idle,
    /// The first connection attempt is under way.
    Connecting,
    /// Connected; the server greeted us.
    Up,
    /// A connection that was up is gone; the network thread retries.
    Lost {
        /// Why the connection ended.
        error: String,
        /// Why the last attempt to reconnect failed, once one has.
        last_attempt: Option<String>,
        /// Failed attempts since the loss.
        attempt: u32,
        /// Until the next attempt, from `since`.
        retry_in: Duration,
        /// When this state began.
        since: Stamp,
    },
    /// Closed at the user's request.
    Closed,
}

/// Which screen the window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Host and port, and what went wrong with the last attempt.
    Connect,
    /// Choosing a name.
    Name,
    /// The conversations.
    Chat,
}

/// A command sent and not yet answered, with what its answer should update.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// `REGISTER`; `auto` when the model re-registers after a reconnect.
    Register { auto: bool, shown_in: ConvId },
    /// `LIST`; `shown_in` is `None` for the silent refresh after registering.
    List { shown_in: Option<ConvId> },
    /// `MESSAGE`, `SAY` or `DM` for the line with this id.
    Chat { line: u64, conv: ConvId },
    /// `JOIN`; `auto` when rejoining after a reconnect.
    Join {
        room: String,
        auto: bool,
        shown_in: ConvId,
    },
    /// `ROOMS`.
    Rooms { shown_in: Option<ConvId> },
    /// `TOPIC` without text: a question.
    TopicQuery { room: String, shown_in: ConvId },
    /// Any other command: its answer or error goes to `shown_in`.
    Other { shown_in: ConvId },
    /// `CLOSE`.
    Close,
    /// `SESSION`: the resume token.
    Session,
    /// `RESUME` after a reconnect.
    Resume,
    /// `LOGIN`; `typed` when the user typed the password (else a saved token signs in).
    Login { typed: bool, shown_in: ConvId },
    /// `ACCOUNT ...`.
    Account { shown_in: ConvId },
    /// `ACCOUNT TOKEN`, for the account `name`.
    Token { name: String },
    /// `LOGOUT`.
    Logout { shown_in: ConvId },
    /// `ACCOUNTS`.
    Accounts,
    /// `TAGS ON`.
    Tags,
    /// `MULTILINE ON`.
    Multiline,
    /// `TYPING`: its answer and any refusal are nobody's business.
    Typing,
    /// `MODE <room>`: the room's modes, asked on joining, or by `/mode` (said where it was
    /// typed).
    ModeQuery {
        room: String,
        shown_in: Option<ConvId>,
    },
    /// `BANS <room>`: for the bans window, or listed where `/bans` was typed (`say`).
    Bans {
        room: String,
        shown_in: ConvId,
        say: bool,
    },
    /// An operator's (or a member's) action on a room: a refusal says "Could not <what>".
    Moderate { what: String, shown_in: ConvId },
    /// `HISTORY` of a conversation: which page.
    History { conv: ConvId, page: Page },
    /// `SEARCH`, for these words.
    Search { words: String },
}

/// Which page of a conversation's history was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// The newest messages, on first opening.
    Latest,
    /// Older than this id: scrolled to the top.
    Before(i64),
    /// Newer than this id: what was missed while disconnected.
    After(i64),
}

impl Page {
    /// How many messages the page asks for.
    fn limit(self) -> usize {
        match self {
            Self::After(_) => CATCH_UP_PAGE,
            Self::Latest | Self::Before(_) => PAGE,
        }
    }
}

/// A `LOGGED` line: one message from the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    target: String,
    msg: i64,
    at: Stamp,
    from: String,
    text: String,
}

/// One message that a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The conversation it is in.
    pub conv: ConvId,
    /// That conversation's name as shown: "Everyone", "#rust", "bob".
    pub place: String,
    /// Its id in the server's log.
    pub msg: i64,
    /// When it was said.
    pub at: Stamp,
    /// Who said it.
    pub from: String,
    /// What was said.
    pub text: String,
}

/// A search and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The words, as sent.
    pub words: String,
    /// Newest first.
    pub found: Vec<Found>,
    /// The answer has not come yet.
    pub waiting: bool,
    /// Why there are no results, when the server could not search.
    pub error: Option<String>,
}

impl Pending {
    fn shown_in(&self) -> Option<&ConvId> {
        match self {
            Self::Register { shown_in, .. }
            | Self::Login { shown_in, .. }
            | Self::Account { shown_in }
            | Self::Logout { shown_in }
            | Self::Join { shown_in, .. }
            | Self::TopicQuery { shown_in, .. }
            | Self::Bans { shown_in, .. }
            | Self::Moderate { shown_in, .. }
            | Self::Other { shown_in } => Some(shown_in),
            Self::List { shown_in }
            | Self::Rooms { shown_in }
            | Self::ModeQuery { shown_in, .. } => shown_in.as_ref(),
            Self::Chat { conv, .. } => Some(conv),
            Self::Close
            | Self::Session
            | Self::Resume
            | Self::Token { .. }
            | Self::Accounts
            | Self::Tags
            | Self::Multiline
            | Self::Typing
            | Self::History { .. }
            | Self::Search { .. } => None,
        }
    }
}

/// A saved sign-in: an account's name and a token that logs into it (never the password).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignIn {
    /// The account's name.
    pub name: String,
    /// The token (`ACCOUNT TOKEN`'s).
    pub token: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A presence change, kept while a `LIST` is pending so it can be re-applied to the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Online(String),
    Offline(String),
    Renamed(String, String),
}

/// Muted conversations: by server (`host:port`), the keys of its muted conversations.
pub type Mutes = BTreeMap<String, BTreeSet<String>>;

/// How a conversation is named among the saved mutes: `*`, `#room` or `@name`, folded.
fn mute_key(id: &ConvId) -> String {
    match id {
        ConvId::Everyone => "*".to_owned(),
        ConvId::Room(r) => r.clone(),
        ConvId::Dm(n) => format!("@{n}"),
    }
}

/// Whether `text` mentions `me` as a word: not inside a longer name, ignoring ASCII case.
pub fn mentions(text: &str, me: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "[]\\`_^{|}-".contains(c)))
        .any(|w| w.eq_ignore_ascii_case(me))
}

/// Whether two names (or rooms) are the same, ignoring ASCII case as the protocol does.
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn sort_names(names: &mut [String]) {
    names.sort_by_key(|a| a.to_ascii_lowercase());
}

fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| {
        b.op.cmp(&a.op).then_with(|| {
            a.name
                .to_ascii_lowercase()
                .cmp(&b.name.to_ascii_lowercase())
        })
    });
}

/// The whole client state.
#[derive(Debug)]
pub struct Model {
    /// The server to connect to, as typed.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The connection.
    pub link: Link,
    /// The screen to show.
    pub screen: Screen,
    /// Why the last connection attempt failed, for the connect screen.
    pub connect_error: Option<String>,
    /// The server's answer to the last name tried, for the name screen.
    pub name_error: Option<String>,
    /// Our name: as registered, kept across a lost connection so it can be taken again.
    pub me: Option<String>,
    /// Whether `me` is registered on the current connection.
    pub registered: bool,
    /// Whether the last connection that came up is TLS.
    pub tls: bool,
    /// The server's greeting.
    pub greeting: Option<String>,
    /// Registered users online, sorted by name ignoring case.
    pub users: Vec<String>,
    /// Everyone first, then rooms and DMs in the order they were opened.
    pub conversations: Vec<Conversation>,
    /// The conversation on screen.
    pub active: ConvId,
    /// The server's rooms, from the last `ROOMS`.
    pub directory: Vec<RoomInfo>,
    /// Set when the user asked to quit and the server said goodbye: the app closes.
    pub quit: bool,
    /// The last search, while its results are on screen (until closed).
    pub search: Option<Search>,
    /// A message to bring into view (a search result that was chosen): its conversation and
    /// log id. The view scrolls to it once it is among the lines.
    pub focus: Option<(ConvId, i64)>,
    /// Whether the user asked to quit.
    quitting: bool,
    /// Commands sent and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// After a (re)connect, what to do once registered: refresh the lists, rejoin rooms.
    setup_due: bool,
    /// The server took `MULTILINE ON` on this connection: texts come and go escaped.
    multiline: bool,
    /// Where we last said we are typing, and when: said again after [`TYPING_EVERY`], and
    /// `done` there when the box is cleared or we write elsewhere.
    our_typing: Option<(ConvId, Stamp)>,
    /// The session's resume token (`SESSION`): a lost connection, or a server restart, is
    /// followed by `RESUME` instead of registering again, so nobody sees this user leave.
    session: Option<String>,
    /// The account this connection is signed into, if any.
    pub account: Option<String>,
    /// Saved sign-ins (an account's name and a token, never a password), by server
    /// (`host:port`): the app keeps them in the platform's config directory.
    sign_ins: BTreeMap<String, SignIn>,
    /// Set when `sign_ins` changed and should be saved.
    sign_ins_changed: bool,
    /// Muted conversations by server (`host:port`); the app keeps them in the config
    /// directory.
    mutes: Mutes,
    /// Set when `mutes` changed and should be saved.
    mutes_changed: bool,
    /// Set when a line mentioning us came; see [`Model::take_attention`].
    attention: bool,
    /// Those online who are logged into their name's account (folded names), from
    /// `ACCOUNTS`; the lists mark them.
    accounts: BTreeSet<String>,
    /// `ACCOUNT` lines of the answer being read.
    accounts_buf: Vec<String>,
    /// Someone arrived while an `ACCOUNTS` was pending: ask again once it is answered.
    accounts_stale: bool,
    /// `USER` lines of the answer being read.
    users_buf: Vec<String>,
    /// `MEMBER` lines of the answer being read.
    members_buf: Vec<Member>,
    /// `BAN` lines of the answer being read.
    bans_buf: Vec<Ban>,
    /// `ROOM` lines of the answer being read.
    rooms_buf: Vec<RoomInfo>,
    /// `HELP` lines of the answer being read.
    help_buf: Vec<String>,
    /// `LOGGED` lines of the `HISTORY` or `SEARCH` answer being read.
    logged_buf: Vec<Logged>,
    /// A `TOPIC` data line of the answer being read: (by, text).
    topic_buf: Option<(String, String)>,
    /// Presence events since the oldest pending `LIST` was sent.
    presence_log: Vec<Presence>,
    /// Commands for the network thread.
    outbox: Vec<NetCommand>,
    /// The next line id.
    next_id: u64,
}

impl Model {
    /// A model for the server at `host:port`, not connected.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            link: Link::Idle,
            screen: Screen::Connect,
            connect_error: None,
            name_error: None,
            me: None,
            registered: false,
            tls: false,
            greeting: None,
            users: Vec::new(),
            conversations: vec![Conversation::new(ConvId::Everyone, "Everyone")],
            active: ConvId::Everyone,
            directory: Vec::new(),
            quit: false,
            search: None,
            focus: None,
            quitting: false,
            pending: VecDeque::new(),
            setup_due: false,
            multiline: false,
            our_typing: None,
            session: None,
            account: None,
            sign_ins: BTreeMap::new(),
            sign_ins_changed: false,
            mutes: Mutes::new(),
            mutes_changed: false,
            attention: false,
            accounts: BTreeSet::new(),
            accounts_buf: Vec::new(),
            accounts_stale: false,
            users_buf: Vec::new(),
            members_buf: Vec::new(),
            bans_buf: Vec::new(),
            rooms_buf: Vec::new(),
            help_buf: Vec::new(),
            logged_buf: Vec::new(),
            topic_buf: None,
            presence_log: Vec::new(),
            outbox: Vec::new(),
            next_id: 1,
        }
    }

    /// What the network thread should do, in order; empties the outbox.
    pub fn take_commands(&mut self) -> Vec<NetCommand> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether lines can be sent now.
    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    /// A conversation by id.
    pub fn conversation(&self, id: &ConvId) -> Option<&Conversation> {
        self.conversations.iter().find(|c| &c.id == id)
    }

    /// The conversation on screen.
    pub fn active_conversation(&self) -> &Conversation {
        self.conversation(&self.active)
            .unwrap_or(&self.conversations[0])
    }

    /// Unread chat lines in every conversation.
    pub fn total_unread(&self) -> usize {
        self.conversations.iter().map(|c| c.unread).sum()
    }

    /// Unread chat lines that mention us, in every conversation.
    pub fn total_mentions(&self) -> usize {
        self.conversations.iter().map(|c| c.mentioned).sum()
    }

    /// Whether a line that mentions us came (in a conversation not muted) since the last
    /// call: the app asks for the window system's attention if the window is not focused.
    pub fn take_attention(&mut self) -> bool {
        std::mem::take(&mut self.attention)
    }

    /// Mutes or unmutes a conversation, and remembers that for this server.
    pub fn set_muted(&mut self, id: &ConvId, muted: bool) {
        let key = self.server_key();
        let Some(c) = self.conv_mut(id) else {
            return;
        };
        c.muted = muted;
        if muted {
            c.unread = 0;
            c.mentioned = 0;
        }
        let saved = self.mutes.entry(key.clone()).or_default();
        if muted {
            saved.insert(mute_key(id));
        } else {
            saved.remove(&mute_key(id));
            if saved.is_empty() {
                self.mutes.remove(&key);
            }
        }
        self.mutes_changed = true;
    }

    /// The muted conversations by server (`host:port`), as the app loaded them.
    pub fn set_mutes(&mut self, mutes: Mutes) {
        self.mutes = mutes;
        let saved = self
            .mutes
            .get(&self.server_key())
            .cloned()
            .unwrap_or_default();
        for c in &mut self.conversations {
            c.muted = saved.contains(&mute_key(&c.id));
        }
    }

    /// The muted conversations, if they changed since the last call (for the app to save).
    pub fn take_mutes_change(&mut self) -> Option<&Mutes> {
        std::mem::take(&mut self.mutes_changed).then_some(&self.mutes)
    }

    /// Whether the conversation `id` is muted on this server.
    fn saved_mute(&self, id: &ConvId) -> bool {
        self.mutes
            .get(&self.server_key())
            .is_some_and(|m| m.contains(&mute_key(id)))
    }

    /// Whether the server gave this session a resume token: a lost connection is then
    /// taken back with `RESUME`, unseen by others.
    pub fn resumable(&self) -> bool {
        self.session.is_some()
    }

    /// Whether `name` is us.
    pub fn is_me(&self, name: &str) -> bool {
        self.me.as_deref().is_some_and(|me| same(me, name))
    }

    fn conv_mut(&mut self, id: &ConvId) -> Option<&mut Conversation> {
        self.conversations.iter_mut().find(|c| &c.id == id)
    }

    /// The conversation `id`, created with `title` if it does not exist.
    fn ensure(&mut self, id: ConvId, title: &str) -> &mut Conversation {
        let i = match self.conversations.iter().position(|c| c.id == id) {
            Some(i) => i,
            None => {
                let mut conv = Conversation::new(id.clone(), title);
                conv.muted = self.saved_mute(&id);
                // Rooms go before DMs, after the other rooms.
                let at = if conv.is_room() {
                    self.conversations
                        .iter()
                        .position(|c| c.is_dm())
                        .unwrap_or(self.conversations.len())
                } else {
                    self.conversations.len()
                };
                self.conversations.insert(at, conv);
                at
            }
        };
        &mut self.conversations[i]
    }

    fn line(&mut self, at: Stamp, from: Option<&str>, text: &str, kind: LineKind) -> Line {
        let id = self.next_id;
        self.next_id += 1;
        Line {
            id,
            at,
            from: from.map(str::to_owned),
            text: text.to_owned(),
            mention: kind == LineKind::Chat
                && self.me.as_deref().is_some_and(|me| mentions(text, me)),
            kind,
            msg: None,
        }
    }

    /// Adds a line to a conversation that exists (Everyone if it does not); returns its id.
    fn push(
        &mut self,
        conv: &ConvId,
        at: Stamp,
        from: Option<&str>,
        text: &str,
        kind: LineKind,
    ) -> u64 {
        let line = self.line(at, from, text, kind);
        self.push_line(conv, line)
    }

    /// Adds a kept message with its log id, unless its conversation shows it already.
    fn push_msg(
        &mut self,
        conv: &ConvId,
        at: Stamp,
        from: &str,
        text: &str,
        kind: LineKind,
        msg: Option<i64>,
    ) {
        let mut line = self.line(at, Some(from), text, kind);
        line.msg = msg;
        self.push_line(conv, line);
    }

    fn push_line(&mut self, conv: &ConvId, line: Line) -> u64 {
        let id = line.id;
        let active = &self.active == conv;
        let mention = line.mention;
        let c = match self.conversations.iter().position(|c| &c.id == conv) {
            Some(i) => {
                self.conversations[i].push(line, active);
                &self.conversations[i]
            }
            None => {
                let active = self.active == ConvId::Everyone;
                self.conversations[0].push(line, active);
                &self.conversations[0]
            }
        };
        self.attention |= mention && !c.muted;
        id
    }

    /// How a chat line from `from` is shown: as ours when another connection of this
    /// account sent it.
    fn kind_from(&self, from: &str) -> LineKind {
        if self.is_me(from) {
            LineKind::Own(Delivery::Delivered)
        } else {
            LineKind::Chat
        }
    }

    fn event(&mut self, conv: &ConvId, at: Stamp, text: &str) {
        self.push(conv, at, None, text, LineKind::Event);
    }

    fn error(&mut self, conv: &ConvId, at: Stamp, text: &str) {
        self.push(conv, at, None, text, LineKind::Error);
    }

    fn info(&mut self, conv: &ConvId, at: Stamp, text: &str) {
        self.push(conv, at, None, text, LineKind::Info);
    }

    fn send(&mut self, line: String, pending: Pending) {
        self.pending.push_back(pending);
        self.outbox.push(NetCommand::Send(line));
    }

    // ---- user actions ----------------------------------------------------------------------

    /// Connect to `host` and `port` (as typed on the connect screen).
    pub fn connect(&mut self, host: &str, port: &str) {
        let host = host.trim();
        if host.is_empty() {
            self.connect_error = Some("Type the server's host name or address.".into());
            return;
        }
        let port_text = port.trim();
        let port = match port_text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                self.connect_error =
                    Some(crate::net::ConnectError::BadPort(port_text.to_owned()).to_string());
                return;
            }
        };
        self.host = host.to_owned();
        self.port = port;
        self.connect_error = None;
        self.link = Link::Connecting;
        self.outbox.push(NetCommand::Connect {
            host: host.to_owned(),
            port,
        });
    }

    /// Ask for `name` (the name screen's button).
    pub fn register(&mut self, name: &str) {
        let name = name.trim();
        if name.is_empty() {
            self.name_error = Some("Type a name first.".into());
            return;
        }
        if !self.is_up() {
            self.name_error = Some("Not connected yet; wait a moment and try again.".into());
            return;
        }
        if self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Register { .. }))
        {
            return; // one at a time: the answer decides what happens next
        }
        self.name_error = None;
        self.send(
            format!("REGISTER {name}"),
            Pending::Register {
                auto: false,
                shown_in: self.active.clone(),
            },
        );
    }

    /// Whether a name is being asked for and not yet answered.
    pub fn registering(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p, Pending::Register { .. } | Pending::Login { .. }))
    }

    /// Whether `name` is online and logged into its account (the lists mark it).
    pub fn is_account(&self, name: &str) -> bool {
        self.accounts.contains(&name.to_ascii_lowercase())
    }

    /// Asks who is logged into an account, or, if that is being asked already, asks again
    /// once it is answered.
    fn refresh_accounts(&mut self) {
        if self.pending.iter().any(|p| matches!(p, Pending::Accounts)) {
            self.accounts_stale = true;
        } else {
            self.send("ACCOUNTS".into(), Pending::Accounts);
        }
    }

    /// The name screen's button: `name`, signed into its account if `password` is given.
    pub fn sign_in(&mut self, name: &str, password: &str) {
        if password.is_empty() {
            return self.register(name);
        }
        let name = name.trim();
        if name.is_empty() {
            self.name_error = Some("Type your account's name first.".into());
            return;
        }
        if !self.is_up() {
            self.name_error = Some("Not connected yet; wait a moment and try again.".into());
            return;
        }
        if self.registering() {
            return;
        }
        self.name_error = None;
        self.send(
            format!("LOGIN {name} {password}"),
            Pending::Login {
                typed: true,
                shown_in: self.active.clone(),
            },
        );
    }

    /// The saved sign-ins, as the app loaded them.
    pub fn set_sign_ins(&mut self, sign_ins: BTreeMap<String, SignIn>) {
        self.sign_ins = sign_ins;
    }

    /// The saved sign-ins, if they changed since the last call (for the app to save).
    pub fn take_sign_ins_change(&mut self) -> Option<&BTreeMap<String, SignIn>> {
        std::mem::take(&mut self.sign_ins_changed).then_some(&self.sign_ins)
    }

    /// The saved sign-in for this server.
    pub fn saved_sign_in(&self) -> Option<&SignIn> {
        self.sign_ins.get(&self.server_key())
    }

    fn server_key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn save_sign_in(&mut self, sign_in: Option<SignIn>) {
        let key = self.server_key();
        match sign_in {
            Some(s) => self.sign_ins.insert(key, s),
            None => self.sign_ins.remove(&key),
        };
        self.sign_ins_changed = true;
    }

    /// Logs in with the saved token for `name`, if there is one; whether it did.
    fn login_with_saved(&mut self, name: Option<&str>) -> bool {
        let Some(saved) = self.saved_sign_in().cloned() else {
            return false;
        };
        if name.is_some_and(|n| !same(n, &saved.name)) {
            return false;
        }
        self.send(
            format!("LOGIN {} {}", saved.name, saved.token),
            Pending::Login {
                typed: false,
                shown_in: ConvId::Everyone,
            },
        );
        true
    }

    /// The conversation `step` places below the open one in the list (above if negative),
    /// wrapping around the ends; `None` if there is no other.
    pub fn neighbour(&self, step: isize) -> Option<ConvId> {
        let n = self.conversations.len();
        if n < 2 {
            return None;
        }
        let at = self
            .conversations
            .iter()
            .position(|c| c.id == self.active)
            .unwrap_or(0);
        let to = (at as isize + step).rem_euclid(n as isize) as usize;
        Some(self.conversations[to].id.clone())
    }

    /// Opens a conversation and marks it read; the first time, asks for its history.
    pub fn open(&mut self, id: &ConvId) {
        if self.conversation(id).is_none() {
            return;
        }
        if &self.active != id {
            // What was new in the conversation being left has been seen now.
            let left = self.active.clone();
            if let Some(c) = self.conv_mut(&left) {
                c.new_since = None;
            }
        }
        if let Some(c) = self.conv_mut(id) {
            c.unread = 0;
            c.mentioned = 0;
        }
        self.active = id.clone();
        self.focus = None;
        self.want_history();
    }

    // ---- history -----------------------------------------------------------------------------

    /// Asks for what the open conversation needs from the server's history: its newest page
    /// when it is first opened, and older pages while a chosen search result is older still.
    fn want_history(&mut self) {
        if !(self.is_up() && self.registered) {
            return;
        }
        let active = self.active.clone();
        let Some(c) = self.conversation(&active) else {
            return;
        };
        if c.history.status == HistoryStatus::NotAsked && (!c.is_room() || c.joined) {
            self.ask_history(&active, Page::Latest);
            return;
        }
        if let Some((conv, msg)) = &self.focus
            && conv == &active
            && !c.holds(*msg)
            && c.history.floor.is_some_and(|f| f > *msg)
        {
            self.load_older(&active);
        }
    }

    fn ask_history(&mut self, conv: &ConvId, page: Page) {
        let Some(c) = self.conv_mut(conv) else {
            return;
        };
        let mut line = format!("HISTORY {} {}", c.target(), page.limit());
        match page {
            Page::Latest => c.history.status = HistoryStatus::Loading,
            Page::Before(id) => {
                c.history.loading_older = true;
                line.push_str(&format!(" BEFORE {id}"));
            }
            Page::After(id) => line.push_str(&format!(" AFTER {id}")),
        }
        self.send(
            line,
            Pending::History {
                conv: conv.clone(),
                page,
            },
        );
    }

    /// Asks for the page of messages before the oldest one shown; the view calls this when
    /// the conversation is scrolled to its top. Does nothing while a page is on its way or
    /// when the last one was the start of the conversation.
    pub fn load_older(&mut self, id: &ConvId) {
        if !(self.is_up() && self.registered) {
            return;
        }
        let Some(c) = self.conversation(id) else {
            return;
        };
        if !c.history.can_load_older() {
            return;
        }
        if let Some(floor) = c.history.floor {
            self.ask_history(id, Page::Before(floor));
        }
    }

    /// After a reconnect: asks every conversation that holds messages for those after the
    /// last one it has, so that nothing said meanwhile is missing.
    fn catch_up(&mut self) {
        let wanted: Vec<(ConvId, i64)> = self
            .conversations
            .iter()
            .filter_map(|c| {
                let loaded = c.history.status == HistoryStatus::Loaded;
                let last = c.last_msg().or(loaded.then_some(0))?;
                Some((c.id.clone(), last))
            })
            .collect();
        for (id, last) in wanted {
            self.ask_history(&id, Page::After(last));
        }
    }

    /// A new sign-in may read what the last one could not (a DM once logged in).
    fn retry_unavailable_history(&mut self) {
        for c in &mut self.conversations {
            if c.history.status == HistoryStatus::Unavailable {
                c.history.status = HistoryStatus::NotAsked;
            }
        }
    }

    /// A line for a message from the log.
    fn logged_line(&mut self, l: &Logged) -> Line {
        let kind = self.kind_from(&l.from);
        let mut line = self.line(l.at, Some(&l.from), &l.text, kind);
        line.msg = Some(l.msg);
        line
    }

    /// A page of history came: merge it, and note where the history now stands.
    fn on_history(&mut self, conv: &ConvId, page: Page) {
        let got = std::mem::take(&mut self.logged_buf);
        let full = got.len() >= page.limit();
        let lines: Vec<Line> = got.iter().map(|l| self.logged_line(l)).collect();
        let oldest = lines.iter().filter_map(|l| l.msg).min();
        let newest = lines.iter().filter_map(|l| l.msg).max();
        let active = &self.active == conv;
        let Some(c) = self.conv_mut(conv) else {
            return;
        };
        c.merge(lines, active, matches!(page, Page::After(_)));
        match page {
            Page::Latest => {
                c.history.status = HistoryStatus::Loaded;
                c.history.floor = oldest;
                c.history.more = full;
            }
            Page::Before(_) => {
                c.history.loading_older = false;
                if oldest.is_some() {
                    c.history.floor = oldest;
                }
                c.history.more = full;
            }
            // A full page: more was missed than one page holds.
            Page::After(_) => {
                if full && let Some(last) = newest {
                    self.ask_history(conv, Page::After(last));
                }
            }
        }
    }

    /// A DM that waited for this account while it was offline, after `LOGIN`: shown in its
    /// conversation at the time it was sent, and new to the user.
    fn on_waiting_dm(&mut self, l: &Logged) {
        if l.target == "*" || l.target.starts_with('#') {
            return; // not asked for, and nowhere to go
        }
        let line = self.logged_line(l);
        let id = self.ensure(ConvId::dm(&l.target), &l.target).id.clone();
        let active = self.active == id;
        if let Some(c) = self.conv_mut(&id) {
            c.merge(vec![line], active, true);
        }
    }

    /// Searches everything the user may read for messages holding every one of `words`; the
    /// results replace the last search's.
    pub fn search(&mut self, words: &str) {
        let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
        if words.is_empty() {
            return;
        }
        let up = self.is_up() && self.registered;
        self.search = Some(Search {
            words: words.clone(),
            found: Vec::new(),
            waiting: up,
            error: (!up)
                .then(|| "Not connected right now; search again once reconnected.".to_owned()),
        });
        if up {
            self.send(format!("SEARCH {words}"), Pending::Search { words });
        }
    }

    /// Closes the search results.
    pub fn close_search(&mut self) {
        self.search = None;
    }

    /// Opens the conversation of the `i`th search result and brings the message into view,
    /// paging back through the history if it is older than what is shown.
    pub fn open_found(&mut self, i: usize) {
        let Some(f) = self.search.as_ref().and_then(|s| s.found.get(i)).cloned() else {
            return;
        };
        match &f.conv {
            ConvId::Dm(_) => self.open_dm(&f.place),
            ConvId::Everyone => self.open(&f.conv),
            ConvId::Room(_) => {
                self.ensure(f.conv.clone(), &f.place);
                self.open(&f.conv);
            }
        }
        self.focus = Some((f.conv, f.msg));
        self.want_history();
    }

    fn on_found(&mut self, words: &str) {
        let got = std::mem::take(&mut self.logged_buf);
        let Some(s) = &mut self.search else {
            return;
        };
        if s.words != words {
            return; // an earlier search, replaced meanwhile
        }
        s.waiting = false;
        s.found = got
            .into_iter()
            .map(|l| Found {
                conv: conv_of_target(&l.target),
                place: if l.target == "*" {
                    "Everyone".to_owned()
                } else {
                    l.target
                },
                msg: l.msg,
                at: l.at,
                from: l.from,
                text: l.text,
            })
            .collect();
    }

    /// Opens (creating if needed) the DM conversation with `name`.
    pub fn open_dm(&mut self, name: &str) {
        let id = ConvId::dm(name);
        let online = self.users.iter().any(|u| same(u, name));
        let title = self
            .users
            .iter()
            .find(|u| same(u, name))
            .cloned()
            .unwrap_or_else(|| name.to_owned());
        let c = self.ensure(id.clone(), &title);
        c.joined = online;
        self.open(&id);
    }

    /// Removes a DM conversation or a room that was left; leaves a joined room first.
    pub fn close_conversation(&mut self, id: &ConvId, now: Stamp) {
        if *id == ConvId::Everyone {
            return;
        }
        if let Some(c) = self.conversation(id)
            && c.is_room()
            && c.joined
        {
            let room = c.title.clone();
            self.part(&room, None, now);
        }
        self.conversations.retain(|c| &c.id != id);
        if &self.active == id {
            self.active = ConvId::Everyone;
            self.conversations[0].unread = 0;
            self.conversations[0].mentioned = 0;
        }
    }

    /// Joins `room` (the `#` is added if missing).
    pub fn join(&mut self, room: &str, now: Stamp) {
        let room = input::room_name(room.trim());
        if !self.require_up(now) {
            return;
        }
        if let Some(c) = self.conversation(&ConvId::room(&room))
            && c.joined
        {
            let id = c.id.clone();
            self.open(&id);
            return;
        }
        self.send(
            format!("JOIN {room}"),
            Pending::Join {
                room,
                auto: false,
                shown_in: self.active.clone(),
            },
        );
    }

    /// Leaves `room`.
    pub fn part(&mut self, room: &str, reason: Option<&str>, now: Stamp) {
        if !self.require_up(now) {
            return;
        }
        let line = match reason {
            Some(r) => format!("PART {room} {r}"),
            None => format!("PART {room}"),
        };
        self.send(
            line,
            Pending::Other {
                shown_in: ConvId::room(room),
            },
        );
    }

    /// Asks for the room directory.
    pub fn refresh_rooms(&mut self) {
        if self.is_up() && self.registered {
            self.send("ROOMS".into(), Pending::Rooms { shown_in: None });
        }
    }

    /// Skips the reconnect wait.
    pub fn retry_now(&mut self) {
        self.outbox.push(NetCommand::RetryNow);
    }

    /// Closes the connection and returns to the connect screen.
    pub fn disconnect(&mut self) {
        self.outbox.push(NetCommand::Close);
    }

    /// Says goodbye to the server; [`Model::quit`] is set when it is done.
    pub fn request_quit(&mut self) {
        self.quitting = true;
        if self.is_up() {
            self.pending.push_back(Pending::Close);
            self.outbox.push(NetCommand::Close);
        } else {
            self.quit = true;
        }
    }

    /// False (after saying why in the open conversation) when not connected and registered.
    fn require_up(&mut self, now: Stamp) -> bool {
        if self.is_up() && self.registered {
            return true;
        }
        let active = self.active.clone();
        self.error(
            &active,
            now,
            "Not connected right now; your text is kept, send it again once reconnected.",
        );
        false
    }

    /// Handles what was typed in the message box; true when the box should be cleared.
    pub fn submit(&mut self, text: &str, now: Stamp) -> bool {
        let sent = self.submit_action(text, now);
        if sent {
            // What was sent says we are done: the others stop showing us when it comes.
            self.our_typing = None;
        }
        sent
    }

    /// The message box now holds `text`: tells the others in the open conversation that we
    /// are typing (`active`, at most every [`TYPING_EVERY`]), or that we stopped (`done`)
    /// when the box is empty or holds a command.
    pub fn typed(&mut self, text: &str, now: Stamp) {
        if !(self.is_up() && self.registered) {
            return;
        }
        let c = self.active_conversation();
        // A room we left, or a partner who is offline, would only refuse it.
        if !c.joined {
            return;
        }
        let here = c.id.clone();
        let target = c.target();
        let writing = !text.trim().is_empty() && !text.starts_with('/');
        if !writing {
            self.stop_typing();
            return;
        }
        let due = match &self.our_typing {
            Some((id, at)) => *id != here || now - *at >= TYPING_EVERY || now < *at,
            None => true,
        };
        if due {
            // Another conversation: done there first. The same one just says it again.
            if self.our_typing.as_ref().is_some_and(|(id, _)| *id != here) {
                self.stop_typing();
            }
            self.our_typing = Some((here, now));
            self.send(format!("TYPING {target} active"), Pending::Typing);
        }
    }

    /// Says `done` where we last said we were typing, if we did.
    fn stop_typing(&mut self) {
        let Some((id, _)) = self.our_typing.take() else {
            return;
        };
        if let Some(c) = self.conversation(&id)
            && c.joined
            && self.is_up()
            && self.registered
        {
            let target = c.target();
            self.send(format!("TYPING {target} done"), Pending::Typing);
        }
    }

    /// `TYPING <where> <from> <state>`: someone else typing, pausing or done, as of `now`
    /// (our clock, not the server's: the line expires by ours).
    fn on_typing(&mut self, place: &str, from: &str, state: &str, now: Stamp) {
        if self.is_me(from) {
            return;
        }
        let Some(c) = self.conv_mut(&conv_of_target(place)) else {
            return;
        };
        c.typing.retain(|t| t.until > now && !same(&t.name, from));
        if state == "active" {
            if c.typing.len() >= MAX_TYPISTS {
                c.typing.remove(0);
            }
            c.typing.push(Typist {
                name: from.to_owned(),
                until: now + TYPING_SHOWN,
            });
        }
    }

    // ---- moderation ------------------------------------------------------------------------

    /// Whether we are an operator of the room `id`.
    pub fn is_op(&self, id: &ConvId) -> bool {
        self.conversation(id)
            .is_some_and(|c| c.joined && c.members.iter().any(|m| m.op && self.is_me(&m.name)))
    }

    /// Whether we may set the topic of the room `id`: as an operator, or as a member of a
    /// `-t` room.
    pub fn can_set_topic(&self, id: &ConvId) -> bool {
        self.is_op(id)
            || self.conversation(id).is_some_and(|c| {
                c.is_room() && c.joined && c.modes.as_ref().is_some_and(|m| !m.topic_ops)
            })
    }

    /// Sends a moderation command about `room`; a refusal is shown there as "Could not
    /// <what>: <the server's reason>".
    fn moderate(&mut self, room: &str, line: String, what: String, now: Stamp) {
        self.moderate_in(ConvId::room(room), line, what, now);
    }

    /// As [`Self::moderate`], with a refusal shown in `shown_in` (where a command was typed).
    fn moderate_in(&mut self, shown_in: ConvId, line: String, what: String, now: Stamp) {
        if !self.require_up(now) {
            return;
        }
        self.send(line, Pending::Moderate { what, shown_in });
    }

    /// The room a `/verb` acts on: the one named, else the open one; without either, says so
    /// in the open conversation.
    fn room_for(&mut self, verb: &str, room: Option<String>, now: Stamp) -> Option<String> {
        if room.is_some() {
            return room;
        }
        match self.active_conversation() {
            c if c.is_room() => Some(c.title.clone()),
            _ => {
                let active = self.active.clone();
                let text = format!("/{verb}: name a room (#name) or open one first");
                self.error(&active, now, &text);
                None
            }
        }
    }

    /// One change of a room's modes, as `MODE` writes it: `+i`, `-k`, `+l 20`, `+v bob`;
    /// `what` says it for a refusal ("make #den invite-only").
    pub fn set_mode(&mut self, room: &str, change: &str, what: &str, now: Stamp) {
        self.moderate(room, format!("MODE {room} {change}"), what.to_owned(), now);
    }

    /// Sets a room's key, or says why the key cannot be one (a word of visible characters).
    pub fn set_key(&mut self, room: &str, key: &str, now: Stamp) {
        match one_word(key) {
            Some(k) => self.set_mode(
                room,
                &format!("+k {k}"),
                &format!("set a key on {room}"),
                now,
            ),
            None => self.error(
                &ConvId::room(room),
                now,
                "A key is one word of visible characters, without spaces.",
            ),
        }
    }

    /// Limits a room to `limit` members, or says why that is no number.
    pub fn set_limit(&mut self, room: &str, limit: &str, now: Stamp) {
        match limit.trim().parse::<u32>() {
            Ok(n) if n > 0 => self.set_mode(
                room,
                &format!("+l {n}"),
                &format!("limit {room} to {n} members"),
                now,
            ),
            _ => self.error(
                &ConvId::room(room),
                now,
                "A member limit is a number from 1.",
            ),
        }
    }

    /// Invites `user` into `room`.
    pub fn invite(&mut self, room: &str, user: &str, now: Stamp) {
        match one_word(user) {
            Some(u) => self.moderate(
                room,
                format!("INVITE {room} {u}"),
                format!("invite {u}"),
                now,
            ),
            None => self.error(&ConvId::room(room), now, "Name the one to invite."),
        }
    }

    /// Bans the member `name` from `room`: by account if they are signed into one (it holds
    /// whatever name they take next), else by name from anywhere.
    pub fn ban(&mut self, room: &str, name: &str, now: Stamp) {
        let mask = self.ban_mask(name);
        self.set_mode(room, &format!("+b {mask}"), &format!("ban {name}"), now);
    }

    /// The mask that bans `name`: its account if it is signed into one, else the name.
    fn ban_mask(&self, name: &str) -> String {
        if self.is_account(name) {
            format!("$a:{name}")
        } else {
            format!("{name}!*@*")
        }
    }

    /// The masks `/unban name` lifts: those of the known bans that hold the name or its
    /// account, or, with the bans not asked yet, both forms (lifting a ban that is not
    /// there changes nothing). Empty when the known bans hold neither.
    fn unban_masks(&self, room: &str, name: &str) -> Vec<String> {
        let forms = [format!("{name}!*@*"), format!("$a:{name}")];
        match self
            .conversation(&ConvId::room(room))
            .and_then(|c| c.bans.as_ref())
        {
            Some(bans) => bans
                .iter()
                .filter(|b| forms.iter().any(|f| same(&b.mask, f)))
                .map(|b| b.mask.clone())
                .collect(),
            None => forms.into(),
        }
    }

    /// Removes `name` from `room`.
    pub fn kick(&mut self, room: &str, name: &str, now: Stamp) {
        self.moderate(
            room,
            format!("KICK {room} {name}"),
            format!("remove {name} from {room}"),
            now,
        );
    }

    /// Sets the topic of `room`.
    pub fn set_topic(&mut self, room: &str, text: &str, now: Stamp) {
        // One line: a line break would end the command.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.moderate(
            room,
            format!("TOPIC {room} {text}"),
            format!("set the topic of {room}"),
            now,
        );
    }

    /// Asks for the bans of `room`; they come as [`Conversation::bans`].
    pub fn ask_bans(&mut self, room: &str, now: Stamp) {
        if !self.require_up(now) {
            return;
        }
        self.send(
            format!("BANS {room}"),
            Pending::Bans {
                room: room.to_owned(),
                shown_in: ConvId::room(room),
                say: false,
            },
        );
    }

    /// `MODE <room> <by> <change> [arg]`: applied to what we know of the room, and said as a
    /// sentence in it.
    fn on_mode(&mut self, room: &str, by: &str, change: &str, now: Stamp) {
        let id = ConvId::room(room);
        let (word, arg) = match change.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (change, None),
        };
        let Ok(parsed) = mode::parse_one(word, arg) else {
            self.event(
                &id,
                now,
                &format!("{by} changed a mode of {room}: {change}"),
            );
            return;
        };
        let me_by = self.is_me(by);
        let Some(c) = self.conv_mut(&id) else {
            return;
        };
        match &parsed {
            Change::Voice { on, name } => {
                if let Some(m) = c.members.iter_mut().find(|m| same(&m.name, name)) {
                    m.voice = *on;
                }
            }
            Change::Op { on, name } => {
                if let Some(m) = c.members.iter_mut().find(|m| same(&m.name, name)) {
                    m.op = *on;
                }
                sort_members(&mut c.members);
            }
            Change::Ban { on, mask } => {
                if let Some(bans) = &mut c.bans {
                    bans.retain(|b| !same(&b.mask, mask));
                    if *on && bans.len() < MAX_BANS {
                        bans.push(Ban {
                            mask: (*mask).to_owned(),
                            by: by.to_owned(),
                            at: now.to_rfc3339(),
                        });
                    }
                }
            }
            Change::ListBans => {}
            flags => {
                if let Some(m) = &mut c.modes {
                    m.apply(flags);
                }
            }
        }
        let who = if me_by {
            "You".to_owned()
        } else {
            by.to_owned()
        };
        let text = self.mode_sentence(&who, room, &parsed);
        self.event(&id, now, &text);
    }

    /// A mode change as a sentence ("ann made #den invite-only."), not as `MODE` writes it.
    fn mode_sentence(&self, who: &str, r: &str, change: &Change<'_>) -> String {
        let target = |name: &str| {
            if self.is_me(name) {
                "you".to_owned()
            } else {
                name.to_owned()
            }
        };
        match *change {
            Change::Flag { on, flag } => {
                let what = match (flag.letter(), on) {
                    ('i', true) => format!("made {r} invite-only"),
                    ('i', false) => format!("opened {r}: no invitation is needed to join"),
                    ('m', true) => {
                        format!("made {r} moderated: only operators and voiced members may speak")
                    }
                    ('m', false) => format!("made {r} unmoderated: every member may speak"),
                    ('s', true) => format!("made {r} secret: it is hidden from those outside it"),
                    ('s', false) => format!("made {r} no longer secret"),
                    ('n', true) => format!("let only members speak in {r}"),
                    ('n', false) => format!("let everyone speak in {r}, members or not"),
                    ('t', true) => format!("let only operators set the topic of {r}"),
                    (_, _) => format!("let every member set the topic of {r}"),
                };
                format!("{who} {what}.")
            }
            Change::Key(Some(_)) => format!("{who} set a key on {r}: joining needs it."),
            Change::Key(None) => format!("{who} removed the key of {r}."),
            Change::Limit(Some(n)) => format!("{who} limited {r} to {n} members."),
            Change::Limit(None) => format!("{who} removed the member limit of {r}."),
            Change::Ban { on: true, mask } => match mask.strip_prefix("$a:") {
                Some(account) => format!("{who} banned the account {account} from {r}."),
                None => format!("{who} banned {mask} from {r}."),
            },
            Change::Ban { on: false, mask } => format!("{who} lifted the ban on {mask}."),
            Change::Voice { on: true, name } => format!("{who} gave {} voice.", target(name)),
            Change::Voice { on: false, name } => {
                format!("{who} took voice from {}.", target(name))
            }
            Change::Op { on: true, name } => {
                format!("{who} made {} an operator of {r}.", target(name))
            }
            Change::Op { on: false, name } => {
                format!("{who} took operator status from {}.", target(name))
            }
            Change::ListBans => format!("{who} listed the bans of {r}."),
        }
    }

    fn submit_action(&mut self, text: &str, now: Stamp) -> bool {
        let active = self.active.clone();
        let action = match input::parse(text) {
            Ok(Some(a)) => a,
            Ok(None) => return false,
            Err(msg) => {
                self.error(&active, now, &msg);
                return false;
            }
        };
        match action {
            Action::Help(None) => {
                self.info(&active, now, "Commands (type them in the message box):");
                for (usage, what) in input::COMMANDS {
                    self.info(&active, now, &format!("{usage}\t{what}"));
                }
                return true;
            }
            Action::OpenDm(name) => {
                self.open_dm(&name);
                return true;
            }
            Action::Quit => {
                self.request_quit();
                return true;
            }
            Action::Search(words) => {
                self.search(&words);
                return true;
            }
            _ => {}
        }
        if !self.require_up(now) {
            return false;
        }
        let here = || Pending::Other {
            shown_in: active.clone(),
        };
        match action {
            Action::Login { name, password } => self.send(
                format!("LOGIN {name} {password}"),
                Pending::Login {
                    typed: true,
                    shown_in: active.clone(),
                },
            ),
            Action::Account(what) => self.send(
                format!("ACCOUNT {what}"),
                Pending::Account {
                    shown_in: active.clone(),
                },
            ),
            Action::Logout => self.send(
                "LOGOUT".into(),
                Pending::Logout {
                    shown_in: active.clone(),
                },
            ),
            Action::Say(text) => self.say(text, now),
            Action::Dm { to, text } => {
                self.open_dm(&to);
                self.say(text, now);
            }
            Action::Join(room) => self.join(&room, now),
            Action::Part { room, reason } => {
                let Some(room) = self.room_for("part", room, now) else {
                    return false;
                };
                self.part(&room, reason.as_deref(), now);
            }
            Action::List => self.send(
                "LIST".into(),
                Pending::List {
                    shown_in: Some(active.clone()),
                },
            ),
            Action::Rooms => self.send(
                "ROOMS".into(),
                Pending::Rooms {
                    shown_in: Some(active.clone()),
                },
            ),
            Action::Who(room) => {
                let Some(room) = self.room_for("who", room, now) else {
                    return false;
                };
                self.send(format!("WHO {room}"), here());
            }
            Action::Topic { room, text } => {
                let Some(room) = self.room_for("topic", room, now) else {
                    return false;
                };
                match text {
                    Some(t) => self.send(format!("TOPIC {room} {t}"), here()),
                    None => self.send(
                        format!("TOPIC {room}"),
                        Pending::TopicQuery {
                            room,
                            shown_in: active.clone(),
                        },
                    ),
                }
            }
            Action::Kick { room, user, reason } => {
                let Some(room) = self.room_for("kick", room, now) else {
                    return false;
                };
                let line = match reason {
                    Some(r) => format!("KICK {room} {user} {r}"),
                    None => format!("KICK {room} {user}"),
                };
                self.send(line, here());
            }
            Action::Mode { room, change } => {
                // `/op bob` is `+o bob`: a refusal names what was typed.
                let verb = match change.as_deref().and_then(|c| c.get(..2)) {
                    Some("+o") => "op",
                    Some("-o") => "deop",
                    Some("+v") => "voice",
                    Some("-v") => "devoice",
                    _ => "mode",
                };
                let Some(room) = self.room_for(verb, room, now) else {
                    return false;
                };
                match change {
                    Some(change) => {
                        let what = format!("change the modes of {room} ({change})");
                        self.moderate_in(active, format!("MODE {room} {change}"), what, now);
                    }
                    None => self.send(
                        format!("MODE {room}"),
                        Pending::ModeQuery {
                            room,
                            shown_in: Some(active),
                        },
                    ),
                }
            }
            Action::Ban { room, who } => {
                let Some(room) = self.room_for("ban", room, now) else {
                    return false;
                };
                let mask = if is_mask(&who) {
                    who.clone()
                } else {
                    self.ban_mask(&who)
                };
                let line = format!("MODE {room} +b {mask}");
                self.moderate_in(active, line, format!("ban {who}"), now);
            }
            Action::Unban { room, who } => {
                let Some(room) = self.room_for("unban", room, now) else {
                    return false;
                };
                let masks = if is_mask(&who) {
                    vec![who.clone()]
                } else {
                    self.unban_masks(&room, &who)
                };
                if masks.is_empty() {
                    let text = format!("No ban of {room} holds {who}; /bans lists them.");
                    self.error(&active, now, &text);
                    return false;
                }
                for mask in masks {
                    let line = format!("MODE {room} -b {mask}");
                    self.moderate_in(active.clone(), line, format!("lift the ban on {who}"), now);
                }
            }
            Action::Bans(room) => {
                let Some(room) = self.room_for("bans", room, now) else {
                    return false;
                };
                self.send(
                    format!("BANS {room}"),
                    Pending::Bans {
                        room,
                        shown_in: active,
                        say: true,
                    },
                );
            }
            Action::Invite { user, room } => {
                let Some(room) = self.room_for("invite", room, now) else {
                    return false;
                };
                let line = format!("INVITE {room} {user}");
                self.moderate_in(active, line, format!("invite {user} to {room}"), now);
            }
            Action::Name(name) => self.send(
                format!("REGISTER {name}"),
                Pending::Register {
                    auto: false,
                    shown_in: active.clone(),
                },
            ),
            Action::Help(Some(word)) => self.send(format!("HELP {word}"), here()),
            Action::Raw(line) => {
                self.info(&active, now, &format!("> {line}"));
                if line.trim().eq_ignore_ascii_case("CLOSE") {
                    self.pending.push_back(Pending::Close);
                    self.outbox.push(NetCommand::Send(line));
                } else {
                    self.send(line, here());
                }
            }
            Action::Help(None) | Action::OpenDm(_) | Action::Quit | Action::Search(_) => {
                unreachable!("handled above")
            }
        }
        true
    }

    /// A message's text as this connection's events carry it, its line breaks back.
    fn read_text(&self, text: &str) -> String {
        if self.multiline {
            multiline::unescape(text).into_owned()
        } else {
            text.to_owned()
        }
    }

    /// Sends chat text to the open conversation and shows it there at once.
    fn say(&mut self, text: String, now: Stamp) {
        let text = tidy_text(&text);
        if text.trim().is_empty() {
            return;
        }
        if text.contains('\n') && !self.multiline {
            // A server without MULTILINE: one message a line, as it passes them on itself.
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                self.say(line.to_owned(), now);
            }
            return;
        }
        let wire = if self.multiline {
            multiline::escape(&text).into_owned()
        } else {
            text.clone()
        };
        let conv = self.active_conversation();
        let (line, id) = match &conv.id {
            ConvId::Everyone => (format!("MESSAGE {wire}"), conv.id.clone()),
            ConvId::Room(_) if !conv.joined => {
                let msg = format!("You are not in {}; /join {} first.", conv.title, conv.title);
                let id = conv.id.clone();
                self.error(&id, now, &msg);
                return;
            }
            ConvId::Room(_) => (format!("SAY {} {wire}", conv.title), conv.id.clone()),
            ConvId::Dm(_) => (format!("DM {} {wire}", conv.title), conv.id.clone()),
        };
        let me = self.me.clone();
        let line_id = self.push(
            &id,
            now,
            me.as_deref(),
            &text,
            LineKind::Own(Delivery::Sending),
        );
        self.send(
            line,
            Pending::Chat {
                line: line_id,
                conv: id,
            },
        );
    }

    fn set_delivery(&mut self, conv: &ConvId, line: u64, d: Delivery) {
        // Look in its conversation first; it may have been renamed meanwhile, so then anywhere.
        let (here, elsewhere): (Vec<_>, Vec<_>) =
            self.conversations.iter_mut().partition(|c| &c.id == conv);
        let found = here
            .into_iter()
            .chain(elsewhere)
            .flat_map(|c| c.lines.iter_mut().rev())
            .find(|l| l.id == line);
        if let Some(l) = found {
            l.kind = LineKind::Own(d);
        }
    }

    /// Our line was kept (or at least delivered): it takes the log id and the server's time
    /// from the answer's tags, so the history shows it once, where it belongs.
    fn confirm(&mut self, conv: &ConvId, line: u64, msg: Option<i64>, at: Option<Stamp>) {
        let (here, elsewhere): (Vec<_>, Vec<_>) =
            self.conversations.iter_mut().partition(|c| &c.id == conv);
        for c in here.into_iter().chain(elsewhere) {
            if let Some(l) = c.lines.iter_mut().rev().find(|l| l.id == line) {
                l.kind = LineKind::Own(Delivery::Delivered);
                if let Some(m) = msg {
                    l.msg = Some(m);
                    c.ids.insert(m);
                }
                if let Some(at) = at {
                    l.at = at;
                }
                return;
            }
        }
    }

    /// The conversation a chat line went to, wherever it is now.
    fn conv_of_line(&self, line: u64) -> Option<ConvId> {
        self.conversations
            .iter()
            .find(|c| c.lines.iter().rev().any(|l| l.id == line))
            .map(|c| c.id.clone())
    }

    // ---- the network -----------------------------------------------------------------------

    /// Applies one event from the network thread.
    pub fn on_net(&mut self, ev: NetEvent, now: Stamp) {
        match ev {
            NetEvent::Connected { tls, .. } => {
                self.tls = tls;
                self.on_connected();
            }
            NetEvent::Line(line, tags) => self.on_line(line, &tags, now),
            NetEvent::Garbled(text) => self.error(
                &ConvId::Everyone,
                now,
                &format!("The server sent a line this client does not understand: {text}"),
            ),
            NetEvent::Failed(e) => {
                self.link = Link::Idle;
                self.connect_error = Some(e.to_string());
                self.screen = Screen::Connect;
            }
            NetEvent::Lost {
                error,
                attempt,
                retry_in,
            } => self.on_lost(error, attempt, retry_in, now),
            NetEvent::Closed => {
                if self.quitting {
                    self.quit = true;
                    self.link = Link::Closed;
                } else {
                    let (host, port) = (self.host.clone(), self.port);
                    // What the app loaded from disk outlives the connection.
                    let sign_ins = std::mem::take(&mut self.sign_ins);
                    let mutes = std::mem::take(&mut self.mutes);
                    *self = Self::new(&host, port);
                    self.set_sign_ins(sign_ins);
                    self.set_mutes(mutes);
                    self.link = Link::Closed;
                }
            }
        }
        self.want_history();
    }

    fn on_connected(&mut self) {
        self.link = Link::Up;
        self.connect_error = None;
        self.pending.clear();
        self.clear_buffers();
        // Whoever typed before the connection was lost is not known to type now.
        self.our_typing = None;
        for c in &mut self.conversations {
            c.typing.clear();
        }
        self.registered = false;
        self.setup_due = true;
        // First, so that every event after it comes with its time and message id.
        self.send("TAGS ON".into(), Pending::Tags);
        // Texts of several lines as one event each; a server that does not know it refuses,
        // and its texts are read as they come.
        self.multiline = false;
        self.send("MULTILINE ON".into(), Pending::Multiline);
        match self.me.clone() {
            // The session waits for us: take it back, with what it missed.
            Some(_) if self.session.is_some() => {
                let token = self.session.clone().unwrap_or_default();
                self.send(format!("RESUME {token}"), Pending::Resume);
            }
            // An account's name is taken back by logging in with the saved token.
            Some(name) if self.login_with_saved(Some(&name)) => {}
            // The banner says "signing in again" meanwhile; the answer gets a line.
            Some(name) => {
                self.send(
                    format!("REGISTER {name}"),
                    Pending::Register {
                        auto: true,
                        shown_in: ConvId::Everyone,
                    },
                );
            }
            None => {
                self.screen = Screen::Name;
                // Signed in on an earlier run: sign in again by itself.
                self.login_with_saved(None);
            }
        }
    }

    fn clear_buffers(&mut self) {
        self.users_buf.clear();
        self.members_buf.clear();
        self.bans_buf.clear();
        self.rooms_buf.clear();
        self.help_buf.clear();
        self.logged_buf.clear();
        self.topic_buf = None;
        self.presence_log.clear();
    }

    fn on_lost(&mut self, error: String, attempt: u32, retry_in: Duration, now: Stamp) {
        if let Link::Lost { error: reason, .. } = &self.link {
            self.link = Link::Lost {
                error: reason.clone(),
                last_attempt: Some(error),
                attempt,
                retry_in,
                since: now,
            };
            return;
        }
        self.link = Link::Lost {
            error: error.clone(),
            last_attempt: None,
            attempt,
            retry_in,
            since: now,
        };
        self.registered = false;
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Chat { line, conv } => {
                    self.set_delivery(&conv, line, Delivery::Unconfirmed);
                }
                // Asked again once reconnected.
                Pending::History { conv, page } => {
                    if let Some(c) = self.conv_mut(&conv) {
                        match page {
                            Page::Latest => c.history.status = HistoryStatus::NotAsked,
                            Page::Before(_) => c.history.loading_older = false,
                            Page::After(_) => {}
                        }
                    }
                }
                Pending::Search { .. } => {
                    if let Some(s) = &mut self.search {
                        s.waiting = false;
                        s.error =
                            Some("The connection was lost; search again once reconnected.".into());
                    }
                }
                _ => {}
            }
        }
        self.clear_buffers();
        self.users.clear();
        for c in &mut self.conversations {
            c.members.clear();
        }
        let note = format!("Disconnected: {error}. Reconnecting…");
        self.error(&ConvId::Everyone, now, &note);
        if self.active != ConvId::Everyone {
            let active = self.active.clone();
            self.error(&active, now, &note);
        }
    }

    /// Applies one server line with its tags: the server's time, when given, is the line's.
    pub fn on_line(&mut self, line: ServerLine<'_>, tags: &LineTags, now: Stamp) {
        let clock = now;
        let now = tags.time.as_deref().and_then(parse_time).unwrap_or(now);
        let msg = tags.id;
        match line {
            ServerLine::Hello { text } => self.greeting = Some(text.into_owned()),
            ServerLine::Ok { verb, detail } => self.on_ok(&verb, &detail, tags, now),
            ServerLine::Error { code, text } => self.on_error(code, &text, now),
            ServerLine::Help { text } => self.help_buf.push(text.into_owned()),
            ServerLine::User { name } => self.users_buf.push(name.into_owned()),
            ServerLine::Account { name } => self.accounts_buf.push(name.to_ascii_lowercase()),
            ServerLine::Member {
                name, op, voice, ..
            } => self.members_buf.push(Member {
                name: name.into_owned(),
                op,
                voice,
            }),
            ServerLine::Room {
                room,
                members,
                topic,
            } => self.rooms_buf.push(RoomInfo {
                name: room.into_owned(),
                members,
                topic: topic.into_owned(),
            }),
            ServerLine::Message { from, text } => {
                let text = self.read_text(&text);
                let kind = self.kind_from(&from);
                self.conversations[0].stopped_typing(&from);
                self.push_msg(&ConvId::Everyone, now, &from, &text, kind, msg);
            }
            ServerLine::Sent { to, text } => {
                let text = self.read_text(&text);
                // Sent from another connection of this account.
                let id = self.ensure(ConvId::dm(&to), &to).id.clone();
                let me = self.me.clone().unwrap_or_default();
                let kind = LineKind::Own(Delivery::Delivered);
                self.push_msg(&id, now, &me, &text, kind, msg);
            }
            ServerLine::Dm { from, text } => {
                let text = self.read_text(&text);
                let online = self.users.iter().any(|u| same(u, &from));
                let c = self.ensure(ConvId::dm(&from), &from);
                c.title = from.to_string();
                c.joined = online || c.joined;
                c.stopped_typing(&from);
                let id = c.id.clone();
                self.push_msg(&id, now, &from, &text, LineKind::Chat, msg);
            }
            ServerLine::Say { room, from, text } => {
                let text = self.read_text(&text);
                let kind = self.kind_from(&from);
                let c = self.ensure(ConvId::room(&room), &room);
                c.stopped_typing(&from);
                let id = c.id.clone();
                self.push_msg(&id, now, &from, &text, kind, msg);
            }
            ServerLine::Online { name } => {
                self.log_presence(Presence::Online(name.to_string()));
                self.user_online(&name);
                self.refresh_accounts();
                self.event(&ConvId::Everyone, now, &format!("{name} is online"));
                let dm = ConvId::dm(&name);
                if let Some(c) = self.conv_mut(&dm) {
                    c.joined = true;
                    self.event(&dm, now, &format!("{name} is back online"));
                }
            }
            ServerLine::Offline { name, reason } => {
                self.log_presence(Presence::Offline(name.to_string()));
                self.user_offline(&name);
                for c in &mut self.conversations {
                    c.stopped_typing(&name);
                }
                // The reason is the leaver's own words (an IRC quit message): quoted, so it
                // cannot pass for the client's.
                let text = if reason.is_empty() {
                    format!("{name} went offline")
                } else {
                    format!("{name} went offline: \u{201c}{reason}\u{201d}")
                };
                self.event(&ConvId::Everyone, now, &text);
                let dm = ConvId::dm(&name);
                if let Some(c) = self.conv_mut(&dm) {
                    c.joined = false;
                    self.event(&dm, now, &text);
                }
            }
            ServerLine::Renamed { old, new } => {
                self.log_presence(Presence::Renamed(old.to_string(), new.to_string()));
                self.on_renamed(&old, &new, now);
                self.refresh_accounts();
            }
            ServerLine::Joined { room, name } if self.is_me(&name) => {
                // Joined from another connection of this account, or told on logging in.
                let c = self.ensure(ConvId::room(&room), &room);
                c.joined = true;
                c.add_member(&name, false);
                let id = c.id.clone();
                self.event(&id, now, &format!("You are in {room}"));
                self.sync_directory(&room);
                self.send(format!("WHO {room}"), Pending::Other { shown_in: id });
                self.send(
                    format!("MODE {room}"),
                    Pending::ModeQuery {
                        room: room.to_string(),
                        shown_in: None,
                    },
                );
            }
            ServerLine::Parted { room, name, .. } if self.is_me(&name) => {
                let id = ConvId::room(&room);
                if let Some(c) = self.conv_mut(&id) {
                    c.joined = false;
                    c.members.clear();
                    c.modes = None;
                    c.bans = None;
                    self.event(&id, now, &format!("You left {room}"));
                    self.sync_directory(&room);
                }
            }
            ServerLine::Joined { room, name } => {
                let id = ConvId::room(&room);
                if let Some(c) = self.conv_mut(&id) {
                    c.add_member(&name, false);
                    self.event(&id, now, &format!("{name} joined {room}"));
                    self.sync_directory(&room);
                }
            }
            ServerLine::Parted { room, name, reason } => {
                let id = ConvId::room(&room);
                if let Some(c) = self.conv_mut(&id) {
                    c.remove_member(&name);
                    c.stopped_typing(&name);
                    let msg = if reason.is_empty() {
                        format!("{name} left {room}")
                    } else {
                        format!("{name} left {room} ({reason})")
                    };
                    self.event(&id, now, &msg);
                    self.sync_directory(&room);
                }
            }
            ServerLine::Kicked {
                room,
                name,
                by,
                reason,
            } => self.on_kicked(&room, &name, &by, &reason, now),
            ServerLine::Topic { room, by, text } => self.on_topic(&room, &by, &text, now),
            ServerLine::Mode { room, by, change } => self.on_mode(&room, &by, &change, now),
            ServerLine::Invited { room, by } => {
                let text = format!("{by} invited you to {room}: /join {room}");
                self.event(&ConvId::Everyone, now, &text);
            }
            ServerLine::Typing { place, from, state } => {
                self.on_typing(&place, &from, &state, clock)
            }
            ServerLine::Ban { mask, by, at, .. } => {
                if self.bans_buf.len() < MAX_BANS {
                    self.bans_buf.push(Ban {
                        mask: mask.into_owned(),
                        by: by.into_owned(),
                        at: at.into_owned(),
                    });
                }
            }
            ServerLine::Operator { room, name } => {
                let id = ConvId::room(&room);
                if let Some(c) = self.conv_mut(&id) {
                    c.add_member(&name, true);
                    sort_members(&mut c.members);
                    let who = if self.is_me(&name) {
                        "You are".to_owned()
                    } else {
                        format!("{name} is")
                    };
                    self.event(&id, now, &format!("{who} now an operator of {room}"));
                }
            }
            ServerLine::Logged {
                target,
                id,
                at,
                from,
                text,
            } => {
                let logged = Logged {
                    target: target.into_owned(),
                    msg: id,
                    at: parse_time(&at).unwrap_or(now),
                    from: from.into_owned(),
                    text: self.read_text(&text),
                };
                // Part of the answer being read, or a DM that waited for this login.
                let answer = match self.pending.front() {
                    Some(Pending::Search { .. }) => true,
                    Some(Pending::History { conv, .. }) => conv_of_target(&logged.target) == *conv,
                    _ => false,
                };
                if answer {
                    self.logged_buf.push(logged);
                } else {
                    self.on_waiting_dm(&logged);
                }
            }
            // The network thread reports the end with BYE's text; nothing to add here.
            ServerLine::Bye { reason, .. } => {
                if reason == ByeReason::Closed
                    && matches!(self.pending.front(), Some(Pending::Close))
                {
                    self.pending.pop_front();
                }
            }
        }
    }

    fn log_presence(&mut self, p: Presence) {
        if self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::List { .. }))
        {
            self.presence_log.push(p);
        }
    }

    fn user_online(&mut self, name: &str) {
        if let Some(u) = self.users.iter_mut().find(|u| same(u, name)) {
            *u = name.to_owned();
        } else {
            self.users.push(name.to_owned());
            sort_names(&mut self.users);
        }
    }

    fn user_offline(&mut self, name: &str) {
        self.users.retain(|u| !same(u, name));
    }

    fn on_renamed(&mut self, old: &str, new: &str, now: Stamp) {
        self.user_offline(old);
        self.user_online(new);
        self.event(
            &ConvId::Everyone,
            now,
            &format!("{old} is now known as {new}"),
        );
        // Rooms they are in.
        let rooms: Vec<ConvId> = self
            .conversations
            .iter_mut()
            .filter(|c| c.is_room())
            .filter_map(|c| {
                let op = c.members.iter().find(|m| same(&m.name, old))?.op;
                c.remove_member(old);
                c.add_member(new, op);
                Some(c.id.clone())
            })
            .collect();
        for id in rooms {
            self.event(&id, now, &format!("{old} is now known as {new}"));
        }
        // Their DM conversation follows them.
        let (old_id, new_id) = (ConvId::dm(old), ConvId::dm(new));
        if let Some(i) = self.conversations.iter().position(|c| c.id == old_id) {
            if old_id != new_id
                && let Some(j) = self.conversations.iter().position(|c| c.id == new_id)
            {
                // Both exist (rare): merge the old history into the new one.
                let old_conv = self.conversations.remove(i);
                let j = if j > i { j - 1 } else { j };
                let target = &mut self.conversations[j];
                target.lines.extend(old_conv.lines);
                target.lines.make_contiguous().sort_by_key(|l| l.id);
                target.ids.extend(old_conv.ids);
                target.unread += old_conv.unread;
                target.mentioned += old_conv.mentioned;
            } else {
                let c = &mut self.conversations[i];
                c.id = new_id.clone();
                c.title = new.to_owned();
                c.joined = true;
            }
            if self.active == old_id {
                self.active = new_id.clone();
            }
            // A page on its way lands in the conversation under its new name.
            for p in &mut self.pending {
                if let Pending::History { conv, .. } = p
                    && *conv == old_id
                {
                    *conv = new_id.clone();
                }
            }
            self.event(&new_id, now, &format!("{old} is now known as {new}"));
        }
    }

    /// Brings the directory's entry for a room we are in up to date with what we know of it
    /// (members and topic), adding it if the directory does not list it yet.
    fn sync_directory(&mut self, room: &str) {
        let Some(c) = self.conversation(&ConvId::room(room)) else {
            return;
        };
        if !c.joined {
            return;
        }
        let info = RoomInfo {
            name: c.title.clone(),
            members: c.members.len(),
            topic: c.topic.clone().unwrap_or_default(),
        };
        match self.directory.iter_mut().find(|r| same(&r.name, room)) {
            Some(r) => *r = info,
            None => {
                self.directory.push(info);
                self.directory.sort_by_key(|r| r.name.to_ascii_lowercase());
            }
        }
    }

    /// We left `room`: one member fewer, and gone from the directory if that was the last.
    fn left_directory(&mut self, room: &str) {
        if let Some(r) = self.directory.iter_mut().find(|r| same(&r.name, room)) {
            r.members = r.members.saturating_sub(1);
        }
        self.directory.retain(|r| r.members > 0);
    }

    fn on_kicked(&mut self, room: &str, name: &str, by: &str, reason: &str, now: Stamp) {
        let id = ConvId::room(room);
        let because = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        if self.is_me(name) {
            if let Some(c) = self.conv_mut(&id) {
                c.joined = false;
                c.members.clear();
                c.modes = None;
                c.bans = None;
            }
            self.error(&id, now, &format!("{by} removed you from {room}{because}"));
            self.left_directory(room);
        } else if let Some(c) = self.conv_mut(&id) {
            c.remove_member(name);
            self.event(
                &id,
                now,
                &format!("{by} removed {name} from {room}{because}"),
            );
            self.sync_directory(room);
        }
    }

    fn on_topic(&mut self, room: &str, by: &str, text: &str, now: Stamp) {
        let id = ConvId::room(room);
        let data = match self.pending.front() {
            Some(Pending::Join { room: r, .. } | Pending::TopicQuery { room: r, .. }) => {
                same(r, room)
            }
            _ => false,
        };
        if data {
            self.topic_buf = Some((by.to_owned(), text.to_owned()));
        }
        if let Some(c) = self.conv_mut(&id) {
            c.topic = (!text.is_empty()).then(|| text.to_owned());
            if !data {
                let msg = if text.is_empty() {
                    format!("{by} cleared the topic")
                } else {
                    format!("{by} set the topic: {text}")
                };
                self.event(&id, now, &msg);
            }
        }
        self.sync_directory(room);
    }

    fn on_ok(&mut self, verb: &str, detail: &str, tags: &LineTags, now: Stamp) {
        let pending = self.pending.pop_front();
        let shown_in = pending
            .as_ref()
            .and_then(Pending::shown_in)
            .cloned()
            .unwrap_or_else(|| self.active.clone());
        match (verb, pending) {
            ("REGISTER", Some(Pending::Register { auto, .. })) => {
                self.on_registered(detail, auto, now)
            }
            ("REGISTER", _) => self.on_registered(detail, false, now),
            ("SESSION", Some(Pending::Session)) => {
                let token = detail.split(' ').next().unwrap_or("");
                if token.starts_with("nr_") {
                    self.session = Some(token.to_owned());
                }
            }
            ("RESUME", Some(Pending::Resume)) => self.on_resumed(detail, now),
            ("ACCOUNTS", _) => {
                self.accounts = std::mem::take(&mut self.accounts_buf).into_iter().collect();
                if std::mem::take(&mut self.accounts_stale) {
                    self.refresh_accounts();
                }
            }
            ("LOGIN", Some(Pending::Login { typed, .. })) => {
                let reconnect = self.me.is_some() && !self.registered;
                self.account = Some(detail.to_owned());
                self.retry_unavailable_history();
                self.on_registered(detail, reconnect, now);
                if typed {
                    self.info(
                        &ConvId::Everyone,
                        now,
                        &format!("Signed into the account {detail}"),
                    );
                    self.send(
                        "ACCOUNT TOKEN".into(),
                        Pending::Token {
                            name: detail.to_owned(),
                        },
                    );
                }
            }
            ("ACCOUNT", Some(Pending::Token { name })) => {
                if let Some(token) = detail.strip_prefix("TOKEN ") {
                    self.save_sign_in(Some(SignIn {
                        name,
                        token: token.to_owned(),
                    }));
                }
            }
            ("ACCOUNT", _) => {
                let (what, name) = detail.split_once(' ').unwrap_or((detail, ""));
                let text = match what {
                    "CREATE" => {
                        self.account = Some(name.to_owned());
                        format!("{name} is now your account: only you can use the name")
                    }
                    "PASSWORD" => "Password changed; other sign-ins of the account end".into(),
                    "DELETE" => {
                        self.account = None;
                        self.save_sign_in(None);
                        format!("The account {name} is deleted; the name is a guest's again")
                    }
                    _ => format!("OK {detail}"),
                };
                self.info(&shown_in, now, &text);
                if matches!(what, "CREATE" | "PASSWORD")
                    && let Some(me) = self.account.clone()
                {
                    // A new token: the old ones died with the old password.
                    self.send("ACCOUNT TOKEN".into(), Pending::Token { name: me });
                }
            }
            ("LOGOUT", _) => {
                self.save_sign_in(None);
                self.account = None;
                self.session = None;
                self.registered = false;
                self.me = None;
                self.screen = Screen::Name;
                for c in &mut self.conversations {
                    if c.is_room() {
                        c.joined = false;
                        c.members.clear();
                    }
                }
                self.info(&ConvId::Everyone, now, "Signed out");
            }
            ("LIST", p) => {
                let mut users = std::mem::take(&mut self.users_buf);
                sort_names(&mut users);
                self.users = users;
                let still_listing = self
                    .pending
                    .iter()
                    .any(|p| matches!(p, Pending::List { .. }));
                let log = if still_listing {
                    self.presence_log.clone()
                } else {
                    std::mem::take(&mut self.presence_log)
                };
                for p in log {
                    match p {
                        Presence::Online(n) => self.user_online(&n),
                        Presence::Offline(n) => self.user_offline(&n),
                        Presence::Renamed(o, n) => {
                            self.user_offline(&o);
                            self.user_online(&n);
                        }
                    }
                }
                for c in &mut self.conversations {
                    if let ConvId::Dm(_) = c.id {
                        c.joined = self.users.iter().any(|u| same(u, &c.title));
                    }
                }
                if !still_listing {
                    self.refresh_accounts();
                }
                if let Some(Pending::List { shown_in: Some(c) }) = p {
                    let text = format!("Online ({}): {}", self.users.len(), self.users.join(", "));
                    self.info(&c, now, &text);
                }
            }
            ("MESSAGE" | "SAY", Some(Pending::Chat { line, conv })) => {
                self.confirm(&conv, line, tags.id, tags.time.is_some().then_some(now));
            }
            ("DM", Some(Pending::Chat { line, conv })) => {
                self.confirm(&conv, line, tags.id, tags.time.is_some().then_some(now));
                // The answer names the recipient as registered: show it that way.
                let name = detail.split(' ').next().unwrap_or(detail);
                if let Some(c) = self.conv_mut(&conv)
                    && same(&c.title, name)
                {
                    c.title = name.to_owned();
                }
            }
            ("HISTORY", Some(Pending::History { conv, page })) => self.on_history(&conv, page),
            ("SEARCH", Some(Pending::Search { words })) => self.on_found(&words),
            ("TAGS", Some(Pending::Tags)) => {}
            ("MULTILINE", Some(Pending::Multiline)) => self.multiline = true,
            ("TYPING", Some(Pending::Typing)) => {}
            ("MODE", Some(Pending::ModeQuery { room, shown_in })) => {
                let modes = detail.split_once(' ').map(|(_, m)| m);
                if let Some(c) = self.conv_mut(&ConvId::room(&room)) {
                    c.modes = modes.and_then(Settings::parse);
                }
                if let Some(id) = shown_in {
                    let text = format!("The modes of {room}: {}", modes.unwrap_or("none"));
                    self.info(&id, now, &text);
                }
            }
            ("MODE", _) => {} // the MODE event already said it
            ("BANS", Some(Pending::Bans { room, say, .. })) => {
                let bans = std::mem::take(&mut self.bans_buf);
                if say {
                    if bans.is_empty() {
                        self.info(&shown_in, now, &format!("Nobody is banned from {room}."));
                    } else {
                        self.info(&shown_in, now, &format!("The bans of {room}:"));
                    }
                    for b in &bans {
                        let text = format!("{}\tset by {} at {}", b.mask, b.by, b.at);
                        self.info(&shown_in, now, &text);
                    }
                }
                if let Some(c) = self.conv_mut(&ConvId::room(&room)) {
                    c.bans = Some(bans);
                }
            }
            ("INVITE", _) => {
                let (room, user) = detail.split_once(' ').unwrap_or((detail, ""));
                let text = format!("You invited {user} to {room}");
                self.info(&shown_in, now, &text);
            }
            ("JOIN", p) => {
                let (room, count) = detail.split_once(' ').unwrap_or((detail, ""));
                let auto = matches!(p, Some(Pending::Join { auto: true, .. }));
                let members = std::mem::take(&mut self.members_buf);
                let topic = self.topic_buf.take();
                let c = self.ensure(ConvId::room(room), room);
                c.title = room.to_owned();
                c.joined = true;
                // Asked anew: they may have changed while we were out.
                c.modes = None;
                c.bans = None;
                // A member may read the room's history now.
                if c.history.status == HistoryStatus::Unavailable {
                    c.history.status = HistoryStatus::NotAsked;
                }
                c.members = members;
                sort_members(&mut c.members);
                c.topic = topic.map(|(_, t)| t).filter(|t| !t.is_empty());
                let id = c.id.clone();
                let n: usize = count.parse().unwrap_or(0);
                let people = if n == 1 {
                    "just you so far".to_owned()
                } else {
                    format!("{n} members")
                };
                let msg = if auto {
                    format!("Rejoined {room} ({people})")
                } else {
                    format!("You joined {room} ({people})")
                };
                self.event(&id, now, &msg);
                if let Some(t) = self.conversation(&id).and_then(|c| c.topic.clone()) {
                    self.event(&id, now, &format!("Topic: {t}"));
                }
                self.send(
                    format!("MODE {room}"),
                    Pending::ModeQuery {
                        room: room.to_owned(),
                        shown_in: None,
                    },
                );
                if !auto {
                    self.open(&id);
                }
                self.sync_directory(room);
            }
            ("PART", _) => {
                let id = ConvId::room(detail);
                if let Some(c) = self.conv_mut(&id) {
                    c.joined = false;
                    c.members.clear();
                    c.modes = None;
                    c.bans = None;
                }
                self.event(&id, now, &format!("You left {detail}"));
                self.left_directory(detail);
            }
            ("WHO", _) => {
                let (room, count) = detail.split_once(' ').unwrap_or((detail, "0"));
                let members = std::mem::take(&mut self.members_buf);
                let names: Vec<String> = members
                    .iter()
                    .map(|m| {
                        if m.op {
                            format!("@{}", m.name)
                        } else {
                            m.name.clone()
                        }
                    })
                    .collect();
                if let Some(c) = self.conv_mut(&ConvId::room(room))
                    && c.joined
                {
                    c.members = members;
                    sort_members(&mut c.members);
                }
                self.info(
                    &shown_in,
                    now,
                    &format!("{room} ({count}): {}", names.join(", ")),
                );
            }
            ("TOPIC", Some(Pending::TopicQuery { room, shown_in })) => {
                let msg = match self.topic_buf.take() {
                    Some((by, text)) if !text.is_empty() => {
                        format!("Topic of {room}: {text} (set by {by})")
                    }
                    _ => format!("{room} has no topic"),
                };
                self.info(&shown_in, now, &msg);
            }
            ("TOPIC" | "KICK", _) => {} // the TOPIC or KICKED event already said it
            ("ROOMS", p) => {
                self.directory = std::mem::take(&mut self.rooms_buf);
                if let Some(Pending::Rooms { shown_in: Some(c) }) = p {
                    if self.directory.is_empty() {
                        self.info(&c, now, "No rooms yet: /join #name creates one.");
                    }
                    for r in self.directory.clone() {
                        let topic = if r.topic.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", r.topic)
                        };
                        self.info(&c, now, &format!("{} ({}){topic}", r.name, r.members));
                    }
                }
            }
            ("HELP", _) => {
                for l in std::mem::take(&mut self.help_buf) {
                    self.info(&shown_in, now, &l);
                }
            }
            (_, Some(Pending::Chat { line, conv })) => {
                self.set_delivery(&conv, line, Delivery::Delivered);
            }
            (verb, _) => {
                let text = if detail.is_empty() {
                    format!("OK {verb}")
                } else {
                    format!("OK {verb} {detail}")
                };
                self.info(&shown_in, now, &text);
            }
        }
    }

    fn on_registered(&mut self, name: &str, auto: bool, now: Stamp) {
        self.name_error = None;
        if self.registered {
            // A rename (or the same name again).
            if !self.is_me(name) || self.me.as_deref() != Some(name) {
                self.event(
                    &ConvId::Everyone,
                    now,
                    &format!("You are now known as {name}"),
                );
            }
            self.me = Some(name.to_owned());
            return;
        }
        let before = self.me.replace(name.to_owned());
        self.registered = true;
        self.screen = Screen::Chat;
        let msg = match (&before, auto) {
            (Some(_), true) => format!("Reconnected to {}:{} as {name}", self.host, self.port),
            (Some(old), false) if old != name => format!("Signed in as {name} (was {old})"),
            (Some(_), false) => format!("Signed in again as {name}"),
            (None, _) => format!(
                "Welcome, {name}! This is Everyone: what you write here goes to everybody \
                 online. Type /help for commands."
            ),
        };
        self.event(&ConvId::Everyone, now, &msg);
        if self.session.is_none() {
            self.send("SESSION".into(), Pending::Session);
        }
        self.retry_unavailable_history();
        if std::mem::take(&mut self.setup_due) {
            self.send("LIST".into(), Pending::List { shown_in: None });
            self.send("ROOMS".into(), Pending::Rooms { shown_in: None });
            let rooms: Vec<String> = self
                .conversations
                .iter()
                .filter(|c| c.is_room() && c.joined)
                .map(|c| c.title.clone())
                .collect();
            for room in rooms {
                self.send(
                    format!("JOIN {room}"),
                    Pending::Join {
                        shown_in: ConvId::room(&room),
                        room,
                        auto: true,
                    },
                );
            }
            // After the JOINs, which a room's history needs.
            self.catch_up();
        }
    }

    /// The session was taken back after a reconnect: same name, and the server tells the
    /// rooms (JOINED lines) and what was missed, which follow.
    fn on_resumed(&mut self, name: &str, now: Stamp) {
        self.name_error = None;
        self.me = Some(name.to_owned());
        self.registered = true;
        self.screen = Screen::Chat;
        let msg = format!(
            "Reconnected to {}:{} as {name}; nobody saw you leave",
            self.host, self.port
        );
        self.event(&ConvId::Everyone, now, &msg);
        if std::mem::take(&mut self.setup_due) {
            self.send("LIST".into(), Pending::List { shown_in: None });
            self.send("ROOMS".into(), Pending::Rooms { shown_in: None });
            // Rooms not among the JOINED lines were lost with the session's membership.
            for c in &mut self.conversations {
                if c.is_room() {
                    c.joined = false;
                    c.members.clear();
                }
            }
            // The missed lines follow, but only those the lost session had queued: a server
            // restart loses what was said while none ran. The log has everything.
            self.retry_unavailable_history();
            self.catch_up();
        }
    }

    fn on_error(&mut self, code: ErrorCode, text: &str, now: Stamp) {
        self.members_buf.clear();
        self.bans_buf.clear();
        self.topic_buf = None;
        self.logged_buf.clear();
        let pending = self.pending.pop_front();
        match pending {
            // A server without tags, or without MULTILINE: lines come as they always did.
            Some(Pending::Tags | Pending::Multiline) => {}
            // Telling others we type is a courtesy: a refusal (a partner just gone) is silent.
            Some(Pending::Typing) => {}
            // Without the modes, an operator's menu shows them unknown; nothing else changes.
            Some(Pending::ModeQuery { shown_in: None, .. }) => {}
            Some(Pending::ModeQuery {
                room,
                shown_in: Some(id),
            }) => {
                self.error(
                    &id,
                    now,
                    &format!("Could not show the modes of {room}: {text}"),
                );
            }
            Some(Pending::Moderate { what, shown_in }) => {
                self.error(&shown_in, now, &format!("Could not {what}: {text}"));
            }
            // No history here (a guest's DM, a server that keeps none) or none readable now:
            // the conversation simply starts with what arrives live.
            Some(Pending::History { conv, page }) => {
                if let Some(c) = self.conv_mut(&conv) {
                    match page {
                        Page::Latest => c.history.status = HistoryStatus::Unavailable,
                        Page::Before(_) => {
                            c.history.loading_older = false;
                            c.history.more = false;
                        }
                        Page::After(_) => {}
                    }
                }
            }
            Some(Pending::Search { words }) => {
                if let Some(s) = &mut self.search
                    && s.words == words
                {
                    s.waiting = false;
                    s.error = Some(match code {
                        ErrorCode::NoHistory => "This server keeps no history to search.".into(),
                        ErrorCode::StoreUnavailable => {
                            "Search is unavailable right now; try again later.".into()
                        }
                        _ => capitalise(text),
                    });
                }
            }
            // Delivered, only not kept in the history: nothing for the user to do.
            Some(Pending::Chat { line, conv }) if code == ErrorCode::StoreUnavailable => {
                self.set_delivery(&conv, line, Delivery::Delivered);
            }
            Some(Pending::Resume) => {
                // The session ended (or the server forgot it): take the name again.
                self.session = None;
                if let Some(name) = self.me.clone() {
                    self.send(
                        format!("REGISTER {name}"),
                        Pending::Register {
                            auto: true,
                            shown_in: ConvId::Everyone,
                        },
                    );
                }
            }
            Some(Pending::Session) | Some(Pending::Token { .. }) => {}
            Some(Pending::Login { typed, shown_in }) => {
                let text = if typed {
                    capitalise(text)
                } else {
                    // The saved token no longer works (a new password, a deleted account).
                    self.save_sign_in(None);
                    "Please sign in again: your saved sign-in is no longer valid.".to_owned()
                };
                if self.registered {
                    self.error(&shown_in, now, &format!("Could not sign in: {text}"));
                } else {
                    self.name_error = Some(text);
                    self.screen = Screen::Name;
                }
            }
            Some(Pending::Register { auto, shown_in }) if !self.registered => {
                self.name_error = Some(capitalise(text));
                self.screen = Screen::Name;
                if auto {
                    let msg = format!("Could not sign in again: {text}");
                    self.error(&shown_in, now, &msg);
                }
            }
            Some(Pending::Chat { line, conv }) => {
                self.set_delivery(&conv, line, Delivery::Failed);
                let conv = self.conv_of_line(line).unwrap_or(conv);
                self.error(&conv, now, &format!("Not delivered: {text}"));
            }
            Some(Pending::Join {
                room,
                auto: true,
                shown_in,
            }) => {
                if let Some(c) = self.conv_mut(&ConvId::room(&room)) {
                    c.joined = false;
                }
                self.error(&shown_in, now, &format!("Could not rejoin {room}: {text}"));
            }
            Some(p) => {
                let at = p.shown_in().cloned().unwrap_or_else(|| self.active.clone());
                self.error(&at, now, &capitalise(text));
            }
            None => {
                let active = self.active.clone();
                self.error(&active, now, &capitalise(text));
            }
        }
    }
}

/// Whether a line without an id and a message from the log have one sender: ours (a line
/// the server may have kept), or the same other person's.
fn same_sender(shown: &Line, logged: &Line) -> bool {
    match (shown.kind, logged.kind) {
        (LineKind::Own(Delivery::Unconfirmed | Delivery::Delivered), LineKind::Own(_)) => true,
        (LineKind::Chat, LineKind::Chat) => shown
            .from
            .as_deref()
            .zip(logged.from.as_deref())
            .is_some_and(|(a, b)| same(a, b)),
        _ => false,
    }
}

/// The conversation a `LOGGED` line's target names.
/// `text` as one word of visible characters (a key, a name), if it is one.
/// Whether a ban's subject, as typed, is a mask (`*!*@host`, `$a:account`) rather than a name.
fn is_mask(who: &str) -> bool {
    who.starts_with('$') || who.contains(['!', '@', '*', '?'])
}

fn one_word(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(t)
}

fn conv_of_target(target: &str) -> ConvId {
    match target {
        "*" => ConvId::Everyone,
        t if t.starts_with('#') => ConvId::room(t),
        t => ConvId::dm(t),
    }
}

/// A time as the server writes it (RFC 3339), in the user's time zone.
/// What was typed as a message, in the form the server keeps it (natter-proto's
/// `multiline::normalize`: LF line breaks, no blank lines around it, a run of blank lines
/// inside as one), so what is shown as sent is what the others see. A text the server will
/// refuse goes as typed but with LF line breaks only (a CR never reaches the wire), and its
/// refusal says why.
fn tidy_text(text: &str) -> String {
    match multiline::normalize(text) {
        Ok(t) => t.into_owned(),
        Err(_) => text.replace("\r\n", "\n").replace('\r', "\n"),
    }
}

fn parse_time(text: &str) -> Option<Stamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Local))
}

/// Whether a day separator goes above `line`: it is the first, or of another day than the
/// line before it, in the user's time zone.
pub fn starts_day(prev: Option<&Line>, line: &Line) -> bool {
    prev.is_none_or(|p| p.at.date_naive() != line.at.date_naive())
}

/// The text of a day separator: "Today", "Yesterday", the weekday within the last week,
/// else the date (with the year when it is not this year's).
pub fn day_label(day: chrono::NaiveDate, today: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    let ago = (today - day).num_days();
    match ago {
        0 => "Today".to_owned(),
        1 => "Yesterday".to_owned(),
        2..=6 => day.format("%A").to_string(),
        _ if day.year() == today.year() => day.format("%A %-d %B").to_string(),
        _ => day.format("%A %-d %B %Y").to_string(),
    }
}

/// How times of day are written: the user's locale decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// "15:07".
    #[default]
    H24,
    /// "3:07 PM".
    H12,
}

/// Places whose English writes times with AM and PM; everywhere else, and every other
/// language, gets 24 hours. A short list rather than a locale database: it covers what
/// people set, and a wrong guess only changes how a time looks.
const TWELVE_HOUR_TERRITORIES: &[&str] = &["US", "CA", "AU", "NZ", "PH", "IN", "PK"];

impl Clock {
    /// The clock a POSIX locale name ("en_US.UTF-8", "de_DE@euro", "C") asks for.
    pub fn for_locale(locale: &str) -> Self {
        let name = locale.split(['.', '@']).next().unwrap_or_default();
        let (language, territory) = name.split_once(['_', '-']).unwrap_or((name, ""));
        let twelve = language == "en"
            && (territory.is_empty() || TWELVE_HOUR_TERRITORIES.contains(&territory));
        if twelve { Self::H12 } else { Self::H24 }
    }

    /// The clock of the locale that decides times here: `LC_ALL`, else `LC_TIME`, else
    /// `LANG`, the first that is set and not empty (POSIX's order).
    pub fn from_env() -> Self {
        ["LC_ALL", "LC_TIME", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .map_or_else(Self::default, |l| Self::for_locale(&l))
    }

    /// A time of day, to the minute.
    pub fn time(self, at: &Stamp) -> String {
        match self {
            Self::H24 => at.format("%H:%M").to_string(),
            Self::H12 => at.format("%-I:%M %p").to_string(),
        }
    }

    /// The full date and time, to the second.
    pub fn full(self, at: &Stamp) -> String {
        match self {
            Self::H24 => at.format("%A %-d %B %Y, %H:%M:%S").to_string(),
            Self::H12 => at.format("%A, %B %-d, %Y, %-I:%M:%S %p").to_string(),
        }
    }
}

/// `text` with its first letter in upper case, as a sentence.
fn capitalise(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Stamp {
        chrono::Local
            .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .unwrap()
    }

    /// Feeds server lines, given as the server sends them (tags and all).
    fn feed(m: &mut Model, lines: &[&str]) {
        for l in lines {
            let (tags, bare) = LineTags::split(l);
            m.on_net(
                NetEvent::Line(ServerLine::parse(bare).unwrap().into_owned(), tags),
                now(),
            );
        }
    }

    /// The connection lost, and a new one made at once, before anything is said on it.
    fn lose_and_reconnect(m: &mut Model) {
        m.on_net(
            NetEvent::Lost {
                error: "x".into(),
                attempt: 0,
                retry_in: Duration::ZERO,
            },
            now(),
        );
        m.on_net(
            NetEvent::Connected {
                addr: "h".into(),
                reconnect: true,
                tls: false,
            },
            now(),
        );
    }

    fn sent(m: &mut Model) -> Vec<String> {
        m.take_commands()
            .into_iter()
            .map(|c| match c {
                NetCommand::Send(l) => l,
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn texts(m: &Model, id: &ConvId) -> Vec<String> {
        m.conversation(id)
            .unwrap()
            .lines
            .iter()
            .map(|l| match &l.from {
                Some(f) => format!("<{f}> {}", l.text),
                None => l.text.clone(),
            })
            .collect()
    }

    /// A model connected and registered as alice, with bob online.
    fn signed_in() -> Model {
        let mut m = Model::new("localhost", 8090);
        m.connect("localhost", "8090");
        assert_eq!(
            sent(&mut m),
            ["Connect { host: \"localhost\", port: 8090 }"]
        );
        m.on_net(
            NetEvent::Connected {
                addr: "localhost:8090".into(),
                reconnect: false,
                tls: false,
            },
            now(),
        );
        assert_eq!(m.screen, Screen::Name);
        m.register("alice");
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "REGISTER alice"]);
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        assert_eq!(m.screen, Screen::Chat);
        // Everyone is open: its history is asked for.
        assert_eq!(sent(&mut m), ["SESSION", "LIST", "ROOMS", "HISTORY * 50"]);
        // A server without SESSION: the client does without resuming.
        feed(
            &mut m,
            &[
                "ERROR UNKNOWN_COMMAND unknown command SESSION",
                "USER alice",
                "USER bob",
                "OK LIST 2",
                "OK ROOMS 0",
                "OK HISTORY * 0",
            ],
        );
        // Who is logged into an account, asked once the list is in.
        assert_eq!(sent(&mut m), ["ACCOUNTS"]);
        feed(&mut m, &["OK ACCOUNTS 0"]);
        m
    }

    #[test]
    fn a_taken_name_is_shown_and_can_be_retried() {
        let mut m = Model::new("h", 1);
        m.on_net(
            NetEvent::Connected {
                addr: "h:1".into(),
                reconnect: false,
                tls: false,
            },
            now(),
        );
        m.register("bob");
        feed(
            &mut m,
            &[
                "OK TAGS ON",
                "OK MULTILINE ON",
                "ERROR NAME_TAKEN the name bob is taken; choose another",
            ],
        );
        assert_eq!(m.screen, Screen::Name);
        assert_eq!(
            m.name_error.as_deref(),
            Some("The name bob is taken; choose another")
        );
        m.register("bob2");
        assert_eq!(
            sent(&mut m),
            ["TAGS ON", "MULTILINE ON", "REGISTER bob", "REGISTER bob2"]
        );
        feed(&mut m, &["OK REGISTER bob2"]);
        assert_eq!(m.screen, Screen::Chat);
        assert_eq!(m.name_error, None);
        assert_eq!(m.me.as_deref(), Some("bob2"));
    }

    #[test]
    fn connect_errors_go_to_the_connect_screen() {
        let mut m = Model::new("h", 1);
        m.connect("h", "99999");
        assert!(m.connect_error.as_deref().unwrap().contains("Invalid port"));
        assert!(m.take_commands().is_empty());
        m.connect("h", "1");
        m.on_net(
            NetEvent::Failed(crate::net::ConnectError::Refused {
                target: "h:1".into(),
            }),
            now(),
        );
        assert_eq!(m.screen, Screen::Connect);
        assert!(m.connect_error.as_deref().unwrap().contains("refused"));
    }

    #[test]
    fn what_another_connection_of_the_account_does_shows_as_ours() {
        let mut m = signed_in();
        feed(
            &mut m,
            &[
                "JOINED #den alice",
                "MESSAGE alice from the phone",
                "SENT bob psst",
                "SAY #den alice here",
            ],
        );
        let everyone = &m.conversations[0];
        let last = everyone.lines.back().unwrap();
        assert_eq!(last.kind, LineKind::Own(Delivery::Delivered));
        let den = m.conv_mut(&ConvId::room("#den")).unwrap();
        assert!(den.joined);
        assert_eq!(
            den.lines.back().unwrap().kind,
            LineKind::Own(Delivery::Delivered)
        );
        let dm = m.conv_mut(&ConvId::dm("bob")).unwrap();
        let line = dm.lines.back().unwrap();
        assert_eq!(
            (line.from.as_deref(), line.text.as_str()),
            (Some("alice"), "psst")
        );
        feed(&mut m, &["PARTED #den alice"]);
        assert!(!m.conv_mut(&ConvId::room("#den")).unwrap().joined);
    }

    #[test]
    fn own_messages_show_at_once_and_are_confirmed() {
        let mut m = signed_in();
        assert!(m.submit("hello  all", now()));
        assert_eq!(sent(&mut m), ["MESSAGE hello  all"]);
        let last = m.conversations[0].lines.back().unwrap().clone();
        assert_eq!(last.kind, LineKind::Own(Delivery::Sending));
        assert_eq!(last.from.as_deref(), Some("alice"));
        feed(&mut m, &["MESSAGE bob hi", "OK MESSAGE 1"]);
        let lines = &m.conversations[0].lines;
        assert_eq!(
            lines.iter().find(|l| l.id == last.id).unwrap().kind,
            LineKind::Own(Delivery::Delivered)
        );
        assert_eq!(lines.back().unwrap().text, "hi");
        // Alone: refused, and shown as such.
        m.submit("anyone?", now());
        feed(
            &mut m,
            &["ERROR NO_RECIPIENTS nobody else is registered to receive it"],
        );
        let t = texts(&m, &ConvId::Everyone);
        assert_eq!(
            t.last().unwrap(),
            "Not delivered: nobody else is registered to receive it"
        );
    }

    #[test]
    fn dms_get_their_own_conversation_and_unread_count() {
        let mut m = signed_in();
        feed(&mut m, &["DM bob psst", "DM bob  two"]);
        let c = m.conversation(&ConvId::dm("BOB")).unwrap();
        assert_eq!(c.unread, 2);
        assert_eq!(c.title, "bob");
        assert!(c.joined);
        m.open(&ConvId::dm("bob"));
        assert_eq!(m.conversation(&ConvId::dm("bob")).unwrap().unread, 0);
        m.submit("hi back", now());
        assert_eq!(sent(&mut m), ["HISTORY bob 50", "DM bob hi back"]);
        // bob is a guest: no history, and nothing said about it.
        let before = texts(&m, &ConvId::dm("bob")).len();
        feed(
            &mut m,
            &["ERROR NO_HISTORY there is no history there that you may read"],
        );
        assert_eq!(texts(&m, &ConvId::dm("bob")).len(), before);
        assert_eq!(
            m.conversation(&ConvId::dm("bob")).unwrap().history.status,
            HistoryStatus::Unavailable
        );
        feed(&mut m, &["OK DM bob"]);
        m.submit("/dm carol hey", now());
        assert_eq!(sent(&mut m), ["HISTORY carol 50", "DM carol hey"]);
        assert_eq!(m.active, ConvId::dm("carol"));
        feed(
            &mut m,
            &[
                "ERROR NO_HISTORY there is no history there that you may read",
                "ERROR NO_SUCH_USER no user named carol is online",
            ],
        );
        assert_eq!(
            texts(&m, &ConvId::dm("carol")).last().unwrap(),
            "Not delivered: no user named carol is online"
        );
    }

    #[test]
    fn a_dm_that_waited_for_the_login_shows_at_the_time_it_was_sent() {
        let mut m = signed_in();
        feed(
            &mut m,
            &["LOGGED bob 7402155874012620800 2026-04-30T08:15:00.250Z bob while you were away"],
        );
        let c = m.conversation(&ConvId::dm("bob")).unwrap();
        assert_eq!(texts(&m, &ConvId::dm("bob")), ["<bob> while you were away"]);
        let line = c.lines.back().unwrap();
        assert_eq!(
            line.at
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2026-04-30T08:15:00.250Z"
        );
        // History of Everyone or a room is not asked for, and not shown if it comes.
        feed(&mut m, &["LOGGED * 1 2026-04-30T08:15:00.250Z bob old"]);
        assert!(m.conversation(&ConvId::dm("*")).is_none());
    }

    #[test]
    fn rooms_join_talk_topic_and_leave() {
        let mut m = signed_in();
        m.submit("/join rust", now());
        assert_eq!(sent(&mut m), ["JOIN #rust"]);
        feed(
            &mut m,
            &[
                "MEMBER #Rust @bob",
                "MEMBER #Rust alice",
                "TOPIC #Rust bob all about crabs",
                "OK JOIN #Rust 2",
            ],
        );
        let id = ConvId::room("#rust");
        assert_eq!(m.active, id);
        // The directory learns of the room we joined, and keeps its count up to date.
        let listed = |m: &Model| {
            m.directory
                .iter()
                .map(|r| (r.name.clone(), r.members))
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&m), [("#Rust".to_owned(), 2)]);
        assert_eq!(m.directory[0].topic, "all about crabs");
        let c = m.conversation(&id).unwrap();
        assert_eq!(c.title, "#Rust");
        assert_eq!(c.topic.as_deref(), Some("all about crabs"));
        assert_eq!(
            c.members,
            vec![
                Member {
                    name: "bob".into(),
                    op: true,
                    voice: false
                },
                Member {
                    name: "alice".into(),
                    op: false,
                    voice: false
                }
            ]
        );
        m.submit("hi room", now());
        assert_eq!(
            sent(&mut m),
            ["MODE #Rust", "HISTORY #Rust 50", "SAY #Rust hi room"]
        );
        feed(
            &mut m,
            &[
                "OK MODE #Rust +nt",
                "OK HISTORY #Rust 0",
                "SAY #Rust bob welcome",
                "OK SAY #Rust 1",
                "JOINED #Rust carol",
                "TOPIC #Rust bob crabs only",
                "PARTED #Rust carol disconnected",
            ],
        );
        let t = texts(&m, &id);
        assert!(t.contains(&"<bob> welcome".to_owned()), "{t:?}");
        assert!(t.contains(&"carol joined #Rust".to_owned()));
        assert!(t.contains(&"bob set the topic: crabs only".to_owned()));
        assert!(t.contains(&"carol left #Rust (disconnected)".to_owned()));
        assert_eq!(listed(&m), [("#Rust".to_owned(), 2)]);
        m.submit("/part", now());
        assert_eq!(sent(&mut m), ["PART #Rust"]);
        feed(&mut m, &["OK PART #Rust"]);
        assert_eq!(listed(&m), [("#Rust".to_owned(), 1)]);
        assert!(!m.conversation(&id).unwrap().joined);
        m.submit("still here?", now());
        assert!(sent(&mut m).is_empty());
        assert!(
            texts(&m, &id)
                .last()
                .unwrap()
                .starts_with("You are not in #Rust")
        );
    }

    #[test]
    fn presence_keeps_the_user_list_live() {
        let mut m = signed_in();
        assert_eq!(m.users, ["alice", "bob"]);
        feed(
            &mut m,
            &["ONLINE Carol", "RENAMED bob Bobby", "OFFLINE alice2"],
        );
        assert_eq!(m.users, ["alice", "Bobby", "Carol"]);
        feed(&mut m, &["OFFLINE Carol"]);
        assert_eq!(m.users, ["alice", "Bobby"]);
        // Events between LIST and its answer are re-applied to the answer.
        m.submit("/list", now());
        feed(
            &mut m,
            &["ONLINE dave", "USER alice", "USER Bobby", "OK LIST 2"],
        );
        assert_eq!(m.users, ["alice", "Bobby", "dave"]);
    }

    #[test]
    fn a_renamed_partner_keeps_the_conversation() {
        let mut m = signed_in();
        feed(&mut m, &["DM bob hi"]);
        m.open(&ConvId::dm("bob"));
        feed(&mut m, &["RENAMED bob robert", "DM robert again"]);
        assert_eq!(m.active, ConvId::dm("robert"));
        let t = texts(&m, &ConvId::dm("robert"));
        assert_eq!(t.first().unwrap(), "<bob> hi");
        assert_eq!(t.last().unwrap(), "<robert> again");
        assert!(m.conversation(&ConvId::dm("bob")).is_none());
    }

    #[test]
    fn reconnect_takes_the_name_again_and_rejoins_rooms() {
        let mut m = signed_in();
        m.join("#a", now());
        feed(&mut m, &["MEMBER #a @alice", "OK JOIN #a 1"]);
        m.submit("hello", now());
        sent(&mut m);
        m.on_net(
            NetEvent::Lost {
                error: "the server is shutting down".into(),
                attempt: 0,
                retry_in: Duration::from_millis(250),
            },
            now(),
        );
        assert!(matches!(m.link, Link::Lost { .. }));
        assert!(m.users.is_empty());
        assert_eq!(m.screen, Screen::Chat);
        let own = m
            .conversation(&ConvId::room("#a"))
            .unwrap()
            .lines
            .iter()
            .find(|l| l.text == "hello")
            .unwrap()
            .kind;
        assert_eq!(own, LineKind::Own(Delivery::Unconfirmed));
        m.on_net(
            NetEvent::Connected {
                addr: "h".into(),
                reconnect: true,
                tls: false,
            },
            now(),
        );
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "REGISTER alice"]);
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        // What was missed in Everyone (from its start: it held no message); the room's
        // first page, lost with the connection, again.
        assert_eq!(
            sent(&mut m),
            [
                "SESSION",
                "LIST",
                "ROOMS",
                "JOIN #a",
                "HISTORY * 200 AFTER 0",
                "HISTORY #a 50"
            ]
        );
        feed(
            &mut m,
            &[
                "ERROR UNKNOWN_COMMAND unknown command SESSION",
                "USER alice",
                "OK LIST 1",
                "OK ROOMS 0",
                "MEMBER #a @alice",
                "OK JOIN #a 1",
                "OK HISTORY * 0",
                "OK HISTORY #a 0",
            ],
        );
        assert_eq!(m.users, ["alice"]);
        assert!(m.conversation(&ConvId::room("#a")).unwrap().joined);
        // The history survived.
        assert!(texts(&m, &ConvId::room("#a")).contains(&"<alice> hello".to_owned()));
        assert!(
            texts(&m, &ConvId::Everyone)
                .iter()
                .any(|t| t.starts_with("Disconnected: the server is shutting down"))
        );
        assert!(
            texts(&m, &ConvId::Everyone)
                .contains(&"Reconnected to localhost:8090 as alice".to_owned())
        );
    }

    #[test]
    fn a_name_taken_meanwhile_asks_for_another() {
        let mut m = signed_in();
        lose_and_reconnect(&mut m);
        feed(
            &mut m,
            &[
                "OK TAGS ON",
                "OK MULTILINE ON",
                "ERROR NAME_TAKEN the name alice is taken; choose another",
            ],
        );
        assert_eq!(m.screen, Screen::Name);
        m.register("alice_");
        sent(&mut m);
        feed(&mut m, &["OK REGISTER alice_"]);
        assert_eq!(m.screen, Screen::Chat);
        assert_eq!(
            sent(&mut m),
            ["SESSION", "LIST", "ROOMS", "HISTORY * 200 AFTER 0"]
        );
    }

    #[test]
    fn a_lost_connection_resumes_the_session_and_falls_back_to_the_name() {
        let mut m = Model::new("localhost", 8090);
        m.on_net(
            NetEvent::Connected {
                addr: "h".into(),
                reconnect: false,
                tls: false,
            },
            now(),
        );
        m.register("alice");
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        assert_eq!(
            sent(&mut m),
            [
                "TAGS ON",
                "MULTILINE ON",
                "REGISTER alice",
                "SESSION",
                "LIST",
                "ROOMS",
                "HISTORY * 50"
            ]
        );
        feed(
            &mut m,
            &[
                "OK SESSION nr_abc 60",
                "USER alice",
                "OK LIST 1",
                "OK ROOMS 0",
                "OK HISTORY * 0",
            ],
        );
        assert_eq!(sent(&mut m), ["ACCOUNTS"]);
        feed(&mut m, &["ACCOUNT alice", "OK ACCOUNTS 1"]);
        assert!(m.is_account("Alice"));
        m.submit("/join #a", now());
        feed(&mut m, &["MEMBER #a @alice", "OK JOIN #a 1"]);
        sent(&mut m);
        let lost = || NetEvent::Lost {
            error: "x".into(),
            attempt: 0,
            retry_in: Duration::ZERO,
        };
        let back = || NetEvent::Connected {
            addr: "h".into(),
            reconnect: true,
            tls: false,
        };
        m.on_net(lost(), now());
        m.on_net(back(), now());
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "RESUME nr_abc"]);
        feed(
            &mut m,
            &[
                "OK TAGS ON",
                "OK MULTILINE ON",
                "OK RESUME alice",
                "JOINED #a alice",
                "SAY #a bob while you were away",
            ],
        );
        assert_eq!(m.screen, Screen::Chat);
        assert!(m.conversation(&ConvId::room("#a")).unwrap().joined);
        assert!(texts(&m, &ConvId::room("#a")).contains(&"<bob> while you were away".to_owned()));
        // Lists refreshed, members asked for; no JOIN: the server kept the room. The room's
        // first page once we are in it again.
        assert_eq!(
            sent(&mut m),
            [
                "LIST",
                "ROOMS",
                "HISTORY * 200 AFTER 0",
                "WHO #a",
                "MODE #a",
                "HISTORY #a 50"
            ]
        );
        feed(
            &mut m,
            &[
                "USER alice",
                "OK LIST 1",
                "OK ROOMS 0",
                "OK HISTORY * 0",
                "MEMBER #a @alice",
                "OK WHO #a 1",
                "OK MODE #a +nt",
                "OK HISTORY #a 0",
            ],
        );
        assert_eq!(sent(&mut m), ["ACCOUNTS"]);
        feed(&mut m, &["OK ACCOUNTS 0"]);
        // The session ended meanwhile: the name is taken again, the rooms rejoined.
        m.on_net(lost(), now());
        m.on_net(back(), now());
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "RESUME nr_abc"]);
        feed(
            &mut m,
            &[
                "OK TAGS ON",
                "OK MULTILINE ON",
                "ERROR NO_SESSION no session is waiting for that token",
            ],
        );
        assert_eq!(sent(&mut m), ["REGISTER alice"]);
        feed(&mut m, &["OK REGISTER alice"]);
        assert_eq!(
            sent(&mut m),
            [
                "SESSION",
                "LIST",
                "ROOMS",
                "JOIN #a",
                "HISTORY * 200 AFTER 0",
                "HISTORY #a 200 AFTER 0"
            ]
        );
    }

    #[test]
    fn commands_reach_the_protocol() {
        let mut m = signed_in();
        m.submit("/name al", now());
        feed(&mut m, &["OK REGISTER al"]);
        assert_eq!(m.me.as_deref(), Some("al"));
        m.submit("/help dm", now());
        feed(&mut m, &["HELP DM <user> <text>  send", "OK HELP"]);
        m.submit("/rooms", now());
        feed(&mut m, &["ROOM #x 3 fun", "OK ROOMS 1"]);
        assert_eq!(m.directory.len(), 1);
        m.submit("/raw LIST", now());
        feed(&mut m, &["USER al", "OK LIST 1"]);
        m.submit("/me waves", now());
        assert_eq!(
            sent(&mut m),
            [
                "REGISTER al",
                "HELP dm",
                "ROOMS",
                "LIST",
                "ACCOUNTS",
                "MESSAGE /me waves"
            ]
        );
        let t = texts(&m, &ConvId::Everyone);
        assert!(t.contains(&"You are now known as al".to_owned()));
        assert!(t.contains(&"DM <user> <text>  send".to_owned()));
        assert!(t.contains(&"#x (3) — fun".to_owned()));
        assert!(!m.submit("/bogus", now()));
        assert!(t.len() < texts(&m, &ConvId::Everyone).len());
        m.submit("/quit", now());
        assert_eq!(sent(&mut m), ["Close"]);
        feed(&mut m, &["BYE CLOSED goodbye"]);
        m.on_net(NetEvent::Closed, now());
        assert!(m.quit);
    }

    /// Joins `room` and answers the JOIN; its history page is asked for and left pending.
    fn joined(m: &mut Model, room: &str) {
        m.join(room, now());
        feed(
            m,
            &[
                &format!("MEMBER {room} @alice"),
                &format!("OK JOIN {room} 1"),
            ],
        );
        assert_eq!(
            sent(m),
            [
                format!("JOIN {room}"),
                format!("MODE {room}"),
                format!("HISTORY {room} 50")
            ]
        );
        feed(m, &[&format!("OK MODE {room} +nt")]);
    }

    /// `n` LOGGED lines of `target`, ids from `first` up, a second apart on 30 April.
    fn logged(target: &str, first: i64, n: i64) -> Vec<String> {
        (first..first + n)
            .map(|id| {
                let (m, s) = ((id / 60) % 60, id % 60);
                format!("LOGGED {target} {id} 2026-04-30T09:{m:02}:{s:02}.000Z bob number {id}")
            })
            .collect()
    }

    fn feed_all(m: &mut Model, lines: &[String]) {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        feed(m, &refs);
    }

    /// The chat lines of a conversation, as `<from> text`.
    fn said(m: &Model, id: &ConvId) -> Vec<String> {
        m.conversation(id)
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.from.is_some())
            .map(|l| format!("<{}> {}", l.from.as_deref().unwrap_or(""), l.text))
            .collect()
    }

    #[test]
    fn history_on_opening_goes_before_live_lines_without_duplicates() {
        let mut m = signed_in();
        joined(&mut m, "#den");
        let den = ConvId::room("#den");
        assert_eq!(
            m.conversation(&den).unwrap().history.status,
            HistoryStatus::Loading
        );
        // A live line comes before the answer, and the answer holds it too.
        feed(
            &mut m,
            &[
                "@time=2026-04-30T09:00:03.000Z;id=13 SAY #den bob third",
                "LOGGED #den 11 2026-04-30T09:00:01.000Z bob first",
                "LOGGED #den 12 2026-04-30T09:00:02.000Z carol second",
                "LOGGED #den 13 2026-04-30T09:00:03.000Z bob third",
                "OK HISTORY #den 3",
            ],
        );
        assert_eq!(
            said(&m, &den),
            ["<bob> first", "<carol> second", "<bob> third"]
        );
        let c = m.conversation(&den).unwrap();
        assert_eq!(c.history.status, HistoryStatus::Loaded);
        assert_eq!(c.history.floor, Some(11));
        // Fewer than a page: this is the start.
        assert!(!c.history.more && !c.history.can_load_older());
        // Lines show the server's time, in local time.
        let first = c.lines.iter().find(|l| l.msg == Some(11)).unwrap();
        assert_eq!(
            first.at.with_timezone(&chrono::Utc).to_rfc3339(),
            "2026-04-30T09:00:01+00:00"
        );
        // History is not news: nothing unread, no marker.
        assert_eq!((c.unread, c.new_since), (0, None));
        // The same live line again (a resumed session's replay) is not shown twice.
        feed(
            &mut m,
            &["@time=2026-04-30T09:00:03.000Z;id=13 SAY #den bob third"],
        );
        assert_eq!(said(&m, &den).len(), 3);
        // Opening it again asks for nothing.
        m.open(&ConvId::Everyone);
        m.open(&den);
        assert!(sent(&mut m).is_empty());
    }

    #[test]
    fn older_pages_come_before_the_oldest_until_a_short_one() {
        let mut m = signed_in();
        joined(&mut m, "#den");
        let den = ConvId::room("#den");
        let mut page = logged("#den", 100, 50);
        page.push("OK HISTORY #den 50".into());
        feed_all(&mut m, &page);
        let h = &m.conversation(&den).unwrap().history;
        assert!(h.more && h.can_load_older());
        assert_eq!(h.floor, Some(100));
        m.load_older(&den);
        // One page at a time.
        m.load_older(&den);
        assert_eq!(sent(&mut m), ["HISTORY #den 50 BEFORE 100"]);
        let mut page = logged("#den", 80, 20);
        page.push("OK HISTORY #den 20".into());
        feed_all(&mut m, &page);
        let c = m.conversation(&den).unwrap();
        assert_eq!(c.history.floor, Some(80));
        assert!(!c.history.more);
        let ids: Vec<i64> = c.lines.iter().filter_map(|l| l.msg).collect();
        assert_eq!(ids, (80..150).collect::<Vec<_>>());
        m.load_older(&den);
        assert!(sent(&mut m).is_empty());
    }

    #[test]
    fn own_messages_take_their_id_and_time_from_the_tagged_answer() {
        let mut m = signed_in();
        m.submit("kept", now());
        sent(&mut m);
        feed(
            &mut m,
            &["@time=2026-05-01T08:00:00.500Z;id=42 OK MESSAGE 1"],
        );
        let line = m.conversations[0].lines.back().unwrap();
        assert_eq!(line.msg, Some(42));
        assert_eq!(line.kind, LineKind::Own(Delivery::Delivered));
        assert_eq!(
            line.at.with_timezone(&chrono::Utc).to_rfc3339(),
            "2026-05-01T08:00:00.500+00:00"
        );
        // The log holding it adds nothing.
        lose_and_reconnect(&mut m);
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        let asked = sent(&mut m);
        assert!(
            asked.contains(&"HISTORY * 200 AFTER 42".to_owned()),
            "{asked:?}"
        );
        feed(
            &mut m,
            &[
                "ERROR UNKNOWN_COMMAND unknown command SESSION",
                "OK LIST 0",
                "OK ROOMS 0",
                "LOGGED * 42 2026-05-01T08:00:00.500Z alice kept",
                "OK HISTORY * 1",
            ],
        );
        assert_eq!(said(&m, &ConvId::Everyone), ["<alice> kept"]);
        // A refused-to-keep message was still delivered: no error for the user.
        feed(&mut m, &["OK ACCOUNTS 0"]);
        m.submit("not kept", now());
        feed(
            &mut m,
            &[
                "ERROR STORE_UNAVAILABLE delivered, but not kept in the history: the store is unavailable",
            ],
        );
        let last = m.conversations[0].lines.back().unwrap();
        assert_eq!(
            (last.text.as_str(), last.kind),
            ("not kept", LineKind::Own(Delivery::Delivered))
        );
    }

    #[test]
    fn a_reconnect_fetches_what_was_missed_without_gaps_or_duplicates() {
        let mut m = signed_in();
        feed(
            &mut m,
            &["@time=2026-05-02T08:00:00.000Z;id=5 MESSAGE bob before"],
        );
        // Ours, lost with the connection before its answer came.
        m.submit("mine", now());
        sent(&mut m);
        lose_and_reconnect(&mut m);
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        assert_eq!(
            sent(&mut m),
            [
                "TAGS ON",
                "MULTILINE ON",
                "REGISTER alice",
                "SESSION",
                "LIST",
                "ROOMS",
                "HISTORY * 200 AFTER 5"
            ]
        );
        // More was missed than one page: the next page follows the last id.
        let mut lines: Vec<String> = vec![
            "ERROR UNKNOWN_COMMAND unknown command SESSION".into(),
            "OK LIST 0".into(),
            "OK ROOMS 0".into(),
            "LOGGED * 6 2026-05-02T08:00:01.000Z alice mine".into(),
        ];
        lines.extend(logged("*", 7, 199));
        lines.push("OK HISTORY * 200".into());
        feed_all(&mut m, &lines);
        assert_eq!(sent(&mut m), ["ACCOUNTS", "HISTORY * 200 AFTER 205"]);
        feed(
            &mut m,
            &[
                "OK ACCOUNTS 0",
                "LOGGED * 206 2026-05-02T09:00:00.000Z bob the last",
                "OK HISTORY * 1",
            ],
        );
        assert!(sent(&mut m).is_empty());
        let c = &m.conversations[0];
        let ids: Vec<i64> = c.lines.iter().filter_map(|l| l.msg).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (5..=206).collect::<Vec<_>>());
        assert_eq!(ids.len(), sorted.len(), "a message shown twice");
        // Our unconfirmed line is the logged one: shown once, delivered.
        let mine: Vec<&Line> = c.lines.iter().filter(|l| l.text == "mine").collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].msg, mine[0].kind),
            (Some(6), LineKind::Own(Delivery::Delivered))
        );
    }

    #[test]
    fn a_line_missed_across_a_restart_comes_untagged_and_is_matched_by_the_log() {
        let mut m = signed_in();
        feed(
            &mut m,
            &["@time=2026-05-02T08:00:00.000Z;id=5 MESSAGE bob before"],
        );
        // A restored session replays what it kept for us without tags.
        feed(
            &mut m,
            &["MESSAGE bob while away", "MESSAGE bob while away"],
        );
        lose_and_reconnect(&mut m);
        feed(
            &mut m,
            &["OK TAGS ON", "OK MULTILINE ON", "OK REGISTER alice"],
        );
        assert!(sent(&mut m).contains(&"HISTORY * 200 AFTER 5".to_owned()));
        feed(
            &mut m,
            &[
                "ERROR UNKNOWN_COMMAND unknown command SESSION",
                "OK LIST 0",
                "OK ROOMS 0",
                "LOGGED * 6 2026-05-02T08:00:01.000Z bob while away",
                "LOGGED * 7 2026-05-02T08:00:02.000Z bob while away",
                "LOGGED * 8 2026-05-02T08:00:03.000Z carol while away",
                "OK HISTORY * 3",
            ],
        );
        let lines = &m.conversations[0].lines;
        let away: Vec<(Option<&str>, Option<i64>)> = lines
            .iter()
            .filter(|l| l.text == "while away")
            .map(|l| (l.from.as_deref(), l.msg))
            .collect();
        assert_eq!(
            away,
            [
                (Some("bob"), Some(6)),
                (Some("bob"), Some(7)),
                (Some("carol"), Some(8))
            ]
        );
    }

    #[test]
    fn new_messages_are_marked_until_the_conversation_is_left() {
        let mut m = signed_in();
        joined(&mut m, "#den");
        feed(&mut m, &["OK HISTORY #den 0"]);
        let den = ConvId::room("#den");
        m.open(&ConvId::Everyone);
        feed(
            &mut m,
            &[
                "@time=2026-05-01T08:00:00.000Z;id=1 SAY #den bob one",
                "@time=2026-05-01T08:00:01.000Z;id=2 SAY #den bob two",
            ],
        );
        let c = m.conversation(&den).unwrap();
        let one = c.lines.iter().find(|l| l.text == "one").unwrap().id;
        assert_eq!((c.unread, c.new_since), (2, Some(one)));
        m.open(&den);
        let c = m.conversation(&den).unwrap();
        // Read, but the marker stays while the conversation is on screen.
        assert_eq!((c.unread, c.new_since), (0, Some(one)));
        feed(
            &mut m,
            &["@time=2026-05-01T08:00:02.000Z;id=3 SAY #den bob three"],
        );
        assert_eq!(m.conversation(&den).unwrap().new_since, Some(one));
        m.open(&ConvId::Everyone);
        assert_eq!(m.conversation(&den).unwrap().new_since, None);
    }

    #[test]
    fn day_separators_fall_between_local_days() {
        let at = |d, h| chrono::Local.with_ymd_and_hms(2026, 5, d, h, 0, 0).unwrap();
        let line = |at| Line {
            id: 1,
            at,
            from: None,
            text: String::new(),
            kind: LineKind::Event,
            msg: None,
            mention: false,
        };
        let (a, b, c) = (line(at(1, 9)), line(at(1, 23)), line(at(2, 0)));
        assert!(starts_day(None, &a));
        assert!(!starts_day(Some(&a), &b));
        assert!(starts_day(Some(&b), &c));
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let today = day(2026, 5, 8);
        assert_eq!(day_label(day(2026, 5, 8), today), "Today");
        assert_eq!(day_label(day(2026, 5, 7), today), "Yesterday");
        assert_eq!(day_label(day(2026, 5, 4), today), "Monday");
        assert_eq!(day_label(day(2026, 4, 30), today), "Thursday 30 April");
        assert_eq!(
            day_label(day(2025, 12, 24), today),
            "Wednesday 24 December 2025"
        );
    }

    #[test]
    fn search_finds_and_opens_a_result_paging_back_to_it() {
        let mut m = signed_in();
        m.submit("/search  build   green", now());
        assert_eq!(sent(&mut m), ["SEARCH build green"]);
        assert!(m.search.as_ref().unwrap().waiting);
        feed(
            &mut m,
            &[
                "LOGGED #den 9 2026-04-30T09:00:09.000Z carol is the build green?",
                "LOGGED * 8 2026-04-30T09:00:08.000Z dave build green now",
                "LOGGED Bob 7 2026-04-30T09:00:07.000Z Bob build: green",
                "OK SEARCH 3",
            ],
        );
        let s = m.search.clone().unwrap();
        assert!(!s.waiting);
        let places: Vec<(&ConvId, &str, i64)> = s
            .found
            .iter()
            .map(|f| (&f.conv, f.place.as_str(), f.msg))
            .collect();
        assert_eq!(
            places,
            [
                (&ConvId::room("#den"), "#den", 9),
                (&ConvId::Everyone, "Everyone", 8),
                (&ConvId::dm("bob"), "Bob", 7)
            ]
        );
        // Nothing of the search went into a conversation.
        assert!(m.conversation(&ConvId::dm("bob")).is_none());
        m.open_found(2);
        // The results stay, for the next one.
        assert!(m.search.is_some());
        assert_eq!(m.active, ConvId::dm("bob"));
        assert_eq!(m.focus, Some((ConvId::dm("bob"), 7)));
        assert_eq!(sent(&mut m), ["HISTORY bob 50"]);
        // The newest page does not reach it: older pages follow until it is there.
        let mut page = logged("Bob", 100, 50);
        page.push("OK HISTORY Bob 50".into());
        feed_all(&mut m, &page);
        assert_eq!(sent(&mut m), ["HISTORY bob 50 BEFORE 100"]);
        let mut page = logged("Bob", 7, 3);
        page.push("OK HISTORY Bob 3".into());
        feed_all(&mut m, &page);
        assert!(m.conversation(&ConvId::dm("bob")).unwrap().holds(7));
        assert!(sent(&mut m).is_empty());
    }

    #[test]
    fn search_errors_stay_in_the_search() {
        let mut m = signed_in();
        let before = texts(&m, &ConvId::Everyone).len();
        m.search("anything");
        feed(
            &mut m,
            &["ERROR STORE_UNAVAILABLE the store is unavailable right now; try again later"],
        );
        let s = m.search.clone().unwrap();
        assert_eq!(
            s.error.as_deref(),
            Some("Search is unavailable right now; try again later.")
        );
        assert_eq!(texts(&m, &ConvId::Everyone).len(), before);
        m.close_search();
        assert!(m.search.is_none());
    }

    #[test]
    fn me_lines_are_actions() {
        let mut m = signed_in();
        feed(&mut m, &["MESSAGE bob /me waves"]);
        let l = m.conversations[0].lines.back().unwrap();
        assert_eq!(l.action(), Some("waves"));
    }

    #[test]
    fn the_locale_decides_twelve_or_twenty_four_hours() {
        for l in ["en_US.UTF-8", "en_US", "en_CA.utf8", "en_AU", "en-US", "en"] {
            assert_eq!(Clock::for_locale(l), Clock::H12, "{l}");
        }
        for l in [
            "de_DE.UTF-8",
            "de_DE@euro",
            "en_GB.UTF-8",
            "en_IE",
            "fr_CA.UTF-8",
            "C",
            "C.UTF-8",
            "POSIX",
            "",
            "ja_JP.UTF-8",
        ] {
            assert_eq!(Clock::for_locale(l), Clock::H24, "{l}");
        }
    }

    #[test]
    fn times_are_written_as_the_clock_says() {
        let at = chrono::Local
            .with_ymd_and_hms(2026, 12, 4, 15, 7, 9)
            .single()
            .unwrap();
        assert_eq!(Clock::H24.time(&at), "15:07");
        assert_eq!(Clock::H12.time(&at), "3:07 PM");
        assert_eq!(Clock::H24.full(&at), "Friday 4 December 2026, 15:07:09");
        assert_eq!(Clock::H12.full(&at), "Friday, December 4, 2026, 3:07:09 PM");
        let morning = at - chrono::Duration::hours(15);
        assert_eq!(Clock::H12.time(&morning), "12:07 AM");
    }

    #[test]
    fn mentions_are_whole_names() {
        assert!(mentions("hi alice!", "Alice"));
        assert!(!mentions("hi malice", "alice"));
        assert!(mentions("[bob] ok", "[bob]"));
    }

    #[test]
    fn a_mention_is_marked_counted_apart_and_asks_for_attention() {
        let mut m = signed_in();
        assert!(!m.take_attention());
        feed(
            &mut m,
            &["DM bob psst", "DM bob ALICE, look", "DM bob malice"],
        );
        let c = m.conversation(&ConvId::dm("bob")).unwrap();
        assert_eq!((c.unread, c.mentioned), (3, 1));
        let marked: Vec<bool> = c.lines.iter().map(|l| l.mention).collect();
        assert_eq!(marked, [false, true, false]);
        assert_eq!((m.total_unread(), m.total_mentions()), (3, 1));
        assert!(m.take_attention());
        assert!(!m.take_attention(), "asked once per mention");
        // In the open conversation it is highlighted and still asks (the window may be in
        // the background), but is not unread.
        feed(&mut m, &["MESSAGE bob alice: and here"]);
        assert!(m.take_attention());
        assert_eq!(m.conversations[0].unread, 0);
        assert!(m.conversations[0].lines.back().unwrap().mention);
        // Our own words never mention us.
        m.submit("alice here", now());
        assert!(!m.conversations[0].lines.back().unwrap().mention);
        m.open(&ConvId::dm("bob"));
        assert_eq!(m.total_mentions(), 0);
    }

    #[test]
    fn a_muted_conversation_counts_nothing_and_is_remembered() {
        let mut m = signed_in();
        feed(&mut m, &["DM bob one"]);
        let bob = ConvId::dm("bob");
        m.set_muted(&bob, true);
        assert_eq!(m.total_unread(), 0, "muting clears what was counted");
        feed(&mut m, &["DM bob alice, two"]);
        assert_eq!((m.total_unread(), m.total_mentions()), (0, 0));
        assert!(!m.take_attention());
        // Still shown, and still highlighted when opened.
        assert!(m.conversation(&bob).unwrap().lines.back().unwrap().mention);
        let saved = m.take_mutes_change().unwrap().clone();
        assert_eq!(saved["localhost:8090"], BTreeSet::from(["@bob".to_owned()]));
        assert!(m.take_mutes_change().is_none());

        // Another run of the client, with what was saved: bob's DMs come in muted.
        let mut again = signed_in();
        again.set_mutes(saved.clone());
        feed(&mut again, &["DM bob alice?"]);
        assert!(again.conversation(&bob).unwrap().muted);
        assert_eq!(again.total_unread(), 0);
        // Muting is per server.
        let mut elsewhere = Model::new("other", 8090);
        elsewhere.set_mutes(saved);
        assert!(!elsewhere.saved_mute(&bob));

        again.set_muted(&bob, false);
        feed(&mut again, &["DM bob alice!"]);
        assert_eq!((again.total_unread(), again.total_mentions()), (1, 1));
        assert!(again.take_mutes_change().unwrap().is_empty());
    }

    #[test]
    fn disconnecting_keeps_what_was_loaded() {
        let mut m = signed_in();
        m.set_muted(&ConvId::Everyone, true);
        m.disconnect();
        m.on_net(NetEvent::Closed, now());
        assert_eq!(m.screen, Screen::Connect);
        assert!(m.conversations[0].muted);
    }

    #[test]
    fn neighbours_wrap_around_the_list() {
        let mut m = signed_in();
        assert_eq!(m.neighbour(1), None, "Everyone alone has no neighbour");
        feed(&mut m, &["DM bob one", "DM carol two"]);
        assert_eq!(m.neighbour(1), Some(ConvId::dm("bob")));
        assert_eq!(m.neighbour(-1), Some(ConvId::dm("carol")));
        m.open(&ConvId::dm("carol"));
        assert_eq!(m.neighbour(1), Some(ConvId::Everyone));
        assert_eq!(m.neighbour(-1), Some(ConvId::dm("bob")));
    }

    /// Three lines of code, as pasted.
    const CODE: &str = "fn main() {\n    println!(\"hi\\n\");\n}";

    #[test]
    fn a_text_of_several_lines_goes_as_one_escaped_line() {
        let mut m = signed_in();
        // Blank lines around it go; CR LF is a line break.
        assert!(m.submit(&format!("\r\n{}\r\n\n", CODE.replace('\n', "\r\n")), now()));
        assert_eq!(
            sent(&mut m),
            [r#"MESSAGE fn main() {\n    println!("hi\\n");\n}"#]
        );
        let own = m.conversations[0].lines.back().unwrap();
        assert_eq!(own.text, CODE);
        assert_eq!(own.text.lines().count(), 3);
        // In a room and a DM alike.
        joined(&mut m, "#den");
        assert!(m.submit("a\\b\nc", now()));
        assert_eq!(sent(&mut m), [r"SAY #den a\\b\nc"]);
    }

    #[test]
    fn a_message_of_three_lines_arrives_as_three_lines() {
        let mut m = signed_in();
        feed(
            &mut m,
            &[r#"@id=9 MESSAGE bob fn main() {\n    println!("hi\\n");\n}"#],
        );
        let line = m.conversations[0].lines.back().unwrap();
        assert_eq!(line.text, CODE);
        assert_eq!(
            line.text.lines().collect::<Vec<_>>(),
            ["fn main() {", "    println!(\"hi\\n\");", "}"]
        );
        // A backslash before anything else means itself.
        feed(&mut m, &[r"DM bob C:\temp\ and \\ one"]);
        assert_eq!(said(&m, &ConvId::dm("bob")), [r"<bob> C:\temp\ and \ one"]);
        // History and search read them the same way.
        joined(&mut m, "#den");
        feed(
            &mut m,
            &[
                r"LOGGED #den 11 2026-04-30T09:00:01.000Z bob one\ntwo",
                "OK HISTORY #den 1",
            ],
        );
        assert_eq!(said(&m, &ConvId::room("#den")), ["<bob> one\ntwo"]);
        m.search("two");
        assert_eq!(sent(&mut m), ["SEARCH two"]);
        feed(
            &mut m,
            &[
                r"LOGGED #den 11 2026-04-30T09:00:01.000Z bob one\ntwo",
                "OK SEARCH 1",
            ],
        );
        assert_eq!(m.search.as_ref().unwrap().found[0].text, "one\ntwo");
    }

    #[test]
    fn a_server_without_multiline_gets_one_message_a_line() {
        let mut m = Model::new("h", 1);
        m.on_net(
            NetEvent::Connected {
                addr: "h:1".into(),
                reconnect: false,
                tls: false,
            },
            now(),
        );
        m.register("alice");
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "REGISTER alice"]);
        feed(
            &mut m,
            &[
                "OK TAGS ON",
                "ERROR UNKNOWN_COMMAND unknown command MULTILINE",
                "OK REGISTER alice",
            ],
        );
        assert_eq!(m.screen, Screen::Chat);
        sent(&mut m);
        assert!(m.submit("one\n\ntwo \\n", now()));
        assert_eq!(sent(&mut m), ["MESSAGE one", r"MESSAGE two \n"]);
        // Its texts are taken as they are.
        feed(&mut m, &[r"MESSAGE bob a\nb"]);
        assert_eq!(m.conversations[0].lines.back().unwrap().text, r"a\nb");
    }

    #[test]
    fn what_is_sent_is_what_the_server_keeps() {
        assert_eq!(tidy_text(" \r\n\n  x\r\n\n \n y \n \n"), "  x\n\n y ");
        assert_eq!(tidy_text("  one line  "), "  one line  ");
        // Refused by the server as it is: sent so, for the server to say why.
        assert_eq!(tidy_text("\n \n"), "\n \n");
        assert_eq!(tidy_text("a\u{7}\r\nb\rc"), "a\u{7}\nb\nc");
    }

    /// Feeds one server line as if it came `secs` seconds after [`now`].
    fn feed_after(m: &mut Model, secs: i64, line: &str) {
        let (tags, bare) = LineTags::split(line);
        let at = now() + chrono::TimeDelta::seconds(secs);
        m.on_net(
            NetEvent::Line(ServerLine::parse(bare).unwrap().into_owned(), tags),
            at,
        );
    }

    fn typing(m: &Model, id: &ConvId, secs: i64) -> Option<String> {
        m.conversation(id)
            .unwrap()
            .typing_line(now() + chrono::TimeDelta::seconds(secs))
    }

    #[test]
    fn who_is_typing_shows_until_done_their_message_or_six_seconds() {
        let mut m = signed_in();
        joined(&mut m, "#den");
        let den = ConvId::room("#den");
        // The server's time on the line is not what it expires by: ours is.
        feed(
            &mut m,
            &["@time=2020-01-01T00:00:00.000Z TYPING #den bob active"],
        );
        assert_eq!(typing(&m, &den, 0).as_deref(), Some("bob is typing…"));
        assert_eq!(typing(&m, &ConvId::Everyone, 0), None);
        feed(
            &mut m,
            &["TYPING #den Carol active", "TYPING #den dave active"],
        );
        assert_eq!(
            typing(&m, &den, 1).as_deref(),
            Some("bob, Carol and dave are typing…")
        );
        feed(&mut m, &["TYPING #den erin active"]);
        assert_eq!(typing(&m, &den, 1).as_deref(), Some("4 people are typing…"));
        // done, paused, their message and leaving each end it.
        feed(
            &mut m,
            &[
                "TYPING #den erin done",
                "TYPING #den dave paused",
                "SAY #den carol hello",
                "PARTED #den bob",
            ],
        );
        assert_eq!(typing(&m, &den, 1), None);
        // Six seconds without a word, unless they say it again.
        feed(&mut m, &["TYPING #den bob active"]);
        assert_eq!(typing(&m, &den, 5).as_deref(), Some("bob is typing…"));
        assert_eq!(typing(&m, &den, 6), None);
        feed_after(&mut m, 4, "TYPING #den bob active");
        assert_eq!(typing(&m, &den, 9).as_deref(), Some("bob is typing…"));
        // Everyone, and a DM (named by the typist), and never ourselves.
        feed(&mut m, &["TYPING * bob active", "TYPING * alice active"]);
        assert_eq!(
            typing(&m, &ConvId::Everyone, 0).as_deref(),
            Some("bob is typing…")
        );
        feed(&mut m, &["MESSAGE bob hi all"]);
        assert_eq!(typing(&m, &ConvId::Everyone, 0), None);
        m.open_dm("bob");
        feed(&mut m, &["TYPING bob bob active"]);
        assert_eq!(
            typing(&m, &ConvId::dm("bob"), 0).as_deref(),
            Some("bob is typing…")
        );
        feed(&mut m, &["OFFLINE bob"]);
        assert_eq!(typing(&m, &ConvId::dm("bob"), 0), None);
        assert_eq!(typing(&m, &den, 5), None);
        // Somewhere we have no conversation: nothing is made for it.
        feed(
            &mut m,
            &["TYPING #elsewhere bob active", "TYPING zed zed active"],
        );
        assert!(m.conversation(&ConvId::dm("zed")).is_none());
    }

    #[test]
    fn a_flood_of_typists_is_not_kept() {
        let mut m = signed_in();
        for i in 0..500 {
            feed(&mut m, &[&format!("TYPING * u{i} active")]);
        }
        assert_eq!(m.conversations[0].typing.len(), MAX_TYPISTS);
    }

    #[test]
    fn typing_is_told_at_most_every_three_seconds_and_done_when_cleared() {
        let mut m = signed_in();
        let at = |s: i64| now() + chrono::TimeDelta::seconds(s);
        m.typed("h", at(0));
        assert_eq!(sent(&mut m), ["TYPING * active"]);
        m.typed("he", at(1));
        m.typed("hel", at(2));
        assert!(sent(&mut m).is_empty());
        m.typed("hell", at(3));
        assert_eq!(sent(&mut m), ["TYPING * active"]);
        // The box emptied, or a command in it: done, once.
        m.typed("", at(4));
        m.typed(" ", at(4));
        assert_eq!(sent(&mut m), ["TYPING * done"]);
        m.typed("/join #den", at(5));
        assert!(sent(&mut m).is_empty());
        // The answers and refusals show nowhere.
        let before = texts(&m, &ConvId::Everyone).len();
        feed(
            &mut m,
            &["OK TYPING active", "OK TYPING active", "OK TYPING done"],
        );
        m.typed("x", at(6));
        feed(&mut m, &["ERROR NO_SUCH_USER no such user"]);
        assert_eq!(texts(&m, &ConvId::Everyone).len(), before);
        assert_eq!(sent(&mut m), ["TYPING * active"]);
        // Sending says it: no done after the message.
        assert!(m.submit("x", at(7)));
        assert_eq!(sent(&mut m), ["MESSAGE x"]);
        m.typed("", at(7));
        assert!(sent(&mut m).is_empty());
        // Writing elsewhere: done here, active there.
        joined(&mut m, "#den");
        m.open(&ConvId::Everyone);
        m.typed("a", at(8));
        m.open(&ConvId::room("#den"));
        m.typed("ab", at(8));
        assert_eq!(
            sent(&mut m),
            ["TYPING * active", "TYPING * done", "TYPING #den active"]
        );
        // Not in a room we left, nor to a partner who is offline.
        feed(&mut m, &["OK PART #den"]);
        m.typed("abc", at(20));
        m.open_dm("carol");
        m.typed("abcd", at(20));
        assert_eq!(sent(&mut m), ["HISTORY carol 50"]);
        // A lost connection forgets it: nothing is said about it afterwards.
        m.open(&ConvId::Everyone);
        m.typed("a", at(30));
        assert_eq!(sent(&mut m), ["TYPING * active"]);
        lose_and_reconnect(&mut m);
        m.typed("", at(31));
        assert_eq!(sent(&mut m), ["TAGS ON", "MULTILINE ON", "REGISTER alice"]);
    }

    #[test]
    fn moderation_slash_commands_act_on_the_open_room_and_answer_where_typed() {
        let mut m = signed_in();
        // Outside a room, a command that needs one says so and sends nothing.
        assert!(!m.submit("/op bob", now()));
        assert!(sent(&mut m).is_empty());
        let t = texts(&m, &ConvId::Everyone);
        assert!(
            t.iter()
                .any(|l| l == "/op: name a room (#name) or open one first"),
            "{t:?}"
        );

        m.join("#den", now());
        feed(
            &mut m,
            &["MEMBER #den @alice", "MEMBER #den bob", "OK JOIN #den 2"],
        );
        sent(&mut m);
        feed(&mut m, &["OK MODE #den +nt", "OK HISTORY #den 0"]);
        let den = ConvId::room("#den");
        m.open(&den);
        for typed in [
            "/op bob",
            "/voice #den bob",
            "/mode +l 20",
            "/mode",
            "/ban carol",
            "/ban *!*@spam",
            "/unban carol",
            "/invite dave",
            "/bans",
        ] {
            assert!(m.submit(typed, now()), "{typed}");
        }
        assert_eq!(
            sent(&mut m),
            [
                "MODE #den +o bob",
                "MODE #den +v bob",
                "MODE #den +l 20",
                "MODE #den",
                "MODE #den +b carol!*@*",
                "MODE #den +b *!*@spam",
                // The bans not asked yet: both forms, as lifting one not there changes nothing.
                "MODE #den -b carol!*@*",
                "MODE #den -b $a:carol",
                "INVITE #den dave",
                "BANS #den",
            ]
        );
        feed(
            &mut m,
            &[
                "OPERATOR #den bob",
                "OK MODE #den +o bob",
                "ERROR USER_NOT_IN_ROOM bob is not in #den",
                "ERROR NOT_OPERATOR you are not an operator of #den",
                "OK MODE #den +ntl 20",
                "MODE #den alice +b carol!*@*",
                "OK MODE #den +b carol!*@*",
                "MODE #den alice +b *!*@spam",
                "OK MODE #den +b *!*@spam",
                "MODE #den alice -b carol!*@*",
                "OK MODE #den -b carol!*@*",
                "OK MODE #den -b $a:carol",
                "OK INVITE #den dave",
                "BAN #den *!*@spam alice 2026-05-01T10:00:00Z",
                "OK BANS #den 1",
            ],
        );
        let t = texts(&m, &den);
        for want in [
            "bob is now an operator of #den",
            "Could not change the modes of #den (+v bob): bob is not in #den",
            "Could not change the modes of #den (+l 20): you are not an operator of #den",
            "The modes of #den: +ntl 20",
            "You banned carol!*@* from #den.",
            "You lifted the ban on carol!*@*.",
            "You invited dave to #den",
            "The bans of #den:",
            "*!*@spam\tset by alice at 2026-05-01T10:00:00Z",
        ] {
            assert!(t.iter().any(|l| l == want), "{want}: {t:?}");
        }
        assert!(!t.iter().any(|l| l.starts_with("OK ")), "{t:?}");

        // With the bans known, /unban lifts only the one that is there, or says none is.
        assert!(!m.submit("/unban carol", now()));
        assert!(m.submit("/unban #den *!*@spam", now()));
        assert_eq!(sent(&mut m), ["MODE #den -b *!*@spam"]);
        let t = texts(&m, &den);
        let none = "No ban of #den holds carol; /bans lists them.";
        assert!(t.iter().any(|l| l == none), "{t:?}");
    }

    #[test]
    fn an_operator_moderates_and_the_changes_read_as_sentences() {
        let mut m = signed_in();
        m.join("#den", now());
        feed(
            &mut m,
            &[
                "MEMBER #den @alice",
                "MEMBER #den +bob",
                "MEMBER #den carol",
                "OK JOIN #den 3",
            ],
        );
        assert_eq!(sent(&mut m), ["JOIN #den", "MODE #den", "HISTORY #den 50"]);
        feed(&mut m, &["OK MODE #den +ntk sesame", "OK HISTORY #den 0"]);
        let den = ConvId::room("#den");
        assert!(m.is_op(&den) && m.can_set_topic(&den));
        let c = m.conversation(&den).unwrap();
        assert_eq!(c.modes.as_ref().unwrap().key.as_deref(), Some("sesame"));
        assert!(c.members.iter().find(|m| m.name == "bob").unwrap().voice);

        m.set_mode("#den", "+i", "make #den invite-only", now());
        m.ban("#den", "carol", now());
        // What cannot be one word (or a number) is refused here, never sent.
        m.set_key("#den", "two words", now());
        m.set_limit("#den", "0", now());
        m.invite("#den", "dave\r\nQUIT", now());
        m.set_limit("#den", " 20 ", now());
        m.invite("#den", "dave", now());
        m.kick("#den", "carol", now());
        m.ask_bans("#den", now());
        m.set_topic("#den", "crabs\nQUIT", now());
        assert_eq!(
            sent(&mut m),
            [
                "MODE #den +i",
                "MODE #den +b carol!*@*",
                "MODE #den +l 20",
                "INVITE #den dave",
                "KICK #den carol",
                "BANS #den",
                "TOPIC #den crabs QUIT",
            ]
        );
        feed(
            &mut m,
            &[
                "MODE #den alice +i",
                "OK MODE #den +i",
                "MODE #den alice +b carol!*@*",
                "OK MODE #den +b carol!*@*",
                "ERROR ROOM_FULL #den has more members than that",
                "OK INVITE #den dave",
                "KICKED #den carol alice",
                "OK KICK #den carol",
                "BAN #den carol!*@* alice 2026-05-01T10:00:00Z",
                "OK BANS #den 1",
                "TOPIC #den alice crabs QUIT",
                "OK TOPIC #den",
            ],
        );
        let t = texts(&m, &den);
        for want in [
            "A key is one word of visible characters, without spaces.",
            "A member limit is a number from 1.",
            "Name the one to invite.",
            "You made #den invite-only.",
            "You banned carol!*@* from #den.",
            "Could not limit #den to 20 members: #den has more members than that",
            "You invited dave to #den",
        ] {
            assert!(t.iter().any(|l| l == want), "{want}: {t:?}");
        }
        assert!(!t.iter().any(|l| l.starts_with("OK ")), "{t:?}");
        let c = m.conversation(&den).unwrap();
        assert!(c.modes.as_ref().unwrap().invite_only);
        let masks = |m: &Model| -> Vec<String> {
            let c = m.conversation(&den).unwrap();
            c.bans.iter().flatten().map(|b| b.mask.clone()).collect()
        };
        assert_eq!(masks(&m), ["carol!*@*"]);

        // Another operator's changes keep what we know up to date.
        feed(
            &mut m,
            &[
                "OPERATOR #den bob",
                "MODE #den bob -b carol!*@*",
                "MODE #den bob +b $a:erin",
                "MODE #den bob -k",
                "MODE #den bob -t",
                "MODE #den bob -v bob",
                "MODE #den bob -o alice",
            ],
        );
        assert_eq!(masks(&m), ["$a:erin"]);
        let c = m.conversation(&den).unwrap();
        assert_eq!(c.modes.as_ref().unwrap().key, None);
        assert!(!c.members.iter().find(|m| m.name == "bob").unwrap().voice);
        assert!(!m.is_op(&den));
        // A -t room lets every member set its topic.
        assert!(m.can_set_topic(&den));
        let t = texts(&m, &den);
        for want in [
            "bob lifted the ban on carol!*@*.",
            "bob banned the account erin from #den.",
            "bob removed the key of #den.",
            "bob let every member set the topic of #den.",
            "bob took voice from bob.",
            "bob took operator status from you.",
        ] {
            assert!(t.iter().any(|l| l == want), "{want}: {t:?}");
        }
        // Leaving forgets the modes: they are asked anew on joining again.
        feed(&mut m, &["MODE #den bob +t", "KICKED #den alice bob"]);
        assert!(!m.can_set_topic(&den));
        assert!(m.conversation(&den).unwrap().modes.is_none());
    }
}
