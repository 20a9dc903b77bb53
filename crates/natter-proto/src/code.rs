//! Stable, machine-readable codes: one per way a command can fail, one per way a connection
//! can end. Clients match on these; the human text beside them may change.

use std::fmt;

macro_rules! codes {
    ($(#[$meta:meta])* $vis:vis enum $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $ty {
            $($(#[$vmeta])* $variant,)*
        }

        impl $ty {
            /// Every code, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The word on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word,)*
                }
            }

            /// The code a wire word names, if any.
            pub fn from_word(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why a command failed: the second word of an `ERROR` line.
    pub enum ErrorCode {
        /// The command word is not one the server knows.
        UnknownCommand = "UNKNOWN_COMMAND",
        /// The command needs a registered name first.
        NotRegistered = "NOT_REGISTERED",
        /// A required parameter is missing.
        MissingParameter = "MISSING_PARAMETER",
        /// The command was given parameters it does not take.
        TooManyParameters = "TOO_MANY_PARAMETERS",
        /// The name breaks the name rule.
        InvalidName = "INVALID_NAME",
        /// Someone online already uses that name (ignoring case).
        NameTaken = "NAME_TAKEN",
        /// No registered user of that name is online.
        NoSuchUser = "NO_SUCH_USER",
        /// A DM to yourself.
        CannotDmSelf = "CANNOT_DM_SELF",
        /// The message text is empty or blank.
        EmptyText = "EMPTY_TEXT",
        /// The message text contains control characters.
        BadText = "BAD_TEXT",
        /// A multi-line message with more lines than a message may have.
        TooManyLines = "TOO_MANY_LINES",
        /// A MESSAGE while no other user is registered.
        NoRecipients = "NO_RECIPIENTS",
        /// The line was longer than the limit; it was discarded.
        LineTooLong = "LINE_TOO_LONG",
        /// The line was not valid UTF-8; it was discarded.
        InvalidUtf8 = "INVALID_UTF8",
        /// The room name breaks the room-name rule.
        InvalidRoomName = "INVALID_ROOM_NAME",
        /// No room of that name exists.
        NoSuchRoom = "NO_SUCH_ROOM",
        /// The command needs membership of the room.
        NotInRoom = "NOT_IN_ROOM",
        /// JOIN of a room you are already in.
        AlreadyInRoom = "ALREADY_IN_ROOM",
        /// The command needs the room's operator.
        NotOperator = "NOT_OPERATOR",
        /// KICK of a user who is not in the room.
        UserNotInRoom = "USER_NOT_IN_ROOM",
        /// You are in as many rooms as one user may be.
        TooManyRooms = "TOO_MANY_ROOMS",
        /// The room has as many members as a room may have.
        RoomFull = "ROOM_FULL",
        /// The server has as many rooms as it may have.
        RoomLimit = "ROOM_LIMIT",
        /// The topic is longer than the limit.
        TopicTooLong = "TOPIC_TOO_LONG",
        /// The server has a password and REGISTER came before a right PASSWORD.
        PasswordRequired = "PASSWORD_REQUIRED",
        /// PASSWORD with the wrong password.
        BadPassword = "BAD_PASSWORD",
        /// The name belongs to an account, and this connection is not logged into it.
        NameReserved = "NAME_RESERVED",
        /// LOGIN (or an account command) with a wrong name or password; which one is not said.
        BadLogin = "BAD_LOGIN",
        /// Too many failed logins for that account or from this address, for a while.
        LoginLocked = "LOGIN_LOCKED",
        /// A new password breaks the password rule.
        WeakPassword = "WEAK_PASSWORD",
        /// ACCOUNT CREATE of a name that is already an account.
        AccountExists = "ACCOUNT_EXISTS",
        /// An account command from a connection not logged into an account.
        NotLoggedIn = "NOT_LOGGED_IN",
        /// The store that keeps accounts failed; nothing was changed.
        StoreUnavailable = "STORE_UNAVAILABLE",
        /// The name looks like another name in use or an account's (`aIice` beside `alice`).
        NameConfusable = "NAME_CONFUSABLE",
        /// RESUME with a token of no session waiting: it ended, or the token is wrong.
        NoSession = "NO_SESSION",
        /// A parameter is not one the command takes (a limit that is not a number...).
        BadParameter = "BAD_PARAMETER",
        /// HISTORY or SEARCH of a room you are not in, or of a conversation the log does
        /// not keep for you.
        NoHistory = "NO_HISTORY",
        /// MODE with a letter that is not a room mode here.
        UnknownMode = "UNKNOWN_MODE",
        /// JOIN of (or SAY in) a room whose ban list matches you.
        Banned = "BANNED",
        /// JOIN of an invite-only room without an invitation.
        InviteOnly = "INVITE_ONLY",
        /// JOIN of a room with a key, without it or with a wrong one.
        BadKey = "BAD_KEY",
        /// SAY in a moderated room without voice.
        Moderated = "MODERATED",
        /// A ban (or an invitation) beyond the room's limit.
        ListFull = "LIST_FULL",
        /// INVITE of someone who is already in the room.
        UserInRoom = "USER_IN_ROOM",
    }
}

codes! {
    /// Why the server is closing the connection: the second word of a `BYE` line.
    pub enum ByeReason {
        /// The client sent CLOSE.
        Closed = "CLOSED",
        /// The server is shutting down.
        Shutdown = "SHUTDOWN",
        /// The client did not read fast enough and its outgoing queue filled.
        SlowConsumer = "SLOW_CONSUMER",
        /// The server already has as many connections as it accepts.
        ServerFull = "SERVER_FULL",
        /// The client's address has as many connections as one address may have.
        TooManyConnections = "TOO_MANY_CONNECTIONS",
        /// The client's address is connecting faster than allowed.
        ConnectRate = "CONNECT_RATE",
        /// The client kept sending faster than flood control allows.
        Flood = "FLOOD",
        /// The client did not register in time, or was idle too long.
        Timeout = "TIMEOUT",
        /// Too many wrong passwords.
        BadPassword = "BAD_PASSWORD",
        /// Too many failed logins on this connection.
        BadLogin = "BAD_LOGIN",
        /// A server operator disconnected the client (`KILL`).
        Killed = "KILLED",
    }
}

impl ErrorCode {
    /// A default human explanation, for errors whose text needs no detail.
    pub fn default_text(self) -> &'static str {
        match self {
            Self::UnknownCommand => "unknown command; type HELP for the list of commands",
            Self::NotRegistered => "register first with REGISTER <name>",
            Self::MissingParameter => "a parameter is missing; type HELP for the syntax",
            Self::TooManyParameters => "too many parameters; type HELP for the syntax",
            Self::InvalidName => "that name is not allowed",
            Self::NameTaken => "that name is taken; choose another",
            Self::NoSuchUser => "no such user is online",
            Self::CannotDmSelf => "you cannot DM yourself",
            Self::EmptyText => "the message text is empty",
            Self::BadText => "the message text contains control or direction-override characters",
            Self::TooManyLines => "a message has at most 100 lines",
            Self::NoRecipients => "nobody else is registered to receive it",
            Self::LineTooLong => "line too long; it was discarded",
            Self::InvalidUtf8 => "line is not valid UTF-8; it was discarded",
            Self::InvalidRoomName => "that room name is not allowed",
            Self::NoSuchRoom => "no such room",
            Self::NotInRoom => "you are not in that room",
            Self::AlreadyInRoom => "you are already in that room",
            Self::NotOperator => "only the room's operators may do that",
            Self::UserNotInRoom => "that user is not in the room",
            Self::TooManyRooms => "you are in too many rooms",
            Self::RoomFull => "that room is full",
            Self::RoomLimit => "no more rooms can be created now",
            Self::TopicTooLong => "that topic is too long",
            Self::PasswordRequired => "this server needs a password: PASSWORD <password> first",
            Self::BadPassword => "wrong password",
            Self::NameReserved => {
                "that name belongs to an account; LOGIN <name> <password> to use it"
            }
            Self::BadLogin => "wrong name or password",
            Self::LoginLocked => "too many failed logins; try again later",
            Self::WeakPassword => {
                "a password is 8 to 128 characters, with no spaces or control characters"
            }
            Self::AccountExists => "that name is already an account",
            Self::NotLoggedIn => "you are not logged into an account",
            Self::StoreUnavailable => "the store is unavailable right now; try again later",
            Self::NameConfusable => {
                "that name looks too much like a name in use or an account's; choose another"
            }
            Self::NoSession => {
                "no session is waiting for that token (it ended, or the token is wrong); \
                 REGISTER or LOGIN"
            }
            Self::BadParameter => "a parameter is not one the command takes",
            Self::NoHistory => "there is no history there that you may read",
            Self::UnknownMode => "that is not a room mode here; modes are i m n s t k l b v o",
            Self::Banned => "you are banned from that room",
            Self::InviteOnly => "that room is invite-only; an operator must INVITE you",
            Self::BadKey => "that room has a key; JOIN <room> <key>",
            Self::Moderated => "that room is moderated; only operators and voiced members speak",
            Self::ListFull => "that room's list is full",
            Self::UserInRoom => "that user is already in the room",
        }
    }
}

impl ByeReason {
    /// A default human explanation.
    pub fn default_text(self) -> &'static str {
        match self {
            Self::Closed => "goodbye",
            Self::Shutdown => "the server is shutting down",
            Self::SlowConsumer => "you stopped reading and your queue is full; disconnecting",
            Self::ServerFull => "the server is full; try again later",
            Self::TooManyConnections => "too many connections from your address",
            Self::ConnectRate => "connecting too fast from your address; try again shortly",
            Self::Flood => "you kept sending faster than the server allows",
            Self::Timeout => "timed out",
            Self::BadPassword => "too many wrong passwords",
            Self::BadLogin => "too many failed logins",
            Self::Killed => "disconnected by a server operator",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_word(c.as_str()), Some(c));
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            );
        }
        for &r in ByeReason::ALL {
            assert_eq!(ByeReason::from_word(r.as_str()), Some(r));
        }
        assert_eq!(ErrorCode::from_word("NOPE"), None);
    }
}
