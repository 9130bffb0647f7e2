//! The DORA measures the seed names as success metrics — deployment frequency, lead
//! time for changes, time to restore, change failure rate and deployment success rate —
//! computed over one environment's deployments in a window. Pure: the caller reads the
//! [`Sample`]s from the store and hands in the window.
//!
//! Definitions (also in the README):
//!
//! - **Window**: half-open `[from, to)` over a deployment's *start* time. Only finished
//!   deployments count (an `in_progress` one has no outcome yet).
//! - **Deployments**: the finished deployments of the environment in the window.
//! - **Deployment frequency**: deployments ÷ the window's length in days (and × 7 per
//!   week).
//! - **Lead time for changes**: for each deployment in the window that succeeded, from
//!   the moment the change reached ferry (its run was queued — ferry records no commit
//!   time) to the end of that deployment. Median and 90th percentile (nearest rank).
//! - **Change failure rate**: deployments that failed or were rolled back ÷ deployments.
//! - **Deployment success rate**: deployments whose deployment succeeded ÷ deployments.
//!   A deployment rolled back later by an alarm or by hand had succeeded, so it counts
//!   both as a success and as a change failure; one that failed (or whose tests or
//!   monitor window failed) does not.
//! - **Time to restore**: for each change failure in the window, from the failure (the
//!   start of its rollback, else the end of the deployment) to the environment being
//!   good again: its rollback succeeding, else the end of the next deployment of the
//!   environment that succeeded (even after the window's end). Median over the failures
//!   that were restored; the others are counted as `unrestored`.
//!
//! With no deployment in the window every measure is `None` ("no data"), never 0.

use crate::model::DeploymentStatus;
use crate::rollback::{RollbackStatus, Trigger};
use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// What the measures need of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub status: DeploymentStatus,
    /// When the change reached ferry: its run's creation.
    pub queued: Timestamp,
    /// The deployment's rollback, when one was started.
    pub rollback: Option<RollbackFacts>,
}

/// What the measures need of a deployment's rollback.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackFacts {
    pub trigger: Trigger,
    pub status: RollbackStatus,
    pub started: Timestamp,
    pub ended: Option<Timestamp>,
}

impl Sample {
    /// Finished: it has an outcome.
    pub fn finished(&self) -> bool {
        self.status != DeploymentStatus::InProgress
    }
    /// A change failure: the deployment failed or was rolled back.
    pub fn change_failed(&self) -> bool {
        matches!(
            self.status,
            DeploymentStatus::Failed | DeploymentStatus::RolledBack
        ) || self.rollback.is_some()
    }
    /// The deployment itself succeeded (it may have been rolled back later, by an alarm
    /// or by hand).
    pub fn deploy_succeeded(&self) -> bool {
        match self.status {
            DeploymentStatus::Succeeded => true,
            DeploymentStatus::RolledBack => self.rollback.as_ref().is_some_and(|r| {
                matches!(r.trigger, Trigger::Alarm { .. } | Trigger::Manual { .. })
            }),
            _ => false,
        }
    }
    fn failed_at(&self) -> Timestamp {
        self.rollback
            .as_ref()
            .map(|r| r.started)
            .or(self.end)
            .unwrap_or(self.start)
    }
}

/// A half-open window `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    /// The `days` days before `now`.
    pub fn last_days(now: Timestamp, days: u32) -> Window {
        Window {
            from: Timestamp(now.0.saturating_sub(i64::from(days) * DAY_MS)),
            to: now,
        }
    }
    /// Whether `t` is in the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
    /// Its length in days (0 for an empty or inverted window).
    pub fn days(&self) -> f64 {
        (self.to.0.saturating_sub(self.from.0)).max(0) as f64 / DAY_MS as f64
    }
}

/// The measures over one window. Every `Option` is `None` when there is no data. In
/// JSON the durations are milliseconds (`lead_time_median_ms`, …) and the window's
/// bounds milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measures {
    pub window: Window,
    /// Finished deployments in the window.
    pub deployments: usize,
    pub succeeded: usize,
    pub change_failures: usize,
    pub per_day: Option<f64>,
    pub per_week: Option<f64>,
    #[serde(serialize_with = "ms_opt", rename = "lead_time_median_ms")]
    pub lead_time_median: Option<Duration>,
    #[serde(serialize_with = "ms_opt", rename = "lead_time_p90_ms")]
    pub lead_time_p90: Option<Duration>,
    #[serde(serialize_with = "ms_opt", rename = "time_to_restore_median_ms")]
    pub time_to_restore_median: Option<Duration>,
    /// Change failures in the window with no restore yet.
    pub unrestored: usize,
    pub change_failure_rate: Option<f64>,
    pub success_rate: Option<f64>,
}

fn ms_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// The `p`-th quantile (0 < p ≤ 1) of sorted values by nearest rank; `None` when empty.
pub fn nearest_rank(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// The measures of `samples` (one environment's deployments, any order; those outside
/// the window only serve as "the next good deployment" of a restore) over `window`.
pub fn measure(samples: &[Sample], window: Window) -> Measures {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.finished() && window.contains(s.start))
        .collect();
    let n = inside.len();
    let succeeded = inside.iter().filter(|s| s.deploy_succeeded()).count();
    let failures: Vec<&&Sample> = inside.iter().filter(|s| s.change_failed()).collect();
    let rate = |k: usize| (n > 0).then(|| k as f64 / n as f64);
    let days = window.days();
    let per_day = (n > 0 && days > 0.0).then(|| n as f64 / days);

    let mut leads: Vec<Duration> = inside
        .iter()
        .filter(|s| s.deploy_succeeded())
        .filter_map(|s| s.end.map(|e| e.since(s.queued)))
        .collect();
    leads.sort();

    // The ends of the deployments that succeeded, in order, for "the next good one".
    let mut goods: Vec<(Timestamp, Timestamp)> = samples
        .iter()
        .filter(|s| s.status == DeploymentStatus::Succeeded)
        .filter_map(|s| s.end.map(|e| (s.start, e)))
        .collect();
    goods.sort();
    let mut restores: Vec<Duration> = Vec::new();
    let mut unrestored = 0;
    for f in &failures {
        let at = f.failed_at();
        let by_rollback = f
            .rollback
            .as_ref()
            .filter(|r| r.status == RollbackStatus::Succeeded)
            .and_then(|r| r.ended);
        // The first good deployment started after this one (a binary search: the goods
        // are in start order) that ended at or after the failure.
        let next_good = || {
            let first = goods.partition_point(|(start, _)| *start <= f.start);
            goods
                .get(first..)
                .unwrap_or_default()
                .iter()
                .find(|(_, end)| *end >= at)
                .map(|(_, end)| *end)
        };
        match by_rollback.or_else(next_good) {
            Some(t) => restores.push(t.since(at)),
            None => unrestored += 1,
        }
    }
    restores.sort();

    Measures {
        window,
        deployments: n,
        succeeded,
        change_failures: failures.len(),
        per_day,
        per_week: per_day.map(|d| d * 7.0),
        lead_time_median: nearest_rank(&leads, 0.5),
        lead_time_p90: nearest_rank(&leads, 0.9),
        time_to_restore_median: nearest_rank(&restores, 0.5),
        unrestored,
        change_failure_rate: rate(failures.len()),
        success_rate: rate(succeeded),
    }
}

/// One day of a window, for charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// The day's first instant (`window.from` + k days).
    pub start: Timestamp,
    pub deployments: usize,
    pub change_failures: usize,
}

/// The window cut in days from `window.from` (the last one may be shorter), with the
/// finished deployments and change failures that started in each. The counts add up to
/// [`measure`]'s.
pub fn daily(samples: &[Sample], window: Window) -> Vec<Day> {
    let span = window.to.0.saturating_sub(window.from.0).max(0);
    let count = usize::try_from((span + DAY_MS - 1) / DAY_MS).unwrap_or(0);
    let mut days: Vec<Day> = (0..count)
        .map(|k| Day {
            start: Timestamp(window.from.0 + (k as i64) * DAY_MS),
            deployments: 0,
            change_failures: 0,
        })
        .collect();
    for s in samples
        .iter()
        .filter(|s| s.finished() && window.contains(s.start))
    {
        let k = usize::try_from((s.start.0 - window.from.0) / DAY_MS).unwrap_or(0);
        if let Some(d) = days.get_mut(k) {
            d.deployments += 1;
            if s.change_failed() {
                d.change_failures += 1;
            }
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(start: i64, end: i64, queued: i64) -> Sample {
        Sample {
            start: Timestamp(start),
            end: Some(Timestamp(end)),
            status: DeploymentStatus::Succeeded,
            queued: Timestamp(queued),
            rollback: None,
        }
    }

    #[test]
    fn empty_is_no_data() {
        let m = measure(&[], Window::last_days(Timestamp(30 * DAY_MS), 30));
        assert_eq!(m.deployments, 0);
        assert_eq!(m.per_day, None);
        assert_eq!(m.change_failure_rate, None);
        assert_eq!(m.success_rate, None);
        assert_eq!(m.lead_time_median, None);
        assert_eq!(m.time_to_restore_median, None);
    }

    #[test]
    fn a_failure_restored_by_the_next_good_deployment() {
        let mut bad = ok(1000, 2000, 500);
        bad.status = DeploymentStatus::Failed;
        let samples = [ok(0, 100, 0), bad, ok(5000, 6000, 4000)];
        let m = measure(
            &samples,
            Window {
                from: Timestamp(0),
                to: Timestamp(DAY_MS),
            },
        );
        assert_eq!(m.deployments, 3);
        assert_eq!(m.change_failures, 1);
        assert_eq!(m.succeeded, 2);
        assert_eq!(m.time_to_restore_median, Some(Duration::from_millis(4000)));
        assert_eq!(m.lead_time_median, Some(Duration::from_millis(100)));
        assert_eq!(m.lead_time_p90, Some(Duration::from_millis(2000)));
        assert_eq!(m.per_day, Some(3.0));
    }

    #[test]
    fn an_alarm_rollback_is_a_success_and_a_change_failure() {
        let mut d = ok(0, 100, 0);
        d.status = DeploymentStatus::RolledBack;
        d.rollback = Some(RollbackFacts {
            trigger: Trigger::Alarm { name: "p99".into() },
            status: RollbackStatus::Succeeded,
            started: Timestamp(1000),
            ended: Some(Timestamp(1600)),
        });
        let m = measure(
            &[d],
            Window {
                from: Timestamp(0),
                to: Timestamp(DAY_MS),
            },
        );
        assert_eq!(m.success_rate, Some(1.0));
        assert_eq!(m.change_failure_rate, Some(1.0));
        assert_eq!(m.time_to_restore_median, Some(Duration::from_millis(600)));
    }
}
