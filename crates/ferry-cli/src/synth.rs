//! `ferry synth aws --out DIR [--env NAME]`: writes the three CloudFormation stacks of
//! the AWS runtime (`ferry-synth`) as `DIR/<stack>.template.json`.

use crate::context::Project;
use crate::error::{CliError, CliResult};
use crate::output;
use ferry_api::exit;
use std::path::Path;

/// What `ferry synth` synthesizes for.
#[derive(clap::Subcommand, Debug)]
pub enum Target {
    /// CloudFormation (JSON) for running the pipeline on AWS: the core stack (KMS key,
    /// artifacts bucket, deployments table, log groups), the pipeline stack (CodePipeline
    /// V2, CodeBuild projects calling `ferry step`, IAM roles) and the monitoring stack
    /// (SNS topics, alarm rules, rollback Lambda, alarms, dashboard). Deploy them in
    /// that order.
    Aws {
        /// The folder to write `<pipeline>-core.template.json`, `-pipeline…` and
        /// `-monitoring…` into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Scope the stacks to one environment (the seed's `--context environment=NAME`):
        /// physical names carry it and only its alarms are watched.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
}

/// Runs `ferry synth`.
pub fn command(project: &Project, target: &Target, as_json: bool) -> CliResult<i32> {
    let Target::Aws { out, env } = target;
    let pipeline = project.pipeline()?;
    let options = ferry_synth::Options { env: env.clone() };
    let stacks =
        ferry_synth::synth(&pipeline, &options).map_err(|e| CliError::not_found(e.to_string()))?;
    prepare(out)?;
    let mut written = Vec::new();
    for (name, template) in &stacks {
        let path = out.join(ferry_synth::file_name(name));
        let text = serde_json::to_string_pretty(template)
            .map_err(|e| CliError::new(exit::INTERNAL, format!("cannot serialize {name}: {e}")))?;
        std::fs::write(&path, format!("{text}\n")).map_err(|e| {
            CliError::environment(format!(
                "cannot write `{}`: {e}; pass `--out` a folder you can write to",
                path.display()
            ))
        })?;
        written.push((name.clone(), path.display().to_string()));
    }
    // Deployment order, not alphabetical.
    let order = ferry_synth::stack_names(&pipeline, &options);
    written.sort_by_key(|(n, _)| order.iter().position(|o| o == n));
    if as_json {
        let stacks: Vec<serde_json::Value> = written
            .iter()
            .map(|(n, p)| serde_json::json!({ "stack": n, "file": p }))
            .collect();
        output::json(&serde_json::json!({ "stacks": stacks }));
    } else {
        for (n, p) in &written {
            output::line(format!("{n:<32} {p}"));
        }
        output::line(
            "deploy them in this order (core, pipeline, monitoring); see README \"AWS runtime\"",
        );
    }
    Ok(exit::OK)
}

/// Makes sure `out` is a folder we can write into.
fn prepare(out: &Path) -> CliResult<()> {
    if out.as_os_str().is_empty() {
        return Err(CliError::new(
            exit::USAGE,
            "--out is empty; pass the folder to write the templates into, like `--out cdk.out`",
        ));
    }
    if out.exists() && !out.is_dir() {
        return Err(CliError::new(
            exit::USAGE,
            format!(
                "--out `{}` is a file, not a folder; pass a folder (it is created when missing)",
                out.display()
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| {
        CliError::environment(format!(
            "cannot create the folder `{}` for --out: {e}; pass a folder you can write to",
            out.display()
        ))
    })
}
