//! A run's security findings (table `findings`, the last migration): recorded when the
//! security gate finishes, before its verdict is acted on; replaced as a whole when a
//! resumed run scans again.

use crate::error::{Fallible, bad};
use crate::{ensure_run, int, parse_enum, unsigned};
use ferry_core::RunId;
use ferry_core::findings::{FindingCounts, FindingRecord, Severity, Treatment};
use rusqlite::{Transaction, params};

const COLUMNS: &str = "tool, rule_id, aliases, severity, treatment, reason, file, line, logical_id, package, version, message";

pub(crate) fn record(tx: &Transaction<'_>, run: RunId, findings: &[FindingRecord]) -> Fallible<()> {
    ensure_run(tx, run)?;
    tx.execute("DELETE FROM findings WHERE run_id = ?1", [run.0])?;
    let mut stmt = tx.prepare(&format!(
        "INSERT INTO findings (run_id, idx, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    for (i, f) in findings.iter().enumerate() {
        let aliases = serde_json::to_string(&f.aliases)
            .map_err(|e| bad("findings", "aliases", e.to_string()))?;
        stmt.execute(params![
            run.0,
            int(i),
            f.tool,
            f.id,
            aliases,
            f.severity.as_str(),
            f.treatment.as_str(),
            f.reason,
            f.file,
            f.line,
            f.logical_id,
            f.package,
            f.version,
            f.message,
        ])?;
    }
    Ok(())
}

pub(crate) fn list(tx: &Transaction<'_>, run: RunId) -> Fallible<Vec<FindingRecord>> {
    ensure_run(tx, run)?;
    let mut stmt = tx.prepare(&format!(
        "SELECT {COLUMNS} FROM findings WHERE run_id = ?1 ORDER BY idx"
    ))?;
    let mut rows = stmt.query([run.0])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let aliases: String = r.get(2)?;
        let aliases: Vec<String> =
            serde_json::from_str(&aliases).map_err(|_| bad("findings", "aliases", aliases))?;
        let line: Option<i64> = r.get(7)?;
        let line = match line {
            Some(_) => Some(unsigned::<u32>(r, 7, "findings", "line")?),
            None => None,
        };
        out.push(FindingRecord {
            tool: r.get(0)?,
            id: r.get(1)?,
            aliases,
            severity: parse_enum(r.get(3)?, "findings", "severity", Severity::parse)?,
            treatment: parse_enum(r.get(4)?, "findings", "treatment", Treatment::parse)?,
            reason: r.get(5)?,
            file: r.get(6)?,
            line,
            logical_id: r.get(8)?,
            package: r.get(9)?,
            version: r.get(10)?,
            message: r.get(11)?,
        });
    }
    Ok(out)
}

pub(crate) fn counts(tx: &Transaction<'_>, run: RunId) -> Fallible<FindingCounts> {
    ensure_run(tx, run)?;
    let mut stmt = tx.prepare(
        "SELECT severity, treatment, COUNT(*) FROM findings WHERE run_id = ?1 GROUP BY severity, treatment",
    )?;
    let mut rows = stmt.query([run.0])?;
    let mut c = FindingCounts::default();
    while let Some(r) = rows.next()? {
        let severity = parse_enum(r.get(0)?, "findings", "severity", Severity::parse)?;
        let treatment = parse_enum(r.get(1)?, "findings", "treatment", Treatment::parse)?;
        let n: usize = unsigned(r, 2, "findings", "count")?;
        c.add(severity, treatment, n);
    }
    Ok(c)
}
