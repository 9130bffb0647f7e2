//! ferry's state in one SQLite file: the local runtime's implementation of the engine's
//! [`Store`] port.
//!
//! Runs, stages, steps, test results, events, deployments (the seed's `DeploymentRecord`,
//! §3.5/§4.1, one column per field), approvals, leases, rollback records, incidents,
//! pipeline files by digest and alarm states live in one database in WAL mode, so the
//! dashboard and `ferry status` read while a run writes. Every [`Store::apply`] is one
//! `BEGIN IMMEDIATE` transaction: DESIGN invariant 1 ("write before acting") needs each
//! batch of [`Change`]s to be committed whole or not at all, and Property 6 needs
//! [`Store::load_run`] to give back exactly the core's view after every batch.
//!
//! Architecture invariant: this crate decides nothing. It records what the core's
//! changes say and answers queries; the only rules it enforces are the ones that must
//! hold across processes (one decision per approval, one lease holder per environment,
//! one rollback per deployment, one open incident per environment), because only the
//! database sees every process.

mod error;
mod findings;
mod metrics;
mod outbox;
mod schema;
mod windows;

pub use metrics::metric_queries;
pub use schema::MIGRATIONS;

use error::{Failure, Fallible, bad, to_port};
use ferry_core::alarm::AlarmState;
use ferry_core::approval::Decision;
use ferry_core::events::iso8601;
use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
use ferry_core::run::{RunView, StageView, StepView};
use ferry_core::{
    Artifact, Change, Commit, DeploymentRecord, DeploymentStatus, Event, EventKind, RollbackLevel,
    RunId, RunStatus, StageStatus, StepStatus, Suite, Timestamp,
};
use ferry_engine::ports::{
    BreakGlass, EventFilter, FindingCounts, FindingRecord, Freeze, Incident, Lease, Ledger, NewRun,
    OutboxChannel, OutboxCounts, OutboxFilter, OutboxItem, PortError, PortResult, Settle, Store,
};
use ferry_reports::TestReport;
use rusqlite::types::Value;
use rusqlite::{
    Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params, params_from_iter,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long an operation waits for another process's write lock before giving up.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. One connection behind a mutex: SQLite serialises writers anyway,
/// and one connection per store keeps every `apply` a single transaction on a single
/// handle. Other processes (a second `ferry`, `ferry status`) coordinate through SQLite's
/// file locks and the busy timeout.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy: Duration,
    /// Secrets replaced by `***` in what is written (DESIGN invariant 8).
    redactor: std::sync::RwLock<ferry_core::Redactor>,
}

/// The test results recorded for one step (the `TestResults` change, read back).
#[derive(Debug, Clone, PartialEq)]
pub struct StepTestResults {
    pub stage: usize,
    pub step: usize,
    pub suite: Suite,
    pub report: TestReport,
    pub coverage: Option<f64>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `path` and brings its
    /// schema up to date, waiting up to [`DEFAULT_BUSY_TIMEOUT`] for other processes.
    pub fn open(path: &Path) -> PortResult<SqliteStore> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`SqliteStore::open`] with another wait for locks held by other processes.
    pub fn open_with_busy_timeout(path: &Path, busy: Duration) -> PortResult<SqliteStore> {
        let fail = |f: Failure| to_port(f, path, busy);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                PortError::unavailable(format!(
                    "cannot create the folder `{}` for state database `{}` ({e}); check that this user may write there",
                    dir.display(),
                    path.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| fail(e.into()))?;
        conn.busy_timeout(busy).map_err(|e| fail(e.into()))?;

        // Read before writing anything: a file that is not ours, or is newer than this
        // code, is left exactly as it was found. One statement, so both numbers come from
        // the same snapshot even while another process is creating the schema.
        let (version, objects): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| fail(e.into()))?;
        if version == 0 && objects > 0 {
            return Err(PortError::unavailable(format!(
                "`{}` is a SQLite database but not a ferry state database (it has tables but no ferry schema version); move it away; ferry will create a new one",
                path.display()
            )));
        }
        if version > schema::current_version() || version < 0 {
            return Err(newer(path, version));
        }
        if conn.is_readonly("main").map_err(|e| fail(e.into()))? {
            return Err(PortError::unavailable(format!(
                "state database `{}` is read-only; make the file and its folder writable by this user, or run ferry where it can write",
                path.display()
            )));
        }

        // WAL lets readers (status, dashboard) proceed while a run writes; NORMAL is
        // durable across application crashes in WAL mode, which is what invariant 1
        // needs, and avoids an fsync per transaction.
        enable_wal(&conn, busy).map_err(|e| fail(e.into()))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| fail(e.into()))?;

        match schema::migrate(&mut conn).map_err(|e| fail(e.into()))? {
            schema::Migrated::Current => {}
            schema::Migrated::Newer(v) => return Err(newer(path, v)),
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            busy,
            redactor: Default::default(),
        })
    }

    /// Makes every later write replace these secrets by `***`: events (message and
    /// payload), run and step reasons, rollback reasons, alarm reasons (DESIGN
    /// invariant 8). Redacting where the store writes covers every writer.
    pub fn set_redactor(&self, redactor: ferry_core::Redactor) {
        *self
            .redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = redactor;
    }

    fn redactor(&self) -> ferry_core::Redactor {
        self.redactor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lease on an environment, expired or not.
    pub fn lease(&self, environment: &str) -> PortResult<Option<Lease>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            current_lease(tx, environment)
        })
    }

    /// The test results recorded for a run, in step order.
    pub fn test_results(&self, run: RunId) -> PortResult<Vec<StepTestResults>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            ensure_run(tx, run)?;
            let mut stmt = tx.prepare(
                "SELECT stage_idx, step_idx, suite, total, passed, failed, errored, skipped, failures_json, coverage
                 FROM test_results WHERE run_id = ?1 ORDER BY stage_idx, step_idx",
            )?;
            let mut rows = stmt.query([run.0])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let failures: String = r.get(8)?;
                let report = TestReport {
                    total: unsigned(r, 3, "test_results", "total")?,
                    passed: unsigned(r, 4, "test_results", "passed")?,
                    failed: unsigned(r, 5, "test_results", "failed")?,
                    errored: unsigned(r, 6, "test_results", "errored")?,
                    skipped: unsigned(r, 7, "test_results", "skipped")?,
                    failures: serde_json::from_str(&failures)
                        .map_err(|_| bad("test_results", "failures_json", failures.clone()))?,
                };
                out.push(StepTestResults {
                    stage: unsigned(r, 0, "test_results", "stage_idx")?,
                    step: unsigned(r, 1, "test_results", "step_idx")?,
                    suite: parse_enum(r.get(2)?, "test_results", "suite", Suite::parse)?,
                    report,
                    coverage: r.get(9)?,
                });
            }
            Ok(out)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which rolled back:
        // the connection is still consistent.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one transaction, committed if it returns `Ok`, rolled back otherwise.
    /// Writers use `Immediate` so they take the write lock up front (and wait for it
    /// under the busy timeout) instead of failing half-way when a read turns into a
    /// write; readers use `Deferred` for one consistent snapshot.
    fn transaction<T>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&Transaction<'_>) -> Fallible<T>,
    ) -> PortResult<T> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(behavior)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        result.map_err(|e| to_port(e, &self.path, self.busy))
    }
}

/// Switches the database to WAL. Changing the journal mode needs an exclusive lock that
/// SQLite does not wait for through the busy handler (it answers BUSY at once when
/// another connection is reading, as when several processes create the database
/// together), so this retries until the busy timeout. On a database already in WAL mode
/// it is a no-op that succeeds at once.
fn enable_wal(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < busy =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn newer(path: &Path, version: i64) -> PortError {
    PortError::unavailable(format!(
        "state database `{}` was written by a newer ferry (schema {version}, this ferry knows {}); upgrade ferry",
        path.display(),
        schema::current_version()
    ))
}

/// A `usize` index or count as SQLite's integer.
fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn parse_enum<T>(
    value: String,
    table: &'static str,
    column: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Fallible<T> {
    parse(&value).ok_or_else(|| bad(table, column, value))
}

/// A column holding a count or an index, which SQLite stores as a signed integer.
fn unsigned<T: TryFrom<i64>>(
    r: &Row<'_>,
    i: usize,
    table: &'static str,
    column: &'static str,
) -> Fallible<T> {
    let n: i64 = r.get(i)?;
    T::try_from(n).map_err(|_| bad(table, column, n.to_string()))
}

fn ensure_run(tx: &Transaction<'_>, run: RunId) -> Fallible<RunStatus> {
    let status: Option<String> = tx
        .query_row("SELECT status FROM runs WHERE id = ?1", [run.0], |r| {
            r.get(0)
        })
        .optional()?;
    match status {
        Some(s) => parse_enum(s, "runs", "status", RunStatus::parse),
        None => Err(PortError::not_found(format!(
            "run {run} does not exist; `ferry history` lists the runs"
        ))
        .into()),
    }
}

impl Ledger for SqliteStore {
    fn record_rollback(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        // A rollback of a deployment whose run another store keeps (`ferry step`'s
        // split store, with this store as the shared ledger) is recorded without the
        // run: events, rolled-back deployments and incidents need no run row.
        let outside = changes.iter().all(|c| {
            matches!(
                c,
                Change::Event(_)
                    | Change::DeploymentRolledBack { .. }
                    | Change::IncidentOpened { .. }
            )
        });
        if !outside {
            return self.apply(run, changes);
        }
        let redactor = self.redactor();
        let redacted;
        let changes = if redactor.is_empty() {
            changes
        } else {
            redacted = redactor.changes(changes);
            redacted.as_slice()
        };
        self.transaction(TransactionBehavior::Immediate, |tx| {
            for change in changes {
                apply_change(tx, run, change)?;
            }
            Ok(())
        })
    }
    fn record_deployment(&self, deployment: &DeploymentRecord) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            tx.execute(
                "DELETE FROM deployments WHERE deployment_id = ?1",
                [&deployment.deployment_id],
            )?;
            insert_deployment(tx, deployment)
        })
    }
    fn deployments(
        &self,
        environment: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            // Two statements, so that each walks its index (`?1 IS NULL OR …` would not).
            let (mut stmt, args) = match environment {
                Some(env) => (
                    tx.prepare_cached(DEPLOYMENTS_OF_ENV)?,
                    params_from_iter(vec![
                        Value::Text(env.to_string()),
                        Value::Integer(int(limit)),
                    ]),
                ),
                None => (
                    tx.prepare_cached(&format!(
                        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
                         ORDER BY start_time DESC, deployment_id DESC LIMIT ?1"
                    ))?,
                    params_from_iter(vec![Value::Integer(int(limit))]),
                ),
            };
            let mut rows = stmt.query(args)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(deployment(r)?);
            }
            Ok(out)
        })
    }
    fn last_known_good(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt = tx.prepare(LAST_KNOWN_GOOD)?;
            let mut rows =
                stmt.query(params![environment, DeploymentStatus::Succeeded.as_str()])?;
            rows.next()?.map(deployment).transpose()
        })
    }
    fn latest_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE environment = ?1 ORDER BY start_time DESC LIMIT 1"
            ))?;
            let mut rows = stmt.query([environment])?;
            rows.next()?.map(deployment).transpose()
        })
    }
    fn current_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt = tx.prepare_cached(CURRENT_DEPLOYMENT)?;
            let mut rows =
                stmt.query(params![environment, DeploymentStatus::RolledBack.as_str()])?;
            rows.next()?.map(deployment).transpose()
        })
    }
    fn acquire_lease(&self, lease: &Lease, now: Timestamp) -> PortResult<Result<(), Lease>> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            // Work outside any run (a manual or alarm rollback) leases under a negative
            // id of its own. A run's lease does not need its run here: the ledger is
            // shared with runs another store keeps (`ferry step`'s split store).
            if let Some(held) = current_lease(tx, &lease.environment)?
                && held.run != lease.run
                && held.expires_at > now
            {
                return Ok(Err(held));
            }
            put_lease(tx, lease)?;
            Ok(Ok(()))
        })
    }
    fn take_over_lease(&self, want: &Lease, gone: &Lease) -> PortResult<Result<(), Lease>> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if let Some(held) = current_lease(tx, &want.environment)?
                && held != *gone
            {
                return Ok(Err(held));
            }
            put_lease(tx, want)?;
            Ok(Ok(()))
        })
    }
    fn renew_lease(&self, lease: &Lease) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            let updated = tx.execute(
                "UPDATE leases SET holder = ?3, expires_at = ?4 WHERE environment = ?1 AND run_id = ?2",
                params![lease.environment, lease.run.0, lease.holder, lease.expires_at.0],
            )?;
            if updated == 1 {
                return Ok(());
            }
            let now_held = match current_lease(tx, &lease.environment)? {
                Some(h) => format!(
                    "run {} ({}) holds it until {}",
                    h.run,
                    h.holder,
                    iso8601(h.expires_at)
                ),
                None => "nobody holds it".to_string(),
            };
            Err(PortError::conflict(format!(
                "run {} no longer holds the lease on {}: {now_held}",
                lease.run, lease.environment
            ))
            .into())
        })
    }
    fn release_lease(&self, environment: &str, run: RunId) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            tx.execute(
                "DELETE FROM leases WHERE environment = ?1 AND run_id = ?2",
                params![environment, run.0],
            )?;
            Ok(())
        })
    }
    fn claim_rollback(&self, rec: &RollbackRecord) -> PortResult<Result<(), RollbackRecord>> {
        let rec = &self.redactor().rollback(rec);
        // `BEGIN IMMEDIATE` takes the write lock before the read, so of several claimers
        // (threads or processes) exactly one sees no record and inserts it.
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if let Some(existing) = rollback_of(tx, &rec.deployment_id)? {
                return Ok(Err(existing));
            }
            write_rollback(tx, rec, "INSERT INTO")?;
            Ok(Ok(()))
        })
    }
    fn update_rollback(&self, rec: &RollbackRecord) -> PortResult<()> {
        let rec = &self.redactor().rollback(rec);
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if rollback_of(tx, &rec.deployment_id)?.is_none() {
                return Err(PortError::not_found(format!(
                    "no rollback of deployment {} was claimed",
                    rec.deployment_id
                ))
                .into());
            }
            write_rollback(tx, rec, "REPLACE INTO")
        })
    }
    fn rollback(&self, deployment_id: &str) -> PortResult<Option<RollbackRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            rollback_of(tx, deployment_id)
        })
    }
    fn hold(&self, environment: &str) -> PortResult<Option<Incident>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            open_incident(tx, environment)
        })
    }
    fn resolve(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Incident> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            let Some(mut incident) = open_incident(tx, environment)? else {
                return Err(PortError::not_found(format!(
                    "environment {environment} has no open incident"
                ))
                .into());
            };
            tx.execute(
                "UPDATE incidents SET resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
                params![incident.id, at.0, by],
            )?;
            incident.resolved_at = Some(at);
            incident.resolved_by = Some(by.to_string());
            insert_event(tx, &incident.resolved_event(at))?;
            Ok(incident)
        })
    }
    fn unfreeze(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Vec<Freeze>> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            windows::unfreeze(tx, environment, by, at)
        })
    }
    fn freezes(&self, environment: Option<&str>, at: Timestamp) -> PortResult<Vec<Freeze>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            windows::freezes(tx, environment, at)
        })
    }
    fn freeze(&self, freeze: &Freeze) -> PortResult<Freeze> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            windows::freeze(tx, freeze)
        })
    }
    fn alarm_state(&self, alarm: &str) -> PortResult<Option<(AlarmState, String, Timestamp)>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let row: Option<(String, String, i64)> = tx
                .query_row(
                    "SELECT state, reason, at FROM alarm_states WHERE alarm = ?1",
                    [alarm],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            row.map(|(state, reason, at)| {
                let state = parse_enum(state, "alarm_states", "state", AlarmState::parse)?;
                Ok((state, reason, Timestamp(at)))
            })
            .transpose()
        })
    }
    fn config(&self, digest: &str) -> PortResult<Option<String>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let text = tx
                .query_row(
                    "SELECT text FROM configs WHERE digest = ?1",
                    [digest],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(text)
        })
    }
}

impl Store for SqliteStore {
    fn create_run(&self, run: &NewRun) -> PortResult<RunId> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            if let Some(id) = run.id {
                let taken: bool = tx
                    .query_row("SELECT EXISTS(SELECT 1 FROM runs WHERE id = ?1)", [id.0], |r| {
                        r.get(0)
                    })?;
                if taken {
                    return Err(crate::error::Failure::Port(PortError::conflict(format!(
                        "run {id} already exists in this store"
                    ))));
                }
            }
            tx.execute(
                r#"INSERT INTO runs (id, pipeline, commit_sha, commit_message, commit_author, "trigger", triggered_by, status, created_at, driver, hotfix)
                   VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"#,
                params![
                    run.pipeline,
                    run.commit.sha,
                    run.commit.message,
                    run.commit.author,
                    run.trigger,
                    run.triggered_by,
                    RunStatus::Queued.as_str(),
                    run.created_at.0,
                    run.driver,
                    run.hotfix,
                    run.id.map(|i| i.0),
                ],
            )?;
            let id = tx.last_insert_rowid();
            let mut stage_stmt =
                tx.prepare("INSERT INTO stages (run_id, idx, name, status) VALUES (?1, ?2, ?3, ?4)")?;
            let mut step_stmt = tx.prepare(
                "INSERT INTO steps (run_id, stage_idx, idx, name, kind, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (si, (stage, steps)) in run.stages.iter().enumerate() {
                stage_stmt.execute(params![id, int(si), stage, StageStatus::Pending.as_str()])?;
                for (ti, (step, kind)) in steps.iter().enumerate() {
                    step_stmt.execute(params![id, int(si), int(ti), step, kind, StepStatus::Pending.as_str()])?;
                }
            }
            Ok(RunId(id))
        })
    }

    fn driver(&self, run: RunId) -> PortResult<Option<String>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            ensure_run(tx, run)?;
            let d: String =
                tx.query_row("SELECT driver FROM runs WHERE id = ?1", [run.0], |r| {
                    r.get(0)
                })?;
            Ok((!d.is_empty()).then_some(d))
        })
    }

    fn claim_run(&self, run: RunId, from: &str, to: &str) -> PortResult<bool> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            ensure_run(tx, run)?;
            let n = tx.execute(
                "UPDATE runs SET driver = ?3 WHERE id = ?1 AND driver = ?2",
                params![run.0, from, to],
            )?;
            Ok(n == 1)
        })
    }

    fn apply(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        let redactor = self.redactor();
        let redacted;
        let changes = if redactor.is_empty() {
            changes
        } else {
            redacted = redactor.changes(changes);
            redacted.as_slice()
        };
        self.transaction(TransactionBehavior::Immediate, |tx| {
            ensure_run(tx, run)?;
            for change in changes {
                apply_change(tx, run, change)?;
            }
            Ok(())
        })
    }

    fn load_run(&self, run: RunId) -> PortResult<RunView> {
        self.transaction(TransactionBehavior::Deferred, |tx| load_run(tx, run))
    }

    fn list_runs(&self, limit: usize, unfinished_only: bool) -> PortResult<Vec<RunView>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let ids: Vec<i64> = if unfinished_only {
                // The statuses come from the core's enum, not from input.
                let active: Vec<String> = RunStatus::ALL
                    .iter()
                    .filter(|s| !s.is_terminal())
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect();
                let sql = format!(
                    "SELECT id FROM runs WHERE status IN ({}) ORDER BY id DESC LIMIT ?1",
                    active.join(", ")
                );
                let mut stmt = tx.prepare(&sql)?;
                stmt.query_map([int(limit)], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            } else {
                let mut stmt = tx.prepare("SELECT id FROM runs ORDER BY id DESC LIMIT ?1")?;
                stmt.query_map([int(limit)], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            ids.into_iter().map(|id| load_run(tx, RunId(id))).collect()
        })
    }

    fn triggered(&self, run: RunId) -> PortResult<(String, String)> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            ensure_run(tx, run)?;
            Ok(tx.query_row(
                r#"SELECT "trigger", triggered_by FROM runs WHERE id = ?1"#,
                [run.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }

    fn approvals(&self, run: RunId, environment: &str) -> PortResult<Vec<Decision>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            ensure_run(tx, run)?;
            decisions(tx, run, environment)
        })
    }

    fn decide(&self, run: RunId, environment: &str, d: &Decision) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            let status = ensure_run(tx, run)?;
            let prior = decisions(tx, run, environment)?;
            let live = || prior.iter().filter(|p| p.void.is_none());
            if let Some(p) = live()
                .find(|p| !p.approved)
                .or_else(|| live().find(|p| p.by.trim().eq_ignore_ascii_case(d.by.trim())))
            {
                let verb = if p.approved { "approved" } else { "rejected" };
                return Err(PortError::conflict(format!(
                    "run {run} was already {verb} by {} at {}",
                    p.by,
                    iso8601(p.at)
                ))
                .into());
            }
            if status != RunStatus::AwaitingApproval {
                return Err(PortError::conflict(format!("run {run} is not waiting for approval (it is {status})")).into());
            }
            let stage: Option<String> = tx
                .query_row(
                    "SELECT status FROM stages WHERE run_id = ?1 AND name = ?2",
                    params![run.0, environment],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(stage) = stage else {
                return Err(PortError::not_found(format!("run {run} has no environment `{environment}`")).into());
            };
            let stage = parse_enum(stage, "stages", "status", StageStatus::parse)?;
            if stage != StageStatus::AwaitingApproval {
                let waiting: Option<String> = tx
                    .query_row(
                        "SELECT name FROM stages WHERE run_id = ?1 AND status = ?2 ORDER BY idx LIMIT 1",
                        params![run.0, StageStatus::AwaitingApproval.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let hint = match waiting {
                    Some(w) => format!("it is waiting for approval to deploy to {w}"),
                    None => format!("stage {environment} is {stage}"),
                };
                return Err(PortError::conflict(format!(
                    "run {run} is not waiting for approval to deploy to {environment} ({hint})"
                ))
                .into());
            }
            tx.execute(
                "INSERT INTO approvals (run_id, environment, approved, by_whom, reason, at, digest, void) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![run.0, environment, d.approved, d.by, d.reason, d.at.0, d.digest, d.void],
            )?;
            Ok(())
        })
    }

    fn deployments_before(
        &self,
        environment: Option<&str>,
        before: Option<(i64, &str)>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            // No cursor: one past every row (start times are milliseconds, far below).
            let (t, id) = before.unwrap_or((i64::MAX, ""));
            let (mut stmt, args) = match environment {
                Some(env) => (
                    tx.prepare_cached(DEPLOYMENTS_PAGE_OF_ENV)?,
                    params_from_iter(vec![
                        Value::Text(env.to_string()),
                        Value::Integer(t),
                        Value::Text(id.to_string()),
                        Value::Integer(int(limit)),
                    ]),
                ),
                None => (
                    tx.prepare_cached(DEPLOYMENTS_PAGE)?,
                    params_from_iter(vec![
                        Value::Integer(t),
                        Value::Text(id.to_string()),
                        Value::Integer(int(limit)),
                    ]),
                ),
            };
            let mut rows = stmt.query(args)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(deployment(r)?);
            }
            Ok(out)
        })
    }

    fn runs_before(&self, before: Option<RunId>, limit: usize) -> PortResult<Vec<RunView>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt =
                tx.prepare_cached("SELECT id FROM runs WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
            let ids: Vec<i64> = stmt
                .query_map(params![before.map_or(i64::MAX, |r| r.0), int(limit)], |r| {
                    r.get(0)
                })?
                .collect::<Result<_, _>>()?;
            ids.into_iter().map(|id| load_run(tx, RunId(id))).collect()
        })
    }

    fn dora_samples(
        &self,
        environment: &str,
        since: Timestamp,
    ) -> PortResult<Vec<ferry_core::dora::Sample>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt = tx.prepare_cached(DORA_SAMPLES)?;
            let mut rows = stmt.query(params![environment, since.0])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let start: i64 = r.get(0)?;
                let rollback = match r.get::<_, Option<String>>(4)? {
                    None => None,
                    Some(trigger) => Some(ferry_core::dora::RollbackFacts {
                        trigger: serde_json::from_str::<Trigger>(&trigger)
                            .map_err(|_| bad("rollbacks", "trigger_json", trigger.clone()))?,
                        status: parse_enum(
                            r.get(5)?,
                            "rollbacks",
                            "status",
                            RollbackStatus::parse,
                        )?,
                        started: Timestamp(r.get(6)?),
                        ended: r.get::<_, Option<i64>>(7)?.map(Timestamp),
                    }),
                };
                out.push(ferry_core::dora::Sample {
                    start: Timestamp(start),
                    end: r.get::<_, Option<i64>>(1)?.map(Timestamp),
                    status: parse_enum(
                        r.get(2)?,
                        "deployments",
                        "status",
                        DeploymentStatus::parse,
                    )?,
                    queued: Timestamp(r.get::<_, Option<i64>>(3)?.unwrap_or(start)),
                    rollback,
                });
            }
            Ok(out)
        })
    }

    fn events(&self, filter: &EventFilter) -> PortResult<Vec<(i64, Event)>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut sql =
                String::from("SELECT id, at, kind, run_id, environment, message, data_json FROM events WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if let Some(run) = filter.run {
                sql.push_str(" AND run_id = ?");
                args.push(Value::Integer(run.0));
            }
            if let Some(env) = &filter.environment {
                sql.push_str(" AND environment = ?");
                args.push(Value::Text(env.clone()));
            }
            if let Some(after) = filter.after_id {
                sql.push_str(" AND id > ?");
                args.push(Value::Integer(after));
            }
            if let Some(kind) = filter.kind {
                sql.push_str(" AND kind = ?");
                args.push(Value::Text(kind.as_str().to_string()));
            }
            // A negative LIMIT is no limit in SQLite.
            sql.push_str(if filter.newest_first {
                " ORDER BY id DESC LIMIT ?"
            } else {
                " ORDER BY id LIMIT ?"
            });
            args.push(Value::Integer(filter.limit.map_or(-1, int)));
            let mut stmt = tx.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let data: String = r.get(6)?;
                let event = Event {
                    at: Timestamp(r.get(1)?),
                    kind: parse_enum(r.get(2)?, "events", "kind", EventKind::parse)?,
                    run: r.get::<_, Option<i64>>(3)?.map(RunId),
                    environment: r.get(4)?,
                    message: r.get(5)?,
                    data: serde_json::from_str(&data).map_err(|_| bad("events", "data_json", data.clone()))?,
                };
                out.push((r.get(0)?, event));
            }
            Ok(out)
        })
    }

    fn rollbacks(&self, limit: usize) -> PortResult<Vec<RollbackRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ROLLBACK_COLUMNS} FROM rollbacks
                 ORDER BY started_at DESC, deployment_id DESC LIMIT ?1"
            ))?;
            let mut rows = stmt.query([int(limit)])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rollback_record(r)?);
            }
            Ok(out)
        })
    }

    fn put_config(&self, digest: &str, text: &str) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            tx.execute(
                "INSERT INTO configs (digest, text) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
                params![digest, text],
            )?;
            Ok(())
        })
    }

    fn record_alarm(&self, changes: &[Change]) -> PortResult<()> {
        let redactor = self.redactor();
        let redacted;
        let changes = if redactor.is_empty() {
            changes
        } else {
            redacted = redactor.changes(changes);
            redacted.as_slice()
        };
        self.transaction(TransactionBehavior::Immediate, |tx| {
            for change in changes {
                match change {
                    Change::AlarmState {
                        alarm,
                        state,
                        reason,
                        at,
                    } => upsert_alarm(tx, alarm, *state, reason, *at)?,
                    Change::Event(e) => insert_event(tx, e)?,
                    other => {
                        return Err(PortError::permanent(format!(
                            "an alarm can record only alarm states and events, not a `{}` change",
                            other.name()
                        ))
                        .into());
                    }
                }
            }
            Ok(())
        })
    }

    fn record_delivery(
        &self,
        id: &str,
        run: Option<RunId>,
        at: Timestamp,
    ) -> PortResult<Result<(), Option<RunId>>> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            let earlier: Option<Option<i64>> = tx
                .query_row("SELECT run_id FROM deliveries WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(earlier) = earlier {
                return Ok(Err(earlier.map(RunId)));
            }
            tx.execute(
                "INSERT INTO deliveries (id, run_id, at) VALUES (?1, ?2, ?3)",
                params![id, run.map(|r| r.0), at.0],
            )?;
            Ok(Ok(()))
        })
    }

    fn request_override(&self, request: &BreakGlass) -> PortResult<BreakGlass> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            windows::request_override(tx, request)
        })
    }

    fn confirm_override(
        &self,
        run: RunId,
        environment: &str,
        by: &str,
        at: Timestamp,
    ) -> PortResult<BreakGlass> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            windows::confirm_override(tx, run, environment, by, at)
        })
    }

    fn overrides(&self, run: RunId) -> PortResult<Vec<BreakGlass>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            windows::overrides(tx, run)
        })
    }

    fn record_findings(&self, run: RunId, list: &[FindingRecord]) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            findings::record(tx, run, list)
        })
    }

    fn findings(&self, run: RunId) -> PortResult<Vec<FindingRecord>> {
        self.transaction(TransactionBehavior::Deferred, |tx| findings::list(tx, run))
    }

    fn finding_counts(&self, run: RunId) -> PortResult<FindingCounts> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            findings::counts(tx, run)
        })
    }

    fn metric_counts(&self) -> PortResult<ferry_engine::ports::MetricCounts> {
        self.transaction(TransactionBehavior::Deferred, metrics::metric_counts)
    }

    fn outbox_fill(&self, channels: &[OutboxChannel], now: Timestamp) -> PortResult<usize> {
        // Most passes find nothing new: a read answers that without the write lock.
        if !self.transaction(TransactionBehavior::Deferred, |tx| {
            outbox::fill_needed(tx, channels)
        })? {
            return Ok(0);
        }
        self.transaction(TransactionBehavior::Immediate, |tx| {
            outbox::fill(tx, channels, now)
        })
    }

    fn outbox_claim(
        &self,
        channels: &[String],
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> PortResult<Vec<OutboxItem>> {
        if !self.transaction(TransactionBehavior::Deferred, |tx| {
            outbox::any_due(tx, channels, now)
        })? {
            return Ok(Vec::new());
        }
        self.transaction(TransactionBehavior::Immediate, |tx| {
            outbox::claim(tx, channels, now, until, limit)
        })
    }

    fn outbox_settle(&self, id: i64, settle: &Settle, now: Timestamp) -> PortResult<()> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            outbox::settle(tx, id, settle, now)
        })
    }

    fn outbox(&self, filter: &OutboxFilter) -> PortResult<Vec<OutboxItem>> {
        self.transaction(TransactionBehavior::Deferred, |tx| outbox::list(tx, filter))
    }

    fn outbox_retry(
        &self,
        channel: Option<&str>,
        ids: &[i64],
        now: Timestamp,
    ) -> PortResult<usize> {
        self.transaction(TransactionBehavior::Immediate, |tx| {
            outbox::retry(tx, channel, ids, now)
        })
    }

    fn outbox_counts(&self) -> PortResult<Vec<OutboxCounts>> {
        self.transaction(TransactionBehavior::Deferred, outbox::counts)
    }

    fn delivery(&self, id: &str) -> PortResult<Option<Option<RunId>>> {
        self.transaction(TransactionBehavior::Deferred, |tx| {
            let run: Option<Option<i64>> = tx
                .query_row("SELECT run_id FROM deliveries WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(run.map(|r| r.map(RunId)))
        })
    }
}

/// Applies one change. The timestamps each status sets mirror what the core's `Run`
/// sets in its view, so that Property 6 holds: a status that starts something sets
/// `started_at` once, a status that ends something sets `ended_at`, `skipped` (never
/// ran) sets neither.
fn apply_change(tx: &Transaction<'_>, run: RunId, change: &Change) -> Fallible<()> {
    match change {
        Change::Run { status, reason, at } => {
            let started =
                matches!(status, RunStatus::Running | RunStatus::AwaitingApproval).then_some(at.0);
            let ended = status.is_terminal().then_some(at.0);
            tx.execute(
                "UPDATE runs SET status = ?2, reason = COALESCE(?3, reason),
                    started_at = COALESCE(started_at, ?4), ended_at = COALESCE(?5, ended_at)
                 WHERE id = ?1",
                params![run.0, status.as_str(), reason, started, ended],
            )?;
        }
        Change::Stage { stage, status, at } => {
            let (started, ended) = match status {
                StageStatus::Pending | StageStatus::Skipped => (None, None),
                StageStatus::Running | StageStatus::AwaitingApproval => (Some(at.0), None),
                StageStatus::Succeeded | StageStatus::Failed | StageStatus::Cancelled => {
                    (Some(at.0), Some(at.0))
                }
            };
            let n = tx.execute(
                "UPDATE stages SET status = ?3, started_at = COALESCE(started_at, ?4), ended_at = COALESCE(?5, ended_at)
                 WHERE run_id = ?1 AND idx = ?2",
                params![run.0, int(*stage), status.as_str(), started, ended],
            )?;
            if n == 0 {
                return Err(PortError::not_found(format!("run {run} has no stage {stage}")).into());
            }
        }
        Change::Step {
            stage,
            step,
            status,
            at,
            log,
            exit_code,
            reason,
        } => {
            let (run_id, si, ti, st) = (run.0, int(*stage), int(*step), status.as_str());
            let n = match status {
                StepStatus::Running => tx.execute(
                    "UPDATE steps SET status = ?4, log = ?5, started_at = ?6
                     WHERE run_id = ?1 AND stage_idx = ?2 AND idx = ?3",
                    params![run_id, si, ti, st, log, at.0],
                )?,
                StepStatus::Succeeded | StepStatus::Failed | StepStatus::Cancelled => tx.execute(
                    "UPDATE steps SET status = ?4, log = COALESCE(?5, log), ended_at = ?6, exit_code = ?7, reason = ?8
                     WHERE run_id = ?1 AND stage_idx = ?2 AND idx = ?3",
                    params![run_id, si, ti, st, log, at.0, exit_code, reason],
                )?,
                StepStatus::Pending | StepStatus::Skipped => tx.execute(
                    "UPDATE steps SET status = ?4, log = COALESCE(?5, log)
                     WHERE run_id = ?1 AND stage_idx = ?2 AND idx = ?3",
                    params![run_id, si, ti, st, log],
                )?,
            };
            if n == 0 {
                return Err(PortError::not_found(format!(
                    "run {run} has no step {step} in stage {stage}"
                ))
                .into());
            }
        }
        Change::TestResults {
            stage,
            step,
            suite,
            report,
            coverage,
        } => {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM steps WHERE run_id = ?1 AND stage_idx = ?2 AND idx = ?3",
                    params![run.0, int(*stage), int(*step)],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_none() {
                return Err(PortError::not_found(format!(
                    "run {run} has no step {step} in stage {stage}"
                ))
                .into());
            }
            let failures = serde_json::to_string(&report.failures).map_err(|e| {
                PortError::permanent(format!("cannot record the failed tests of run {run}: {e}"))
            })?;
            tx.execute(
                "INSERT INTO test_results (run_id, stage_idx, step_idx, suite, total, passed, failed, errored, skipped, failures_json, coverage)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id, stage_idx, step_idx) DO UPDATE SET
                    suite = excluded.suite, total = excluded.total, passed = excluded.passed,
                    failed = excluded.failed, errored = excluded.errored, skipped = excluded.skipped,
                    failures_json = excluded.failures_json, coverage = excluded.coverage",
                params![
                    run.0,
                    int(*stage),
                    int(*step),
                    suite.as_str(),
                    count(report.total)?,
                    count(report.passed)?,
                    count(report.failed)?,
                    count(report.errored)?,
                    count(report.skipped)?,
                    failures,
                    coverage,
                ],
            )?;
        }
        Change::Artifact(a) => {
            let size = i64::try_from(a.size).map_err(|_| {
                PortError::permanent(format!(
                    "artifact of run {run} is too large to record ({} bytes)",
                    a.size
                ))
            })?;
            tx.execute(
                "UPDATE runs SET artifact_digest = ?2, artifact_location = ?3, artifact_size = ?4 WHERE id = ?1",
                params![run.0, a.digest, a.location, size],
            )?;
        }
        Change::DeploymentStarted(d) => {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM deployments WHERE deployment_id = ?1",
                    [&d.deployment_id],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(PortError::conflict(format!(
                    "deployment {} is already recorded",
                    d.deployment_id
                ))
                .into());
            }
            insert_deployment(tx, d)?;
        }
        Change::DeploymentFinished {
            deployment_id,
            status,
            end_time,
            unit_tests_passed,
            integration_tests_passed,
            e2e_tests_passed,
            coverage_percentage,
        } => {
            let n = tx.execute(
                "UPDATE deployments SET status = ?2, end_time = ?3, unit_tests_passed = ?4,
                    integration_tests_passed = ?5, e2e_tests_passed = ?6, coverage_percentage = ?7
                 WHERE deployment_id = ?1",
                params![
                    deployment_id,
                    status.as_str(),
                    end_time.0,
                    unit_tests_passed,
                    integration_tests_passed,
                    e2e_tests_passed,
                    coverage_percentage,
                ],
            )?;
            if n == 0 {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                ))
                .into());
            }
        }
        Change::DeploymentInfrastructure {
            deployment_id,
            infrastructure_changed,
            rollback_unsafe,
            rollback_unsafe_reason,
        } => {
            let n = tx.execute(
                "UPDATE deployments SET infrastructure_changed = ?2, rollback_unsafe = ?3,
                    rollback_unsafe_reason = ?4
                 WHERE deployment_id = ?1",
                params![
                    deployment_id,
                    infrastructure_changed,
                    rollback_unsafe,
                    rollback_unsafe_reason,
                ],
            )?;
            if n == 0 {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                ))
                .into());
            }
        }
        Change::DeploymentRolledBack {
            deployment_id,
            reason,
            level,
            at,
        } => {
            let n = tx.execute(
                "UPDATE deployments SET status = ?2, rollback_reason = ?3, rollback_level = ?4, rollback_time = ?5
                 WHERE deployment_id = ?1",
                params![
                    deployment_id,
                    DeploymentStatus::RolledBack.as_str(),
                    reason,
                    level.as_str(),
                    at.0,
                ],
            )?;
            if n == 0 {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                ))
                .into());
            }
        }
        Change::IncidentOpened {
            environment,
            deployment_id,
            reason,
            at,
        } => {
            // An environment already held keeps its open incident (the partial unique
            // index `incidents_open` allows one); nothing is added.
            tx.execute(
                "INSERT INTO incidents (environment, deployment_id, reason, opened_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![environment, deployment_id, reason, at.0],
            )?;
        }
        Change::AlarmState {
            alarm,
            state,
            reason,
            at,
        } => upsert_alarm(tx, alarm, *state, reason, *at)?,
        Change::ApprovalsVoided {
            environment,
            reason,
            ..
        } => {
            tx.execute(
                "UPDATE approvals SET void = ?3 WHERE run_id = ?1 AND environment = ?2 AND void IS NULL",
                params![run.0, environment, reason],
            )?;
        }
        Change::Event(e) => insert_event(tx, e)?,
    }
    Ok(())
}

pub(crate) fn insert_event(tx: &Transaction<'_>, e: &Event) -> Fallible<()> {
    let data = serde_json::to_string(&e.data)
        .map_err(|err| PortError::permanent(format!("cannot record event `{}`: {err}", e.kind)))?;
    tx.execute(
        "INSERT INTO events (at, kind, run_id, environment, message, data_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.at.0, e.kind.as_str(), e.run.map(|r| r.0), e.environment, e.message, data],
    )?;
    Ok(())
}

fn upsert_alarm(
    tx: &Transaction<'_>,
    alarm: &str,
    state: AlarmState,
    reason: &str,
    at: Timestamp,
) -> Fallible<()> {
    tx.execute(
        "INSERT INTO alarm_states (alarm, state, reason, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (alarm) DO UPDATE SET state = excluded.state, reason = excluded.reason, at = excluded.at",
        params![alarm, state.as_str(), reason, at.0],
    )?;
    Ok(())
}

const ROLLBACK_COLUMNS: &str = "deployment_id, environment, from_version, to_version, level, status, reason, \
     trigger_json, started_at, ended_at, holder, detail_json, incident_id";

fn rollback_of(tx: &Transaction<'_>, deployment_id: &str) -> Fallible<Option<RollbackRecord>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {ROLLBACK_COLUMNS} FROM rollbacks WHERE deployment_id = ?1"
    ))?;
    let mut rows = stmt.query([deployment_id])?;
    rows.next()?.map(rollback_record).transpose()
}

fn rollback_record(r: &Row<'_>) -> Fallible<RollbackRecord> {
    let trigger: String = r.get(7)?;
    let detail: String = r.get(11)?;
    Ok(RollbackRecord {
        deployment_id: r.get(0)?,
        environment: r.get(1)?,
        from_version: r.get(2)?,
        to_version: r.get(3)?,
        level: r
            .get::<_, Option<String>>(4)?
            .map(|l| parse_enum(l, "rollbacks", "level", RollbackLevel::parse))
            .transpose()?,
        status: parse_enum(r.get(5)?, "rollbacks", "status", RollbackStatus::parse)?,
        reason: r.get(6)?,
        trigger: serde_json::from_str::<Trigger>(&trigger)
            .map_err(|_| bad("rollbacks", "trigger_json", trigger.clone()))?,
        started_at: Timestamp(r.get(8)?),
        ended_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
        holder: r.get(10)?,
        detail: serde_json::from_str(&detail)
            .map_err(|_| bad("rollbacks", "detail_json", detail.clone()))?,
        incident: r.get(12)?,
    })
}

/// Inserts (`INSERT INTO`) or replaces (`REPLACE INTO`) a rollback record.
fn write_rollback(tx: &Transaction<'_>, rec: &RollbackRecord, verb: &str) -> Fallible<()> {
    let unwritable = |what: &str, e: serde_json::Error| {
        PortError::permanent(format!(
            "cannot record the {what} of the rollback of deployment {}: {e}",
            rec.deployment_id
        ))
    };
    let trigger = serde_json::to_string(&rec.trigger).map_err(|e| unwritable("trigger", e))?;
    let detail = serde_json::to_string(&rec.detail).map_err(|e| unwritable("detail", e))?;
    tx.execute(
        &format!(
            "{verb} rollbacks ({ROLLBACK_COLUMNS}) VALUES
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            rec.deployment_id,
            rec.environment,
            rec.from_version,
            rec.to_version,
            rec.level.map(RollbackLevel::as_str),
            rec.status.as_str(),
            rec.reason,
            trigger,
            rec.started_at.0,
            rec.ended_at.map(|t| t.0),
            rec.holder,
            detail,
            rec.incident,
        ],
    )?;
    Ok(())
}

fn open_incident(tx: &Transaction<'_>, environment: &str) -> Fallible<Option<Incident>> {
    let row = tx
        .query_row(
            "SELECT id, deployment_id, reason, opened_at, resolved_at, resolved_by
             FROM incidents WHERE environment = ?1 AND resolved_at IS NULL",
            [environment],
            |r| {
                Ok(Incident {
                    id: r.get(0)?,
                    environment: environment.to_string(),
                    deployment_id: r.get(1)?,
                    reason: r.get(2)?,
                    opened_at: Timestamp(r.get(3)?),
                    resolved_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    resolved_by: r.get(5)?,
                })
            },
        )
        .optional()?;
    Ok(row)
}

fn count(n: u64) -> Fallible<i64> {
    i64::try_from(n)
        .map_err(|_| PortError::permanent(format!("test count {n} is too large to record")).into())
}

fn load_run(tx: &Transaction<'_>, run: RunId) -> Fallible<RunView> {
    let mut stmt = tx.prepare_cached(
        "SELECT pipeline, commit_sha, commit_message, commit_author, status, reason, created_at, started_at,
                ended_at, artifact_digest, artifact_location, artifact_size, hotfix
         FROM runs WHERE id = ?1",
    )?;
    let mut rows = stmt.query([run.0])?;
    let Some(r) = rows.next()? else {
        return Err(PortError::not_found(format!(
            "run {run} does not exist; `ferry history` lists the runs"
        ))
        .into());
    };
    let artifact = match (
        r.get::<_, Option<String>>(9)?,
        r.get::<_, Option<String>>(10)?,
        r.get::<_, Option<i64>>(11)?,
    ) {
        (Some(digest), Some(location), Some(size)) => Some(Artifact {
            digest,
            location,
            size: u64::try_from(size)
                .map_err(|_| bad("runs", "artifact_size", size.to_string()))?,
        }),
        (None, None, None) => None,
        (digest, _, _) => return Err(bad("runs", "artifact_digest", digest.unwrap_or_default())),
    };
    let mut view = RunView {
        id: run,
        pipeline: r.get(0)?,
        commit: Commit {
            sha: r.get(1)?,
            message: r.get(2)?,
            author: r.get(3)?,
        },
        status: parse_enum(r.get(4)?, "runs", "status", RunStatus::parse)?,
        reason: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        started_at: r.get::<_, Option<i64>>(7)?.map(Timestamp),
        ended_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        artifact,
        stages: Vec::new(),
        hotfix: r.get(12)?,
    };
    drop(rows);

    let mut stmt = tx.prepare_cached(
        "SELECT idx, name, status, started_at, ended_at FROM stages WHERE run_id = ?1 ORDER BY idx",
    )?;
    let mut rows = stmt.query([run.0])?;
    // Stage indexes as stored, parallel to `view.stages`, to attach the steps.
    let mut indexes = Vec::new();
    while let Some(r) = rows.next()? {
        indexes.push(r.get::<_, i64>(0)?);
        view.stages.push(StageView {
            name: r.get(1)?,
            status: parse_enum(r.get(2)?, "stages", "status", StageStatus::parse)?,
            started_at: r.get::<_, Option<i64>>(3)?.map(Timestamp),
            ended_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
            steps: Vec::new(),
        });
    }
    drop(rows);

    let mut stmt = tx.prepare_cached(
        "SELECT stage_idx, name, kind, status, started_at, ended_at, exit_code, reason, log
         FROM steps WHERE run_id = ?1 ORDER BY stage_idx, idx",
    )?;
    let mut rows = stmt.query([run.0])?;
    while let Some(r) = rows.next()? {
        let stage_idx: i64 = r.get(0)?;
        let step = StepView {
            name: r.get(1)?,
            kind: r.get(2)?,
            status: parse_enum(r.get(3)?, "steps", "status", StepStatus::parse)?,
            started_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
            ended_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
            exit_code: r.get(6)?,
            reason: r.get(7)?,
            log: r.get(8)?,
        };
        let pos = indexes
            .binary_search(&stage_idx)
            .map_err(|_| bad("steps", "stage_idx", stage_idx.to_string()))?;
        view.stages[pos].steps.push(step);
    }
    Ok(view)
}

fn decisions(tx: &Transaction<'_>, run: RunId, environment: &str) -> Fallible<Vec<Decision>> {
    let mut stmt = tx.prepare_cached(
        "SELECT approved, by_whom, reason, at, digest, void FROM approvals WHERE run_id = ?1 AND environment = ?2 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![run.0, environment], |r| {
            Ok(Decision {
                approved: r.get(0)?,
                by: r.get(1)?,
                reason: r.get(2)?,
                at: Timestamp(r.get(3)?),
                digest: r.get(4)?,
                void: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Writes `lease` as the environment's lease, whoever held it.
fn put_lease(tx: &Transaction<'_>, lease: &Lease) -> Fallible<()> {
    tx.execute(
        "INSERT INTO leases (environment, run_id, holder, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (environment) DO UPDATE
         SET run_id = excluded.run_id, holder = excluded.holder, expires_at = excluded.expires_at",
        params![
            lease.environment,
            lease.run.0,
            lease.holder,
            lease.expires_at.0
        ],
    )?;
    Ok(())
}

fn current_lease(tx: &Transaction<'_>, environment: &str) -> Fallible<Option<Lease>> {
    let row = tx
        .query_row(
            "SELECT run_id, holder, expires_at FROM leases WHERE environment = ?1",
            [environment],
            |r| {
                Ok(Lease {
                    environment: environment.to_string(),
                    run: RunId(r.get(0)?),
                    holder: r.get(1)?,
                    expires_at: Timestamp(r.get(2)?),
                })
            },
        )
        .optional()?;
    Ok(row)
}

/// The deployment columns, in the order [`deployment`] reads them (a macro so that
/// [`LAST_KNOWN_GOOD`] can be one `concat!`ed literal).
macro_rules! deployment_columns {
    () => {
        "deployment_id, environment, version, status, start_time, end_time, infrastructure_changed, \
         commit_message, commit_author, pipeline_execution_id, unit_tests_passed, integration_tests_passed, \
         e2e_tests_passed, coverage_percentage, rollback_reason, rollback_level, rollback_time, \
         artifact_location, expires_at, run_id, artifact_digest, previous_version, config_digest, \
         template_digests, rollback_unsafe, rollback_unsafe_reason"
    };
}
const DEPLOYMENT_COLUMNS: &str = deployment_columns!();

/// The seed's `getLastKnownGoodDeployment` (§3.5.2): one seek into
/// `deployments_env_status`, newest first. The ordering column is the index's third, so
/// SQLite needs no sort (checked by a test on `EXPLAIN QUERY PLAN`).
const LAST_KNOWN_GOOD: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE environment = ?1 AND status = ?2 ORDER BY start_time DESC LIMIT 1"
);

/// An environment's newest deployments: a walk of `deployments_env_time`, newest first.
const DEPLOYMENTS_OF_ENV: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE environment = ?1 ORDER BY start_time DESC, deployment_id DESC LIMIT ?2"
);

/// A page of an environment's history: a seek into `deployments_env_page` past the
/// cursor, walking it in order (no sort; checked on `EXPLAIN QUERY PLAN`).
const DEPLOYMENTS_PAGE_OF_ENV: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE environment = ?1 AND (start_time, deployment_id) < (?2, ?3)
     ORDER BY start_time DESC, deployment_id DESC LIMIT ?4"
);

/// A page of every environment's history, through `deployments_page`.
const DEPLOYMENTS_PAGE: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE (start_time, deployment_id) < (?1, ?2)
     ORDER BY start_time DESC, deployment_id DESC LIMIT ?3"
);

/// The DORA samples of an environment since an instant: a range of the covering index
/// `deployments_dora`, each row joined to its run (primary key) and its rollback
/// (primary key).
const DORA_SAMPLES: &str = "SELECT d.start_time, d.end_time, d.status, r.created_at,
        rb.trigger_json, rb.status, rb.started_at, rb.ended_at
     FROM deployments d
     LEFT JOIN runs r ON r.id = d.run_id
     LEFT JOIN rollbacks rb ON rb.deployment_id = d.deployment_id
     WHERE d.environment = ?1 AND d.start_time >= ?2
     ORDER BY d.environment, d.start_time";

/// What an environment runs now: the same walk, stopping at the first deployment that
/// was not rolled back.
const CURRENT_DEPLOYMENT: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE environment = ?1 AND status != ?2 ORDER BY start_time DESC, deployment_id DESC LIMIT 1"
);

fn deployment(r: &Row<'_>) -> Fallible<DeploymentRecord> {
    Ok(DeploymentRecord {
        deployment_id: r.get(0)?,
        environment: r.get(1)?,
        version: r.get(2)?,
        status: parse_enum(r.get(3)?, "deployments", "status", DeploymentStatus::parse)?,
        start_time: r.get(4)?,
        end_time: r.get(5)?,
        infrastructure_changed: r.get(6)?,
        commit_message: r.get(7)?,
        commit_author: r.get(8)?,
        pipeline_execution_id: r.get(9)?,
        unit_tests_passed: r.get(10)?,
        integration_tests_passed: r.get(11)?,
        e2e_tests_passed: r.get(12)?,
        // SQLite stores a NaN as NULL; give it back as the NaN it was.
        coverage_percentage: r.get::<_, Option<f64>>(13)?.unwrap_or(f64::NAN),
        rollback_reason: r.get(14)?,
        rollback_level: r
            .get::<_, Option<String>>(15)?
            .map(|l| parse_enum(l, "deployments", "rollback_level", RollbackLevel::parse))
            .transpose()?,
        rollback_time: r.get(16)?,
        artifact_location: r.get(17)?,
        expires_at: r.get(18)?,
        run_id: RunId(r.get(19)?),
        artifact_digest: r.get(20)?,
        previous_version: r.get(21)?,
        config_digest: r.get(22)?,
        template_digests: {
            let json: String = r.get(23)?;
            serde_json::from_str::<BTreeMap<String, String>>(&json)
                .map_err(|_| bad("deployments", "template_digests", json.clone()))?
        },
        rollback_unsafe: r.get(24)?,
        rollback_unsafe_reason: r.get(25)?,
    })
}

fn insert_deployment(tx: &Transaction<'_>, d: &DeploymentRecord) -> Fallible<()> {
    let templates = serde_json::to_string(&d.template_digests).map_err(|e| {
        PortError::permanent(format!(
            "cannot record the template digests of deployment {}: {e}",
            d.deployment_id
        ))
    })?;
    tx.execute(
        &format!(
            "INSERT INTO deployments ({DEPLOYMENT_COLUMNS}) VALUES
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
              ?23, ?24, ?25, ?26)"
        ),
        params![
            d.deployment_id,
            d.environment,
            d.version,
            d.status.as_str(),
            d.start_time,
            d.end_time,
            d.infrastructure_changed,
            d.commit_message,
            d.commit_author,
            d.pipeline_execution_id,
            d.unit_tests_passed,
            d.integration_tests_passed,
            d.e2e_tests_passed,
            d.coverage_percentage,
            d.rollback_reason,
            d.rollback_level.map(RollbackLevel::as_str),
            d.rollback_time,
            d.artifact_location,
            d.expires_at,
            d.run_id.0,
            d.artifact_digest,
            d.previous_version,
            d.config_digest,
            templates,
            d.rollback_unsafe,
            d.rollback_unsafe_reason,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `last_known_good` is one seek into the seed's EnvironmentStatusIndex, with no sort.
    #[test]
    fn last_known_good_uses_the_environment_status_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
        let conn = store.lock();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LAST_KNOWN_GOOD}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(params!["production", "succeeded"], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("USING INDEX deployments_env_status (environment=? AND status=?)"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// The dashboard's pages and DORA samples seek into an index and need no sort.
    #[test]
    fn dashboard_queries_walk_an_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
        let conn = store.lock();
        let cases: [(&str, Vec<Value>); 3] = [
            (
                DEPLOYMENTS_PAGE_OF_ENV,
                vec![
                    Value::from("production".to_string()),
                    5.into(),
                    Value::from("x".to_string()),
                    50.into(),
                ],
            ),
            (
                DEPLOYMENTS_PAGE,
                vec![5.into(), Value::from("x".to_string()), 50.into()],
            ),
            (
                DORA_SAMPLES,
                vec![Value::from("production".to_string()), 5.into()],
            ),
        ];
        for (sql, args) in cases {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains("USING INDEX deployments_")
                    || plan.contains("USING COVERING INDEX deployments_"),
                "{sql}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
            if sql == DORA_SAMPLES {
                assert!(
                    plan.contains("COVERING INDEX deployments_dora"),
                    "{sql}: {plan}"
                );
            }
            assert!(
                plan.lines().all(|l| !l.starts_with("SCAN")),
                "{sql}: {plan}"
            );
        }
    }

    /// An environment's deployments and its current one walk an index (newest first)
    /// instead of scanning and sorting the table.
    #[test]
    fn environment_queries_walk_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
        let conn = store.lock();
        for sql in [DEPLOYMENTS_OF_ENV, CURRENT_DEPLOYMENT] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params!["production", "rolled_back"], |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains("USING INDEX deployments_env"),
                "{sql}: {plan}"
            );
            assert!(
                !plan.contains("SCAN deployments\n")
                    && plan.lines().all(|l| l != "SCAN deployments"),
                "{sql}: {plan}"
            );
        }
    }
}
