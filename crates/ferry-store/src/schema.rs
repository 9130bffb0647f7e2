//! The database schema, as an ordered list of migrations tracked by `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes the database from schema `i` to schema `i + 1`. A
//! migration is never edited once released: a change to the schema is a new entry at the
//! end. Each one runs in its own `BEGIN IMMEDIATE` transaction together with the bump of
//! `user_version`, so a crash or a second ferry starting at the same time leaves the
//! database at one version or the next, never in between.

use rusqlite::{Connection, TransactionBehavior};

/// Every migration, oldest first. The deployment columns are the seed's
/// `DeploymentRecord` (§3.5.1, §4.1) in snake_case, plus ferry's run id, artifact digest,
/// previous version and (from schema 2) release set digests.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline          TEXT    NOT NULL,
    commit_sha        TEXT    NOT NULL,
    commit_message    TEXT    NOT NULL,
    commit_author     TEXT    NOT NULL,
    "trigger"         TEXT    NOT NULL,
    triggered_by      TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    reason            TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    ended_at          INTEGER,
    artifact_digest   TEXT,
    artifact_location TEXT,
    artifact_size     INTEGER
) STRICT;
CREATE INDEX runs_status ON runs(status, id DESC);

CREATE TABLE stages (
    run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    PRIMARY KEY (run_id, idx)
) STRICT, WITHOUT ROWID;

CREATE TABLE steps (
    run_id     INTEGER NOT NULL,
    stage_idx  INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    exit_code  INTEGER,
    reason     TEXT,
    log        TEXT,
    PRIMARY KEY (run_id, stage_idx, idx),
    FOREIGN KEY (run_id, stage_idx) REFERENCES stages(run_id, idx) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE test_results (
    run_id        INTEGER NOT NULL,
    stage_idx     INTEGER NOT NULL,
    step_idx      INTEGER NOT NULL,
    suite         TEXT    NOT NULL,
    total         INTEGER NOT NULL,
    passed        INTEGER NOT NULL,
    failed        INTEGER NOT NULL,
    errored       INTEGER NOT NULL,
    skipped       INTEGER NOT NULL,
    failures_json TEXT    NOT NULL,
    coverage      REAL,
    PRIMARY KEY (run_id, stage_idx, step_idx),
    FOREIGN KEY (run_id, stage_idx, step_idx) REFERENCES steps(run_id, stage_idx, idx) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Append-only. No foreign key on run_id: the audit trail outlives whatever it describes.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    run_id      INTEGER,
    environment TEXT,
    message     TEXT    NOT NULL,
    data_json   TEXT    NOT NULL
) STRICT;
CREATE INDEX events_run ON events(run_id, id);
CREATE INDEX events_environment ON events(environment, id);

-- coverage_percentage may be NULL only to carry a NaN (SQLite stores NaN as NULL).
CREATE TABLE deployments (
    deployment_id            TEXT    PRIMARY KEY NOT NULL,
    environment              TEXT    NOT NULL,
    version                  TEXT    NOT NULL,
    status                   TEXT    NOT NULL,
    start_time               INTEGER NOT NULL,
    end_time                 INTEGER,
    infrastructure_changed   INTEGER NOT NULL CHECK (infrastructure_changed IN (0, 1)),
    commit_message           TEXT    NOT NULL,
    commit_author            TEXT    NOT NULL,
    pipeline_execution_id    TEXT    NOT NULL,
    unit_tests_passed        INTEGER NOT NULL CHECK (unit_tests_passed IN (0, 1)),
    integration_tests_passed INTEGER NOT NULL CHECK (integration_tests_passed IN (0, 1)),
    e2e_tests_passed         INTEGER NOT NULL CHECK (e2e_tests_passed IN (0, 1)),
    coverage_percentage      REAL,
    rollback_reason          TEXT,
    rollback_level           TEXT,
    rollback_time            INTEGER,
    artifact_location        TEXT    NOT NULL,
    expires_at               INTEGER NOT NULL,
    run_id                   INTEGER NOT NULL,
    artifact_digest          TEXT    NOT NULL,
    previous_version         TEXT
) STRICT;
-- The seed's EnvironmentStatusIndex, with the start time so "last known good" is one
-- index seek (see `LAST_KNOWN_GOOD`).
CREATE INDEX deployments_env_status ON deployments(environment, status, start_time DESC);
CREATE INDEX deployments_env_time ON deployments(environment, start_time DESC);
CREATE INDEX deployments_time ON deployments(start_time DESC);
CREATE INDEX deployments_run ON deployments(run_id);

CREATE TABLE approvals (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    environment TEXT    NOT NULL,
    approved    INTEGER NOT NULL CHECK (approved IN (0, 1)),
    by_whom     TEXT    NOT NULL,
    reason      TEXT,
    at          INTEGER NOT NULL,
    PRIMARY KEY (run_id, environment)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
    environment TEXT    PRIMARY KEY NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"#,
    // 2: rollback. Deployments carry their release set (the pipeline file's digest and
    // the templates'); one rollback record per deployment (the idempotency key of seed
    // Property 2); incidents, at most one open per environment; pipeline files by
    // digest; alarms' last states. `events.run_id` is already nullable (events about
    // alarms and incidents belong to no run), so the events table stays as it is.
    r#"
ALTER TABLE deployments ADD COLUMN config_digest TEXT;
-- Template path → `sha256:<hex>`, as a JSON object.
ALTER TABLE deployments ADD COLUMN template_digests TEXT NOT NULL DEFAULT '{}';

CREATE TABLE rollbacks (
    deployment_id TEXT    PRIMARY KEY NOT NULL,
    environment   TEXT    NOT NULL,
    from_version  TEXT    NOT NULL,
    to_version    TEXT,
    level         TEXT,
    status        TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    trigger_json  TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    holder        TEXT    NOT NULL,
    detail_json   TEXT    NOT NULL,
    incident_id   INTEGER
) STRICT;
CREATE INDEX rollbacks_started ON rollbacks(started_at DESC, deployment_id DESC);

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    environment   TEXT    NOT NULL,
    deployment_id TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    opened_at     INTEGER NOT NULL,
    resolved_at   INTEGER,
    resolved_by   TEXT
) STRICT;
-- An environment is held by at most one open incident.
CREATE UNIQUE INDEX incidents_open ON incidents(environment) WHERE resolved_at IS NULL;

CREATE TABLE configs (
    digest TEXT PRIMARY KEY NOT NULL,
    text   TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE alarm_states (
    alarm  TEXT    PRIMARY KEY NOT NULL,
    state  TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"#,
    // 3: leases may be held outside any run (a manual or alarm-triggered rollback leases
    // under a negative id of its own), so `leases.run_id` no longer references `runs`.
    r#"
CREATE TABLE leases_new (
    environment TEXT    PRIMARY KEY NOT NULL,
    run_id      INTEGER NOT NULL,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO leases_new SELECT environment, run_id, holder, expires_at FROM leases;
DROP TABLE leases;
ALTER TABLE leases_new RENAME TO leases;
"#,
    // 4: the process driving a run, so a run whose ferry was killed is found and ended.
    r#"
ALTER TABLE runs ADD COLUMN driver TEXT NOT NULL DEFAULT '';
"#,
    // 5: webhook deliveries seen by `ferry serve` (GitHub's `X-GitHub-Delivery`), so a
    // redelivered event starts nothing new; `run_id` is the run it started, if any.
    r#"
CREATE TABLE deliveries (
    id     TEXT    PRIMARY KEY NOT NULL,
    run_id INTEGER,
    at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"#,
    // 6: approval rules (N of M): every decision per run and environment, in order, with
    // the artifact digest the person saw and why it was voided; hotfix runs.
    r#"
CREATE TABLE approvals_new (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    environment TEXT    NOT NULL,
    approved    INTEGER NOT NULL CHECK (approved IN (0, 1)),
    by_whom     TEXT    NOT NULL,
    reason      TEXT,
    at          INTEGER NOT NULL,
    digest      TEXT,
    void        TEXT
) STRICT;
INSERT INTO approvals_new (run_id, environment, approved, by_whom, reason, at)
    SELECT run_id, environment, approved, by_whom, reason, at FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_run_env ON approvals(run_id, environment, id);
ALTER TABLE runs ADD COLUMN hotfix INTEGER NOT NULL DEFAULT 0 CHECK (hotfix IN (0, 1));
"#,
    // 7: deployment windows: one-off freezes of an environment (`ferry freeze`) and
    // break-glass overrides (a run let through a closed window by two people).
    r#"
CREATE TABLE freezes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    from_at     INTEGER NOT NULL,
    until_at    INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    by_whom     TEXT    NOT NULL,
    lifted_at   INTEGER,
    lifted_by   TEXT
) STRICT;
CREATE INDEX freezes_environment ON freezes(environment, until_at);

CREATE TABLE break_glass (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    environment  TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    confirmed_by TEXT,
    confirmed_at INTEGER,
    UNIQUE (run_id, environment)
) STRICT;
"#,
    // 8: the security gate's findings, kept with the run (issue 5). `aliases` is a JSON
    // list of strings; `idx` keeps the scanners' order.
    r#"
CREATE TABLE findings (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    tool        TEXT    NOT NULL,
    rule_id     TEXT    NOT NULL,
    aliases     TEXT    NOT NULL DEFAULT '[]',
    severity    TEXT    NOT NULL CHECK (severity IN ('LOW', 'MODERATE', 'HIGH', 'CRITICAL')),
    treatment   TEXT    NOT NULL CHECK (treatment IN ('blocks', 'warns', 'informs', 'allowlisted', 'expired')),
    reason      TEXT,
    file        TEXT,
    line        INTEGER,
    logical_id  TEXT,
    package     TEXT,
    version     TEXT,
    message     TEXT    NOT NULL,
    PRIMARY KEY (run_id, idx)
) STRICT;
CREATE INDEX findings_run ON findings(run_id, severity);
"#,
    // 9: metrics and the alarms on the pipeline itself. `/metrics` reads deployment
    // durations per environment from `deployment_durations`, a histogram kept by triggers
    // as deployments finish (so a scrape reads a few rows, not every deployment; the
    // bucket bounds are `ferry_engine::ports::DURATION_BOUNDS_MS`, non-cumulative, -1 for
    // longer), and rollbacks per environment and level from a covering index; the
    // pipeline alarms read the newest events of one kind (`run_failed`).
    r#"
CREATE TABLE deployment_durations (
    environment TEXT    NOT NULL,
    bucket      INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    sum_ms      INTEGER NOT NULL,
    PRIMARY KEY (environment, bucket)
) STRICT, WITHOUT ROWID;
INSERT INTO deployment_durations (environment, bucket, count, sum_ms)
    SELECT environment, CASE WHEN (end_time - start_time) <= 1000 THEN 1000 WHEN (end_time - start_time) <= 5000 THEN 5000 WHEN (end_time - start_time) <= 10000 THEN 10000 WHEN (end_time - start_time) <= 30000 THEN 30000 WHEN (end_time - start_time) <= 60000 THEN 60000 WHEN (end_time - start_time) <= 120000 THEN 120000 WHEN (end_time - start_time) <= 300000 THEN 300000 WHEN (end_time - start_time) <= 600000 THEN 600000 WHEN (end_time - start_time) <= 1200000 THEN 1200000 WHEN (end_time - start_time) <= 1800000 THEN 1800000 WHEN (end_time - start_time) <= 3600000 THEN 3600000 ELSE -1 END, COUNT(*), SUM(end_time - start_time)
    FROM deployments WHERE end_time IS NOT NULL GROUP BY 1, 2;
CREATE TRIGGER deployment_durations_insert AFTER INSERT ON deployments
WHEN NEW.end_time IS NOT NULL BEGIN
    INSERT INTO deployment_durations (environment, bucket, count, sum_ms)
    VALUES (NEW.environment, CASE WHEN (NEW.end_time - NEW.start_time) <= 1000 THEN 1000 WHEN (NEW.end_time - NEW.start_time) <= 5000 THEN 5000 WHEN (NEW.end_time - NEW.start_time) <= 10000 THEN 10000 WHEN (NEW.end_time - NEW.start_time) <= 30000 THEN 30000 WHEN (NEW.end_time - NEW.start_time) <= 60000 THEN 60000 WHEN (NEW.end_time - NEW.start_time) <= 120000 THEN 120000 WHEN (NEW.end_time - NEW.start_time) <= 300000 THEN 300000 WHEN (NEW.end_time - NEW.start_time) <= 600000 THEN 600000 WHEN (NEW.end_time - NEW.start_time) <= 1200000 THEN 1200000 WHEN (NEW.end_time - NEW.start_time) <= 1800000 THEN 1800000 WHEN (NEW.end_time - NEW.start_time) <= 3600000 THEN 3600000 ELSE -1 END, 1, NEW.end_time - NEW.start_time)
    ON CONFLICT (environment, bucket) DO UPDATE SET count = count + 1, sum_ms = sum_ms + excluded.sum_ms;
END;
CREATE TRIGGER deployment_durations_update AFTER UPDATE OF environment, start_time, end_time ON deployments
BEGIN
    UPDATE deployment_durations SET count = count - 1, sum_ms = sum_ms - (OLD.end_time - OLD.start_time)
    WHERE OLD.end_time IS NOT NULL AND environment = OLD.environment AND bucket = CASE WHEN (OLD.end_time - OLD.start_time) <= 1000 THEN 1000 WHEN (OLD.end_time - OLD.start_time) <= 5000 THEN 5000 WHEN (OLD.end_time - OLD.start_time) <= 10000 THEN 10000 WHEN (OLD.end_time - OLD.start_time) <= 30000 THEN 30000 WHEN (OLD.end_time - OLD.start_time) <= 60000 THEN 60000 WHEN (OLD.end_time - OLD.start_time) <= 120000 THEN 120000 WHEN (OLD.end_time - OLD.start_time) <= 300000 THEN 300000 WHEN (OLD.end_time - OLD.start_time) <= 600000 THEN 600000 WHEN (OLD.end_time - OLD.start_time) <= 1200000 THEN 1200000 WHEN (OLD.end_time - OLD.start_time) <= 1800000 THEN 1800000 WHEN (OLD.end_time - OLD.start_time) <= 3600000 THEN 3600000 ELSE -1 END;
    INSERT INTO deployment_durations (environment, bucket, count, sum_ms)
    SELECT NEW.environment, CASE WHEN (NEW.end_time - NEW.start_time) <= 1000 THEN 1000 WHEN (NEW.end_time - NEW.start_time) <= 5000 THEN 5000 WHEN (NEW.end_time - NEW.start_time) <= 10000 THEN 10000 WHEN (NEW.end_time - NEW.start_time) <= 30000 THEN 30000 WHEN (NEW.end_time - NEW.start_time) <= 60000 THEN 60000 WHEN (NEW.end_time - NEW.start_time) <= 120000 THEN 120000 WHEN (NEW.end_time - NEW.start_time) <= 300000 THEN 300000 WHEN (NEW.end_time - NEW.start_time) <= 600000 THEN 600000 WHEN (NEW.end_time - NEW.start_time) <= 1200000 THEN 1200000 WHEN (NEW.end_time - NEW.start_time) <= 1800000 THEN 1800000 WHEN (NEW.end_time - NEW.start_time) <= 3600000 THEN 3600000 ELSE -1 END, 1, NEW.end_time - NEW.start_time
    WHERE NEW.end_time IS NOT NULL
    ON CONFLICT (environment, bucket) DO UPDATE SET count = count + 1, sum_ms = sum_ms + excluded.sum_ms;
END;
CREATE TRIGGER deployment_durations_delete AFTER DELETE ON deployments
WHEN OLD.end_time IS NOT NULL BEGIN
    UPDATE deployment_durations SET count = count - 1, sum_ms = sum_ms - (OLD.end_time - OLD.start_time)
    WHERE environment = OLD.environment AND bucket = CASE WHEN (OLD.end_time - OLD.start_time) <= 1000 THEN 1000 WHEN (OLD.end_time - OLD.start_time) <= 5000 THEN 5000 WHEN (OLD.end_time - OLD.start_time) <= 10000 THEN 10000 WHEN (OLD.end_time - OLD.start_time) <= 30000 THEN 30000 WHEN (OLD.end_time - OLD.start_time) <= 60000 THEN 60000 WHEN (OLD.end_time - OLD.start_time) <= 120000 THEN 120000 WHEN (OLD.end_time - OLD.start_time) <= 300000 THEN 300000 WHEN (OLD.end_time - OLD.start_time) <= 600000 THEN 600000 WHEN (OLD.end_time - OLD.start_time) <= 1200000 THEN 1200000 WHEN (OLD.end_time - OLD.start_time) <= 1800000 THEN 1800000 WHEN (OLD.end_time - OLD.start_time) <= 3600000 THEN 3600000 ELSE -1 END;
END;
CREATE INDEX rollbacks_env_level ON rollbacks(environment, level);
CREATE INDEX events_kind ON events(kind, id);
"#,
    // 10: infrastructure deployed by the environment's infrastructure step (issue 5):
    // whether the deployment's change is rollback-unsafe (a stateful resource replaced or
    // removed, a migration), and why; such a deployment is never rolled back
    // automatically.
    r#"
ALTER TABLE deployments ADD COLUMN rollback_unsafe INTEGER NOT NULL DEFAULT 0 CHECK (rollback_unsafe IN (0, 1));
ALTER TABLE deployments ADD COLUMN rollback_unsafe_reason TEXT;
"#,
    // 11: the notification outbox (DESIGN invariant 4). `outbox_cursors` holds, per
    // channel id, the last event id already considered; `outbox` one row per event owed
    // to a channel, filled in the same transaction as the cursor moves, so each event
    // reaches each channel exactly once. `next_at` NULL: a dead letter that waits for
    // `ferry notify retry`.
    r#"
CREATE TABLE outbox_cursors (
    channel  TEXT    PRIMARY KEY NOT NULL,
    event_id INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT    NOT NULL,
    event_id     INTEGER NOT NULL REFERENCES events(id),
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    rounds       INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (channel, event_id)
) STRICT;
CREATE INDEX outbox_channel ON outbox(channel, status, id);
"#,
    // 12: the dashboard (issue 6): pages of the deployment history walk these in order
    // (`deployments_before`: the `(start_time, deployment_id)` cursor), and the DORA
    // samples read a covering index and join each deployment to its run and rollback.
    r#"
CREATE INDEX deployments_env_page ON deployments(environment, start_time DESC, deployment_id DESC);
CREATE INDEX deployments_page ON deployments(start_time DESC, deployment_id DESC);
-- Covers what the DORA samples read of a deployment, so their range is read from the
-- index alone (the rows carry commit messages and release sets).
CREATE INDEX deployments_dora ON deployments(environment, start_time, end_time, status, run_id, deployment_id);
"#,
];

/// The schema version this code writes.
pub fn current_version() -> i64 {
    // The list is a compile-time constant of a handful of entries.
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// The database's schema version.
pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// What [`migrate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The database is at [`current_version`] (possibly after applying migrations).
    Current,
    /// The database is newer than this code: nothing was touched.
    Newer(i64),
}

/// Applies every migration the database has not seen yet, one transaction each. The
/// version is re-read inside each transaction, so two processes opening a fresh database
/// at once apply each migration exactly once. A database that is already current is only
/// read, so opening it never waits for another process's write lock.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    if let Some(done) = classify(user_version(conn)?) {
        return Ok(done);
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = user_version(&tx)?;
        if let Some(done) = classify(version) {
            return Ok(done);
        }
        let Some(sql) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(Migrated::Newer(version));
        };
        tx.execute_batch(sql)?;
        // PRAGMA does not take bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
        tx.commit()?;
    }
}

/// `None` while migrations remain to be applied. A negative version is no version this
/// code ever wrote, so it is refused like a newer one.
fn classify(version: i64) -> Option<Migrated> {
    if version == current_version() {
        Some(Migrated::Current)
    } else if version > current_version() || version < 0 {
        Some(Migrated::Newer(version))
    } else {
        None
    }
}
