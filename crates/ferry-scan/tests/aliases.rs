//! Aliases: the other ids an audit gives an advisory (CVE, GHSA, npm's advisory number)
//! are kept on the finding, shown in SARIF, and an allowlist entry naming one matches
//! exactly like an entry naming the id — expiry included.

use ferry_scan::allowlist::apply;
use ferry_scan::{AllowEntry, AllowNote, Date, Finding, Location, Severity, parse_audit, to_sarif};
use proptest::prelude::*;

#[path = "support/sarif_schema.rs"]
mod sarif_schema;

fn parse(name: &str) -> Vec<Finding> {
    let path = format!("{}/tests/fixtures/audit/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_audit(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn by_id<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id} in {findings:#?}"))
}

fn entry(id: &str, expires: Option<&str>) -> AllowEntry {
    AllowEntry {
        id: id.into(),
        package: None,
        reason: "accepted for the test".into(),
        expires: expires.map(str::to_string),
    }
}

fn day(s: &str) -> Date {
    s.parse().expect("a date")
}

#[test]
fn each_audit_format_keeps_its_aliases() {
    let cargo = parse("cargo.json");
    assert_eq!(
        by_id(&cargo, "RUSTSEC-2023-0071").aliases,
        ["CVE-2023-49092", "GHSA-c38w-74pg-36hr"]
    );
    assert_eq!(
        by_id(&cargo, "RUSTSEC-2024-0332").aliases,
        ["GHSA-q6cp-qfwq-4gcv"]
    );
    let pip = parse("pip.json");
    assert_eq!(
        by_id(&pip, "PYSEC-2019-179").aliases,
        ["CVE-2019-1010083", "GHSA-5wv5-4vpf-pj6m"]
    );
    assert_eq!(
        by_id(&pip, "GHSA-wj6h-64fc-37mp").aliases,
        ["CVE-2024-23342"]
    );
    // npm 7: the id is the url's GHSA id, the `source` number an alias.
    let npm7 = parse("npm7.json");
    assert_eq!(by_id(&npm7, "GHSA-c2qf-rxjj-qqgw").aliases, ["NPM-1096482"]);
    // npm 6: the CVE is the id when there is no GHSA id; the number is an alias.
    let npm6 = parse("npm6.json");
    assert_eq!(by_id(&npm6, "CVE-2019-10744").aliases, ["NPM-1523"]);
    assert_eq!(by_id(&npm6, "GHSA-vh95-rmgr-6w4m").aliases, ["NPM-1179"]);
    // No alias repeats the id.
    for f in cargo.iter().chain(&pip).chain(&npm7).chain(&npm6) {
        assert!(!f.aliases.contains(&f.id), "{f:?}");
    }
}

#[test]
fn an_allowlist_entry_naming_the_cve_allows_the_advisory() {
    let mut cargo = parse("cargo.json");
    let notes = apply(
        &mut cargo,
        &[entry("cve-2023-49092", Some("2027-01-31"))],
        day("2026-11-26"),
    );
    assert_eq!(notes, vec![]);
    let rsa = by_id(&cargo, "RUSTSEC-2023-0071");
    assert_eq!(rsa.allowed.as_deref(), Some("accepted for the test"));
    assert_eq!(rsa.expired, None);
    let mut pip = parse("pip.json");
    apply(
        &mut pip,
        &[entry("CVE-2019-1010083", None)],
        day("2026-11-26"),
    );
    assert!(by_id(&pip, "PYSEC-2019-179").allowed.is_some());
    assert!(by_id(&pip, "PYSEC-2018-66").allowed.is_none());
    let mut npm = parse("npm7.json");
    apply(&mut npm, &[entry("NPM-1096482", None)], day("2026-11-26"));
    assert!(by_id(&npm, "GHSA-c2qf-rxjj-qqgw").allowed.is_some());
}

#[test]
fn an_expired_entry_naming_the_cve_counts_the_finding_again() {
    let mut cargo = parse("cargo.json");
    let notes = apply(
        &mut cargo,
        &[entry("CVE-2023-49092", Some("2026-11-25"))],
        day("2026-11-26"),
    );
    let rsa = by_id(&cargo, "RUSTSEC-2023-0071");
    assert_eq!(rsa.allowed, None);
    assert_eq!(rsa.expired, Some(day("2026-11-25")));
    assert_eq!(
        notes,
        vec![AllowNote::Expired {
            index: 1,
            id: "CVE-2023-49092".into(),
            expired: day("2026-11-25"),
            findings: 1
        }]
    );
    assert!(ferry_scan::verdict(&cargo).blocked);
    // A valid entry after the expired one still allows it.
    let mut cargo = parse("cargo.json");
    apply(
        &mut cargo,
        &[
            entry("CVE-2023-49092", Some("2026-11-25")),
            entry("RUSTSEC-2023-0071", None),
        ],
        day("2026-11-26"),
    );
    let rsa = by_id(&cargo, "RUSTSEC-2023-0071");
    assert!(rsa.allowed.is_some());
    assert_eq!(rsa.expired, None);
}

#[test]
fn sarif_shows_aliases_and_expired_entries() {
    let mut findings = parse("cargo.json");
    apply(
        &mut findings,
        &[entry("GHSA-q6cp-qfwq-4gcv", Some("2026-01-01"))],
        day("2026-11-26"),
    );
    let doc = to_sarif(&findings, &["cargo-audit"]);
    assert_eq!(sarif_schema::validate(&doc), Vec::<String>::new());
    let run = &doc["runs"][0];
    let rule = run["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["id"] == "RUSTSEC-2023-0071")
        .expect("rule");
    assert_eq!(
        rule["properties"]["aliases"],
        serde_json::json!(["CVE-2023-49092", "GHSA-c38w-74pg-36hr"])
    );
    let h2 = run["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "RUSTSEC-2024-0332")
        .expect("h2");
    assert_eq!(
        h2["properties"]["aliases"],
        serde_json::json!(["GHSA-q6cp-qfwq-4gcv"])
    );
    assert_eq!(h2["properties"]["allowlistExpired"], "2026-01-01");
    assert!(h2.get("suppressions").is_none());
}

fn finding(id: &str, aliases: Vec<String>, package: &str, severity: Severity) -> Finding {
    Finding {
        scanner: "cargo-audit".into(),
        id: id.into(),
        aliases,
        severity,
        location: Location {
            package: Some(package.into()),
            ..Location::default()
        },
        message: "m".into(),
        allowed: None,
        expired: None,
    }
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Low),
        Just(Severity::Moderate),
        Just(Severity::High),
        Just(Severity::Critical)
    ]
}

proptest! {
    /// Whatever the findings, packages, expiry dates and day: an allowlist whose entries
    /// name an alias of an advisory gives exactly what the same allowlist naming the
    /// advisory's id gives — the same findings allowed, expired and counting, the same
    /// notes and the same verdict.
    #[test]
    fn an_alias_match_is_an_id_match(
        specs in proptest::collection::vec((0..4u8, 0..3u8, severity()), 1..12),
        entries in proptest::collection::vec(
            (0..4u8, proptest::option::of(0..3u8), proptest::option::of(0..4u8), any::<bool>()),
            1..5,
        ),
        today in 0..4u8,
        upper in any::<bool>(),
    ) {
        let id = |a: u8| format!("RUSTSEC-2024-000{a}");
        let alias = |a: u8| format!("CVE-2024-1000{a}");
        let pkg = |p: u8| format!("crate{p}");
        let date = |d: u8| format!("2026-0{}-01", d + 1);
        let findings: Vec<Finding> = specs
            .iter()
            .map(|(a, p, s)| finding(&id(*a), vec![alias(*a), format!("GHSA-{a}")], &pkg(*p), *s))
            .collect();
        let make = |by_alias: bool| -> Vec<AllowEntry> {
            entries
                .iter()
                .map(|(a, p, e, _)| {
                    let name = if by_alias { alias(*a) } else { id(*a) };
                    AllowEntry {
                        id: if upper { name } else { name.to_lowercase() },
                        package: p.map(pkg),
                        reason: format!("reason {a}"),
                        expires: e.map(date),
                    }
                })
                .collect()
        };
        // Mixed: some entries by id, some by alias.
        let mixed: Vec<AllowEntry> = entries
            .iter()
            .zip(make(true).into_iter().zip(make(false)))
            .map(|((_, _, _, by_alias), (a, i))| if *by_alias { a } else { i })
            .collect();
        let today: Date = date(today).parse().expect("a date");
        let mut by_id = findings.clone();
        let id_notes = apply(&mut by_id, &make(false), today);
        for allowlist in [make(true), mixed] {
            let mut by_alias = findings.clone();
            let alias_notes = apply(&mut by_alias, &allowlist, today);
            prop_assert_eq!(&by_alias, &by_id);
            prop_assert_eq!(ferry_scan::verdict(&by_alias), ferry_scan::verdict(&by_id));
            // Notes name the entry as written; otherwise the same.
            let strip = |n: &[AllowNote]| -> Vec<String> {
                n.iter().map(|x| match x {
                    AllowNote::Expired { index, expired, findings, .. } => format!("expired {index} {expired} {findings}"),
                    AllowNote::Invalid { index, .. } => format!("invalid {index}"),
                    AllowNote::Unused { index, .. } => format!("unused {index}"),
                }).collect()
            };
            prop_assert_eq!(strip(&alias_notes), strip(&id_notes));
        }
    }
}
