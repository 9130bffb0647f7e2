//! Security findings stored with a real `ferry run` on a temporary git repository: a
//! blocked run keeps every finding (template rules, an audit with an allowlist entry
//! naming a CVE alias and one that expired), writes the SARIF file ferry.yml names
//! (checked with the SARIF schema checks of `ferry-scan`), and `ferry logs`,
//! `ferry findings` and `ferry serve`'s API list them.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../ferry-scan/tests/support/sarif_schema.rs"]
mod sarif_schema;

use serde_json::Value;
use support::serve::{Server, get};
use support::{Repo, assert_code, http_get, json, stdout};

const VIOLATING: &str = include_str!("../../ferry-scan/tests/fixtures/templates/violating.yaml");
const CARGO: &str = include_str!("../../ferry-scan/tests/fixtures/audit/cargo.json");

fn gated(repo: &Repo) {
    let log = repo.join("deploys.log");
    repo.write("infra/app.template.yaml", VIOLATING);
    repo.write("reports/cargo-audit.json", CARGO);
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: gated\nbuild:\n  steps:\n    - name: synth\n      run: 'true'\n  gates:\n    security:\n      templates: [infra/*.template.yaml]\n      audit:\n        - file: reports/cargo-audit.json\n      allow:\n        - id: CVE-2023-49092\n          reason: \"we never decrypt with RSA keys\"\n          expires: 2099-12-31\n        - id: GHSA-q6cp-qfwq-4gcv\n          reason: \"no HTTP/2 server in this service\"\n          expires: 2020-01-01\n      sarif: out/ferry.sarif\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: \"echo $FERRY_VERSION >> '{}'\"\n",
            log.display()
        ),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\nout/\n");
    repo.commit("a violating template and a vulnerable crate");
}

fn by_id<'a>(findings: &'a [Value], id: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id} in {findings:#?}"))
}

#[test]
fn a_blocked_run_stores_its_findings_and_writes_the_sarif_file() {
    let repo = Repo::new();
    gated(&repo);
    let out = repo.ferry(&["run"]);
    assert_code(&out, 1, "a run the security gate blocks");
    assert!(!repo.join("deploys.log").exists(), "nothing is deployed");

    // `ferry findings --json`: every finding with its treatment.
    let out = repo.ferry(&["--json", "findings", "1"]);
    assert_code(&out, 0, "ferry findings --json");
    let v = json(&out);
    assert_eq!(v["run"], 1);
    assert_eq!(v["scanned"], true);
    let findings = v["findings"].as_array().unwrap().clone();
    let rsa = by_id(&findings, "RUSTSEC-2023-0071");
    assert_eq!(rsa["treatment"], "allowlisted", "{rsa:#}");
    assert_eq!(rsa["reason"], "we never decrypt with RSA keys");
    assert_eq!(
        rsa["aliases"],
        serde_json::json!(["CVE-2023-49092", "GHSA-c38w-74pg-36hr"])
    );
    assert_eq!(rsa["package"], "rsa");
    assert_eq!(rsa["version"], "0.9.6");
    assert_eq!(rsa["tool"], "cargo-audit");
    let h2 = by_id(&findings, "RUSTSEC-2024-0332");
    assert_eq!(h2["treatment"], "expired", "{h2:#}");
    assert!(
        h2["reason"].as_str().unwrap().contains("2020-01-01"),
        "{h2:#}"
    );
    let iam = by_id(&findings, "iam_no_wildcard");
    assert_eq!(iam["treatment"], "blocks");
    assert_eq!(iam["tool"], "cfn-guard");
    assert_eq!(iam["file"], "infra/app.template.yaml");
    assert!(iam["logical_id"].is_string(), "{iam:#}");
    assert_eq!(v["counts"]["allowlisted"], 1);
    assert!(v["counts"]["high"].as_u64().unwrap() >= 2, "{v:#}");

    // The SARIF file in the repository, valid SARIF 2.1.0, with the aliases.
    let doc: Value = serde_json::from_str(&repo.read("out/ferry.sarif")).unwrap();
    assert_eq!(sarif_schema::validate(&doc), Vec::<String>::new());
    let cargo = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"]["driver"]["name"] == "cargo-audit")
        .unwrap();
    let rsa = cargo["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "RUSTSEC-2023-0071")
        .unwrap();
    assert_eq!(rsa["properties"]["aliases"][0], "CVE-2023-49092");
    assert_eq!(rsa["suppressions"][0]["status"], "accepted");

    // `ferry logs RUN security`: the step's log, then the stored findings as a table.
    let out = repo.ferry(&["logs", "1", "security"]);
    assert_code(&out, 0, "ferry logs of the security step");
    let text = stdout(&out);
    let table = text
        .split_once("findings ──")
        .unwrap_or_else(|| panic!("no findings table:\n{text}"))
        .1;
    for expected in [
        "TREATMENT",
        "allowlisted",
        "expired",
        "RUSTSEC-2023-0071 (CVE-2023-49092, GHSA-c38w-74pg-36hr)",
        "rsa@0.9.6",
        "allowlisted: we never decrypt with RSA keys",
        "iam_no_wildcard",
        "findings: ",
    ] {
        assert!(table.contains(expected), "{expected} missing:\n{table}");
    }
    let out = repo.ferry(&["--json", "logs", "1", "security"]);
    let v = json(&out);
    assert_eq!(
        v["steps"][0]["findings"].as_array().unwrap().len(),
        findings.len()
    );

    // `ferry findings RUN --sarif FILE` writes the same document again.
    let again = repo.join("again.sarif");
    let out = repo.ferry(&["findings", "1", "--sarif", again.to_str().unwrap()]);
    assert_code(&out, 0, "ferry findings --sarif");
    assert!(stdout(&out).contains("iam_no_wildcard"), "{}", stdout(&out));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(sarif_schema::validate(&doc), Vec::<String>::new());

    // An unknown run names the run.
    let out = repo.ferry(&["findings", "99"]);
    assert_code(&out, 5, "an unknown run");
    assert!(
        support::stderr(&out).contains("run 99"),
        "{}",
        support::stderr(&out)
    );

    // The API: JSON, SARIF, the run's counts, a 404 naming an unknown run.
    let server = Server::start(&repo);
    let port = server.port;
    let (code, v) = get(port, "/api/runs/1/findings");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["findings"].as_array().unwrap().len(), findings.len());
    let (code, raw) = http_get(port, "/api/runs/1/findings?format=sarif");
    assert_eq!(code, 200, "{raw}");
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    assert_eq!(sarif_schema::validate(&doc), Vec::<String>::new());
    let (code, v) = get(port, "/api/runs/1");
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["findings"]["allowlisted"], 1, "{v:#}");
    let (code, v) = get(port, "/api/runs/99/findings");
    assert_eq!(code, 404, "{v:#}");
    assert!(v.to_string().contains("run 99"), "{v:#}");
    let (code, v) = get(port, "/api/runs/1/findings?format=xml");
    assert_eq!(code, 400, "{v:#}");
    assert!(v.to_string().contains("format=sarif"), "{v:#}");
    server.kill();
}

#[test]
fn a_passing_run_without_a_gate_has_no_findings() {
    let repo = Repo::new();
    repo.write(
        "ferry.yml",
        "pipeline: plain\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\nenvironments:\n  - name: test\n    deploy: {command: {run: 'true'}}\n",
    );
    repo.write(".gitignore", ".ferry/\n");
    repo.commit("no gate");
    assert_code(&repo.ferry(&["run"]), 0, "a run without a gate");
    let out = repo.ferry(&["findings", "1"]);
    assert_code(&out, 0, "ferry findings of a run without a gate");
    assert!(
        stdout(&out).contains("security gate has not run"),
        "{}",
        stdout(&out)
    );
    let v = json(&repo.ferry(&["--json", "findings", "1"]));
    assert_eq!(v["scanned"], false);
    assert_eq!(v["findings"], serde_json::json!([]));
}

/// A run whose gate passed (only MODERATE and LOW findings, one allowlisted by its
/// alias) and now waits for approval: `ferry status` shows its counts per severity.
#[test]
fn status_shows_the_counts_of_a_run_in_progress() {
    let repo = Repo::new();
    repo.write("reports/cargo-audit.json", CARGO);
    repo.write(
        "ferry.yml",
        "pipeline: gated\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\n  gates:\n    security:\n      audit:\n        - file: reports/cargo-audit.json\n      allow:\n        - id: cve-2023-49092\n          reason: \"we never decrypt with RSA keys\"\n        - id: GHSA-q6cp-qfwq-4gcv\n          reason: \"no HTTP/2 server in this service\"\nenvironments:\n  - name: production\n    approval:\n      timeout: 1h\n    deploy: {command: {run: 'true'}}\n",
    );
    repo.write(".gitignore", ".ferry/\n");
    repo.commit("only warnings");
    let mut run = repo.spawn(&["run", "--json"]);
    let id = repo.wait_for_approval(&mut run, std::time::Duration::from_secs(240));
    let st = repo.status();
    let r = st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(
        r["findings"],
        serde_json::json!({"critical": 0, "high": 0, "moderate": 1, "low": 1, "allowlisted": 2}),
        "{st:#}"
    );
    let text = stdout(&repo.ferry(&["status"]));
    assert!(
        text.contains("security findings: 0 critical, 0 high, 1 moderate, 1 low, 2 allowlisted"),
        "{text}"
    );
    let out = repo.ferry(&[
        "reject",
        &id.to_string(),
        "--reason",
        "test over",
        "--by",
        "bob",
    ]);
    assert_code(&out, 0, "reject");
    let _ = run.wait(support::LONG);
}

/// A SARIF file that cannot be written blocks the gate (fail closed), with the reason;
/// the findings are stored all the same. The API serves SARIF as `application/sarif+json`.
#[test]
fn a_sarif_file_that_cannot_be_written_blocks() {
    let repo = Repo::new();
    repo.write("reports/cargo-audit.json", CARGO);
    repo.write(
        "ferry.yml",
        "pipeline: gated\nbuild:\n  steps:\n    - name: unit\n      run: 'true'\n  gates:\n    security:\n      audit:\n        - file: reports/cargo-audit.json\n      allow:\n        - id: CVE-2023-49092\n          reason: \"we never decrypt with RSA keys\"\n        - id: GHSA-q6cp-qfwq-4gcv\n          reason: \"no HTTP/2 server in this service\"\n      sarif: blocker/ferry.sarif\nenvironments:\n  - name: test\n    deploy: {command: {run: 'true'}}\n",
    );
    repo.write(".gitignore", ".ferry/\nblocker\n");
    repo.commit("only warnings");
    // `blocker` is a file, so `blocker/ferry.sarif` cannot be created.
    repo.write("blocker", "not a folder\n");
    let out = repo.ferry(&["run"]);
    assert_code(&out, 1, "a run whose SARIF file cannot be written");
    let v = json(&repo.ferry(&["--json", "logs", "1", "security"]));
    let reason = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "gate_failed")
        .map(|e| e["message"].to_string())
        .unwrap_or_default();
    assert!(reason.contains("could not be written"), "{v:#}");
    let v = json(&repo.ferry(&["--json", "findings", "1"]));
    assert_eq!(v["counts"]["allowlisted"], 2, "{v:#}");

    let server = Server::start(&repo);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /api/runs/1/findings?format=sarif HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: application/sarif+json"),
        "{raw}"
    );
    server.kill();
}
