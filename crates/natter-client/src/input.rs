//! What the user typed in the message box: chat text, or a `/command`.
//!
//! Pure parsing, no state: the model decides what an [`Action`] means in the open
//! conversation (which room `/part` leaves, where `/me` goes).

/// One thing the user asked for by typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Text for the open conversation (also `/me text`, sent as the text "/me text").
    Say(String),
    /// `/dm name text`: a direct message, opening its conversation.
    Dm {
        /// The recipient as typed.
        to: String,
        /// The text.
        text: String,
    },
    /// `/dm name` or `/query name`: open a conversation without sending.
    OpenDm(String),
    /// `/join #room`.
    Join(String),
    /// `/part [#room] [reason]`: the open room when none is named.
    Part {
        /// The room, if named.
        room: Option<String>,
        /// Why, shown to the others.
        reason: Option<String>,
    },
    /// `/list`: who is online.
    List,
    /// `/rooms`: every room.
    Rooms,
    /// `/who [#room]`: a room's members.
    Who(Option<String>),
    /// `/topic [#room] [text]`: show or set a topic.
    Topic {
        /// The room, if named.
        room: Option<String>,
        /// The new topic; none shows the current one.
        text: Option<String>,
    },
    /// `/kick [#room] name [reason]`.
    Kick {
        /// The room, if named.
        room: Option<String>,
        /// Who.
        user: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/name newname` (or `/nick`): change name.
    Name(String),
    /// `/help`: the client's commands; `/help WORD`: the server's help on a protocol command.
    Help(Option<String>),
    /// `/raw LINE`: a protocol line sent as typed.
    Raw(String),
    /// `/quit`: say goodbye and close the window.
    Quit,
    /// `/login name password`: take an account's name, logged into it.
    Login {
        /// The account's name.
        name: String,
        /// Its password (never echoed).
        password: String,
    },
    /// `/account create|password|delete ...`: the words after `/account`, sent as `ACCOUNT`.
    Account(String),
    /// `/logout`: leave the account and forget its saved sign-in.
    Logout,
    /// `/search words`: messages holding every word, in what the user may read.
    Search(String),
    /// `/mode [#room] [change [arg]]`: show a room's modes, or change one. `/op`, `/deop`,
    /// `/voice` and `/devoice` are changes too (`+o name`).
    Mode {
        /// The room, if named.
        room: Option<String>,
        /// The change as `MODE` writes it (`+l 20`); none shows the modes.
        change: Option<String>,
    },
    /// `/ban [#room] name-or-mask`.
    Ban {
        /// The room, if named.
        room: Option<String>,
        /// A member's name, or a mask (`*!*@*`, `$a:account`).
        who: String,
    },
    /// `/unban [#room] name-or-mask`.
    Unban {
        /// The room, if named.
        room: Option<String>,
        /// A name, or a mask as `/bans` lists it.
        who: String,
    },
    /// `/bans [#room]`: list a room's bans.
    Bans(Option<String>),
    /// `/invite name [#room]` (IRC's order).
    Invite {
        /// Who.
        user: String,
        /// The room, if named.
        room: Option<String>,
    },
}

/// The client's commands, for `/help`: syntax and what it does.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "/dm <name> [text]",
        "send a direct message, or open a conversation with <name>",
    ),
    ("/join <#room>", "join a room, creating it if needed"),
    (
        "/part [#room] [reason]",
        "leave a room (the open one by default)",
    ),
    (
        "/topic [#room] [text]",
        "show a room's topic, or set it (operators)",
    ),
    ("/who [#room]", "list a room's members"),
    ("/rooms", "list every room"),
    ("/list", "list who is online"),
    (
        "/search <words>",
        "find messages holding every word, in everything you may read",
    ),
    (
        "/kick [#room] <name> [reason]",
        "remove someone from a room (operators)",
    ),
    (
        "/mode [#room] [+x [arg]]",
        "show a room's modes, or change one (operators): +i, +k <key>, +l <n>, +m, +s, +t, +n",
    ),
    (
        "/op, /deop [#room] <name>",
        "make someone an operator of a room, or not (operators)",
    ),
    (
        "/voice, /devoice [#room] <name>",
        "let someone speak in a moderated room, or not (operators)",
    ),
    (
        "/ban [#room] <name|mask>",
        "keep someone out of a room, by account if they have one (operators)",
    ),
    ("/unban [#room] <name|mask>", "lift a ban (operators)"),
    ("/bans [#room]", "list a room's bans"),
    ("/invite <name> [#room]", "invite someone into a room"),
    ("/name <newname>", "change your name"),
    ("/me <action>", "say what you are doing (\"/me waves\")"),
    (
        "/raw <LINE>",
        "send a protocol line as typed (see /help <COMMAND>)",
    ),
    (
        "/help [COMMAND]",
        "this list, or the server's help on a protocol command",
    ),
    (
        "/login <name> <password>",
        "sign into your account (this client then stays signed in)",
    ),
    (
        "/account create <password>",
        "make your name an account only you can use",
    ),
    (
        "/account password <old> <new>",
        "change your account's password",
    ),
    ("/account delete <password>", "delete your account"),
    ("/logout", "leave your account and forget the saved sign-in"),
    ("/quit", "say goodbye and close the window"),
    ("//text", "send text that starts with /"),
];

/// Splits off the first space-separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(' ');
    match s.split_once(' ') {
        Some((w, rest)) => (w, rest.trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// `Some(text)` unless the text is blank.
fn some(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// Adds the `#` a room name needs when the user left it out.
pub fn room_name(word: &str) -> String {
    if word.starts_with('#') {
        word.to_owned()
    } else {
        format!("#{word}")
    }
}

/// Splits an optional leading `#room` word off `rest`.
fn optional_room(rest: &str) -> (Option<String>, &str) {
    let (w, after) = word(rest);
    if w.starts_with('#') {
        (Some(w.to_owned()), after)
    } else {
        (None, rest)
    }
}

/// Parses one submission. `Ok(None)` is blank input; `Err` is a message for the user.
pub fn parse(input: &str) -> Result<Option<Action>, String> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    let Some(cmd) = input.strip_prefix('/') else {
        return Ok(Some(Action::Say(input.to_owned())));
    };
    if cmd.starts_with('/') {
        return Ok(Some(Action::Say(cmd.to_owned())));
    }
    let (verb, rest) = word(cmd);
    let need = |what: &str| format!("/{verb} needs {what}; type /help");
    let action = match verb.to_ascii_lowercase().as_str() {
        "me" => match some(rest) {
            Some(_) => Action::Say(input.trim_start().to_owned()),
            None => return Err(need("an action, as in /me waves")),
        },
        "dm" | "msg" | "query" => {
            let (to, text) = word(rest);
            if to.is_empty() {
                return Err(need("a name"));
            }
            match some(text) {
                Some(text) => Action::Dm {
                    to: to.to_owned(),
                    text,
                },
                None => Action::OpenDm(to.to_owned()),
            }
        }
        "join" | "j" => {
            let (room, extra) = word(rest);
            if room.is_empty() {
                return Err(need("a room, as in /join #rust"));
            }
            if !extra.trim().is_empty() {
                return Err("room names have no spaces; join one room at a time".into());
            }
            Action::Join(room_name(room))
        }
        "part" | "leave" => {
            let (room, reason) = optional_room(rest);
            Action::Part {
                room,
                reason: some(reason),
            }
        }
        "list" | "users" => Action::List,
        "rooms" => Action::Rooms,
        "who" | "names" => {
            let (room, _) = word(rest);
            Action::Who((!room.is_empty()).then(|| room_name(room)))
        }
        "topic" => {
            let (room, text) = optional_room(rest);
            Action::Topic {
                room,
                text: some(text),
            }
        }
        "kick" => {
            let (room, rest) = optional_room(rest);
            let (user, reason) = word(rest);
            if user.is_empty() {
                return Err(need("a name"));
            }
            Action::Kick {
                room,
                user: user.to_owned(),
                reason: some(reason),
            }
        }
        "mode" => {
            let (room, change) = optional_room(rest);
            let change = change.trim();
            if !change.is_empty() && !change.starts_with(['+', '-']) {
                return Err(need("a change such as +m, +k <key> or +l 20"));
            }
            Action::Mode {
                room,
                change: some(change),
            }
        }
        "op" | "deop" | "voice" | "devoice" => {
            let (room, rest) = optional_room(rest);
            let (name, extra) = word(rest);
            if name.is_empty() {
                return Err(need("a name"));
            }
            if !extra.trim().is_empty() {
                return Err(format!("/{verb} takes one name at a time"));
            }
            let change = match verb.to_ascii_lowercase().as_str() {
                "op" => "+o",
                "deop" => "-o",
                "voice" => "+v",
                _ => "-v",
            };
            Action::Mode {
                room,
                change: Some(format!("{change} {name}")),
            }
        }
        "ban" | "unban" => {
            let (room, rest) = optional_room(rest);
            let (who, extra) = word(rest);
            if who.is_empty() {
                return Err(need("a name or a mask"));
            }
            if !extra.trim().is_empty() {
                return Err(format!("/{verb} takes one name or mask at a time"));
            }
            let who = who.to_owned();
            if verb.eq_ignore_ascii_case("ban") {
                Action::Ban { room, who }
            } else {
                Action::Unban { room, who }
            }
        }
        "bans" => {
            let (room, _) = word(rest);
            Action::Bans((!room.is_empty()).then(|| room_name(room)))
        }
        "invite" => {
            let (user, rest) = word(rest);
            let (room, _) = word(rest);
            if user.is_empty() {
                return Err(need("a name, as in /invite bob #den"));
            }
            Action::Invite {
                user: user.to_owned(),
                room: (!room.is_empty()).then(|| room_name(room)),
            }
        }
        "name" | "nick" => {
            let new = rest.trim();
            if new.is_empty() {
                return Err(need("a new name"));
            }
            Action::Name(new.to_owned())
        }
        "help" | "?" => Action::Help(some(rest).map(|s| s.trim().to_owned())),
        "raw" | "quote" => match some(rest) {
            Some(line) => Action::Raw(line),
            None => return Err(need("a protocol line, as in /raw HELP")),
        },
        "quit" | "exit" | "close" => Action::Quit,
        "login" => {
            let (name, rest) = word(rest);
            let (password, _) = word(rest);
            if name.is_empty() || password.is_empty() {
                return Err(need("a name and a password"));
            }
            Action::Login {
                name: name.to_owned(),
                password: password.to_owned(),
            }
        }
        "account" => match some(rest) {
            Some(what) => Action::Account(what.trim().to_owned()),
            None => {
                return Err(need(
                    "create <password>, password <old> <new> or delete <password>",
                ));
            }
        },
        "logout" => Action::Logout,
        "search" | "find" => match some(rest) {
            Some(words) => Action::Search(words.trim().to_owned()),
            None => return Err(need("words to look for, as in /search build green")),
        },
        _ => return Err(format!("unknown command /{verb}; type /help for the list")),
    };
    // A command is one protocol line: only the text a message carries may have more.
    let several = |s: &str| s.contains(['\n', '\r']);
    match &action {
        Action::Say(_) => {}
        Action::Dm { to, .. } if !several(to) => {}
        _ if several(input) => {
            return Err("a command takes one line; Shift+Enter makes new lines in messages".into());
        }
        _ => {}
    }
    Ok(Some(action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Action {
        parse(s).unwrap().unwrap()
    }

    #[test]
    fn only_messages_take_several_lines() {
        assert_eq!(p("one\ntwo"), Action::Say("one\ntwo".into()));
        assert_eq!(
            p("/me waves\nand bows"),
            Action::Say("/me waves\nand bows".into())
        );
        assert_eq!(
            p("/dm bob one\ntwo"),
            Action::Dm {
                to: "bob".into(),
                text: "one\ntwo".into()
            }
        );
        for typed in [
            "/dm bob\nhi",
            "/raw HELP\nCLOSE",
            "/topic a\nb",
            "/join #a\n#b",
        ] {
            assert!(parse(typed).is_err(), "{typed:?}");
        }
    }

    #[test]
    fn chat_text_is_kept_exactly() {
        assert_eq!(p("  hi  there "), Action::Say("  hi  there ".into()));
        assert_eq!(p("//etc/passwd"), Action::Say("/etc/passwd".into()));
        assert_eq!(p("/me waves"), Action::Say("/me waves".into()));
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn commands() {
        assert_eq!(
            p("/dm bob  see you  "),
            Action::Dm {
                to: "bob".into(),
                text: "see you  ".into()
            }
        );
        assert_eq!(p("/dm bob"), Action::OpenDm("bob".into()));
        assert_eq!(p("/join rust"), Action::Join("#rust".into()));
        assert_eq!(p("/JOIN #rust"), Action::Join("#rust".into()));
        assert_eq!(
            p("/part"),
            Action::Part {
                room: None,
                reason: None
            }
        );
        assert_eq!(
            p("/part #a bye now"),
            Action::Part {
                room: Some("#a".into()),
                reason: Some("bye now".into())
            }
        );
        assert_eq!(
            p("/topic new topic"),
            Action::Topic {
                room: None,
                text: Some("new topic".into())
            }
        );
        assert_eq!(
            p("/kick #a bob spam"),
            Action::Kick {
                room: Some("#a".into()),
                user: "bob".into(),
                reason: Some("spam".into())
            }
        );
        assert_eq!(p("/name carol"), Action::Name("carol".into()));
        assert_eq!(p("/help"), Action::Help(None));
        assert_eq!(p("/help dm"), Action::Help(Some("dm".into())));
        assert_eq!(p("/raw LIST"), Action::Raw("LIST".into()));
        assert_eq!(p("/quit"), Action::Quit);
        assert_eq!(
            p("/login alice correct-horse"),
            Action::Login {
                name: "alice".into(),
                password: "correct-horse".into()
            }
        );
        assert!(parse("/login alice").is_err());
        assert_eq!(
            p("/account create correct-horse"),
            Action::Account("create correct-horse".into())
        );
        assert_eq!(p("/logout"), Action::Logout);
        assert_eq!(
            p("/search  build green "),
            Action::Search("build green".into())
        );
        assert!(parse("/search ").is_err());
        assert_eq!(p("/list"), Action::List);
        assert_eq!(p("/rooms"), Action::Rooms);
        assert_eq!(p("/who"), Action::Who(None));
        assert_eq!(p("/who x"), Action::Who(Some("#x".into())));
    }

    #[test]
    fn moderation_commands() {
        let mode = |room: Option<&str>, change: Option<&str>| Action::Mode {
            room: room.map(Into::into),
            change: change.map(Into::into),
        };
        assert_eq!(p("/mode"), mode(None, None));
        assert_eq!(p("/mode #den"), mode(Some("#den"), None));
        assert_eq!(p("/mode +l 20"), mode(None, Some("+l 20")));
        assert_eq!(p("/MODE #den -k"), mode(Some("#den"), Some("-k")));
        assert_eq!(p("/op bob"), mode(None, Some("+o bob")));
        assert_eq!(p("/deop #den bob"), mode(Some("#den"), Some("-o bob")));
        assert_eq!(p("/voice bob"), mode(None, Some("+v bob")));
        assert_eq!(p("/devoice bob"), mode(None, Some("-v bob")));
        assert_eq!(
            p("/ban #den carol"),
            Action::Ban {
                room: Some("#den".into()),
                who: "carol".into()
            }
        );
        assert_eq!(
            p("/unban *!*@*"),
            Action::Unban {
                room: None,
                who: "*!*@*".into()
            }
        );
        assert_eq!(p("/bans"), Action::Bans(None));
        assert_eq!(p("/bans den"), Action::Bans(Some("#den".into())));
        assert_eq!(
            p("/invite dave den"),
            Action::Invite {
                user: "dave".into(),
                room: Some("#den".into())
            }
        );
        assert_eq!(
            p("/invite dave"),
            Action::Invite {
                user: "dave".into(),
                room: None
            }
        );
        assert!(
            parse("/mode m")
                .unwrap_err()
                .contains("a change such as +m")
        );
        assert!(parse("/op").unwrap_err().contains("needs a name"));
        assert!(
            parse("/op bob carol")
                .unwrap_err()
                .contains("one name at a time")
        );
        assert!(parse("/ban").unwrap_err().contains("a name or a mask"));
        assert!(parse("/invite").unwrap_err().contains("needs a name"));
        assert!(parse("/mode +k a\nb").is_err());
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(
            parse("/frobnicate")
                .unwrap_err()
                .contains("unknown command /frobnicate")
        );
        assert!(parse("/dm").unwrap_err().contains("needs a name"));
        assert!(parse("/join").unwrap_err().contains("needs a room"));
        assert!(parse("/me").is_err());
        assert!(parse("/name").is_err());
    }
}
