//! Approval rules and the hotfix lane through the real binary on temporary git
//! repositories: N of M approvers, the author and the trigger refused (exit 8), one
//! decision per person and none on a run that no longer waits (exit 6), `ferry status`
//! showing the approvals so far, and `ferry run --hotfix`.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Repo, assert_code, describe, stderr, stdout, yaml_str};

const APPROVAL_WAIT: Duration = Duration::from_secs(240);

/// `test` then `production` (with `approval`), deploys appending to `deploys.log`. The
/// repository's commits are Ivy Integration's <ivy@example.com>; runs are started by
/// `integration-test` (`FERRY_USER`).
fn pipeline(repo: &Repo, approval: &str, extra: &str) {
    let log = repo.join("deploys.log");
    let deploy = yaml_str(&format!(
        "echo \"$FERRY_ENV $FERRY_VERSION\" >> '{}'",
        log.display()
    ));
    repo.write(
        "ferry.yml",
        &format!(
            "pipeline: it\nbuild:\n  steps:\n    - name: build\n      run: echo built\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: {deploy}\n  - name: production\n    deploy:\n      command:\n        run: {deploy}\n{approval}{extra}"
        ),
    );
    repo.write(".gitignore", ".ferry/\ndeploys.log\n");
}

fn deployed(repo: &Repo) -> String {
    std::fs::read_to_string(repo.join("deploys.log")).unwrap_or_default()
}

fn waiting_run(st: &Value) -> &Value {
    st["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["status"] == "awaiting_approval"))
        .unwrap_or_else(|| panic!("no run awaits approval: {st:#}"))
}

#[test]
fn two_of_three_approvers_with_the_author_and_strangers_refused() {
    let repo = Repo::new();
    pipeline(
        &repo,
        "    approval:\n      timeout: 1h\n      approvers: [alice, bob, ivy]\n      required: 2\n",
        "",
    );
    let sha = repo.commit("Two people look at this");
    let mut run = repo.spawn(&["run", "--json"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT).to_string();

    let a = repo.ferry(&["approve", &id, "--by", "mallory"]);
    assert_code(&a, 8, "an approval by someone not listed");
    assert!(
        stderr(&a).contains("mallory is not an approver here: `approval.approvers` lists alice, bob, ivy; run 1 has 0 of 2 approvals; waiting for 2 more from alice or bob"),
        "{}",
        describe(&a)
    );
    let a = repo.ferry(&["approve", &id, "--by", "ivy"]);
    assert_code(&a, 8, "an approval by the commit's author");
    assert!(
        stderr(&a).contains("wrote the commit") && stderr(&a).contains("separation_of_duties"),
        "{}",
        describe(&a)
    );

    let a = repo.ferry(&["approve", &id, "--by", "alice"]);
    assert_code(&a, 0, "the first approval");
    assert!(
        stdout(&a).contains("1 of 2 approvals (alice); waiting for 1 more from bob"),
        "{}",
        describe(&a)
    );
    let again = repo.ferry(&["approve", &id, "--by", "alice"]);
    assert_code(&again, 6, "a second approval by the same person");
    assert!(
        stderr(&again).contains("already approved by alice"),
        "{}",
        describe(&again)
    );

    let st = repo.status();
    let r = waiting_run(&st);
    assert_eq!(r["approval"]["required"], 2, "{st:#}");
    assert_eq!(
        r["approval"]["approvals"],
        serde_json::json!(["alice"]),
        "{st:#}"
    );
    assert_eq!(r["hotfix"], false);
    let text = repo.ferry(&["status"]);
    assert!(
        stdout(&text).contains("1 of 2 approvals (alice)"),
        "{}",
        describe(&text)
    );
    assert!(
        !deployed(&repo).contains("production"),
        "nothing before the second approval"
    );

    let b = repo.ferry(&["approve", &id, "--by", "bob", "--json"]);
    assert_code(&b, 0, "the second approval");
    let v = support::json(&b);
    assert_eq!(v["complete"], true, "{v:#}");
    assert_eq!(v["approvals"], serde_json::json!(["alice", "bob"]));
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "the run after two approvals");
    assert!(
        deployed(&repo).contains(&format!("production {sha}")),
        "{}",
        deployed(&repo)
    );

    // The run no longer waits: 409 (exit 6), with the reason.
    let late = repo.ferry(&["approve", &id, "--by", "bob"]);
    assert_code(&late, 6, "an approval of a finished run");
    assert!(
        stderr(&late).contains("not waiting for approval"),
        "{}",
        describe(&late)
    );

    // Every decision is in the run's events.
    let logs = repo.ferry(&["logs", &id, "--json"]);
    let granted = support::json(&logs)["decisions"]
        .as_array()
        .map(|d| d.iter().filter(|e| e["kind"] == "approval_granted").count())
        .unwrap_or(0);
    assert_eq!(granted, 2, "{}", describe(&logs));
}

#[test]
fn the_trigger_may_not_decide_a_rejection_ends_the_run_and_a_timeout_is_a_conflict() {
    let repo = Repo::new();
    pipeline(&repo, "    approval:\n      timeout: 1h\n", "");
    repo.commit("Anyone but me");
    let mut run = repo.spawn(&["run", "--json"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT).to_string();

    // `integration-test` started the run.
    let a = repo.ferry(&["approve", &id]);
    assert_code(&a, 8, "an approval by whoever triggered the run");
    assert!(
        stderr(&a).contains("integration-test triggered the run"),
        "{}",
        describe(&a)
    );
    let r = repo.ferry(&["reject", &id, "--reason", "not today", "--by", "bob"]);
    assert_code(&r, 0, "a rejection");
    let out = run.wait(support::LONG);
    assert_code(&out, 1, "the rejected run");
    let v = support::json(&out);
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected by bob: not today"),
        "{v:#}"
    );
    let late = repo.ferry(&["approve", &id, "--by", "carol"]);
    assert_code(&late, 6, "approving a rejected run");
    assert!(
        stderr(&late).contains("rejected by bob"),
        "{}",
        describe(&late)
    );

    // A gate that timed out: 409 naming the timeout.
    pipeline(&repo, "    approval:\n      timeout: 2s\n", "");
    repo.commit("Nobody looks");
    let out = repo.ferry(&["run", "--json"]);
    assert_code(&out, 1, "a run whose approval timed out");
    let id2 = support::json(&out)["id"].to_string();
    let late = repo.ferry(&["approve", &id2, "--by", "carol"]);
    assert_code(&late, 6, "approving after the timeout");
    assert!(stderr(&late).contains("timed out"), "{}", describe(&late));
}

#[test]
fn a_hotfix_needs_the_file_to_allow_it_then_skips_to_production_with_two_approvals() {
    let repo = Repo::new();
    pipeline(&repo, "", "");
    repo.commit("Urgent");
    let refused = repo.ferry(&["run", "--hotfix"]);
    assert_code(&refused, 3, "a hotfix the file does not allow");
    assert!(
        stderr(&refused).contains("does not allow hotfixes")
            && stderr(&refused).contains("hotfix: { allowed: true }"),
        "{}",
        describe(&refused)
    );
    let h = repo.history();
    assert_eq!(h["runs"], serde_json::json!([]), "nothing recorded: {h:#}");

    pipeline(&repo, "", "hotfix:\n  allowed: true\n");
    let sha = repo.commit("Urgent, allowed");
    let mut run = repo.spawn(&["run", "--hotfix", "--json"]);
    let id = repo.wait_for_approval(&mut run, APPROVAL_WAIT).to_string();
    let st = repo.status();
    let r = waiting_run(&st);
    assert_eq!(r["hotfix"], true, "{st:#}");
    assert_eq!(r["approval"]["required"], 2, "{st:#}");
    assert_code(&repo.ferry(&["approve", &id, "--by", "alice"]), 0, "first");
    assert_code(&repo.ferry(&["approve", &id, "--by", "bob"]), 0, "second");
    let out = run.wait(support::LONG);
    assert_code(&out, 0, "the hotfix run");
    let v = support::json(&out);
    assert_eq!(v["hotfix"], true, "{v:#}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(stages, ["build", "production"]);
    assert_eq!(
        deployed(&repo).trim(),
        format!("production {sha}"),
        "test was skipped"
    );
    let h = repo.history();
    assert_eq!(h["runs"][0]["hotfix"], true, "{h:#}");
}
