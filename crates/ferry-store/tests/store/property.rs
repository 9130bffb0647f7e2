//! Property 6 (seed §12): the store always reflects the run's real state. Random runs of
//! the real core — steps passing and failing, coverage above and below the gate, tests
//! failing, approvals granted, rejected and timed out, aborts before and during steps —
//! with every batch applied to the store and, after each one, the stored run equal to the
//! core's view and the stored deployments agreeing with the stages.

use crate::support::{self, Choice, Verdict, drive};
use ferry_core::{DeploymentStatus, RunStatus, StageStatus};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::Store;
use proptest::prelude::*;

fn choice() -> impl Strategy<Value = Choice> {
    (
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.03),
        prop::bool::weighted(0.04),
        prop_oneof![3 => 80.0f64..100.0, 1 => 50.0f64..80.0],
        prop_oneof![6 => Just(0u64), 1 => 1u64..4],
        prop_oneof![
            Just(Verdict::Approve),
            Just(Verdict::Reject),
            Just(Verdict::TimeOut)
        ],
        1i64..20_000,
    )
        .prop_map(
            |(pass, abort_before, abort_during, coverage, failed_tests, approval, dt)| Choice {
                pass,
                abort_before,
                abort_during,
                coverage,
                failed_tests,
                approval,
                dt,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_store_always_reflects_the_runs_real_state(
        three in any::<bool>(),
        choices in prop::collection::vec(choice(), 1..24),
    ) {
        let (_d, store) = support::store();
        let yaml = if three { support::THREE_ENVIRONMENTS } else { support::TWO_ENVIRONMENTS };
        // `drive` checks Property 6 and the deployments after every batch.
        let run = drive(&store, yaml, &choices);

        let view = store.load_run(run.id()).unwrap();
        prop_assert!(view.status.is_terminal());
        let deployments = store.deployments(None, 100).unwrap();
        prop_assert!(deployments.iter().all(|d| d.status != DeploymentStatus::InProgress));
        for (si, stage) in view.stages.iter().enumerate() {
            if !run.is_environment(si) {
                continue;
            }
            let mine: Vec<_> = deployments.iter().filter(|d| d.environment == stage.name).collect();
            match stage.status {
                StageStatus::Succeeded => {
                    prop_assert_eq!(mine.len(), 1);
                    prop_assert_eq!(mine[0].status, DeploymentStatus::Succeeded);
                }
                StageStatus::Failed => prop_assert!(mine.iter().all(|d| d.status == DeploymentStatus::Failed)),
                _ => prop_assert!(mine.is_empty()),
            }
        }
        if view.status == RunStatus::Succeeded {
            prop_assert!(view.stages.iter().all(|s| s.status == StageStatus::Succeeded));
        }
        prop_assert_eq!(store.list_runs(10, true).unwrap(), Vec::new());
    }
}
