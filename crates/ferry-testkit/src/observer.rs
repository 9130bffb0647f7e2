//! An observer that records everything the engine tells it: each committed batch with the
//! run's view after it, each committed batch of a rollback, each note and notice. It
//! stands in for the notifier: the events it was told are the events "delivered".

use ferry_core::run::RunView;
use ferry_core::{Change, Event, RunId};
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
    rolled: Vec<Vec<Change>>,
    /// The events of every batch told (run batches and rollback batches), in order.
    events: Vec<Event>,
    notes: Vec<(RunId, String)>,
    notices: Vec<String>,
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

    /// Every committed batch of a rollback (`Observer::rolled`), in order.
    pub fn rolled_batches(&self) -> Vec<Vec<Change>> {
        self.lock().rolled.clone()
    }

    /// The events of every committed batch the observer was told of (a run's or a
    /// rollback's), in the order it was told: what a notifier would have delivered.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Every notice told outside a run (`rolling back staging to …`), in order.
    pub fn notices(&self) -> Vec<String> {
        self.lock().notices.clone()
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

fn events_of(changes: &[Change]) -> impl Iterator<Item = Event> + '_ {
    changes.iter().filter_map(|c| match c {
        Change::Event(e) => Some(e.clone()),
        _ => None,
    })
}

impl Observer for RecordingObserver {
    fn changed(&self, run: &RunView, changes: &[Change]) {
        let mut g = self.lock();
        g.events.extend(events_of(changes));
        g.batches.push(Observed {
            view: run.clone(),
            changes: changes.to_vec(),
        });
    }

    fn note(&self, run: &RunView, message: &str) {
        self.lock().notes.push((run.id, message.to_string()));
    }

    fn notice(&self, message: &str) {
        self.lock().notices.push(message.to_string());
    }

    fn rolled(&self, changes: &[Change]) {
        let mut g = self.lock();
        g.events.extend(events_of(changes));
        g.rolled.push(changes.to_vec());
    }
}
