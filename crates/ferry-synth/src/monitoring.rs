//! The monitoring stack (seed §8.1 phase 3): the SNS topics (§3.6.1), the EventBridge
//! rule per environment on CloudWatch alarm state changes (§3.3.2) targeting the Rust
//! rollback Lambda (dead-letter queue, reserved concurrency, its own role), the metric
//! filters that turn ferry's JSON metric lines into the custom metrics of §9.2, the
//! pipeline-failure and rollback alarms (§9.3) and the dashboard (§9.1).

use ferry_config::{Environment, Pipeline};
use serde_json::{Map, Value, json};

use crate::pipeline::pascal;
use crate::{
    Names, allow, arn, assume_role, core_stack_parameter, deploy_target_statements, get_att,
    import, lambda_env, r#ref, sub,
};

/// Where the rollback Lambda's zip (a `bootstrap` binary) is in the artifacts bucket
/// (parameter `RollbackCodeKey`).
pub const ROLLBACK_CODE_KEY: &str = "lambda/ferry-rollback.zip";

/// The custom metrics (§9.2): each comes from JSON log lines
/// `{"metric": NAME, "value": N}` written by `ferry step` (build log group) and the
/// rollback Lambda (its log group), through a metric filter.
pub const METRICS: &[(&str, &str, bool, bool)] = &[
    // (name, unit, from builds, from the rollback Lambda)
    ("DeploymentCount", "Count", true, false),
    ("DeploymentDuration", "Milliseconds", true, false),
    (lambda_env::ROLLBACK_METRIC, "Count", true, true),
    ("TestSuccessRate", "Percent", true, false),
];

pub(crate) fn template(pipeline: &Pipeline, names: &Names, scope: &[&Environment]) -> Value {
    let mut resources = Map::new();
    for (id, kind, what) in [
        (
            "DeploymentsTopic",
            "deployments",
            "deployment started, succeeded, failed; pipeline alarms",
        ),
        ("ApprovalsTopic", "approvals", "approval requests"),
        (
            "RollbacksTopic",
            "rollbacks",
            "rollbacks started, succeeded, failed; incidents and freezes",
        ),
    ] {
        resources.insert(
            id.into(),
            json!({
                "Type": "AWS::SNS::Topic",
                "Properties": {
                    "TopicName": names.topic(kind),
                    "DisplayName": format!("ferry {}: {what}", names.base()).chars().take(100).collect::<String>(),
                    "KmsMasterKeyId": import("KeyArn")
                }
            }),
        );
    }

    let rules: Vec<(String, &Environment)> = scope
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let p = pascal(&e.name);
            let id = if p.is_empty() { format!("Env{i}") } else { p };
            (format!("{id}AlarmRule"), *e)
        })
        .collect();

    resources.insert(
        "RollbackDeadLetterQueue".into(),
        json!({
            "Type": "AWS::SQS::Queue",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "QueueName": names.queue(),
                "KmsMasterKeyId": import("KeyArn"),
                "MessageRetentionPeriod": 1_209_600
            }
        }),
    );
    resources.insert(
        "RollbackDeadLetterQueuePolicy".into(),
        json!({
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [r#ref("RollbackDeadLetterQueue")],
                "PolicyDocument": { "Version": "2012-10-17", "Statement": [{
                    "Sid": "AlarmRulesDeadLetter",
                    "Effect": "Allow",
                    "Principal": { "Service": "events.amazonaws.com" },
                    "Action": "sqs:SendMessage",
                    "Resource": get_att("RollbackDeadLetterQueue", "Arn"),
                    "Condition": { "ArnEquals": { "aws:SourceArn": rules.iter().map(|(id, _)| get_att(id, "Arn")).collect::<Vec<_>>() } }
                }] }
            }
        }),
    );

    let mut alarm_arns = Vec::new();
    for e in scope {
        alarm_arns.push(arn(
            "cloudwatch",
            &format!("alarm:{}*", names.alarm_prefix(&e.name)),
        ));
        for a in pipeline.alarms_for(&e.name) {
            alarm_arns.push(arn("cloudwatch", &format!("alarm:{}", a.name)));
        }
    }
    let mut rollback_statements: Vec<Value> = vec![
        allow(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![import("RollbackLogGroupArn")],
        ),
        allow(
            &crate::pipeline::LEDGER_ACTIONS,
            vec![
                import("DeploymentsTableArn"),
                json!({ "Fn::Join": ["", [import("DeploymentsTableArn"), "/index/EnvironmentStatusIndex"]] }),
            ],
        ),
        allow(
            &["sns:Publish"],
            vec![r#ref("DeploymentsTopic"), r#ref("RollbacksTopic")],
        ),
        allow(
            &["kms:Decrypt", "kms:GenerateDataKey"],
            vec![import("KeyArn")],
        ),
        allow(
            &["sqs:SendMessage"],
            vec![get_att("RollbackDeadLetterQueue", "Arn")],
        ),
        allow(
            &[
                "codepipeline:GetPipelineExecution",
                "codepipeline:GetPipelineState",
                "codepipeline:StopPipelineExecution",
            ],
            vec![arn("codepipeline", &names.pipeline())],
        ),
        allow(&["cloudwatch:DescribeAlarms"], alarm_arns),
        allow(
            &["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            vec![json!({ "Fn::Join": ["", [import("ArtifactsBucketArn"), "/*"]] })],
        ),
        allow(&["s3:ListBucket"], vec![import("ArtifactsBucketArn")]),
    ];
    rollback_statements.extend(deploy_target_statements(scope.iter().copied()));
    resources.insert(
        "RollbackRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": format!("ferry {}: the rollback Lambda", names.base()),
                "AssumeRolePolicyDocument": assume_role("lambda.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "RollbackPolicy",
                    "PolicyDocument": { "Version": "2012-10-17", "Statement":  rollback_statements }
                }]
            }
        }),
    );

    // One environment put back and checked: the slowest `cloudformation:` stack update
    // it may wait for, then `stabilize` and the health check, plus a minute. Lambda's
    // limit is 15 minutes; a rollback that outlasts its invocation is taken over by the
    // retry (`ferry_aws::lambda`).
    let v = &pipeline.rollback.validate;
    let stack_wait = pipeline
        .environments
        .iter()
        .filter_map(|e| match &e.deploy {
            ferry_config::Deploy::CloudFormation(c) => Some(c.timeout.as_secs()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let timeout =
        (stack_wait + v.stabilize.as_secs() + v.health_timeout.as_secs() + 60).clamp(60, 900);
    resources.insert(
        "RollbackFunction".into(),
        json!({
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": names.function(),
                "Description": format!("ferry {}: rolls back on alarm (EventBridge) through the same orchestrator as the local runtime", names.base()).chars().take(256).collect::<String>(),
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Architectures": [r#ref("RollbackArchitecture")],
                "Code": { "S3Bucket": import("ArtifactsBucketName"), "S3Key": r#ref("RollbackCodeKey") },
                "Role": get_att("RollbackRole", "Arn"),
                "MemorySize": 256,
                "Timeout": timeout,
                "ReservedConcurrentExecutions": { "Fn::If": ["ReserveRollbackConcurrency", r#ref("RollbackConcurrency"), r#ref("AWS::NoValue")] },
                "DeadLetterConfig": { "TargetArn": get_att("RollbackDeadLetterQueue", "Arn") },
                "KmsKeyArn": import("KeyArn"),
                "LoggingConfig": { "LogGroup": import("RollbackLogGroupName"), "LogFormat": "JSON" },
                "Environment": { "Variables": {
                    lambda_env::CONFIG: lambda_env::CONFIG_DEFAULT,
                    lambda_env::PIPELINE: pipeline.name,
                    lambda_env::TABLE: import("DeploymentsTableName"),
                    lambda_env::DEPLOY_BUCKET: import("ArtifactsBucketName"),
                    lambda_env::DEPLOYMENTS_TOPIC: r#ref("DeploymentsTopic"),
                    lambda_env::ROLLBACKS_TOPIC: r#ref("RollbacksTopic"),
                    lambda_env::METRICS_NAMESPACE: names.namespace()
                } }
            }
        }),
    );

    for (id, env) in &rules {
        let mut match_names = vec![json!({ "prefix": names.alarm_prefix(&env.name) })];
        for a in pipeline.alarms_for(&env.name) {
            match_names.push(json!(a.name));
        }
        resources.insert(
            id.clone(),
            json!({
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": names.rule(&env.name),
                    "Description": format!("ferry: an alarm of {} went to ALARM; roll back", env.name).chars().take(512).collect::<String>(),
                    "State": "ENABLED",
                    "EventPattern": {
                        "source": ["aws.cloudwatch"],
                        "detail-type": ["CloudWatch Alarm State Change"],
                        "detail": {
                            "alarmName": match_names,
                            "state": { "value": ["ALARM"] }
                        }
                    },
                    "Targets": [{
                        "Id": "rollback",
                        "Arn": get_att("RollbackFunction", "Arn"),
                        "DeadLetterConfig": { "Arn": get_att("RollbackDeadLetterQueue", "Arn") },
                        "RetryPolicy": { "MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 3600 }
                    }]
                }
            }),
        );
        resources.insert(
            id.replace("AlarmRule", "InvokePermission"),
            json!({
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": r#ref("RollbackFunction"),
                    "Principal": "events.amazonaws.com",
                    "SourceArn": get_att(id, "Arn"),
                    "SourceAccount": r#ref("AWS::AccountId")
                }
            }),
        );
    }

    let namespace = names.namespace();
    for (metric, unit, builds, lambda) in METRICS {
        for (on, group, source) in [
            (*builds, "BuildLogGroupName", "Build"),
            (*lambda, "RollbackLogGroupName", "Rollback"),
        ] {
            if !on {
                continue;
            }
            resources.insert(
                format!("{metric}{source}Filter"),
                json!({
                    "Type": "AWS::Logs::MetricFilter",
                    "Properties": {
                        "LogGroupName": import(group),
                        "FilterPattern": format!("{{ $.metric = \"{metric}\" }}"),
                        "MetricTransformations": [{
                            "MetricNamespace": namespace,
                            "MetricName": metric,
                            "MetricValue": "$.value",
                            "Unit": unit
                        }]
                    }
                }),
            );
        }
    }

    resources.insert(
        "PipelineFailureAlarm".into(),
        json!({
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names.alarm("failures"),
                "AlarmDescription": "More than 3 failed pipeline executions in an hour (seed section 9.3)",
                "Namespace": "AWS/CodePipeline",
                "MetricName": "FailedPipelineExecutions",
                "Dimensions": [{ "Name": "PipelineName", "Value": names.pipeline() }],
                "Statistic": "Sum",
                "Period": 3600,
                "EvaluationPeriods": 1,
                "Threshold": 3,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [r#ref("DeploymentsTopic")]
            }
        }),
    );
    resources.insert(
        "RollbackAlarm".into(),
        json!({
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names.alarm("rollbacks"),
                "AlarmDescription": "More than 2 rollbacks in an hour (seed section 9.3)",
                "Namespace": namespace,
                "MetricName": lambda_env::ROLLBACK_METRIC,
                "Statistic": "Sum",
                "Period": 3600,
                "EvaluationPeriods": 1,
                "Threshold": 2,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [r#ref("RollbacksTopic")]
            }
        }),
    );

    resources.insert(
        "Dashboard".into(),
        json!({
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": names.dashboard(),
                "DashboardBody": sub(&dashboard(names))
            }
        }),
    );

    let mut outputs = Map::new();
    for (id, value, d) in [
        (
            "DeploymentsTopicArn",
            r#ref("DeploymentsTopic"),
            "Deployment notifications",
        ),
        (
            "ApprovalsTopicArn",
            r#ref("ApprovalsTopic"),
            "Approval requests",
        ),
        (
            "RollbacksTopicArn",
            r#ref("RollbacksTopic"),
            "Rollback notifications",
        ),
        (
            "RollbackFunctionArn",
            get_att("RollbackFunction", "Arn"),
            "The rollback Lambda",
        ),
        (
            "RollbackDeadLetterQueueUrl",
            r#ref("RollbackDeadLetterQueue"),
            "Alarm events the rollback could not handle",
        ),
    ] {
        outputs.insert(id.into(), json!({ "Description": d, "Value": value }));
    }

    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ferry {} monitoring: topics, alarm rules, rollback Lambda, alarms, dashboard (synthesized by `ferry synth aws`; seed section 8.1 phase 3)", pipeline.name),
        "Parameters": {
            "CoreStackName": core_stack_parameter(names),
            "RollbackCodeKey": {
                "Type": "String",
                "Default": ROLLBACK_CODE_KEY,
                "Description": "The rollback Lambda's zip (a `bootstrap` binary for provided.al2023) in the artifacts bucket."
            },
            "RollbackArchitecture": {
                "Type": "String",
                "Default": "x86_64",
                "AllowedValues": ["x86_64", "arm64"],
                "Description": "The architecture the rollback Lambda's binary is built for."
            },
            "RollbackConcurrency": {
                "Type": "Number",
                "Default": 1,
                "MinValue": 0,
                "Description": "Concurrent executions reserved for the rollback Lambda (one rollback at a time); 0 reserves none, for accounts whose concurrency limit is still the new-account default of 10."
            }
        },
        "Conditions": {
            "ReserveRollbackConcurrency": { "Fn::Not": [{ "Fn::Equals": [r#ref("RollbackConcurrency"), 0] }] }
        },
        "Resources": resources,
        "Outputs": outputs
    })
}

/// The dashboard of §9.1, as the `Fn::Sub` text of its body (`${AWS::Region}` only).
fn dashboard(names: &Names) -> String {
    let ns = names.namespace();
    let widget = |i: u32, title: &str, stat: &str, metrics: Value| {
        json!({
            "type": "metric",
            "x": (i % 2) * 12,
            "y": (i / 2) * 6,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": "${AWS::Region}",
                "stat": stat,
                "period": 3600,
                "view": "timeSeries",
                "metrics": metrics
            }
        })
    };
    let body = json!({ "widgets": [
        widget(0, "Pipeline Executions", "Sum", json!([
            [ns, "DeploymentCount", { "label": "deployments" }],
            ["AWS/CodePipeline", "FailedPipelineExecutions", "PipelineName", names.pipeline(), { "label": "failed executions" }]
        ])),
        widget(1, "Deployment Duration", "Average", json!([[ns, "DeploymentDuration"]])),
        widget(2, "Rollbacks", "Sum", json!([[ns, "RollbackCount"]])),
        widget(3, "Test Success Rate", "Average", json!([[ns, "TestSuccessRate"]]))
    ] });
    body.to_string()
}
