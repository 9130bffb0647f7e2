//! The CloudFormation deployer on moto's CloudFormation and S3, through the real SDK:
//! change sets only on a meaningful change, the kept templates, `current`, rollback to an
//! earlier template, and the errors a refused template or a missing one give.
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use ferry_aws::Aws;
use ferry_aws::cloudformation::CloudFormationDeployer;
use ferry_config::CloudFormationDeploy;
use ferry_core::Artifact;
use ferry_engine::ports::{DeployRequest, Deployer, PortErrorKind};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const STACK: &str = "shop-infra";
const BUCKET: &str = "shop-templates";

fn spec() -> CloudFormationDeploy {
    CloudFormationDeploy {
        stack: STACK.into(),
        template: "out/stack.template.json".into(),
        bucket: BUCKET.into(),
        parameters: [("QueueName".to_string(), "shop-orders".to_string())].into(),
        capabilities: vec!["CAPABILITY_IAM".into()],
        timeout: Duration::from_secs(60),
    }
}

/// A checkout holding `template` at the spec's path.
fn checkout(root: &Path, version: &str, template: &str) -> DeployRequest {
    let dir = root.join(version);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/stack.template.json"), template).unwrap();
    DeployRequest {
        environment: "production".into(),
        version: version.into(),
        artifact: Artifact {
            digest: "sha256:aa".into(),
            location: dir.join("none").display().to_string(),
            size: 0,
        },
        env: Default::default(),
        cwd: dir.clone(),
        log: dir.join("deploy.log"),
    }
}

fn base() -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "shop infrastructure",
        "Parameters": { "QueueName": { "Type": "String" } },
        "Resources": {
            "Orders": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": { "Ref": "QueueName" } } }
        }
    })
}

fn cf(aws: &Aws) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(aws.config())
}

/// The logical ids of the stack's resources.
fn resources(aws: &Aws) -> Vec<String> {
    let out = aws
        .block_on(cf(aws).describe_stack_resources().stack_name(STACK).send())
        .unwrap();
    let mut ids: Vec<String> = out
        .stack_resources()
        .iter()
        .filter_map(|r| r.logical_resource_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// The template the stack runs, parsed.
fn running(aws: &Aws) -> Value {
    let out = aws
        .block_on(cf(aws).get_template().stack_name(STACK).send())
        .unwrap();
    serde_json::from_str(out.template_body().unwrap()).unwrap()
}

/// How many change sets the stack has had (moto lists every stack's: filter by name).
fn change_sets(aws: &Aws) -> usize {
    let out = aws
        .block_on(cf(aws).list_change_sets().stack_name(STACK).send())
        .unwrap();
    out.summaries()
        .iter()
        .filter(|s| s.stack_name() == Some(STACK))
        .count()
}

fn deployer(aws: &Aws) -> CloudFormationDeployer {
    CloudFormationDeployer::new(aws, "production", &spec())
        .with_poll_interval(Duration::from_millis(50))
}

#[test]
fn deploys_on_meaningful_change_only_and_rolls_back_to_the_kept_template() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let d = deployer(&aws);
    d.create_bucket().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(d.current_version().unwrap(), None);

    // First deploy: the stack is created with the parameters; the template is kept.
    let v1 = base();
    let r1 = checkout(
        tmp.path(),
        "v1",
        &serde_json::to_string_pretty(&v1).unwrap(),
    );
    d.deploy(&r1).unwrap();
    assert_eq!(resources(&aws), ["Orders"]);
    assert_eq!(running(&aws), v1);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    let kept: Value = serde_json::from_str(&common::get(
        &aws,
        BUCKET,
        "production/stacks/v1/template.json",
    ))
    .unwrap();
    assert_eq!(kept, v1);
    assert_eq!(common::get(&aws, BUCKET, "production/stacks/current"), "v1");
    assert_eq!(change_sets(&aws), 1);

    // Cosmetic only (description, metadata, key order and formatting): no change set,
    // but `current` moves and the template is kept.
    let mut v2 = base();
    v2["Description"] = json!("shop infrastructure, now described better");
    v2["Metadata"] = json!({ "generator": "hand" });
    v2["Resources"]["Orders"]["Metadata"] = json!({ "note": "orders" });
    let r2 = checkout(tmp.path(), "v2", &serde_json::to_string(&v2).unwrap());
    d.deploy(&r2).unwrap();
    assert_eq!(
        change_sets(&aws),
        1,
        "a cosmetic change creates no change set"
    );
    assert_eq!(running(&aws), v1);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v2"));
    let log = std::fs::read_to_string(&r2.log).unwrap();
    assert!(
        log.contains("no meaningful change to stack shop-infra"),
        "{log}"
    );
    assert!(!log.contains("change set ferry-"), "{log}");

    // A meaningful change: a new resource, through an UPDATE change set.
    let mut v3 = base();
    v3["Resources"]["Events"] =
        json!({ "Type": "AWS::SNS::Topic", "Properties": { "TopicName": "shop-events" } });
    let r3 = checkout(tmp.path(), "v3", &serde_json::to_string(&v3).unwrap());
    d.deploy(&r3).unwrap();
    assert_eq!(change_sets(&aws), 2);
    assert_eq!(resources(&aws), ["Events", "Orders"]);
    assert_eq!(running(&aws), v3);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v3"));
    let log = std::fs::read_to_string(&r3.log).unwrap();
    assert!(log.contains("meaningful"), "{log}");
    assert!(
        log.contains("(UPDATE) created for stack shop-infra"),
        "{log}"
    );
    assert!(log.contains("stack shop-infra is UPDATE_COMPLETE"), "{log}");

    // Deploying the same version again changes nothing.
    d.deploy(&r3).unwrap();
    assert_eq!(change_sets(&aws), 2);

    // Rollback to v1 reads the kept template (the checkout is gone) and deploys it.
    std::fs::remove_dir_all(tmp.path().join("v1")).unwrap();
    let back = checkout(tmp.path(), "v1-back", "not used");
    let back = DeployRequest {
        version: "v1".into(),
        ..back
    };
    d.rollback(&back).unwrap();
    assert_eq!(running(&aws), v1);
    assert_eq!(resources(&aws), ["Orders"]);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    assert_eq!(change_sets(&aws), 3);
}

#[test]
fn refused_missing_and_unreadable_templates_are_clear_errors() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let d = deployer(&aws);
    d.create_bucket().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    d.deploy(&checkout(tmp.path(), "v1", &base().to_string()))
        .unwrap();

    // A template CloudFormation refuses: the error names the stack and the reason, and
    // `current` stays where it was.
    let mut bad = base();
    bad["Resources"]["Alarm"] = json!({
        "Type": "AWS::SNS::Topic",
        "Properties": { "TopicName": { "Fn::GetAtt": ["Missing", "Arn"] } }
    });
    let e = d
        .deploy(&checkout(tmp.path(), "v2", &bad.to_string()))
        .unwrap_err();
    assert!(e.message.contains("stack shop-infra"), "{}", e.message);
    assert!(e.message.contains("ExecuteChangeSet"), "{}", e.message);
    assert!(e.message.contains("Missing"), "{}", e.message);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));

    // Not JSON.
    let e = d
        .deploy(&checkout(
            tmp.path(),
            "v3",
            "Resources:\n  Q: {Type: AWS::SQS::Queue}\n",
        ))
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Permanent);
    assert!(
        e.message.contains("not a JSON CloudFormation template"),
        "{}",
        e.message
    );

    // No template where the section says.
    let mut r = checkout(tmp.path(), "v4", "{}");
    std::fs::remove_file(r.cwd.join("out/stack.template.json")).unwrap();
    r.log = tmp.path().join("v4.log");
    let e = d.deploy(&r).unwrap_err();
    assert!(
        e.message.contains("out/stack.template.json"),
        "{}",
        e.message
    );
    assert!(e.message.contains("stack shop-infra"), "{}", e.message);

    // A rollback to a version whose template was never kept names the key.
    let e = d.rollback(&checkout(tmp.path(), "v0", "{}")).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);
    assert!(
        e.message
            .contains("s3://shop-templates/production/stacks/v0/template.json does not exist"),
        "{}",
        e.message
    );
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
}

/// moto leaves a stack whose first change set failed to execute in
/// `REVIEW_IN_PROGRESS`, and a later change set does not move it (AWS would have refused
/// the template at `CreateChangeSet`): a stack that never settles. The wait is bounded by
/// the section's `timeout` and the error names the stack and the status it was stuck in.
#[test]
fn a_stack_that_never_settles_fails_at_the_timeout_naming_it() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let spec = CloudFormationDeploy {
        timeout: Duration::from_secs(1),
        ..spec()
    };
    let d = CloudFormationDeployer::new(&aws, "production", &spec)
        .with_poll_interval(Duration::from_millis(100));
    d.create_bucket().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = base();
    bad["Resources"]["Orders"]["Properties"]["QueueName"] =
        json!({ "Fn::GetAtt": ["Nope", "Arn"] });
    let e = d
        .deploy(&checkout(tmp.path(), "v1", &bad.to_string()))
        .unwrap_err();
    assert!(e.message.contains("stack shop-infra"), "{}", e.message);
    assert_eq!(d.current_version().unwrap(), None);
    let r = checkout(tmp.path(), "v2", &base().to_string());
    let e = d.deploy(&r).unwrap_err();
    assert!(
        e.message.contains(
            "stack shop-infra was still REVIEW_IN_PROGRESS after the deploy's timeout (1s)"
        ),
        "{}",
        e.message
    );
    assert_eq!(
        d.current_version().unwrap(),
        None,
        "a failed deploy moves nothing"
    );
    let log = std::fs::read_to_string(&r.log).unwrap();
    assert!(
        log.contains("(CREATE) created for stack shop-infra"),
        "{log}"
    );
}

/// An update already running on the stack (one a rollback Lambda stopped at its deadline
/// began, or a person's) is waited for within the `timeout`, then the deploy goes on:
/// it does not fail at once (which made a taken-over rollback escalate to an incident
/// while the update was about to succeed). Busy past the timeout: a transient error
/// naming the stack and its status, permanent (the time was spent waiting already).
#[test]
fn a_busy_stack_is_waited_for_then_deployed_to() {
    let moto = common::Moto::start();
    let proxy = common::proxy::Proxy::start(&moto.endpoint);
    let aws = Aws::connect(&proxy.settings(2)).unwrap();
    let d = deployer(&aws);
    d.create_bucket().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    d.deploy(&checkout(tmp.path(), "v1", &base().to_string()))
        .unwrap();

    // CloudFormation says UPDATE_IN_PROGRESS three times, then what moto says.
    proxy.fail(
        "Action=DescribeStacks",
        3,
        common::proxy::Answer::StackUpdating,
    );
    let mut v2 = base();
    v2["Resources"]["Audit"] = json!({ "Type": "AWS::SQS::Queue" });
    let r2 = checkout(tmp.path(), "v2", &v2.to_string());
    d.deploy(&r2).unwrap();
    assert_eq!(resources(&moto.aws()), ["Audit", "Orders"]);
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v2"));
    let log = std::fs::read_to_string(&r2.log).unwrap();
    assert!(
        log.contains(
            "stack shop-infra is busy (UPDATE_IN_PROGRESS): waiting for it to finish first"
        ),
        "{log}"
    );

    // Busy for good: the deploy's timeout bounds the wait.
    let spec = CloudFormationDeploy {
        timeout: Duration::from_secs(1),
        ..spec()
    };
    let short = CloudFormationDeployer::new(&aws, "production", &spec)
        .with_poll_interval(Duration::from_millis(100));
    proxy.fail_always(
        "Action=DescribeStacks",
        common::proxy::Answer::StackUpdating,
    );
    let e = short
        .deploy(&checkout(tmp.path(), "v3", &base().to_string()))
        .unwrap_err();
    assert_eq!(
        e.kind,
        PortErrorKind::Permanent,
        "the timeout is spent: {e}"
    );
    assert!(
        e.message.contains("stack shop-infra is busy (UPDATE_IN_PROGRESS) and stayed so for the deploy's timeout (1s)"),
        "{}",
        e.message
    );
}
