//! `ferry synth aws`: the seed's three CloudFormation stacks (§8.1) derived from a
//! `ferry.yml`, for running the same pipeline on AWS CodePipeline and CodeBuild.
//!
//! Pure: a [`Pipeline`] and [`Options`] in, a map of stack name → CloudFormation JSON
//! out. No AWS SDK, no file or network I/O, no clock; the CLI writes the files.
//!
//! | stack | what | seed |
//! |---|---|---|
//! | `<name>-core` | KMS key (rotation), artifacts bucket, deployments table, log groups; exports | §3.5.1, §3.8.3, §10.2 |
//! | `<name>-pipeline` | CodePipeline V2 (connection source → build → one stage per environment, approvals), CodeBuild projects calling `ferry step`, IAM roles | §3.1, §3.8.1, §10.1, §10.2 |
//! | `<name>-monitoring` | SNS topics, EventBridge alarm rules → rollback Lambda (DLQ), alarms, metric filters, dashboard | §3.3.2, §3.6.1, §9.1, §9.3 |
//!
//! The pipeline and monitoring stacks import from the core stack only (parameter
//! `CoreStackName`); everything else they share has a physical name derived from the
//! pipeline's name (see [`Names`]), so the stacks deploy in the seed's order: core,
//! pipeline, monitoring.

mod core_stack;
mod monitoring;
mod names;
pub mod pipeline;

pub mod check;
pub mod lambda_env;

use std::collections::BTreeMap;
use std::fmt;

use ferry_config::Pipeline;
use serde_json::Value;

pub use names::{Names, limit};

/// What `ferry synth aws` is asked for beyond the pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--env NAME`: the seed's `--context environment=NAME`. Every physical name then
    /// carries the environment (`<pipeline>-<env>-deployments`, …) and the monitoring
    /// stack watches that environment's alarms only. The pipeline stack still has every
    /// stage: a version never skips an environment (invariant 3). `None`: one set of
    /// stacks serving every environment.
    pub env: Option<String>,
}

/// Why the stacks cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthError {
    /// `--env` names no environment of the file.
    UnknownEnvironment {
        /// What was asked for.
        name: String,
        /// The environments the file defines, in order.
        known: Vec<String>,
    },
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynthError::UnknownEnvironment { name, known } => write!(
                f,
                "no environment `{name}` in the pipeline file; use one of: {}",
                known.join(", ")
            ),
        }
    }
}

impl std::error::Error for SynthError {}

/// The three stack kinds, in deployment order.
pub const STACKS: [&str; 3] = ["core", "pipeline", "monitoring"];

/// The file a stack is written to: `<stack name>.template.json`.
pub fn file_name(stack: &str) -> String {
    format!("{stack}.template.json")
}

/// The stack names for a pipeline: `<pipeline>-core`, `<pipeline>-pipeline`,
/// `<pipeline>-monitoring` (with `--env`, `<pipeline>-<env>-…`).
pub fn stack_names(pipeline: &Pipeline, options: &Options) -> [String; 3] {
    let n = Names::new(&pipeline.name, options.env.as_deref());
    STACKS.map(|s| n.stack(s))
}

/// Synthesizes the three stacks: stack name → template.
///
/// # Errors
/// [`SynthError::UnknownEnvironment`] when `options.env` is not an environment of the
/// pipeline.
pub fn synth(
    pipeline: &Pipeline,
    options: &Options,
) -> Result<BTreeMap<String, Value>, SynthError> {
    let scope: Vec<&ferry_config::Environment> = match &options.env {
        None => pipeline.environments.iter().collect(),
        Some(name) => match pipeline.environment(name) {
            Some(e) => vec![e],
            None => {
                return Err(SynthError::UnknownEnvironment {
                    name: name.clone(),
                    known: pipeline
                        .environments
                        .iter()
                        .map(|e| e.name.clone())
                        .collect(),
                });
            }
        },
    };
    let names = Names::new(&pipeline.name, options.env.as_deref());
    let mut out = BTreeMap::new();
    out.insert(names.stack("core"), core_stack::template(pipeline, &names));
    out.insert(
        names.stack("pipeline"),
        pipeline::template(pipeline, &names),
    );
    out.insert(
        names.stack("monitoring"),
        monitoring::template(pipeline, &names, &scope),
    );
    Ok(out)
}

/// `{"Ref": name}`.
pub(crate) fn r#ref(name: &str) -> Value {
    serde_json::json!({ "Ref": name })
}

/// `{"Fn::GetAtt": [resource, attribute]}`.
pub(crate) fn get_att(resource: &str, attribute: &str) -> Value {
    serde_json::json!({ "Fn::GetAtt": [resource, attribute] })
}

/// `{"Fn::Sub": text}`.
pub(crate) fn sub(text: &str) -> Value {
    serde_json::json!({ "Fn::Sub": text })
}

/// The core stack's export `name`, imported: `Fn::ImportValue` of
/// `${CoreStackName}-<name>`.
pub(crate) fn import(name: &str) -> Value {
    serde_json::json!({ "Fn::ImportValue": { "Fn::Sub": format!("${{CoreStackName}}-{name}") } })
}

/// An ARN in this account and region: `arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:<rest>`.
pub(crate) fn arn(service: &str, rest: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"
    ))
}

/// The `CoreStackName` parameter of the stacks that import from the core stack.
pub(crate) fn core_stack_parameter(names: &Names) -> Value {
    serde_json::json!({
        "Type": "String",
        "Default": names.stack("core"),
        "Description": "The core stack (KMS key, artifacts bucket, deployments table, log groups) whose exports this stack imports."
    })
}

/// A role's trust policy for one AWS service principal.
pub(crate) fn assume_role(service: &str) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The change-set calls of the CloudFormation deployer (`deploy: cloudformation:`), on
/// its stack.
pub const CLOUDFORMATION_DEPLOY_ACTIONS: &[&str] = &[
    "cloudformation:CreateChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStacks",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:GetTemplate",
];

/// Least-privilege statements for the deploy targets of `envs` (the roles that deploy
/// and roll back: CodeBuild's and the rollback Lambda's). An `s3:` environment: objects
/// read and written under its prefix, the bucket listed under it only (a missing
/// `current` must read as 404, not 403). A `cloudformation:` environment: the change-set
/// calls on its stack, and the same on the template bucket under `ENV/stacks/`. Other
/// kinds deploy on a machine of their own and get nothing here.
pub(crate) fn deploy_target_statements<'a>(
    envs: impl IntoIterator<Item = &'a ferry_config::Environment>,
) -> Vec<Value> {
    let mut out = Vec::new();
    let objects = |bucket: &str, prefix: &str, out: &mut Vec<Value>| {
        out.push(allow(
            &["s3:GetObject", "s3:PutObject"],
            vec![sub(&format!(
                "arn:${{AWS::Partition}}:s3:::{bucket}/{prefix}/*"
            ))],
        ));
        out.push(serde_json::json!({
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [sub(&format!("arn:${{AWS::Partition}}:s3:::{bucket}"))],
            "Condition": { "StringLike": { "s3:prefix": [format!("{prefix}/*")] } }
        }));
    };
    for env in envs {
        match &env.deploy {
            ferry_config::Deploy::S3(s) => objects(&s.bucket, &s.prefix_for(&env.name), &mut out),
            ferry_config::Deploy::CloudFormation(c) => {
                out.push(allow(
                    CLOUDFORMATION_DEPLOY_ACTIONS,
                    vec![arn("cloudformation", &format!("stack/{}/*", c.stack))],
                ));
                objects(&c.bucket, &format!("{}/stacks", env.name), &mut out);
            }
            ferry_config::Deploy::Release(_) | ferry_config::Deploy::Command(_) => {}
        }
    }
    out
}

/// One `Allow` statement.
pub(crate) fn allow(actions: &[&str], resources: Vec<Value>) -> Value {
    serde_json::json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
}
