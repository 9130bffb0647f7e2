//! `ferry.yml`: the pipeline model, and the parser that checks a file and names every
//! problem with its line, column and fix.
//!
//! Pure: it reads a `&str` and returns a [`Pipeline`] or all the [`Diagnostic`]s at once.
//! No file or network I/O, no clock.
//!
//! Parsing has two passes. [`yaml`] turns the text into a tree that keeps every key (even a
//! repeated one) with its position; [`validate`] walks that tree against the shape of the
//! file, collects problems instead of stopping at the first, and builds the model, with
//! every default filled in, only when there is none.

mod diagnostic;
mod duration;
mod model;
mod validate;
pub mod windows;
mod yaml;

pub use diagnostic::Diagnostic;
pub use duration::{format_duration, parse_duration};
pub use model::{
    Alarm, AlarmSource, Allow, Approval, AuditSource, Build, CLOUDFORMATION_CAPABILITIES,
    CloudFormationDeploy, CommandDeploy, Comparison, DEFAULT_NOTIFY_EVENTS, DEFAULT_SYNTH_TIMEOUT,
    Deploy, EVENT_KINDS, Environment, EnvironmentInfrastructure, ExecutionMode, Gates,
    HOTFIX_APPROVALS, Hotfix, Infrastructure, InsufficientData, MissingData, Monitor, Notification,
    Pipeline, ReleaseDeploy, Reports, Rollback, RollbackValidate, S3Deploy, Security, Server,
    SmtpTls, Source, Step, Suite, short_hash, smtp_endpoint,
};
pub use windows::{WeekRange, WeekTime, Windows};

/// The commented starter file `ferry init` writes. It parses without diagnostics.
pub const STARTER: &str = include_str!("starter.yml");

/// Parses and checks a pipeline file. `file` is the name diagnostics carry (`ferry.yml`).
///
/// # Errors
/// Every problem in the file, sorted by line and column. A YAML syntax error is reported
/// alone, since nothing after it can be read reliably.
pub fn parse(source: &str, file: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let (root, extra) = match yaml::load(source) {
        yaml::Loaded::Doc { root, extra } => (root, extra),
        yaml::Loaded::Empty => {
            return Err(vec![validate::diagnostic(
                file,
                yaml::Pos { line: 1, column: 1 },
                "the pipeline file is empty",
                Some(
                    "start with `pipeline: <name>`; `ferry init` writes a commented starter file"
                        .into(),
                ),
            )]);
        }
        yaml::Loaded::Error { pos, message } => {
            return Err(vec![validate::diagnostic(
                file,
                pos,
                // saphyr says "double-quoted" for single-quoted scalars too.
                format!(
                    "invalid yaml: {}",
                    message.replace("double-quoted scalar", "quoted value")
                ),
                Some(syntax_help(&message).into()),
            )]);
        }
    };
    let result = validate::check(&root, file);
    match extra {
        None => result,
        Some(pos) => {
            let mut diags = result.err().unwrap_or_default();
            diags.push(validate::diagnostic(
                file,
                pos,
                "a second yaml document in the pipeline file",
                Some("keep one document: remove this `---` and what follows, or merge it into the first".into()),
            ));
            diags.sort_by_key(|a| (a.line, a.column));
            Err(diags)
        }
    }
}

/// What to do about a YAML syntax error.
fn syntax_help(message: &str) -> &'static str {
    if message.contains("tab") {
        "indent with spaces: YAML does not allow tabs for indentation"
    } else if message.contains("trailing content") {
        "a value that starts with a quote must end with it; put the whole value in quotes of the other kind, like `start: \"'./my app' --port 8080\"`"
    } else {
        "check the indentation and quoting here; quote values that contain `: ` or ` #`, or that start with `>`, `|`, `*`, `&`, `!`, `%`, `@`, `{` or `[`"
    }
}
