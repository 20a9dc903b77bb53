//! `fanout`: C registered clients, S of them broadcasting; every delivery checked and timed.

use super::{Common, Ctx, Messaging, messaging_summary, run_messaging};
use crate::Outcome;
use crate::dialect::Dialect;
use crate::engine::Topology;
use clap::Args;
use serde_json::{Value, json};

/// Options of `fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Target and protocol.
    #[command(flatten)]
    pub common: Common,
    /// Pacing, payload and phases.
    #[command(flatten)]
    pub msg: Messaging,
    /// Clients connected (senders included).
    #[arg(long, short, default_value_t = 100)]
    pub clients: usize,
    /// Clients that broadcast.
    #[arg(long, short, default_value_t = 10)]
    pub senders: usize,
    /// natter: everyone JOINs this room and senders SAY to it instead of MESSAGE to
    /// everyone. IRC: the channel to use (default: --channel).
    #[arg(long)]
    pub room: Option<String>,
}

/// Runs `fanout`.
pub async fn run(args: FanoutArgs) -> Result<Outcome, String> {
    if args.clients < 2 || args.senders == 0 || args.senders > args.clients {
        return Err("fanout needs at least 2 clients and 1..=clients senders".into());
    }
    let mut common = args.common.clone();
    let (room, join) = match (common.proto, &args.room) {
        (Dialect::Natter, r) => (r.clone(), r.clone()),
        (Dialect::Irc, r) => {
            if let Some(r) = r {
                common.channel = r.clone();
            }
            (None, Some(common.channel.clone()))
        }
    };
    let ctx = Ctx::new(common).await?;
    let topo = Topology {
        clients: args.clients,
        broadcasters: args.senders,
        dm_pairs: 0,
    };
    let r = run_messaging(&ctx, topo, &args.msg, room.clone(), join).await?;
    let mut json = ctx.header("fanout");
    json.insert("params".into(), params(&args, room.as_deref()));
    json.insert("results".into(), json!(r));
    let summary = messaging_summary(&ctx.common.label, "fanout", &r);
    Ok(Outcome {
        json: Value::Object(json),
        summary,
    })
}

fn params(a: &FanoutArgs, room: Option<&str>) -> Value {
    json!({
        "clients": a.clients,
        "senders": a.senders,
        "rate": a.msg.rate,
        "window": a.msg.window,
        "count": a.msg.count,
        "size": a.msg.size,
        "warmup_s": a.msg.warmup,
        "duration_s": a.msg.duration,
        "room": room,
    })
}
