//! `ferry scan`: the security gate on its own (seed §3.7) — cfn-guard policies and
//! template checks on CloudFormation templates, dependency audits, the allowlist, the
//! verdict (CRITICAL and HIGH block), a table or `--json`, and SARIF 2.1.0.
//!
//! What to scan comes from `build.gates.security` in `ferry.yml` when there is one;
//! flags replace it, so the command also works in a folder without `ferry.yml`. Every
//! failure to scan — a glob that matches nothing, a rule file that does not parse, a
//! command that fails or prints something that is not its report — fails the gate
//! closed with the reason: a scan never passes silently.

use crate::context::Project;
use crate::error::{CliError, CliResult};
use crate::output::json;
use ferry_api::exit;
use ferry_config::{AuditSource, Security};
use ferry_engine::ports::ReportFiles;
use ferry_scan::{AllowEntry, Date, Finding, Verdict};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long an audit command may run.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a scan found, and what it could not scan.
#[derive(Debug, serde::Serialize)]
pub struct Scanned {
    /// Every finding, allowlisted ones included (with their `allowed` reason).
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// What the allowlist has to say besides (expired, unused entries).
    pub notes: Vec<String>,
    /// The scanners that ran.
    pub scanners: Vec<String>,
}

/// Scans what `sec` names, below `root`, as of `today`.
pub fn scan(root: &Path, sec: &Security, today: Date) -> Scanned {
    let mut findings: Vec<Finding> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut scanners: Vec<String> = Vec::new();
    let files = ferry_local::report_files::LocalReportFiles;

    // Templates: policies and checks. Rule files are read and parsed even without
    // templates, so a broken one is never passed over in silence.
    if !sec.rules.is_empty() && sec.templates.is_empty() {
        failures.push(format!(
            "rule files ({}) but no templates to apply them to: add `--templates GLOB` (or `templates:` under `build.gates.security`)",
            sec.rules.join(", ")
        ));
    }
    if !sec.templates.is_empty() || !sec.rules.is_empty() {
        if !sec.templates.is_empty() {
            scanners.push(ferry_scan::guard::SCANNER.to_string());
            scanners.push(ferry_scan::template::SCANNER.to_string());
        }
        let mut rule_files: Vec<(String, String)> = Vec::new();
        for r in &sec.rules {
            match std::fs::read_to_string(root.join(r)) {
                Ok(t) => rule_files.push((r.clone(), t)),
                Err(e) => failures.push(format!("rule file {r}: {e}")),
            }
        }
        let named: Vec<(&str, &str)> = rule_files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let guard = if sec.builtin_rules {
            ferry_scan::guard::Guard::new(&named)
        } else {
            ferry_scan::guard::Guard::only(&named)
        };
        let guard = match guard {
            Ok(g) => Some(g),
            Err(e) => {
                failures.push(e.to_string());
                None
            }
        };
        for pattern in &sec.templates {
            let found = match files.read(root, pattern) {
                Ok(f) => f,
                Err(e) => {
                    failures.push(format!("templates `{pattern}`: {}", e.message));
                    continue;
                }
            };
            if found.is_empty() {
                failures.push(format!(
                    "templates `{pattern}` match no file (did the synth step run?)"
                ));
            }
            for (path, bytes) in found {
                let name = rel(root, &path);
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => {
                        failures.push(format!("template {name} is not UTF-8 text"));
                        continue;
                    }
                };
                match ferry_scan::template::check_template(&name, &text) {
                    Ok(f) => findings.extend(f),
                    Err(e) => failures.push(e.to_string()),
                }
                if let Some(g) = &guard {
                    match g.check(&name, &text) {
                        Ok(f) => findings.extend(f),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
            }
        }
    }

    // Dependency audits.
    for a in &sec.audits {
        let (name, bytes) = match a {
            AuditSource::File(f) => match std::fs::read(root.join(f)) {
                Ok(b) => (f.clone(), b),
                Err(e) => {
                    failures.push(format!("audit report {f}: {e}"));
                    continue;
                }
            },
            AuditSource::Run(cmd) => match run_audit(root, cmd) {
                Ok(b) => (format!("`{cmd}`"), b),
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            },
        };
        match ferry_scan::parse_audit(&bytes, &name) {
            Ok(f) => {
                if let Some(first) = f.first()
                    && !scanners.contains(&first.scanner)
                {
                    scanners.push(first.scanner.clone());
                }
                findings.extend(f);
            }
            // The error names the report itself.
            Err(e) => failures.push(e.to_string()),
        }
    }

    // The allowlist, then the verdict.
    let entries: Vec<AllowEntry> = sec
        .allow
        .iter()
        .map(|a| AllowEntry {
            id: a.id.clone(),
            package: a.package.clone(),
            reason: a.reason.clone(),
            expires: a.expires.clone(),
        })
        .collect();
    let notes = ferry_scan::allowlist::apply(&mut findings, &entries, today)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut verdict = ferry_scan::verdict(&findings);
    // A template refused by its bounds is refused by both the checks and the guard:
    // say it once.
    let mut said: Vec<String> = Vec::new();
    failures.retain(|f| {
        let new = !said.contains(f);
        if new {
            said.push(f.clone());
        }
        new
    });
    for f in failures {
        verdict.fail_closed(f);
    }
    Scanned {
        findings,
        verdict,
        notes,
        scanners,
    }
}

/// Runs an audit command in `root` (`/bin/sh -c`); its standard output is the report.
/// Audit tools exit non-zero when they find something, so the exit status alone is not
/// a failure; a command that cannot start, times out or prints nothing is.
fn run_audit(root: &Path, cmd: &str) -> Result<Vec<u8>, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{cmd}` cannot start: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let until = Instant::now() + AUDIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{cmd}` ran longer than {} s and was stopped",
                    AUDIT_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("`{cmd}`: {e}")),
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if stdout.iter().all(u8::is_ascii_whitespace) {
        let tail: String = String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" / ");
        return Err(format!(
            "`{cmd}` printed no report ({status}){}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ));
    }
    Ok(stdout)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Today's date (UTC) from the wall clock.
pub fn today() -> Date {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    civil(i64::try_from(days).unwrap_or(0))
}

/// The calendar day `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(
        u16::try_from(y).unwrap_or(1970),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
    .unwrap_or(Date {
        year: 1970,
        month: 1,
        day: 1,
    })
}

/// The command line's choices, over the file's.
#[derive(Debug, Default)]
pub struct Flags {
    pub templates: Vec<String>,
    pub rules: Vec<String>,
    pub audits: Vec<String>,
    pub no_builtin_rules: bool,
    pub sarif: Option<PathBuf>,
}

/// `ferry scan`.
pub fn command(file: &Path, flags: &Flags, as_json: bool) -> CliResult<i32> {
    // The file is optional: flags alone make a scan.
    let project = Project::locate(file, None).ok();
    let (root, configured) = match project.as_ref().map(|p| (p, p.load())) {
        Some((p, Ok((pipeline, _)))) => (p.root.clone(), pipeline.build.gates.security),
        Some((_, Err(e))) if file.exists() => return Err(e),
        _ => (
            std::env::current_dir()
                .map_err(|e| CliError::environment(format!("no current folder: {e}")))?,
            None,
        ),
    };
    let mut sec = configured.unwrap_or_default();
    if !flags.templates.is_empty() {
        sec.templates = flags.templates.clone();
    }
    if !flags.rules.is_empty() {
        sec.rules = flags.rules.clone();
    }
    if !flags.audits.is_empty() {
        sec.audits = flags
            .audits
            .iter()
            .cloned()
            .map(AuditSource::File)
            .collect();
    }
    if flags.no_builtin_rules {
        sec.builtin_rules = false;
    }
    if sec.templates.is_empty() && sec.audits.is_empty() {
        return Err(CliError::new(
            exit::USAGE,
            "nothing to scan: give `--templates GLOB` or `--audit FILE`, or configure `build.gates.security` in ferry.yml",
        ));
    }
    let scanned = scan(&root, &sec, today());
    if let Some(path) = &flags.sarif {
        let scanners: Vec<&str> = scanned.scanners.iter().map(String::as_str).collect();
        let doc = ferry_scan::to_sarif(&scanned.findings, &scanners);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::environment(format!("SARIF: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| CliError::environment(format!("cannot write {}: {e}", path.display())))?;
    }
    if as_json {
        json(&scanned);
    } else {
        print(&scanned);
    }
    Ok(if scanned.verdict.blocked {
        exit::RUN_FAILED
    } else {
        exit::OK
    })
}

/// The findings as a table, most severe first, then the verdict.
pub fn print(s: &Scanned) {
    crate::output::out(&render(s));
}

/// [`print`]'s text.
pub fn render(s: &Scanned) -> String {
    let mut out = String::new();
    let mut all: Vec<&Finding> = s.findings.iter().collect();
    all.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    for f in all {
        let at = [
            f.location.file.clone(),
            f.location.logical_id.clone(),
            match (&f.location.package, &f.location.version) {
                (Some(p), Some(v)) => Some(format!("{p}@{v}")),
                (Some(p), None) => Some(p.clone()),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let allowed = match (&f.allowed, f.expired) {
            (Some(r), _) => format!(" (allowed: {r})"),
            (None, Some(day)) => format!(" (allowlist entry expired on {day})"),
            (None, None) => String::new(),
        };
        let aka = if f.aliases.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.aliases.join(", "))
        };
        out.push_str(&format!(
            "{:<8} {:<12} {}{aka} {at}: {}{allowed}\n",
            f.severity.as_str(),
            f.scanner,
            crate::commands::printable(&f.id),
            crate::commands::printable(&f.message)
        ));
    }
    for e in &s.verdict.errors {
        out.push_str(&format!("ERROR    {}\n", crate::commands::printable(e)));
    }
    for n in &s.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str(&s.verdict.summary());
    out.push('\n');
    out
}

/// The build stage's security gate over this machine's files and commands.
pub struct LocalScanner;

impl ferry_engine::ports::SecurityScanner for LocalScanner {
    fn scan(&self, checkout: &Path, security: &Security) -> ferry_engine::ports::ScanReport {
        let s = scan(checkout, security, today());
        let blocking: Vec<serde_json::Value> = s
            .verdict
            .blocking
            .iter()
            .take(100)
            .map(|f| {
                serde_json::json!({"scanner": f.scanner, "id": f.id, "severity": f.severity,
                    "location": f.location, "message": f.message})
            })
            .collect();
        let findings = crate::findings::records(&s);
        let scanners: Vec<&str> = s.scanners.iter().map(String::as_str).collect();
        let sarif = crate::findings::sarif(&findings, &scanners);
        ferry_engine::ports::ScanReport {
            findings,
            sarif: Some(sarif),
            blocked: s.verdict.blocked,
            summary: s.verdict.summary(),
            log: render(&s),
            data: serde_json::json!({
                "counts": s.verdict.counts,
                "blocking": blocking,
                "errors": s.verdict.errors,
                "scanners": s.scanners,
                "findings": s.findings.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scanner_error_is_said_once_and_names_its_file_once() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let deep = format!(
            "{{\"Resources\": {{\"B\": {{\"Type\": \"AWS::S3::Bucket\", \"Properties\": {}1{}}}}}}}",
            "{\"a\": ".repeat(100),
            "}".repeat(100)
        );
        std::fs::write(dir.path().join("deep.json"), deep).expect("write");
        std::fs::write(dir.path().join("audit.json"), "not json").expect("write");
        let sec = Security {
            templates: vec!["deep.json".into()],
            audits: vec![AuditSource::File("audit.json".into())],
            ..Security::default()
        };
        let s = scan(dir.path(), &sec, civil(20_818));
        assert!(s.verdict.blocked);
        assert_eq!(s.verdict.errors.len(), 2, "{:?}", s.verdict.errors);
        assert!(s.verdict.errors[0].contains("deep.json:1: template nests deeper than 64"));
        assert!(
            s.verdict.errors[1].starts_with("audit.json: not JSON"),
            "{:?}",
            s.verdict.errors
        );
    }

    #[test]
    fn rule_files_without_templates_are_read_and_block() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("bad.guard"),
            "rule broken {\n  Resources.*[ {\n}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("audit.json"),
            r#"{"dependencies": [{"name": "a", "version": "1", "vulns": []}]}"#,
        )
        .expect("write");
        let sec = Security {
            rules: vec!["bad.guard".into()],
            audits: vec![AuditSource::File("audit.json".into())],
            ..Security::default()
        };
        let s = scan(dir.path(), &sec, civil(20_818));
        assert!(s.verdict.blocked, "{:?}", s.verdict);
        assert!(
            s.verdict
                .errors
                .iter()
                .any(|e| e.contains("no templates to apply them to")),
            "{:?}",
            s.verdict.errors
        );
        assert!(
            s.verdict.errors.iter().any(|e| e.contains("bad.guard:2")),
            "the parse error names the file and line: {:?}",
            s.verdict.errors
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0).to_string(), "1970-01-01");
        assert_eq!(civil(19_782).to_string(), "2024-02-29");
        assert_eq!(civil(20_818).to_string(), "2026-12-31");
    }
}
