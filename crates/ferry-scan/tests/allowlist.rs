//! The allowlist: validation, matching, expiry.

use ferry_scan::allowlist::{apply, validate};
use ferry_scan::{AllowEntry, AllowNote, Date, Finding, Location, Severity, parse_audit};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn entries() -> Vec<AllowEntry> {
    serde_json::from_slice(&fixture("allowlist.json")).expect("the fixture deserializes")
}

fn date(s: &str) -> Date {
    s.parse().expect("a date")
}

fn finding(id: &str, package: &str, severity: Severity) -> Finding {
    Finding {
        scanner: "npm-audit".into(),
        id: id.into(),
        severity,
        location: Location {
            package: Some(package.into()),
            ..Location::default()
        },
        message: "m".into(),
        allowed: None,
        aliases: Vec::new(),
        expired: None,
    }
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(validate(&entries()), vec![]);
}

#[test]
fn matching_unexpired_entries_allow_with_their_reason() {
    let mut f = parse_audit(&fixture("audit/npm7.json"), "package-lock.json").expect("parses");
    let notes = apply(&mut f, &entries(), date("2026-11-26"));
    let semver = f
        .iter()
        .find(|x| x.id == "GHSA-c2qf-rxjj-qqgw")
        .expect("semver");
    assert_eq!(
        semver.allowed.as_deref(),
        Some("only parses our own version strings")
    );
    assert!(
        f.iter()
            .filter(|x| x.id != "GHSA-c2qf-rxjj-qqgw")
            .all(|x| x.allowed.is_none())
    );
    // Entries 2-4 match nothing in an npm report.
    assert_eq!(
        notes,
        vec![
            AllowNote::Unused {
                index: 2,
                id: "RUSTSEC-2023-0071".into()
            },
            AllowNote::Unused {
                index: 3,
                id: "PYSEC-2019-179".into()
            },
            AllowNote::Unused {
                index: 4,
                id: "YANKED".into()
            },
        ]
    );
}

#[test]
fn an_entry_holds_through_its_expiry_day_and_not_after() {
    let e = entries();
    let mut on_the_day = parse_audit(&fixture("audit/npm7.json"), "p").expect("parses");
    apply(&mut on_the_day, &e, date("2027-01-31"));
    assert!(on_the_day.iter().any(|x| x.allowed.is_some()));

    let mut day_after = parse_audit(&fixture("audit/npm7.json"), "p").expect("parses");
    let notes = apply(&mut day_after, &e, date("2027-02-01"));
    assert!(day_after.iter().all(|x| x.allowed.is_none()));
    let expired = AllowNote::Expired {
        index: 1,
        id: "GHSA-c2qf-rxjj-qqgw".into(),
        expired: date("2027-01-31"),
        findings: 1,
    };
    assert_eq!(notes[0], expired);
    assert_eq!(
        expired.to_string(),
        "allowlist entry 1 (GHSA-c2qf-rxjj-qqgw) expired on 2027-01-31: 1 finding(s) count again; \
         fix them or renew the entry with a new `expires` and reason"
    );
}

#[test]
fn an_expired_entry_blocks_again_in_a_cargo_report() {
    let mut f = parse_audit(&fixture("audit/cargo.json"), "Cargo.lock").expect("parses");
    let notes = apply(&mut f, &entries(), date("2026-11-26"));
    let rsa = f.iter().find(|x| x.id == "RUSTSEC-2023-0071").expect("rsa");
    assert_eq!(rsa.allowed, None, "expired on 2026-10-31");
    assert!(notes.contains(&AllowNote::Expired {
        index: 2,
        id: "RUSTSEC-2023-0071".into(),
        expired: date("2026-10-31"),
        findings: 1,
    }));
    let yanked = f.iter().find(|x| x.id == "YANKED").expect("yanked");
    assert_eq!(
        yanked.allowed.as_deref(),
        Some("upgrade scheduled with tokio bump")
    );
}

#[test]
fn package_must_match_when_given() {
    let mut f = parse_audit(&fixture("audit/pip.json"), "requirements.txt").expect("parses");
    apply(&mut f, &entries(), date("2026-11-26"));
    assert!(
        f.iter().all(|x| x.allowed.is_none()),
        "django's entry must not allow flask"
    );

    let e = vec![AllowEntry {
        id: "ghsa-ABC".into(),
        package: Some("Lodash".into()),
        reason: "r".into(),
        expires: None,
    }];
    let mut f = vec![
        finding("GHSA-abc", "lodash", Severity::High),
        finding("GHSA-abc", "other", Severity::High),
    ];
    apply(&mut f, &e, date("2030-01-01"));
    assert_eq!(
        f[0].allowed.as_deref(),
        Some("r"),
        "id and package ignore ASCII case"
    );
    assert_eq!(f[1].allowed, None);
}

#[test]
fn an_entry_without_package_matches_every_package_and_resource() {
    let e = vec![AllowEntry {
        id: "S3_BUCKET_LOGGING".into(),
        package: None,
        reason: "logs go to CloudTrail".into(),
        expires: None,
    }];
    let mut f = vec![finding("S3_BUCKET_LOGGING", "a", Severity::Moderate)];
    f.push(Finding {
        location: Location {
            logical_id: Some("Bucket".into()),
            ..Location::default()
        },
        ..f[0].clone()
    });
    let notes = apply(&mut f, &e, date("2030-01-01"));
    assert!(f.iter().all(|x| x.allowed.is_some()));
    assert_eq!(notes, vec![]);
}

#[test]
fn invalid_entries_are_reported_together_and_allow_nothing() {
    let e: Vec<AllowEntry> = serde_json::from_str(
        r#"[
            {"id": "GHSA-1", "reason": "  "},
            {"id": "", "reason": "r", "expires": "31/01/2027"},
            {"id": "GHSA-2", "package": "", "reason": "r", "expires": "2027-02-30"}
        ]"#,
    )
    .expect("deserializes");
    let problems: Vec<String> = validate(&e).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        vec![
            "allowlist entry 1 (GHSA-1): reason: is required: write why this finding is accepted, e.g. `reason: not reachable, we never parse untrusted input`",
            "allowlist entry 2 (no id): id: is empty: write the advisory or rule id it accepts, e.g. `id: GHSA-xxxx-xxxx-xxxx`",
            "allowlist entry 2 (no id): expires: `31/01/2027` is not a date: write it as YYYY-MM-DD, e.g. 2027-03-31",
            "allowlist entry 3 (GHSA-2): package: is empty: name the package, or leave `package` out to match any",
            "allowlist entry 3 (GHSA-2): expires: `2027-02-30` is not a date: write it as YYYY-MM-DD, e.g. 2027-03-31",
        ]
    );
    let mut f = vec![finding("GHSA-1", "a", Severity::Critical)];
    let notes = apply(&mut f, &e, date("2026-01-01"));
    assert_eq!(f[0].allowed, None);
    assert_eq!(
        notes[0],
        AllowNote::Invalid {
            index: 1,
            id: "GHSA-1".into()
        }
    );
    assert_eq!(
        notes[0].to_string(),
        "allowlist entry 1 (GHSA-1) is not valid and allows nothing"
    );
}

#[test]
fn unknown_keys_and_a_missing_id_are_deserialization_errors() {
    let e = serde_json::from_str::<Vec<AllowEntry>>(
        r#"[{"id": "X", "reason": "r", "expire": "2027-01-01"}]"#,
    )
    .expect_err("unknown key");
    assert!(
        e.to_string().contains(
            "unknown field `expire`, expected one of `id`, `package`, `reason`, `expires`"
        ),
        "{e}"
    );
    let e = serde_json::from_str::<Vec<AllowEntry>>(r#"[{"reason": "r"}]"#).expect_err("no id");
    assert!(e.to_string().contains("missing field `id`"), "{e}");
}

#[test]
fn dates_deserialize_from_strings() {
    let d: Date = serde_json::from_str("\"2027-03-31\"").expect("a date");
    assert_eq!(d, Date::new(2027, 3, 31).expect("exists"));
    let e = serde_json::from_str::<Date>("\"2027-3-31\"").expect_err("not a date");
    assert!(e.to_string().contains("write it as YYYY-MM-DD"), "{e}");
}
