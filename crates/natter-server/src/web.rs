//! The HTTP side of the shared port: the browser client, its WebSocket, and the operations
//! endpoints.
//!
//! A connection whose first bytes are an HTTP request is served here by hyper with an axum
//! router: `/` and its assets (embedded in the binary, no build step), `/ws` (natter's line
//! protocol over WebSocket, see [`crate::websocket`]), `/healthz` and `/metrics` (Prometheus
//! text format).

use crate::connection::Shared;
use crate::rewind::Rewind;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::debug;

/// The page, its script and its style, compiled into the binary.
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// Largest WebSocket message accepted at all; larger ones close the connection. Messages up
/// to this size but over the line limit get `ERROR LINE_TOO_LONG` like an over-long line.
pub const WS_MAX_MESSAGE: usize = 64 * 1024;
/// Initial read buffer of a WebSocket connection.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes a WebSocket connection gathers before writing, short of a flush.
const WS_WRITE_BUFFER: usize = 8 * 1024;

/// What the HTTP handlers need.
#[derive(Clone, Debug)]
pub struct WebState {
    /// Everything connections share.
    pub shared: Arc<Shared>,
    /// The peer of the HTTP connection.
    pub peer: SocketAddr,
    /// The server's shutdown signal, for WebSocket sessions.
    pub shutdown: CancellationToken,
}

/// Serves HTTP on one connection (whose first bytes the sniffer already read) until the
/// client is done, the connection upgrades to a WebSocket, or the server shuts down.
pub async fn serve<S>(stream: Rewind<S>, state: WebState)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = state.shutdown.clone();
    let peer = state.peer;
    let router = router(state);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        router.clone().call(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML);
    // The page loads only its own script and style and talks only to its own server.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

async fn metrics(State(st): State<WebState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.shared.hub.stats().prometheus(),
    )
        .into_response()
}

async fn websocket(
    State(st): State<WebState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &st.shared.config.allowed_origins) {
        debug!(peer = %st.peer, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return (
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket connections are refused\n",
        )
            .into_response();
    }
    // Small buffers: with the library's defaults (128 KiB to read, 128 KiB gathered before a
    // write) every idle browser cost 168 KiB. Lines are short, the reader grows its
    // buffer for a long one, and the writer flushes each batch from the outbox anyway.
    ws.max_message_size(WS_MAX_MESSAGE)
        .max_frame_size(WS_MAX_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| crate::websocket::run(socket, st))
}

/// Whether a WebSocket upgrade may proceed: no Origin (not a browser), the page's own origin
/// (its host matches the Host the request was sent to), or an origin the operator allowed.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&headers(None, "chat:8090"), &none));
        assert!(origin_allowed(
            &headers(Some("http://chat:8090"), "chat:8090"),
            &none
        ));
        assert!(origin_allowed(
            &headers(Some("https://CHAT:8090"), "chat:8090"),
            &none
        ));
        assert!(!origin_allowed(
            &headers(Some("http://evil.example"), "chat:8090"),
            &none
        ));
        assert!(!origin_allowed(
            &headers(Some("http://chat:8091"), "chat:8090"),
            &none
        ));
        assert!(!origin_allowed(&headers(Some("null"), "chat:8090"), &none));
        let ok = vec!["http://evil.example".to_owned()];
        assert!(origin_allowed(
            &headers(Some("http://evil.example"), "chat:8090"),
            &ok
        ));
        assert!(origin_allowed(
            &headers(Some("http://x"), "y"),
            &["*".to_owned()]
        ));
    }
}
