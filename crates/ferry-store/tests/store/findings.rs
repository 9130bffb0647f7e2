//! A run's security findings: the same contract on SQLite and on the testkit's
//! MemoryStore — recorded in order, replaced as a whole, counted per severity with
//! allowlisted ones apart, NotFound for a run that does not exist.

use crate::support::{T0, new_run, plan, store};
use ferry_core::RunId;
use ferry_core::findings::{FindingCounts, FindingRecord, Severity, Treatment};
use ferry_engine::ports::{PortErrorKind, Store};
use proptest::prelude::*;

const YAML: &str = "pipeline: p\nbuild:\n  steps:\n    - name: b\n      run: make\nenvironments:\n  - name: production\n    deploy: {command: {run: ./deploy.sh}}\n";

fn record(id: &str, severity: Severity, treatment: Treatment) -> FindingRecord {
    FindingRecord {
        tool: "cargo-audit".into(),
        id: id.into(),
        aliases: vec!["CVE-2023-49092".into(), "GHSA-c38w-74pg-36hr".into()],
        severity,
        treatment,
        reason: (treatment == Treatment::Allowlisted).then(|| "not reachable".to_string()),
        file: Some("reports/cargo-audit.json".into()),
        line: None,
        logical_id: None,
        package: Some("rsa".into()),
        version: Some("0.9.6".into()),
        message: "Marvin Attack: potential key recovery; no fixed version".into(),
    }
}

fn template(id: &str) -> FindingRecord {
    FindingRecord {
        tool: "cfn-guard".into(),
        id: id.into(),
        aliases: Vec::new(),
        severity: Severity::High,
        treatment: Treatment::Blocks,
        reason: None,
        file: Some("cdk.out/Shop Stack.template.json".into()),
        line: Some(12),
        logical_id: Some("AssetsBucket".into()),
        package: None,
        version: None,
        message: "S3 bucket must have encryption enabled; «ünïcode» \"quotes\"".into(),
    }
}

fn run_in(store: &dyn Store) -> RunId {
    let (name, plan) = plan(YAML);
    store.create_run(&new_run(&name, &plan, T0)).unwrap()
}

/// The contract, on any store.
fn contract(store: &dyn Store) {
    let run = run_in(store);
    let other = run_in(store);
    assert_eq!(store.findings(run).unwrap(), vec![]);
    assert_eq!(store.finding_counts(run).unwrap(), FindingCounts::default());
    let first = vec![
        record("RUSTSEC-2023-0071", Severity::Moderate, Treatment::Warns),
        template("S3_BUCKET_ENCRYPTION"),
        record(
            "RUSTSEC-2024-0332",
            Severity::Critical,
            Treatment::Allowlisted,
        ),
        record("RUSTSEC-2024-0384", Severity::Low, Treatment::Informs),
        record("RUSTSEC-2024-0001", Severity::High, Treatment::Expired),
    ];
    store.record_findings(run, &first).unwrap();
    store
        .record_findings(other, &[record("X", Severity::Low, Treatment::Informs)])
        .unwrap();
    assert_eq!(store.findings(run).unwrap(), first);
    assert_eq!(
        store.finding_counts(run).unwrap(),
        FindingCounts {
            critical: 0,
            high: 2,
            moderate: 1,
            low: 1,
            allowlisted: 1
        }
    );
    // A second scan of the same run replaces the first.
    let second = vec![template("S3_PUBLIC_ACCESS")];
    store.record_findings(run, &second).unwrap();
    assert_eq!(store.findings(run).unwrap(), second);
    assert_eq!(store.finding_counts(run).unwrap().high, 1);
    assert_eq!(
        store.findings(other).unwrap().len(),
        1,
        "other runs untouched"
    );
    store.record_findings(run, &[]).unwrap();
    assert_eq!(store.findings(run).unwrap(), vec![]);
    // Unknown runs.
    let missing = RunId(999);
    for e in [
        store.findings(missing).unwrap_err(),
        store.finding_counts(missing).map(|_| ()).unwrap_err(),
        store.record_findings(missing, &second).unwrap_err(),
    ] {
        assert_eq!(e.kind, PortErrorKind::NotFound);
        assert!(e.message.contains("run 999"), "{}", e.message);
    }
}

#[test]
fn sqlite_keeps_a_runs_findings() {
    let (_dir, s) = store();
    contract(&s);
}

#[test]
fn memory_keeps_a_runs_findings_the_same_way() {
    contract(&ferry_testkit::MemoryStore::new());
}

#[test]
fn findings_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let run = {
        let s = ferry_store::SqliteStore::open(&path).unwrap();
        let run = run_in(&s);
        s.record_findings(run, &[template("S3_BUCKET_ENCRYPTION")])
            .unwrap();
        run
    };
    let s = ferry_store::SqliteStore::open(&path).unwrap();
    assert_eq!(
        s.findings(run).unwrap(),
        vec![template("S3_BUCKET_ENCRYPTION")]
    );
}

fn any_record() -> impl Strategy<Value = FindingRecord> {
    let severity = prop_oneof![
        Just(Severity::Low),
        Just(Severity::Moderate),
        Just(Severity::High),
        Just(Severity::Critical)
    ];
    let treatment = prop_oneof![
        Just(Treatment::Blocks),
        Just(Treatment::Warns),
        Just(Treatment::Informs),
        Just(Treatment::Allowlisted),
        Just(Treatment::Expired)
    ];
    (
        "[a-z-]{1,12}",
        "[A-Z0-9-]{1,20}",
        proptest::collection::vec("[A-Z0-9-]{1,20}", 0..3),
        severity,
        treatment,
        proptest::option::of(".{0,30}"),
        proptest::option::of("[a-z/ .]{1,20}"),
        proptest::option::of(1..100_000u32),
        proptest::option::of(".{0,10}"),
        ".{0,40}",
    )
        .prop_map(
            |(tool, id, aliases, severity, treatment, reason, file, line, package, message)| {
                FindingRecord {
                    tool,
                    id,
                    aliases,
                    severity,
                    treatment,
                    reason,
                    file,
                    line,
                    logical_id: None,
                    version: package.as_ref().map(|_| "1.0.0".to_string()),
                    package,
                    message,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Whatever the findings, both stores give them back as recorded and count them
    /// the same way, which is `FindingCounts::of` them.
    #[test]
    fn both_stores_agree(list in proptest::collection::vec(any_record(), 0..20)) {
        let (_dir, sqlite) = store();
        let memory = ferry_testkit::MemoryStore::new();
        for s in [&sqlite as &dyn Store, &memory] {
            let run = run_in(s);
            s.record_findings(run, &list).unwrap();
            prop_assert_eq!(&s.findings(run).unwrap(), &list);
            prop_assert_eq!(s.finding_counts(run).unwrap(), FindingCounts::of(&list));
        }
    }
}
