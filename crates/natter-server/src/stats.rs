//! Server-wide counters, updated without locks and read by logs and metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters shared by every part of the server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    connected: AtomicUsize,
    /// Registered users online now.
    registered: AtomicUsize,
    /// Connections accepted since start.
    accepted: AtomicU64,
    /// Clients disconnected because they stopped reading.
    slow_consumers: AtomicU64,
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
    }

    /// Counts a client dropped for not reading.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    /// Clients dropped for not reading, since start.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }
}
