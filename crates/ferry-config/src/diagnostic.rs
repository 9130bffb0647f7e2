//! A problem found in a pipeline file, with its position and the fix to apply.

use std::fmt;

use serde::Serialize;

/// One problem in a pipeline file.
///
/// Displays as `ferry.yml:12:7: unknown key `timout` in step `unit``, followed by
/// `\n  help: did you mean `timeout`?` when there is a help line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file name as given to [`crate::parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// A lowercase fragment naming the thing, without a final period.
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_and_without_help() {
        let mut d = Diagnostic {
            file: "ferry.yml".into(),
            line: 12,
            column: 7,
            message: "unknown key `timout` in step `unit`".into(),
            help: Some("did you mean `timeout`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "ferry.yml:12:7: unknown key `timout` in step `unit`\n  help: did you mean `timeout`?"
        );
        d.help = None;
        assert_eq!(
            d.to_string(),
            "ferry.yml:12:7: unknown key `timout` in step `unit`"
        );
    }
}
