//! The gate's verdict over findings, after the allowlist (seed §3.7.2, Property 5): it
//! blocks exactly when a finding that is not allowed is CRITICAL or HIGH, or when a
//! scanner could not give its findings (fail closed). MODERATE warns, LOW informs.

use serde::Serialize;

use crate::finding::{Finding, Severity};

/// How many findings of each severity, not counting allowed ones; and how many were
/// allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// CRITICAL findings not allowed.
    pub critical: usize,
    /// HIGH findings not allowed.
    pub high: usize,
    /// MODERATE findings not allowed.
    pub moderate: usize,
    /// LOW findings not allowed.
    pub low: usize,
    /// Findings of any severity an allowlist entry covers.
    pub allowed: usize,
}

/// The gate's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the run stops before any deployment.
    pub blocked: bool,
    /// Findings per severity.
    pub counts: Counts,
    /// CRITICAL and HIGH findings not allowed, most severe first.
    pub blocking: Vec<Finding>,
    /// MODERATE findings not allowed.
    pub warnings: Vec<Finding>,
    /// LOW findings not allowed.
    pub infos: Vec<Finding>,
    /// Allowed findings, with their justification in `allowed`.
    pub allowed: Vec<Finding>,
    /// Why a scanner gave no findings (a report that is not JSON, a command that
    /// failed); each blocks.
    pub errors: Vec<String>,
}

/// The verdict over `findings` (to which the allowlist has been applied).
pub fn verdict(findings: &[Finding]) -> Verdict {
    let mut v = Verdict::default();
    for f in findings {
        if f.allowed.is_some() {
            v.counts.allowed += 1;
            v.allowed.push(f.clone());
            continue;
        }
        match f.severity {
            Severity::Critical => {
                v.counts.critical += 1;
                v.blocking.push(f.clone());
            }
            Severity::High => {
                v.counts.high += 1;
                v.blocking.push(f.clone());
            }
            Severity::Moderate => {
                v.counts.moderate += 1;
                v.warnings.push(f.clone());
            }
            Severity::Low => {
                v.counts.low += 1;
                v.infos.push(f.clone());
            }
        }
    }
    // Stable: within a severity, the scanners' order.
    v.blocking.sort_by_key(|f| std::cmp::Reverse(f.severity));
    v.blocked = !v.blocking.is_empty();
    v
}

impl Verdict {
    /// Records that a scanner failed (`reason` names it and why): the gate fails closed.
    pub fn fail_closed(&mut self, reason: impl Into<String>) {
        self.errors.push(reason.into());
        self.blocked = true;
    }

    /// One line for a terminal or a log: `blocked: 1 critical, 2 high, …`.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "{}: {} critical, {} high, {} moderate, {} low, {} allowed",
            if self.blocked { "blocked" } else { "passed" },
            c.critical,
            c.high,
            c.moderate,
            c.low,
            c.allowed
        );
        if !self.errors.is_empty() {
            s.push_str(&format!(", {} scanner error(s)", self.errors.len()));
        }
        s
    }
}
