//! Report bytes to text: byte order marks, UTF-16, UTF-8 checks and line/column positions.

use std::borrow::Cow;

use crate::ReportError;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Removes a UTF-8 byte order mark, or transcodes UTF-16 with a byte order mark to UTF-8
/// (Windows PowerShell writes redirected output as UTF-16). Any other input is returned
/// as it is; it may still not be UTF-8.
pub(crate) fn unbom(bytes: &[u8]) -> Cow<'_, [u8]> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        Cow::Borrowed(rest)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        Cow::Owned(utf16(rest, u16::from_le_bytes).into_bytes())
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        Cow::Owned(utf16(rest, u16::from_be_bytes).into_bytes())
    } else {
        Cow::Borrowed(bytes)
    }
}

/// Decodes UTF-16 code units, replacing unpaired surrogates and a dangling odd byte with
/// U+FFFD rather than failing: a damaged character should not hide the whole report.
fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units = bytes.chunks(2).map(|pair| match pair {
        [a, b] => unit([*a, *b]),
        _ => 0xFFFD,
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The bytes as UTF-8 text, or an error naming where the first invalid byte is.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, ReportError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        ReportError::NotUtf8 { line, column }
    })
}

/// Whether the input holds nothing but ASCII whitespace.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The 1-based line and column (in characters) of a byte offset. Offsets past the end
/// are clamped to the end.
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters, not bytes: every byte that does not continue a UTF-8 sequence.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    (line as u64, column as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "ab\nçd\n".as_bytes();
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // `ç` is two bytes but one column.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 100), (3, 1));
    }

    #[test]
    fn boms_are_removed_and_utf16_is_transcoded() {
        assert_eq!(&*unbom(b"\xEF\xBB\xBF<a/>"), b"<a/>");
        assert_eq!(&*unbom(b"\xFF\xFE<\0a\0/\0>\0"), b"<a/>");
        assert_eq!(&*unbom(b"\xFE\xFF\0<\0a\0/\0>"), b"<a/>");
        assert_eq!(&*unbom(b"\xFF\xFE<\0\0\0"), "<\u{0}".as_bytes());
        assert_eq!(&*unbom(b"\xFF\xFE<\0x"), "<\u{FFFD}".as_bytes());
        assert_eq!(&*unbom(b"plain"), b"plain");
    }

    #[test]
    fn invalid_utf8_is_located() {
        assert_eq!(
            utf8(b"ok\nab\xFFc"),
            Err(ReportError::NotUtf8 { line: 2, column: 3 })
        );
    }
}
