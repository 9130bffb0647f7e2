//! What ferry promises its users and their scripts: exit codes and the shapes of
//! `--json` output. Kept apart from the domain types so that a refactoring of the core
//! cannot change them by accident.

pub mod exit {
    //! Exit codes of the `ferry` binary. Every command documents which it uses.

    /// Success (for `ferry run`: the run succeeded).
    pub const OK: i32 = 0;
    /// The run ended `failed` (a step, gate or deployment failed, the approval was
    /// rejected or timed out) or `cancelled`.
    pub const RUN_FAILED: i32 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: i32 = 2;
    /// `ferry.yml` is missing or invalid.
    pub const CONFIG: i32 = 3;
    /// The state database cannot be used (locked, read-only, newer schema, corrupt).
    pub const STATE: i32 = 4;
    /// The thing named does not exist (a run, a step, a commit, an environment).
    pub const NOT_FOUND: i32 = 5;
    /// The request conflicts with the current state (approving a run that is not
    /// waiting for approval or whose approval timed out, a decision already taken,
    /// rolling back a rollback-unsafe deployment without `--accept-data-loss`).
    pub const CONFLICT: i32 = 6;
    /// The machine refused something ferry needs (no git repository, a folder that
    /// cannot be written).
    pub const ENVIRONMENT: i32 = 7;
    /// The person may not do this: the environment's approval rule does not let them
    /// decide (not among `approvers`, or excluded by separation of duties as the
    /// commit's author or the run's trigger).
    pub const FORBIDDEN: i32 = 8;
    /// A bug in ferry. Please report it.
    pub const INTERNAL: i32 = 70;
}

use ferry_core::{DeploymentRecord, RunStatus};
use serde::{Deserialize, Serialize};

/// `ferry status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pipeline: String,
    pub environments: Vec<EnvironmentStatus>,
    /// Runs not yet finished.
    pub runs: Vec<RunSummary>,
    /// The alarms on the pipeline itself (seed §9.3): `ferry.failed_runs` (more than 3
    /// failed runs in an hour) and `ferry.rollbacks` (more than 2 rollbacks in an hour).
    #[serde(default)]
    pub pipeline_alarms: Vec<PipelineAlarm>,
    /// The notification outbox per channel (deliveries pending, dead letters).
    #[serde(default)]
    pub notifications: Vec<ChannelOutbox>,
    /// Where deployments, last known good versions, incidents and freezes were read
    /// when not from the project's own store (absent): the DynamoDB table of the AWS
    /// runtime, when `FERRY_DEPLOYMENTS_TABLE` is set. Runs in progress are always the
    /// project's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSource>,
}

/// A shared ledger read instead of the project's own store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSource {
    /// `dynamodb`.
    pub kind: String,
    /// The table's name.
    pub name: String,
}

impl std::fmt::Display for LedgerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind.as_str() {
            "dynamodb" => write!(f, "DynamoDB table {}", self.name),
            k => write!(f, "{k} {}", self.name),
        }
    }
}

/// One alarm on the pipeline itself, as last evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineAlarm {
    pub name: String,
    /// `OK` or `ALARM`; `UNKNOWN` when it could not be read (on AWS: CloudWatch
    /// refused), with the error as `reason`.
    pub state: String,
    /// What was counted (`4 failed runs in the last 60 minutes (threshold: more than 3)`);
    /// `null` before the first evaluation.
    pub reason: Option<String>,
    /// When it last changed state (ms since the epoch).
    pub since: Option<i64>,
}

/// One notification channel's outbox: `ferry status`, `GET /api/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOutbox {
    /// The channel's id (`name:` in ferry.yml, or `<kind>-<hash>`).
    pub channel: String,
    /// Not delivered yet, being retried.
    pub pending: u64,
    /// Dead letters: every attempt of a round failed (`ferry notify retry`).
    pub dead: u64,
    pub delivered: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    pub name: String,
    /// What the deployer reports running now (`null` when nothing is deployed).
    pub version: Option<String>,
    /// The status of the deployment that put `version` there (`succeeded`,
    /// `in_progress`, `failed`…), or `never_deployed`.
    pub status: String,
    /// The newest deployment, when it is not the one running (it failed or was rolled
    /// back).
    pub latest: Option<LatestDeployment>,
    /// When the running version was deployed (ms since the epoch).
    pub since: Option<i64>,
    pub run: Option<i64>,
    /// The health URL of a release deployment, if configured.
    pub url: Option<String>,
    /// The newest succeeded deployment's version, when it differs from what runs.
    pub last_known_good: Option<String>,
    /// The open incident holding the environment for a person (no automatic deployment
    /// until `ferry resolve`), if any.
    pub incident: Option<IncidentSummary>,
    /// The freezes not over yet (`ferry freeze`), oldest first.
    pub freezes: Vec<ferry_core::window::Freeze>,
    /// Whether a run could deploy here now (windows and freezes; overrides are per run),
    /// when the environment has `windows` or a freeze; `null` otherwise.
    pub gate: Option<ferry_core::window::Gate>,
    /// The running version's deployment deployed infrastructure (its infrastructure
    /// step ran `infrastructure.deploy`).
    #[serde(default)]
    pub infrastructure_changed: bool,
    /// Why the running version's deployment is rollback-unsafe (never rolled back
    /// automatically), when it is.
    #[serde(default)]
    pub rollback_unsafe: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatestDeployment {
    pub version: String,
    pub status: String,
    /// Why it was rolled back, if it was.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentSummary {
    pub id: i64,
    pub reason: String,
    pub opened_at: i64,
    pub deployment_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub commit: String,
    pub message: String,
    pub status: RunStatus,
    /// The stage the run is in (or ended in).
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// A hotfix run (`ferry run --hotfix`).
    pub hotfix: bool,
    /// The approval the run waits for, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalProgress>,
    /// Set while the run is held before deploying by a deployment window or a freeze
    /// (`ferry status` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldRun>,
    /// The security gate's findings per severity, once the gate has run (`ferry status`
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<ferry_core::findings::FindingCounts>,
}

/// Where a run's approval of one environment stands (`ferry status`,
/// `GET /api/runs/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalProgress {
    pub environment: String,
    /// Distinct approvals the rule needs.
    pub required: u32,
    /// Who may decide (empty: anyone).
    pub approvers: Vec<String>,
    /// The valid approvals so far, in order.
    pub approvals: Vec<String>,
    /// `1 of 2 approvals (alice); waiting for 1 more from bob or carol`.
    pub progress: String,
    /// When the gate times out (ms since the epoch).
    pub expires_at: i64,
    /// Every decision recorded, voided and refused ones included.
    pub decisions: Vec<ferry_core::approval::Decision>,
}

/// A run waiting at an environment's gate (deployment window or freeze).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldRun {
    pub environment: String,
    /// `window` or `freeze`.
    pub cause: String,
    pub reason: String,
    /// When it goes on by itself (ISO-8601 UTC), `null` when only a lifted freeze or a
    /// confirmed override lets it go on.
    pub opens_at: Option<String>,
    /// Break-glass overrides requested for it there (a confirmed one lets it through).
    pub overrides: Vec<ferry_core::window::BreakGlass>,
}

/// `ferry freeze --json` / `ferry unfreeze --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Freezes {
    pub freezes: Vec<ferry_core::window::Freeze>,
}

/// `ferry history --json`.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub runs: Vec<RunSummary>,
    pub deployments: Vec<DeploymentRecord>,
    /// Rollbacks, newest first, with what was tried and seen.
    pub rollbacks: Vec<ferry_core::rollback::RollbackRecord>,
    /// Where deployments and rollbacks were read when not from the project's own store
    /// (absent): see [`Status::ledger`]. Runs are always the project's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSource>,
}

/// `ferry logs --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Logs {
    pub run: i64,
    pub steps: Vec<StepLog>,
    /// The run's decisions with their inputs: gates, alarm state changes (datapoints,
    /// thresholds), approvals, rollbacks, incidents.
    pub decisions: Vec<ferry_core::Event>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub stage: String,
    pub step: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub log: Option<String>,
    pub text: String,
    /// A security gate step's findings, once it has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<ferry_core::findings::FindingRecord>>,
}

/// A run's security findings: `ferry findings --json` and `GET /api/runs/{id}/findings`.
#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub run: i64,
    /// Whether the run's security gate has run (its findings are final).
    pub scanned: bool,
    /// Per severity, allowlisted ones apart.
    pub counts: ferry_core::findings::FindingCounts,
    /// Every finding, allowlisted ones included, in the scanners' order.
    pub findings: Vec<ferry_core::findings::FindingRecord>,
}

/// Any command's error under `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Error {
    pub error: String,
    pub exit_code: i32,
}

/// `ferry validate --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub file: String,
    pub valid: bool,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}
