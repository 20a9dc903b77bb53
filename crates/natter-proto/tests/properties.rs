//! Property tests: no input panics the parsers, and server lines survive a round trip.

use natter_proto::limits::MAX_LINE_BYTES;
use natter_proto::{
    ByeReason, Command, ErrorCode, Frame, LineFramer, ServerLine, multiline, sniff, text,
};
use proptest::prelude::*;
use std::borrow::Cow;
use std::ops::ControlFlow;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z\\[\\]\\\\`_^{|}][A-Za-z0-9\\[\\]\\\\`_^{|}-]{0,31}"
}

/// Text as a client can send it: the text rule's, and not starting with a space.
fn msg_text() -> impl Strategy<Value = String> {
    "[^ \\p{Cc}\u{2028}\u{2029}\u{202A}-\u{202E}\u{2066}-\u{2069}][^\\p{Cc}\u{2028}\u{2029}\u{202A}-\u{202E}\u{2066}-\u{2069}]{0,60}"
        .prop_filter("valid text", |s| text::validate(s).is_ok())
}

fn room() -> impl Strategy<Value = String> {
    "#[A-Za-z0-9_.-]{1,49}"
}

fn opt_text() -> impl Strategy<Value = String> {
    prop::option::of(msg_text()).prop_map(Option::unwrap_or_default)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL)
}

fn bye_reason() -> impl Strategy<Value = ByeReason> {
    prop::sample::select(ByeReason::ALL)
}

fn server_line() -> impl Strategy<Value = ServerLine<'static>> {
    let o = |s: String| Cow::Owned(s);
    prop_oneof![
        msg_text().prop_map(move |t| ServerLine::Hello { text: o(t) }),
        (
            name().prop_map(|n| n.to_uppercase()),
            prop::option::of(msg_text())
        )
            .prop_map(move |(v, d)| ServerLine::Ok {
                verb: o(v),
                detail: o(d.unwrap_or_default())
            }),
        (error_code(), msg_text())
            .prop_map(move |(code, t)| ServerLine::Error { code, text: o(t) }),
        (bye_reason(), msg_text())
            .prop_map(move |(reason, t)| ServerLine::Bye { reason, text: o(t) }),
        msg_text().prop_map(move |t| ServerLine::Help { text: o(t) }),
        (
            prop_oneof![Just("*".to_owned()), room(), name()],
            0..i64::MAX,
            name(),
            msg_text()
        )
            .prop_map(move |(target, id, f, t)| ServerLine::Logged {
                target: o(target),
                id,
                at: o("2026-12-03T17:45:10.123Z".into()),
                from: o(f),
                text: o(t)
            }),
        name().prop_map(move |n| ServerLine::User { name: o(n) }),
        name().prop_map(move |n| ServerLine::Online { name: o(n) }),
        (name(), opt_text()).prop_map(move |(n, r)| ServerLine::Offline {
            name: o(n),
            reason: o(r)
        }),
        (name(), name()).prop_map(move |(a, b)| ServerLine::Renamed {
            old: o(a),
            new: o(b)
        }),
        (name(), msg_text()).prop_map(move |(f, t)| ServerLine::Message {
            from: o(f),
            text: o(t)
        }),
        (name(), msg_text()).prop_map(move |(f, t)| ServerLine::Dm {
            from: o(f),
            text: o(t)
        }),
        (room(), name()).prop_map(move |(r, n)| ServerLine::Joined {
            room: o(r),
            name: o(n)
        }),
        (room(), name()).prop_map(move |(r, n)| ServerLine::Operator {
            room: o(r),
            name: o(n)
        }),
        (room(), name(), opt_text()).prop_map(move |(r, n, t)| ServerLine::Parted {
            room: o(r),
            name: o(n),
            reason: o(t)
        }),
        (room(), name(), name(), opt_text()).prop_map(move |(r, n, b, t)| ServerLine::Kicked {
            room: o(r),
            name: o(n),
            by: o(b),
            reason: o(t)
        }),
        (room(), name(), msg_text()).prop_map(move |(r, f, t)| ServerLine::Say {
            room: o(r),
            from: o(f),
            text: o(t)
        }),
        (room(), name(), opt_text()).prop_map(move |(r, b, t)| ServerLine::Topic {
            room: o(r),
            by: o(b),
            text: o(t)
        }),
        (room(), name(), any::<bool>(), any::<bool>()).prop_map(move |(r, n, op, voice)| {
            ServerLine::Member {
                room: o(r),
                name: o(n),
                op,
                voice: voice && !op,
            }
        }),
        (room(), name(), name()).prop_map(move |(r, b, v)| ServerLine::Mode {
            room: o(r),
            by: o(b),
            change: o(format!("+v {v}"))
        }),
        (room(), name()).prop_map(move |(r, b)| ServerLine::Invited {
            room: o(r),
            by: o(b)
        }),
        (room(), any::<usize>(), opt_text()).prop_map(move |(r, members, t)| ServerLine::Room {
            room: o(r),
            members,
            topic: o(t)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = Command::parse(&s);
        let _ = ServerLine::parse(&s);
        let _ = sniff::sniff(&bytes);
        let _ = natter_proto::irc::parse(&bytes);
        let _ = natter_proto::irc::to_natter_text(&s);
    }

    #[test]
    fn parsing_command_like_lines_never_panics(
        verb in "(?i)(register|help|close|list|message|dm|x)",
        rest in "[ a-z\t\u{1b}é]{0,20}",
    ) {
        let line = format!("{verb} {rest}");
        if let Err(e) = Command::parse(&line) {
            prop_assert!(!e.text.chars().any(text::is_forbidden));
        }
    }

    #[test]
    fn server_lines_round_trip(line in server_line()) {
        let bytes = line.to_bytes();
        prop_assert_eq!(bytes.last(), Some(&b'\n'));
        let s = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
        prop_assert!(!s.contains('\n'));
        prop_assert_eq!(ServerLine::parse(s).unwrap(), line);
    }

    #[test]
    fn message_text_survives_command_then_delivery(from in name(), t in msg_text()) {
        let line = format!("MESSAGE {t}");
        let Some(Command::Message(m)) = Command::parse(&line).unwrap() else {
            panic!("not a MESSAGE");
        };
        prop_assert_eq!(m.text, t.as_str());
        let out = ServerLine::Message { from: Cow::Borrowed(&from), text: Cow::Borrowed(m.text) }.to_bytes();
        let out = std::str::from_utf8(&out).unwrap().trim_end_matches('\n');
        prop_assert_eq!(out, format!("MESSAGE {from} {t}"));
    }

    #[test]
    fn framing_is_chunking_independent_and_bounded(
        input in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..2000),
        cuts in prop::collection::vec(0usize..2000, 0..10),
        max in 1usize..64,
    ) {
        let collect = |chunks: Vec<&[u8]>| {
            let mut f = LineFramer::new(max);
            let mut out: Vec<Option<Vec<u8>>> = Vec::new();
            for c in chunks {
                let _ = f.feed(c, |fr| {
                    out.push(match fr { Frame::Line(l) => Some(l.to_vec()), Frame::TooLong => None });
                    ControlFlow::Continue(())
                });
                assert!(f.buffered() <= max + 1);
            }
            out
        };
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for p in points { chunks.push(&input[at..p]); at = p; }
        chunks.push(&input[at..]);
        let whole = collect(vec![&input[..]]);
        prop_assert_eq!(&collect(chunks), &whole);
        for l in whole.iter().flatten() {
            prop_assert!(l.len() <= max);
            prop_assert!(!l.contains(&b'\n'));
        }
    }
}

proptest! {
    /// Escaping then unescaping gives back any text, backslashes and line breaks included,
    /// and the escaped form is one line.
    #[test]
    fn multiline_escapes_round_trip(t in "(\\\\|\n|\\\\n|[a-z é]){0,40}") {
        let wire = multiline::escape(&t);
        prop_assert!(!wire.contains('\n'));
        prop_assert_eq!(multiline::unescape(&wire), t.as_str());
    }

    /// A normalized text is kept as it is by a second pass, and its readable lines are its
    /// lines that are not empty, each obeying the text rule.
    #[test]
    fn multiline_normalizing_is_stable(
        lines in prop::collection::vec(prop_oneof![msg_text(), Just(String::new()), Just(" ".to_owned())], 0..8),
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    ) {
        let t = lines.join(ending);
        if let Ok(n) = multiline::normalize(&t) {
            prop_assert_eq!(multiline::normalize(&n).unwrap(), n.as_ref());
            prop_assert!(!n.starts_with('\n') && !n.ends_with('\n') && !n.contains("\n\n\n"));
            for l in multiline::lines(&n) {
                prop_assert_eq!(text::validate(l), Ok(()));
            }
        }
    }
}

#[test]
fn line_limit_is_at_least_four_kib() {
    const { assert!(MAX_LINE_BYTES >= 4096) };
}
