//! The counts behind `GET /metrics` (`Store::metric_counts`): three grouped reads, each
//! answered from an index alone (migration 8 adds the ones they need; see the
//! `metric_counts_use_indexes` test for the query plans), so a scrape stays fast with
//! 100 k deployments.

use crate::error::Fallible;
use ferry_engine::ports::{DurationHistogram, MetricCounts};
use rusqlite::Transaction;
use rusqlite::types::Value;

/// The histogram read: one `SUM(d <= bound)` column per bound.
pub(crate) fn durations_sql(bounds: usize) -> String {
    let mut sql = String::from("SELECT environment, COUNT(*), TOTAL(end_time - start_time)");
    for i in 0..bounds {
        sql.push_str(&format!(", SUM(end_time - start_time <= ?{})", i + 1));
    }
    sql.push_str(" FROM deployments WHERE end_time IS NOT NULL GROUP BY environment");
    sql
}

/// The rollback read.
pub(crate) const ROLLBACKS_SQL: &str = "SELECT environment, COALESCE(level, 'stage'), COUNT(*)
     FROM rollbacks GROUP BY environment, level";

/// The run read.
pub(crate) const RUNS_SQL: &str = "SELECT status, COUNT(*) FROM runs GROUP BY status";

pub(crate) fn metric_counts(tx: &Transaction<'_>, bounds_ms: &[i64]) -> Fallible<MetricCounts> {
    let mut out = MetricCounts::default();
    let mut stmt = tx.prepare(&durations_sql(bounds_ms.len()))?;
    let args: Vec<Value> = bounds_ms.iter().map(|b| Value::Integer(*b)).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        let env: String = r.get(0)?;
        let count: i64 = r.get(1)?;
        let sum: f64 = r.get(2)?;
        let mut buckets = Vec::with_capacity(bounds_ms.len());
        for i in 0..bounds_ms.len() {
            let n: Option<i64> = r.get(3 + i)?;
            buckets.push(u64::try_from(n.unwrap_or(0)).unwrap_or(0));
        }
        out.durations.insert(
            env,
            DurationHistogram {
                buckets,
                count: u64::try_from(count).unwrap_or(0),
                // Milliseconds fit an i64 for any sum SQLite can hold exactly.
                sum_ms: sum as i64,
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

/// The SQL of every metric read (the histogram with `bounds` bounds), and of the
/// pipeline alarms' newest-events-of-a-kind read, for query-plan tests.
pub fn metric_queries(bounds: usize) -> Vec<String> {
    vec![
        durations_sql(bounds),
        ROLLBACKS_SQL.to_string(),
        RUNS_SQL.to_string(),
        "SELECT id, at, kind, run_id, environment, message, data_json FROM events WHERE 1 = 1 AND kind = 'run_failed' ORDER BY id DESC LIMIT 4".to_string(),
    ]
}
