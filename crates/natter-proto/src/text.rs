//! Message text: delivered exactly as typed, so it must be safe to deliver.

use std::fmt;

/// Why a text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// The text is empty or only white space.
    Empty,
    /// The text holds a control character (other than tab), which could forge lines or drive
    /// a terminal.
    Control,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the message text is empty",
            Self::Control => "the message text contains control characters",
        })
    }
}

/// Whether `c` may not appear in text: C0 controls except tab, DEL, the C1 controls, the
/// Unicode line and paragraph separators (which some clients treat as line breaks), and the
/// bidirectional embedding, override and isolate controls (which can make a line display as
/// something other than what it says).
pub fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a message text: not blank, and free of control characters.
pub fn validate(text: &str) -> Result<(), TextError> {
    if text.chars().any(is_forbidden) {
        return Err(TextError::Control);
    }
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(validate("hello  world "), Ok(()));
        assert_eq!(validate("tab\tok"), Ok(()));
        assert_eq!(validate("  "), Err(TextError::Empty));
        assert_eq!(validate(""), Err(TextError::Empty));
        assert_eq!(validate("a\rb"), Err(TextError::Control));
        assert_eq!(validate("\u{1b}[31mred"), Err(TextError::Control));
        assert_eq!(validate("nul\0"), Err(TextError::Control));
        assert_eq!(validate("c1\u{85}"), Err(TextError::Control));
        assert_eq!(validate("émoji 🎉"), Ok(()));
        assert_eq!(validate("evil\u{202E}txt.exe"), Err(TextError::Control));
        assert_eq!(validate("isolate\u{2067}"), Err(TextError::Control));
        assert_eq!(validate("family 👨\u{200D}👩"), Ok(()));
    }
}
