//! A fake clock: time stands still until someone sleeps, and a logical tick counter that
//! orders things which happen at the same fake instant.

use ferry_core::Timestamp;
use ferry_engine::ports::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Where every [`FakeClock`] starts: 2026-01-27T10:00:00Z.
pub const START: Timestamp = Timestamp(1_769_508_000_000);

/// Something to run whenever fake time moves, with the new time: a scripted approver, a
/// cancel at a given instant, a probe of the store in the middle of a run.
pub type Hook = Arc<dyn Fn(Timestamp) + Send + Sync>;

/// A clock whose time only moves when someone sleeps on it (`sleep(d)` adds `d` and
/// returns at once) or calls [`FakeClock::advance`]. Shared by every fake of a
/// simulation, so a step that "takes" 3 s, a retry that waits 1 s and a monitor window of
/// 20 s all pass in microseconds and always at the same fake instants.
///
/// Hooks registered with [`FakeClock::on_advance`] run after every move, on the thread
/// that moved the clock, with no lock of the clock held (they may read it).
pub struct FakeClock {
    now: Mutex<Timestamp>,
    hooks: Mutex<Vec<Hook>>,
    slept: Mutex<Vec<Duration>>,
    pace: Mutex<Option<u32>>,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    /// A clock at [`START`].
    pub fn new() -> Self {
        Self::starting_at(START)
    }

    /// A clock at `t`.
    pub fn starting_at(t: Timestamp) -> Self {
        FakeClock {
            now: Mutex::new(t),
            hooks: Mutex::new(Vec::new()),
            slept: Mutex::new(Vec::new()),
            pace: Mutex::new(None),
        }
    }

    /// Moves time forward by `d` and runs the hooks.
    pub fn advance(&self, d: Duration) {
        let now = {
            let mut g = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *g = g.plus(d);
            *g
        };
        let hooks: Vec<Hook> = self
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for h in hooks {
            h(now);
        }
    }

    /// Registers `hook`, run after every move of the clock from now on.
    pub fn on_advance(&self, hook: impl Fn(Timestamp) + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(hook));
    }

    /// Runs `f` once, the first time the clock reaches `at` or later (at once if it
    /// already has, the next time it moves).
    pub fn at(&self, at: Timestamp, f: impl Fn() + Send + Sync + 'static) {
        let done = std::sync::atomic::AtomicBool::new(false);
        self.on_advance(move |now| {
            if now >= at && !done.swap(true, Ordering::SeqCst) {
                f();
            }
        });
    }

    /// Makes every `sleep(d)` also wait `d / speedup` of real time (`None`: not at all,
    /// the default). Runs driven on several threads then interleave roughly as they
    /// would in real time, instead of one racing through its fake hours before the other
    /// has started.
    pub fn pace(&self, speedup: Option<u32>) {
        *self.pace.lock().unwrap_or_else(PoisonError::into_inner) = speedup;
    }

    /// Every `sleep` asked of this clock, in order (retry waits, polls, monitor waits).
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fake time elapsed since `from`.
    pub fn elapsed_since(&self, from: Timestamp) -> Duration {
        self.now().since(from)
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep(&self, d: Duration) {
        self.slept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d);
        self.advance(d);
        // Lets another simulated run (on another thread) make progress, as a real sleep
        // would.
        match *self.pace.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(speedup) if speedup > 0 => std::thread::sleep(d / speedup),
            _ => std::thread::yield_now(),
        }
    }
}

/// A global, strictly increasing sequence number shared by the store and the deployers
/// of a simulation: it orders "the intent was committed" before "the deployer was
/// called" even when both happen at the same fake millisecond.
#[derive(Debug, Default)]
pub struct Ticks(AtomicU64);

impl Ticks {
    pub fn new() -> Self {
        Ticks(AtomicU64::new(0))
    }

    /// The next tick (the first is 1).
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The last tick handed out (0 before the first).
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn time_moves_only_when_someone_sleeps() {
        let c = FakeClock::new();
        assert_eq!(c.now(), START);
        assert_eq!(c.now(), START);
        c.sleep(Duration::from_secs(2));
        assert_eq!(c.now(), START.plus(Duration::from_secs(2)));
        c.advance(Duration::from_millis(5));
        assert_eq!(c.elapsed_since(START), Duration::from_millis(2005));
        assert_eq!(c.sleeps(), vec![Duration::from_secs(2)]);
    }

    #[test]
    fn at_runs_once_when_the_instant_is_reached() {
        let c = FakeClock::new();
        let n = Arc::new(AtomicU32::new(0));
        let seen = n.clone();
        c.at(START.plus(Duration::from_secs(3)), move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        c.sleep(Duration::from_secs(2));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        c.sleep(Duration::from_secs(2));
        c.sleep(Duration::from_secs(2));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn ticks_increase() {
        let t = Ticks::new();
        assert_eq!(t.current(), 0);
        assert_eq!(t.next(), 1);
        assert_eq!(t.next(), 2);
        assert_eq!(t.current(), 2);
    }
}
