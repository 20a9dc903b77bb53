//! The rule for an account's password, shared by the server and the clients that offer to
//! set one.

/// Fewest characters in a password: OWASP's minimum for a password that is hashed with a
/// memory-hard function and rate-limited.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most characters in a password; long enough for any passphrase, short enough that hashing
/// one costs the server a bounded amount.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Whether `password` may be an account's password: 8 to 128 characters, none of them a
/// space (commands separate their words by spaces) or a character the text rule forbids.
pub fn acceptable(password: &str) -> bool {
    let n = password.chars().count();
    (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n)
        && !password
            .chars()
            .any(|c| c.is_whitespace() || crate::text::is_forbidden(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert!(acceptable("correct-horse"));
        assert!(acceptable("ünïcödé!"));
        assert!(acceptable(&"x".repeat(128)));
        for bad in [
            "",
            "short",
            "1234567",
            "has space in",
            "tab\there1",
            "nul\0nul\0n",
        ] {
            assert!(!acceptable(bad), "{bad:?}");
        }
        assert!(!acceptable(&"x".repeat(129)));
    }
}
