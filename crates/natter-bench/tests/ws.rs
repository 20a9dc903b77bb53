//! natter-bench over WebSocket, end to end: against a natter server in this process, each
//! workload over `/ws` (and over wss) must count every delivery exactly once; IRC over
//! WebSocket must be refused up front.

mod common;

use common::{bench, fixture, n, natter};
use serde_json::Value;

/// The report is over WebSocket and counts exactly.
fn assert_exact(o: &natter_bench::Outcome, sent: u64, delivered: u64) {
    common::assert_exact(o, ("transport", Value::from("ws")), sent, delivered);
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
        "3",
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
        "3",
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
        "3",
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
