//! IRC input: bounded, validated parsing on top of the `irc-proto` crate, and the text rules
//! that carry IRC messages into natter's (and back).
//!
//! IRC lines are at most 512 bytes with their CRLF, plus up to 8191 bytes of IRCv3 message
//! tags. Text from IRC clients may hold mIRC formatting codes and CTCP; natter's text rule
//! forbids control characters, so formatting is removed and a CTCP ACTION (`/me waves`)
//! becomes the text `/me waves`, which natter clients understand.

use irc_proto::Message;
use std::borrow::Cow;

/// Longest IRC line without tags, CRLF included (RFC 1459).
pub const MAX_LINE: usize = 512;

/// Longest tag section of a line, `@` and the space after it included (IRCv3).
pub const MAX_TAGS: usize = 8191;

/// Longest frame an IRC connection's framer accepts: tags plus a line.
pub const MAX_FRAME: usize = MAX_TAGS + MAX_LINE;

/// Why an IRC line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrcError {
    /// Not UTF-8.
    Utf8,
    /// Longer than IRC allows (answered with 417 ERR_INPUTTOOLONG).
    TooLong,
    /// Not an IRC message; the string is the command word, if one could be found.
    Malformed(Option<String>),
}

/// Parses one line (without CRLF). `Ok(None)` is a blank line, which IRC ignores.
pub fn parse(line: &[u8]) -> Result<Option<Message>, IrcError> {
    let raw = std::str::from_utf8(line).map_err(|_| IrcError::Utf8)?;
    let line = raw.trim_start_matches(' ');
    if line.trim().is_empty() {
        return Ok(None);
    }
    // The limits are on the line as sent: leading spaces count, with the tags if any.
    let (tags, rest) = match line.strip_prefix('@') {
        Some(t) => match t.find(' ') {
            Some(i) => (raw.len() - t.len() + i + 1, &t[i + 1..]),
            None => return Err(IrcError::Malformed(None)),
        },
        None => (0, raw),
    };
    if tags > MAX_TAGS || rest.len() + 2 > MAX_LINE {
        return Err(IrcError::TooLong);
    }
    // irc-proto accepts a NUL or a lone CR inside a parameter or a tag; IRC forbids both.
    if line.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(IrcError::Malformed(command_word(rest)));
    }
    match line.parse::<Message>() {
        // irc-proto reads a source prefix (or tags) with no command after it as a message
        // whose command is empty; IRC has no such message.
        Ok(m) if matches!(&m.command, irc_proto::Command::Raw(c, _) if c.is_empty()) => {
            Err(IrcError::Malformed(None))
        }
        Ok(m) => Ok(Some(m)),
        Err(_) => Err(IrcError::Malformed(command_word(rest))),
    }
}

/// The command word of a line, skipping tags and a source prefix, upper-cased.
pub fn command_word(line: &str) -> Option<String> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let mut w = words.next()?;
    if w.starts_with('@') {
        w = words.next()?;
    }
    if w.starts_with(':') {
        w = words.next()?;
    }
    Some(w.to_ascii_uppercase())
}

/// Makes IRC text acceptable as natter text: formatting codes removed, a CTCP ACTION turned
/// into `/me ...`, other control characters removed. `None` for other CTCP requests (VERSION,
/// PING...), which natter does not relay.
pub fn to_natter_text(text: &str) -> Option<Cow<'_, str>> {
    let text = match text.strip_prefix('\u{1}') {
        Some(ctcp) => {
            let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp);
            let action = ctcp
                .strip_prefix("ACTION ")
                .or_else(|| ctcp.strip_prefix("action "))?;
            return Some(Cow::Owned(format!("/me {}", strip(action))));
        }
        None => text,
    };
    if !text.chars().any(crate::text::is_forbidden) {
        return Some(Cow::Borrowed(text));
    }
    Some(Cow::Owned(strip(text)))
}

/// Removes mIRC formatting (bold, colours with their digits, italics...) and control
/// characters.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{3}' => {
                // ^C[fg[,bg]] with one or two digits each.
                for _ in 0..2 {
                    if chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                }
                let mut ahead = chars.clone();
                if ahead.next() == Some(',') && ahead.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                    for _ in 0..2 {
                        if chars.peek().is_some_and(char::is_ascii_digit) {
                            chars.next();
                        }
                    }
                }
            }
            '\u{4}' => {
                // ^D followed by a six-digit hex colour, optionally ,bg.
                for _ in 0..6 {
                    if chars.peek().is_some_and(char::is_ascii_hexdigit) {
                        chars.next();
                    }
                }
            }
            c if crate::text::is_forbidden(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether an IRC target names a channel.
pub fn is_channel(target: &str) -> bool {
    target.starts_with('#') || target.starts_with('&')
}

/// The parameters of a line as sent, after its tags, source and command word; the trailing
/// one (after ` :`) whole. For commands whose parameters `irc-proto` reads into a shape
/// that loses some (`WHO`'s second, which WHOX uses).
pub fn params(line: &str) -> Vec<&str> {
    let mut rest = line.trim_start_matches(' ');
    for prefix in ['@', ':'] {
        if rest.starts_with(prefix) {
            rest = rest
                .split_once(' ')
                .map_or("", |(_, r)| r)
                .trim_start_matches(' ');
        }
    }
    // The command word.
    rest = rest.split_once(' ').map_or("", |(_, r)| r);
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            out.push(trailing);
            break;
        }
        let (word, more) = rest.split_once(' ').unwrap_or((rest, ""));
        out.push(word);
        rest = more;
    }
    out
}

/// Whether `text` matches the IRC mask `mask` (`*` any run of characters, `?` any one),
/// ignoring ASCII case, as `WHO` masks are compared.
pub fn mask_matches(mask: &str, text: &str) -> bool {
    let (m, t) = (mask.as_bytes(), text.as_bytes());
    // Iterative, with one backtrack point: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        match m.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&t[j]) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    m[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use irc_proto::Command;

    #[test]
    fn parses_with_and_without_tags_and_prefix() {
        let m = parse(b"@label=1 :me PRIVMSG #a :hi there")
            .unwrap()
            .unwrap();
        assert_eq!(m.command, Command::PRIVMSG("#a".into(), "hi there".into()));
        let m = parse(b"nick bob").unwrap().unwrap();
        assert_eq!(m.command, Command::NICK("bob".into()));
        assert_eq!(parse(b"   ").unwrap(), None);
    }

    #[test]
    fn enforces_lengths() {
        let long = format!("PRIVMSG #a :{}", "x".repeat(510));
        assert_eq!(parse(long.as_bytes()), Err(IrcError::TooLong));
        let ok = format!("PRIVMSG #a :{}", "x".repeat(510 - 12));
        assert!(parse(ok.as_bytes()).unwrap().is_some());
        let tags = format!("@a={} PING x", "v".repeat(9000));
        assert_eq!(parse(tags.as_bytes()), Err(IrcError::TooLong));
        // The tag section, `@` and space included, may have 8191 bytes; not one more.
        let tags = format!("@a={} PING x", "v".repeat(MAX_TAGS - 4));
        assert!(parse(tags.as_bytes()).unwrap().is_some());
        let tags = format!("@a={} PING x", "v".repeat(MAX_TAGS - 3));
        assert_eq!(parse(tags.as_bytes()), Err(IrcError::TooLong));
        // Leading spaces are part of the line: they count towards its 512 bytes.
        let spaced = format!("{}{ok}", " ".repeat(300));
        assert_eq!(parse(spaced.as_bytes()), Err(IrcError::TooLong));
        let spaced = format!("  {}", &ok[2..]);
        assert!(parse(spaced.as_bytes()).unwrap().is_some());
        let spaced = format!("  @a=b {}", &ok[..ok.len() - 2]);
        assert!(parse(spaced.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(b"\xff\xfe"), Err(IrcError::Utf8));
        assert_eq!(parse(b"@tagsonly"), Err(IrcError::Malformed(None)));
        assert_eq!(
            parse(b"PRIVMSG #a :nul\0byte"),
            Err(IrcError::Malformed(Some("PRIVMSG".into())))
        );
    }

    #[test]
    fn nul_cr_and_lf_are_refused_in_tags_too() {
        // Found by the irc_message fuzz target (input " @\n \x02"): only the part after
        // the tags was checked, so a tag could carry a NUL, a lone CR or a LF.
        for line in [
            &b"@a=\rb PING x"[..],
            b"@a=b\0 PING x",
            b"@\n PING x",
            b" @\n \x02",
        ] {
            assert!(
                matches!(parse(line), Err(IrcError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse(b"@a=\r PRIVMSG #a :x"),
            Err(IrcError::Malformed(Some("PRIVMSG".into())))
        );
    }

    #[test]
    fn a_prefix_without_a_command_is_malformed() {
        // Found by the irc_message fuzz target: these parsed as a message with an empty
        // command, which a registered client was answered with an empty 421 parameter.
        for line in [":`", " :nick", ":nick ", ":nick  ", "@a=b :nick", "@a :b "] {
            assert_eq!(
                parse(line.as_bytes()),
                Err(IrcError::Malformed(None)),
                "{line:?}"
            );
        }
        assert!(parse(b": PING x").unwrap().is_some());
    }

    #[test]
    fn command_words() {
        assert_eq!(command_word("@a=b :src ison x").as_deref(), Some("ISON"));
        assert_eq!(command_word("PING").as_deref(), Some("PING"));
        assert_eq!(command_word(":only"), None);
    }

    #[test]
    fn text_conversion() {
        assert_eq!(to_natter_text("plain").unwrap(), "plain");
        assert_eq!(
            to_natter_text("\u{2}bold\u{2} \u{3}4,12red\u{3} x").unwrap(),
            "bold red x"
        );
        assert_eq!(to_natter_text("\u{3}3green").unwrap(), "green");
        assert_eq!(
            to_natter_text("\u{1}ACTION waves\u{1}").unwrap(),
            "/me waves"
        );
        assert_eq!(to_natter_text("\u{1}VERSION\u{1}"), None);
        assert_eq!(to_natter_text("bell\u{7}").unwrap(), "bell");
    }
    #[test]
    fn params_as_sent() {
        assert_eq!(
            params("WHO #chan %tcuhnfdar,42"),
            ["#chan", "%tcuhnfdar,42"]
        );
        assert_eq!(params("@a=b :src WHO  x :last one"), ["x", "last one"]);
        assert_eq!(params("WHO"), Vec::<&str>::new());
        assert_eq!(params("SETNAME :"), [""]);
    }

    #[test]
    fn masks() {
        assert!(mask_matches("*", ""));
        assert!(mask_matches("a*", "Alice"));
        assert!(mask_matches("?lic?", "alice"));
        assert!(mask_matches("*c*e", "alice"));
        assert!(!mask_matches("a?", "alice"));
        assert!(!mask_matches("*x*", "alice"));
        assert!(mask_matches("a**e", "ae"));
        assert!(!mask_matches(&"*a".repeat(30), &"a".repeat(29)));
    }
}
