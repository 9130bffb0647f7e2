//! Bad inputs: each one a specific error, with the place where it broke.

use ferry_reports::{ReportError, parse_coverage, parse_junit};

use crate::fixture;

fn junit_error(input: &[u8]) -> String {
    parse_junit(input).unwrap_err().to_string()
}

fn coverage_error(input: &[u8]) -> String {
    parse_coverage(input).unwrap_err().to_string()
}

/// The index of the last `>` in the first half of a report: a cut right after it
/// leaves well-formed but unfinished XML.
fn cut_after_tag(report: &[u8]) -> usize {
    report[..report.len() / 2]
        .iter()
        .rposition(|&b| b == b'>')
        .unwrap()
}

#[test]
fn truncated_xml_names_the_missing_end_tag() {
    let full = fixture!("surefire.xml");
    let cut = &full[..=cut_after_tag(full)];
    let error = parse_junit(cut).unwrap_err();
    let ReportError::Xml { message, .. } = &error else {
        panic!("expected an XML error, got {error:?}");
    };
    assert!(message.starts_with("expected `</"), "{message}");

    let xml = b"<testsuites>\n  <testsuite name=\"a\">\n    <testcase name=\"b\">";
    assert_eq!(
        junit_error(xml),
        "not valid XML at line 3, column 24: expected `</testcase>`, found the end of the input"
    );
    assert_eq!(
        parse_junit(xml).unwrap_err(),
        ReportError::Xml {
            line: 3,
            column: 24,
            message: "expected `</testcase>`, found the end of the input".to_owned()
        }
    );
}

#[test]
fn truncated_inside_a_tag_or_attribute() {
    assert_eq!(
        junit_error(b"<testsuites>\n<testsuite name=\"a\">\n<testca"),
        "not valid XML at line 3, column 1: tag not closed: `>` not found before end of input"
    );
    assert_eq!(
        junit_error(b"<testsuites>\n  <testcase name=\"a"),
        "not valid XML at line 2, column 3: attribute value not closed: `\"` not found before end of input"
    );
    assert_eq!(
        junit_error(b"<testsuites><testcase><failure><![CDATA[boom"),
        "not valid XML at line 1, column 32: CDATA not closed: `]]>` not found before end of input"
    );
}

#[test]
fn mismatched_end_tag_names_both_tags() {
    assert_eq!(
        junit_error(b"<testsuites>\n  <testsuite>\n    <testcase name=\"a\">\n  </testsuite>\n</testsuites>"),
        "not valid XML at line 4, column 3: expected `</testcase>`, found `</testsuite>`"
    );
}

#[test]
fn html_is_not_junit() {
    let html = b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\n<body><h1>Bad Gateway</h1></body>\n</html>\n";
    assert_eq!(
        junit_error(html),
        "not a JUnit report: the root element is `html`, expected `testsuites` or `testsuite`"
    );
    assert_eq!(
        coverage_error(html),
        "not a coverage report: the root element is `html`, expected `coverage` (Cobertura XML)"
    );
}

#[test]
fn a_junit_report_is_not_coverage_and_the_other_way_round() {
    assert_eq!(
        coverage_error(fixture!("nextest.xml")),
        "not a coverage report: the root element is `testsuites`, expected `coverage` (Cobertura XML)"
    );
    assert_eq!(
        junit_error(fixture!("cobertura.xml")),
        "not a JUnit report: the root element is `coverage`, expected `testsuites` or `testsuite`"
    );
    assert_eq!(
        junit_error(fixture!("lcov.info")),
        "not valid XML at line 1, column 1: expected `<testsuites>` or `<testsuite>`, found text"
    );
}

#[test]
fn empty_input() {
    for input in [&b""[..], b"   \n\t\r\n", b"\xEF\xBB\xBF", b"\xEF\xBB\xBF\n"] {
        assert_eq!(
            parse_junit(input).unwrap_err(),
            ReportError::Empty {
                expected: "a JUnit XML report"
            }
        );
        assert_eq!(
            junit_error(input),
            "empty input: expected a JUnit XML report"
        );
        assert_eq!(
            coverage_error(input),
            "empty input: expected an LCOV or Cobertura XML coverage report"
        );
    }
}

#[test]
fn xml_without_a_root_element() {
    assert_eq!(
        junit_error(b"<?xml version=\"1.0\"?>\n<!-- nothing ran -->\n"),
        "no root element: expected `<testsuites>` or `<testsuite>`"
    );
    assert_eq!(
        coverage_error(b"<?xml version=\"1.0\"?>"),
        "no root element: expected a `<coverage>` root element (Cobertura XML)"
    );
}

#[test]
fn binary_garbage() {
    // The start of a PNG file.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10";
    assert_eq!(
        junit_error(png),
        "not UTF-8 text at line 1, column 1: reports must be UTF-8 (or UTF-16 with a byte order mark)"
    );
    assert_eq!(
        coverage_error(png),
        "not a coverage report: expected LCOV (`SF:`/`DA:` records) or Cobertura XML (`<coverage>` root)"
    );
    // A gzip-compressed report.
    let gzip = b"\x1f\x8b\x08\0\0\0\0\0\0\x03\xed\x9d";
    assert_eq!(
        parse_junit(gzip).unwrap_err(),
        ReportError::NotUtf8 { line: 1, column: 2 }
    );
    assert_eq!(
        parse_coverage(gzip).unwrap_err(),
        ReportError::UnknownCoverageFormat
    );
    // Valid UTF-8 that is not a report either.
    assert_eq!(
        junit_error(b"\0\0\0\x01binary"),
        "not valid XML at line 1, column 1: expected `<testsuites>` or `<testsuite>`, found text"
    );
    // XML that starts well and then turns to garbage.
    assert_eq!(
        junit_error(b"<testsuites>\n<testsuite name=\"\xC3\x28\">"),
        "not UTF-8 text at line 2, column 18: reports must be UTF-8 (or UTF-16 with a byte order mark)"
    );
}

#[test]
fn lcov_with_a_non_numeric_count() {
    let lcov = b"TN:\nSF:src/lib.rs\nDA:1,1\nDA:2,abc\nend_of_record\n";
    assert_eq!(
        coverage_error(lcov),
        "invalid LCOV at line 4: `DA:2,abc` has an execution count that is not a number: `abc`"
    );
    assert_eq!(
        parse_coverage(lcov).unwrap_err(),
        ReportError::Lcov {
            line: 4,
            message: "`DA:2,abc` has an execution count that is not a number: `abc`".to_owned()
        }
    );
}

#[test]
fn lcov_with_other_broken_records() {
    assert_eq!(
        coverage_error(b"SF:a.rs\nDA:x,1\n"),
        "invalid LCOV at line 2: `DA:x,1` has a line number that is not a number: `x`"
    );
    assert_eq!(
        coverage_error(b"SF:a.rs\nDA:7\n"),
        "invalid LCOV at line 2: `DA:7` has no execution count: expected `DA:<line>,<count>`"
    );
    assert_eq!(
        coverage_error(b"SF:a.rs\nDA:1,1\nLF:ten\n"),
        "invalid LCOV at line 3: `LF:ten` has a count that is not a number: `ten`"
    );
    assert_eq!(
        coverage_error(b"TN:\nDA:1,1\n"),
        "invalid LCOV at line 2: `DA:1,1` is outside a source file: expected `SF:<path>` before it"
    );
    assert_eq!(
        coverage_error(b"SF:a.rs\nDA:1,1\nthis is not lcov\n"),
        "invalid LCOV at line 3: expected a record such as `DA:<line>,<count>`, found `this is not lcov`"
    );
}

#[test]
fn text_that_is_not_lcov() {
    for input in [
        &b"hello world\n"[..],
        b"Name: coverage summary\nDA:1,1\n",
        b"{\"total\": {\"lines\": {\"pct\": 80}}}",
        b"coverage: 80%",
    ] {
        assert_eq!(
            parse_coverage(input).unwrap_err(),
            ReportError::UnknownCoverageFormat,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn cobertura_with_bad_numbers() {
    assert_eq!(
        coverage_error(b"<coverage lines-valid=\"many\" lines-covered=\"1\"/>"),
        "invalid Cobertura report at line 1, column 1: `lines-valid` is not a whole number: `many`"
    );
    let xml = b"<coverage>\n  <packages><package><classes><class filename=\"a.py\"><lines>\n    <line number=\"3\" hits=\"lots\"/>\n</lines></class></classes></package></packages></coverage>";
    assert_eq!(
        coverage_error(xml),
        "invalid Cobertura report at line 3, column 5: `hits` of line 3 is not a number: `lots`"
    );
    assert_eq!(
        coverage_error(b"<coverage><line hits=\"1\"/></coverage>"),
        "invalid Cobertura report at line 1, column 11: `<line>` has no `number` attribute"
    );
}

#[test]
fn truncated_cobertura() {
    let full = fixture!("cobertura.xml");
    let error = parse_coverage(&full[..=cut_after_tag(full)]).unwrap_err();
    assert!(
        matches!(&error, ReportError::Xml { message, .. } if message.starts_with("expected `</")),
        "{error}"
    );
}
