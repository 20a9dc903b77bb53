//! One client's conversation with the server: commands in, lines out.
//!
//! A session holds what the protocol needs to know about a client (its name, if registered)
//! and turns each line it sends into effects on the hub and lines in outboxes. It does no I/O
//! of its own, which keeps the protocol's rules in one synchronous place; the connection task
//! feeds it lines and writes its outbox.

use crate::account::{AccountWait, Done};
use crate::claim::{PendingName, Wait};
use crate::client_id::ClientId;
use crate::config::Policy;
use crate::event::Flavor;
use crate::handler::{End, Flow, Handler, bye};
use crate::history::{Keeping, Later};
use crate::hub::{Hub, NameCheck, Registered, RoomView, Welcome};
use crate::outbox::Outbox;
use bytes::{Bytes, BytesMut};
use natter_proto::command::{
    Help, Invite, Join, Kick, ModeCmd, Part, Register, RoomArg, Say, Topic,
};
use natter_proto::limits::MAX_LINE_BYTES;
use natter_proto::multiline::LinesError;
use natter_proto::text::TextError;
use natter_proto::{ByeReason, Command, ErrorCode, ServerLine, help};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Wrong passwords (the server's, or an account's) after which a client is disconnected.
const MAX_WRONG_PASSWORDS: u8 = 3;

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    /// This connection's identity in the hub.
    id: ClientId,
    /// The peer, for logs.
    peer: SocketAddr,
    /// The registered name; `None` until REGISTER succeeds.
    name: Option<Arc<str>>,
    /// This client's own outgoing queue.
    outbox: Arc<Outbox>,
    /// Shared routing state.
    hub: Arc<Hub>,
    /// Password and timeouts.
    policy: Arc<Policy>,
    /// Whether the client gave the password (or none is needed).
    authed: bool,
    /// Wrong passwords so far.
    wrong_passwords: u8,
    /// The client holds a resume token (`SESSION`, or it resumed): a lost connection leaves
    /// the session waiting for it rather than leaving.
    resumable: bool,
    /// Events come after their time and message id (`TAGS ON`).
    tags: bool,
    /// Message texts, sent and received, are escaped and may hold several lines
    /// (`MULTILINE ON`).
    multiline: bool,
    /// Lines of multi-line messages beyond their first, not yet counted by flood control.
    extra_lines: usize,
    /// Unregistered: when the connection started, for the registration deadline.
    /// Registered: when the client last sent a line, for the idle timeout. One field for
    /// both, because every idle client carries it.
    mark: Instant,
    /// MESSAGEs or DMs read in this batch of input and not yet sent (see
    /// [`Session::gather`]).
    batch: Option<Box<Batch>>,
    /// A REGISTER waiting for the cluster to grant its name, or an account request for its
    /// outcome; boxed, so that sessions that wait for nothing (all of them, most of the
    /// time) pay one pointer.
    pending: Option<Box<Wait>>,
    /// A long answer being written page by page (boxed: rarely there).
    answer: Option<Box<Answer>>,
}

/// A long answer (a list of users, rooms or members) in progress: it is written a page at a
/// time as the client takes it ([`Handler::answer_more`]), never built whole, so asking for
/// it costs the server no more than the client's bound.
#[derive(Debug)]
enum Answer {
    /// `LIST`: the registered users.
    /// (`ACCOUNTS` when `accounts`: those logged into an account only.)
    Users {
        last: Option<String>,
        count: usize,
        accounts: bool,
    },
    /// `ROOMS`: every room.
    Rooms { last: Option<String>, count: usize },
    /// `WHO`: a room's members.
    Members {
        room: String,
        last: Option<String>,
        count: usize,
    },
}

/// Entries in one page of a long answer.
const PAGE: usize = 256;

/// Consecutive MESSAGE texts, or DM texts to one user, from one read, sent together.
#[derive(Debug, Default)]
struct Batch {
    /// `None` for MESSAGEs; for DMs, the recipient as typed.
    to: Option<Box<str>>,
    /// The texts, one after the other.
    text: String,
    /// Where each text ends in `text`.
    ends: Vec<usize>,
}

/// Most MESSAGE bytes gathered before they are sent, whatever the input holds.
const BATCH_BYTES: usize = 64 * 1024;

fn err(code: ErrorCode, text: impl Into<Cow<'static, str>>) -> Bytes {
    ServerLine::Error {
        code,
        text: text.into(),
    }
    .to_bytes()
}

fn ok(verb: &str, detail: &str) -> Bytes {
    ServerLine::Ok {
        verb: Cow::Borrowed(verb),
        detail: Cow::Borrowed(detail),
    }
    .to_bytes()
}

impl Session {
    /// A fresh, unregistered session.
    pub fn new(
        id: ClientId,
        peer: SocketAddr,
        outbox: Arc<Outbox>,
        hub: Arc<Hub>,
        policy: Arc<Policy>,
    ) -> Self {
        let now = Instant::now();
        Self {
            id,
            peer,
            name: None,
            outbox,
            hub,
            authed: policy.password.is_none(),
            resumable: false,
            tags: false,
            multiline: false,
            extra_lines: 0,
            policy,
            wrong_passwords: 0,
            mark: now,
            batch: None,
            pending: None,
            answer: None,
        }
    }

    /// This session with its registration deadline counted from `since` (when its
    /// connection was accepted), not from now.
    pub fn counting_from(mut self, since: Instant) -> Self {
        self.mark = since;
        self
    }

    /// The hub this session routes through.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The registered name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn reply(&self, line: Bytes) {
        // If this overflows, the client stopped reading its own replies; the connection task
        // sees the overflow and disconnects it. Arrivals the hub is still gathering are
        // announced first, so no answer overtakes an ONLINE of a user already registered.
        self.hub.announce_arrivals();
        self.outbox.push(line);
    }

    fn error(&self, code: ErrorCode) {
        self.reply_error(code, code.default_text());
    }

    /// Sends `ERROR <code> <text>` and counts it for `/metrics`.
    fn reply_error(&self, code: ErrorCode, text: impl Into<Cow<'static, str>>) {
        self.hub.stats().error(code);
        self.reply(err(code, text));
    }

    /// Handles one raw line (without its line ending).
    fn line(&mut self, raw: &[u8]) -> Flow {
        if self.name.is_some() {
            self.mark = Instant::now();
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            debug!(peer = %self.peer, "invalid UTF-8 line");
            self.flush_messages();
            self.error(ErrorCode::InvalidUtf8);
            return Flow::Continue;
        };
        let parsed = Command::parse(line);
        let gathers = match &parsed {
            Ok(Some(Command::Message(_))) => Some(None),
            Ok(Some(Command::Dm(d))) => Some(Some(d.to)),
            _ => None,
        };
        // Every answer follows the answers to the messages before it: anything but one
        // more message of the same batch sends the batch first. Its answers may wait until
        // the log has it, and this line then waits too.
        let joins_batch = self.name.is_some()
            && gathers.is_some_and(|to| self.batch.as_ref().is_none_or(|b| b.to.as_deref() == to));
        if !joins_batch {
            self.flush_messages();
            if let Some(Wait::Later(later)) = self.pending.as_deref_mut() {
                later.deferred = Some(raw.into());
                return Flow::Continue;
            }
        }
        match parsed {
            Ok(None) => Flow::Continue,
            Ok(Some(cmd)) => {
                if cmd.has_secret() {
                    debug!(peer = %self.peer, user = self.name(), command = %format_args!("{} <redacted>", cmd.verb()), "command");
                } else {
                    debug!(peer = %self.peer, user = self.name(), command = %line, "command");
                }
                if self.name.is_none() && !cmd.allowed_unregistered() {
                    self.error(ErrorCode::NotRegistered);
                    return Flow::Continue;
                }
                self.dispatch(cmd)
            }
            Err(e) => {
                match e.verb.filter(|v| Command::verb_has_secret(v)) {
                    Some(verb) => {
                        debug!(peer = %self.peer, user = self.name(), command = %format_args!("{verb} <redacted>"), code = %e.code, "bad command")
                    }
                    None => {
                        debug!(peer = %self.peer, user = self.name(), command = %line, code = %e.code, "bad command")
                    }
                }
                let gated = e
                    .verb
                    .is_some_and(|v| !Command::verb_allowed_unregistered(v));
                if self.name.is_none() && gated {
                    self.error(ErrorCode::NotRegistered);
                } else {
                    self.reply_error(e.code, e.text);
                }
                Flow::Continue
            }
        }
    }

    fn dispatch(&mut self, cmd: Command<'_>) -> Flow {
        match cmd {
            Command::Message(m) => {
                if let Some(text) = self.message_text(m.text) {
                    self.gather(None, &text);
                }
                return Flow::Continue;
            }
            Command::Dm(d) => {
                if let Some(text) = self.message_text(d.text) {
                    self.gather(Some(d.to), &text);
                }
                return Flow::Continue;
            }
            _ => {}
        }
        // Everything else answers in order with the messages before it.
        self.flush_messages();
        match cmd {
            Command::Register(r) => self.register(r),
            Command::Help(h) => self.help(h),
            Command::Close => {
                // Leave first, so that nothing routed to this client can follow its BYE.
                Handler::leave(self, End::Close);
                self.reply(bye(ByeReason::Closed));
                return Flow::Close;
            }
            Command::List => self.list(),
            Command::Message(_) | Command::Dm(_) => unreachable!("gathered above"),
            Command::Join(j) => self.join(j),
            Command::Part(p) => self.part(p),
            Command::Say(m) => self.say(m),
            Command::History(h) => self.history(h),
            Command::Search(s) => self.search(s),
            Command::Rooms => self.rooms(),
            Command::Who(w) => self.who(w),
            Command::Topic(t) => self.topic(t),
            Command::Kick(k) => self.kick(k),
            Command::Password(p) => return self.password(p.password),
            Command::Login(l) => self.login(l.name, l.password),
            Command::Logout => self.logout(),
            Command::Account(a) => self.account(a),
            Command::Kill(k) => self.kill(k.user, k.reason.unwrap_or("")),
            Command::Session => self.session_token(),
            Command::Accounts => self.accounts(),
            Command::Resume(r) => self.resume(r.token),
            Command::Tags(on) => self.tags(on),
            Command::Multiline(on) => self.multiline(on),
            Command::Mode(m) => self.mode(m),
            Command::Bans(b) => self.bans(b),
            Command::Invite(i) => self.invite(i),
            Command::Typing(t) => self.typing(t),
        }
        Flow::Continue
    }

    /// Whether this connection is logged into an account: it holds an account's name.
    fn logged_in(&self) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| self.hub.accounts().is_reserved(n))
    }

    fn login(&mut self, name: &str, password: &str) {
        if !self.authed {
            self.error(ErrorCode::PasswordRequired);
            return;
        }
        let accounts = self.hub.accounts().clone();
        let (name, password, from) = (name.to_owned(), password.to_owned(), self.peer.ip());
        self.wait_for(async move {
            accounts
                .login(name, password, from)
                .await
                .map(Done::LoggedIn)
        });
    }

    /// How the hub writes this connection's events.
    fn flavor(&self) -> Flavor {
        Flavor::native(self.tags, self.multiline)
    }

    /// `MULTILINE ON|OFF`: escaped texts of several lines, or plain one-line texts, from now
    /// on, both ways.
    fn multiline(&mut self, on: bool) {
        self.multiline = on;
        if self.name.is_some() {
            self.hub.set_flavor(self.id, self.flavor());
        }
        self.reply(ok("MULTILINE", if on { "ON" } else { "OFF" }));
    }

    /// A message text as this connection sent it, as it is kept: unescaped and checked by
    /// the multi-line rule if it said `MULTILINE ON`, else as it came (the text rule already
    /// held). An error is answered in order with the messages before it.
    fn message_text<'t>(&mut self, text: &'t str) -> Option<Cow<'t, str>> {
        if !self.multiline {
            return Some(Cow::Borrowed(text));
        }
        let normalized = match natter_proto::multiline::unescape(text) {
            Cow::Borrowed(t) => natter_proto::multiline::normalize(t),
            Cow::Owned(t) => {
                natter_proto::multiline::normalize(&t).map(|n| Cow::Owned(n.into_owned()))
            }
        };
        match normalized {
            Ok(t) => {
                self.extra_lines += natter_proto::multiline::lines(&t).count().saturating_sub(1);
                Some(t)
            }
            Err(e) => {
                let (code, detail) = match e {
                    LinesError::TooMany => (ErrorCode::TooManyLines, None),
                    LinesError::Text(TextError::Empty) => (ErrorCode::EmptyText, None),
                    LinesError::Text(TextError::Control) => (ErrorCode::BadText, None),
                    LinesError::Text(e) => (ErrorCode::BadText, Some(e.to_string())),
                };
                self.flush_messages();
                self.errors_in_order(code, detail, 1);
                None
            }
        }
    }

    /// `TAGS ON|OFF`: events after their time and id, or not, from now on.
    fn tags(&mut self, on: bool) {
        self.tags = on;
        if self.name.is_some() {
            self.hub.set_flavor(self.id, self.flavor());
        }
        self.reply(ok("TAGS", if on { "ON" } else { "OFF" }));
    }

    /// `SESSION`: a resume token, and how long a lost connection's session waits for it.
    fn session_token(&mut self) {
        match self.hub.session_token(self.id) {
            Ok(token) => {
                self.resumable = true;
                let secs = self.hub.linger_time().as_secs().to_string();
                self.reply(ok("SESSION", &format!("{token} {secs}")));
            }
            Err(code) => self.error(code),
        }
    }

    /// `RESUME <token>`: takes over a session whose connection was lost.
    fn resume(&mut self, token: &str) {
        if !self.authed {
            self.error(ErrorCode::PasswordRequired);
            return;
        }
        if self.name.is_some() {
            self.reply_error(
                ErrorCode::NoSession,
                "RESUME takes over a session from a new connection; this one is registered",
            );
            return;
        }
        // The answer and the rooms, then what it missed, all queued under the hub's lock.
        let answer = |w: &Welcome<'_>| taken_over("RESUME", w);
        match self
            .hub
            .resume(self.id, token, &self.outbox, self.flavor(), &answer)
        {
            Ok((_, name)) => {
                info!(peer = %self.peer, user = %name, "resumed");
                self.name = Some(name);
                self.resumable = true;
                self.mark = Instant::now();
            }
            Err(code) => self.error(code),
        }
    }

    fn logout(&mut self) {
        if !self.logged_in() {
            self.error(ErrorCode::NotLoggedIn);
            return;
        }
        if let Some(name) = self.name.take() {
            self.hub.leave(self.id, "logged out");
            info!(peer = %self.peer, user = %name, "logged out");
        }
        // A fresh registration deadline, as for a new connection.
        self.mark = Instant::now();
        self.reply(ok("LOGOUT", ""));
    }

    fn account(&mut self, a: natter_proto::command::Account<'_>) {
        use natter_proto::command::Account as A;
        let Some(name) = self.name.as_deref().map(str::to_owned) else {
            self.error(ErrorCode::NotRegistered);
            return;
        };
        let accounts = self.hub.accounts().clone();
        let from = self.peer.ip();
        match a {
            A::Create { password } => {
                if self.logged_in() {
                    self.error(ErrorCode::AccountExists);
                } else if !natter_proto::password::acceptable(password) {
                    self.error(ErrorCode::WeakPassword);
                } else {
                    let password = password.to_owned();
                    self.wait_for(async move {
                        accounts
                            .create(name, password)
                            .await
                            .map(|()| Done::Created)
                    });
                }
            }
            A::Password { old, new } => {
                if !self.logged_in() {
                    self.error(ErrorCode::NotLoggedIn);
                } else if !natter_proto::password::acceptable(new) {
                    self.error(ErrorCode::WeakPassword);
                } else {
                    let (old, new) = (old.to_owned(), new.to_owned());
                    self.wait_for(async move {
                        accounts
                            .change_password(name, old, new, from)
                            .await
                            .map(|()| Done::PasswordChanged)
                    });
                }
            }
            A::Token => {
                if self.logged_in() {
                    self.wait_for(async move { accounts.issue_token(name).await.map(Done::Token) });
                } else {
                    self.error(ErrorCode::NotLoggedIn);
                }
            }
            A::Delete { password } => {
                if !self.logged_in() {
                    self.error(ErrorCode::NotLoggedIn);
                } else {
                    let password = password.to_owned();
                    self.wait_for(async move {
                        accounts
                            .delete(name, password, from)
                            .await
                            .map(|()| Done::Deleted)
                    });
                }
            }
        }
    }

    /// Runs an account request; the connection takes no other line until it is answered.
    fn wait_for(
        &mut self,
        request: impl std::future::Future<Output = Result<Done, ErrorCode>> + Send + 'static,
    ) {
        self.pending = Some(Box::new(Wait::Account(AccountWait::spawn(request))));
    }

    /// Answers an account request that has come to an end.
    fn account_done(&mut self, outcome: Result<Done, ErrorCode>) -> Flow {
        let name = self.name.clone();
        match outcome {
            Ok(Done::LoggedIn(l)) => self.take_name(&l.name, true),
            Ok(Done::Created) => {
                if let Some(n) = &name {
                    self.hub.account_changed(n, true);
                    self.reply(ok("ACCOUNT", &format!("CREATE {n}")));
                }
            }
            Ok(Done::PasswordChanged) => self.reply(ok("ACCOUNT", "PASSWORD")),
            Ok(Done::Token(token)) => self.reply(ok("ACCOUNT", &format!("TOKEN {token}"))),
            Ok(Done::Deleted) => {
                if let Some(n) = &name {
                    self.hub.account_changed(n, false);
                    self.reply(ok("ACCOUNT", &format!("DELETE {n}")));
                }
            }
            Err(ErrorCode::BadLogin) => {
                self.wrong_passwords += 1;
                if self.wrong_passwords >= MAX_WRONG_PASSWORDS {
                    Handler::leave(self, End::Close);
                    self.reply(bye(ByeReason::BadLogin));
                    return Flow::Close;
                }
                self.error(ErrorCode::BadLogin);
            }
            Err(code) => self.error(code),
        }
        Flow::Continue
    }

    fn password(&mut self, given: &str) -> Flow {
        match &self.policy.password {
            Some(secret) if !secret.matches(given) => {
                self.wrong_passwords += 1;
                warn!(peer = %self.peer, attempts = self.wrong_passwords, "wrong password");
                if self.wrong_passwords >= MAX_WRONG_PASSWORDS {
                    // Leave first, so that nothing routed to this client can follow its BYE.
                    Handler::leave(self, End::Close);
                    self.reply(bye(ByeReason::BadPassword));
                    return Flow::Close;
                }
                self.error(ErrorCode::BadPassword);
            }
            _ => {
                self.authed = true;
                self.reply(ok("PASSWORD", ""));
            }
        }
        Flow::Continue
    }

    fn register(&mut self, r: Register<'_>) {
        if !self.authed {
            self.error(ErrorCode::PasswordRequired);
            return;
        }
        let mine = self
            .name
            .as_deref()
            .is_some_and(|n| natter_proto::name::same(n, r.name));
        if !mine && self.hub.accounts().is_reserved(r.name) {
            self.reply_error(
                ErrorCode::NameReserved,
                format!(
                    "the name {} belongs to an account; LOGIN {} <password> to use it, or \
                     choose another",
                    r.name, r.name
                ),
            );
            return;
        }
        self.take_name(r.name, false);
    }

    /// Takes `name` (a REGISTER's, or a LOGIN's once its password is checked), through the
    /// cluster's claim when there is one.
    fn take_name(&mut self, name: &str, login: bool) {
        match self.hub.name_check(self.id, name, login) {
            NameCheck::Local => self.finish_register(name, None, login),
            NameCheck::Taken => self.name_taken(name),
            NameCheck::Claim(key) => match self.hub.claim(&key, self.id) {
                Some(answer) => {
                    let mut p = PendingName::new(name, key, answer);
                    p.login = login;
                    self.pending = Some(Box::new(Wait::Name(p)));
                }
                None => self.finish_register(name, None, login),
            },
        }
    }

    fn name_taken(&self, name: &str) {
        self.reply_error(
            ErrorCode::NameTaken,
            format!("the name {name} is taken; choose another"),
        );
    }

    /// Registers `name` in the hub; `claimed` is the folded name if the cluster granted it;
    /// `login` answers as LOGIN.
    fn finish_register(&mut self, name: &str, claimed: Option<String>, login: bool) {
        let verb = if login { "LOGIN" } else { "REGISTER" };
        let answer = |w: &Welcome<'_>| taken_over(verb, w);
        let registered = if claimed.is_some() {
            self.hub.register_claimed(
                self.id,
                &self.outbox,
                name,
                self.flavor(),
                None,
                Some(&answer),
                login,
            )
        } else {
            self.hub.register(
                self.id,
                &self.outbox,
                name,
                self.flavor(),
                None,
                Some(&answer),
                login,
            )
        };
        if registered.is_err()
            && let Some(key) = claimed
        {
            self.hub.release(key, self.id);
        }
        let r = Register { name };
        match registered {
            Ok((how, name)) => {
                match &how {
                    Registered::New => info!(
                        peer = %self.peer, user = %name,
                        registered = self.hub.stats().registered(),
                        "registered"
                    ),
                    Registered::Renamed { old } => {
                        info!(peer = %self.peer, from = %old, to = %name, "renamed")
                    }
                    Registered::Attached => info!(
                        peer = %self.peer, user = %name,
                        "joined the account's other connections"
                    ),
                    Registered::Unchanged => {}
                }
                let key = natter_proto::name::fold(&name);
                self.name = Some(name);
                self.mark = Instant::now();
                if login {
                    self.deliver_waiting(key);
                }
            }
            Err(code) => {
                let text = match code {
                    ErrorCode::NameTaken => format!("the name {} is taken; choose another", r.name),
                    _ => code.default_text().to_owned(),
                };
                self.reply_error(code, text);
            }
        }
    }

    fn help(&self, h: Help<'_>) {
        let entries: Vec<&help::Entry> = match h.topic {
            None => help::ENTRIES.iter().collect(),
            Some(topic) => match help::entry(topic) {
                Some(e) => vec![e],
                None => {
                    self.error(ErrorCode::UnknownCommand);
                    return;
                }
            },
        };
        let mut out = bytes::BytesMut::new();
        for e in entries {
            ServerLine::Help {
                text: Cow::Owned(help::line(e)),
            }
            .write_to(&mut out);
        }
        ServerLine::Ok {
            verb: Cow::Borrowed("HELP"),
            detail: Cow::Borrowed(""),
        }
        .write_to(&mut out);
        self.reply(out.freeze());
    }

    fn list(&mut self) {
        self.answer = Some(Box::new(Answer::Users {
            last: None,
            count: 0,
            accounts: false,
        }));
        self.answer_page();
    }

    /// `ACCOUNTS`: as `LIST`, of the users logged into an account only.
    fn accounts(&mut self) {
        self.answer = Some(Box::new(Answer::Users {
            last: None,
            count: 0,
            accounts: true,
        }));
        self.answer_page();
    }

    /// Writes the next page of the answer in progress, and its `OK` once it is complete.
    fn answer_page(&mut self) {
        let Some(mut answer) = self.answer.take() else {
            return;
        };
        let mut out = BytesMut::new();
        let done = match &mut *answer {
            Answer::Users {
                last,
                count,
                accounts,
            } => {
                let page = if *accounts {
                    self.hub.accounts_page(last.as_deref(), PAGE)
                } else {
                    self.hub.names_page(last.as_deref(), PAGE)
                };
                for n in &page.items {
                    let name = Cow::Borrowed(&**n);
                    if *accounts {
                        ServerLine::Account { name }.write_to(&mut out);
                    } else {
                        ServerLine::User { name }.write_to(&mut out);
                    }
                }
                *count += page.items.len();
                *last = page.last;
                if page.done {
                    let verb = if *accounts { "ACCOUNTS" } else { "LIST" };
                    ok_line(&mut out, verb, &count.to_string());
                }
                page.done
            }
            Answer::Rooms { last, count } => {
                let page = self.hub.rooms_page(self.id, last.as_deref(), PAGE);
                for r in &page.items {
                    ServerLine::Room {
                        room: Cow::Borrowed(&r.name),
                        members: r.members,
                        topic: Cow::Borrowed(r.topic.as_deref().unwrap_or("")),
                    }
                    .write_to(&mut out);
                }
                *count += page.items.len();
                *last = page.last;
                if page.done {
                    ok_line(&mut out, "ROOMS", &count.to_string());
                }
                page.done
            }
            Answer::Members { room, last, count } => {
                match self.hub.members_page(room, last.as_deref(), PAGE) {
                    Ok((name, page)) => {
                        for m in &page.items {
                            ServerLine::Member {
                                room: Cow::Borrowed(&name),
                                name: Cow::Borrowed(&m.name),
                                op: m.op,
                                voice: m.voice,
                            }
                            .write_to(&mut out);
                        }
                        *room = name.to_string();
                        *count += page.items.len();
                        *last = page.last;
                        if page.done {
                            ok_line(&mut out, "WHO", &format!("{room} {count}"));
                        }
                        page.done
                    }
                    // The room went away between two pages: the answer ends with it.
                    Err(_) => {
                        ok_line(&mut out, "WHO", &format!("{room} {count}"));
                        true
                    }
                }
            }
        };
        if !done {
            self.answer = Some(answer);
        }
        self.reply(out.freeze());
    }

    /// Gathers a MESSAGE (`to` is `None`) or a DM; the batch goes out when the input read so
    /// far is handled, before any other command (or a DM to someone else), or when it is
    /// large. A sender whose messages queue up in its socket (a busy chat, a paste) then costs
    /// each recipient one queued buffer per batch instead of one per message, and nobody
    /// waits: the batch never outlives the read that filled it.
    fn gather(&mut self, to: Option<&str>, text: &str) {
        if self.batch.as_ref().is_some_and(|b| b.to.as_deref() != to) {
            self.flush_messages();
        }
        let b = self.batch.get_or_insert_with(|| {
            Box::new(Batch {
                to: to.map(Box::from),
                ..Batch::default()
            })
        });
        b.text.push_str(text);
        b.ends.push(b.text.len());
        if b.text.len() >= BATCH_BYTES {
            self.flush_messages();
        }
    }

    /// Answers `count` messages with `answer` each: at once if they are not kept, or else
    /// once the log has them (an `OK` promises the message survives a crash). Meanwhile more
    /// messages are read and relayed, their answers queued behind these; any other command
    /// waits for them, so answers stay in command order. A store whose queue is full holds
    /// input back instead. If the store fails them, each gets an `ERROR`: delivered, but not
    /// kept.
    fn answer_when_kept(&mut self, kept: Option<Keeping>, answer: Bytes, count: usize) {
        let Some(mut kept) = kept else {
            let mut out = BytesMut::with_capacity(answer.len() * count);
            for _ in 0..count {
                out.extend_from_slice(&answer);
            }
            self.answer_in_order(out.freeze());
            return;
        };
        let backlog = kept.backlog;
        // A client that said TAGS ON learns each kept message's id from its OK.
        let ids = if self.tags {
            std::mem::take(&mut kept.ids)
        } else {
            Vec::new()
        };
        let later = Later::new(async move {
            let line = match kept.await {
                Ok(()) => answer,
                Err(_) => {
                    return err(
                        ErrorCode::StoreUnavailable,
                        "delivered, but not kept in the history: the store is unavailable",
                    )
                    .repeat(count)
                    .into();
                }
            };
            let mut out = BytesMut::with_capacity((line.len() + 64) * count);
            for i in 0..count {
                if let Some(&id) = ids.get(i) {
                    let at = crate::event::timestamp(crate::event::time_of(id));
                    natter_proto::tags::write(&mut out, &at, Some(id));
                }
                out.extend_from_slice(&line);
            }
            out.freeze()
        });
        let mut later = later;
        later.flowing = !backlog;
        self.queue_answer(later);
    }

    /// Sends `answer` after the answers still waiting for the log, if any, else at once.
    fn answer_in_order(&mut self, answer: Bytes) {
        if answer.is_empty() {
            return;
        }
        if matches!(self.pending.as_deref(), Some(Wait::Later(_))) {
            let mut ready = Later::new(std::future::ready(answer));
            ready.flowing = true;
            self.queue_answer(ready);
        } else {
            self.reply(answer);
        }
    }

    /// Makes `later` the session's wait, after the one under way if there is one.
    fn queue_answer(&mut self, later: Later) {
        let later = match self.pending.take().map(|w| *w) {
            Some(Wait::Later(before)) => before.then(later),
            Some(other) => {
                // Messages are only taken while nothing else is awaited.
                debug_assert!(false, "a message answered during {other:?}");
                self.pending = Some(Box::new(other));
                return;
            }
            None => later,
        };
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// After a LOGIN: the DMs that waited for the account while it was offline, as `LOGGED`
    /// lines with their times, read while the session waits.
    fn deliver_waiting(&mut self, key: String) {
        let Some(log) = self.hub.history().cloned() else {
            return;
        };
        let escaped = self.multiline;
        let later = Later::new(async move {
            // A store that fails keeps them waiting, for the next login.
            let rows = log.store().take_waiting(&key).await.unwrap_or_default();
            let mut out = BytesMut::new();
            for m in &rows {
                write_logged(&mut out, &m.sender, m, escaped);
            }
            out.freeze()
        });
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// `HISTORY`: a page of the log, read while the session waits.
    fn history(&mut self, h: natter_proto::command::History<'_>) {
        let Some(log) = self.hub.history().cloned() else {
            self.reply_error(ErrorCode::NoHistory, "this server keeps no history");
            return;
        };
        let (key, shown) = match self.hub.history_target(self.id, h.target) {
            Ok(t) => t,
            Err((code, text)) => return self.reply_error(code, text),
        };
        let cfg = log.config();
        let limit = h.limit.unwrap_or(cfg.default_limit).min(cfg.max_limit);
        let range = match h.range {
            natter_proto::command::Range::Latest => natter_store::Range::Latest,
            natter_proto::command::Range::Before(id) => natter_store::Range::Before(id),
            natter_proto::command::Range::After(id) => natter_store::Range::After(id),
        };
        let escaped = self.multiline;
        let later = Later::new(async move {
            match log.store().history(&key, range, limit).await {
                Ok(rows) => {
                    let mut out = BytesMut::new();
                    for m in &rows {
                        write_logged(&mut out, &shown, m, escaped);
                    }
                    ok_line(&mut out, "HISTORY", &format!("{shown} {}", rows.len()));
                    out.freeze()
                }
                Err(_) => err(
                    ErrorCode::StoreUnavailable,
                    "the history cannot be read right now; try again later",
                ),
            }
        });
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// `SEARCH`: the newest messages holding every word, of those the user may read.
    fn search(&mut self, s: natter_proto::command::Search<'_>) {
        let Some(log) = self.hub.history().cloned() else {
            self.reply_error(ErrorCode::NoHistory, "this server keeps no history");
            return;
        };
        let (targets, dms) = match s.target {
            Some(t) => match self.hub.history_target(self.id, t) {
                Ok(t) => (vec![t], None),
                Err((code, text)) => return self.reply_error(code, text),
            },
            None => self.hub.searchable(self.id),
        };
        let limit = log.config().default_limit;
        let words = s.words.to_owned();
        let escaped = self.multiline;
        let later = Later::new(async move {
            let keys = targets.iter().map(|(k, _)| k.clone()).collect();
            match log.store().search(&words, keys, dms.clone(), limit).await {
                Ok(rows) => {
                    let mut out = BytesMut::new();
                    for m in &rows {
                        let shown = match targets.iter().find(|(k, _)| *k == m.target) {
                            Some((_, shown)) => shown.clone(),
                            // A conversation: named by the other account in it.
                            None => other_in(&m.target, dms.as_deref().unwrap_or_default()),
                        };
                        write_logged(&mut out, &shown, m, escaped);
                    }
                    ok_line(&mut out, "SEARCH", &rows.len().to_string());
                    out.freeze()
                }
                Err(_) => err(
                    ErrorCode::StoreUnavailable,
                    "the history cannot be searched right now; try again later",
                ),
            }
        });
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// Sends the gathered MESSAGEs, in order, and answers each.
    fn flush_messages(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        let mut start = 0;
        let texts = b.ends.iter().map(|&end| {
            let t = &b.text[start..end];
            start = end;
            t
        });
        if let Some(to) = &b.to {
            match self.hub.direct_many(self.id, to, texts) {
                Ok(target) => {
                    let answer = if target.queued {
                        ok("DM", &format!("{} QUEUED", target.name))
                    } else {
                        ok("DM", &target.name)
                    };
                    self.answer_when_kept(target.kept, answer, b.ends.len());
                }
                Err(ErrorCode::NoSuchUser) => {
                    let text = format!("no user named {} is online", shown(to));
                    self.errors_in_order(ErrorCode::NoSuchUser, Some(text), b.ends.len());
                }
                Err(code) => self.errors_in_order(code, None, b.ends.len()),
            }
            return;
        }
        match self.hub.broadcast_many(self.id, texts) {
            Ok((0, _)) => self.errors_in_order(ErrorCode::NoRecipients, None, b.ends.len()),
            Ok((n, kept)) => {
                let answer = ok("MESSAGE", &n.to_string());
                self.answer_when_kept(kept, answer, b.ends.len());
            }
            Err(code) => self.errors_in_order(code, None, b.ends.len()),
        }
    }

    /// `count` answers `ERROR <code> <text>` (the code's own text if `None`), counted for
    /// `/metrics`, after any answers still waiting for the log.
    fn errors_in_order(&mut self, code: ErrorCode, text: Option<String>, count: usize) {
        let one = match text {
            Some(t) => err(code, t),
            None => err(code, code.default_text()),
        };
        let mut out = BytesMut::with_capacity(one.len() * count);
        for _ in 0..count {
            self.hub.stats().error(code);
            out.extend_from_slice(&one);
        }
        self.answer_in_order(out.freeze());
    }

    fn join(&self, j: Join<'_>) {
        // The hub queues the answer itself, in order with the room's traffic.
        let from = Some(self.peer.ip()).filter(|ip| self.policy.limits_apply(*ip));
        let joined = self.hub.join(self.id, j.room, j.key, from, |view| {
            let mut out = BytesMut::new();
            write_members(&mut out, view);
            if let Some(t) = &view.topic {
                ServerLine::Topic {
                    room: Cow::Borrowed(&view.name),
                    by: Cow::Borrowed(&t.by),
                    text: Cow::Borrowed(&t.text),
                }
                .write_to(&mut out);
            }
            ServerLine::Ok {
                verb: Cow::Borrowed("JOIN"),
                detail: Cow::Owned(format!("{} {}", view.name, view.members.len())),
            }
            .write_to(&mut out);
            out.freeze()
        });
        match joined {
            Ok(()) => debug!(user = self.name(), room = j.room, "joined"),
            Err(code) => self.room_error(code, j.room),
        }
    }

    fn part(&self, p: Part<'_>) {
        match self.hub.part(self.id, p.room, p.reason) {
            Ok(room) => self.reply(ok("PART", &room)),
            Err(code) => self.room_error(code, p.room),
        }
    }

    fn say(&mut self, m: Say<'_>) {
        let Some(text) = self.message_text(m.text) else {
            return;
        };
        match self.hub.say(self.id, m.room, &text, false) {
            Ok((room, (n, kept))) => {
                self.answer_when_kept(kept, ok("SAY", &format!("{room} {n}")), 1);
            }
            Err(code) => self.room_error(code, m.room),
        }
    }

    fn rooms(&mut self) {
        self.answer = Some(Box::new(Answer::Rooms {
            last: None,
            count: 0,
        }));
        self.answer_page();
    }

    fn who(&mut self, w: RoomArg<'_>) {
        if self.hub.hidden_from(self.id, w.room) {
            return self.room_error(ErrorCode::NoSuchRoom, w.room);
        }
        match self.hub.topic(w.room) {
            Ok((room, _)) => {
                self.answer = Some(Box::new(Answer::Members {
                    room: room.to_string(),
                    last: None,
                    count: 0,
                }));
                self.answer_page();
            }
            Err(code) => self.room_error(code, w.room),
        }
    }

    fn topic(&self, t: Topic<'_>) {
        match t.text {
            Some(text) => match self.hub.set_topic(self.id, t.room, text) {
                Ok(room) => self.reply(ok("TOPIC", &room)),
                Err(code) => self.room_error(code, t.room),
            },
            None if self.hub.hidden_from(self.id, t.room) => {
                self.room_error(ErrorCode::NoSuchRoom, t.room)
            }
            None => match self.hub.topic(t.room) {
                Ok((room, topic)) => {
                    let mut out = BytesMut::new();
                    if let Some(topic) = &topic {
                        ServerLine::Topic {
                            room: Cow::Borrowed(&room),
                            by: Cow::Borrowed(&topic.by),
                            text: Cow::Borrowed(&topic.text),
                        }
                        .write_to(&mut out);
                    }
                    ok_line(&mut out, "TOPIC", &room);
                    self.reply(out.freeze());
                }
                Err(code) => self.room_error(code, t.room),
            },
        }
    }

    fn kick(&self, k: Kick<'_>) {
        match self.hub.kick(self.id, k.room, k.user, k.reason) {
            Ok((room, user)) => {
                info!(room = %room, user = %user, by = self.name(), "kicked");
                self.reply(ok("KICK", &format!("{room} {user}")));
            }
            Err(ErrorCode::NoSuchUser) => self.reply_error(
                ErrorCode::NoSuchUser,
                format!("no user named {} is online", shown(k.user)),
            ),
            Err(code) => self.room_error(code, k.room),
        }
    }

    fn kill(&self, user: &str, reason: &str) {
        let Some(me) = self.name.clone() else {
            return;
        };
        if !self.hub.accounts().is_operator(&me) {
            self.reply_error(ErrorCode::NotOperator, "only server operators may KILL");
            return;
        }
        match self.hub.kill(user, &me, reason) {
            Ok(name) => {
                warn!(user = %name, by = %me, reason, "killed");
                self.reply(ok("KILL", &name));
            }
            Err(code) => self.reply_error(
                code,
                format!("no user named {} is online here", shown(user)),
            ),
        }
    }

    /// `MODE <room> [change]`: the room's modes, or one changed.
    fn mode(&self, m: ModeCmd<'_>) {
        let Some(change) = m.change else {
            match self.hub.modes(self.id, m.room) {
                Ok(v) => self.reply(ok("MODE", &format!("{} {}", v.room, v.modes))),
                Err(code) => self.room_error(code, m.room),
            }
            return;
        };
        match self.hub.mode(self.id, m.room, &change) {
            Ok((room, applied)) => {
                info!(room = %room, change = %change, by = self.name(), "mode");
                let shown = applied.unwrap_or_else(|| change.to_string());
                self.reply(ok("MODE", &format!("{room} {shown}")));
            }
            Err(ErrorCode::NoSuchUser) => self.reply_error(
                ErrorCode::NoSuchUser,
                format!(
                    "no user named {} is online",
                    shown(&change.arg().unwrap_or_default())
                ),
            ),
            Err(ErrorCode::BadParameter) => self.reply_error(
                ErrorCode::BadParameter,
                format!(
                    "{} would have no operator left; make someone else one first",
                    m.room
                ),
            ),
            Err(ErrorCode::ListFull) => self.reply_error(
                ErrorCode::ListFull,
                format!(
                    "{} has {} bans, as many as a room may; remove one first",
                    m.room,
                    crate::hub::MAX_BANS
                ),
            ),
            Err(code) => self.room_error(code, m.room),
        }
    }

    /// `BANS <room>`: the ban list.
    fn bans(&self, b: RoomArg<'_>) {
        match self.hub.bans(self.id, b.room) {
            Ok((room, bans)) => {
                let mut out = BytesMut::new();
                for ban in &bans {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(ban.at);
                    ServerLine::Ban {
                        room: Cow::Borrowed(&room),
                        mask: Cow::Borrowed(&ban.mask),
                        by: Cow::Borrowed(&ban.by),
                        at: Cow::Owned(crate::event::timestamp(at)),
                    }
                    .write_to(&mut out);
                }
                ok_line(&mut out, "BANS", &format!("{room} {}", bans.len()));
                self.reply(out.freeze());
            }
            Err(code) => self.room_error(code, b.room),
        }
    }

    /// `TYPING <target> <state>`: relayed to those who can show it, nothing kept.
    fn typing(&self, t: natter_proto::command::Typing<'_>) {
        use natter_proto::command::Target;
        let place = match t.target {
            Target::Everyone => crate::event::Place::Everyone,
            Target::Room(r) => crate::event::Place::Room(r),
            Target::User(u) => crate::event::Place::User(u),
        };
        let tags = format!("+typing={}", t.state);
        match self.hub.typing(self.id, place, t.state, &tags) {
            Ok(_) => self.reply(ok("TYPING", t.state)),
            Err(ErrorCode::NoSuchUser) => {
                if let Target::User(u) = t.target {
                    self.reply_error(
                        ErrorCode::NoSuchUser,
                        format!("no user named {} is online", shown(u)),
                    );
                }
            }
            Err(ErrorCode::CannotDmSelf) => self.error(ErrorCode::CannotDmSelf),
            Err(code) => match t.target {
                Target::Room(r) => self.room_error(code, r),
                _ => self.error(code),
            },
        }
    }

    /// `INVITE <room> <user>`.
    fn invite(&self, i: Invite<'_>) {
        match self.hub.invite(self.id, i.room, i.user) {
            Ok((room, user)) => {
                info!(room = %room, user = %user, by = self.name(), "invited");
                self.reply(ok("INVITE", &format!("{room} {user}")));
            }
            Err(ErrorCode::NoSuchUser) => self.reply_error(
                ErrorCode::NoSuchUser,
                format!("no user named {} is online", shown(i.user)),
            ),
            Err(ErrorCode::UserInRoom) => self.reply_error(
                ErrorCode::UserInRoom,
                format!("{} is already in {}", shown(i.user), i.room),
            ),
            Err(ErrorCode::NotOperator) => self.reply_error(
                ErrorCode::NotOperator,
                format!("{} is invite-only: only its operators may invite", i.room),
            ),
            Err(code) => self.room_error(code, i.room),
        }
    }

    /// An error about a room, naming it.
    fn room_error(&self, code: ErrorCode, room: &str) {
        let text = match code {
            ErrorCode::NoSuchRoom => format!("no room named {room}"),
            ErrorCode::InvalidRoomName => format!("{room} is reserved for Everyone"),
            ErrorCode::NotInRoom => format!("you are not in {room}"),
            ErrorCode::AlreadyInRoom => format!("you are already in {room}"),
            ErrorCode::NotOperator => format!("only operators of {room} may do that"),
            ErrorCode::UserNotInRoom => format!("that user is not in {room}"),
            ErrorCode::RoomFull => format!("{room} is full"),
            ErrorCode::Banned => format!("you are banned from {room}"),
            ErrorCode::InviteOnly => {
                format!("{room} is invite-only; one of its members must INVITE you")
            }
            ErrorCode::BadKey => format!("{room} has a key: JOIN {room} <key>"),
            ErrorCode::Moderated => {
                format!("{room} is moderated: only its operators and voiced members may speak")
            }
            _ => code.default_text().to_owned(),
        };
        self.reply_error(code, text);
    }
}

impl Handler for Session {
    fn on_line(&mut self, line: &[u8]) -> Flow {
        self.line(line)
    }

    fn extra_commands(&mut self) -> usize {
        std::mem::take(&mut self.extra_lines)
    }

    fn on_too_long(&mut self) {
        debug!(peer = %self.peer, "line too long");
        self.flush_messages();
        self.error(ErrorCode::LineTooLong);
    }

    fn deadline(&self) -> Option<Instant> {
        match self.name {
            None => Some(self.mark + self.policy.register_timeout),
            Some(_) => self.policy.idle_timeout.map(|d| self.mark + d),
        }
    }

    fn on_deadline(&mut self) -> Flow {
        if self.deadline().is_some_and(|d| Instant::now() >= d) {
            let registered = self.name.is_some();
            info!(peer = %self.peer, user = self.name(), registered, "timed out");
            // Chosen before leaving, which forgets the name.
            let text = if registered {
                "idle for too long"
            } else {
                "register within the time allowed (REGISTER <name>)"
            };
            Handler::leave(self, End::Close);
            self.reply(
                ServerLine::Bye {
                    reason: ByeReason::Timeout,
                    text: Cow::Borrowed(text),
                }
                .to_bytes(),
            );
            return Flow::Close;
        }
        Flow::Continue
    }

    fn end_of_input(&mut self) {
        self.flush_messages();
    }

    fn leave(&mut self, end: End) {
        // Messages accepted are sent, whatever ends the connection.
        self.flush_messages();
        if let Some(p) = self.pending.take()
            && let Wait::Name(p) = *p
        {
            p.abandon(self.hub.clone(), self.id);
        }
        // A connection lost (not closed on purpose) leaves a resumable session waiting.
        let lost = matches!(
            end,
            End::PeerClosed | End::Error | End::Stalled | End::Shutdown
        );
        if self.name.is_some() && self.resumable && lost && self.hub.linger(self.id) {
            let name = self.name.take();
            info!(peer = %self.peer, user = ?name, "connection lost; the session waits to be resumed");
        } else if self.name.take().is_some() {
            self.hub.leave(self.id, crate::event::DISCONNECTED);
        }
        self.hub.forget(self.id);
    }

    fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    fn blocks_input(&self) -> bool {
        match self.pending.as_deref() {
            None => false,
            // Answers to messages in the log's hands: more messages may come meanwhile; a
            // line of any other kind is held (`deferred`) and then holds the rest.
            Some(Wait::Later(l)) => !l.flowing || l.deferred.is_some(),
            Some(_) => true,
        }
    }

    fn poll_resume(&mut self, cx: &mut Context<'_>) -> Poll<Flow> {
        let Some(wait) = self.pending.as_mut() else {
            return Poll::Ready(Flow::Continue);
        };
        let p = match &mut **wait {
            Wait::Account(a) => {
                let Poll::Ready(outcome) = a.poll(cx) else {
                    return Poll::Pending;
                };
                self.pending = None;
                return Poll::Ready(self.account_done(outcome));
            }
            Wait::Later(l) => {
                let Poll::Ready(answer) = l.poll(cx) else {
                    return Poll::Pending;
                };
                let deferred = l.deferred.take();
                self.pending = None;
                if !answer.is_empty() {
                    self.reply(answer);
                }
                let Some(line) = deferred else {
                    return Poll::Ready(Flow::Continue);
                };
                let flow = self.line(&line);
                // The line may have begun a batch, and the input it came with was all
                // handled before the wait: the batch goes now (more input held back, if
                // any, makes batches of its own).
                if self.pending.is_none() {
                    self.flush_messages();
                }
                return Poll::Ready(flow);
            }
            Wait::Name(p) => p,
        };
        let Poll::Ready(answer) = p.poll(cx) else {
            return Poll::Pending;
        };
        let Some(Wait::Name(p)) = self.pending.take().map(|w| *w) else {
            return Poll::Ready(Flow::Continue);
        };
        match answer {
            Some(true) => self.finish_register(&p.name, Some(p.key), p.login),
            Some(false) => self.name_taken(&p.name),
            None => {
                warn!(peer = %self.peer, "the cluster did not answer a name claim in time");
                self.hub.release(p.key, self.id);
                self.reply_error(
                    ErrorCode::NameTaken,
                    format!(
                        "the cluster could not confirm the name {} in time; try again",
                        p.name
                    ),
                );
            }
        }
        Poll::Ready(Flow::Continue)
    }

    fn goodbye(&self, reason: ByeReason) -> Bytes {
        bye(reason)
    }

    fn answering(&self) -> bool {
        self.answer.is_some()
    }

    fn answer_more(&mut self) {
        self.answer_page();
    }

    fn max_line(&self) -> usize {
        MAX_LINE_BYTES
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn id(&self) -> ClientId {
        self.id
    }
}

/// Writes the `LOGGED` line of a message of the log, its target named `shown`: its text
/// escaped on one line for a `MULTILINE ON` reader (`escaped`), else one line (same id) per
/// line of it that is not blank.
fn write_logged(out: &mut BytesMut, shown: &str, m: &natter_store::Logged, escaped: bool) {
    let ms = natter_store::MessageId(m.id).millis().max(0) as u64;
    let at = crate::event::timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    let line = |text: &str, out: &mut BytesMut| {
        ServerLine::Logged {
            target: Cow::Borrowed(shown),
            id: m.id,
            at: Cow::Borrowed(&at),
            from: Cow::Borrowed(&m.sender),
            text: Cow::Borrowed(text),
        }
        .write_to(out)
    };
    if escaped {
        line(&natter_proto::multiline::escape(&m.text), out);
    } else {
        for piece in natter_proto::multiline::lines(&m.text) {
            line(piece, out);
        }
    }
}

/// The account in conversation `target` that is not `me`.
fn other_in(target: &str, me: &str) -> String {
    target
        .split(' ')
        .filter_map(|p| p.strip_prefix('@'))
        .find(|p| *p != me)
        .unwrap_or(me)
        .to_owned()
}

/// A word from the network as an error line may echo it: at most a name's length, so an error
/// line stays short whatever was sent.
fn shown(word: &str) -> String {
    let mut s: String = word
        .chars()
        .take(natter_proto::limits::MAX_NAME_LEN)
        .collect();
    if s.len() < word.len() {
        s.push('…');
    }
    s
}

/// Appends `OK <verb> <detail>`.
/// `OK <verb> <name>`, then, for a connection that took over a user already in rooms (an
/// account's other connection, a resumed session), a `JOINED` line naming itself for each.
fn taken_over(verb: &str, w: &Welcome<'_>) -> Bytes {
    let mut out = BytesMut::from(&ok(verb, w.name)[..]);
    for view in w.joined {
        ServerLine::Joined {
            room: Cow::Borrowed(&view.name),
            name: Cow::Borrowed(w.name),
        }
        .write_to(&mut out);
    }
    out.freeze()
}

fn ok_line(out: &mut BytesMut, verb: &str, detail: &str) {
    ServerLine::Ok {
        verb: Cow::Borrowed(verb),
        detail: Cow::Borrowed(detail),
    }
    .write_to(out);
}

/// `MEMBER` lines for a room.
fn write_members(out: &mut BytesMut, view: &RoomView) {
    for m in &view.members {
        ServerLine::Member {
            room: Cow::Borrowed(&view.name),
            name: Cow::Borrowed(&m.name),
            op: m.op,
            voice: m.voice,
        }
        .write_to(out);
    }
}
