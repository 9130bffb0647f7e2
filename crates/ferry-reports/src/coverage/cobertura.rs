//! Cobertura XML: the root's `lines-valid` / `lines-covered`, or its `<line>` elements.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};

use super::{Coverage, CoverageFormat};
use crate::ReportError;
use crate::xml::{self, XmlStream};

pub(super) fn parse(input: &str) -> Result<Coverage, ReportError> {
    let mut stream = XmlStream::new(input);
    let root = stream.root("a `<coverage>` root element (Cobertura XML)")?;
    let root_name = xml::local_name(&root.element);
    if root_name != "coverage" {
        return Err(ReportError::NotCobertura {
            found: root_name.to_owned(),
        });
    }
    let valid = number(&stream, &root.element, "lines-valid")?;
    let covered = number(&stream, &root.element, "lines-covered")?;
    let summary = match (valid, covered) {
        (Some(valid), Some(covered)) if valid > 0 => Some((valid, covered)),
        _ => None,
    };

    // File name → line number → hit. Lines are listed under their class and again
    // under its methods, hence the deduplication.
    let mut files: HashMap<String, HashMap<u64, bool>> = HashMap::new();
    // The file of the `<class>` being read, and the depth it is open at.
    let mut class: Option<(String, usize)> = None;
    if !root.empty {
        loop {
            match stream.next()? {
                Event::Start(element) => {
                    if xml::local_name(&element) == "class" {
                        let file = xml::attribute(&stream, &element, "filename")?
                            .unwrap_or_default()
                            .into_owned();
                        class = Some((file, stream.depth()));
                    } else if summary.is_none() {
                        line(&stream, &element, class.as_ref(), &mut files)?;
                    }
                }
                Event::Empty(element) if summary.is_none() => {
                    line(&stream, &element, class.as_ref(), &mut files)?;
                }
                Event::End(_) => {
                    if class.as_ref().is_some_and(|(_, d)| stream.depth() < *d) {
                        class = None;
                    }
                    if stream.depth() == 0 {
                        break;
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
    }

    let (found, hit) = match summary {
        Some(summary) => summary,
        None => files.values().fold((0u64, 0u64), |(found, hit), lines| {
            (
                found + lines.len() as u64,
                hit + lines.values().filter(|&&h| h).count() as u64,
            )
        }),
    };
    Ok(Coverage::new(found, hit, CoverageFormat::Cobertura))
}

/// Records a `<line number=… hits=…>` element (any other element is ignored).
fn line(
    stream: &XmlStream<'_>,
    element: &BytesStart<'_>,
    class: Option<&(String, usize)>,
    files: &mut HashMap<String, HashMap<u64, bool>>,
) -> Result<(), ReportError> {
    if xml::local_name(element) != "line" {
        return Ok(());
    }
    let Some(number) = number(stream, element, "number")? else {
        return Err(cobertura_error(
            stream,
            "`<line>` has no `number` attribute".to_owned(),
        ));
    };
    let hits = xml::attribute(stream, element, "hits")?;
    let hit = match hits.as_deref().map(str::trim) {
        None => false,
        Some(text) => {
            if let Ok(count) = text.parse::<i128>() {
                count > 0
            } else if let Ok(count) = text.parse::<f64>()
                && count.is_finite()
            {
                count > 0.0
            } else {
                return Err(cobertura_error(
                    stream,
                    format!("`hits` of line {number} is not a number: `{text}`"),
                ));
            }
        }
    };
    let file = class.map_or("", |(file, _)| file.as_str());
    let lines = match files.get_mut(file) {
        Some(lines) => lines,
        None => files.entry(file.to_owned()).or_default(),
    };
    *lines.entry(number).or_default() |= hit;
    Ok(())
}

/// A whole-number attribute; present but not a number is an error.
fn number(
    stream: &XmlStream<'_>,
    element: &BytesStart<'_>,
    name: &str,
) -> Result<Option<u64>, ReportError> {
    let Some(value) = xml::attribute(stream, element, name)? else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(cobertura_error(
            stream,
            format!("`{name}` is not a whole number: `{value}`"),
        )),
    }
}

fn cobertura_error(stream: &XmlStream<'_>, message: String) -> ReportError {
    let (line, column) = stream.here();
    ReportError::Cobertura {
        line,
        column,
        message,
    }
}
