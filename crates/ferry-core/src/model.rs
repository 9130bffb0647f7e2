//! The words of DESIGN.md as types: run, stage, step and deployment statuses, suites,
//! rollback levels, commits. Their string forms are what the database, the `--json`
//! output and the events carry, so they change only with a migration.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a string-backed enum with `as_str`, `parse`, `Display` and serde in
/// snake_case, so every status has exactly one spelling everywhere.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// A run's status, as DESIGN.md names them.
    RunStatus {
        Queued => "queued",
        Running => "running",
        AwaitingApproval => "awaiting_approval",
        Succeeded => "succeeded",
        Failed => "failed",
        Superseded => "superseded",
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Superseded | RunStatus::Cancelled
        )
    }
}

string_enum! {
    /// A stage's status. `skipped` is a stage that never started because an earlier one
    /// failed.
    StageStatus {
        Pending => "pending",
        Running => "running",
        AwaitingApproval => "awaiting_approval",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Cancelled => "cancelled",
    }
}

impl StageStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StageStatus::Succeeded
                | StageStatus::Failed
                | StageStatus::Skipped
                | StageStatus::Cancelled
        )
    }
}

string_enum! {
    /// A step's status.
    StepStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
        Cancelled => "cancelled",
    }
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }
}

string_enum! {
    /// The seed's `DeploymentStatus` (§4.1).
    DeploymentStatus {
        InProgress => "in_progress",
        Succeeded => "succeeded",
        Failed => "failed",
        RolledBack => "rolled_back",
    }
}

string_enum! {
    /// The seed's `RollbackLevel` (§4.1).
    RollbackLevel {
        Stage => "stage",
        Full => "full",
    }
}

string_enum! {
    /// Which of the seed's three test flags a test step feeds (§4.3).
    Suite {
        Unit => "unit",
        Integration => "integration",
        E2e => "e2e",
    }
}

impl From<ferry_config::Suite> for Suite {
    fn from(s: ferry_config::Suite) -> Self {
        match s {
            ferry_config::Suite::Unit => Suite::Unit,
            ferry_config::Suite::Integration => Suite::Integration,
            ferry_config::Suite::E2e => Suite::E2e,
        }
    }
}

/// The commit a run carries. Its text fields are untrusted (DESIGN invariant 7): they
/// reach steps only as environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub message: String,
    pub author: String,
}

impl Commit {
    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        short_sha(&self.sha)
    }
}

/// The first 12 characters of a commit id (or all of it when shorter).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A run's number in the store. Displayed and accepted on the command line as a plain
/// integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl RunId {
    /// The seed's `pipelineExecutionId`.
    pub fn execution_id(self) -> String {
        format!("run-{}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The artifact built once per run and promoted unchanged (its SHA-256 is verified
/// before every deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Where the bytes are (a path on the local runtime, an S3 URL on AWS).
    pub location: String,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_string() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
        }
        for s in StageStatus::ALL {
            assert_eq!(StageStatus::parse(s.as_str()), Some(*s));
        }
        for s in StepStatus::ALL {
            assert_eq!(StepStatus::parse(s.as_str()), Some(*s));
        }
        for s in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(RunStatus::parse("bogus"), None);
    }

    #[test]
    fn short_sha_handles_short_input() {
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(short_sha("0123456789abcdef"), "0123456789ab");
    }
}
