//! Opening the database: creation, migrations, and every way a file can be unusable,
//! each refused with a message naming the file and the fix.

use crate::support::{self, T0, start};
use ferry_core::RunId;
use ferry_engine::ports::{PortErrorKind, Store};
use ferry_store::{MIGRATIONS, SqliteStore};
use rusqlite::Connection;
use std::time::{Duration, Instant};

fn user_version(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn the_store_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<SqliteStore>();
}

#[test]
fn open_creates_the_folder_the_file_and_the_schema_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("ferry.db");
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        user_version(&path),
        i64::try_from(MIGRATIONS.len()).unwrap()
    );
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "alarm_states",
            "approvals",
            "break_glass",
            "configs",
            "deliveries",
            "deployment_durations",
            "deployments",
            "events",
            "findings",
            "freezes",
            "incidents",
            "leases",
            "outbox",
            "outbox_cursors",
            "rollbacks",
            "runs",
            "stages",
            "steps",
            "test_results"
        ]
    );
    let deployment_columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('deployments')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        deployment_columns,
        [
            "deployment_id",
            "environment",
            "version",
            "status",
            "start_time",
            "end_time",
            "infrastructure_changed",
            "commit_message",
            "commit_author",
            "pipeline_execution_id",
            "unit_tests_passed",
            "integration_tests_passed",
            "e2e_tests_passed",
            "coverage_percentage",
            "rollback_reason",
            "rollback_level",
            "rollback_time",
            "artifact_location",
            "expires_at",
            "run_id",
            "artifact_digest",
            "previous_version",
            "config_digest",
            "template_digests",
            "rollback_unsafe",
            "rollback_unsafe_reason",
        ]
    );
}

#[test]
fn reopening_keeps_the_data_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let id = {
        let store = SqliteStore::open(&path).unwrap();
        start(&store, support::TWO_ENVIRONMENTS, T0).id()
    };
    let before = {
        let store = SqliteStore::open(&path).unwrap();
        store.load_run(id).unwrap()
    };
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_run(id).unwrap(), before);
        assert_eq!(
            user_version(&path),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
    }
    // Ids keep counting: AUTOINCREMENT never reuses one.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        start(&store, support::TWO_ENVIRONMENTS, T0).id(),
        RunId(id.0 + 1)
    );
}

#[test]
fn many_processes_creating_one_database_at_once_agree() {
    // Connections of their own, as separate processes would have; the race is in the
    // first moments of the file's life, so it is run a few times.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| SqliteStore::open(&path).unwrap());
            }
        });
        assert_eq!(
            user_version(&path),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
    }
}

#[test]
fn a_database_from_a_newer_ferry_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    drop(SqliteStore::open(&path).unwrap());
    let newer = i64::try_from(MIGRATIONS.len()).unwrap() + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert_eq!(
        err.message,
        format!(
            "state database `{}` was written by a newer ferry (schema {newer}, this ferry knows {}); upgrade ferry",
            path.display(),
            MIGRATIONS.len()
        )
    );
    assert_eq!(user_version(&path), newer);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let garbage = b"this is my shopping list, not a database\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert_eq!(
        err.message,
        format!(
            "`{}` is not a ferry state database (it is not a SQLite file); move it away; ferry will create a new one",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn someone_elses_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE recipes (name TEXT)")
        .unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert!(
        err.message
            .contains("is a SQLite database but not a ferry state database"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("move it away; ferry will create a new one"),
        "{}",
        err.message
    );
}

#[test]
fn a_folder_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("ferry.db");
    let err = SqliteStore::open(&path).err().unwrap();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert!(
        err.message.starts_with(&format!(
            "cannot create the folder `{}` for state database `{}`",
            file.display(),
            path.display()
        )),
        "{}",
        err.message
    );
}

#[test]
fn a_folder_where_the_file_should_be_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    std::fs::create_dir(&path).unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert!(
        err.message
            .starts_with(&format!("cannot open state database `{}`", path.display())),
        "{}",
        err.message
    );
}

#[test]
fn a_database_locked_by_another_process_is_unavailable_after_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    drop(SqliteStore::open(&path).unwrap());
    let (name, plan) = support::plan(support::TWO_ENVIRONMENTS);
    let new = support::new_run(&name, &plan, T0);

    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let store = SqliteStore::open_with_busy_timeout(&path, Duration::from_millis(200)).unwrap();
    let started = Instant::now();
    let err = store.create_run(&new).unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert_eq!(
        err.message,
        format!(
            "state database `{}` is locked by another process (waited 200ms); wait for it to finish or stop it",
            path.display()
        )
    );
    // Once the other process is done, the same store works.
    holder.execute_batch("COMMIT").unwrap();
    store.create_run(&new).unwrap();
}

#[test]
fn a_row_this_ferry_cannot_read_is_named_not_unwrapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let store = SqliteStore::open(&path).unwrap();
    let id = start(&store, support::TWO_ENVIRONMENTS, T0).id();
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE runs SET status = 'paused' WHERE id = ?1", [id.0])
        .unwrap();
    let err = store.load_run(id).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert_eq!(
        err.message,
        format!(
            "state database `{}` holds `paused` in runs.status, which this ferry does not understand; it was written by another version of ferry or edited by hand",
            path.display()
        )
    );
    assert_eq!(
        store.list_runs(10, false).unwrap_err().kind,
        PortErrorKind::Unavailable
    );

    conn.execute("UPDATE runs SET status = 'queued' WHERE id = ?1", [id.0])
        .unwrap();
    conn.execute(
        "UPDATE steps SET status = 'exploded' WHERE run_id = ?1 AND idx = 0",
        [id.0],
    )
    .unwrap();
    let err = store.load_run(id).unwrap_err();
    assert!(
        err.message.contains("holds `exploded` in steps.status"),
        "{}",
        err.message
    );

    conn.execute(
        "UPDATE steps SET status = 'pending' WHERE run_id = ?1",
        [id.0],
    )
    .unwrap();
    conn.execute("UPDATE events SET kind = 'run_teleported'", [])
        .unwrap();
    let err = store.events(&Default::default()).unwrap_err();
    assert!(
        err.message
            .contains("holds `run_teleported` in events.kind"),
        "{}",
        err.message
    );
    conn.execute(
        "UPDATE events SET kind = 'run_queued', data_json = '{oops'",
        [],
    )
    .unwrap();
    let err = store.events(&Default::default()).unwrap_err();
    assert!(
        err.message.contains("holds `{oops` in events.data_json"),
        "{}",
        err.message
    );
    assert_eq!(err.kind, PortErrorKind::Unavailable);
}
