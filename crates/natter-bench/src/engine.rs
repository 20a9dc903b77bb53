//! The machinery every messaging workload shares: who sends to whom ([`Topology`]), the
//! in-flight window ([`Board`]), the shared state of a run ([`Shared`]), and the one task that
//! drives each connection ([`drive`]).
//!
//! One task per connection both reads and writes its socket. Receivers account for every
//! delivery as it arrives; senders write as fast as their window (and their rate, if one is
//! set) allows. The window is measured in deliveries seen by receivers, never in the
//! server's acknowledgements: natter acknowledges a MESSAGE as soon as it is queued, so a
//! sender pacing itself by acks could outrun its receivers without bound (and get them
//! dropped as slow consumers).
//!
//! # The window
//! Each receiver publishes, per sender, how many of that sender's messages it has received
//! without a hole ([`Stream::contiguous`]) in a [`Board`] of atomics, once per read. Sender
//! `s` may write message `n` once every one of its receivers has published at least
//! `n + 1 - W`. The sender only looks at the board (the least progress over its receivers)
//! when its last look no longer allows the next message, so a sender whose receivers keep up
//! scans them about once per window's worth of messages. A blocked sender publishes the
//! progress it waits for (its gate); the receiver whose progress crosses the gate wakes it.

use crate::accounting::{Latencies, Stream, Tally};
use crate::conn::{Conn, Read};
use crate::dialect::{Control, Dest, Dialect};
use crate::payload::{self, Stamp};
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};

/// Bytes read from one connection per wake-up before other tasks get a turn.
const READ_BUDGET: usize = 1024 * 1024;
/// Most output a sender queues before it waits for the socket.
const MAX_QUEUED: usize = 64 * 1024;
/// Error lines kept as examples for the report.
const ERROR_SAMPLES: usize = 5;

/// Who sends to whom. Clients are numbered from 0; the first `broadcasters` send to everyone
/// (or the room), the next `2 * dm_pairs` send DMs to each other in pairs, the rest only
/// receive. Everyone receives every broadcast (except their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Clients that take part (churning clients in a soak are not counted).
    pub clients: usize,
    /// Clients `0..broadcasters` broadcast.
    pub broadcasters: usize,
    /// Clients `broadcasters + 2i` and `broadcasters + 2i + 1` DM each other.
    pub dm_pairs: usize,
}

impl Topology {
    /// How many clients send.
    pub fn senders(&self) -> usize {
        self.broadcasters + 2 * self.dm_pairs
    }

    /// The DM partner of client `i`, if it is in a pair.
    pub fn partner(&self, i: usize) -> Option<usize> {
        let k = i.checked_sub(self.broadcasters)?;
        (k < 2 * self.dm_pairs).then(|| self.broadcasters + (k ^ 1))
    }

    /// How many receivers each message of sender `s` has.
    pub fn fanout(&self, s: usize) -> usize {
        if s < self.broadcasters {
            self.clients - 1
        } else {
            1
        }
    }

    /// The `k`-th receiver of sender `s` (`k < fanout(s)`).
    fn receiver(&self, s: usize, k: usize) -> usize {
        if s < self.broadcasters {
            if k < s { k } else { k + 1 }
        } else {
            self.partner(s).expect("a DM sender has a partner")
        }
    }

    /// Streams a receiver tracks: one per broadcaster, and one for its DM partner.
    pub fn slots(&self) -> usize {
        self.broadcasters + 1
    }

    /// Which of receiver `r`'s streams carries sender `s`, if `r` should hear from `s`.
    pub fn slot(&self, r: usize, s: usize) -> Option<usize> {
        if r >= self.clients || r == s {
            None
        } else if s < self.broadcasters {
            Some(s)
        } else if self.partner(r) == Some(s) {
            Some(self.broadcasters)
        } else {
            None
        }
    }

    /// The sender a receiver's slot `k` listens to.
    fn slot_sender(&self, r: usize, k: usize) -> Option<usize> {
        if k < self.broadcasters {
            (k != r).then_some(k)
        } else {
            self.partner(r)
        }
    }

    /// Where the progress of `s`'s messages to `r` is published.
    fn stream_id(&self, s: usize, r: usize) -> usize {
        if s < self.broadcasters {
            s * self.clients + r
        } else {
            self.broadcasters * self.clients + (s - self.broadcasters)
        }
    }

    /// How many (sender, receiver) streams exist.
    fn streams(&self) -> usize {
        self.broadcasters * self.clients + 2 * self.dm_pairs
    }
}

/// Progress published by receivers, read by senders for their windows.
#[derive(Debug)]
pub struct Board {
    /// Per stream, how many messages arrived without a hole.
    progress: Vec<AtomicU64>,
    /// Per sender, the progress it waits for (`u64::MAX` when not waiting).
    gate: Vec<AtomicU64>,
    /// Per sender, wakes it when its gate is crossed.
    wake: Vec<Notify>,
}

impl Board {
    fn new(topo: &Topology) -> Self {
        Self {
            progress: (0..topo.streams()).map(|_| AtomicU64::new(0)).collect(),
            gate: (0..topo.senders())
                .map(|_| AtomicU64::new(u64::MAX))
                .collect(),
            wake: (0..topo.senders()).map(|_| Notify::new()).collect(),
        }
    }

    /// The least progress of `s`'s messages over its receivers.
    fn min_progress(&self, topo: &Topology, s: usize) -> u64 {
        (0..topo.fanout(s))
            .map(|k| self.progress[topo.stream_id(s, topo.receiver(s, k))].load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether every receiver of every sender has all `sent[s]` messages.
    pub fn complete(&self, topo: &Topology, sent: &[u64]) -> bool {
        (0..topo.senders()).all(|s| self.min_progress(topo, s) >= sent[s])
    }
}

/// When things happen in a run, as offsets from its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Senders start.
    pub start: Duration,
    /// The measured window starts (after the warm-up).
    pub measure_from: Duration,
    /// The measured window ends; senders stop.
    pub measure_to: Duration,
}

/// What the connection tasks are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected: read and account, but do not send yet.
    Idle,
    /// Send and receive on this schedule.
    Run(Timings),
    /// Stop and report.
    Stop,
}

/// How senders pace themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Messages per second per sender; `None` for as fast as the window allows.
    pub rate: Option<f64>,
    /// Most messages per sender not yet received by all of its receivers.
    pub window: u64,
    /// Stop after this many messages per sender (the rest of the schedule idles).
    pub count: Option<u64>,
}

/// Everything the connection tasks of one run share.
#[derive(Debug)]
pub struct Shared {
    /// Who sends to whom.
    pub topo: Topology,
    /// The protocol.
    pub dialect: Dialect,
    /// The IRC channel that stands for everyone.
    pub channel: String,
    /// A natter room to SAY to instead of MESSAGE to everyone.
    pub room: Option<String>,
    /// Every client's name, by index (DMs are addressed by name).
    pub names: Vec<String>,
    /// Payload size in bytes.
    pub size: usize,
    /// Sender pacing.
    pub pace: Pace,
    /// The run's clock: payload times are nanoseconds since this instant.
    pub epoch: Instant,
    /// Progress for the windows.
    pub board: Board,
    /// Latencies of messages sent in the measured window (or of the current soak interval).
    pub latency: Latencies,
    /// Every delivery received, tracked or not.
    pub delivered: AtomicU64,
    /// Deliveries received during the measured window.
    pub delivered_in_window: AtomicU64,
    /// Messages written so far, per sender.
    pub sent: Vec<AtomicU64>,
    /// Error lines received (refused commands).
    pub errors: AtomicU64,
    /// The first few error lines, for the report.
    pub error_samples: Mutex<Vec<String>>,
    /// Connections the server closed (BYE, ERROR or EOF) before the end.
    pub closed: AtomicU64,
    /// Connection tasks running now.
    pub live: AtomicUsize,
    /// Set when the run is over, so closes are not counted as failures.
    pub ending: AtomicBool,
    /// Start of the measured window, ns since the epoch: latencies of messages sent from
    /// then on are recorded, and deliveries from then on counted in the rate.
    pub window_from: AtomicU64,
    /// End of the measured window, ns since the epoch (0 before the run starts).
    pub window_to: AtomicU64,
}

impl Shared {
    /// State for a run of `topo` with the given protocol, names and pacing.
    pub fn new(
        topo: Topology,
        dialect: Dialect,
        names: Vec<String>,
        channel: String,
        room: Option<String>,
        size: usize,
        pace: Pace,
    ) -> Self {
        Self {
            topo,
            dialect,
            channel,
            room,
            names,
            size,
            pace,
            epoch: Instant::now(),
            board: Board::new(&topo),
            latency: Latencies::new(8),
            delivered: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            sent: (0..topo.senders()).map(|_| AtomicU64::new(0)).collect(),
            errors: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            closed: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            ending: AtomicBool::new(false),
            window_from: AtomicU64::new(0),
            window_to: AtomicU64::new(0),
        }
    }

    /// Sets the measured window (call before publishing [`Phase::Run`]).
    pub fn set_window(&self, from: Duration, to: Duration) {
        self.window_from
            .store(from.as_nanos() as u64, Ordering::SeqCst);
        self.window_to.store(to.as_nanos() as u64, Ordering::SeqCst);
    }

    /// The measured window in ns since the epoch.
    fn measure_window_ns(&self) -> (u64, u64) {
        let from = self.window_from.load(Ordering::Relaxed);
        let to = self.window_to.load(Ordering::Relaxed);
        (from, to)
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Messages written so far, per sender.
    pub fn sent_counts(&self) -> Vec<u64> {
        self.sent.iter().map(|a| a.load(Ordering::SeqCst)).collect()
    }

    fn error(&self, line: &[u8]) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < ERROR_SAMPLES as u64 {
            let mut s = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
            s.push(String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned());
        }
    }
}

/// What one connection saw, returned when its task ends.
#[derive(Debug, Clone, Default)]
pub struct ConnReport {
    /// Deliveries from the senders it tracks.
    pub tally: Tally,
    /// Deliveries from senders it does not track (churning clients, or a foreign sender).
    pub untracked: u64,
    /// Messages it sent.
    pub sent: u64,
    /// Whether the server closed it before the end, and why.
    pub closed: Option<String>,
}

/// Drives client `me` on `conn`: reads and accounts for everything, sends when it is a sender
/// and the phase says so, and returns its report when told to stop, when the server closes
/// it, or at `leave_at` (a churning client; it says goodbye first).
pub async fn drive(
    mut conn: Conn,
    me: usize,
    sh: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    leave_at: Option<Instant>,
) -> ConnReport {
    sh.live.fetch_add(1, Ordering::Relaxed);
    let mut d = Driver::new(me, &sh);
    let result = d.run(&mut conn, &sh, &mut phase, leave_at).await;
    sh.live.fetch_sub(1, Ordering::Relaxed);
    let mut report = d.report;
    for s in &d.streams {
        s.add_to(&mut report.tally);
    }
    if let Err(e) = result
        && !sh.ending.load(Ordering::Relaxed)
    {
        sh.closed.fetch_add(1, Ordering::Relaxed);
        report.closed = Some(e.to_string());
    }
    report
}

/// The state of one connection task.
struct Driver {
    me: usize,
    /// One stream per slot of the topology.
    streams: Vec<Stream>,
    /// The progress last published per slot.
    published: Vec<u64>,
    /// Sender state: messages written, progress known to be reached by all receivers.
    sent: u64,
    confirmed: u64,
    /// Where this sender's messages go.
    dest: Option<DestKind>,
    report: ConnReport,
    /// A PING's answer, reused.
    reply: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum DestKind {
    Everyone,
    Partner(usize),
}

impl Driver {
    fn new(me: usize, sh: &Shared) -> Self {
        let topo = &sh.topo;
        let dest = if me < topo.broadcasters {
            Some(DestKind::Everyone)
        } else {
            topo.partner(me).map(DestKind::Partner)
        };
        let slots = if me < topo.clients { topo.slots() } else { 0 };
        Self {
            me,
            streams: vec![Stream::default(); slots],
            published: vec![0; slots],
            sent: 0,
            confirmed: 0,
            dest,
            report: ConnReport::default(),
            reply: Vec::new(),
        }
    }

    async fn run(
        &mut self,
        conn: &mut Conn,
        sh: &Shared,
        phase: &mut watch::Receiver<Phase>,
        leave_at: Option<Instant>,
    ) -> io::Result<()> {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let current = *phase.borrow_and_update();
            let timings = match current {
                Phase::Stop => return Ok(()),
                Phase::Idle => None,
                Phase::Run(t) => Some(t),
            };
            if leave_at.is_some_and(|t| Instant::now() >= t) {
                sh.dialect.quit(conn.out());
                let _ = conn.try_flush();
                return Ok(());
            }
            // Send what the schedule and the window allow.
            let mut blocked = false;
            let mut wake_at = leave_at.unwrap_or(far);
            let mut queue_full = false;
            if let (Some(t), Some(dest)) = (timings, self.dest) {
                let (b, w) = self.produce(conn, sh, t, dest);
                blocked = b;
                wake_at = wake_at.min(w);
                queue_full = conn.pending() >= MAX_QUEUED;
            }
            let flushed = conn.try_flush()?;
            if flushed && queue_full {
                // The socket took the whole batch: produce the next one at once.
                continue;
            }
            let wake = sh.board.wake.get(self.me).filter(|_| blocked);
            tokio::select! {
                biased;
                r = phase.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                }
                r = conn.readable() => {
                    r?;
                    self.read(conn, sh)?;
                }
                r = conn.writable(), if !flushed => r?,
                _ = wait_for(wake) => {}
                _ = sleep_until(wake_at) => {}
            }
        }
    }

    /// Queues the messages now due; returns whether the window blocks and when to come back.
    fn produce(
        &mut self,
        conn: &mut Conn,
        sh: &Shared,
        t: Timings,
        dest: DestKind,
    ) -> (bool, Instant) {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let start = sh.epoch + t.start;
        let stop = sh.epoch + t.measure_to;
        let now = Instant::now();
        if now < start {
            return (false, start);
        }
        if now >= stop {
            return (false, far);
        }
        let topo = &sh.topo;
        let s = self.me;
        let pace = sh.pace;
        let window = pace.window.max(1);
        let mut due = match pace.rate {
            Some(r) => ((now - start).as_secs_f64() * r) as u64 + 1,
            None => u64::MAX,
        };
        if let Some(c) = pace.count {
            due = due.min(c);
        }
        let mut blocked = false;
        while self.sent < due && conn.pending() < MAX_QUEUED {
            if self.sent >= self.confirmed + window {
                self.confirmed = sh.board.min_progress(topo, s);
                if self.sent < self.confirmed + window {
                    continue;
                }
                // Publish what we wait for, then look again: a receiver that crossed it in
                // between would not have woken us.
                let need = self.sent + 1 - window;
                sh.board.gate[s].store(need, Ordering::SeqCst);
                self.confirmed = sh.board.min_progress(topo, s);
                if self.sent < self.confirmed + window {
                    continue;
                }
                blocked = true;
                break;
            }
            let out = conn.out();
            match dest {
                DestKind::Everyone => match &sh.room {
                    Some(r) => sh.dialect.start_message(out, Dest::Room(r), &sh.channel),
                    None => sh.dialect.start_message(out, Dest::All, &sh.channel),
                },
                DestKind::Partner(p) => {
                    sh.dialect
                        .start_message(out, Dest::User(&sh.names[p]), &sh.channel)
                }
            }
            let stamp = Stamp {
                sender: s as u32,
                seq: self.sent,
                sent_ns: sh.now_ns(),
            };
            payload::encode(out, stamp, sh.size);
            sh.dialect.end(out);
            self.sent += 1;
        }
        if !blocked {
            sh.board.gate[s].store(u64::MAX, Ordering::SeqCst);
        }
        sh.sent[s].store(self.sent, Ordering::SeqCst);
        self.report.sent = self.sent;
        let done = self.sent >= pace.count.unwrap_or(u64::MAX);
        // A full window or a full socket wakes us by itself (notify, writable): sleeping on a
        // time already past would spin.
        let next = if blocked || done || conn.pending() >= MAX_QUEUED {
            far
        } else {
            match pace.rate {
                Some(r) => start + Duration::from_secs_f64(self.sent as f64 / r),
                None => now,
            }
        };
        (blocked, next.min(stop))
    }

    /// Reads what is there (up to a budget) and accounts for every line.
    fn read(&mut self, conn: &mut Conn, sh: &Shared) -> io::Result<()> {
        let mut total = 0;
        let mut answers = Vec::new();
        while total < READ_BUDGET {
            let mut closing = None;
            let r = conn.read_chunk(|lines| {
                let now = sh.now_ns();
                closing = self.account(lines, sh, now, &mut answers);
            })?;
            if let Some(why) = closing {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, why));
            }
            match r {
                Read::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                Read::WouldBlock => break,
                Read::Data(n) => total += n,
            }
        }
        if !answers.is_empty() {
            conn.out().extend_from_slice(&answers);
        }
        self.publish(sh);
        Ok(())
    }

    /// Accounts for the lines of one read, received at `now` (ns since the epoch).
    fn account(
        &mut self,
        lines: crate::conn::Lines<'_>,
        sh: &Shared,
        now: u64,
        answers: &mut Vec<u8>,
    ) -> Option<String> {
        let (from, to) = sh.measure_window_ns();
        let mut delivered = 0;
        let mut in_window = 0;
        let mut closing = None;
        let mut hist = None;
        for line in lines {
            if let Some(st) = payload::decode(line) {
                delivered += 1;
                if (from..to).contains(&now) {
                    in_window += 1;
                }
                match sh.topo.slot(self.me, st.sender as usize) {
                    Some(k) if k < self.streams.len() => {
                        self.streams[k].see(st.seq);
                        if (from..to).contains(&st.sent_ns) {
                            hist.get_or_insert_with(|| sh.latency.shard(self.me))
                                .saturating_record(now.saturating_sub(st.sent_ns).max(1));
                        }
                    }
                    _ => self.report.untracked += 1,
                }
                continue;
            }
            match sh.dialect.classify(line, &mut self.reply) {
                Control::Error => sh.error(line),
                Control::Reply(r) => answers.extend_from_slice(r),
                Control::Closing => {
                    closing = Some(String::from_utf8_lossy(line).into_owned());
                }
                _ => {}
            }
        }
        drop(hist);
        if delivered > 0 {
            sh.delivered.fetch_add(delivered, Ordering::Relaxed);
            if in_window > 0 {
                sh.delivered_in_window
                    .fetch_add(in_window, Ordering::Relaxed);
            }
        }
        closing
    }

    /// Publishes progress that moved, waking any sender whose gate it crossed.
    fn publish(&mut self, sh: &Shared) {
        let topo = &sh.topo;
        for k in 0..self.streams.len() {
            let c = self.streams[k].contiguous();
            if c == self.published[k] {
                continue;
            }
            let old = self.published[k];
            self.published[k] = c;
            let Some(s) = topo.slot_sender(self.me, k) else {
                continue;
            };
            sh.board.progress[topo.stream_id(s, self.me)].store(c, Ordering::SeqCst);
            let gate = sh.board.gate[s].load(Ordering::SeqCst);
            if old < gate && c >= gate {
                sh.board.wake[s].notify_one();
            }
        }
    }
}

/// Waits for `n` to be notified, or forever without one.
async fn wait_for(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_of_a_fanout() {
        let t = Topology {
            clients: 5,
            broadcasters: 2,
            dm_pairs: 0,
        };
        assert_eq!(t.senders(), 2);
        assert_eq!(t.fanout(1), 4);
        let r: Vec<usize> = (0..4).map(|k| t.receiver(1, k)).collect();
        assert_eq!(r, [0, 2, 3, 4]);
        assert_eq!(t.slot(1, 1), None);
        assert_eq!(t.slot(0, 1), Some(1));
        assert_eq!(t.slot(3, 4), None);
        assert_eq!(t.slot_sender(0, 0), None);
        assert_eq!(t.slot_sender(0, 1), Some(1));
        assert_eq!(t.streams(), 10);
    }

    #[test]
    fn topology_with_pairs() {
        let t = Topology {
            clients: 6,
            broadcasters: 1,
            dm_pairs: 2,
        };
        assert_eq!(t.senders(), 5);
        assert_eq!(t.partner(1), Some(2));
        assert_eq!(t.partner(4), Some(3));
        assert_eq!(t.partner(5), None);
        assert_eq!(t.partner(0), None);
        assert_eq!(t.fanout(3), 1);
        assert_eq!(t.receiver(3, 0), 4);
        assert_eq!(t.slot(4, 3), Some(1));
        assert_eq!(t.slot(4, 0), Some(0));
        assert_eq!(t.slot(5, 3), None);
        assert_eq!(t.slot_sender(4, 1), Some(3));
        // Distinct stream ids for every (sender, receiver).
        let mut ids: Vec<usize> = (0..t.senders())
            .flat_map(|s| (0..t.fanout(s)).map(move |k| t.stream_id(s, t.receiver(s, k))))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5 + 4);
        assert!(ids.iter().all(|&i| i < t.streams()));
    }
}
