//! natter-bench: a load generator for natter and for IRC servers, to measure them side by
//! side with the same workloads.
//!
//! Every message carries its sender, sequence number and send time, so receivers count
//! deliveries, losses, duplicates and reordering, and time each delivery. Senders are paced
//! by deliveries seen by receivers (a window), never by the server's acknowledgements. Every
//! run ends on its own: each phase has a time limit, and only loopback targets are accepted.
//!
//! # Layout
//! - [`payload`]: the stamp each message carries (`~nb <sender> <seq> <sent_ns>`).
//! - [`accounting`]: per-stream sequence checks ([`accounting::Stream`]), tallies, sharded
//!   hdrhistogram latencies.
//! - [`dialect`]: natter's line protocol and IRC: registering, joining, addressing, and
//!   classifying lines.
//! - [`transport`]: loopback-only targets, the transport (TCP or WebSocket) and the TLS
//!   settings (`--tls`).
//! - [`conn`]: one connection: thread-local read buffer, `memchr` line splitting, batched
//!   writes, TLS (rustls, sans-IO), WebSocket framing, handshakes.
//! - [`ws`]: the WebSocket upgrade, and lines framed out and decoded in place.
//! - [`engine`]: who sends to whom, the in-flight window, and the task driving each
//!   connection.
//! - [`workload`]: `fanout`, `dm`, `connect`, `soak` and `query`, and what they share.
//! - [`sys`]: file-descriptor limit and a server's RSS.

pub mod accounting;
pub mod conn;
pub mod dialect;
pub mod engine;
pub mod payload;
pub mod sys;
pub mod transport;
pub mod workload;
pub mod ws;

use clap::{Parser, Subcommand};

/// What a run produced: one JSON object (printed as one line) and a summary for people.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The machine-readable report.
    pub json: serde_json::Value,
    /// The human summary.
    pub summary: String,
}

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "natter-bench", version, about)]
pub struct Cli {
    /// Tokio worker threads [default: one per core].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Also append the JSON line to this file.
    #[arg(long, global = true)]
    pub json_out: Option<std::path::PathBuf>,
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// C registered clients, S of them broadcasting (natter MESSAGE or SAY, IRC PRIVMSG to a
    /// channel); deliveries, losses, order and latency.
    Fanout(workload::fanout::FanoutArgs),
    /// Pairs of clients exchanging direct messages (natter DM, IRC PRIVMSG to a nick).
    Dm(workload::dm::DmArgs),
    /// C idle registered clients: connect+register rate and latency, server KiB per
    /// connection, and optionally one broadcast to all of them.
    Connect(workload::connect::ConnectArgs),
    /// Mixed load over time (broadcasts, DMs, clients coming and going), as a time series.
    Soak(workload::soak::SoakArgs),
    /// One client's questions (HISTORY, SEARCH, any command) one at a time, each timed to
    /// its answer.
    Query(workload::query::QueryArgs),
}

/// Runs the chosen workload.
pub async fn run(w: Workload) -> Result<Outcome, String> {
    match w {
        Workload::Fanout(a) => workload::fanout::run(a).await,
        Workload::Dm(a) => workload::dm::run(a).await,
        Workload::Connect(a) => workload::connect::run(a).await,
        Workload::Soak(a) => workload::soak::run(a).await,
        Workload::Query(a) => workload::query::run(a).await,
    }
}
