//! `soak`: mixed load for a while (broadcasts, DMs, clients arriving, registering and
//! leaving), sampled every interval as a time series of server memory, rate and latency.

use super::{Common, Ctx, MAX_RUN, launch, totals};
use crate::Outcome;
use crate::accounting::{Latencies, Percentiles, new_histogram, percentiles};
use crate::conn::Conn;
use crate::dialect::Dialect;
use crate::engine::{ConnReport, Pace, Phase, Shared, Timings, Topology, drive};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

/// Options of `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Target and protocol.
    #[command(flatten)]
    pub common: Common,
    /// Clients connected for the whole run (senders and DM pairs among them).
    #[arg(long, short, default_value_t = 200)]
    pub clients: usize,
    /// Clients that broadcast.
    #[arg(long, short, default_value_t = 5)]
    pub senders: usize,
    /// Pairs of clients exchanging DMs.
    #[arg(long, short, default_value_t = 20)]
    pub pairs: usize,
    /// Messages per second per sender (broadcasters and DM senders alike).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Messages per sender in flight, at most.
    #[arg(long, short = 'w', default_value_t = 256)]
    pub window: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Seconds the load runs.
    #[arg(long, short, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Extra clients arriving per second; each registers, stays a while, and leaves.
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// Seconds each arriving client stays.
    #[arg(long, default_value_t = 2.0)]
    pub churn_life: f64,
    /// Most seconds to wait after the run for every message to arrive.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

/// One sample of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Server RSS, KiB.
    pub rss_kib: Option<u64>,
    /// Connections open (stable and churning).
    pub connections: usize,
    /// Deliveries per second over the interval.
    pub deliveries_per_s: f64,
    /// Delivery latency over the interval.
    pub latency: Percentiles,
    /// Churning clients registered in the interval.
    pub registrations: u64,
    /// Their registration latency, p99, microseconds.
    pub registration_p99_us: f64,
    /// Error lines so far.
    pub errors: u64,
}

/// The outcome of `soak`.
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    /// Messages written.
    pub sent: u64,
    /// Deliveries expected by the stable clients.
    pub expected: u64,
    /// Distinct deliveries to stable clients.
    pub delivered: u64,
    /// Deliveries to stable clients never received.
    pub lost: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reordered deliveries.
    pub reordered: u64,
    /// Deliveries to churning clients (not checked).
    pub untracked: u64,
    /// Latency over the whole run.
    pub latency: Percentiles,
    /// Churning clients that registered.
    pub churn_registered: u64,
    /// Churning clients that failed to connect or register.
    pub churn_failed: u64,
    /// Error lines received.
    pub errors: u64,
    /// Connections closed by the server.
    pub closed: u64,
    /// The first close.
    pub first_close: Option<String>,
    /// Server RSS at the start and the end, KiB.
    pub rss_start_kib: Option<u64>,
    /// Server RSS at the end, KiB.
    pub rss_end_kib: Option<u64>,
    /// The time series.
    pub series: Vec<Sample>,
}

/// Runs `soak`.
pub async fn run(args: SoakArgs) -> Result<Outcome, String> {
    let topo = Topology {
        clients: args.clients,
        broadcasters: args.senders,
        dm_pairs: args.pairs,
    };
    if topo.senders() > topo.clients || args.clients < 2 || args.rate <= 0.0 {
        return Err("soak needs senders + 2 * pairs <= clients, and a positive rate".into());
    }
    let ctx = Ctx::new(args.common.clone()).await?;
    let names = (0..args.clients).map(|i| ctx.name(i)).collect();
    let pace = Pace {
        rate: Some(args.rate),
        window: args.window.max(1),
        count: None,
    };
    let sh = Arc::new(Shared::new(
        topo,
        ctx.common.proto,
        names,
        ctx.common.channel.clone(),
        None,
        args.size,
        pace,
    ));
    let join = (ctx.common.proto == Dialect::Irc).then(|| ctx.common.channel.clone());
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let fleet = launch(&ctx, &sh, &phase_rx, 0, args.clients, join.clone());
    if let Err(e) = fleet
        .settled(Duration::from_secs_f64(ctx.common.connect_timeout))
        .await
    {
        sh.ending.store(true, Ordering::SeqCst);
        let _ = phase_tx.send(Phase::Stop);
        let _ = fleet.join().await;
        return Err(e);
    }
    sleep(Duration::from_secs_f64(ctx.common.settle)).await;

    let duration = Duration::from_secs_f64(args.duration).min(MAX_RUN);
    let start = sh.epoch.elapsed() + Duration::from_millis(10);
    sh.set_window(
        start,
        start + duration + Duration::from_secs_f64(args.drain),
    );
    let _ = phase_tx.send(Phase::Run(Timings {
        start,
        measure_from: start,
        measure_to: start + duration,
    }));
    let t0 = sh.epoch + start;
    let rss_start = ctx.rss();

    // Churn: clients numbered from `clients` up arrive at a steady rate and leave later.
    let churn = Churn {
        registration: Arc::new(Latencies::new(2)),
        ok: Arc::new(AtomicU64::new(0)),
        failed: Arc::new(AtomicU64::new(0)),
    };
    let churn_task = {
        let (ctx, sh, phase_rx, churn, join) = (
            ctx.clone(),
            sh.clone(),
            phase_rx.clone(),
            churn.clone(),
            join.clone(),
        );
        let total = (args.churn.max(0.0) * duration.as_secs_f64()) as usize;
        let life = Duration::from_secs_f64(args.churn_life);
        let every = args.churn;
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(total);
            for k in 0..total {
                sleep_until(t0 + Duration::from_secs_f64(k as f64 / every)).await;
                handles.push(churn.spawn(
                    &ctx,
                    &sh,
                    &phase_rx,
                    args.clients + k,
                    join.clone(),
                    life,
                ));
            }
            handles
        })
    };

    // Sample until the end of the load.
    let interval = Duration::from_secs_f64(args.interval.max(0.05));
    let mut series = Vec::new();
    let mut overall = new_histogram();
    let mut last_delivered = 0;
    let mut k = 1u32;
    loop {
        let at = t0 + interval * k;
        if at > t0 + duration {
            break;
        }
        sleep_until(at).await;
        let h = sh.latency.merged(true);
        overall.add(&h).expect("same bounds");
        let delivered = sh.delivered.load(Ordering::Relaxed);
        let reg = churn.registration.merged(true);
        series.push(Sample {
            t_s: (interval * k).as_secs_f64(),
            rss_kib: ctx.rss(),
            connections: sh.live.load(Ordering::Relaxed),
            deliveries_per_s: (delivered - last_delivered) as f64 / interval.as_secs_f64(),
            latency: percentiles(&h),
            registrations: reg.len(),
            registration_p99_us: percentiles(&reg).p99_us,
            errors: sh.errors.load(Ordering::Relaxed),
        });
        last_delivered = delivered;
        k += 1;
    }
    sleep_until(t0 + duration).await;
    let rss_end = ctx.rss();

    // Drain, then stop everyone.
    let drain_t0 = Instant::now();
    let sent = loop {
        let sent = sh.sent_counts();
        if sh.board.complete(&topo, &sent) || drain_t0.elapsed().as_secs_f64() > args.drain {
            break sent;
        }
        sleep(Duration::from_millis(10)).await;
    };
    overall.add(sh.latency.merged(true)).expect("same bounds");
    sh.ending.store(true, Ordering::SeqCst);
    let _ = phase_tx.send(Phase::Stop);
    let mut reports = fleet.join().await;
    if let Ok(handles) = churn_task.await {
        for h in handles {
            reports.push(h.await.unwrap_or_default());
        }
    }
    let t = totals(&reports);
    let expected: u64 = sent
        .iter()
        .enumerate()
        .map(|(s, &n)| n * topo.fanout(s) as u64)
        .sum();
    let r = SoakResult {
        sent: sent.iter().sum(),
        expected,
        delivered: t.tally.unique,
        lost: expected.saturating_sub(t.tally.unique),
        duplicates: t.tally.duplicates,
        reordered: t.tally.reordered,
        untracked: t.untracked,
        latency: percentiles(&overall),
        churn_registered: churn.ok.load(Ordering::SeqCst),
        churn_failed: churn.failed.load(Ordering::SeqCst),
        errors: sh.errors.load(Ordering::SeqCst),
        closed: t.closed,
        first_close: t.first_close,
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
        series,
    };
    let mut json = ctx.header("soak");
    json.insert(
        "params".into(),
        json!({
            "clients": args.clients,
            "senders": args.senders,
            "pairs": args.pairs,
            "rate": args.rate,
            "window": args.window,
            "size": args.size,
            "duration_s": args.duration,
            "interval_s": args.interval,
            "churn_per_s": args.churn,
            "churn_life_s": args.churn_life,
        }),
    );
    json.insert("results".into(), json!(r));
    let summary = summary(&ctx.common.label, &r);
    Ok(Outcome {
        json: Value::Object(json),
        summary,
    })
}

/// The clients that come and go during a soak.
#[derive(Debug, Clone)]
struct Churn {
    /// Their registration latencies, reset every sample.
    registration: Arc<Latencies>,
    /// How many registered.
    ok: Arc<AtomicU64>,
    /// How many failed.
    failed: Arc<AtomicU64>,
}

impl Churn {
    /// Connects client `i`, which leaves after `life`.
    fn spawn(
        &self,
        ctx: &Ctx,
        sh: &Arc<Shared>,
        phase: &watch::Receiver<Phase>,
        i: usize,
        join: Option<String>,
        life: Duration,
    ) -> JoinHandle<ConnReport> {
        let (me, sh, phase, tls) = (self.clone(), sh.clone(), phase.clone(), ctx.tls.clone());
        let (addr, transport, dialect, name) = (
            ctx.addr(i),
            ctx.common.transport,
            ctx.common.proto,
            ctx.name(i),
        );
        let timeout = Duration::from_secs(10);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let conn = async {
                let mut c = Conn::connect(transport, addr, tls.as_ref()).await?;
                c.handshake(dialect, &name, join.as_deref(), None, t0 + timeout)
                    .await?;
                Ok::<_, std::io::Error>(c)
            };
            match tokio::time::timeout(timeout, conn).await {
                Ok(Ok(c)) => {
                    me.registration.record(i, t0.elapsed().as_nanos() as u64);
                    me.ok.fetch_add(1, Ordering::Relaxed);
                    drive(c, i, sh, phase, Some(Instant::now() + life)).await
                }
                _ => {
                    me.failed.fetch_add(1, Ordering::Relaxed);
                    ConnReport::default()
                }
            }
        })
    }
}

fn summary(label: &str, r: &SoakResult) -> String {
    let mut s = format!(
        "{label} soak: sent {sent}, delivered {del} of {exp} (lost {lost}, dup {dup}, \
         reordered {reo}); latency us p50 {p50:.0} p99 {p99:.0} max {max:.0}\n  \
         churn: {cr} registered, {cf} failed; errors {err}, closed {closed}; RSS {a} -> {b} KiB\n  \
         t_s   rss_kib  conns  deliv/s  p50_us  p99_us  max_us  regs",
        sent = r.sent,
        del = r.delivered,
        exp = r.expected,
        lost = r.lost,
        dup = r.duplicates,
        reo = r.reordered,
        p50 = r.latency.p50_us,
        p99 = r.latency.p99_us,
        max = r.latency.max_us,
        cr = r.churn_registered,
        cf = r.churn_failed,
        err = r.errors,
        closed = r.closed,
        a = r.rss_start_kib.map_or("-".into(), |v| v.to_string()),
        b = r.rss_end_kib.map_or("-".into(), |v| v.to_string()),
    );
    for p in &r.series {
        s.push_str(&format!(
            "\n  {:<5.1} {:>8} {:>6} {:>8.0} {:>7.0} {:>7.0} {:>7.0} {:>5}",
            p.t_s,
            p.rss_kib.map_or("-".into(), |v| v.to_string()),
            p.connections,
            p.deliveries_per_s,
            p.latency.p50_us,
            p.latency.p99_us,
            p.latency.max_us,
            p.registrations
        ));
    }
    if let Some(c) = &r.first_close {
        s.push_str(&format!("\n  first close: {c}"));
    }
    s
}
