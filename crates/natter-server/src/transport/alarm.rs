//! One clock for every connection's far deadlines.
//!
//! Most of what a connection waits for is far away and rarely comes: an IRC client's next
//! PING (two minutes of silence), the registration deadline, the idle timeout, the write
//! stall. A tokio timer per connection costs about 600 bytes while it is armed (the `Sleep`
//! and its entry in the timer wheel), which is more than everything else an idle IRC client
//! holds. So a connection whose next deadline is far away leaves its waker here instead, in
//! one ordered map served by one task: about 50 bytes per connection. Deadlines are rounded
//! up to [`TICK`], so a crowd's deadlines wake that task a few times a second at most.
//! Near deadlines (flood control's pauses, a congested client's stall) keep a precise timer.

use crate::client_id::ClientId;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::task::Waker;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// How finely far deadlines are kept.
pub const TICK: Duration = Duration::from_millis(100);

/// Deadlines at least this far away go to the shared clock rather than a timer of their own.
pub const FAR: Duration = Duration::from_secs(2);

/// Wakers waiting for their deadlines, in order.
#[derive(Debug)]
pub struct Alarms {
    /// By deadline and connection; a std mutex, held for one insert, removal or pop.
    set: Mutex<BTreeMap<(Instant, ClientId), Waker>>,
    /// Woken when a deadline earlier than every other is set.
    sooner: Notify,
    /// Where the ticks are counted from, so that deadlines near each other fall together.
    origin: Instant,
}

impl Default for Alarms {
    fn default() -> Self {
        Self {
            set: Mutex::default(),
            sooner: Notify::new(),
            origin: Instant::now(),
        }
    }
}

impl Alarms {
    /// `at`, rounded up to the clock's tick.
    pub fn round(&self, at: Instant) -> Instant {
        round(at, self.origin)
    }

    /// Wakes `waker` at `at` (already rounded), for connection `id`.
    pub fn set(&self, id: ClientId, at: Instant, waker: &Waker) {
        let mut set = self.lock();
        let sooner = set
            .first_key_value()
            .is_none_or(|((first, _), _)| at < *first);
        set.insert((at, id), waker.clone());
        drop(set);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// Forgets connection `id`'s alarm at `at`, if it has not gone off.
    pub fn cancel(&self, id: ClientId, at: Instant) {
        let removed = self.lock().remove(&(at, id));
        drop(removed);
    }

    /// Wakes every connection whose deadline has come, until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            let next = self.lock().first_key_value().map(|((at, _), _)| *at);
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.sooner.notified() => continue,
                () = async {
                    match next {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            let now = Instant::now();
            let due = {
                let mut set = self.lock();
                let later = set.split_off(&(now, ClientId::MAX));
                std::mem::replace(&mut *set, later)
            };
            // Woken outside the lock, so a woken connection never finds it held.
            for (_, waker) in due {
                waker.wake();
            }
        }
    }

    /// How many alarms are set, for tests.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no alarm is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Instant, ClientId), Waker>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `at`, rounded up to a whole number of ticks after `origin`.
fn round(at: Instant, origin: Instant) -> Instant {
    let since = at.saturating_duration_since(origin).as_nanos();
    let tick = TICK.as_nanos();
    let up = since.div_ceil(tick) * tick;
    origin + Duration::from_nanos(u64::try_from(up).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn deadlines_round_up_to_the_tick() {
        let o = Instant::now();
        assert_eq!(round(o, o), o);
        assert_eq!(round(o + Duration::from_millis(1), o), o + TICK);
        assert_eq!(round(o + TICK, o), o + TICK);
        assert_eq!(round(o + TICK * 3 / 2, o), o + 2 * TICK);
    }

    #[tokio::test(start_paused = true)]
    async fn alarms_go_off_at_their_deadline_and_cancelled_ones_do_not() {
        let alarms = Arc::new(Alarms::default());
        let stop = CancellationToken::new();
        tokio::spawn({
            let (a, s) = (alarms.clone(), stop.clone());
            async move { a.run(s).await }
        });
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let t0 = Instant::now();
        alarms.set(1, t0 + Duration::from_secs(5), &waker);
        alarms.set(2, t0 + Duration::from_secs(3), &waker);
        alarms.set(3, t0 + Duration::from_secs(4), &waker);
        alarms.cancel(3, t0 + Duration::from_secs(4));
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(alarms.is_empty());
        stop.cancel();
    }
}
