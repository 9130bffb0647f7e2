//! `ferry diff [FROM] [TO]`: the infrastructure files changed between two commits, the
//! semantic difference of their synthesized CloudFormation templates, and the verdict
//! (no change / meaningful / rollback-unsafe). The judgement is pure
//! (`ferry_core::infra`); the comparison — changed files from git trees, never the
//! working tree, `infrastructure.synth` in a checkout of each commit, the templates — is
//! `ferry_local::infra`, shared with the engine's infrastructure steps.

use ferry_api::exit;
use ferry_config::{Infrastructure, Pipeline};
use ferry_core::infra::{Assessment, ChangedFile, TemplateDiff};
use ferry_engine::ports::Ledger;
use ferry_local::GitSource;
use serde::Serialize;

use crate::context::Project;
use crate::error::{CliError, CliResult};
use crate::output::{json, line};

/// What `ferry diff --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    /// The commit compared from (full SHA).
    pub from: String,
    /// The commit compared to (full SHA).
    pub to: String,
    /// Every file changed between them.
    pub changed_files: usize,
    /// The changed files matching `infrastructure.paths`.
    pub infrastructure_files: Vec<ChangedFile>,
    /// The changed files matching `infrastructure.migrations`.
    pub migration_files: Vec<ChangedFile>,
    /// Whether the templates were synthesized and compared (only when infrastructure
    /// files changed).
    pub compared: bool,
    pub diff: TemplateDiff,
    #[serde(flatten)]
    pub assessment: Assessment,
}

/// `ferry diff`.
pub fn run(
    project: &Project,
    from: Option<&str>,
    to: Option<&str>,
    env: Option<&str>,
    as_json: bool,
) -> CliResult<i32> {
    let (pipeline, _) = project.load()?;
    let Some(infra) = pipeline.infrastructure.as_ref() else {
        if as_json {
            json(&serde_json::json!({
                "verdict": "no-change",
                "compared": false,
                "reason": "no `infrastructure` section in ferry.yml",
            }));
        } else {
            line(format!(
                "nothing to compare: {} has no `infrastructure` section (add one with `paths:` to detect infrastructure changes)",
                project.shown_file()
            ));
        }
        return Ok(exit::OK);
    };
    let git = GitSource::open(&project.root)?;
    let from = match from {
        Some(f) => f.to_string(),
        None => deployed_version(project, &pipeline, env)?,
    };
    let to = to.unwrap_or("HEAD");
    let report = compare(&git, infra, &from, to)?;
    if as_json {
        json(&report);
    } else {
        print(&report, infra);
    }
    Ok(exit::OK)
}

/// The version the environment runs now (`--env`, default the last environment).
fn deployed_version(
    project: &Project,
    pipeline: &Pipeline,
    env: Option<&str>,
) -> CliResult<String> {
    let name = match env {
        Some(e) => {
            if pipeline.environment(e).is_none() {
                let names: Vec<&str> = pipeline
                    .environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect();
                return Err(CliError::not_found(format!(
                    "no environment `{e}` in {}; use one of: {}",
                    project.shown_file(),
                    names.join(", ")
                )));
            }
            e.to_string()
        }
        None => pipeline
            .environments
            .last()
            .map(|e| e.name.clone())
            .ok_or_else(|| CliError::config("ferry.yml has no environments"))?,
    };
    let store = project.open_store()?;
    match store.current_deployment(&name)? {
        Some(d) => Ok(d.version),
        None => Err(CliError::not_found(format!(
            "nothing is deployed to `{name}` yet, so there is no version to compare from; name the commits: `ferry diff FROM [TO]`"
        ))),
    }
}

/// Compares two commits (the comparison the engine's infrastructure steps make too,
/// `ferry_local::infra::compare`).
pub fn compare(
    git: &GitSource,
    infra: &Infrastructure,
    from: &str,
    to: &str,
) -> CliResult<DiffReport> {
    let c = ferry_local::infra::compare(git, infra, from, to)?;
    Ok(DiffReport {
        from: c.from,
        to: c.to,
        changed_files: c.changed_files,
        infrastructure_files: c.infrastructure_files,
        migration_files: c.migration_files,
        compared: c.compared,
        diff: c.diff,
        assessment: c.assessment,
    })
}

fn print(r: &DiffReport, infra: &Infrastructure) {
    let c = ferry_local::infra::InfraComparison {
        from: r.from.clone(),
        to: r.to.clone(),
        changed_files: r.changed_files,
        infrastructure_files: r.infrastructure_files.clone(),
        migration_files: r.migration_files.clone(),
        compared: r.compared,
        diff: r.diff.clone(),
        assessment: r.assessment.clone(),
    };
    for l in ferry_local::infra::describe(&c, infra) {
        line(l);
    }
}
