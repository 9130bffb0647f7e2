//! One finding, whatever found it.

use serde::{Deserialize, Serialize};

/// How bad a finding is (seed §3.7.2): CRITICAL and HIGH block the run, MODERATE warns,
/// LOW informs. Ordered from the least to the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Moderate,
    High,
    Critical,
}

impl Severity {
    /// The spelling in reports and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Moderate => "MODERATE",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// A scanner's word for a severity, in any case: `critical`, `high`,
    /// `moderate`/`medium`, `low`, and `info`/`informational`/`none` as LOW. `None` for
    /// anything else (the caller decides: an unknown severity must not pass silently).
    pub fn parse(word: &str) -> Option<Severity> {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" => Some(Severity::High),
            "moderate" | "medium" => Some(Severity::Moderate),
            "low" | "info" | "informational" | "none" => Some(Severity::Low),
            _ => None,
        }
    }

    /// Whether a finding of this severity blocks the run.
    pub fn blocks(self) -> bool {
        self >= Severity::High
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding is: a file, and in it a resource's logical id (templates) or a
/// package and version (audits); a line when the scanner knows one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: Option<String>,
    pub line: Option<u32>,
    /// A CloudFormation resource's logical id.
    pub logical_id: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What found it: `cfn-guard`, `template`, `npm-audit`, `cargo-audit`, `pip-audit`.
    pub scanner: String,
    /// The rule's name or the advisory's id (`S3_BUCKET_ENCRYPTION`, `GHSA-…`,
    /// `RUSTSEC-…`, `PYSEC-…`).
    pub id: String,
    /// Other ids of the same advisory (`CVE-…`, `GHSA-…`, `NPM-<source>`), as the
    /// scanner reports them; an allowlist entry naming one matches like the id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub location: Location,
    pub message: String,
    /// Set when an allowlist entry covers it: the entry's justification. An allowed
    /// finding never blocks.
    pub allowed: Option<String>,
    /// Set when an allowlist entry matched it but had expired (and no other entry
    /// allows it): the last day that entry held. The finding counts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<crate::allowlist::Date>,
}

impl Finding {
    /// Whether `name` is this finding's id or one of its aliases (ignoring ASCII case
    /// and surrounding blanks).
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        self.id.trim().eq_ignore_ascii_case(name)
            || self
                .aliases
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_and_order() {
        assert_eq!(Severity::parse("MEDIUM"), Some(Severity::Moderate));
        assert_eq!(Severity::parse(" moderate "), Some(Severity::Moderate));
        assert_eq!(Severity::parse("Critical"), Some(Severity::Critical));
        assert_eq!(Severity::parse("info"), Some(Severity::Low));
        assert_eq!(Severity::parse("severe"), None);
        assert!(Severity::Critical > Severity::High && Severity::High > Severity::Moderate);
        assert!(Severity::High.blocks() && !Severity::Moderate.blocks());
    }
}
