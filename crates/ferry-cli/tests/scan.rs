//! `ferry scan` with the real binary in a temporary folder: templates checked by the
//! built-in cfn-guard pack and the template checks, audit reports (a file and a command),
//! the allowlist from ferry.yml (an expired entry blocks again), SARIF output, flags
//! without ferry.yml, and a scan that cannot scan failing closed.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{Repo, assert_code, stdout};

const VIOLATING: &str = include_str!("../../ferry-scan/tests/fixtures/templates/violating.yaml");
const COMPLIANT: &str = include_str!("../../ferry-scan/tests/fixtures/templates/compliant.yaml");
const NPM: &str = include_str!("../../ferry-scan/tests/fixtures/audit/npm7.json");
const CARGO: &str = include_str!("../../ferry-scan/tests/fixtures/audit/cargo.json");

fn findings(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn flags_alone_scan_a_folder_without_ferry_yml() {
    let dir = Repo::plain();
    dir.write("cdk.out/good.template.yaml", COMPLIANT);
    let out = dir.ferry(&["scan", "--templates", "cdk.out/*.template.yaml", "--json"]);
    assert_code(&out, 0, "a compliant template");
    let v = findings(&out);
    assert_eq!(v["verdict"]["blocked"], false, "{v:#}");

    dir.write("cdk.out/bad.template.yaml", VIOLATING);
    let sarif = dir.join("scan.sarif");
    let out = dir.ferry(&[
        "scan",
        "--templates",
        "cdk.out/*.template.yaml",
        "--sarif",
        sarif.to_str().unwrap(),
    ]);
    assert_code(&out, 1, "the seed's rules broken");
    let text = stdout(&out);
    for rule in [
        "s3_bucket_encryption",
        "s3_bucket_public_access",
        "dynamodb_encryption",
        "lambda_dlq",
        "iam_no_wildcard",
    ] {
        assert!(text.contains(rule), "{rule} missing:\n{text}");
    }
    assert!(text.contains("blocked:"), "{text}");
    let doc: Value = serde_json::from_str(&dir.read("scan.sarif")).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let results: usize = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["results"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(results >= 5, "{doc:#}");

    // Nothing to scan: a usage error.
    let out = dir.ferry(&["scan"]);
    assert_code(&out, 2, "nothing to scan");
}

#[test]
fn ferry_yml_drives_audits_and_the_allowlist_and_failures_block() {
    let repo = Repo::plain();
    repo.write("reports/npm.json", NPM);
    repo.write("reports/cargo.json", CARGO);
    repo.write("infra/app.template.yaml", COMPLIANT);
    let yml = |allow: &str, audit_extra: &str| {
        format!(
            "pipeline: scanned\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\n  gates:\n    security:\n      templates: [infra/*.template.yaml]\n      audit:\n        - file: reports/npm.json\n        - run: cat reports/cargo.json\n{audit_extra}      allow:\n{allow}environments:\n  - name: test\n    deploy: {{command: {{run: 'true'}}}}\n"
        )
    };
    // Without an allowlist: the reports' HIGH and CRITICAL findings block.
    repo.write("ferry.yml", &yml("", ""));
    let out = repo.ferry(&["scan", "--json"]);
    assert_code(&out, 1, "audit findings");
    let v = findings(&out);
    let ids: Vec<String> = v["verdict"]["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty(), "{v:#}");
    let scanners: Vec<&str> = v["scanners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        scanners.contains(&"npm-audit") && scanners.contains(&"cargo-audit"),
        "{v:#}"
    );

    // Every blocking id allowed, one of them with an expired entry: it blocks again.
    let mut allow = String::new();
    for (i, id) in ids.iter().enumerate() {
        let expires = if i == 0 { "2020-01-01" } else { "2099-12-31" };
        allow.push_str(&format!(
            "        - {{ id: {id}, reason: \"accepted for the test suite\", expires: {expires} }}\n"
        ));
    }
    repo.write("ferry.yml", &yml(&allow, ""));
    let out = repo.ferry(&["scan", "--json"]);
    assert_code(&out, 1, "an expired allowlist entry");
    let v = findings(&out);
    let still: Vec<&str> = v["verdict"]["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(still.contains(&ids[0].as_str()), "{v:#}");
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("expired")),
        "{v:#}"
    );
    // All entries current: the gate passes.
    let allow_all = allow.replace("2020-01-01", "2099-12-31");
    repo.write("ferry.yml", &yml(&allow_all, ""));
    let out = repo.ferry(&["scan", "--json"]);
    assert_code(&out, 0, "everything allowed");

    // A command that prints something that is not its report: fails closed.
    repo.write(
        "ferry.yml",
        &yml(
            &allow_all,
            "        - run: echo 'npm ERR! network unreachable'\n",
        ),
    );
    let out = repo.ferry(&["scan"]);
    assert_code(&out, 1, "an audit command that printed no report");
    assert!(stdout(&out).contains("ERROR"), "{}", stdout(&out));
    // A template glob that matches nothing: fails closed.
    let out = repo.ferry(&["scan", "--templates", "cdk.out/*.json"]);
    assert_code(&out, 1, "no template");
    assert!(stdout(&out).contains("match no file"), "{}", stdout(&out));
}

/// The gate in the build stage of a real `ferry run`: a template breaking the seed's
/// rules fails the build before any deployment, and `ferry logs` shows the findings;
/// fixed, the run deploys.
#[test]
fn the_build_stage_gate_blocks_a_real_run_before_any_deployment() {
    let repo = Repo::new();
    repo.write("infra/app.template.yaml", VIOLATING);
    let log = repo.join("deploys.log");
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: gated\nbuild:\n  steps:\n    - name: synth\n      run: 'true'\n  gates:\n    security:\n      templates: [infra/*.template.yaml]\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: \"echo $FERRY_VERSION >> '{}'\"\n",
            log.display()
        ),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
    repo.commit("violating template");
    let out = repo.ferry(&["run"]);
    assert_code(&out, 1, "a run with a violating template");
    assert!(!log.exists(), "nothing may be deployed");
    let logs = repo.ferry(&["logs", "1", "security"]);
    assert_code(&logs, 0, "ferry logs of the security step");
    let text = stdout(&logs);
    assert!(
        text.contains("iam_no_wildcard") && text.contains("blocked:"),
        "{text}"
    );

    repo.write("infra/app.template.yaml", COMPLIANT);
    let fixed = repo.commit("compliant template");
    let out = repo.ferry(&["run"]);
    assert_code(&out, 0, "a run with a compliant template");
    assert!(
        std::fs::read_to_string(&log).unwrap().contains(&fixed),
        "the fixed commit is deployed"
    );
}
