//! IRCv3 `draft/chathistory` requests, read into what the log is asked: which target, which
//! messages (by id or time), how many.
//!
//! A message reference is `msgid=<id>` (natter's log id, which IRC clients see as the
//! `msgid` tag) or `timestamp=<RFC 3339>`; both become bounds on ids, since ids sort by
//! time (an id's top bits are its millisecond). Bounds are exclusive, as the specification
//! has them: `BEFORE msgid=x` never returns `x`.

use crate::event::{Tags, Who, irc_lines, irc_message, irc_message_tagged, time_of, timestamp};
use bytes::{Bytes, BytesMut};
use natter_store::{MessageId, Range};

/// A `CHATHISTORY` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Messages of one target: `LATEST`, `BEFORE`, `AFTER`, `AROUND` or `BETWEEN`.
    Page {
        /// The channel or nick, as sent.
        target: String,
        /// The pages to read, oldest first (`AROUND` reads two).
        ranges: Vec<(Range, u32)>,
    },
    /// `TARGETS`: the targets spoken in between two times, each with its latest time.
    Targets {
        /// Ids above this.
        after: i64,
        /// Ids below this.
        before: i64,
        /// How many targets at most.
        limit: u32,
    },
}

/// Why a request cannot be served, as `FAIL CHATHISTORY <code>` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `INVALID_PARAMS` or `UNKNOWN_COMMAND`.
    pub code: &'static str,
    /// The subcommand, as sent (or `*`).
    pub subcommand: String,
    /// The human-readable description.
    pub text: &'static str,
}

/// A message reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    /// A log id.
    Id(i64),
    /// A time, in milliseconds since the Unix epoch.
    Millis(i64),
}

impl Ref {
    fn parse(word: &str) -> Option<Ref> {
        if let Some(id) = word.strip_prefix("msgid=") {
            return id.parse().ok().filter(|&id| id >= 0).map(Ref::Id);
        }
        let t = word.strip_prefix("timestamp=")?;
        let at = chrono::DateTime::parse_from_rfc3339(t).ok()?;
        Some(Ref::Millis(at.timestamp_millis().max(0)))
    }

    /// The id bound for "after this": ids above it are after the reference.
    fn after(self) -> i64 {
        match self {
            Ref::Id(id) => id,
            // Every id of a later millisecond, none of this one's.
            Ref::Millis(ms) => MessageId::at(ms.saturating_add(1)).0 - 1,
        }
    }

    /// The id bound for "before this": ids below it are before the reference.
    fn before(self) -> i64 {
        match self {
            Ref::Id(id) => id,
            Ref::Millis(ms) => MessageId::at(ms).0,
        }
    }
}

/// Reads `CHATHISTORY <subcommand> ...`'s parameters; limits above `max` are cut to it.
pub fn parse(args: &[String], max: u32) -> Result<Request, Refused> {
    let sub = args
        .first()
        .map_or("*", String::as_str)
        .to_ascii_uppercase();
    let refuse = |code, text| Refused {
        code,
        subcommand: args.first().cloned().unwrap_or_else(|| "*".into()),
        text,
    };
    let invalid = |text| refuse("INVALID_PARAMS", text);
    let limit = |w: Option<&String>| -> Result<u32, Refused> {
        w.and_then(|w| w.parse::<u32>().ok())
            .filter(|&n| n > 0)
            .map(|n| n.min(max))
            .ok_or_else(|| invalid("the limit must be a number from 1"))
    };
    let reference = |w: Option<&String>| {
        w.and_then(|w| Ref::parse(w))
            .ok_or_else(|| invalid("a reference is msgid=<id> or timestamp=<RFC 3339 time>"))
    };
    if sub == "TARGETS" {
        let (a, b) = (reference(args.get(1))?, reference(args.get(2))?);
        let limit = limit(args.get(3))?;
        let (lo, hi) = if a.before() <= b.before() {
            (a, b)
        } else {
            (b, a)
        };
        return Ok(Request::Targets {
            after: lo.after(),
            before: hi.before(),
            limit,
        });
    }
    let target = args
        .get(1)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("CHATHISTORY needs a target"))?
        .clone();
    let within = |after, before, newest| Range::Within {
        after,
        before,
        newest,
    };
    let ranges = match sub.as_str() {
        "LATEST" => {
            let after = match args.get(2).map(String::as_str) {
                Some("*") => -1,
                _ => reference(args.get(2))?.after(),
            };
            vec![(within(after, i64::MAX, true), limit(args.get(3))?)]
        }
        "BEFORE" => {
            let r = reference(args.get(2))?;
            vec![(within(-1, r.before(), true), limit(args.get(3))?)]
        }
        "AFTER" => {
            let r = reference(args.get(2))?;
            vec![(within(r.after(), i64::MAX, false), limit(args.get(3))?)]
        }
        "AROUND" => {
            // Half before the reference, the rest from it on (the message itself included).
            let r = reference(args.get(2))?;
            let n = limit(args.get(3))?;
            let from = r.before().saturating_sub(1);
            vec![
                (within(-1, r.before(), true), n / 2),
                (within(from, i64::MAX, false), n - n / 2),
            ]
        }
        "BETWEEN" => {
            let (a, b) = (reference(args.get(2))?, reference(args.get(3))?);
            let n = limit(args.get(4))?;
            // From the first reference towards the second: forward if it is earlier.
            if a.before() <= b.before() {
                vec![(within(a.after(), b.before(), false), n)]
            } else {
                vec![(within(b.after(), a.before(), true), n)]
            }
        }
        _ => return Err(refuse("UNKNOWN_COMMAND", "unknown CHATHISTORY subcommand")),
    };
    Ok(Request::Page {
        target,
        ranges: ranges.into_iter().filter(|&(_, n)| n > 0).collect(),
    })
}

/// A kept message as a PRIVMSG to `to`, for a client that did not ask for it (a replay on
/// JOIN, a DM that waited): its time as a `server-time` tag if `tagged`, else before the
/// text; its `msgid` if `msgid`.
pub fn replayed(m: &natter_store::Logged, to: &str, tagged: bool, msgid: bool) -> Bytes {
    let at = time_of(m.id);
    let source = Who {
        name: &m.sender,
        ident: &m.sender,
        account: false,
        real: None,
    }
    .mask();
    if tagged {
        let tags = Tags {
            at: Some(at),
            msgid: msgid.then_some(m.id),
            ..Tags::default()
        };
        irc_lines(tags, &source, "PRIVMSG", to, &m.text, false)
    } else {
        let stamp = timestamp(at);
        let when = format!("[{} {} UTC]", &stamp[..10], &stamp[11..19]);
        // Each line of a multi-line message is a PRIVMSG, and each shows the time. An action
        // keeps its form: the time goes after `/me`.
        let text: Vec<String> = natter_proto::multiline::lines(&m.text)
            .map(|line| match line.strip_prefix("/me ") {
                Some(action) => format!("/me {when} {action}"),
                None => format!("{when} {line}"),
            })
            .collect();
        irc_lines(
            Tags::default(),
            &source,
            "PRIVMSG",
            to,
            &text.join("\n"),
            false,
        )
    }
}

/// How a client wants history written: the tags it takes, and who it is.
pub struct Style {
    /// The server's name, the source of its lines.
    pub server: String,
    /// The everyone channel's name.
    pub everyone: String,
    /// The client's nick.
    pub me: String,
    /// It takes batches.
    pub batch: bool,
    /// It takes `server-time`.
    pub time: bool,
    /// It takes `msgid` (message-tags).
    pub msgid: bool,
}

impl Style {
    /// The batch's reference: one batch is open at a time (the session waits for it).
    const REF: &'static str = "history";

    /// `BATCH +history <kind> [args]` or `BATCH -history`, if the client takes batches.
    fn batch(&self, out: &mut BytesMut, open: Option<(&str, &str)>) {
        if !self.batch {
            return;
        }
        let start = format!("+{}", Self::REF);
        let end = format!("-{}", Self::REF);
        let args: Vec<&str> = match open {
            Some((kind, "")) => vec![&start, kind],
            Some((kind, arg)) => vec![&start, kind, arg],
            None => vec![&end],
        };
        out.extend_from_slice(&irc_message(None, Some(&self.server), "BATCH", &args));
    }

    fn tags(&self, id: i64) -> Tags<'static> {
        Tags {
            at: self.time.then(|| time_of(id)),
            msgid: self.msgid.then_some(id),
            batch: self.batch.then_some(Self::REF),
            ..Tags::default()
        }
    }

    /// The messages of `target` (a channel, or the nick of the conversation's other side),
    /// as a `chathistory` batch of PRIVMSGs.
    pub fn page(&self, target: &str, rows: &[natter_store::Logged]) -> Bytes {
        let mut out = BytesMut::new();
        self.batch(&mut out, Some(("chathistory", target)));
        let dm = !target.starts_with('#');
        for m in rows {
            // In a conversation, what the other side said was sent to me, and mine to them.
            let to = if dm && !m.sender.eq_ignore_ascii_case(&self.me) {
                &self.me
            } else {
                target
            };
            let source = Who {
                name: &m.sender,
                ident: &m.sender,
                account: false,
                real: None,
            }
            .mask();
            // Inside the history batch, a multi-line message is a PRIVMSG per line, all with
            // its msgid: batches do not nest here.
            out.extend_from_slice(&irc_lines(
                self.tags(m.id),
                &source,
                "PRIVMSG",
                to,
                &m.text,
                false,
            ));
        }
        self.batch(&mut out, None);
        out.freeze()
    }

    /// `CHATHISTORY TARGETS` lines, newest first, as a `draft/chathistory-targets` batch.
    pub fn targets(&self, found: &[(String, i64)]) -> Bytes {
        let mut out = BytesMut::new();
        self.batch(&mut out, Some(("draft/chathistory-targets", "")));
        for (name, id) in found {
            let at = timestamp(time_of(*id));
            let tags = Tags {
                batch: self.batch.then_some(Self::REF),
                ..Tags::default()
            };
            out.extend_from_slice(&irc_message_tagged(
                tags,
                Some(&self.server),
                "CHATHISTORY",
                &["TARGETS", name, &format!("timestamp={at}")],
            ));
        }
        self.batch(&mut out, None);
        out.freeze()
    }

    /// `FAIL CHATHISTORY MESSAGE_ERROR`: the store could not be read.
    pub fn failed(&self, sub: &str, target: &str) -> Bytes {
        irc_message(
            None,
            Some(&self.server),
            "FAIL",
            &[
                "CHATHISTORY",
                "MESSAGE_ERROR",
                sub,
                target,
                "The history cannot be read right now",
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    fn page(line: &str) -> Vec<(Range, u32)> {
        match parse(&args(line), 100) {
            Ok(Request::Page { ranges, .. }) => ranges,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn references_become_exclusive_id_bounds() {
        let w = |after, before, newest| Range::Within {
            after,
            before,
            newest,
        };
        assert_eq!(page("LATEST #r * 500"), [(w(-1, i64::MAX, true), 100)]);
        assert_eq!(page("latest #r msgid=42 10"), [(w(42, i64::MAX, true), 10)]);
        assert_eq!(page("BEFORE #r msgid=42 10"), [(w(-1, 42, true), 10)]);
        assert_eq!(page("AFTER #r msgid=42 10"), [(w(42, i64::MAX, false), 10)]);
        assert_eq!(
            page("AROUND #r msgid=42 5"),
            [(w(-1, 42, true), 2), (w(41, i64::MAX, false), 3)]
        );
        assert_eq!(
            page("BETWEEN #r msgid=50 msgid=42 5"),
            [(w(42, 50, true), 5)]
        );
        // A time is every id of its millisecond: before it excludes them, after it too.
        let ms = 1_764_028_800_123;
        let t = "timestamp=2025-11-25T00:00:00.123Z";
        assert_eq!(
            page(&format!("BEFORE #r {t} 1")),
            [(w(-1, MessageId::at(ms).0, true), 1)]
        );
        assert_eq!(
            page(&format!("AFTER #r {t} 1")),
            [(w(MessageId::at(ms + 1).0 - 1, i64::MAX, false), 1)]
        );
        assert_eq!(
            parse(
                &args(&format!("TARGETS {t} timestamp=2025-11-24T00:00:00Z 7")),
                100
            ),
            Ok(Request::Targets {
                after: MessageId::at(1_763_942_400_001).0 - 1,
                before: MessageId::at(ms).0,
                limit: 7
            })
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_code_the_specification_names() {
        for bad in [
            "LATEST #r",
            "LATEST #r * 0",
            "LATEST #r * x",
            "BEFORE #r 42 10",
            "BEFORE #r msgid=-1 10",
            "AFTER #r timestamp=yesterday 10",
            "BETWEEN #r msgid=1 10",
            "TARGETS msgid=1",
        ] {
            let e = parse(&args(bad), 100).unwrap_err();
            assert_eq!(e.code, "INVALID_PARAMS", "{bad}");
        }
        let e = parse(&args("SOON #r * 10"), 100).unwrap_err();
        assert_eq!((e.code, e.subcommand.as_str()), ("UNKNOWN_COMMAND", "SOON"));
        assert_eq!(parse(&[], 100).unwrap_err().code, "INVALID_PARAMS");
    }
}
