//! The MemoryStore's dashboard reads (`deployments_before`, `runs_before`,
//! `dora_samples`) agree with its plain newest-first reads, as the SQLite store's do
//! (`ferry-store/tests/store/pages.rs`).

#![allow(clippy::unwrap_used)]

use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::Store;
use ferry_testkit::Sim;
use ferry_testkit::pipelines::TINY;
use std::time::Duration;

#[test]
fn pages_and_samples_match_the_plain_reads() {
    let sim = Sim::new(TINY);
    for env in ["test", "production"] {
        sim.deployer(env).taking(Duration::from_secs(3));
    }
    for k in 0..5 {
        let v = sim.run(&format!("{k:040x}"));
        assert!(v.status.is_terminal());
    }
    let store = &*sim.store;
    for env in [None, Some("test"), Some("production")] {
        let all = store.deployments(env, 1000).unwrap();
        assert!(!all.is_empty());
        let mut paged = Vec::new();
        let mut cursor: Option<(i64, String)> = None;
        loop {
            let page = store
                .deployments_before(env, cursor.as_ref().map(|(t, id)| (*t, id.as_str())), 2)
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some((last.start_time, last.deployment_id.clone()));
            paged.extend(page);
        }
        assert_eq!(paged, all, "{env:?}");
    }
    let all = store.list_runs(1000, false).unwrap();
    let mut paged = Vec::new();
    let mut before: Option<RunId> = None;
    loop {
        let page = store.runs_before(before, 2).unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);

    let deps = store.deployments(Some("production"), 1000).unwrap();
    let samples = store.dora_samples("production", Timestamp(0)).unwrap();
    assert_eq!(samples.len(), deps.len());
    assert!(samples.windows(2).all(|w| w[0].start <= w[1].start));
    assert!(samples.iter().all(|s| s.queued <= s.start));
    let since = Timestamp(deps[0].start_time);
    assert_eq!(store.dora_samples("production", since).unwrap().len(), 1);
}
