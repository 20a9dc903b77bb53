//! Per-address admission: how many connections each address has open and how fast it opens
//! them, and the guard that counts a connection until its task ends.

use crate::config::Policy;
use crate::stats::Stats;
use crate::throttle::Bucket;
use natter_proto::ByeReason;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts the connection as closed when its task ends, even by panic. Every connection's
/// task holds one, so it is kept small.
#[derive(Debug)]
pub struct Disconnect {
    /// The admission table, and through it the server's counters.
    admission: Arc<Admission>,
    /// The address whose count to release, if it is limited.
    ip: Option<IpAddr>,
}

impl Disconnect {
    /// A guard for a connection already counted with [`Stats::connect`], which also holds
    /// one of `ip`'s places if given.
    pub fn new(admission: Arc<Admission>, ip: Option<IpAddr>) -> Self {
        Self { admission, ip }
    }
}

impl Drop for Disconnect {
    fn drop(&mut self) {
        self.admission.stats.disconnect();
        if let Some(ip) = self.ip {
            self.admission.release(ip);
        }
    }
}

/// Per-address admission: how many connections each address has open, and how fast it has
/// been opening them.
#[derive(Debug)]
pub struct Admission {
    /// By address; a std mutex held only for a lookup and an update.
    table: Mutex<HashMap<IpAddr, PerIp>>,
    /// The server's counters, where connections are counted.
    stats: Arc<Stats>,
}

#[derive(Debug)]
struct PerIp {
    /// Connections open now.
    open: usize,
    /// New connections allowed.
    bucket: Bucket,
}

impl Admission {
    /// An empty table counting connections in `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            table: Mutex::default(),
            stats,
        }
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr, policy: &Policy) -> Result<(), ByeReason> {
        let now = tokio::time::Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() > 4096 {
            // Forget addresses with nothing open whose bucket has refilled.
            table
                .retain(|_, p| p.open > 0 || p.bucket.available(now) < policy.per_ip_connect_burst);
        }
        let entry = table.entry(ip).or_insert_with(|| PerIp {
            open: 0,
            bucket: Bucket::new(policy.per_ip_connect_rate, policy.per_ip_connect_burst, now),
        });
        if entry.open >= policy.per_ip_connections {
            return Err(ByeReason::TooManyConnections);
        }
        if !entry.bucket.take(1.0, now) {
            return Err(ByeReason::ConnectRate);
        }
        entry.open += 1;
        Ok(())
    }

    /// Releases one connection of `ip`.
    pub fn release(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = table.get_mut(&ip) {
            p.open = p.open.saturating_sub(1);
        }
    }
}
