//! natter-bench over TLS, end to end: against a natter server in this process that serves the
//! test certificate, a known number of messages must give exactly that many deliveries, in
//! both dialects; a certificate the bench does not trust must fail the run, not hang it.

mod common;

use common::{bench, fixture, n};
use serde_json::Value;

/// A natter server with TLS (certificate A, for `localhost`); dropping the sender stops it.
async fn natter_tls() -> (String, tokio::sync::oneshot::Sender<()>) {
    common::natter(true).await
}

/// The report is over TLS and counts exactly.
fn assert_exact(o: &natter_bench::Outcome, sent: u64, delivered: u64) {
    common::assert_exact(o, ("tls", Value::from(true)), sent, delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_tls_counts_every_delivery_exactly_once() {
    let (addr, _stop) = natter_tls().await;
    let ca = fixture("ca-a.pem");
    let o = bench(&[
        "fanout",
        "-t",
        &addr,
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
    assert_exact(&o, 3 * 150, 3 * 150 * 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_fanout_and_dms_over_tls_count_exactly() {
    let (addr, _stop) = natter_tls().await;
    let ca = fixture("ca-a.pem");
    let o = bench(&[
        "fanout",
        "-t",
        &addr,
        "--proto",
        "irc",
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-name",
        "localhost",
        "-c",
        "6",
        "-s",
        "2",
        "--count",
        "50",
        "--warmup",
        "0",
        "-d",
        "3",
        "--settle",
        "0.2",
    ])
    .await
    .unwrap();
    assert_exact(&o, 2 * 50, 2 * 50 * 5);
    let o = bench(&[
        "dm",
        "-t",
        &addr,
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-name",
        "localhost",
        "-p",
        "3",
        "--count",
        "40",
        "--warmup",
        "0",
        "-d",
        "3",
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    assert_exact(&o, 6 * 40, 6 * 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_run() {
    let (addr, _stop) = natter_tls().await;
    let wrong = fixture("ca-b.pem");
    let e = bench(&[
        "connect",
        "-t",
        &addr,
        "--tls",
        "--tls-ca",
        &wrong,
        "--tls-name",
        "localhost",
        "-c",
        "2",
        "--connect-timeout",
        "5",
    ])
    .await;
    let text = format!("{e:?}");
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_soak_over_tls() {
    let (addr, _stop) = natter_tls().await;
    let ca = fixture("ca-a.pem");
    let tls = ["--tls", "--tls-ca", &ca, "--tls-name", "localhost"];
    let mut args = vec![
        "connect",
        "-t",
        &addr,
        "-c",
        "30",
        "--broadcast",
        "--settle",
        "0.1",
    ];
    args.extend(tls);
    let o = bench(&args).await.unwrap();
    let r = &o.json["results"];
    assert_eq!(n(r, "clients"), 30, "{r}");
    assert_eq!(n(r, "broadcast_reached"), 29, "{r}");

    let mut args = vec![
        "soak",
        "-t",
        &addr,
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
    ];
    args.extend(tls);
    let o = bench(&args).await.unwrap();
    let r = &o.json["results"];
    assert!(n(r, "sent") > 0, "{r}");
    assert!(n(r, "churn_registered") > 0, "{r}");
    for zero in ["lost", "duplicates", "reordered", "churn_failed", "errors"] {
        assert_eq!(n(r, zero), 0, "{zero}: {r}");
    }
    assert_eq!(n(r, "delivered"), n(r, "expected"), "{r}");
}
