//! `dm`: pairs of clients sending each other direct messages.

use super::{Common, Ctx, Messaging, messaging_summary, run_messaging};
use crate::Outcome;
use crate::engine::Topology;
use clap::Args;
use serde_json::{Value, json};

/// Options of `dm`.
#[derive(Debug, Clone, Args)]
pub struct DmArgs {
    /// Target and protocol.
    #[command(flatten)]
    pub common: Common,
    /// Pacing, payload and phases.
    #[command(flatten)]
    pub msg: Messaging,
    /// Pairs of clients; both clients of a pair send to the other.
    #[arg(long, short, default_value_t = 50)]
    pub pairs: usize,
}

/// Runs `dm`.
pub async fn run(args: DmArgs) -> Result<Outcome, String> {
    if args.pairs == 0 {
        return Err("dm needs at least one pair".into());
    }
    let ctx = Ctx::new(args.common.clone()).await?;
    let topo = Topology {
        clients: 2 * args.pairs,
        broadcasters: 0,
        dm_pairs: args.pairs,
    };
    let r = run_messaging(&ctx, topo, &args.msg, None, None).await?;
    let mut json = ctx.header("dm");
    json.insert(
        "params".into(),
        json!({
            "pairs": args.pairs,
            "rate": args.msg.rate,
            "window": args.msg.window,
            "count": args.msg.count,
            "size": args.msg.size,
            "warmup_s": args.msg.warmup,
            "duration_s": args.msg.duration,
        }),
    );
    json.insert("results".into(), json!(r));
    let summary = messaging_summary(&ctx.common.label, "dm", &r);
    Ok(Outcome {
        json: Value::Object(json),
        summary,
    })
}
