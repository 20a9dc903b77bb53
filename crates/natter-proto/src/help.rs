//! The text of `HELP`: one entry per command, in the order people need them.

/// One command's help: its syntax and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The command word, upper case.
    pub verb: &'static str,
    /// The syntax, as typed.
    pub usage: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
}

/// Every command, in the order HELP lists them.
pub const ENTRIES: &[Entry] = &[
    Entry {
        verb: "REGISTER",
        usage: "REGISTER <name>",
        summary: "take a name (1-32 letters, digits or [ ] \\ ` _ ^ { | } -, unique ignoring \
                  case); again to change it",
    },
    Entry {
        verb: "HELP",
        usage: "HELP [command]",
        summary: "list the commands, or explain one",
    },
    Entry {
        verb: "LIST",
        usage: "LIST",
        summary: "list the registered users online",
    },
    Entry {
        verb: "MESSAGE",
        usage: "MESSAGE <text>",
        summary: "send <text> to every other registered user",
    },
    Entry {
        verb: "DM",
        usage: "DM <user> <text>",
        summary: "send <text> to <user> only",
    },
    Entry {
        verb: "JOIN",
        usage: "JOIN <room> [key]",
        summary: "join a room (#name), creating it if needed; its creator is its operator; \
                  the key if the room has one",
    },
    Entry {
        verb: "PART",
        usage: "PART <room> [reason]",
        summary: "leave a room",
    },
    Entry {
        verb: "SAY",
        usage: "SAY <room> <text>",
        summary: "send <text> to the other members of a room",
    },
    Entry {
        verb: "HISTORY",
        usage: "HISTORY <target> [limit] [BEFORE <id> | AFTER <id>]",
        summary: "kept messages of * (Everyone), a #room you are in, or your DMs with a user \
                  (accounts only): LOGGED lines, oldest first",
    },
    Entry {
        verb: "SEARCH",
        usage: "SEARCH <words> [IN <target>]",
        summary: "kept messages you may read holding every word, newest first",
    },
    Entry {
        verb: "ROOMS",
        usage: "ROOMS",
        summary: "list the rooms with their member counts and topics",
    },
    Entry {
        verb: "WHO",
        usage: "WHO <room>",
        summary: "list a room's members (@ marks operators)",
    },
    Entry {
        verb: "TOPIC",
        usage: "TOPIC <room> [text]",
        summary: "show a room's topic, or set it (operators)",
    },
    Entry {
        verb: "KICK",
        usage: "KICK <room> <user> [reason]",
        summary: "remove <user> from a room (operators)",
    },
    Entry {
        verb: "MODE",
        usage: "MODE <room> [+|-<mode> [arg]]",
        summary: "show a room's modes, or change one (operators): +i invite-only, +k <key>, \
                  +l <members>, +m moderated, +s secret, -n outsiders may speak, -t members \
                  set the topic, +b <mask> ban, +v <user> voice, +o <user> operator",
    },
    Entry {
        verb: "BANS",
        usage: "BANS <room>",
        summary: "list a room's bans",
    },
    Entry {
        verb: "INVITE",
        usage: "INVITE <room> <user>",
        summary: "invite <user> into a room, past +i, +k and +l once (operators, if +i)",
    },
    Entry {
        verb: "PASSWORD",
        usage: "PASSWORD <password>",
        summary: "give the server's password, if it has one, before REGISTER",
    },
    Entry {
        verb: "KILL",
        usage: "KILL <user> [reason]",
        summary: "disconnect <user> from the server (server operators)",
    },
    Entry {
        verb: "LOGIN",
        usage: "LOGIN <name> <password>",
        summary: "log into an account, taking its name (instead of REGISTER, or to switch)",
    },
    Entry {
        verb: "ACCOUNT",
        usage: "ACCOUNT CREATE <password>",
        summary: "make your name an account only you can use (8-128 characters, no spaces); \
                  ACCOUNT PASSWORD <old> <new> changes it, ACCOUNT DELETE <password> frees \
                  the name",
    },
    Entry {
        verb: "LOGOUT",
        usage: "LOGOUT",
        summary: "leave your account and its name; REGISTER or LOGIN again",
    },
    Entry {
        verb: "ACCOUNTS",
        usage: "ACCOUNTS",
        summary: "list the users online who are logged into their name's account",
    },
    Entry {
        verb: "SESSION",
        usage: "SESSION",
        summary: "a token to RESUME this session from a new connection if this one is lost",
    },
    Entry {
        verb: "RESUME",
        usage: "RESUME <token>",
        summary: "take over your session after a lost connection, with the events missed",
    },
    Entry {
        verb: "TAGS",
        usage: "TAGS ON|OFF",
        summary: "prefix events with @time=<server time>;id=<message id> (kept messages have \
                  an id), so that live lines and HISTORY can be merged",
    },
    Entry {
        verb: "MULTILINE",
        usage: "MULTILINE ON|OFF",
        summary: "message texts sent and received may hold several lines, written with \\n \
                  for a line break and \\\\ for a backslash; without it, each line of a \
                  message comes as its own event",
    },
    Entry {
        verb: "TYPING",
        usage: "TYPING <target> active|paused|done",
        summary: "tell the others in * (Everyone), a #room or your DMs with a user that you are \
                  typing, paused or done; they see TYPING if they said TAGS ON",
    },
    Entry {
        verb: "CLOSE",
        usage: "CLOSE",
        summary: "leave and close the connection",
    },
];

/// The entry for a command word, matched ignoring case.
pub fn entry(verb: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.verb.eq_ignore_ascii_case(verb))
}

/// One HELP line's text for an entry: usage, padded, then summary.
pub fn line(e: &Entry) -> String {
    format!("{:<28} {}", e.usage, e.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    #[test]
    fn every_entry_is_a_command() {
        for e in ENTRIES {
            // A known command word never parses as UNKNOWN_COMMAND, whatever its parameters.
            let r = Command::parse(e.verb);
            assert!(
                r.is_ok() || r.unwrap_err().verb == Some(e.verb),
                "{}",
                e.verb
            );
            assert!(entry(&e.verb.to_lowercase()).is_some());
        }
    }
}
