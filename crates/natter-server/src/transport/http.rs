//! HTTP on a connection: the browser client, its WebSocket upgrade, and the operations
//! endpoints.
//!
//! A connection whose first bytes are an HTTP request is served by hyper with an axum router:
//! `/` and its assets (embedded in the binary, no build step), `/ws`, `/healthz` and
//! `/metrics` (Prometheus text format). An upgrade at `/ws` is answered here (the origin
//! check, the handshake's headers), and then the connection leaves hyper: [`serve`] returns
//! the socket (or the TLS session) with whatever the client sent after its request, and the
//! same task goes on to serve it as a [WebSocket wire](super::websocket) under the one
//! driver. So a WebSocket client is the connection it arrived on, counted once, under the
//! per-address limits, and shut down like any other.

use super::rewind::Rewind;
use super::shared::Shared;
use crate::config::Origins;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::debug;

/// The page, its script and its style, compiled into the binary.
const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP handlers need.
#[derive(Clone, Debug)]
struct WebState {
    /// Everything connections share.
    shared: Arc<Shared>,
    /// The peer of the connection.
    peer: SocketAddr,
    /// Where the `/ws` handler leaves the upgrade for [`serve`] to take over.
    upgrade: Arc<Mutex<Option<OnUpgrade>>>,
}

/// Serves HTTP on one connection (whose first bytes, read already, are replayed by `io`)
/// until the client is done, or the server shuts down, or the client upgrades to a
/// WebSocket: then returns the connection's stream and what the client sent after the
/// request.
pub async fn serve<S>(
    io: Rewind<S>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<(S, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade = Arc::new(Mutex::new(None));
    let router = router(WebState {
        shared,
        peer,
        upgrade: upgrade.clone(),
    });
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        router.clone().call(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
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
        return None;
    }
    let pending = upgrade.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let upgraded = pending.await.ok()?;
    let parts = upgraded.downcast::<TokioIo<Rewind<S>>>().ok()?;
    let (replay, stream) = parts.io.into_inner().into_parts();
    let early = if replay.is_empty() {
        parts.read_buf
    } else {
        let mut b = BytesMut::from(&replay[..]);
        b.extend_from_slice(&parts.read_buf);
        b.freeze()
    };
    Some((stream, early))
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

async fn metrics(State(st): State<WebState>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !st.shared.config.metrics.admits(st.peer.ip(), authorization) {
        return refuse(StatusCode::FORBIDDEN, "forbidden\n");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.shared.hub.stats().prometheus(&st.shared.store.stats()),
    )
        .into_response()
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// Answers a WebSocket upgrade (RFC 6455, 4.2) and leaves the connection for [`serve`].
async fn websocket(State(st): State<WebState>, mut req: Request) -> Response {
    let headers = req.headers();
    if !origin_allowed(headers, &st.shared.config.web) {
        debug!(peer = %st.peer, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket connections are refused\n",
        );
    }
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return refuse(StatusCode::UPGRADE_REQUIRED, "a WebSocket upgrade only\n");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let mut r = refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n");
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "this connection cannot upgrade\n");
    };
    *st.upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some(on_upgrade);
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// Whether a WebSocket upgrade may proceed: no `Origin` (not a browser), an origin the
/// operator allowed, or the server's own page: the origin's host and port are those the
/// request was sent to, and its host is one of the names the server is reached by, an IP
/// address, or `localhost`.
///
/// Comparing the origin with the request's own `Host` alone would let a DNS-rebinding page
/// through: `evil.example`, made to resolve to this server, sends both as `evil.example`.
/// A request with more than one `Origin` is refused.
pub fn origin_allowed(headers: &HeaderMap, origins: &Origins) -> bool {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let Some(origin) = all.next() else {
        return true;
    };
    if all.next().is_some() {
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origins
        .allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(origin_host) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    if !host.eq_ignore_ascii_case(origin_host) {
        return false;
    }
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || origins.names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The host of a `host[:port]` (an IPv6 address without its brackets).
fn host_name(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(a, _)| a);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origins: &[&str], host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        for o in origins {
            h.append(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let o = Origins {
            allowed: Vec::new(),
            names: vec!["chat.example".into()],
        };
        let ok = |origins: &[&str], host: &str| origin_allowed(&headers(origins, host), &o);
        assert!(ok(&[], "chat.example:8090"));
        assert!(ok(&["http://chat.example:8090"], "chat.example:8090"));
        assert!(ok(&["https://CHAT.example:8090"], "chat.example:8090"));
        assert!(ok(&["http://localhost:8090"], "localhost:8090"));
        assert!(ok(&["http://127.0.0.1:8090"], "127.0.0.1:8090"));
        assert!(ok(&["http://[::1]:8090"], "[::1]:8090"));
        assert!(!ok(&["http://evil.example"], "chat.example:8090"));
        assert!(!ok(&["http://chat.example:8091"], "chat.example:8090"));
        assert!(!ok(&["null"], "chat.example:8090"));
        // DNS rebinding: the page's own host, but not a name the server is reached by.
        assert!(!ok(&["http://evil.example:8090"], "evil.example:8090"));
        // Two origins: refused, whatever they say.
        assert!(!ok(
            &["http://chat.example:8090", "http://chat.example:8090"],
            "chat.example:8090"
        ));
        let any = Origins {
            allowed: vec!["*".into()],
            names: Vec::new(),
        };
        assert!(origin_allowed(&headers(&["http://x"], "y"), &any));
        let one = Origins {
            allowed: vec!["http://evil.example".into()],
            names: Vec::new(),
        };
        assert!(origin_allowed(
            &headers(&["http://evil.example"], "chat:8090"),
            &one
        ));
    }
}
