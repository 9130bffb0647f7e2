//! What a transition changes: the core returns these, the store applies one batch in one
//! transaction (DESIGN invariant 1: the intent is committed before the side effect starts,
//! the outcome after it ends). Property 6 is stated over them: applying a run's changes
//! to the store yields exactly the core's view of the run.

use crate::alarm::AlarmState;
use crate::deployment::DeploymentRecord;
use crate::events::Event;
use crate::model::{
    Artifact, DeploymentStatus, RollbackLevel, RunStatus, StageStatus, StepStatus, Suite,
};
use crate::time::Timestamp;
use ferry_reports::TestReport;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Run {
        status: RunStatus,
        reason: Option<String>,
        at: Timestamp,
    },
    Stage {
        stage: usize,
        status: StageStatus,
        at: Timestamp,
    },
    Step {
        stage: usize,
        step: usize,
        status: StepStatus,
        at: Timestamp,
        /// Set when the step starts.
        log: Option<String>,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
    TestResults {
        stage: usize,
        step: usize,
        suite: Suite,
        report: TestReport,
        coverage: Option<f64>,
    },
    Artifact(Artifact),
    /// Inserts the record (status `in_progress`).
    DeploymentStarted(Box<DeploymentRecord>),
    DeploymentFinished {
        deployment_id: String,
        status: DeploymentStatus,
        end_time: Timestamp,
        unit_tests_passed: bool,
        integration_tests_passed: bool,
        e2e_tests_passed: bool,
        coverage_percentage: f64,
    },
    /// What the environment's infrastructure step decided for an open deployment,
    /// recorded before its deploy command runs: whether the infrastructure is deployed
    /// (`infrastructureChanged`) and whether the change is rollback-unsafe, with why.
    DeploymentInfrastructure {
        deployment_id: String,
        infrastructure_changed: bool,
        rollback_unsafe: bool,
        rollback_unsafe_reason: Option<String>,
    },
    /// A deployment taken back: status `rolled_back`, with the seed's rollback fields.
    DeploymentRolledBack {
        deployment_id: String,
        reason: String,
        level: RollbackLevel,
        at: Timestamp,
    },
    /// Both rollback levels failed: an incident, and the environment held for a person
    /// until `ferry resolve`.
    IncidentOpened {
        environment: String,
        deployment_id: String,
        reason: String,
        at: Timestamp,
    },
    /// An alarm's state as last evaluated or pushed.
    AlarmState {
        alarm: String,
        state: AlarmState,
        reason: String,
        at: Timestamp,
    },
    /// The decisions recorded for the run's approval of `environment` no longer count
    /// (superseded, cancelled, artifact changed); they stay on record with the reason.
    ApprovalsVoided {
        environment: String,
        reason: String,
        at: Timestamp,
    },
    Event(Event),
}

impl Change {
    /// The change's kind, as error messages name it.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Run { .. } => "run",
            Change::Stage { .. } => "stage",
            Change::Step { .. } => "step",
            Change::TestResults { .. } => "test_results",
            Change::Artifact(_) => "artifact",
            Change::DeploymentStarted(_) => "deployment_started",
            Change::DeploymentFinished { .. } => "deployment_finished",
            Change::DeploymentInfrastructure { .. } => "deployment_infrastructure",
            Change::DeploymentRolledBack { .. } => "deployment_rolled_back",
            Change::IncidentOpened { .. } => "incident_opened",
            Change::AlarmState { .. } => "alarm_state",
            Change::ApprovalsVoided { .. } => "approvals_voided",
            Change::Event(_) => "event",
        }
    }
}
