//! Each JUnit dialect's real shape, read to exact counts and failures.

use ferry_reports::{FailedTest, TestReport, parse_junit};

use crate::fixture;

fn failed(name: &str, suite: &str, error: &str, stack_trace: Option<&str>) -> FailedTest {
    FailedTest {
        name: name.to_owned(),
        suite: suite.to_owned(),
        error: error.to_owned(),
        stack_trace: stack_trace.map(str::to_owned),
    }
}

fn counts(report: &TestReport) -> [u64; 5] {
    [
        report.total,
        report.passed,
        report.failed,
        report.errored,
        report.skipped,
    ]
}

#[test]
fn pytest() {
    let report = parse_junit(fixture!("pytest.xml")).unwrap();
    // `tests="9"` in the file: pytest counts the failed-then-errored case once.
    assert_eq!(counts(&report), [10, 4, 2, 2, 2]);
    assert!(!report.ok());
    assert_eq!(
        report.failures,
        vec![
            failed(
                "test_login_bad_password",
                "tests.test_api",
                "AssertionError: assert 401 == 200\n +  where 401 = <Response [401]>.status_code",
                Some(
                    "client = <FlaskClient <Flask 'app'>>\n\n    def test_login_bad_password(client):\n        \
                     resp = client.post(\"/login\", json={\"user\": \"ada\", \"password\": \"nope\"})\n\
                     >       assert resp.status_code == 200\nE       AssertionError: assert 401 == 200\n\
                     E        +  where 401 = <Response [401]>.status_code\n\ntests/test_api.py:27: AssertionError"
                ),
            ),
            failed(
                "test_migrations",
                "tests.test_db",
                "failed on setup with \"ConnectionRefusedError: [Errno 111] Connection refused\"",
                Some(
                    "@pytest.fixture\n    def db():\n>       conn = psycopg.connect(DSN)\n\
                     E       ConnectionRefusedError: [Errno 111] Connection refused\n\n\
                     tests/conftest.py:12: ConnectionRefusedError"
                ),
            ),
            failed(
                "test_shutdown",
                "tests.test_worker",
                "assert False",
                Some(
                    "def test_shutdown(worker):\n        worker.stop()\n>       assert worker.stopped\n\
                     E       assert False\n\ntests/test_worker.py:18: assert False"
                ),
            ),
            failed(
                "test_shutdown",
                "tests.test_worker",
                "failed on teardown with \"TimeoutError: worker thread still alive\"",
                Some(
                    "def worker():\n        w = Worker()\n        yield w\n>       w.join(timeout=0.1)\n\
                     E       TimeoutError: worker thread still alive\n\ntests/conftest.py:30: TimeoutError"
                ),
            ),
        ]
    );
}

#[test]
fn jest_junit() {
    let report = parse_junit(fixture!("jest-junit.xml")).unwrap();
    assert_eq!(counts(&report), [7, 3, 2, 1, 1]);
    assert_eq!(
        report.failures,
        vec![
            failed(
                "sum handles negatives",
                "sum",
                "Error: expect(received).toBe(expected) // Object.is equality",
                Some(
                    "Error: expect(received).toBe(expected) // Object.is equality\n\nExpected: -3\n\
                     Received: 3\n    at Object.toBe (/home/runner/work/app/src/sum.test.js:9:22)\n    \
                     at Promise.then.completed (/home/runner/work/app/node_modules/jest-circus/build/utils.js:298:28)\n    \
                     at new Promise (<anonymous>)"
                ),
            ),
            failed(
                "api client parses \"error\" bodies",
                "api client",
                "TypeError: Cannot read properties of undefined (reading 'status')",
                Some(
                    "TypeError: Cannot read properties of undefined (reading 'status')\n    \
                     at parseError (/home/runner/work/app/src/client.js:41:18)\n    \
                     at Object.<anonymous> (/home/runner/work/app/src/client.test.js:77:5)"
                ),
            ),
            failed(
                "src/broken.test.js",
                "Test suite failed to run",
                "● Test suite failed to run",
                Some(
                    "  ● Test suite failed to run\n\n    Cannot find module './missing' from 'src/broken.test.js'\n\n    \
                     > 1 | import { thing } from './missing';\n        | ^"
                ),
            ),
        ]
    );
}

#[test]
fn surefire() {
    let report = parse_junit(fixture!("surefire.xml")).unwrap();
    // The flaky `networkCall` passed on its rerun; `alwaysTimesOut` failed on every run.
    assert_eq!(counts(&report), [7, 3, 2, 1, 1]);
    assert_eq!(
        report.failures,
        vec![
            failed(
                "dividesByZero",
                "com.example.CalculatorTest",
                "expected: <Infinity> but was: <NaN>",
                Some(
                    "org.opentest4j.AssertionFailedError: expected: <Infinity> but was: <NaN>\n\
                     \tat org.junit.jupiter.api.AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)\n\
                     \tat org.junit.jupiter.api.AssertEquals.failNotEqual(AssertEquals.java:197)\n\
                     \tat com.example.CalculatorTest.dividesByZero(CalculatorTest.java:31)"
                ),
            ),
            failed(
                "parsesInput",
                "com.example.CalculatorTest",
                "Cannot invoke \"String.trim()\" because \"input\" is null",
                Some(
                    "java.lang.NullPointerException: Cannot invoke \"String.trim()\" because \"input\" is null\n\
                     \tat com.example.Calculator.parse(Calculator.java:58)\n\
                     \tat com.example.CalculatorTest.parsesInput(CalculatorTest.java:44)"
                ),
            ),
            failed(
                "alwaysTimesOut",
                "com.example.CalculatorTest",
                "alwaysTimesOut() timed out after 100 milliseconds",
                Some(
                    "java.util.concurrent.TimeoutException: alwaysTimesOut() timed out after 100 milliseconds"
                ),
            ),
        ]
    );
}

#[test]
fn nextest() {
    let report = parse_junit(fixture!("nextest.xml")).unwrap();
    // nextest leaves ignored tests out of the report; the flaky test passed on retry.
    assert_eq!(counts(&report), [6, 3, 2, 1, 0]);
    let panic = "thread 'rollback::tests::is_idempotent' panicked at crates/ferry-core/src/rollback.rs:88:9";
    assert_eq!(
        report.failures,
        vec![
            failed(
                "rollback::tests::is_idempotent",
                "ferry-core",
                panic,
                Some(&format!(
                    "{panic}:\nassertion `left == right` failed\n  left: 2\n right: 1\n\
                     note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                )),
            ),
            failed(
                "lease_is_exclusive",
                "ferry-store::sqlite",
                "test aborted with signal 6 (SIGABRT)",
                None,
            ),
            failed(
                "wal_survives_kill",
                "ferry-store::sqlite",
                "test timed out after 1.5s",
                Some("test timed out after 1.5s"),
            ),
        ]
    );
}

#[test]
fn reports_serialize_with_snake_case_fields() {
    let report = parse_junit(fixture!("nextest.xml")).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["total"], 6);
    assert_eq!(json["failures"][1]["stack_trace"], serde_json::Value::Null);
    let back: TestReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn merge_adds_counts_and_failures() {
    let mut report = parse_junit(fixture!("pytest.xml")).unwrap();
    report.merge(parse_junit(fixture!("surefire.xml")).unwrap());
    assert_eq!(counts(&report), [17, 7, 4, 3, 3]);
    assert_eq!(report.failures.len(), 7);
    assert_eq!(report.failures[4].name, "dividesByZero");

    let mut empty = TestReport::default();
    assert!(empty.ok());
    empty.merge(TestReport::default());
    assert_eq!(empty, TestReport::default());
}

#[test]
fn reports_without_test_cases_are_valid() {
    for xml in [
        "<testsuites/>",
        "<testsuite name=\"empty\" tests=\"0\"></testsuite>",
        "<?xml version=\"1.0\"?>\n<testsuites name=\"jest tests\" tests=\"0\">\n</testsuites>\n",
        "<testsuites><testsuite name=\"a\"><properties/></testsuite></testsuites>",
    ] {
        let report = parse_junit(xml.as_bytes()).unwrap();
        assert_eq!(report, TestReport::default(), "{xml}");
        assert!(report.ok());
    }
}

#[test]
fn aggregate_attributes_are_ignored() {
    let xml = r#"<testsuites tests="100" failures="0"><testsuite tests="1" failures="0">
        <testcase name="a"/><testcase name="b"><failure/></testcase>
        </testsuite></testsuites>"#;
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(counts(&report), [2, 1, 1, 0, 0]);
    // No message, no text, no type: the error is empty rather than invented.
    assert_eq!(report.failures, vec![failed("b", "", "", None)]);
}

#[test]
fn nested_suites_name_the_innermost_suite() {
    let xml = r#"<testsuites>
      <testsuite name="outer">
        <testsuite name="inner">
          <testcase name="deep"><error type="Timeout"/></testcase>
        </testsuite>
        <testcase name="shallow"><failure message="boom"/></testcase>
      </testsuite>
      <testcase name="loose" classname="x.Loose"><failure>first line
second line</failure></testcase>
    </testsuites>"#;
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(counts(&report), [3, 0, 2, 1, 0]);
    assert_eq!(
        report.failures,
        vec![
            failed("deep", "inner", "Timeout", None),
            failed("shallow", "outer", "boom", None),
            failed(
                "loose",
                "x.Loose",
                "first line",
                Some("first line\nsecond line")
            ),
        ]
    );
}

#[test]
fn outcome_precedence_is_failure_then_error_then_skipped() {
    let xml = r#"<testsuite name="s">
      <testcase name="skip-then-fail"><skipped/><failure message="f"/></testcase>
      <testcase name="error-then-fail"><error message="e"/><failure message="f"/></testcase>
      <testcase name="fail-then-error"><failure message="f"/><error message="e"/></testcase>
      <testcase name="error-and-skip"><skipped/><error message="e"/></testcase>
      <testcase name="two-failures"><failure message="first"/><failure message="second"/></testcase>
      <testcase name="only-skipped"><skipped message="later"/><system-out>x</system-out></testcase>
      <testcase name="rerun-alone"><rerunFailure message="r"/></testcase>
      <testcase name="flaky"><flakyError message="r"/><flakyFailure message="r"/></testcase>
    </testsuite>"#;
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(counts(&report), [8, 2, 4, 1, 1]);
    let errors: Vec<_> = report
        .failures
        .iter()
        .map(|f| (f.name.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            ("skip-then-fail", "f"),
            ("error-then-fail", "f"),
            ("fail-then-error", "f"),
            ("error-and-skip", "e"),
            ("two-failures", "first"),
        ]
    );
}

#[test]
fn outcome_elements_count_only_as_direct_children_of_the_case() {
    // A `<failure>` inside `<system-out>` (a test printing XML) is text of no meaning.
    let xml = r#"<testsuite><testcase name="prints"><system-out><failure/></system-out></testcase></testsuite>"#;
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(counts(&report), [1, 1, 0, 0, 0]);
}

#[test]
fn cdata_entities_bom_and_namespaces() {
    let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <!DOCTYPE testsuites>\n\
        <!-- generated -->\n\
        <j:testsuites xmlns:j=\"urn:x\"><j:testsuite name=\"s &amp; t\">\
        <j:testcase name=\"caf&#233; &#x1F600;\" classname=\"&lt;c&gt;\">\
        <j:failure>before <![CDATA[<raw> & ]]]]><![CDATA[>]]> after &amp; &nbsp; &#65;</j:failure>\
        </j:testcase></j:testsuite></j:testsuites>";
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(
        report.failures,
        vec![failed(
            "café 😀",
            "<c>",
            "before <raw> & ]]> after & &nbsp; A",
            Some("before <raw> & ]]> after & &nbsp; A"),
        )]
    );
}

#[test]
fn crlf_line_ends_and_utf16() {
    let xml = "<testsuite name=\"s\">\r\n<testcase name=\"a\"><failure>one\r\ntwo\r\n</failure></testcase>\r\n</testsuite>\r\n";
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(report.failures[0].stack_trace.as_deref(), Some("one\ntwo"));

    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(parse_junit(&utf16).unwrap(), report);
    let mut utf16be = vec![0xFE, 0xFF];
    utf16be.extend(xml.encode_utf16().flat_map(u16::to_be_bytes));
    assert_eq!(parse_junit(&utf16be).unwrap(), report);
}

#[test]
fn a_large_report_is_streamed() {
    // About 50 MB: 280 000 cases, one in a hundred failing with a long stack trace.
    let mut xml = String::from("<testsuites>\n");
    for suite in 0..280 {
        xml.push_str(&format!("<testsuite name=\"suite{suite}\">\n"));
        for case in 0..1000 {
            if case % 100 == 7 {
                xml.push_str(&format!(
                    "<testcase classname=\"pkg.Suite{suite}\" name=\"case{case}\" time=\"0.001\">\
                     <failure message=\"boom {case}\">{}</failure></testcase>\n",
                    "at frame &amp; more\n".repeat(200)
                ));
            } else {
                xml.push_str(&format!(
                    "<testcase classname=\"pkg.Suite{suite}\" name=\"case{case}\" time=\"0.001\">\
                     <system-out>{}</system-out></testcase>\n",
                    "log line\n".repeat(5)
                ));
            }
        }
        xml.push_str("</testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    assert!(xml.len() > 50_000_000, "{}", xml.len());
    let report = parse_junit(xml.as_bytes()).unwrap();
    assert_eq!(counts(&report), [280_000, 277_200, 2_800, 0, 0]);
    assert_eq!(report.failures[2799].error, "boom 907");
    assert_eq!(
        report.failures[0].stack_trace.as_deref().map(str::len),
        Some(200 * "at frame & more\n".len() - 1)
    );
}
