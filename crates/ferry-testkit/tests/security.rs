//! The build stage's security gate on the simulation: a scan that blocks fails the
//! build before any deployment, with a `gate_failed` event carrying the findings; a
//! clean scan lets the run go on; the scan sees the run's checkout.
#![allow(clippy::unwrap_used)]

use ferry_core::findings::{FindingRecord, Severity, Treatment};
use ferry_core::{Change, EventKind, RunStatus, StepStatus};
use ferry_engine::ports::{PortErrorKind, ScanReport, Store};
use ferry_testkit::Sim;
use ferry_testkit::pipelines::TINY;

const SHA: &str = "7d1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";

fn finding() -> FindingRecord {
    FindingRecord {
        tool: "cfn-guard".into(),
        id: "iam_no_wildcard".into(),
        aliases: Vec::new(),
        severity: Severity::Critical,
        treatment: Treatment::Blocks,
        reason: None,
        file: Some("cdk.out/App.template.json".into()),
        line: Some(3),
        logical_id: Some("AdminRole".into()),
        package: None,
        version: None,
        message: "IAM policy allows `*`".into(),
    }
}

fn blocking_report() -> ScanReport {
    ScanReport {
        blocked: true,
        summary: "blocked: 1 critical, 0 high, 0 moderate, 0 low, 0 allowed".into(),
        log: "CRITICAL cfn-guard iam_no_wildcard AdminRole: …\n".into(),
        data: serde_json::json!({"blocking": [{"id": "iam_no_wildcard"}]}),
        findings: vec![finding()],
        sarif: None,
    }
}

fn world() -> Sim {
    let yaml = TINY.replacen(
        "build:\n",
        "build:\n  gates:\n    security:\n      templates: [cdk.out/*.template.json]\n",
        1,
    );
    assert_ne!(yaml, TINY, "the tiny pipeline has a build section");
    let sim = Sim::new(&yaml);
    sim.source.ensure(SHA);
    sim
}

#[test]
fn a_blocking_scan_fails_the_build_before_any_deployment() {
    let sim = world();
    sim.scanner.reports(ScanReport {
        blocked: true,
        summary: "blocked: 1 critical, 0 high, 0 moderate, 0 low, 0 allowed".into(),
        log: "CRITICAL cfn-guard iam_no_wildcard AdminRole: …\n".into(),
        data: serde_json::json!({"blocking": [{"id": "iam_no_wildcard"}]}),
        findings: vec![finding()],
        sarif: None,
    });
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed, "{:?}", view.reason);
    assert!(
        view.reason
            .as_deref()
            .unwrap_or("")
            .contains("security gate"),
        "{:?}",
        view.reason
    );
    assert!(sim.deployed_envs(view.id).is_empty());
    let step = view.stages[0]
        .steps
        .iter()
        .find(|s| s.name == "security")
        .unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    let failed: Vec<_> = sim
        .events(view.id)
        .into_iter()
        .filter(|e| e.kind == EventKind::GateFailed && e.data["gate"] == "security")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["blocking"][0]["id"], "iam_no_wildcard");
    assert_eq!(sim.scanner.scanned.lock().unwrap().len(), 1);
}

#[test]
fn a_clean_scan_lets_the_run_go_on() {
    let sim = world();
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    assert!(
        sim.events(view.id)
            .iter()
            .any(|e| e.kind == EventKind::GatePassed && e.data["gate"] == "security")
    );
    let scanned = sim.scanner.scanned.lock().unwrap().clone();
    assert_eq!(scanned, [sim.layout.checkout(view.id)]);
}

#[test]
fn a_blocked_runs_findings_are_stored_with_it() {
    let sim = world();
    sim.scanner.reports(blocking_report());
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(sim.store.findings(view.id).unwrap(), vec![finding()]);
    assert_eq!(sim.store.finding_counts(view.id).unwrap().critical, 1);
}

#[test]
fn findings_are_committed_before_the_verdict_is() {
    let sim = world();
    sim.scanner.reports(blocking_report());
    // The batch carrying the gate's verdict fails: the findings are already stored.
    sim.store.fail_apply_if(10, |_, changes| {
        changes
            .iter()
            .any(|c| matches!(c, Change::Event(e) if e.kind == EventKind::GateFailed))
    });
    let err = sim.try_run(SHA).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Unavailable, "{err}");
    let run = sim.store.list_runs(1, false).unwrap()[0].id;
    assert_eq!(sim.store.findings(run).unwrap(), vec![finding()]);
}

#[test]
fn a_clean_scan_stores_no_findings() {
    let sim = world();
    let view = sim.run(SHA);
    assert_eq!(sim.store.findings(view.id).unwrap(), vec![]);
    assert_eq!(
        sim.store.finding_counts(view.id).unwrap(),
        ferry_core::findings::FindingCounts::default()
    );
}
