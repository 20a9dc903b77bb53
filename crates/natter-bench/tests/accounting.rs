//! natter-bench's own accounting, end to end: against a real natter server in this process a
//! known number of messages must give exactly that many deliveries; against a fake server
//! that duplicates, reorders and drops, each fault must be counted.

mod common;

use common::{bench, n};
use natter_bench::Outcome;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn results(o: &Outcome) -> &Value {
    &o.json["results"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_every_delivery_exactly_once() {
    let (addr, _stop) = common::natter(false).await;
    let o = bench(&[
        "fanout", "-t", &addr, "-c", "20", "-s", "4", "--count", "200", "-w", "16", "--warmup",
        "0.1", "-d", "0.5", "--settle", "0.1",
    ])
    .await
    .unwrap();
    let r = results(&o);
    assert_eq!(n(r, "sent"), 4 * 200, "{r}");
    assert_eq!(n(r, "expected"), 4 * 200 * 19, "{r}");
    assert_eq!(n(r, "delivered"), 4 * 200 * 19, "{r}");
    for zero in ["lost", "duplicates", "reordered", "errors", "closed"] {
        assert_eq!(n(r, zero), 0, "{zero}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_fanout_and_dms_count_exactly() {
    let (addr, _stop) = common::natter(false).await;
    let o = bench(&[
        "fanout", "-t", &addr, "-c", "10", "-s", "2", "--count", "50", "--room", "#bench",
        "--warmup", "0", "-d", "0.3", "--settle", "0.1",
    ])
    .await
    .unwrap();
    let r = results(&o);
    assert_eq!((n(r, "delivered"), n(r, "lost")), (2 * 50 * 9, 0), "{r}");
    let o = bench(&[
        "dm", "-t", &addr, "-p", "5", "--count", "100", "--warmup", "0", "-d", "0.3", "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    let r = results(&o);
    assert_eq!(n(r, "sent"), 10 * 100, "{r}");
    assert_eq!(n(r, "delivered"), 10 * 100, "{r}");
    assert_eq!(
        n(r, "lost") + n(r, "duplicates") + n(r, "reordered"),
        0,
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_counts_registrations_and_one_broadcast() {
    let (addr, _stop) = common::natter(false).await;
    let pid = std::process::id().to_string();
    let o = bench(&[
        "connect",
        "-t",
        &addr,
        "-c",
        "50",
        "--broadcast",
        "--server-pid",
        &pid,
        "--settle",
        "0.1",
    ])
    .await
    .unwrap();
    let r = results(&o);
    assert_eq!(n(r, "clients"), 50);
    assert_eq!(n(r, "broadcast_reached"), 49, "{r}");
    assert!(r["kib_per_conn"].is_number(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_created_then_logged_into() {
    let (addr, _stop) = common::natter(false).await;
    let run = |step: &'static str| {
        let addr = addr.clone();
        async move {
            bench(&[
                "connect",
                "-t",
                &addr,
                "-c",
                "4",
                "--prefix",
                "acct",
                "--accounts",
                step,
            ])
            .await
        }
    };
    let created = run("create").await.unwrap();
    assert_eq!(n(results(&created), "errors"), 0, "{}", results(&created));
    // The accounts exist now: registering their names is refused, logging in is not.
    let refused = bench(&[
        "connect",
        "-t",
        &addr,
        "-c",
        "4",
        "--prefix",
        "acct",
        "--connect-timeout",
        "5",
    ])
    .await;
    assert!(refused.is_err(), "REGISTER of an account's name must fail");
    let logged_in = run("login").await.unwrap();
    assert_eq!(n(results(&logged_in), "clients"), 4);
    assert_eq!(
        n(results(&logged_in), "errors"),
        0,
        "{}",
        results(&logged_in)
    );
    let e = bench(&[
        "connect",
        "-t",
        &addr,
        "--proto",
        "irc",
        "--accounts",
        "login",
    ])
    .await
    .unwrap_err();
    assert!(e.contains("--proto natter"), "{e}");
}

#[tokio::test]
async fn refuses_targets_off_this_machine() {
    let e = bench(&["fanout", "-t", "192.168.1.10:6667"])
        .await
        .unwrap_err();
    assert!(e.contains("not a loopback address"), "{e}");
}

/// What the fake server does to the n-th message (from 0) on its way to the receiver.
fn fault(seq: usize) -> &'static str {
    match seq {
        10 | 20 => "duplicate",
        30 | 40 => "hold", // delivered after the next one: reordered
        50 => "drop",
        _ => "pass",
    }
}

/// A fake natter server for exactly two clients: registers them and relays each one's
/// MESSAGEs to the other, with the faults of [`fault`].
async fn faulty_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut socks = Vec::new();
        let mut outs = Vec::new();
        for _ in 0..2 {
            let (r, mut w) = listener.accept().await.unwrap().0.into_split();
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(async move {
                while let Some(l) = rx.recv().await {
                    if w.write_all(l.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
            socks.push(r);
            outs.push(tx);
        }
        for (i, r) in socks.into_iter().enumerate() {
            let (me, other) = (outs[i].clone(), outs[1 - i].clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(r).lines();
                let mut seq = 0;
                let mut held: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(name) = line.strip_prefix("REGISTER ") {
                        let _ = me.send(format!("OK REGISTER {name}\n"));
                    } else if let Some(text) = line.strip_prefix("MESSAGE ") {
                        let _ = me.send("OK MESSAGE 1\n".to_string());
                        let l = format!("MESSAGE sender {text}\n");
                        match fault(seq) {
                            "duplicate" => {
                                let _ = other.send(l.clone());
                                let _ = other.send(l);
                            }
                            "hold" => held = Some(l),
                            "drop" => {}
                            _ => {
                                let _ = other.send(l);
                                if let Some(h) = held.take() {
                                    let _ = other.send(h);
                                }
                            }
                        }
                        seq += 1;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_reordering_and_loss_are_detected() {
    let addr = faulty_server().await;
    let o = bench(&[
        "fanout", "-t", &addr, "-c", "2", "-s", "1", "--count", "100", "-w", "64", "--warmup", "0",
        "-d", "0.5", "--drain", "0.5", "--settle", "0",
    ])
    .await
    .unwrap();
    let r = results(&o);
    assert_eq!(n(r, "sent"), 100, "{r}");
    assert_eq!(n(r, "expected"), 100, "{r}");
    assert_eq!(n(r, "duplicates"), 2, "{r}");
    assert_eq!(n(r, "reordered"), 2, "{r}");
    assert_eq!(n(r, "lost"), 1, "{r}");
    assert_eq!(n(r, "delivered"), 99, "{r}");
}
