//! A fake [`Liveness`]: which holders (`host:pid`) are known to be gone is said by the
//! test, as if their processes had been killed.

use ferry_engine::ports::Liveness;
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A [`Liveness`] that knows only what it is told: holders marked with
/// [`FakeLiveness::kill`] are gone (`Some(false)`), those marked with
/// [`FakeLiveness::revive`] alive (`Some(true)`), every other one cannot be told
/// (`None`, as for a process on another host).
#[derive(Default)]
pub struct FakeLiveness {
    inner: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
}

impl FakeLiveness {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, (BTreeSet<String>, BTreeSet<String>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `holder` is known to be gone from now on.
    pub fn kill(&self, holder: &str) {
        let mut g = self.lock();
        g.1.remove(holder);
        g.0.insert(holder.to_string());
    }

    /// `holder` is known to be alive from now on.
    pub fn revive(&self, holder: &str) {
        let mut g = self.lock();
        g.0.remove(holder);
        g.1.insert(holder.to_string());
    }
}

impl Liveness for FakeLiveness {
    fn alive(&self, holder: &str) -> Option<bool> {
        let g = self.lock();
        if g.0.contains(holder) {
            Some(false)
        } else if g.1.contains(holder) {
            Some(true)
        } else {
            None
        }
    }
}
