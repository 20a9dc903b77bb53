//! natter's line protocol over WebSocket: one line per text frame, through the same session
//! logic, hub, outbox and slow-client policy as a TCP client.

use crate::connection::{End, Handler};
use crate::listener::Disconnect;
use crate::outbox::Outbox;
use crate::session::{Flow, Session, bye};
use crate::throttle::Throttle;
use crate::web::WebState;
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use natter_proto::ByeReason;
use natter_proto::limits::MAX_LINE_BYTES;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::timeout;
use tracing::{debug, info, warn};

/// Serves one upgraded WebSocket to its end.
pub async fn run(socket: WebSocket, st: WebState) {
    let shared = &st.shared;
    let hub = shared.hub.clone();
    let stats = hub.stats().clone();
    // The connection count follows the WebSocket, not the HTTP request that opened it; the
    // tracker token makes a shutdown wait for this session like any other.
    let _tracked = shared.tracker.token();
    let connected = stats.connect();
    let _count = Disconnect::new(stats.clone());
    let peer = st.peer;
    info!(%peer, connected, registered = stats.registered(), kind = "websocket", "connected");

    let cfg = &shared.config;
    let id = shared.ids.fetch_add(1, Ordering::Relaxed) + 1;
    let outbox = Arc::new(Outbox::new(cfg.outbox_bytes));
    outbox.push(shared.hello.clone());
    let mut session = Session::new(id, peer, outbox.clone(), hub.clone(), shared.policy.clone());
    let mut throttle = shared
        .policy
        .flood
        .as_ref()
        .map(|f| Throttle::new(f, tokio::time::Instant::now()));
    let (mut sink, mut stream) = socket.split();

    let writer = async {
        let mut batch = VecDeque::new();
        loop {
            outbox.ready().await;
            if outbox.drain_into(&mut batch) {
                return End::SlowConsumer;
            }
            if let Err(end) = send_all(&mut sink, &mut batch, &stats, cfg.write_stall).await {
                return end;
            }
            if batch.capacity() > KEEP_BATCH {
                // A burst (a crowd arriving) must not leave its capacity in every idle client.
                batch = VecDeque::new();
            }
        }
    };
    let reader = async {
        loop {
            // The registration deadline and idle timeout apply here as on TCP.
            let deadline = session.deadline();
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    if session.on_deadline() == Flow::Close {
                        return End::Close;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            let data: Bytes = match msg {
                Ok(Message::Text(t)) => Bytes::from(t),
                Ok(Message::Binary(b)) => b,
                Ok(Message::Close(_)) => return End::PeerClosed,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Err(e) => {
                    // Includes messages over WS_MAX_MESSAGE: the socket is closed for them.
                    debug!(%peer, error = %e, "WebSocket read failed");
                    return End::Error;
                }
            };
            if let Some(t) = &mut throttle {
                t.read(data.len(), tokio::time::Instant::now());
            }
            // One line per frame; a frame holding several lines is taken line by line, each
            // paying for itself. Waiting here leaves the sender's next frames in its socket.
            for line in data.split(|&b| b == b'\n') {
                if let Some(t) = &mut throttle {
                    let now = tokio::time::Instant::now();
                    if !t.command(now) || t.read_allowance(now) == 0 {
                        let resume = t.ready_at();
                        if t.grace_ends().is_some_and(|g| resume > g) {
                            return End::Flood;
                        }
                        session.end_of_input();
                        tokio::time::sleep_until(resume).await;
                        t.command(tokio::time::Instant::now());
                    }
                }
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > MAX_LINE_BYTES {
                    session.on_too_long();
                } else if session.on_line(line) == Flow::Close {
                    return End::Close;
                }
                if session.waiting()
                    && std::future::poll_fn(|cx| session.poll_resume(cx)).await == Flow::Close
                {
                    return End::Close;
                }
            }
            session.end_of_input();
            if let Some(t) = &mut throttle
                && t.command_ready(tokio::time::Instant::now())
            {
                t.relieved();
            }
        }
        End::PeerClosed
    };
    let end = tokio::select! {
        e = writer => e,
        e = reader => e,
        _ = st.shutdown.cancelled() => End::Shutdown,
    };

    session.leave(match end {
        End::Close => "quit",
        End::Shutdown => "server shutting down",
        End::SlowConsumer => "too slow to read",
        End::Flood => "flooding",
        _ => "connection closed",
    });
    let last = match end {
        End::Shutdown => Some(bye(ByeReason::Shutdown)),
        End::Flood => {
            warn!(%peer, "WebSocket client flooding; disconnecting");
            Some(bye(ByeReason::Flood))
        }
        End::SlowConsumer => {
            stats.slow_consumer();
            warn!(%peer, "slow WebSocket consumer: outgoing queue full; disconnecting");
            Some(bye(ByeReason::SlowConsumer))
        }
        _ => None,
    };
    if let Some(line) = last {
        outbox.push_final(line);
    }
    if !matches!(end, End::Error | End::Stalled | End::PeerClosed) {
        let mut batch = VecDeque::new();
        outbox.drain_into(&mut batch);
        let flushed = send_all(&mut sink, &mut batch, &stats, cfg.shutdown_grace).await;
        if flushed.is_ok() {
            let _ = timeout(cfg.shutdown_grace, sink.send(Message::Close(None))).await;
        }
    }
    info!(
        %peer,
        reason = ?end,
        connected = stats.connected().saturating_sub(1),
        registered = stats.registered(),
        kind = "websocket",
        "disconnected"
    );
}

/// Sends every queued line as its own text frame, then flushes within `limit`.
/// Queue capacity the writer keeps between batches; more is given back.
const KEEP_BATCH: usize = 16;

async fn send_all(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    batch: &mut VecDeque<Bytes>,
    stats: &crate::stats::Stats,
    limit: std::time::Duration,
) -> Result<(), End> {
    let send = async {
        for chunk in batch.drain(..) {
            for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                // Server lines are built from UTF-8 text, so this never replaces anything.
                let text = String::from_utf8_lossy(line).into_owned();
                stats.bytes_out(text.len());
                sink.feed(Message::Text(text.into())).await?;
            }
        }
        sink.flush().await
    };
    match timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Error),
        Err(_) => Err(End::Stalled),
    }
}
