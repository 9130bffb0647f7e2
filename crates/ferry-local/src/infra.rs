//! The infrastructure comparison of two commits (issue 5, seed §3.2), shared by `ferry
//! diff` and the engine's infrastructure steps ([`LocalInfraInspector`]): the files
//! changed between the commits (git trees, never a working tree) matched against
//! `infrastructure.paths`; when some match, `infrastructure.synth` run in a fresh
//! checkout of each commit (or the committed templates read), the templates compared
//! semantically and judged (`ferry_core::infra`: no change / meaningful /
//! rollback-unsafe). A synth that fails or a template that is not JSON is an error: the
//! callers fail closed.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_config::Infrastructure;
use ferry_core::gates::ExitObservation;
use ferry_core::infra::{
    Assessment, ChangeKind, ChangedFile, TemplateDiff, Verdict, assess, diff_templates, matching,
};
use ferry_engine::ports::{
    InfraInspector, InfraReport, PortError, PortResult, ReportFiles, Source,
};
use serde_json::Value;

use crate::GitSource;
use crate::report_files::LocalReportFiles;

/// What comparing two commits found.
#[derive(Debug, Clone, PartialEq)]
pub struct InfraComparison {
    /// The commit compared from (full SHA).
    pub from: String,
    /// The commit compared to (full SHA).
    pub to: String,
    /// How many files changed between them.
    pub changed_files: usize,
    /// The changed files matching `infrastructure.paths`.
    pub infrastructure_files: Vec<ChangedFile>,
    /// The changed files matching `infrastructure.migrations`.
    pub migration_files: Vec<ChangedFile>,
    /// Whether the templates were synthesized and compared (only when infrastructure
    /// files changed).
    pub compared: bool,
    pub diff: TemplateDiff,
    pub assessment: Assessment,
}

/// Compares two commits: changed files, then (when infrastructure files changed) the
/// templates of both.
pub fn compare(
    git: &GitSource,
    infra: &Infrastructure,
    from: &str,
    to: &str,
) -> PortResult<InfraComparison> {
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
        // No template at all in the commit compared to is a wrong glob or a synth that
        // wrote elsewhere, not "no change": judging it so would skip the deploy silently.
        if new.is_empty() {
            return Err(PortError::permanent(format!(
                "`infrastructure.templates` ({}) match no file in commit {}{}, so ferry cannot tell whether the infrastructure changed; correct the globs{}",
                infra.templates.join(", "),
                &b[..b.len().min(12)],
                if infra.synth.is_some() {
                    " after `infrastructure.synth`"
                } else {
                    ""
                },
                if infra.synth.is_some() {
                    " or the synth command (it must write the templates there)"
                } else {
                    " (they name committed template files)"
                },
            )));
        }
        diff_templates(&old, &new)
    } else {
        TemplateDiff::default()
    };
    let migration_refs: Vec<&ChangedFile> = migrations.iter().collect();
    let assessment = assess(&diff, &migration_refs);
    Ok(InfraComparison {
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

/// The largest template compared (the same bound as `ferry scan`'s guard); JSON nesting
/// is bounded by serde_json's recursion limit (128), which fails with an error.
const MAX_TEMPLATE_BYTES: usize = 16 * 1024 * 1024;

/// The templates of commit `sha`: synthesized in a fresh checkout when `synth` is set,
/// else read from the commit itself.
fn templates(
    git: &GitSource,
    infra: &Infrastructure,
    sha: &str,
) -> PortResult<BTreeMap<String, Value>> {
    let short = &sha[..sha.len().min(12)];
    let files: Vec<(String, Vec<u8>)> = match &infra.synth {
        None => git.files_matching(sha, &infra.templates)?,
        Some(synth) => {
            let dir = tempfile::tempdir().map_err(|e| {
                PortError::permanent(format!(
                    "cannot make a temporary folder for the checkout: {e}"
                ))
            })?;
            let root = dir.path().join("checkout");
            git.checkout(sha, &root)?;
            run_synth(infra, synth, &root, sha)?;
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
        if bytes.len() > MAX_TEMPLATE_BYTES {
            return Err(PortError::permanent(format!(
                "template `{path}` of commit {short} is {} MiB, over the {} MiB ferry compares; CloudFormation itself takes at most 1 MB per template, so `infrastructure.templates` probably names something else",
                bytes.len() / (1024 * 1024),
                MAX_TEMPLATE_BYTES / (1024 * 1024)
            )));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            PortError::permanent(format!(
                "template `{path}` of commit {short} is not valid JSON ({e}); `infrastructure.templates` must name synthesized CloudFormation JSON templates"
            ))
        })?;
        map.insert(path, value);
    }
    Ok(map)
}

/// Runs `synth` at the root of the checkout, with `FERRY_COMMIT` set to the commit, its
/// stdin closed, in its own process group: past `infrastructure.synth_timeout` (default
/// [`ferry_config::DEFAULT_SYNTH_TIMEOUT`]) the group is stopped and the comparison fails
/// closed. At most 1 MiB of each output stream is kept.
fn run_synth(infra: &Infrastructure, synth: &str, root: &Path, sha: &str) -> PortResult<()> {
    let short = &sha[..sha.len().min(12)];
    let timeout = infra
        .synth_timeout
        .unwrap_or(ferry_config::DEFAULT_SYNTH_TIMEOUT);
    let env = BTreeMap::from([("FERRY_COMMIT".to_string(), sha.to_string())]);
    let out = crate::process::capture(synth, root, &env, timeout);
    let status = match out.how {
        ExitObservation::Code(0) => return Ok(()),
        ExitObservation::NotStarted(why) => {
            return Err(PortError::permanent(format!(
                "cannot run `infrastructure.synth` (`{synth}`): {why}"
            )));
        }
        ExitObservation::TimedOut { .. } => {
            return Err(PortError::permanent(format!(
                "`infrastructure.synth` (`{synth}`) did not finish within {} for commit {short}, so it was stopped; make it faster or raise `infrastructure.synth_timeout`",
                ferry_config::format_duration(timeout)
            )));
        }
        ExitObservation::Code(c) => format!("exit status {c}"),
        ExitObservation::Signal(s) => format!("killed by signal {s}"),
    };
    let tail: Vec<&str> = out.stderr.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(PortError::permanent(format!(
        "`infrastructure.synth` (`{synth}`) failed for commit {short} ({status}):\n{}",
        tail.join("\n")
    )))
}

/// The comparison for people: changed files, template changes, verdict (what `ferry
/// diff` prints and the infrastructure step logs).
pub fn describe(r: &InfraComparison, infra: &Infrastructure) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "ferry diff {} → {}",
        &r.from[..12.min(r.from.len())],
        &r.to[..12.min(r.to.len())]
    ));
    if r.infrastructure_files.is_empty() {
        out.push(format!(
            "No infrastructure files changed ({} file{} changed, none matching `infrastructure.paths`).",
            r.changed_files,
            if r.changed_files == 1 { "" } else { "s" }
        ));
    } else {
        out.push(format!(
            "Infrastructure files changed ({} of {}):",
            r.infrastructure_files.len(),
            r.changed_files
        ));
        for f in &r.infrastructure_files {
            match &f.old_path {
                Some(old) => out.push(format!("  {} {old} -> {}", f.status.letter(), f.path)),
                None => out.push(format!("  {} {}", f.status.letter(), f.path)),
            }
        }
    }
    for f in &r.migration_files {
        out.push(format!(
            "Migration changed: {} {}",
            f.status.letter(),
            f.path
        ));
    }
    if r.compared {
        match &infra.synth {
            Some(s) => out.push(format!("Templates (synthesized with `{s}`):")),
            None => out.push("Templates (as committed):".to_string()),
        }
        if r.diff.is_empty() {
            out.push("  identical after ignoring metadata, asset hashes and key order".into());
        }
        for c in &r.diff.resources {
            let sign = sign(c.kind);
            let why = c
                .replaced_because
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            let stateful = if c.stateful { ", stateful" } else { "" };
            out.push(format!(
                "  {sign} resource {} ({}{stateful}) in {}: {}{why}",
                c.logical_id,
                c.resource_type,
                c.template,
                c.kind.as_str()
            ));
            for p in &c.paths {
                out.push(format!("      {p}"));
            }
        }
        for (what, list) in [
            ("parameter", &r.diff.parameters),
            ("output", &r.diff.outputs),
        ] {
            for c in list {
                out.push(format!(
                    "  {} {what} {} in {}: {}",
                    sign(c.kind),
                    c.name,
                    c.template,
                    c.kind.as_str()
                ));
                for p in &c.paths {
                    out.push(format!("      {p}"));
                }
            }
        }
        for c in &r.diff.sections {
            out.push(format!(
                "  {} {} in {}: {}",
                sign(c.kind),
                c.name,
                c.template,
                c.kind.as_str()
            ));
            for p in &c.paths {
                out.push(format!("      {p}"));
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
    out.push(format!("Verdict: {verdict}"));
    out
}

fn sign(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Added => '+',
        ChangeKind::Removed => '-',
        ChangeKind::Replaced => '!',
        ChangeKind::Modified => '~',
    }
}

/// The local [`InfraInspector`]: [`compare`] on the project's git repository. Each commit
/// is synthesized in a fresh checkout of its own (as `ferry diff` does), so the run's
/// checkout is left as the build made it.
pub struct LocalInfraInspector {
    /// The repository (the project folder or one above it).
    pub repository: std::path::PathBuf,
}

impl InfraInspector for LocalInfraInspector {
    fn assess(
        &self,
        _checkout: &Path,
        from: &str,
        to: &str,
        infra: &Infrastructure,
    ) -> PortResult<InfraReport> {
        let git = GitSource::open(&self.repository)?;
        let r = compare(&git, infra, from, to)?;
        Ok(InfraReport {
            lines: describe(&r, infra),
            assessment: r.assessment,
        })
    }
}
