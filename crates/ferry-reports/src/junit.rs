//! JUnit XML test reports: the dialects of pytest, jest-junit, Maven Surefire and
//! cargo-nextest, read as one family.
//!
//! What every dialect shares, and all this parser relies on: a `<testsuites>` or
//! `<testsuite>` root; `<testsuite>` elements, possibly nested; `<testcase>` elements
//! whose direct children `<failure>`, `<error>` and `<skipped>` give the outcome.
//! Counts come from the `<testcase>` elements themselves; the aggregate attributes
//! (`tests`, `failures` …) are ignored because tools get them wrong (pytest counts a
//! test that fails and then errors in teardown twice, jest-junit and nextest disagree
//! on what an error is).
//!
//! Reruns: Surefire and nextest write `<flakyFailure>` / `<flakyError>` for failed
//! attempts of a test that passed in the end, and `<rerunFailure>` / `<rerunError>`
//! for the extra attempts of a test that failed in the end, next to its `<failure>` or
//! `<error>`. None of these decide the outcome: the final `<failure>` / `<error>` does.

use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::text;
use crate::xml::{self, XmlStream};

/// What a JUnit report says about one run of tests.
///
/// `total == passed + failed + errored + skipped` always holds for a parsed report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestReport {
    /// Number of `<testcase>` elements.
    pub total: u64,
    /// Test cases with no `<failure>`, `<error>` or `<skipped>` (flaky ones included).
    pub passed: u64,
    /// Test cases with a `<failure>`: an assertion did not hold.
    pub failed: u64,
    /// Test cases with an `<error>` and no `<failure>`: the test could not run to its
    /// end (an unexpected exception, a crash, a timeout, a broken fixture).
    pub errored: u64,
    /// Test cases with only a `<skipped>`.
    pub skipped: u64,
    /// The failed and errored test cases, in document order.
    pub failures: Vec<FailedTest>,
}

impl TestReport {
    /// Whether no test failed or errored. A report with no test at all is ok: whether
    /// that is acceptable is the caller's decision.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.errored == 0
    }

    /// Adds another report's counts and failures to this one (one step that wrote
    /// several report files).
    pub fn merge(&mut self, other: TestReport) {
        self.total += other.total;
        self.passed += other.passed;
        self.failed += other.failed;
        self.errored += other.errored;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
    }
}

/// One failed or errored test case (the seed's `FailedTest`, §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedTest {
    /// The test case's `name` attribute.
    pub name: String,
    /// Where the test lives: the test case's `classname` when it has one that differs
    /// from its name (pytest, Surefire, nextest), else the name of the enclosing
    /// `<testsuite>` (jest-junit repeats the full title in `classname`).
    pub suite: String,
    /// The `message` attribute of the `<failure>` / `<error>`; without one, the first
    /// non-blank line of its text; without text, its `type` attribute.
    pub error: String,
    /// The text of the `<failure>` / `<error>` element (CDATA and entities resolved,
    /// surrounding blank lines and trailing whitespace removed), if it has any.
    pub stack_trace: Option<String>,
}

/// Reads a JUnit XML report.
///
/// # Errors
///
/// [`ReportError::Empty`], [`ReportError::NotUtf8`], [`ReportError::Xml`] (with the line
/// and column where the document broke, truncation included),
/// [`ReportError::NoRootElement`] and [`ReportError::NotJunit`] (e.g. an HTML page).
pub fn parse_junit(bytes: &[u8]) -> Result<TestReport, ReportError> {
    let bytes = text::unbom(bytes);
    if text::is_blank(&bytes) {
        return Err(ReportError::Empty {
            expected: "a JUnit XML report",
        });
    }
    let input = text::utf8(&bytes)?;
    let mut stream = XmlStream::new(input);
    let root = stream.root("`<testsuites>` or `<testsuite>`")?;
    let root_name = xml::local_name(&root.element);
    if root_name != "testsuites" && root_name != "testsuite" {
        return Err(ReportError::NotJunit {
            found: root_name.to_owned(),
        });
    }
    let mut reader = JunitReader::default();
    if root.empty {
        return Ok(reader.report);
    }
    if root_name == "testsuite" {
        reader.open_suite(&stream, &root.element)?;
    }
    loop {
        match stream.next()? {
            Event::Start(element) => reader.element(&stream, &element, false)?,
            Event::Empty(element) => reader.element(&stream, &element, true)?,
            Event::End(_) => {
                reader.closed(stream.depth());
                if stream.depth() == 0 {
                    break;
                }
            }
            Event::Eof => break,
            event => reader.content(&stream, &event),
        }
    }
    Ok(reader.report)
}

/// The outcome of one test case, in order of precedence when a case has several
/// outcome elements: a `<failure>` wins over an `<error>`, which wins over `<skipped>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    Skipped,
    Errored,
    Failed,
}

/// An open `<testsuite>`.
struct Suite {
    /// Stream depth while the element is open.
    depth: usize,
    name: String,
}

/// An open `<testcase>`.
struct Case {
    depth: usize,
    name: String,
    classname: String,
    suite: String,
    outcome: Outcome,
    /// `message` and `type` of the element that decided the outcome, and its text.
    message: Option<String>,
    kind: Option<String>,
    text: String,
    /// Depth of the outcome element whose text is being collected.
    collecting: Option<usize>,
}

#[derive(Default)]
struct JunitReader {
    report: TestReport,
    suites: Vec<Suite>,
    case: Option<Case>,
}

impl JunitReader {
    fn open_suite(
        &mut self,
        stream: &XmlStream<'_>,
        element: &BytesStart<'_>,
    ) -> Result<(), ReportError> {
        let name = xml::attribute(stream, element, "name")?.unwrap_or_default();
        self.suites.push(Suite {
            depth: stream.depth(),
            name: name.into_owned(),
        });
        Ok(())
    }

    /// A start tag (or an empty element when `empty`).
    fn element(
        &mut self,
        stream: &XmlStream<'_>,
        element: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), ReportError> {
        // Depth of this element's parent.
        let parent = if empty {
            stream.depth()
        } else {
            stream.depth().saturating_sub(1)
        };
        let name = xml::local_name(element);
        if let Some(case) = &mut self.case {
            if parent != case.depth {
                return Ok(());
            }
            let outcome = match name {
                "failure" => Outcome::Failed,
                "error" => Outcome::Errored,
                "skipped" => Outcome::Skipped,
                // flakyFailure, rerunFailure, system-out, properties …
                _ => return Ok(()),
            };
            if outcome > case.outcome {
                case.outcome = outcome;
                case.message = xml::attribute(stream, element, "message")?.map(|m| m.into_owned());
                case.kind = xml::attribute(stream, element, "type")?.map(|t| t.into_owned());
                case.text.clear();
                case.collecting = (!empty).then(|| stream.depth());
            }
            return Ok(());
        }
        match name {
            "testcase" => {
                let case_name = xml::attribute(stream, element, "name")?.unwrap_or_default();
                let classname = xml::attribute(stream, element, "classname")?.unwrap_or_default();
                self.case = Some(Case {
                    depth: if empty { parent + 1 } else { stream.depth() },
                    name: case_name.into_owned(),
                    classname: classname.into_owned(),
                    suite: self
                        .suites
                        .last()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    outcome: Outcome::Passed,
                    message: None,
                    kind: None,
                    text: String::new(),
                    collecting: None,
                });
                if empty {
                    self.finish_case();
                }
            }
            "testsuite" if !empty => self.open_suite(stream, element)?,
            _ => {}
        }
        Ok(())
    }

    /// Text, CDATA or an entity reference.
    fn content(&mut self, stream: &XmlStream<'_>, event: &Event<'_>) {
        let Some(case) = &mut self.case else { return };
        let Some(collecting) = case.collecting else {
            return;
        };
        if stream.depth() >= collecting
            && let Some(text) = xml::content(event)
        {
            case.text.push_str(&text);
        }
    }

    /// An end tag; `depth` is the depth after it.
    fn closed(&mut self, depth: usize) {
        if let Some(case) = &mut self.case {
            if case.collecting.is_some_and(|d| depth < d) {
                case.collecting = None;
            }
            if depth < case.depth {
                self.finish_case();
            }
        }
        while self.suites.last().is_some_and(|s| depth < s.depth) {
            self.suites.pop();
        }
    }

    fn finish_case(&mut self) {
        let Some(case) = self.case.take() else { return };
        let report = &mut self.report;
        report.total += 1;
        match case.outcome {
            Outcome::Passed => report.passed += 1,
            Outcome::Skipped => report.skipped += 1,
            Outcome::Errored => report.errored += 1,
            Outcome::Failed => report.failed += 1,
        }
        if case.outcome < Outcome::Errored {
            return;
        }
        let stack_trace = trim_block(&case.text);
        let error = case
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .or_else(|| stack_trace.lines().map(str::trim).find(|l| !l.is_empty()))
            .or(case.kind.as_deref().map(str::trim))
            .unwrap_or_default()
            .to_owned();
        let suite = if !case.classname.is_empty() && case.classname != case.name {
            case.classname
        } else if !case.suite.is_empty() {
            case.suite
        } else {
            case.classname
        };
        report.failures.push(FailedTest {
            name: case.name,
            suite,
            error,
            stack_trace: (!stack_trace.is_empty()).then(|| stack_trace.to_owned()),
        });
    }
}

/// Text without its leading blank lines and trailing whitespace; the indentation of its
/// first line is kept (it matters in Python tracebacks).
fn trim_block(text: &str) -> &str {
    let text = text.trim_end();
    let first_visible = text.len() - text.trim_start().len();
    match text[..first_visible].rfind('\n') {
        Some(newline) => &text[newline + 1..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_block_keeps_first_line_indentation() {
        assert_eq!(
            trim_block("\n \n    def f():\n  x \n\n"),
            "    def f():\n  x"
        );
        assert_eq!(trim_block("  a"), "  a");
        assert_eq!(trim_block(" \n\t"), "");
    }
}
