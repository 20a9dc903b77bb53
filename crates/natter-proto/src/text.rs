//! Message text: delivered exactly as typed, so it must be safe to deliver, and look like
//! what it is: no control characters, not blank (invisible characters count as blank), and
//! no tower of accents over one letter.

use std::fmt;

/// Why a text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// The text is empty or only white space.
    Empty,
    /// The text holds a control character (other than tab), which could forge lines or drive
    /// a terminal.
    Control,
    /// A character carries more than [`MAX_MARKS`] combining marks, which draw over the
    /// lines around it.
    Marks,
}

/// Most combining marks one character may carry: enough for any script's stacked vowels and
/// tones (Vietnamese needs two, Tibetan stacks a few), not for a column drawn over the
/// lines above.
pub const MAX_MARKS: usize = 8;

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the message text is empty",
            Self::Control => "the message text contains control characters",
            Self::Marks => "the message text stacks too many accents on one character",
        })
    }
}

/// Whether `c` may not appear in text: C0 controls except tab, DEL, the C1 controls, the
/// Unicode line and paragraph separators (which some clients treat as line breaks), and the
/// bidirectional embedding, override and isolate controls (which can make a line display as
/// something other than what it says).
/// The implicit directional marks (LRM, RLM, ALM) are forbidden too: they reorder what is
/// around them as the embeddings do.
pub fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
        )
}

/// Whether `c` shows as nothing: white space, and the characters that are invisible or
/// blank although they are not spaces (zero-width spaces and joiners, the word joiner and
/// invisible operators, the byte-order mark, soft hyphen, Hangul fillers, the blank Braille
/// pattern, variation selectors, tag characters, the deprecated format characters).
pub fn is_blank(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D159}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Whether `c` is a tag character, which only spells out a subdivision flag (after U+1F3F4).
fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0000}'..='\u{E007F}')
}

/// Checks a message text: free of control characters, tags only in a flag, not blank (nothing
/// but white space or invisible characters), and at most [`MAX_MARKS`] combining marks on
/// any one character.
pub fn validate(text: &str) -> Result<(), TextError> {
    let mut marks = 0;
    // The character tags would follow: a flag's black flag, or a tag before it.
    let mut flag = false;
    let mut blank = true;
    for c in text.chars() {
        if is_forbidden(c) {
            return Err(TextError::Control);
        }
        if is_tag(c) {
            if !flag {
                return Err(TextError::Control);
            }
            continue;
        }
        flag = c == '\u{1F3F4}';
        if unicode_normalization::char::is_combining_mark(c) {
            marks += 1;
            if marks > MAX_MARKS {
                return Err(TextError::Marks);
            }
        } else {
            marks = 0;
        }
        if !is_blank(c) && !unicode_normalization::char::is_combining_mark(c) {
            blank = false;
        }
    }
    if blank {
        return Err(TextError::Empty);
    }
    Ok(())
}

/// The longest start of `text` of at most `max` bytes that does not cut a character: where
/// a text is cut to a byte limit (IRC's lines, its topic and real-name lengths).
pub fn prefix_within(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_within_a_limit_never_cuts_a_character() {
        assert_eq!(super::prefix_within("héllo", 2), "h");
        assert_eq!(super::prefix_within("héllo", 3), "hé");
        assert_eq!(super::prefix_within("héllo", 99), "héllo");
        assert_eq!(super::prefix_within("€", 2), "");
    }

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

    #[test]
    fn invisible_text_is_blank_and_accents_do_not_tower() {
        for blank in [
            "\u{200B}",
            "\u{2800}\u{2800}",
            "\u{3164}",
            " \u{FEFF} ",
            "\u{00AD}",
        ] {
            assert_eq!(validate(blank), Err(TextError::Empty), "{blank:?}");
        }
        // A mark alone is nothing to read either.
        assert_eq!(validate("\u{0301}"), Err(TextError::Empty));
        for bidi in ["a\u{200E}b", "a\u{200F}", "\u{061C}x"] {
            assert_eq!(validate(bidi), Err(TextError::Control), "{bidi:?}");
        }
        // Tags only spell a flag (Scotland's), nowhere else.
        let scotland = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        assert_eq!(validate(scotland), Ok(()));
        assert_eq!(validate("hi\u{E0067}\u{E007F}"), Err(TextError::Control));
        let zalgo = format!("e{}", "\u{0301}".repeat(300));
        assert_eq!(validate(&zalgo), Err(TextError::Marks));
        assert_eq!(validate("Việt Nam ệ"), Ok(()));
        assert_eq!(
            validate(&format!("e{}", "\u{0301}".repeat(MAX_MARKS))),
            Ok(())
        );
        // Invisible characters inside words are fine: the words show.
        assert_eq!(validate("zero\u{200B}width"), Ok(()));
    }
}
