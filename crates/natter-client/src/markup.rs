//! The little markup a message's text may carry: `code` in single backticks, and blocks of
//! code between lines of three backticks, as chat apps and Markdown write them. Pure: the
//! view draws the pieces, code monospaced; only the backticks around code are left out.

/// One piece of a message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Ordinary text, line breaks included.
    Prose(String),
    /// Code inside a line: `like this`.
    Code(String),
    /// A block of code: the lines between a ``` line and the next (or the end of the text).
    Block(String),
}

/// What follows the three backticks of a line that opens or closes a block.
fn fence(line: &str) -> Option<&str> {
    line.trim_start().strip_prefix("```")
}

/// Splits a text into its pieces, in order.
pub fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        let Some(after) = fence(line) else {
            prose.push(line);
            continue;
        };
        // ```code``` on one line is inline code, as in most chat apps.
        let after_trimmed = after.trim_end();
        if after_trimmed.len() > 3 && after_trimmed.ends_with("```") {
            prose.push(line);
            continue;
        }
        if !prose.is_empty() {
            inline(&prose.join("\n"), &mut out);
            prose.clear();
        }
        // A fence left open runs to the end, as in Markdown. What follows the opening ```
        // names a language: a label, not code.
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !fence(l).is_some_and(|rest| rest.trim().is_empty()))
            .collect();
        out.push(Piece::Block(body.join("\n")));
    }
    if !prose.is_empty() {
        inline(&prose.join("\n"), &mut out);
    }
    out
}

/// Splits prose into text and code: `code` (or ```code```) closed on the same line.
fn inline(text: &str, out: &mut Vec<Piece>) {
    let mut plain = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let ticks = if rest[open..].starts_with("```") {
            3
        } else {
            1
        };
        let marker = &rest[open..open + ticks];
        let inner = &rest[open + ticks..];
        let close = inner
            .find(marker)
            .filter(|&c| c > 0 && !inner[..c].contains(['\n', '`']));
        match close {
            Some(c) => {
                plain.push_str(&rest[..open]);
                if !plain.is_empty() {
                    out.push(Piece::Prose(std::mem::take(&mut plain)));
                }
                out.push(Piece::Code(inner[..c].to_owned()));
                rest = &inner[c + ticks..];
            }
            None => {
                // A backtick that closes nothing is text.
                plain.push_str(&rest[..open + 1]);
                rest = &rest[open + 1..];
            }
        }
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        out.push(Piece::Prose(plain));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prose(s: &str) -> Piece {
        Piece::Prose(s.into())
    }

    fn code(s: &str) -> Piece {
        Piece::Code(s.into())
    }

    #[test]
    fn plain_text_is_one_piece_with_its_lines() {
        assert_eq!(pieces("one\ntwo\n\nfour"), [prose("one\ntwo\n\nfour")]);
        assert_eq!(pieces("no `code here"), [prose("no `code here")]);
        assert_eq!(pieces("empty `` ticks"), [prose("empty `` ticks")]);
    }

    #[test]
    fn backticks_make_inline_code() {
        assert_eq!(
            pieces("run `cargo test` then ```ls``` now"),
            [
                prose("run "),
                code("cargo test"),
                prose(" then "),
                code("ls"),
                prose(" now")
            ]
        );
        // Not across a line break.
        assert_eq!(pieces("a `b\nc` d"), [prose("a `b\nc` d")]);
        assert_eq!(pieces("```x```"), [code("x")]);
    }

    #[test]
    fn fences_make_blocks() {
        let text = "look:\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\ndone";
        assert_eq!(
            pieces(text),
            [
                prose("look:"),
                Piece::Block("fn main() {\n    println!(\"hi\");\n}".into()),
                prose("done")
            ]
        );
        // Left open: to the end.
        assert_eq!(pieces("```\na `b`\nc"), [Piece::Block("a `b`\nc".into())]);
    }
}
