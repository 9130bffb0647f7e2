//! `ferry step STAGE/STEP`: one step of `ferry.yml`, run where a CI system runs it — in
//! the CodeBuild projects `ferry synth aws` writes, one process per step — with the same
//! engine, gates, deployers and rollbacks as `ferry run`.
//!
//! Each stage is a run of its own whose plan is that one stage (an environment's
//! approval is CodePipeline's manual approval action, so it is left out). The run's
//! record is a SQLite file in the workspace (`.ferry/step/<stage>.db`): CodePipeline
//! carries the build stage's workspace, this folder and the packed artifact included,
//! to every environment stage. Deployments, leases and rollbacks go to the shared
//! ledger (`ferry_engine::split`): DynamoDB when `FERRY_DEPLOYMENTS_TABLE` names the
//! table (ferry built with `--features aws`), else the project's own store.
//!
//! Every stage of one pipeline execution carries one run id: `FERRY_RUN_ID`, else
//! CodeBuild's `CODEBUILD_BUILD_NUMBER` of the build stage (it only grows), else the
//! build's start in seconds since the epoch. Environment stages take it from the build
//! stage's record.

use crate::commands::Local;
use crate::context::{Project, SystemClock};
use crate::error::{CliError, CliResult};
use crate::progress::Progress;
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::plan::{STAGE_BUILD, StageKind, StagePlan, StepKind};
use ferry_core::run::{Next, Run, StepRef};
use ferry_core::{
    Artifact, Change, Commit, DeploymentStatus, RunId, RunPlan, StepStatus, short_sha,
};
use ferry_engine::Layout;
use ferry_engine::ports::{Clock, Ledger, Observer, PortError, PortResult, Source, Store};
use ferry_engine::split::SplitStore;
use ferry_store::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a stage's record, logs and the artifact live in the workspace.
fn step_dir(project: &Project) -> PathBuf {
    match std::env::var_os("FERRY_STEP_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                project.root.join(d)
            }
        }
        _ => project.root.join(".ferry").join("step"),
    }
}

/// The plan of one stage run: the stage as `ferry run` plans it, an environment's
/// approval left out (CodePipeline asks for it before the stage starts).
fn stage_plan(pipeline: &Pipeline, stage: &str) -> Option<RunPlan> {
    let mut s: StagePlan = RunPlan::new(pipeline)
        .stages
        .into_iter()
        .find(|s| s.name == stage)?;
    s.steps
        .retain(|t| !matches!(t.kind, StepKind::Approval { .. }));
    Some(RunPlan {
        stages: vec![s],
        hotfix: false,
    })
}

/// The steps of `stage` that `name` means.
fn targets(plan: &StagePlan, name: &str) -> Vec<usize> {
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, t)| match (name, &t.kind) {
            ("@gates", StepKind::CoverageGate { .. } | StepKind::SecurityGate) => true,
            ("@artifact", StepKind::Package { .. }) => true,
            ("@infrastructure", StepKind::Infrastructure { .. }) => true,
            ("@deploy", StepKind::Deploy) => true,
            ("@monitor", StepKind::Monitor { .. }) => true,
            (n, StepKind::Command { .. }) => t.name == n,
            _ => false,
        })
        .map(|(i, _)| i)
        .collect()
}

/// What `ferry step STAGE/STEP` may name in this stage, for error messages.
fn valid_steps(plan: &StagePlan) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for t in &plan.steps {
        let n = match &t.kind {
            StepKind::Command { .. } => t.name.clone(),
            StepKind::CoverageGate { .. } | StepKind::SecurityGate => "@gates".into(),
            StepKind::Package { .. } => "@artifact".into(),
            StepKind::Infrastructure { .. } => "@infrastructure".into(),
            StepKind::Deploy => "@deploy".into(),
            StepKind::Monitor { .. } => "@monitor".into(),
            StepKind::Approval { .. } => continue,
        };
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if plan.kind == StageKind::Build && !names.iter().any(|n| n == "@gates") {
        names.push("@gates".into());
    }
    names
}

/// The source of a step: the workspace the CI system checked out. Its "checkout" is
/// a link to that folder, so what one step writes (reports, build outputs) the next
/// one reads, as in one CodeBuild container.
struct Workspace {
    root: PathBuf,
    commit: Commit,
    origin: Option<String>,
}

impl Source for Workspace {
    fn resolve(&self, rev: &str) -> PortResult<Commit> {
        if rev == "HEAD" || rev == self.commit.sha {
            Ok(self.commit.clone())
        } else {
            Err(PortError::not_found(format!(
                "the workspace holds commit {}, not `{rev}`",
                self.commit.sha
            )))
        }
    }

    fn checkout(&self, sha: &str, dest: &Path) -> PortResult<()> {
        if sha != self.commit.sha {
            return Err(PortError::permanent(format!(
                "the workspace holds commit {}, not {sha}",
                self.commit.sha
            )));
        }
        let io = |e: std::io::Error| {
            PortError::permanent(format!(
                "cannot link `{}` to the workspace: {e}",
                dest.display()
            ))
        };
        if std::fs::read_link(dest).is_ok_and(|t| t == self.root) {
            return Ok(());
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // A link left by another container (the workspace came through CodePipeline).
        let _ = std::fs::remove_file(dest);
        std::os::unix::fs::symlink(&self.root, dest).map_err(io)
    }

    fn origin_url(&self) -> Option<String> {
        self.origin.clone()
    }
}

/// The commit the workspace holds: `FERRY_COMMIT_SHA` (CodePipeline's source
/// variable), checked against the repository's `HEAD` when there is one.
fn workspace_commit(root: &Path) -> CliResult<(Commit, Option<String>)> {
    let git = ferry_local::GitSource::open(root).ok();
    let head = git.as_ref().and_then(|g| g.resolve("HEAD").ok());
    let given = std::env::var("FERRY_COMMIT_SHA")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let origin = git.as_ref().and_then(|g| g.origin_url());
    let commit = match (given, head) {
        (Some(sha), Some(h)) if !h.sha.starts_with(&sha) && !sha.starts_with(&h.sha) => {
            return Err(CliError::conflict(format!(
                "FERRY_COMMIT_SHA is {sha} but the workspace's repository is at {}; check out that commit or fix FERRY_COMMIT_SHA",
                h.sha
            )));
        }
        (_, Some(h)) => h,
        (Some(sha), None) => {
            if sha.len() < 7 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CliError::config(format!(
                    "FERRY_COMMIT_SHA `{sha}` is not a commit id (hex digits); CodePipeline gives it as #{{SourceVariables.CommitId}}"
                )));
            }
            Commit {
                sha: sha.to_ascii_lowercase(),
                message: std::env::var("FERRY_COMMIT_MESSAGE").unwrap_or_default(),
                author: std::env::var("FERRY_COMMIT_AUTHOR").unwrap_or_default(),
            }
        }
        (None, None) => {
            return Err(CliError::environment(format!(
                "`{}` is not a git repository and FERRY_COMMIT_SHA is not set: ferry step needs to know which commit the workspace holds",
                root.display()
            )));
        }
    };
    Ok((commit, origin))
}

/// The run id of a new build stage run.
fn new_run_id(clock: &dyn Clock) -> CliResult<RunId> {
    for var in ["FERRY_RUN_ID", "CODEBUILD_BUILD_NUMBER"] {
        if let Ok(v) = std::env::var(var) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            return match v.parse::<i64>() {
                Ok(n) if n > 0 => Ok(RunId(n)),
                _ => Err(CliError::config(format!(
                    "{var} is `{v}`; it must be a positive whole number (the pipeline execution's run id)"
                ))),
            };
        }
    }
    Ok(RunId((clock.now().millis() / 1000).max(1)))
}

/// The ledger deployments go to (also where `ferry resolve`, `ferry freeze` and
/// `ferry unfreeze` act): the DynamoDB table `FERRY_DEPLOYMENTS_TABLE` names, else the
/// project's own store.
pub(crate) enum Shared {
    Local(SqliteStore),
    #[cfg(feature = "aws")]
    Dynamo(Box<ferry_aws::ledger::DynamoLedger>),
}

impl Shared {
    pub(crate) fn open(project: &Project) -> CliResult<Shared> {
        let table = std::env::var("FERRY_DEPLOYMENTS_TABLE")
            .ok()
            .filter(|t| !t.trim().is_empty());
        match table {
            None => Ok(Shared::Local(project.open_store()?)),
            #[cfg(feature = "aws")]
            Some(t) => {
                let aws = ferry_aws::Aws::connect(&ferry_aws::Settings::default())?;
                Ok(Shared::Dynamo(Box::new(
                    ferry_aws::ledger::DynamoLedger::new(&aws, t.trim()),
                )))
            }
            #[cfg(not(feature = "aws"))]
            Some(t) => Err(CliError::environment(format!(
                "FERRY_DEPLOYMENTS_TABLE is `{t}`: ferry would record into that DynamoDB table, but this ferry was built without AWS support; build it with `cargo build --release -p ferry-cli --features aws`, or unset FERRY_DEPLOYMENTS_TABLE to record into the project's own store"
            ))),
        }
    }

    pub(crate) fn ledger(&self) -> &dyn Ledger {
        match self {
            Shared::Local(s) => s,
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => &**d,
        }
    }

    /// The stack's SNS topics as notification channels (`FERRY_DEPLOYMENTS_TOPIC`:
    /// the seed's notification events; `FERRY_ROLLBACKS_TOPIC`: rollbacks and
    /// incidents, freezes), when ferry records into DynamoDB.
    pub(crate) fn topics(
        &self,
    ) -> CliResult<Vec<std::sync::Arc<dyn ferry_engine::ports::Notifier>>> {
        match self {
            Shared::Local(_) => Ok(Vec::new()),
            #[cfg(feature = "aws")]
            Shared::Dynamo(_) => {
                let mut out: Vec<std::sync::Arc<dyn ferry_engine::ports::Notifier>> = Vec::new();
                let topic = |var: &str| std::env::var(var).ok().filter(|t| !t.trim().is_empty());
                let wanted = [
                    (
                        "FERRY_DEPLOYMENTS_TOPIC",
                        "sns-deployments",
                        ferry_config::DEFAULT_NOTIFY_EVENTS.to_vec(),
                    ),
                    (
                        "FERRY_ROLLBACKS_TOPIC",
                        "sns-rollbacks",
                        vec![
                            "rollback_initiated",
                            "rollback_succeeded",
                            "rollback_failed",
                            "incident_opened",
                            "incident_resolved",
                            "freeze_set",
                            "freeze_lifted",
                        ],
                    ),
                ];
                let mut aws = None;
                for (var, id, kinds) in wanted {
                    let Some(arn) = topic(var) else { continue };
                    if aws.is_none() {
                        aws = Some(ferry_aws::Aws::connect(&ferry_aws::Settings::default())?);
                    }
                    if let Some(a) = &aws {
                        out.push(std::sync::Arc::new(ferry_aws::sns::SnsNotifier::new(
                            a,
                            id,
                            arn.trim(),
                            kinds.iter().map(|k| (*k).to_string()).collect(),
                        )));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Records the pipeline file where a rollback (the Lambda's too) finds it.
    fn put_config(&self, digest: &str, text: &str) -> PortResult<()> {
        match self {
            Shared::Local(s) => s.put_config(digest, text),
            #[cfg(feature = "aws")]
            Shared::Dynamo(d) => d.put_config(digest, text),
        }
    }
}

/// Parks the run once every target step has ended: the engine stops at the next step
/// boundary and leaves the rest of the stage to the next `ferry step`.
struct StopAfter<'a> {
    inner: &'a dyn Observer,
    targets: Vec<StepRef>,
    park: &'static AtomicBool,
    /// Writes the custom metrics' log lines (see [`metric_lines`]), when set.
    metrics: bool,
    /// The engine's `run_held` event when it found the environment's gate closed (a
    /// freeze, from the shared ledger, or a closed deployment window): the run is
    /// parked at once rather than waiting inside CodeBuild, and the step fails
    /// ([`held_refusal`]).
    held: std::sync::Mutex<Option<ferry_core::Event>>,
}

/// Whether to write `{"metric": NAME, "value": N}` lines: in CodeBuild (its log group's
/// metric filters, made by the monitoring stack of `ferry synth aws`, turn them into the
/// seed's custom metrics, §9.2) or when `FERRY_METRIC_LINES=1`.
fn metric_lines() -> bool {
    std::env::var_os("CODEBUILD_BUILD_ID").is_some_and(|v| !v.is_empty())
        || std::env::var("FERRY_METRIC_LINES").is_ok_and(|v| v == "1")
}

/// One custom-metric line on stderr (CodeBuild sends it to the build log group).
fn metric(name: &str, value: f64) {
    eprintln!("{}", serde_json::json!({ "metric": name, "value": value }));
}

impl StopAfter<'_> {
    /// The metrics a batch of a stage run's changes makes: a deployment that ended
    /// (`DeploymentCount`, `DeploymentDuration` from its stage's start), a test report
    /// (`TestSuccessRate`).
    fn metrics(&self, run: &ferry_core::run::RunView, changes: &[Change]) {
        for c in changes {
            match c {
                Change::DeploymentFinished { end_time, .. } => {
                    metric("DeploymentCount", 1.0);
                    if let Some(start) = run.stages.first().and_then(|s| s.started_at) {
                        metric(
                            "DeploymentDuration",
                            (end_time.millis() - start.millis()).max(0) as f64,
                        );
                    }
                }
                Change::TestResults { report, .. } if report.total > 0 => {
                    metric(
                        "TestSuccessRate",
                        (report.passed as f64 * 100.0 / report.total as f64 * 100.0).round()
                            / 100.0,
                    );
                }
                _ => {}
            }
        }
    }
}

impl Observer for StopAfter<'_> {
    fn changed(&self, run: &ferry_core::run::RunView, changes: &[Change]) {
        self.inner.changed(run, changes);
        if self.metrics {
            self.metrics(run, changes);
        }
        let done = self.targets.iter().all(|r| {
            run.stages
                .get(r.stage)
                .and_then(|s| s.steps.get(r.step))
                .is_some_and(|s| s.status.is_terminal())
        });
        if done {
            self.park.store(true, Ordering::SeqCst);
        }
        if let Some(e) = changes.iter().find_map(|c| match c {
            Change::Event(e) if e.kind == ferry_core::EventKind::RunHeld => Some(e),
            _ => None,
        }) {
            if let Ok(mut held) = self.held.lock() {
                *held = Some(e.clone());
            }
            self.park.store(true, Ordering::SeqCst);
        }
    }
    fn note(&self, run: &ferry_core::run::RunView, message: &str) {
        // "held …; it goes on by itself at …" is not so here: the step fails instead,
        // with its own message (`held_refusal`).
        if message.starts_with(&format!("run {} held before deploying to ", run.id)) {
            return;
        }
        self.inner.note(run, message);
    }
    fn notice(&self, message: &str) {
        self.inner.notice(message);
    }
    fn rolled(&self, changes: &[Change]) {
        self.inner.rolled(changes);
        if self.metrics {
            for c in changes {
                if matches!(c, Change::DeploymentRolledBack { .. }) {
                    metric(ferry_synth::lambda_env::ROLLBACK_METRIC, 1.0);
                }
            }
        }
    }
}

/// Where `ferry step` keeps the build's packed artifact so that every later container
/// reads the same bytes: environment stages, later executions, and rollbacks, which
/// check a deployment's artifact digest before putting it back.
pub(crate) enum StepArtifacts {
    /// The project's state folder (`--state-dir`, which must be shared between the
    /// machines that run the steps when there is no AWS).
    Local(ferry_local::TarArtifactStore),
    /// `s3://FERRY_ARTIFACTS_BUCKET/ferry/artifacts/<pipeline>/run-N.tar`, packed in
    /// the workspace first; read back into `cache` (in the workspace) when used.
    #[cfg(feature = "aws")]
    S3(Box<S3Kept>),
}

/// The build's artifact in S3 (see [`StepArtifacts::S3`]).
#[cfg(feature = "aws")]
pub(crate) struct S3Kept {
    aws: ferry_aws::Aws,
    bucket: String,
    prefix: String,
    local: ferry_local::TarArtifactStore,
    cache: PathBuf,
}

impl StepArtifacts {
    fn open(
        project: &Project,
        pipeline: &Pipeline,
        dir: &Path,
        shared: &Shared,
    ) -> CliResult<StepArtifacts> {
        let bucket = std::env::var("FERRY_ARTIFACTS_BUCKET")
            .ok()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty());
        match (bucket, shared) {
            #[cfg(feature = "aws")]
            (Some(bucket), Shared::Dynamo(_)) => Ok(StepArtifacts::S3(Box::new(S3Kept {
                aws: ferry_aws::Aws::connect(&ferry_aws::Settings::default())?,
                bucket,
                prefix: format!("ferry/artifacts/{}", pipeline.name),
                local: ferry_local::TarArtifactStore::new(dir.join("artifacts")),
                cache: dir.join("artifacts").join("s3"),
            }))),
            #[cfg(feature = "aws")]
            (None, Shared::Dynamo(_)) if pipeline.build.artifact.is_some() => {
                Err(CliError::config(
                    "ferry step records into DynamoDB (FERRY_DEPLOYMENTS_TABLE) but FERRY_ARTIFACTS_BUCKET is not set: the build's artifact must be kept in S3 so that later stages and rollbacks find it; set FERRY_ARTIFACTS_BUCKET to the artifacts bucket (the core stack of `ferry synth aws` makes it)",
                ))
            }
            _ => {
                let _ = (pipeline, dir);
                Ok(StepArtifacts::Local(ferry_local::TarArtifactStore::new(
                    project.state.join("artifacts"),
                )))
            }
        }
    }

    /// What a rollback outside CodeBuild (`ferry rollback ENV` with the table) reads
    /// artifacts from: `s3://` locations (recorded by `ferry step`) are read into the
    /// project's state folder; it never packs one, so no bucket needs to be named.
    pub(crate) fn reading(project: &Project, shared: &Shared) -> CliResult<StepArtifacts> {
        match shared {
            #[cfg(feature = "aws")]
            Shared::Dynamo(_) => Ok(StepArtifacts::S3(Box::new(S3Kept {
                aws: ferry_aws::Aws::connect(&ferry_aws::Settings::default())?,
                bucket: std::env::var("FERRY_ARTIFACTS_BUCKET").unwrap_or_default(),
                prefix: String::new(),
                local: ferry_local::TarArtifactStore::new(project.state.join("artifacts")),
                cache: project.state.join("artifacts").join("s3"),
            }))),
            Shared::Local(_) => Ok(StepArtifacts::Local(ferry_local::TarArtifactStore::new(
                project.state.join("artifacts"),
            ))),
        }
    }

    /// Where an `s3://` artifact is read into; other locations are files already.
    fn local_path(&self, location: &str) -> PathBuf {
        match self {
            #[cfg(feature = "aws")]
            StepArtifacts::S3(k) if location.starts_with("s3://") => k
                .cache
                .join(location.trim_start_matches("s3://").replace('/', "_")),
            _ => PathBuf::from(location),
        }
    }
}

impl ferry_engine::ports::ArtifactStore for StepArtifacts {
    fn package(&self, dir: &Path, run: RunId) -> PortResult<Artifact> {
        match self {
            StepArtifacts::Local(s) => s.package(dir, run),
            #[cfg(feature = "aws")]
            StepArtifacts::S3(k) => {
                let S3Kept {
                    aws,
                    bucket,
                    prefix,
                    local,
                    ..
                } = &**k;
                let a = local.package(dir, run)?;
                let name = Path::new(&a.location)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("run-{run}.tar"));
                let key = format!("{prefix}/{name}");
                ferry_aws::objects::upload(aws, bucket, &key, Path::new(&a.location))?;
                Ok(Artifact {
                    location: format!("s3://{bucket}/{key}"),
                    ..a
                })
            }
        }
    }

    fn digest(&self, location: &str) -> PortResult<String> {
        match self {
            StepArtifacts::Local(s) => s.digest(location),
            #[cfg(feature = "aws")]
            StepArtifacts::S3(k) => {
                let (aws, local) = (&k.aws, &k.local);
                if !location.starts_with("s3://") {
                    return local.digest(location);
                }
                let path = self.local_path(location);
                if !path.exists() {
                    let (bucket, key) = ferry_aws::objects::parse_url(location)?;
                    ferry_aws::objects::download(aws, bucket, key, &path)?;
                }
                local.digest(&path.display().to_string())
            }
        }
    }
}

/// Hands deployers a local file for an artifact kept in S3 (the digest check before
/// every deploy and rollback has read it into the workspace).
pub(crate) struct LocalArtifacts<'a> {
    pub(crate) inner: &'a dyn ferry_engine::ports::DeployerFactory,
    pub(crate) artifacts: &'a StepArtifacts,
}

struct LocalArtifactDeployer<'a> {
    inner: Box<dyn ferry_engine::ports::Deployer + 'a>,
    artifacts: &'a StepArtifacts,
}

impl LocalArtifactDeployer<'_> {
    fn local(
        &self,
        req: &ferry_engine::ports::DeployRequest,
    ) -> ferry_engine::ports::DeployRequest {
        let mut req = req.clone();
        req.artifact.location = self
            .artifacts
            .local_path(&req.artifact.location)
            .display()
            .to_string();
        req
    }
}

impl ferry_engine::ports::Deployer for LocalArtifactDeployer<'_> {
    fn deploy(&self, req: &ferry_engine::ports::DeployRequest) -> PortResult<()> {
        self.inner.deploy(&self.local(req))
    }
    fn rollback(&self, req: &ferry_engine::ports::DeployRequest) -> PortResult<()> {
        self.inner.rollback(&self.local(req))
    }
    fn current_version(&self) -> PortResult<Option<String>> {
        self.inner.current_version()
    }
    fn healthy(&self, within: std::time::Duration) -> PortResult<()> {
        self.inner.healthy(within)
    }
}

impl ferry_engine::ports::DeployerFactory for LocalArtifacts<'_> {
    fn deployer(
        &self,
        environment: &str,
        deploy: &ferry_config::Deploy,
    ) -> PortResult<Box<dyn ferry_engine::ports::Deployer + '_>> {
        Ok(Box::new(LocalArtifactDeployer {
            inner: self.inner.deployer(environment, deploy)?,
            artifacts: self.artifacts,
        }))
    }
}

/// `ferry step STAGE/STEP`.
pub fn command(project: &Project, spec: &str, as_json: bool) -> CliResult<i32> {
    let Some((stage, step)) = spec.split_once('/') else {
        return Err(CliError::new(
            exit::USAGE,
            format!(
                "`{spec}` is not STAGE/STEP: write e.g. `ferry step build/unit`, `ferry step build/@gates` or `ferry step production/@deploy`"
            ),
        ));
    };
    let (pipeline, text) = project.load()?;
    let Some(plan) = stage_plan(&pipeline, stage) else {
        let mut stages = vec![STAGE_BUILD.to_string()];
        stages.extend(pipeline.environments.iter().map(|e| e.name.clone()));
        return Err(CliError::not_found(format!(
            "ferry.yml has no stage `{stage}`; its stages are {}",
            stages.join(", ")
        )));
    };
    let idx = targets(&plan.stages[0], step);
    if idx.is_empty() {
        if step == "@gates" && plan.stages[0].kind == StageKind::Build {
            // No gate configured: nothing to check, and the buildspec's line passes.
            crate::output::line(
                "ferry step build/@gates: no gates in ferry.yml (build.gates), nothing to check",
            );
            return Ok(exit::OK);
        }
        return Err(CliError::not_found(format!(
            "stage `{stage}` has no step `{step}`; `ferry step {stage}/…` takes {}",
            valid_steps(&plan.stages[0]).join(", ")
        )));
    }
    let dir = step_dir(project);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::environment(format!("cannot create `{}`: {e}", dir.display())))?;
    let (mut commit, origin) = workspace_commit(&project.root)?;
    let clock = SystemClock;

    // What the environment stages take from the build stage: the run id, the artifact
    // (verified by digest before any deploy) and the test results.
    let build = if plan.stages[0].kind == StageKind::Environment {
        Some(build_record(&pipeline, &dir, &commit)?)
    } else {
        None
    };
    if let Some(b) = &build
        && commit.message.is_empty()
        && commit.author.is_empty()
    {
        // A workspace without `.git`: the build stage read them from the repository.
        commit.message = b.commit.message.clone();
        commit.author = b.commit.author.clone();
    }

    let local = open_stage_db(&dir, stage)?;
    let shared = Shared::open(project)?;
    let split = SplitStore {
        local: &local,
        shared: shared.ledger(),
    };
    let workspace = Workspace {
        root: project.root.clone(),
        commit: commit.clone(),
        origin,
    };
    let digest = ferry_engine::driver::sha256(text.as_bytes());
    // The first call on the table: a table that does not exist is named here, with the
    // fix, before anything runs.
    shared
        .put_config(&digest, &text)
        .map_err(|e| shared.explain(e))?;

    let progress = Progress::new(as_json);
    let park: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let cancel = crate::signals::cancel_on_interrupt();
    let adapters = Local::new(project, cancel).parking(park);
    let artifacts = StepArtifacts::open(project, &pipeline, &dir, &shared)?;
    let deployers = LocalArtifacts {
        inner: &adapters.factory,
        artifacts: &artifacts,
    };
    let observer = StopAfter {
        inner: &*progress,
        targets: idx.iter().map(|&step| StepRef { stage: 0, step }).collect(),
        park,
        metrics: metric_lines(),
        held: std::sync::Mutex::new(None),
    };
    let mut engine = adapters.engine(
        project, &pipeline, &text, &split, &workspace, &observer, cancel,
    );
    engine.ports.artifacts = &artifacts;
    engine.ports.deployers = &deployers;
    engine.layout = Layout {
        project: project.root.clone(),
        work: dir.join("work"),
        logs: dir.join("logs"),
    };

    // The stage's run: the one this workspace has, or a new one.
    let existing = local.list_runs(2, false)?;
    let mut run = match existing.first() {
        Some(v) if v.commit.sha != commit.sha => {
            return Err(CliError::conflict(format!(
                "`{}` holds run {} of commit {}, not {}: this workspace was used for another commit; remove `{}` and run the stage's steps again",
                dir.join(format!("{stage}.db")).display(),
                v.id,
                short_sha(&v.commit.sha),
                short_sha(&commit.sha),
                dir.display()
            )));
        }
        Some(v) => {
            let env = plan.stages[0].environment().map(str::to_string);
            let open = match &env {
                Some(e) => split
                    .deployments(Some(e), 50)?
                    .into_iter()
                    .filter(|d| d.run_id == v.id && d.status == DeploymentStatus::InProgress)
                    .map(|d| (0, d))
                    .collect(),
                None => Vec::new(),
            };
            let mut run = Run::resume_with(v.clone(), plan.clone(), open).ok_or_else(|| {
                CliError::conflict(format!(
                    "ferry.yml changed since this stage started (its steps are not the ones run {} planned); run the stage again from its first step in a fresh workspace",
                    v.id
                ))
            })?;
            run.config_digest = Some(digest.clone());
            restore_coverage(&local, &mut run)?;
            run
        }
        None => {
            let id = match &build {
                Some(b) => b.id,
                None => new_run_id(&clock)?,
            };
            let mut run = engine.queue_planned_as(
                Some(id),
                commit.clone(),
                plan.clone(),
                "step",
                &trigger_by(),
            )?;
            if let Some(b) = &build
                && let Some(a) = &b.artifact
            {
                run.view.artifact = Some(a.clone());
                split.apply(run.id(), &[Change::Artifact(a.clone())])?;
            }
            run
        }
    };
    if let Some(b) = &build {
        // The build's test results and coverage go on the deployment records.
        run.ledger.unit = b.ledger.unit.or(run.ledger.unit);
        run.ledger.coverage = b.ledger.coverage.or(run.ledger.coverage);
        if run.view.artifact.is_none() {
            run.view.artifact = b.artifact.clone();
        }
    }

    let refs: Vec<StepRef> = idx.iter().map(|&step| StepRef { stage: 0, step }).collect();
    let status_of = |run: &Run, r: &StepRef| run.view.stages[0].steps[r.step].status;
    if refs.iter().all(|r| status_of(&run, r).is_terminal()) {
        progress.say(&format!(
            "ferry step {spec}: already ran in this workspace (run {})",
            run.id()
        ));
        return Ok(report(&run, &refs, spec, &progress, as_json));
    }
    match run.next() {
        Next::Step(r) | Next::Wait(r) if refs.contains(&r) => {}
        Next::Step(r) | Next::Wait(r) => {
            return Err(CliError::conflict(format!(
                "`ferry step {spec}` is out of order: `{}` has not run yet in this workspace; a stage's steps run in the order ferry.yml lists them (`ferry step {stage}/{}` first)",
                run.step_name(r),
                own_name(&plan.stages[0], r.step)
            )));
        }
        Next::Finished(status) => {
            let failed = run.view.stages[0]
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Failed)
                .map(|s| format!(": step `{}` failed", s.name))
                .unwrap_or_default();
            progress.say(&format!(
                "ferry step {spec}: stage {stage} of run {} has already ended ({}{failed}); this step does not run",
                run.id(),
                status.as_str()
            ));
            return Ok(exit::RUN_FAILED);
        }
    }
    progress.say(&format!(
        "ferry step {spec} · run {} · {} · commit {}",
        run.id(),
        pipeline.name,
        commit.short()
    ));
    let notifier = crate::notify::start_over(
        project,
        &pipeline,
        &dir.join(format!("{stage}.db")),
        shared.topics()?,
    );
    let id = run.id();
    let view = engine.drive(run);
    // The checkout is a link to the workspace: left there, CodeBuild would follow it
    // into itself when it uploads the workspace as the build's output artifact.
    let _ = std::fs::remove_file(engine.layout.checkout(id));
    crate::notify::finish(notifier);
    progress.finish();
    let view = view?;
    let run = Run::resume_with(view, plan, Vec::new())
        .ok_or_else(|| CliError::new(exit::INTERNAL, "the stage's plan changed while it ran"))?;
    let held = observer.held.lock().ok().and_then(|h| h.clone());
    if let Some(e) = held
        && !refs.iter().all(|r| status_of(&run, r).is_terminal())
    {
        return Err(held_refusal(stage, &e));
    }
    Ok(report(&run, &refs, spec, &progress, as_json))
}

/// Why a `@deploy` step did not deploy: the gate before the environment was closed
/// (`event`: the engine's `run_held` event). `ferry run` holds the run until the gate
/// opens; inside CodeBuild that would be a build waiting for hours, so the step fails
/// at once and says when to retry.
fn held_refusal(env: &str, event: &ferry_core::Event) -> CliError {
    let d = &event.data;
    let reason = d["reason"].as_str().unwrap_or(&event.message);
    let freeze = d["cause"].as_str() == Some("freeze");
    let lift = if freeze {
        format!(
            "lift the freeze with `ferry unfreeze {env}` (with FERRY_DEPLOYMENTS_TABLE set to the stack's table) and retry the stage, or "
        )
    } else {
        String::new()
    };
    let when = match d["opensAt"].as_str() {
        Some(t) => format!("{lift}retry the stage at or after {t}"),
        None if freeze => format!("{lift}retry it once the freeze is over"),
        None => {
            format!("no opening is in sight within a week: change `windows:` of {env} in ferry.yml")
        }
    };
    CliError::conflict(format!(
        "environment {env} may not be deployed to now: {reason}; ferry step does not wait inside CodeBuild: {when}"
    ))
}

/// `@deploy` for a ferry step, the user's name for a command step.
fn own_name(plan: &StagePlan, step: usize) -> String {
    let t = &plan.steps[step];
    match &t.kind {
        StepKind::Command { .. } => t.name.clone(),
        StepKind::CoverageGate { .. } | StepKind::SecurityGate => "@gates".into(),
        StepKind::Package { .. } => "@artifact".into(),
        StepKind::Infrastructure { .. } => "@infrastructure".into(),
        StepKind::Deploy => "@deploy".into(),
        StepKind::Monitor { .. } => "@monitor".into(),
        StepKind::Approval { .. } => "approval".into(),
    }
}

/// Prints the target steps' logs (CodeBuild keeps stdout) and outcome; the exit code.
fn report(run: &Run, refs: &[StepRef], spec: &str, progress: &Progress, as_json: bool) -> i32 {
    let mut ok = true;
    let mut steps = Vec::new();
    for r in refs {
        let s = &run.view.stages[0].steps[r.step];
        if !as_json
            && let Some(log) = &s.log
            && let Ok(text) = std::fs::read_to_string(log)
            && !text.is_empty()
        {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        let passed = matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped);
        ok &= passed;
        steps.push(serde_json::json!({
            "step": s.name,
            "status": s.status.as_str(),
            "reason": s.reason,
            "log": s.log,
        }));
        if !as_json {
            progress.say(&format!(
                "ferry step {spec}: {} {}{}",
                s.name,
                s.status.as_str(),
                s.reason
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            ));
        }
    }
    if as_json {
        crate::output::json(&serde_json::json!({
            "step": spec,
            "run": run.id().0,
            "commit": run.view.commit.sha,
            "stageStatus": run.view.stages[0].status.as_str(),
            "runStatus": run.view.status.as_str(),
            "steps": steps,
        }));
    }
    if ok { exit::OK } else { exit::RUN_FAILED }
}

/// Who started the step: CodeBuild's initiator, else the user.
fn trigger_by() -> String {
    std::env::var("CODEBUILD_INITIATOR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| crate::context::user(None))
}

fn open_stage_db(dir: &Path, stage: &str) -> CliResult<SqliteStore> {
    let path = dir.join(format!("{stage}.db"));
    let store = SqliteStore::open(&path)?;
    store.set_redactor(crate::log::redactor());
    Ok(store)
}

/// What an environment stage takes from the build stage of the same workspace.
struct BuildRecord {
    id: RunId,
    /// The commit as the build stage read it (message and author from the repository).
    commit: Commit,
    artifact: Option<Artifact>,
    ledger: ferry_core::run::TestLedger,
}

fn build_record(pipeline: &Pipeline, dir: &Path, commit: &Commit) -> CliResult<BuildRecord> {
    let path = dir.join(format!("{STAGE_BUILD}.db"));
    let missing = || {
        CliError::not_found(format!(
            "no build stage record at `{}`: run the build stage's steps (`ferry step build/…`) first; in CodePipeline the build stage's output artifact carries `.ferry/step/` to the environment stages",
            path.display()
        ))
    };
    if !path.exists() {
        return Err(missing());
    }
    let store = SqliteStore::open(&path)?;
    let view = store
        .list_runs(1, false)?
        .into_iter()
        .next()
        .ok_or_else(missing)?;
    if view.commit.sha != commit.sha {
        return Err(CliError::conflict(format!(
            "the build stage at `{}` built commit {}, but this workspace holds {}: deploy only what was built and tested",
            path.display(),
            short_sha(&view.commit.sha),
            short_sha(&commit.sha)
        )));
    }
    if view.status != ferry_core::RunStatus::Succeeded {
        return Err(CliError::new(
            exit::RUN_FAILED,
            format!(
                "the build stage of run {} has not succeeded (it is {}): an environment only takes a build whose steps and gates all passed",
                view.id,
                view.status.as_str()
            ),
        ));
    }
    let build_plan = stage_plan(pipeline, STAGE_BUILD).ok_or_else(missing)?;
    let ledger = match Run::resume_with(view.clone(), build_plan, Vec::new()) {
        Some(mut r) => {
            restore_coverage(&store, &mut r)?;
            r.ledger
        }
        None => ferry_core::run::TestLedger::default(),
    };
    // Kept where every container reads it (S3, or the shared state folder); its digest
    // is checked before the environment deploys it.
    let artifact = view.artifact;
    Ok(BuildRecord {
        id: view.id,
        commit: view.commit.clone(),
        artifact,
        ledger,
    })
}

/// What a run learnt in earlier processes that its view does not hold: the coverage
/// its steps measured (the coverage gate and the deployment records read it).
fn restore_coverage(store: &SqliteStore, run: &mut Run) -> CliResult<()> {
    if let Some(c) = store
        .test_results(run.id())?
        .into_iter()
        .filter_map(|t| t.coverage)
        .next_back()
    {
        run.ledger.coverage = Some(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `ferry step` line of every buildspec `ferry synth aws` writes.
    fn buildspec_steps(pipeline: &Pipeline) -> Vec<(String, Vec<String>)> {
        let stacks =
            ferry_synth::synth(pipeline, &ferry_synth::Options { env: None }).expect("synth");
        let mut out = Vec::new();
        for template in stacks.values() {
            let Some(resources) = template["Resources"].as_object() else {
                continue;
            };
            for r in resources.values() {
                if r["Type"] != "AWS::CodeBuild::Project" {
                    continue;
                }
                let spec: Value = serde_json::from_str(
                    r["Properties"]["Source"]["BuildSpec"]
                        .as_str()
                        .expect("buildspec"),
                )
                .expect("buildspec JSON");
                let steps: Vec<String> = spec["phases"]["build"]["commands"]
                    .as_array()
                    .expect("commands")
                    .iter()
                    .filter_map(|c| c.as_str()?.strip_prefix("ferry step "))
                    .map(|s| s.trim_matches('\'').to_string())
                    .collect();
                let vars: Vec<String> = r["Properties"]["Environment"]["EnvironmentVariables"]
                    .as_array()
                    .expect("variables")
                    .iter()
                    .filter_map(|v| v["Name"].as_str().map(str::to_string))
                    .collect();
                assert!(
                    vars.iter().any(|v| v == "FERRY_DEPLOYMENTS_TABLE"),
                    "{vars:?}"
                );
                out.push((steps.join(" "), steps));
            }
        }
        out
    }

    /// The synthesized buildspecs and `ferry step` agree: every line names a stage and
    /// step this command takes, every step of every stage is called, in plan order.
    #[test]
    fn every_synthesized_buildspec_line_is_a_step_ferry_step_runs_in_order() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        for file in ["reference/ferry.yml", "seed/ferry.yml"] {
            let text = std::fs::read_to_string(root.join(file)).expect("example");
            let pipeline = ferry_config::parse(&text, file).expect("valid example");
            let projects = buildspec_steps(&pipeline);
            assert_eq!(projects.len(), pipeline.environments.len() + 1, "{file}");
            for (_, steps) in projects {
                let stage = steps[0].split_once('/').expect("STAGE/STEP").0.to_string();
                let plan = stage_plan(&pipeline, &stage).expect("a stage ferry step knows");
                let mut called: Vec<usize> = Vec::new();
                for s in &steps {
                    let (st, name) = s.split_once('/').expect("STAGE/STEP");
                    assert_eq!(st, stage, "{file}: one stage per project");
                    let idx = targets(&plan.stages[0], name);
                    assert!(
                        !idx.is_empty() || name == "@gates",
                        "{file}: `ferry step {s}` names no step"
                    );
                    called.extend(idx);
                }
                let all: Vec<usize> = (0..plan.stages[0].steps.len()).collect();
                assert_eq!(called, all, "{file}: stage {stage} calls {steps:?}");
            }
        }
    }
}
