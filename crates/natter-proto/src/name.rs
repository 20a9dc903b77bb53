//! User names: what is allowed, and when two names are the same.
//!
//! A name must also be a valid IRC nickname, so that IRC users later see every natter user under
//! the name they chose. IRC's nickname grammar (RFC 2812, section 2.3.1) is: a letter or one of
//! `[]\`_^{|}` first, then letters, digits, those specials and `-`. Names compare ignoring ASCII
//! case (IRC's `ascii` case mapping), so `Alice` and `alice` cannot both be online.

use crate::limits::{MAX_NAME_LEN, MIN_NAME_LEN};
use std::fmt;

/// Why a proposed name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// The name contains a space.
    Space,
    /// The first character may not start a name (digits and `-` may not).
    BadFirst,
    /// A character outside the allowed set.
    BadChar,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "a name needs at least one character",
            Self::TooLong => "names are at most 32 characters",
            Self::Space => "names cannot contain spaces",
            Self::BadFirst => "a name must start with a letter or one of [ ] \\ ` _ ^ { | }",
            Self::BadChar => "names may use only letters, digits and [ ] \\ ` _ ^ { | } -",
        })
    }
}

fn is_special(b: u8) -> bool {
    matches!(
        b,
        b'[' | b']' | b'\\' | b'`' | b'_' | b'^' | b'{' | b'|' | b'}'
    )
}

/// Checks `name` against the name rule.
pub fn validate(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if bytes.len() < MIN_NAME_LEN {
        return Err(NameError::Empty);
    }
    if bytes.contains(&b' ') {
        return Err(NameError::Space);
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let first = bytes[0];
    if !(first.is_ascii_alphabetic() || is_special(first)) {
        return Err(if first.is_ascii() {
            NameError::BadFirst
        } else {
            NameError::BadChar
        });
    }
    if bytes[1..]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || is_special(b) || b == b'-')
    {
        Ok(())
    } else {
        Err(NameError::BadChar)
    }
}

/// The key under which a name is unique: its ASCII lower case.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Whether two names are the same name (equal ignoring ASCII case).
pub fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_irc_nicknames() {
        for ok in [
            "a",
            "alice",
            "Bob_2",
            "[x]",
            "a-b",
            "{}|^`\\",
            "A".repeat(32).as_str(),
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_with_reasons() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate("a b"), Err(NameError::Space));
        assert_eq!(validate(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate("1abc"), Err(NameError::BadFirst));
        assert_eq!(validate("-abc"), Err(NameError::BadFirst));
        assert_eq!(validate("ab:c"), Err(NameError::BadChar));
        assert_eq!(validate("ab\u{7}"), Err(NameError::BadChar));
        assert_eq!(validate("zoë"), Err(NameError::BadChar));
        assert_eq!(validate("é"), Err(NameError::BadChar));
    }

    #[test]
    fn case_folds() {
        assert!(same("Alice", "aLICE"));
        assert!(!same("[a]", "{a}"));
        assert_eq!(fold("MiXeD"), "mixed");
    }
}
