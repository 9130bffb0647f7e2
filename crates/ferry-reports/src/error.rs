//! The one error type of this crate: what is wrong with a report, and where.

/// Why a report could not be read.
///
/// Messages are lowercase fragments that read well after "failed to read the test
/// report: …". Errors about XML name the line and column (both 1-based, columns counted
/// in characters) where the document broke; errors about LCOV name the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The input is empty or holds only whitespace (and perhaps a byte order mark).
    #[error("empty input: expected {expected}")]
    Empty {
        /// What kind of report was expected, e.g. "a JUnit XML report".
        expected: &'static str,
    },

    /// The input is neither UTF-8 nor UTF-16 with a byte order mark.
    #[error(
        "not UTF-8 text at line {line}, column {column}: reports must be UTF-8 (or UTF-16 with a byte order mark)"
    )]
    NotUtf8 {
        /// 1-based line of the first byte that is not UTF-8.
        line: u64,
        /// 1-based column (in characters) of that byte.
        column: u64,
    },

    /// The input is not well-formed XML.
    #[error("not valid XML at line {line}, column {column}: {message}")]
    Xml {
        /// 1-based line where the document broke.
        line: u64,
        /// 1-based column (in characters) where the document broke.
        column: u64,
        /// What broke, e.g. "expected `</testcase>`, found the end of the input".
        message: String,
    },

    /// The input is XML but has no root element at all (only a declaration, comments …).
    #[error("no root element: expected {expected}")]
    NoRootElement {
        /// The root element(s) that were expected, e.g. "`<testsuites>` or `<testsuite>`".
        expected: &'static str,
    },

    /// The input is XML whose root element is not `testsuites` or `testsuite`.
    #[error(
        "not a JUnit report: the root element is `{found}`, expected `testsuites` or `testsuite`"
    )]
    NotJunit {
        /// The name of the root element that was found.
        found: String,
    },

    /// The input is XML whose root element is not Cobertura's `coverage`.
    #[error(
        "not a coverage report: the root element is `{found}`, expected `coverage` (Cobertura XML)"
    )]
    NotCobertura {
        /// The name of the root element that was found.
        found: String,
    },

    /// The input is neither XML nor LCOV.
    #[error(
        "not a coverage report: expected LCOV (`SF:`/`DA:` records) or Cobertura XML (`<coverage>` root)"
    )]
    UnknownCoverageFormat,

    /// The input is LCOV but one of its records cannot be read.
    #[error("invalid LCOV at line {line}: {message}")]
    Lcov {
        /// 1-based line of the bad record.
        line: u64,
        /// What is wrong with it.
        message: String,
    },

    /// The input is well-formed Cobertura XML but a value in it cannot be read.
    #[error("invalid Cobertura report at line {line}, column {column}: {message}")]
    Cobertura {
        /// 1-based line of the element holding the bad value.
        line: u64,
        /// 1-based column (in characters) of that element.
        column: u64,
        /// What is wrong with it.
        message: String,
    },
}
