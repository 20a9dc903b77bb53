//! The workloads, and what they share: options common to all, connecting and registering
//! many clients, and the warm-up / measure / drain cycle of the messaging workloads.
//!
//! - [`fanout`]: broadcasts to everyone (or a room / channel).
//! - [`dm`]: pairs exchanging direct messages.
//! - [`connect`]: many idle registered clients; connect rate and memory per connection.
//! - [`soak`]: mixed load over time, sampled as a time series.
//! - [`query`]: one client's questions (`HISTORY`, `SEARCH`), each timed to its answer.

pub mod connect;
pub mod dm;
pub mod fanout;
pub mod query;
pub mod soak;

use crate::accounting::{Latencies, Percentiles, Tally, percentiles};
use crate::conn::Conn;
use crate::dialect::Dialect;
use crate::engine::{ConnReport, Pace, Phase, Shared, Timings, Topology, drive};
use crate::sys;
use crate::transport::{Tls, Transport, host_of, resolve_loopback};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

/// Hard ceiling on any run, whatever the options say: every loop in the benchmark ends.
pub const MAX_RUN: Duration = Duration::from_secs(3600);

/// Options every workload takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Server address, `host:port`; must resolve to loopback only. Several, comma-separated
    /// or repeated (the nodes of a cluster), spread the clients over them in turn.
    #[arg(long, short, default_value = "127.0.0.1:8090", value_delimiter = ',')]
    pub target: Vec<String>,
    /// Protocol the clients speak.
    #[arg(long, value_enum, default_value_t = Dialect::Natter)]
    pub proto: Dialect,
    /// How clients reach the server.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Connect over TLS (to a server started with `--tls-cert` and `--tls-key`).
    #[arg(long)]
    pub tls: bool,
    /// With `--tls`: trust the CA certificates in this PEM file instead of the Mozilla roots.
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With `--tls`: the name to check the certificate for and send as SNI [default: the
    /// target's host]; for an IP target whose certificate names a host, e.g. `localhost`.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_name: Option<String>,
    /// Name of the server in the report (e.g. natter, ngircd).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Name of the scenario in the report, for scripts that run several.
    #[arg(long, default_value = "")]
    pub scenario: String,
    /// IRC channel every client joins (IRC only; natter broadcasts to everyone).
    #[arg(long, default_value = "#bench")]
    pub channel: String,
    /// Pid of the server, to sample its memory (VmRSS).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Most connections registering at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Seconds allowed to connect and register all clients.
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout: f64,
    /// Seconds to wait after everyone registered (for presence and JOIN storms to pass).
    #[arg(long, default_value_t = 0.5)]
    pub settle: f64,
    /// natter accounts: `create` makes each client's name an account as it registers;
    /// `login` logs into them instead of registering (same `--prefix` as the `create` run).
    #[arg(long, value_enum)]
    pub accounts: Option<crate::dialect::AccountStep>,
    /// The accounts' password, with `--accounts`.
    #[arg(long, default_value = "bench-password")]
    pub password: String,
    /// Prefix of client names (default: `b` and two characters unique to this run); names
    /// are the prefix and the client's number in decimal (9 characters at most for IRC). Digits
    /// only, because a server that refuses lookalike names (natter) would take `b1` and `bl`
    /// for one another.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// Options of the messaging workloads (fanout, dm).
#[derive(Debug, Clone, Args)]
pub struct Messaging {
    /// Messages per second per sender; without it, as fast as the window allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Messages per sender in flight (sent, not yet received by all of its receivers).
    #[arg(long, short = 'w', default_value_t = 64)]
    pub window: u64,
    /// Payload size in bytes (at least the stamp: about 30).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Seconds of warm-up before the measured window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, short, default_value_t = 5.0)]
    pub duration: f64,
    /// Most seconds to wait after the window for every message to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Messages per sender, then stop (a known total for checks); default: no limit.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A target resolved and checked, with the names for a run.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The options.
    pub common: Common,
    /// The resolved loopback addresses; client `i` connects to the `i % len`th.
    pub addrs: Vec<SocketAddr>,
    /// The name prefix.
    pub prefix: String,
    /// TLS settings, when clients connect over TLS.
    pub tls: Option<Tls>,
}

impl Ctx {
    /// Resolves the target (refusing non-loopback addresses) and raises the fd limit.
    pub async fn new(common: Common) -> Result<Self, String> {
        let mut addrs = Vec::new();
        for t in &common.target {
            addrs.push(
                resolve_loopback(t)
                    .await
                    .map_err(|e| format!("target {t}: {e}"))?,
            );
        }
        if addrs.is_empty() {
            return Err("no target".into());
        }
        if common.transport == Transport::Ws && common.proto == Dialect::Irc {
            return Err(
                "--transport ws carries natter's line protocol only; IRC is spoken over tcp".into(),
            );
        }
        if common.accounts.is_some() && common.proto == Dialect::Irc {
            return Err("--accounts are natter accounts: use --proto natter".into());
        }
        let tls = if common.tls {
            let name = common
                .tls_name
                .as_deref()
                .unwrap_or_else(|| host_of(&common.target[0]));
            Some(Tls::new(common.tls_ca.as_deref(), name).map_err(|e| format!("--tls: {e}"))?)
        } else {
            None
        };
        sys::raise_fd_limit();
        let prefix = common.prefix.clone().unwrap_or_else(|| {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                .unwrap_or(0);
            format!("b{}", base36(u64::from(n) % (36 * 36), 2))
        });
        Ok(Self {
            common,
            addrs,
            prefix,
            tls,
        })
    }

    /// The address client `i` connects to.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    /// The name of client `i`.
    pub fn name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// The server's RSS in KiB, if a pid was given and can be read.
    pub fn rss(&self) -> Option<u64> {
        self.common.server_pid.and_then(|p| sys::rss_kib(p).ok())
    }

    /// The report's header fields.
    pub fn header(&self, workload: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tool".into(), json!("natter-bench"));
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        m.insert("workload".into(), json!(workload));
        m.insert("label".into(), json!(self.common.label));
        m.insert("scenario".into(), json!(self.common.scenario));
        let targets: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        m.insert("target".into(), json!(targets.join(",")));
        m.insert("proto".into(), json!(self.common.proto));
        m.insert("transport".into(), json!(self.common.transport));
        m.insert("tls".into(), json!(self.tls.is_some()));
        m.insert(
            "unix_time".into(),
            json!(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        );
        m
    }
}

/// `n` in base 36, at least `width` digits.
pub fn base36(mut n: u64, width: usize) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 || out.len() < width {
        out.push(D[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// A batch of clients being connected: each gets its own task, which registers (bounded
/// in parallel), then drives its connection.
#[derive(Debug)]
pub struct Fleet {
    /// The connection tasks, by client index (from the batch's first index).
    pub tasks: Vec<JoinHandle<ConnReport>>,
    /// Registration latencies (connect start to registered).
    pub registration: Arc<Latencies>,
    /// Clients registered so far.
    pub ready: Arc<AtomicUsize>,
    /// Clients that failed to connect or register.
    pub failed: Arc<AtomicUsize>,
    /// The first failure, for the report.
    pub first_failure: Arc<std::sync::Mutex<Option<String>>>,
}

/// Starts connecting clients `first..first + n`; each joins `room` when given.
pub fn launch(
    ctx: &Ctx,
    sh: &Arc<Shared>,
    phase: &watch::Receiver<Phase>,
    first: usize,
    n: usize,
    room: Option<String>,
) -> Fleet {
    let sem = Arc::new(Semaphore::new(ctx.common.parallel.max(1)));
    let registration = Arc::new(Latencies::new(4));
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None));
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.common.connect_timeout);
    let tasks = (first..first + n)
        .map(|i| {
            let (sem, registration, ready, failed, first_failure) = (
                sem.clone(),
                registration.clone(),
                ready.clone(),
                failed.clone(),
                first_failure.clone(),
            );
            let (sh, phase, room, tls) = (sh.clone(), phase.clone(), room.clone(), ctx.tls.clone());
            let (addr, transport, dialect, name) = (
                ctx.addr(i),
                ctx.common.transport,
                ctx.common.proto,
                ctx.name(i),
            );
            let (accounts, password) = (ctx.common.accounts, ctx.common.password.clone());
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await;
                let t0 = Instant::now();
                let conn = async {
                    let mut c = Conn::connect(transport, addr, tls.as_ref()).await?;
                    let account = accounts.map(|a| (a, password.as_str()));
                    c.handshake(dialect, &name, room.as_deref(), account, deadline)
                        .await?;
                    Ok::<_, std::io::Error>(c)
                };
                let conn = tokio::time::timeout_at(deadline, conn).await;
                drop(permit);
                match conn {
                    Ok(Ok(c)) => {
                        registration.record(i, t0.elapsed().as_nanos() as u64);
                        ready.fetch_add(1, Ordering::SeqCst);
                        drive(c, i, sh, phase, None).await
                    }
                    other => {
                        let why = match other {
                            Ok(Err(e)) => format!("client {name}: {e}"),
                            _ => format!("client {name}: connect timed out"),
                        };
                        first_failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(why.clone());
                        failed.fetch_add(1, Ordering::SeqCst);
                        ConnReport {
                            closed: Some(why),
                            ..ConnReport::default()
                        }
                    }
                }
            })
        })
        .collect();
    Fleet {
        tasks,
        registration,
        ready,
        failed,
        first_failure,
    }
}

impl Fleet {
    /// Waits until every client registered or failed (bounded by the connect timeout).
    pub async fn settled(&self, timeout: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        let n = self.tasks.len();
        while self.ready.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst) < n {
            if t0.elapsed() > timeout + Duration::from_secs(1) {
                return Err(format!(
                    "only {} of {n} clients registered in {timeout:?}",
                    self.ready.load(Ordering::SeqCst)
                ));
            }
            sleep(Duration::from_millis(5)).await;
        }
        let failed = self.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let why = self
                .first_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(format!(
                "{failed} of {n} clients failed to register; first: {why}"
            ));
        }
        Ok(t0.elapsed())
    }

    /// Waits for every task to end and returns their reports.
    pub async fn join(self) -> Vec<ConnReport> {
        let mut out = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            out.push(t.await.unwrap_or_default());
        }
        out
    }
}

/// What every connection saw, summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Tracked deliveries.
    pub tally: Tally,
    /// Deliveries from untracked senders.
    pub untracked: u64,
    /// Connections the server closed before the end.
    pub closed: u64,
    /// The first such close, for the report.
    pub first_close: Option<String>,
}

/// Sums connection reports.
pub fn totals(reports: &[ConnReport]) -> Totals {
    let mut t = Totals::default();
    for r in reports {
        t.tally.merge(&r.tally);
        t.untracked += r.untracked;
        if let Some(c) = &r.closed {
            t.closed += 1;
            t.first_close.get_or_insert_with(|| c.clone());
        }
    }
    t
}

/// The outcome of a messaging run (fan-out or DMs).
#[derive(Debug, Clone, Serialize)]
pub struct MessagingResult {
    /// Clients connected.
    pub clients: usize,
    /// Clients sending.
    pub senders: usize,
    /// Messages written, all phases.
    pub sent: u64,
    /// Deliveries expected: each message times its receivers.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Deliveries never received.
    pub lost: u64,
    /// Copies of deliveries already received.
    pub duplicates: u64,
    /// Deliveries that arrived after a later one of the same sender.
    pub reordered: u64,
    /// Deliveries received per second in the measured window.
    pub deliveries_per_s: f64,
    /// Messages sent per second in the measured window (deliveries / fan-out).
    pub messages_per_s: f64,
    /// Latency of messages sent in the measured window.
    pub latency: Percentiles,
    /// Seconds the drain took (until all arrived, or the drain limit).
    pub drain_s: f64,
    /// Error lines received.
    pub errors: u64,
    /// Examples of error lines.
    pub error_samples: Vec<String>,
    /// Connections closed by the server.
    pub closed: u64,
    /// The first close.
    pub first_close: Option<String>,
    /// Seconds to connect and register everyone.
    pub connect_s: f64,
    /// Registration latency.
    pub registration: Percentiles,
    /// Server RSS before connecting, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS at the end of the measured window, KiB.
    pub rss_after_kib: Option<u64>,
}

/// Connects `topo.clients` clients, runs warm-up, measured window and drain, and reports.
pub async fn run_messaging(
    ctx: &Ctx,
    topo: Topology,
    m: &Messaging,
    room: Option<String>,
    join: Option<String>,
) -> Result<MessagingResult, String> {
    let names: Vec<String> = (0..topo.clients).map(|i| ctx.name(i)).collect();
    let pace = Pace {
        rate: m.rate,
        window: m.window.max(1),
        count: m.count,
    };
    let sh = Arc::new(Shared::new(
        topo,
        ctx.common.proto,
        names,
        ctx.common.channel.clone(),
        room,
        m.size,
        pace,
    ));
    let rss_before = ctx.rss();
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let fleet = launch(ctx, &sh, &phase_rx, 0, topo.clients, join);
    let connect = Duration::from_secs_f64(ctx.common.connect_timeout);
    let settled = fleet.settled(connect).await;
    let connect_s = match settled {
        Ok(d) => d.as_secs_f64(),
        Err(e) => {
            sh.ending.store(true, Ordering::SeqCst);
            let _ = phase_tx.send(Phase::Stop);
            let _ = fleet.join().await;
            return Err(e);
        }
    };
    sleep(Duration::from_secs_f64(ctx.common.settle)).await;

    let start = sh.epoch.elapsed() + Duration::from_millis(10);
    let measure_from = start + Duration::from_secs_f64(m.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(m.duration);
    sh.set_window(measure_from, measure_to);
    let _ = phase_tx.send(Phase::Run(Timings {
        start,
        measure_from,
        measure_to,
    }));
    let end = sh.epoch + measure_to;
    tokio::time::sleep_until(end.min(Instant::now() + MAX_RUN)).await;
    let rss_after = ctx.rss();
    // Drain: senders have stopped; wait for every receiver to have every message.
    sleep(Duration::from_millis(20)).await;
    let drain_t0 = Instant::now();
    let drain_limit = Duration::from_secs_f64(m.drain);
    let sent = loop {
        let sent = sh.sent_counts();
        if sh.board.complete(&topo, &sent) || drain_t0.elapsed() > drain_limit {
            break sent;
        }
        sleep(Duration::from_millis(10)).await;
    };
    let drain_s = drain_t0.elapsed().as_secs_f64();
    sh.ending.store(true, Ordering::SeqCst);
    let _ = phase_tx.send(Phase::Stop);
    let registration = percentiles(&fleet.registration.merged(false));
    let reports = fleet.join().await;
    let t = totals(&reports);
    let expected: u64 = sent
        .iter()
        .enumerate()
        .map(|(s, &n)| n * topo.fanout(s) as u64)
        .sum();
    let window_s = m.duration.max(1e-9);
    let deliveries_per_s = sh.delivered_in_window.load(Ordering::SeqCst) as f64 / window_s;
    let mean_fanout = if topo.senders() == 0 {
        1.0
    } else {
        (0..topo.senders()).map(|s| topo.fanout(s)).sum::<usize>() as f64 / topo.senders() as f64
    };
    Ok(MessagingResult {
        clients: topo.clients,
        senders: topo.senders(),
        sent: sent.iter().sum(),
        expected,
        delivered: t.tally.unique,
        lost: expected.saturating_sub(t.tally.unique),
        duplicates: t.tally.duplicates,
        reordered: t.tally.reordered,
        deliveries_per_s,
        messages_per_s: deliveries_per_s / mean_fanout,
        latency: percentiles(&sh.latency.merged(false)),
        drain_s,
        errors: sh.errors.load(Ordering::SeqCst),
        error_samples: sh
            .error_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        closed: t.closed,
        first_close: t.first_close,
        connect_s,
        registration,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
    })
}

/// A human summary of a messaging result.
pub fn messaging_summary(label: &str, what: &str, r: &MessagingResult) -> String {
    let l = &r.latency;
    let mut s = format!(
        "{label} {what}: {clients} clients, {senders} senders\n  \
         {dps:.0} deliveries/s ({mps:.0} msg/s); sent {sent}, delivered {del} of {exp}, \
         lost {lost}, dup {dup}, reordered {reo}\n  \
         latency us: p50 {p50:.0}  p90 {p90:.0}  p99 {p99:.0}  p99.9 {p999:.0}  max {max:.0} \
         ({n} samples)\n  \
         connect+register {cs:.2}s (p99 {rp99:.0} us), drain {ds:.2}s, errors {err}, closed {closed}",
        clients = r.clients,
        senders = r.senders,
        dps = r.deliveries_per_s,
        mps = r.messages_per_s,
        sent = r.sent,
        del = r.delivered,
        exp = r.expected,
        lost = r.lost,
        dup = r.duplicates,
        reo = r.reordered,
        p50 = l.p50_us,
        p90 = l.p90_us,
        p99 = l.p99_us,
        p999 = l.p999_us,
        max = l.max_us,
        n = l.count,
        cs = r.connect_s,
        rp99 = r.registration.p99_us,
        ds = r.drain_s,
        err = r.errors,
        closed = r.closed,
    );
    if let Some(e) = r.error_samples.first() {
        s.push_str(&format!("\n  first error: {e}"));
    }
    if let Some(c) = &r.first_close {
        s.push_str(&format!("\n  first close: {c}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_names() {
        assert_eq!(base36(0, 1), "0");
        assert_eq!(base36(35, 1), "z");
        assert_eq!(base36(36, 1), "10");
        assert_eq!(base36(5, 2), "05");
        assert_eq!(base36(19_999, 1).len(), 3);
    }
}
