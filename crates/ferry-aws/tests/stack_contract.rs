//! The rollback Lambda's contract with the stacks `ferry synth aws` writes, for the two
//! shipped examples (`examples/reference`, `examples/seed`), with and without `--env`:
//! the function's environment sets every variable `ferry-lambda` reads; every
//! environment's EventBridge rule sends the Lambda alarms that the Lambda routes to that
//! environment, and an alarm no rule matches is routed nowhere; the Lambda's failures
//! have somewhere to go (dead-letter queues); and its role allows every call a real
//! rollback makes (recorded by `common::proxy` in front of moto).
#![cfg(feature = "aws")]
#![allow(clippy::unwrap_used)]

mod common;

use common::proxy::Proxy;
use ferry_aws::alarm_event::{Action, DETAIL_TYPE, route, routes};
use ferry_aws::lambda::{Handler, LambdaConfig};
use ferry_aws::ledger::DynamoLedger;
use ferry_aws::s3::S3Deployer;
use ferry_config::Pipeline;
use ferry_core::{Artifact, DeploymentStatus};
use ferry_engine::ports::{DeployRequest, Deployer, Ledger};
use ferry_synth::{Names, Options, lambda_env};
use ferry_testkit::ledger_suite::deployment;
use serde_json::Value;
use std::collections::BTreeSet;

fn example(name: &str) -> Pipeline {
    let path = format!(
        "{}/../../examples/{name}/ferry.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    ferry_config::parse(&text, &path).unwrap()
}

fn monitoring(pipeline: &Pipeline, env: Option<&str>) -> Value {
    let options = Options {
        env: env.map(str::to_string),
    };
    let mut stacks = ferry_synth::synth(pipeline, &options).unwrap();
    let name = Names::new(&pipeline.name, env).stack("monitoring");
    stacks.remove(&name).unwrap()
}

/// The AWS-documented ALARM event with another alarm name.
fn alarm_event(name: &str) -> Value {
    let path = format!("{}/tests/events/alarm.json", env!("CARGO_MANIFEST_DIR"));
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    e["detail"]["alarmName"] = name.into();
    e
}

/// Whether an EventBridge `alarmName` pattern (`[{"prefix": …}, "exact", …]`) matches.
fn matches(pattern: &Value, name: &str) -> bool {
    pattern.as_array().unwrap().iter().any(|p| match p {
        Value::String(exact) => exact == name,
        other => other["prefix"]
            .as_str()
            .is_some_and(|prefix| name.starts_with(prefix)),
    })
}

/// `(environment, alarmName pattern)` of every alarm rule of a monitoring stack.
fn rules(pipeline: &Pipeline, env: Option<&str>, stack: &Value) -> Vec<(String, Value)> {
    let names = Names::new(&pipeline.name, env);
    let resources = stack["Resources"].as_object().unwrap();
    let mut out = Vec::new();
    for (id, r) in resources {
        if r["Type"] != "AWS::Events::Rule" {
            continue;
        }
        let p = &r["Properties"];
        // With `--env`, the one rule is that environment's.
        let owner = pipeline
            .environments
            .iter()
            .find(|e| env.is_none_or(|only| only == e.name) && p["Name"] == names.rule(&e.name))
            .unwrap_or_else(|| panic!("rule {id} is named after no environment"));
        let pattern = &p["EventPattern"];
        assert_eq!(
            pattern["source"],
            serde_json::json!(["aws.cloudwatch"]),
            "{id}"
        );
        assert_eq!(
            pattern["detail-type"],
            serde_json::json!([DETAIL_TYPE]),
            "{id}"
        );
        assert_eq!(
            pattern["detail"]["state"]["value"],
            serde_json::json!(["ALARM"])
        );
        // Its target is the Lambda, with a dead-letter queue for what EventBridge
        // cannot deliver.
        let target = &p["Targets"][0];
        assert_eq!(target["Arn"]["Fn::GetAtt"][0], "RollbackFunction", "{id}");
        assert_eq!(
            target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0], "RollbackDeadLetterQueue",
            "{id}"
        );
        out.push((owner.name.clone(), pattern["detail"]["alarmName"].clone()));
    }
    out
}

#[test]
fn the_stack_sets_every_variable_the_lambda_reads() {
    for file in ["reference", "seed"] {
        let pipeline = example(file);
        let mut scopes: Vec<Option<&str>> = vec![None];
        scopes.extend(pipeline.environments.iter().map(|e| Some(e.name.as_str())));
        for env in scopes {
            let stack = monitoring(&pipeline, env);
            let function = &stack["Resources"]["RollbackFunction"]["Properties"];
            let vars = function["Environment"]["Variables"].as_object().unwrap();
            for v in lambda_env::READ {
                assert!(
                    vars.contains_key(v),
                    "{file} {env:?}: {v} is not set: {vars:?}"
                );
            }
            assert_eq!(vars[lambda_env::CONFIG], lambda_env::CONFIG_DEFAULT);
            assert_eq!(vars[lambda_env::PIPELINE], pipeline.name.as_str());
            assert_eq!(
                vars[lambda_env::TABLE]["Fn::ImportValue"]["Fn::Sub"],
                "${CoreStackName}-DeploymentsTableName"
            );
            assert_eq!(vars[lambda_env::ROLLBACKS_TOPIC]["Ref"], "RollbacksTopic");
            // The rollbacks it counts in its log reach the metric the rollback alarm
            // watches.
            let filter = &stack["Resources"]["RollbackCountRollbackFilter"]["Properties"];
            assert_eq!(
                filter["FilterPattern"],
                format!("{{ $.metric = \"{}\" }}", lambda_env::ROLLBACK_METRIC)
            );
            assert_eq!(
                filter["LogGroupName"]["Fn::ImportValue"]["Fn::Sub"],
                "${CoreStackName}-RollbackLogGroupName"
            );
            assert_eq!(
                stack["Resources"]["RollbackAlarm"]["Properties"]["MetricName"],
                lambda_env::ROLLBACK_METRIC
            );
            // What the Lambda fails on goes to the dead-letter queue (after Lambda's
            // own retries of the asynchronous invocation).
            assert_eq!(
                function["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0],
                "RollbackDeadLetterQueue"
            );
        }
    }
}

#[test]
fn the_lambda_routes_each_rule_s_alarms_to_its_environment_and_no_others() {
    for file in ["reference", "seed"] {
        let pipeline = example(file);
        let lambda_routes = routes(&pipeline);
        let mut scopes: Vec<Option<&str>> = vec![None];
        scopes.extend(pipeline.environments.iter().map(|e| Some(e.name.as_str())));
        for scope in scopes {
            let stack = monitoring(&pipeline, scope);
            let found = rules(&pipeline, scope, &stack);
            assert_eq!(
                found.len(),
                if scope.is_some() {
                    1
                } else {
                    pipeline.environments.len()
                },
                "{file} {scope:?}"
            );
            for (env, pattern) in &found {
                let mut names: Vec<String> = Vec::new();
                for p in pattern.as_array().unwrap() {
                    match p {
                        Value::String(exact) => names.push(exact.clone()),
                        other => {
                            let prefix = other["prefix"].as_str().unwrap();
                            names.push(format!("{prefix}errors"));
                            names.push(format!("{prefix}p99-latency"));
                        }
                    }
                }
                for name in names {
                    assert!(matches(pattern, &name));
                    match route(&alarm_event(&name), &lambda_routes) {
                        Action::RollBack { environment, .. } => assert_eq!(
                            &environment, env,
                            "{file} {scope:?}: {name} is sent by {env}'s rule"
                        ),
                        other => panic!("{file} {scope:?}: {name} from {env}'s rule: {other:?}"),
                    }
                }
            }
            // An alarm no rule matches is routed nowhere.
            for name in [
                "billing-errors".to_string(),
                format!("{}-errors", pipeline.name),
                format!("{}-unknown-errors", pipeline.name),
            ] {
                assert!(
                    found.iter().all(|(_, p)| !matches(p, &name)),
                    "{file}: {name} matched"
                );
                assert!(
                    matches!(
                        route(&alarm_event(&name), &lambda_routes),
                        Action::Nothing { .. }
                    ),
                    "{file}: {name}"
                );
            }
        }
    }
}

/// The IAM action a request recorded by the proxy needs.
fn iam_action(call: &str) -> String {
    if let Some(op) = call.strip_prefix("DynamoDB_20120810.") {
        // A transaction needs the permissions of the writes in it (all `Put`s here).
        let op = if op == "TransactWriteItems" {
            "PutItem"
        } else {
            op
        };
        return format!("dynamodb:{op}");
    }
    match call {
        "Action=Publish" => return "sns:Publish".into(),
        "Action=DescribeAlarms" => return "cloudwatch:DescribeAlarms".into(),
        _ => {}
    }
    let (method, path) = call.split_once(' ').unwrap();
    let object = path.trim_start_matches('/').contains('/');
    match (method, object) {
        ("GET" | "HEAD", true) => "s3:GetObject".into(),
        ("PUT", true) => "s3:PutObject".into(),
        ("GET", false) => "s3:ListBucket".into(),
        _ => panic!("unexpected call {call}"),
    }
}

#[test]
fn the_lambda_s_role_allows_every_call_a_rollback_makes() {
    let moto = common::Moto::start();
    let aws = moto.aws();
    let dir = tempfile::tempdir().unwrap();
    let text = "pipeline: shop
build:
  steps:
    - name: build
      run: ./build.sh
  artifact: dist
environments:
  - name: production
    deploy:
      s3: {bucket: site}
    monitor:
      duration: 1m
      alarms: [shop-production-errors]
alarms:
  - name: shop-production-errors
    external: true
rollback:
  validate:
    stabilize: 0s
";
    std::fs::write(dir.path().join("ferry.yml"), text).unwrap();
    let pipeline = ferry_config::parse(text, "ferry.yml").unwrap();
    let ledger = DynamoLedger::new(&aws, "ferry-deployments");
    ledger.create_table().unwrap();
    common::create_bucket(&aws, "site");
    let sns = aws_sdk_sns::Client::new(aws.config());
    let topic = aws
        .block_on(sns.create_topic().name("rollbacks").send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let s3 = S3Deployer::new(&aws, "site", "production");
    for (start, v) in [(1_000, "v1"), (2_000, "v2")] {
        let site = dir.path().join(v);
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("index.html"), v).unwrap();
        common::put(&aws, "site", &format!("artifacts/{v}.tar"), v.as_bytes());
        s3.deploy(&DeployRequest {
            environment: "production".into(),
            version: v.into(),
            artifact: Artifact {
                digest: String::new(),
                location: site.display().to_string(),
                size: 0,
            },
            env: Default::default(),
            cwd: site.clone(),
            log: site.join("log"),
        })
        .unwrap();
        let mut d = deployment("production", start, v, DeploymentStatus::Succeeded);
        d.artifact_location = format!("s3://site/artifacts/{v}.tar");
        d.artifact_digest = common::sha256(v.as_bytes());
        ledger.record_deployment(&d).unwrap();
    }

    // A real rollback through the proxy, which records every call.
    let proxy = Proxy::start(&moto.endpoint);
    let through = ferry_aws::Aws::connect(&proxy.settings(2)).unwrap();
    let handler = Handler::new(
        &through,
        &LambdaConfig {
            config: dir.path().join("ferry.yml"),
            table: "ferry-deployments".into(),
            bucket: None,
            topic_arn: Some(topic),
            pipeline: Some("shop".into()),
            work: dir.path().join("work"),
        },
    )
    .unwrap();
    let out = handler
        .handle(&alarm_event("shop-production-errors"))
        .unwrap();
    assert_eq!(
        out.rollback.as_ref().map(|r| r.to_version.clone()),
        Some(Some("v1".to_string())),
        "{out:?}"
    );
    let needed: BTreeSet<String> = proxy.calls().iter().map(|(c, _)| iam_action(c)).collect();

    let stack = monitoring(&pipeline, None);
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    for statement in stack["Resources"]["RollbackRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
    {
        assert_eq!(statement["Effect"], "Allow");
        for a in statement["Action"].as_array().unwrap() {
            allowed.insert(a.as_str().unwrap().to_string());
        }
    }
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "the rollback Lambda's role lacks {missing:?} (calls: {:?})",
        proxy.calls()
    );
    for must in [
        "dynamodb:Scan",
        "dynamodb:PutItem",
        "s3:PutObject",
        "sns:Publish",
    ] {
        assert!(
            needed.contains(must),
            "{must} was not exercised: {needed:?}"
        );
    }
}
