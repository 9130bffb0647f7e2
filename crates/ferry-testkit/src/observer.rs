//! An observer that records everything the engine tells it: each committed batch with the
//! run's view after it, and each note.

use ferry_core::run::RunView;
use ferry_core::{Change, RunId};
use ferry_engine::ports::Observer;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One committed batch, as the observer heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub view: RunView,
    pub changes: Vec<Change>,
}

#[derive(Default)]
struct Inner {
    batches: Vec<Observed>,
    notes: Vec<(RunId, String)>,
}

/// An [`Observer`] that keeps everything. The engine calls `changed` only after a batch
/// was committed, so [`RecordingObserver::last_view`] is the run as last stored.
#[derive(Default)]
pub struct RecordingObserver {
    inner: Mutex<Inner>,
}

impl RecordingObserver {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every committed batch, in order.
    pub fn batches(&self) -> Vec<Observed> {
        self.lock().batches.clone()
    }

    /// Every note (`waiting for environment …`, `… retrying in 1.0s …`), in order.
    pub fn notes(&self) -> Vec<(RunId, String)> {
        self.lock().notes.clone()
    }

    /// The notes about one run.
    pub fn notes_of(&self, run: RunId) -> Vec<String> {
        self.notes()
            .into_iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, n)| n)
            .collect()
    }

    /// The view of `run` after its last committed batch.
    pub fn last_view(&self, run: RunId) -> Option<RunView> {
        self.lock()
            .batches
            .iter()
            .rev()
            .find(|b| b.view.id == run)
            .map(|b| b.view.clone())
    }
}

impl Observer for RecordingObserver {
    fn changed(&self, run: &RunView, changes: &[Change]) {
        self.lock().batches.push(Observed {
            view: run.clone(),
            changes: changes.to_vec(),
        });
    }

    fn note(&self, run: &RunView, message: &str) {
        self.lock().notes.push((run.id, message.to_string()));
    }
}
