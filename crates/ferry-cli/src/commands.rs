//! The commands that read or change the state: `init`, `validate`, `run`, `status`,
//! `history`, `logs`, `approve`, `reject`.

use crate::context::{Project, SystemClock, holder, user};
use crate::error::{CliError, CliResult};
use crate::output::{json, line, table, when};
use crate::progress::Progress;
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::approval::{self, Decision};
use ferry_core::run::RunView;
use ferry_core::{DeploymentStatus, RunId, RunStatus, StageStatus, short_sha, time::human};
use ferry_engine::ports::{Clock, Store};
use ferry_engine::{Engine, Layout, Ports, Settings};
use std::sync::atomic::AtomicBool;

pub fn init(project: &Project, force: bool, as_json: bool) -> CliResult<i32> {
    let shown = project.shown_file();
    if project.file.exists() && !force {
        return Err(CliError::conflict(format!(
            "`{shown}` already exists; edit it, or pass `--force` to overwrite it with the starter"
        )));
    }
    std::fs::write(&project.file, ferry_config::STARTER)
        .map_err(|e| CliError::environment(format!("cannot write `{shown}`: {e}")))?;
    // ferry's state (database, logs, artifacts) does not belong in the repository.
    let ignore = project.root.join(".gitignore");
    let listed = std::fs::read_to_string(&ignore)
        .map(|t| {
            t.lines()
                .any(|l| matches!(l.trim(), ".ferry" | ".ferry/" | "/.ferry" | "/.ferry/"))
        })
        .unwrap_or(false);
    if !listed {
        let mut text = std::fs::read_to_string(&ignore).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(".ferry/\n");
        std::fs::write(&ignore, text)
            .map_err(|e| CliError::environment(format!("cannot write `.gitignore`: {e}")))?;
    }
    if as_json {
        json(&serde_json::json!({"written": shown}));
    } else {
        line(format!(
            "wrote {shown}: a commented starter pipeline. Edit its steps, then `ferry validate` and `ferry run`."
        ));
    }
    Ok(exit::OK)
}

pub fn validate(project: &Project, as_json: bool) -> CliResult<i32> {
    let shown = project.shown_file();
    let text = project.read_text()?;
    match ferry_config::parse(&text, &shown) {
        Ok(p) => {
            if as_json {
                json(&ferry_api::Validation {
                    file: shown,
                    valid: true,
                    problems: vec![],
                });
            } else {
                let envs: Vec<&str> = p.environments.iter().map(|e| e.name.as_str()).collect();
                line(format!(
                    "{shown} is valid: pipeline `{}`, {} build step(s), environments {}",
                    p.name,
                    p.build.steps.len(),
                    envs.join(" → ")
                ));
            }
            Ok(exit::OK)
        }
        Err(diags) => {
            if as_json {
                json(&ferry_api::Validation {
                    file: shown,
                    valid: false,
                    problems: diags
                        .iter()
                        .map(|d| ferry_api::Problem {
                            line: d.line,
                            column: d.column,
                            message: d.message.clone(),
                            help: d.help.clone(),
                        })
                        .collect(),
                });
            } else {
                for d in &diags {
                    eprintln!("{d}");
                }
                eprintln!(
                    "{} problem{} in `{shown}`",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                );
            }
            Ok(exit::CONFIG)
        }
    }
}

pub fn run(
    project: &Project,
    commit: Option<&str>,
    hotfix: bool,
    as_json: bool,
    cancel: &'static AtomicBool,
) -> CliResult<i32> {
    let (pipeline, text) = project.load()?;
    if hotfix {
        // Refused before anything is recorded when the file does not open the lane.
        ferry_core::RunPlan::hotfix(&pipeline).map_err(CliError::config)?;
    }
    let store = project.open_store()?;
    let source = ferry_local::GitSource::open(&project.root)?;
    let rev = match commit {
        Some(c) => c.to_string(),
        None => format!("refs/heads/{}", pipeline.source.branch),
    };
    let progress = Progress::new(as_json);
    // Notifications go out while the run goes; what is left at its end is flushed for a
    // bounded time and otherwise stays in the outbox.
    let notifier = crate::notify::start(project, &pipeline);
    let view = drive_run(
        project,
        &pipeline,
        &text,
        &store,
        &source,
        &rev,
        "cli",
        &user(None),
        &progress,
        cancel,
        None,
        hotfix,
    );
    progress.finish();
    crate::notify::finish(notifier);
    let view = view?;
    if as_json {
        json(&view);
    } else {
        print_summary(&view, &progress);
    }
    Ok(match view.status {
        RunStatus::Succeeded => exit::OK,
        _ => exit::RUN_FAILED,
    })
}

/// The local runtime's adapters, built once per command.
pub struct Local {
    pub executor: ferry_local::ProcessExecutor,
    pub artifacts: ferry_local::TarArtifactStore,
    pub reports: ferry_local::report_files::LocalReportFiles,
    pub probe: ferry_local::probe::LocalProbe,
    pub clock: SystemClock,
    pub factory: crate::context::Deployers,
    pub liveness: ferry_local::LocalLiveness,
    /// Compares a deployed version's infrastructure with a run's (infrastructure steps).
    pub infra: ferry_local::LocalInfraInspector,
    /// See [`Local::parking`].
    pub park: Option<&'static AtomicBool>,
}

impl Local {
    pub fn new(project: &Project, cancel: &'static AtomicBool) -> Local {
        Local {
            executor: ferry_local::ProcessExecutor::with_cancel(cancel),
            artifacts: ferry_local::TarArtifactStore::new(project.state.join("artifacts")),
            reports: ferry_local::report_files::LocalReportFiles,
            probe: ferry_local::probe::LocalProbe,
            clock: SystemClock,
            factory: project.factory(),
            liveness: ferry_local::LocalLiveness::here(),
            infra: ferry_local::LocalInfraInspector {
                repository: project.root.clone(),
            },
            park: None,
        }
    }

    /// Engines from these adapters park their runs when `flag` is set (`ferry serve`).
    pub fn parking(mut self, flag: &'static AtomicBool) -> Local {
        self.park = Some(flag);
        self
    }

    /// An engine over these adapters.
    #[allow(clippy::too_many_arguments)]
    pub fn engine<'a>(
        &'a self,
        project: &Project,
        pipeline: &'a Pipeline,
        text: &'a str,
        store: &'a dyn Store,
        source: &'a dyn ferry_engine::ports::Source,
        observer: &'a dyn ferry_engine::ports::Observer,
        cancel: &'a AtomicBool,
    ) -> Engine<'a> {
        Engine {
            pipeline,
            pipeline_text: text,
            ports: Ports {
                store,
                clock: &self.clock,
                source,
                executor: &self.executor,
                artifacts: &self.artifacts,
                reports: &self.reports,
                probe: &self.probe,
                observer,
                deployers: &self.factory,
                liveness: &self.liveness,
                scanner: &crate::scan::LocalScanner,
                infra: &self.infra,
            },
            layout: Layout {
                project: project.root.clone(),
                work: project.state.join("work"),
                logs: project.state.join("logs"),
            },
            settings: Settings {
                holder: holder(),
                // Work outside a run leases under a negative id of this process's own,
                // unique across machines (the ledger may be a shared DynamoDB table).
                outside_run: ferry_engine::ports::outside_run_for(&holder()),
                park: self.park,
                ..Settings::default()
            },
            cancel,
        }
    }
}

/// Ends the runs whose `ferry` process died (and, with `roll_back`, rolls back what
/// they left half deployed). Needs the repository; without one there is nothing to do.
pub fn reconcile(
    project: &Project,
    pipeline: &Pipeline,
    text: &str,
    store: &dyn Store,
    roll_back: bool,
) -> CliResult<()> {
    let Ok(source) = ferry_local::GitSource::open(&project.root) else {
        return Ok(());
    };
    let cancel: &'static AtomicBool = crate::signals::flag();
    let progress = Progress::new(true);
    let local = Local::new(project, cancel);
    let engine = local.engine(
        project,
        pipeline,
        text,
        store,
        &source,
        progress.as_ref(),
        cancel,
    );
    engine.reconcile(roll_back)?;
    progress.finish();
    Ok(())
}

/// Queues and drives one run of `rev` with the local adapters. `on_queued` is told the
/// run id as soon as it exists (the demo uses it to approve).
#[allow(clippy::too_many_arguments)]
pub fn drive(
    project: &Project,
    pipeline: &Pipeline,
    text: &str,
    store: &dyn Store,
    source: &dyn ferry_engine::ports::Source,
    rev: &str,
    trigger: &str,
    by: &str,
    progress: &Progress,
    cancel: &'static AtomicBool,
    on_queued: Option<&dyn Fn(RunId)>,
) -> CliResult<RunView> {
    drive_run(
        project, pipeline, text, store, source, rev, trigger, by, progress, cancel, on_queued,
        false,
    )
}

/// [`drive`], as a hotfix (`ferry run --hotfix`) when `hotfix` is set.
#[allow(clippy::too_many_arguments)]
pub fn drive_run(
    project: &Project,
    pipeline: &Pipeline,
    text: &str,
    store: &dyn Store,
    source: &dyn ferry_engine::ports::Source,
    rev: &str,
    trigger: &str,
    by: &str,
    progress: &Progress,
    cancel: &'static AtomicBool,
    on_queued: Option<&dyn Fn(RunId)>,
    hotfix: bool,
) -> CliResult<RunView> {
    let local = Local::new(project, cancel);
    let engine = local.engine(project, pipeline, text, store, source, progress, cancel);
    engine.reconcile(true)?;
    let run = if hotfix {
        engine
            .queue_hotfix(rev, trigger, by)
            .map_err(|e| match e.kind {
                ferry_engine::ports::PortErrorKind::Permanent => CliError::config(e.message),
                _ => e.into(),
            })?
    } else {
        engine.queue(rev, trigger, by)?
    };
    let c = &run.view.commit;
    let lane = if run.view.hotfix {
        " · HOTFIX (straight to the last environment)"
    } else {
        ""
    };
    progress.say(&format!(
        "run {}{lane} · {} · commit {} “{}” by {}",
        run.id(),
        pipeline.name,
        c.short(),
        printable(c.message.lines().next().unwrap_or("")),
        printable(&c.author)
    ));
    if let Some(f) = on_queued {
        f(run.id());
    }
    let id = run.id();
    let view = engine.drive(run)?;
    if !cancel.load(std::sync::atomic::Ordering::SeqCst) {
        engine.watch(&view)?;
    }
    // The checkout is scratch space; logs and the artifact stay.
    let _ = std::fs::remove_dir_all(engine.layout.checkout(id));
    Ok(view)
}

fn print_summary(view: &RunView, progress: &Progress) {
    let mut rows = vec![vec!["STAGE".to_string(), "STATUS".into(), "TIME".into()]];
    for s in &view.stages {
        let took = match (s.started_at, s.ended_at) {
            (Some(a), Some(b)) => human(b.since(a)),
            _ => String::new(),
        };
        rows.push(vec![s.name.clone(), s.status.to_string(), took]);
    }
    progress.say(&format!("\n{}", table(&rows)));
    let total = match (view.started_at, view.ended_at) {
        (Some(a), Some(b)) => format!(" in {}", human(b.since(a))),
        _ => String::new(),
    };
    match &view.reason {
        Some(r) => progress.say(&format!("run {} {}{total}: {r}", view.id, view.status)),
        None => progress.say(&format!("run {} {}{total}", view.id, view.status)),
    }
}

pub fn run_summary(v: &RunView) -> ferry_api::RunSummary {
    let stage = v
        .stages
        .iter()
        .find(|s| {
            !matches!(
                s.status,
                StageStatus::Succeeded | StageStatus::Pending | StageStatus::Skipped
            )
        })
        .map(|s| s.name.clone());
    ferry_api::RunSummary {
        id: v.id.0,
        commit: v.commit.sha.clone(),
        message: printable(v.commit.message.lines().next().unwrap_or("")),
        status: v.status,
        stage,
        reason: v.reason.clone(),
        created_at: v.created_at.millis(),
        ended_at: v.ended_at.map(|t| t.millis()),
        hotfix: v.hotfix,
        approval: None,
        held: None,
        findings: None,
    }
}

/// Where the approvals of `v` stand for each environment it has an approval gate at
/// that was requested: the rule, the valid approvals so far and every decision.
pub fn approval_progress(
    store: &dyn Store,
    v: &RunView,
) -> CliResult<Vec<ferry_api::ApprovalProgress>> {
    let mut out = Vec::new();
    for s in &v.stages {
        if !s.steps.iter().any(|t| t.kind == "approval") {
            continue;
        }
        let Some((rule, requested)) = approval_rule(store, v.id, &s.name)? else {
            continue;
        };
        let decisions = store.approvals(v.id, &s.name)?;
        let (_, triggered_by) = store.triggered(v.id)?;
        let parties = approval::Parties {
            author: v.commit.author.clone(),
            triggered_by,
        };
        let digest = v.artifact.as_ref().map(|a| a.digest.as_str());
        let (state, _) = approval::evaluate(
            &rule,
            &parties,
            digest,
            &decisions,
            requested,
            SystemClock.now(),
        );
        let (approvals, progress) = match &state {
            approval::ApprovalState::Waiting { approvals, .. } => (
                approvals.clone(),
                approval::progress(&rule, &parties, approvals),
            ),
            approval::ApprovalState::Approved { by } => {
                (by.clone(), approval::progress(&rule, &parties, by))
            }
            approval::ApprovalState::Rejected { by, reason } => {
                (Vec::new(), format!("rejected by {by}: {reason}"))
            }
            approval::ApprovalState::TimedOut { after } => {
                (Vec::new(), format!("timed out after {}", human(*after)))
            }
        };
        out.push(ferry_api::ApprovalProgress {
            environment: s.name.clone(),
            required: rule.required,
            approvers: rule.approvers.clone(),
            approvals,
            progress,
            expires_at: requested.plus(rule.timeout).millis(),
            decisions,
        });
    }
    Ok(out)
}

/// A run as `GET /api/runs/{id}` shows it: the stored run and its approvals.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub approvals: Vec<ferry_api::ApprovalProgress>,
    /// The security gate's findings per severity, once the gate has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<ferry_core::findings::FindingCounts>,
}

/// The run `id` with its approvals and its security findings' counts.
pub fn run_detail(store: &dyn Store, id: RunId) -> CliResult<RunDetail> {
    let run = store.load_run(id)?;
    let approvals = approval_progress(store, &run)?;
    let findings = crate::findings::gate_counts(store, &run)?;
    Ok(RunDetail {
        run,
        approvals,
        findings,
    })
}

pub fn status(project: &Project, as_json: bool) -> CliResult<i32> {
    let (pipeline, _) = project.load()?;
    let store = project.open_store()?;
    // Read-only: runs a killed ferry left behind are left to `ferry serve` (which
    // resumes them) or the next `ferry run` (which ends them); `status` shows them as
    // they are.
    // With FERRY_DEPLOYMENTS_TABLE: what is deployed where on AWS (the table), runs in
    // progress of this project's store.
    let shared = crate::step::Shared::open(project)?;
    let st = match shared.over(&store) {
        None => build_status(project, &pipeline, &store)?,
        Some(split) => {
            let mut st = build_status_with(&pipeline, &split, &shared.running(project, &pipeline))
                .map_err(|e| shared.explain(e))?;
            st.ledger = shared.source();
            // On AWS the pipeline's alarms are the monitoring stack's CloudWatch alarms
            // (`<pipeline>-failures`, `<pipeline>-rollbacks`), not ferry's own.
            let names = ferry_synth::Names::new(&pipeline.name, None);
            let (failures, rollbacks) = (names.alarm("failures"), names.alarm("rollbacks"));
            st.pipeline_alarms = pipeline_alarm_states(&split, &[&failures, &rollbacks]);
            for a in &mut st.pipeline_alarms {
                if a.reason.is_none() {
                    // Not in CloudWatch: the monitoring stack is not deployed here (or
                    // was synthesized with `--env`, which puts the environment in the
                    // name), not an alarm that is OK.
                    a.state = "UNKNOWN".into();
                    a.reason = Some(format!(
                        "no CloudWatch alarm `{}` in this account and region: the monitoring stack of `ferry synth aws` makes it",
                        a.name
                    ));
                }
            }
            st
        }
    };
    if as_json {
        json(&st);
        return Ok(exit::OK);
    }
    print_status(&st);
    Ok(exit::OK)
}

/// The states of the pipeline's own alarms named `names`, as `store` knows them
/// (`OK` before the first evaluation). A state that cannot be read (CloudWatch
/// refusing `DescribeAlarms`, say) is `UNKNOWN` with the reason: the rest of the
/// status is still worth showing.
pub fn pipeline_alarm_states(store: &dyn Store, names: &[&str]) -> Vec<ferry_api::PipelineAlarm> {
    names
        .iter()
        .map(|name| match store.alarm_state(name) {
            Ok(st) => ferry_api::PipelineAlarm {
                name: (*name).to_string(),
                state: st.as_ref().map_or("OK", |s| s.0.as_str()).to_string(),
                reason: st.as_ref().map(|s| s.1.clone()),
                since: st.as_ref().map(|s| s.2.millis()),
            },
            Err(e) => ferry_api::PipelineAlarm {
                name: (*name).to_string(),
                state: "UNKNOWN".to_string(),
                reason: Some(format!("its state cannot be read: {}", e.message)),
                since: None,
            },
        })
        .collect()
}

/// What is deployed where and the runs in progress: `ferry status --json` and
/// `GET /api/status` of `ferry serve`.
pub fn build_status(
    project: &Project,
    pipeline: &Pipeline,
    store: &dyn Store,
) -> CliResult<ferry_api::Status> {
    build_status_with(pipeline, store, &project.running(pipeline))
}

/// [`build_status`] with what each environment's deployer reports running
/// (`Project::running`) already asked: `ferry serve` asks at most every few seconds
/// however many clients read the status.
pub fn build_status_with(
    pipeline: &Pipeline,
    store: &dyn Store,
    running_now: &std::collections::BTreeMap<String, Option<String>>,
) -> CliResult<ferry_api::Status> {
    let now = ferry_engine::ports::Clock::now(&crate::context::SystemClock);
    let mut envs = Vec::new();
    for env in &pipeline.environments {
        let (freezes, gate) = crate::windows::environment_gate(pipeline, store, &env.name, now)?;
        let latest = store.latest_deployment(&env.name)?;
        let good = store.last_known_good(&env.name)?;
        let running = running_now
            .get(&env.name)
            .cloned()
            .flatten()
            .or_else(|| good.as_ref().map(|g| g.version.clone()));
        let since = store
            .deployments(Some(&env.name), 200)?
            .into_iter()
            .find(|d| Some(&d.version) == running.as_ref())
            .map(|d| d.end_time.unwrap_or(d.start_time));
        let url = env.deploy.health().map(str::to_string);
        // The status of the deployment that put the running version there (not of a
        // newer one that was rolled back or failed).
        let running_deployment = store
            .deployments(Some(&env.name), 200)?
            .into_iter()
            .find(|d| {
                Some(&d.version) == running.as_ref() && d.status != DeploymentStatus::RolledBack
            });
        envs.push(ferry_api::EnvironmentStatus {
            name: env.name.clone(),
            version: running.clone(),
            status: running_deployment
                .as_ref()
                .or(latest.as_ref())
                .map(|d| d.status.to_string())
                .unwrap_or_else(|| "never_deployed".to_string()),
            latest: latest
                .as_ref()
                .filter(|l| Some(&l.version) != running.as_ref())
                .map(|l| ferry_api::LatestDeployment {
                    version: l.version.clone(),
                    status: l.status.to_string(),
                    reason: l.rollback_reason.clone(),
                }),
            since,
            run: latest.as_ref().map(|d| d.run_id.0),
            url,
            last_known_good: good
                .map(|g| g.version)
                .filter(|g| Some(g) != running.as_ref()),
            incident: store.hold(&env.name)?.map(|i| ferry_api::IncidentSummary {
                id: i.id,
                reason: i.reason,
                opened_at: i.opened_at.millis(),
                deployment_id: i.deployment_id,
            }),
            freezes,
            gate,
            infrastructure_changed: running_deployment
                .as_ref()
                .is_some_and(|d| d.infrastructure_changed),
            rollback_unsafe: running_deployment
                .as_ref()
                .filter(|d| d.rollback_unsafe)
                .map(|d| {
                    d.rollback_unsafe_reason
                        .clone()
                        .unwrap_or_else(|| "rollback-unsafe".to_string())
                }),
        });
    }
    let mut runs = Vec::new();
    for v in store.list_runs(50, true)? {
        let mut r = run_summary(&v);
        if v.status == RunStatus::AwaitingApproval {
            let waiting = v
                .stages
                .iter()
                .find(|s| s.status == StageStatus::AwaitingApproval)
                .map(|s| s.name.clone());
            r.approval = approval_progress(store, &v)?
                .into_iter()
                .find(|a| Some(&a.environment) == waiting.as_ref());
        }
        r.held = crate::windows::held_run(store, v.id)?;
        r.findings = crate::findings::gate_counts(store, &v)?;
        runs.push(r);
    }
    let names: Vec<&str> = ferry_core::pipeline_alarm::RULES
        .iter()
        .map(|r| r.name)
        .collect();
    let pipeline_alarms = pipeline_alarm_states(store, &names);
    let notifications = store
        .outbox_counts()?
        .into_iter()
        .map(|c| ferry_api::ChannelOutbox {
            channel: c.channel,
            pending: c.pending,
            dead: c.dead,
            delivered: c.delivered,
        })
        .collect();
    Ok(ferry_api::Status {
        pipeline: pipeline.name.clone(),
        environments: envs,
        runs,
        pipeline_alarms,
        notifications,
        ledger: None,
    })
}

pub(crate) fn print_status(st: &ferry_api::Status) {
    let mut rows = vec![vec![
        "ENVIRONMENT".to_string(),
        "VERSION".into(),
        "LAST DEPLOYMENT".into(),
        "SINCE".into(),
        "URL".into(),
    ]];
    for e in &st.environments {
        rows.push(vec![
            e.name.clone(),
            e.version
                .as_deref()
                .map(short_sha)
                .unwrap_or("-")
                .to_string(),
            e.status.clone(),
            e.since.map(when).unwrap_or_else(|| "-".into()),
            e.url.clone().unwrap_or_default(),
        ]);
    }
    line(format!("pipeline {}", st.pipeline));
    if let Some(l) = &st.ledger {
        line(format!(
            "deployments, incidents and freezes: {l} (runs in progress: this project's store)"
        ));
    }
    line("");
    crate::output::out(&table(&rows));
    for e in &st.environments {
        if let Some(l) = &e.latest {
            line(format!(
                "\n{}: the newest deployment, {}, is {}{}",
                e.name,
                short_sha(&l.version),
                l.status,
                l.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        for f in &e.freezes {
            line(format!(
                "\n{} FROZEN until {} by {}: {}\n  `ferry unfreeze {}` lifts it",
                e.name,
                ferry_core::events::iso8601(f.until),
                f.by,
                f.reason,
                e.name
            ));
        }
        if let Some(ferry_core::window::Gate::Closed {
            cause: ferry_core::window::Cause::Window,
            reason,
            opens_at,
        }) = &e.gate
        {
            line(format!(
                "\n{}: deployment window closed ({reason}){}",
                e.name,
                opens_at
                    .map(|t| format!(", opens {}", ferry_core::events::iso8601(t)))
                    .unwrap_or_default()
            ));
        }
        if let Some(why) = &e.rollback_unsafe {
            line(format!(
                "\n{}: the running deployment is ROLLBACK-UNSAFE ({why}); it is never rolled back automatically (`ferry rollback {} --accept-data-loss` to force it)",
                e.name, e.name
            ));
        } else if e.infrastructure_changed {
            line(format!(
                "\n{}: the running deployment deployed infrastructure",
                e.name
            ));
        }
        if let Some(i) = &e.incident {
            line(format!(
                "\n{} NEEDS A PERSON: incident #{} — {}\n  no automatic deployment goes there until `ferry resolve {}`",
                e.name, i.id, i.reason, e.name
            ));
        }
    }
    for a in st.pipeline_alarms.iter().filter(|a| a.state == "UNKNOWN") {
        line(format!(
            "\npipeline alarm {}: {}",
            a.name,
            a.reason.as_deref().unwrap_or("-")
        ));
    }
    for a in st.pipeline_alarms.iter().filter(|a| a.state == "ALARM") {
        line(format!(
            "\nPIPELINE ALARM {}: {} (since {})",
            a.name,
            a.reason.as_deref().unwrap_or("-"),
            a.since.map(when).unwrap_or_else(|| "-".into())
        ));
    }
    if st.runs.is_empty() {
        line("\nno run in progress");
    } else {
        line("\nin progress:");
        for r in &st.runs {
            let stage = r
                .stage
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default();
            let hotfix = if r.hotfix { " · HOTFIX" } else { "" };
            line(format!(
                "  run {}{hotfix} · {} · {}{stage} · {}",
                r.id,
                short_sha(&r.commit),
                r.status,
                r.message
            ));
            if let Some(c) = &r.findings {
                line(format!("    security findings: {}", c.summary()));
            }
            if let Some(a) = &r.approval {
                line(format!("    {}", a.progress));
            }
            if r.status == RunStatus::AwaitingApproval {
                line(format!(
                    "    approve: ferry approve {}    reject: ferry reject {} --reason \"…\"",
                    r.id, r.id
                ));
            }
            if let Some(h) = &r.held {
                line(format!(
                    "    HELD before {} ({}): {}\n    {}",
                    h.environment,
                    h.cause,
                    h.reason,
                    h.opens_at.as_deref().map_or_else(
                        || "goes on when the freeze is lifted or an override is confirmed"
                            .to_string(),
                        |t| format!("goes on by itself at {t}")
                    )
                ));
                match h.overrides.first() {
                    Some(o) if o.confirmed_by.is_none() => line(format!(
                        "    break-glass requested by {}: {} — a second person: ferry override {} --env {} --confirm --by NAME",
                        o.requested_by, o.reason, r.id, h.environment
                    )),
                    Some(_) => {}
                    None => line(format!(
                        "    break glass: ferry override {} --env {} --reason \"…\" (a second person confirms)",
                        r.id, h.environment
                    )),
                }
            }
        }
    }
    print_outbox(&st.notifications);
}

/// The notification outbox's line in `ferry status`: only when something waits.
fn print_outbox(channels: &[ferry_api::ChannelOutbox]) {
    let pending: u64 = channels.iter().map(|c| c.pending).sum();
    let dead: u64 = channels.iter().map(|c| c.dead).sum();
    if pending == 0 && dead == 0 {
        return;
    }
    line(format!(
        "
notifications: {pending} pending, {dead} dead letter(s){}",
        if dead > 0 {
            " — `ferry notify list --dead` shows them, `ferry notify retry` sends them again"
        } else {
            ""
        }
    ));
    for c in channels.iter().filter(|c| c.pending > 0 || c.dead > 0) {
        line(format!(
            "  {}: {} pending, {} dead",
            c.channel, c.pending, c.dead
        ));
    }
}

pub fn history(
    project: &Project,
    env: Option<&str>,
    limit: usize,
    as_json: bool,
) -> CliResult<i32> {
    let store = project.open_store()?;
    let runs: Vec<ferry_api::RunSummary> = store
        .list_runs(limit, false)?
        .iter()
        .map(run_summary)
        .collect();
    // Deployments and rollbacks of the shared ledger: the DynamoDB table when
    // FERRY_DEPLOYMENTS_TABLE is set, else this project's store. Runs stay local.
    let shared = crate::step::Shared::open(project)?;
    let deployments = shared
        .ledger()
        .deployments(env, limit)
        .map_err(|e| shared.explain(e))?;
    let rollbacks: Vec<_> = shared
        .rollbacks(&store, limit)
        .map_err(|e| shared.explain(e))?
        .into_iter()
        .filter(|r| env.is_none_or(|e| r.environment == e))
        .collect();
    let ledger = shared.source();
    if as_json {
        json(&ferry_api::History {
            runs,
            deployments,
            rollbacks,
            ledger,
        });
        return Ok(exit::OK);
    }
    if let Some(l) = &ledger {
        line(format!(
            "deployments and rollbacks: {l} (runs: this project's store)\n"
        ));
    }
    if env.is_none() {
        let mut rows = vec![vec![
            "RUN".to_string(),
            "COMMIT".into(),
            "STATUS".into(),
            "STARTED".into(),
            "MESSAGE".into(),
        ]];
        for r in &runs {
            let hotfix = if r.hotfix { " (hotfix)" } else { "" };
            rows.push(vec![
                r.id.to_string(),
                short_sha(&r.commit).to_string(),
                format!("{}{hotfix}", r.status),
                when(r.created_at),
                r.message.chars().take(50).collect(),
            ]);
        }
        line("runs:");
        crate::output::out(&table(&rows));
        line("");
    }
    let mut rows = vec![vec![
        "DEPLOYMENT".to_string(),
        "VERSION".into(),
        "STATUS".into(),
        "RUN".into(),
        "TESTS u/i/e".into(),
        "COVERAGE".into(),
        "INFRA".into(),
        "NOTE".into(),
    ]];
    let flag = |b: bool| if b { "✓" } else { "·" };
    for d in &deployments {
        rows.push(vec![
            d.deployment_id.clone(),
            short_sha(&d.version).to_string(),
            d.status.to_string(),
            d.run_id.to_string(),
            format!(
                "{}/{}/{}",
                flag(d.unit_tests_passed),
                flag(d.integration_tests_passed),
                flag(d.e2e_tests_passed)
            ),
            ferry_core::gates::percent(d.coverage_percentage),
            match (d.infrastructure_changed, d.rollback_unsafe) {
                (_, true) => "unsafe".to_string(),
                (true, false) => "deployed".to_string(),
                (false, false) => "-".to_string(),
            },
            [
                d.rollback_reason.clone(),
                d.rollback_unsafe_reason
                    .as_ref()
                    .map(|r| format!("rollback-unsafe: {r}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        ]);
    }
    line("deployments:");
    crate::output::out(&table(&rows));
    if !rollbacks.is_empty() {
        line("\nrollbacks:");
        for r in &rollbacks {
            let level = r.level.map(|l| format!(" {l} level")).unwrap_or_default();
            line(format!(
                "  {} · {} {} → {} · {}{level} · {} ({})",
                when(r.started_at.millis()),
                r.environment,
                short_sha(&r.from_version),
                r.to_version.as_deref().map(short_sha).unwrap_or("-"),
                r.status,
                r.reason,
                r.trigger.label()
            ));
            for d in &r.detail {
                line(format!("      {d}"));
            }
        }
    }
    Ok(exit::OK)
}

/// A run's step logs (all, or those of one step, stage or `stage/step`) and its
/// decisions: `ferry logs --json` and `GET /api/runs/{id}/logs`.
pub fn build_logs(store: &dyn Store, run: i64, step: Option<&str>) -> CliResult<ferry_api::Logs> {
    let view = store.load_run(RunId(run))?;
    let mut picked = Vec::new();
    for s in &view.stages {
        for t in &s.steps {
            let full = format!("{}/{}", s.name, t.name);
            let wanted = match step {
                None => t.log.is_some(),
                Some(q) => q == full || q == t.name || q == s.name,
            };
            if wanted {
                picked.push((s, t));
            }
        }
    }
    if picked.is_empty() {
        let names: Vec<String> = view
            .stages
            .iter()
            .flat_map(|s| {
                s.steps
                    .iter()
                    .map(move |t| format!("{}/{}", s.name, t.name))
            })
            .collect();
        return Err(CliError::not_found(match step {
            Some(q) => format!(
                "run {run} has no step `{q}`; its steps are: {}",
                names.join(", ")
            ),
            None => format!("run {run} has no step logs yet"),
        }));
    }
    let mut out = Vec::new();
    for (s, t) in picked {
        let text = match &t.log {
            Some(p) => std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| match e.kind() {
                    // The step ended before it wrote anything (a refused deploy).
                    std::io::ErrorKind::NotFound => String::new(),
                    _ => format!("(log `{p}` cannot be read: {e})"),
                }),
            None => String::new(),
        };
        out.push(ferry_api::StepLog {
            stage: s.name.clone(),
            step: t.name.clone(),
            status: t.status.to_string(),
            exit_code: t.exit_code,
            log: t.log.clone(),
            text,
            findings: if t.kind == ferry_core::StepKind::SecurityGate.label()
                && t.ended_at.is_some()
            {
                Some(store.findings(RunId(run))?)
            } else {
                None
            },
        });
    }
    let decisions: Vec<ferry_core::Event> = store
        .events(&ferry_engine::ports::EventFilter {
            run: Some(RunId(run)),
            ..Default::default()
        })?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| is_decision(e.kind))
        .collect();
    Ok(ferry_api::Logs {
        run,
        steps: out,
        decisions,
    })
}

pub fn logs(project: &Project, run: i64, step: Option<&str>, as_json: bool) -> CliResult<i32> {
    let store = project.open_store()?;
    let ferry_api::Logs {
        steps: out,
        decisions,
        ..
    } = build_logs(&store, run, step)?;
    if as_json {
        json(&ferry_api::Logs {
            run,
            steps: out,
            decisions,
        });
    } else {
        for l in out {
            let code = l
                .exit_code
                .map(|c| format!(", exit {c}"))
                .unwrap_or_default();
            line(format!("── {}/{} ({}{code}) ──", l.stage, l.step, l.status));
            crate::output::out(&l.text);
            if !l.text.is_empty() && !l.text.ends_with('\n') {
                line("");
            }
            if let Some(found) = &l.findings {
                line(format!("── {}/{} findings ──", l.stage, l.step));
                crate::output::out(&crate::findings::table(found));
            }
        }
        if !decisions.is_empty() {
            line("── decisions ──");
            for e in &decisions {
                line(format!("{} {}", when(e.at.millis()), e.message));
                if let Some(inputs) = decision_inputs(e) {
                    line(format!("    {inputs}"));
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Untrusted text (commit messages, authors) made safe for a terminal: control
/// characters (escape sequences) are dropped.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// The events that are decisions (promote, fail, roll back) rather than progress.
fn is_decision(k: ferry_core::EventKind) -> bool {
    use ferry_core::EventKind::*;
    matches!(
        k,
        GatePassed
            | GateFailed
            | AlarmStateChanged
            | ApprovalGranted
            | ApprovalRejected
            | ApprovalTimedOut
            | ApprovalRefused
            | ApprovalVoided
            | RollbackInitiated
            | RollbackSucceeded
            | RollbackFailed
            | IncidentOpened
            | RunFailed
            | RunSuperseded
            | RunResumed
            | StepRetried
            | RunHeld
            | WindowOpened
            | BreakGlassRequested
            | BreakGlassConfirmed
    )
}

/// The inputs a decision was taken on, in one line.
fn decision_inputs(e: &ferry_core::Event) -> Option<String> {
    let d = &e.data;
    match e.kind {
        ferry_core::EventKind::AlarmStateChanged if d.get("breachingDatapoints").is_some() => {
            Some(format!(
                "inputs: {} of the last {} datapoint(s) breaching (alarm at {} of {}; period {}, missing data: {})",
                d["breachingDatapoints"],
                d["consideredDatapoints"],
                d["datapointsToAlarm"],
                d["evaluationPeriods"],
                d["period"].as_str().unwrap_or("?"),
                d["missingData"].as_str().unwrap_or("?")
            ))
        }
        ferry_core::EventKind::GatePassed | ferry_core::EventKind::GateFailed
            if d["gate"] == "security" =>
        {
            let scanners: Vec<&str> = d["scanners"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            Some(format!(
                "inputs: {} finding(s) from {}{}; `ferry findings {}` lists them",
                d["findings"].as_u64().unwrap_or(0),
                if scanners.is_empty() {
                    "no scanner".to_string()
                } else {
                    scanners.join(", ")
                },
                d["sarif"]
                    .as_str()
                    .map(|p| format!(", SARIF written to {p}"))
                    .unwrap_or_default(),
                e.run.map_or(0, |r| r.0)
            ))
        }
        ferry_core::EventKind::GatePassed | ferry_core::EventKind::GateFailed => Some(format!(
            "inputs: coverage {}, minimum {}",
            d["coverage"], d["min"]
        )),
        _ => None,
    }
}

/// A decision taken on a run's approval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decided {
    pub run: i64,
    pub environment: String,
    /// `approved` or `rejected`.
    pub decision: &'static str,
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The valid approvals so far, in order.
    pub approvals: Vec<String>,
    /// How many distinct approvals the rule needs.
    pub required: u32,
    /// `1 of 2 approvals (alice); waiting for 1 more from bob or carol`.
    pub progress: String,
    /// Whether the gate is passed (the run goes on to deploy).
    pub complete: bool,
    #[serde(skip)]
    pub sha: String,
}

/// The rule and the request time of a run's approval of `env`, as its
/// `approval_requested` event recorded them (the rule the run was planned with).
pub fn approval_rule(
    store: &dyn Store,
    run: RunId,
    env: &str,
) -> CliResult<Option<(approval::Rule, ferry_core::Timestamp)>> {
    let events = store.events(&ferry_engine::ports::EventFilter {
        run: Some(run),
        environment: Some(env.to_string()),
        kind: Some(ferry_core::EventKind::ApprovalRequested),
        newest_first: true,
        limit: Some(1),
        ..Default::default()
    })?;
    Ok(events.into_iter().next().and_then(|(_, e)| {
        let rule = serde_json::from_value::<approval::Rule>(e.data.get("rule")?.clone()).ok()?;
        Some((rule, e.at))
    }))
}

/// Approves (`reject` is `None`) or rejects (`Some(reason)`) a run waiting for
/// approval, for `env` or the one environment it waits for: `ferry approve`/`reject`
/// and `POST /api/runs/{id}/approve|reject`. Conflict when the run is not waiting, its
/// approval timed out, this person already decided, or `seen_digest` (the artifact the
/// person reviewed) is not the run's; `exit::FORBIDDEN` when the environment's rule
/// does not let this person decide (not an approver, separation of duties).
pub fn decide_run(
    store: &dyn Store,
    run: i64,
    env: Option<&str>,
    by: &str,
    reject: Option<&str>,
    seen_digest: Option<&str>,
) -> CliResult<Decided> {
    let view = store.load_run(RunId(run))?;
    let waiting: Vec<&str> = view
        .stages
        .iter()
        .filter(|s| s.status == StageStatus::AwaitingApproval)
        .map(|s| s.name.as_str())
        .collect();
    let env = match (env, waiting.as_slice()) {
        (Some(e), _) => e.to_string(),
        (None, [one]) => one.to_string(),
        (None, _) => {
            let why = view
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            return Err(CliError::conflict(format!(
                "run {run} is not waiting for approval (it is {}{why}); `ferry status` lists the runs that are",
                view.status
            )));
        }
    };
    let now = SystemClock.now();
    let (rule, requested) = approval_rule(store, RunId(run), &env)?.unwrap_or_else(|| {
        (
            approval::Rule::from_config(&ferry_config::Approval::default()),
            now,
        )
    });
    let deadline = requested.plus(rule.timeout);
    if waiting.contains(&env.as_str()) && now >= deadline {
        return Err(CliError::conflict(format!(
            "run {run}'s approval for {env} timed out at {} (after {}); nothing will be deployed — start a new run",
            ferry_core::events::iso8601(deadline),
            human(rule.timeout)
        )));
    }
    let digest = view.artifact.as_ref().map(|a| a.digest.clone());
    if let Some(seen) = seen_digest
        && Some(seen) != digest.as_deref()
    {
        return Err(CliError::conflict(format!(
            "you reviewed artifact {seen}, but run {run}'s artifact is {}; review it again",
            digest.as_deref().unwrap_or("none")
        )));
    }
    let (_, triggered_by) = store.triggered(RunId(run))?;
    let parties = approval::Parties {
        author: view.commit.author.clone(),
        triggered_by,
    };
    if waiting.contains(&env.as_str())
        && let Err(refused) = approval::admit(&rule, &parties, by)
    {
        let so_far = store.approvals(RunId(run), &env)?;
        let (state, _) =
            approval::evaluate(&rule, &parties, digest.as_deref(), &so_far, requested, now);
        let approvals = match state {
            approval::ApprovalState::Waiting { approvals, .. } => approvals,
            _ => Vec::new(),
        };
        return Err(CliError::new(
            exit::FORBIDDEN,
            format!(
                "{refused}; run {run} has {}",
                approval::progress(&rule, &parties, &approvals)
            ),
        ));
    }
    let decision = Decision {
        approved: reject.is_none(),
        by: by.to_string(),
        reason: reject.map(str::to_string),
        at: now,
        digest: digest.clone(),
        void: None,
    };
    store.decide(RunId(run), &env, &decision)?;
    let decisions = store.approvals(RunId(run), &env)?;
    let (state, _) = approval::evaluate(
        &rule,
        &parties,
        digest.as_deref(),
        &decisions,
        requested,
        now,
    );
    let (approvals, complete) = match &state {
        approval::ApprovalState::Approved { by } => (by.clone(), true),
        approval::ApprovalState::Waiting { approvals, .. } => (approvals.clone(), false),
        _ => (Vec::new(), true),
    };
    let progress = match &state {
        approval::ApprovalState::Rejected { by, reason } => {
            format!("rejected by {by}: {reason}; nothing is deployed to {env}")
        }
        _ => approval::progress(&rule, &parties, &approvals),
    };
    Ok(Decided {
        run,
        environment: env,
        decision: if decision.approved {
            "approved"
        } else {
            "rejected"
        },
        by: by.to_string(),
        reason: decision.reason,
        approvals,
        required: rule.required,
        progress,
        complete,
        sha: view.commit.sha,
    })
}

pub fn decide(
    project: &Project,
    run: i64,
    env: Option<&str>,
    by: Option<&str>,
    approve: Option<&str>,
    as_json: bool,
) -> CliResult<i32> {
    // `approve` is None for approval, Some(reason) for rejection.
    let store = project.open_store()?;
    // No reconciling here: a run whose `ferry serve` was killed while it waited for this
    // decision keeps waiting, and the restarted server reads the decision (an approval
    // is never lost to a crash).
    let d = decide_run(&store, run, env, &user(by), approve, None)?;
    if as_json {
        json(&serde_json::json!({
            "run": run,
            "environment": d.environment,
            "decision": d.decision,
            "by": d.by,
            "approvals": d.approvals,
            "required": d.required,
            "progress": d.progress,
            "complete": d.complete,
        }));
    } else {
        line(format!(
            "{} run {run} ({}) for {} as {}: {}",
            d.decision,
            short_sha(&d.sha),
            d.environment,
            d.by,
            d.progress
        ));
    }
    Ok(exit::OK)
}
