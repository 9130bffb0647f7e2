//! Properties of the DORA measures (`ferry_core::dora`): rates are in [0, 1], nothing
//! divides by zero, an empty window is "no data", the window is half-open, and what lies
//! outside it does not count.

use ferry_core::DeploymentStatus;
use ferry_core::Timestamp;
use ferry_core::dora::{self, DAY_MS, RollbackFacts, Sample, Window};
use ferry_core::rollback::{RollbackStatus, Trigger};
use proptest::prelude::*;

fn status() -> impl Strategy<Value = DeploymentStatus> {
    prop_oneof![
        Just(DeploymentStatus::InProgress),
        Just(DeploymentStatus::Succeeded),
        Just(DeploymentStatus::Failed),
        Just(DeploymentStatus::RolledBack),
    ]
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::DeployFailed),
        Just(Trigger::TestsFailed),
        Just(Trigger::MonitorFailed),
        Just(Trigger::Alarm { name: "p99".into() }),
        Just(Trigger::Manual {
            by: "ann".into(),
            accept_data_loss: false,
        }),
    ]
}

fn rollback_status() -> impl Strategy<Value = RollbackStatus> {
    prop_oneof![
        Just(RollbackStatus::InProgress),
        Just(RollbackStatus::Succeeded),
        Just(RollbackStatus::Failed),
        Just(RollbackStatus::NothingToDo),
    ]
}

/// Deployments spread over 100 days.
fn sample() -> impl Strategy<Value = Sample> {
    (
        0..100 * DAY_MS,
        0..DAY_MS,
        0..DAY_MS,
        status(),
        proptest::option::of((trigger(), rollback_status(), 0..DAY_MS, 0..DAY_MS)),
    )
        .prop_map(|(start, took, waited, status, rb)| Sample {
            start: Timestamp(start),
            end: (status != DeploymentStatus::InProgress).then_some(Timestamp(start + took)),
            status,
            queued: Timestamp(start - waited),
            rollback: rb.map(|(trigger, status, after, took)| RollbackFacts {
                trigger,
                status,
                started: Timestamp(start + after),
                ended: (status != RollbackStatus::InProgress)
                    .then_some(Timestamp(start + after + took)),
            }),
        })
}

fn window() -> impl Strategy<Value = Window> {
    (
        0..100 * DAY_MS,
        prop_oneof![Just(7), Just(30), Just(90), 0u32..120],
    )
        .prop_map(|(to, days)| Window::last_days(Timestamp(to), days))
}

proptest! {
    #[test]
    fn rates_are_fractions_and_counts_add_up(samples in proptest::collection::vec(sample(), 0..60), w in window()) {
        let m = dora::measure(&samples, w);
        for r in [m.change_failure_rate, m.success_rate].into_iter().flatten() {
            prop_assert!((0.0..=1.0).contains(&r), "rate {r}");
        }
        prop_assert!(m.succeeded <= m.deployments);
        prop_assert!(m.change_failures <= m.deployments);
        prop_assert!(m.unrestored <= m.change_failures);
        let expected = samples.iter().filter(|s| s.status != DeploymentStatus::InProgress && w.contains(s.start)).count();
        prop_assert_eq!(m.deployments, expected);
        if let (Some(med), Some(p90)) = (m.lead_time_median, m.lead_time_p90) {
            prop_assert!(med <= p90);
        }
        for v in [m.per_day, m.per_week].into_iter().flatten() {
            prop_assert!(v.is_finite() && v > 0.0);
        }
        // The days of the charts add up to the window's totals.
        let days = dora::daily(&samples, w);
        prop_assert_eq!(days.iter().map(|d| d.deployments).sum::<usize>(), m.deployments);
        prop_assert_eq!(days.iter().map(|d| d.change_failures).sum::<usize>(), m.change_failures);
    }

    #[test]
    fn no_deployment_is_no_data(samples in proptest::collection::vec(sample(), 0..30), w in window()) {
        // Keep only what lies outside the window (or has no outcome yet).
        let outside: Vec<Sample> = samples.into_iter().filter(|s| !w.contains(s.start) || s.status == DeploymentStatus::InProgress).collect();
        let m = dora::measure(&outside, w);
        prop_assert_eq!(m.deployments, 0);
        prop_assert_eq!(m.per_day, None);
        prop_assert_eq!(m.per_week, None);
        prop_assert_eq!(m.change_failure_rate, None);
        prop_assert_eq!(m.success_rate, None);
        prop_assert_eq!(m.lead_time_median, None);
        prop_assert_eq!(m.lead_time_p90, None);
        prop_assert_eq!(m.time_to_restore_median, None);
    }

    #[test]
    fn the_window_is_half_open(from in 0..50 * DAY_MS, days in 1u32..90) {
        let w = Window { from: Timestamp(from), to: Timestamp(from + i64::from(days) * DAY_MS) };
        let at = |t: i64| Sample { start: Timestamp(t), end: Some(Timestamp(t + 1)), status: DeploymentStatus::Succeeded, queued: Timestamp(t), rollback: None };
        let m = dora::measure(&[at(w.from.0), at(w.to.0), at(w.from.0 - 1)], w);
        prop_assert_eq!(m.deployments, 1);
        let expected = 1.0 / f64::from(days);
        prop_assert!((m.per_day.unwrap_or(0.0) - expected).abs() < 1e-9);
    }

    #[test]
    fn what_started_before_the_window_changes_nothing(samples in proptest::collection::vec(sample(), 0..40), w in window()) {
        let all = dora::measure(&samples, w);
        let kept: Vec<Sample> = samples.iter().filter(|s| s.start >= w.from).cloned().collect();
        prop_assert_eq!(dora::measure(&kept, w), all);
    }
}
