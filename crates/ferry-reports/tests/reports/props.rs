//! Property tests: random reports rendered in each tool's JUnit shape read back to the
//! same counts and failures; random or damaged bytes never make a parser panic.

use ferry_reports::{FailedTest, TestReport, parse_coverage, parse_junit};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Passed,
    Failed,
    Errored,
    Skipped,
    /// Failed, then passed on a rerun.
    Flaky,
    /// Failed on the first run and on every rerun.
    FailedWithReruns,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    classname: String,
    outcome: Outcome,
    message: String,
    /// Lines of the failure text; none for an element without text.
    lines: Vec<String>,
}

#[derive(Debug, Clone)]
struct Suite {
    name: String,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Copy)]
enum Dialect {
    Pytest,
    JestJunit,
    Surefire,
    Nextest,
}

/// Printable text without leading or trailing spaces, with XML's special characters,
/// CDATA's terminator and some non-ASCII thrown in.
fn words() -> impl Strategy<Value = String> {
    prop_oneof![
        "[!-~]([ -~]{0,24}[!-~])?",
        Just("]]>".to_owned()),
        Just("a < b && c > \"d\" 'e'".to_owned()),
        Just("café ünïcödé 😀 ✓".to_owned()),
        Just("&amp; &#10; literally".to_owned()),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Passed),
        2 => Just(Outcome::Failed),
        1 => Just(Outcome::Errored),
        1 => Just(Outcome::Skipped),
        1 => Just(Outcome::Flaky),
        1 => Just(Outcome::FailedWithReruns),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        words(),
        words(),
        outcome(),
        words(),
        prop::collection::vec(words(), 0..4),
    )
        .prop_map(|(name, classname, outcome, message, lines)| Case {
            name,
            classname,
            outcome,
            message,
            lines,
        })
}

fn suites() -> impl Strategy<Value = Vec<Suite>> {
    prop::collection::vec(
        (words(), prop::collection::vec(case(), 0..8))
            .prop_map(|(name, cases)| Suite { name, cases }),
        1..4,
    )
}

fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
        .replace('\n', "&#10;")
}

fn text(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cdata(value: &str) -> String {
    format!("<![CDATA[{}]]>", value.replace("]]>", "]]]]><![CDATA[>"))
}

impl Case {
    fn body(&self) -> String {
        self.lines.join("\n")
    }

    /// The `<testcase>` element as `dialect` writes it; `suite` is the enclosing suite.
    fn render(&self, dialect: Dialect, suite: &str) -> String {
        let (name, classname) = match dialect {
            // jest-junit's default templates put the full title in both.
            Dialect::JestJunit => (self.name.as_str(), self.name.as_str()),
            // nextest's classname is the test binary, which is the suite.
            Dialect::Nextest => (self.name.as_str(), suite),
            Dialect::Pytest | Dialect::Surefire => (self.name.as_str(), self.classname.as_str()),
        };
        let message = attr(&self.message);
        let body = match dialect {
            Dialect::Surefire => cdata(&self.body()),
            _ => text(&self.body()),
        };
        let outcome = |element: &str| match dialect {
            Dialect::JestJunit => format!("<{element}>{body}</{element}>"),
            Dialect::Nextest => {
                format!("<{element} message=\"{message}\" type=\"test failure\">{body}</{element}>")
            }
            _ => format!("<{element} message=\"{message}\" type=\"Boom\">{body}</{element}>"),
        };
        let rerun = |element: &str| match dialect {
            Dialect::Surefire => format!(
                "<{element} message=\"{message}\" type=\"Boom\"><stackTrace>{body}</stackTrace>\
                 <system-out>{}</system-out></{element}>",
                cdata("attempt output")
            ),
            _ => format!(
                "<{element} type=\"test failure\"><system-out>run</system-out>\
                 <system-err>{body}</system-err></{element}>"
            ),
        };
        let inner = match self.outcome {
            Outcome::Passed => match dialect {
                Dialect::Pytest => String::new(),
                _ => "<system-out>ok</system-out>".to_owned(),
            },
            Outcome::Failed => outcome("failure"),
            Outcome::Errored => outcome("error"),
            Outcome::Skipped => match dialect {
                Dialect::Pytest => {
                    format!("<skipped type=\"pytest.skip\" message=\"{message}\" />")
                }
                Dialect::JestJunit => "<skipped/>".to_owned(),
                _ => format!("<skipped message=\"{message}\"/>"),
            },
            Outcome::Flaky => match dialect {
                // pytest and jest-junit do not report reruns: a flaky test just passed.
                Dialect::Pytest | Dialect::JestJunit => String::new(),
                _ => rerun("flakyFailure") + &rerun("flakyError"),
            },
            Outcome::FailedWithReruns => match dialect {
                Dialect::Pytest | Dialect::JestJunit => outcome("failure"),
                _ => outcome("failure") + &rerun("rerunFailure") + &rerun("rerunFailure"),
            },
        };
        let head = format!(
            "<testcase classname=\"{}\" name=\"{}\" time=\"0.001\"",
            attr(classname),
            attr(name)
        );
        if inner.is_empty() {
            format!("{head} />")
        } else {
            format!("{head}>{inner}</testcase>")
        }
    }

    /// What the parser must report for this case, if it failed.
    fn expected(&self, dialect: Dialect, suite: &str) -> Option<FailedTest> {
        if !matches!(
            self.outcome,
            Outcome::Failed | Outcome::Errored | Outcome::FailedWithReruns
        ) {
            return None;
        }
        let (name, classname, suite) = match dialect {
            Dialect::Pytest => (&self.name, &self.classname, "pytest"),
            Dialect::JestJunit => (&self.name, &self.name, suite),
            Dialect::Surefire => (&self.name, &self.classname, suite),
            Dialect::Nextest => (&self.name, &suite.to_owned(), suite),
        };
        let suite = if classname != name { classname } else { suite };
        let error = match dialect {
            Dialect::JestJunit => self.lines.first().cloned().unwrap_or_default(),
            _ => self.message.clone(),
        };
        Some(FailedTest {
            name: name.clone(),
            suite: suite.to_owned(),
            error,
            stack_trace: (!self.lines.is_empty()).then(|| self.body()),
        })
    }
}

/// The report files `dialect` writes for these suites (Surefire writes one per suite).
fn render(dialect: Dialect, suites: &[Suite]) -> Vec<String> {
    match dialect {
        Dialect::Pytest => {
            let cases: String = suites
                .iter()
                .flat_map(|s| &s.cases)
                .map(|c| c.render(dialect, "pytest"))
                .collect();
            vec![format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites name=\"pytest tests\">\
                 <testsuite name=\"pytest\" errors=\"0\" failures=\"0\" skipped=\"0\" tests=\"0\" \
                 time=\"0.1\" timestamp=\"2025-01-27T10:45:30.1+00:00\" hostname=\"ci\">{cases}\
                 </testsuite></testsuites>"
            )]
        }
        Dialect::JestJunit | Dialect::Nextest => {
            let mut xml = match dialect {
                Dialect::JestJunit => String::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <testsuites name=\"jest tests\" tests=\"0\" failures=\"0\" errors=\"0\" time=\"1\">\n",
                ),
                _ => String::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <testsuites name=\"nextest-run\" tests=\"0\" failures=\"0\" errors=\"0\" \
                     uuid=\"00000000-0000-0000-0000-000000000000\" timestamp=\"2025-01-27T10:45:30+00:00\" time=\"1\">\n",
                ),
            };
            for suite in suites {
                xml.push_str(&format!(
                    "  <testsuite name=\"{}\" tests=\"{}\" errors=\"0\" failures=\"0\">\n",
                    attr(&suite.name),
                    suite.cases.len()
                ));
                for case in &suite.cases {
                    xml.push_str("    ");
                    xml.push_str(&case.render(dialect, &suite.name));
                    xml.push('\n');
                }
                xml.push_str("  </testsuite>\n");
            }
            xml.push_str("</testsuites>\n");
            vec![xml]
        }
        Dialect::Surefire => suites
            .iter()
            .map(|suite| {
                let cases: String = suite
                    .cases
                    .iter()
                    .map(|c| format!("  {}\n", c.render(dialect, &suite.name)))
                    .collect();
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <testsuite xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
                     xsi:noNamespaceSchemaLocation=\"https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd\" \
                     version=\"3.0\" name=\"{}\" time=\"0.1\" tests=\"0\" errors=\"0\" skipped=\"0\" failures=\"0\">\n\
                     <properties>\n    <property name=\"java.version\" value=\"17\"/>\n  </properties>\n{cases}</testsuite>\n",
                    attr(&suite.name)
                )
            })
            .collect(),
    }
}

fn expected(dialect: Dialect, suites: &[Suite]) -> TestReport {
    let mut report = TestReport::default();
    for suite in suites {
        for case in &suite.cases {
            report.total += 1;
            match case.outcome {
                Outcome::Passed | Outcome::Flaky => report.passed += 1,
                Outcome::Failed | Outcome::FailedWithReruns => report.failed += 1,
                Outcome::Errored => report.errored += 1,
                Outcome::Skipped => report.skipped += 1,
            }
            report.failures.extend(case.expected(dialect, &suite.name));
        }
    }
    report
}

fn round_trip(dialect: Dialect, suites: &[Suite]) -> Result<(), TestCaseError> {
    let mut report = TestReport::default();
    for file in render(dialect, suites) {
        let parsed = parse_junit(file.as_bytes());
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, file);
        if let Ok(parsed) = parsed {
            report.merge(parsed);
        }
    }
    prop_assert_eq!(report, expected(dialect, suites));
    Ok(())
}

proptest! {
    #[test]
    fn pytest_round_trip(suites in suites()) {
        round_trip(Dialect::Pytest, &suites)?;
    }

    #[test]
    fn jest_junit_round_trip(suites in suites()) {
        round_trip(Dialect::JestJunit, &suites)?;
    }

    #[test]
    fn surefire_round_trip(suites in suites()) {
        round_trip(Dialect::Surefire, &suites)?;
    }

    #[test]
    fn nextest_round_trip(suites in suites()) {
        round_trip(Dialect::Nextest, &suites)?;
    }

    #[test]
    fn counts_always_add_up(suites in suites(), dialect in 0..4usize) {
        let dialect = [Dialect::Pytest, Dialect::JestJunit, Dialect::Surefire, Dialect::Nextest][dialect];
        for file in render(dialect, &suites) {
            let report = parse_junit(file.as_bytes()).unwrap();
            prop_assert_eq!(report.total, report.passed + report.failed + report.errored + report.skipped);
            prop_assert_eq!(report.failures.len() as u64, report.failed + report.errored);
            prop_assert_eq!(report.ok(), report.failures.is_empty());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_junit(&bytes);
        let _ = parse_coverage(&bytes);
    }

    #[test]
    fn random_bytes_after_a_plausible_start_never_panic(
        start in prop::sample::select(vec![
            &b"<testsuites>"[..],
            b"<testsuite name=\"s\"><testcase name=\"c\"><failure>",
            b"\xEF\xBB\xBF<?xml version=\"1.0\"?><coverage>",
            b"<coverage><packages><package><classes><class filename=\"a\"><lines><line ",
            b"TN:\nSF:a.rs\n",
            b"SF:a.rs\nDA:",
            b"\xFF\xFE",
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let bytes = [start, &rest].concat();
        let _ = parse_junit(&bytes);
        let _ = parse_coverage(&bytes);
    }

    #[test]
    fn damaged_reports_never_panic(
        suites in suites(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let file = render(Dialect::Nextest, &suites).concat().into_bytes();
        let truncated = &file[..cut.index(file.len())];
        let _ = parse_junit(truncated);
        let mut flipped = file.clone();
        let at = flip.index(flipped.len());
        flipped[at] = byte;
        let _ = parse_junit(&flipped);
        let _ = parse_coverage(&flipped);
    }

    #[test]
    fn damaged_coverage_never_panics(
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        lcov in any::<bool>(),
    ) {
        let file: &[u8] = if lcov {
            crate::fixture!("lcov.info")
        } else {
            crate::fixture!("cobertura-no-summary.xml")
        };
        let _ = parse_coverage(&file[..cut.index(file.len())]);
        let mut flipped = file.to_vec();
        let at = flip.index(flipped.len());
        flipped[at] = byte;
        let _ = parse_coverage(&flipped);
    }
}
