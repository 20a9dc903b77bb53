//! Multi-line message text: the escapes a `MULTILINE ON` connection uses to put a message of
//! several lines on one protocol line, and the rule a multi-line text obeys.
//!
//! On the wire, `\n` is a line break and `\\` one backslash; a backslash before anything else
//! (or at the end) stands for itself, so that a single-line text with a stray backslash still
//! means what it says. In memory and in the log, a multi-line text holds real line breaks
//! (`\n`), and nothing else that the text rule forbids.

use crate::limits::MAX_MESSAGE_LINES;
use crate::text::{self, TextError};
use std::borrow::Cow;
use std::fmt;

/// Why a multi-line text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinesError {
    /// A line breaks the text rule, or the whole text is blank.
    Text(TextError),
    /// More than [`MAX_MESSAGE_LINES`] lines.
    TooMany,
}

impl fmt::Display for LinesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(e) => e.fmt(f),
            Self::TooMany => write!(f, "a message has at most {MAX_MESSAGE_LINES} lines"),
        }
    }
}

/// Writes `text` for a `MULTILINE ON` reader: every backslash doubled, every line break `\n`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\n']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Reads a text a `MULTILINE ON` client sent: `\n` is a line break, `\\` a backslash, and any
/// other backslash is kept as it is.
pub fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            Some('\\') => {
                chars.next();
                out.push('\\');
            }
            // Lenient: a backslash that escapes nothing is text.
            _ => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Checks a decoded text and puts it in the form the server keeps: CR LF and CR become LF,
/// blank lines at the start and end are dropped, a run of blank lines inside becomes one empty
/// line, and every other line obeys the text rule. At most [`MAX_MESSAGE_LINES`] lines remain.
/// A text without line breaks is checked by the text rule alone and comes back as it is.
pub fn normalize(text: &str) -> Result<Cow<'_, str>, LinesError> {
    if !text.contains(['\n', '\r']) {
        return text::validate(text)
            .map(|()| Cow::Borrowed(text))
            .map_err(LinesError::Text);
    }
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    // A blank line seen since the last line kept, written only if another line follows.
    let mut gap = false;
    let mut rest = text;
    while !rest.is_empty() {
        let (line, after) = match rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, ""),
        };
        rest = after;
        match text::validate(line) {
            Ok(()) => {
                let lines = count + 1 + usize::from(gap && count > 0);
                if lines > MAX_MESSAGE_LINES {
                    return Err(LinesError::TooMany);
                }
                if count > 0 {
                    out.push('\n');
                    if gap {
                        out.push('\n');
                    }
                }
                out.push_str(line);
                count = lines;
                gap = false;
            }
            Err(TextError::Empty) => gap = true,
            Err(e) => return Err(LinesError::Text(e)),
        }
    }
    if count == 0 {
        return Err(LinesError::Text(TextError::Empty));
    }
    Ok(Cow::Owned(out))
}

/// The lines of a kept text that have something to read, in order: what a reader without
/// `MULTILINE ON` is sent, one event line each. A single-line text is one.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|l| !l.is_empty())
}

/// Whether a kept text has more than one line.
pub fn is_multiline(text: &str) -> bool {
    text.contains('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape("plain"), "plain");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(unescape("a\\nb\\\\c"), "a\nb\\c");
        // Lenient: a backslash before anything else, or at the end, is itself.
        assert_eq!(unescape("C:\\dir\\x"), "C:\\dir\\x");
        assert_eq!(unescape("end\\"), "end\\");
        assert_eq!(unescape("\\\\n"), "\\n");
        assert_eq!(unescape("\\\\\\n"), "\\\n");
        assert_eq!(unescape("é\\é"), "é\\é");
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize("one").unwrap(), "one");
        assert_eq!(normalize("a\nb").unwrap(), "a\nb");
        assert_eq!(normalize("a\r\nb\rc").unwrap(), "a\nb\nc");
        assert_eq!(normalize("\n \na\n\n\n  \nb\n\n").unwrap(), "a\n\nb");
        assert_eq!(normalize("\na\n").unwrap(), "a");
        assert_eq!(normalize("  x\n    y").unwrap(), "  x\n    y");
        assert_eq!(
            normalize("\n \n\u{200B}"),
            Err(LinesError::Text(TextError::Empty))
        );
        assert_eq!(
            normalize("a\nb\u{1b}[31m"),
            Err(LinesError::Text(TextError::Control))
        );
        assert_eq!(
            normalize("a\nevil\u{202E}"),
            Err(LinesError::Text(TextError::Control))
        );
        let most = vec!["x"; MAX_MESSAGE_LINES].join("\n");
        assert_eq!(normalize(&most).unwrap(), most);
        let over = vec!["x"; MAX_MESSAGE_LINES + 1].join("\n");
        assert_eq!(normalize(&over), Err(LinesError::TooMany));
        // Blank lines kept inside count; those at the ends do not.
        let spaced = vec!["x"; MAX_MESSAGE_LINES / 2 + 1].join("\n\n");
        assert_eq!(normalize(&spaced), Err(LinesError::TooMany));
        let padded = format!("\n\n\n{most}\n\n\n");
        assert_eq!(normalize(&padded).unwrap(), most);
    }

    #[test]
    fn readable_lines() {
        assert_eq!(lines("a\n\nb").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lines("one").collect::<Vec<_>>(), ["one"]);
        assert!(is_multiline("a\nb") && !is_multiline("a\\nb"));
    }
}
