//! `Store::metric_counts` (what `/metrics` renders) and redaction at write time: SQLite
//! and the testkit's MemoryStore answer the same, and the reads use indexes only.

use crate::rollbacks::record;
use crate::support::{self, T0, start, store};
use ferry_core::rollback::Trigger;
use ferry_core::{
    Change, DeploymentRecord, DeploymentStatus, Event, EventKind, Redactor, RollbackLevel, RunId,
    Timestamp,
};
use ferry_engine::ports::{EventFilter, Store};
use ferry_testkit::MemoryStore;

const BOUNDS: &[i64] = &[1_000, 10_000, 60_000];

fn rec(
    run: RunId,
    env: &str,
    t: i64,
    took: Option<i64>,
    status: DeploymentStatus,
) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: format!("{env}#{t}"),
        environment: env.into(),
        version: format!("v{t}"),
        status,
        start_time: t,
        end_time: took.map(|d| t + d),
        infrastructure_changed: false,
        commit_message: String::new(),
        commit_author: String::new(),
        pipeline_execution_id: run.execution_id(),
        unit_tests_passed: false,
        integration_tests_passed: false,
        e2e_tests_passed: false,
        coverage_percentage: 0.0,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: String::new(),
        expires_at: 0,
        run_id: run,
        artifact_digest: String::new(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
    }
}

fn fill(store: &dyn Store, run: RunId) {
    let records = [
        rec(run, "test", 10, Some(500), DeploymentStatus::Succeeded),
        rec(run, "test", 20, Some(1_000), DeploymentStatus::Succeeded),
        rec(run, "test", 30, Some(30_000), DeploymentStatus::Failed),
        rec(
            run,
            "production",
            40,
            Some(120_000),
            DeploymentStatus::RolledBack,
        ),
        rec(run, "production", 50, None, DeploymentStatus::InProgress),
    ];
    let changes: Vec<Change> = records
        .into_iter()
        .map(|d| Change::DeploymentStarted(Box::new(d)))
        .collect();
    store.apply(run, &changes).unwrap();
    let mut a = record("production#40", 1_000, Trigger::Manual { by: "ann".into() });
    store.claim_rollback(&a).unwrap().unwrap();
    a.level = Some(RollbackLevel::Full);
    store.update_rollback(&a).unwrap();
    store
        .claim_rollback(&record(
            "test#30",
            2_000,
            Trigger::Manual { by: "ann".into() },
        ))
        .unwrap()
        .unwrap();
}

#[test]
fn sqlite_and_memory_count_the_same() {
    let (_d, sqlite) = store();
    let run = start(&sqlite, support::TWO_ENVIRONMENTS, T0);
    fill(&sqlite, run.id());
    let memory = MemoryStore::new();
    let (_, plan) = support::plan(support::TWO_ENVIRONMENTS);
    let mrun = memory
        .create_run(&support::new_run("shop-api", &plan, T0))
        .unwrap();
    fill(&memory, mrun);

    let s = sqlite.metric_counts(BOUNDS).unwrap();
    let m = memory.metric_counts(BOUNDS).unwrap();
    assert_eq!(s, m);
    let test = &s.durations["test"];
    assert_eq!(test.count, 3);
    assert_eq!(test.buckets, [2, 2, 3]);
    assert_eq!(test.sum_ms, 31_500);
    assert_eq!(s.durations["production"].buckets, [0, 0, 0]);
    assert_eq!(s.durations["production"].count, 1);
    assert_eq!(
        s.rollbacks[&("production".to_string(), "full".to_string())],
        1
    );
    assert_eq!(s.rollbacks[&("test".to_string(), "stage".to_string())], 1);
    assert_eq!(s.runs["queued"], 1);
}

#[test]
fn metric_reads_use_indexes_only() {
    let (dir, sqlite) = store();
    drop(sqlite);
    let conn = rusqlite_conn(&dir);
    let tables = ["deployments", "rollbacks", "runs", "events"];
    for (sql, table) in ferry_store::metric_queries(3).iter().zip(tables) {
        let plan = explain(&conn, sql);
        assert!(
            plan.contains(&format!("SCAN {table} USING COVERING INDEX"))
                || plan.contains(&format!("SEARCH {table} USING COVERING INDEX"))
                || plan.contains(&format!("SEARCH {table} USING INDEX")),
            "{sql}\n{plan}"
        );
        assert!(!plan.contains("USE TEMP B-TREE"), "{sql}\n{plan}");
        println!("{sql}\n  {plan}");
    }
}

fn rusqlite_conn(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join(".ferry").join("ferry.db")).unwrap()
}

fn explain(conn: &rusqlite::Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let n = stmt.parameter_count();
    let args: Vec<i64> = (0..n).map(|i| i as i64).collect();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    rows.join("\n")
}

#[test]
fn secrets_are_redacted_where_the_store_writes() {
    let (_d, sqlite) = store();
    let memory = MemoryStore::new();
    let red = Redactor::new(["hunter2-secret"]);
    sqlite.set_redactor(red.clone());
    memory.set_redactor(red);
    let run = start(&sqlite, support::TWO_ENVIRONMENTS, T0);
    let e = Event {
        at: Timestamp(T0.0 + 1),
        kind: EventKind::StepFailed,
        run: Some(run.id()),
        environment: None,
        message: "deploy printed hunter2-secret".into(),
        data: serde_json::json!({"reason": "token hunter2-secret refused"}),
    };
    sqlite.apply(run.id(), &[Change::Event(e.clone())]).unwrap();
    sqlite.record_alarm(&[Change::Event(e.clone())]).unwrap();
    let (_, plan) = support::plan(support::TWO_ENVIRONMENTS);
    let mrun = memory
        .create_run(&support::new_run("shop-api", &plan, T0))
        .unwrap();
    memory
        .apply(
            mrun,
            &[Change::Event(Event {
                run: Some(mrun),
                ..e.clone()
            })],
        )
        .unwrap();
    for store in [&sqlite as &dyn Store, &memory] {
        let all = store.events(&EventFilter::default()).unwrap();
        let text = serde_json::to_string(&all.iter().map(|(_, e)| e).collect::<Vec<_>>()).unwrap();
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("deploy printed ***"), "{text}");
    }
}
