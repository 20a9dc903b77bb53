//! TLS on the shared port and on a TLS-only listener: the line protocol, IRC and WebSocket
//! inside it, plain bytes refused, and a certificate reload that keeps connections.

mod common;

use common::{ClientExt, TestServer, within};
use futures_util::{SinkExt, StreamExt};
use natter_conn::{LineReader, LineWriter, TlsClient};
use natter_server::Assume;
use natter_server::tls::Tls;
use natter_server::{Config, Listener};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// A client configuration trusting test certificate `which` ("a" or "b").
fn trust(which: &str) -> Arc<natter_conn::rustls::ClientConfig> {
    natter_conn::tls::client_config(Some(&fixture(&format!("ca-{which}.pem")))).unwrap()
}

fn tls_config(tls: Arc<Tls>) -> Config {
    Config {
        tls: Some(tls),
        ..common::test_config()
    }
}

async fn tls_connect(addr: SocketAddr, which: &str) -> std::io::Result<TlsClient> {
    within(TlsClient::connect_tls(addr, "localhost", trust(which))).await
}

#[tokio::test]
async fn the_line_protocol_inside_tls_on_the_shared_port() {
    let tls = Arc::new(Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap());
    let s = TestServer::with(tls_config(tls)).await;
    let mut plain = s.user("plain").await;
    let mut secure = tls_connect(s.addr, "a").await.unwrap();
    let (name, _) = within(secure.register("secure")).await.unwrap();
    assert_eq!(name, "secure");
    assert_eq!(plain.text().await, "ONLINE secure");
    secure.send("MESSAGE over  tls").await.unwrap();
    assert_eq!(plain.text().await, "MESSAGE secure over  tls");
    assert_eq!(plain.ask("DM secure back").await, "OK DM secure");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(within(secure.reader.next_text()).await.unwrap().unwrap());
    }
    // The OK waits for the message to be kept; the DM back may arrive before it.
    got.sort();
    assert_eq!(got, ["DM plain back", "OK MESSAGE 1"]);
    // A client that does not trust the certificate fails its handshake.
    assert!(tls_connect(s.addr, "b").await.is_err());
}

#[tokio::test]
async fn irc_and_websocket_inside_tls() {
    let tls = Arc::new(Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap());
    let s = TestServer::with(tls_config(tls)).await;
    let mut plain = s.user("plain").await;

    // IRC over TLS.
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = natter_conn::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(trust("a"))
        .connect(name, tcp)
        .await
        .unwrap();
    let (r, w) = tokio::io::split(stream);
    let (mut r, mut w) = (LineReader::new(r), LineWriter::new(w));
    w.send_raw(b"NICK ircs\r\nUSER ircs 0 * :I\r\n")
        .await
        .unwrap();
    loop {
        let l = within(r.next_text()).await.unwrap().unwrap();
        if l.contains(" 366 ") {
            break;
        }
    }
    assert_eq!(plain.text().await, "ONLINE ircs");
    w.send_raw(b"PRIVMSG plain :secret hello\r\n")
        .await
        .unwrap();
    assert_eq!(plain.text().await, "DM ircs secret hello");

    // WebSocket over TLS (wss).
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = natter_conn::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(trust("a"))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut ws, _) = within(tokio_tungstenite::client_async(
        "wss://localhost/ws",
        stream,
    ))
    .await
    .unwrap();
    let hello = within(ws.next()).await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().starts_with("HELLO"));
    ws.send(Message::text("REGISTER wss")).await.unwrap();
    assert_eq!(
        within(ws.next()).await.unwrap().unwrap().to_text().unwrap(),
        "OK REGISTER wss"
    );
    assert_eq!(plain.text().await, "ONLINE wss");
}

#[tokio::test]
async fn a_tls_only_listener_refuses_plain_bytes() {
    common::raise_fd_limit();
    let tls = Arc::new(Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap());
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(natter_server::run_all(
        vec![Listener {
            socket,
            assume: Assume::Tls,
        }],
        tls_config(tls),
        async {
            let _ = stopped.await;
        },
    ));
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"REGISTER sneaky\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = within(raw.read_to_end(&mut buf)).await;
    // Whatever came back (a TLS alert, or nothing), it was not the line protocol.
    assert!(!String::from_utf8_lossy(&buf).contains("OK"), "{buf:?}");
    let mut ok = tls_connect(addr, "a").await.unwrap();
    assert_eq!(within(ok.register("fine")).await.unwrap().0, "fine");
    let _ = stop.send(());
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_connections() {
    let dir = std::env::temp_dir().join(format!("natter-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(fixture("cert-a.pem"), &cert).unwrap();
    std::fs::copy(fixture("key-a.pem"), &key).unwrap();
    let tls = Arc::new(Tls::new(&cert, &key).unwrap());
    let s = TestServer::with(tls_config(tls.clone())).await;
    let mut old = tls_connect(s.addr, "a").await.unwrap();
    assert_eq!(within(old.register("old")).await.unwrap().0, "old");

    std::fs::copy(fixture("cert-b.pem"), &cert).unwrap();
    std::fs::copy(fixture("key-b.pem"), &key).unwrap();
    tls.reload().unwrap();
    // New handshakes see the new certificate...
    assert!(tls_connect(s.addr, "a").await.is_err());
    let mut new = tls_connect(s.addr, "b").await.unwrap();
    assert_eq!(within(new.register("new")).await.unwrap().0, "new");
    // ...and the connection made before the reload still works.
    old.send("DM new still here").await.unwrap();
    loop {
        let l = within(new.reader.next_text()).await.unwrap().unwrap();
        if l == "DM old still here" {
            break;
        }
    }
    // A broken file keeps the old configuration.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(tls.reload().is_err());
    assert!(tls_connect(s.addr, "b").await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
