//! Upgrading a database written by an older ferry: every migration after the first keeps
//! what was there and adds what the new code needs.

use ferry_core::{DeploymentStatus, RunId};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, Store};
use ferry_store::{MIGRATIONS, SqliteStore};
use rusqlite::Connection;

/// A database as the first schema left it, with one deployment and one event.
fn version_one(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(
        r#"
INSERT INTO deployments (deployment_id, environment, version, status, start_time, end_time,
    infrastructure_changed, commit_message, commit_author, pipeline_execution_id,
    unit_tests_passed, integration_tests_passed, e2e_tests_passed, coverage_percentage,
    rollback_reason, rollback_level, rollback_time, artifact_location, expires_at, run_id,
    artifact_digest, previous_version)
VALUES ('production#1000', 'production', 'abc', 'succeeded', 1000, 2000, 0, 'msg', 'ada',
    'run-1', 1, 1, 0, 88.5, NULL, NULL, NULL, '/a/run-1.tar', 7776001, 1, 'sha256:ab', 'old');
INSERT INTO events (at, kind, run_id, environment, message, data_json)
VALUES (1000, 'deployment_started', 1, 'production', 'deploying abc', '{}');
"#,
    )
    .unwrap();
}

#[test]
fn a_version_one_database_is_upgraded_and_keeps_its_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    version_one(&path);

    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::try_from(MIGRATIONS.len()).unwrap());

    let d = store.last_known_good("production").unwrap().unwrap();
    assert_eq!(d.deployment_id, "production#1000");
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    assert_eq!(d.run_id, RunId(1));
    assert_eq!(d.previous_version.as_deref(), Some("old"));
    assert_eq!(d.coverage_percentage, 88.5);
    assert_eq!(d.config_digest, None);
    assert!(d.template_digests.is_empty());
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 1);

    // The new tables work on the upgraded file.
    assert_eq!(store.hold("production").unwrap(), None);
    assert_eq!(store.rollbacks(10).unwrap(), Vec::new());
    store.put_config("sha256:c", "pipeline: x").unwrap();
    assert_eq!(
        store.config("sha256:c").unwrap().as_deref(),
        Some("pipeline: x")
    );

    // Opening again applies nothing twice.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.deployments(None, 10).unwrap(), vec![d]);
}
