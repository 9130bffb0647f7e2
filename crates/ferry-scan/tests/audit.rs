//! The three audit formats, read from sample documents in the shapes the tools print.

use ferry_scan::audit::{AuditFormat, detect};
use ferry_scan::{AuditError, Finding, Severity, parse_audit};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/audit/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> Vec<Finding> {
    parse_audit(&fixture(name), name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn by_id<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id} in {findings:#?}"))
}

#[test]
fn formats_are_detected_from_the_document() {
    let detected = |name: &str| {
        let doc: serde_json::Value =
            serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        detect(&doc)
    };
    assert_eq!(detected("npm7.json"), Some(AuditFormat::Npm7));
    assert_eq!(detected("npm6.json"), Some(AuditFormat::Npm6));
    assert_eq!(detected("cargo.json"), Some(AuditFormat::Cargo));
    assert_eq!(detected("cargo-clean.json"), Some(AuditFormat::Cargo));
    assert_eq!(detected("pip.json"), Some(AuditFormat::Pip));
    assert_eq!(detected("unknown.json"), None);
}

#[test]
fn npm7_advisories_become_findings_and_transitive_entries_point_at_them() {
    let f = parse("npm7.json");
    // mkdirp is vulnerable only through minimist: reported once, on minimist.
    assert_eq!(f.len(), 3, "{f:#?}");
    assert!(f.iter().all(|x| x.scanner == "npm-audit"));
    let minimist = by_id(&f, "GHSA-xvch-5gv4-984h");
    assert_eq!(minimist.severity, Severity::Critical);
    assert_eq!(minimist.location.package.as_deref(), Some("minimist"));
    assert_eq!(minimist.location.file.as_deref(), Some("npm7.json"));
    assert_eq!(
        minimist.message,
        "Prototype Pollution in minimist (vulnerable: minimist <0.2.4); fix: run `npm audit fix`; \
         required by mkdirp; https://github.com/advisories/GHSA-xvch-5gv4-984h"
    );
    let semver = by_id(&f, "GHSA-c2qf-rxjj-qqgw");
    assert_eq!(semver.severity, Severity::Moderate);
    assert!(
        semver.message.contains("fix: upgrade semver to 7.6.0"),
        "{}",
        semver.message
    );
    let lodash = by_id(&f, "GHSA-35jh-r3h4-6jhm");
    assert_eq!(lodash.severity, Severity::High);
    assert!(
        lodash.message.contains("no fix available yet"),
        "{}",
        lodash.message
    );
    assert!(f.iter().all(|x| x.allowed.is_none()));
}

#[test]
fn npm7_transitive_entry_naming_a_package_missing_from_the_report_is_kept() {
    let doc = br#"{"auditReportVersion": 2, "vulnerabilities": {
        "webpack": {"name": "webpack", "severity": "high", "via": ["terser"], "fixAvailable": false}
    }}"#;
    let f = parse_audit(doc, "package-lock.json").expect("parses");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].id, "NPM-TRANSITIVE-webpack");
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(
        f[0].message,
        "webpack is vulnerable through terser; no fix available yet"
    );
}

#[test]
fn npm7_advisory_without_a_known_severity_is_high() {
    let doc = br#"{"auditReportVersion": 2, "vulnerabilities": {
        "x": {"name": "x", "via": [{"source": 42, "name": "x", "title": "Bad", "severity": "severe"}]}
    }}"#;
    let f = parse_audit(doc, "r.json").expect("parses");
    assert_eq!(
        (f[0].id.as_str(), f[0].severity),
        ("NPM-42", Severity::High)
    );
}

#[test]
fn npm6_advisories_one_finding_per_installed_version() {
    let f = parse("npm6.json");
    assert_eq!(f.len(), 3, "{f:#?}");
    let lodash: Vec<&Finding> = f.iter().filter(|x| x.id == "CVE-2019-10744").collect();
    assert_eq!(lodash.len(), 2);
    assert_eq!(lodash[0].location.version.as_deref(), Some("4.17.15"));
    assert_eq!(lodash[1].location.version.as_deref(), Some("4.17.19"));
    assert_eq!(lodash[0].severity, Severity::Low);
    assert_eq!(
        lodash[0].message,
        "Prototype Pollution; fix: Upgrade to version 4.17.19 or later; https://npmjs.com/advisories/1523"
    );
    let minimist = by_id(&f, "GHSA-vh95-rmgr-6w4m");
    assert_eq!(minimist.severity, Severity::Moderate);
    assert_eq!(minimist.location.package.as_deref(), Some("minimist"));
}

#[test]
fn cargo_audit_vulnerabilities_and_warnings() {
    let f = parse("cargo.json");
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(f.iter().all(|x| x.scanner == "cargo-audit"));
    // CVSS 5.9 (AV:N/AC:H/C:H): MODERATE.
    let rsa = by_id(&f, "RUSTSEC-2023-0071");
    assert_eq!(rsa.severity, Severity::Moderate);
    assert_eq!(rsa.location.package.as_deref(), Some("rsa"));
    assert_eq!(rsa.location.version.as_deref(), Some("0.9.6"));
    assert!(rsa.message.starts_with("Marvin Attack"));
    assert!(rsa.message.contains("no fixed version"), "{}", rsa.message);
    // No cvss: HIGH, so it does not pass silently.
    let h2 = by_id(&f, "RUSTSEC-2024-0332");
    assert_eq!(h2.severity, Severity::High);
    assert_eq!(
        h2.message,
        "Degradation of service in h2 servers with CONTINUATION Flood; fix: upgrade h2 to ^0.3.26 or >=0.4.4"
    );
    let instant = by_id(&f, "RUSTSEC-2024-0384");
    assert_eq!(instant.severity, Severity::Low);
    assert!(instant.message.starts_with("unmaintained: "));
    let yanked = by_id(&f, "YANKED");
    assert_eq!(yanked.severity, Severity::Moderate);
    assert_eq!(yanked.location.package.as_deref(), Some("futures-util"));
    assert_eq!(yanked.location.version.as_deref(), Some("0.3.29"));
    assert!(
        yanked
            .message
            .starts_with("yanked: futures-util 0.3.29 is yanked")
    );
}

#[test]
fn cargo_audit_with_no_vulnerabilities_has_no_findings() {
    assert_eq!(parse("cargo-clean.json"), Vec::<Finding>::new());
}

#[test]
fn pip_audit_vulnerabilities_with_fix_versions_are_high_by_default() {
    let f = parse("pip.json");
    assert_eq!(f.len(), 4, "{f:#?}");
    let flask = by_id(&f, "PYSEC-2019-179");
    assert_eq!(flask.severity, Severity::High);
    assert_eq!(flask.location.package.as_deref(), Some("flask"));
    assert_eq!(flask.location.version.as_deref(), Some("0.5"));
    assert_eq!(
        flask.message,
        "The Pallets Project Flask before 1.0 is affected by: unexpected memory usage.; \
         fix: upgrade flask to 1.0; aliases: CVE-2019-1010083, GHSA-5wv5-4vpf-pj6m"
    );
    let ecdsa = by_id(&f, "GHSA-wj6h-64fc-37mp");
    assert!(ecdsa.message.contains("no fixed version yet"));
    let skipped = by_id(&f, "PIP-AUDIT-SKIPPED");
    assert_eq!(skipped.severity, Severity::Moderate);
    assert_eq!(skipped.location.package.as_deref(), Some("my-local-pkg"));
}

#[test]
fn pip_audit_known_severity_is_used() {
    let doc = br#"{"dependencies": [{"name": "a", "version": "1", "vulns": [
        {"id": "PYSEC-1", "fix_versions": [], "aliases": [], "description": "d", "severity": "low"}]}]}"#;
    let f = parse_audit(doc, "pip.json").expect("parses");
    assert_eq!(f[0].severity, Severity::Low);
}

#[test]
fn bad_inputs_are_errors_naming_what_was_expected() {
    let err = |name: &str| match parse_audit(&fixture(name), name) {
        Ok(f) => panic!("{name} parsed: {f:#?}"),
        Err(e) => e,
    };
    let e = err("not-json.txt");
    assert!(matches!(e, AuditError::NotJson { .. }));
    let text = e.to_string();
    assert!(text.starts_with("not-json.txt: not JSON ("), "{text}");
    assert!(
        text.contains("`npm audit --json`, `cargo audit --json` or `pip-audit -f json`"),
        "{text}"
    );

    let e = err("unknown.json");
    assert!(matches!(e, AuditError::UnknownFormat { .. }));
    assert!(
        e.to_string()
            .starts_with("unknown.json: not an audit report: expected `npm audit --json`")
    );

    let e = err("npm-error.json");
    assert_eq!(
        e.to_string(),
        "npm-error.json: npm audit reported an error instead of an audit: This command requires an existing lockfile."
    );

    let e = err("npm7-bad-via.json");
    assert_eq!(
        e.to_string(),
        "npm7-bad-via.json: npm audit report: vulnerabilities.x.via is not a list"
    );

    for (doc, expected) in [
        (&b""[..], "empty.json: not JSON"),
        (b"[]", "empty.json: not an audit report"),
        (b"null", "empty.json: not an audit report"),
        (
            br#"{"vulnerabilities": {"list": [{"package": {"name": "a"}}]}}"#,
            "empty.json: cargo audit report: vulnerabilities.list[0] has no advisory",
        ),
        (
            br#"{"dependencies": [{"version": "1"}]}"#,
            "empty.json: pip-audit report: dependencies[0] has no name",
        ),
        (
            br#"{"dependencies": [{"name": "a", "vulns": [{"fix_versions": []}]}]}"#,
            "empty.json: pip-audit report: dependencies[0].vulns[0] has no id",
        ),
    ] {
        let e = parse_audit(doc, "empty.json").expect_err("must not parse");
        assert!(e.to_string().starts_with(expected), "{e}");
    }
}
