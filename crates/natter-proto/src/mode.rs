//! Room modes: the settings an operator changes with `MODE`, written the same way by native
//! and IRC clients (`+m`, `+k key`, `+b mask`, `+v name`...), and the ban masks they use.
//!
//! A native `MODE` carries one change; an IRC `MODE` may carry several in one mode string
//! (`+im-k key`), each parsed here into a [`Change`] of its own so that the server applies
//! and announces them one by one, whichever side sent them.

use crate::{ErrorCode, name};
use std::fmt;

/// Longest ban mask, in bytes.
pub const MAX_MASK_LEN: usize = 100;

/// Longest room key, in bytes (what common IRC servers allow).
pub const MAX_KEY_LEN: usize = 23;

/// A room setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `i`: only invited users (and operators' invitations) may join.
    InviteOnly,
    /// `m`: only operators and voiced members may speak.
    Moderated,
    /// `n`: only members may send to the room (on unless turned off).
    NoOutside,
    /// `s`: the room is hidden from those outside it.
    Secret,
    /// `t`: only operators may set the topic (on unless turned off).
    TopicOps,
}

impl Flag {
    /// Every flag, in the order mode strings list them.
    pub const ALL: [Flag; 5] = [
        Flag::InviteOnly,
        Flag::Moderated,
        Flag::NoOutside,
        Flag::Secret,
        Flag::TopicOps,
    ];

    /// The mode letter.
    pub fn letter(self) -> char {
        match self {
            Flag::InviteOnly => 'i',
            Flag::Moderated => 'm',
            Flag::NoOutside => 'n',
            Flag::Secret => 's',
            Flag::TopicOps => 't',
        }
    }

    /// The flag a letter names.
    pub fn from_letter(c: char) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.letter() == c)
    }
}

/// One change to a room's modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// `+i`, `-m`, ...
    Flag {
        /// Set (`+`) or unset (`-`).
        on: bool,
        /// Which.
        flag: Flag,
    },
    /// `+k <key>` (`Some`) or `-k` (`None`).
    Key(Option<&'a str>),
    /// `+l <n>` (`Some`) or `-l` (`None`).
    Limit(Option<u32>),
    /// `+b <mask>` or `-b <mask>`.
    Ban {
        /// Add (`+`) or remove (`-`).
        on: bool,
        /// The mask, as given (see [`normalize_mask`]).
        mask: &'a str,
    },
    /// `+v <name>` or `-v <name>`.
    Voice {
        /// Give (`+`) or take (`-`).
        on: bool,
        /// Whose.
        name: &'a str,
    },
    /// `+o <name>` or `-o <name>`.
    Op {
        /// Give (`+`) or take (`-`).
        on: bool,
        /// Whose.
        name: &'a str,
    },
    /// `b` (or `+b`) without a mask: the ban list is asked for.
    ListBans,
}

impl Change<'_> {
    /// The sign and letter, `+k`.
    pub fn flag(&self) -> String {
        let (on, c) = match *self {
            Change::Flag { on, flag } => (on, flag.letter()),
            Change::Key(k) => (k.is_some(), 'k'),
            Change::Limit(l) => (l.is_some(), 'l'),
            Change::Ban { on, .. } => (on, 'b'),
            Change::Voice { on, .. } => (on, 'v'),
            Change::Op { on, .. } => (on, 'o'),
            Change::ListBans => (true, 'b'),
        };
        format!("{}{c}", if on { '+' } else { '-' })
    }

    /// The parameter, if the change has one.
    pub fn arg(&self) -> Option<String> {
        match *self {
            Change::Key(k) => k.map(str::to_owned),
            Change::Limit(l) => l.map(|n| n.to_string()),
            Change::Ban { mask, .. } => Some(mask.to_owned()),
            Change::Voice { name, .. } | Change::Op { name, .. } => Some(name.to_owned()),
            Change::Flag { .. } | Change::ListBans => None,
        }
    }
}

impl fmt::Display for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flag())?;
        match self.arg() {
            Some(a) => write!(f, " {a}"),
            None => Ok(()),
        }
    }
}

/// Why a mode change was refused before it reached a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeError {
    /// A letter natter does not know (or does not let anyone set).
    Unknown(char),
    /// A change that needs a parameter came without one.
    Missing(char),
    /// A parameter that is not one the change takes.
    Bad(char, &'static str),
}

impl ModeError {
    /// The native error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ModeError::Unknown(_) => ErrorCode::UnknownMode,
            ModeError::Missing(_) => ErrorCode::MissingParameter,
            ModeError::Bad(..) => ErrorCode::BadParameter,
        }
    }
}

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeError::Unknown(c) => write!(
                f,
                "{} is not a room mode here; modes are i m n s t k l b v o",
                shown_char(*c)
            ),
            ModeError::Missing(c) => write!(f, "+{c} needs {}", needs(*c)),
            ModeError::Bad(_, why) => f.write_str(why),
        }
    }
}

/// A character fit to repeat in an error: control characters as `?`.
fn shown_char(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

/// What a letter's parameter is, for errors.
fn needs(c: char) -> &'static str {
    match c {
        'k' => "a key",
        'l' => "a number of members",
        'b' => "a mask",
        _ => "a user's name",
    }
}

/// Parses one change from its sign-and-letter word (`+k`) and parameter: a native `MODE`.
pub fn parse_one<'a>(word: &str, arg: Option<&'a str>) -> Result<Change<'a>, ModeError> {
    let mut chars = word.chars();
    let on = match chars.next() {
        Some('+') => true,
        Some('-') => false,
        Some(c) => return Err(ModeError::Unknown(c)),
        None => return Err(ModeError::Unknown('?')),
    };
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Err(ModeError::Bad(
            '?',
            "MODE takes one change at a time: + or - and one letter",
        ));
    };
    let mut args = arg.into_iter();
    let change = change(on, c, &mut args)?;
    if args.next().is_some() {
        return Err(ModeError::Bad(c, "that change takes no parameter"));
    }
    Ok(change)
}

/// Parses an IRC mode string and its parameters into changes, each parsed or refused on its
/// own, in order. Parameters are taken as IRC takes them: `+k`, `+l`, `b`, `v` and `o` take
/// one, `-l` none, `-k` one if there is one left.
pub fn parse_irc<'a>(modes: &str, args: &[&'a str]) -> Vec<Result<Change<'a>, ModeError>> {
    let mut out = Vec::new();
    let mut args = args.iter().copied().peekable();
    let mut on = None;
    for c in modes.chars() {
        match c {
            '+' => on = Some(true),
            '-' => on = Some(false),
            // A letter before any sign asks (`MODE #c b`): only the ban list can be asked for.
            'b' if on.is_none() => out.push(Ok(Change::ListBans)),
            c => {
                let sign = on.unwrap_or(true);
                let r = if c == 'k' && !sign {
                    // `-k` takes the key on most servers and none on some: take one if given.
                    let _ = args.next();
                    Ok(Change::Key(None))
                } else if c == 'b' && args.peek().is_none() {
                    Ok(Change::ListBans)
                } else {
                    change(sign, c, &mut args)
                };
                out.push(r);
            }
        }
    }
    out
}

/// One change for a sign and a letter, its parameter (if it takes one) from `args`.
fn change<'a>(
    on: bool,
    c: char,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<Change<'a>, ModeError> {
    if let Some(flag) = Flag::from_letter(c) {
        return Ok(Change::Flag { on, flag });
    }
    let mut need = |c| args.next().ok_or(ModeError::Missing(c));
    Ok(match (c, on) {
        ('k', true) => {
            let key = need('k')?;
            if key.is_empty()
                || key.len() > MAX_KEY_LEN
                || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',')
            {
                return Err(ModeError::Bad(
                    'k',
                    "a key is 1 to 23 visible ASCII characters, without commas",
                ));
            }
            Change::Key(Some(key))
        }
        ('k', false) => Change::Key(None),
        ('l', true) => {
            let n = need('l')?;
            let n = n
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(ModeError::Bad('l', "a limit is a number of members from 1"))?;
            Change::Limit(Some(n))
        }
        ('l', false) => Change::Limit(None),
        ('b', on) => {
            let mask = need('b')?;
            if normalize_mask(mask).is_none() {
                return Err(ModeError::Bad(
                    'b',
                    "a ban mask is nick!user@host with * and ? as wildcards, or $a:account",
                ));
            }
            Change::Ban { on, mask }
        }
        ('v', on) => Change::Voice {
            on,
            name: need('v')?,
        },
        ('o', on) => Change::Op {
            on,
            name: need('o')?,
        },
        (c, _) => return Err(ModeError::Unknown(c)),
    })
}

/// A room's settings: its flags, key and member limit (its bans, voices and operators are
/// lists kept beside them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `+i`.
    pub invite_only: bool,
    /// `+m`.
    pub moderated: bool,
    /// `+n` (on for a new room).
    pub no_outside: bool,
    /// `+s`.
    pub secret: bool,
    /// `+t` (on for a new room).
    pub topic_ops: bool,
    /// `+k`: the key a join must give.
    pub key: Option<Box<str>>,
    /// `+l`: most members.
    pub limit: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            invite_only: false,
            moderated: false,
            no_outside: true,
            secret: false,
            topic_ops: true,
            key: None,
            limit: None,
        }
    }
}

impl Settings {
    /// Whether `flag` is on.
    pub fn get(&self, flag: Flag) -> bool {
        match flag {
            Flag::InviteOnly => self.invite_only,
            Flag::Moderated => self.moderated,
            Flag::NoOutside => self.no_outside,
            Flag::Secret => self.secret,
            Flag::TopicOps => self.topic_ops,
        }
    }

    /// Sets `flag`.
    pub fn set(&mut self, flag: Flag, on: bool) {
        *match flag {
            Flag::InviteOnly => &mut self.invite_only,
            Flag::Moderated => &mut self.moderated,
            Flag::NoOutside => &mut self.no_outside,
            Flag::Secret => &mut self.secret,
            Flag::TopicOps => &mut self.topic_ops,
        } = on;
    }

    /// Applies a flag, key or limit change; whether it changed anything. Lists (bans,
    /// voices, operators) are not settings and change nothing here.
    pub fn apply(&mut self, change: &Change<'_>) -> bool {
        match *change {
            Change::Flag { on, flag } => {
                let was = self.get(flag);
                self.set(flag, on);
                was != on
            }
            Change::Key(k) => {
                let new = k.map(Box::from);
                let changed = self.key != new;
                self.key = new;
                changed
            }
            Change::Limit(l) => {
                let changed = self.limit != l;
                self.limit = l;
                changed
            }
            _ => false,
        }
    }

    /// The mode string with its parameters, `+intkl key 20`; the key only if `show_key`
    /// (members see it, others do not).
    pub fn describe(&self, show_key: bool) -> String {
        let mut flags = String::from("+");
        let mut args = Vec::new();
        for f in Flag::ALL {
            if self.get(f) {
                flags.push(f.letter());
            }
        }
        if let Some(k) = &self.key {
            flags.push('k');
            if show_key {
                args.push(k.to_string());
            }
        }
        if let Some(l) = self.limit {
            flags.push('l');
            args.push(l.to_string());
        }
        let mut out = flags;
        for a in args {
            out.push(' ');
            out.push_str(&a);
        }
        out
    }

    /// Parses what [`Settings::describe`] wrote (the key shown).
    pub fn parse(s: &str) -> Option<Settings> {
        let mut words = s.split(' ');
        let flags = words.next()?.strip_prefix('+')?;
        let mut out = Settings {
            no_outside: false,
            topic_ops: false,
            ..Settings::default()
        };
        for c in flags.chars() {
            match c {
                'k' => out.key = Some(Box::from(words.next()?)),
                'l' => out.limit = Some(words.next()?.parse().ok()?),
                c => out.set(Flag::from_letter(c)?, true),
            }
        }
        Some(out)
    }
}

/// A ban mask in its full form: `nick` becomes `nick!*@*`, `nick!user` gets `@*`, `user@host`
/// gets `*!` before it; `$a:<account>` (an account, whatever name it uses) is kept as it is.
/// `None` for a mask that is empty, too long, or holds spaces, commas or control characters.
pub fn normalize_mask(mask: &str) -> Option<String> {
    if mask.is_empty()
        || mask.len() > MAX_MASK_LEN
        || !mask.bytes().all(|b| b.is_ascii_graphic() && b != b',')
    {
        return None;
    }
    if let Some(account) = mask.strip_prefix("$a:") {
        return name::validate(account).is_ok().then(|| mask.to_owned());
    }
    if mask.starts_with('$') {
        return None;
    }
    let (nick_user, host) = match mask.split_once('@') {
        Some((nu, h)) => (nu, h),
        None => (mask, "*"),
    };
    let (nick, user) = match nick_user.split_once('!') {
        Some((n, u)) => (n, u),
        None if mask.contains('@') => ("*", nick_user),
        None => (nick_user, "*"),
    };
    let part = |p: &str| {
        if p.is_empty() {
            "*".to_owned()
        } else {
            p.to_owned()
        }
    };
    let full = format!("{}!{}@{}", part(nick), part(user), part(host));
    (full.len() <= MAX_MASK_LEN).then_some(full)
}

/// Whether a normalized ban mask matches a user: `nick!user@host` by wildcards ignoring ASCII
/// case, or `$a:<account>` by the account the user is logged into.
pub fn mask_matches(mask: &str, source: &str, account: Option<&str>) -> bool {
    match mask.strip_prefix("$a:") {
        Some(a) => account.is_some_and(|acc| name::same(a, acc)),
        None => glob(mask.as_bytes(), source.as_bytes()),
    }
}

/// `*` and `?` wildcard matching, ignoring ASCII case, without recursion: only the last star
/// is backtracked to, so the work is at most the pattern's length times the text's (both
/// bounded), whatever a hostile mask holds.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_changes() {
        assert_eq!(
            parse_one("+k", Some("sesame")),
            Ok(Change::Key(Some("sesame")))
        );
        assert_eq!(parse_one("-k", None), Ok(Change::Key(None)));
        // An empty key could never be given back by a JOIN.
        assert!(matches!(
            parse_one("+k", Some("")),
            Err(ModeError::Bad('k', _))
        ));
        assert_eq!(parse_one("+l", Some("20")), Ok(Change::Limit(Some(20))));
        assert_eq!(
            parse_one("+l", Some("0")).unwrap_err().code(),
            ErrorCode::BadParameter
        );
        assert_eq!(parse_one("+l", None), Err(ModeError::Missing('l')));
        assert_eq!(
            parse_one("+m", None),
            Ok(Change::Flag {
                on: true,
                flag: Flag::Moderated
            })
        );
        assert_eq!(
            parse_one("+m", Some("x")).unwrap_err().code(),
            ErrorCode::BadParameter
        );
        assert_eq!(parse_one("+q", None), Err(ModeError::Unknown('q')));
        assert_eq!(
            parse_one("+mi", None).unwrap_err().code(),
            ErrorCode::BadParameter
        );
        assert_eq!(
            parse_one("m", None).unwrap_err().code(),
            ErrorCode::UnknownMode
        );
        assert_eq!(
            parse_one("+v", Some("bob")),
            Ok(Change::Voice {
                on: true,
                name: "bob"
            })
        );
        assert_eq!(
            parse_one("+k", Some("a,b")).unwrap_err().code(),
            ErrorCode::BadParameter
        );
    }

    #[test]
    fn irc_mode_strings() {
        let all = parse_irc("+im-l+kv", &["key", "bob"]);
        assert_eq!(
            all,
            vec![
                Ok(Change::Flag {
                    on: true,
                    flag: Flag::InviteOnly
                }),
                Ok(Change::Flag {
                    on: true,
                    flag: Flag::Moderated
                }),
                Ok(Change::Limit(None)),
                Ok(Change::Key(Some("key"))),
                Ok(Change::Voice {
                    on: true,
                    name: "bob"
                }),
            ]
        );
        assert_eq!(parse_irc("b", &[]), vec![Ok(Change::ListBans)]);
        assert_eq!(parse_irc("+b", &[]), vec![Ok(Change::ListBans)]);
        assert_eq!(parse_irc("-k", &["old"]), vec![Ok(Change::Key(None))]);
        assert_eq!(parse_irc("+x", &[]), vec![Err(ModeError::Unknown('x'))]);
        assert_eq!(parse_irc("+o", &[]), vec![Err(ModeError::Missing('o'))]);
    }

    #[test]
    fn settings_describe_and_parse() {
        let mut s = Settings::default();
        assert_eq!(s.describe(true), "+nt");
        assert!(s.apply(&Change::Key(Some("k1"))));
        assert!(s.apply(&Change::Limit(Some(5))));
        assert!(!s.apply(&Change::Flag {
            on: true,
            flag: Flag::NoOutside
        }));
        assert_eq!(s.describe(true), "+ntkl k1 5");
        assert_eq!(s.describe(false), "+ntkl 5");
        assert_eq!(Settings::parse(&s.describe(true)), Some(s));
        assert_eq!(
            Settings::parse("+"),
            Some(Settings {
                no_outside: false,
                topic_ops: false,
                ..Settings::default()
            })
        );
    }

    #[test]
    fn masks() {
        assert_eq!(normalize_mask("bob").as_deref(), Some("bob!*@*"));
        assert_eq!(normalize_mask("bob!b").as_deref(), Some("bob!b@*"));
        assert_eq!(normalize_mask("*@host").as_deref(), Some("*!*@host"));
        assert_eq!(normalize_mask("$a:carol").as_deref(), Some("$a:carol"));
        assert_eq!(normalize_mask("$a:9x"), None);
        assert_eq!(normalize_mask("$x:carol"), None);
        assert_eq!(normalize_mask("a b"), None);
        assert_eq!(normalize_mask(""), None);
        assert!(mask_matches("bob!*@*", "Bob!bob@natter", None));
        assert!(!mask_matches("bob!*@*", "bobby!bob@natter", None));
        assert!(mask_matches("b?b*!*@*", "bobby!x@natter", None));
        assert!(mask_matches("$a:carol", "cee!c@natter", Some("Carol")));
        assert!(!mask_matches("$a:carol", "carol!c@natter", None));
    }

    #[test]
    fn glob_is_linear_on_hostile_masks() {
        let text = "a".repeat(100);
        let pattern = "*a".repeat(50) + "b";
        assert!(!glob(pattern.as_bytes(), text.as_bytes()));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(!glob(b"a*c", b"abbbd"));
    }
}
