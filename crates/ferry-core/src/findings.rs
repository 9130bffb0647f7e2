//! The security gate's findings as a run keeps them (seed §3.7, issue 5): what was
//! found, where, and how the gate treated it. The store records them with the run
//! before the gate's verdict is acted on; `ferry logs`, `ferry findings` and the API
//! show them, and SARIF is rebuilt from them.

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered from the least to the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Informs.
    Low,
    /// Warns (MEDIUM in some tools).
    Moderate,
    /// Blocks.
    High,
    /// Blocks.
    Critical,
}

impl Severity {
    /// The spelling in storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Moderate => "MODERATE",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// The severity spelled `s` ([`Severity::as_str`]), if any.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Moderate,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gate did with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// CRITICAL or HIGH, not allowlisted (or a scanner that failed): the run stops.
    Blocks,
    /// MODERATE, not allowlisted.
    Warns,
    /// LOW, not allowlisted.
    Informs,
    /// An allowlist entry accepts it; `reason` is the entry's justification.
    Allowlisted,
    /// The allowlist entry that matched it has expired: it counts again (blocks, warns
    /// or informs by its severity); `reason` says which entry and since when.
    Expired,
}

impl Treatment {
    /// The spelling in storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Treatment::Blocks => "blocks",
            Treatment::Warns => "warns",
            Treatment::Informs => "informs",
            Treatment::Allowlisted => "allowlisted",
            Treatment::Expired => "expired",
        }
    }

    /// The treatment spelled `s` ([`Treatment::as_str`]), if any.
    pub fn parse(s: &str) -> Option<Treatment> {
        [
            Treatment::Blocks,
            Treatment::Warns,
            Treatment::Informs,
            Treatment::Allowlisted,
            Treatment::Expired,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// What a finding of `severity` gets when no allowlist entry covers it.
    pub fn of(severity: Severity) -> Treatment {
        match severity {
            Severity::Critical | Severity::High => Treatment::Blocks,
            Severity::Moderate => Treatment::Warns,
            Severity::Low => Treatment::Informs,
        }
    }
}

impl std::fmt::Display for Treatment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of a run's security gate, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// What found it: `cfn-guard`, `template`, `npm-audit`, `cargo-audit`, `pip-audit`,
    /// or `ferry` for a scanner that could not scan (the gate failed closed).
    pub tool: String,
    /// The rule's name or the advisory's id.
    pub id: String,
    /// Other ids of the same advisory (CVE, GHSA, `NPM-<number>`).
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub treatment: Treatment,
    /// The allowlist entry's justification (`allowlisted`), or which entry expired and
    /// when (`expired`), or why a scanner failed.
    pub reason: Option<String>,
    /// The file it is in (a template, an audit report or command).
    pub file: Option<String>,
    pub line: Option<u32>,
    /// A CloudFormation resource's logical id.
    pub logical_id: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
    pub message: String,
}

impl FindingRecord {
    /// Whether it counts against the gate (not allowlisted).
    pub fn counts(&self) -> bool {
        self.treatment != Treatment::Allowlisted
    }
}

/// How many findings of a run's gate there are per severity (allowlisted ones apart),
/// and how many are allowlisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    /// CRITICAL findings not allowlisted.
    pub critical: usize,
    /// HIGH findings not allowlisted.
    pub high: usize,
    /// MODERATE findings not allowlisted.
    pub moderate: usize,
    /// LOW findings not allowlisted.
    pub low: usize,
    /// Findings of any severity an allowlist entry accepts.
    pub allowlisted: usize,
}

impl FindingCounts {
    /// The counts of `findings`.
    pub fn of<'a>(findings: impl IntoIterator<Item = &'a FindingRecord>) -> FindingCounts {
        let mut c = FindingCounts::default();
        for f in findings {
            c.add(f.severity, f.treatment, 1);
        }
        c
    }

    /// Adds `n` findings of `severity` treated as `treatment`.
    pub fn add(&mut self, severity: Severity, treatment: Treatment, n: usize) {
        if treatment == Treatment::Allowlisted {
            self.allowlisted += n;
            return;
        }
        match severity {
            Severity::Critical => self.critical += n,
            Severity::High => self.high += n,
            Severity::Moderate => self.moderate += n,
            Severity::Low => self.low += n,
        }
    }

    /// Every finding counted, allowlisted ones included.
    pub fn total(&self) -> usize {
        self.critical + self.high + self.moderate + self.low + self.allowlisted
    }

    /// `1 critical, 2 high, 0 moderate, 0 low, 1 allowlisted`.
    pub fn summary(&self) -> String {
        format!(
            "{} critical, {} high, {} moderate, {} low, {} allowlisted",
            self.critical, self.high, self.moderate, self.low, self.allowlisted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in [
            Severity::Low,
            Severity::Moderate,
            Severity::High,
            Severity::Critical,
        ] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for t in [
            Treatment::Blocks,
            Treatment::Warns,
            Treatment::Informs,
            Treatment::Allowlisted,
            Treatment::Expired,
        ] {
            assert_eq!(Treatment::parse(t.as_str()), Some(t));
        }
        assert_eq!(Severity::parse("high"), None);
        assert_eq!(Treatment::of(Severity::High), Treatment::Blocks);
        assert_eq!(Treatment::of(Severity::Low), Treatment::Informs);
    }

    #[test]
    fn counts_leave_allowlisted_findings_apart() {
        let mut c = FindingCounts::default();
        c.add(Severity::Critical, Treatment::Blocks, 2);
        c.add(Severity::High, Treatment::Expired, 1);
        c.add(Severity::High, Treatment::Allowlisted, 3);
        assert_eq!(
            c.summary(),
            "2 critical, 1 high, 0 moderate, 0 low, 3 allowlisted"
        );
        assert_eq!(c.total(), 6);
    }
}
