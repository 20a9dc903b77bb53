//! Start-up, limits and shutdown, through the library and the real binary.

mod common;

use common::binary::Binary;
use common::{ClientExt, TestServer, within};
use natter_conn::Client;
use natter_server::Config;
use std::process::Command;

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
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::start(dir.path(), &[]);
    let addr = server.addr().await;
    let mut c = within(Client::connect(addr.as_str())).await.unwrap();
    assert_eq!(c.ask("REGISTER sig").await, "OK REGISTER sig");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        c.until_closed().await,
        vec!["BYE SHUTDOWN the server is shutting down"]
    );
    let (exit, log) = server.exit().await;
    assert!(exit.success(), "{exit:?}");
    assert!(
        log.contains("store open") && log.contains("store=sqlite:natter.db"),
        "the default store is a file in the working directory: {log}"
    );
    assert!(dir.path().join("natter.db").is_file());
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

#[tokio::test]
async fn a_second_server_on_the_same_store_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Binary::start(dir.path(), &[]);
    let addr = first.addr().await;
    // It says where it listens before it opens its store: the second must come after that.
    first.until_log("store open").await;
    let (status, log) = Binary::start(dir.path(), &[]).exit().await;
    assert!(!status.success());
    assert!(
        log.contains("natter-server: natter.db is in use by another natter-server"),
        "{log}"
    );
    // The first goes on serving.
    let mut c = within(Client::connect(addr.as_str())).await.unwrap();
    assert_eq!(c.ask("REGISTER still").await, "OK REGISTER still");
    let _ = first.child.kill();
}

#[tokio::test]
async fn a_cluster_node_without_a_shared_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = Binary::start(dir.path(), &["--cluster", "redis://127.0.0.1:1"])
        .exit()
        .await;
    assert!(!status.success());
    assert!(
        log.contains("need one PostgreSQL store: pass --store postgres://"),
        "{log}"
    );
    assert!(!dir.path().join("natter.db").exists());
}
