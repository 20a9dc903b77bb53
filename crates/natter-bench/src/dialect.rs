//! The two languages the benchmark speaks: natter's line protocol and IRC.
//!
//! A dialect knows how to register, how to join the shared channel or room, how to address a
//! message (everyone, a room, one user) and how to classify the lines that are not deliveries.
//! It never touches a socket: [`crate::conn`] carries its bytes over a [`crate::transport`].

use clap::ValueEnum;
use serde::Serialize;

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// natter's line protocol: REGISTER, MESSAGE, SAY, DM.
    Natter,
    /// IRC: NICK/USER, JOIN, PRIVMSG.
    Irc,
}

/// What each client does about an account as it registers (natter only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStep {
    /// REGISTER, then ACCOUNT CREATE: makes the name an account (a hash on the server).
    Create,
    /// LOGIN instead of REGISTER: the account must exist (a run with `create` before).
    Login,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    /// Everyone: natter `MESSAGE`, or IRC `PRIVMSG` to the shared channel.
    All,
    /// A room: natter `SAY <room>`, or IRC `PRIVMSG <room>`.
    Room(&'a str),
    /// One user: natter `DM`, or IRC `PRIVMSG <nick>`.
    User(&'a str),
}

/// A line that is not a delivery, as far as the benchmark cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// Registration finished (natter `OK REGISTER` or `OK LOGIN`, IRC `001`).
    Registered,
    /// An account command finished (natter `OK ACCOUNT`).
    Account,
    /// Joining the channel or room finished (natter `OK JOIN`, IRC `366`).
    Joined,
    /// A command was refused; the benchmark counts these.
    Error,
    /// The server wants an answer now (IRC `PING`): send these bytes.
    Reply(&'a [u8]),
    /// The server is closing the connection (natter `BYE`, IRC `ERROR`).
    Closing,
    /// Anything else (acks, presence, names, MOTD...).
    Other,
}

impl Dialect {
    /// The line ending this dialect sends.
    fn eol(self) -> &'static [u8] {
        match self {
            Self::Natter => b"\n",
            Self::Irc => b"\r\n",
        }
    }

    /// Appends the registration of `name`. natter's starts with a blank line, which the server
    /// ignores but which makes it greet at once instead of waiting to sniff the protocol.
    pub fn register(self, out: &mut Vec<u8>, name: &str) {
        match self {
            Self::Natter => {
                out.extend_from_slice(b"\nREGISTER ");
                out.extend_from_slice(name.as_bytes());
            }
            Self::Irc => {
                out.extend_from_slice(b"NICK ");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\r\nUSER ");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b" 0 * :natter-bench");
            }
        }
        out.extend_from_slice(self.eol());
    }

    /// Appends a natter `LOGIN` of the account `name` (natter only).
    pub fn login(self, out: &mut Vec<u8>, name: &str, password: &str) {
        out.extend_from_slice(b"\nLOGIN ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(password.as_bytes());
        out.extend_from_slice(self.eol());
    }

    /// Appends a natter `ACCOUNT CREATE` (natter only).
    pub fn create_account(self, out: &mut Vec<u8>, password: &str) {
        out.extend_from_slice(b"ACCOUNT CREATE ");
        out.extend_from_slice(password.as_bytes());
        out.extend_from_slice(self.eol());
    }

    /// Appends a JOIN of `room` (an IRC channel or a natter room; both start with `#`).
    pub fn join(self, out: &mut Vec<u8>, room: &str) {
        out.extend_from_slice(b"JOIN ");
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(self.eol());
    }

    /// Appends a polite goodbye (natter `CLOSE`, IRC `QUIT`).
    pub fn quit(self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self {
            Self::Natter => b"CLOSE\n".as_slice(),
            Self::Irc => b"QUIT :bye\r\n",
        });
    }

    /// The prefix of a message to `dest`; the payload and [`Dialect::end`] follow it.
    /// `channel` is the shared IRC channel that stands for "everyone".
    pub fn start_message(self, out: &mut Vec<u8>, dest: Dest<'_>, channel: &str) {
        match (self, dest) {
            (Self::Natter, Dest::All) => out.extend_from_slice(b"MESSAGE "),
            (Self::Natter, Dest::Room(r)) => {
                out.extend_from_slice(b"SAY ");
                out.extend_from_slice(r.as_bytes());
                out.push(b' ');
            }
            (Self::Natter, Dest::User(u)) => {
                out.extend_from_slice(b"DM ");
                out.extend_from_slice(u.as_bytes());
                out.push(b' ');
            }
            (Self::Irc, d) => {
                let to = match d {
                    Dest::All => channel,
                    Dest::Room(r) | Dest::User(r) => r,
                };
                out.extend_from_slice(b"PRIVMSG ");
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(b" :");
            }
        }
    }

    /// Ends a line begun by [`Dialect::start_message`].
    pub fn end(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.eol());
    }

    /// Classifies a line that carried no payload. `scratch` holds the reply for a PING.
    pub fn classify<'s>(self, line: &[u8], scratch: &'s mut Vec<u8>) -> Control<'s> {
        match self {
            Self::Natter => {
                if line.starts_with(b"OK REGISTER") || line.starts_with(b"OK LOGIN") {
                    Control::Registered
                } else if line.starts_with(b"OK ACCOUNT") {
                    Control::Account
                } else if line.starts_with(b"OK JOIN") {
                    Control::Joined
                } else if line.starts_with(b"ERROR ") {
                    Control::Error
                } else if line.starts_with(b"BYE ") {
                    Control::Closing
                } else {
                    Control::Other
                }
            }
            Self::Irc => {
                if let Some(token) = line.strip_prefix(b"PING ") {
                    scratch.clear();
                    scratch.extend_from_slice(b"PONG ");
                    scratch.extend_from_slice(token);
                    scratch.extend_from_slice(b"\r\n");
                    return Control::Reply(scratch);
                }
                if line.starts_with(b"ERROR ") {
                    return Control::Closing;
                }
                // ":server 001 nick :Welcome" - the command is the second word.
                let mut words = line.split(|&b| b == b' ');
                let first = words.next().unwrap_or_default();
                let cmd = if first.starts_with(b":") {
                    words.next().unwrap_or_default()
                } else {
                    first
                };
                match cmd {
                    b"001" => Control::Registered,
                    b"366" => Control::Joined,
                    // 422 "MOTD file is missing" is information, not a refusal.
                    b"422" => Control::Other,
                    // 4xx and 5xx numerics are refusals (433 nick in use, 404 cannot send...).
                    [b'4' | b'5', b'0'..=b'9', b'0'..=b'9'] => Control::Error,
                    _ => Control::Other,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(d: Dialect, line: &str) -> String {
        let mut s = Vec::new();
        match d.classify(line.as_bytes(), &mut s) {
            Control::Reply(r) => String::from_utf8_lossy(r).into_owned(),
            c => format!("{c:?}"),
        }
    }

    #[test]
    fn natter_lines() {
        let mut out = Vec::new();
        Dialect::Natter.register(&mut out, "b1");
        Dialect::Natter.start_message(&mut out, Dest::Room("#r"), "#x");
        out.extend_from_slice(b"hi");
        Dialect::Natter.end(&mut out);
        Dialect::Natter.start_message(&mut out, Dest::User("b2"), "#x");
        out.extend_from_slice(b"yo");
        Dialect::Natter.end(&mut out);
        assert_eq!(out, b"\nREGISTER b1\nSAY #r hi\nDM b2 yo\n");
        assert_eq!(classify(Dialect::Natter, "OK REGISTER b1"), "Registered");
        assert_eq!(classify(Dialect::Natter, "OK JOIN #r"), "Joined");
        assert_eq!(classify(Dialect::Natter, "ERROR NO_SUCH_USER x"), "Error");
        assert_eq!(classify(Dialect::Natter, "OK MESSAGE 3"), "Other");
    }

    #[test]
    fn irc_lines() {
        let mut out = Vec::new();
        Dialect::Irc.register(&mut out, "b1");
        Dialect::Irc.start_message(&mut out, Dest::All, "#bench");
        out.extend_from_slice(b"hi");
        Dialect::Irc.end(&mut out);
        assert_eq!(
            out,
            b"NICK b1\r\nUSER b1 0 * :natter-bench\r\nPRIVMSG #bench :hi\r\n"
        );
        assert_eq!(
            classify(Dialect::Irc, ":irc.local 001 b1 :Welcome"),
            "Registered"
        );
        assert_eq!(classify(Dialect::Irc, ":s 366 b1 #bench :End"), "Joined");
        assert_eq!(classify(Dialect::Irc, ":s 433 * b1 :in use"), "Error");
        assert_eq!(classify(Dialect::Irc, "PING :abc"), "PONG :abc\r\n");
        assert_eq!(classify(Dialect::Irc, ":s 372 b1 :motd"), "Other");
        assert_eq!(
            classify(Dialect::Irc, ":s 422 b1 :MOTD File is missing"),
            "Other"
        );
        assert_eq!(classify(Dialect::Irc, "ERROR :Closing link"), "Closing");
    }
}
