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
        rollback_unsafe: false,
        rollback_unsafe_reason: None,
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
    let mut records = vec![
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
    // On every bound and just past it: the table kept by triggers and the bounds agree.
    for (i, b) in ferry_engine::ports::DURATION_BOUNDS_MS.iter().enumerate() {
        let t = 1_000 + i64::try_from(i).unwrap() * 10;
        records.push(rec(
            run,
            "staging",
            t,
            Some(*b),
            DeploymentStatus::Succeeded,
        ));
        records.push(rec(
            run,
            "staging",
            t + 1,
            Some(b + 1),
            DeploymentStatus::Failed,
        ));
    }
    // Longer than the last bound: only in the count.
    records.push(rec(
        run,
        "staging",
        5_000,
        Some(7_200_000),
        DeploymentStatus::Succeeded,
    ));
    let changes: Vec<Change> = records
        .into_iter()
        .map(|d| Change::DeploymentStarted(Box::new(d)))
        .collect();
    store.apply(run, &changes).unwrap();
    let mut a = record(
        "production#40",
        1_000,
        Trigger::Manual {
            by: "ann".into(),
            accept_data_loss: false,
        },
    );
    store.claim_rollback(&a).unwrap().unwrap();
    a.level = Some(RollbackLevel::Full);
    store.update_rollback(&a).unwrap();
    store
        .claim_rollback(&record(
            "test#30",
            2_000,
            Trigger::Manual {
                by: "ann".into(),
                accept_data_loss: false,
            },
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

    let s = sqlite.metric_counts().unwrap();
    let m = memory.metric_counts().unwrap();
    assert_eq!(s, m);
    let test = &s.durations["test"];
    assert_eq!(test.count, 3);
    // Bounds 1 s, 5 s, 10 s, 30 s, …
    assert_eq!(&test.buckets[..4], [2, 2, 2, 3]);
    assert_eq!(test.sum_ms, 31_500);
    assert_eq!(s.durations["production"].buckets[4..7], [0, 1, 1]);
    assert_eq!(s.durations["production"].count, 1);
    let staging = &s.durations["staging"];
    assert_eq!(staging.buckets, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21]);
    assert_eq!(staging.count, 23);

    // A deployment that finishes later (an update), one whose end moves, and a deleted
    // one: the trigger-kept histogram follows (as the memory store, which recounts).
    let late = rec(run.id(), "test", 70, None, DeploymentStatus::InProgress);
    sqlite
        .apply(
            run.id(),
            &[Change::DeploymentStarted(Box::new(late.clone()))],
        )
        .unwrap();
    memory
        .apply(
            mrun,
            &[Change::DeploymentStarted(Box::new(rec(
                mrun,
                "test",
                70,
                None,
                DeploymentStatus::InProgress,
            )))],
        )
        .unwrap();
    let finish = Change::DeploymentFinished {
        deployment_id: "test#70".into(),
        status: DeploymentStatus::Succeeded,
        end_time: Timestamp(70 + 2_500),
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: true,
        coverage_percentage: 90.0,
    };
    sqlite
        .apply(run.id(), std::slice::from_ref(&finish))
        .unwrap();
    memory.apply(mrun, &[finish]).unwrap();
    let s = sqlite.metric_counts().unwrap();
    assert_eq!(s, memory.metric_counts().unwrap());
    assert_eq!(s.durations["test"].count, 4);
    assert_eq!(s.durations["test"].buckets[1], 3);

    // Rows changed or removed behind the store's back: the triggers still agree with a
    // count of the rows themselves.
    let conn = rusqlite_conn(&_d);
    conn.execute_batch(
        "UPDATE deployments SET end_time = end_time + 100000 WHERE deployment_id = 'test#10';
         DELETE FROM deployments WHERE deployment_id = 'test#20';",
    )
    .unwrap();
    let s = sqlite.metric_counts().unwrap();
    let (n, sum): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(end_time - start_time) FROM deployments WHERE environment = 'test' AND end_time IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(s.durations["test"].count, u64::try_from(n).unwrap());
    assert_eq!(s.durations["test"].sum_ms, sum);
    assert_eq!(s.durations["test"].buckets[..5], [0, 1, 1, 2, 2]);
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
    let tables = ["deployment_durations", "rollbacks", "runs", "events"];
    for (sql, table) in ferry_store::metric_queries().iter().zip(tables) {
        let plan = explain(&conn, sql);
        assert!(
            // The histogram table is a few rows per environment: read whole.
            (table == "deployment_durations" && plan.contains("SCAN deployment_durations"))
                || plan.contains(&format!("SCAN {table} USING COVERING INDEX"))
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
