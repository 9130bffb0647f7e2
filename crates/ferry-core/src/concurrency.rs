//! Several runs, one environment: CodePipeline V2's execution modes (DESIGN invariant 2).
//!
//! The lease in the store makes deployments into one environment one at a time; this
//! module decides, for a run about to enter an environment, whether it may go in, must
//! wait, or is overtaken by a newer run (`superseded` mode). The engine asks again every
//! time it polls while it waits, with what the store says about the other runs.

use crate::model::{RunId, RunStatus};
use crate::run::RunView;
pub use ferry_config::ExecutionMode;

/// Where another run is, as far as entering environments goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contender {
    pub run: RunId,
    pub status: RunStatus,
    /// The index of the first stage that has not ended: the stage the run is in or waits
    /// for. The number of stages when every stage has ended.
    pub at: usize,
}

impl Contender {
    /// A run's position, read from its stored view, as an index into `order`: the
    /// pipeline's whole stage order (`build`, then every environment). A run that skips
    /// stages (a hotfix goes from build straight to the last environment) is placed by
    /// the name of the stage it is at, so runs with different plans compare right. A run
    /// whose every stage has ended is at `order.len()`.
    pub fn of(view: &RunView, order: &[String]) -> Contender {
        let at = view
            .stages
            .iter()
            .find(|s| !s.status.is_terminal())
            .map_or(order.len(), |s| {
                order
                    .iter()
                    .position(|o| *o == s.name)
                    .unwrap_or(order.len())
            });
        Contender {
            run: view.id,
            status: view.status,
            at,
        }
    }

    /// Whether this run is at stage `stage` or past it, counting a run that succeeded as
    /// past every stage. A run that failed or was cancelled counts as nowhere: it will
    /// not bring its version anywhere.
    fn reached(&self, stage: usize) -> bool {
        match self.status {
            RunStatus::Succeeded => true,
            s if s.is_terminal() => false,
            _ => self.at >= stage,
        }
    }
}

/// What a run about to enter an environment does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Go in (take the environment's lease; wait for it while another run holds it).
    Enter,
    /// Wait: an older run must enter this environment first (`queued` mode).
    Wait { behind: RunId },
    /// End `superseded`: this newer run is waiting for or has reached this environment
    /// or a later one (`superseded` mode).
    Supersede { by: RunId },
}

/// The decision for run `me` about to enter the environment at position `stage` of the
/// pipeline's whole stage order, given the other runs of the pipeline placed in that
/// same order ([`Contender::of`]; `me` itself may be among them; it is ignored).
///
/// - `superseded`: if a newer run is in this stage or a later one (or succeeded), `me`
///   is superseded by the newest such run; otherwise it enters.
/// - `queued`: if an older run that has not ended is before or in this stage, `me`
///   waits behind the oldest such run; otherwise it enters. Nobody is superseded.
pub fn entry(mode: ExecutionMode, me: RunId, stage: usize, others: &[Contender]) -> Entry {
    match mode {
        ExecutionMode::Superseded => others
            .iter()
            .filter(|o| o.run > me && o.reached(stage))
            .map(|o| o.run)
            .max()
            .map_or(Entry::Enter, |by| Entry::Supersede { by }),
        ExecutionMode::Queued => others
            .iter()
            .filter(|o| o.run < me && !o.status.is_terminal() && o.at <= stage)
            .map(|o| o.run)
            .min()
            .map_or(Entry::Enter, |behind| Entry::Wait { behind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(run: i64, status: RunStatus, at: usize) -> Contender {
        Contender {
            run: RunId(run),
            status,
            at,
        }
    }

    #[test]
    fn superseded_by_the_newest_run_at_or_past_the_stage() {
        let others = [
            c(3, RunStatus::Running, 0),
            c(4, RunStatus::Running, 2),
            c(5, RunStatus::Running, 1),
            c(6, RunStatus::Failed, 3),
        ];
        assert_eq!(
            entry(ExecutionMode::Superseded, RunId(2), 1, &others),
            Entry::Supersede { by: RunId(5) }
        );
        // Nobody newer is at staging yet except run 4.
        assert_eq!(
            entry(ExecutionMode::Superseded, RunId(2), 2, &others),
            Entry::Supersede { by: RunId(4) }
        );
        // A newer run still building does not overtake.
        assert_eq!(
            entry(ExecutionMode::Superseded, RunId(2), 3, &others[..1]),
            Entry::Enter
        );
        // A newer run that failed does not overtake; one that succeeded does.
        assert_eq!(
            entry(ExecutionMode::Superseded, RunId(5), 3, &others),
            Entry::Enter
        );
        assert_eq!(
            entry(
                ExecutionMode::Superseded,
                RunId(5),
                3,
                &[c(9, RunStatus::Succeeded, 4)]
            ),
            Entry::Supersede { by: RunId(9) }
        );
    }

    #[test]
    fn queued_waits_for_every_older_run_before_or_in_the_stage() {
        let others = [
            c(1, RunStatus::Succeeded, 4),
            c(2, RunStatus::AwaitingApproval, 3),
            c(3, RunStatus::Running, 1),
            c(7, RunStatus::Running, 0),
        ];
        assert_eq!(
            entry(ExecutionMode::Queued, RunId(4), 1, &others),
            Entry::Wait { behind: RunId(3) }
        );
        assert_eq!(
            entry(ExecutionMode::Queued, RunId(4), 3, &others),
            Entry::Wait { behind: RunId(2) }
        );
        assert_eq!(
            entry(ExecutionMode::Queued, RunId(3), 1, &others),
            Entry::Enter
        );
    }

    fn status() -> impl Strategy<Value = RunStatus> {
        prop::sample::select(RunStatus::ALL.to_vec())
    }

    proptest! {
        /// Queued mode supersedes nobody; superseded mode never makes a run wait, and
        /// only a newer run supersedes.
        #[test]
        fn modes_keep_their_promise(
            me in 0i64..20,
            stage in 0usize..5,
            others in prop::collection::vec((0i64..20, status(), 0usize..6), 0..12),
        ) {
            let others: Vec<Contender> =
                others.into_iter().map(|(r, s, a)| c(r, s, a)).collect();
            let q = entry(ExecutionMode::Queued, RunId(me), stage, &others);
            prop_assert!(!matches!(q, Entry::Supersede { .. }), "queued mode superseded: {:?}", q);
            if let Entry::Wait { behind } = q {
                prop_assert!(behind < RunId(me));
            }
            let s = entry(ExecutionMode::Superseded, RunId(me), stage, &others);
            prop_assert!(!matches!(s, Entry::Wait { .. }), "superseded mode waited: {:?}", s);
            if let Entry::Supersede { by } = s {
                prop_assert!(by > RunId(me));
            }
            // The newest live run of all is never superseded, and the oldest never waits.
            let all_ids = others.iter().map(|o| o.run).chain([RunId(me)]);
            if all_ids.clone().max() == Some(RunId(me)) {
                prop_assert_eq!(s, Entry::Enter);
            }
            if all_ids.min() == Some(RunId(me)) {
                prop_assert_eq!(q, Entry::Enter);
            }
        }
    }
}
