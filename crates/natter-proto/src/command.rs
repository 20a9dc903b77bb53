//! Client lines parsed into typed commands.
//!
//! One type per command, in the shape of mini-redis: [`Command::parse`] reads the command word,
//! and each command's own `parse` takes its parameters and rejects what is left over. Parsing
//! borrows from the line, so the server allocates nothing to understand a command.
//!
//! Syntax: leading spaces are skipped; the command word ends at the first space and is matched
//! ignoring case; words after it are separated by runs of spaces; a trailing text parameter is
//! everything after the run of spaces that precedes it, exactly as typed (inner and trailing
//! spaces kept).

use crate::code::ErrorCode;
use crate::{name, text};
use std::borrow::Cow;

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `REGISTER <name>`: take a name, or change it.
    Register(Register<'a>),
    /// `HELP [command]`: list the commands, or explain one.
    Help(Help<'a>),
    /// `CLOSE`: end the session.
    Close,
    /// `LIST`: the registered users online.
    List,
    /// `MESSAGE <text>`: to every other registered user.
    Message(Message<'a>),
    /// `DM <user> <text>`: to one user.
    Dm(Dm<'a>),
    /// `JOIN <room> [key]`: join a room, creating it if needed.
    Join(Join<'a>),
    /// `PART <room> [reason]`: leave a room.
    Part(Part<'a>),
    /// `SAY <room> <text>`: to every other member of a room.
    Say(Say<'a>),
    /// `ROOMS`: every room, with member count and topic.
    Rooms,
    /// `WHO <room>`: a room's members.
    Who(RoomArg<'a>),
    /// `TOPIC <room> [text]`: show or set a room's topic.
    Topic(Topic<'a>),
    /// `KICK <room> <user> [reason]`: remove someone from a room (operators only).
    Kick(Kick<'a>),
    /// `PASSWORD <password>`: the server's password, before REGISTER when one is set.
    Password(Password<'a>),
    /// `LOGIN <name> <password>`: take an account's name, logged into it.
    Login(Login<'a>),
    /// `LOGOUT`: leave the account (and the name), back to unregistered.
    Logout,
    /// `ACCOUNT CREATE|PASSWORD|DELETE ...`: manage the account.
    Account(Account<'a>),
    /// `KILL <user> [reason]`: disconnect a user (server operators only).
    Kill(Kill<'a>),
    /// `ACCOUNTS`: the registered users logged into their name's account.
    Accounts,
    /// `SESSION`: a resume token for this session, so that a new connection can take it
    /// over after this one is lost.
    Session,
    /// `RESUME <token>`: take over a session whose connection was lost.
    Resume(Resume<'a>),
    /// `HISTORY <target> [limit] [BEFORE <id> | AFTER <id>]`: messages kept in the log.
    History(History<'a>),
    /// `SEARCH <words> [IN <target>]`: messages holding every word, newest first.
    Search(Search<'a>),
    /// `TAGS ON|OFF`: whether events come with their time and message id (see [`crate::tags`]).
    Tags(bool),
    /// `MULTILINE ON|OFF`: whether message texts, sent and received, use the escapes of
    /// [`crate::multiline`] and may hold several lines.
    Multiline(bool),
    /// `MODE <room> [<change> [parameter]]`: show a room's modes, or change one (operators).
    Mode(ModeCmd<'a>),
    /// `BANS <room>`: a room's ban list.
    Bans(RoomArg<'a>),
    /// `INVITE <room> <user>`: let someone into an invite-only room (or just tell them).
    Invite(Invite<'a>),
    /// `TYPING <target> active|paused|done`: tell the others there that you are typing.
    Typing(Typing<'a>),
}

/// `TYPING <target> active|paused|done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing<'a> {
    /// Where: Everyone, a room, or a DM.
    pub target: Target<'a>,
    /// `active`, `paused` or `done`, lower case.
    pub state: &'static str,
}

/// `JOIN <room> [key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join<'a> {
    /// The room, already checked against the room-name rule.
    pub room: &'a str,
    /// The key, for a room that has one.
    pub key: Option<&'a str>,
}

/// `MODE <room> [<change> [parameter]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeCmd<'a> {
    /// The room.
    pub room: &'a str,
    /// The change; `None` asks for the room's modes.
    pub change: Option<crate::mode::Change<'a>>,
}

/// `INVITE <room> <user>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite<'a> {
    /// The room.
    pub room: &'a str,
    /// Who (matched ignoring case).
    pub user: &'a str,
}

/// Where kept messages were said: Everyone (`*`), a room, or the conversation with a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `*`: Everyone.
    Everyone,
    /// `#room`.
    Room(&'a str),
    /// A user's name: the DMs between you and them.
    User(&'a str),
}

impl<'a> Target<'a> {
    /// Parses `*`, a room name or a user name.
    pub fn parse(word: &'a str) -> Result<Self, CommandError> {
        if word == "*" {
            Ok(Target::Everyone)
        } else if word.starts_with('#') {
            crate::room::validate(word)
                .map_err(|e| CommandError::new(ErrorCode::InvalidRoomName, e.to_string()))?;
            Ok(Target::Room(word))
        } else {
            crate::name::validate(word).map_err(|e| {
                CommandError::new(
                    ErrorCode::InvalidName,
                    format!("{e}; a target is *, a #room or a user's name"),
                )
            })?;
            Ok(Target::User(word))
        }
    }
}

/// Which messages of a target `HISTORY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The newest.
    Latest,
    /// The newest of those before this id.
    Before(i64),
    /// The oldest of those after this id.
    After(i64),
}

/// `HISTORY <target> [limit] [BEFORE <id> | AFTER <id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<'a> {
    /// Where.
    pub target: Target<'a>,
    /// How many at most; the server's default if `None`.
    pub limit: Option<u32>,
    /// Which.
    pub range: Range,
}

/// `SEARCH <words> [IN <target>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search<'a> {
    /// The words, every one of which a message must hold.
    pub words: &'a str,
    /// Where to look; everywhere you may if `None`.
    pub target: Option<Target<'a>>,
}

impl<'a> History<'a> {
    fn parse(p: &mut Params<'a>) -> Result<Self, CommandError> {
        let target = Target::parse(p.word("a target (*, a #room or a user's name)")?)?;
        let mut limit = None;
        let mut range = Range::Latest;
        let mut next = p.optional_word();
        if let Some(w) = next.filter(|w| w.bytes().all(|b| b.is_ascii_digit())) {
            limit = Some(
                w.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad_parameter("the limit must be a number from 1"))?,
            );
            next = p.optional_word();
        }
        if let Some(w) = next {
            let id = |p: &mut Params<'a>| {
                p.word("an id after BEFORE or AFTER")?
                    .parse::<i64>()
                    .ok()
                    .filter(|&id| id >= 0)
                    .ok_or_else(|| bad_parameter("an id is a number from a LOGGED line"))
            };
            range = if w.eq_ignore_ascii_case("BEFORE") {
                Range::Before(id(p)?)
            } else if w.eq_ignore_ascii_case("AFTER") {
                Range::After(id(p)?)
            } else {
                return Err(bad_parameter(
                    "HISTORY takes a target, then a limit, then BEFORE or AFTER an id",
                ));
            };
        }
        p.finish()?;
        Ok(History {
            target,
            limit,
            range,
        })
    }
}

impl<'a> Search<'a> {
    fn parse(p: &mut Params<'a>) -> Result<Self, CommandError> {
        let all = p.text()?;
        // `IN <target>` at the end names where to look; the words are what comes before.
        let (words, target) = match all.rsplit_once(' ') {
            Some((before, last)) => match before.trim_end().rsplit_once(' ') {
                Some((words, kw)) if kw.eq_ignore_ascii_case("IN") && !words.trim().is_empty() => {
                    (words.trim(), Some(Target::parse(last)?))
                }
                _ => (all.trim(), None),
            },
            None => (all.trim(), None),
        };
        Ok(Search { words, target })
    }
}

/// A `BAD_PARAMETER` error.
fn bad_parameter(text: &'static str) -> CommandError {
    CommandError::new(ErrorCode::BadParameter, text)
}

/// `RESUME <token>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Resume<'a> {
    /// The token, as given.
    pub token: &'a str,
}

impl std::fmt::Debug for Resume<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resume(<redacted>)")
    }
}

/// `KILL <user> [reason]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill<'a> {
    /// Who to disconnect.
    pub user: &'a str,
    /// Why, shown to them and to everyone.
    pub reason: Option<&'a str>,
}

/// `LOGIN <name> <password>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login<'a> {
    /// The account's name, already checked against the name rule.
    pub name: &'a str,
    /// The password as given.
    pub password: &'a str,
}

impl std::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `ACCOUNT ...`: what to do with the account of the connection's name.
#[derive(Clone, PartialEq, Eq)]
pub enum Account<'a> {
    /// `ACCOUNT CREATE <password>`: make the current name an account.
    Create {
        /// The new account's password (not yet checked against the password rule).
        password: &'a str,
    },
    /// `ACCOUNT PASSWORD <old> <new>`: change the password.
    Password {
        /// The password now.
        old: &'a str,
        /// The password to be (not yet checked against the password rule).
        new: &'a str,
    },
    /// `ACCOUNT DELETE <password>`: delete the account; the name is free again.
    Delete {
        /// The account's password.
        password: &'a str,
    },
    /// `ACCOUNT TOKEN`: a token that logs into the account in place of the password, for a
    /// client to keep (a browser across reloads).
    Token,
}

impl std::fmt::Debug for Account<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords must never reach a log through a Debug print.
        f.write_str(match self {
            Account::Create { .. } => "Account(CREATE <redacted>)",
            Account::Password { .. } => "Account(PASSWORD <redacted>)",
            Account::Delete { .. } => "Account(DELETE <redacted>)",
            Account::Token => "Account(TOKEN)",
        })
    }
}

/// `PASSWORD <password>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password<'a> {
    /// The password as given (everything after the command word and its space).
    pub password: &'a str,
}

impl std::fmt::Debug for Password<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password must never reach a log through a Debug print.
        f.write_str("Password(<redacted>)")
    }
}

/// A command whose only parameter is a room: `WHO`, `BANS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomArg<'a> {
    /// The room, already checked against the room-name rule.
    pub room: &'a str,
}

/// `PART <room> [reason]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The room.
    pub room: &'a str,
    /// Why, shown to the members who stay.
    pub reason: Option<&'a str>,
}

/// `SAY <room> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say<'a> {
    /// The room.
    pub room: &'a str,
    /// The text, exactly as typed.
    pub text: &'a str,
}

/// `TOPIC <room> [text]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    /// The room.
    pub room: &'a str,
    /// The new topic; `None` asks for the current one.
    pub text: Option<&'a str>,
}

/// `KICK <room> <user> [reason]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick<'a> {
    /// The room.
    pub room: &'a str,
    /// Who to remove (matched ignoring case).
    pub user: &'a str,
    /// Why, shown to the members and the kicked user.
    pub reason: Option<&'a str>,
}

/// `REGISTER <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register<'a> {
    /// The name asked for, already checked against the name rule.
    pub name: &'a str,
}

/// `HELP [command]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help<'a> {
    /// The command to explain, if one was named.
    pub topic: Option<&'a str>,
}

/// `MESSAGE <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The text, exactly as typed.
    pub text: &'a str,
}

/// `DM <user> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dm<'a> {
    /// The recipient's name as typed (matched ignoring case).
    pub to: &'a str,
    /// The text, exactly as typed.
    pub text: &'a str,
}

/// A line that is not a valid command: the code and human text of the `ERROR` line it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The stable code.
    pub code: ErrorCode,
    /// The explanation for a person.
    pub text: Cow<'static, str>,
    /// The command word, when the line named a known command (its parameters were wrong).
    ///
    /// The server needs it to tell an unregistered client to register before it complains
    /// about the parameters of a command that client may not use anyway.
    pub verb: Option<&'static str>,
}

impl CommandError {
    fn new(code: ErrorCode, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            text: text.into(),
            verb: None,
        }
    }

    fn code(code: ErrorCode) -> Self {
        Self::new(code, code.default_text())
    }
}

/// Splits off the first space-separated word; the rest starts at the next non-space.
fn word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// The parameters of a command, consumed left to right.
struct Params<'a> {
    command: &'static str,
    rest: &'a str,
}

impl<'a> Params<'a> {
    /// The next word, or `MISSING_PARAMETER` naming what was expected.
    fn word(&mut self, what: &str) -> Result<&'a str, CommandError> {
        let (w, rest) = word(self.rest);
        if w.is_empty() {
            return Err(CommandError::new(
                ErrorCode::MissingParameter,
                format!("{} needs {what}; type HELP {}", self.command, self.command),
            ));
        }
        self.rest = rest;
        Ok(w)
    }

    /// The next word if there is one.
    fn optional_word(&mut self) -> Option<&'a str> {
        let (w, rest) = word(self.rest);
        self.rest = rest;
        (!w.is_empty()).then_some(w)
    }

    /// The next word, which must be a valid room name.
    fn room(&mut self) -> Result<&'a str, CommandError> {
        let room = self.word("a room name")?;
        crate::room::validate(room)
            .map_err(|e| CommandError::new(ErrorCode::InvalidRoomName, e.to_string()))?;
        Ok(room)
    }

    /// Everything left as text, if there is any that is not blank.
    fn optional_text(&mut self) -> Result<Option<&'a str>, CommandError> {
        match self.text() {
            Ok(t) => Ok(Some(t)),
            // Blank, invisible characters included: absent, as the protocol says.
            Err(e) if e.code == ErrorCode::EmptyText => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Everything left, as message text.
    fn text(&mut self) -> Result<&'a str, CommandError> {
        let t = std::mem::take(&mut self.rest);
        match text::validate(t) {
            Ok(()) => Ok(t),
            Err(text::TextError::Empty) => Err(CommandError::code(ErrorCode::EmptyText)),
            Err(text::TextError::Control) => Err(CommandError::code(ErrorCode::BadText)),
            Err(e @ text::TextError::Marks) => {
                Err(CommandError::new(ErrorCode::BadText, e.to_string()))
            }
        }
    }

    /// Rejects leftovers, like mini-redis's `finish`.
    fn finish(&self) -> Result<(), CommandError> {
        if self.rest.trim_end_matches(' ').is_empty() {
            Ok(())
        } else {
            Err(CommandError::new(
                ErrorCode::TooManyParameters,
                format!(
                    "too many parameters for {}; type HELP {}",
                    self.command, self.command
                ),
            ))
        }
    }
}

impl<'a> Command<'a> {
    /// Parses one line (without its line ending). `Ok(None)` is a blank line, which is ignored.
    pub fn parse(line: &'a str) -> Result<Option<Command<'a>>, CommandError> {
        let line = line.trim_start_matches(' ');
        if line.trim().is_empty() {
            return Ok(None);
        }
        let (verb, rest) = word(line);
        let is = |w: &str| verb.eq_ignore_ascii_case(w);
        let mut p = Params { command: "", rest };
        let parsed = Self::parse_verb(verb, &mut p, is);
        parsed.map(Some).map_err(|mut e| {
            if !p.command.is_empty() {
                e.verb = Some(p.command);
            }
            e
        })
    }

    fn parse_verb(
        verb: &str,
        p: &mut Params<'a>,
        is: impl Fn(&str) -> bool,
    ) -> Result<Command<'a>, CommandError> {
        let cmd = if is("REGISTER") {
            p.command = "REGISTER";
            Command::Register(Register::parse(p)?)
        } else if is("HELP") {
            p.command = "HELP";
            let topic = p.optional_word();
            p.finish()?;
            Command::Help(Help { topic })
        } else if is("CLOSE") {
            p.command = "CLOSE";
            p.finish()?;
            Command::Close
        } else if is("LIST") {
            p.command = "LIST";
            p.finish()?;
            Command::List
        } else if is("MESSAGE") {
            p.command = "MESSAGE";
            Command::Message(Message { text: p.text()? })
        } else if is("DM") {
            p.command = "DM";
            let to = p.word("a user name")?;
            let text = p.text()?;
            Command::Dm(Dm { to, text })
        } else if is("JOIN") {
            p.command = "JOIN";
            let room = p.room()?;
            let key = p.optional_word();
            p.finish()?;
            Command::Join(Join { room, key })
        } else if is("PART") {
            p.command = "PART";
            let room = p.room()?;
            let reason = p.optional_text()?;
            Command::Part(Part { room, reason })
        } else if is("SAY") {
            p.command = "SAY";
            let room = p.room()?;
            let text = p.text()?;
            Command::Say(Say { room, text })
        } else if is("ACCOUNTS") {
            p.command = "ACCOUNTS";
            p.finish()?;
            Command::Accounts
        } else if is("ROOMS") {
            p.command = "ROOMS";
            p.finish()?;
            Command::Rooms
        } else if is("WHO") {
            p.command = "WHO";
            let room = p.room()?;
            p.finish()?;
            Command::Who(RoomArg { room })
        } else if is("TOPIC") {
            p.command = "TOPIC";
            let room = p.room()?;
            let text = p.optional_text()?;
            Command::Topic(Topic { room, text })
        } else if is("PASSWORD") {
            p.command = "PASSWORD";
            let password = std::mem::take(&mut p.rest);
            if password.is_empty() {
                return Err(CommandError::new(
                    ErrorCode::MissingParameter,
                    "PASSWORD needs the password; type HELP PASSWORD",
                ));
            }
            Command::Password(Password { password })
        } else if is("LOGIN") {
            p.command = "LOGIN";
            let name = p.word("a name and a password")?;
            name::validate(name)
                .map_err(|e| CommandError::new(ErrorCode::InvalidName, e.to_string()))?;
            let password = p.word("a name and a password")?;
            p.finish()?;
            Command::Login(Login { name, password })
        } else if is("LOGOUT") {
            p.command = "LOGOUT";
            p.finish()?;
            Command::Logout
        } else if is("ACCOUNT") {
            p.command = "ACCOUNT";
            Command::Account(Account::parse(p)?)
        } else if is("SESSION") {
            p.command = "SESSION";
            p.finish()?;
            Command::Session
        } else if is("RESUME") {
            p.command = "RESUME";
            let token = p.word("a token")?;
            p.finish()?;
            Command::Resume(Resume { token })
        } else if is("KILL") {
            p.command = "KILL";
            let user = p.word("a user name")?;
            let reason = p.optional_text()?;
            Command::Kill(Kill { user, reason })
        } else if is("HISTORY") {
            p.command = "HISTORY";
            Command::History(History::parse(p)?)
        } else if is("SEARCH") {
            p.command = "SEARCH";
            Command::Search(Search::parse(p)?)
        } else if is("TAGS") {
            p.command = "TAGS";
            let w = p.word("ON or OFF")?;
            p.finish()?;
            if w.eq_ignore_ascii_case("ON") {
                Command::Tags(true)
            } else if w.eq_ignore_ascii_case("OFF") {
                Command::Tags(false)
            } else {
                return Err(bad_parameter("TAGS takes ON or OFF"));
            }
        } else if is("MULTILINE") {
            p.command = "MULTILINE";
            let w = p.word("ON or OFF")?;
            p.finish()?;
            if w.eq_ignore_ascii_case("ON") {
                Command::Multiline(true)
            } else if w.eq_ignore_ascii_case("OFF") {
                Command::Multiline(false)
            } else {
                return Err(bad_parameter("MULTILINE takes ON or OFF"));
            }
        } else if is("MODE") {
            p.command = "MODE";
            let room = p.room()?;
            let change = match p.optional_word() {
                None => None,
                Some(w) => {
                    let arg = p.optional_word();
                    p.finish()?;
                    Some(
                        crate::mode::parse_one(w, arg)
                            .map_err(|e| CommandError::new(e.code(), e.to_string()))?,
                    )
                }
            };
            p.finish()?;
            Command::Mode(ModeCmd { room, change })
        } else if is("BANS") {
            p.command = "BANS";
            let room = p.room()?;
            p.finish()?;
            Command::Bans(RoomArg { room })
        } else if is("TYPING") {
            p.command = "TYPING";
            let target = Target::parse(p.word("a target (*, a #room or a user's name)")?)?;
            let w = p.word("active, paused or done")?;
            p.finish()?;
            let state = ["active", "paused", "done"]
                .into_iter()
                .find(|s| w.eq_ignore_ascii_case(s))
                .ok_or_else(|| bad_parameter("TYPING takes active, paused or done"))?;
            Command::Typing(Typing { target, state })
        } else if is("INVITE") {
            p.command = "INVITE";
            let room = p.room()?;
            let user = p.word("a user name")?;
            p.finish()?;
            Command::Invite(Invite { room, user })
        } else if is("KICK") {
            p.command = "KICK";
            let room = p.room()?;
            let user = p.word("a user name")?;
            let reason = p.optional_text()?;
            Command::Kick(Kick { room, user, reason })
        } else {
            return Err(unknown(verb));
        };
        Ok(cmd)
    }

    /// Whether an unregistered client may use the command with this (upper-case) word.
    pub fn verb_allowed_unregistered(verb: &str) -> bool {
        matches!(
            verb,
            "REGISTER" | "HELP" | "CLOSE" | "PASSWORD" | "LOGIN" | "RESUME" | "TAGS" | "MULTILINE"
        )
    }

    /// Whether an unregistered client may use this command.
    pub fn allowed_unregistered(&self) -> bool {
        Self::verb_allowed_unregistered(self.verb())
    }

    /// The command word, upper case, for logs and `OK` lines.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Register(_) => "REGISTER",
            Self::Help(_) => "HELP",
            Self::Close => "CLOSE",
            Self::List => "LIST",
            Self::Message(_) => "MESSAGE",
            Self::Dm(_) => "DM",
            Self::Join(_) => "JOIN",
            Self::Part(_) => "PART",
            Self::Say(_) => "SAY",
            Self::Rooms => "ROOMS",
            Self::Who(_) => "WHO",
            Self::Topic(_) => "TOPIC",
            Self::Kick(_) => "KICK",
            Self::Password(_) => "PASSWORD",
            Self::Login(_) => "LOGIN",
            Self::Logout => "LOGOUT",
            Self::Account(_) => "ACCOUNT",
            Self::Kill(_) => "KILL",
            Self::Accounts => "ACCOUNTS",
            Self::Session => "SESSION",
            Self::Resume(_) => "RESUME",
            Self::History(_) => "HISTORY",
            Self::Search(_) => "SEARCH",
            Self::Tags(_) => "TAGS",
            Self::Multiline(_) => "MULTILINE",
            Self::Mode(_) => "MODE",
            Self::Bans(_) => "BANS",
            Self::Invite(_) => "INVITE",
            Self::Typing(_) => "TYPING",
        }
    }

    /// Whether the line carries a password, so that logs must not show it.
    pub fn has_secret(&self) -> bool {
        Self::verb_has_secret(self.verb())
    }

    /// Whether a line with this (upper-case) command word carries a password, parsed or not.
    pub fn verb_has_secret(verb: &str) -> bool {
        matches!(verb, "PASSWORD" | "LOGIN" | "ACCOUNT" | "RESUME")
    }
}

impl<'a> Account<'a> {
    fn parse(p: &mut Params<'a>) -> Result<Self, CommandError> {
        let what = p.word("CREATE, PASSWORD, DELETE or TOKEN")?;
        let is = |w: &str| what.eq_ignore_ascii_case(w);
        let account = if is("CREATE") {
            Account::Create {
                password: p.word("CREATE and a password")?,
            }
        } else if is("PASSWORD") {
            Account::Password {
                old: p.word("PASSWORD, the old password and the new")?,
                new: p.word("PASSWORD, the old password and the new")?,
            }
        } else if is("DELETE") {
            Account::Delete {
                password: p.word("DELETE and the password")?,
            }
        } else if is("TOKEN") {
            Account::Token
        } else {
            return Err(CommandError::new(
                ErrorCode::UnknownCommand,
                format!(
                    "ACCOUNT {} is not a command; type HELP ACCOUNT",
                    shown(what)
                ),
            ));
        };
        p.finish()?;
        Ok(account)
    }
}

/// A word from the client, cut short and made safe for an error text.
fn shown(word: &str) -> String {
    word.chars()
        .take(32)
        .map(|c| if text::is_forbidden(c) { '?' } else { c })
        .collect()
}

impl<'a> Register<'a> {
    fn parse(p: &mut Params<'a>) -> Result<Self, CommandError> {
        let name = p.word("a name")?;
        if !p.rest.trim_end_matches(' ').is_empty() {
            return Err(CommandError::new(
                ErrorCode::InvalidName,
                name::NameError::Space.to_string(),
            ));
        }
        name::validate(name)
            .map_err(|e| CommandError::new(ErrorCode::InvalidName, e.to_string()))?;
        Ok(Register { name })
    }
}

fn unknown(verb: &str) -> CommandError {
    CommandError::new(
        ErrorCode::UnknownCommand,
        format!(
            "unknown command {}; type HELP for the list of commands",
            shown(verb)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command<'_> {
        Command::parse(line).unwrap().unwrap()
    }

    fn err(line: &str) -> ErrorCode {
        Command::parse(line).unwrap_err().code
    }

    #[test]
    fn history_and_search_take_a_target_a_limit_and_a_range() {
        let h = |target, limit, range| {
            Command::History(History {
                target,
                limit,
                range,
            })
        };
        assert_eq!(ok("HISTORY *"), h(Target::Everyone, None, Range::Latest));
        assert_eq!(
            ok("history #Rust 20 before 123"),
            h(Target::Room("#Rust"), Some(20), Range::Before(123))
        );
        assert_eq!(
            ok("HISTORY bob AFTER 0"),
            h(Target::User("bob"), None, Range::After(0))
        );
        assert_eq!(err("HISTORY"), ErrorCode::MissingParameter);
        assert_eq!(err("HISTORY * 0"), ErrorCode::BadParameter);
        assert_eq!(err("HISTORY * 99999999999"), ErrorCode::BadParameter);
        assert_eq!(err("HISTORY * SINCE 5"), ErrorCode::BadParameter);
        assert_eq!(err("HISTORY * BEFORE x"), ErrorCode::BadParameter);
        assert_eq!(err("HISTORY * BEFORE -1"), ErrorCode::BadParameter);
        assert_eq!(err("HISTORY * BEFORE"), ErrorCode::MissingParameter);
        assert_eq!(err("HISTORY * 5 AFTER 1 2"), ErrorCode::TooManyParameters);
        assert_eq!(err("HISTORY #"), ErrorCode::InvalidRoomName);
        assert_eq!(err("HISTORY b@d"), ErrorCode::InvalidName);

        let s = |words, target| Command::Search(Search { words, target });
        assert_eq!(ok("SEARCH rust  async "), s("rust  async", None));
        assert_eq!(
            ok("SEARCH rust in #Rust"),
            s("rust", Some(Target::Room("#Rust")))
        );
        assert_eq!(
            ok("SEARCH in the IN bob"),
            s("in the", Some(Target::User("bob")))
        );
        assert_eq!(ok("SEARCH IN bob"), s("IN bob", None));
        assert_eq!(err("SEARCH fox IN b@d"), ErrorCode::InvalidName);
        assert_eq!(err("SEARCH"), ErrorCode::EmptyText);
    }

    #[test]
    fn commands_ignore_case() {
        assert_eq!(
            ok("register Alice"),
            Command::Register(Register { name: "Alice" })
        );
        assert_eq!(
            ok("ReGiStEr Alice  "),
            Command::Register(Register { name: "Alice" })
        );
        assert_eq!(ok("help"), Command::Help(Help { topic: None }));
        assert_eq!(ok("HELP dm"), Command::Help(Help { topic: Some("dm") }));
        assert_eq!(ok("close"), Command::Close);
        assert_eq!(ok("  LIST"), Command::List);
    }

    #[test]
    fn text_is_kept_exactly() {
        assert_eq!(
            ok("MESSAGE  hello   world  "),
            Command::Message(Message {
                text: "hello   world  "
            })
        );
        assert_eq!(
            ok("dm bob  hi  there"),
            Command::Dm(Dm {
                to: "bob",
                text: "hi  there"
            })
        );
    }

    #[test]
    fn multiline_switch() {
        assert_eq!(ok("MULTILINE ON"), Command::Multiline(true));
        assert_eq!(ok("multiline off"), Command::Multiline(false));
        assert_eq!(err("MULTILINE"), ErrorCode::MissingParameter);
        assert_eq!(err("MULTILINE maybe"), ErrorCode::BadParameter);
        assert_eq!(err("MULTILINE ON now"), ErrorCode::TooManyParameters);
        assert!(Command::verb_allowed_unregistered("MULTILINE"));
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert_eq!(Command::parse(""), Ok(None));
        assert_eq!(Command::parse("   "), Ok(None));
    }

    #[test]
    fn errors_have_codes() {
        assert_eq!(err("FROB"), ErrorCode::UnknownCommand);
        assert_eq!(err("REGISTER"), ErrorCode::MissingParameter);
        assert_eq!(err("REGISTER a b"), ErrorCode::InvalidName);
        assert_eq!(err("REGISTER 9lives"), ErrorCode::InvalidName);
        assert_eq!(err("LIST all"), ErrorCode::TooManyParameters);
        assert_eq!(err("CLOSE now"), ErrorCode::TooManyParameters);
        assert_eq!(err("HELP a b"), ErrorCode::TooManyParameters);
        assert_eq!(err("MESSAGE"), ErrorCode::EmptyText);
        assert_eq!(err("MESSAGE    "), ErrorCode::EmptyText);
        assert_eq!(err("MESSAGE a\u{1b}[2J"), ErrorCode::BadText);
        assert_eq!(err("DM"), ErrorCode::MissingParameter);
        assert_eq!(err("DM bob"), ErrorCode::EmptyText);
        assert_eq!(err("DM bob   "), ErrorCode::EmptyText);
        assert_eq!(Command::parse("dm").unwrap_err().verb, Some("DM"));
        assert_eq!(Command::parse("dmx").unwrap_err().verb, None);
    }

    #[test]
    fn room_commands() {
        assert_eq!(
            ok("join #Rust"),
            Command::Join(Join {
                room: "#Rust",
                key: None
            })
        );
        assert_eq!(
            ok("JOIN #r sesame"),
            Command::Join(Join {
                room: "#r",
                key: Some("sesame")
            })
        );
        assert_eq!(
            ok("MODE #r +k sesame"),
            Command::Mode(ModeCmd {
                room: "#r",
                change: Some(crate::mode::Change::Key(Some("sesame")))
            })
        );
        assert_eq!(
            ok("MODE #r"),
            Command::Mode(ModeCmd {
                room: "#r",
                change: None
            })
        );
        assert_eq!(err("MODE #r +x"), ErrorCode::UnknownMode);
        assert_eq!(err("MODE #r +b"), ErrorCode::MissingParameter);
        assert_eq!(err("MODE #r +m extra"), ErrorCode::BadParameter);
        assert_eq!(err("MODE #r +v bob extra"), ErrorCode::TooManyParameters);
        assert_eq!(
            ok("INVITE #r bob"),
            Command::Invite(Invite {
                room: "#r",
                user: "bob"
            })
        );
        assert_eq!(err("INVITE #r"), ErrorCode::MissingParameter);
        assert_eq!(
            ok("typing #r Active"),
            Command::Typing(Typing {
                target: Target::Room("#r"),
                state: "active"
            })
        );
        assert_eq!(err("TYPING * soon"), ErrorCode::BadParameter);
        assert_eq!(err("TYPING bob"), ErrorCode::MissingParameter);
        assert_eq!(
            ok("PART #r  gone  fishing "),
            Command::Part(Part {
                room: "#r",
                reason: Some("gone  fishing ")
            })
        );
        assert_eq!(
            ok("PART #r   "),
            Command::Part(Part {
                room: "#r",
                reason: None
            })
        );
        assert_eq!(
            ok("say #r  hi  you"),
            Command::Say(Say {
                room: "#r",
                text: "hi  you"
            })
        );
        assert_eq!(ok("rooms"), Command::Rooms);
        assert_eq!(ok("WHO #r"), Command::Who(RoomArg { room: "#r" }));
        assert_eq!(
            ok("TOPIC #r"),
            Command::Topic(Topic {
                room: "#r",
                text: None
            })
        );
        assert_eq!(
            ok("TOPIC #r Rust  talk"),
            Command::Topic(Topic {
                room: "#r",
                text: Some("Rust  talk")
            })
        );
        assert_eq!(
            ok("KICK #r bob spam"),
            Command::Kick(Kick {
                room: "#r",
                user: "bob",
                reason: Some("spam")
            })
        );
        assert_eq!(err("JOIN"), ErrorCode::MissingParameter);
        assert_eq!(err("JOIN rust"), ErrorCode::InvalidRoomName);
        assert_eq!(err("JOIN #a b c"), ErrorCode::TooManyParameters);
        assert_eq!(err("SAY #r"), ErrorCode::EmptyText);
        assert_eq!(err("SAY #r \u{7}"), ErrorCode::BadText);
        assert_eq!(err("KICK #r"), ErrorCode::MissingParameter);
        assert_eq!(err("PART #r \u{1b}"), ErrorCode::BadText);
        assert_eq!(err("ROOMS x"), ErrorCode::TooManyParameters);
        assert_eq!(err("WHO"), ErrorCode::MissingParameter);
        assert!(!ok("JOIN #r").allowed_unregistered());
        assert!(!ok("ROOMS").allowed_unregistered());
    }

    #[test]
    fn password_is_taken_whole_and_never_printed() {
        let c = ok("PASSWORD  s3cret with spaces ");
        assert_eq!(
            c,
            Command::Password(Password {
                password: "s3cret with spaces "
            })
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.allowed_unregistered());
        assert_eq!(err("PASSWORD"), ErrorCode::MissingParameter);
    }

    #[test]
    fn unknown_command_text_is_safe() {
        let e = Command::parse("\u{1b}x y").unwrap_err();
        assert!(!e.text.chars().any(text::is_forbidden));
    }

    #[test]
    fn account_commands_parse_and_hide_their_passwords() {
        assert_eq!(
            ok("login Alice s3cret-pw"),
            Command::Login(Login {
                name: "Alice",
                password: "s3cret-pw"
            })
        );
        assert!(ok("LOGIN a b").allowed_unregistered());
        assert_eq!(ok("LOGOUT"), Command::Logout);
        assert!(!ok("LOGOUT").allowed_unregistered());
        assert_eq!(
            ok("ACCOUNT create hunter22"),
            Command::Account(Account::Create {
                password: "hunter22"
            })
        );
        assert_eq!(
            ok("ACCOUNT PASSWORD old-one new-one"),
            Command::Account(Account::Password {
                old: "old-one",
                new: "new-one"
            })
        );
        assert_eq!(
            ok("ACCOUNT DELETE pw"),
            Command::Account(Account::Delete { password: "pw" })
        );
        assert!(!ok("ACCOUNT DELETE pw").allowed_unregistered());
        assert_eq!(ok("ACCOUNT token"), Command::Account(Account::Token));
        for secret in [
            "LOGIN alice hunter22",
            "ACCOUNT CREATE hunter22",
            "ACCOUNT PASSWORD hunter22 x",
            "ACCOUNT DELETE hunter22",
            "PASSWORD hunter22",
        ] {
            let c = ok(secret);
            assert!(c.has_secret());
            assert!(!format!("{c:?}").contains("hunter22"), "{secret}");
        }
        assert!(!ok("REGISTER a").has_secret());
        let e = |line| Command::parse(line).unwrap_err().code;
        assert_eq!(e("LOGIN alice"), ErrorCode::MissingParameter);
        assert_eq!(e("LOGIN 9lives pw"), ErrorCode::InvalidName);
        assert_eq!(e("LOGIN a b c"), ErrorCode::TooManyParameters);
        assert_eq!(e("ACCOUNT"), ErrorCode::MissingParameter);
        assert_eq!(e("ACCOUNT RENAME x"), ErrorCode::UnknownCommand);
        assert_eq!(e("ACCOUNT PASSWORD old"), ErrorCode::MissingParameter);
        assert_eq!(e("ACCOUNT CREATE a b"), ErrorCode::TooManyParameters);
    }

    #[test]
    fn registration_gate() {
        assert!(ok("REGISTER a").allowed_unregistered());
        assert!(ok("HELP").allowed_unregistered());
        assert!(ok("CLOSE").allowed_unregistered());
        assert!(!ok("LIST").allowed_unregistered());
        assert!(!ok("MESSAGE x").allowed_unregistered());
        assert!(!ok("DM a x").allowed_unregistered());
    }
}
