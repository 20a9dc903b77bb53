//! SASL PLAIN as IRC carries it (`AUTHENTICATE`, IRCv3 `sasl`): a client's chunks in, one
//! step at a time out. Pure: the session sends the replies and checks the password.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The one mechanism natter offers.
pub const MECHANISMS: &str = "PLAIN";
/// The longest chunk; a chunk this long means more follow.
const CHUNK: usize = 400;
/// Most base64 bytes an exchange may carry: a name, a password and two separators, with room.
const MAX_DATA: usize = 1200;

/// What the server does after an `AUTHENTICATE` line.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// The mechanism is accepted: send `AUTHENTICATE +` and wait for the credentials.
    Go,
    /// A full chunk came; wait for the next.
    More,
    /// The credentials, to be checked.
    Credentials {
        /// The account to log into.
        account: String,
        /// Its password.
        password: String,
    },
    /// The exchange is over without a login.
    Fail(Failure),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Go => f.write_str("Go"),
            Step::More => f.write_str("More"),
            Step::Credentials { account, .. } => {
                write!(
                    f,
                    "Credentials {{ account: {account:?}, password: <redacted> }}"
                )
            }
            Step::Fail(why) => write!(f, "Fail({why:?})"),
        }
    }
}

/// Why an exchange ended without a login, each with its numeric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A mechanism other than PLAIN (`908` listing PLAIN, then `904`).
    Mechanism,
    /// More data than any credentials need (`905`).
    TooLong,
    /// The client sent `AUTHENTICATE *` (`906`).
    Aborted,
    /// Not base64, or not `authzid NUL authcid NUL password`, or an authorisation identity
    /// other than the authentication identity (`904`).
    Malformed,
}

/// One client's exchange in progress.
#[derive(Debug, Default)]
pub struct Exchange {
    plain: bool,
    data: String,
}

impl Exchange {
    /// Takes the parameter of one `AUTHENTICATE` line.
    pub fn feed(&mut self, arg: &str) -> Step {
        if arg == "*" {
            return Step::Fail(Failure::Aborted);
        }
        if !self.plain {
            if arg.eq_ignore_ascii_case(MECHANISMS) {
                self.plain = true;
                return Step::Go;
            }
            return Step::Fail(Failure::Mechanism);
        }
        if arg != "+" {
            self.data.push_str(arg);
        }
        if self.data.len() > MAX_DATA {
            return Step::Fail(Failure::TooLong);
        }
        if arg.len() == CHUNK {
            return Step::More;
        }
        credentials(&std::mem::take(&mut self.data))
    }
}

fn credentials(data: &str) -> Step {
    let Ok(raw) = STANDARD.decode(data) else {
        return Step::Fail(Failure::Malformed);
    };
    let Ok(text) = String::from_utf8(raw) else {
        return Step::Fail(Failure::Malformed);
    };
    let mut parts = text.split('\0');
    let (Some(authz), Some(authc), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Fail(Failure::Malformed);
    };
    if authc.is_empty() || (!authz.is_empty() && !crate::name::same(authz, authc)) {
        return Step::Fail(Failure::Malformed);
    }
    Step::Credentials {
        account: authc.to_owned(),
        password: password.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn a_plain_exchange() {
        let mut x = Exchange::default();
        assert_eq!(x.feed("plain"), Step::Go);
        let got = x.feed(&plain("\0alice\0correct-horse"));
        assert_eq!(
            got,
            Step::Credentials {
                account: "alice".into(),
                password: "correct-horse".into()
            }
        );
        assert!(!format!("{got:?}").contains("horse"));
        let mut y = Exchange::default();
        y.feed("PLAIN");
        assert!(matches!(
            y.feed(&plain("alice\0alice\0pw")),
            Step::Credentials { .. }
        ));
    }

    #[test]
    fn long_credentials_come_in_chunks() {
        let password = "p".repeat(380);
        let data = plain(&format!("\0alice\0{password}"));
        assert!(data.len() > CHUNK);
        let mut x = Exchange::default();
        x.feed("PLAIN");
        assert_eq!(x.feed(&data[..CHUNK]), Step::More);
        assert!(
            matches!(x.feed(&data[CHUNK..]), Step::Credentials { password: p, .. } if p == password)
        );
        // Exactly one full chunk (300 bytes, 400 in base64) is ended by `+`.
        let data = plain(&format!("\0bob\0{}", "x".repeat(295)));
        assert_eq!(data.len(), CHUNK);
        let mut x = Exchange::default();
        x.feed("PLAIN");
        assert_eq!(x.feed(&data), Step::More);
        assert!(matches!(x.feed("+"), Step::Credentials { .. }));
    }

    #[test]
    fn failures() {
        let mut x = Exchange::default();
        assert_eq!(x.feed("SCRAM-SHA-256"), Step::Fail(Failure::Mechanism));
        let mut x = Exchange::default();
        x.feed("PLAIN");
        assert_eq!(x.feed("*"), Step::Fail(Failure::Aborted));
        for bad in [
            "not base64!",
            &plain("no separators"),
            &plain("\0\0pw"),
            &plain("carol\0alice\0pw"),
            &plain("\0a\0b\0c"),
        ] {
            let mut x = Exchange::default();
            x.feed("PLAIN");
            assert_eq!(x.feed(bad), Step::Fail(Failure::Malformed), "{bad}");
        }
        let mut x = Exchange::default();
        x.feed("PLAIN");
        let mut last = Step::More;
        for _ in 0..4 {
            last = x.feed(&"A".repeat(CHUNK));
        }
        assert_eq!(last, Step::Fail(Failure::TooLong));
    }
}
