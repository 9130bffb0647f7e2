//! The pipeline stack (seed §8.1 phase 2): a CodePipeline V2 — a CodeConnections GitHub
//! source, the build stage, one stage per environment in the file's order with the
//! manual approval first where the environment has one — and the CodeBuild projects whose
//! buildspecs install `ferry` and run each step of `ferry.yml` with `ferry step`, so the
//! same gates run there. Least-privilege roles (§10.1), secrets from Secrets Manager
//! (§10.2), local caching (§3.8.1).
//!
//! # The `ferry step` contract
//!
//! Each buildspec runs, in order, one `ferry step STAGE/STEP` per step of the stage:
//! `STAGE` is `build` or an environment's name, `STEP` a step's `name` in `ferry.yml`, or
//! one of ferry's own parts, spelled with an `@` that no step name can contain:
//! `build/@gates` (coverage and security gates over the reports the steps wrote),
//! `build/@artifact` (packs `build.artifact`), `ENV/@infrastructure` (the environment's
//! infrastructure deploy when `ferry diff` finds a meaningful change), `ENV/@deploy` and
//! `ENV/@monitor` (the health window). Each exits non-zero when the step or gate fails,
//! which fails the CodeBuild action and stops the pipeline. `ferry step` reads the file
//! named by `FERRY_FILE`, the commit from `FERRY_COMMIT_SHA`, and records into the
//! DynamoDB table named by `FERRY_DEPLOYMENTS_TABLE`.

use ferry_config::{Environment, ExecutionMode, Pipeline, Step};
use serde_json::{Map, Value, json};

use crate::{
    Names, allow, arn, assume_role, core_stack_parameter, deploy_target_statements, get_att,
    import, r#ref,
};

/// The CodeBuild image the projects run in.
pub const BUILD_IMAGE: &str = "aws/codebuild/amazonlinux-x86_64-standard:5.0";
/// Where the buildspecs download the `ferry` binary from, in the artifacts bucket
/// (parameter `FerryBinaryKey`).
pub const FERRY_BINARY_KEY: &str = "tools/ferry/ferry-x86_64-linux";
/// The secret holding the GitHub token (commit statuses), under the pipeline's prefix
/// (seed §8.2, §10.2).
pub const GITHUB_TOKEN_SECRET: &str = "github-token";
/// Cache folder the buildspecs keep between builds (§3.8.1).
pub const CACHE_PATH: &str = ".ferry/cache/**/*";

/// What the DynamoDB ledger (`ferry-aws`'s `DynamoLedger`) calls on the deployments
/// table and its index: `ferry step` in CodeBuild and the rollback Lambda both record
/// deployments, take and let go leases (`DeleteItem`), claim rollbacks
/// (`ConditionCheckItem` in transactions) and read the history (`Query`, `Scan`).
pub const LEDGER_ACTIONS: [&str; 7] = [
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
];

/// A stage's CodeBuild project.
struct Project {
    /// Logical id.
    id: String,
    /// `build` or the environment's name.
    stage: String,
    /// Physical name.
    name: String,
}

pub(crate) fn template(pipeline: &Pipeline, names: &Names) -> Value {
    let mut projects = vec![Project {
        id: "BuildProject".into(),
        stage: "build".into(),
        name: names.project("build"),
    }];
    let mut used = vec!["BuildProject".to_string()];
    for env in &pipeline.environments {
        let mut id = format!("{}Project", pascal(&env.name));
        if used.contains(&id) || id == "Project" {
            id = format!("Env{}Project", used.len());
        }
        used.push(id.clone());
        projects.push(Project {
            id,
            stage: env.name.clone(),
            name: names.project(&env.name),
        });
    }

    let mut resources = Map::new();
    resources.insert(
        "Connection".into(),
        json!({
            "Type": "AWS::CodeStarConnections::Connection",
            "Condition": "CreateConnection",
            "Properties": { "ConnectionName": names.connection(), "ProviderType": "GitHub" }
        }),
    );
    let connection =
        json!({ "Fn::If": ["CreateConnection", r#ref("Connection"), r#ref("ConnectionArn")] });
    let bucket_objects = json!({ "Fn::Join": ["", [import("ArtifactsBucketArn"), "/*"]] });
    let topic = |kind: &str| arn("sns", &names.topic(kind));

    // The pipeline's role: start its builds, move artifacts, use the connection, ask for
    // approvals.
    resources.insert(
        "PipelineRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": format!("ferry {}: CodePipeline", names.base()),
                "AssumeRolePolicyDocument": assume_role("codepipeline.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "PipelinePolicy",
                    "PolicyDocument": { "Version": "2012-10-17", "Statement": [
                        allow(&["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
                            projects.iter().map(|p| get_att(&p.id, "Arn")).collect()),
                        allow(&["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], vec![bucket_objects.clone()]),
                        allow(&["s3:GetBucketLocation", "s3:GetBucketVersioning"], vec![import("ArtifactsBucketArn")]),
                        allow(&["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"], vec![import("KeyArn")]),
                        allow(&["codeconnections:UseConnection", "codestar-connections:UseConnection"], vec![connection.clone()]),
                        allow(&["sns:Publish"], vec![topic("approvals")])
                    ] }
                }]
            }
        }),
    );

    // The builds' role: logs, artifacts, reports, secrets, the store, notifications and
    // the alarms of the monitor windows.
    let mut secret_arns = vec![arn(
        "secretsmanager",
        &format!("secret:{}-??????", names.secret(GITHUB_TOKEN_SECRET)),
    )];
    for s in &pipeline.secrets {
        secret_arns.push(arn(
            "secretsmanager",
            &format!("secret:{}-??????", names.secret(s)),
        ));
    }
    let mut alarm_arns = Vec::new();
    for env in &pipeline.environments {
        alarm_arns.push(arn(
            "cloudwatch",
            &format!("alarm:{}*", names.alarm_prefix(&env.name)),
        ));
        for a in pipeline.alarms_for(&env.name) {
            alarm_arns.push(arn("cloudwatch", &format!("alarm:{}", a.name)));
        }
    }
    let table = import("DeploymentsTableArn");
    let index = json!({ "Fn::Join": ["", [import("DeploymentsTableArn"), "/index/EnvironmentStatusIndex"]] });
    let mut build_statements: Vec<Value> = vec![
        allow(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            vec![import("BuildLogGroupArn")],
        ),
        allow(
            &["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            vec![bucket_objects],
        ),
        allow(
            &["s3:GetBucketAcl", "s3:GetBucketLocation"],
            vec![import("ArtifactsBucketArn")],
        ),
        allow(
            &[
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:GenerateDataKey",
            ],
            vec![import("KeyArn")],
        ),
        allow(&["secretsmanager:GetSecretValue"], secret_arns),
        allow(
            &[
                "codebuild:BatchPutTestCases",
                "codebuild:CreateReport",
                "codebuild:CreateReportGroup",
                "codebuild:UpdateReport",
            ],
            projects
                .iter()
                .map(|p| arn("codebuild", &format!("report-group/{}-*", p.name)))
                .collect(),
        ),
        allow(
            &[
                "codeconnections:UseConnection",
                "codestar-connections:UseConnection",
            ],
            vec![connection.clone()],
        ),
        allow(&LEDGER_ACTIONS, vec![table, index]),
        allow(
            &["sns:Publish"],
            vec![topic("deployments"), topic("rollbacks")],
        ),
        allow(&["cloudwatch:DescribeAlarms"], alarm_arns),
    ];
    build_statements.extend(deploy_target_statements(&pipeline.environments));
    if pipeline.infrastructure.is_some() {
        // `infrastructure.deploy` (`cdk deploy`, seed §3.2) works through the CDK
        // bootstrap's roles in this account; the build assumes them, nothing wider.
        build_statements.push(allow(
            &["sts:AssumeRole"],
            vec![json!({ "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-*" })],
        ));
    }
    resources.insert(
        "CodeBuildRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": format!("ferry {}: CodeBuild projects running `ferry step`", names.base()),
                "AssumeRolePolicyDocument": assume_role("codebuild.amazonaws.com"),
                "Policies": [{
                    "PolicyName": "BuildPolicy",
                    "PolicyDocument": { "Version": "2012-10-17", "Statement":  build_statements }
                }]
            }
        }),
    );

    for p in &projects {
        let env = pipeline.environment(&p.stage);
        resources.insert(p.id.clone(), project(pipeline, names, p, env));
    }

    // Stages.
    let mut stages = vec![
        json!({ "Name": "Source", "Actions": [{
            "Name": "Source",
            "ActionTypeId": { "Category": "Source", "Owner": "AWS", "Provider": "CodeStarSourceConnection", "Version": "1" },
            "Configuration": {
                "ConnectionArn": connection,
                "FullRepositoryId": r#ref("RepositoryId"),
                "BranchName": pipeline.source.branch,
                "OutputArtifactFormat": "CODEBUILD_CLONE_REF",
                "DetectChanges": true
            },
            "OutputArtifacts": [{ "Name": "Source" }],
            "Namespace": "SourceVariables",
            "RunOrder": 1
        }] }),
        json!({ "Name": "Build", "Actions": [build_action("Build", "BuildProject", "Source", Some("Build"), None)] }),
    ];
    for (env, p) in pipeline.environments.iter().zip(projects.iter().skip(1)) {
        let mut actions = Vec::new();
        if env.approval.is_some() {
            actions.push(json!({
                "Name": "Approve",
                "ActionTypeId": { "Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1" },
                "Configuration": {
                    "NotificationArn": topic("approvals"),
                    "CustomData": format!(
                        "Approve deploying commit #{{SourceVariables.CommitId}} of {} to {}: review the test results, then approve or reject.",
                        pipeline.name, env.name
                    ),
                    "ExternalEntityLink": "https://github.com/#{SourceVariables.FullRepositoryName}/commit/#{SourceVariables.CommitId}"
                },
                "RunOrder": 1
            }));
        }
        actions.push(build_action(
            "Deploy",
            &p.id,
            "Build",
            None,
            Some(&env.name),
        ));
        stages.push(json!({ "Name": stage_name(&env.name), "Actions": actions }));
    }

    resources.insert(
        "Pipeline".into(),
        json!({
            "Type": "AWS::CodePipeline::Pipeline",
            "Properties": {
                "Name": names.pipeline(),
                "RoleArn": get_att("PipelineRole", "Arn"),
                "PipelineType": "V2",
                "ExecutionMode": match pipeline.execution_mode {
                    ExecutionMode::Superseded => "SUPERSEDED",
                    ExecutionMode::Queued => "QUEUED",
                },
                "RestartExecutionOnUpdate": false,
                "ArtifactStore": {
                    "Type": "S3",
                    "Location": import("ArtifactsBucketName"),
                    "EncryptionKey": { "Id": import("KeyArn"), "Type": "KMS" }
                },
                "Triggers": [{
                    "ProviderType": "CodeStarSourceConnection",
                    "GitConfiguration": {
                        "SourceActionName": "Source",
                        "Push": [{ "Branches": { "Includes": [pipeline.source.branch] } }]
                    }
                }],
                "Stages": stages
            }
        }),
    );

    let mut repository = json!({
        "Type": "String",
        "Description": "The GitHub repository, `owner/name`.",
        "AllowedPattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
    });
    if let Some(id) = pipeline
        .source
        .repository
        .as_deref()
        .and_then(github_repository)
    {
        repository["Default"] = json!(id);
    }

    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ferry {} pipeline: CodePipeline V2 and CodeBuild projects running `ferry step` (synthesized by `ferry synth aws`; seed section 8.1 phase 2)", pipeline.name),
        "Parameters": {
            "CoreStackName": core_stack_parameter(names),
            "ConnectionArn": {
                "Type": "String",
                "Default": "",
                "Description": "An existing CodeConnections (CodeStar) connection to GitHub; empty: this stack creates one, to be completed once in the console.",
                "AllowedPattern": "^$|^arn:aws[a-z-]*:(codestar-connections|codeconnections):.+$"
            },
            "RepositoryId": repository,
            "FerryBinaryKey": {
                "Type": "String",
                "Default": FERRY_BINARY_KEY,
                "Description": "The key of the `ferry` Linux binary in the artifacts bucket; the buildspecs install it from there."
            }
        },
        "Conditions": {
            "CreateConnection": { "Fn::Equals": [r#ref("ConnectionArn"), ""] }
        },
        "Resources": resources,
        "Outputs": {
            "PipelineName": { "Description": "The pipeline", "Value": r#ref("Pipeline") },
            "ConnectionArnUsed": { "Description": "The GitHub connection the source uses", "Value": json!({ "Fn::If": ["CreateConnection", r#ref("Connection"), r#ref("ConnectionArn")] }) }
        }
    })
}

/// A CodeBuild action of the pipeline.
fn build_action(
    name: &str,
    project: &str,
    input: &str,
    output: Option<&str>,
    env: Option<&str>,
) -> Value {
    let mut vars = vec![
        json!({ "name": "FERRY_COMMIT_SHA", "value": "#{SourceVariables.CommitId}", "type": "PLAINTEXT" }),
    ];
    if let Some(e) = env {
        vars.push(json!({ "name": "FERRY_ENV", "value": e, "type": "PLAINTEXT" }));
    }
    let mut a = json!({
        "Name": name,
        "ActionTypeId": { "Category": "Build", "Owner": "AWS", "Provider": "CodeBuild", "Version": "1" },
        "Configuration": {
            "ProjectName": r#ref(project),
            "EnvironmentVariables": Value::String(Value::Array(vars).to_string())
        },
        "InputArtifacts": [{ "Name": input }],
        "RunOrder": if env.is_some() { 2 } else { 1 }
    });
    if let Some(o) = output {
        a["OutputArtifacts"] = json!([{ "Name": o }]);
    }
    a
}

/// One stage's CodeBuild project.
fn project(pipeline: &Pipeline, names: &Names, p: &Project, env: Option<&Environment>) -> Value {
    let mut vars = vec![
        json!({ "Name": "FERRY_FILE", "Type": "PLAINTEXT", "Value": "ferry.yml" }),
        json!({ "Name": "FERRY_STAGE", "Type": "PLAINTEXT", "Value": p.stage }),
        json!({ "Name": "FERRY_ARTIFACTS_BUCKET", "Type": "PLAINTEXT", "Value": import("ArtifactsBucketName") }),
        json!({ "Name": "FERRY_BINARY_KEY", "Type": "PLAINTEXT", "Value": r#ref("FerryBinaryKey") }),
        json!({ "Name": "FERRY_DEPLOYMENTS_TABLE", "Type": "PLAINTEXT", "Value": import("DeploymentsTableName") }),
        json!({ "Name": "FERRY_DEPLOYMENTS_TOPIC", "Type": "PLAINTEXT", "Value": arn("sns", &names.topic("deployments")) }),
        json!({ "Name": "FERRY_ROLLBACKS_TOPIC", "Type": "PLAINTEXT", "Value": arn("sns", &names.topic("rollbacks")) }),
        json!({ "Name": "GITHUB_TOKEN", "Type": "SECRETS_MANAGER", "Value": names.secret(GITHUB_TOKEN_SECRET) }),
    ];
    for s in &pipeline.secrets {
        vars.push(json!({ "Name": s, "Type": "SECRETS_MANAGER", "Value": names.secret(s) }));
    }
    let (steps, timeout) = match env {
        None => build_commands(pipeline),
        Some(e) => env_commands(e),
    };
    let reports: Vec<(String, Vec<String>)> = match env {
        None => junit_reports(&pipeline.build.steps),
        Some(e) => junit_reports(&e.tests),
    };
    json!({
        "Type": "AWS::CodeBuild::Project",
        "Properties": {
            "Name": p.name,
            "Description": format!("ferry {}: the {} stage, one `ferry step` per step", names.base(), p.stage),
            "ServiceRole": get_att("CodeBuildRole", "Arn"),
            "Artifacts": { "Type": "CODEPIPELINE" },
            "Source": { "Type": "CODEPIPELINE", "BuildSpec": buildspec(&steps, &reports, env.is_none()) },
            "Environment": {
                "Type": "LINUX_CONTAINER",
                "ComputeType": "BUILD_GENERAL1_SMALL",
                "Image": BUILD_IMAGE,
                "EnvironmentVariables": vars
            },
            "Cache": { "Type": "LOCAL", "Modes": ["LOCAL_SOURCE_CACHE", "LOCAL_CUSTOM_CACHE"] },
            "EncryptionKey": import("KeyArn"),
            "LogsConfig": { "CloudWatchLogs": { "Status": "ENABLED", "GroupName": import("BuildLogGroupName"), "StreamName": p.stage } },
            "TimeoutInMinutes": timeout
        }
    })
}

/// The build stage's commands and its timeout in minutes.
fn build_commands(pipeline: &Pipeline) -> (Vec<String>, u64) {
    let mut cmds: Vec<String> = pipeline
        .build
        .steps
        .iter()
        .map(|s| step_command("build", &s.name))
        .collect();
    cmds.push(step_command("build", "@gates"));
    if pipeline.build.artifact.is_some() {
        cmds.push(step_command("build", "@artifact"));
    }
    let secs: u64 = pipeline.build.steps.iter().map(step_secs).sum();
    (cmds, minutes(secs))
}

/// An environment stage's commands and its timeout in minutes.
fn env_commands(env: &Environment) -> (Vec<String>, u64) {
    let mut cmds = Vec::new();
    if env.infrastructure.is_some() {
        cmds.push(step_command(&env.name, "@infrastructure"));
    }
    cmds.push(step_command(&env.name, "@deploy"));
    for t in &env.tests {
        cmds.push(step_command(&env.name, &t.name));
    }
    let mut secs: u64 = env.tests.iter().map(step_secs).sum();
    if let Some(m) = &env.monitor {
        cmds.push(step_command(&env.name, "@monitor"));
        secs += m.duration.as_secs();
    }
    (cmds, minutes(secs))
}

/// A step with no timeout counts ten minutes.
fn step_secs(s: &Step) -> u64 {
    s.timeout.map_or(600, |t| t.as_secs())
}

/// CodeBuild's timeout: the steps' time plus 15 minutes, at least 60, at most 480.
fn minutes(secs: u64) -> u64 {
    (secs.div_ceil(60) + 15).clamp(60, 480)
}

/// `ferry step 'STAGE/STEP'`. Names are checked by `ferry-config` (letters, digits,
/// `-`, `_`, `.`), quoted all the same.
fn step_command(stage: &str, step: &str) -> String {
    format!("ferry step {}", shell_quote(&format!("{stage}/{step}")))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Each step's JUnit files, as CodeBuild report groups.
fn junit_reports(steps: &[Step]) -> Vec<(String, Vec<String>)> {
    steps
        .iter()
        .filter(|s| !s.reports.junit.is_empty())
        .map(|s| (s.name.clone(), s.reports.junit.clone()))
        .collect()
}

/// The buildspec (JSON, which CodeBuild reads as the YAML it is).
fn buildspec(commands: &[String], reports: &[(String, Vec<String>)], build: bool) -> String {
    let mut spec = json!({
        "version": 0.2,
        "env": { "shell": "bash" },
        "phases": {
            "install": { "commands": [
                "aws s3 cp --only-show-errors \"s3://${FERRY_ARTIFACTS_BUCKET}/${FERRY_BINARY_KEY}\" /usr/local/bin/ferry",
                "chmod 0755 /usr/local/bin/ferry",
                "ferry --version"
            ] },
            "build": { "commands": commands }
        },
        "cache": { "paths": [CACHE_PATH] }
    });
    if !reports.is_empty() {
        let mut r = Map::new();
        for (name, files) in reports {
            r.insert(
                name.clone(),
                json!({ "files": files, "file-format": "JUNITXML" }),
            );
        }
        spec["reports"] = Value::Object(r);
    }
    if build {
        spec["artifacts"] = json!({ "files": ["**/*"], "name": "BuildArtifact" });
    }
    serde_json::to_string_pretty(&spec).unwrap_or_default()
}

/// `https://github.com/owner/repo(.git)` → `owner/repo`.
fn github_repository(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = rest.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    (parts.next().is_none() && !owner.is_empty() && !repo.is_empty())
        .then(|| format!("{owner}/{repo}"))
}

/// A stage name: CodePipeline allows `[A-Za-z0-9.@_-]`, at most 100.
fn stage_name(env: &str) -> String {
    let s: String = env
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    crate::limit(&s, 100)
}

/// `prod-eu.1` → `ProdEu1`, for logical ids (alphanumeric).
pub(crate) fn pascal(text: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DynamoDB actions a role's policy allows.
    fn table_actions(template: &Value, role: &str) -> Vec<String> {
        let mut out: Vec<String> =
            template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_string))
                .filter(|a| a.starts_with("dynamodb:"))
                .collect();
        out.sort();
        out
    }

    /// `ferry step` (CodeBuild) and the rollback Lambda use the same ledger, so both
    /// roles allow every call it makes: a lease let go is a `DeleteItem`, the history a
    /// `Scan`.
    #[test]
    fn both_ledger_users_may_make_every_ledger_call() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let text = std::fs::read_to_string(root.join("reference/ferry.yml")).expect("example");
        let pipeline = ferry_config::parse(&text, "ferry.yml").expect("valid");
        let stacks = crate::synth(&pipeline, &crate::Options { env: None }).expect("synth");
        let want: Vec<String> = LEDGER_ACTIONS.iter().map(|a| (*a).to_string()).collect();
        let find = |suffix: &str| {
            stacks
                .iter()
                .find(|(name, _)| name.ends_with(suffix))
                .map(|(_, t)| t.clone())
                .expect("stack")
        };
        assert_eq!(table_actions(&find("-pipeline"), "CodeBuildRole"), want);
        assert_eq!(table_actions(&find("-monitoring"), "RollbackRole"), want);
    }

    #[test]
    fn repositories_and_ids() {
        assert_eq!(
            github_repository("https://github.com/acme/shop.git").as_deref(),
            Some("acme/shop")
        );
        assert_eq!(github_repository("https://gitlab.com/acme/shop"), None);
        assert_eq!(github_repository("https://github.com/acme"), None);
        assert_eq!(pascal("prod-eu.1"), "ProdEu1");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
