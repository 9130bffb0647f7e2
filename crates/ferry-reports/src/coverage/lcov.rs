//! LCOV tracefiles: `SF:` … `DA:` … `LF:`/`LH:` … `end_of_record`, read line by line.
//!
//! Works on bytes: LCOV holds file paths, and a path need not be UTF-8.

use std::collections::HashMap;

use super::{Coverage, CoverageFormat};
use crate::ReportError;

/// Record types of the LCOV format (geninfo(1), lcov 2.x included). The first record
/// of the input must be one of these for it to be taken as LCOV at all.
const KNOWN_RECORDS: &[&[u8]] = &[
    b"TN", b"VER", b"SF", b"FN", b"FNL", b"FNA", b"FNDA", b"FNF", b"FNH", b"BRDA", b"BRF", b"BRH",
    b"DA", b"LF", b"LH", b"MCDC", b"MCF", b"MCH",
];

/// What the records of one source file say, merged.
#[derive(Default)]
struct File {
    /// Line number → hit, from the `DA:` records of every record of this file.
    lines: HashMap<u64, bool>,
    /// How many `SF:` records named this file.
    records: u32,
    /// The largest `LF`/`LH` summary among those records.
    summary: Option<(u64, u64)>,
}

/// The `SF:` record being read.
struct Record {
    file: usize,
    found: Option<u64>,
    hit: Option<u64>,
}

pub(super) fn parse(bytes: &[u8]) -> Result<Coverage, ReportError> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut files: Vec<File> = Vec::new();
    let mut record: Option<Record> = None;
    let mut seen_record = false;

    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = number as u64 + 1;
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if line == b"end_of_record" {
            close(&mut files, record.take());
            seen_record = true;
            continue;
        }
        let parts = line
            .iter()
            .position(|&b| b == b':')
            .map(|colon| (&line[..colon], &line[colon + 1..]))
            .filter(|(key, _)| !key.is_empty() && key.iter().all(u8::is_ascii_uppercase));
        let Some((key, value)) = parts else {
            if !seen_record {
                return Err(ReportError::UnknownCoverageFormat);
            }
            return Err(lcov_error(
                number,
                format!(
                    "expected a record such as `DA:<line>,<count>`, found `{}`",
                    shown(line)
                ),
            ));
        };
        if !seen_record && !KNOWN_RECORDS.contains(&key) {
            return Err(ReportError::UnknownCoverageFormat);
        }
        seen_record = true;
        match key {
            b"SF" => {
                // A missing `end_of_record` before the next file is forgiven.
                close(&mut files, record.take());
                let file = *index.entry(value).or_insert_with(|| {
                    files.push(File::default());
                    files.len() - 1
                });
                record = Some(Record {
                    file,
                    found: None,
                    hit: None,
                });
            }
            b"DA" | b"LF" | b"LH" => {
                let Some(current) = &mut record else {
                    return Err(lcov_error(
                        number,
                        format!(
                            "`{}` is outside a source file: expected `SF:<path>` before it",
                            shown(line)
                        ),
                    ));
                };
                match key {
                    b"DA" => {
                        let (line_number, hit) = execution(number, line, value)?;
                        let seen = files[current.file].lines.entry(line_number).or_default();
                        *seen |= hit;
                    }
                    b"LF" => current.found = Some(count(number, line, value)?),
                    _ => current.hit = Some(count(number, line, value)?),
                }
            }
            // Functions, branches, test names …: not line coverage.
            _ => {}
        }
    }
    close(&mut files, record.take());
    if !seen_record {
        return Err(ReportError::UnknownCoverageFormat);
    }

    let (mut found, mut hit) = (0u64, 0u64);
    for file in &files {
        let (file_found, file_hit) = match file.summary {
            Some(summary) if file.records == 1 => summary,
            _ if !file.lines.is_empty() => (
                file.lines.len() as u64,
                file.lines.values().filter(|&&h| h).count() as u64,
            ),
            // Several records with summaries but no `DA:` lines cannot be merged line by
            // line; the largest summary is the best estimate.
            Some(summary) => summary,
            None => (0, 0),
        };
        found = found.saturating_add(file_found);
        hit = hit.saturating_add(file_hit.min(file_found));
    }
    Ok(Coverage::new(found, hit, CoverageFormat::Lcov))
}

/// Ends a record: counts it for its file and keeps its summary.
fn close(files: &mut [File], record: Option<Record>) {
    let Some(record) = record else { return };
    let Some(file) = files.get_mut(record.file) else {
        return;
    };
    file.records += 1;
    if let (Some(found), Some(hit)) = (record.found, record.hit) {
        let (old_found, old_hit) = file.summary.unwrap_or((0, 0));
        file.summary = Some((old_found.max(found), old_hit.max(hit)));
    }
}

/// `DA:<line>,<count>[,<checksum>]` → (line, hit). Counts may be negative (some gcov
/// versions) or written as floats (some converters); only "above zero" matters.
fn execution(number: u64, line: &[u8], value: &[u8]) -> Result<(u64, bool), ReportError> {
    let mut fields = value.splitn(3, |&b| b == b',');
    let line_field = fields.next().unwrap_or_default().trim_ascii();
    let Some(count_field) = fields.next().map(<[u8]>::trim_ascii) else {
        return Err(lcov_error(
            number,
            format!(
                "`{}` has no execution count: expected `DA:<line>,<count>`",
                shown(line)
            ),
        ));
    };
    let Some(line_number) = parse_u64(line_field) else {
        return Err(lcov_error(
            number,
            format!(
                "`{}` has a line number that is not a number: `{}`",
                shown(line),
                shown(line_field)
            ),
        ));
    };
    let text = std::str::from_utf8(count_field).unwrap_or_default();
    let hit = if let Ok(count) = text.parse::<i128>() {
        count > 0
    } else if let Ok(count) = text.parse::<f64>()
        && count.is_finite()
    {
        count > 0.0
    } else {
        return Err(lcov_error(
            number,
            format!(
                "`{}` has an execution count that is not a number: `{}`",
                shown(line),
                shown(count_field)
            ),
        ));
    };
    Ok((line_number, hit))
}

/// The value of an `LF:` / `LH:` record.
fn count(number: u64, line: &[u8], value: &[u8]) -> Result<u64, ReportError> {
    parse_u64(value.trim_ascii()).ok_or_else(|| {
        lcov_error(
            number,
            format!(
                "`{}` has a count that is not a number: `{}`",
                shown(line),
                shown(value.trim_ascii())
            ),
        )
    })
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn lcov_error(line: u64, message: String) -> ReportError {
    ReportError::Lcov { line, message }
}

/// A record as it can be quoted in a message: lossy UTF-8, cut at 80 characters.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}
