//! The gate's verdict, and seed Property 5 as a property: any set of findings blocks
//! exactly when one that is not allowed is CRITICAL or HIGH, after the allowlist.

use ferry_scan::allowlist::apply;
use ferry_scan::{AllowEntry, Date, Finding, Location, Severity, parse_audit, verdict};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn audits_through_the_allowlist_into_a_verdict() {
    let entries: Vec<AllowEntry> =
        serde_json::from_slice(&fixture("allowlist.json")).expect("deserializes");
    let today: Date = "2026-11-26".parse().expect("a date");
    let mut f = parse_audit(&fixture("audit/cargo.json"), "Cargo.lock").expect("parses");
    apply(&mut f, &entries, today);
    let v = verdict(&f);
    assert!(v.blocked, "h2 has no cvss: HIGH");
    assert_eq!(
        v.blocking.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["RUSTSEC-2024-0332"]
    );
    assert_eq!(
        v.warnings.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["RUSTSEC-2023-0071"]
    );
    assert_eq!(
        v.infos.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["RUSTSEC-2024-0384"]
    );
    assert_eq!(
        v.allowed.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["YANKED"]
    );
    assert_eq!(
        v.summary(),
        "blocked: 0 critical, 1 high, 1 moderate, 1 low, 1 allowed"
    );
}

#[test]
fn a_clean_report_passes_and_a_scanner_error_fails_closed() {
    let f = parse_audit(&fixture("audit/cargo-clean.json"), "Cargo.lock").expect("parses");
    let mut v = verdict(&f);
    assert!(!v.blocked);
    assert_eq!(
        v.summary(),
        "passed: 0 critical, 0 high, 0 moderate, 0 low, 0 allowed"
    );
    let err = parse_audit(&fixture("audit/not-json.txt"), "npm-audit.json").expect_err("not JSON");
    v.fail_closed(err.to_string());
    assert!(v.blocked);
    assert!(v.summary().ends_with(", 1 scanner error(s)"));
}

#[test]
fn blocking_findings_are_most_severe_first() {
    let mut f = parse_audit(&fixture("audit/npm7.json"), "p").expect("parses");
    f.reverse();
    let v = verdict(&f);
    let sev: Vec<Severity> = v.blocking.iter().map(|x| x.severity).collect();
    assert_eq!(sev, [Severity::Critical, Severity::High]);
    assert_eq!(
        (v.counts.critical, v.counts.high, v.counts.moderate),
        (1, 1, 1)
    );
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Low),
        Just(Severity::Moderate),
        Just(Severity::High),
        Just(Severity::Critical)
    ]
}

fn finding() -> impl Strategy<Value = Finding> {
    (0..6u8, 0..3u8, severity(), any::<bool>()).prop_map(|(id, pkg, severity, pre)| Finding {
        scanner: "npm-audit".into(),
        id: format!("GHSA-{id}"),
        severity,
        location: Location {
            package: Some(format!("p{pkg}")),
            ..Location::default()
        },
        message: "m".into(),
        // Some findings arrive allowed already (e.g. suppressed by an earlier pass).
        allowed: pre.then(|| "earlier".to_string()).filter(|_| id == 0),
        aliases: Vec::new(),
        expired: None,
    })
}

fn entry() -> impl Strategy<Value = AllowEntry> {
    (
        0..6u8,
        proptest::option::of(0..3u8),
        prop_oneof![Just(""), Just("accepted")],
        proptest::option::of(prop_oneof![
            Just("2026-01-01"),
            Just("2026-06-30"),
            Just("2027-12-31"),
            Just("not a date")
        ]),
    )
        .prop_map(|(id, pkg, reason, expires)| AllowEntry {
            id: format!("GHSA-{id}"),
            package: pkg.map(|p| format!("p{p}")),
            reason: reason.into(),
            expires: expires.map(str::to_string),
        })
}

proptest! {
    /// Property 5: blocks exactly when a non-allowed finding is CRITICAL or HIGH; the
    /// allowlist allows exactly the findings a valid, unexpired entry matches.
    #[test]
    fn blocks_exactly_on_a_non_allowed_critical_or_high(
        findings in proptest::collection::vec(finding(), 0..20),
        entries in proptest::collection::vec(entry(), 0..6),
        day in prop_oneof![Just("2025-12-31"), Just("2026-06-30"), Just("2026-07-01"), Just("2028-01-01")],
    ) {
        let today: Date = day.parse().expect("a date");
        let mut after = findings.clone();
        apply(&mut after, &entries, today);
        for (before, f) in findings.iter().zip(&after) {
            let covered = entries.iter().any(|e| {
                !e.reason.is_empty()
                    && e.id == f.id
                    && e.package.as_ref().is_none_or(|p| Some(p) == f.location.package.as_ref())
                    && match e.expires.as_deref() {
                        None => true,
                        Some(x) => x.parse::<Date>().is_ok_and(|d| today <= d),
                    }
            });
            prop_assert_eq!(f.allowed.is_some(), before.allowed.is_some() || covered);
        }
        let v = verdict(&after);
        let expected = after.iter().any(|f| f.allowed.is_none() && matches!(f.severity, Severity::Critical | Severity::High));
        prop_assert_eq!(v.blocked, expected);
        prop_assert_eq!(v.blocked, !v.blocking.is_empty());
        prop_assert_eq!(
            v.blocking.len() + v.warnings.len() + v.infos.len() + v.allowed.len(),
            after.len()
        );
        prop_assert_eq!(v.counts.critical + v.counts.high, v.blocking.len());
        prop_assert_eq!(v.counts.moderate, v.warnings.len());
        prop_assert_eq!(v.counts.low, v.infos.len());
        prop_assert_eq!(v.counts.allowed, v.allowed.len());
    }

    /// Without any allowlist, the seed's property as it is written.
    #[test]
    fn without_allowlist_blocks_exactly_on_critical_or_high(
        sev in proptest::collection::vec(severity(), 0..30),
    ) {
        let findings: Vec<Finding> = sev.iter().map(|s| Finding {
            scanner: "template".into(),
            id: "R".into(),
            severity: *s,
            location: Location::default(),
            message: String::new(),
            allowed: None,
            aliases: Vec::new(),
            expired: None,
        }).collect();
        prop_assert_eq!(verdict(&findings).blocked, sev.iter().any(|s| *s >= Severity::High));
    }
}
