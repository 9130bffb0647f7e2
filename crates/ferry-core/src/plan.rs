//! The plan of a run: the stages and steps a pipeline file expands to, in the order they
//! must happen. `build` first, then one stage per environment in file order; inside an
//! environment: approval (if any), deploy, tests, monitor window (if any).
//!
//! The order of this list *is* seed Property 1: the run state machine only ever starts
//! the first pending step of the first unfinished stage.

use crate::model::Suite;
use ferry_config::{Environment, Pipeline};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A step without `timeout:` may run this long before its process group is killed.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPlan {
    pub stages: Vec<StagePlan>,
    /// A hotfix (`ferry run --hotfix`): only the last environment, at least two
    /// approvals there, its monitor window doubled.
    pub hotfix: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Build,
    Environment,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePlan {
    /// `build`, or the environment's name.
    pub name: String,
    pub kind: StageKind,
    pub steps: Vec<StepPlan>,
}

impl StagePlan {
    /// The environment this stage deploys to, if it is an environment stage.
    pub fn environment(&self) -> Option<&str> {
        match self.kind {
            StageKind::Build => None,
            StageKind::Environment => Some(&self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepPlan {
    pub name: String,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepKind {
    /// A user command run by `/bin/sh -c` in the run's checkout.
    Command {
        run: String,
        timeout: Duration,
        junit: Vec<String>,
        coverage: Option<String>,
        env: BTreeMap<String, String>,
        suite: Suite,
    },
    /// The coverage gate (seed Property 3), computed from the coverage reports so far.
    CoverageGate { min: f64 },
    /// The security gate (seed §3.7, Property 5): `build.gates.security` scanned in the
    /// checkout; CRITICAL or HIGH findings (not allowlisted) fail the build.
    SecurityGate,
    /// Packs the artifact directory once; every environment gets these bytes.
    Package { path: String },
    /// Waits for `ferry approve` / `ferry reject` under the environment's rule (N of M
    /// approvers, separation of duties), or times out.
    Approval { rule: crate::approval::Rule },
    /// The environment's infrastructure (issue 5, seed §3.2), before `deploy`: opens the
    /// deployment, compares the environment's deployed version with the run's commit
    /// (the `ferry diff` comparison), records the verdict on the deployment, and runs
    /// `deploy` (the environment's `infrastructure.deploy`) in the checkout only when the
    /// change is meaningful or rollback-unsafe — or when nothing is deployed there yet.
    Infrastructure { deploy: String, timeout: Duration },
    /// Puts the run's artifact into the environment through its deployer.
    Deploy,
    /// Watches the listed alarms for a while; any ALARM fails the stage.
    Monitor {
        duration: Duration,
        interval: Duration,
        alarms: Vec<String>,
        /// Evaluated and recorded, but never fails the stage.
        advisory: bool,
        /// An alarm that never leaves INSUFFICIENT_DATA fails the window (fail closed).
        fail_closed: bool,
    },
}

impl StepKind {
    pub fn label(&self) -> &'static str {
        match self {
            StepKind::Command { .. } => "command",
            StepKind::CoverageGate { .. } => "gate",
            StepKind::SecurityGate => "security",
            StepKind::Package { .. } => "package",
            StepKind::Approval { .. } => "approval",
            StepKind::Infrastructure { .. } => "infrastructure",
            StepKind::Deploy => "deploy",
            StepKind::Monitor { .. } => "monitor",
        }
    }
}

/// Names of the steps ferry adds itself. User steps may not take them (the planner
/// suffixes a clash, so a user step called `deploy` still runs).
pub const STEP_COVERAGE: &str = "coverage";
pub const STEP_SECURITY: &str = "security";
pub const STEP_PACKAGE: &str = "artifact";
pub const STEP_APPROVAL: &str = "approval";
/// The name of the build stage (the first of every plan).
pub const STAGE_BUILD: &str = "build";
pub const STEP_DEPLOY: &str = "deploy";
pub const STEP_INFRASTRUCTURE: &str = "infrastructure";
pub const STEP_MONITOR: &str = "monitor";

impl RunPlan {
    pub fn new(p: &Pipeline) -> RunPlan {
        let mut stages = Vec::with_capacity(p.environments.len() + 1);

        let mut build = Vec::new();
        for s in &p.build.steps {
            build.push(command_step(s, Suite::Unit));
        }
        if let Some(min) = p.build.gates.coverage_min {
            build.push(ferry_step(
                &build,
                STEP_COVERAGE,
                StepKind::CoverageGate { min },
            ));
        }
        if p.build.gates.security.is_some() {
            build.push(ferry_step(&build, STEP_SECURITY, StepKind::SecurityGate));
        }
        if let Some(path) = &p.build.artifact {
            build.push(ferry_step(
                &build,
                STEP_PACKAGE,
                StepKind::Package { path: path.clone() },
            ));
        }
        stages.push(StagePlan {
            name: STAGE_BUILD.to_string(),
            kind: StageKind::Build,
            steps: build,
        });

        let infra = p.infrastructure.is_some();
        for env in &p.environments {
            stages.push(environment_stage(env, infra, false));
        }
        RunPlan {
            stages,
            hotfix: false,
        }
    }

    /// The plan of a hotfix (`ferry run --hotfix`): the build, then only the last
    /// environment (test and staging are skipped), which needs at least two distinct
    /// approvals and watches its monitor window twice as long. Refused with the fix when
    /// the file does not allow hotfixes.
    pub fn hotfix(p: &Pipeline) -> Result<RunPlan, String> {
        if !p.hotfix.allowed {
            return Err(format!(
                "pipeline `{}` does not allow hotfixes: add `hotfix: {{ allowed: true }}` to ferry.yml (a hotfix skips to the last environment and needs {} approvals there), or run without --hotfix",
                p.name,
                ferry_config::HOTFIX_APPROVALS
            ));
        }
        let Some(last) = p.environments.last() else {
            return Err("a hotfix needs an environment to deploy to; ferry.yml has none".into());
        };
        let mut plan = RunPlan::new(p);
        plan.stages.truncate(1);
        plan.stages
            .push(environment_stage(last, p.infrastructure.is_some(), true));
        plan.hotfix = true;
        Ok(plan)
    }

    /// The plan a stored run followed, read off its view (stage names, step names and
    /// kinds). Enough to end it; the commands themselves are not recorded there.
    pub fn from_view(view: &crate::run::RunView) -> RunPlan {
        let stages = view
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| StagePlan {
                name: s.name.clone(),
                kind: if i == 0 {
                    StageKind::Build
                } else {
                    StageKind::Environment
                },
                steps: s
                    .steps
                    .iter()
                    .map(|st| StepPlan {
                        name: st.name.clone(),
                        kind: match st.kind.as_str() {
                            "deploy" => StepKind::Deploy,
                            "infrastructure" => StepKind::Infrastructure {
                                deploy: String::new(),
                                timeout: DEFAULT_STEP_TIMEOUT,
                            },
                            "approval" => StepKind::Approval {
                                rule: crate::approval::Rule {
                                    timeout: Duration::ZERO,
                                    approvers: Vec::new(),
                                    required: 1,
                                    separation_of_duties: true,
                                    remind_before: None,
                                },
                            },
                            "gate" => StepKind::CoverageGate { min: 0.0 },
                            "security" => StepKind::SecurityGate,
                            "package" => StepKind::Package {
                                path: String::new(),
                            },
                            "monitor" => StepKind::Monitor {
                                duration: Duration::ZERO,
                                interval: Duration::ZERO,
                                alarms: Vec::new(),
                                advisory: false,
                                fail_closed: true,
                            },
                            _ => StepKind::Command {
                                run: String::new(),
                                timeout: DEFAULT_STEP_TIMEOUT,
                                junit: Vec::new(),
                                coverage: None,
                                env: BTreeMap::new(),
                                suite: Suite::Unit,
                            },
                        },
                    })
                    .collect(),
            })
            .collect();
        RunPlan {
            stages,
            hotfix: view.hotfix,
        }
    }

    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// An environment's stage; a hotfix's needs at least two approvals (with the
/// environment's rule, or the default one when it has none) and doubles the monitor window.
/// `infra`: the pipeline has an `infrastructure` section, so an environment with
/// `infrastructure.deploy` gets its infrastructure step before `deploy`.
fn environment_stage(env: &Environment, infra: bool, hotfix: bool) -> StagePlan {
    let mut steps = Vec::new();
    let approval = match (&env.approval, hotfix) {
        (Some(a), false) => Some(crate::approval::Rule::from_config(a)),
        (None, false) => None,
        (a, true) => {
            Some(crate::approval::Rule::from_config(&a.clone().unwrap_or_default()).for_hotfix())
        }
    };
    if let Some(rule) = approval {
        steps.push(StepPlan {
            name: STEP_APPROVAL.to_string(),
            kind: StepKind::Approval { rule },
        });
    }
    if let (true, Some(i)) = (infra, &env.infrastructure) {
        let kind = StepKind::Infrastructure {
            deploy: i.deploy.clone(),
            timeout: DEFAULT_STEP_TIMEOUT,
        };
        steps.push(ferry_step(&steps, STEP_INFRASTRUCTURE, kind));
    }
    steps.push(ferry_step(&steps, STEP_DEPLOY, StepKind::Deploy));
    for t in &env.tests {
        let suite = default_suite(&t.name);
        steps.push(command_step(t, suite));
    }
    if let Some(m) = &env.monitor {
        let kind = StepKind::Monitor {
            duration: if hotfix { m.duration * 2 } else { m.duration },
            interval: m.interval,
            alarms: m.alarms.clone(),
            advisory: m.advisory,
            fail_closed: m.insufficient_data == ferry_config::InsufficientData::Fail,
        };
        steps.push(ferry_step(&steps, STEP_MONITOR, kind));
    }
    StagePlan {
        name: env.name.clone(),
        kind: StageKind::Environment,
        steps,
    }
}

/// Environment tests feed `integrationTestsPassed` unless they say otherwise or are
/// named like end-to-end tests.
fn default_suite(name: &str) -> Suite {
    let n = name.to_ascii_lowercase();
    if n.contains("e2e") || n.contains("end-to-end") || n.contains("end_to_end") {
        Suite::E2e
    } else {
        Suite::Integration
    }
}

fn command_step(s: &ferry_config::Step, default: Suite) -> StepPlan {
    StepPlan {
        name: s.name.clone(),
        kind: StepKind::Command {
            run: s.run.clone(),
            timeout: s.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
            junit: s.reports.junit.clone(),
            coverage: s.reports.coverage.clone(),
            env: s.env.clone(),
            suite: s.suite.map(Suite::from).unwrap_or(default),
        },
    }
}

/// A step ferry adds, named `name` unless a user step already is, then `name#2`, …
fn ferry_step(existing: &[StepPlan], name: &str, kind: StepKind) -> StepPlan {
    let taken = |n: &str| existing.iter().any(|s| s.name == n);
    let mut chosen = name.to_string();
    let mut i = 2;
    while taken(&chosen) {
        chosen = format!("{name}#{i}");
        i += 1;
    }
    StepPlan { name: chosen, kind }
}
