//! Start-up, limits and shutdown, through the library and the real binary.

mod common;

use common::{ClientExt, LIMIT, TestServer, within};
use natter_conn::Client;
use natter_server::Config;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn extra_clients_are_refused_with_a_clear_line() {
    let s = TestServer::with(Config {
        max_connections: 2,
        ..common::test_config()
    })
    .await;
    let mut one = s.user("one").await;
    let _two = s.client().await;
    let refused = Client::connect(s.addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(refused.to_string().contains("full"), "{refused}");
    // A place frees once a client leaves; the server counts it when the socket is closed, so
    // the next attempt may still race that and is retried within the test limit.
    assert_eq!(one.ask("CLOSE").await, "BYE CLOSED goodbye");
    one.until_closed().await;
    within(async {
        loop {
            if let Ok(mut c) = Client::connect(s.addr).await {
                assert_eq!(c.ask("REGISTER three").await, "OK REGISTER three");
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[test]
fn binary_help_names_host_and_port() {
    let out = Command::new(env!("CARGO_BIN_EXE_natter-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("[HOST]") && help.contains("[PORT]"), "{help}");
    assert!(
        help.contains("localhost") && help.contains("8090"),
        "{help}"
    );
}

#[tokio::test]
async fn binary_prints_its_address_and_stops_gracefully_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter-server"))
        .args(["127.0.0.1", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr = within(async {
        loop {
            let line = rx.recv().await.expect("server exited");
            log.push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(';').next().unwrap().to_owned();
            }
        }
    })
    .await;
    let mut c = within(Client::connect(addr.as_str())).await.unwrap();
    assert_eq!(c.ask("REGISTER sig").await, "OK REGISTER sig");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        c.until_closed().await,
        vec!["BYE SHUTDOWN the server is shutting down"]
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    while let Ok(Some(line)) = tokio::time::timeout(LIMIT, rx.recv()).await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(
        log.contains("connected") && log.contains("connected=1"),
        "{log}"
    );
    assert!(
        log.contains("registered") && log.contains("user=sig"),
        "{log}"
    );
    assert!(log.contains("disconnected"), "{log}");
    assert!(log.contains("server stopped"), "{log}");
    assert!(
        !log.contains("\u{1b}["),
        "no colour codes when not on a terminal"
    );
}
