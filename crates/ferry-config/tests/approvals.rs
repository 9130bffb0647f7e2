//! Approval rules per environment (`approvers`, `required`, `separation_of_duties`,
//! `remind_before`), `source.repository` and the hotfix lane: what they mean and every
//! problem `ferry validate` reports for them, as the exact text a user sees.

#![allow(clippy::unwrap_used)]

use ferry_config::{Approval, parse};
use std::time::Duration;

#[track_caller]
fn check(yaml: &str, expected: &str) {
    let yaml = yaml.strip_prefix('\n').unwrap_or(yaml);
    let actual = match parse(yaml, "ferry.yml") {
        Ok(_) => String::new(),
        Err(diags) => {
            let mut lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            lines.push(String::new());
            lines.join("\n")
        }
    };
    let expected = expected.strip_prefix('\n').unwrap_or(expected);
    assert_eq!(
        actual, expected,
        "\n--- actual ---\n{actual}--- expected ---\n{expected}"
    );
}

#[test]
fn a_full_rule_is_read_with_its_defaults_filled_in() {
    let p = parse(
        r#"
pipeline: shop
source:
  repository: https://github.com/acme/shop
hotfix:
  allowed: true
environments:
  - name: staging
    approval: true
    deploy: {command: {run: ./deploy.sh}}
  - name: production
    approval:
      timeout: 2h
      approvers: [alice, bob, carol]
      required: 2
      remind_before: 30m
    deploy: {command: {run: ./deploy.sh}}
"#,
        "ferry.yml",
    )
    .unwrap();
    assert_eq!(
        p.source.repository.as_deref(),
        Some("https://github.com/acme/shop")
    );
    assert!(p.hotfix.allowed);
    assert_eq!(p.environments[0].approval, Some(Approval::default()));
    let a = p.environments[1].approval.clone().unwrap();
    assert_eq!(a.timeout, Duration::from_secs(7200));
    assert_eq!(a.approvers, ["alice", "bob", "carol"]);
    assert_eq!(a.required, 2);
    assert!(a.separation_of_duties, "on by default");
    assert_eq!(a.remind_before, Some(Duration::from_secs(1800)));
}

#[test]
fn defaults_are_one_approval_by_anyone_with_separation_of_duties_and_no_reminder() {
    let a = Approval::default();
    assert_eq!(a.required, 1);
    assert!(a.approvers.is_empty());
    assert!(a.separation_of_duties);
    assert_eq!(a.remind_before, None);
    let p = parse(
        "pipeline: shop\nenvironments:\n  - name: test\n    deploy: {command: {run: ./d.sh}}\n",
        "ferry.yml",
    )
    .unwrap();
    assert!(
        !p.hotfix.allowed,
        "the hotfix lane is closed unless the file opens it"
    );
}

#[test]
fn every_bad_rule_is_reported_at_once() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    approval:
      timeout: 1h
      approvers: [alice, alice, "  "]
      required: 0
      separation_of_duties: "yes"
      remind_before: 2h
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:6:26: duplicate approver name `alice` in `approval` of environment `production` (first at line 6)
  help: give each approver its own name
ferry.yml:6:33: approver `  ` in `approval` of environment `production` is not a name
  help: write the name people approve as (`ferry approve --by NAME`), like `alice`
ferry.yml:7:17: `required` in `approval` of environment `production` must be at least 1
  help: write a whole number of 1 or more, like `required: 1`
ferry.yml:8:29: `separation_of_duties` in `approval` of environment `production` must be `true` or `false`, found the text `yes`
  help: write `separation_of_duties: true` or `separation_of_duties: false`
ferry.yml:9:22: `remind_before: 2h` in `approval` of environment `production` must be shorter than `timeout` (1h)
  help: write a reminder that comes before the timeout, like `remind_before: 1h` with `timeout: 24h`
"#,
    );
}

#[test]
fn more_required_approvals_than_approvers_is_refused() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    approval: {approvers: [alice, bob], required: 3}
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:4:51: `required: 3` in `approval` of environment `production` asks for more approvals than the 2 `approvers` listed
  help: lower `required` to at most 2, or list more people in `approvers`
"#,
    );
}

#[test]
fn an_empty_approver_list_is_refused_with_the_way_to_let_anyone_approve() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    approval: {approvers: []}
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:4:27: `approvers` in `approval` of environment `production` is empty
  help: list the people who may approve, like `approvers: [alice, bob]`, or remove `approvers` to let anyone approve
"#,
    );
}

#[test]
fn unknown_approval_keys_get_a_suggestion() {
    check(
        r#"
pipeline: shop
environments:
  - name: production
    approval: {aprovers: [alice]}
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:4:16: unknown key `aprovers` in `approval` of environment `production`
  help: did you mean `approvers`?
"#,
    );
}

#[test]
fn a_hotfix_lane_with_a_single_approver_can_never_be_approved() {
    check(
        r#"
pipeline: shop
hotfix: {allowed: true}
environments:
  - name: staging
    deploy: {command: {run: ./deploy.sh}}
  - name: production
    approval: {approvers: [alice]}
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:2:19: a hotfix needs 2 distinct approvals at `production`, but its `approval.approvers` lists only 1
  help: list at least 2 people in `approvers` of `production`, or remove `hotfix`
"#,
    );
}

#[test]
fn hotfix_and_repository_are_checked_like_every_key() {
    check(
        r#"
pipeline: shop
source: {repository: "git@github.com:acme/shop.git"}
hotfix: {allowed: "true", skip: [test]}
environments:
  - name: test
    deploy: {command: {run: ./deploy.sh}}
"#,
        r#"
ferry.yml:2:22: `repository` in `source` must be an http:// or https:// url, found `git@github.com:acme/shop.git`
  help: write it like `repository: https://github.com/owner/repo`
ferry.yml:3:19: `allowed` in `hotfix` must be `true` or `false`, found the text `true`
  help: write `allowed: true` or `allowed: false`, without quotes
ferry.yml:3:27: unknown key `skip` in `hotfix`
  help: allowed keys here: allowed
"#,
    );
}
