//! Room names: what is allowed, and when two are the same.
//!
//! A room name is `#` and 1 to 49 characters from a set that every IRC client accepts in a
//! channel name and that needs no quoting anywhere: ASCII letters, digits, `-`, `_` and `.`.
//! Like user names, room names compare ignoring ASCII case.

use crate::limits::MAX_ROOM_NAME_LEN;
use std::fmt;

/// Why a proposed room name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomNameError {
    /// It does not start with `#`.
    NoHash,
    /// Nothing follows the `#`.
    Empty,
    /// Longer than [`MAX_ROOM_NAME_LEN`] characters after the `#`.
    TooLong,
    /// A character outside the allowed set.
    BadChar,
}

impl fmt::Display for RoomNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHash => "room names start with #",
            Self::Empty => "a room name needs at least one character after #",
            Self::TooLong => "room names are at most 49 characters after #",
            Self::BadChar => "room names may use only letters, digits, - _ and . after #",
        })
    }
}

/// Checks `room` against the room-name rule.
pub fn validate(room: &str) -> Result<(), RoomNameError> {
    let Some(rest) = room.strip_prefix('#') else {
        return Err(RoomNameError::NoHash);
    };
    if rest.is_empty() {
        return Err(RoomNameError::Empty);
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(RoomNameError::BadChar);
    }
    if rest.len() > MAX_ROOM_NAME_LEN {
        return Err(RoomNameError::TooLong);
    }
    Ok(())
}

/// The key under which a room name is unique: its ASCII lower case.
pub fn fold(room: &str) -> String {
    room.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule() {
        assert_eq!(validate("#rust"), Ok(()));
        assert_eq!(validate("#a.b-c_D9"), Ok(()));
        assert_eq!(validate(&format!("#{}", "x".repeat(49))), Ok(()));
        assert_eq!(
            validate(&format!("#{}", "x".repeat(50))),
            Err(RoomNameError::TooLong)
        );
        assert_eq!(validate("rust"), Err(RoomNameError::NoHash));
        assert_eq!(validate("#"), Err(RoomNameError::Empty));
        assert_eq!(validate("#a,b"), Err(RoomNameError::BadChar));
        assert_eq!(validate("#a:b"), Err(RoomNameError::BadChar));
        assert_eq!(validate("#é"), Err(RoomNameError::BadChar));
        assert_eq!(validate("##"), Err(RoomNameError::BadChar));
        assert_eq!(fold("#RuSt"), "#rust");
    }
}
