//! Counting what receivers got: deliveries, losses, duplicates, reordering, and latencies.
//!
//! Each receiver keeps one [`Stream`] per sender it expects messages from. A stream remembers
//! the next sequence number it expects and, bounded, which earlier numbers are still missing,
//! so a late arrival of a missing message counts as reordered while a second copy of a message
//! already seen counts as a duplicate. Losses are what is still missing at the end: the number
//! sent times the number of receivers, less the distinct messages received.
//!
//! Latencies go into [`Latencies`], a few hdrhistogram shards behind std mutexes: each
//! connection task locks one shard once per read (not once per line), so two worker threads
//! rarely meet on a lock.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// How many missing sequence numbers one stream remembers; past that, gaps still count as
/// losses but a late arrival of one of the forgotten numbers counts as a duplicate.
const MAX_MISSING: usize = 4096;

/// What became of one received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one expected.
    InOrder,
    /// Later than expected: the ones between are missing for now.
    Gap,
    /// An earlier missing one arriving late.
    Reordered,
    /// A copy of one already received.
    Duplicate,
}

/// One sender's messages as seen by one receiver.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// The lowest sequence number not received yet, with everything below it either received
    /// or in `missing`.
    next: u64,
    /// Numbers below `next` not received yet (bounded by [`MAX_MISSING`]).
    missing: BTreeSet<u64>,
    /// Distinct messages received.
    unique: u64,
    /// Copies of messages already received.
    duplicates: u64,
    /// Messages that arrived after a later one from the same sender.
    reordered: u64,
    /// Times a message arrived with a higher number than the next expected.
    gaps: u64,
}

impl Stream {
    /// Accounts for the message numbered `seq`.
    pub fn see(&mut self, seq: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
            Seen::InOrder
        } else if seq > self.next {
            let room = MAX_MISSING.saturating_sub(self.missing.len()) as u64;
            let first_kept = seq.saturating_sub(room).max(self.next);
            self.missing.extend(first_kept..seq);
            self.next = seq + 1;
            self.unique += 1;
            self.gaps += 1;
            Seen::Gap
        } else if self.missing.remove(&seq) {
            self.unique += 1;
            self.reordered += 1;
            Seen::Reordered
        } else {
            self.duplicates += 1;
            Seen::Duplicate
        }
    }

    /// How many messages from the start have all arrived: the window's measure of progress.
    pub fn contiguous(&self) -> u64 {
        self.missing.first().copied().unwrap_or(self.next)
    }

    /// Distinct messages received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Adds this stream's counts to `t`.
    pub fn add_to(&self, t: &mut Tally) {
        t.unique += self.unique;
        t.duplicates += self.duplicates;
        t.reordered += self.reordered;
        t.gaps += self.gaps;
    }
}

/// Counts summed over streams and receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Distinct messages received.
    pub unique: u64,
    /// Copies of messages already received.
    pub duplicates: u64,
    /// Messages received after a later message of the same sender.
    pub reordered: u64,
    /// Times a receiver saw a sender skip ahead (a loss or a reordering).
    pub gaps: u64,
}

impl Tally {
    /// Adds another tally.
    pub fn merge(&mut self, o: &Tally) {
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.gaps += o.gaps;
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// A latency histogram over nanoseconds, from 1 ns to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of `h` in microseconds.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |ns: u64| ns as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: us(h.value_at_quantile(0.50)),
        p90_us: us(h.value_at_quantile(0.90)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1000.0,
    }
}

/// Latency samples shared by many connection tasks, in a few locked shards.
#[derive(Debug)]
pub struct Latencies {
    /// The shards; a connection uses the one its index picks.
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    /// Latencies with `n` shards (at least one).
    pub fn new(n: usize) -> Self {
        Self {
            shards: (0..n.max(1)).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// The shard for connection `conn`, locked: record a whole read's samples with one lock.
    pub fn shard(&self, conn: usize) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        let m = &self.shards[conn % self.shards.len()];
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one sample.
    pub fn record(&self, conn: usize, ns: u64) {
        self.shard(conn).saturating_record(ns.max(1));
    }

    /// Every shard merged; with `reset`, the shards are emptied (for time series).
    pub fn merged(&self, reset: bool) -> Histogram<u64> {
        let mut all = new_histogram();
        for m in &self.shards {
            let mut h = m.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).expect("same bounds");
            if reset {
                h.reset();
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> (Stream, Vec<Seen>) {
        let mut s = Stream::default();
        let seen = seqs.iter().map(|&q| s.see(q)).collect();
        (s, seen)
    }

    fn tally(s: &Stream) -> Tally {
        let mut t = Tally::default();
        s.add_to(&mut t);
        t
    }

    #[test]
    fn in_order_stream_is_clean() {
        let (s, seen) = run(&(0..1000).collect::<Vec<_>>());
        assert!(seen.iter().all(|&x| x == Seen::InOrder));
        assert_eq!(
            tally(&s),
            Tally {
                unique: 1000,
                ..Tally::default()
            }
        );
        assert_eq!(s.contiguous(), 1000);
    }

    #[test]
    fn duplicates_are_detected() {
        let (s, seen) = run(&[0, 1, 1, 2, 0, 3]);
        assert_eq!(seen[2], Seen::Duplicate);
        assert_eq!(seen[4], Seen::Duplicate);
        let t = tally(&s);
        assert_eq!((t.unique, t.duplicates, t.reordered), (4, 2, 0));
    }

    #[test]
    fn reordering_is_told_apart_from_loss_and_duplication() {
        let (s, seen) = run(&[0, 2, 1, 3, 5, 5]);
        assert_eq!(seen[1], Seen::Gap);
        assert_eq!(seen[2], Seen::Reordered);
        assert_eq!(seen[5], Seen::Duplicate);
        let t = tally(&s);
        assert_eq!((t.unique, t.duplicates, t.reordered, t.gaps), (5, 1, 1, 2));
        // 4 never came: progress stops before it, and 6 sent - 5 unique = 1 lost.
        assert_eq!(s.contiguous(), 4);
    }

    #[test]
    fn long_gaps_stay_bounded_in_memory() {
        let (s, _) = run(&[0, 1_000_000, 999_999]);
        assert!(s.missing.len() <= MAX_MISSING);
        assert_eq!(s.unique(), 3);
        assert_eq!(tally(&s).reordered, 1);
    }

    #[test]
    fn latencies_merge_and_reset() {
        let l = Latencies::new(4);
        for i in 0..100u64 {
            l.record(i as usize, (i + 1) * 1000);
        }
        let p = percentiles(&l.merged(true));
        assert_eq!(p.count, 100);
        assert!((p.p50_us - 50.0).abs() < 1.0, "{p:?}");
        assert!((p.max_us - 100.0).abs() < 0.2, "{p:?}");
        assert_eq!(l.merged(false).len(), 0);
    }
}
