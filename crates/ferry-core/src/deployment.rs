//! The seed's `DeploymentRecord` (§3.5.1, §4.1): one version put into one environment.

use crate::model::{DeploymentStatus, RollbackLevel, RunId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Records expire 90 days after they start (seed §3.5.1 `expiresAt`).
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Every field of the seed's record, under the seed's (camelCase) names, plus what ferry
/// needs to promote and roll back the same bytes: run id, artifact digest, previous
/// version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// `{environment}#{startTime}`.
    pub deployment_id: String,
    pub environment: String,
    /// The commit SHA deployed.
    pub version: String,
    pub status: DeploymentStatus,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub infrastructure_changed: bool,
    pub commit_message: String,
    pub commit_author: String,
    pub pipeline_execution_id: String,
    pub unit_tests_passed: bool,
    pub integration_tests_passed: bool,
    pub e2e_tests_passed: bool,
    pub coverage_percentage: f64,
    pub rollback_reason: Option<String>,
    pub rollback_level: Option<RollbackLevel>,
    pub rollback_time: Option<i64>,
    pub artifact_location: String,
    /// Seconds since the epoch (a TTL attribute, as DynamoDB wants it).
    pub expires_at: i64,
    pub run_id: RunId,
    /// `sha256:<hex>` of the artifact.
    pub artifact_digest: String,
    /// The version that was running in the environment before this deployment.
    pub previous_version: Option<String>,
    /// `sha256:<hex>` of the `ferry.yml` that deployed it (part of its release set).
    pub config_digest: Option<String>,
    /// Infrastructure template path → `sha256:<hex>` (part of its release set).
    #[serde(default)]
    pub template_digests: std::collections::BTreeMap<String, String>,
    /// The infrastructure change this deployment carries is rollback-unsafe (seed §13.1
    /// question 3): it replaces or removes a stateful resource, or changes a migration.
    /// The rollback orchestrator never takes such a deployment back by itself.
    #[serde(default)]
    pub rollback_unsafe: bool,
    /// Why it is rollback-unsafe: the stateful resources and migration files, `; `-joined.
    #[serde(default)]
    pub rollback_unsafe_reason: Option<String>,
}

/// The seed's deployment id: `{environment}#{timestamp}`.
pub fn deployment_id(environment: &str, start: Timestamp) -> String {
    format!("{environment}#{}", start.millis())
}

/// `expiresAt` for a record that starts at `start`: 90 days later, in seconds.
pub fn expires_at(start: Timestamp) -> i64 {
    start.plus(RETENTION).secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_ninety_days_in_seconds() {
        let start = Timestamp(1_700_000_000_123);
        assert_eq!(expires_at(start), 1_700_000_000 + 90 * 86_400);
        assert_eq!(deployment_id("staging", start), "staging#1700000000123");
    }
}
