//! Flood control: token buckets on a client's commands and bytes.
//!
//! A client may send a burst, then a steady rate; beyond that its lines wait (unread, so the
//! kernel's buffers push back on the sender) until tokens come back. Nobody else waits: each
//! client's bucket is its own. A client that stays over its rate for longer than a grace
//! period is told and disconnected.

use std::time::Duration;
use tokio::time::Instant;

/// The limits of flood control.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodLimits {
    /// Commands per second, sustained.
    pub commands_per_sec: f64,
    /// Commands that may come at once.
    pub command_burst: f64,
    /// Bytes per second, sustained.
    pub bytes_per_sec: f64,
    /// Bytes that may come at once.
    pub byte_burst: f64,
    /// How long a client may stay throttled before it is disconnected.
    pub grace: Duration,
}

impl Default for FloodLimits {
    fn default() -> Self {
        // Far above what anyone types or pastes; far below what a script can send.
        Self {
            commands_per_sec: 20.0,
            command_burst: 60.0,
            bytes_per_sec: 64.0 * 1024.0,
            byte_burst: 256.0 * 1024.0,
            grace: Duration::from_secs(10),
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Tokens now (may not exceed `burst`).
    tokens: f64,
    /// Tokens added per second.
    rate: f64,
    /// Most tokens held.
    burst: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    /// Tokens available now.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Spends `n` tokens, going into debt if need be.
    pub fn spend(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n;
    }

    /// When `n` tokens will be available.
    pub fn ready_at(&self, n: f64) -> Instant {
        if self.tokens >= n {
            return self.at;
        }
        self.at + Duration::from_secs_f64((n - self.tokens) / self.rate)
    }
}

/// One client's flood control.
#[derive(Debug)]
pub struct Throttle {
    /// Commands.
    commands: Bucket,
    /// Bytes read.
    bytes: Bucket,
    /// How long throttling may last before the client is dropped.
    grace: Duration,
    /// Since when the client has been throttled without a break.
    since: Option<Instant>,
    /// Whether the last read found the socket empty: the client is not sending faster than
    /// it is read.
    drained: bool,
}

/// Bytes a read must be allowed before it is worth doing.
const MIN_READ: f64 = 512.0;

impl Throttle {
    /// Flood control with `limits`, starting with full buckets.
    pub fn new(limits: &FloodLimits, now: Instant) -> Self {
        Self {
            commands: Bucket::new(limits.commands_per_sec, limits.command_burst, now),
            bytes: Bucket::new(limits.bytes_per_sec, limits.byte_burst, now),
            grace: limits.grace,
            since: None,
            drained: false,
        }
    }

    /// Takes a command token, or notes that the client is being held back.
    pub fn command(&mut self, now: Instant) -> bool {
        if self.commands.take(1.0, now) {
            true
        } else {
            self.since.get_or_insert(now);
            false
        }
    }

    /// Counts `n` more commands, in debt if need be: a line that stands for several (a
    /// multi-line message) is no way around the rate.
    pub fn extra_commands(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.commands.spend(n as f64, now);
        }
    }

    /// Whether a command token is available, without taking it.
    pub fn command_ready(&mut self, now: Instant) -> bool {
        self.commands.available(now) >= 1.0
    }

    /// How many bytes may be read now (0: wait).
    pub fn read_allowance(&mut self, now: Instant) -> usize {
        let a = self.bytes.available(now);
        if a < MIN_READ {
            self.since.get_or_insert(now);
            0
        } else {
            a as usize
        }
    }

    /// Records bytes read.
    pub fn read(&mut self, n: usize, now: Instant) {
        self.bytes.spend(n as f64, now);
        self.drained = false;
    }

    /// A read found the socket empty; the client is relieved unless lines it sent earlier
    /// are still held back (`backlog`).
    ///
    /// Relief comes only from here and [`Throttle::backlog_cleared`], never from having
    /// used up what a read returned: a client sending without pause always has more waiting,
    /// so it stays held back until its grace runs out.
    pub fn socket_empty(&mut self, backlog: bool) {
        self.drained = true;
        if !backlog {
            self.since = None;
        }
    }

    /// The lines held back are all handled; the client is relieved if its socket was found
    /// empty since its last read.
    pub fn backlog_cleared(&mut self) {
        if self.drained {
            self.since = None;
        }
    }

    /// The client is no longer held back.
    pub fn relieved(&mut self) {
        self.since = None;
    }

    /// Whether the client has been held back for longer than the grace period.
    pub fn flooding(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= self.grace)
    }

    /// When a held-back client can next go on: a command token and a worthwhile read.
    pub fn ready_at(&self) -> Instant {
        // A millisecond late (the timer's resolution): waking at the exact instant can find
        // the bucket a rounding error short, and the connection would spin until it is not.
        self.commands
            .ready_at(1.0)
            .max(self.bytes.ready_at(MIN_READ))
            + Duration::from_millis(1)
    }

    /// When the grace period of a held-back client ends.
    pub fn grace_ends(&self) -> Option<Instant> {
        self.since.map(|s| s + self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3.0, t0);
        assert!(b.take(1.0, t0) && b.take(1.0, t0) && b.take(1.0, t0));
        assert!(!b.take(1.0, t0));
        assert_eq!(b.ready_at(1.0), t0 + Duration::from_millis(100));
        assert!(b.take(1.0, t0 + Duration::from_millis(100)));
        // Never more than the burst, however long the wait.
        assert_eq!(b.available(t0 + Duration::from_secs(100)), 3.0);
    }

    #[test]
    fn throttle_tracks_how_long_a_client_is_held_back() {
        let t0 = Instant::now();
        let limits = FloodLimits {
            commands_per_sec: 1.0,
            command_burst: 1.0,
            grace: Duration::from_secs(5),
            ..FloodLimits::default()
        };
        let mut t = Throttle::new(&limits, t0);
        assert!(t.command(t0));
        assert!(!t.command(t0));
        assert!(!t.flooding(t0 + Duration::from_millis(4999)));
        assert!(t.flooding(t0 + Duration::from_secs(5)));
        t.relieved();
        assert!(!t.flooding(t0 + Duration::from_secs(6)));
        // A line that stands for three commands leaves two to be earned back.
        let t6 = t0 + Duration::from_secs(6);
        assert!(t.command(t6));
        t.extra_commands(2, t6);
        assert!(!t.command_ready(t6 + Duration::from_millis(2900)));
        assert!(t.command_ready(t6 + Duration::from_millis(3100)));
    }

    #[test]
    fn only_an_empty_socket_without_backlog_relieves() {
        let t0 = Instant::now();
        let limits = FloodLimits {
            bytes_per_sec: 1000.0,
            byte_burst: 1000.0,
            grace: Duration::from_secs(5),
            ..FloodLimits::default()
        };
        let mut t = Throttle::new(&limits, t0);
        t.read(1000, t0);
        assert_eq!(t.read_allowance(t0), 0);
        let late = t0 + Duration::from_secs(5);
        // Lines still held back: an empty socket is not enough.
        t.socket_empty(true);
        assert!(t.flooding(late));
        // Read again since: clearing the backlog is not enough either.
        t.read(10, t0);
        t.backlog_cleared();
        assert!(t.flooding(late));
        // Socket found empty, backlog cleared: relieved.
        t.socket_empty(true);
        t.backlog_cleared();
        assert!(!t.flooding(late));
        assert_eq!(t.read_allowance(t0), 0);
        assert!(t.flooding(late));
        t.socket_empty(false);
        assert!(!t.flooding(late));
    }
}
