//! The HTTP side of the shared port: the page, /healthz, /metrics, and the line protocol over
//! WebSocket, side by side with TCP clients.

mod common;

use common::{ClientExt, TestServer, within};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One HTTP/1.1 GET; returns the status code, the headers and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    common::probe::http_get(addr, common::wire::LOCAL, path).await
}

/// The value of one metric (without labels) from /metrics.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    common::probe::metric_from(addr, common::wire::LOCAL, name).await
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn ws(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    within(tokio_tungstenite::connect_async(req))
        .await
        .map(|(s, _)| s)
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match within(ws.next()).await.expect("closed").unwrap() {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, line: &str) {
    within(ws.send(Message::text(line))).await.unwrap();
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_on_the_shared_port() {
    let s = TestServer::start().await;
    let (status, head, body) = get(s.addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy"),
        "{head}"
    );
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    assert_eq!(get(s.addr, "/app.js").await.0, 200);
    assert_eq!(get(s.addr, "/app.css").await.0, 200);
    assert_eq!(get(s.addr, "/nope").await.0, 404);
    // The same port still speaks the line protocol to everyone else.
    let mut c = s.user("tcp").await;
    c.expect_quiet().await;
}

#[tokio::test]
async fn healthz_and_metrics_follow_clients() {
    let s = TestServer::start().await;
    let (status, _, body) = get(s.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(metric(s.addr, "natter_registered_users").await, 0);
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    assert_eq!(metric(s.addr, "natter_registered_users").await, 2);
    // The HTTP connection asking is one of the connected clients.
    assert_eq!(metric(s.addr, "natter_connected_clients").await, 3);
    a.text().await;
    assert_eq!(a.ask("MESSAGE counted").await, "OK MESSAGE 1");
    a.expect_error("MESSAGE", natter_proto::ErrorCode::EmptyText)
        .await;
    assert_eq!(metric(s.addr, "natter_messages_routed_total").await, 1);
    assert_eq!(metric(s.addr, "natter_deliveries_total").await, 1);
    let (_, _, body) = get(s.addr, "/metrics").await;
    assert!(
        body.contains("natter_errors_total{code=\"EMPTY_TEXT\"} 1"),
        "{body}"
    );
    assert!(metric(s.addr, "natter_bytes_out_total").await > 0);
    assert_eq!(b.text().await, "MESSAGE a counted");
    assert_eq!(b.ask("CLOSE").await, "BYE CLOSED goodbye");
    b.until_closed().await;
    assert_eq!(a.text().await, "OFFLINE b");
    assert_eq!(metric(s.addr, "natter_registered_users").await, 1);
}

#[tokio::test]
async fn websocket_clients_speak_the_line_protocol_with_tcp_clients() {
    let s = TestServer::start().await;
    let mut tcp = s.user("tcp").await;
    let mut w = ws(s.addr, None).await.unwrap();
    assert!(next_text(&mut w).await.starts_with("HELLO natter "));
    send(&mut w, "REGISTER webby").await;
    assert_eq!(next_text(&mut w).await, "OK REGISTER webby");
    assert_eq!(tcp.text().await, "ONLINE webby");
    assert_eq!(metric(s.addr, "natter_registered_users").await, 2);

    send(&mut w, "MESSAGE hello  from the web").await;
    assert_eq!(next_text(&mut w).await, "OK MESSAGE 1");
    assert_eq!(tcp.text().await, "MESSAGE webby hello  from the web");
    assert_eq!(tcp.ask("DM webby and back").await, "OK DM webby");
    assert_eq!(next_text(&mut w).await, "DM tcp and back");

    // Answers with data lines arrive one line per frame.
    send(&mut w, "LIST").await;
    assert_eq!(next_text(&mut w).await, "USER tcp");
    assert_eq!(next_text(&mut w).await, "USER webby");
    assert_eq!(next_text(&mut w).await, "OK LIST 2");

    // Errors are the same as on TCP, and a frame over the line limit is refused but not fatal.
    send(&mut w, "FROB").await;
    assert!(
        next_text(&mut w)
            .await
            .starts_with("ERROR UNKNOWN_COMMAND ")
    );
    let long = format!(
        "MESSAGE {}",
        "x".repeat(natter_proto::limits::MAX_LINE_BYTES)
    );
    send(&mut w, &long).await;
    assert!(next_text(&mut w).await.starts_with("ERROR LINE_TOO_LONG "));
    send(&mut w, "MESSAGE still here").await;
    assert_eq!(next_text(&mut w).await, "OK MESSAGE 1");
    assert_eq!(tcp.text().await, "MESSAGE webby still here");

    // A message of any length is a line, as on TCP: one error, and the connection goes on.
    let huge = "y".repeat(1 << 20);
    send(&mut w, &huge).await;
    assert!(next_text(&mut w).await.starts_with("ERROR LINE_TOO_LONG "));
    send(&mut w, "MESSAGE after").await;
    assert_eq!(next_text(&mut w).await, "OK MESSAGE 1");
    assert_eq!(tcp.text().await, "MESSAGE webby after");
    let _ = w.send(Message::Close(None)).await;
    assert_eq!(tcp.text().await, "OFFLINE webby");
}

#[tokio::test]
async fn cross_origin_websocket_upgrades_are_refused() {
    let s = TestServer::start().await;
    match ws(s.addr, Some("http://evil.example")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "cross-origin upgrade was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    let same = format!("http://{}", s.addr);
    let mut w = ws(s.addr, Some(&same)).await.unwrap();
    assert!(next_text(&mut w).await.starts_with("HELLO"));
}

#[tokio::test]
async fn allowed_origins_are_configurable() {
    let s = TestServer::with(natter_server::Config {
        web: natter_server::config::Origins {
            allowed: vec!["https://chat.example".into()],
            names: Vec::new(),
        },
        ..common::test_config()
    })
    .await;
    assert!(ws(s.addr, Some("https://chat.example")).await.is_ok());
    assert!(ws(s.addr, Some("https://other.example")).await.is_err());
}

#[tokio::test]
async fn metrics_are_for_the_allowed_addresses_or_the_token_only() {
    use common::probe::http_get_with;
    use common::wire::{LOCAL, OTHER};
    let mut config = common::test_config();
    config.metrics.allow = vec![format!("{LOCAL}/32").parse().unwrap()];
    config.metrics.token = Some(natter_server::config::Secret::new("t0ken"));
    let s = TestServer::with(config).await;
    assert_eq!(http_get_with(s.addr, LOCAL, "/metrics", "").await.0, 200);
    let (status, _, body) = http_get_with(s.addr, OTHER, "/metrics", "").await;
    assert_eq!(status, 403);
    assert!(!body.contains("natter_"), "{body}");
    let wrong = "Authorization: Bearer nope\r\n";
    assert_eq!(http_get_with(s.addr, OTHER, "/metrics", wrong).await.0, 403);
    let right = "Authorization: Bearer t0ken\r\n";
    let (status, _, body) = http_get_with(s.addr, OTHER, "/metrics", right).await;
    assert_eq!(status, 200);
    assert!(body.contains("natter_connected_clients"), "{body}");
    // The page and the health check stay open to all.
    assert_eq!(http_get_with(s.addr, OTHER, "/healthz", "").await.0, 200);
}
