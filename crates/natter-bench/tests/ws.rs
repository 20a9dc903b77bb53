//! natter-bench over WebSocket, end to end: against a natter server in this process, each
//! workload over `/ws` (and over wss) must count every delivery exactly once; IRC over
//! WebSocket must be refused up front.

use clap::Parser;
use natter_bench::{Cli, Outcome};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The longest a test may take before it fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

/// A file of the server's TLS test material (see its README).
fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../natter-server/tests/tls")
        .join(name)
        .display()
        .to_string()
}

async fn bench(args: &[&str]) -> Result<Outcome, String> {
    let cli = Cli::try_parse_from(std::iter::once("natter-bench").chain(args.iter().copied()))
        .expect("valid arguments");
    tokio::time::timeout(LIMIT, natter_bench::run(cli.workload))
        .await
        .expect("the benchmark finished in time")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A natter server on 127.0.0.1:0 in this process, with TLS (certificate A, for
/// `localhost`) if asked; dropping the sender stops it.
async fn natter(tls: bool) -> (String, oneshot::Sender<()>) {
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

fn assert_exact(o: &Outcome, sent: u64, delivered: u64) {
    let r = &o.json["results"];
    assert_eq!(o.json["transport"], "ws", "{}", o.json);
    assert_eq!(n(r, "sent"), sent, "{r}");
    assert_eq!(n(r, "expected"), delivered, "{r}");
    assert_eq!(n(r, "delivered"), delivered, "{r}");
    for zero in ["lost", "duplicates", "reordered", "errors", "closed"] {
        assert_eq!(n(r, zero), 0, "{zero}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_websocket_counts_every_delivery_exactly_once() {
    let (addr, _stop) = natter(false).await;
    let o = bench(&[
        "fanout",
        "-t",
        &addr,
        "--transport",
        "ws",
        "-c",
        "20",
        "-s",
        "4",
        "--count",
        "200",
        "-w",
        "16",
        "--size",
        "200",
        "--warmup",
        "0.1",
        "-d",
        "0.5",
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    assert_eq!(o.json["tls"], false, "{}", o.json);
    assert_exact(&o, 4 * 200, 4 * 200 * 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_over_websocket_count_exactly() {
    let (addr, _stop) = natter(false).await;
    let o = bench(&[
        "dm",
        "-t",
        &addr,
        "--transport",
        "ws",
        "-p",
        "5",
        "--count",
        "100",
        "--warmup",
        "0",
        "-d",
        "0.3",
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    assert_exact(&o, 10 * 100, 10 * 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_soak_over_websocket() {
    let (addr, _stop) = natter(false).await;
    let o = bench(&[
        "connect",
        "-t",
        &addr,
        "--transport",
        "ws",
        "-c",
        "40",
        "--broadcast",
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    let r = &o.json["results"];
    assert_eq!(o.json["transport"], "ws", "{}", o.json);
    assert_eq!(n(r, "clients"), 40, "{r}");
    assert_eq!(n(r, "broadcast_reached"), 39, "{r}");

    let o = bench(&[
        "soak",
        "-t",
        &addr,
        "--transport",
        "ws",
        "-c",
        "12",
        "-s",
        "2",
        "-p",
        "2",
        "--rate",
        "50",
        "-d",
        "1.5",
        "--interval",
        "0.5",
        "--churn",
        "4",
        "--churn-life",
        "0.5",
        "--drain",
        "5",
    ])
    .await
    .unwrap();
    let r = &o.json["results"];
    assert!(n(r, "sent") > 0, "{r}");
    assert!(n(r, "churn_registered") > 0, "{r}");
    for zero in ["lost", "duplicates", "reordered", "churn_failed", "errors"] {
        assert_eq!(n(r, zero), 0, "{zero}: {r}");
    }
    assert_eq!(n(r, "delivered"), n(r, "expected"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_wss_counts_exactly() {
    let (addr, _stop) = natter(true).await;
    let ca = fixture("ca-a.pem");
    let o = bench(&[
        "fanout",
        "-t",
        &addr,
        "--transport",
        "ws",
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-name",
        "localhost",
        "-c",
        "12",
        "-s",
        "3",
        "--count",
        "150",
        "-w",
        "16",
        "--warmup",
        "0.1",
        "-d",
        "0.5",
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    assert_eq!(o.json["tls"], true, "{}", o.json);
    assert_exact(&o, 3 * 150, 3 * 150 * 11);
}

#[tokio::test]
async fn irc_over_websocket_is_refused() {
    let e = bench(&[
        "connect",
        "-t",
        "127.0.0.1:9",
        "--proto",
        "irc",
        "--transport",
        "ws",
        "-c",
        "2",
    ])
    .await
    .unwrap_err();
    assert!(e.contains("--transport ws"), "{e}");
}
