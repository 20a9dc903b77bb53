//! An IRC client's session: registration, capabilities, channels as rooms, and the numerics
//! IRC clients expect, all routed through the same hub as native clients.
//!
//! IRC users share natter's namespace and rooms: a nick is a natter name, a channel is a room,
//! the everyone channel is Everyone, and PRIVMSG to a nick is a DM. Messages are parsed with
//! the `irc-proto` crate (through [`natter_proto::irc`], which bounds lines first) and
//! answered in IRC's words. The numerics follow RFC 2812 and the Modern IRC client protocol
//! documentation.

use crate::account::{AccountWait, Done};
use crate::chathistory::{self, Request};
use crate::claim::{PendingName, Wait};
use crate::client_id::ClientId;
use crate::config::{IrcConfig, Policy};
use crate::event::{Flavor, irc_message};
use crate::handler::{End, Flow, Handler};
use crate::history::{Keeping, Later};
use crate::hub::watch::{Monitored, WhoEntry};
use crate::hub::{Hub, MemberView, NameCheck, NamesView, Registered, RoomView, Welcome, mask};
use crate::outbox::Outbox;
use crate::watch::{MONITOR_LIMIT, Notify};
use bytes::{Bytes, BytesMut};
use irc_proto::{CapSubCommand, ChannelMode, Command, Mode, UserMode};
use natter_proto::irc::{self as proto, IrcError};
use natter_proto::mode::{Change, ModeError};
use natter_proto::{ByeReason, ErrorCode, name, room};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;
use tracing::{debug, info};

/// The capabilities natter implements, as CAP LS lists them.
const CAPS: &[&str] = &[
    "account-notify",
    "account-tag",
    "away-notify",
    "batch",
    "draft/account-registration",
    "draft/chathistory",
    "draft/multiline",
    "echo-message",
    "extended-join",
    "extended-monitor",
    "invite-notify",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "setname",
    "userhost-in-names",
];

/// Capabilities that change how the hub writes events for this client, so they cannot
/// change once it is registered (the hub renders for the flavor it registered with).
const RENDERING_CAPS: &[&str] = &[
    "account-notify",
    "account-tag",
    "draft/multiline",
    "extended-join",
    "message-tags",
    "server-time",
];

/// Commands an unregistered IRC client may send.
const BEFORE_REGISTRATION: &[&str] = &[
    "CAP",
    "NICK",
    "USER",
    "PASS",
    "PING",
    "PONG",
    "QUIT",
    "AUTHENTICATE",
    "REGISTER",
    "VERIFY",
];

/// The service IRC users log in through by PRIVMSG, as on networks with NickServ.
const NICKSERV: &str = "NickServ";

/// Commands natter understands, to tell "not enough parameters" from "unknown command".
const KNOWN: &[&str] = &[
    "CAP",
    "NICK",
    "USER",
    "PASS",
    "PING",
    "PONG",
    "QUIT",
    "JOIN",
    "PART",
    "PRIVMSG",
    "NOTICE",
    "TOPIC",
    "NAMES",
    "LIST",
    "KICK",
    "WHO",
    "WHOIS",
    "MODE",
    "INVITE",
    "AWAY",
    "ISON",
    "USERHOST",
    "MOTD",
    "LUSERS",
    "VERSION",
    "AUTHENTICATE",
    "TAGMSG",
    "CHATHISTORY",
    "TIME",
    "WHOWAS",
    "MONITOR",
    "SETNAME",
    "BATCH",
    "WALLOPS",
    "OPER",
    "KILL",
];

/// `draft/multiline`'s value: the limits of a batch a client sends, natter's own (a message
/// of at most this many lines, no longer than one native line).
const MULTILINE_VALUE: &str = "max-bytes=4096,max-lines=100";

/// Longest real name kept, in bytes (`USER` cuts a longer one; `SETNAME` refuses it).
const REALLEN: usize = 100;

/// Most entries `WHOWAS` answers with.
const WHOWAS_MAX: usize = crate::whowas::PER_NICK;

/// Capabilities a client enabled.
#[derive(Debug, Default, Clone, Copy)]
struct Caps {
    /// Echo the client's own PRIVMSG and NOTICE back to it.
    echo_message: bool,
    /// Show every prefix a member has (`@+`) in NAMES and WHO, not just the highest.
    multi_prefix: bool,
    /// Tag events with the time the server saw them.
    server_time: bool,
    /// Log in with SASL before registering.
    sasl: bool,
    /// `account=` on messages from logged-in users.
    account_tag: bool,
    /// The account and real name in JOIN.
    extended_join: bool,
    /// `ACCOUNT` when someone in a shared channel logs in or out.
    account_notify: bool,
    /// Asked for `draft/account-registration` (REGISTER works either way, as its
    /// specification says).
    account_registration: bool,
    /// Message tags: kept messages carry their `msgid`; TAGMSG is accepted.
    message_tags: bool,
    /// Batches: history comes wrapped in one.
    batch: bool,
    /// `draft/chathistory`: the client asks for history itself, so none is replayed on JOIN.
    chathistory: bool,
    /// `AWAY` when someone in a shared channel sets or clears an away message.
    away_notify: bool,
    /// `SETNAME`: real names can change, and changes in shared channels are told.
    setname: bool,
    /// NAMES lists `nick!user@host`.
    userhost_in_names: bool,
    /// `extended-monitor`: AWAY and SETNAME of monitored nicks too, shared channel or not.
    extended_monitor: bool,
    /// `draft/multiline`: messages of several lines come and go as one batch.
    multiline: bool,
    /// `labeled-response`: a command's answer carries the `label` it came with (with
    /// `batch` only, as the specification requires).
    labeled_response: bool,
    /// `invite-notify`: `INVITE` when someone is invited to a channel the client is in.
    invite_notify: bool,
    /// User mode `+w`: not a capability, but like one it asks the hub for lines (`WALLOPS`).
    wallops: bool,
}

/// PRIVMSGs to one channel read one after another (a client pasting, a bot, a bridge):
/// sent together when a line of another kind or to another target comes, or the read ends,
/// so that each member gets them as one buffer and one wake-up, as natives' MESSAGEs are
/// gathered. Only plain ones gather: no tags (so no label), no CTCP.
#[derive(Debug, Default)]
struct Gathered {
    /// The channel, as the client wrote it.
    target: String,
    /// The texts (natter texts, checked), one after the other.
    text: String,
    /// Where each text ends in `text`.
    ends: Vec<usize>,
}

/// A `draft/multiline` batch the client opened and has not ended.
#[derive(Debug)]
struct OpenBatch {
    /// Its reference.
    reference: String,
    /// Where it goes.
    target: String,
    /// Its text so far, lines joined with `\n`.
    text: String,
    /// Lines so far.
    lines: usize,
    /// NOTICE lines (or PRIVMSG); set by the first line.
    notice: Option<bool>,
    /// Refused already (told with a FAIL): the rest of it is dropped until it ends.
    refused: bool,
    /// The `label` of its `BATCH +`, which labels the answer to its `BATCH -`: the message.
    label: Option<String>,
}

impl Caps {
    /// The change notices these capabilities ask the hub for.
    fn notify(self) -> Notify {
        Notify {
            away: self.away_notify,
            setname: self.setname,
            monitored: self.extended_monitor,
            invite: self.invite_notify,
            wallops: self.wallops,
        }
    }
}

/// The IRC protocol state of one connection.
#[derive(Debug)]
pub struct IrcSession {
    /// This connection's identity in the hub.
    id: ClientId,
    /// The peer, for logs.
    peer: SocketAddr,
    /// This client's own outgoing queue.
    outbox: Arc<Outbox>,
    /// Shared routing state.
    hub: Arc<Hub>,
    /// How the server presents itself.
    cfg: Arc<IrcConfig>,
    /// The nick asked for (before registration) or held (after).
    nick: Option<Arc<str>>,
    /// USER's user name, once given; the hub's record of the user shares it.
    user: Option<Arc<str>>,
    /// USER's real name, until registration hands it to the hub.
    real: Option<Arc<str>>,
    /// Whether this connection ever monitored a nick or asked for change notices, so its
    /// end must tell the hub to forget them.
    watched: bool,
    /// Whether the client is registered with the hub.
    registered: bool,
    /// A CAP LS or REQ put registration on hold until CAP END.
    negotiating: bool,
    /// Enabled capabilities.
    caps: Caps,
    /// When the client last sent anything.
    last_seen: Instant,
    /// When a PING went out that is still unanswered.
    ping_sent: Option<Instant>,
    /// Password, timeouts.
    policy: Arc<Policy>,
    /// The password given with PASS, until registration checks it.
    pass: Option<Box<str>>,
    /// When the connection started, for the registration deadline.
    since: Instant,
    /// Set when the session must end after the current message (a refused password).
    closing: bool,
    /// A nick waiting for the cluster to grant it, or an account request (boxed: rarely
    /// there).
    pending: Option<Box<Wait>>,
    /// A SASL exchange, and the account it logged into until registration takes its name
    /// (boxed: rarely there).
    sasl: Option<Box<Sasl>>,
    /// A long answer being written page by page (boxed: rarely there).
    answer: Option<Box<Answer>>,
    /// The account request waited for is draft/account-registration's `REGISTER` (answered
    /// with `REGISTER SUCCESS` or `FAIL REGISTER`), not NickServ's.
    registering: bool,
    /// A `draft/multiline` batch being received (boxed: rarely there). Bounded by the batch
    /// limits; dropped with the connection if it never ends.
    batch: Option<Box<OpenBatch>>,
    /// PRIVMSGs to one channel read one after another, not yet sent (see [`Gathered`]).
    gathered: Option<Box<Gathered>>,
    /// A line read while the messages gathered before it were waiting for room in the
    /// store's queue: handled once they have it, before any other input.
    deferred: Option<Box<[u8]>>,
    /// The answer to a labeled command, while it is written (boxed: rarely there).
    labeled: Option<Box<Labeled>>,
    /// Labeled answers sent as batches so far, for their references.
    batches: u64,
}

/// The answer to a command that came with a `label` (IRCv3 `labeled-response`): one line
/// carries the label, several go in a batch whose start carries it, none is an `ACK`.
#[derive(Debug)]
struct Labeled {
    /// The label, as the client sent it (unescaped).
    label: String,
    /// The batch's reference, once the answer is known to be more than one line.
    batch: Option<String>,
    /// The first line, held until it is known whether it is the only one.
    first: Option<Bytes>,
    /// The answer was one batch of its own, which carried the label: nothing more to do.
    sent: bool,
}

/// Longest label taken, in bytes, as the specification bounds it; a longer one is not
/// repeated (the answer goes unlabeled).
const LABEL_LEN: usize = 64;

/// A SASL exchange and what came of it.
#[derive(Debug, Default)]
struct Sasl {
    /// The exchange so far.
    exchange: natter_proto::sasl::Exchange,
    /// Credentials are being checked.
    checking: bool,
    /// The account logged into, whose name registration takes.
    account: Option<Arc<str>>,
}

/// A long answer in progress, written a page at a time as the client takes it (see the
/// native session's `Answer`).
#[derive(Debug)]
enum Answer {
    /// `LIST`: every room after the everyone channel, with as many users as `users` admits.
    List { last: Option<String>, users: Users },
    /// `NAMES`: the members of each channel asked for, in turn (the rest of them reversed,
    /// the current one last).
    Names {
        chans: Vec<String>,
        last: Option<String>,
    },
    /// `WHO #channel`: its members.
    Who {
        chan: String,
        last: Option<String>,
        how: WhoHow,
    },
    /// `WHO <mask>`: the users whose nick (or `nick!user@host`) matches.
    WhoMask {
        mask: String,
        last: Option<String>,
        how: WhoHow,
    },
}

/// How a `WHO` is answered: which users, and as `352` or as WHOX's `354`.
#[derive(Debug, Default)]
struct WhoHow {
    /// The `o` flag: server operators only.
    opers: bool,
    /// WHOX's fields (letters in `tcuihsnfdlaor` order) and query token, if asked for.
    whox: Option<(String, String)>,
}

/// Longest `WHO` mask matched against users: a `nick!user@host` is shorter, and matching a
/// long mask of stars against every user would cost a lot for nothing (a longer mask
/// matches nobody).
const WHO_MASK_LEN: usize = 64;

/// The WHOX fields in the order `354` gives them.
const WHOX_FIELDS: &str = "tcuihsnfdlaor";

/// `LIST`'s `>n` and `<n`: channels with more, or fewer, users than that.
#[derive(Debug, Default, Clone, Copy)]
struct Users {
    /// More users than this.
    more: Option<usize>,
    /// Fewer users than this.
    less: Option<usize>,
}

impl Users {
    fn admits(self, n: usize) -> bool {
        self.more.is_none_or(|m| n > m) && self.less.is_none_or(|l| n < l)
    }
}

/// Most channels one `LIST #a,#b,...` answers about.
const LIST_NAMES: usize = 64;

/// Entries in one page of a long answer.
const PAGE: usize = 256;

/// Numeric replies by name, so the code reads like the specifications.
mod n {
    pub(super) const RPL_WELCOME: &str = "001";
    pub(super) const RPL_YOURHOST: &str = "002";
    pub(super) const RPL_CREATED: &str = "003";
    pub(super) const RPL_MYINFO: &str = "004";
    pub(super) const RPL_ISUPPORT: &str = "005";
    pub(super) const RPL_UMODEIS: &str = "221";
    pub(super) const RPL_LUSERCLIENT: &str = "251";
    pub(super) const RPL_LUSEROP: &str = "252";
    pub(super) const RPL_LUSERCHANNELS: &str = "254";
    pub(super) const RPL_LUSERME: &str = "255";
    pub(super) const RPL_LOCALUSERS: &str = "265";
    pub(super) const RPL_GLOBALUSERS: &str = "266";
    pub(super) const RPL_AWAY: &str = "301";
    pub(super) const RPL_USERHOST: &str = "302";
    pub(super) const RPL_ISON: &str = "303";
    pub(super) const RPL_UNAWAY: &str = "305";
    pub(super) const RPL_NOWAWAY: &str = "306";
    pub(super) const RPL_WHOISUSER: &str = "311";
    pub(super) const RPL_WHOISSERVER: &str = "312";
    pub(super) const RPL_ENDOFWHO: &str = "315";
    pub(super) const RPL_ENDOFWHOIS: &str = "318";
    pub(super) const RPL_WHOISACCOUNT: &str = "330";
    pub(super) const RPL_WHOISCHANNELS: &str = "319";
    pub(super) const RPL_LISTSTART: &str = "321";
    pub(super) const RPL_LIST: &str = "322";
    pub(super) const RPL_LISTEND: &str = "323";
    pub(super) const RPL_CHANNELMODEIS: &str = "324";
    pub(super) const RPL_NOTOPIC: &str = "331";
    pub(super) const RPL_TOPIC: &str = "332";
    pub(super) const RPL_TOPICWHOTIME: &str = "333";
    pub(super) const RPL_VERSION: &str = "351";
    pub(super) const RPL_WHOSPCRPL: &str = "354";
    pub(super) const RPL_WHOWASUSER: &str = "314";
    pub(super) const RPL_ENDOFWHOWAS: &str = "369";
    pub(super) const RPL_TIME: &str = "391";
    pub(super) const ERR_WASNOSUCHNICK: &str = "406";
    pub(super) const RPL_MONONLINE: &str = "730";
    pub(super) const RPL_MONOFFLINE: &str = "731";
    pub(super) const RPL_MONLIST: &str = "732";
    pub(super) const RPL_ENDOFMONLIST: &str = "733";
    pub(super) const ERR_MONLISTFULL: &str = "734";
    pub(super) const RPL_WHOREPLY: &str = "352";
    pub(super) const RPL_NAMREPLY: &str = "353";
    pub(super) const RPL_ENDOFNAMES: &str = "366";
    pub(super) const RPL_CREATIONTIME: &str = "329";
    pub(super) const RPL_INVITING: &str = "341";
    pub(super) const RPL_BANLIST: &str = "367";
    pub(super) const RPL_ENDOFBANLIST: &str = "368";
    pub(super) const RPL_MOTD: &str = "372";
    pub(super) const RPL_MOTDSTART: &str = "375";
    pub(super) const RPL_ENDOFMOTD: &str = "376";
    pub(super) const ERR_NOSUCHNICK: &str = "401";
    pub(super) const ERR_NOSUCHCHANNEL: &str = "403";
    pub(super) const ERR_CANNOTSENDTOCHAN: &str = "404";
    pub(super) const ERR_TOOMANYCHANNELS: &str = "405";
    pub(super) const ERR_INVALIDCAPCMD: &str = "410";
    pub(super) const ERR_NORECIPIENT: &str = "411";
    pub(super) const ERR_NOTEXTTOSEND: &str = "412";
    pub(super) const ERR_INPUTTOOLONG: &str = "417";
    pub(super) const ERR_UNKNOWNCOMMAND: &str = "421";
    pub(super) const ERR_NOMOTD: &str = "422";
    pub(super) const ERR_NONICKNAMEGIVEN: &str = "431";
    pub(super) const ERR_ERRONEUSNICKNAME: &str = "432";
    pub(super) const ERR_NICKNAMEINUSE: &str = "433";
    pub(super) const ERR_USERNOTINCHANNEL: &str = "441";
    pub(super) const ERR_NOTONCHANNEL: &str = "442";
    pub(super) const ERR_NOTREGISTERED: &str = "451";
    pub(super) const ERR_NEEDMOREPARAMS: &str = "461";
    pub(super) const ERR_PASSWDMISMATCH: &str = "464";
    pub(super) const ERR_ALREADYREGISTERED: &str = "462";
    pub(super) const ERR_CHANNELISFULL: &str = "471";
    pub(super) const ERR_UNKNOWNMODE: &str = "472";
    pub(super) const ERR_INVITEONLYCHAN: &str = "473";
    pub(super) const ERR_BANNEDFROMCHAN: &str = "474";
    pub(super) const ERR_BADCHANNELKEY: &str = "475";
    pub(super) const ERR_BANLISTFULL: &str = "478";
    pub(super) const ERR_USERONCHANNEL: &str = "443";
    pub(super) const ERR_INVALIDMODEPARAM: &str = "696";
    pub(super) const ERR_BADCHANMASK: &str = "476";
    pub(super) const ERR_CHANOPRIVSNEEDED: &str = "482";
    pub(super) const ERR_USERSDONTMATCH: &str = "502";
    pub(super) const RPL_YOUREOPER: &str = "381";
    pub(super) const ERR_NOPRIVILEGES: &str = "481";
    pub(super) const ERR_NOOPERHOST: &str = "491";
    pub(super) const RPL_LOGGEDIN: &str = "900";
    pub(super) const RPL_SASLSUCCESS: &str = "903";
    pub(super) const ERR_SASLFAIL: &str = "904";
    pub(super) const ERR_SASLTOOLONG: &str = "905";
    pub(super) const ERR_SASLABORTED: &str = "906";
    pub(super) const ERR_SASLALREADY: &str = "907";
    pub(super) const RPL_SASLMECHS: &str = "908";
}

/// A word from the network, shortened for echoing in a reply.
fn shown(word: &str) -> String {
    word.chars()
        .take(50)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl IrcSession {
    /// A fresh, unregistered IRC session.
    pub fn new(
        id: ClientId,
        peer: SocketAddr,
        outbox: Arc<Outbox>,
        hub: Arc<Hub>,
        cfg: Arc<IrcConfig>,
        policy: Arc<Policy>,
    ) -> Self {
        Self {
            policy,
            pass: None,
            since: Instant::now(),
            closing: false,
            id,
            peer,
            outbox,
            hub,
            cfg,
            nick: None,
            user: None,
            real: None,
            watched: false,
            registered: false,
            negotiating: false,
            caps: Caps::default(),
            last_seen: Instant::now(),
            ping_sent: None,
            pending: None,
            sasl: None,
            registering: false,
            answer: None,
            batch: None,
            gathered: None,
            deferred: None,
            labeled: None,
            batches: 0,
        }
    }

    fn me(&self) -> &str {
        self.nick
            .as_deref()
            .filter(|_| self.registered)
            .unwrap_or("*")
    }

    fn ident(&self) -> &str {
        self.user.as_deref().unwrap_or("user")
    }

    fn my_mask(&self) -> Arc<str> {
        mask(self.nick.as_deref().unwrap_or("*"), self.ident())
    }

    fn push(&self, b: Bytes) {
        // As for native answers: after the arrivals the hub is still gathering.
        self.hub.announce_arrivals();
        self.outbox.push(b);
    }

    fn server_msg(&self, cmd: &str, args: &[&str]) -> Bytes {
        irc_message(None, Some(&self.cfg.server_name), cmd, args)
    }

    /// Queues a numeric reply to this client: `:server NNN me args...`.
    fn num(&self, code: &str, args: &[&str]) {
        self.push(self.numeric(code, args));
    }

    /// A NOTICE from the server to this client.
    fn notice(&self, text: &str) -> Bytes {
        self.server_msg("NOTICE", &[self.me(), text])
    }

    fn numeric(&self, code: &str, args: &[&str]) -> Bytes {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.me());
        all.extend_from_slice(args);
        self.server_msg(code, &all)
    }

    /// Handles a parsed message; `verb` is its command word as sent.
    fn on_message(&mut self, verb: String, msg: irc_proto::Message) -> Flow {
        debug!(peer = %self.peer, user = self.nick.as_deref(), command = %verb, "irc command");
        if !self.registered && !BEFORE_REGISTRATION.contains(&verb.as_str()) {
            if KNOWN.contains(&verb.as_str()) {
                self.num(n::ERR_NOTREGISTERED, &["You have not registered"]);
            } else {
                self.num(n::ERR_UNKNOWNCOMMAND, &[&shown(&verb), "Unknown command"]);
            }
            return Flow::Continue;
        }
        if let Command::Raw(v, args) = &msg.command
            && v.eq_ignore_ascii_case("TAGMSG")
        {
            self.tagmsg(args.first().map(String::as_str), msg.tags.as_deref());
            return Flow::Continue;
        }
        if let Some(reference) = tag_value(msg.tags.as_deref(), "batch") {
            let concat = tag_value(msg.tags.as_deref(), "draft/multiline-concat").is_some();
            match &msg.command {
                Command::PRIVMSG(target, text) => {
                    self.batch_line(reference, target, text, false, concat);
                    return Flow::Continue;
                }
                Command::NOTICE(target, text) => {
                    self.batch_line(reference, target, text, true, concat);
                    return Flow::Continue;
                }
                _ => {}
            }
        }
        // Client-only tags ride with a PRIVMSG or NOTICE from a client that may send them.
        let client = match msg.command {
            Command::PRIVMSG(..) | Command::NOTICE(..) if self.caps.message_tags => {
                client_tags(msg.tags.as_deref())
            }
            _ => String::new(),
        };
        match msg.command {
            Command::CAP(_, sub, a, b) => self.cap(sub, a.or(b).as_deref()),
            Command::AUTHENTICATE(data) => self.authenticate(&data),
            Command::PASS(_) if self.registered => {
                self.num(n::ERR_ALREADYREGISTERED, &["You may not reregister"])
            }
            // Checked at registration, as RFC 2812 says; without a server password it is
            // accepted and ignored.
            Command::PASS(pass) => self.pass = Some(pass.into()),
            Command::NICK(nick) => self.nick(&nick),
            Command::USER(..) if self.registered => {
                self.num(n::ERR_ALREADYREGISTERED, &["You may not reregister"])
            }
            Command::USER(_, _, realname) if real_name(&realname).is_none() => {
                self.num(n::ERR_NEEDMOREPARAMS, &["USER", "Not enough parameters"])
            }
            Command::USER(user, _, realname) => {
                self.real = real_name(&realname)
                    .map(|r| Arc::from(natter_proto::text::prefix_within(&r, REALLEN)));
                let ident: String = user
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .take(10)
                    .collect();
                let ident = if ident.is_empty() {
                    "user".into()
                } else {
                    ident
                };
                self.user = Some(Arc::from(ident));
                self.try_register();
            }
            Command::PING(token, _) => {
                let server = self.cfg.server_name.clone();
                self.push(self.server_msg("PONG", &[&server, &token]));
            }
            Command::PONG(..) => self.ping_sent = None,
            Command::QUIT(reason) => return self.quit(reason.as_deref()),
            Command::JOIN(chans, keys, _) => self.join(&chans, keys.as_deref()),
            Command::PART(chans, reason) => self.part(&chans, reason.as_deref()),
            Command::PRIVMSG(target, text) => self.privmsg(&target, &text, false, &client),
            Command::NOTICE(target, text) => self.privmsg(&target, &text, true, &client),
            Command::TOPIC(chan, text) => self.topic(&chan, text.as_deref()),
            Command::NAMES(chans, _) => self.names(chans.as_deref()),
            Command::LIST(params, _) => self.list(params.as_deref()),
            Command::KICK(chan, nick, reason) => self.kick(&chan, &nick, reason.as_deref()),
            Command::KILL(nick, comment) => self.kill(&nick, &comment),
            Command::OPER(name, _password) => self.oper(&name),
            // on_line hands WHO over as Raw, with its parameters as sent (for WHOX).
            Command::WHO(mask, _) => self.who(&[mask.as_deref().unwrap_or("*")]),
            Command::Raw(verb, args) if verb == "WHO" => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.who(&args)
            }
            // irc-proto puts a lone count second, and a count followed by a server first.
            Command::WHOWAS(nick, count, last) => self.whowas(&nick, count.or(last).as_deref()),
            Command::TIME(_) => {
                let now = crate::event::timestamp(SystemTime::now());
                let server = self.cfg.server_name.clone();
                self.num(n::RPL_TIME, &[&server, &now]);
            }
            Command::MONITOR(sub, targets) => self.monitor(&sub, targets.as_deref()),
            Command::Raw(verb, args)
                if verb.eq_ignore_ascii_case("SETNAME") && !args.is_empty() =>
            {
                self.setname(&args[0])
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("CAP") && !args.is_empty() => {
                let sub = args.iter().find(|a| *a != "*").unwrap_or(&args[0]);
                self.num(n::ERR_INVALIDCAPCMD, &[&shown(sub), "Invalid CAP command"]);
            }
            Command::WHOIS(_, nick) => self.whois(&nick),
            Command::ChannelMODE(chan, modes) => self.channel_mode(&chan, &modes),
            Command::INVITE(nick, chan) => self.invite(&nick, &chan),
            Command::UserMODE(nick, modes) => self.user_mode(&nick, &modes),
            Command::WALLOPS(text) => self.wallops(&text),
            Command::AWAY(msg) => self.away(msg.as_deref()),
            // irc-proto 1.1 parses ISON into its USERHOST variant; the word tells them apart.
            Command::USERHOST(nicks) | Command::ISON(nicks) if verb == "ISON" => self.ison(&nicks),
            Command::ISON(nicks) | Command::USERHOST(nicks) => self.userhost(&nicks),
            Command::MOTD(_) => self.motd(),
            Command::LUSERS(..) => self.lusers(),
            Command::VERSION(_) => self.num(
                n::RPL_VERSION,
                &[
                    concat!("natter-", env!("CARGO_PKG_VERSION")),
                    &self.cfg.server_name,
                    "natter chat server",
                ],
            ),
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("NICK") && args.is_empty() => {
                self.num(n::ERR_NONICKNAMEGIVEN, &["No nickname given"])
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("PRIVMSG") && args.len() < 2 => {
                // One parameter is either a target without text or a text without target.
                match args.first() {
                    Some(a) if !a.contains(' ') && !a.is_empty() => {
                        self.num(n::ERR_NOTEXTTOSEND, &["No text to send"])
                    }
                    _ => self.num(n::ERR_NORECIPIENT, &["No recipient given (PRIVMSG)"]),
                }
            }
            Command::Raw(verb, _) if verb.eq_ignore_ascii_case("NOTICE") => {}
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("BATCH") => self.batch(&args),
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("REGISTER") => {
                self.account_register(&args)
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("CHATHISTORY") => {
                self.chathistory(&args)
            }
            Command::Raw(verb, args) if verb.eq_ignore_ascii_case("VERIFY") => {
                let account = args.first().map_or("*", |a| a.as_str());
                self.fail(
                    "VERIFY",
                    "INVALID_CODE",
                    &[&shown(account)],
                    "No verification is pending: accounts here need none",
                );
            }
            other => {
                let verb = irc_verb(&other);
                if KNOWN.contains(&verb.as_str()) {
                    self.num(n::ERR_NEEDMOREPARAMS, &[&verb, "Not enough parameters"]);
                } else {
                    self.num(n::ERR_UNKNOWNCOMMAND, &[&shown(&verb), "Unknown command"]);
                }
            }
        }
        Flow::Continue
    }

    fn cap(&mut self, sub: CapSubCommand, arg: Option<&str>) {
        let me = self.me().to_owned();
        match sub {
            CapSubCommand::LS => {
                if !self.registered {
                    self.negotiating = true;
                }
                // CAP 302 clients are told capabilities' values.
                let values = arg
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|v| v >= 302);
                let list: Vec<String> = CAPS
                    .iter()
                    .map(|&c| match c {
                        "sasl" if values => "sasl=PLAIN".to_owned(),
                        "draft/multiline" if values => format!("{c}={MULTILINE_VALUE}"),
                        c => c.to_owned(),
                    })
                    .collect();
                self.push(self.server_msg("CAP", &[&me, "LS", &list.join(" ")]));
            }
            CapSubCommand::LIST => {
                let mut on = Vec::new();
                if self.caps.echo_message {
                    on.push("echo-message");
                }
                if self.caps.multi_prefix {
                    on.push("multi-prefix");
                }
                if self.caps.server_time {
                    on.push("server-time");
                }
                if self.caps.sasl {
                    on.push("sasl");
                }
                if self.caps.account_tag {
                    on.push("account-tag");
                }
                if self.caps.extended_join {
                    on.push("extended-join");
                }
                if self.caps.account_notify {
                    on.push("account-notify");
                }
                if self.caps.account_registration {
                    on.push("draft/account-registration");
                }
                if self.caps.message_tags {
                    on.push("message-tags");
                }
                if self.caps.batch {
                    on.push("batch");
                }
                if self.caps.chathistory {
                    on.push("draft/chathistory");
                }
                if self.caps.away_notify {
                    on.push("away-notify");
                }
                if self.caps.setname {
                    on.push("setname");
                }
                if self.caps.userhost_in_names {
                    on.push("userhost-in-names");
                }
                if self.caps.extended_monitor {
                    on.push("extended-monitor");
                }
                if self.caps.multiline {
                    on.push("draft/multiline");
                }
                if self.caps.labeled_response {
                    on.push("labeled-response");
                }
                if self.caps.invite_notify {
                    on.push("invite-notify");
                }
                self.push(self.server_msg("CAP", &[&me, "LIST", &on.join(" ")]));
            }
            CapSubCommand::REQ => {
                let wanted = arg.unwrap_or("");
                let mut caps = self.caps;
                let mut ok = !self.registered || !RENDERING_CAPS.iter().any(|c| wanted.contains(c));
                for cap in wanted.split(' ').filter(|c| !c.is_empty()) {
                    let (on, name) = match cap.strip_prefix('-') {
                        Some(n) => (false, n),
                        None => (true, cap),
                    };
                    match name {
                        "echo-message" => caps.echo_message = on,
                        "multi-prefix" => caps.multi_prefix = on,
                        "server-time" => caps.server_time = on,
                        "sasl" => caps.sasl = on,
                        "account-tag" => caps.account_tag = on,
                        "extended-join" => caps.extended_join = on,
                        "account-notify" => caps.account_notify = on,
                        "draft/account-registration" => caps.account_registration = on,
                        "message-tags" => caps.message_tags = on,
                        "batch" => caps.batch = on,
                        "draft/chathistory" => caps.chathistory = on,
                        "away-notify" => caps.away_notify = on,
                        "setname" => caps.setname = on,
                        "userhost-in-names" => caps.userhost_in_names = on,
                        "extended-monitor" => caps.extended_monitor = on,
                        "draft/multiline" => caps.multiline = on,
                        "labeled-response" => caps.labeled_response = on,
                        "invite-notify" => caps.invite_notify = on,
                        _ => ok = false,
                    }
                }
                if !self.registered {
                    self.negotiating = true;
                }
                // All or nothing, as the CAP specification requires. The rendering caps
                // cannot change once registered: the hub already renders for this flavor.
                if ok {
                    if self.registered && caps.notify() != self.caps.notify() {
                        self.watched = true;
                        self.hub.set_notify(self.id, caps.notify());
                    }
                    self.caps = caps;
                    self.push(self.server_msg("CAP", &[&me, "ACK", wanted]));
                } else {
                    self.push(self.server_msg("CAP", &[&me, "NAK", wanted]));
                }
            }
            CapSubCommand::END => {
                self.negotiating = false;
                self.try_register();
            }
            other => self.num(
                n::ERR_INVALIDCAPCMD,
                &[other.to_str(), "Invalid CAP command"],
            ),
        }
    }

    fn nick(&mut self, nick: &str) {
        if nick.is_empty() {
            self.num(n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
            return;
        }
        if let Err(e) = name::validate(nick) {
            self.num(n::ERR_ERRONEUSNICKNAME, &[&shown(nick), &e.to_string()]);
            return;
        }
        if !self.registered {
            self.nick = Some(Arc::from(nick));
            self.try_register();
            return;
        }
        if self.claim(nick) {
            self.rename(nick, None);
        }
    }

    /// Starts a claim of `nick` across the cluster if one is needed; whether the caller may
    /// go on at once. A nick another local user holds is refused here.
    fn claim(&mut self, nick: &str) -> bool {
        let mine = self.registered
            && self
                .nick
                .as_deref()
                .is_some_and(|n| natter_proto::name::same(n, nick));
        if !mine && !self.logged_into(nick) && self.hub.accounts().is_reserved(nick) {
            self.nick_in_use(nick);
            let why = format!(
                "{0} belongs to an account: log in with SASL, or register with another nick \
                 and /msg {NICKSERV} IDENTIFY {0} <password>",
                shown(nick)
            );
            self.push(self.notice(&why));
            return false;
        }
        match self.hub.name_check(self.id, nick, self.logged_into(nick)) {
            NameCheck::Local => true,
            NameCheck::Taken => {
                self.nick_in_use(nick);
                false
            }
            NameCheck::Claim(key) => match self.hub.claim(&key, self.id) {
                Some(answer) => {
                    let mut p = PendingName::new(nick, key, answer);
                    p.login = self.logged_into(nick);
                    self.pending = Some(Box::new(Wait::Name(p)));
                    false
                }
                None => true,
            },
        }
    }

    fn nick_lookalike(&mut self, nick: &str) {
        self.num(
            n::ERR_ERRONEUSNICKNAME,
            &[
                &shown(nick),
                "Nickname looks too much like another in use or an account's",
            ],
        );
    }

    fn nick_in_use(&mut self, nick: &str) {
        self.num(
            n::ERR_NICKNAMEINUSE,
            &[&shown(nick), "Nickname is already in use"],
        );
        if !self.registered {
            self.nick = None;
        }
    }

    /// Renames a registered user; `claimed` is the folded nick if the cluster granted it.
    fn rename(&mut self, nick: &str, claimed: Option<String>) {
        let old_mask = self.my_mask();
        let flavor = self.flavor();
        let ident = self.user.clone();
        let login = self.logged_into(nick);
        // Joining the account's other connections leaves the rooms this nick was in: the
        // client is told so, then the NICK, then the account's rooms.
        let before: Vec<String> = if login {
            self.hub
                .user(self.me())
                .map(|u| u.rooms)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let attached = |w: &Welcome<'_>| {
            let mut out = BytesMut::new();
            for room in &before {
                let room = room.trim_start_matches('@');
                out.extend_from_slice(&irc_message(None, Some(&old_mask), "PART", &[room]));
            }
            out.extend_from_slice(&irc_message(None, Some(&old_mask), "NICK", &[w.name]));
            self.rooms_joined(&mut out, w);
            out.freeze()
        };
        let answer: Option<&dyn Fn(&Welcome<'_>) -> Bytes> = login.then_some(&attached);
        let renamed = if claimed.is_some() {
            self.hub.register_claimed(
                self.id,
                &self.outbox,
                nick,
                flavor,
                ident.clone(),
                answer,
                login,
            )
        } else {
            self.hub
                .register(self.id, &self.outbox, nick, flavor, ident, answer, login)
        };
        if renamed.is_err()
            && let Some(key) = claimed
        {
            self.hub.release(key, self.id);
        }
        match renamed {
            Ok((Registered::Renamed { old }, new)) => {
                info!(peer = %self.peer, from = %old, to = %new, "renamed");
                self.push(irc_message(None, Some(&old_mask), "NICK", &[&new]));
                self.nick = Some(new);
            }
            Ok((Registered::Attached, new)) => {
                info!(peer = %self.peer, user = %new, "joined the account's other connections");
                self.nick = Some(new);
            }
            Ok(_) => {}
            Err(ErrorCode::NameConfusable) => self.nick_lookalike(nick),
            Err(_) => self.num(
                n::ERR_NICKNAMEINUSE,
                &[&shown(nick), "Nickname is already in use"],
            ),
        }
    }

    fn flavor(&self) -> Flavor {
        Flavor::Irc {
            time: self.caps.server_time,
            account_tag: self.caps.account_tag,
            extended_join: self.caps.extended_join,
            account_notify: self.caps.account_notify,
            message_tags: self.caps.message_tags,
            // Batches of lines are for clients that take batches.
            multiline: self.caps.multiline && self.caps.batch,
        }
    }

    /// Registers once NICK and USER are in and capability negotiation is over.
    fn try_register(&mut self) {
        if self.registered || self.negotiating || self.user.is_none() {
            return;
        }
        let Some(nick) = self.nick.clone() else {
            return;
        };
        if let Some(secret) = &self.policy.password
            && !self.pass.as_deref().is_some_and(|p| secret.matches(p))
        {
            tracing::warn!(peer = %self.peer, "IRC registration with a wrong or missing password");
            self.num(n::ERR_PASSWDMISMATCH, &["Password incorrect"]);
            self.push(irc_message(
                None,
                None,
                "ERROR",
                &["Closing Link: (Bad password)"],
            ));
            self.closing = true;
            return;
        }
        self.pass = None;
        // A client logged in with SASL takes its account's name, whatever NICK said.
        let nick = match self.sasl.as_ref().and_then(|s| s.account.clone()) {
            Some(account) => account,
            None => nick,
        };
        if self.claim(&nick) {
            self.register(&nick, None);
        }
    }

    /// Whether this connection logged into the account `name` (with SASL, or NickServ in a
    /// moment ago) and may take the name.
    fn logged_into(&self, name: &str) -> bool {
        self.sasl
            .as_ref()
            .and_then(|s| s.account.as_deref())
            .is_some_and(|a| natter_proto::name::same(a, name))
    }

    fn authenticate(&mut self, data: &str) {
        use natter_proto::sasl::{Failure, MECHANISMS, Step};
        if !self.caps.sasl {
            self.num(n::ERR_SASLFAIL, &["SASL authentication failed"]);
            return;
        }
        if self.registered || self.sasl.as_ref().is_some_and(|s| s.account.is_some()) {
            self.num(
                n::ERR_SASLALREADY,
                &["You have already authenticated using SASL"],
            );
            return;
        }
        let sasl = self.sasl.get_or_insert_with(Box::default);
        match sasl.exchange.feed(data) {
            Step::Go => self.push(irc_message(None, None, "AUTHENTICATE", &["+"])),
            Step::More => {}
            Step::Credentials { account, password } => {
                sasl.checking = true;
                let accounts = self.hub.accounts().clone();
                let from = self.peer.ip();
                self.wait_for(async move {
                    accounts
                        .login(account, password, from)
                        .await
                        .map(Done::LoggedIn)
                });
            }
            Step::Fail(why) => {
                self.sasl = None;
                match why {
                    Failure::Mechanism => {
                        self.num(
                            n::RPL_SASLMECHS,
                            &[MECHANISMS, "are available SASL mechanisms"],
                        );
                        self.num(n::ERR_SASLFAIL, &["SASL authentication failed"]);
                    }
                    Failure::TooLong => self.num(n::ERR_SASLTOOLONG, &["SASL message too long"]),
                    Failure::Aborted => {
                        self.num(n::ERR_SASLABORTED, &["SASL authentication aborted"])
                    }
                    Failure::Malformed => {
                        self.num(n::ERR_SASLFAIL, &["SASL authentication failed"])
                    }
                }
            }
        }
    }

    /// `PRIVMSG NickServ :...`: IDENTIFY and REGISTER, as on networks with services.
    fn nickserv(&mut self, text: &str) {
        let mut words = text.split_whitespace();
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        let accounts = self.hub.accounts().clone();
        let from = self.peer.ip();
        let me = self.nick.as_deref().unwrap_or("*").to_owned();
        match (command.as_str(), args.as_slice()) {
            ("IDENTIFY", [password]) | ("IDENTIFY", [_, password])
                if args.len() == 1 || name::validate(args[0]).is_ok() =>
            {
                let account = if args.len() == 2 {
                    args[0].to_owned()
                } else {
                    me
                };
                let password = (*password).to_owned();
                self.wait_for(async move {
                    accounts
                        .login(account, password, from)
                        .await
                        .map(Done::LoggedIn)
                });
            }
            ("REGISTER", [password, ..]) => {
                if self.hub.accounts().is_reserved(&me) {
                    self.service_notice(&format!("{me} is already registered."));
                } else if !natter_proto::password::acceptable(password) {
                    self.service_notice(ErrorCode::WeakPassword.default_text());
                } else {
                    let password = (*password).to_owned();
                    self.wait_for(async move {
                        accounts.create(me, password).await.map(|()| Done::Created)
                    });
                }
            }
            _ => {
                for line in [
                    "IDENTIFY [account] <password>: log into an account, taking its nick",
                    "REGISTER <password>: make your nick an account only you can use",
                ] {
                    self.service_notice(line);
                }
            }
        }
    }

    /// A standard reply: `FAIL <command> <code> [context...] :<description>`.
    fn fail(&self, command: &str, code: &str, context: &[&str], description: &str) {
        let mut args = vec![command, code];
        args.extend_from_slice(context);
        args.push(description);
        self.push(self.server_msg("FAIL", &args));
    }

    /// draft/account-registration's `REGISTER <account> <email> <password>`: makes the
    /// nick an account, as NickServ's REGISTER does. The account is the nick (or `*` for
    /// it); no e-mail is needed, so none is kept, and none needs verifying.
    fn account_register(&mut self, args: &[String]) {
        let [account, _email, password, ..] = args else {
            self.num(
                n::ERR_NEEDMOREPARAMS,
                &["REGISTER", "Not enough parameters"],
            );
            return;
        };
        if !self.registered {
            self.fail(
                "REGISTER",
                "COMPLETE_CONNECTION_REQUIRED",
                &[&shown(account)],
                "Register your connection (NICK and USER) first",
            );
            return;
        }
        let me = self.me().to_owned();
        if account != "*" && !name::same(account, &me) {
            self.fail(
                "REGISTER",
                "ACCOUNT_NAME_MUST_BE_NICK",
                &[&shown(account)],
                "An account is named after your nick: change nick first",
            );
        } else if self.hub.accounts().is_reserved(&me) {
            self.fail(
                "REGISTER",
                "ALREADY_AUTHENTICATED",
                &[&me],
                "You are logged into this account already",
            );
        } else if !natter_proto::password::acceptable(password) {
            self.fail(
                "REGISTER",
                "WEAK_PASSWORD",
                &[&me],
                ErrorCode::WeakPassword.default_text(),
            );
        } else {
            let accounts = self.hub.accounts().clone();
            let password = password.clone();
            self.registering = true;
            self.wait_for(
                async move { accounts.create(me, password).await.map(|()| Done::Created) },
            );
        }
    }

    /// Answers draft/account-registration's `REGISTER` once the account is made, or not.
    fn registered_account(&mut self, outcome: Result<Done, ErrorCode>) {
        let me = self.me().to_owned();
        match outcome {
            Ok(_) => {
                self.hub.account_changed(&me, true);
                self.push(self.server_msg(
                    "REGISTER",
                    &["SUCCESS", &me, "Account created; you are logged in"],
                ));
                let mask = self.my_mask();
                let text = format!("You are now logged in as {me}");
                self.num(n::RPL_LOGGEDIN, &[&mask, &me, &text]);
            }
            Err(ErrorCode::AccountExists) => self.fail(
                "REGISTER",
                "ACCOUNT_EXISTS",
                &[&me],
                "This nick is an account already",
            ),
            Err(ErrorCode::WeakPassword) => self.fail(
                "REGISTER",
                "WEAK_PASSWORD",
                &[&me],
                ErrorCode::WeakPassword.default_text(),
            ),
            Err(code) => self.fail(
                "REGISTER",
                "TEMPORARILY_UNAVAILABLE",
                &[&me],
                code.default_text(),
            ),
        }
    }

    /// This user's name, if it is a server operator's; else `481` and nothing.
    fn as_operator(&self) -> Option<String> {
        let me = self.me().to_owned();
        if self.hub.accounts().is_operator(&me) {
            return Some(me);
        }
        self.num(
            n::ERR_NOPRIVILEGES,
            &["Permission Denied- You're not an IRC operator"],
        );
        None
    }

    /// `KILL <nick> <comment>`: a server operator disconnects a user.
    fn kill(&mut self, target: &str, comment: &str) {
        let Some(me) = self.as_operator() else {
            return;
        };
        match self.hub.kill(target, &me, comment) {
            Ok(name) => tracing::warn!(user = %name, by = %me, reason = comment, "killed"),
            Err(_) => self.num(n::ERR_NOSUCHNICK, &[&shown(target), "No such nick/channel"]),
        }
    }

    /// `OPER <name> <password>`: server operators are the accounts `--operator` names, logged
    /// in (their password was checked then), so this only confirms it.
    fn oper(&mut self, name: &str) {
        let me = self.me().to_owned();
        if name::same(name, &me) && self.hub.accounts().is_operator(&me) {
            self.num(n::RPL_YOUREOPER, &["You are now an IRC operator"]);
        } else {
            self.num(
                n::ERR_NOOPERHOST,
                &["Only server operators' accounts, logged in, may OPER"],
            );
        }
    }

    /// A NOTICE to this client from NickServ.
    fn service_notice(&self, text: &str) {
        let me = self.nick.as_deref().unwrap_or("*").to_owned();
        self.push(irc_message(
            None,
            Some("NickServ!NickServ@services."),
            "NOTICE",
            &[&me, text],
        ));
    }

    /// Runs an account request; the connection takes no other line until it is answered.
    fn wait_for(
        &mut self,
        request: impl std::future::Future<Output = Result<Done, ErrorCode>> + Send + 'static,
    ) {
        self.pending = Some(Box::new(Wait::Account(AccountWait::spawn(request))));
    }

    /// Answers an account request that has come to an end (SASL's or NickServ's).
    fn account_done(&mut self, outcome: Result<Done, ErrorCode>) {
        if std::mem::take(&mut self.registering) {
            self.registered_account(outcome);
            return;
        }
        let via_sasl = self.sasl.as_ref().is_some_and(|s| s.checking);
        if via_sasl {
            match outcome {
                Ok(Done::LoggedIn(l)) => {
                    let account: Arc<str> = Arc::from(l.name.as_str());
                    if let Some(s) = self.sasl.as_mut() {
                        s.checking = false;
                        s.account = Some(account.clone());
                    }
                    let mask = mask(&account, self.ident());
                    let text = format!("You are now logged in as {account}");
                    self.num(n::RPL_LOGGEDIN, &[&mask, &account, &text]);
                    self.num(n::RPL_SASLSUCCESS, &["SASL authentication successful"]);
                }
                Ok(_) => {}
                Err(code) => {
                    self.sasl = None;
                    self.num(n::ERR_SASLFAIL, &["SASL authentication failed"]);
                    if code != ErrorCode::BadLogin {
                        self.push(self.notice(code.default_text()));
                    }
                }
            }
            return;
        }
        match outcome {
            Ok(Done::LoggedIn(l)) => {
                // The name is this connection's to take now, as after SASL.
                let account: Arc<str> = Arc::from(l.name.as_str());
                let sasl = self.sasl.get_or_insert_with(Box::default);
                sasl.account = Some(account.clone());
                if self.nick.as_deref() != Some(&*account) && self.claim(&account) {
                    self.rename(&account, None);
                }
                if self
                    .nick
                    .as_deref()
                    .is_some_and(|n| name::same(n, &account))
                {
                    let mask = self.my_mask();
                    let text = format!("You are now logged in as {account}");
                    self.num(n::RPL_LOGGEDIN, &[&mask, &account, &text]);
                    self.service_notice(&format!("You are now identified for {account}."));
                    self.deliver_waiting(&account);
                }
                self.sasl = None;
            }
            Ok(Done::Created) => {
                let me = self.nick.clone().unwrap_or_else(|| Arc::from("*"));
                self.hub.account_changed(&me, true);
                let mask = self.my_mask();
                let text = format!("You are now logged in as {me}");
                self.num(n::RPL_LOGGEDIN, &[&mask, &me, &text]);
                self.service_notice(&format!(
                    "{me} is now registered to you; IDENTIFY with its password from now on."
                ));
            }
            Ok(_) => {}
            Err(code) => self.service_notice(match code {
                ErrorCode::BadLogin => "Invalid account or password.",
                other => other.default_text(),
            }),
        }
    }

    /// Registers with the hub; `claimed` is the folded nick if the cluster granted it.
    fn register(&mut self, nick: &str, claimed: Option<String>) {
        let flavor = self.flavor();
        let ident = self.user.clone();
        // The welcome (and, with auto-join, the everyone channel's JOIN and NAMES) is written
        // under the hub's lock as the user is seated, so nothing reaches it first.
        let welcome = |w: &Welcome<'_>| self.welcome(w);
        let login = self.logged_into(nick);
        let registered = if claimed.is_some() {
            self.hub.register_claimed(
                self.id,
                &self.outbox,
                nick,
                flavor,
                ident.clone(),
                Some(&welcome),
                login,
            )
        } else {
            self.hub.register(
                self.id,
                &self.outbox,
                nick,
                flavor,
                ident,
                Some(&welcome),
                login,
            )
        };
        if registered.is_err()
            && let Some(key) = claimed
        {
            self.hub.release(key, self.id);
        }
        match registered {
            Ok((_, name)) => {
                self.nick = Some(name.clone());
                self.registered = true;
                if let Some(real) = self.real.take() {
                    self.hub.set_real_name(self.id, &real, false);
                }
                if self.caps.notify() != Notify::default() {
                    self.watched = true;
                    self.hub.set_notify(self.id, self.caps.notify());
                }
                self.names_after_joining_everyone();
                // Logged in now means holding the account's name.
                self.sasl = None;
                if login {
                    self.deliver_waiting(&name);
                }
                info!(
                    peer = %self.peer, user = %name, protocol = "irc",
                    registered = self.hub.stats().registered(),
                    "registered"
                );
            }
            Err(ErrorCode::NameConfusable) => self.nick_lookalike(nick),
            Err(_) => self.nick_in_use(nick),
        }
    }

    /// `:server NNN <to> args...`, to a client whose name is not yet this session's.
    fn numeric_to(&self, to: &str, code: &str, args: &[&str]) -> Bytes {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(to);
        all.extend_from_slice(args);
        self.server_msg(code, &all)
    }

    /// The welcome burst (001 to 005, LUSERS, MOTD) for `w.name`; with the everyone channel
    /// in `w`, its JOIN, topic and NAMES after it.
    fn welcome(&self, w: &Welcome<'_>) -> Bytes {
        let me = w.name;
        let mask = mask(me, self.ident());
        let cfg = &self.cfg;
        let limits = self.hub.limits();
        let version = concat!("natter-", env!("CARGO_PKG_VERSION"));
        let mut out = BytesMut::new();
        let mut num = |code: &str, args: &[&str]| {
            out.extend_from_slice(&self.numeric_to(me, code, args));
        };
        num(
            n::RPL_WELCOME,
            &[&format!("Welcome to {}, {mask}", cfg.description)],
        );
        num(
            n::RPL_YOURHOST,
            &[&format!(
                "Your host is {}, running version {version}",
                cfg.server_name
            )],
        );
        num(n::RPL_CREATED, &["This server speaks natter and IRC"]);
        num(
            n::RPL_MYINFO,
            &[&cfg.server_name, version, "iw", "biklmnostv", "bklov"],
        );
        let isupport = [
            "CASEMAPPING=ascii".to_owned(),
            "CHANTYPES=#".to_owned(),
            format!("CHANNELLEN={}", natter_proto::limits::MAX_ROOM_NAME_LEN + 1),
            format!("NICKLEN={}", natter_proto::limits::MAX_NAME_LEN),
            "PREFIX=(ov)@+".to_owned(),
            "TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:,PART:,NAMES:1,WHOIS:1,KICK:1".to_owned(),
            format!("TOPICLEN={}", limits.topic_bytes),
            format!("CHANLIMIT=#:{}", limits.per_user),
            "CHANMODES=b,k,l,imnst".to_owned(),
            "MODES=4".to_owned(),
            format!("MAXLIST=b:{}", crate::hub::MAX_BANS),
            "NETWORK=natter".to_owned(),
        ];
        let mut isupport = isupport.to_vec();
        if let Some(log) = self.hub.history() {
            isupport.push(format!("CHATHISTORY={}", log.config().max_limit));
            isupport.push("MSGREFTYPES=msgid,timestamp".to_owned());
        }
        isupport.extend([
            "ELIST=U".to_owned(),
            format!("MONITOR={MONITOR_LIMIT}"),
            "UTF8ONLY".to_owned(),
            "WHOX".to_owned(),
        ]);
        // Clients need not read more than 13 parameters of a line, so long lists take two.
        for tokens in isupport.chunks(12) {
            let mut args: Vec<&str> = tokens.iter().map(String::as_str).collect();
            args.push("are supported by this server");
            num(n::RPL_ISUPPORT, &args);
        }
        // LUSERS, with the counts read under the hub's lock.
        let users = self.hub.stats().registered().to_string();
        let rooms = (w.rooms + 1).to_string();
        num(
            n::RPL_LUSERCLIENT,
            &[&format!(
                "There are {users} users and 0 invisible on 1 servers"
            )],
        );
        num(n::RPL_LUSEROP, &["0", "operator(s) online"]);
        num(n::RPL_LUSERCHANNELS, &[&rooms, "channels formed"]);
        num(
            n::RPL_LUSERME,
            &[&format!("I have {users} clients and 0 servers")],
        );
        for (code, text) in self.user_counts() {
            num(code, &text.each_ref().map(String::as_str));
        }
        match &cfg.motd {
            None => num(n::ERR_NOMOTD, &["MOTD File is missing"]),
            Some(text) => {
                num(
                    n::RPL_MOTDSTART,
                    &[&format!("- {} Message of the day - ", cfg.server_name)],
                );
                for line in text.lines() {
                    num(n::RPL_MOTD, &[&format!("- {line}")]);
                }
                num(n::RPL_ENDOFMOTD, &["End of /MOTD command."]);
            }
        }
        self.rooms_joined(&mut out, w);
        out.freeze()
    }

    /// The everyone channel's and the rooms' JOIN, topic and NAMES, for a user put into
    /// them as it registers (or joins its account's other connections).
    fn rooms_joined(&self, out: &mut BytesMut, w: &Welcome<'_>) {
        let me = w.name;
        let mask = mask(me, self.ident());
        if let Some(view) = w.everyone {
            self.everyone_joined(out, me, &mask, view);
        }
        for view in w.joined {
            out.extend_from_slice(&irc_message(None, Some(&mask), "JOIN", &[&view.name]));
            if let Some(t) = &view.topic {
                out.extend_from_slice(&self.numeric_to(me, n::RPL_TOPIC, &[&view.name, &t.text]));
                out.extend_from_slice(&self.numeric_to(
                    me,
                    n::RPL_TOPICWHOTIME,
                    &[&view.name, &t.by, &t.at.to_string()],
                ));
            }
            self.write_names_to(out, me, &view.name, &view.members);
            out.extend_from_slice(&self.numeric_to(
                me,
                n::RPL_ENDOFNAMES,
                &[&view.name, "End of /NAMES list."],
            ));
        }
    }

    /// The answer to joining the everyone channel: its JOIN, its fixed topic and NAMES.
    fn everyone_joined(&self, out: &mut BytesMut, me: &str, mask: &str, names: NamesView<'_>) {
        out.extend_from_slice(&irc_message(None, Some(mask), "JOIN", &[names.name]));
        let topic = format!(
            "{}: everyone on the server, on every client",
            self.cfg.description
        );
        out.extend_from_slice(&self.numeric_to(me, n::RPL_TOPIC, &[names.name, &topic]));
        if let Some(members) = names.quiet {
            // Too many to list or to announce: the joiner alone, and why.
            let own = if self.caps.userhost_in_names {
                mask
            } else {
                me
            };
            out.extend_from_slice(
                format!(
                    ":{} {} {me} = {} :{own}\r\n",
                    self.cfg.server_name,
                    n::RPL_NAMREPLY,
                    names.name
                )
                .as_bytes(),
            );
            out.extend_from_slice(&self.numeric_to(
                me,
                n::RPL_ENDOFNAMES,
                &[names.name, "End of /NAMES list."],
            ));
            let why = format!(
                "{} has {members} members, too many to show each one coming and going: you see \
                 those you share a room with; /NAMES {} lists them all",
                names.name, names.name
            );
            out.extend_from_slice(&irc_message(
                None,
                Some(&self.cfg.server_name),
                "NOTICE",
                &[me, &why],
            ));
            return;
        }
        if self.caps.userhost_in_names {
            // The hub's lines hold names only; this client's NAMES (with masks) is written
            // as an answer right after (see `names_after_joining_everyone`).
            return;
        }
        // The lines are the hub's, ready made: only the prefix is this client's.
        let prefix = format!(
            ":{} {} {me} = {} :",
            self.cfg.server_name,
            n::RPL_NAMREPLY,
            names.name
        );
        out.reserve(names.lines.iter().map(|l| prefix.len() + l.len() + 2).sum());
        for line in names.lines {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.numeric_to(
            me,
            n::RPL_ENDOFNAMES,
            &[names.name, "End of /NAMES list."],
        ));
    }

    fn lusers(&self) {
        let users = self.hub.stats().registered().to_string();
        let rooms = (self.hub.room_count() + 1).to_string();
        self.num(
            n::RPL_LUSERCLIENT,
            &[&format!(
                "There are {users} users and 0 invisible on 1 servers"
            )],
        );
        self.num(n::RPL_LUSEROP, &["0", "operator(s) online"]);
        self.num(n::RPL_LUSERCHANNELS, &[&rooms, "channels formed"]);
        self.num(
            n::RPL_LUSERME,
            &[&format!("I have {users} clients and 0 servers")],
        );
        for (code, text) in self.user_counts() {
            self.num(code, &text.each_ref().map(String::as_str));
        }
    }

    /// `265` and `266`: the users online now and the most there have been at once.
    fn user_counts(&self) -> [(&'static str, [String; 3]); 2] {
        let stats = self.hub.stats();
        let (now, most) = (
            stats.registered(),
            stats.peak_registered().max(stats.registered()),
        );
        [("local", n::RPL_LOCALUSERS), ("global", n::RPL_GLOBALUSERS)].map(|(which, code)| {
            let text = format!("Current {which} users {now}, max {most}");
            (code, [now.to_string(), most.to_string(), text])
        })
    }

    fn motd(&self) {
        match &self.cfg.motd {
            None => self.num(n::ERR_NOMOTD, &["MOTD File is missing"]),
            Some(text) => {
                self.num(
                    n::RPL_MOTDSTART,
                    &[&format!("- {} Message of the day - ", self.cfg.server_name)],
                );
                for line in text.lines() {
                    self.num(n::RPL_MOTD, &[&format!("- {line}")]);
                }
                self.num(n::RPL_ENDOFMOTD, &["End of /MOTD command."]);
            }
        }
    }

    fn quit(&mut self, reason: Option<&str>) -> Flow {
        let reason = reason.and_then(proto::to_natter_text).unwrap_or_default();
        let line = format!(
            "Closing Link: {} (Quit: {})",
            self.nick.as_deref().unwrap_or("*"),
            reason
        );
        // A QUIT without words is "Quit", not "Quit: " with nothing after it.
        let why = if reason.trim().is_empty() {
            "Quit".to_owned()
        } else {
            format!("Quit: {reason}")
        };
        self.leave_with(&why);
        self.push(irc_message(None, None, "ERROR", &[&line]));
        Flow::Close
    }

    fn leave_with(&mut self, reason: &str) {
        if self.registered {
            self.registered = false;
            self.hub.leave(self.id, reason);
        }
    }

    fn join(&mut self, chans: &str, keys: Option<&str>) {
        if chans == "0" {
            // JOIN 0 leaves every channel.
            let rooms: Vec<String> = self
                .hub
                .user(self.me())
                .map(|u| u.rooms)
                .unwrap_or_default();
            for r in rooms {
                self.part(r.trim_start_matches(['@', '+']), None);
            }
            return;
        }
        let mut joined = Vec::new();
        // Keys go with the channels in order, as the client listed them.
        let mut keys = keys.unwrap_or("").split(',');
        for chan in chans.split(',') {
            let key = keys.next().filter(|k| !k.is_empty());
            if chan.is_empty() {
                continue;
            }
            if chan.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
                self.join_everyone();
                continue;
            }
            if room::validate(chan).is_err() {
                self.num(n::ERR_BADCHANMASK, &[&shown(chan), "Bad Channel Mask"]);
                continue;
            }
            let mask = self.my_mask();
            let from = Some(self.peer.ip()).filter(|ip| self.policy.limits_apply(*ip));
            let result = self.hub.join(self.id, chan, key, from, |view| {
                let mut out = BytesMut::new();
                out.extend_from_slice(&irc_message(None, Some(&mask), "JOIN", &[&view.name]));
                self.write_topic(&mut out, view, false);
                self.write_names(&mut out, view);
                out.freeze()
            });
            match result {
                Ok(()) => joined.push(chan.to_owned()),
                Err(ErrorCode::AlreadyInRoom) => {}
                Err(ErrorCode::TooManyRooms | ErrorCode::RoomLimit) => self.num(
                    n::ERR_TOOMANYCHANNELS,
                    &[chan, "You have joined too many channels"],
                ),
                Err(ErrorCode::RoomFull) => {
                    self.num(n::ERR_CHANNELISFULL, &[chan, "Cannot join channel (+l)"])
                }
                Err(ErrorCode::InviteOnly) => {
                    self.num(n::ERR_INVITEONLYCHAN, &[chan, "Cannot join channel (+i)"])
                }
                Err(ErrorCode::Banned) => {
                    self.num(n::ERR_BANNEDFROMCHAN, &[chan, "Cannot join channel (+b)"])
                }
                Err(ErrorCode::BadKey) => {
                    self.num(n::ERR_BADCHANNELKEY, &[chan, "Cannot join channel (+k)"])
                }
                Err(_) => self.num(n::ERR_BADCHANMASK, &[chan, "Bad Channel Mask"]),
            }
        }
        self.replay(joined);
    }

    /// The last lines said in channels just joined, as the client would have seen them, with
    /// their times (Ergo's auto-replay, for clients that cannot ask for history): `server-time`
    /// tags for clients that have it, the time before the text for the others. Only what was
    /// said before the join: what comes after arrives live.
    fn replay(&mut self, chans: Vec<String>) {
        let Some(log) = self.hub.history().cloned() else {
            return;
        };
        let n = log.config().irc_replay;
        if chans.is_empty() || n == 0 || self.caps.chathistory {
            return;
        }
        let before = log.last_id().saturating_add(1);
        let tagged = self.caps.server_time;
        let msgids = self.caps.message_tags;
        let later = Later::new(async move {
            let mut out = BytesMut::new();
            for chan in chans {
                let key = room::fold(&chan);
                let range = natter_store::Range::Before(before);
                let Ok(rows) = log.store().history_after_writes(&key, range, n).await else {
                    continue;
                };
                for m in rows {
                    out.extend_from_slice(&chathistory::replayed(&m, &chan, tagged, msgids));
                }
            }
            out.freeze()
        });
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// After logging into `account`: the DMs that waited for it while it was offline, as
    /// PRIVMSGs with their times, read while the session waits.
    fn deliver_waiting(&mut self, account: &str) {
        let Some(log) = self.hub.history().cloned() else {
            return;
        };
        if self.pending.is_some() {
            return;
        }
        let (key, me) = (name::fold(account), account.to_owned());
        let (tagged, msgids) = (self.caps.server_time, self.caps.message_tags);
        let later = Later::new(async move {
            // A store that fails keeps them waiting, for the next login.
            let rows = log.store().take_waiting(&key).await.unwrap_or_default();
            let mut out = BytesMut::new();
            for m in &rows {
                out.extend_from_slice(&chathistory::replayed(m, &me, tagged, msgids));
            }
            out.freeze()
        });
        self.pending = Some(Box::new(Wait::Later(later)));
    }

    /// `CHATHISTORY`: a page of a channel's or a conversation's history, or the targets
    /// spoken in between two times, in a batch, read while the session waits.
    fn chathistory(&mut self, args: &[String]) {
        let sub = args.first().map_or("*", |s| s.as_str()).to_owned();
        let Some(log) = self.hub.history().cloned() else {
            self.fail(
                "CHATHISTORY",
                "MESSAGE_ERROR",
                &[&shown(&sub), "*"],
                "This server keeps no history",
            );
            return;
        };
        let request = match chathistory::parse(args, log.config().max_limit) {
            Ok(r) => r,
            Err(r) => {
                self.fail("CHATHISTORY", r.code, &[&shown(&r.subcommand)], r.text);
                return;
            }
        };
        let me = self.me().to_owned();
        let style = chathistory::Style {
            server: self.cfg.server_name.clone(),
            everyone: self.cfg.everyone_channel.clone(),
            me: me.clone(),
            batch: self.caps.batch,
            time: self.caps.server_time,
            msgid: self.caps.message_tags,
        };
        match request {
            Request::Page { target, ranges } => {
                let asked = if target.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
                    natter_proto::command::Target::Everyone
                } else if target.starts_with('#') {
                    natter_proto::command::Target::Room(&target)
                } else {
                    natter_proto::command::Target::User(&target)
                };
                let (key, shown_as) = match self.hub.history_target(self.id, asked) {
                    Ok((key, _)) if target.starts_with('#') => (key, target.clone()),
                    Ok(found) => found,
                    Err((_, text)) => {
                        self.fail(
                            "CHATHISTORY",
                            "INVALID_TARGET",
                            &[&shown(&sub), &shown(&target)],
                            &text,
                        );
                        return;
                    }
                };
                let later = Later::new(async move {
                    let mut rows = Vec::new();
                    for (range, n) in ranges {
                        match log.store().history(&key, range, n).await {
                            Ok(page) => rows.extend(page),
                            Err(_) => return style.failed(&sub, &shown_as),
                        }
                    }
                    style.page(&shown_as, &rows)
                });
                self.pending = Some(Box::new(Wait::Later(later)));
            }
            Request::Targets {
                after,
                before,
                limit,
            } => {
                let (targets, dms) = self.hub.searchable(self.id);
                let accounts = self.hub.accounts().clone();
                let later = Later::new(async move {
                    let keys = targets.iter().map(|(k, _)| k.clone()).collect();
                    let me_key = dms.clone();
                    let Ok(found) = log.store().targets(after, before, keys, dms, limit).await
                    else {
                        return style.failed("TARGETS", "*");
                    };
                    let named: Vec<(String, i64)> = found
                        .into_iter()
                        .map(|(key, id)| {
                            let name = match targets.iter().find(|(k, _)| *k == key) {
                                Some((_, shown)) if shown == "*" => style.everyone.clone(),
                                Some((_, shown)) => shown.clone(),
                                None => {
                                    let other = key
                                        .split(' ')
                                        .filter_map(|p| p.strip_prefix('@'))
                                        .find(|p| Some(*p) != me_key.as_deref())
                                        .unwrap_or(&me)
                                        .to_owned();
                                    accounts.spelled(&other).unwrap_or(other)
                                }
                            };
                            (name, id)
                        })
                        .collect();
                    style.targets(&named)
                });
                self.pending = Some(Box::new(Wait::Later(later)));
            }
        }
    }

    fn join_everyone(&mut self) {
        let mask = self.my_mask();
        let joined = self.hub.join_everyone(self.id, |view| {
            let mut out = BytesMut::new();
            self.everyone_joined(&mut out, self.me(), &mask, view);
            out.freeze()
        });
        if joined.is_ok() {
            self.names_after_joining_everyone();
        }
    }

    /// The everyone channel's NAMES for a client with `userhost-in-names`, whose JOIN
    /// answer left them out (see `everyone_joined`): a NAMES answer, a page at a time.
    fn names_after_joining_everyone(&mut self) {
        if self.caps.userhost_in_names
            && self.hub.in_everyone(self.id)
            && !self.hub.everyone_is_quiet()
        {
            let chan = self.cfg.everyone_channel.clone();
            self.names(Some(&chan));
        }
    }

    /// 332 and 333, or 331 when asked and there is none.
    fn write_topic(&self, out: &mut BytesMut, view: &RoomView, asked: bool) {
        match &view.topic {
            Some(t) => {
                out.extend_from_slice(&self.numeric(n::RPL_TOPIC, &[&view.name, &t.text]));
                out.extend_from_slice(
                    &self.numeric(n::RPL_TOPICWHOTIME, &[&view.name, &t.by, &t.at.to_string()]),
                );
            }
            None if asked => out
                .extend_from_slice(&self.numeric(n::RPL_NOTOPIC, &[&view.name, "No topic is set"])),
            None => {}
        }
    }

    /// 353 lines, each within IRC's 512 bytes, then 366.
    fn write_names(&self, out: &mut BytesMut, view: &RoomView) {
        self.write_names_page(out, &view.name, &view.members);
        out.extend_from_slice(
            &self.numeric(n::RPL_ENDOFNAMES, &[&view.name, "End of /NAMES list."]),
        );
    }

    /// 353 lines for `members` of `chan`, each within IRC's 512 bytes.
    fn write_names_page(&self, out: &mut BytesMut, chan: &str, members: &[MemberView]) {
        self.write_names_to(out, self.me(), chan, members);
    }

    /// 353 lines for `members` of `chan`, to `me`, each within IRC's 512 bytes.
    fn write_names_to(&self, out: &mut BytesMut, me: &str, chan: &str, members: &[MemberView]) {
        let overhead = self.cfg.server_name.len() + me.len() + chan.len() + 20;
        let mut line = String::new();
        for m in members {
            let pre = prefix(m, self.caps.multi_prefix);
            let entry = if self.caps.userhost_in_names {
                format!("{pre}{}", mask(&m.name, &m.ident))
            } else {
                format!("{pre}{}", m.name)
            };
            if !line.is_empty() && overhead + line.len() + entry.len() + 1 > proto::MAX_LINE {
                out.extend_from_slice(&self.numeric_to(me, n::RPL_NAMREPLY, &["=", chan, &line]));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&entry);
        }
        if !line.is_empty() {
            out.extend_from_slice(&self.numeric_to(me, n::RPL_NAMREPLY, &["=", chan, &line]));
        }
    }

    fn part(&mut self, chans: &str, reason: Option<&str>) {
        let reason = reason.and_then(proto::to_natter_text);
        for chan in chans.split(',').filter(|c| !c.is_empty()) {
            if chan.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
                match self.hub.part_everyone(self.id) {
                    Ok(()) => {
                        let mask = self.my_mask();
                        self.push(irc_message(
                            None,
                            Some(&mask),
                            "PART",
                            &[&self.cfg.everyone_channel],
                        ));
                    }
                    Err(_) => self.num(n::ERR_NOTONCHANNEL, &[chan, "You're not on that channel"]),
                }
                continue;
            }
            match self.hub.part(self.id, chan, reason.as_deref()) {
                Ok(_) => {}
                Err(ErrorCode::NotInRoom) => self.num(
                    n::ERR_NOTONCHANNEL,
                    &[&shown(chan), "You're not on that channel"],
                ),
                Err(_) => self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"]),
            }
        }
    }

    /// PRIVMSG or NOTICE to up to four targets, with the client-only tags `client`.
    fn privmsg(&mut self, targets: &str, text: &str, notice: bool, client: &str) {
        // RFC 2812: NOTICE is never answered with an error.
        let complain = |s: &Self, code: &str, args: &[&str]| {
            if !notice {
                s.num(code, args);
            }
        };
        if targets.is_empty() {
            complain(self, n::ERR_NORECIPIENT, &["No recipient given (PRIVMSG)"]);
            return;
        }
        let Some(converted) = proto::to_natter_text(text) else {
            self.ctcp(targets, text, notice);
            return;
        };
        if natter_proto::text::validate(&converted).is_err() {
            complain(self, n::ERR_NOTEXTTOSEND, &["No text to send"]);
            return;
        }
        if targets.eq_ignore_ascii_case(NICKSERV) {
            if !notice {
                self.nickserv(text);
            }
            return;
        }
        self.deliver(targets, &[&converted], notice, client);
    }

    /// Delivers natter texts (checked already), in order, to each of `targets`, with the
    /// client-only tags `client`, and the numerics PRIVMSG answers (never a NOTICE): one per
    /// text, as if each had come alone.
    fn deliver(&mut self, targets: &str, texts: &[&str], notice: bool, client: &str) {
        let complain = |s: &Self, code: &str, args: &[&str]| {
            if !notice {
                for _ in texts {
                    s.num(code, args);
                }
            }
        };
        // IRC has no answer to a message, so nothing waits for it to be kept, unless the
        // store's queue is full: then this client takes no more input until it has room.
        // The ids of the texts kept, for the echo, which carries the msgid and time the
        // others got.
        let mut backlog = Vec::new();
        let echo = self.caps.echo_message;
        let mut keep = |kept: Option<Keeping>| -> Vec<i64> {
            let Some(k) = kept else {
                return Vec::new();
            };
            let ids = if echo { k.ids.clone() } else { Vec::new() };
            if k.backlog {
                backlog.push(k);
            }
            ids
        };
        for target in targets.split(',').filter(|t| !t.is_empty()).take(4) {
            let sent = if target.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
                self.hub
                    .broadcast_each(self.id, texts, notice, client)
                    .map(|(_, kept)| keep(kept))
                    .map_err(|_| {
                        complain(
                            self,
                            n::ERR_CANNOTSENDTOCHAN,
                            &[target, "Cannot send to channel"],
                        )
                    })
            } else if proto::is_channel(target) {
                self.hub
                    .say_each(self.id, target, texts, notice, client)
                    .map(|(_, (_, kept))| keep(kept))
                    .map_err(|e| match e {
                        ErrorCode::NotInRoom => complain(
                            self,
                            n::ERR_CANNOTSENDTOCHAN,
                            &[target, "Cannot send to channel"],
                        ),
                        ErrorCode::Moderated => complain(
                            self,
                            n::ERR_CANNOTSENDTOCHAN,
                            &[target, "Cannot send to channel (+m)"],
                        ),
                        ErrorCode::Banned => complain(
                            self,
                            n::ERR_CANNOTSENDTOCHAN,
                            &[target, "Cannot send to channel (+b)"],
                        ),
                        _ => complain(
                            self,
                            n::ERR_NOSUCHCHANNEL,
                            &[&shown(target), "No such channel"],
                        ),
                    })
            } else {
                // One DM a text: each is answered (queued, away) as if it came alone.
                let complain_one = |s: &Self, code: &str, args: &[&str]| {
                    if !notice {
                        s.num(code, args);
                    }
                };
                let mut sent = Ok(());
                let mut ids = Vec::new();
                for converted in texts {
                    sent = match self
                        .hub
                        .direct_tagged(self.id, target, converted, notice, client)
                    {
                        Ok(to) => {
                            ids.extend(keep(to.kept));
                            if to.queued {
                                let text =
                                    format!("{} is offline: your message waits for them", to.name);
                                self.push(self.notice(&text));
                            }
                            if let Some(away) = to.away
                                && !notice
                            {
                                self.num(n::RPL_AWAY, &[&to.name, &away]);
                            }
                            Ok(())
                        }
                        Err(_) => {
                            complain_one(
                                self,
                                n::ERR_NOSUCHNICK,
                                &[&shown(target), "No such nick/channel"],
                            );
                            Err(())
                        }
                    };
                }
                sent.map(|()| ids)
            };
            if let Ok(ids) = sent
                && self.caps.echo_message
            {
                let verb = if notice { "NOTICE" } else { "PRIVMSG" };
                let mask = self.my_mask();
                for (i, converted) in texts.iter().enumerate() {
                    let id = (ids.len() == texts.len()).then(|| ids[i]);
                    let tags = crate::event::Tags {
                        at: self
                            .caps
                            .server_time
                            .then(|| id.map_or_else(SystemTime::now, crate::event::time_of)),
                        msgid: id.filter(|_| self.caps.message_tags),
                        client: Some(client),
                        ..Default::default()
                    };
                    self.push(crate::event::irc_lines(
                        tags,
                        &mask,
                        verb,
                        target,
                        converted,
                        self.caps.multiline && self.caps.batch,
                    ));
                }
            }
        }
        if !backlog.is_empty() {
            let failed =
                self.notice("Delivered, but not kept in the history: the store is unavailable");
            let later = Later::new(async move {
                for kept in backlog {
                    if kept.await.is_err() {
                        return failed;
                    }
                }
                Bytes::new()
            });
            self.pending = Some(Box::new(Wait::Later(later)));
        }
    }

    /// A plain PRIVMSG to one channel, which may gather with the ones around it (see
    /// [`Gathered`]): its target and its text as natter's.
    fn gatherable<'m>(&self, msg: &'m irc_proto::Message) -> Option<(&'m str, String)> {
        if !self.registered
            || self.batch.is_some()
            || msg.tags.as_ref().is_some_and(|t| !t.is_empty())
        {
            return None;
        }
        let Command::PRIVMSG(target, text) = &msg.command else {
            return None;
        };
        if target.contains(',') || !proto::is_channel(target) {
            return None;
        }
        let converted = proto::to_natter_text(text)?;
        natter_proto::text::validate(&converted).ok()?;
        Some((target, converted.into_owned()))
    }

    /// Sends the PRIVMSGs gathered so far.
    fn flush_gathered(&mut self) {
        let Some(g) = self.gathered.take() else {
            return;
        };
        let mut start = 0;
        let texts: Vec<&str> = g
            .ends
            .iter()
            .map(|&end| {
                let t = &g.text[start..end];
                start = end;
                t
            })
            .collect();
        self.deliver(&g.target, &texts, false, "");
    }

    /// `BATCH +<ref> draft/multiline <target>` opens a multi-line message; `BATCH -<ref>`
    /// ends it and sends it, one message. One batch is open at a time.
    fn batch(&mut self, args: &[String]) {
        let Some(first) = args.first() else {
            self.num(n::ERR_NEEDMOREPARAMS, &["BATCH", "Not enough parameters"]);
            return;
        };
        if let Some(reference) = first.strip_prefix('+') {
            if !self.caps.multiline {
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID",
                    &[],
                    "Negotiate draft/multiline (and batch) first",
                );
                return;
            }
            let (Some(kind), Some(target)) = (args.get(1), args.get(2)) else {
                self.num(n::ERR_NEEDMOREPARAMS, &["BATCH", "Not enough parameters"]);
                return;
            };
            if !kind.eq_ignore_ascii_case("draft/multiline") {
                self.fail(
                    "BATCH",
                    "INVALID_TYPE",
                    &[&shown(kind)],
                    "Unknown batch type",
                );
                return;
            }
            if self.batch.is_some() {
                // Batches do not nest: the open one is dropped with the new one.
                self.batch = None;
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID",
                    &[],
                    "A multiline batch is already open",
                );
                return;
            }
            if reference.is_empty() || reference.len() > 64 {
                self.fail("BATCH", "MULTILINE_INVALID", &[], "Invalid batch reference");
                return;
            }
            let valid_target = !target.contains(',')
                && !target.eq_ignore_ascii_case(NICKSERV)
                && (proto::is_channel(target) || name::validate(target).is_ok());
            if !valid_target {
                self.fail(
                    "BATCH",
                    "MULTILINE_INVALID_TARGET",
                    &[&shown(target)],
                    "Invalid multiline target",
                );
                return;
            }
            self.batch = Some(Box::new(OpenBatch {
                reference: reference.to_owned(),
                target: target.clone(),
                text: String::new(),
                lines: 0,
                notice: None,
                refused: false,
                label: self.labeled.take().map(|l| l.label),
            }));
            return;
        }
        let Some(reference) = first.strip_prefix('-') else {
            self.fail("BATCH", "MULTILINE_INVALID", &[], "Invalid batch reference");
            return;
        };
        let Some(open) = self.batch.take_if(|b| b.reference == reference) else {
            // The end of a batch not open (refused at its start): nothing to send.
            return;
        };
        if open.refused {
            return;
        }
        let text = match natter_proto::multiline::normalize(&open.text) {
            Ok(t) => t,
            Err(natter_proto::multiline::LinesError::TooMany) => {
                return self.fail(
                    "BATCH",
                    "MULTILINE_MAX_LINES",
                    &[&natter_proto::limits::MAX_MESSAGE_LINES.to_string()],
                    "Multiline batch max-lines exceeded",
                );
            }
            Err(_) => {
                return self.fail(
                    "BATCH",
                    "MULTILINE_INVALID",
                    &[],
                    "Invalid multiline batch: blank, or with characters a message may not hold",
                );
            }
        };
        self.deliver(&open.target, &[&text], open.notice.unwrap_or(false), "");
    }

    /// A PRIVMSG or NOTICE inside a batch: one more line of the open multi-line message
    /// (joined to the one before without a break if `concat`), within its limits.
    fn batch_line(
        &mut self,
        reference: &str,
        target: &str,
        text: &str,
        notice: bool,
        concat: bool,
    ) {
        let Some(open) = self.batch.as_deref_mut() else {
            // A line of a batch that is not open (refused, or never opened) is dropped with
            // it: sent on its own, it would be one line of a message out of place.
            return;
        };
        if open.refused {
            return;
        }
        if open.reference != reference {
            // Another batch's line inside this one: the client lost track; neither goes.
            open.refused = true;
            open.text = String::new();
            self.fail(
                "BATCH",
                "MULTILINE_INVALID",
                &[],
                "A line of another batch inside a multiline batch",
            );
            return;
        }
        let problem = if !target.eq_ignore_ascii_case(&open.target) {
            Some((
                "MULTILINE_INVALID_TARGET",
                open.target.clone(),
                "Invalid multiline target",
            ))
        } else if open.notice.is_some_and(|n| n != notice) {
            Some((
                "MULTILINE_INVALID",
                String::new(),
                "PRIVMSG and NOTICE in one multiline batch",
            ))
        } else if concat && (open.lines == 0 || text.is_empty()) {
            Some((
                "MULTILINE_INVALID",
                String::new(),
                "Invalid use of draft/multiline-concat",
            ))
        } else {
            None
        };
        let converted = proto::to_natter_text(text);
        let problem = problem.or_else(|| {
            converted.is_none().then(|| {
                (
                    "MULTILINE_INVALID",
                    String::new(),
                    "CTCP in a multiline batch",
                )
            })
        });
        let converted = converted.unwrap_or_default();
        let lines = open.lines + usize::from(!concat);
        let bytes = open.text.len() + converted.len() + usize::from(!concat && open.lines > 0);
        let problem = problem.or_else(|| {
            if lines > natter_proto::limits::MAX_MESSAGE_LINES {
                Some((
                    "MULTILINE_MAX_LINES",
                    natter_proto::limits::MAX_MESSAGE_LINES.to_string(),
                    "Multiline batch max-lines exceeded",
                ))
            } else if bytes > natter_proto::limits::MAX_LINE_BYTES {
                Some((
                    "MULTILINE_MAX_BYTES",
                    natter_proto::limits::MAX_LINE_BYTES.to_string(),
                    "Multiline batch max-bytes exceeded",
                ))
            } else {
                None
            }
        });
        if let Some((code, context, description)) = problem {
            // Its text is let go now; the rest of the batch, up to its end, is ignored.
            open.refused = true;
            open.text = String::new();
            let context: &[&str] = if context.is_empty() { &[] } else { &[&context] };
            self.fail("BATCH", code, context, description);
            return;
        }
        if !concat && open.lines > 0 {
            open.text.push('\n');
        }
        open.text.push_str(&converted);
        open.lines = lines;
        open.notice = Some(notice);
    }

    /// A CTCP request other than ACTION (or a reply, as a NOTICE): relayed to an IRC user,
    /// who can answer; a natter user cannot, so the server answers VERSION, PING, TIME and
    /// CLIENTINFO in its stead, and says so for anything else. Channels get no CTCP but
    /// ACTION.
    fn ctcp(&mut self, targets: &str, text: &str, notice: bool) {
        let body = text.trim_start_matches('\u{1}').trim_end_matches('\u{1}');
        if body.is_empty() || body.contains(['\u{1}', '\r', '\n', '\0']) {
            return;
        }
        let (verb, arg) = body.split_once(' ').unwrap_or((body, ""));
        let verb = verb.to_ascii_uppercase();
        for target in targets.split(',').filter(|t| !t.is_empty()).take(4) {
            if proto::is_channel(target) || target.eq_ignore_ascii_case(NICKSERV) {
                continue;
            }
            match self.hub.ctcp(self.id, target, body, notice) {
                Ok(true) => {}
                // A reply to someone who cannot read it, or a request nobody can answer.
                Ok(false) if notice => {}
                Ok(false) => {
                    let Some(user) = self.hub.user(target) else {
                        continue;
                    };
                    let answer = match verb.as_str() {
                        "VERSION" => Some(format!(
                            "VERSION natter-{} ({} uses a natter client; the server answers for it)",
                            env!("CARGO_PKG_VERSION"),
                            user.name
                        )),
                        "PING" => Some(format!("PING {arg}")),
                        "TIME" => Some(format!(
                            "TIME {}",
                            crate::event::timestamp(SystemTime::now())
                        )),
                        "CLIENTINFO" => {
                            Some("CLIENTINFO ACTION CLIENTINFO PING TIME VERSION".into())
                        }
                        _ => None,
                    };
                    let source = mask(&user.name, &user.ident);
                    let me = self.me().to_owned();
                    let line = match answer {
                        Some(a) => irc_message(
                            None,
                            Some(&source),
                            "NOTICE",
                            &[&me, &format!("\u{1}{a}\u{1}")],
                        ),
                        None => self.notice(&format!(
                            "{} uses a natter client, which cannot answer CTCP {}",
                            user.name,
                            shown(&verb)
                        )),
                    };
                    self.push(line);
                }
                Err(_) if notice => {}
                Err(_) => self.num(n::ERR_NOSUCHNICK, &[&shown(target), "No such nick/channel"]),
            }
        }
    }

    fn topic(&mut self, chan: &str, text: Option<&str>) {
        if chan.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
            match text {
                None => {
                    let text = format!(
                        "{}: everyone on the server, on every client",
                        self.cfg.description
                    );
                    self.num(n::RPL_TOPIC, &[chan, &text]);
                }
                Some(_) => self.num(
                    n::ERR_CHANOPRIVSNEEDED,
                    &[chan, "You're not channel operator"],
                ),
            }
            return;
        }
        match text {
            None => match self.hub.room(chan) {
                Ok(view) => {
                    let mut out = BytesMut::new();
                    self.write_topic(&mut out, &view, true);
                    self.push(out.freeze());
                }
                Err(_) => self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"]),
            },
            Some(text) => {
                let text = proto::to_natter_text(text).unwrap_or_default();
                // IRC servers cut an over-long topic to TOPICLEN instead of refusing it.
                let text = natter_proto::text::prefix_within(&text, self.hub.limits().topic_bytes);
                match self.hub.set_topic(self.id, chan, text) {
                    Ok(_) => {}
                    Err(ErrorCode::NotInRoom) => {
                        self.num(n::ERR_NOTONCHANNEL, &[chan, "You're not on that channel"])
                    }
                    Err(ErrorCode::NotOperator) => self.num(
                        n::ERR_CHANOPRIVSNEEDED,
                        &[chan, "You're not channel operator"],
                    ),
                    Err(_) => self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"]),
                }
            }
        }
    }

    fn names(&mut self, chans: Option<&str>) {
        let Some(chans) = chans else {
            self.num(n::RPL_ENDOFNAMES, &["*", "End of /NAMES list."]);
            return;
        };
        let mut chans: Vec<String> = chans
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        chans.reverse();
        self.answer = Some(Box::new(Answer::Names { chans, last: None }));
        self.answer_page();
    }

    /// `LIST [#a,#b,... | >n | <n]`: the channels named, or every channel with more (or
    /// fewer) users than `n`; other parameters (ELIST's `C`, `T`, masks) are ignored.
    fn list(&mut self, params: Option<&str>) {
        let mut users = Users::default();
        let mut names: Vec<&str> = Vec::new();
        for p in params.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
            if let Some(n) = p.strip_prefix('>').and_then(|n| n.parse().ok()) {
                users.more = Some(n);
            } else if let Some(n) = p.strip_prefix('<').and_then(|n| n.parse().ok()) {
                users.less = Some(n);
            } else if proto::is_channel(p)
                && names.len() < LIST_NAMES
                && !names.iter().any(|q| q.eq_ignore_ascii_case(p))
            {
                names.push(p);
            }
        }
        let mut out = BytesMut::new();
        out.extend_from_slice(&self.numeric(n::RPL_LISTSTART, &["Channel", "Users  Name"]));
        let everyone = |name: &str| name.eq_ignore_ascii_case(&self.cfg.everyone_channel);
        if names.is_empty() || names.iter().any(|&c| everyone(c)) {
            let count = self.hub.everyone_count();
            if users.admits(count) {
                let topic = format!("{}: everyone on the server", self.cfg.description);
                out.extend_from_slice(&self.numeric(
                    n::RPL_LIST,
                    &[&self.cfg.everyone_channel, &count.to_string(), &topic],
                ));
            }
        }
        if names.is_empty() {
            self.push(out.freeze());
            self.answer = Some(Box::new(Answer::List { last: None, users }));
            self.answer_page();
            return;
        }
        for r in names
            .iter()
            .filter(|&&c| !everyone(c))
            .filter_map(|c| self.hub.room_summary(self.id, c))
            .filter(|r| users.admits(r.members))
        {
            let topic = r.topic.as_deref().unwrap_or("");
            out.extend_from_slice(
                &self.numeric(n::RPL_LIST, &[&r.name, &r.members.to_string(), topic]),
            );
        }
        out.extend_from_slice(&self.numeric(n::RPL_LISTEND, &["End of /LIST"]));
        self.push(out.freeze());
    }

    /// Writes the next page of the answer in progress, and its end once it is complete.
    fn answer_page(&mut self) {
        let Some(mut answer) = self.answer.take() else {
            return;
        };
        let mut out = BytesMut::new();
        let done = match &mut *answer {
            Answer::List { last, users } => {
                let page = self.hub.rooms_page(self.id, last.as_deref(), PAGE);
                for r in page.items.iter().filter(|r| users.admits(r.members)) {
                    let count = r.members.to_string();
                    let topic = r.topic.as_deref().unwrap_or("");
                    out.extend_from_slice(&self.numeric(n::RPL_LIST, &[&r.name, &count, topic]));
                }
                *last = page.last;
                if page.done {
                    out.extend_from_slice(&self.numeric(n::RPL_LISTEND, &["End of /LIST"]));
                }
                page.done
            }
            Answer::Names { chans, last } => {
                let Some(chan) = chans.last() else {
                    return;
                };
                let shown_chan = shown(chan);
                // A secret channel's members are nobody else's business.
                let members = if self.hub.hidden_from(self.id, chan) {
                    Err(ErrorCode::NoSuchRoom)
                } else {
                    self.hub.members_page(chan, last.as_deref(), PAGE)
                };
                let chan_done = match members {
                    Ok((name, page)) => {
                        self.write_names_page(&mut out, &name, &page.items);
                        *last = page.last;
                        if page.done {
                            out.extend_from_slice(
                                &self.numeric(n::RPL_ENDOFNAMES, &[&name, "End of /NAMES list."]),
                            );
                        }
                        page.done
                    }
                    Err(_) => {
                        out.extend_from_slice(
                            &self.numeric(n::RPL_ENDOFNAMES, &[&shown_chan, "End of /NAMES list."]),
                        );
                        true
                    }
                };
                if chan_done {
                    chans.pop();
                    *last = None;
                }
                chans.is_empty()
            }
            Answer::Who { chan, last, how } => {
                let members = if self.hub.hidden_from(self.id, chan) {
                    Err(ErrorCode::NoSuchRoom)
                } else {
                    self.hub.who_members_page(chan, last.as_deref(), PAGE)
                };
                let page = match members {
                    Ok((name, page)) => {
                        for e in page.items.iter().filter(|e| self.who_wanted(e, how)) {
                            out.extend_from_slice(&self.who_row(&name, e, how));
                        }
                        *last = page.last;
                        page.done
                    }
                    Err(_) => true,
                };
                if page {
                    out.extend_from_slice(
                        &self.numeric(n::RPL_ENDOFWHO, &[&shown(chan), "End of WHO list"]),
                    );
                }
                page
            }
            Answer::WhoMask { mask, last, how } => {
                // A mask with `!` or `@` is matched against each user's `nick!user@host`.
                let full = mask.contains(['!', '@']);
                let page = self.hub.who_page(last.as_deref(), PAGE, |name| {
                    full || proto::mask_matches(mask, name)
                });
                for e in page.items.iter().filter(|e| {
                    (!full || proto::mask_matches(mask, &mask_of(e))) && self.who_wanted(e, how)
                }) {
                    out.extend_from_slice(&self.who_row("*", e, how));
                }
                *last = page.last;
                if page.done {
                    out.extend_from_slice(
                        &self.numeric(n::RPL_ENDOFWHO, &[&shown(mask), "End of WHO list"]),
                    );
                }
                page.done
            }
        };
        if !done {
            self.answer = Some(answer);
        }
        if !out.is_empty() {
            self.push(out.freeze());
        }
    }

    fn kick(&mut self, chan: &str, nick: &str, reason: Option<&str>) {
        let reason = reason.and_then(proto::to_natter_text);
        let reason = reason.as_deref().unwrap_or(self.me()).to_owned();
        match self.hub.kick(self.id, chan, nick, Some(&reason)) {
            Ok(_) => {}
            Err(ErrorCode::NoSuchRoom | ErrorCode::InvalidRoomName) => {
                self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"])
            }
            Err(ErrorCode::NotInRoom) => {
                self.num(n::ERR_NOTONCHANNEL, &[chan, "You're not on that channel"])
            }
            Err(ErrorCode::NotOperator) => self.num(
                n::ERR_CHANOPRIVSNEEDED,
                &[chan, "You're not channel operator"],
            ),
            Err(ErrorCode::NoSuchUser) => {
                self.num(n::ERR_NOSUCHNICK, &[&shown(nick), "No such nick/channel"])
            }
            Err(_) => self.num(
                n::ERR_USERNOTINCHANNEL,
                &[&shown(nick), chan, "They aren't on that channel"],
            ),
        }
    }

    /// `WHO <mask> [o][%fields[,token]]`: a channel's members, the users whose nick matches
    /// a mask with `*` and `?`, or one user; as `352`, or with WHOX fields as `354`.
    fn who(&mut self, args: &[&str]) {
        let mask = match args.first() {
            None | Some(&"0") | Some(&"") => "*",
            Some(m) => m,
        };
        let (flags, fields) = args.get(1).map_or(("", None), |a| match a.split_once('%') {
            Some((f, w)) => (f, Some(w)),
            None => (*a, None),
        });
        let how = WhoHow {
            opers: flags.contains('o'),
            whox: fields.map(|w| {
                let (fields, token) = w.split_once(',').unwrap_or((w, ""));
                // A token is at most three digits, as WHOX says; anything else is dropped.
                let token = if (1..=3).contains(&token.len())
                    && token.bytes().all(|b| b.is_ascii_digit())
                {
                    token
                } else {
                    "0"
                };
                let wanted = WHOX_FIELDS
                    .chars()
                    .filter(|c| fields.contains(*c))
                    .collect();
                (wanted, token.to_owned())
            }),
        };
        let answer = if proto::is_channel(mask) {
            Answer::Who {
                chan: mask.to_owned(),
                last: None,
                how,
            }
        } else if mask.contains(['*', '?', '!', '@']) && mask.len() <= WHO_MASK_LEN {
            Answer::WhoMask {
                mask: mask.to_owned(),
                last: None,
                how,
            }
        } else {
            let mut out = BytesMut::new();
            if let Some(e) = self.hub.who_user(mask)
                && self.who_wanted(&e, &how)
            {
                out.extend_from_slice(&self.who_row("*", &e, &how));
            }
            out.extend_from_slice(
                &self.numeric(n::RPL_ENDOFWHO, &[&shown(mask), "End of WHO list"]),
            );
            self.push(out.freeze());
            return;
        };
        self.answer = Some(Box::new(answer));
        self.answer_page();
    }

    /// Whether `WHO` shows `e`: with `o`, only server operators.
    fn who_wanted(&self, e: &WhoEntry, how: &WhoHow) -> bool {
        !how.opers || self.hub.accounts().is_operator(&e.name)
    }

    /// One user's line in a `WHO` answer about `chan` (`*` for none): `352`, or WHOX's `354`
    /// with the fields asked for.
    fn who_row(&self, chan: &str, e: &WhoEntry, how: &WhoHow) -> Bytes {
        let server = &self.cfg.server_name;
        let oper = e.account && self.hub.accounts().is_operator(&e.name);
        let flags = format!(
            "{}{}{}",
            if e.away { "G" } else { "H" },
            if oper { "*" } else { "" },
            status_prefix(e.op, e.voice, self.caps.multi_prefix)
        );
        // Natives have no real name: their name stands for it, as it always has.
        let real: &str = match &e.real {
            Some(r) => r,
            None => &e.name,
        };
        let Some((fields, token)) = &how.whox else {
            return self.numeric(
                n::RPL_WHOREPLY,
                &[
                    chan,
                    &e.ident,
                    "natter",
                    server,
                    &e.name,
                    &flags,
                    &format!("0 {real}"),
                ],
            );
        };
        let args: Vec<&str> = fields
            .chars()
            .map(|c| -> &str {
                match c {
                    't' => token.as_str(),
                    'c' => chan,
                    'u' => &e.ident,
                    // Nobody's address is shown.
                    'i' => "255.255.255.255",
                    'h' => "natter",
                    's' => server,
                    'n' => &e.name,
                    'f' => &flags,
                    'd' | 'l' => "0",
                    'a' if e.account => &e.name,
                    'a' => "0",
                    'o' => "n/a",
                    _ => real,
                }
            })
            .collect();
        self.numeric(n::RPL_WHOSPCRPL, &args)
    }

    fn whois(&mut self, nick: &str) {
        let mut out = BytesMut::new();
        match self.hub.user(nick) {
            Some(u) => {
                let real = match self.hub.real_name(&u.name) {
                    Some(r) => r,
                    None if u.irc => Arc::from("IRC user"),
                    None => Arc::from("natter user"),
                };
                out.extend_from_slice(
                    &self.numeric(n::RPL_WHOISUSER, &[&u.name, &u.ident, "natter", "*", &real]),
                );
                let rooms: Vec<&str> = u
                    .rooms
                    .iter()
                    .map(String::as_str)
                    .filter(|r| {
                        !self
                            .hub
                            .hidden_from(self.id, r.trim_start_matches(['@', '+']))
                    })
                    .collect();
                if !rooms.is_empty() {
                    out.extend_from_slice(
                        &self.numeric(n::RPL_WHOISCHANNELS, &[&u.name, &rooms.join(" ")]),
                    );
                }
                out.extend_from_slice(&self.numeric(
                    n::RPL_WHOISSERVER,
                    &[&u.name, &self.cfg.server_name, &self.cfg.description],
                ));
                if u.account {
                    out.extend_from_slice(
                        &self.numeric(n::RPL_WHOISACCOUNT, &[&u.name, &u.name, "is logged in as"]),
                    );
                }
                if let Some(away) = &u.away {
                    out.extend_from_slice(&self.numeric(n::RPL_AWAY, &[&u.name, away]));
                }
                out.extend_from_slice(
                    &self.numeric(n::RPL_ENDOFWHOIS, &[&u.name, "End of /WHOIS list"]),
                );
            }
            None => {
                out.extend_from_slice(
                    &self.numeric(n::ERR_NOSUCHNICK, &[&shown(nick), "No such nick/channel"]),
                );
                out.extend_from_slice(
                    &self.numeric(n::RPL_ENDOFWHOIS, &[&shown(nick), "End of /WHOIS list"]),
                );
            }
        }
        self.push(out.freeze());
    }

    fn channel_mode(&mut self, chan: &str, modes: &[Mode<ChannelMode>]) {
        if chan.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
            // Everyone has no operators: its modes are fixed.
            match modes {
                [] => self.num(n::RPL_CHANNELMODEIS, &[chan, "+nt"]),
                [Mode::NoPrefix(ChannelMode::Ban) | Mode::Plus(ChannelMode::Ban, None)] => {
                    self.num(n::RPL_ENDOFBANLIST, &[chan, "End of channel ban list"])
                }
                _ => self.num(
                    n::ERR_CHANOPRIVSNEEDED,
                    &[chan, "You're not channel operator"],
                ),
            }
            return;
        }
        if modes.is_empty() {
            match self.hub.modes(self.id, chan) {
                Ok(v) => {
                    let mut args: Vec<&str> = vec![&v.room];
                    args.extend(v.modes.split(' '));
                    self.num(n::RPL_CHANNELMODEIS, &args);
                    self.num(n::RPL_CREATIONTIME, &[&v.room, &v.created.to_string()]);
                }
                Err(_) => self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"]),
            }
            return;
        }
        let (letters, args) = mode_words(modes);
        for change in natter_proto::mode::parse_irc(&letters, &args) {
            let change = match change {
                Ok(c) => c,
                Err(ModeError::Unknown(c)) => {
                    let c = if c.is_control() { '?' } else { c };
                    self.num(
                        n::ERR_UNKNOWNMODE,
                        &[&c.to_string(), "is unknown mode char to me"],
                    );
                    continue;
                }
                Err(ModeError::Missing(_)) => {
                    self.num(n::ERR_NEEDMOREPARAMS, &["MODE", "Not enough parameters"]);
                    continue;
                }
                Err(e @ ModeError::Bad(c, _)) => {
                    self.num(
                        n::ERR_INVALIDMODEPARAM,
                        &[chan, &c.to_string(), "*", &e.to_string()],
                    );
                    continue;
                }
            };
            if change == Change::ListBans {
                self.ban_list(chan);
                continue;
            }
            match self.hub.mode(self.id, chan, &change) {
                Ok(_) => {}
                Err(ErrorCode::NoSuchRoom) => {
                    self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"]);
                    return;
                }
                Err(ErrorCode::NotOperator | ErrorCode::NotInRoom) => {
                    self.num(
                        n::ERR_CHANOPRIVSNEEDED,
                        &[chan, "You're not channel operator"],
                    );
                    return;
                }
                Err(ErrorCode::NoSuchUser) => {
                    let nick = change.arg().unwrap_or_default();
                    self.num(n::ERR_NOSUCHNICK, &[&shown(&nick), "No such nick/channel"])
                }
                Err(ErrorCode::UserNotInRoom) => {
                    let nick = change.arg().unwrap_or_default();
                    self.num(
                        n::ERR_USERNOTINCHANNEL,
                        &[&shown(&nick), chan, "They aren't on that channel"],
                    )
                }
                Err(ErrorCode::ListFull) => self.num(
                    n::ERR_BANLISTFULL,
                    &[
                        chan,
                        &change.arg().unwrap_or_default(),
                        "Channel ban list is full",
                    ],
                ),
                Err(_) => self.num(
                    n::ERR_INVALIDMODEPARAM,
                    &[
                        chan,
                        "o",
                        &change.arg().unwrap_or_default(),
                        "A channel keeps at least one operator",
                    ],
                ),
            }
        }
    }

    /// `TAGMSG <target>`: its client-only tags (`+typing`, `+draft/react`...) go to the IRC
    /// users there with `message-tags`; a `+typing` goes to natives too, as `TYPING`.
    fn tagmsg(&mut self, target: Option<&str>, tags: Option<&[irc_proto::message::Tag]>) {
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            self.num(n::ERR_NEEDMOREPARAMS, &["TAGMSG", "Not enough parameters"]);
            return;
        };
        let relayed = client_tags(tags);
        let state = tags
            .unwrap_or_default()
            .iter()
            .find(|t| t.0 == "+typing")
            .and_then(|t| match t.1.as_deref() {
                Some("active") => Some("active"),
                Some("paused") => Some("paused"),
                Some("done") => Some("done"),
                _ => None,
            })
            .unwrap_or("");
        if relayed.is_empty() {
            return;
        }
        let place = if target.eq_ignore_ascii_case(&self.cfg.everyone_channel) {
            crate::event::Place::Everyone
        } else if proto::is_channel(target) {
            crate::event::Place::Room(target)
        } else {
            crate::event::Place::User(target)
        };
        match self.hub.typing(self.id, place, state, &relayed) {
            Ok(msgid) => {
                if self.caps.echo_message {
                    let at = self.caps.server_time.then(SystemTime::now);
                    let me = self.my_mask();
                    self.push(crate::event::tagmsg(&relayed, msgid, at, &me, target));
                }
            }
            Err(ErrorCode::NotInRoom) => {
                self.num(n::ERR_CANNOTSENDTOCHAN, &[target, "Cannot send to channel"])
            }
            Err(ErrorCode::NoSuchRoom) => {
                self.num(n::ERR_NOSUCHCHANNEL, &[&shown(target), "No such channel"])
            }
            Err(_) => self.num(n::ERR_NOSUCHNICK, &[&shown(target), "No such nick/channel"]),
        }
    }

    /// 367 for each ban of `chan`, then 368.
    fn ban_list(&mut self, chan: &str) {
        let mut out = BytesMut::new();
        let name = match self.hub.bans(self.id, chan) {
            Ok((name, bans)) => {
                for b in bans {
                    out.extend_from_slice(
                        &self.numeric(n::RPL_BANLIST, &[&name, &b.mask, &b.by, &b.at.to_string()]),
                    );
                }
                name.to_string()
            }
            Err(_) => shown(chan),
        };
        out.extend_from_slice(
            &self.numeric(n::RPL_ENDOFBANLIST, &[&name, "End of channel ban list"]),
        );
        self.push(out.freeze());
    }

    /// `INVITE nick #channel`: 341 to the inviter, an `INVITE` to the invited.
    fn invite(&mut self, nick: &str, chan: &str) {
        match self.hub.invite(self.id, chan, nick) {
            Ok((room, user)) => self.num(n::RPL_INVITING, &[&user, &room]),
            Err(ErrorCode::NoSuchRoom) => {
                self.num(n::ERR_NOSUCHCHANNEL, &[&shown(chan), "No such channel"])
            }
            Err(ErrorCode::NotInRoom) => self.num(
                n::ERR_NOTONCHANNEL,
                &[&shown(chan), "You're not on that channel"],
            ),
            Err(ErrorCode::NotOperator) => self.num(
                n::ERR_CHANOPRIVSNEEDED,
                &[chan, "You're not channel operator"],
            ),
            Err(ErrorCode::UserInRoom) => self.num(
                n::ERR_USERONCHANNEL,
                &[&shown(nick), chan, "is already on channel"],
            ),
            Err(_) => self.num(n::ERR_NOSUCHNICK, &[&shown(nick), "No such nick/channel"]),
        }
    }

    /// `MODE <own nick> [+w|-w]`: the one user mode natter has is `+w`, to get `WALLOPS`;
    /// others (irssi sends `+i`) change nothing.
    fn user_mode(&mut self, nick: &str, modes: &[Mode<UserMode>]) {
        if !name::same(nick, self.me()) {
            self.num(n::ERR_USERSDONTMATCH, &["Cant change mode for other users"]);
            return;
        }
        if modes.is_empty() {
            let modes = if self.caps.wallops { "+w" } else { "+" };
            self.num(n::RPL_UMODEIS, &[modes]);
            return;
        }
        let mut wallops = self.caps.wallops;
        for m in modes {
            match m {
                Mode::Plus(UserMode::Wallops, _) => wallops = true,
                Mode::Minus(UserMode::Wallops, _) => wallops = false,
                _ => {}
            }
        }
        if wallops != self.caps.wallops {
            self.caps.wallops = wallops;
            self.watched = true;
            self.hub.set_notify(self.id, self.caps.notify());
            let (me, mask) = (self.me().to_owned(), self.my_mask());
            let change = if wallops { "+w" } else { "-w" };
            self.push(irc_message(None, Some(&mask), "MODE", &[&me, change]));
        }
    }

    /// `WALLOPS <text>`: a server operator's message to the users with mode `+w` (on every
    /// node of a cluster); 481 for anyone else.
    fn wallops(&mut self, text: &str) {
        let Some(me) = self.as_operator() else {
            return;
        };
        match proto::to_natter_text(text).filter(|t| !t.trim().is_empty()) {
            Some(text) => {
                let told = self.hub.wallops(self.id, &text);
                info!(user = %me, told, "wallops");
            }
            None => self.num(n::ERR_NEEDMOREPARAMS, &["WALLOPS", "Not enough parameters"]),
        }
    }

    fn away(&mut self, msg: Option<&str>) {
        let msg = msg
            .and_then(proto::to_natter_text)
            .filter(|m| !m.trim().is_empty());
        self.hub.set_away(self.id, msg.as_deref());
        if msg.is_some() {
            self.num(n::RPL_NOWAWAY, &["You have been marked as being away"]);
        } else {
            self.num(n::RPL_UNAWAY, &["You are no longer marked as being away"]);
        }
    }

    fn ison(&mut self, nicks: &[String]) {
        let online: Vec<String> = nicks
            .iter()
            .flat_map(|n| n.split(' '))
            .filter_map(|n| self.hub.user(n).map(|u| u.name.to_string()))
            .collect();
        self.num(n::RPL_ISON, &[&online.join(" ")]);
    }

    fn userhost(&mut self, nicks: &[String]) {
        let found: Vec<String> = nicks
            .iter()
            .take(5)
            .filter_map(|n| self.hub.user(n))
            .map(|u| {
                let away = if u.away.is_some() { '-' } else { '+' };
                format!("{}={away}{}@natter", u.name, u.ident)
            })
            .collect();
        self.num(n::RPL_USERHOST, &[&found.join(" ")]);
    }

    /// `WHOWAS <nick> [count]`: who last held the nick, newest first (`314`, `312` with
    /// when they left it), then `369`; `406` first when nobody did lately.
    fn whowas(&mut self, nick: &str, count: Option<&str>) {
        let max = count
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|&c| c > 0)
            .map_or(WHOWAS_MAX, |c| c.min(WHOWAS_MAX));
        let mut out = BytesMut::new();
        let found = self.hub.whowas(nick, max);
        if found.is_empty() {
            out.extend_from_slice(&self.numeric(
                n::ERR_WASNOSUCHNICK,
                &[&shown(nick), "There was no such nickname"],
            ));
        }
        for g in &found {
            let real = match &g.real {
                Some(r) => r.to_string(),
                None if g.irc => "IRC user".to_owned(),
                None => "natter user".to_owned(),
            };
            out.extend_from_slice(&self.numeric(
                n::RPL_WHOWASUSER,
                &[&g.name, &g.ident, "natter", "*", &real],
            ));
            let when = crate::event::timestamp(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(g.at),
            );
            out.extend_from_slice(
                &self.numeric(n::RPL_WHOISSERVER, &[&g.name, &self.cfg.server_name, &when]),
            );
        }
        let shown_nick = found
            .first()
            .map_or_else(|| shown(nick), |g| g.name.to_string());
        out.extend_from_slice(&self.numeric(n::RPL_ENDOFWHOWAS, &[&shown_nick, "End of WHOWAS"]));
        self.push(out.freeze());
    }

    /// `MONITOR + - C L S`: be told when nicks come online and go offline (`730`, `731`).
    fn monitor(&mut self, sub: &str, targets: Option<&str>) {
        let nicks: Vec<&str> = targets
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
            .collect();
        let mut out = BytesMut::new();
        match (sub, targets) {
            ("+", Some(_)) => {
                self.watched = true;
                let m = self.hub.monitor_add(self.id, &nicks);
                self.write_monitored(&mut out, &m);
                if !m.refused.is_empty() {
                    let limit = MONITOR_LIMIT.to_string();
                    for chunk in comma_lists(m.refused.iter().map(String::as_str)) {
                        out.extend_from_slice(&self.numeric(
                            n::ERR_MONLISTFULL,
                            &[&limit, &chunk, "Monitor list is full."],
                        ));
                    }
                }
            }
            ("-", Some(_)) => self.hub.monitor_remove(self.id, &nicks),
            ("C" | "c", _) => self.hub.monitor_clear(self.id),
            ("L" | "l", _) => {
                let list = self.hub.monitor_list(self.id);
                for chunk in comma_lists(list.iter().map(String::as_str)) {
                    out.extend_from_slice(&self.numeric(n::RPL_MONLIST, &[&chunk]));
                }
                out.extend_from_slice(&self.numeric(n::RPL_ENDOFMONLIST, &["End of MONITOR list"]));
            }
            ("S" | "s", _) => {
                let m = self.hub.monitor_status(self.id);
                self.write_monitored(&mut out, &m);
            }
            ("+" | "-", None) => {
                self.num(n::ERR_NEEDMOREPARAMS, &["MONITOR", "Not enough parameters"])
            }
            // Unknown subcommands are ignored, as the specification leaves them.
            _ => {}
        }
        if !out.is_empty() {
            self.push(out.freeze());
        }
    }

    /// `730` for the nicks online, `731` for those offline, each list split to fit a line.
    fn write_monitored(&self, out: &mut BytesMut, m: &Monitored) {
        for chunk in comma_lists(m.online.iter().map(|m| &**m)) {
            out.extend_from_slice(&self.numeric(n::RPL_MONONLINE, &[&chunk]));
        }
        for chunk in comma_lists(m.offline.iter().map(String::as_str)) {
            out.extend_from_slice(&self.numeric(n::RPL_MONOFFLINE, &[&chunk]));
        }
    }

    /// `SETNAME :<real name>`: a new real name, told to those with `setname` who share a
    /// channel; `FAIL SETNAME INVALID_REALNAME` for an empty or over-long one.
    fn setname(&mut self, text: &str) {
        let real = real_name(text).filter(|r| r.len() <= REALLEN);
        let Some(real) = real else {
            self.fail(
                "SETNAME",
                "INVALID_REALNAME",
                &[],
                &format!("A real name is 1 to {REALLEN} bytes of text"),
            );
            return;
        };
        self.hub.set_real_name(self.id, &real, true);
        if self.caps.setname {
            let mask = self.my_mask();
            self.push(irc_message(None, Some(&mask), "SETNAME", &[&real]));
        }
    }
}

/// Whether `line`'s tags are over the 4094 bytes (without the `@` and the space after them)
/// that IRCv3 message-tags lets a client send; the 8191 bytes the parser takes are the limit
/// for a line with the server's tags added.
fn client_tags_too_long(line: &[u8]) -> bool {
    const MAX_CLIENT_TAGS: usize = 4094;
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    line[start..].strip_prefix(b"@").is_some_and(|tags| {
        let end = tags.iter().position(|&b| b == b' ').unwrap_or(tags.len());
        end > MAX_CLIENT_TAGS
    })
}

/// The client-only tags (`+name[=value]`) among `tags`, escaped again as they came, joined
/// with `;`, within what IRCv3 allows them (4094 bytes); an invalid `+typing` is dropped.
fn client_tags(tags: Option<&[irc_proto::message::Tag]>) -> String {
    let mut relayed = String::new();
    for irc_proto::message::Tag(k, v) in tags.unwrap_or_default() {
        if !k.starts_with('+')
            || k == "+typing" && !matches!(v.as_deref(), Some("active" | "paused" | "done"))
        {
            continue;
        }
        let tag = match v {
            Some(v) => format!("{k}={}", escape_tag(v)),
            None => k.clone(),
        };
        if relayed.len() + tag.len() + 1 > 4094 {
            break;
        }
        if !relayed.is_empty() {
            relayed.push(';');
        }
        relayed.push_str(&tag);
    }
    relayed
}

/// A tag value escaped as IRCv3 message tags write it.
fn escape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A member's prefix in NAMES and WHO: the highest, or every one with `multi-prefix`.
fn prefix(m: &MemberView, multi: bool) -> &'static str {
    status_prefix(m.op, m.voice, multi)
}

/// The prefix of a member who operates a channel (`op`) or has voice in it; both with
/// `multi-prefix`.
fn status_prefix(op: bool, voice: bool, multi: bool) -> &'static str {
    match (op, voice) {
        (true, true) if multi => "@+",
        (true, _) => "@",
        (false, true) => "+",
        (false, false) => "",
    }
}

/// The mode string and parameters irc-proto parsed, put back as the client sent them
/// (irc-proto gives `-l` a parameter and `-k` none, IRC the other way round).
fn mode_words(modes: &[Mode<ChannelMode>]) -> (String, Vec<&str>) {
    let mut out = String::new();
    let mut args = Vec::new();
    let mut sign = None;
    for m in modes {
        let (s, c, arg) = match m {
            Mode::Plus(c, a) => (Some('+'), c, a.as_deref()),
            Mode::Minus(c, a) => (Some('-'), c, a.as_deref()),
            Mode::NoPrefix(c) => (None, c, None),
        };
        if s != sign {
            if let Some(s) = s {
                out.push(s);
            }
            sign = s;
        }
        out.push_str(&c.to_string());
        args.extend(arg);
    }
    (out, args)
}

/// Joins `items` with commas into lists that each fit in a line with a numeric's prefix.
fn comma_lists<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    const MOST: usize = 400;
    let mut lists = Vec::new();
    let mut list = String::new();
    for item in items {
        if !list.is_empty() && list.len() + item.len() + 1 > MOST {
            lists.push(std::mem::take(&mut list));
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(item);
    }
    if !list.is_empty() {
        lists.push(list);
    }
    lists
}

/// A WHO entry's `nick!user@host`.
fn mask_of(e: &WhoEntry) -> Arc<str> {
    mask(&e.name, &e.ident)
}

/// A real name from the network as natter text, trimmed; `None` when nothing is left (or
/// it is a CTCP request).
fn real_name(text: &str) -> Option<String> {
    let text = proto::to_natter_text(text)?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The value of the tag `key` among `tags`, if it is there (an empty string for a tag
/// without a value).
fn tag_value<'t>(tags: Option<&'t [irc_proto::message::Tag]>, key: &str) -> Option<&'t str> {
    tags?
        .iter()
        .find(|irc_proto::message::Tag(k, _)| k == key)
        .map(|irc_proto::message::Tag(_, v)| v.as_deref().unwrap_or(""))
}

/// The command word of a parsed message, upper case.
fn irc_verb(cmd: &Command) -> String {
    let s = String::from(cmd);
    s.split(' ').next().unwrap_or("").to_ascii_uppercase()
}

impl Handler for IrcSession {
    fn on_line(&mut self, line: &[u8]) -> Flow {
        self.last_seen = Instant::now();
        if self.registered
            && self.hub.relays()
            && let Some(name) = self.hub.name_of(self.id)
            && self.nick.as_deref() != Some(&*name)
        {
            // The cluster renamed this user to settle a name held on two nodes.
            self.nick = Some(name);
        }
        let parsed = if client_tags_too_long(line) {
            Err(IrcError::TooLong)
        } else {
            proto::parse(line)
        };
        if let Ok(Some(msg)) = &parsed
            && let Some((target, text)) = self.gatherable(msg)
        {
            debug!(peer = %self.peer, user = self.nick.as_deref(), command = "PRIVMSG", "irc command");
            if self.gathered.as_ref().is_some_and(|g| g.target != target) {
                self.flush_gathered();
                if self.pending.is_some() {
                    self.deferred = Some(line.into());
                    return Flow::Continue;
                }
            }
            let g = self.gathered.get_or_insert_with(Box::default);
            if g.ends.is_empty() {
                target.clone_into(&mut g.target);
            }
            g.text.push_str(&text);
            g.ends.push(g.text.len());
            return Flow::Continue;
        }
        // Every other line comes after the messages gathered before it; if they must wait
        // for room in the store's queue, so does it.
        if self.gathered.is_some() {
            self.flush_gathered();
            if self.pending.is_some() {
                self.deferred = Some(line.into());
                return Flow::Continue;
            }
        }
        match parsed {
            Ok(None) => Flow::Continue,
            Ok(Some(mut msg)) => {
                let text = std::str::from_utf8(line).unwrap_or_default();
                let verb = proto::command_word(text.trim_start_matches(' ')).unwrap_or_default();
                if verb == "WHO" || verb == "BATCH" {
                    let args = proto::params(text).into_iter().map(str::to_owned).collect();
                    msg.command = Command::Raw(verb.clone(), args);
                }
                let label = msg.tags.as_deref().unwrap_or_default();
                let label = label.iter().find(|t| t.0 == "label");
                let label = label
                    .and_then(|t| t.1.clone())
                    .or_else(|| self.batch_label(&verb, &msg));
                self.start_label(label);
                let flow = self.in_label(|s| s.on_message(verb, msg));
                if self.closing { Flow::Close } else { flow }
            }
            Err(e) => {
                self.start_label(raw_label(line));
                self.in_label(|s| s.refused(e));
                Flow::Continue
            }
        }
    }

    fn on_too_long(&mut self) {
        self.last_seen = Instant::now();
        self.num(n::ERR_INPUTTOOLONG, &["Input line was too long"]);
    }

    fn deadline(&self) -> Option<Instant> {
        let ping = match self.ping_sent {
            Some(at) => at + self.cfg.ping_timeout,
            None => self.last_seen + self.cfg.ping_after,
        };
        Some(if self.registered {
            ping
        } else {
            ping.min(self.since + self.policy.register_timeout)
        })
    }

    fn on_deadline(&mut self) -> Flow {
        let now = Instant::now();
        if !self.registered && now >= self.since + self.policy.register_timeout {
            self.push(irc_message(
                None,
                None,
                "ERROR",
                &["Closing Link: (Registration timeout)"],
            ));
            return Flow::Close;
        }
        if let Some(sent) = self.ping_sent {
            if now >= sent + self.cfg.ping_timeout && self.last_seen < sent {
                let nick = self.nick.as_deref().unwrap_or("*").to_owned();
                self.leave_with("Ping timeout");
                self.push(irc_message(
                    None,
                    None,
                    "ERROR",
                    &[&format!("Closing Link: {nick} (Ping timeout)")],
                ));
                return Flow::Close;
            }
            if self.last_seen >= sent {
                self.ping_sent = None;
            }
        } else if now >= self.last_seen + self.cfg.ping_after {
            self.ping_sent = Some(now);
            let server = self.cfg.server_name.clone();
            self.push(irc_message(None, None, "PING", &[&server]));
        }
        Flow::Continue
    }

    fn leave(&mut self, end: End) {
        let reason = end.leave_reason();
        if let Some(p) = self.pending.take()
            && let Wait::Name(p) = *p
        {
            p.abandon(self.hub.clone(), self.id);
        }
        self.leave_with(reason);
        if self.watched {
            self.hub.unwatch(self.id);
        }
        self.hub.forget(self.id);
    }

    fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    fn answering(&self) -> bool {
        self.answer.is_some()
    }

    fn answer_more(&mut self) {
        self.in_label(Self::answer_page);
    }

    fn poll_resume(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Flow> {
        let flow = std::task::ready!(self.in_label(|s| s.resume(cx)));
        if flow == Flow::Continue
            && self.pending.is_none()
            && let Some(line) = self.deferred.take()
        {
            let flow = self.on_line(&line);
            // The input the line came with was all read before the wait: what it gathered
            // goes now.
            if self.pending.is_none() {
                self.flush_gathered();
            }
            return std::task::Poll::Ready(flow);
        }
        std::task::Poll::Ready(flow)
    }

    fn end_of_input(&mut self) {
        self.flush_gathered();
    }

    fn goodbye(&self, reason: ByeReason) -> Bytes {
        let why = match reason {
            ByeReason::Shutdown => "Server shutting down",
            ByeReason::SlowConsumer => "SendQ exceeded",
            ByeReason::Flood => "Excess Flood",
            ByeReason::Timeout => "Timeout",
            other => other.default_text(),
        };
        irc_message(
            None,
            None,
            "ERROR",
            &[&format!(
                "Closing Link: {} ({why})",
                self.nick.as_deref().unwrap_or("*")
            )],
        )
    }

    fn max_line(&self) -> usize {
        proto::MAX_FRAME
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn id(&self) -> ClientId {
        self.id
    }
}

impl IrcSession {
    /// Starts the labeled answer to the line being handled, if it came with a `label` (within
    /// bounds) from a client with `labeled-response` and `batch`.
    fn start_label(&mut self, label: Option<String>) {
        let Some(label) = label.filter(|l| !l.is_empty() && l.len() <= LABEL_LEN) else {
            return;
        };
        if !(self.caps.labeled_response && self.caps.batch) {
            return;
        }
        // The connection takes no line while an answer is still being written, so none is
        // open; should one be, it ends here rather than never.
        self.label_end();
        self.labeled = Some(Box::new(Labeled {
            label,
            batch: None,
            first: None,
            sent: false,
        }));
    }

    /// The label a `BATCH -<ref>` answers with: that of the `BATCH +<ref>` that opened it.
    fn batch_label(&mut self, verb: &str, msg: &irc_proto::Message) -> Option<String> {
        let Command::Raw(_, args) = &msg.command else {
            return None;
        };
        let reference = args.first()?.strip_prefix('-')?;
        if !verb.eq_ignore_ascii_case("BATCH") {
            return None;
        }
        let open = self.batch.as_mut().filter(|b| b.reference == reference)?;
        open.label.take()
    }

    /// Answers a line that could not be parsed.
    fn refused(&mut self, e: IrcError) {
        match e {
            IrcError::TooLong => self.num(n::ERR_INPUTTOOLONG, &["Input line was too long"]),
            IrcError::Utf8 => self.fail(
                "*",
                "INVALID_UTF8",
                &[],
                "Message rejected: this server takes UTF-8 only",
            ),
            IrcError::Malformed(verb) => match verb.as_deref() {
                Some("MODE") => self.num(n::ERR_UNKNOWNMODE, &["?", "is unknown mode char to me"]),
                Some(v) if KNOWN.contains(&v) => {
                    self.num(n::ERR_NEEDMOREPARAMS, &[v, "Not enough parameters"])
                }
                Some(v) => self.num(n::ERR_UNKNOWNCOMMAND, &[&shown(v), "Unknown command"]),
                None => self.num(n::ERR_UNKNOWNCOMMAND, &["*", "Malformed message"]),
            },
        }
    }

    /// Runs `f`; with a labeled answer being written, what `f` makes this client's outbox
    /// take on this thread (its own lines, and what the hub wrote for it, under its lock
    /// or not) joins the answer, which ends once nothing more is to come.
    fn in_label<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        if self.labeled.is_none() {
            return f(self);
        }
        self.outbox.capture();
        let out = f(self);
        let lines = self.outbox.captured();
        self.label_lines(lines);
        if !self.waiting() && !self.answering() {
            self.label_end();
        }
        out
    }

    /// Queues `chunks` as part of the labeled answer: the first line is held back until a
    /// second shows the answer needs a batch, which then opens with the label.
    fn label_lines(&mut self, chunks: Vec<Bytes>) {
        let Some(mut l) = self.labeled.take() else {
            chunks.into_iter().for_each(|c| self.push(c));
            return;
        };
        if l.sent {
            self.labeled = Some(l);
            chunks.into_iter().for_each(|c| self.push(c));
            return;
        }
        let mut out = BytesMut::new();
        // An answer that is a multi-line message's echo carries the label on that batch's
        // start, as draft/multiline has it, not inside a labeled-response batch.
        if l.first.is_none()
            && let [chunk] = &chunks[..]
            && is_multiline_batch(chunk)
        {
            let mut lines = lines_of(chunk);
            if let Some(start) = lines.next() {
                add_tag(&mut out, &start, &format!("label={}", escape_tag(&l.label)));
            }
            lines.for_each(|line| out.extend_from_slice(&line));
            l.sent = true;
            self.labeled = Some(l);
            self.push(out.freeze());
            return;
        }
        for line in chunks.iter().flat_map(lines_of) {
            if l.batch.is_none() {
                let Some(first) = l.first.take() else {
                    l.first = Some(line);
                    continue;
                };
                self.batches += 1;
                let id = format!("lr{}", self.batches);
                let start = self.server_msg("BATCH", &[&format!("+{id}"), "labeled-response"]);
                add_tag(&mut out, &start, &format!("label={}", escape_tag(&l.label)));
                add_tag(&mut out, &first, &format!("batch={id}"));
                l.batch = Some(id);
            }
            match &l.batch {
                // A line of a batch inside this one (history) stays in that one.
                _ if has_batch_tag(&line) => out.extend_from_slice(&line),
                Some(id) => add_tag(&mut out, &line, &format!("batch={id}")),
                None => {}
            }
        }
        self.labeled = Some(l);
        if !out.is_empty() {
            self.push(out.freeze());
        }
    }

    /// Ends the labeled answer: closes its batch, or sends its one line labeled, or `ACK`.
    fn label_end(&mut self) {
        let Some(l) = self.labeled.take() else {
            return;
        };
        if l.sent {
            return;
        }
        let label = format!("label={}", escape_tag(&l.label));
        let mut out = BytesMut::new();
        match (l.batch, l.first) {
            (Some(id), _) => out.extend_from_slice(&self.server_msg("BATCH", &[&format!("-{id}")])),
            (None, Some(first)) => add_tag(&mut out, &first, &label),
            (None, None) => add_tag(&mut out, &self.server_msg("ACK", &[]), &label),
        }
        self.push(out.freeze());
    }

    /// [`Handler::poll_resume`]'s work: finishes what a line began once what it waited for
    /// (a cluster's answer about a nick, an account request, a store read) has come.
    fn resume(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Flow> {
        use std::task::Poll;
        let Some(wait) = self.pending.as_mut() else {
            return Poll::Ready(Flow::Continue);
        };
        let p = match &mut **wait {
            Wait::Account(a) => {
                let Poll::Ready(outcome) = a.poll(cx) else {
                    return Poll::Pending;
                };
                self.pending = None;
                self.account_done(outcome);
                return Poll::Ready(if self.closing {
                    Flow::Close
                } else {
                    Flow::Continue
                });
            }
            Wait::Later(l) => {
                let Poll::Ready(answer) = l.poll(cx) else {
                    return Poll::Pending;
                };
                self.pending = None;
                if !answer.is_empty() {
                    self.push(answer);
                }
                return Poll::Ready(Flow::Continue);
            }
            Wait::Name(p) => p,
        };
        let Poll::Ready(answer) = p.poll(cx) else {
            return Poll::Pending;
        };
        let Some(Wait::Name(p)) = self.pending.take().map(|w| *w) else {
            return Poll::Ready(Flow::Continue);
        };
        match answer {
            Some(true) if self.registered => self.rename(&p.name, Some(p.key)),
            Some(true) => self.register(&p.name, Some(p.key)),
            Some(false) => self.nick_in_use(&p.name),
            None => {
                tracing::warn!(peer = %self.peer, "the cluster did not answer a nick claim in time");
                self.hub.release(p.key, self.id);
                self.nick_in_use(&p.name);
            }
        }
        Poll::Ready(if self.closing {
            Flow::Close
        } else {
            Flow::Continue
        })
    }
}

/// Each line of `chunk` (lines end with LF), sharing its bytes.
fn lines_of(chunk: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= chunk.len() {
            return None;
        }
        let end = chunk[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(chunk.len(), |i| at + i + 1);
        let line = chunk.slice(at..end);
        at = end;
        Some(line)
    })
}

/// Writes `line` into `out` with the tag `tag` (`key=value`, escaped) first among its tags.
fn add_tag(out: &mut BytesMut, line: &[u8], tag: &str) {
    out.extend_from_slice(b"@");
    out.extend_from_slice(tag.as_bytes());
    match line.strip_prefix(b"@") {
        Some(rest) => {
            out.extend_from_slice(b";");
            out.extend_from_slice(rest);
        }
        None => {
            out.extend_from_slice(b" ");
            out.extend_from_slice(line);
        }
    }
}

/// Whether `chunk` is one multi-line message's batch, whole: its first line opens
/// `BATCH +<ref> draft/multiline`, its last closes `BATCH -<ref>`.
fn is_multiline_batch(chunk: &[u8]) -> bool {
    // The command and its parameters, past the tags and the source.
    fn words(line: &str) -> Vec<&str> {
        line.trim_end()
            .split(' ')
            .filter(|w| !w.is_empty())
            .skip_while(|w| w.starts_with('@') || w.starts_with(':'))
            .take(3)
            .collect()
    }
    let Ok(text) = std::str::from_utf8(chunk) else {
        return false;
    };
    let mut lines = text.split_terminator('\n');
    let (Some(first), Some(last)) = (lines.next(), lines.next_back()) else {
        return false;
    };
    match (&words(first)[..], &words(last)[..]) {
        (["BATCH", open, "draft/multiline", ..], ["BATCH", close]) => {
            open.len() > 1 && open.strip_prefix('+') == close.strip_prefix('-')
        }
        _ => false,
    }
}

/// Whether `line` carries a `batch` tag.
fn has_batch_tag(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"@") else {
        return false;
    };
    let tags = rest.split(|&b| b == b' ').next().unwrap_or_default();
    tags.split(|&b| b == b';').any(|t| t.starts_with(b"batch="))
}

/// The `label` of a line that could not be parsed, if its tags can be read.
fn raw_label(line: &[u8]) -> Option<String> {
    let tags = line.strip_prefix(b"@")?.split(|&b| b == b' ').next()?;
    let value = tags
        .split(|&b| b == b';')
        .find_map(|t| t.strip_prefix(b"label="))?;
    let value = std::str::from_utf8(value).ok()?;
    // Unescaped as IRCv3 message tags write values (see `escape_tag`).
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}
