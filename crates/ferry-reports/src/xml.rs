//! A thin streaming layer over quick-xml: error positions, open-element tracking, and
//! entity resolution in text and attribute values.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::errors::{Error, IllFormedError};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::ReportError;
use crate::text;

/// Reads an XML document event by event, borrowing from the input.
pub(crate) struct XmlStream<'a> {
    reader: Reader<&'a [u8]>,
    input: &'a str,
    /// Names of the elements opened and not yet closed, outermost first.
    open: Vec<String>,
    /// Byte offset where the last returned event started.
    event_start: u64,
}

/// The root element of a document.
pub(crate) struct Root<'a> {
    pub(crate) element: BytesStart<'a>,
    /// `<root/>`: the document has nothing but its root.
    pub(crate) empty: bool,
}

impl<'a> XmlStream<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        let mut reader = Reader::from_str(input);
        let config = reader.config_mut();
        config.check_end_names = true;
        // Tools do write a bare `&` now and then; keep it as text rather than refuse
        // the whole report.
        config.allow_dangling_amp = true;
        Self {
            reader,
            input,
            open: Vec::new(),
            event_start: 0,
        }
    }

    /// How many elements are open after the last event (an `Empty` event opens none).
    pub(crate) fn depth(&self) -> usize {
        self.open.len()
    }

    /// The next event. `Eof` is returned only when every element was closed; a document
    /// that ends inside an element is an error naming the missing end tag.
    pub(crate) fn next(&mut self) -> Result<Event<'a>, ReportError> {
        self.event_start = self.reader.buffer_position();
        let event = self.reader.read_event().map_err(|e| {
            let at = self.reader.error_position();
            self.error_at(at, describe(&e))
        })?;
        match &event {
            Event::Start(start) => self.open.push(start.name().into_inner().to_owned()),
            Event::End(_) => {
                self.open.pop();
            }
            Event::Eof => {
                if let Some(name) = self.open.last() {
                    let message = format!("expected `</{name}>`, found the end of the input");
                    return Err(self.error_at(self.input.len() as u64, message));
                }
            }
            _ => {}
        }
        Ok(event)
    }

    /// Reads up to the root element. Text other than whitespace before it is an error;
    /// so is a document with no element at all.
    pub(crate) fn root(&mut self, expected: &'static str) -> Result<Root<'a>, ReportError> {
        loop {
            match self.next()? {
                Event::Start(element) => {
                    return Ok(Root {
                        element,
                        empty: false,
                    });
                }
                Event::Empty(element) => {
                    return Ok(Root {
                        element,
                        empty: true,
                    });
                }
                Event::Text(t) if t.trim_ascii().is_empty() => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.error_here(format!("expected {expected}, found text")));
                }
                Event::Eof => return Err(ReportError::NoRootElement { expected }),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
                Event::End(_) => {
                    // quick-xml reports an end tag without a start as an error already.
                    return Err(self.error_here(format!("expected {expected}, found an end tag")));
                }
            }
        }
    }

    /// An XML error at the start of the last event.
    pub(crate) fn error_here(&self, message: String) -> ReportError {
        self.error_at(self.event_start, message)
    }

    /// The 1-based line and column where the last event started.
    pub(crate) fn here(&self) -> (u64, u64) {
        self.line_column(self.event_start)
    }

    fn error_at(&self, offset: u64, message: String) -> ReportError {
        let (line, column) = self.line_column(offset);
        ReportError::Xml {
            line,
            column,
            message,
        }
    }

    fn line_column(&self, offset: u64) -> (u64, u64) {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        text::line_column(self.input.as_bytes(), offset)
    }
}

/// A quick-xml error as a lowercase fragment.
fn describe(error: &Error) -> String {
    match error {
        Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
            format!("expected `</{expected}>`, found `</{found}>`")
        }
        Error::IllFormed(IllFormedError::UnmatchedEndTag(name)) => {
            format!("`</{name}>` closes no open element")
        }
        Error::IllFormed(IllFormedError::MissingEndTag(name)) => {
            format!("expected `</{name}>`, found the end of the input")
        }
        Error::IllFormed(e) => e.to_string(),
        Error::Syntax(e) => e.to_string(),
        Error::InvalidAttr(e) => format!("bad attribute: {e}"),
        other => other.to_string(),
    }
}

/// The name of an element without its namespace prefix (`xsi:foo` → `foo`).
pub(crate) fn local_name<'e>(element: &'e BytesStart<'_>) -> &'e str {
    element.local_name().into_inner()
}

/// The value of an attribute, entities resolved. A value that cannot be unescaped (an
/// unknown entity such as HTML's `&nbsp;`) is returned raw rather than refused.
/// A malformed attribute list is an error at the element.
pub(crate) fn attribute<'e>(
    stream: &XmlStream<'_>,
    element: &'e BytesStart<'_>,
    name: &str,
) -> Result<Option<Cow<'e, str>>, ReportError> {
    let attribute = element
        .try_get_attribute(name)
        .map_err(|e| stream.error_here(format!("bad attribute: {e}")))?;
    Ok(
        attribute.map(|a| match a.normalized_value(XmlVersion::Implicit1_0) {
            Ok(value) => value,
            Err(_) => a.value,
        }),
    )
}

/// The text an event contributes to its element's content: text, CDATA and resolved
/// entity references. Markup contributes nothing.
pub(crate) fn content<'e>(event: &'e Event<'_>) -> Option<Cow<'e, str>> {
    match event {
        Event::Text(t) => Some(t.xml10_content()),
        Event::CData(t) => Some(t.xml10_content()),
        Event::GeneralRef(r) => Some(resolve(r)),
        _ => None,
    }
}

/// `&amp;` → `&`, `&#10;` → newline; an unknown entity is kept as it was written.
fn resolve<'e>(reference: &'e BytesRef<'_>) -> Cow<'e, str> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Cow::Owned(c.to_string());
    }
    let name: &str = reference;
    match resolve_predefined_entity(name) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(format!("&{name};")),
    }
}
