//! Dependency audits: the JSON that `npm audit --json` (npm 7+ and npm 6),
//! `cargo audit --json` and `pip-audit -f json` print, as [`Finding`]s.
//!
//! The format is detected from the document itself ([`detect`]); a document that is
//! not JSON, or not one of these reports, is an [`AuditError`] naming what was expected
//! (the gate fails closed on it).
//!
//! Aliases: every other id the report gives the same advisory is kept in
//! [`Finding::aliases`] (an allowlist entry naming one matches): cargo audit's and
//! pip-audit's `aliases` (CVE, GHSA), npm 7's advisory url (GHSA) and `source` number
//! (`NPM-<source>`), npm 6's `github_advisory_id`, `cves` and advisory number.
//!
//! Severity rules, where the tool gives none or a word [`Severity::parse`] does not know:
//! - npm: the advisory's `severity`, else the package entry's, else **HIGH**.
//! - cargo audit: the CVSS v3 base score computed from `advisory.cvss` (9.0+ CRITICAL,
//!   7.0+ HIGH, 4.0+ MODERATE, below LOW); no `cvss`, a CVSS v4 vector or a vector that
//!   does not parse: **HIGH**. Warnings: `unsound` and `yanked` are MODERATE (they warn),
//!   `unmaintained` is LOW (it informs), any other kind MODERATE.
//! - pip-audit prints no severity: a vulnerability is **HIGH** unless it carries a
//!   `severity` this crate knows, so nothing passes silently. A dependency pip-audit
//!   skipped (`skip_reason`) is a MODERATE finding `PIP-AUDIT-SKIPPED`: it was not audited.

use serde_json::{Map, Value};

use crate::finding::{Finding, Location, Severity};

/// The scanner name of npm audit findings.
pub const NPM_AUDIT: &str = "npm-audit";
/// The scanner name of cargo audit findings.
pub const CARGO_AUDIT: &str = "cargo-audit";
/// The scanner name of pip-audit findings.
pub const PIP_AUDIT: &str = "pip-audit";

/// What a report that is not an audit gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The bytes are not JSON at all.
    #[error(
        "{file}: not JSON ({detail}); expected the output of `npm audit --json`, `cargo audit --json` or `pip-audit -f json`"
    )]
    NotJson {
        /// The report's file name.
        file: String,
        /// What the JSON parser said.
        detail: String,
    },
    /// JSON, but none of the known reports.
    #[error(
        "{file}: not an audit report: expected `npm audit --json` (an object with \"auditReportVersion\": 2 and \"vulnerabilities\", or npm 6's \"advisories\"), `cargo audit --json` (\"vulnerabilities\": {{\"list\": [...]}}) or `pip-audit -f json` (\"dependencies\": [...])"
    )]
    UnknownFormat {
        /// The report's file name.
        file: String,
    },
    /// The tool printed its own error instead of a report (npm's `{"error": ...}`).
    #[error("{file}: {tool} reported an error instead of an audit: {detail}")]
    ToolError {
        /// The report's file name.
        file: String,
        /// Which tool.
        tool: &'static str,
        /// The tool's own words.
        detail: String,
    },
    /// A report of a known format with a part in the wrong shape.
    #[error("{file}: {tool} report: {detail}")]
    Malformed {
        /// The report's file name.
        file: String,
        /// Which tool's format.
        tool: &'static str,
        /// Where and what.
        detail: String,
    },
}

/// The audit formats this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// `npm audit --json` of npm 7 and later (`auditReportVersion: 2`).
    Npm7,
    /// `npm audit --json` of npm 6 (`advisories` keyed by number).
    Npm6,
    /// `cargo audit --json`.
    Cargo,
    /// `pip-audit -f json`.
    Pip,
}

impl AuditFormat {
    /// The scanner name its findings carry.
    pub fn scanner(self) -> &'static str {
        match self {
            AuditFormat::Npm7 | AuditFormat::Npm6 => NPM_AUDIT,
            AuditFormat::Cargo => CARGO_AUDIT,
            AuditFormat::Pip => PIP_AUDIT,
        }
    }
}

/// Which audit report `doc` is, from its own keys; `None` when it is none of them.
pub fn detect(doc: &Value) -> Option<AuditFormat> {
    let obj = doc.as_object()?;
    if obj.contains_key("auditReportVersion") && obj.get("vulnerabilities")?.is_object() {
        return Some(AuditFormat::Npm7);
    }
    if obj.get("advisories").is_some_and(Value::is_object) {
        return Some(AuditFormat::Npm6);
    }
    if obj
        .get("vulnerabilities")
        .and_then(|v| v.get("list"))
        .is_some_and(Value::is_array)
    {
        return Some(AuditFormat::Cargo);
    }
    if obj.get("dependencies").is_some_and(Value::is_array) {
        return Some(AuditFormat::Pip);
    }
    None
}

/// Reads one audit report (`bytes`, named `file` in findings and errors) into findings,
/// detecting its format. An empty list means the tool found nothing.
pub fn parse_audit(bytes: &[u8], file: &str) -> Result<Vec<Finding>, AuditError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| AuditError::NotJson {
        file: file.to_string(),
        detail: e.to_string(),
    })?;
    if let Some(err) = doc.get("error").filter(|_| detect(&doc).is_none()) {
        let detail = err
            .get("summary")
            .and_then(Value::as_str)
            .or_else(|| err.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(AuditError::ToolError {
            file: file.to_string(),
            tool: "npm audit",
            detail,
        });
    }
    let format = detect(&doc).ok_or_else(|| AuditError::UnknownFormat {
        file: file.to_string(),
    })?;
    let mut out = match format {
        AuditFormat::Npm7 => npm7(&doc, file)?,
        AuditFormat::Npm6 => npm6(&doc, file)?,
        AuditFormat::Cargo => cargo(&doc, file)?,
        AuditFormat::Pip => pip(&doc, file)?,
    };
    // One finding per advisory, package and version.
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| {
        seen.insert((
            f.id.clone(),
            f.location.package.clone(),
            f.location.version.clone(),
        ))
    });
    Ok(out)
}

fn malformed(file: &str, tool: &'static str, detail: impl Into<String>) -> AuditError {
    AuditError::Malformed {
        file: file.to_string(),
        tool,
        detail: detail.into(),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn finding(
    scanner: &str,
    id: String,
    severity: Severity,
    file: &str,
    package: Option<String>,
    version: Option<String>,
    message: String,
) -> Finding {
    Finding {
        scanner: scanner.to_string(),
        id,
        aliases: Vec::new(),
        severity,
        location: Location {
            file: Some(file.to_string()),
            line: None,
            logical_id: None,
            package,
            version,
        },
        message,
        allowed: None,
        expired: None,
    }
}

/// The strings of a JSON list (`aliases`, `cves`); none when it is not a list.
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `finding` with `aliases`: without blanks, repeats or the id itself, in the order
/// given.
fn with_aliases(mut finding: Finding, aliases: impl IntoIterator<Item = String>) -> Finding {
    for a in aliases {
        let a = a.trim().to_string();
        if !a.is_empty() && !finding.is_named(&a) {
            finding.aliases.push(a);
        }
    }
    finding
}

/// The advisory id at the end of a GitHub advisory url, if it is one.
fn ghsa_from_url(url: &str) -> Option<String> {
    let last = url.trim_end_matches('/').rsplit('/').next()?;
    last.starts_with("GHSA-").then(|| last.to_string())
}

fn npm7(doc: &Value, file: &str) -> Result<Vec<Finding>, AuditError> {
    const TOOL: &str = "npm audit";
    let vulns = doc
        .get("vulnerabilities")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(file, TOOL, "\"vulnerabilities\" is not an object"))?;
    let mut out = Vec::new();
    for (key, entry) in vulns {
        let name = str_of(entry, "name").unwrap_or(key);
        let entry_severity = str_of(entry, "severity").and_then(Severity::parse);
        let via = entry.get("via").and_then(Value::as_array).ok_or_else(|| {
            malformed(
                file,
                TOOL,
                format!("vulnerabilities.{key}.via is not a list"),
            )
        })?;
        let fix = npm7_fix(entry.get("fixAvailable"));
        let effects: Vec<&str> = entry
            .get("effects")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut advisories = 0;
        let mut unresolved = Vec::new();
        for v in via {
            match v {
                Value::String(dep) => {
                    if !vulns.contains_key(dep) {
                        unresolved.push(dep.as_str());
                    }
                }
                Value::Object(_) => {
                    advisories += 1;
                    let title = str_of(v, "title").unwrap_or("vulnerability");
                    let url = str_of(v, "url");
                    let id = url
                        .and_then(ghsa_from_url)
                        .or_else(|| match v.get("source") {
                            Some(Value::Number(n)) => Some(format!("NPM-{n}")),
                            Some(Value::String(s)) if !s.is_empty() => Some(format!("NPM-{s}")),
                            _ => None,
                        })
                        .ok_or_else(|| {
                            malformed(
                                file,
                                TOOL,
                                format!("vulnerabilities.{key}.via has an advisory without url or source"),
                            )
                        })?;
                    let severity = str_of(v, "severity")
                        .and_then(Severity::parse)
                        .or(entry_severity)
                        .unwrap_or(Severity::High);
                    let pkg = str_of(v, "name").unwrap_or(name);
                    let mut message = title.to_string();
                    if let Some(range) = str_of(v, "range") {
                        message.push_str(&format!(" (vulnerable: {pkg} {range})"));
                    }
                    message.push_str(&format!("; {fix}"));
                    if !effects.is_empty() {
                        message.push_str(&format!("; required by {}", effects.join(", ")));
                    }
                    if let Some(url) = url {
                        message.push_str(&format!("; {url}"));
                    }
                    // The url's GHSA id and the npm advisory number name the same
                    // advisory: whichever is not the id is an alias.
                    let aliases =
                        url.and_then(ghsa_from_url)
                            .into_iter()
                            .chain(match v.get("source") {
                                Some(Value::Number(n)) => Some(format!("NPM-{n}")),
                                Some(Value::String(s)) if !s.is_empty() => Some(format!("NPM-{s}")),
                                _ => None,
                            });
                    out.push(with_aliases(
                        finding(
                            NPM_AUDIT,
                            id,
                            severity,
                            file,
                            Some(pkg.to_string()),
                            None,
                            message,
                        ),
                        aliases,
                    ));
                }
                other => {
                    return Err(malformed(
                        file,
                        TOOL,
                        format!(
                            "vulnerabilities.{key}.via has {other}, expected a package name or an advisory"
                        ),
                    ));
                }
            }
        }
        // A transitive entry is reported through the advisory of the package it names;
        // one that names a package missing from the report would be lost: keep it.
        if advisories == 0 && (!unresolved.is_empty() || via.is_empty()) {
            let via_text = if unresolved.is_empty() {
                "no advisory named".to_string()
            } else {
                format!("through {}", unresolved.join(", "))
            };
            out.push(finding(
                NPM_AUDIT,
                format!("NPM-TRANSITIVE-{name}"),
                entry_severity.unwrap_or(Severity::High),
                file,
                Some(name.to_string()),
                None,
                format!("{name} is vulnerable {via_text}; {fix}"),
            ));
        }
    }
    Ok(out)
}

fn npm7_fix(fix: Option<&Value>) -> String {
    match fix {
        Some(Value::Bool(true)) => "fix: run `npm audit fix`".to_string(),
        Some(Value::Object(o)) => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("the package");
            let version = o
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("a fixed version");
            let major = if o.get("isSemVerMajor").and_then(Value::as_bool) == Some(true) {
                " (a semver-major change: `npm audit fix --force`)"
            } else {
                ""
            };
            format!("fix: upgrade {name} to {version}{major}")
        }
        _ => "no fix available yet".to_string(),
    }
}

fn npm6(doc: &Value, file: &str) -> Result<Vec<Finding>, AuditError> {
    const TOOL: &str = "npm audit";
    let advisories = doc
        .get("advisories")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(file, TOOL, "\"advisories\" is not an object"))?;
    let mut out = Vec::new();
    for (key, adv) in advisories {
        let id = str_of(adv, "github_advisory_id")
            .map(str::to_string)
            .or_else(|| str_of(adv, "url").and_then(ghsa_from_url))
            .or_else(|| {
                adv.get("cves")
                    .and_then(Value::as_array)
                    .and_then(|c| c.first())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("NPM-{key}"));
        let pkg = str_of(adv, "module_name")
            .ok_or_else(|| malformed(file, TOOL, format!("advisories.{key} has no module_name")))?;
        let severity = str_of(adv, "severity")
            .and_then(Severity::parse)
            .unwrap_or(Severity::High);
        let title = str_of(adv, "title").unwrap_or("vulnerability");
        let fix = str_of(adv, "recommendation")
            .map(|r| format!("fix: {r}"))
            .or_else(|| {
                str_of(adv, "patched_versions").map(|p| format!("fix: upgrade {pkg} to {p}"))
            })
            .unwrap_or_else(|| "no fix available yet".to_string());
        let message = match str_of(adv, "url") {
            Some(url) => format!("{title}; {fix}; {url}"),
            None => format!("{title}; {fix}"),
        };
        // Every other name of the advisory: its GHSA id, CVEs and npm number.
        let aliases: Vec<String> = str_of(adv, "github_advisory_id")
            .map(str::to_string)
            .into_iter()
            .chain(str_of(adv, "url").and_then(ghsa_from_url))
            .chain(strings(adv.get("cves")))
            .chain(match adv.get("id") {
                Some(Value::Number(n)) => Some(format!("NPM-{n}")),
                Some(Value::String(s)) if !s.is_empty() => Some(format!("NPM-{s}")),
                _ => Some(format!("NPM-{key}")),
            })
            .collect();
        let versions: Vec<&str> = adv
            .get("findings")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(|x| str_of(x, "version")).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            out.push(with_aliases(
                finding(
                    NPM_AUDIT,
                    id,
                    severity,
                    file,
                    Some(pkg.into()),
                    None,
                    message,
                ),
                aliases,
            ));
        } else {
            for v in versions {
                out.push(with_aliases(
                    finding(
                        NPM_AUDIT,
                        id.clone(),
                        severity,
                        file,
                        Some(pkg.into()),
                        Some(v.into()),
                        message.clone(),
                    ),
                    aliases.clone(),
                ));
            }
        }
    }
    Ok(out)
}

fn cargo(doc: &Value, file: &str) -> Result<Vec<Finding>, AuditError> {
    const TOOL: &str = "cargo audit";
    let list = doc
        .get("vulnerabilities")
        .and_then(|v| v.get("list"))
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(file, TOOL, "vulnerabilities.list is not a list"))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let adv = item
            .get("advisory")
            .filter(|a| a.is_object())
            .ok_or_else(|| {
                malformed(
                    file,
                    TOOL,
                    format!("vulnerabilities.list[{i}] has no advisory"),
                )
            })?;
        let id = str_of(adv, "id").ok_or_else(|| {
            malformed(
                file,
                TOOL,
                format!("vulnerabilities.list[{i}].advisory has no id"),
            )
        })?;
        let severity = str_of(adv, "cvss")
            .and_then(cvss3_severity)
            .unwrap_or(Severity::High);
        let (pkg, version) = cargo_package(item, adv);
        let message = format!(
            "{}; {}",
            str_of(adv, "title").unwrap_or("vulnerability"),
            cargo_fix(item, pkg.as_deref())
        );
        out.push(with_aliases(
            finding(
                CARGO_AUDIT,
                id.to_string(),
                severity,
                file,
                pkg,
                version,
                message,
            ),
            strings(adv.get("aliases")),
        ));
    }
    if let Some(warnings) = doc.get("warnings").and_then(Value::as_object) {
        for (kind, items) in warnings {
            let Some(items) = items.as_array() else {
                continue;
            };
            for item in items {
                let kind = str_of(item, "kind").unwrap_or(kind);
                let severity = match kind {
                    "unmaintained" => Severity::Low,
                    _ => Severity::Moderate,
                };
                let adv = item.get("advisory").filter(|a| a.is_object());
                let (pkg, version) = cargo_package(item, adv.unwrap_or(&Value::Null));
                let id = adv
                    .and_then(|a| str_of(a, "id"))
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_ascii_uppercase());
                let what = adv
                    .and_then(|a| str_of(a, "title"))
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{} {} is {kind}",
                            pkg.as_deref().unwrap_or("a crate"),
                            version.as_deref().unwrap_or("")
                        )
                    });
                let message = format!("{kind}: {what}; {}", cargo_fix(item, pkg.as_deref()));
                out.push(with_aliases(
                    finding(CARGO_AUDIT, id, severity, file, pkg, version, message),
                    strings(adv.and_then(|a| a.get("aliases"))),
                ));
            }
        }
    }
    Ok(out)
}

fn cargo_package(item: &Value, adv: &Value) -> (Option<String>, Option<String>) {
    let package = item.get("package");
    let name = package
        .and_then(|p| str_of(p, "name"))
        .or_else(|| str_of(adv, "package"))
        .map(str::to_string);
    let version = package
        .and_then(|p| str_of(p, "version"))
        .map(str::to_string);
    (name, version)
}

fn cargo_fix(item: &Value, pkg: Option<&str>) -> String {
    let patched: Vec<&str> = item
        .get("versions")
        .and_then(|v| v.get("patched"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if patched.is_empty() {
        "no fixed version: replace the crate or allowlist it with a reason".to_string()
    } else {
        format!(
            "fix: upgrade {} to {}",
            pkg.unwrap_or("the crate"),
            patched.join(" or ")
        )
    }
}

/// The severity of a CVSS v3.0/v3.1 vector's base score (`CVSS:3.1/AV:N/AC:L/…`):
/// 9.0+ CRITICAL, 7.0+ HIGH, 4.0+ MODERATE, below LOW. `None` for anything else
/// (CVSS v4, missing metrics, unknown values).
pub fn cvss3_severity(vector: &str) -> Option<Severity> {
    let score = cvss3_base_score(vector)?;
    Some(if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Moderate
    } else {
        Severity::Low
    })
}

/// The CVSS v3.x base score of a vector, per the specification's formulas.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.trim().split('/');
    let head = parts.next()?;
    if head != "CVSS:3.0" && head != "CVSS:3.1" {
        return None;
    }
    let mut m = Map::new();
    for part in parts {
        let (k, v) = part.split_once(':')?;
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    let get = |k: &str| m.get(k).and_then(Value::as_str);
    let changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| match get(k)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss: f64 = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(roundup(raw))
}

/// CVSS v3.1's Roundup: the smallest number with one decimal that is at least `x`.
fn roundup(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

fn pip(doc: &Value, file: &str) -> Result<Vec<Finding>, AuditError> {
    const TOOL: &str = "pip-audit";
    let deps = doc
        .get("dependencies")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(file, TOOL, "\"dependencies\" is not a list"))?;
    let mut out = Vec::new();
    for (i, dep) in deps.iter().enumerate() {
        let name = str_of(dep, "name")
            .ok_or_else(|| malformed(file, TOOL, format!("dependencies[{i}] has no name")))?;
        let version = str_of(dep, "version").map(str::to_string);
        if let Some(reason) = str_of(dep, "skip_reason") {
            out.push(finding(
                PIP_AUDIT,
                "PIP-AUDIT-SKIPPED".to_string(),
                Severity::Moderate,
                file,
                Some(name.to_string()),
                version.clone(),
                format!("{name} was not audited: {reason}"),
            ));
        }
        let Some(vulns) = dep.get("vulns") else {
            continue;
        };
        let vulns = vulns.as_array().ok_or_else(|| {
            malformed(file, TOOL, format!("dependencies[{i}].vulns is not a list"))
        })?;
        for (j, v) in vulns.iter().enumerate() {
            let id = str_of(v, "id").ok_or_else(|| {
                malformed(
                    file,
                    TOOL,
                    format!("dependencies[{i}].vulns[{j}] has no id"),
                )
            })?;
            let severity = str_of(v, "severity")
                .and_then(Severity::parse)
                .unwrap_or(Severity::High);
            let fixes: Vec<&str> = v
                .get("fix_versions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let aliases: Vec<&str> = v
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let description = str_of(v, "description")
                .map(|d| d.lines().next().unwrap_or(d).trim().to_string())
                .unwrap_or_else(|| format!("{id} in {name}"));
            let mut message = description;
            if fixes.is_empty() {
                message.push_str("; no fixed version yet");
            } else {
                message.push_str(&format!("; fix: upgrade {name} to {}", fixes.join(" or ")));
            }
            if !aliases.is_empty() {
                message.push_str(&format!("; aliases: {}", aliases.join(", ")));
            }
            out.push(with_aliases(
                finding(
                    PIP_AUDIT,
                    id.to_string(),
                    severity,
                    file,
                    Some(name.to_string()),
                    version.clone(),
                    message,
                ),
                aliases.iter().map(|a| a.to_string()),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_scores_match_the_specification_examples() {
        // Scores from NVD for well-known vectors.
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
            Some(7.5)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"),
            Some(1.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        assert_eq!(
            cvss3_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            None
        );
        assert_eq!(cvss3_base_score("CVSS:3.1/AV:N"), None);
        assert_eq!(
            cvss3_severity("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(Severity::Moderate)
        );
    }
}
