//! Parsers for the reports that test and coverage tools write: JUnit XML test reports
//! and LCOV / Cobertura XML coverage reports.
//!
//! Everything here is pure: each parser takes the bytes of one report and returns a
//! summary or a [`ReportError`] that says what is wrong and, for XML, where. Nothing
//! reads files, looks at the clock or panics on bad input.
//!
//! - [`parse_junit`] reads the JUnit XML dialects written by pytest, jest-junit, Maven
//!   Surefire / Failsafe and cargo-nextest (and others of the same shape) into a
//!   [`TestReport`].
//! - [`parse_coverage`] reads LCOV tracefiles and Cobertura XML into a [`Coverage`]
//!   (line coverage); the format is recognised from the content, not the file name.
//!
//! Both parsers stream: a large report is read event by event, never built into a tree.
//!
//! ```
//! use ferry_reports::{CoverageFormat, parse_coverage, parse_junit};
//!
//! let junit = br#"<testsuite name="calc">
//!   <testcase classname="calc.Add" name="adds"/>
//!   <testcase classname="calc.Div" name="divides"><failure message="1/0">boom</failure></testcase>
//! </testsuite>"#;
//! let report = parse_junit(junit)?;
//! assert_eq!((report.total, report.passed, report.failed), (2, 1, 1));
//! assert!(!report.ok());
//! assert_eq!(report.failures[0].suite, "calc.Div");
//! assert_eq!(report.failures[0].error, "1/0");
//!
//! let coverage = parse_coverage(b"SF:src/lib.rs\nDA:1,3\nDA:2,0\nend_of_record\n")?;
//! assert_eq!(coverage.format, CoverageFormat::Lcov);
//! assert_eq!(coverage.percent(), 50.0);
//!
//! let error = parse_junit(b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "not a JUnit report: the root element is `html`, expected `testsuites` or `testsuite`"
//! );
//! # Ok::<(), ferry_reports::ReportError>(())
//! ```

mod coverage;
mod error;
mod junit;
mod text;
mod xml;

pub use coverage::{Coverage, CoverageFormat, parse_coverage};
pub use error::ReportError;
pub use junit::{FailedTest, TestReport, parse_junit};
