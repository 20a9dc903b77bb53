//! `connect`: many idle registered clients: how fast they get in, what each costs the server
//! in memory, and (optionally) whether one broadcast still reaches all of them.

use super::{Common, Ctx, launch, totals};
use crate::Outcome;
use crate::accounting::{Percentiles, percentiles};
use crate::dialect::Dialect;
use crate::engine::{Pace, Phase, Shared, Timings, Topology};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

/// Options of `connect`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Target and protocol.
    #[command(flatten)]
    pub common: Common,
    /// Clients to connect and register.
    #[arg(long, short, default_value_t = 1000)]
    pub clients: usize,
    /// Once all are in, client 0 broadcasts one message; report how many got it and when.
    /// IRC clients then also JOIN the channel.
    #[arg(long)]
    pub broadcast: bool,
    /// Most seconds to wait for the broadcast to reach everyone.
    #[arg(long, default_value_t = 30.0)]
    pub broadcast_timeout: f64,
    /// Seconds to keep everyone connected before disconnecting.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
}

/// The outcome of `connect`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectResult {
    /// Clients registered.
    pub clients: usize,
    /// Seconds to connect and register them all.
    pub connect_s: f64,
    /// Registrations per second.
    pub connects_per_s: f64,
    /// Connect-to-registered latency.
    pub registration: Percentiles,
    /// Server RSS before, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS with everyone registered (after the settle time), KiB.
    pub rss_after_kib: Option<u64>,
    /// Server memory per registered connection, KiB.
    pub kib_per_conn: Option<f64>,
    /// Clients the broadcast reached (of clients - 1), if one was sent.
    pub broadcast_reached: Option<u64>,
    /// Microseconds until the broadcast had reached the last client.
    pub broadcast_all_us: Option<f64>,
    /// Connections closed by the server.
    pub closed: u64,
    /// The first close.
    pub first_close: Option<String>,
    /// Error lines received.
    pub errors: u64,
}

/// Runs `connect`.
pub async fn run(args: ConnectArgs) -> Result<Outcome, String> {
    if args.clients < 2 {
        return Err("connect needs at least 2 clients".into());
    }
    let ctx = Ctx::new(args.common.clone()).await?;
    let topo = Topology {
        clients: args.clients,
        broadcasters: usize::from(args.broadcast),
        dm_pairs: 0,
    };
    let names = (0..args.clients).map(|i| ctx.name(i)).collect();
    let pace = Pace {
        rate: None,
        window: 1,
        count: Some(1),
    };
    let sh = Arc::new(Shared::new(
        topo,
        ctx.common.proto,
        names,
        ctx.common.channel.clone(),
        None,
        32,
        pace,
    ));
    let join =
        (args.broadcast && ctx.common.proto == Dialect::Irc).then(|| ctx.common.channel.clone());
    let rss_before = ctx.rss();
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let fleet = launch(&ctx, &sh, &phase_rx, 0, args.clients, join);
    let settled = fleet
        .settled(Duration::from_secs_f64(ctx.common.connect_timeout))
        .await;
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
    let rss_after = ctx.rss();
    let kib_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / args.clients as f64),
        _ => None,
    };

    let (mut reached, mut all_us) = (None, None);
    if args.broadcast {
        let start = sh.epoch.elapsed();
        let to = start + Duration::from_secs_f64(args.broadcast_timeout);
        sh.set_window(start, to);
        let _ = phase_tx.send(Phase::Run(Timings {
            start,
            measure_from: start,
            measure_to: to,
        }));
        let deadline = Instant::now() + Duration::from_secs_f64(args.broadcast_timeout);
        while Instant::now() < deadline {
            let sent = sh.sent_counts();
            if sent[0] == 1 && sh.board.complete(&topo, &sent) {
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
    }
    sleep(Duration::from_secs_f64(args.hold)).await;
    sh.ending.store(true, Ordering::SeqCst);
    let _ = phase_tx.send(Phase::Stop);
    let registration = percentiles(&fleet.registration.merged(false));
    let reports = fleet.join().await;
    let t = totals(&reports);
    if args.broadcast {
        reached = Some(t.tally.unique);
        all_us = Some(percentiles(&sh.latency.merged(false)).max_us);
    }
    let r = ConnectResult {
        clients: args.clients,
        connect_s,
        connects_per_s: args.clients as f64 / connect_s.max(1e-9),
        registration,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        kib_per_conn,
        broadcast_reached: reached,
        broadcast_all_us: all_us,
        closed: t.closed,
        first_close: t.first_close,
        errors: sh.errors.load(Ordering::SeqCst),
    };
    let mut json = ctx.header("connect");
    json.insert(
        "params".into(),
        json!({
            "clients": args.clients,
            "parallel": ctx.common.parallel,
            "broadcast": args.broadcast,
            "settle_s": ctx.common.settle,
        }),
    );
    json.insert("results".into(), json!(r));
    let summary = summary(&ctx.common.label, &r);
    Ok(Outcome {
        json: Value::Object(json),
        summary,
    })
}

fn summary(label: &str, r: &ConnectResult) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut s = format!(
        "{label} connect: {n} clients in {cs:.2}s = {rate:.0}/s; registration us p50 {p50:.0} \
         p99 {p99:.0} max {max:.0}\n  server RSS {b} -> {a} KiB = {per} KiB per connection; \
         errors {err}, closed {closed}",
        n = r.clients,
        cs = r.connect_s,
        rate = r.connects_per_s,
        p50 = r.registration.p50_us,
        p99 = r.registration.p99_us,
        max = r.registration.max_us,
        b = r.rss_before_kib.map_or("-".into(), |v| v.to_string()),
        a = r.rss_after_kib.map_or("-".into(), |v| v.to_string()),
        per = opt(r.kib_per_conn),
        err = r.errors,
        closed = r.closed,
    );
    if let Some(n) = r.broadcast_reached {
        s.push_str(&format!(
            "\n  broadcast reached {n} of {} in {} us",
            r.clients - 1,
            opt(r.broadcast_all_us)
        ));
    }
    if let Some(c) = &r.first_close {
        s.push_str(&format!("\n  first close: {c}"));
    }
    s
}
