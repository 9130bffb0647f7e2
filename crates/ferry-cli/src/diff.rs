//! `ferry diff [FROM] [TO]`: the infrastructure files changed between two commits, the
//! semantic difference of their synthesized CloudFormation templates, and the verdict
//! (no change / meaningful / rollback-unsafe). The comparison itself is pure
//! (`ferry_core::infra`); this module lists the changed files (git trees, never the
//! working tree), runs `infrastructure.synth` in a checkout of each commit and reads the
//! templates.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ferry_api::exit;
use ferry_config::{Infrastructure, Pipeline};
use ferry_core::infra::{
    Assessment, ChangeKind, ChangedFile, TemplateDiff, Verdict, assess, diff_templates, matching,
};
use ferry_engine::ports::{ReportFiles, Source, Store};
use ferry_local::GitSource;
use ferry_local::report_files::LocalReportFiles;
use serde::Serialize;
use serde_json::Value;

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

/// Compares two commits: changed files, then (when infrastructure files changed) the
/// templates of both.
pub fn compare(
    git: &GitSource,
    infra: &Infrastructure,
    from: &str,
    to: &str,
) -> CliResult<DiffReport> {
    let a = git.resolve(from)?.sha;
    let b = git.resolve(to)?.sha;
    let changed = git.changed_files(&a, &b)?;
    let infra_files: Vec<ChangedFile> = matching(&changed, &infra.paths)
        .into_iter()
        .cloned()
        .collect();
    let migrations: Vec<ChangedFile> = matching(&changed, &infra.migrations)
        .into_iter()
        .cloned()
        .collect();
    let compared = !infra_files.is_empty() && !infra.templates.is_empty();
    let diff = if compared {
        let old = templates(git, infra, &a)?;
        let new = templates(git, infra, &b)?;
        diff_templates(&old, &new)
    } else {
        TemplateDiff::default()
    };
    let migration_refs: Vec<&ChangedFile> = migrations.iter().collect();
    let assessment = assess(&diff, &migration_refs);
    Ok(DiffReport {
        from: a,
        to: b,
        changed_files: changed.len(),
        infrastructure_files: infra_files,
        migration_files: migrations,
        compared,
        diff,
        assessment,
    })
}

/// The templates of commit `sha`: synthesized in a fresh checkout when `synth` is set,
/// else read from the commit itself.
fn templates(
    git: &GitSource,
    infra: &Infrastructure,
    sha: &str,
) -> CliResult<BTreeMap<String, Value>> {
    let short = &sha[..sha.len().min(12)];
    let files: Vec<(String, Vec<u8>)> = match &infra.synth {
        None => git.files_matching(sha, &infra.templates)?,
        Some(synth) => {
            let dir = tempfile::tempdir().map_err(|e| {
                CliError::environment(format!(
                    "cannot make a temporary folder for the checkout: {e}"
                ))
            })?;
            let root = dir.path().join("checkout");
            git.checkout(sha, &root)?;
            run_synth(synth, &root, sha)?;
            let mut out = Vec::new();
            for glob in &infra.templates {
                for (path, bytes) in LocalReportFiles.read(&root, glob)? {
                    let rel = path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, bytes));
                }
            }
            out
        }
    };
    let mut map = BTreeMap::new();
    for (path, bytes) in files {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::environment(format!(
                "template `{path}` of commit {short} is not valid JSON ({e}); `infrastructure.templates` must name synthesized CloudFormation JSON templates"
            ))
        })?;
        map.insert(path, value);
    }
    Ok(map)
}

/// Runs `synth` at the root of the checkout, with `FERRY_COMMIT` set to the commit, its
/// stdin closed.
fn run_synth(synth: &str, root: &Path, sha: &str) -> CliResult<()> {
    let short = &sha[..sha.len().min(12)];
    let out = Command::new("sh")
        .arg("-c")
        .arg(synth)
        .current_dir(root)
        .env("FERRY_COMMIT", sha)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            CliError::environment(format!(
                "cannot run `infrastructure.synth` (`{synth}`): {e}"
            ))
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(CliError::environment(format!(
        "`infrastructure.synth` (`{synth}`) failed for commit {short} ({}):\n{}",
        out.status,
        tail.join("\n")
    )))
}

fn print(r: &DiffReport, infra: &Infrastructure) {
    line(format!(
        "ferry diff {} → {}",
        &r.from[..12.min(r.from.len())],
        &r.to[..12.min(r.to.len())]
    ));
    if r.infrastructure_files.is_empty() {
        line(format!(
            "No infrastructure files changed ({} file{} changed, none matching `infrastructure.paths`).",
            r.changed_files,
            if r.changed_files == 1 { "" } else { "s" }
        ));
    } else {
        line(format!(
            "Infrastructure files changed ({} of {}):",
            r.infrastructure_files.len(),
            r.changed_files
        ));
        for f in &r.infrastructure_files {
            match &f.old_path {
                Some(old) => line(format!("  {} {old} -> {}", f.status.letter(), f.path)),
                None => line(format!("  {} {}", f.status.letter(), f.path)),
            }
        }
    }
    for f in &r.migration_files {
        line(format!(
            "Migration changed: {} {}",
            f.status.letter(),
            f.path
        ));
    }
    if r.compared {
        match &infra.synth {
            Some(s) => line(format!("Templates (synthesized with `{s}`):")),
            None => line("Templates (as committed):"),
        }
        if r.diff.is_empty() {
            line("  identical after ignoring metadata, asset hashes and key order");
        }
        for c in &r.diff.resources {
            let sign = sign(c.kind);
            let why = c
                .replaced_because
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            let stateful = if c.stateful { ", stateful" } else { "" };
            line(format!(
                "  {sign} resource {} ({}{stateful}) in {}: {}{why}",
                c.logical_id,
                c.resource_type,
                c.template,
                c.kind.as_str()
            ));
            for p in &c.paths {
                line(format!("      {p}"));
            }
        }
        for (what, list) in [
            ("parameter", &r.diff.parameters),
            ("output", &r.diff.outputs),
        ] {
            for c in list {
                line(format!(
                    "  {} {what} {} in {}: {}",
                    sign(c.kind),
                    c.name,
                    c.template,
                    c.kind.as_str()
                ));
                for p in &c.paths {
                    line(format!("      {p}"));
                }
            }
        }
    }
    let verdict = match r.assessment.verdict {
        Verdict::NoChange => "no change (the infrastructure deploy is skipped)".to_string(),
        Verdict::Meaningful => "meaningful change (the infrastructure deploy runs)".to_string(),
        Verdict::RollbackUnsafe => format!(
            "rollback-unsafe (not rolled back automatically): {}",
            r.assessment.unsafe_reasons.join("; ")
        ),
    };
    line(format!("Verdict: {verdict}"));
}

fn sign(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Added => '+',
        ChangeKind::Removed => '-',
        ChangeKind::Replaced => '!',
        ChangeKind::Modified => '~',
    }
}
