//! The dashboard's reads: pages of deployments and runs (keyset cursors) and the DORA
//! samples, against the plain newest-first reads.

use crate::support::{self, Choice, T0, drive_from, store};
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::Store;

#[test]
fn pages_of_deployments_and_runs_cover_everything_once_in_order() {
    let (_d, store) = store();
    for k in 0..7 {
        drive_from(
            &store,
            support::TWO_ENVIRONMENTS,
            &[Choice::pass()],
            Timestamp(T0.0 + k * 10_000_000),
        );
    }
    for env in [None, Some("test"), Some("production")] {
        let all = store.deployments(env, 1000).unwrap();
        assert!(all.len() >= 7, "{env:?}: {}", all.len());
        let mut paged = Vec::new();
        let mut cursor: Option<(i64, String)> = None;
        loop {
            let page = store
                .deployments_before(env, cursor.as_ref().map(|(t, id)| (*t, id.as_str())), 3)
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some((last.start_time, last.deployment_id.clone()));
            paged.extend(page);
        }
        assert_eq!(paged, all, "{env:?}");
    }
    let all = store.list_runs(1000, false).unwrap();
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut before: Option<RunId> = None;
    loop {
        let page = store.runs_before(before, 2).unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // The DORA samples: one per deployment since the instant, in start order, each with
    // its run's queueing time.
    let deps = store.deployments(Some("production"), 1000).unwrap();
    let since = Timestamp(deps[2].start_time);
    let samples = store.dora_samples("production", since).unwrap();
    assert_eq!(samples.len(), 3);
    assert!(samples.windows(2).all(|w| w[0].start <= w[1].start));
    for s in &samples {
        assert!(s.queued <= s.start, "{s:?}");
        assert!(s.rollback.is_none());
    }
    assert!(
        store
            .dora_samples("nowhere", Timestamp(0))
            .unwrap()
            .is_empty()
    );
}
