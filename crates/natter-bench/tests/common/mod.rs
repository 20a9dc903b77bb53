//! What the end-to-end tests of natter-bench share: a natter server in the test's process,
//! the benchmark run from its command line, and the checks of its report.
#![allow(dead_code, unreachable_pub)] // Each test binary uses its own part of this.

use clap::Parser;
use natter_bench::{Cli, Outcome};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The longest a test may take before it fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A file of the server's TLS test material (see its README).
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../natter-server/tests/tls")
        .join(name)
        .display()
        .to_string()
}

/// Runs natter-bench with `args` (its command line without the program name).
///
/// A run lasts its whole `--duration` even when `--count` caps what each sender sends, so
/// tests that check exact counts give the window seconds, not fractions: TLS and WebSocket
/// on a busy two-core machine may need them.
pub async fn bench(args: &[&str]) -> Result<Outcome, String> {
    let cli = Cli::try_parse_from(std::iter::once("natter-bench").chain(args.iter().copied()))
        .expect("valid arguments");
    tokio::time::timeout(LIMIT, natter_bench::run(cli.workload))
        .await
        .expect("the benchmark finished in time")
}

/// The number at `key` of a report's object.
pub fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A natter server on 127.0.0.1:0 in this process, with TLS (certificate A, for
/// `localhost`) if asked; dropping the sender stops it.
///
/// As in the benchmarks: flood control off and loopback exempt from per-address limits, the
/// way the IRC peers are run with their throttles relaxed.
pub async fn natter(tls: bool) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut config = natter_server::Config::default();
    config.policy.flood = None;
    config.policy.exempt_loopback = true;
    if tls {
        let t = natter_server::tls::Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap();
        config.tls = Some(Arc::new(t));
    }
    tokio::spawn(natter_server::run(listener, config, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// The report says `key` is `want`, `sent` messages went out and exactly `delivered` arrived,
/// with nothing lost, duplicated, reordered, failed or closed.
pub fn assert_exact(o: &Outcome, (key, want): (&str, Value), sent: u64, delivered: u64) {
    let r = &o.json["results"];
    assert_eq!(o.json[key], want, "{}", o.json);
    assert_eq!(n(r, "sent"), sent, "{r}");
    assert_eq!(n(r, "expected"), delivered, "{r}");
    assert_eq!(n(r, "delivered"), delivered, "{r}");
    for zero in ["lost", "duplicates", "reordered", "errors", "closed"] {
        assert_eq!(n(r, zero), 0, "{zero}: {r}");
    }
}
