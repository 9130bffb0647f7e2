//! The gate before a deployment: deployment windows, freezes and break-glass overrides
//! (`ferry_core::window`). A run that reaches a closed gate is held, not failed: it
//! records why and until when (`run_held`), holds no environment lease while it waits
//! (rollbacks and other runs go on), looks again on the injected clock, and goes on by
//! itself when the window opens, the freeze ends or is lifted, or a second person
//! confirms a break-glass override (`window_opened`). Cancelling still stops it.

use super::Engine;
use crate::ports::PortResult;
use ferry_core::run::Run;
use ferry_core::window::{self, Cause, Gate};
use ferry_core::{Change, Timestamp};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Engine<'_> {
    /// The gate of `env` for `run` at `now`, from the store's freezes and overrides.
    fn gate_at(&self, run: &Run, env: &str, now: Timestamp) -> PortResult<Gate> {
        let store = self.ports.store;
        let windows = self
            .pipeline
            .environment(env)
            .and_then(|e| e.windows.as_ref());
        let freezes = self.retry_in(Some(&run.view), || store.freezes(Some(env), now))?;
        let overrides: Vec<_> = self
            .retry_in(Some(&run.view), || store.overrides(run.id()))?
            .into_iter()
            .filter(|o| o.environment == env)
            .collect();
        Ok(window::gate(windows, &freezes, &overrides, now))
    }

    /// Whether the gate of `env` is open for `run` now.
    pub(super) fn gate_open(&self, run: &Run, env: &str) -> PortResult<bool> {
        Ok(self.gate_at(run, env, self.ports.clock.now())?.is_open())
    }

    /// Waits until `run` may deploy into `env`. Returns at once when the gate is open or
    /// the run is cancelled (the caller checks the cancel flag).
    pub(super) fn hold_for_window(&self, run: &Run, env: &str) -> PortResult<()> {
        let clock = self.ports.clock;
        let windows = self
            .pipeline
            .environment(env)
            .and_then(|e| e.windows.as_ref());
        let mut held: Option<(Cause, String)> = None;
        loop {
            let now = clock.now();
            match self.gate_at(run, env, now)? {
                Gate::Open { override_by } => {
                    if let Some((cause, _)) = held {
                        let how = match (override_by, cause) {
                            (Some(by), _) => format!("break-glass override confirmed by {by}"),
                            (None, Cause::Freeze) if !window::open_at(windows, &[], now) => {
                                "the freeze is over and the deployment window is open".to_string()
                            }
                            (None, Cause::Freeze) => "the freeze is over".to_string(),
                            (None, Cause::Window) => "the deployment window opened".to_string(),
                        };
                        let e = window::opened_event(run.id(), env, &how, now);
                        self.ports.observer.note(&run.view, &e.message);
                        self.commit(run, vec![Change::Event(e)])?;
                    }
                    return Ok(());
                }
                Gate::Closed {
                    cause,
                    reason,
                    opens_at,
                } => {
                    if held.as_ref() != Some(&(cause, reason.clone())) {
                        let e = window::held_event(run.id(), env, cause, &reason, opens_at, now);
                        self.ports.observer.note(&run.view, &e.message);
                        self.commit(run, vec![Change::Event(e)])?;
                        held = Some((cause, reason));
                    }
                    if self.cancel.load(Ordering::SeqCst) || self.parking() {
                        return Ok(());
                    }
                    let poll = self.settings.hold_poll;
                    let wait = opens_at.map_or(poll, |t| t.since(now).min(poll));
                    clock.sleep(wait.max(Duration::from_millis(1)));
                }
            }
        }
    }
}
