//! Gates: verdicts computed from what steps observed. Verdicts are ordered so that
//! combining gates is `max()` ("worst wins").

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed(String),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Passed)
    }
}

/// Seed Property 3: below `min` percent of lines covered, the run fails before any
/// deployment. No coverage report at all also fails: a gate that cannot be evaluated
/// does not pass.
pub fn coverage(observed: Option<f64>, min: f64) -> Verdict {
    match observed {
        None => Verdict::Failed(format!(
            "coverage gate needs a coverage report (coverage_min is {min}%), but no build step wrote one; add `reports: {{ coverage: PATH }}` to the step that measures coverage"
        )),
        Some(c) if c.is_nan() => Verdict::Failed("coverage is not a number".to_string()),
        Some(c) if c + 1e-9 < min => Verdict::Failed(format!(
            "coverage {} is below the minimum of {}",
            percent(c),
            percent(min)
        )),
        Some(_) => Verdict::Passed,
    }
}

/// `85.3%`, `80%`.
pub fn percent(p: f64) -> String {
    if (p - p.round()).abs() < 0.05 {
        format!("{:.0}%", p.round())
    } else {
        format!("{p:.1}%")
    }
}

/// A command step's verdict: its exit status and every test report it wrote must agree
/// that it passed. When several things failed, the reason names all of them, most
/// telling first: the failing tests, then report problems, then the exit status.
pub fn command(
    exit: &ExitObservation,
    tests: Option<&ferry_reports::TestReport>,
    report_problems: &[String],
) -> Verdict {
    let mut reasons: Vec<String> = Vec::new();
    // A step that could not run at all (not executable, not found, not started): that
    // is the cause, and missing reports are only its consequence.
    let could_not_run = match exit {
        ExitObservation::Code(c @ (126 | 127)) => Some(format!("exited with status {c}")),
        ExitObservation::NotStarted(why) => Some(format!("could not start: {why}")),
        _ => None,
    };
    if let Some(r) = &could_not_run {
        reasons.push(r.clone());
    }
    if let Some(t) = tests
        && !t.ok()
    {
        let names: Vec<&str> = t.failures.iter().take(3).map(|f| f.name.as_str()).collect();
        let more = t.failures.len().saturating_sub(3);
        let mut why = format!(
            "{} of {} tests failed or errored: {}",
            t.failed + t.errored,
            t.total,
            names.join(", ")
        );
        if more > 0 {
            why.push_str(&format!(" and {more} more"));
        }
        reasons.push(why);
    }
    reasons.extend(report_problems.iter().cloned());
    match exit {
        _ if could_not_run.is_some() => {}
        ExitObservation::Code(0) => {}
        ExitObservation::Code(c) => reasons.push(format!("exited with status {c}")),
        ExitObservation::TimedOut { after_secs } => reasons.push(format!(
            "timed out after {after_secs}s; its process group was killed"
        )),
        ExitObservation::Signal(s) => reasons.push(format!("killed by signal {s}")),
        ExitObservation::NotStarted(why) => reasons.push(format!("could not start: {why}")),
    }
    if reasons.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(reasons.join("; "))
    }
}

/// How a step's process ended, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum ExitObservation {
    Code(i32),
    Signal(i32),
    TimedOut { after_secs: u64 },
    NotStarted(String),
}

impl ExitObservation {
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitObservation::Code(c) => Some(*c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Seed Property 3, over every integer percentage and thresholds around 80.
        #[test]
        fn coverage_gate_blocks_exactly_below_the_threshold(c in 0u32..=100, min in 0u32..=100) {
            let v = coverage(Some(f64::from(c)), f64::from(min));
            prop_assert_eq!(v.passed(), c >= min);
        }

        #[test]
        fn coverage_gate_with_fractional_values(c in 0.0f64..100.0, min in 0.0f64..100.0) {
            let v = coverage(Some(c), min);
            if c >= min { prop_assert!(v.passed()); }
            if c + 1e-6 < min { prop_assert!(!v.passed()); }
        }
    }

    #[test]
    fn missing_coverage_fails_the_gate() {
        assert!(!coverage(None, 80.0).passed());
    }

    #[test]
    fn worst_verdict_wins() {
        let t = ferry_reports::TestReport {
            total: 3,
            passed: 2,
            failed: 1,
            ..Default::default()
        };
        assert!(!command(&ExitObservation::Code(0), Some(&t), &[]).passed());
        assert!(!command(&ExitObservation::Code(1), None, &[]).passed());
        assert!(!command(&ExitObservation::Code(0), None, &["report missing".into()]).passed());
        assert!(command(&ExitObservation::Code(0), None, &[]).passed());
    }

    #[test]
    fn failing_tests_are_named_before_the_exit_status() {
        let t = ferry_reports::TestReport {
            total: 2,
            passed: 1,
            failed: 1,
            failures: vec![ferry_reports::FailedTest {
                name: "checkout_total_is_correct".into(),
                suite: "s".into(),
                error: "e".into(),
                stack_trace: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            command(&ExitObservation::Code(1), Some(&t), &[]),
            Verdict::Failed(
                "1 of 2 tests failed or errored: checkout_total_is_correct; exited with status 1"
                    .into()
            )
        );
    }
}
