//! The synthesized stacks hold together without AWS: references and imports resolve,
//! the seed's guard rules (the built-in pack of `ferry scan`) find nothing, no IAM
//! statement allows a wildcard action, every stateful resource has a DeletionPolicy, and
//! names stay within AWS's limits however long the pipeline's and environments' names.

mod common;

use std::collections::BTreeMap;

use ferry_scan::{Guard, check_template};
use ferry_synth::{Options, SynthError, check};
use proptest::prelude::*;
use serde_json::Value;

fn assert_sound(label: &str, stacks: &BTreeMap<String, Value>) {
    assert_eq!(stacks.len(), 3, "{label}: three stacks");
    let missing = check::unresolved_imports(stacks);
    assert!(missing.is_empty(), "{label}: {missing:#?}");
    for (name, t) in stacks {
        let text = serde_json::to_string_pretty(t).expect("json");
        let findings = check_template(name, &text).expect("within limits");
        assert!(
            findings.is_empty(),
            "{label} {name}: template checks: {findings:#?}"
        );
        let wild = check::wildcard_permissions(t);
        assert!(wild.is_empty(), "{label} {name}: {wild:#?}");
        let policies = check::missing_deletion_policies(t);
        assert!(policies.is_empty(), "{label} {name}: {policies:#?}");
    }
}

#[test]
fn every_reference_resolves_and_no_permission_is_a_wildcard() {
    for (label, stacks) in common::all() {
        assert_sound(&label, &stacks);
    }
}

#[test]
fn the_seed_guard_rules_find_nothing() {
    let guard = Guard::default_pack();
    for (label, stacks) in common::all() {
        for (name, t) in &stacks {
            let text = serde_json::to_string_pretty(t).expect("json");
            let findings = guard.check(name, &text).expect("guard runs");
            assert!(findings.is_empty(), "{label} {name}: {findings:#?}");
        }
    }
}

#[test]
fn the_guard_check_is_not_vacuous() {
    // The same rules do see a Lambda without its dead-letter queue and a role allowing
    // everything: the check above passes because the stacks comply.
    let mut stacks = common::stacks(common::REFERENCE, None);
    let monitoring = stacks
        .iter_mut()
        .find(|(n, _)| n.ends_with("-monitoring"))
        .map(|(_, t)| t)
        .expect("monitoring stack");
    let props = monitoring
        .pointer_mut("/Resources/RollbackFunction/Properties")
        .and_then(Value::as_object_mut)
        .expect("rollback function");
    props.remove("DeadLetterConfig");
    let statement = monitoring
        .pointer_mut("/Resources/RollbackRole/Properties/Policies/0/PolicyDocument/Statement/0")
        .expect("a statement");
    *statement = serde_json::json!({ "Effect": "Allow", "Action": "*", "Resource": "*" });
    let text = serde_json::to_string(monitoring).expect("json");
    let findings = Guard::default_pack()
        .check("monitoring", &text)
        .expect("guard runs");
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert!(
        ids.iter().any(|i| i.eq_ignore_ascii_case("lambda_dlq")),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|i| i.eq_ignore_ascii_case("iam_no_wildcard")),
        "{ids:?}"
    );
    assert!(!check::wildcard_permissions(monitoring).is_empty());
}

#[test]
fn the_core_stack_has_what_the_seed_asks_for() {
    let stacks = common::stacks(common::SEED, None);
    let core = &stacks["kiro-pipeline-core"];
    let r = |p: &str| core.pointer(p).cloned().unwrap_or(Value::Null);
    assert_eq!(
        r("/Resources/PipelineKey/Properties/EnableKeyRotation"),
        true
    );
    let table = "/Resources/DeploymentsTable/Properties";
    assert_eq!(r(&format!("{table}/BillingMode")), "PAY_PER_REQUEST");
    assert_eq!(
        r(&format!("{table}/TimeToLiveSpecification/AttributeName")),
        "expiresAt"
    );
    assert_eq!(
        r(&format!("{table}/StreamSpecification/StreamViewType")),
        "NEW_AND_OLD_IMAGES"
    );
    assert_eq!(
        r(&format!("{table}/GlobalSecondaryIndexes/0/IndexName")),
        "EnvironmentStatusIndex"
    );
    assert_eq!(r(&format!("{table}/SSESpecification/SSEEnabled")), true);
    assert_eq!(
        r(&format!(
            "{table}/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled"
        )),
        true
    );
    let rules = r("/Resources/ArtifactsBucket/Properties/LifecycleConfiguration/Rules");
    assert_eq!(rules[0]["Transitions"][0]["TransitionInDays"], 30);
    assert_eq!(rules[0]["Transitions"][0]["StorageClass"], "STANDARD_IA");
    assert_eq!(rules[1]["ExpirationInDays"], 90);
    // Only executions' artifacts expire, never the tools the pipeline runs on.
    assert_eq!(rules[1]["Prefix"], "kiro-pipeline/");
    assert_eq!(rules[2]["Prefix"], "ferry/artifacts/");
    assert_eq!(rules[2]["ExpirationInDays"], 90);
    for rule in rules.as_array().expect("rules") {
        if rule.get("ExpirationInDays").is_some() {
            let prefix = rule["Prefix"].as_str().unwrap_or("");
            assert!(
                !prefix.is_empty()
                    && !"tools/ferry".starts_with(prefix)
                    && !"lambda/".starts_with(prefix),
                "{rule}"
            );
        }
    }
    assert_eq!(r("/Resources/BuildLogGroup/Properties/RetentionInDays"), 90);

    let pipeline = &stacks["kiro-pipeline-pipeline"];
    let p = pipeline
        .pointer("/Resources/Pipeline/Properties")
        .expect("pipeline");
    assert_eq!(p["PipelineType"], "V2");
    assert_eq!(p["ExecutionMode"], "SUPERSEDED");
    let stages: Vec<&str> = p["Stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert_eq!(stages, ["Source", "Build", "test", "staging", "production"]);
    // The approval comes first in production only, with the commit link.
    for s in p["Stages"].as_array().expect("stages") {
        let first = &s["Actions"][0];
        let is_approval = first["ActionTypeId"]["Category"] == "Approval";
        assert_eq!(is_approval, s["Name"] == "production", "{}", s["Name"]);
        if is_approval {
            assert!(
                first["Configuration"]["ExternalEntityLink"]
                    .as_str()
                    .is_some_and(|l| l.contains("/commit/#{SourceVariables.CommitId}"))
            );
        }
    }
    // The buildspecs run every step through `ferry step`.
    let spec = pipeline
        .pointer("/Resources/BuildProject/Properties/Source/BuildSpec")
        .and_then(Value::as_str)
        .expect("buildspec");
    let spec: Value = serde_json::from_str(spec).expect("the buildspec is JSON");
    let cmds: Vec<&str> = spec["phases"]["build"]["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        cmds,
        [
            "ferry step 'build/install'",
            "ferry step 'build/lint'",
            "ferry step 'build/unit'",
            "ferry step 'build/compile'",
            "ferry step 'build/cfn-lint'",
            "ferry step 'build/@gates'",
            "ferry step 'build/@artifact'"
        ]
    );
    // Secrets come from Secrets Manager, never as plain text.
    let vars = pipeline
        .pointer("/Resources/BuildProject/Properties/Environment/EnvironmentVariables")
        .and_then(Value::as_array)
        .expect("variables");
    let slack = vars
        .iter()
        .find(|v| v["Name"] == "SLACK_WEBHOOK_URL")
        .expect("the secret is passed");
    assert_eq!(slack["Type"], "SECRETS_MANAGER");
    assert_eq!(slack["Value"], "kiro-pipeline/SLACK_WEBHOOK_URL");

    let monitoring = &stacks["kiro-pipeline-monitoring"];
    let pattern = monitoring
        .pointer("/Resources/StagingAlarmRule/Properties/EventPattern")
        .expect("staging's rule");
    assert_eq!(
        pattern["detail"]["alarmName"][0]["prefix"],
        "kiro-pipeline-staging-"
    );
    assert_eq!(
        pattern["detail"]["alarmName"][1],
        "kiro-worker-staging-errors"
    );
    assert_eq!(pattern["detail"]["state"]["value"][0], "ALARM");
    let f = monitoring
        .pointer("/Resources/RollbackFunction/Properties")
        .expect("function");
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    // One at a time by default; a parameter (0: none) for accounts at the default limit.
    assert_eq!(
        f["ReservedConcurrentExecutions"]["Fn::If"][0],
        "ReserveRollbackConcurrency"
    );
    assert_eq!(
        monitoring["Parameters"]["RollbackConcurrency"]["Default"],
        1
    );
}

#[test]
fn env_scopes_names_and_alarm_rules() {
    let stacks = common::stacks(common::SEED, Some("staging"));
    let names: Vec<&String> = stacks.keys().collect();
    assert_eq!(
        names,
        [
            "kiro-pipeline-staging-core",
            "kiro-pipeline-staging-monitoring",
            "kiro-pipeline-staging-pipeline"
        ]
    );
    let monitoring = &stacks["kiro-pipeline-staging-monitoring"];
    let resources = monitoring["Resources"].as_object().expect("resources");
    let rules: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rules, ["StagingAlarmRule"]);
    // The pipeline keeps every stage: a version never skips an environment.
    let p = &stacks["kiro-pipeline-staging-pipeline"]["Resources"]["Pipeline"]["Properties"];
    assert_eq!(p["Stages"].as_array().map(Vec::len), Some(5));
}

#[test]
fn an_unknown_env_is_refused_with_the_known_ones() {
    let p = common::pipeline(common::REFERENCE);
    let e = ferry_synth::synth(
        &p,
        &Options {
            env: Some("prod".into()),
        },
    )
    .expect_err("refused");
    assert!(matches!(e, SynthError::UnknownEnvironment { .. }));
    assert_eq!(
        e.to_string(),
        "no environment `prod` in the pipeline file; use one of: test, staging, production"
    );
}

/// Physical-name properties and their AWS limits.
const LIMITS: &[(&str, &str, usize)] = &[
    ("AWS::Lambda::Function", "FunctionName", 64),
    ("AWS::SQS::Queue", "QueueName", 80),
    ("AWS::Events::Rule", "Name", 64),
    ("AWS::SNS::Topic", "TopicName", 256),
    ("AWS::DynamoDB::Table", "TableName", 255),
    ("AWS::CodePipeline::Pipeline", "Name", 100),
    ("AWS::CodeStarConnections::Connection", "ConnectionName", 32),
    ("AWS::CodeBuild::Project", "Name", 150),
    ("AWS::CloudWatch::Dashboard", "DashboardName", 255),
    ("AWS::CloudWatch::Alarm", "AlarmName", 255),
    ("AWS::Logs::LogGroup", "LogGroupName", 512),
    ("AWS::KMS::Alias", "AliasName", 256),
];

fn name_ok(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn names_stay_within_aws_limits(
        pipeline in "[a-z0-9][a-z0-9._-]{0,150}",
        envs in proptest::collection::btree_set("[a-z0-9][a-z0-9._-]{0,90}", 1..4),
    ) {
        let mut text = format!("pipeline: \"{pipeline}\"\nbuild:\n  steps:\n    - name: unit\n      run: ./unit.sh\nenvironments:\n");
        for e in &envs {
            text.push_str(&format!("  - name: \"{e}\"\n    deploy: {{command: {{run: ./d.sh}}}}\n"));
        }
        let p = ferry_config::parse(&text, "ferry.yml").expect("valid");
        let scoped = envs.iter().next().cloned();
        for env in [None, scoped] {
            let stacks = ferry_synth::synth(&p, &Options { env }).expect("synth");
            for (name, t) in &stacks {
                prop_assert!(name.len() <= 128 && name_ok(name), "stack name {}", name);
                for r in t["Resources"].as_object().expect("resources").values() {
                    for (ty, key, max) in LIMITS {
                        if r["Type"] == *ty {
                            let n = r["Properties"][key].as_str().unwrap_or_default();
                            prop_assert!(!n.is_empty() && n.len() <= *max, "{} {} `{}` over {}", ty, key, n, max);
                        }
                    }
                }
                let text = serde_json::to_string(t).expect("json");
                let findings = check_template(name, &text).expect("within limits");
                prop_assert!(findings.is_empty(), "{:?}", findings);
                prop_assert!(check::wildcard_permissions(t).is_empty());
            }
            prop_assert!(check::unresolved_imports(&stacks).is_empty());
        }
    }
}

/// The statements of a role's inline policies.
fn role_statements(stacks: &BTreeMap<String, Value>, role: &str) -> Vec<Value> {
    stacks
        .values()
        .filter_map(|t| t["Resources"].get(role))
        .flat_map(|r| {
            r["Properties"]["Policies"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The statements allowing `action`, as `(resources, condition)` texts.
fn allowing(statements: &[Value], action: &str) -> Vec<String> {
    statements
        .iter()
        .filter(|s| {
            s["Action"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == action))
        })
        .map(|s| format!("{} {}", s["Resource"], s["Condition"]))
        .collect()
}

#[test]
fn deploy_roles_may_reach_their_s3_and_cloudformation_targets_and_no_more() {
    let stacks = common::stacks(common::AWS_KINDS, None);
    for role in ["CodeBuildRole", "RollbackRole"] {
        let st = role_statements(&stacks, role);
        assert!(!st.is_empty(), "{role} has statements");
        let stack_arn = "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/shop-infra/*";
        for action in ferry_synth::CLOUDFORMATION_DEPLOY_ACTIONS {
            let on = allowing(&st, action);
            assert_eq!(on.len(), 1, "{role} {action}: {on:?}");
            assert!(on[0].contains(stack_arn), "{role} {action}: {on:?}");
        }
        let put = allowing(&st, "s3:PutObject");
        assert!(
            put.iter()
                .any(|r| r.contains("arn:${AWS::Partition}:s3:::shop-web-releases/site/web/*")),
            "{role}: {put:?}"
        );
        assert!(
            put.iter()
                .any(|r| r.contains("arn:${AWS::Partition}:s3:::shop-templates/infra/stacks/*")),
            "{role}: {put:?}"
        );
        let list = allowing(&st, "s3:ListBucket");
        assert!(
            list.iter().any(|r| r.contains("s3:::shop-web-releases\"")
                && r.contains("\"s3:prefix\":[\"site/web/*\"]")),
            "{role}: {list:?}"
        );
        assert!(
            list.iter().any(|r| r.contains("s3:::shop-templates\"")
                && r.contains("\"s3:prefix\":[\"infra/stacks/*\"]")),
            "{role}: {list:?}"
        );
    }
    // Scoped to one environment, the rollback Lambda reaches only that one's target.
    let web = common::stacks(common::AWS_KINDS, Some("web"));
    let st = role_statements(&web, "RollbackRole");
    assert!(allowing(&st, "cloudformation:ExecuteChangeSet").is_empty());
    assert!(!allowing(&st, "s3:PutObject").is_empty());
}

/// The rollback Lambda's timeout leaves room for the slowest `cloudformation:` stack
/// update it may wait for (the section's `timeout`), then `stabilize` and the health
/// check, plus a minute; capped at Lambda's 15 minutes.
#[test]
fn the_rollback_lambda_waits_long_enough_for_a_stack_update() {
    let timeout_of = |text: &str| {
        common::stacks(text, None)
            .values()
            .find_map(|t| t["Resources"].get("RollbackFunction").cloned())
            .expect("the rollback function")["Properties"]["Timeout"]
            .as_u64()
            .expect("a timeout")
    };
    let validate = "rollback:\n  validate:\n    stabilize: 30s\n    health_timeout: 10s\n";
    let no_stack = common::AWS_KINDS.replace(
        "  - name: infra\n    deploy:\n      cloudformation:\n        stack: shop-infra\n        template: cdk.out/shop.template.json\n        bucket: shop-templates\n        capabilities: [CAPABILITY_IAM]\n",
        "",
    );
    assert_ne!(no_stack, common::AWS_KINDS);
    assert_eq!(timeout_of(&format!("{no_stack}{validate}")), 30 + 10 + 60);
    let stack = common::AWS_KINDS.replace(
        "capabilities: [CAPABILITY_IAM]\n",
        "capabilities: [CAPABILITY_IAM]\n        timeout: 5m\n",
    );
    assert_eq!(
        timeout_of(&format!("{stack}{validate}")),
        300 + 30 + 10 + 60
    );
    let slow = stack.replace("timeout: 5m", "timeout: 30m");
    assert_eq!(
        timeout_of(&format!("{slow}{validate}")),
        900,
        "Lambda's limit"
    );
}
