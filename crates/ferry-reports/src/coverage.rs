//! Line coverage from LCOV tracefiles and Cobertura XML, told apart by their content.

mod cobertura;
mod lcov;

use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::text;

/// Line coverage of one report: how many executable lines there are and how many ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Executable lines the report knows about.
    pub lines_found: u64,
    /// Of those, the lines that ran at least once. Never more than `lines_found`.
    pub lines_hit: u64,
    /// The format the report was written in.
    pub format: CoverageFormat,
}

impl Coverage {
    /// Line coverage in percent, from 0.0 to 100.0.
    ///
    /// A report with no executable line (`lines_found == 0`) has 0.0 % coverage: nothing
    /// was shown to run, so a coverage gate must not pass on an empty report by accident.
    pub fn percent(&self) -> f64 {
        if self.lines_found == 0 {
            0.0
        } else {
            // Exact up to 2^53 lines.
            100.0 * self.lines_hit as f64 / self.lines_found as f64
        }
    }
}

/// The formats [`parse_coverage`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoverageFormat {
    /// LCOV tracefile (`lcov`, `genhtml`'s input; written by `cargo llvm-cov --lcov`,
    /// `c8`/`nyc`/Jest's `lcov` reporter, `coverage lcov` …).
    Lcov,
    /// Cobertura XML (`coverage xml`, `cargo llvm-cov --cobertura`, `cargo tarpaulin`,
    /// Jest's `cobertura` reporter …).
    Cobertura,
}

/// Reads a coverage report, LCOV or Cobertura XML: a report whose first non-blank
/// character is `<` is read as Cobertura, anything else as LCOV.
///
/// LCOV: a record's `LF`/`LH` summary is used when it has one; otherwise its `DA:` lines
/// are counted (hit when the count is above 0). A file that appears in several records
/// is merged line by line: a line is hit if any record hit it.
///
/// Cobertura: the root's `lines-valid` / `lines-covered` attributes are used when
/// present and non-zero; otherwise the `<line number=… hits=…>` elements are counted,
/// each (file name, line number) once.
///
/// # Errors
///
/// [`ReportError::Empty`]; for XML input [`ReportError::NotUtf8`], [`ReportError::Xml`],
/// [`ReportError::NoRootElement`], [`ReportError::NotCobertura`] and
/// [`ReportError::Cobertura`] (a value that is not a number); for other input
/// [`ReportError::UnknownCoverageFormat`] when it does not start like LCOV, and
/// [`ReportError::Lcov`] for a record that cannot be read.
pub fn parse_coverage(bytes: &[u8]) -> Result<Coverage, ReportError> {
    let bytes = text::unbom(bytes);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ReportError::Empty {
            expected: "an LCOV or Cobertura XML coverage report",
        }),
        Some(b'<') => cobertura::parse(text::utf8(&bytes)?),
        Some(_) => lcov::parse(&bytes),
    }
}

impl Coverage {
    /// Coverage of `found` lines of which `hit` ran, `hit` clamped to `found`.
    fn new(found: u64, hit: u64, format: CoverageFormat) -> Self {
        Self {
            lines_found: found,
            lines_hit: hit.min(found),
            format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_nothing_is_zero() {
        assert_eq!(Coverage::new(0, 0, CoverageFormat::Lcov).percent(), 0.0);
        assert_eq!(Coverage::new(4, 3, CoverageFormat::Lcov).percent(), 75.0);
        assert_eq!(Coverage::new(4, 9, CoverageFormat::Cobertura).lines_hit, 4);
    }
}
