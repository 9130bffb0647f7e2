//! Events: the append-only record of every state change. Notifications, metrics and the
//! audit trail are derived from them, so their kinds and payloads are a contract.

use crate::model::RunId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind { $($variant),+ }
        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(EventKind::$variant => $text),+ } }
            pub fn parse(s: &str) -> Option<EventKind> { match s { $($text => Some(EventKind::$variant),)+ _ => None } }
        }
        impl std::fmt::Display for EventKind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

event_kinds! {
    RunQueued => "run_queued",
    RunStarted => "run_started",
    RunSucceeded => "run_succeeded",
    RunFailed => "run_failed",
    RunCancelled => "run_cancelled",
    RunSuperseded => "run_superseded",
    // A run whose ferry process died was taken up again by another one.
    RunResumed => "run_resumed",
    StageStarted => "stage_started",
    StageSucceeded => "stage_succeeded",
    StageFailed => "stage_failed",
    StageCancelled => "stage_cancelled",
    StepStarted => "step_started",
    StepSucceeded => "step_succeeded",
    StepFailed => "step_failed",
    // A step interrupted by a crash goes back to pending, to run again from the start.
    StepRetried => "step_retried",
    GatePassed => "gate_passed",
    GateFailed => "gate_failed",
    ArtifactBuilt => "artifact_built",
    DeploymentStarted => "deployment_started",
    DeploymentSucceeded => "deployment_succeeded",
    DeploymentFailed => "deployment_failed",
    // The infrastructure step's verdict (no change / meaningful / rollback-unsafe) and
    // whether it deploys the infrastructure.
    InfrastructureAssessed => "infrastructure_assessed",
    ApprovalRequested => "approval_requested",
    ApprovalGranted => "approval_granted",
    ApprovalRejected => "approval_rejected",
    ApprovalTimedOut => "approval_timed_out",
    ApprovalReminder => "approval_reminder",
    ApprovalVoided => "approval_voided",
    ApprovalRefused => "approval_refused",
    RollbackInitiated => "rollback_initiated",
    RollbackSucceeded => "rollback_succeeded",
    RollbackFailed => "rollback_failed",
    IncidentOpened => "incident_opened",
    IncidentResolved => "incident_resolved",
    AlarmStateChanged => "alarm_state_changed",
    // An SNS subscription to `ferry serve`'s alarm endpoint waits for a person to
    // confirm it (ferry fetches nothing itself).
    SubscriptionConfirmationRequired => "subscription_confirmation_required",
    // Deployment windows, freezes and break-glass overrides (`window.rs`).
    FreezeSet => "freeze_set",
    FreezeLifted => "freeze_lifted",
    RunHeld => "run_held",
    WindowOpened => "window_opened",
    BreakGlassRequested => "break_glass_requested",
    BreakGlassConfirmed => "break_glass_confirmed",
    // An alarm on the pipeline itself crossed into ALARM (`pipeline_alarm.rs`, seed §9.3):
    // more than 3 failed runs or more than 2 rollbacks in an hour. Once per crossing.
    PipelineAlarm => "pipeline_alarm",
}

/// One state change. `data` holds the kind's payload: for the seed's notification kinds
/// (§3.6.2) exactly the seed's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub kind: EventKind,
    pub run: Option<RunId>,
    pub environment: Option<String>,
    /// One line for people.
    pub message: String,
    pub data: serde_json::Value,
}

/// ISO-8601 UTC (`2026-01-27T10:00:00Z`) for a timestamp, as the seed's payloads carry it.
/// Implemented here (civil-from-days) so the core needs no date crate.
pub fn iso8601(t: Timestamp) -> String {
    let secs = t.secs();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso8601(Timestamp(1_769_508_000_000)),
            "2026-01-27T10:00:00Z"
        );
        assert_eq!(iso8601(Timestamp(951_782_400_000)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
    }
}
