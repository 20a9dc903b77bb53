//! Cluster mode: several processes share one conversation through Redis.
//!
//! Every node appends the operations its hub publishes to one Redis stream, in order, and
//! applies every other node's operations to its own hub, where their users are ghosts. Names
//! are claimed in a Redis hash before a registration counts, so exactly one of two racing
//! nodes wins. Each node keeps a key alive with a short expiry; a node whose key expired is
//! dead, and the others drop its ghosts and free its names. See the "Cluster" section of
//! ARCHITECTURE.md for the failure semantics.
//!
//! Four tasks do the work, each with its own connection and its own reconnect loop: the
//! publisher (the in-memory queue to `XADD`), the reader (`XREAD` to [`Hub::apply`]), the
//! heartbeat (liveness of this node and of the others, and detection of a Redis that lost
//! its data) and the claimer (names). The hub never waits for any of them.

use crate::backplane::{Backplane, Op};
use crate::client_id::ClientId;
use crate::hub::Hub;
use crate::stats::Stats;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The stream every node appends to and reads.
const STREAM: &str = "natter:events";
/// The hash of claimed names: folded name to `"<node> <client>"`.
const NAMES: &str = "natter:names";
/// A random value set once per Redis data set; a different one means Redis lost its data.
const EPOCH: &str = "natter:epoch";
/// Roughly how many entries the stream keeps; a reader further behind loses entries.
const STREAM_LEN: usize = 100_000;
/// Most operations waiting while Redis is away; past it the queue is dropped and the
/// node's whole state is re-asserted once Redis is back.
const MAX_QUEUED: usize = 100_000;
/// How often a node refreshes its liveness key and looks at the others'.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a liveness key lives without a refresh: a node silent this long is dead.
const NODE_TTL: Duration = Duration::from_secs(7);
/// After this node's own reconnect, how long it waits before judging the others, who may
/// be reconnecting too.
const JUDGE_GRACE: Duration = Duration::from_secs(3);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a REGISTER waits for the cluster to confirm its name.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(4);
/// The largest operation a node accepts from the stream: a 4 KiB line's text escaped, or a
/// user's snapshot with every room, fit well within it.
const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Entries taken per read, and appended per round trip.
const BATCH: usize = 512;

const CLAIM: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
if v == ARGV[2] then return 1 end
return 0
";

const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
";

const FORGET_NODE: &str = r"
local names = redis.call('SMEMBERS', KEYS[2])
for _, n in ipairs(names) do
  local v = redis.call('HGET', KEYS[1], n)
  if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
    redis.call('HDEL', KEYS[1], n)
  end
end
redis.call('DEL', KEYS[2])
return #names
";

/// Where the cluster's Redis is and who this node is.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node_id: String,
}

/// A node id nobody else has: host name, process id and a random part.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "natter".to_owned());
    let host: String = host
        .chars()
        .filter(|c| valid_id_char(*c))
        .take(40)
        .collect();
    format!("{host}-{}-{:08x}", std::process::id(), random() as u32)
}

/// Whether `c` may appear in a node id (which appears in Redis values beside a space).
pub fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// A random number from the standard library's hasher seeds and the clock.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_micros() as u128);
    h.finish()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One queued item: an operation to append, a name to give up after it, or both.
#[derive(Debug)]
struct Outgoing {
    seq: u64,
    op: Option<Op>,
    release: Option<(String, ClientId)>,
}

/// A queued item as sent: its sequence number, the entry's JSON and the claim to give up.
type Encoded = (u64, Option<String>, Option<(String, ClientId)>);

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// The queue passed its bound and was dropped: re-assert everything once Redis is back.
    overflowed: bool,
}

/// What the claimer is asked.
#[derive(Debug)]
enum NameJob {
    /// Claim for a waiting REGISTER.
    Claim(String, ClientId, oneshot::Sender<bool>),
    /// Claim in the background; rename the user if the claim fails.
    Assert(String, ClientId),
}

/// The Redis backplane: the hub's side (queues, never blocks) and the tasks' shared state.
#[derive(Debug)]
pub struct Redis {
    node: Arc<str>,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Sequence numbers of this node's entries; they start at the clock so that a restarted
    /// node with the same id still counts up.
    seq: AtomicU64,
    names: mpsc::UnboundedSender<NameJob>,
    /// Taken by [`Redis::start`].
    jobs: Mutex<Option<mpsc::UnboundedReceiver<NameJob>>>,
    stats: Arc<Stats>,
    client: Client,
    /// Set by the heartbeat when Redis lost its data: the reader starts over from the
    /// stream's beginning.
    reread: AtomicBool,
}

impl Redis {
    /// A backplane for `cfg`; nothing connects until [`Redis::start`].
    pub fn new(cfg: &ClusterConfig, stats: Arc<Stats>) -> redis::RedisResult<Arc<Self>> {
        let client = Client::open(cfg.url.as_str())?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            node: Arc::from(cfg.node_id.as_str()),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            seq: AtomicU64::new(now_micros()),
            names: tx,
            jobs: Mutex::new(Some(rx)),
            stats,
            client,
            reread: AtomicBool::new(false),
        }))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn owner(&self, id: ClientId) -> String {
        format!("{} {id}", self.node)
    }

    fn owned_key(node: &str) -> String {
        format!("natter:owned:{node}")
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the tasks; they stop when `stop` is cancelled.
    pub fn start(self: &Arc<Self>, hub: Arc<Hub>, stop: CancellationToken) {
        self.publish(Some(Op::Sync { clients: vec![] }), None);
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        tokio::spawn(self.clone().publisher(hub.clone(), stop.clone()));
        tokio::spawn(self.clone().reader(hub.clone(), stop.clone()));
        tokio::spawn(self.clone().heartbeat(hub.clone(), stop.clone()));
        if let Some(jobs) = jobs {
            tokio::spawn(self.clone().claimer(hub, jobs, stop));
        }
    }

    /// Waits until everything queued is appended, or `limit` passes.
    pub async fn flush(&self, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end && !self.queue().items.is_empty() {
            sleep(Duration::from_millis(10)).await;
        }
    }

    async fn connect(
        &self,
        response: Option<Duration>,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(response);
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// Connects, retrying with exponential backoff; `None` once `stop` is cancelled.
    ///
    /// `pause` grows with each call and is reset by the caller's next success: a Redis that
    /// accepts connections but refuses the commands (out of memory, a key of the wrong type)
    /// is retried ever more slowly instead of in a tight loop.
    async fn reconnect(
        &self,
        what: &str,
        response: Option<Duration>,
        first: bool,
        stop: &CancellationToken,
        pause: &mut Duration,
    ) -> Option<MultiplexedConnection> {
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = sleep(*pause) => {}
            }
        }
        *pause = (*pause * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
        let mut backoff = Duration::from_millis(50);
        loop {
            if stop.is_cancelled() {
                return None;
            }
            match self.connect(response).await {
                Ok(c) => {
                    if !first {
                        self.stats
                            .backplane
                            .reconnects
                            .fetch_add(1, Ordering::Relaxed);
                        info!(task = what, "reconnected to redis");
                    }
                    return Some(c);
                }
                Err(e) => {
                    debug!(task = what, error = %e, retry_in = ?backoff, "redis unreachable");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Appends queued operations in order. An item leaves the queue only once Redis took
    /// it; one that was taken but whose answer was lost is appended again, and readers drop
    /// the copy by its sequence number.
    async fn publisher(self: Arc<Self>, hub: Arc<Hub>, stop: CancellationToken) {
        let owned = Self::owned_key(&self.node);
        let mut first = true;
        let mut pause = Duration::ZERO;
        'connect: loop {
            let Some(mut con) = self
                .reconnect(
                    "publisher",
                    Some(Duration::from_secs(2)),
                    first,
                    &stop,
                    &mut pause,
                )
                .await
            else {
                return;
            };
            first = false;
            loop {
                let overflowed = std::mem::take(&mut self.queue().overflowed);
                if overflowed {
                    warn!(
                        "the backplane queue overflowed while redis was away; re-asserting every user"
                    );
                    hub.republish();
                }
                let batch: Vec<Encoded> = {
                    let q = self.queue();
                    q.items
                        .iter()
                        .take(BATCH)
                        .map(|o| {
                            let json = o.op.as_ref().and_then(|op| serde_json::to_string(op).ok());
                            (o.seq, json, o.release.clone())
                        })
                        .collect()
                };
                if batch.is_empty() {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            return;
                        }
                        _ = self.wake.notified() => continue,
                        // A lost wake-up costs at most this.
                        _ = sleep(Duration::from_millis(200)) => continue,
                    }
                }
                let mut pipe = redis::pipe();
                for (seq, json, rel) in &batch {
                    if let Some(json) = json {
                        pipe.cmd("XADD")
                            .arg(STREAM)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(STREAM_LEN)
                            .arg("*")
                            .arg("n")
                            .arg(&*self.node)
                            .arg("s")
                            .arg(*seq)
                            .arg("o")
                            .arg(json)
                            .ignore();
                    }
                    if let Some((name, id)) = rel {
                        // EVAL, not EVALSHA: a pipeline cannot load a script Redis lacks.
                        pipe.cmd("EVAL")
                            .arg(RELEASE)
                            .arg(2)
                            .arg(NAMES)
                            .arg(&owned)
                            .arg(name)
                            .arg(self.owner(*id))
                            .ignore();
                    }
                }
                match pipe.query_async::<()>(&mut con).await {
                    Ok(()) => {
                        pause = Duration::ZERO;
                        let mut q = self.queue();
                        // Only what was sent leaves: an overflow may have emptied the queue
                        // meanwhile, and what came after has higher sequence numbers.
                        let sent = batch.last().map_or(0, |b| b.0);
                        let mut published = 0;
                        while q.items.front().is_some_and(|o| o.seq <= sent) {
                            if q.items.pop_front().is_some_and(|o| o.op.is_some()) {
                                published += 1;
                            }
                        }
                        self.stats
                            .backplane
                            .queued
                            .store(q.items.len(), Ordering::Relaxed);
                        self.stats
                            .backplane
                            .published
                            .fetch_add(published, Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(error = %e, queued = self.queue().items.len(), "appending to redis failed; reconnecting");
                        continue 'connect;
                    }
                }
            }
        }
    }

    /// Applies the other nodes' entries to the hub, each once, in the stream's order.
    async fn reader(self: Arc<Self>, hub: Arc<Hub>, stop: CancellationToken) {
        let mut last_id = String::new();
        let mut seen: HashMap<Arc<str>, u64> = HashMap::new();
        let mut first = true;
        let mut pause = Duration::ZERO;
        'connect: loop {
            let Some(mut con) = self
                .reconnect(
                    "reader",
                    Some(Duration::from_secs(4)),
                    first,
                    &stop,
                    &mut pause,
                )
                .await
            else {
                return;
            };
            first = false;
            if last_id.is_empty() {
                // A new node starts at the end: what came before, the others tell again when
                // they read its Hello.
                match redis::cmd("XREVRANGE")
                    .arg(STREAM)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async::<Value>(&mut con)
                    .await
                {
                    Ok(v) => {
                        last_id = entries(&v)
                            .first()
                            .map(|e| e.0.clone())
                            .unwrap_or_else(|| "0-0".to_owned());
                        // Only now: the others' answers, and everything after them, come
                        // after the place this reader starts from.
                        self.publish(Some(Op::Hello), None);
                    }
                    Err(e) => {
                        debug!(error = %e, "reading the stream's end failed");
                        continue 'connect;
                    }
                }
            }
            loop {
                if self.reread.swap(false, Ordering::Relaxed) {
                    last_id = "0-0".to_owned();
                }
                let mut xread = redis::cmd("XREAD");
                xread
                    .arg("COUNT")
                    .arg(BATCH)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(&last_id);
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = xread.query_async::<Value>(&mut con) => r,
                };
                let v = match read {
                    Ok(v) => {
                        pause = Duration::ZERO;
                        v
                    }
                    Err(e) => {
                        warn!(error = %e, "reading from redis failed; reconnecting");
                        continue 'connect;
                    }
                };
                let streams = match &v {
                    Value::Nil => continue,
                    Value::Array(a) => a.clone(),
                    Value::Map(m) => m
                        .iter()
                        .map(|(k, v)| Value::Array(vec![k.clone(), v.clone()]))
                        .collect(),
                    _ => continue,
                };
                for s in streams {
                    let Value::Array(pair) = s else { continue };
                    let Some(list) = pair.get(1) else { continue };
                    for (id, fields) in entries(list) {
                        last_id = id.clone();
                        self.handle(&hub, &mut seen, &id, &fields);
                    }
                }
            }
        }
    }

    /// One entry from the stream; anything malformed is logged and skipped.
    fn handle(
        &self,
        hub: &Hub,
        seen: &mut HashMap<Arc<str>, u64>,
        id: &str,
        fields: &[(String, String)],
    ) {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        let (Some(node), Some(seq), Some(op)) = (get("n"), get("s"), get("o")) else {
            warn!(id, "malformed stream entry skipped");
            return;
        };
        if node == &*self.node {
            return;
        }
        let Ok(seq) = seq.parse::<u64>() else {
            warn!(id, "stream entry with a bad sequence number skipped");
            return;
        };
        if node.is_empty() || node.len() > 128 || !node.chars().all(valid_id_char) {
            warn!(id, "stream entry with a bad node id skipped");
            return;
        }
        let last = seen.entry(Arc::from(node)).or_insert(0);
        if seq <= *last {
            return;
        }
        *last = seq;
        if op.len() > MAX_ENTRY_BYTES {
            warn!(id, bytes = op.len(), "oversized stream entry skipped");
            return;
        }
        let op: Op = match serde_json::from_str(op) {
            Ok(op) => op,
            Err(e) => {
                warn!(id, error = %e, "undecodable stream entry skipped");
                return;
            }
        };
        if let Some(ms) = id.split('-').next().and_then(|t| t.parse::<u64>().ok()) {
            let lag = (now_micros() / 1000).saturating_sub(ms);
            self.stats.backplane.lag_ms.store(lag, Ordering::Relaxed);
        }
        self.stats.backplane.relayed.fetch_add(1, Ordering::Relaxed);
        match op {
            Op::Hello => hub.republish(),
            Op::Dm { ref node, .. } | Op::Kill { ref node, .. } if **node != *self.node => {}
            op => hub.apply(node, op),
        }
    }

    /// Keeps this node alive, finds dead nodes, and notices a Redis that lost its data.
    async fn heartbeat(self: Arc<Self>, hub: Arc<Hub>, stop: CancellationToken) {
        let me = format!("natter:node:{}", self.node);
        let forget = Script::new(FORGET_NODE);
        let mut epoch: Option<String> = None;
        let mut first = true;
        let mut pause = Duration::ZERO;
        'connect: loop {
            let Some(mut con) = self
                .reconnect(
                    "heartbeat",
                    Some(Duration::from_secs(1)),
                    first,
                    &stop,
                    &mut pause,
                )
                .await
            else {
                return;
            };
            let mut judge_from = Instant::now() + if first { NODE_TTL } else { JUDGE_GRACE };
            let mut announced = !first;
            first = false;
            loop {
                // SET ... GET answers the value before: none means this node was taken for
                // dead (or Redis lost its data), so its users must be asserted again.
                let before = redis::cmd("SET")
                    .arg(&me)
                    .arg(now_micros())
                    .arg("PX")
                    .arg(NODE_TTL.as_millis() as u64)
                    .arg("GET")
                    .query_async::<Option<String>>(&mut con)
                    .await;
                let before = match before {
                    Ok(b) => {
                        pause = Duration::ZERO;
                        b
                    }
                    Err(e) => {
                        warn!(error = %e, "heartbeat failed; reconnecting");
                        continue 'connect;
                    }
                };
                let current = match self.epoch(&mut con).await {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "epoch check failed; reconnecting");
                        continue 'connect;
                    }
                };
                let lost_data = epoch.as_ref().is_some_and(|old| *old != current);
                epoch = Some(current);
                if lost_data || (before.is_none() && announced) {
                    warn!(lost_data, "redis forgot this node; re-asserting every user");
                    self.stats.backplane.resets.fetch_add(1, Ordering::Relaxed);
                    if lost_data {
                        self.reread.store(true, Ordering::Relaxed);
                    }
                    judge_from = Instant::now() + JUDGE_GRACE;
                    for (id, name) in hub.local_names() {
                        let _ = self
                            .names
                            .send(NameJob::Assert(natter_proto::name::fold(&name), id));
                    }
                    let _ = self.names.send(NameJob::Assert(String::new(), 0));
                }
                announced = true;
                if Instant::now() >= judge_from {
                    for node in hub.nodes() {
                        let key = format!("natter:node:{node}");
                        match redis::cmd("EXISTS")
                            .arg(&key)
                            .query_async::<i64>(&mut con)
                            .await
                        {
                            Ok(0) => {
                                let freed = forget
                                    .key(NAMES)
                                    .key(Self::owned_key(&node))
                                    .arg(format!("{node} "))
                                    .invoke_async::<i64>(&mut con)
                                    .await;
                                if let Err(e) = freed {
                                    warn!(error = %e, "freeing a dead node's names failed");
                                    continue 'connect;
                                }
                                let n = hub.drop_node(&node);
                                self.stats
                                    .backplane
                                    .nodes_lost
                                    .fetch_add(1, Ordering::Relaxed);
                                warn!(node = %node, users = n, "node lost");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "liveness check failed; reconnecting");
                                continue 'connect;
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = redis::cmd("DEL").arg(&me).query_async::<i64>(&mut con).await;
                        return;
                    }
                    _ = sleep(HEARTBEAT) => {}
                }
            }
        }
    }

    /// The data set's epoch, set now if Redis has none.
    async fn epoch(&self, con: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        let fresh = format!("{:016x}", random());
        let _: Value = redis::cmd("SET")
            .arg(EPOCH)
            .arg(&fresh)
            .arg("NX")
            .query_async(con)
            .await?;
        let v: Option<String> = redis::cmd("GET").arg(EPOCH).query_async(con).await?;
        Ok(v.unwrap_or(fresh))
    }

    /// Claims names, in the order asked.
    async fn claimer(
        self: Arc<Self>,
        hub: Arc<Hub>,
        mut jobs: mpsc::UnboundedReceiver<NameJob>,
        stop: CancellationToken,
    ) {
        let claim = Script::new(CLAIM);
        let owned = Self::owned_key(&self.node);
        let mut first = true;
        let mut con: Option<MultiplexedConnection> = None;
        let mut asserted = false;
        let mut pause = Duration::ZERO;
        loop {
            let job = tokio::select! {
                _ = stop.cancelled() => return,
                j = jobs.recv() => match j { Some(j) => j, None => return },
            };
            let (key, id) = match &job {
                NameJob::Claim(k, id, _) | NameJob::Assert(k, id) => (k.clone(), *id),
            };
            if key.is_empty() {
                // The end of a round of assertions: tell the others the whole state.
                if asserted {
                    hub.republish();
                }
                asserted = false;
                continue;
            }
            let deadline = Instant::now() + CLAIM_TIMEOUT;
            let mut won = None;
            while Instant::now() < deadline && won.is_none() {
                if con.is_none() {
                    con = timeout(
                        deadline - Instant::now(),
                        self.reconnect(
                            "claimer",
                            Some(Duration::from_secs(1)),
                            first,
                            &stop,
                            &mut pause,
                        ),
                    )
                    .await
                    .ok()
                    .flatten();
                    first = false;
                    if con.is_none() {
                        break;
                    }
                }
                let Some(c) = con.as_mut() else { break };
                match claim
                    .key(NAMES)
                    .key(&owned)
                    .arg(&key)
                    .arg(self.owner(id))
                    .invoke_async::<i64>(c)
                    .await
                {
                    Ok(r) => {
                        pause = Duration::ZERO;
                        won = Some(r == 1);
                    }
                    Err(e) => {
                        debug!(error = %e, "claiming a name failed");
                        con = None;
                    }
                }
            }
            match job {
                NameJob::Claim(_, _, reply) => {
                    if let Some(w) = won {
                        let _ = reply.send(w);
                    }
                }
                NameJob::Assert(_, id) => {
                    asserted = true;
                    if won == Some(false)
                        && let Some(c) = con.as_mut()
                    {
                        self.rename_loser(&hub, c, &claim, &owned, id).await;
                    }
                }
            }
        }
    }

    /// Renames a local user whose name another node's user holds: the first free name made
    /// of the old one and a number.
    async fn rename_loser(
        &self,
        hub: &Hub,
        con: &mut MultiplexedConnection,
        claim: &Script,
        owned: &str,
        id: ClientId,
    ) {
        let Some(old) = hub.name_of(id) else { return };
        for attempt in 0..20u64 {
            let n = (random() % 10_000) + attempt;
            let suffix = n.to_string();
            let keep = natter_proto::limits::MAX_NAME_LEN.saturating_sub(suffix.len());
            let base: String = old.chars().take(keep).collect();
            let cand = format!("{base}{suffix}");
            if natter_proto::name::validate(&cand).is_err() {
                continue;
            }
            let key = natter_proto::name::fold(&cand);
            match claim
                .key(NAMES)
                .key(owned)
                .arg(&key)
                .arg(self.owner(id))
                .invoke_async::<i64>(con)
                .await
            {
                Ok(1) => {
                    if hub.force_rename(id, &cand) {
                        self.stats.backplane.renamed.fetch_add(1, Ordering::Relaxed);
                        info!(from = %old, to = %cand, "renamed: another node's user holds the name");
                    } else {
                        self.publish(None, Some((key, id)));
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "renaming a name's loser failed");
                    return;
                }
            }
        }
    }
}

/// A stream's entries as (id, fields); whatever does not have that shape is left out.
fn entries(v: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    list.iter()
        .filter_map(|e| {
            let Value::Array(e) = e else { return None };
            let id = text(e.first()?)?;
            let fields = match e.get(1)? {
                Value::Array(f) => f
                    .chunks_exact(2)
                    .filter_map(|p| Some((text(&p[0])?, text(&p[1])?)))
                    .collect(),
                Value::Map(m) => m
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => return None,
            };
            Some((id, fields))
        })
        .collect()
}

impl Backplane for Redis {
    fn relays(&self) -> bool {
        true
    }

    fn publish(&self, op: Option<Op>, release: Option<(String, ClientId)>) {
        let mut q = self.queue();
        if q.items.len() >= MAX_QUEUED && !matches!(op, Some(Op::Snapshot { .. } | Op::Sync { .. }))
        {
            if !q.overflowed {
                let n = q.items.len() as u64;
                self.stats.backplane.dropped.fetch_add(n, Ordering::Relaxed);
                q.items.clear();
                q.overflowed = true;
            }
            self.stats.backplane.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        q.items.push_back(Outgoing { seq, op, release });
        self.stats
            .backplane
            .queued
            .store(q.items.len(), Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
    }

    fn claim(&self, folded: &str, id: ClientId) -> Option<oneshot::Receiver<bool>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.names.send(NameJob::Claim(folded.to_owned(), id, tx));
        Some(rx)
    }

    fn assert_name(&self, folded: &str, id: ClientId) {
        let _ = self.names.send(NameJob::Assert(folded.to_owned(), id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Flavor, IrcNames};
    use crate::hub::RoomLimits;
    use crate::outbox::Outbox;

    fn fields(node: &str, seq: &str, op: &str) -> Vec<(String, String)> {
        vec![
            ("n".into(), node.into()),
            ("s".into(), seq.into()),
            ("o".into(), op.into()),
        ]
    }

    #[tokio::test]
    async fn entries_apply_once_and_garbage_is_skipped() {
        let stats = Arc::new(Stats::default());
        let cfg = ClusterConfig {
            url: "redis://127.0.0.1:1".into(),
            node_id: "me".into(),
        };
        let redis = Redis::new(&cfg, stats.clone()).unwrap();
        let hub = Hub::new(
            stats.clone(),
            RoomLimits::default(),
            IrcNames {
                server: "natter".into(),
                everyone: "#everyone".into(),
            },
            crate::account::tests::accounts(),
        )
        .with_backplane(redis.clone());
        let outbox = Arc::new(Outbox::new(1 << 20));
        hub.register(1, &outbox, "ann", Flavor::Native, None, None, false)
            .unwrap();
        let mut seen = HashMap::new();
        let online =
            r#"{"t":"online","c":4,"name":"bob","ident":"bob","irc":false,"everyone":true}"#;
        let msg = r#"{"t":"message","c":4,"text":"hi","notice":false}"#;
        for (id, f) in [
            ("1-0", fields("other", "10", online)),
            ("2-0", fields("other", "11", msg)),
            // A retried append: the same sequence number again.
            ("3-0", fields("other", "11", msg)),
            // Hostile or broken entries.
            ("4-0", fields("other", "12", "{not json")),
            ("5-0", fields("bad node", "13", msg)),
            ("6-0", fields("other", "x", msg)),
            ("7-0", vec![("n".into(), "other".into())]),
            (
                "8-0",
                fields(
                    "other",
                    "14",
                    r#"{"t":"online","c":5,"name":"no way","ident":"x","irc":false,"everyone":true}"#,
                ),
            ),
            // This node's own entries are not applied again.
            ("9-0", fields("me", "99", msg)),
        ] {
            redis.handle(&hub, &mut seen, id, &f);
        }
        let mut lines = std::collections::VecDeque::new();
        outbox.drain_into(&mut lines);
        let lines: Vec<&[u8]> = lines.iter().map(|b| &b[..]).collect();
        assert_eq!(lines, [&b"ONLINE bob\n"[..], &b"MESSAGE bob hi\n"[..]]);
    }
}
