//! `query`: one registered client asking the server questions one at a time (`HISTORY`,
//! `SEARCH`, or any command), each timed from the write of the line to its final answer.
//!
//! A question is a template; `{n}` in it becomes a number drawn from `0..spread`, so that
//! a run asks about many targets or words rather than one the server has cached.

use super::Common;
use crate::Outcome;
use crate::accounting::{new_histogram, percentiles};
use crate::transport::resolve_loopback;
use clap::Args;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Options of `query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Target and labels (natter's line protocol over TCP).
    #[command(flatten)]
    pub common: Common,
    /// A question to ask; several are asked in turn. `{n}` becomes a number below
    /// `--spread`.
    #[arg(long = "ask", required = true)]
    pub asks: Vec<String>,
    /// Numbers `{n}` is drawn from: `0..spread`.
    #[arg(long, default_value_t = 1000)]
    pub spread: u64,
    /// Questions asked before the measured ones, to warm caches as a running server's are.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Questions measured.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub count: usize,
    /// Name the client registers under.
    #[arg(long, default_value = "asker")]
    pub name: String,
    /// Seconds one answer may take before the run fails.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

/// Runs `query`.
pub async fn run(args: QueryArgs) -> Result<Outcome, String> {
    let target = args.common.target.first().ok_or("no target")?;
    let addr = resolve_loopback(target)
        .await
        .map_err(|e| format!("target {target}: {e}"))?;
    let limit = Duration::from_secs_f64(args.timeout.max(0.001));
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out")?
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    // The answer that ends a question: the first OK, ERROR or BYE line.
    let mut answer = async |w: &mut tokio::net::tcp::OwnedWriteHalf, line: &str| {
        w.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut data = 0usize;
        loop {
            let l = timeout(limit, lines.next_line())
                .await
                .map_err(|_| format!("no answer to {line:?}"))?
                .map_err(|e| e.to_string())?
                .ok_or("the server closed the connection")?;
            if l.starts_with("OK ") || l.starts_with("ERROR ") || l.starts_with("BYE ") {
                return Ok::<_, String>((l, data));
            }
            data += 1;
        }
    };
    let (reg, _) = answer(&mut w, &format!("REGISTER {}", args.name)).await?;
    if !reg.starts_with("OK ") {
        return Err(format!("REGISTER: {reg}"));
    }
    let mut hist = new_histogram();
    let mut rows = 0usize;
    let mut errors = 0usize;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let started = Instant::now();
    for i in 0..args.warmup + args.count {
        // xorshift: cheap, and the same questions run after run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let template = &args.asks[i % args.asks.len()];
        let line = template.replace("{n}", &(seed % args.spread.max(1)).to_string());
        let t = Instant::now();
        let (end, data) = answer(&mut w, &line).await?;
        if i < args.warmup {
            continue;
        }
        let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
        rows += data;
        if !end.starts_with("OK ") {
            errors += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let p = percentiles(&hist);
    let json = json!({
        "tool": "natter-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "workload": "query",
        "label": args.common.label,
        "scenario": args.common.scenario,
        "target": addr.to_string(),
        "params": { "asks": args.asks, "spread": args.spread, "count": args.count },
        "results": {
            "latency": p,
            "rows_per_answer": rows as f64 / args.count.max(1) as f64,
            "errors": errors,
            "elapsed_s": elapsed,
        },
    });
    let summary = format!(
        "{} query {:?}: {} answers, {:.1} rows each, {} errors; p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        args.common.label,
        args.asks,
        args.count,
        rows as f64 / args.count.max(1) as f64,
        errors,
        p.p50_us,
        p.p99_us,
        p.max_us
    );
    Ok(Outcome { json, summary })
}
