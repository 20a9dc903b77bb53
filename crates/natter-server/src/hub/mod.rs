//! The hub: who is registered, which rooms exist, and fan-out of every event to the right
//! outboxes.
//!
//! All routing state sits behind one `RwLock`. Every message (MESSAGE, DM, SAY) takes it for
//! reading only, so messages from different clients never wait for each other; only changes of
//! membership (register, rename, join, part, kick, topic, leave) take it for writing, briefly.
//! It is a std lock, never held across an `.await`: pushing to an outbox never waits, so
//! neither does fan-out.
//!
//! Everyone and every room are the same thing, an [`Audience`]: a vector of seats, each holding
//! its member's outbox and how it wants lines written. An event is rendered at most once per
//! flavor ([`Lines`]) and every seat's outbox gets a reference-counted handle to the same
//! bytes, so a delivery costs the same in a busy room as in Everyone.
//!
//! Membership events are pushed while the write lock is held, so every client sees membership
//! change in one global order, consistent with the messages around it. The one exception is
//! arrivals: a new native user's `ONLINE` is gathered with the arrivals that follow it and
//! pushed as one buffer per member ([`Hub::announce_arrivals`]), before anything else the hub
//! or a session pushes, so that order is kept while a crowd arriving costs each member one
//! queued buffer per gathering instead of one line per arrival.
//!
//! IRC users take part in Everyone through a channel (`IrcNames::everyone`) that they may
//! leave; natives are always in Everyone. IRC users see presence only for people they share a
//! channel with, as IRC clients expect.

mod audience;
mod linger;
mod mirror;
mod moderation;
mod modes;
mod names;
mod typing;
pub mod watch;

pub use modes::{Ban, MAX_BANS, ModesView};

use crate::account::Accounts;
use crate::backplane::{Backplane, Local, Op};
use crate::client_id::{ClientId, is_local};
use crate::event::{Batch, Event, Flavor, IrcNames, Lines, NativesOnly, Render, Who};
use crate::history::{History, Keeping};
use crate::kept::{Keeper, KeptRoom, KeptTopic};
use crate::outbox::{Outbox, Pushed};
use crate::stats::Stats;
use audience::{Audience, Link, Seat, Seating, Sent};
use bytes::Bytes;
use natter_proto::command::Target as HistoryTarget;
use natter_proto::{ErrorCode, name, room as room_name};
use natter_store::Logged;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Limits on rooms, all configurable.
#[derive(Debug, Clone)]
pub struct RoomLimits {
    /// Most rooms one user may be in at once.
    pub per_user: usize,
    /// Most members one room may have.
    pub members: usize,
    /// Most rooms that may exist at once.
    pub rooms: usize,
    /// Most rooms the users of one address may have created that exist at once, so one
    /// address cannot use up `rooms` for everyone.
    pub per_address: usize,
    /// Longest topic, in bytes.
    pub topic_bytes: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            per_user: 100,
            members: 100_000,
            rooms: 10_000,
            per_address: 1_000,
            topic_bytes: natter_proto::limits::DEFAULT_MAX_TOPIC_BYTES,
        }
    }
}

/// Shared routing state; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Hub {
    /// The accounts: which names are reserved, logins.
    accounts: Arc<Accounts>,
    /// Whether names that look like others in use (or accounts') are refused.
    refuse_lookalikes: bool,
    /// Users and rooms; see the module docs for the locking rule.
    state: RwLock<State>,
    /// Counters for logs and metrics.
    stats: Arc<Stats>,
    /// Set when the server shuts down: leaves are then not announced, since everyone is
    /// leaving and announcing each to all would cost the square of the number of clients.
    closing: AtomicBool,
    /// Room limits.
    limits: RoomLimits,
    /// Names the IRC side renders with.
    irc: IrcNames,
    /// Where changes go that other nodes must see.
    backplane: Arc<dyn Backplane>,
    /// Cached `backplane.relays()`: a single process builds no operations at all.
    relays: bool,
    /// The outbox every ghost shares; nothing is ever pushed to it.
    ghost_outbox: Arc<Outbox>,
    /// Arrivals not yet announced. Locked after the state lock, before any outbox.
    arrivals: Mutex<Arrivals>,
    /// Whether `arrivals` holds any; set and cleared under the state lock, which orders it,
    /// so the common case costs one load.
    arriving: AtomicBool,
    /// Woken by the first arrival of a gathering, for [`Hub::announce_arrivals_until`].
    arrived: Notify,
    /// Whether IRC users are put into the everyone channel when they register.
    irc_auto_join: bool,
    /// Up to how many members the everyone channel tells its IRC members of comings and
    /// goings (see [`Hub::everyone_quiet`]).
    irc_everyone_presence: usize,
    /// How sessions wait to be resumed.
    linger: Linger,
    /// The message log, if messages are kept.
    history: Option<Arc<History>>,
    /// Where rooms that stay are written, if anywhere.
    keeper: Option<Keeper>,
}

/// How long sessions wait to be resumed, and how much a waiting session keeps.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    /// How long a session whose connection was lost waits for its client.
    pub time: Duration,
    /// The outbox bound of a restored session (a connection's, from the policy).
    pub outbox_limit: usize,
}

impl Default for Linger {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(60),
            outbox_limit: 256 * 1024,
        }
    }
}

/// What the hub keeps of a token: its SHA-256 (a token is 256 random bits, so a fast hash
/// suffices and nobody who reads memory or the store can resume with it).
type TokenHash = [u8; 32];

/// New native users whose `ONLINE` has not been pushed yet.
#[derive(Debug, Default)]
struct Arrivals {
    /// Everyone's size before the first of them. Their own seats follow in arrival order,
    /// since everything else that changes Everyone announces the arrivals first.
    base: usize,
    /// The arrivals, in the order they registered.
    ids: Vec<ClientId>,
}

/// How long arrivals may wait to be gathered while a crowd is arriving. A lone arrival is
/// announced at once; after that, announcements come at most this often, so ten thousand
/// clients arriving cost each member a few hundred writes instead of ten thousand.
const GATHER_ARRIVALS: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct State {
    /// Registered users by connection.
    users: HashMap<ClientId, User>,
    /// Registered users by folded name: the uniqueness of names.
    names: BTreeMap<Arc<str>, ClientId>,
    /// Everyone: every native user and the IRC users in the everyone channel.
    everyone: Audience,
    /// Everyone's names as NAMES lists them, kept ready for IRC arrivals.
    everyone_names: names::NamesCache,
    /// Rooms by folded name.
    rooms: BTreeMap<String, Room>,
    /// How many of the existing rooms were created from each address (limited ones only).
    rooms_by: HashMap<IpAddr, usize>,
    /// Orders joins, so the longest-standing member can take over a room.
    joins: u64,
    /// Ghosts by their node and their id there.
    ghosts: HashMap<(Arc<str>, u64), ClientId>,
    /// The node and remote id of every ghost.
    ghost_of: HashMap<ClientId, (Arc<str>, u64)>,
    /// Ghosts whose name a local user still holds (only after the backplane lost its names);
    /// they appear once the local loser is renamed or leaves.
    parked: HashMap<(Arc<str>, u64), Parked>,
    /// Source of ghost ids.
    next_ghost: u64,
    /// The skeletons of the names in use, for refusing lookalikes.
    shapes: crate::shape::Shapes,
    /// The user of each connection whose user's id is not its own: an account's second
    /// and later connections, and a first one that left them to be someone else.
    person_of: HashMap<ClientId, ClientId>,
    /// Source of made-up user ids ([`crate::client_id::PERSON`]).
    next_person: u64,
    /// The users that can be resumed, by the SHA-256 of each resume token.
    resumable: HashMap<TokenHash, ClientId>,
    /// Each resumable user's tokens' hashes.
    tokens_of: HashMap<ClientId, Vec<TokenHash>>,
    /// Users whose connection was lost, waiting to be resumed, each with the number of its
    /// wait (so that an old wait's end does not end a new one).
    lingering: HashMap<ClientId, u64>,
    /// Source of those numbers.
    next_linger: u64,
    /// IRC's MONITOR lists, and who hears of away and real-name changes.
    watchers: crate::watch::Watchers,
    /// Recent departures, for WHOWAS.
    whowas: crate::whowas::Whowas,
}

/// A ghost waiting for its name.
#[derive(Debug)]
struct Parked {
    name: String,
    ident: String,
    irc: bool,
    everyone: bool,
}

/// A registered user.
#[derive(Debug)]
struct User {
    /// The name as the user typed it (case kept).
    name: Arc<str>,
    /// Where lines for this user go.
    outbox: Arc<Outbox>,
    /// How this user wants lines written.
    flavor: Flavor,
    /// Whether the user is in the Everyone audience.
    in_everyone: bool,
    /// Whether the user speaks IRC (a ghost's flavor does not say).
    irc: bool,
    /// Whether the user is logged into an account (holds an account's name).
    account: bool,
    /// Folded names of the rooms the user is in.
    rooms: Vec<String>,
    /// What few users have (an IRC user name, an away message, several connections), boxed
    /// so that the many without pay one word for it.
    rare: Option<Box<RareUser>>,
}

/// The parts of a user that most users lack.
#[derive(Debug, Default)]
struct RareUser {
    /// The IRC user name (`ident`), shown in masks and WHOIS, if it is not the name (a
    /// native's follows its name).
    ident: Option<Arc<str>>,
    /// The away message, if the user set one (IRC AWAY).
    away: Option<Arc<str>>,
    /// Every connection of a user who has several; `outbox` and `flavor` are the first's.
    links: Option<Arc<Vec<Link>>>,
    /// The real name an IRC user gave (`USER`, `SETNAME`).
    real: Option<Arc<str>>,
}

impl RareUser {
    fn is_empty(&self) -> bool {
        self.ident.is_none() && self.away.is_none() && self.links.is_none() && self.real.is_none()
    }
}

impl User {
    fn new(
        name: Arc<str>,
        ident: Option<Arc<str>>,
        outbox: Arc<Outbox>,
        flavor: Flavor,
        in_everyone: bool,
        irc: bool,
        account: bool,
    ) -> Self {
        let mut user = User {
            name,
            outbox,
            flavor,
            in_everyone,
            irc,
            account,
            rooms: Vec::new(),
            rare: None,
        };
        user.set_ident(ident);
        user
    }

    fn who(&self) -> Who<'_> {
        Who {
            name: &self.name,
            ident: self.ident(),
            account: self.account,
            real: self.rare.as_ref().and_then(|r| r.real.as_deref()),
        }
    }

    /// The IRC user name: the name itself for a native.
    fn ident(&self) -> &Arc<str> {
        self.rare
            .as_ref()
            .and_then(|r| r.ident.as_ref())
            .unwrap_or(&self.name)
    }

    /// The away message, if any.
    fn away(&self) -> Option<&Arc<str>> {
        self.rare.as_ref().and_then(|r| r.away.as_ref())
    }

    /// Every connection, if the user has several.
    fn links(&self) -> Option<&Arc<Vec<Link>>> {
        self.rare.as_ref().and_then(|r| r.links.as_ref())
    }

    /// Changes the rare parts, keeping the box only while something is in it.
    fn change_rare(&mut self, f: impl FnOnce(&mut RareUser)) {
        let mut rare = self.rare.take().unwrap_or_default();
        f(&mut rare);
        if !rare.is_empty() {
            self.rare = Some(rare);
        }
    }

    /// Sets the IRC user name (`None`, or the name itself: it follows the name).
    fn set_ident(&mut self, ident: Option<Arc<str>>) {
        let ident = ident.filter(|i| !Arc::ptr_eq(i, &self.name));
        if ident.is_some() || self.rare.is_some() {
            self.change_rare(|r| r.ident = ident);
        }
    }

    fn set_away(&mut self, away: Option<Arc<str>>) {
        self.change_rare(|r| r.away = away);
    }

    fn set_links(&mut self, links: Option<Arc<Vec<Link>>>) {
        self.change_rare(|r| r.links = links);
    }

    fn take_links(&mut self) -> Option<Arc<Vec<Link>>> {
        let mut links = None;
        self.change_rare(|r| links = r.links.take());
        links
    }

    fn seat(&self, id: ClientId, op: bool, since: u64) -> Seating {
        let seat = Seat {
            id,
            outbox: self.outbox.clone(),
            flavor: self.flavor,
            op,
            voice: false,
            since,
            linked: false,
        };
        (seat, self.links().cloned())
    }

    /// Each connection of the user as (connection, outbox, flavor); `id` is the user's.
    fn each(&self, id: ClientId) -> impl Iterator<Item = (ClientId, &Arc<Outbox>, Flavor)> {
        let links = self.links();
        let one = links.is_none().then_some((id, &self.outbox, self.flavor));
        let many = links
            .into_iter()
            .flat_map(|l| l.iter().map(|l| (l.id, &l.outbox, l.flavor)));
        one.into_iter().chain(many)
    }

    /// The outbox of the user's connection `conn` (the first's if it has no other).
    fn outbox_of(&self, conn: ClientId) -> &Arc<Outbox> {
        self.links()
            .and_then(|l| l.iter().find(|l| l.id == conn))
            .map_or(&self.outbox, |l| &l.outbox)
    }
}

/// The key of `name` in the index of names, `key` being its folded form: the name itself when
/// it is folded already (as most are), so that the index costs no second copy.
fn name_key(key: String, name: &Arc<str>) -> Arc<str> {
    if key == **name {
        name.clone()
    } else {
        Arc::from(key)
    }
}

/// The IRC source mask of a user: `name!ident@natter`.
pub fn mask(name: &str, ident: &str) -> Arc<str> {
    Arc::from(
        Who {
            name,
            ident,
            account: false,
            real: None,
        }
        .mask(),
    )
}

/// A room.
#[derive(Debug)]
struct Room {
    /// The name as its creator typed it.
    name: Arc<str>,
    /// The address its creator came from, while it counts against that address's rooms.
    by: Option<IpAddr>,
    /// The topic, if one is set.
    topic: Option<RoomTopic>,
    /// The members.
    members: Audience,
    /// The folded names of the accounts that operate it, if it stays (see [`crate::kept`]).
    kept: Option<Vec<String>>,
    /// Its bans, invitations, key, limit and flags.
    modes: modes::RoomModes,
}

impl Room {
    /// A room made now, empty, with a new room's modes.
    fn new(name: &str, by: Option<IpAddr>) -> Room {
        Room {
            name: Arc::from(name),
            by,
            topic: None,
            members: Audience::default(),
            kept: None,
            modes: modes::RoomModes::new(now_secs()),
        }
    }
}

/// A room's topic and who set it.
#[derive(Debug, Clone)]
pub struct RoomTopic {
    /// Who set it.
    pub by: Arc<str>,
    /// The topic.
    pub text: Arc<str>,
    /// When it was set, in seconds since the Unix epoch (IRC shows it).
    pub at: u64,
}

/// What a successful REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// First registration under this name.
    New,
    /// A rename from the previous name.
    Renamed {
        /// The name before.
        old: Arc<str>,
    },
    /// The client already had exactly this name.
    Unchanged,
    /// The client logged into an account already online from another connection, and is
    /// now one more connection of that user: nobody else was told.
    Attached,
}

/// A room as ROOMS and LIST show it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    /// The room's name.
    pub name: Arc<str>,
    /// How many members it has.
    pub members: usize,
    /// Its topic, if any.
    pub topic: Option<Arc<str>>,
}

/// One member as JOIN, WHO and NAMES show it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// The member's name.
    pub name: Arc<str>,
    /// The member's IRC user name.
    pub ident: Arc<str>,
    /// Whether the member is an operator of the room.
    pub op: bool,
    /// Whether the member has voice.
    pub voice: bool,
    /// Whether the member set an away message.
    pub away: bool,
}

/// A room (or the everyone channel) as its members are shown.
#[derive(Debug, Clone)]
pub struct RoomView {
    /// The room's name.
    pub name: Arc<str>,
    /// Its topic, if any.
    pub topic: Option<RoomTopic>,
    /// Its members, operators first, then by name ignoring case.
    pub members: Vec<MemberView>,
}

/// A user as WHOIS and USERHOST show it.
#[derive(Debug, Clone)]
pub struct UserView {
    /// The name.
    pub name: Arc<str>,
    /// The IRC user name.
    pub ident: Arc<str>,
    /// Whether the user speaks IRC (or else natter's line protocol).
    pub irc: bool,
    /// The rooms the user is in, `@` before those they operate.
    pub rooms: Vec<String>,
    /// The away message, if any.
    pub away: Option<Arc<str>>,
    /// Whether the user is logged into its name's account.
    pub account: bool,
}

/// What a registering client's own answer may show, read under the hub's lock.
#[derive(Debug)]
pub struct Welcome<'a> {
    /// The name as registered.
    pub name: &'a str,
    /// How many rooms there are.
    pub rooms: usize,
    /// The everyone channel as the user joins it, for an IRC user put into it on
    /// registration.
    pub everyone: Option<NamesView<'a>>,
    /// The rooms the user is in already, for a connection that joined an account online
    /// elsewhere.
    pub joined: &'a [RoomView],
}

/// The everyone channel's members as NAMES lists them.
#[derive(Debug, Clone, Copy)]
pub struct NamesView<'a> {
    /// The channel's name.
    pub name: &'a str,
    /// The names, joined by spaces into lines that fit a 353 reply.
    pub lines: &'a [String],
    /// The channel's size if it is too large to list on joining or to announce comings and
    /// goings in (see [`Hub::everyone_quiet`]): `lines` then holds the joiner alone.
    pub quiet: Option<usize>,
}

/// One page of a long answer (see [`Hub::names_page`]).
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The entries, in order.
    pub items: Vec<T>,
    /// The key of the last entry, to ask for the next page with.
    pub last: Option<String>,
    /// Whether this is the last page.
    pub done: bool,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            last: None,
            done: true,
        }
    }
}

/// Up to `max` entries of `map` after the key `after`, in order, each made an item by `item`
/// (which may skip it).
fn page_of<K, V, T>(
    map: &BTreeMap<K, V>,
    after: Option<&str>,
    max: usize,
    mut item: impl FnMut(&V) -> Option<T>,
) -> Page<T>
where
    K: std::borrow::Borrow<str> + Ord,
{
    let range = match after {
        Some(a) => map.range::<str, _>((Bound::Excluded(a), Bound::Unbounded)),
        None => map.range::<str, _>(..),
    };
    let mut page = Page::default();
    let mut seen = 0;
    for (key, v) in range.take(max) {
        seen += 1;
        page.items.extend(item(v));
        page.last = Some(key.borrow().to_owned());
    }
    page.done = seen < max;
    page
}

/// How members are ordered when shown: operators first, then by folded name.
fn member_key(op: bool, name: &str) -> String {
    let mut k = String::with_capacity(name.len() + 1);
    k.push(if op { '0' } else { '1' });
    k.push_str(&name::fold(name));
    k
}

/// The first `max` members of `audience` after the key `after`, in member order (see
/// [`member_key`]), each with its key, user and seat.
fn first_seats<'s>(
    st: &'s State,
    audience: &'s Audience,
    after: Option<&str>,
    max: usize,
) -> Vec<(String, &'s User, &'s Seat)> {
    let mut next: Vec<(String, &User, &Seat)> = audience
        .seats
        .iter()
        .filter_map(|s| {
            st.users
                .get(&s.id)
                .map(|u| (member_key(s.op, &u.name), u, s))
        })
        .filter(|(k, _, _)| after.is_none_or(|a| k.as_str() > a))
        .collect();
    if next.len() > max {
        next.select_nth_unstable_by(max - 1, |a, b| a.0.cmp(&b.0));
        next.truncate(max);
    }
    next.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    next
}

/// How many a message reached, and the message on its way into the log if it is kept.
pub type Reached = (usize, Option<Keeping>);

/// Who a DM reached.
#[derive(Debug)]
pub struct DmTarget {
    /// The recipient's name as registered.
    pub name: Arc<str>,
    /// The recipient's away message, if any (IRC answers 301 with it).
    pub away: Option<Arc<str>>,
    /// The messages on their way into the log, if they are kept (between two accounts).
    pub kept: Option<Keeping>,
    /// Whether the recipient is an account that is offline, for which the messages wait.
    pub queued: bool,
}

/// The user `conn` is a connection of: its own id, unless it is one of an account's several
/// connections or left them.
fn pid(st: &State, conn: ClientId) -> ClientId {
    if st.person_of.is_empty() {
        return conn;
    }
    st.person_of.get(&conn).copied().unwrap_or(conn)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Hub {
    /// An empty hub reporting to `stats`.
    pub fn new(
        stats: Arc<Stats>,
        limits: RoomLimits,
        irc: IrcNames,
        accounts: Arc<Accounts>,
    ) -> Self {
        Self {
            accounts,
            refuse_lookalikes: true,
            state: RwLock::new(State {
                // What a 353 leaves for names: ":<server> 353 <nick> = <channel> :" and CRLF
                // around them, for the longest nick.
                everyone_names: names::NamesCache::new(natter_proto::irc::MAX_LINE.saturating_sub(
                    irc.server.len() + irc.everyone.len() + natter_proto::limits::MAX_NAME_LEN + 15,
                )),
                ..State::default()
            }),
            stats,
            closing: AtomicBool::new(false),
            limits,
            irc,
            backplane: Arc::new(Local),
            relays: false,
            ghost_outbox: Arc::new(Outbox::new(0)),
            arrivals: Mutex::default(),
            arriving: AtomicBool::new(false),
            arrived: Notify::new(),
            irc_auto_join: true,
            irc_everyone_presence: usize::MAX,
            linger: Linger::default(),
            history: None,
            keeper: None,
        }
    }

    /// A hub that refuses names that look like others (`aIice` beside `alice`), or not.
    pub fn with_lookalikes_refused(mut self, on: bool) -> Self {
        self.refuse_lookalikes = on;
        self
    }

    /// A hub whose IRC users are put into the everyone channel on registration, or not.
    pub fn with_irc_auto_join(mut self, on: bool) -> Self {
        self.irc_auto_join = on;
        self
    }

    /// A hub whose everyone channel stops telling its IRC members of comings and goings
    /// beyond `members` members (see [`Hub::everyone_quiet`]).
    pub fn with_irc_everyone_presence(mut self, members: usize) -> Self {
        self.irc_everyone_presence = members;
        self
    }

    /// A hub whose rooms that stay (see [`crate::kept`]) are written by `keeper`.
    pub fn with_keeper(mut self, keeper: Keeper) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// Where rooms that stay are written, if anywhere.
    pub fn keeper(&self) -> Option<&Keeper> {
        self.keeper.as_ref()
    }

    /// Puts back the rooms that stay, as the store kept them, empty; returns how many.
    pub fn restore_rooms(&self, rooms: Vec<KeptRoom>) -> usize {
        let mut guard = self.write();
        let st = &mut *guard;
        let mut n = 0;
        for k in rooms {
            if room_name::validate(&k.name).is_err() || self.is_everyone(&k.name) {
                continue;
            }
            n += 1;
            st.rooms.insert(
                room_name::fold(&k.name),
                Room {
                    name: Arc::from(k.name.as_str()),
                    by: None,
                    topic: k.topic.map(|t| RoomTopic {
                        by: Arc::from(t.by.as_str()),
                        text: Arc::from(t.text.as_str()),
                        at: t.at,
                    }),
                    members: Audience::default(),
                    modes: modes::RoomModes::restored(k.modes.as_deref(), &k.bans, now_secs()),
                    kept: Some(k.operators),
                },
            );
        }
        self.stats.set_rooms(st.rooms.len());
        n
    }

    /// Writes room `key` as it is now, if it stays (or forgets it, if it no longer does).
    fn write_room(&self, key: &str, r: &Room) {
        let Some(keeper) = &self.keeper else {
            return;
        };
        let kept = r.kept.as_ref().map(|ops| {
            let (modes, bans) = r.modes.kept();
            KeptRoom {
                name: r.name.to_string(),
                topic: r.topic.as_ref().map(|t| KeptTopic {
                    by: t.by.to_string(),
                    text: t.text.to_string(),
                    at: t.at,
                }),
                operators: ops.to_vec(),
                modes,
                bans,
            }
        });
        keeper.put(key, kept.as_ref());
    }

    /// Makes account `account` (a folded name) one of room `key`'s kept operators: the room
    /// stays from then on. It no longer counts against its creator's address.
    fn keep_operator(
        &self,
        rooms_by: &mut HashMap<IpAddr, usize>,
        key: &str,
        r: &mut Room,
        account: String,
    ) {
        let ops = r.kept.get_or_insert_with(Vec::new);
        if ops.contains(&account) {
            return;
        }
        ops.push(account);
        if let Some(ip) = r.by.take()
            && let Some(n) = rooms_by.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                rooms_by.remove(&ip);
            }
        }
        self.write_room(key, r);
    }

    /// Account `account` (a folded name) is gone: it operates no room any more. A room left
    /// with no account among its operators no longer stays; an empty one goes at once.
    fn forget_operator(&self, st: &mut State, account: &str) {
        let mut empty = Vec::new();
        for (key, r) in st.rooms.iter_mut() {
            let Some(ops) = r.kept.as_mut() else {
                continue;
            };
            if !ops.iter().any(|o| o == account) {
                continue;
            }
            ops.retain(|o| o != account);
            if ops.is_empty() {
                r.kept = None;
                if r.members.len() == 0 {
                    empty.push(key.clone());
                }
            }
            self.write_room(key, r);
        }
        for key in empty {
            Self::remove_room(st, &key);
        }
        self.stats.set_rooms(st.rooms.len());
    }

    /// A hub that keeps its users' messages in `history`.
    pub fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = Some(history).filter(|h| h.enabled());
        self
    }

    /// The message log, if messages are kept.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// The log's key for `target` if user `conn` may read its history, and how the answer
    /// names it: Everyone for every registered user, a room for its members, and the
    /// conversation with an account for an account.
    pub fn history_target(
        &self,
        conn: ClientId,
        target: HistoryTarget<'_>,
    ) -> Result<(String, String), (ErrorCode, String)> {
        let st = self.read();
        let id = pid(&st, conn);
        let me = st
            .users
            .get(&id)
            .ok_or((ErrorCode::NotRegistered, "register first".to_owned()))?;
        match target {
            HistoryTarget::Everyone => Ok((natter_store::EVERYONE.into(), "*".into())),
            HistoryTarget::Room(room) => {
                let key = room_name::fold(room);
                match st.rooms.get(&key) {
                    Some(r) if r.members.contains(id) => Ok((key, r.name.to_string())),
                    _ => Err((
                        ErrorCode::NoHistory,
                        format!("you are not in {room}: a room's history is its members'"),
                    )),
                }
            }
            HistoryTarget::User(user) => {
                if !me.account {
                    return Err((
                        ErrorCode::NoHistory,
                        "conversations are kept between accounts only: LOGIN first".into(),
                    ));
                }
                if !self.accounts.is_reserved(user) {
                    return Err((
                        ErrorCode::NoHistory,
                        format!(
                            "{user} is not an account: conversations are kept between accounts only"
                        ),
                    ));
                }
                let key = natter_store::dm_target(&name::fold(&me.name), &name::fold(user));
                Ok((key, user.to_owned()))
            }
        }
    }

    /// What user `conn` may search: Everyone's key and its rooms' (each with how answers
    /// name it), and its account's key for its conversations, if it is logged in.
    pub fn searchable(&self, conn: ClientId) -> (Vec<(String, String)>, Option<String>) {
        let st = self.read();
        let id = pid(&st, conn);
        let Some(me) = st.users.get(&id) else {
            return (Vec::new(), None);
        };
        let mut targets = vec![(natter_store::EVERYONE.to_owned(), "*".to_owned())];
        for k in &me.rooms {
            if let Some(r) = st.rooms.get(k) {
                targets.push((k.clone(), r.name.to_string()));
            }
        }
        (targets, me.account.then(|| name::fold(&me.name)))
    }

    /// Log ids for `n` messages local user `id` sends now, if the log keeps them (`kept`):
    /// given before they are delivered, so that every recipient sees the id.
    fn new_ids(&self, id: ClientId, n: usize, kept: bool) -> Vec<Option<i64>> {
        match self.history.as_ref().filter(|_| kept && is_local(id)) {
            Some(h) => (0..n).map(|_| Some(h.next_id())).collect(),
            None => vec![None; n],
        }
    }

    /// Hands `texts`, just sent by local user `id` (`from`) to `target` with `ids` (from
    /// [`Hub::new_ids`]), to the log; `waiting` names the offline account they wait for,
    /// if any.
    fn keep(
        &self,
        id: ClientId,
        from: &User,
        target: impl FnOnce() -> String,
        texts: &[&str],
        ids: &[Option<i64>],
        waiting: Option<String>,
    ) -> Option<Keeping> {
        let h = self.history.as_ref().filter(|_| is_local(id))?;
        let target = target();
        let account = from.account.then(|| name::fold(&from.name));
        let rows = texts
            .iter()
            .zip(ids)
            .filter_map(|(text, id)| Some((text, (*id)?)))
            .map(|(text, id)| Logged {
                id,
                target: target.clone(),
                sender: from.name.to_string(),
                account: account.clone(),
                text: (*text).to_owned(),
            })
            .collect();
        h.keep(rows, waiting)
    }

    /// An empty hub whose changes other nodes see through `backplane`.
    pub fn with_backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.relays = backplane.relays();
        self.backplane = backplane;
        self
    }

    /// Whether this hub is one node of a cluster.
    pub fn relays(&self) -> bool {
        self.relays
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The accounts, and which names they reserve.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// Records that `name` became an account, or stopped being one (the accounts' cache
    /// already knows): whoever holds the name is logged in, or out, and IRC users with
    /// `account-notify` are told. Other nodes of a cluster are told too.
    pub fn account_changed(&self, name: &str, exists: bool) {
        let mut guard = self.write();
        self.set_account(&mut guard, name, exists);
        if self.relays {
            self.backplane.publish(
                Some(Op::Account {
                    name: name.to_owned(),
                    exists,
                }),
                None,
            );
        }
    }

    /// Marks the holder of `name`, if any, logged in or out, telling IRC users.
    fn set_account(&self, st: &mut State, name: &str, exists: bool) {
        if !exists {
            self.forget_operator(st, &name::fold(name));
        }
        if let Some(&id) = st.names.get(name::fold(name).as_str())
            && let Some(u) = st.users.get_mut(&id)
            && u.account != exists
        {
            u.account = exists;
            self.tell_account(st, id);
        }
    }

    /// Tells IRC users with `account-notify` who see user `id` of its account (ACCOUNT).
    fn tell_account(&self, st: &State, id: ClientId) {
        let Some(user) = st.users.get(&id) else {
            return;
        };
        let ev = self.lines(Event::Account { who: user.who() });
        self.tell_presence(st, user, &ev, None);
    }

    /// Whether the everyone channel is too large to tell its IRC members of each other's
    /// comings and goings. Beyond `--irc-everyone-presence` members, every arrival would be a
    /// line to every member and every arrival's NAMES as long as the crowd, so a crowd would
    /// cost the square of its size in bytes written. The channel is then quiet, like an
    /// auditorium: an IRC member hears of those it shares a room with, and NAMES, when asked,
    /// still lists everyone. Natives always hear ONLINE and OFFLINE.
    fn everyone_quiet(&self, st: &State) -> bool {
        st.everyone.len() > self.irc_everyone_presence
    }

    /// Whether the everyone channel is quiet now (see [`Hub::everyone_quiet`]).
    pub fn everyone_is_quiet(&self) -> bool {
        self.everyone_quiet(&self.read())
    }

    /// Tells `user`'s presence event (QUIT, NICK, ACCOUNT) to those who see it: Everyone
    /// (its IRC members only while it is not quiet) and the IRC users who share a room with
    /// `user`; never connection `except`.
    fn tell_presence(&self, st: &State, user: &User, ev: &Lines<'_>, except: Option<ClientId>) {
        let quiet = self.everyone_quiet(st);
        if quiet {
            st.everyone.send(&NativesOnly(ev), except);
        } else {
            st.everyone.send(ev, except);
        }
        for other in Self::irc_roommates(st, user, quiet) {
            Self::send_to(st, other, ev, except);
        }
    }

    /// The names IRC rendering uses.
    pub fn irc_names(&self) -> &IrcNames {
        &self.irc
    }

    /// The room limits.
    pub fn limits(&self) -> &RoomLimits {
        &self.limits
    }

    /// The state for reading, with every arrival announced: whatever the caller pushes then
    /// comes after the `ONLINE`s of the users it can see.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Nothing that holds this lock can panic halfway through a change (pushes cannot
        // panic), so a poisoned lock still holds consistent state.
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        self.push_arrivals(&st);
        st
    }

    /// The state for writing, with every arrival announced first.
    fn write(&self) -> RwLockWriteGuard<'_, State> {
        let st = self.write_gathering();
        self.push_arrivals(&st);
        st
    }

    /// The state for writing, arrivals left waiting: only for gathering another one.
    fn write_gathering(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes the gathered arrivals' `ONLINE`s, if any, before anything else is pushed: the
    /// hub calls it under its lock, sessions before each answer.
    pub fn announce_arrivals(&self) {
        if self.arriving.load(Ordering::Acquire) {
            drop(self.read());
        }
    }

    /// Announces gathered arrivals as they come, until `stop`: at once when there were none
    /// for a while, else at most every [`GATHER_ARRIVALS`].
    pub async fn announce_arrivals_until(self: Arc<Self>, stop: CancellationToken) {
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = self.arrived.notified() => {}
                () = stop.cancelled() => return,
            }
            // Lets the arrivals already on their way (connections ready to run) join this one.
            tokio::task::yield_now().await;
            tokio::time::sleep_until(last + GATHER_ARRIVALS).await;
            self.announce_arrivals();
            last = Instant::now();
        }
    }

    /// Pushes each member the `ONLINE`s of the arrivals since it sat down, as one buffer per
    /// flavor, sliced for the arrivals themselves.
    fn push_arrivals(&self, st: &State) {
        if !self.arriving.load(Ordering::Acquire) {
            return;
        }
        // Held while pushing, so a concurrent reader cannot push past an announcement.
        let mut a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if a.ids.is_empty() {
            return;
        }
        let events: Vec<Lines<'_>> = a
            .ids
            .iter()
            .filter_map(|id| st.users.get(id))
            .map(|u| {
                self.lines(Event::Online {
                    who: u.who(),
                    in_everyone: true,
                })
            })
            .collect();
        let batch = Batch::new(&events);
        let quiet = self.everyone_quiet(st);
        for (i, seat) in st.everyone.seats.iter().enumerate() {
            for (_, outbox, flavor) in st.everyone.each(seat) {
                if quiet && matches!(flavor, Flavor::Irc { .. }) {
                    continue;
                }
                let Some((bytes, ends)) = batch.get_with_ends(flavor) else {
                    continue;
                };
                // An arrival hears only of those after it; everyone else of all of them.
                let from = match i.checked_sub(a.base) {
                    None => 0,
                    Some(j) => match ends.get(j) {
                        Some(&end) => end,
                        None => continue,
                    },
                };
                if from < bytes.len() {
                    outbox.push_past_capture(bytes.slice(from..));
                }
            }
        }
        a.ids.clear();
        self.arriving.store(false, Ordering::Release);
    }

    fn lines<'a>(&'a self, e: Event<'a>) -> Lines<'a> {
        Lines::new(e, &self.irc)
    }

    /// Marks the hub as shutting down (see the `closing` field); arrivals still waiting are
    /// announced, so they precede the goodbyes.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.announce_arrivals();
    }

    fn is_everyone(&self, room: &str) -> bool {
        room.eq_ignore_ascii_case(&self.irc.everyone)
    }

    /// Registers client `id` as `name`, or renames it if it is registered already.
    ///
    /// Natives are in Everyone from the start; IRC users join the everyone channel separately
    /// ([`Hub::join_everyone`]). `ident` is the IRC user name (the name itself for natives).
    /// `answer`, given the name as registered, renders the client's own answer, which is
    /// queued under the lock so that it precedes every event that follows the registration.
    ///
    /// In a cluster the name is claimed afterwards and a loser is renamed; a caller that can
    /// wait claims first ([`Hub::name_check`]) and calls [`Hub::register_claimed`].
    ///
    /// `login` says the client logged into the account of that name: if the account is
    /// online from another connection of this node, this connection joins it
    /// ([`Registered::Attached`]) instead of being refused the name.
    #[allow(clippy::too_many_arguments)] // Who, where to, as what, and how it is answered.
    pub fn register(
        &self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        name: &str,
        flavor: Flavor,
        ident: Option<Arc<str>>,
        answer: Option<&dyn Fn(&Welcome<'_>) -> Bytes>,
        login: bool,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        let r = self.register_inner(id, outbox, name, flavor, ident, answer, false, login)?;
        if self.relays && matches!(r.0, Registered::New | Registered::Renamed { .. }) {
            let pid = self.person(id);
            self.backplane.assert_name(&name::fold(name), pid);
        }
        Ok(r)
    }

    /// The user `conn` is a connection of (its own id unless it shares an account's).
    fn person(&self, conn: ClientId) -> ClientId {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        pid(&st, conn)
    }

    /// [`Hub::register`] for a name this client has claimed across the cluster: a ghost that
    /// still holds it locally is stale (its own node gave the name up) and is dropped.
    #[allow(clippy::too_many_arguments)] // As register's.
    pub fn register_claimed(
        &self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        name: &str,
        flavor: Flavor,
        ident: Option<Arc<str>>,
        answer: Option<&dyn Fn(&Welcome<'_>) -> Bytes>,
        login: bool,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        self.register_inner(id, outbox, name, flavor, ident, answer, true, login)
    }

    /// Whether registering `name` for `id` needs a claim across the cluster first; `login`
    /// as for [`Hub::register`].
    pub fn name_check(&self, id: ClientId, name: &str, login: bool) -> NameCheck {
        if !self.relays {
            return NameCheck::Local;
        }
        let key = name::fold(name);
        let st = self.read();
        let id = pid(&st, id);
        if let Some(u) = st.users.get(&id)
            && name::fold(&u.name) == key
        {
            return NameCheck::Local;
        }
        match st.names.get(key.as_str()) {
            // Another connection of the same account: this one joins it.
            Some(&other) if other != id && is_local(other) && login => NameCheck::Local,
            Some(&other) if other != id && is_local(other) => NameCheck::Taken,
            _ => NameCheck::Claim(key),
        }
    }

    #[allow(clippy::too_many_arguments)] // register's, plus whether the name was claimed.
    fn register_inner(
        &self,
        conn: ClientId,
        outbox: &Arc<Outbox>,
        name: &str,
        flavor: Flavor,
        ident: Option<Arc<str>>,
        answer: Option<&dyn Fn(&Welcome<'_>) -> Bytes>,
        claimed: bool,
        login: bool,
    ) -> Result<(Registered, Arc<str>), ErrorCode> {
        let key = name::fold(name);
        let mut guard = self.write_gathering();
        let st = &mut *guard;
        let mut id = pid(st, conn);
        if let Some(&other) = st.names.get(key.as_str())
            && other != id
            && login
            && is_local(other)
            && is_local(conn)
            && self.accounts.is_reserved(name)
        {
            // The account is online from another connection: this one becomes one more of
            // its connections, leaving whoever it was before.
            self.push_arrivals(st);
            if st.users.contains_key(&id) {
                self.leave_in(st, conn, "logged in elsewhere");
            }
            return Ok(self.attach(st, conn, other, outbox, flavor, answer));
        }
        let irc = matches!(flavor, Flavor::Irc { .. });
        // Natives are in Everyone from the start; IRC users too when they are put into the
        // everyone channel on registration.
        let everyone = !irc || self.irc_auto_join;
        // Only a new user's arrival into Everyone can wait to be announced; every other
        // outcome (a rename, a clash, a ghost evicted) is pushed at once, after those waiting.
        let gather = everyone
            && is_local(id)
            && !st.users.contains_key(&id)
            && !st.names.contains_key(key.as_str());
        if !gather {
            self.push_arrivals(st);
        }
        let rooms = st.rooms.len();
        let welcome = answer;
        let answer = |name: &str| {
            if let Some(a) = welcome {
                outbox.push(a(&Welcome {
                    name,
                    rooms,
                    everyone: None,
                    joined: &[],
                }));
            }
        };
        if let Some(user) = st.users.get(&id)
            && *user.name == *name
        {
            answer(name);
            return Ok((Registered::Unchanged, user.name.clone()));
        }
        if let Some(&other) = st.names.get(key.as_str())
            && other != id
        {
            if claimed && !is_local(other) {
                self.evict_ghost(st, other);
            } else {
                return Err(ErrorCode::NameTaken);
            }
        }
        if self.refuse_lookalikes
            && is_local(id)
            && (st.shapes.resembles(name) || self.accounts.resembles(name))
        {
            return Err(ErrorCode::NameConfusable);
        }
        if st.users.get(&id).is_some_and(|u| u.links().is_some()) {
            // One of an account's connections takes another name: it leaves the account's
            // other connections quietly and arrives as someone new.
            self.detach(st, conn);
            id = pid(st, conn);
        }
        if st.users.contains_key(&id) {
            answer(name);
            return Ok(self.rename(st, id, name, key, false));
        }
        if !irc {
            answer(name);
        }
        let name: Arc<str> = Arc::from(name);
        // Only the account's own login reaches a reserved name here.
        let account = self.accounts.is_reserved(&name);
        let user = User::new(
            name.clone(),
            ident,
            outbox.clone(),
            flavor,
            everyone,
            irc,
            account,
        );
        if self.relays {
            self.backplane.publish(
                Some(Op::Online {
                    c: id,
                    name: name.to_string(),
                    ident: user.ident().to_string(),
                    irc,
                    everyone,
                }),
                None,
            );
        }
        self.insert_user(st, id, key, user, gather);
        if irc && let Some(a) = welcome {
            // An IRC user's welcome ends with its everyone channel's members (NAMES), so it
            // is written once the user is seated, under the same lock: nothing said in
            // Everyone can come before it.
            let own = [name.to_string()];
            outbox.push(a(&Welcome {
                name: &name,
                rooms,
                everyone: everyone.then(|| self.everyone_as_joined(st, &own)),
                joined: &[],
            }));
        }
        Ok((Registered::New, name))
    }

    /// Adds a user (local or ghost) and announces it, or, if `gather`, has it announced with
    /// the arrivals around it (see [`Hub::push_arrivals`]).
    fn insert_user(&self, st: &mut State, id: ClientId, key: String, user: User, gather: bool) {
        st.joins += 1;
        if gather && user.in_everyone {
            let mut a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            if a.ids.is_empty() {
                a.base = st.everyone.len();
                self.arriving.store(true, Ordering::Release);
                self.arrived.notify_one();
            }
            a.ids.push(id);
            st.everyone.insert(user.seat(id, false, st.joins));
            st.everyone_names.add(&user.name);
        } else {
            if user.in_everyone {
                st.everyone.insert(user.seat(id, false, st.joins));
                st.everyone_names.add(&user.name);
            }
            let ev = self.lines(Event::Online {
                who: user.who(),
                in_everyone: user.in_everyone,
            });
            if self.everyone_quiet(st) {
                st.everyone.send(&NativesOnly(&ev), Some(id));
            } else {
                st.everyone.send(&ev, Some(id));
            }
        }
        st.names.insert(name_key(key, &user.name), id);
        st.shapes.add(&user.name);
        st.users.insert(id, user);
        self.stats.set_registered(st.users.len());
        self.watched_online(st, id);
    }

    /// Renames `id`, whose new name `key` is free; `tell_self` also tells the user itself
    /// (when the cluster renamed it).
    fn rename(
        &self,
        st: &mut State,
        id: ClientId,
        name: &str,
        key: String,
        tell_self: bool,
    ) -> (Registered, Arc<str>) {
        let Some(user) = st.users.get_mut(&id) else {
            unreachable!("rename of a registered user");
        };
        let old_name = std::mem::replace(&mut user.name, Arc::from(name));
        let was_account = user.account;
        user.account = is_local(id) && self.accounts.is_reserved(name);
        // Natives have no IRC user name of their own; theirs follows their name.
        let old_ident = if user.irc {
            user.ident().clone()
        } else {
            old_name.clone()
        };
        let old_key = name::fold(&old_name);
        if st.names.get(old_key.as_str()) == Some(&id) {
            st.names.remove(old_key.as_str());
        }
        st.names.insert(name_key(key.clone(), &user.name), id);
        st.shapes.remove(&old_name);
        st.shapes.add(&user.name);
        if user.in_everyone {
            st.everyone_names.changed();
        }
        let user = &st.users[&id];
        let ev = self.lines(Event::Renamed {
            old: Who {
                name: &old_name,
                ident: &old_ident,
                account: was_account,
                real: None,
            },
            new: name,
        });
        self.tell_presence(st, user, &ev, Some(id));
        if tell_self {
            Self::send_to(st, id, &ev, None);
        }
        drop(ev);
        if user.account != was_account {
            self.tell_account(st, id);
        }
        self.watched_renamed(st, id, &old_name, &old_key, &old_ident);
        if is_local(id) {
            if self.relays {
                self.backplane.publish(
                    Some(Op::Renamed {
                        c: id,
                        name: name.to_owned(),
                    }),
                    (old_key != key).then_some((old_key, id)),
                );
            }
            self.unpark(st);
        }
        (
            Registered::Renamed { old: old_name },
            st.users[&id].name.clone(),
        )
    }

    /// Renames a local user whom the cluster refused its name, telling the user too; the
    /// new name must be claimed already. `false` if the name is taken here or the user left.
    pub fn force_rename(&self, id: ClientId, name: &str) -> bool {
        let key = name::fold(name);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, id);
        if !st.users.contains_key(&id) || st.names.get(key.as_str()).is_some_and(|&o| o != id) {
            return false;
        }
        self.rename(st, id, name, key, true);
        true
    }

    /// Starts claiming the folded name `key` for `id` across the cluster (see
    /// [`Backplane::claim`]).
    pub fn claim(&self, key: &str, id: ClientId) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        self.backplane.claim(key, id)
    }

    /// Gives up client `id`'s claim on the folded name `key` (a claim it could not use).
    pub fn release(&self, key: String, id: ClientId) {
        if self.relays {
            self.backplane.publish(None, Some((key, id)));
        }
    }

    /// A local user's name, if registered.
    pub fn name_of(&self, conn: ClientId) -> Option<Arc<str>> {
        let st = self.read();
        st.users.get(&pid(&st, conn)).map(|u| u.name.clone())
    }

    /// Every local user's id and name.
    pub fn local_names(&self) -> Vec<(ClientId, Arc<str>)> {
        let st = self.read();
        st.users
            .iter()
            .filter(|(id, _)| is_local(**id))
            .map(|(&id, u)| (id, u.name.clone()))
            .collect()
    }

    /// Queues, under the lock so nothing slips between, every local user's state and then
    /// the list of them: other nodes rebuild their ghosts of this node from it.
    pub fn republish(&self) {
        let st = self.write();
        let mut clients = Vec::new();
        for (&id, u) in st.users.iter().filter(|(id, _)| is_local(**id)) {
            clients.push(id);
            let rooms = u
                .rooms
                .iter()
                .filter_map(|k| st.rooms.get(k))
                .map(|r| (r.name.to_string(), r.members.get(id).is_some_and(|s| s.op)))
                .collect();
            self.backplane.publish(
                Some(Op::Snapshot {
                    c: id,
                    name: u.name.to_string(),
                    ident: u.ident().to_string(),
                    irc: u.irc,
                    everyone: u.in_everyone,
                    rooms,
                    away: u.away().map(|a| a.to_string()),
                    real: u
                        .rare
                        .as_ref()
                        .and_then(|r| r.real.as_deref())
                        .map(str::to_owned),
                }),
                None,
            );
        }
        self.backplane.publish(Some(Op::Sync { clients }), None);
    }

    /// IRC users who share a room with `user`, each once: those in Everyone too if
    /// `with_everyone` (when it is quiet), else only those outside it.
    fn irc_roommates(st: &State, user: &User, with_everyone: bool) -> Vec<ClientId> {
        let mut seen = HashSet::new();
        for key in &user.rooms {
            if let Some(r) = st.rooms.get(key) {
                for s in &r.members.seats {
                    if matches!(s.flavor, Flavor::Irc { .. })
                        && (with_everyone || !st.everyone.contains(s.id))
                        && st.users.get(&s.id).is_some_and(|u| !std::ptr::eq(u, user))
                    {
                        seen.insert(s.id);
                    }
                }
            }
        }
        seen.into_iter().collect()
    }

    /// Sends to every connection of user `id` but the connection `except`.
    fn send_to(st: &State, id: ClientId, lines: &Lines<'_>, except: Option<ClientId>) {
        if let Some(u) = st.users.get(&id) {
            for (conn, outbox, flavor) in u.each(id) {
                if Some(conn) != except
                    && let Some(b) = lines.get(flavor)
                {
                    outbox.push(b.clone());
                }
            }
        }
    }

    /// Makes connection `conn` one more connection of the local user `id` (an account
    /// online elsewhere): it is seated wherever the user is, and its answer tells it the
    /// rooms it is in. Nobody else hears of it.
    fn attach(
        &self,
        st: &mut State,
        conn: ClientId,
        id: ClientId,
        outbox: &Arc<Outbox>,
        flavor: Flavor,
        answer: Option<&dyn Fn(&Welcome<'_>) -> Bytes>,
    ) -> (Registered, Arc<str>) {
        let Some(user) = st.users.get_mut(&id) else {
            unreachable!("attach to a registered user");
        };
        let mut links = match user.links() {
            Some(l) => Vec::clone(l),
            None => vec![Link {
                id,
                outbox: user.outbox.clone(),
                flavor: user.flavor,
            }],
        };
        links.push(Link {
            id: conn,
            outbox: outbox.clone(),
            flavor,
        });
        user.set_links(Some(Arc::new(links)));
        if conn == id {
            st.person_of.remove(&conn);
        } else {
            st.person_of.insert(conn, id);
        }
        Self::relink(st, id);
        let user = &st.users[&id];
        let name = user.name.clone();
        if let Some(a) = answer {
            let irc = matches!(flavor, Flavor::Irc { .. });
            let in_everyone = irc && user.in_everyone;
            let joined = Self::rooms_of(st, user);
            let rooms = st.rooms.len();
            let own = [name.to_string()];
            outbox.push(a(&Welcome {
                name: &name,
                rooms,
                everyone: in_everyone.then(|| self.everyone_as_joined(st, &own)),
                joined: &joined,
            }));
        }
        (Registered::Attached, name)
    }

    /// The rooms `user` is in, as their members are shown, for a connection that takes the
    /// user over (another of an account's connections, or a resumed session).
    fn rooms_of(st: &State, user: &User) -> Vec<RoomView> {
        user.rooms
            .iter()
            .filter_map(|k| st.rooms.get(k))
            .map(|r| Self::view(&st.users, &r.name, r.topic.as_ref(), &r.members))
            .collect()
    }

    /// Takes connection `conn` away from a user that has other connections, quietly; it
    /// is then nobody (registered as no one). `false` if its user has no other.
    fn detach(&self, st: &mut State, conn: ClientId) -> bool {
        let id = pid(st, conn);
        let Some(user) = st.users.get_mut(&id) else {
            return false;
        };
        let Some(links) = user.links() else {
            return false;
        };
        let rest: Vec<Link> = links.iter().filter(|l| l.id != conn).cloned().collect();
        let Some(first) = rest.first() else {
            return false;
        };
        user.outbox = first.outbox.clone();
        user.flavor = first.flavor;
        user.set_links(if rest.len() == 1 && first.id == id {
            None
        } else {
            Some(Arc::new(rest))
        });
        if conn == id {
            // The user keeps its id, which no connection then has: this one gets a new one.
            st.next_person += 1;
            st.person_of
                .insert(conn, crate::client_id::PERSON | st.next_person);
        } else {
            st.person_of.remove(&conn);
        }
        Self::relink(st, id);
        true
    }

    /// Makes connection `conn` get its events written as `flavor` from now on.
    pub fn set_flavor(&self, conn: ClientId, flavor: Flavor) {
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        let Some(user) = st.users.get_mut(&id) else {
            return;
        };
        match user.links() {
            Some(links) => {
                let links: Vec<Link> = links
                    .iter()
                    .map(|l| Link {
                        flavor: if l.id == conn { flavor } else { l.flavor },
                        ..l.clone()
                    })
                    .collect();
                user.flavor = links[0].flavor;
                user.set_links(Some(Arc::new(links)));
            }
            None => user.flavor = flavor,
        }
        Self::relink(st, id);
    }

    /// Copies user `id`'s connections into each of its seats.
    fn relink(st: &mut State, id: ClientId) {
        let State {
            users,
            everyone,
            rooms,
            ..
        } = st;
        let Some(u) = users.get(&id) else { return };
        everyone.relink(id, &u.outbox, u.flavor, u.links());
        for k in &u.rooms {
            if let Some(r) = rooms.get_mut(k) {
                r.members.relink(id, &u.outbox, u.flavor, u.links());
            }
        }
    }

    /// Forgets a connection that has ended, once it has left (it may have been one of an
    /// account's connections, and left them).
    pub fn forget(&self, conn: ClientId) {
        let known = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            st.person_of.contains_key(&conn)
        };
        if known {
            let mut st = self.write();
            let id = pid(&st, conn);
            if !st.users.contains_key(&id) {
                st.person_of.remove(&conn);
            }
        }
    }

    /// Removes a registered user from every room and from Everyone, telling those who stay;
    /// one of several connections of an account leaves quietly, the account staying.
    pub fn leave(&self, conn: ClientId, reason: &str) {
        let mut guard = self.write();
        self.leave_in(&mut guard, conn, reason);
    }

    /// [`Hub::leave`] under the lock.
    fn leave_in(&self, st: &mut State, conn: ClientId, reason: &str) {
        if self.detach(st, conn) {
            return;
        }
        let id = pid(st, conn);
        let Some(user) = st.users.get(&id) else {
            return;
        };
        let key = name::fold(&user.name);
        self.remove_user(st, id, reason);
        if is_local(id) && self.relays {
            self.backplane.publish(
                Some(Op::Offline {
                    c: id,
                    reason: reason.to_owned(),
                }),
                Some((key, id)),
            );
        }
    }

    /// Disconnects the user named `target` (a server operator `by`'s `KILL`): everyone sees
    /// it leave, killed, and its connection gets a last line saying so and is closed. A user
    /// of another node is killed by that node, told through the backplane.
    pub fn kill(&self, target: &str, by: &str, comment: &str) -> Result<Arc<str>, ErrorCode> {
        let reason = crate::event::kill_reason(by, comment);
        let mut guard = self.write();
        let st = &mut *guard;
        let key = name::fold(target);
        let Some(&id) = st.names.get(key.as_str()) else {
            return Err(ErrorCode::NoSuchUser);
        };
        if let Some((node, to)) = st.ghost_of.get(&id).cloned() {
            let name = st.users.get(&id).map(|u| u.name.clone());
            let name = name.ok_or(ErrorCode::NoSuchUser)?;
            self.backplane.publish(
                Some(Op::Kill {
                    node: node.to_string(),
                    to,
                    by: by.to_owned(),
                    comment: comment.to_owned(),
                }),
                None,
            );
            return Ok(name);
        }
        let Some(user) = st.users.get(&id).filter(|_| is_local(id)) else {
            return Err(ErrorCode::NoSuchUser);
        };
        let name = user.name.clone();
        // Every connection of the user is closed.
        let conns: Vec<(Arc<Outbox>, bool)> = user
            .each(id)
            .map(|(_, o, f)| (o.clone(), matches!(f, Flavor::Irc { .. })))
            .collect();
        self.remove_user(st, id, &reason);
        if self.relays {
            self.backplane.publish(
                Some(Op::Offline {
                    c: id,
                    reason: reason.clone(),
                }),
                Some((key, id)),
            );
        }
        drop(guard);
        for (outbox, irc) in conns {
            outbox.push(crate::event::kill_goodbye(irc, &name, by, comment));
            outbox.end();
        }
        Ok(name)
    }

    /// Forgets what made user `id` resumable (it left).
    fn forget_session(&self, st: &mut State, id: ClientId) {
        if let Some(tokens) = st.tokens_of.remove(&id) {
            for t in tokens {
                st.resumable.remove(&t);
            }
        }
        if st.lingering.remove(&id).is_some() {
            self.stats.set_lingering(st.lingering.len());
        }
    }

    fn remove_user(&self, st: &mut State, id: ClientId, reason: &str) {
        let Some(user) = st.users.get(&id) else {
            return;
        };
        // A node that goes away still tells its users' departures to the rest of the
        // cluster, where nobody else is leaving.
        let quiet = self.closing.load(Ordering::Relaxed) && is_local(id);
        let everyone_quiet = self.everyone_quiet(st);
        let irc_quit = if quiet {
            Vec::new()
        } else {
            Self::irc_roommates(st, user, everyone_quiet)
        };
        let Some(user) = st.users.remove(&id) else {
            return;
        };
        self.forget_session(st, id);
        if let Some(links) = user.links() {
            for l in links.iter() {
                st.person_of.remove(&l.id);
            }
        }
        let key = name::fold(&user.name);
        if st.names.get(key.as_str()) == Some(&id) {
            st.names.remove(key.as_str());
        }
        st.shapes.remove(&user.name);
        if st.everyone.remove(id).is_some() {
            st.everyone_names.changed();
        }
        if let Some(g) = st.ghost_of.remove(&id) {
            st.ghosts.remove(&g);
        }
        self.stats.set_registered(st.users.len());
        for key in &user.rooms {
            self.depart(st, key, id, user.who(), reason, true, quiet);
        }
        if !quiet {
            let ev = self.lines(Event::Offline {
                who: user.who(),
                reason,
            });
            if everyone_quiet {
                st.everyone.send(&NativesOnly(&ev), None);
            } else {
                st.everyone.send(&ev, None);
            }
            for other in irc_quit {
                Self::send_to(st, other, &ev, None);
            }
        }
        self.watched_gone(st, &user, &key);
        if is_local(id) {
            self.unpark(st);
        }
    }
    /// Takes `id` out of the room `key` and tells the members who stay; removes the room
    /// when it is empty and hands it to a new operator when its last one left.
    #[allow(clippy::too_many_arguments)] // All of them describe the one departure.
    fn depart(
        &self,
        st: &mut State,
        key: &str,
        id: ClientId,
        who: Who<'_>,
        reason: &str,
        disconnect: bool,
        quiet: bool,
    ) {
        let Some(room) = st.rooms.get_mut(key) else {
            return;
        };
        room.members.remove(id);
        if room.members.len() == 0 {
            if room.kept.is_none() {
                Self::remove_room(st, key);
                self.stats.set_rooms(st.rooms.len());
            }
            return;
        }
        if !quiet {
            room.members.send(
                &self.lines(Event::Parted {
                    room: &room.name,
                    who,
                    reason,
                    disconnect,
                }),
                None,
            );
        }
        self.hand_over(room, &st.users);
    }

    /// Makes a member operator of a room whose last operator left; not in a room that
    /// stays, whose operators are its accounts whether they are in it or not.
    fn hand_over(&self, room: &mut Room, users: &HashMap<ClientId, User>) {
        if room.kept.is_some() {
            return;
        }
        if let Some(op) = room.members.ensure_operator()
            && let Some(u) = users.get(&op)
        {
            room.members.send(
                &self.lines(Event::Operator {
                    room: &room.name,
                    name: &u.name,
                }),
                None,
            );
        }
    }

    /// Makes a local sender's input wait for a recipient it found congested (see
    /// [`crate::outbox`]): a burst is paced to its slowest reader rather than piled up.
    fn hold_if_congested(conn: ClientId, from: &User, congested: Option<Arc<Outbox>>) {
        if let Some(r) = congested
            && is_local(conn)
        {
            from.outbox_of(conn).hold_for(&r);
        }
    }

    /// Sends `text` from `id` to Everyone but the sender; returns how many got it.
    pub fn broadcast(&self, id: ClientId, text: &str, notice: bool) -> Result<Reached, ErrorCode> {
        self.broadcast_texts(id, std::iter::once(text), notice, None, "")
    }

    /// [`Hub::broadcast`] with the sender's client-only IRC tags (escaped, `+a=b;+c`).
    pub fn broadcast_tagged(
        &self,
        id: ClientId,
        text: &str,
        notice: bool,
        tags: &str,
    ) -> Result<Reached, ErrorCode> {
        self.broadcast_texts(id, std::iter::once(text), notice, None, tags)
    }

    /// [`Hub::broadcast_tagged`] of several texts, in order, as one buffer per recipient.
    pub fn broadcast_each(
        &self,
        id: ClientId,
        texts: &[&str],
        notice: bool,
        tags: &str,
    ) -> Result<Reached, ErrorCode> {
        self.broadcast_texts(id, texts.iter().copied(), notice, None, tags)
    }

    /// Sends several MESSAGEs from `id` to everyone, in order, as one buffer per recipient;
    /// returns how many received them (each received all).
    pub fn broadcast_many<'t>(
        &self,
        id: ClientId,
        texts: impl Iterator<Item = &'t str>,
    ) -> Result<Reached, ErrorCode> {
        self.broadcast_texts(id, texts, false, None, "")
    }

    /// Sends `audience` (but connection `conn`) the event `event` makes of each of `texts`,
    /// each with its log id from `ids` and the client-only tags `tags`: one buffer per
    /// recipient however many texts there are.
    fn send_kept<'a>(
        &'a self,
        audience: &Audience,
        conn: ClientId,
        texts: &[&'a str],
        ids: &[Option<i64>],
        tags: &'a str,
        event: impl Fn(&'a str) -> Event<'a>,
    ) -> Sent {
        let events: Vec<Lines<'_>> = texts
            .iter()
            .zip(ids)
            .map(|(text, &log_id)| {
                Lines::kept(event(text), &self.irc, log_id).with_client_tags(tags)
            })
            .collect();
        match &events[..] {
            [one] => audience.send(one, Some(conn)),
            _ => audience.send(&crate::event::Batch::new(&events), Some(conn)),
        }
    }

    /// Sends `texts` from `conn` to Everyone; `given` is the log id another node gave the
    /// one text of its user; `tags` are client-only IRC tags that go with each.
    fn broadcast_texts<'t>(
        &self,
        conn: ClientId,
        texts: impl Iterator<Item = &'t str>,
        notice: bool,
        given: Option<i64>,
        tags: &str,
    ) -> Result<Reached, ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if !from.in_everyone {
            return Err(ErrorCode::NotInRoom);
        }
        let texts: Vec<&str> = texts.collect();
        let ids = match given {
            Some(_) => vec![given],
            None => self.new_ids(id, texts.len(), !notice),
        };
        let sent = self.send_kept(&st.everyone, conn, &texts, &ids, tags, |text| {
            Event::Message {
                from: from.who(),
                text,
                notice,
            }
        });
        Self::hold_if_congested(conn, from, sent.congested);
        let n = sent.n;
        self.stats.routed(n * texts.len());
        if !is_local(id) {
            return Ok((n, None));
        }
        if self.relays {
            for (text, &log_id) in texts.iter().zip(&ids) {
                self.backplane.publish(
                    Some(Op::Message {
                        c: id,
                        text: (*text).to_owned(),
                        notice,
                        id: log_id,
                    }),
                    None,
                );
            }
        }
        let reached = n + st.everyone.ghosts;
        let kept = if notice || reached == 0 {
            None
        } else {
            self.keep(
                id,
                from,
                || natter_store::EVERYONE.to_owned(),
                &texts,
                &ids,
                None,
            )
        };
        Ok((reached, kept))
    }

    /// Sends `text` from `id` to the user named `to` (ignoring case).
    pub fn direct(
        &self,
        id: ClientId,
        to: &str,
        text: &str,
        notice: bool,
    ) -> Result<DmTarget, ErrorCode> {
        self.direct_texts(id, to, std::iter::once(text), notice, "")
    }

    /// [`Hub::direct`] with the sender's client-only IRC tags (escaped, `+a=b;+c`).
    pub fn direct_tagged(
        &self,
        id: ClientId,
        to: &str,
        text: &str,
        notice: bool,
        tags: &str,
    ) -> Result<DmTarget, ErrorCode> {
        self.direct_texts(id, to, std::iter::once(text), notice, tags)
    }

    /// Relays a CTCP request (or, as a notice, a reply) from `conn` to the user named `to`.
    /// Only IRC connections can answer one: `Ok(false)` if the user has none (the caller
    /// then answers in its stead), `NoSuchUser` if there is nobody of that name.
    pub fn ctcp(
        &self,
        conn: ClientId,
        to: &str,
        body: &str,
        notice: bool,
    ) -> Result<bool, ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let &target_id = st
            .names
            .get(name::fold(to).as_str())
            .ok_or(ErrorCode::NoSuchUser)?;
        let target = st.users.get(&target_id).ok_or(ErrorCode::NoSuchUser)?;
        let ev = self.lines(Event::Ctcp {
            from: from.who(),
            to: &target.name,
            body,
            notice,
        });
        let mut reached = false;
        for (_, outbox, flavor) in target.each(target_id) {
            if let Some(b) = ev.get(flavor) {
                reached = true;
                outbox.push(b.clone());
            }
        }
        Ok(reached)
    }

    /// Sends several DMs from `id` to the user named `to` (ignoring case), in order, as one
    /// buffer.
    pub fn direct_many<'t>(
        &self,
        id: ClientId,
        to: &str,
        texts: impl Iterator<Item = &'t str>,
    ) -> Result<DmTarget, ErrorCode> {
        self.direct_texts(id, to, texts, false, "")
    }

    fn direct_texts<'t>(
        &self,
        conn: ClientId,
        to: &str,
        texts: impl Iterator<Item = &'t str>,
        notice: bool,
        tags: &str,
    ) -> Result<DmTarget, ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        let Some(&target_id) = st.names.get(name::fold(to).as_str()) else {
            return self.direct_offline(id, from, to, texts, notice);
        };
        let target = st.users.get(&target_id).ok_or(ErrorCode::NoSuchUser)?;
        if std::ptr::eq(from, target) {
            return Err(ErrorCode::CannotDmSelf);
        }
        let texts: Vec<&str> = texts.collect();
        // A guest's name may pass to someone else: conversations are kept between accounts
        // only.
        let kept = !notice && from.account && target.account;
        let ids = self.new_ids(id, texts.len(), kept);
        let events: Vec<Lines<'_>> = texts
            .iter()
            .zip(&ids)
            .map(|(text, &log_id)| {
                Lines::kept(
                    Event::Dm {
                        from: from.who(),
                        to: &target.name,
                        text,
                        notice,
                        echo: false,
                    },
                    &self.irc,
                    log_id,
                )
                .with_client_tags(tags)
            })
            .collect();
        let batch = crate::event::Batch::new(&events);
        let mut delivered = false;
        for (_, outbox, flavor) in target.each(target_id) {
            let bytes = match &events[..] {
                [one] => one.get(flavor),
                _ => batch.get(flavor),
            };
            if let Some(b) = bytes {
                delivered = true;
                if outbox.push(b.clone()) == Pushed::Congested {
                    Self::hold_if_congested(conn, from, Some(outbox.clone()));
                }
            }
        }
        if from.links().is_some() {
            // The sender's other connections see what it sent.
            for (text, &log_id) in texts.iter().zip(&ids) {
                let echo = Lines::kept(
                    Event::Dm {
                        from: from.who(),
                        to: &target.name,
                        text,
                        notice,
                        echo: true,
                    },
                    &self.irc,
                    log_id,
                )
                .with_client_tags(tags);
                Self::send_to(&st, id, &echo, Some(conn));
            }
        }
        if !delivered
            && self.relays
            && is_local(id)
            && let Some(&(ref node, to)) = st
                .names
                .get(name::fold(to).as_str())
                .and_then(|t| st.ghost_of.get(t))
        {
            for (text, &log_id) in texts.iter().zip(&ids) {
                self.backplane.publish(
                    Some(Op::Dm {
                        c: id,
                        node: node.to_string(),
                        to,
                        text: (*text).to_owned(),
                        notice,
                        id: log_id,
                    }),
                    None,
                );
            }
        }
        self.stats.routed(events.len());
        let kept = if kept {
            let target_key = name::fold(&target.name);
            self.keep(
                id,
                from,
                || natter_store::dm_target(&name::fold(&from.name), &target_key),
                &texts,
                &ids,
                None,
            )
        } else {
            None
        };
        Ok(DmTarget {
            name: target.name.clone(),
            away: target.away().cloned(),
            kept,
            queued: false,
        })
    }

    /// DMs from local user `id` (`from`) to `to`, who is not online: if both are accounts,
    /// they wait in the log for `to` to log in; anyone else is nobody to write to.
    fn direct_offline<'t>(
        &self,
        id: ClientId,
        from: &User,
        to: &str,
        texts: impl Iterator<Item = &'t str>,
        notice: bool,
    ) -> Result<DmTarget, ErrorCode> {
        if notice || !from.account || !is_local(id) || self.history.is_none() {
            return Err(ErrorCode::NoSuchUser);
        }
        let name = self.accounts.spelled(to).ok_or(ErrorCode::NoSuchUser)?;
        let key = name::fold(&name);
        let texts: Vec<&str> = texts.collect();
        let target = || natter_store::dm_target(&name::fold(&from.name), &key);
        let ids = self.new_ids(id, texts.len(), true);
        let kept = self.keep(id, from, target, &texts, &ids, Some(key.clone()));
        self.stats.routed(texts.len());
        Ok(DmTarget {
            name: Arc::from(name),
            away: None,
            kept,
            queued: true,
        })
    }

    /// Up to `max` registered users' names after `after` (a folded name), in order of their
    /// folded names. A long list is answered page by page as the client takes it, so each
    /// page is read under the lock on its own: a presence event between two pages arrives in
    /// its place between them.
    pub fn names_page(&self, after: Option<&str>, max: usize) -> Page<Arc<str>> {
        let st = self.read();
        page_of(&st.names, after, max, |id| {
            st.users.get(id).map(|u| u.name.clone())
        })
    }

    /// [`Hub::names_page`] of the users logged into their name's account only.
    pub fn accounts_page(&self, after: Option<&str>, max: usize) -> Page<Arc<str>> {
        let st = self.read();
        page_of(&st.names, after, max, |id| {
            st.users
                .get(id)
                .filter(|u| u.account)
                .map(|u| u.name.clone())
        })
    }

    /// A user's details, for WHOIS, USERHOST and ISON.
    pub fn user(&self, name: &str) -> Option<UserView> {
        let st = self.read();
        let id = *st.names.get(name::fold(name).as_str())?;
        let u = st.users.get(&id)?;
        let mut rooms: Vec<String> = u
            .rooms
            .iter()
            .filter_map(|k| st.rooms.get(k))
            .map(|r| {
                let prefix = match r.members.get(id) {
                    Some(s) if s.op => "@",
                    Some(s) if s.voice => "+",
                    _ => "",
                };
                format!("{prefix}{}", r.name)
            })
            .collect();
        if u.in_everyone {
            rooms.insert(0, self.irc.everyone.clone());
        }
        Some(UserView {
            name: u.name.clone(),
            ident: u.ident().clone(),
            irc: u.irc,
            rooms,
            away: u.away().cloned(),
            account: u.account,
        })
    }

    /// Sets or clears a user's away message.
    pub fn set_away(&self, conn: ClientId, away: Option<&str>) {
        let mut st = self.write();
        let id = pid(&st, conn);
        if let Some(u) = st.users.get_mut(&id) {
            u.set_away(away.map(Arc::from));
            self.tell_away(&st, id);
            if self.relays && is_local(id) {
                self.backplane.publish(
                    Some(Op::Away {
                        c: id,
                        away: away.map(str::to_owned),
                    }),
                    None,
                );
            }
        }
    }

    fn view(
        users: &HashMap<ClientId, User>,
        name: &Arc<str>,
        topic: Option<&RoomTopic>,
        members: &Audience,
    ) -> RoomView {
        let mut members: Vec<MemberView> = members
            .seats
            .iter()
            .filter_map(|s| {
                users.get(&s.id).map(|u| MemberView {
                    name: u.name.clone(),
                    ident: u.ident().clone(),
                    op: s.op,
                    voice: s.voice,
                    away: u.away().is_some(),
                })
            })
            .collect();
        members.sort_by_cached_key(|m| member_key(m.op, &m.name));
        RoomView {
            name: name.clone(),
            topic: topic.cloned(),
            members,
        }
    }

    /// Removes an empty room, and its count against its creator's address.
    fn remove_room(st: &mut State, key: &str) {
        if let Some(r) = st.rooms.remove(key)
            && let Some(ip) = r.by
            && let Some(n) = st.rooms_by.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                st.rooms_by.remove(&ip);
            }
        }
    }

    /// Joins `id` to `room`, creating it (with `id` as operator) if it does not exist.
    ///
    /// `answer` renders the joiner's answer from the room as it is after the join; it is
    /// queued here, under the lock, so it reaches the joiner before anything said in the room
    /// after the join.
    ///
    /// A room created counts against `from`, the creator's address, unless it is `None`
    /// (exempt from the per-address limits).
    pub fn join(
        &self,
        id: ClientId,
        room: &str,
        key: Option<&str>,
        from: Option<IpAddr>,
        answer: impl FnOnce(&RoomView) -> Bytes,
    ) -> Result<(), ErrorCode> {
        if self.is_everyone(room) {
            return Err(ErrorCode::InvalidRoomName);
        }
        let mut guard = self.write();
        self.join_in(&mut guard, id, room, None, key, from, Some(answer))
    }

    /// [`Hub::join`] under the lock; a ghost comes with its operator status as its own node
    /// decided it, and no limits apply to it (its node checked them).
    #[allow(clippy::too_many_arguments)]
    fn join_in(
        &self,
        st: &mut State,
        conn: ClientId,
        room: &str,
        ghost_op: Option<bool>,
        key: Option<&str>,
        from: Option<IpAddr>,
        answer: Option<impl FnOnce(&RoomView) -> Bytes>,
    ) -> Result<(), ErrorCode> {
        let id = pid(st, conn);
        let room_key = room_name::fold(room);
        let local = is_local(id);
        let server_op = self.server_op(st, id);
        let user = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if local && user.rooms.len() >= self.limits.per_user {
            return Err(ErrorCode::TooManyRooms);
        }
        if let Some(r) = st.rooms.get_mut(&room_key) {
            if r.members.contains(id) {
                return Err(ErrorCode::AlreadyInRoom);
            }
            if local && r.members.len() >= self.limits.members {
                return Err(ErrorCode::RoomFull);
            }
            if local && !server_op {
                r.modes.admit(user.who(), key, r.members.len())?;
            }
        } else if local {
            if st.rooms.len() >= self.limits.rooms {
                return Err(ErrorCode::RoomLimit);
            }
            if let Some(ip) = from
                && st
                    .rooms_by
                    .get(&ip)
                    .is_some_and(|&n| n >= self.limits.per_address)
            {
                return Err(ErrorCode::RoomLimit);
            }
        }
        let key = room_key;
        let r = st.rooms.entry(key.clone()).or_insert_with(|| {
            if let Some(ip) = from.filter(|_| local) {
                *st.rooms_by.entry(ip).or_default() += 1;
            }
            Room::new(room, from.filter(|_| local))
        });
        let op = match (ghost_op, &r.kept) {
            (Some(op), _) => op,
            // A room that stays is operated by its accounts, whoever comes first.
            (None, Some(ops)) => user.account && ops.contains(&name::fold(&user.name)),
            (None, None) => r.members.len() == 0,
        };
        st.joins += 1;
        r.members.insert(user.seat(id, op, st.joins));
        if op && local && user.account {
            self.keep_operator(&mut st.rooms_by, &key, r, name::fold(&user.name));
        }
        // The user's other connections hear of it as the members do.
        r.members.send(
            &self.lines(Event::Joined {
                room: &r.name,
                who: user.who(),
            }),
            Some(conn),
        );
        if let Some(answer) = answer {
            let view = Self::view(&st.users, &r.name, r.topic.as_ref(), &r.members);
            user.outbox_of(conn).push(answer(&view));
        }
        if local && self.relays {
            self.backplane.publish(
                Some(Op::Join {
                    c: id,
                    room: r.name.to_string(),
                    op,
                }),
                None,
            );
        }
        // Told while the user's rooms do not hold this one yet, so that those who shared
        // another channel with it, and know it is away, are not told again.
        if let Some(r) = st.rooms.get(&key) {
            self.tell_away_joined(st, id, |member, _| r.members.contains(member));
        }
        if let Some(u) = st.users.get_mut(&id) {
            u.rooms.push(key);
        }
        self.stats.set_rooms(st.rooms.len());
        Ok(())
    }

    /// Puts an IRC user into the everyone channel; `answer` as for [`Hub::join`].
    pub fn join_everyone(
        &self,
        conn: ClientId,
        answer: impl FnOnce(NamesView<'_>) -> Bytes,
    ) -> Result<(), ErrorCode> {
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        let user = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        if user.in_everyone {
            return Err(ErrorCode::AlreadyInRoom);
        }
        st.joins += 1;
        st.everyone.insert(user.seat(id, false, st.joins));
        st.everyone_names.add(&user.name);
        if !self.everyone_quiet(st) {
            st.everyone.send(
                &self.lines(Event::EveryoneMembership {
                    who: user.who(),
                    joined: true,
                }),
                Some(conn),
            );
        }
        if is_local(id) {
            let outbox = user.outbox_of(conn).clone();
            let own = [user.name.to_string()];
            outbox.push(answer(self.everyone_as_joined(st, &own)));
            if self.relays {
                self.backplane.publish(
                    Some(Op::Everyone {
                        c: id,
                        joined: true,
                    }),
                    None,
                );
            }
        }
        if !self.everyone_quiet(st) {
            self.tell_away_joined(st, id, |_, other| other.in_everyone);
        }
        if let Some(u) = st.users.get_mut(&id) {
            u.in_everyone = true;
        }
        Ok(())
    }

    /// The everyone channel as a user joins it: every member's name, or, when it is quiet
    /// (see [`Hub::everyone_quiet`]), the joiner's alone, `own`.
    fn everyone_as_joined<'s>(&'s self, st: &'s mut State, own: &'s [String]) -> NamesView<'s> {
        let quiet = self.everyone_quiet(st).then(|| st.everyone.len());
        NamesView {
            name: &self.irc.everyone,
            lines: if quiet.is_some() {
                own
            } else {
                Self::everyone_lines(st)
            },
            quiet,
        }
    }

    /// The everyone channel's names, ready for a 353.
    fn everyone_lines(st: &mut State) -> &[String] {
        let State {
            everyone_names,
            everyone,
            users,
            ..
        } = st;
        let names = everyone
            .seats
            .iter()
            .filter_map(|s| users.get(&s.id))
            .map(|u| &*u.name);
        everyone_names.lines(everyone.len(), names)
    }

    /// Takes an IRC user out of the everyone channel.
    pub fn part_everyone(&self, conn: ClientId) -> Result<(), ErrorCode> {
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        let user = st.users.get_mut(&id).ok_or(ErrorCode::NotRegistered)?;
        // Natives are always in Everyone, so a user with a native connection stays.
        let native = user
            .each(id)
            .any(|(_, _, f)| !matches!(f, Flavor::Irc { .. }));
        if !user.in_everyone || !user.irc || native {
            return Err(ErrorCode::NotInRoom);
        }
        user.in_everyone = false;
        st.everyone.remove(id);
        st.everyone_names.changed();
        let user = &st.users[&id];
        if !self.everyone_quiet(st) {
            st.everyone.send(
                &self.lines(Event::EveryoneMembership {
                    who: user.who(),
                    joined: false,
                }),
                None,
            );
        }
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Everyone {
                    c: id,
                    joined: false,
                }),
                None,
            );
        }
        Ok(())
    }

    /// The everyone channel as NAMES shows it.
    pub fn everyone_view(&self) -> RoomView {
        let st = self.read();
        let name: Arc<str> = Arc::from(self.irc.everyone.as_str());
        Self::view(&st.users, &name, None, &st.everyone)
    }

    /// Whether `id` is in the Everyone audience.
    pub fn in_everyone(&self, conn: ClientId) -> bool {
        let st = self.read();
        st.everyone.contains(pid(&st, conn))
    }

    /// Takes `id` out of `room`; returns the room's name.
    pub fn part(
        &self,
        conn: ClientId,
        room: &str,
        reason: Option<&str>,
    ) -> Result<Arc<str>, ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        let r = st.rooms.get(&key).ok_or(ErrorCode::NoSuchRoom)?;
        if !r.members.contains(id) {
            return Err(ErrorCode::NotInRoom);
        }
        let name = r.name.clone();
        let user = st.users.get_mut(&id).ok_or(ErrorCode::NotRegistered)?;
        user.rooms.retain(|k| *k != key);
        let (who_name, who_ident) = (user.name.clone(), user.ident().clone());
        let account = user.account;
        // The IRC user who parts sees its own PART, as IRC clients expect; the user's other
        // connections see it too, whatever they speak.
        let irc = matches!(
            user.each(id).find(|l| l.0 == conn),
            Some((_, _, Flavor::Irc { .. }))
        );
        if irc || user.links().is_some() {
            let own = self.lines(Event::Parted {
                room: &name,
                who: Who {
                    name: &who_name,
                    ident: &who_ident,
                    account,
                    real: None,
                },
                reason: reason.unwrap_or(""),
                disconnect: false,
            });
            Self::send_to(st, id, &own, (!irc).then_some(conn));
        }
        let who = Who {
            name: &who_name,
            ident: &who_ident,
            account,
            real: None,
        };
        self.depart(st, &key, id, who, reason.unwrap_or(""), false, false);
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Part {
                    c: id,
                    room: name.to_string(),
                    reason: reason.unwrap_or("").to_owned(),
                }),
                None,
            );
        }
        Ok(name)
    }

    /// Sends `text` from `id` to the other members of `room`; returns the room's name and how
    /// many got it.
    pub fn say(
        &self,
        conn: ClientId,
        room: &str,
        text: &str,
        notice: bool,
    ) -> Result<(Arc<str>, Reached), ErrorCode> {
        self.say_kept(conn, room, &[text], notice, None, "")
    }

    /// [`Hub::say`] with the sender's client-only IRC tags (escaped, `+a=b;+c`).
    pub fn say_tagged(
        &self,
        conn: ClientId,
        room: &str,
        text: &str,
        notice: bool,
        tags: &str,
    ) -> Result<(Arc<str>, Reached), ErrorCode> {
        self.say_kept(conn, room, &[text], notice, None, tags)
    }

    /// [`Hub::say_tagged`] of several texts, in order, as one buffer per member.
    pub fn say_each(
        &self,
        conn: ClientId,
        room: &str,
        texts: &[&str],
        notice: bool,
        tags: &str,
    ) -> Result<(Arc<str>, Reached), ErrorCode> {
        self.say_kept(conn, room, texts, notice, None, tags)
    }

    /// [`Hub::say`] of `texts`, `given` being the log id another node gave its user's one
    /// message.
    fn say_kept(
        &self,
        conn: ClientId,
        room: &str,
        texts: &[&str],
        notice: bool,
        given: Option<i64>,
        tags: &str,
    ) -> Result<(Arc<str>, Reached), ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        // A ghost's own node checked its right to speak.
        if is_local(id) {
            match r.members.get(id) {
                None if r.modes.settings.no_outside => return Err(ErrorCode::NotInRoom),
                None => {}
                Some(seat) if seat.op || seat.voice => {}
                Some(_) => r.modes.may_speak(from.who())?,
            }
        }
        let ids = match given {
            Some(_) => vec![given],
            None => self.new_ids(id, texts.len(), !notice),
        };
        let sent = self.send_kept(&r.members, conn, texts, &ids, tags, |text| Event::Say {
            room: &r.name,
            from: from.who(),
            text,
            notice,
        });
        Self::hold_if_congested(conn, from, sent.congested);
        let n = sent.n;
        self.stats.routed(n * texts.len());
        if !is_local(id) {
            return Ok((r.name.clone(), (n, None)));
        }
        if self.relays {
            for (text, &log_id) in texts.iter().zip(&ids) {
                self.backplane.publish(
                    Some(Op::Say {
                        c: id,
                        room: r.name.to_string(),
                        text: (*text).to_owned(),
                        notice,
                        id: log_id,
                    }),
                    None,
                );
            }
        }
        let kept = if notice {
            None
        } else {
            self.keep(id, from, || room_name::fold(&r.name), texts, &ids, None)
        };
        Ok((r.name.clone(), (n + r.members.ghosts, kept)))
    }

    /// Up to `max` rooms after `after` (a folded room name), in order of their folded names;
    /// see [`Hub::names_page`].
    /// Secret rooms are left out unless `asker` is in them.
    pub fn rooms_page(
        &self,
        asker: ClientId,
        after: Option<&str>,
        max: usize,
    ) -> Page<RoomSummary> {
        let st = self.read();
        let id = pid(&st, asker);
        page_of(&st.rooms, after, max, |r| {
            if r.modes.settings.secret && !r.members.contains(id) {
                return None;
            }
            Some(RoomSummary {
                name: r.name.clone(),
                members: r.members.len(),
                topic: r.topic.as_ref().map(|t| t.text.clone()),
            })
        })
    }

    /// How many rooms there are.
    pub fn room_count(&self) -> usize {
        self.read().rooms.len()
    }

    /// Up to `max` members of `room` (or of the everyone channel) after `after`, operators
    /// first, then by folded name; the key of the last one is the page's `last`. See
    /// [`Hub::names_page`]. Returns the room's name as created, with the page.
    pub fn members_page(
        &self,
        room: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Arc<str>, Page<MemberView>), ErrorCode> {
        let st = self.read();
        let (name, audience) = self.audience_of(&st, room)?;
        let next = first_seats(&st, audience, after, max);
        let mut page = Page {
            done: next.len() < max,
            ..Page::default()
        };
        for (key, u, s) in next {
            page.items.push(MemberView {
                name: u.name.clone(),
                ident: u.ident().clone(),
                op: s.op,
                voice: s.voice,
                away: u.away().is_some(),
            });
            page.last = Some(key);
        }
        Ok((name, page))
    }

    /// The everyone channel or the room named `room`: its name as created, and its audience.
    fn audience_of<'s>(
        &self,
        st: &'s State,
        room: &str,
    ) -> Result<(Arc<str>, &'s Audience), ErrorCode> {
        if self.is_everyone(room) {
            return Ok((Arc::from(self.irc.everyone.as_str()), &st.everyone));
        }
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        Ok((r.name.clone(), &r.members))
    }

    /// A room's topic, and its name as created.
    pub fn topic(&self, room: &str) -> Result<(Arc<str>, Option<RoomTopic>), ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        Ok((r.name.clone(), r.topic.clone()))
    }

    /// How many are in the Everyone audience.
    pub fn everyone_count(&self) -> usize {
        self.read().everyone.len()
    }

    /// A room's members and topic.
    pub fn room(&self, room: &str) -> Result<RoomView, ErrorCode> {
        let st = self.read();
        let r = st
            .rooms
            .get(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        Ok(Self::view(&st.users, &r.name, r.topic.as_ref(), &r.members))
    }

    /// Sets (or, with an empty text, clears) the topic of `room`; an operator's right. Every
    /// member, the setter too, gets the topic event. Returns the room's name.
    pub fn set_topic(&self, conn: ClientId, room: &str, text: &str) -> Result<Arc<str>, ErrorCode> {
        if text.len() > self.limits.topic_bytes && is_local(conn) {
            return Err(ErrorCode::TopicTooLong);
        }
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        let r = st
            .rooms
            .get_mut(&room_name::fold(room))
            .ok_or(ErrorCode::NoSuchRoom)?;
        let seat = r.members.get(id).ok_or(ErrorCode::NotInRoom)?;
        // A ghost's own node checked its rights against its own view of the room.
        if r.modes.settings.topic_ops && !seat.op && is_local(id) {
            return Err(ErrorCode::NotOperator);
        }
        let by = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        r.topic = (!text.is_empty()).then(|| RoomTopic {
            by: by.name.clone(),
            text: Arc::from(text),
            at: now_secs(),
        });
        r.members.send(
            &self.lines(Event::Topic {
                room: &r.name,
                by: by.who(),
                text,
            }),
            None,
        );
        if r.kept.is_some() && is_local(id) {
            self.write_room(&room_name::fold(room), r);
        }
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Topic {
                    c: id,
                    room: r.name.to_string(),
                    text: text.to_owned(),
                }),
                None,
            );
        }
        Ok(r.name.clone())
    }

    /// Removes `target` from `room` on behalf of operator `id`; returns the room's name and
    /// the target's name as registered.
    pub fn kick(
        &self,
        conn: ClientId,
        room: &str,
        target: &str,
        reason: Option<&str>,
    ) -> Result<(Arc<str>, Arc<str>), ErrorCode> {
        let key = room_name::fold(room);
        let mut guard = self.write();
        let st = &mut *guard;
        let id = pid(st, conn);
        self.room_right(st, id, &key, |_| true)?;
        let r = st.rooms.get_mut(&key).ok_or(ErrorCode::NoSuchRoom)?;
        let target_id = *st
            .names
            .get(name::fold(target).as_str())
            .ok_or(ErrorCode::NoSuchUser)?;
        if !r.members.contains(target_id) {
            return Err(ErrorCode::UserNotInRoom);
        }
        let (Some(by), Some(victim)) = (st.users.get(&id), st.users.get(&target_id)) else {
            return Err(ErrorCode::NoSuchUser);
        };
        let victim_name = victim.name.clone();
        let room_display = r.name.clone();
        r.members.send(
            &self.lines(Event::Kicked {
                room: &room_display,
                name: &victim_name,
                by: by.who(),
                reason: reason.unwrap_or(""),
            }),
            None,
        );
        // Everyone who stays has seen the kick already; no PARTED as well.
        r.members.remove(target_id);
        if r.members.len() == 0 {
            if r.kept.is_none() {
                Self::remove_room(st, &key);
                self.stats.set_rooms(st.rooms.len());
            }
        } else {
            self.hand_over(r, &st.users);
        }
        if let Some(u) = st.users.get_mut(&target_id) {
            u.rooms.retain(|k| *k != key);
        }
        if self.relays && is_local(id) {
            self.backplane.publish(
                Some(Op::Kick {
                    c: id,
                    room: room_display.to_string(),
                    target: victim_name.to_string(),
                    reason: reason.unwrap_or("").to_owned(),
                }),
                None,
            );
        }
        Ok((room_display, victim_name))
    }
}

/// What a registration needs before the hub can take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameCheck {
    /// Nothing: the hub decides alone.
    Local,
    /// Another user of this node has it.
    Taken,
    /// The folded name must be claimed across the cluster first.
    Claim(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_removal_keeps_index_consistent() {
        let mut a = Audience::default();
        for id in 0..10 {
            let seat = Seat {
                id,
                outbox: Arc::new(Outbox::new(1024)),
                flavor: Flavor::Native,
                op: false,
                voice: false,
                since: id,
                linked: false,
            };
            a.insert((seat, None));
        }
        for id in [3, 0, 9, 5] {
            assert!(a.remove(id).is_some());
            assert!(a.remove(id).is_none());
        }
        assert_eq!(a.len(), 6);
        for (i, s) in a.seats.iter().enumerate() {
            assert_eq!(a.index[&s.id], i);
        }
        assert_eq!(a.ensure_operator(), Some(1));
        assert_eq!(a.ensure_operator(), None);
    }

    /// A backplane that records what it is given.
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<Op>>);

    impl Backplane for Recorder {
        fn relays(&self) -> bool {
            true
        }
        fn publish(&self, op: Option<Op>, _: Option<(String, ClientId)>) {
            self.0.lock().unwrap().extend(op);
        }
        fn claim(&self, _: &str, _: ClientId) -> Option<tokio::sync::oneshot::Receiver<bool>> {
            None
        }
        fn assert_name(&self, _: &str, _: ClientId) {}
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut q = std::collections::VecDeque::new();
        o.drain_into(&mut q);
        q.iter()
            .map(|b| String::from_utf8_lossy(b).trim_end().to_owned())
            .collect()
    }

    fn online(c: u64, name: &str) -> Op {
        Op::Online {
            c,
            name: name.into(),
            ident: name.into(),
            irc: false,
            everyone: true,
        }
    }

    #[test]
    fn arrivals_are_gathered_and_announced_before_anything_else() {
        let names = IrcNames {
            server: "natter".into(),
            everyone: "#everyone".into(),
        };
        let hub = Hub::new(
            Arc::new(Stats::default()),
            RoomLimits::default(),
            names,
            crate::account::tests::accounts(),
        );
        let boxes: Vec<_> = (0..4).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
        for (id, name) in ["ann", "bob", "cy"].into_iter().enumerate() {
            hub.register(
                id as u64,
                &boxes[id],
                name,
                Flavor::Native,
                None,
                None,
                false,
            )
            .unwrap();
        }
        // No announcer runs here: the arrivals wait for the next thing pushed.
        assert!(drain(&boxes[0]).is_empty());
        assert_eq!(hub.broadcast(1, "hi", false).unwrap().0, 2);
        // One buffer for both arrivals, then the message; each arrival hears of later ones.
        assert_eq!(
            drain(&boxes[0]),
            ["ONLINE bob\nONLINE cy", "MESSAGE bob hi"]
        );
        assert_eq!(drain(&boxes[1]), ["ONLINE cy"]);
        assert_eq!(drain(&boxes[2]), ["MESSAGE bob hi"]);

        // A departure is not gathered: the arrival before it is announced first.
        hub.register(3, &boxes[3], "dee", Flavor::Native, None, None, false)
            .unwrap();
        hub.leave(2, crate::event::DISCONNECTED);
        assert_eq!(drain(&boxes[0]), ["ONLINE dee", "OFFLINE cy"]);
        assert_eq!(drain(&boxes[1]), ["ONLINE dee", "OFFLINE cy"]);
        assert_eq!(drain(&boxes[3]), ["OFFLINE cy"]);
    }

    #[test]
    fn ghosts_take_part_and_wait_for_their_names() {
        let rec = Arc::new(Recorder::default());
        let names = IrcNames {
            server: "natter".into(),
            everyone: "#everyone".into(),
        };
        let hub = Hub::new(
            Arc::new(Stats::default()),
            RoomLimits::default(),
            names,
            crate::account::tests::accounts(),
        )
        .with_backplane(rec.clone());
        let ann = Arc::new(Outbox::new(1 << 20));
        hub.register(1, &ann, "ann", Flavor::Native, None, None, false)
            .unwrap();
        hub.apply("n2", online(7, "bob"));
        // Counted, but delivered by its own node; relayed for it.
        assert_eq!(hub.broadcast(1, "hi", false).unwrap().0, 1);
        hub.apply(
            "n2",
            Op::Message {
                c: 7,
                text: "yo".into(),
                notice: false,
                id: None,
            },
        );
        assert_eq!(drain(&ann), ["ONLINE bob", "MESSAGE bob yo"]);
        assert!(matches!(
            &rec.0.lock().unwrap()[..],
            [Op::Online { .. }, Op::Message { .. }]
        ));

        // A ghost whose name a local user holds waits until the local user is renamed.
        hub.apply("n3", online(9, "ANN"));
        assert!(drain(&ann).is_empty());
        assert!(hub.force_rename(1, "ann2"));
        assert_eq!(drain(&ann), ["RENAMED ann ann2", "ONLINE ANN"]);

        // A node's list drops its ghosts not on it; a dead node's ghosts all go.
        hub.apply("n2", online(8, "cy"));
        hub.apply("n2", Op::Sync { clients: vec![8] });
        assert_eq!(drain(&ann), ["ONLINE cy", "OFFLINE bob"]);
        assert_eq!(hub.drop_node("n2"), 1);
        assert_eq!(drain(&ann), ["OFFLINE cy node lost"]);
        let names = hub.names_page(None, 10);
        assert!(names.done);
        assert_eq!(names.items, [Arc::from("ANN"), Arc::from("ann2")]);
    }

    #[test]
    fn real_names_travel_to_the_other_nodes() {
        let names = || IrcNames {
            server: "natter".into(),
            everyone: "#everyone".into(),
        };
        let rec = Arc::new(Recorder::default());
        let a = Hub::new(
            Arc::new(Stats::default()),
            RoomLimits::default(),
            names(),
            crate::account::tests::accounts(),
        )
        .with_backplane(rec.clone());
        let ann = Arc::new(Outbox::new(1 << 20));
        a.register(1, &ann, "ann", Flavor::irc(false), None, None, false)
            .unwrap();
        a.set_real_name(1, "Ann Smith", false);
        a.set_real_name(1, "Ann S", true);
        let sent: Vec<Op> = rec.0.lock().unwrap().drain(..).collect();
        let real = |real: &str, announce| Op::RealName {
            c: 1,
            real: real.into(),
            announce,
        };
        assert_eq!(sent[1..], [real("Ann Smith", false), real("Ann S", true)]);

        // Another node: its IRC user with `setname` hears of the change, not of the first.
        let b = Hub::new(
            Arc::new(Stats::default()),
            RoomLimits::default(),
            names(),
            crate::account::tests::accounts(),
        )
        .with_backplane(Arc::new(Recorder::default()));
        let bob = Arc::new(Outbox::new(1 << 20));
        b.register(5, &bob, "bob", Flavor::irc(false), None, None, false)
            .unwrap();
        b.set_notify(
            5,
            crate::watch::Notify {
                setname: true,
                ..Default::default()
            },
        );
        b.apply("a", sent[0].clone());
        b.apply("a", real("Ann Smith", false));
        assert_eq!(b.real_name("ann").as_deref(), Some("Ann Smith"));
        drain(&bob);
        b.apply("a", real("Ann S", true));
        assert_eq!(b.real_name("ann").as_deref(), Some("Ann S"));
        assert_eq!(drain(&bob), [":ann!ann@natter SETNAME :Ann S"]);
        // Longer than any node keeps: not taken.
        b.apply("a", real(&"x".repeat(101), true));
        assert_eq!(b.real_name("ann").as_deref(), Some("Ann S"));
        assert!(drain(&bob).is_empty());

        // A node re-asserting its users gives their real names too.
        b.apply(
            "a",
            Op::Snapshot {
                c: 2,
                name: "cy".into(),
                ident: "cy".into(),
                irc: true,
                everyone: true,
                rooms: Vec::new(),
                away: None,
                real: Some("Cy Young".into()),
            },
        );
        assert_eq!(b.real_name("cy").as_deref(), Some("Cy Young"));
    }
}
