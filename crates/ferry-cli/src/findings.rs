//! A run's security findings as the store keeps them: made from a scan
//! ([`records`]), shown as a table (`ferry logs RUN security`, `ferry findings RUN`),
//! as JSON (`--json`, `GET /api/runs/{id}/findings`) and as SARIF 2.1.0 (the file
//! `build.gates.security.sarif`, `ferry findings RUN --sarif FILE`,
//! `GET /api/runs/{id}/findings?format=sarif`), and counted per severity
//! (`ferry status`, `GET /api/runs/{id}`).

use crate::commands::printable;
use crate::context::Project;
use crate::error::{CliError, CliResult};
use crate::output::json;
use crate::scan::Scanned;
use crate::serve::{ApiError, ApiResult, AppState, Params, blocking, params, run_id};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use ferry_api::exit;
use ferry_core::findings::{FindingCounts, FindingRecord, Severity, Treatment};
use ferry_core::run::RunView;
use ferry_core::{RunId, StepKind};
use ferry_engine::ports::Store;
use serde_json::Value;
use std::sync::Arc;

/// The tool name of a finding that says a scanner could not scan (the gate failed
/// closed on it).
pub const FAILED_TOOL: &str = "ferry";
/// Its id.
pub const FAILED_ID: &str = "SCAN-FAILED";

fn severity(s: ferry_scan::Severity) -> Severity {
    match s {
        ferry_scan::Severity::Low => Severity::Low,
        ferry_scan::Severity::Moderate => Severity::Moderate,
        ferry_scan::Severity::High => Severity::High,
        ferry_scan::Severity::Critical => Severity::Critical,
    }
}

fn scan_severity(s: Severity) -> ferry_scan::Severity {
    match s {
        Severity::Low => ferry_scan::Severity::Low,
        Severity::Moderate => ferry_scan::Severity::Moderate,
        Severity::High => ferry_scan::Severity::High,
        Severity::Critical => ferry_scan::Severity::Critical,
    }
}

/// One scanner finding as stored.
pub fn record(f: &ferry_scan::Finding) -> FindingRecord {
    let sev = severity(f.severity);
    let (treatment, reason) = match (&f.allowed, f.expired) {
        (Some(reason), _) => (Treatment::Allowlisted, Some(reason.clone())),
        (None, Some(day)) => (Treatment::Expired, Some(expired_reason(day, sev))),
        (None, None) => (Treatment::of(sev), None),
    };
    FindingRecord {
        tool: f.scanner.clone(),
        id: f.id.clone(),
        aliases: f.aliases.clone(),
        severity: sev,
        treatment,
        reason,
        file: f.location.file.clone(),
        line: f.location.line,
        logical_id: f.location.logical_id.clone(),
        package: f.location.package.clone(),
        version: f.location.version.clone(),
        message: f.message.clone(),
    }
}

/// Every finding of a scan as stored, allowlisted ones included; each scanner that
/// could not scan is a CRITICAL `ferry` / `SCAN-FAILED` finding that blocks, with the
/// reason as its message.
pub fn records(s: &Scanned) -> Vec<FindingRecord> {
    let mut out: Vec<FindingRecord> = s.findings.iter().map(record).collect();
    out.extend(s.verdict.errors.iter().map(|e| FindingRecord {
        tool: FAILED_TOOL.into(),
        id: FAILED_ID.into(),
        aliases: Vec::new(),
        severity: Severity::Critical,
        treatment: Treatment::Blocks,
        reason: Some("a scanner that cannot scan blocks (fail closed)".into()),
        file: None,
        line: None,
        logical_id: None,
        package: None,
        version: None,
        message: e.clone(),
    }));
    out
}

/// A stored finding as the scanners' type again (for SARIF).
pub fn to_scan(r: &FindingRecord) -> ferry_scan::Finding {
    ferry_scan::Finding {
        scanner: r.tool.clone(),
        id: r.id.clone(),
        aliases: r.aliases.clone(),
        severity: scan_severity(r.severity),
        location: ferry_scan::Location {
            file: r.file.clone(),
            line: r.line,
            logical_id: r.logical_id.clone(),
            package: r.package.clone(),
            version: r.version.clone(),
        },
        message: r.message.clone(),
        allowed: (r.treatment == Treatment::Allowlisted)
            .then(|| r.reason.clone().unwrap_or_default()),
        expired: expired_day(r),
    }
}

/// The reason an `expired` record carries: which day the entry last held.
fn expired_reason(day: ferry_scan::Date, severity: Severity) -> String {
    format!(
        "the allowlist entry for it expired on {day}; it {} again",
        Treatment::of(severity)
    )
}

/// The expiry day back from an `expired` record's reason ([`expired_reason`]).
fn expired_day(r: &FindingRecord) -> Option<ferry_scan::Date> {
    if r.treatment != Treatment::Expired {
        return None;
    }
    r.reason
        .as_deref()
        .and_then(|t| t.split("expired on ").nth(1))
        .and_then(|t| t.get(..10))
        .and_then(|d| d.parse().ok())
}

/// The SARIF 2.1.0 document of stored findings: one run per tool that found
/// something, in the order recorded, plus the `scanners` that ran (a clean scan
/// still says which tools looked).
pub fn sarif(found: &[FindingRecord], scanners: &[&str]) -> Value {
    let findings: Vec<ferry_scan::Finding> = found.iter().map(to_scan).collect();
    ferry_scan::to_sarif(&findings, scanners)
}

/// The counts of a run's security gate, once it has run (`None` before, or without
/// a gate).
pub fn gate_counts(store: &dyn Store, view: &RunView) -> CliResult<Option<FindingCounts>> {
    if scanned(view) {
        Ok(Some(store.finding_counts(view.id)?))
    } else {
        Ok(None)
    }
}

/// Whether a run's security gate step has ended.
fn scanned(view: &RunView) -> bool {
    view.stages.iter().any(|s| {
        s.steps
            .iter()
            .any(|t| t.kind == StepKind::SecurityGate.label() && t.ended_at.is_some())
    })
}

/// A run's findings: `ferry findings --json` and `GET /api/runs/{id}/findings`.
pub fn build(store: &dyn Store, run: RunId) -> CliResult<ferry_api::Findings> {
    let view = store.load_run(run)?;
    let findings = store.findings(run)?;
    Ok(ferry_api::Findings {
        run: run.0,
        scanned: scanned(&view),
        counts: FindingCounts::of(&findings),
        findings,
    })
}

/// Where a finding is, in one line: `file:line resource package@version`.
fn place(f: &FindingRecord) -> String {
    let file = f.file.as_ref().map(|file| match f.line {
        Some(l) => format!("{file}:{l}"),
        None => file.clone(),
    });
    let pkg = f.package.as_ref().map(|p| match &f.version {
        Some(v) => format!("{p}@{v}"),
        None => p.clone(),
    });
    [file, f.logical_id.clone(), pkg]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The findings as a table, most severe first (the scanners' order within a
/// severity), aliases, where, the allowlist's reason, and a summary line.
pub fn table(found: &[FindingRecord]) -> String {
    if found.is_empty() {
        return "no findings\n".to_string();
    }
    let mut sorted: Vec<&FindingRecord> = found.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut rows = vec![vec![
        "#".to_string(),
        "SEVERITY".to_string(),
        "TREATMENT".into(),
        "TOOL".into(),
        "ID".into(),
        "WHERE".into(),
    ]];
    let mut notes = Vec::new();
    for (i, f) in sorted.iter().enumerate() {
        let mut id = printable(&f.id);
        if !f.aliases.is_empty() {
            id.push_str(&format!(" ({})", printable(&f.aliases.join(", "))));
        }
        rows.push(vec![
            format!("[{}]", i + 1),
            f.severity.to_string(),
            f.treatment.to_string(),
            printable(&f.tool),
            id,
            printable(&place(f)),
        ]);
        let mut note = format!("  [{}] {}", i + 1, printable(&f.message));
        if let Some(r) = &f.reason {
            note.push_str(&format!("\n      {}: {}", f.treatment, printable(r)));
        }
        notes.push(note);
    }
    let mut out = crate::output::table(&rows);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out.push_str(&format!(
        "findings: {}\n",
        FindingCounts::of(found).summary()
    ));
    out
}

/// `ferry findings RUN [--json] [--sarif FILE]`.
pub fn command(
    project: &Project,
    run: i64,
    sarif_file: Option<&std::path::Path>,
    as_json: bool,
) -> CliResult<i32> {
    let store = project.open_store()?;
    let f = build(&store, RunId(run))?;
    if let Some(path) = sarif_file {
        let doc = sarif(&f.findings, &[]);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::environment(format!("SARIF: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::environment(format!("cannot write {}: {e}", path.display())))?;
    }
    if as_json {
        json(&f);
    } else if !f.scanned && f.findings.is_empty() {
        crate::output::line(format!(
            "run {run} has no security findings: its security gate has not run (is `build.gates.security` in ferry.yml?)"
        ));
    } else {
        crate::output::out(&table(&f.findings));
    }
    Ok(exit::OK)
}

/// `GET /api/runs/{id}/findings[?format=json|sarif]`: the run's findings as
/// `ferry findings --json` prints them, or as a SARIF 2.1.0 document
/// (`application/sarif+json`). 404 naming the run when it does not exist.
pub async fn api(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let id = run_id(id)?;
    let p = params(q)?;
    let as_sarif = match p.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("sarif") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format={other}` is not a findings format; use `format=json` (the default) or `format=sarif`"
            )));
        }
    };
    let f = blocking(move || Ok(build(&*state.store, RunId(id))?)).await?;
    if as_sarif {
        let doc = sarif(&f.findings, &[]);
        Ok((
            [(header::CONTENT_TYPE, "application/sarif+json")],
            Json(doc),
        )
            .into_response())
    } else {
        Ok(Json(f).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(allowed: Option<&str>, expired: Option<&str>) -> ferry_scan::Finding {
        ferry_scan::Finding {
            scanner: "cargo-audit".into(),
            id: "RUSTSEC-2023-0071".into(),
            aliases: vec!["CVE-2023-49092".into()],
            severity: ferry_scan::Severity::High,
            location: ferry_scan::Location {
                file: Some("reports/cargo.json".into()),
                package: Some("rsa".into()),
                version: Some("0.9.6".into()),
                ..Default::default()
            },
            message: "Marvin Attack".into(),
            allowed: allowed.map(str::to_string),
            expired: expired.map(|d| d.parse().expect("a date")),
        }
    }

    #[test]
    fn records_round_trip_to_scan_findings() {
        for f in [
            finding(None, None),
            finding(Some("not reachable"), None),
            finding(None, Some("2026-01-31")),
        ] {
            assert_eq!(to_scan(&record(&f)), f);
        }
        let r = record(&finding(None, Some("2026-01-31")));
        assert_eq!(r.treatment, Treatment::Expired);
        assert_eq!(
            r.reason.as_deref(),
            Some("the allowlist entry for it expired on 2026-01-31; it blocks again")
        );
    }

    #[test]
    fn the_table_names_treatment_aliases_and_reason() {
        let t = table(&[
            record(&finding(Some("not reachable"), None)),
            record(&finding(None, None)),
        ]);
        assert!(t.contains("HIGH"), "{t}");
        assert!(t.contains("allowlisted"), "{t}");
        assert!(t.contains("RUSTSEC-2023-0071 (CVE-2023-49092)"), "{t}");
        assert!(t.contains("reports/cargo.json rsa@0.9.6"), "{t}");
        assert!(t.contains("allowlisted: not reachable"), "{t}");
        assert!(
            t.contains("findings: 0 critical, 1 high, 0 moderate, 0 low, 1 allowlisted"),
            "{t}"
        );
    }
}
