//! Server-wide counters, updated without locks and read by logs and `/metrics`.

use natter_proto::ErrorCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters shared by every part of the server.
#[derive(Debug)]
pub struct Stats {
    /// Connections open now.
    connected: AtomicUsize,
    /// Registered users online now.
    registered: AtomicUsize,
    /// The most registered users online at once since start.
    peak_registered: AtomicUsize,
    /// Rooms that exist now.
    rooms: AtomicUsize,
    /// Sessions whose connection was lost, waiting to be resumed.
    lingering: AtomicUsize,
    /// Connections accepted since start.
    accepted: AtomicU64,
    /// Chat messages (MESSAGE, DM, SAY and their IRC forms) accepted since start.
    routed: AtomicU64,
    /// Chat lines queued for recipients since start (a broadcast counts once per recipient).
    deliveries: AtomicU64,
    /// Bytes written to clients since start.
    bytes_out: AtomicU64,
    /// Clients disconnected because they stopped reading.
    slow_consumers: AtomicU64,
    /// `ERROR` lines sent, by code, in [`ErrorCode::ALL`] order.
    errors: Box<[AtomicU64]>,
    /// The cluster backplane's figures; all zero for a single process.
    pub backplane: BackplaneStats,
    /// The message log's figures.
    pub history: HistoryStats,
}

/// What the message log did, for `/metrics`.
#[derive(Debug, Default)]
pub struct HistoryStats {
    /// Messages committed to the log.
    pub kept: AtomicU64,
    /// Messages the store failed to keep (their senders were told).
    pub failed: AtomicU64,
    /// Times a sender waited for room in the store's full queue.
    pub waited: AtomicU64,
}

/// What the cluster backplane did, for `/metrics`.
#[derive(Debug, Default)]
pub struct BackplaneStats {
    /// Operations appended to the shared stream.
    pub published: AtomicU64,
    /// Other nodes' operations applied here.
    pub relayed: AtomicU64,
    /// Connections to Redis made again after one failed.
    pub reconnects: AtomicU64,
    /// Age of the last applied operation when it was applied, in milliseconds.
    pub lag_ms: AtomicU64,
    /// Operations waiting to be appended.
    pub queued: AtomicUsize,
    /// Operations dropped because the queue was full while Redis was away.
    pub dropped: AtomicU64,
    /// Nodes found dead.
    pub nodes_lost: AtomicU64,
    /// Users renamed because another node's user held their name.
    pub renamed: AtomicU64,
    /// Times the backplane was found to have lost its data.
    pub resets: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            connected: AtomicUsize::new(0),
            registered: AtomicUsize::new(0),
            peak_registered: AtomicUsize::new(0),
            rooms: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            backplane: BackplaneStats::default(),
            history: HistoryStats::default(),
        }
    }
}

impl Stats {
    /// Counts a new connection; returns how many are open now.
    pub fn connect(&self) -> usize {
        self.accepted.fetch_add(1, Relaxed);
        self.connected.fetch_add(1, Relaxed) + 1
    }

    /// Counts a closed connection; returns how many are open now.
    pub fn disconnect(&self) -> usize {
        self.connected.fetch_sub(1, Relaxed) - 1
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.connected.load(Relaxed)
    }

    /// Registered users online now.
    pub fn registered(&self) -> usize {
        self.registered.load(Relaxed)
    }

    /// Records the number of registered users (the hub knows it exactly).
    pub fn set_registered(&self, n: usize) {
        self.registered.store(n, Relaxed);
        self.peak_registered.fetch_max(n, Relaxed);
    }

    /// The most registered users online at once since start (IRC's 265 and 266).
    pub fn peak_registered(&self) -> usize {
        self.peak_registered.load(Relaxed)
    }

    /// Records the number of rooms (the hub knows it exactly).
    pub fn set_rooms(&self, n: usize) {
        self.rooms.store(n, Relaxed);
    }

    /// Records the number of sessions waiting to be resumed.
    pub fn set_lingering(&self, n: usize) {
        self.lingering.store(n, Relaxed);
    }

    /// Sessions waiting to be resumed now.
    pub fn lingering(&self) -> usize {
        self.lingering.load(Relaxed)
    }

    /// Counts one chat message accepted and queued for `recipients`.
    pub fn routed(&self, recipients: usize) {
        self.routed.fetch_add(1, Relaxed);
        self.deliveries.fetch_add(recipients as u64, Relaxed);
    }

    /// Counts bytes written to a client.
    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Counts a client dropped for not reading.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    /// Clients dropped for not reading, since start.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Relaxed)
    }

    /// Counts an `ERROR` line.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|&c| c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn prometheus(&self, store: &natter_store::StoreStats) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP natter_{name} {help}");
            let _ = writeln!(out, "# TYPE natter_{name} {kind}");
            let _ = writeln!(out, "natter_{name} {value}");
        };
        let g = |a: &AtomicUsize| a.load(Relaxed) as u64;
        let c = |a: &AtomicU64| a.load(Relaxed);
        metric(
            "connected_clients",
            "gauge",
            "Connections open now.",
            g(&self.connected),
        );
        metric(
            "registered_users",
            "gauge",
            "Registered users online now.",
            g(&self.registered),
        );
        metric("rooms", "gauge", "Rooms that exist now.", g(&self.rooms));
        metric(
            "lingering_sessions",
            "gauge",
            "Sessions whose connection was lost, waiting to be resumed.",
            g(&self.lingering),
        );
        metric(
            "connections_accepted_total",
            "counter",
            "Connections accepted since start.",
            c(&self.accepted),
        );
        metric(
            "messages_routed_total",
            "counter",
            "Chat messages accepted (MESSAGE, DM, SAY).",
            c(&self.routed),
        );
        metric(
            "deliveries_total",
            "counter",
            "Chat lines queued for recipients.",
            c(&self.deliveries),
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes written to clients.",
            c(&self.bytes_out),
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Clients dropped for not reading.",
            c(&self.slow_consumers),
        );
        let b = &self.backplane;
        for (name, kind, help, value) in [
            (
                "backplane_published_total",
                "counter",
                "Operations appended to the cluster stream.",
                c(&b.published),
            ),
            (
                "backplane_relayed_total",
                "counter",
                "Other nodes' operations applied here.",
                c(&b.relayed),
            ),
            (
                "backplane_reconnects_total",
                "counter",
                "Reconnections to Redis after a failure.",
                c(&b.reconnects),
            ),
            (
                "backplane_lag_milliseconds",
                "gauge",
                "Age of the last applied operation when applied.",
                c(&b.lag_ms),
            ),
            (
                "backplane_queued",
                "gauge",
                "Operations waiting to be appended.",
                g(&b.queued),
            ),
            (
                "backplane_dropped_total",
                "counter",
                "Operations dropped at the queue's bound.",
                c(&b.dropped),
            ),
            (
                "backplane_nodes_lost_total",
                "counter",
                "Nodes found dead.",
                c(&b.nodes_lost),
            ),
            (
                "backplane_renamed_total",
                "counter",
                "Users renamed to settle a name held on two nodes.",
                c(&b.renamed),
            ),
            (
                "backplane_resets_total",
                "counter",
                "Times Redis was found to have lost its data.",
                c(&b.resets),
            ),
            (
                "history_kept_total",
                "counter",
                "Messages committed to the message log.",
                c(&self.history.kept),
            ),
            (
                "history_failed_total",
                "counter",
                "Messages the store failed to keep; each sender was told.",
                c(&self.history.failed),
            ),
            (
                "history_waits_total",
                "counter",
                "Times a sender waited for room in the store's full queue.",
                c(&self.history.waited),
            ),
            (
                "store_commits_total",
                "counter",
                "Transactions the store committed.",
                store.commits,
            ),
            (
                "store_requests_total",
                "counter",
                "Store requests answered after their commit.",
                store.requests,
            ),
            (
                "store_failures_total",
                "counter",
                "Store requests that failed.",
                store.failures,
            ),
            (
                "store_queued",
                "gauge",
                "Store requests waiting for the writer.",
                store.queued,
            ),
        ] {
            metric(name, kind, help, value);
        }
        let _ = writeln!(out, "# HELP natter_errors_total ERROR lines sent, by code.");
        let _ = writeln!(out, "# TYPE natter_errors_total counter");
        for (code, n) in ErrorCode::ALL.iter().zip(self.errors.iter()) {
            let _ = writeln!(out, "natter_errors_total{{code=\"{code}\"}} {}", c(n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lists_every_counter() {
        let s = Stats::default();
        s.connect();
        s.routed(3);
        s.error(ErrorCode::NameTaken);
        let store = natter_store::StoreStats {
            commits: 2,
            requests: 5,
            failures: 1,
            queued: 0,
        };
        let text = s.prometheus(&store);
        assert!(text.contains("natter_connected_clients 1\n"), "{text}");
        assert!(text.contains("natter_store_requests_total 5\n"));
        assert!(text.contains("natter_store_failures_total 1\n"));
        assert!(text.contains("natter_deliveries_total 3\n"));
        assert!(text.contains("natter_errors_total{code=\"NAME_TAKEN\"} 1\n"));
        assert!(text.contains("natter_errors_total{code=\"INVALID_UTF8\"} 0\n"));
    }
}
