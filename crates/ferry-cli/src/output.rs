//! Writing to stdout without panicking on a closed pipe (`ferry history | head` exits
//! 0), and the `--json` printer.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout; a closed pipe ends the process quietly with success.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush())
        && e.kind() == ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `out` with a newline.
pub fn line(text: impl AsRef<str>) {
    out(&format!("{}\n", text.as_ref()));
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => line(s),
        Err(e) => eprintln!("error: cannot serialize output: {e}"),
    }
}

/// Formats a timestamp (ms since the epoch) as `2026-11-26 09:30:01Z`.
pub fn when(ms: i64) -> String {
    ferry_core::events::iso8601(ferry_core::Timestamp(ms)).replace('T', " ")
}

/// Pads columns of a table to their widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    }
    s
}
