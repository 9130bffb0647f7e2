//! The counts behind `GET /metrics` (`Store::metric_counts`), none of which reads every
//! deployment, so a scrape stays fast with 100 k deployments: the duration histogram
//! comes from `deployment_durations`, a few rows per environment kept by triggers as
//! deployments finish (migration 9); rollbacks and runs are grouped reads of covering
//! indexes (`tests/store/metrics.rs` checks the query plans).

use crate::error::Fallible;
use ferry_engine::ports::{DURATION_BOUNDS_MS, DurationHistogram, MetricCounts};
use rusqlite::Transaction;
use std::collections::BTreeMap;

/// The histogram read: non-cumulative counts per bound (-1: longer than the last).
pub(crate) const DURATIONS_SQL: &str =
    "SELECT environment, bucket, count, sum_ms FROM deployment_durations";

/// The rollback read.
pub(crate) const ROLLBACKS_SQL: &str = "SELECT environment, COALESCE(level, 'stage'), COUNT(*)
     FROM rollbacks GROUP BY environment, level";

/// The run read.
pub(crate) const RUNS_SQL: &str = "SELECT status, COUNT(*) FROM runs GROUP BY status";

pub(crate) fn metric_counts(tx: &Transaction<'_>) -> Fallible<MetricCounts> {
    let mut out = MetricCounts::default();
    // environment → (count per bound index, beyond the last, sum)
    let mut raw: BTreeMap<String, (Vec<u64>, u64, i64)> = BTreeMap::new();
    let mut stmt = tx.prepare(DURATIONS_SQL)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let env: String = r.get(0)?;
        let bucket: i64 = r.get(1)?;
        let count = u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
        let sum: i64 = r.get(3)?;
        let e = raw
            .entry(env)
            .or_insert_with(|| (vec![0; DURATION_BOUNDS_MS.len()], 0, 0));
        match DURATION_BOUNDS_MS.iter().position(|b| *b == bucket) {
            Some(i) => e.0[i] += count,
            None => e.1 += count,
        }
        e.2 = e.2.saturating_add(sum);
    }
    for (env, (per_bound, beyond, sum)) in raw {
        let mut cumulative = Vec::with_capacity(per_bound.len());
        let mut running = 0;
        for n in per_bound {
            running += n;
            cumulative.push(running);
        }
        let count = running + beyond;
        if count == 0 {
            continue;
        }
        out.durations.insert(
            env,
            DurationHistogram {
                buckets: cumulative,
                count,
                sum_ms: sum,
            },
        );
    }
    let mut stmt = tx.prepare(ROLLBACKS_SQL)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(2)?;
        *out.rollbacks.entry((r.get(0)?, r.get(1)?)).or_default() += u64::try_from(n).unwrap_or(0);
    }
    let mut stmt = tx.prepare(RUNS_SQL)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n: i64 = r.get(1)?;
        out.runs.insert(r.get(0)?, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// The SQL of every metric read, and of the pipeline alarms' newest-events-of-a-kind
/// read, for query-plan tests.
pub fn metric_queries() -> Vec<String> {
    vec![
        DURATIONS_SQL.to_string(),
        ROLLBACKS_SQL.to_string(),
        RUNS_SQL.to_string(),
        "SELECT id, at, kind, run_id, environment, message, data_json FROM events WHERE 1 = 1 AND kind = 'run_failed' ORDER BY id DESC LIMIT 4".to_string(),
    ]
}
