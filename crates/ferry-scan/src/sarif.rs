//! Findings as SARIF 2.1.0, for GitHub code scanning and other tools: one run per
//! scanner, one rule per id, one result per finding. Allowlisted findings are kept as
//! results with an accepted external suppression carrying the justification.
//!
//! Levels: CRITICAL and HIGH are `error`, MODERATE `warning`, LOW `note`. Each rule
//! carries GitHub's `security-severity` property (CRITICAL 9.5, HIGH 8.0, MODERATE 5.5,
//! LOW 2.0) and the highest severity among its findings.
//!
//! Aliases (the CVE and GHSA ids an audit gives the same advisory) go in the property
//! bags: `aliases` on the rule (every alias seen) and on each result (its own); a
//! finding whose allowlist entry expired carries `allowlistExpired` (the entry's last
//! day) on its result.

use serde_json::{Value, json};

use crate::finding::{Finding, Severity};

/// The `$schema` of the document.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";

/// A severity's SARIF `level`.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Moderate => "warning",
        Severity::Low => "note",
    }
}

/// GitHub's `security-severity` score for a severity.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Moderate => "5.5",
        Severity::Low => "2.0",
    }
}

/// A file path as a relative URI reference: `/` separators, and characters that may
/// not appear in a URI percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SARIF 2.1.0 document for `findings`. `scanners` are the scanners that ran: each
/// gets a run even without findings (so a clean scan says so); a scanner that only
/// appears in `findings` gets one too, after them.
pub fn to_sarif(findings: &[Finding], scanners: &[&str]) -> Value {
    let mut order: Vec<&str> = Vec::new();
    for s in scanners
        .iter()
        .copied()
        .chain(findings.iter().map(|f| f.scanner.as_str()))
    {
        if !order.contains(&s) {
            order.push(s);
        }
    }
    let runs: Vec<Value> = order
        .into_iter()
        .map(|scanner| run(scanner, findings.iter().filter(|f| f.scanner == scanner)))
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": runs,
    })
}

fn run<'a>(scanner: &str, findings: impl Iterator<Item = &'a Finding>) -> Value {
    let findings: Vec<&Finding> = findings.collect();
    // Rules in first-seen order, with the highest severity seen and every alias.
    let mut rules: Vec<(&str, Severity, &str, Vec<&str>)> = Vec::new();
    for f in &findings {
        let i = match rules.iter().position(|r| r.0 == f.id) {
            Some(i) => i,
            None => {
                rules.push((&f.id, f.severity, &f.message, Vec::new()));
                rules.len() - 1
            }
        };
        let r = &mut rules[i];
        r.1 = r.1.max(f.severity);
        for a in &f.aliases {
            if !r.3.contains(&a.as_str()) {
                r.3.push(a);
            }
        }
    }
    let rule_values: Vec<Value> = rules
        .iter()
        .map(|(id, sev, message, aliases)| {
            let mut rule = json!({
                "id": id,
                "shortDescription": { "text": first_clause(message) },
                "defaultConfiguration": { "level": level(*sev) },
                "properties": {
                    "security-severity": security_severity(*sev),
                    "severity": sev.as_str(),
                    "tags": ["security"],
                },
            });
            if !aliases.is_empty() {
                rule["properties"]["aliases"] = json!(aliases);
            }
            rule
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let rule_index = rules.iter().position(|r| r.0 == f.id).unwrap_or(0);
            let mut result = json!({
                "ruleId": f.id,
                "ruleIndex": rule_index,
                "level": level(f.severity),
                "message": { "text": if f.message.is_empty() { f.id.clone() } else { f.message.clone() } },
                "properties": { "severity": f.severity.as_str() },
            });
            if !f.aliases.is_empty() {
                result["properties"]["aliases"] = json!(f.aliases);
            }
            if let Some(day) = f.expired {
                result["properties"]["allowlistExpired"] = json!(day.to_string());
            }
            let loc = &f.location;
            let mut location = serde_json::Map::new();
            if let Some(file) = &loc.file {
                let mut physical = json!({ "artifactLocation": { "uri": uri(file) } });
                if let Some(line) = loc.line.filter(|l| *l >= 1) {
                    physical["region"] = json!({ "startLine": line });
                }
                location.insert("physicalLocation".into(), physical);
            }
            let mut logical = Vec::new();
            if let Some(id) = &loc.logical_id {
                logical.push(json!({ "name": id, "kind": "resource" }));
            }
            if let Some(pkg) = &loc.package {
                let name = match &loc.version {
                    Some(v) => format!("{pkg}@{v}"),
                    None => pkg.clone(),
                };
                logical.push(json!({ "name": name, "kind": "module" }));
            }
            if !logical.is_empty() {
                location.insert("logicalLocations".into(), Value::Array(logical));
            }
            if !location.is_empty() {
                result["locations"] = json!([Value::Object(location)]);
            }
            if let Some(reason) = &f.allowed {
                result["suppressions"] = json!([{
                    "kind": "external",
                    "status": "accepted",
                    "justification": reason,
                }]);
            }
            result
        })
        .collect();
    json!({
        "tool": {
            "driver": {
                "name": scanner,
                "rules": rule_values,
            }
        },
        "results": results,
    })
}

/// The text up to the first `;` (where audit messages put the fix hint).
fn first_clause(message: &str) -> &str {
    message.split(';').next().unwrap_or(message).trim()
}
