//! LCOV and Cobertura reports, read to exact line counts.

use ferry_reports::{Coverage, CoverageFormat, parse_coverage};

use crate::fixture;

fn coverage(found: u64, hit: u64, format: CoverageFormat) -> Coverage {
    Coverage {
        lines_found: found,
        lines_hit: hit,
        format,
    }
}

#[test]
fn lcov() {
    let report = parse_coverage(fixture!("lcov.info")).unwrap();
    // gate.rs: its LF/LH summary, 10/8. run.rs: no summary, 5 `DA:` lines of which 3
    // ran. health.rs: two records whose summaries each say 3 of 6, merged line by line
    // to 4 of 6 (lines 1, 2, 4 and 6 ran in one record or the other).
    assert_eq!(report, coverage(21, 15, CoverageFormat::Lcov));
    assert!((report.percent() - 100.0 * 15.0 / 21.0).abs() < 1e-9);
}

#[test]
fn lcov_summaries_win_over_da_lines_for_a_single_record() {
    // genhtml trusts LF/LH; so do we, even when the `DA:` lines say otherwise.
    let lcov = b"SF:a.rs\nDA:1,1\nDA:2,0\nLF:10\nLH:9\nend_of_record\n";
    assert_eq!(
        parse_coverage(lcov).unwrap(),
        coverage(10, 9, CoverageFormat::Lcov)
    );
}

#[test]
fn lcov_is_forgiving_where_tools_differ() {
    // CRLF line ends, a missing `end_of_record`, negative and float counts, checksums,
    // lcov 2.x records, comments, a BOM and a non-UTF-8 path.
    let lcov = b"\xEF\xBB\xBFVER:2.0\r\n# comment\r\nSF:a.rs\r\nDA:1,-1\r\nDA:2,1.5e3\r\nDA:3,0,d41d8cd98f00\r\n\
        DA:4,18446744073709551616\r\nFNL:0,1,4\r\nFNA:0,1,main\r\nSF:caf\xE9.rs\nDA:1,0\nLF:1\nLH:0\nend_of_record";
    assert_eq!(
        parse_coverage(lcov).unwrap(),
        coverage(5, 2, CoverageFormat::Lcov)
    );
}

#[test]
fn lcov_several_records_with_only_summaries_take_the_largest() {
    let lcov = b"SF:a.rs\nLF:10\nLH:4\nend_of_record\nSF:a.rs\nLF:10\nLH:7\nend_of_record\n";
    assert_eq!(
        parse_coverage(lcov).unwrap(),
        coverage(10, 7, CoverageFormat::Lcov)
    );
}

#[test]
fn lcov_hits_never_exceed_lines() {
    let lcov = b"SF:a.rs\nLF:3\nLH:5\nend_of_record\n";
    assert_eq!(
        parse_coverage(lcov).unwrap(),
        coverage(3, 3, CoverageFormat::Lcov)
    );
}

#[test]
fn lcov_without_lines() {
    let report = parse_coverage(b"TN:\nSF:empty.rs\nend_of_record\n").unwrap();
    assert_eq!(report, coverage(0, 0, CoverageFormat::Lcov));
    assert_eq!(report.percent(), 0.0);
}

#[test]
fn cobertura_from_coverage_py() {
    let report = parse_coverage(fixture!("cobertura.xml")).unwrap();
    assert_eq!(report, coverage(14, 11, CoverageFormat::Cobertura));
}

#[test]
fn cobertura_without_a_summary_counts_lines_once_each() {
    // gate.rs: lines 12, 13, 14 (listed under the method and the class) and 20; 3 ran.
    // run.rs, split over two classes: lines 3, 4 and 9; 3 and 4 ran.
    let report = parse_coverage(fixture!("cobertura-no-summary.xml")).unwrap();
    assert_eq!(report, coverage(7, 5, CoverageFormat::Cobertura));
}

#[test]
fn cobertura_with_a_summary_but_no_lines() {
    let xml = br#"<?xml version="1.0"?><coverage lines-valid="200" lines-covered="150" line-rate="0.75"/>"#;
    let report = parse_coverage(xml).unwrap();
    assert_eq!(report, coverage(200, 150, CoverageFormat::Cobertura));
    assert_eq!(report.percent(), 75.0);
}

#[test]
fn cobertura_with_nothing() {
    let report = parse_coverage(b"<coverage></coverage>").unwrap();
    assert_eq!(report, coverage(0, 0, CoverageFormat::Cobertura));
}

#[test]
fn the_format_is_told_by_content_not_by_leading_whitespace() {
    let xml = b"\n\n   <coverage lines-valid=\"2\" lines-covered=\"1\"/>";
    assert_eq!(
        parse_coverage(xml).unwrap().format,
        CoverageFormat::Cobertura
    );
    let lcov = b"\n\n   SF:a.rs\nDA:1,1\n";
    assert_eq!(parse_coverage(lcov).unwrap().format, CoverageFormat::Lcov);
}

#[test]
fn coverage_serializes_its_format_in_lowercase() {
    let json = serde_json::to_string(&coverage(4, 3, CoverageFormat::Cobertura)).unwrap();
    assert_eq!(
        json,
        r#"{"lines_found":4,"lines_hit":3,"format":"cobertura"}"#
    );
}
