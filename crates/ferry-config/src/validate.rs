//! The validator: walks the YAML tree, collects every problem with its position and the
//! fix, and builds the [`Pipeline`] when there is none.
//!
//! Each `fn` here reads one place of the file. It reports what is wrong there, fills in
//! defaults, and returns `None` when what it read is unusable; the caller carries on with
//! the rest regardless, so one run finds every problem.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diagnostic::Diagnostic;
use crate::duration::{format_duration, parse_reason};
use crate::model::{
    Alarm, AlarmSource, Allow, Approval, AuditSource, Build, CLOUDFORMATION_CAPABILITIES,
    CloudFormationDeploy, CommandDeploy, Comparison, Deploy, Environment,
    EnvironmentInfrastructure, ExecutionMode, HOTFIX_APPROVALS, Hotfix, Infrastructure,
    InsufficientData, MissingData, Monitor, Notification, Pipeline, ReleaseDeploy, Reports,
    Rollback, RollbackValidate, S3Deploy, Security, Server, Source, Step, Suite,
};
use crate::model::{DEFAULT_NOTIFY_EVENTS, EVENT_KINDS, SmtpTls, smtp_endpoint};
use crate::yaml::{Kind, Node, Pos, Value, ellipsize};

mod windows;

const DURATION_HELP: &str = "write a duration like `30s`, `10m`, `1h30m`";
const LIST_HELP: &str = "write one item per line, each starting with `- `";
const PLAIN_HTTP_HELP: &str =
    "use an http:// URL (a loopback or internal address), or a `command` alarm that runs curl";

const TOP_KEYS: &[&str] = &[
    "pipeline",
    "source",
    "build",
    "environments",
    "alarms",
    "rollback",
    "notifications",
    "execution_mode",
    "hotfix",
    "server",
    "infrastructure",
    "secrets",
];
const INFRASTRUCTURE_KEYS: &[&str] =
    &["paths", "synth", "synth_timeout", "templates", "migrations"];
const ENV_INFRASTRUCTURE_KEYS: &[&str] = &["deploy"];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "url",
    "webhook_secret_file",
    "api_token_file",
    "api_tokens_file",
    "sns_topics",
    "sns_certificate_urls",
];
const SOURCE_KEYS: &[&str] = &["branch", "poll", "repository"];
const HOTFIX_KEYS: &[&str] = &["allowed"];
const BUILD_KEYS: &[&str] = &["steps", "gates", "artifact"];
const GATES_KEYS: &[&str] = &["coverage_min", "security"];
const SECURITY_KEYS: &[&str] = &[
    "templates",
    "rules",
    "builtin_rules",
    "audit",
    "allow",
    "sarif",
];
const AUDIT_KEYS: &[&str] = &["run", "file"];
const ALLOW_KEYS: &[&str] = &["id", "package", "reason", "expires"];
const STEP_KEYS: &[&str] = &["name", "run", "timeout", "reports", "env", "suite"];
const REPORTS_KEYS: &[&str] = &["junit", "coverage"];
const ENV_KEYS: &[&str] = &[
    "name",
    "approval",
    "deploy",
    "tests",
    "monitor",
    "watch",
    "windows",
    "infrastructure",
];
const APPROVAL_KEYS: &[&str] = &[
    "timeout",
    "approvers",
    "required",
    "separation_of_duties",
    "remind_before",
];
const DEPLOY_KEYS: &[&str] = &["release", "command", "s3", "cloudformation"];
const S3_DEPLOY_KEYS: &[&str] = &["bucket", "prefix"];
const CLOUDFORMATION_KEYS: &[&str] = &[
    "stack",
    "template",
    "bucket",
    "parameters",
    "capabilities",
    "timeout",
];
const RELEASE_KEYS: &[&str] = &["root", "start", "health", "health_timeout", "keep"];
const COMMAND_DEPLOY_KEYS: &[&str] = &["run", "rollback", "current_version", "timeout"];
const MONITOR_KEYS: &[&str] = &[
    "duration",
    "interval",
    "alarms",
    "advisory",
    "insufficient_data",
];
const ALARM_SOURCES: &[&str] = &["http", "prometheus", "command", "external"];
const ALARM_KEYS: &[&str] = &[
    "name",
    "http",
    "prometheus",
    "command",
    "external",
    "period",
    "evaluation_periods",
    "datapoints_to_alarm",
    "missing_data",
    "environment",
    "advisory",
];
const HTTP_KEYS: &[&str] = &["url", "expect_status", "timeout", "max_latency"];
const PROMETHEUS_KEYS: &[&str] = &["url", "query", "threshold", "comparison"];
const COMMAND_ALARM_KEYS: &[&str] = &["run", "threshold", "comparison"];
const ROLLBACK_KEYS: &[&str] = &["validate", "automatic"];
const VALIDATE_KEYS: &[&str] = &["stabilize", "health_timeout"];
const CHANNELS: &[&str] = &["webhook", "slack", "email", "github"];
const URL_CHANNEL_KEYS: &[&str] = &["name", "url", "events"];
const EMAIL_KEYS: &[&str] = &[
    "name",
    "smtp",
    "from",
    "to",
    "tls",
    "username",
    "password_env",
    "events",
];
const GITHUB_KEYS: &[&str] = &["name", "repo", "token_env", "api_url", "events"];

/// Names of the steps ferry adds to the build stage itself (the coverage gate, packing the
/// artifact), and to every environment stage.
const BUILD_STEP_NAMES: &[&str] = &["coverage", "artifact"];
const ENV_STEP_NAMES: &[&str] = &["approval", "deploy", "monitor"];

/// Environments with these names must come in this order.
const CANONICAL_ORDER: &[&str] = &["test", "staging", "production"];

/// Keys people write for another key, and the key they mean.
const SYNONYMS: &[(&str, &str)] = &[
    ("command", "run"),
    ("cmd", "run"),
    ("script", "run"),
    ("exec", "run"),
    ("steps", "tests"),
    ("stages", "environments"),
    ("name", "pipeline"),
    ("branches", "branch"),
];

/// Validates a loaded document.
pub(crate) fn check(root: &Node, file: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut c = Checker {
        file,
        diags: Vec::new(),
    };
    let pipeline = c.pipeline(root);
    match pipeline {
        Some(p) if c.diags.is_empty() => Ok(p),
        _ => Err(c.finish()),
    }
}

/// A diagnostic for the whole document at `pos`.
pub(crate) fn diagnostic(
    file: &str,
    pos: Pos,
    message: impl Into<String>,
    help: Option<String>,
) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.into(),
        help,
    }
}

/// A mapping with its keys checked: unknown and repeated keys are already reported and left
/// out, so only the first of each allowed key remains.
struct Map<'a> {
    pos: Pos,
    entries: Vec<Entry<'a>>,
    /// Unknown keys were reported here: "needs one of …" would only repeat them.
    had_unknown: bool,
    /// Keys suggested for unknown keys: "missing key" would only repeat them.
    suggested: Vec<String>,
}

#[derive(Clone, Copy)]
struct Entry<'a> {
    key: &'a str,
    key_pos: Pos,
    value: &'a Node,
}

impl<'a> Map<'a> {
    fn get(&self, key: &str) -> Option<Entry<'a>> {
        self.entries.iter().find(|e| e.key == key).copied()
    }
}

impl Entry<'_> {
    /// Where to point at the value: an empty value has no text of its own, so its key.
    fn pos(&self) -> Pos {
        if self.value.is_null() || self.value.scalar_text() == Some("") {
            self.key_pos
        } else {
            self.value.pos
        }
    }
}

/// Where a key sits, for messages: `in step `unit``; empty at the top level.
fn located(key: &str, loc: &str) -> String {
    if loc.is_empty() {
        format!("`{key}`")
    } else {
        format!("`{key}` {loc}")
    }
}

fn place(loc: &str) -> &str {
    if loc.is_empty() {
        "at the top level"
    } else {
        loc
    }
}

fn quoted_list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a`, `a or b`, `a, b or c`, each in backticks.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [rest @ .., last] => format!("{} or `{last}`", quoted_list(rest)),
    }
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if word.is_empty() {
        return None;
    }
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .or_else(|| {
            // A shortened word (`prod`, `breach`) is too far for the edit distance.
            candidates
                .iter()
                .filter(|c| lower.chars().count() >= 3 && c.to_lowercase().starts_with(&lower))
                .min_by_key(|c| c.len())
                .copied()
        })
}

/// `a, b, c` without repeats, in first-seen order.
fn listing(words: &[&str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for w in words {
        if !seen.contains(w) {
            seen.push(w);
        }
    }
    seen.join(", ")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `name` breaks S3's bucket naming rules (general purpose buckets), if it does.
fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Some("it must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some("only lowercase letters, digits, `-` and `.` are allowed");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return Some("it must start and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("`.` may not be next to another `.` or a `-`");
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok()) {
        return Some("it may not look like an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.starts_with("amzn-s3-demo-")
    {
        return Some("the prefixes `xn--`, `sthree-` and `amzn-s3-demo-` are reserved");
    }
    if name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
        || name.ends_with(".mrap")
        || name.ends_with("--x-s3")
    {
        return Some("the suffixes `-s3alias`, `--ol-s3`, `.mrap` and `--x-s3` are reserved");
    }
    None
}

/// CloudFormation's stack name rule: `[A-Za-z][A-Za-z0-9-]{0,127}`.
fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn valid_env_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` starts with `https://`, in any case.
fn is_https(s: &str) -> bool {
    s.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// A release root compared with the others: no `.` parts, no repeated or trailing `/`;
/// `/` for the filesystem root and `.` for the folder of the pipeline file.
fn normalize_root(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    match (path.starts_with('/'), parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

fn is_http_url(s: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
            && s.len() > scheme.len()
            && !s.contains(char::is_whitespace)
    })
}

/// Why `path` is not a relative path inside the checkout, if it is not.
fn outside_checkout(path: &str) -> Option<&'static str> {
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        Some("an absolute path")
    } else if path.split(['/', '\\']).any(|part| part == "..") {
        Some("a path leaving the checkout")
    } else {
        None
    }
}

/// The `name:` of a mapping, read before its keys are checked so messages can use it.
fn peek_name(node: &Node) -> Option<&str> {
    let Kind::Map(pairs) = &node.kind else {
        return None;
    };
    pairs
        .iter()
        .find(|(k, _)| k.scalar_text() == Some("name"))
        .and_then(|(_, v)| v.scalar_text())
        .filter(|n| !n.is_empty())
}

/// A name and where it was written, for duplicate and reference checks.
struct Named {
    name: String,
    pos: Pos,
}

struct Checker<'f> {
    file: &'f str,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        let d = diagnostic(self.file, pos, message, Some(help.into()));
        self.diags.push(d);
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|a| (a.line, a.column));
        self.diags.dedup();
        self.diags
    }

    // ----- shapes -------------------------------------------------------------------------

    /// Checks that `node` is a mapping with only `allowed` keys, each once.
    fn map<'a>(
        &mut self,
        node: &'a Node,
        pos: Pos,
        what: &str,
        loc: &str,
        allowed: &[&str],
    ) -> Option<Map<'a>> {
        let Kind::Map(pairs) = &node.kind else {
            let help = if allowed.is_empty() {
                "write `{}`".to_string()
            } else {
                format!(
                    "write `key: value` lines indented under it; allowed keys: {}",
                    allowed.join(", ")
                )
            };
            let message = if node.is_null() {
                format!("{what} is empty")
            } else {
                format!("{what} must be a mapping, found {}", node.describe())
            };
            self.report(pos, message, help);
            return None;
        };
        let mut entries: Vec<Entry<'a>> = Vec::new();
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        let mut had_unknown = false;
        let mut suggested = Vec::new();
        for (k, value) in pairs {
            let Some(key) = k.scalar_text() else {
                self.report(
                    k.pos,
                    format!(
                        "a key {} must be a word, found {}",
                        place(loc),
                        k.describe()
                    ),
                    "write keys as plain words followed by `:`",
                );
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == key) {
                self.report(
                    k.pos,
                    format!(
                        "duplicate key `{key}` {} (first at line {})",
                        place(loc),
                        first.line
                    ),
                    "keep one of them",
                );
                continue;
            }
            seen.push((key, k.pos));
            if loc.is_empty() && key.starts_with("x-") {
                continue; // extension keys: a place for anchors to reuse
            }
            if !allowed.contains(&key) {
                had_unknown = true;
                if let Some(s) = self.unknown_key(key, k.pos, loc, allowed) {
                    suggested.push(s.to_string());
                }
                continue;
            }
            entries.push(Entry {
                key,
                key_pos: k.pos,
                value,
            });
        }
        Some(Map {
            pos: node.pos,
            entries,
            had_unknown,
            suggested,
        })
    }

    /// Reports an unknown key; returns the key suggested instead, if any.
    fn unknown_key<'k>(
        &mut self,
        key: &str,
        pos: Pos,
        loc: &str,
        allowed: &[&'k str],
    ) -> Option<&'k str> {
        let synonym = SYNONYMS
            .iter()
            .find(|(wrong, right)| *wrong == key && allowed.contains(right))
            .and_then(|(_, right)| allowed.iter().find(|a| *a == right).copied());
        let suggestion = synonym.or_else(|| closest(key, allowed));
        let help = match suggestion {
            _ if key == "<<" => {
                "yaml merge keys are not supported; write the keys out, or alias a whole value with `*name`".to_string()
            }
            Some(k) => format!("did you mean `{k}`?"),
            None if allowed.is_empty() => "remove it: no keys are allowed here".to_string(),
            None => format!("allowed keys here: {}", allowed.join(", ")),
        };
        self.report(
            pos,
            format!("unknown key `{}` {}", ellipsize(key), place(loc)),
            help,
        );
        suggestion
    }

    /// A sub-mapping under `key`, if present and a mapping.
    fn sub_map<'a>(
        &mut self,
        m: &Map<'a>,
        key: &str,
        loc: &str,
        allowed: &[&str],
    ) -> Option<Map<'a>> {
        let e = m.get(key)?;
        self.map(
            e.value,
            e.pos(),
            &located(key, loc),
            &sub_loc(key, loc),
            allowed,
        )
    }

    /// The items under `key`; an empty value is an empty list.
    fn list<'a>(&mut self, e: Entry<'a>, loc: &str) -> Option<&'a [Node]> {
        match &e.value.kind {
            Kind::Seq(items) => Some(items),
            _ if e.value.is_null() => Some(&[]),
            _ => {
                self.report(
                    e.pos(),
                    format!(
                        "{} must be a list, found {}",
                        located(e.key, loc),
                        e.value.describe()
                    ),
                    LIST_HELP,
                );
                None
            }
        }
    }

    fn missing(&mut self, m: &Map<'_>, key: &str, loc: &str, example: &str) {
        if m.suggested.iter().any(|s| s == key) {
            return;
        }
        self.report(
            m.pos,
            format!("missing key `{key}` {}", place(loc)),
            format!("add `{example}`"),
        );
    }

    // ----- scalars ------------------------------------------------------------------------

    /// A text value; numbers and booleans count as their text.
    fn text(&mut self, m: &Map<'_>, key: &str, loc: &str, example: &str) -> Option<String> {
        let e = m.get(key)?;
        self.text_of(e.value, e.pos(), &located(key, loc), example)
    }

    fn text_of(&mut self, node: &Node, pos: Pos, what: &str, example: &str) -> Option<String> {
        match node.scalar_text() {
            _ if node.is_null() => {
                self.report(
                    pos,
                    format!("{what} is empty"),
                    format!("write it like `{example}`"),
                );
                None
            }
            Some("") => {
                self.report(
                    pos,
                    format!("{what} is empty"),
                    format!("write it like `{example}`"),
                );
                None
            }
            Some(t) => Some(t.to_string()),
            None => {
                let found = node.describe();
                self.report(
                    pos,
                    format!("{what} must be a text value, found {found}"),
                    format!("write it like `{example}`"),
                );
                None
            }
        }
    }

    fn req_text(&mut self, m: &Map<'_>, key: &str, loc: &str, example: &str) -> Option<String> {
        if m.get(key).is_none() {
            self.missing(m, key, loc, example);
            return None;
        }
        self.text(m, key, loc, example)
    }

    /// An `http://` or `https://` url; with `plain`, one ferry's built-in client fetches
    /// itself, which speaks plain HTTP only.
    fn url(
        &mut self,
        m: &Map<'_>,
        key: &str,
        loc: &str,
        example: &str,
        plain: bool,
    ) -> Option<String> {
        let url = self.text(m, key, loc, example)?;
        let pos = m.get(key).map_or(m.pos, |e| e.pos());
        if !is_http_url(&url) {
            let schemes = if plain {
                "http://"
            } else {
                "http:// or https://"
            };
            self.report(
                pos,
                format!(
                    "{} must be an {schemes} url, found `{}`",
                    located(key, loc),
                    ellipsize(&url)
                ),
                format!("write it like `{example}`"),
            );
            return None;
        }
        if plain && is_https(&url) {
            self.report(
                pos,
                format!(
                    "{} `{}` uses https, but the built-in client speaks plain HTTP only",
                    located(key, loc),
                    ellipsize(&url)
                ),
                PLAIN_HTTP_HELP,
            );
            return None;
        }
        Some(url)
    }

    fn req_url(
        &mut self,
        m: &Map<'_>,
        key: &str,
        loc: &str,
        example: &str,
        plain: bool,
    ) -> Option<String> {
        if m.get(key).is_none() {
            self.missing(m, key, loc, example);
            return None;
        }
        self.url(m, key, loc, example, plain)
    }

    /// A path relative to the checkout, that stays inside it.
    fn rel_path_of(&mut self, node: &Node, pos: Pos, what: &str, example: &str) -> Option<String> {
        let path = self.text_of(node, pos, what, example)?;
        if let Some(why) = outside_checkout(&path) {
            self.report(
                pos,
                format!(
                    "{what} must be a path inside the checkout, found {why} `{}`",
                    ellipsize(&path)
                ),
                format!("write a path relative to the repository root, like `{example}`"),
            );
            return None;
        }
        Some(path)
    }

    fn duration(&mut self, m: &Map<'_>, key: &str, loc: &str, positive: bool) -> Option<Duration> {
        let e = m.get(key)?;
        let what = located(key, loc);
        let Some(text) = e.value.scalar_text() else {
            self.report(
                e.pos(),
                format!("{what} must be a duration, found {}", e.value.describe()),
                DURATION_HELP,
            );
            return None;
        };
        match parse_reason(text) {
            Err(reason) => {
                self.report(
                    e.pos(),
                    format!(
                        "invalid duration `{}` for {what}: {reason}",
                        ellipsize(text)
                    ),
                    DURATION_HELP,
                );
                None
            }
            Ok(d) if positive && d.is_zero() => {
                self.report(
                    e.pos(),
                    format!("{what} must be longer than zero"),
                    DURATION_HELP,
                );
                None
            }
            Ok(d) => Some(d),
        }
    }

    /// A whole number of at least `min`.
    fn count(&mut self, m: &Map<'_>, key: &str, loc: &str, min: u32) -> Option<(u32, Pos)> {
        let e = m.get(key)?;
        let what = located(key, loc);
        let n = match e.value.kind {
            Kind::Scalar {
                value: Value::Int(n),
                ..
            } => u32::try_from(n).ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= min => Some((n, e.pos())),
            Some(_) => {
                self.report(
                    e.pos(),
                    format!("{what} must be at least {min}"),
                    format!(
                        "write a whole number of {min} or more, like `{key}: {}`",
                        min.max(1)
                    ),
                );
                None
            }
            None => {
                let found = match e.value.kind {
                    Kind::Scalar {
                        value: Value::Int(_),
                        ..
                    } => format!("{}, out of range", e.value.describe()),
                    _ => e.value.describe(),
                };
                self.report(
                    e.pos(),
                    format!("{what} must be a whole number, found {found}"),
                    format!("write a whole number, like `{key}: {}`", min.max(1)),
                );
                None
            }
        }
    }

    fn number(&mut self, m: &Map<'_>, key: &str, loc: &str, example: &str) -> Option<(f64, Pos)> {
        let e = m.get(key)?;
        let n = match e.value.kind {
            // Whole numbers beyond 2^53 lose precision; thresholds are never that large.
            Kind::Scalar {
                value: Value::Int(n),
                ..
            } => Some(n as f64),
            Kind::Scalar {
                value: Value::Float(f),
                ..
            } if f.is_finite() => Some(f),
            _ => None,
        };
        if n.is_none() {
            self.report(
                e.pos(),
                format!(
                    "{} must be a number, found {}",
                    located(key, loc),
                    e.value.describe()
                ),
                format!("write a number, like `{key}: {example}`"),
            );
        }
        n.map(|n| (n, e.pos()))
    }

    /// `true` or `false`.
    fn flag(&mut self, m: &Map<'_>, key: &str, loc: &str) -> Option<bool> {
        let e = m.get(key)?;
        if let Kind::Scalar {
            value: Value::Bool(b),
            ..
        } = e.value.kind
        {
            return Some(b);
        }
        let what = located(key, loc);
        let message = if e.value.is_null() || e.value.scalar_text() == Some("") {
            format!("{what} is empty")
        } else {
            format!(
                "{what} must be `true` or `false`, found {}",
                e.value.describe()
            )
        };
        // A quoted `"true"` is text in YAML.
        let quoted = e
            .value
            .scalar_text()
            .is_some_and(|t| t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false"));
        let unquote = if quoted { ", without quotes" } else { "" };
        self.report(
            e.pos(),
            message,
            format!("write `{key}: true` or `{key}: false`{unquote}"),
        );
        None
    }

    /// One of a fixed set of words.
    fn choice<T: Copy>(
        &mut self,
        m: &Map<'_>,
        key: &str,
        loc: &str,
        options: &[(&str, T)],
        shown: &[&str],
        extra_help: &str,
    ) -> Option<T> {
        let e = m.get(key)?;
        let text = e.value.scalar_text().unwrap_or("");
        if let Some((_, v)) = options.iter().find(|(word, _)| *word == text) {
            return Some(*v);
        }
        let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
        let canonical: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| shown.iter().any(|s| s.trim_matches('"') == *w))
            .collect();
        let help = match closest(text, &canonical).or_else(|| closest(text, &words)) {
            Some(w) => format!("did you mean `{w}`?"),
            _ => format!("write one of {}{extra_help}", one_of(shown)),
        };
        let found = if e.value.scalar_text() == Some("") {
            format!("{} is empty", located(key, loc))
        } else if e.value.scalar_text().is_some() {
            format!(
                "unknown value `{}` for {}",
                ellipsize(text),
                located(key, loc)
            )
        } else {
            format!(
                "{} must be one of {}, found {}",
                located(key, loc),
                one_of(shown),
                e.value.describe()
            )
        };
        self.report(e.pos(), found, help);
        None
    }

    /// A list of texts; with `single`, one text alone counts as a list of one.
    fn texts(
        &mut self,
        e: Entry<'_>,
        loc: &str,
        example: &str,
        single: bool,
    ) -> Vec<(String, Pos)> {
        let what = located(e.key, loc);
        if single && e.value.scalar_text().is_some() {
            return self
                .text_of(e.value, e.pos(), &what, example)
                .map(|t| vec![(t, e.pos())])
                .unwrap_or_default();
        }
        let Some(items) = self.list(e, loc) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_what = format!("item #{} of {what}", i + 1);
            if let Some(t) = self.text_of(item, item.pos, &item_what, example) {
                out.push((t, item.pos));
            }
        }
        out
    }

    fn name(&mut self, m: &Map<'_>, loc: &str, kind: &str, example: &str) -> Option<Named> {
        let name = self.req_text(m, "name", loc, &format!("name: {example}"))?;
        let pos = m.get("name").map_or(m.pos, |e| e.pos());
        self.check_name(&name, pos, kind, example)
            .then_some(Named { name, pos })
    }

    fn check_name(&mut self, name: &str, pos: Pos, kind: &str, example: &str) -> bool {
        if valid_name(name) {
            return true;
        }
        self.report(
            pos,
            format!("invalid {kind} name `{}`", ellipsize(name)),
            format!(
                "use letters, digits, `-`, `_` and `.`, starting with a letter or digit, like `{example}`"
            ),
        );
        false
    }

    /// Reports names that appeared before in `names`, pointing at the first.
    fn duplicates(&mut self, names: &[Named], what: &str, scope: &str) {
        for (i, n) in names.iter().enumerate() {
            if let Some(first) = names[..i].iter().find(|f| f.name == n.name) {
                self.report(
                    n.pos,
                    format!(
                        "duplicate {what} name `{}`{scope} (first at line {})",
                        n.name, first.pos.line
                    ),
                    format!("give each {what} its own name"),
                );
            }
        }
    }

    // ----- the file -----------------------------------------------------------------------

    fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        let Kind::Map(_) = root.kind else {
            self.report(
                root.pos,
                format!(
                    "a pipeline file must be a mapping of keys like `pipeline:` and `environments:`, found {}",
                    root.describe()
                ),
                "start with `pipeline: <name>`; `ferry init` writes a commented starter file",
            );
            return None;
        };
        let m = self.map(root, root.pos, "the file", "", TOP_KEYS)?;

        let name = match self.req_text(&m, "pipeline", "", "pipeline: shop-api") {
            Some(n) => {
                let pos = m.get("pipeline").map_or(m.pos, |e| e.pos());
                self.check_name(&n, pos, "pipeline", "shop-api")
                    .then_some(n)
            }
            None => None,
        };
        let source = self.source(&m);
        let (build, artifact) = self.build(&m);
        let (environments, env_refs) = self.environments(&m);
        let (alarms, alarm_names) = self.alarms(&m);
        let rollback = self.rollback(&m);
        let notifications = self.notifications(&m);
        let execution_mode = self
            .choice(
                &m,
                "execution_mode",
                "",
                &[
                    ("superseded", ExecutionMode::Superseded),
                    ("queued", ExecutionMode::Queued),
                ],
                &["superseded", "queued"],
                " (`superseded`: a newer run overtakes an older one waiting for the same environment; `queued`: runs deploy strictly in order)",
            )
            .unwrap_or_default();
        let hotfix = self.hotfix(&m, environments.as_deref());
        let server = self.server(&m);
        let infrastructure = self.infrastructure(&m);
        let secrets = self.secrets(&m);
        if m.get("infrastructure").is_none() {
            self.env_infrastructure_without_section(&env_refs);
        }

        self.cross_references(&env_refs, &alarm_names);
        if artifact == Some(false) {
            self.releases_without_artifact(&env_refs);
        }
        self.shared_release_roots(&env_refs);

        Some(Pipeline {
            name: name?,
            source,
            build: build?,
            environments: environments?,
            alarms,
            rollback,
            notifications,
            execution_mode,
            hotfix,
            server,
            infrastructure,
            secrets,
        })
    }

    /// Top-level `secrets: [NAME, …]`: environment variables whose values are secrets.
    fn secrets(&mut self, top: &Map<'_>) -> Vec<String> {
        let Some(e) = top.get("secrets") else {
            return Vec::new();
        };
        let example = "secrets: [DEPLOY_KEY, SENTRY_DSN]";
        let mut out: Vec<String> = Vec::new();
        for (i, (name, pos)) in self.texts(e, "", example, true).into_iter().enumerate() {
            if !valid_env_var(&name) {
                // Not echoed: it may be the secret itself, written here by mistake.
                self.report(
                    pos,
                    format!(
                        "item #{} of `secrets` is not an environment variable name",
                        i + 1
                    ),
                    "name the variable that holds the secret, like `DEPLOY_KEY` (letters, digits and `_`, not starting with a digit); never write the secret itself here",
                );
            } else if out.contains(&name) {
                self.report(
                    pos,
                    format!("`{name}` is listed twice in `secrets`"),
                    "list each variable once",
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    /// Top-level `infrastructure: { paths, synth, templates, migrations }`.
    fn infrastructure(&mut self, top: &Map<'_>) -> Option<Infrastructure> {
        let m = self.sub_map(top, "infrastructure", "", INFRASTRUCTURE_KEYS)?;
        let loc = "in `infrastructure`";
        let mut infra = Infrastructure::default();
        match m.get("paths") {
            Some(e) => {
                let pos = e.pos();
                infra.paths = self.globs(e, loc, "infrastructure/**");
                let empty = e.value.is_null()
                    || matches!(&e.value.kind, Kind::Seq(items) if items.is_empty());
                if empty {
                    self.report(
                        pos,
                        "`paths` in `infrastructure` lists no files",
                        "list the globs of your infrastructure files, like `paths: [infrastructure/**]`",
                    );
                }
            }
            None => {
                if !m.suggested.iter().any(|s| s == "paths") {
                    self.missing(&m, "paths", loc, "paths: [infrastructure/**]");
                }
            }
        }
        infra.synth = self.text(&m, "synth", loc, "synth: npx cdk synth --quiet");
        infra.synth_timeout = self.duration(&m, "synth_timeout", loc, true);
        if let Some(e) = m.get("templates") {
            infra.templates = self.globs(e, loc, "infrastructure/cdk.out/*.template.json");
        }
        if infra.synth.is_some() && m.get("templates").is_none() {
            self.report(
                m.get("synth").map_or(m.pos, |e| e.pos()),
                "`synth` in `infrastructure` writes templates, but `templates` does not say where",
                "add `templates: [infrastructure/cdk.out/*.template.json]` (globs of the synthesized CloudFormation templates)",
            );
        }
        if let Some(e) = m.get("migrations") {
            infra.migrations = self.globs(e, loc, "migrations/**");
        }
        Some(infra)
    }

    /// Path globs inside the checkout: one text or a list.
    fn globs(&mut self, e: Entry<'_>, loc: &str, example: &str) -> Vec<String> {
        let what = located(e.key, loc);
        let mut out = Vec::new();
        for (glob, pos) in self.texts(e, loc, example, true) {
            if let Some(why) = outside_checkout(&glob) {
                self.report(
                    pos,
                    format!(
                        "{what} must name paths inside the checkout, found {why} `{}`",
                        ellipsize(&glob)
                    ),
                    format!("write a glob relative to the repository root, like `{example}`"),
                );
                continue;
            }
            out.push(glob);
        }
        out
    }

    /// An environment's `infrastructure:` needs the top-level section.
    fn env_infrastructure_without_section(&mut self, env_refs: &[EnvRefs]) {
        for r in env_refs {
            if let Some(pos) = r.infrastructure {
                self.report(
                    pos,
                    format!("`infrastructure` of {} deploys infrastructure, but the file has no top-level `infrastructure` section", r.label),
                    "add a top-level `infrastructure:` with `paths:` (globs of your infrastructure files), or remove `infrastructure` here",
                );
            }
        }
    }

    /// `hotfix: { allowed: true }`. A hotfix needs two distinct approvals at the last
    /// environment, so a listed `approvers` there must name at least two people.
    fn hotfix(&mut self, top: &Map<'_>, envs: Option<&[Environment]>) -> Hotfix {
        let mut hotfix = Hotfix::default();
        let Some(m) = self.sub_map(top, "hotfix", "", HOTFIX_KEYS) else {
            return hotfix;
        };
        if let Some(allowed) = self.flag(&m, "allowed", "in `hotfix`") {
            hotfix.allowed = allowed;
        }
        let last = envs.and_then(|e| e.last());
        if hotfix.allowed
            && let Some(a) = last.and_then(|e| e.approval.as_ref())
            && !a.approvers.is_empty()
            && a.approvers.len() < HOTFIX_APPROVALS as usize
        {
            let pos = m.get("allowed").map_or(m.pos, |e| e.pos());
            let env = last.map(|e| e.name.as_str()).unwrap_or_default();
            self.report(
                pos,
                format!(
                    "a hotfix needs {HOTFIX_APPROVALS} distinct approvals at `{env}`, but its `approval.approvers` lists only {}",
                    a.approvers.len()
                ),
                format!("list at least {HOTFIX_APPROVALS} people in `approvers` of `{env}`, or remove `hotfix`"),
            );
        }
        hotfix
    }

    fn source(&mut self, top: &Map<'_>) -> Source {
        let mut source = Source::default();
        let loc = "in `source`";
        let Some(m) = self.sub_map(top, "source", "", SOURCE_KEYS) else {
            return source;
        };
        if let Some(branch) = self.text(&m, "branch", loc, "branch: main") {
            source.branch = branch;
        }
        source.poll = self.duration(&m, "poll", loc, true);
        source.repository = self.url(
            &m,
            "repository",
            loc,
            "repository: https://github.com/owner/repo",
            false,
        );
        source
    }

    /// The build, and whether `build.artifact` is written: `None` when `build` could not be
    /// read, or an unknown key in it was taken for `artifact`.
    fn build(&mut self, top: &Map<'_>) -> (Option<Build>, Option<bool>) {
        let build = Build::default();
        let Some(e) = top.get("build") else {
            return (Some(build), Some(false));
        };
        let Some(m) = self.map(e.value, e.pos(), "`build`", "in `build`", BUILD_KEYS) else {
            return (None, None);
        };
        let artifact = if m.get("artifact").is_some() {
            Some(true)
        } else if m.suggested.iter().any(|s| s == "artifact") {
            None
        } else {
            Some(false)
        };
        (Some(self.build_of(&m, build)), artifact)
    }

    fn build_of(&mut self, m: &Map<'_>, mut build: Build) -> Build {
        let loc = "in `build`";
        let mut ok = true;
        if let Some(steps) = m.get("steps") {
            match self.steps(steps, loc, "", BUILD_STEP_NAMES) {
                Some(s) => build.steps = s,
                None => ok = false,
            }
        } else {
            self.missing(m, "steps", loc, "steps:");
        }
        if let Some(g) = self.sub_map(m, "gates", loc, GATES_KEYS) {
            let gloc = "in `build.gates`";
            if let Some((min, pos)) = self.number(&g, "coverage_min", gloc, "80") {
                if (0.0..=100.0).contains(&min) {
                    build.gates.coverage_min = Some(min);
                    let reported = build.steps.iter().any(|s| s.reports.coverage.is_some());
                    if ok && !reported {
                        self.report(
                            pos,
                            "`coverage_min` is set but no build step reports coverage",
                            "add `reports: { coverage: <lcov or cobertura file> }` to the step that runs the tests",
                        );
                    }
                } else {
                    self.report(
                        pos,
                        format!(
                            "`coverage_min` in `build.gates` must be between 0 and 100, found {min}"
                        ),
                        "write a percentage of lines, like `coverage_min: 80`",
                    );
                }
            }
            if let Some(sm) = self.sub_map(&g, "security", gloc, SECURITY_KEYS) {
                build.gates.security = Some(self.security(&sm));
            }
        }
        if let Some(e) = m.get("artifact") {
            build.artifact = self.rel_path_of(e.value, e.pos(), &located("artifact", loc), "dist");
        }
        build
    }

    /// `build.gates.security`.
    fn security(&mut self, m: &Map<'_>) -> Security {
        let loc = "in `build.gates.security`";
        let mut sec = Security::default();
        for (key, example) in [
            (
                "templates",
                "templates: [infrastructure/cdk.out/*.template.json]",
            ),
            ("rules", "rules: [policies/team.guard]"),
        ] {
            let Some(e) = m.get(key) else { continue };
            let mut paths = Vec::new();
            for (t, pos) in self.texts(e, loc, example, true) {
                if let Some(why) = outside_checkout(&t) {
                    self.report(
                        pos,
                        format!(
                            "`{key}` {loc} must name files inside the checkout, found {why} `{}`",
                            ellipsize(&t)
                        ),
                        format!(
                            "write a path or glob relative to the repository root, like `{example}`"
                        ),
                    );
                } else {
                    paths.push(t);
                }
            }
            if key == "templates" {
                sec.templates = paths;
            } else {
                sec.rules = paths;
            }
        }
        if let Some(b) = self.flag(m, "builtin_rules", loc) {
            sec.builtin_rules = b;
        }
        if let Some(e) = m.get("sarif") {
            let what = located("sarif", loc);
            let example = "reports/ferry.sarif";
            sec.sarif = match self.rel_path_of(e.value, e.pos(), &what, example) {
                Some(p) if p.contains(['*', '?', '[']) => {
                    self.report(
                        e.pos(),
                        format!("{what} names one file to write, found the glob `{}`", ellipsize(&p)),
                        format!("write the file's path relative to the repository root, like `sarif: {example}`"),
                    );
                    None
                }
                Some(p) if p.ends_with(['/', '\\']) || p == "." => {
                    self.report(
                        e.pos(),
                        format!("{what} names a folder, found `{}`", ellipsize(&p)),
                        format!("name the file to write in it, like `sarif: {example}`"),
                    );
                    None
                }
                other => other,
            };
        }
        if let Some(e) = m.get("audit")
            && let Some(items) = self.list(e, loc)
        {
            for (i, item) in items.iter().enumerate() {
                let label = format!("audit #{} {loc}", i + 1);
                let Some(a) = self.map(item, item.pos, &label, &format!("in {label}"), AUDIT_KEYS)
                else {
                    continue;
                };
                match (a.get("run"), a.get("file")) {
                    (Some(_), Some(f)) => self.report(
                        f.pos(),
                        format!("{label} has both `run` and `file`"),
                        "give one: `run` for a command whose output is the report, `file` for a report the build wrote",
                    ),
                    (Some(_), None) => {
                        if let Some(cmd) = self.text(&a, "run", &format!("in {label}"), "run: npm audit --json") {
                            sec.audits.push(AuditSource::Run(cmd));
                        }
                    }
                    (None, Some(f)) => {
                        if let Some(p) = self.rel_path_of(f.value, f.pos(), &format!("`file` of {label}"), "reports/cargo-audit.json") {
                            sec.audits.push(AuditSource::File(p));
                        }
                    }
                    (None, None) if !a.had_unknown => self.report(
                        a.pos,
                        format!("{label} needs `run` or `file`"),
                        "write it like `- run: npm audit --json` or `- file: reports/cargo-audit.json`",
                    ),
                    (None, None) => {}
                }
            }
        }
        if let Some(e) = m.get("allow")
            && let Some(items) = self.list(e, loc)
        {
            for (i, item) in items.iter().enumerate() {
                let label = format!("allowlist entry #{} {loc}", i + 1);
                let iloc = format!("in {label}");
                let Some(a) = self.map(item, item.pos, &label, &iloc, ALLOW_KEYS) else {
                    continue;
                };
                let id = self.req_text(&a, "id", &iloc, "id: GHSA-jf85-cpcp-j695");
                let package = self.text(&a, "package", &iloc, "package: lodash");
                let reason = self.req_text(
                    &a,
                    "reason",
                    &iloc,
                    "reason: \"only used in tests; no user input reaches it\"",
                );
                let expires = match self.text(&a, "expires", &iloc, "expires: 2027-01-31") {
                    Some(d) if is_date(&d) => Some(d),
                    Some(d) => {
                        let pos = a.get("expires").map_or(a.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!("`expires` {iloc} must be a date `YYYY-MM-DD`, found `{}`", ellipsize(&d)),
                            "write it like `expires: 2027-01-31` (it holds through that day; from the next day on the finding blocks again)",
                        );
                        None
                    }
                    None => None,
                };
                if let (Some(id), Some(reason)) = (id, reason) {
                    if reason.trim().len() < 10 {
                        let pos = a.get("reason").map_or(a.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!("the reason {iloc} is too short to justify accepting `{id}`"),
                            "say why it is safe, e.g. `reason: \"dev dependency; never shipped\"`",
                        );
                        continue;
                    }
                    sec.allow.push(Allow {
                        id,
                        package,
                        reason,
                        expires,
                    });
                }
            }
        }
        sec
    }

    /// The steps of one stage; `of` names the stage for messages (`` of environment `test` ``);
    /// `reserved` are the names of the steps ferry adds to the stage itself.
    fn steps(&mut self, e: Entry<'_>, loc: &str, of: &str, reserved: &[&str]) -> Option<Vec<Step>> {
        let items = self.list(e, loc)?;
        let mut steps = Vec::new();
        let mut names = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let label = match peek_name(item) {
                Some(n) => format!("step `{}`{of}", ellipsize(n)),
                None => format!("step #{} of {}", i + 1, located(e.key, loc)),
            };
            let (step, named) = self.step(item, &label);
            names.extend(named);
            match step {
                Some(step) => steps.push(step),
                None => ok = false,
            }
        }
        let scope = if of.is_empty() {
            " in `build`".to_string()
        } else {
            of.replacen(" of ", " in ", 1)
        };
        self.duplicates(&names, "step", &scope);
        for n in names.iter().filter(|n| reserved.contains(&n.name.as_str())) {
            self.report(
                n.pos,
                format!(
                    "step name `{}` is taken by ferry's own {} step{scope}",
                    n.name, n.name
                ),
                format!("rename it, e.g. `{}-check`", n.name),
            );
        }
        ok.then_some(steps)
    }

    /// A step, and its name even when the rest is wrong (for the duplicate check).
    fn step(&mut self, node: &Node, label: &str) -> (Option<Step>, Option<Named>) {
        let loc = format!("in {label}");
        let Some(m) = self.map(node, node.pos, label, &loc, STEP_KEYS) else {
            return (None, None);
        };
        let named = self.name(&m, &loc, "step", "unit-tests");
        let run = self.req_text(&m, "run", &loc, "run: ./ci/test.sh");
        let timeout = self.duration(&m, "timeout", &loc, true);
        let reports = self.reports(&m, label);
        let env = self.env_vars(&m, &loc);
        let suite = self.choice(
            &m,
            "suite",
            &loc,
            &[
                ("unit", Suite::Unit),
                ("integration", Suite::Integration),
                ("e2e", Suite::E2e),
            ],
            &["unit", "integration", "e2e"],
            "",
        );
        let step = match (&named, run, reports, env) {
            (Some(named), Some(run), Some(reports), Some(env)) => Some(Step {
                name: named.name.clone(),
                run,
                timeout,
                reports,
                env,
                suite,
            }),
            _ => None,
        };
        (step, named)
    }

    fn reports(&mut self, step: &Map<'_>, label: &str) -> Option<Reports> {
        let mut reports = Reports::default();
        let loc = format!("in `reports` of {label}");
        let Some(e) = step.get("reports") else {
            return Some(reports);
        };
        let m = self.map(
            e.value,
            e.pos(),
            &format!("`reports` of {label}"),
            &loc,
            REPORTS_KEYS,
        )?;
        let mut ok = true;
        if let Some(j) = m.get("junit") {
            for (path, pos) in self.texts(j, &loc, "reports/junit.xml", true) {
                match outside_checkout(&path) {
                    None => reports.junit.push(path),
                    Some(why) => {
                        ok = false;
                        self.report(
                            pos,
                            format!(
                                "{} must be a path inside the checkout, found {why} `{}`",
                                located("junit", &loc),
                                ellipsize(&path)
                            ),
                            "write a path or glob relative to the repository root, like `reports/*.xml`",
                        );
                    }
                }
            }
        }
        if let Some(c) = m.get("coverage") {
            reports.coverage = self.rel_path_of(
                c.value,
                c.pos(),
                &located("coverage", &loc),
                "reports/lcov.info",
            );
        }
        ok.then_some(reports)
    }

    fn env_vars(&mut self, step: &Map<'_>, loc: &str) -> Option<BTreeMap<String, String>> {
        let mut vars = BTreeMap::new();
        let Some(e) = step.get("env") else {
            return Some(vars);
        };
        let what = located("env", loc);
        let Kind::Map(pairs) = &e.value.kind else {
            if e.value.is_null() {
                return Some(vars);
            }
            self.report(
                e.pos(),
                format!("{what} must be a mapping, found {}", e.value.describe()),
                "write `NAME: value` lines indented under it",
            );
            return None;
        };
        let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
        for (k, v) in pairs {
            let Some(name) = k.scalar_text() else {
                self.report(
                    k.pos,
                    format!(
                        "a variable name in {what} must be a word, found {}",
                        k.describe()
                    ),
                    "write `NAME: value` lines",
                );
                continue;
            };
            if let Some(line) = first_lines.get(name) {
                self.report(
                    k.pos,
                    format!("duplicate key `{name}` in {what} (first at line {line})"),
                    "keep one of them",
                );
                continue;
            }
            first_lines.insert(name.to_string(), k.pos.line);
            if !valid_env_var(name) {
                self.report(
                    k.pos,
                    format!(
                        "invalid environment variable name `{}` in {what}",
                        ellipsize(name)
                    ),
                    "use letters, digits and `_`, not starting with a digit, like `RUST_LOG`",
                );
                continue;
            }
            let value = match &v.kind {
                Kind::Scalar { text, .. } => text.clone(),
                _ => {
                    self.report(
                        v.pos,
                        format!(
                            "the value of `{name}` in {what} must be a text value, found {}",
                            v.describe()
                        ),
                        format!("write it like `{name}: value`"),
                    );
                    continue;
                }
            };
            vars.insert(name.to_string(), value);
        }
        Some(vars)
    }

    fn environments(&mut self, top: &Map<'_>) -> (Option<Vec<Environment>>, Vec<EnvRefs>) {
        let mut refs = Vec::new();
        let Some(e) = top.get("environments") else {
            if !top.suggested.iter().any(|s| s == "environments") {
                self.report(
                    top.pos,
                    "missing key `environments` at the top level",
                    "add `environments:` with at least one environment, like `- name: test` and its `deploy:`",
                );
            }
            return (None, refs);
        };
        let Some(items) = self.list(e, "") else {
            return (None, refs);
        };
        if items.is_empty() {
            self.report(
                e.pos(),
                "`environments` is empty",
                "add at least one environment, like `- name: test` with its `deploy:`",
            );
            return (None, refs);
        }
        let mut envs = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let label = match peek_name(item) {
                Some(n) => format!("environment `{}`", ellipsize(n)),
                None => format!("environment #{}", i + 1),
            };
            let (env, r) = self.environment(item, &label);
            refs.push(r);
            match env {
                Some(env) => envs.push(env),
                None => ok = false,
            }
        }
        let names: Vec<Named> = refs
            .iter()
            .filter_map(|r| r.name.as_ref())
            .map(|n| Named {
                name: n.name.clone(),
                pos: n.pos,
            })
            .collect();
        self.duplicates(&names, "environment", "");
        self.promotion_order(&names);
        (ok.then_some(envs), refs)
    }

    /// `test`, `staging` and `production` must come in that order.
    fn promotion_order(&mut self, names: &[Named]) {
        let rank = |n: &str| CANONICAL_ORDER.iter().position(|c| *c == n);
        let mut latest: Option<(usize, &str)> = None;
        for (i, n) in names.iter().enumerate() {
            let Some(r) = rank(&n.name) else { continue };
            if names[..i].iter().any(|f| f.name == n.name) {
                continue; // reported as a duplicate
            }
            match latest {
                Some((lr, ln)) if r < lr => {
                    let present: Vec<&str> = CANONICAL_ORDER
                        .iter()
                        .copied()
                        .filter(|c| names.iter().any(|n| n.name == *c))
                        .collect();
                    self.report(
                        n.pos,
                        format!("environment `{}` comes after `{ln}`", n.name),
                        format!(
                            "versions are promoted in file order; list them as {}",
                            present.join(" → ")
                        ),
                    );
                }
                _ => latest = Some((r, CANONICAL_ORDER.get(r).copied().unwrap_or(""))),
            }
        }
    }

    fn environment(&mut self, node: &Node, label: &str) -> (Option<Environment>, EnvRefs) {
        let mut refs = EnvRefs {
            label: label.to_string(),
            ..EnvRefs::default()
        };
        let loc = format!("in {label}");
        let Some(m) = self.map(node, node.pos, label, &loc, ENV_KEYS) else {
            return (None, refs);
        };
        let named = self.name(&m, &loc, "environment", "staging");
        if let Some(n) = &named
            && n.name == "build"
        {
            self.report(
                n.pos,
                "environment name `build` is taken by the build stage",
                "choose another name, like `test`",
            );
        }
        refs.name = named.as_ref().map(|n| Named {
            name: n.name.clone(),
            pos: n.pos,
        });

        let approval = self.approval(&m, label);
        let deploy = match m.get("deploy") {
            Some(e) => self.deploy(e, label, &mut refs),
            None => {
                if !m.suggested.iter().any(|s| s == "deploy") {
                    self.report(
                        m.pos,
                        format!("missing key `deploy` {loc}"),
                        "add `deploy:` with `release:` (ferry unpacks the artifact into a directory) or `command:` (your own deploy command)",
                    );
                }
                None
            }
        };
        let tests = match m.get("tests") {
            Some(e) => self.steps(e, &loc, &format!(" of {label}"), ENV_STEP_NAMES),
            None => Some(Vec::new()),
        };
        let monitor = self.monitor(&m, label, &mut refs);
        let watch = self.duration(&m, "watch", &loc, false);
        let windows = self.windows(&m, label);
        let infrastructure = self.env_infrastructure(&m, label);
        refs.infrastructure = m.get("infrastructure").map(|e| e.pos());

        let env = match (
            named,
            approval,
            deploy,
            tests,
            monitor,
            windows,
            infrastructure,
        ) {
            (
                Some(named),
                Some(approval),
                Some(deploy),
                Some(tests),
                Some(monitor),
                Some(windows),
                Some(infrastructure),
            ) => Some(Environment {
                name: named.name,
                approval,
                deploy,
                tests,
                monitor,
                watch,
                windows,
                infrastructure,
            }),
            _ => None,
        };
        (env, refs)
    }

    /// `infrastructure: { deploy: COMMAND }` of an environment.
    fn env_infrastructure(
        &mut self,
        env: &Map<'_>,
        label: &str,
    ) -> Option<Option<EnvironmentInfrastructure>> {
        let Some(e) = env.get("infrastructure") else {
            return Some(None);
        };
        let loc = format!("in `infrastructure` of {label}");
        let what = format!("`infrastructure` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, ENV_INFRASTRUCTURE_KEYS)?;
        let deploy = self.req_text(
            &m,
            "deploy",
            &loc,
            "deploy: npx cdk deploy --all --require-approval never",
        )?;
        Some(Some(EnvironmentInfrastructure { deploy }))
    }

    /// `approval: { timeout: 24h }`; `true` or `{}` for the default; `false` for none.
    fn approval(&mut self, env: &Map<'_>, label: &str) -> Option<Option<Approval>> {
        let Some(e) = env.get("approval") else {
            return Some(None);
        };
        match e.value.kind {
            Kind::Scalar {
                value: Value::Bool(b),
                ..
            } => return Some(b.then(Approval::default)),
            Kind::Scalar {
                value: Value::Null, ..
            } => return Some(Some(Approval::default())),
            _ => {}
        }
        let loc = format!("in `approval` of {label}");
        let m = self.map(
            e.value,
            e.pos(),
            &format!("`approval` of {label}"),
            &loc,
            APPROVAL_KEYS,
        )?;
        let mut approval = Approval::default();
        if let Some(t) = self.duration(&m, "timeout", &loc, true) {
            approval.timeout = t;
        }
        let mut names: Vec<Named> = Vec::new();
        if let Some(e) = m.get("approvers") {
            let before = self.diags.len();
            for (name, pos) in self.texts(e, &loc, "alice", false) {
                if name.trim().is_empty() || name.chars().any(char::is_control) {
                    self.report(
                        pos,
                        format!("approver `{}` {loc} is not a name", ellipsize(&name)),
                        "write the name people approve as (`ferry approve --by NAME`), like `alice`",
                    );
                    continue;
                }
                names.push(Named { name, pos });
            }
            self.duplicates(&names, "approver", &format!(" {loc}"));
            for n in &names {
                if !approval.approvers.contains(&n.name) {
                    approval.approvers.push(n.name.clone());
                }
            }
            if approval.approvers.is_empty() && self.diags.len() == before {
                self.report(
                    e.pos(),
                    format!("`approvers` {loc} is empty"),
                    "list the people who may approve, like `approvers: [alice, bob]`, or remove `approvers` to let anyone approve",
                );
            }
        }
        if let Some((n, pos)) = self.count(&m, "required", &loc, 1) {
            let listed = approval.approvers.len();
            if listed > 0 && n as usize > listed {
                self.report(
                    pos,
                    format!(
                        "`required: {n}` {loc} asks for more approvals than the {listed} `approvers` listed"
                    ),
                    format!("lower `required` to at most {listed}, or list more people in `approvers`"),
                );
            } else {
                approval.required = n;
            }
        }
        if let Some(b) = self.flag(&m, "separation_of_duties", &loc) {
            approval.separation_of_duties = b;
        }
        if let Some(r) = self.duration(&m, "remind_before", &loc, true) {
            if r >= approval.timeout {
                let pos = m.get("remind_before").map_or(m.pos, |e| e.pos());
                self.report(
                    pos,
                    format!(
                        "`remind_before: {}` {loc} must be shorter than `timeout` ({})",
                        format_duration(r),
                        format_duration(approval.timeout)
                    ),
                    "write a reminder that comes before the timeout, like `remind_before: 1h` with `timeout: 24h`",
                );
            } else {
                approval.remind_before = Some(r);
            }
        }
        Some(Some(approval))
    }

    fn deploy(&mut self, e: Entry<'_>, label: &str, refs: &mut EnvRefs) -> Option<Deploy> {
        let loc = format!("in `deploy` of {label}");
        let what = format!("`deploy` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, DEPLOY_KEYS)?;
        let kinds: Vec<Entry<'_>> = DEPLOY_KEYS.iter().filter_map(|k| m.get(k)).collect();
        match kinds.as_slice() {
            [] if m.had_unknown => None,
            [] => {
                self.report(
                    e.pos(),
                    format!("{what} needs `release`, `command`, `s3` or `cloudformation`"),
                    "add `release:` (ferry unpacks the artifact into a directory), `command:` (your own deploy command), `s3:` (the artifact synced to a bucket) or `cloudformation:` (a template deployed to a stack)",
                );
                None
            }
            [one] => match one.key {
                "release" => {
                    refs.release = Some(one.key_pos);
                    self.release(*one, label, refs).map(Deploy::Release)
                }
                "command" => self.command_deploy(*one, label).map(Deploy::Command),
                "s3" => {
                    refs.artifact_kind = Some((one.key_pos, "s3"));
                    self.s3_deploy(*one, label).map(Deploy::S3)
                }
                _ => self
                    .cloudformation_deploy(*one, label)
                    .map(Deploy::CloudFormation),
            },
            [_, _, ..] => {
                let mut by_place = kinds.clone();
                by_place.sort_by_key(|k| (k.key_pos.line, k.key_pos.column));
                let second = by_place[1];
                let names: Vec<String> = kinds.iter().map(|k| format!("`{}`", k.key)).collect();
                self.report(
                    second.key_pos,
                    format!("{what} has both {}", names.join(" and ")),
                    "keep one of them: an environment is deployed one way",
                );
                None
            }
        }
    }

    /// `deploy.s3`: `{ bucket, prefix }`.
    fn s3_deploy(&mut self, e: Entry<'_>, label: &str) -> Option<S3Deploy> {
        let loc = format!("in `deploy.s3` of {label}");
        let what = format!("`deploy.s3` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, S3_DEPLOY_KEYS)?;
        let bucket = self.bucket(&m, &loc, "bucket: shop-web-releases");
        let prefix = match self.text(&m, "prefix", &loc, "prefix: web/production") {
            Some(p) => {
                let trimmed = p.trim_matches('/').to_string();
                let pos = m.get("prefix").map_or(m.pos, |e| e.pos());
                if trimmed.is_empty() {
                    self.report(
                        pos,
                        format!("{} is only `/`", located("prefix", &loc)),
                        "write a folder in the bucket like `prefix: web/production`, or leave `prefix` out (the environment's name)",
                    );
                    return None;
                }
                if trimmed
                    .split('/')
                    .any(|part| part.is_empty() || part == "." || part == "..")
                {
                    self.report(
                        pos,
                        format!(
                            "`prefix: {}` {loc} has an empty, `.` or `..` part",
                            ellipsize(&p)
                        ),
                        "write folder names separated by single `/`, like `prefix: web/production`",
                    );
                    return None;
                }
                Some(trimmed)
            }
            None if m.get("prefix").is_some() => return None,
            None => None,
        };
        Some(S3Deploy {
            bucket: bucket?,
            prefix,
        })
    }

    /// `bucket`: a name following S3's bucket naming rules.
    fn bucket(&mut self, m: &Map<'_>, loc: &str, example: &str) -> Option<String> {
        let name = self.req_text(m, "bucket", loc, example)?;
        let pos = m.get("bucket").map_or(m.pos, |e| e.pos());
        if let Some(why) = bucket_name_problem(&name) {
            self.report(
                pos,
                format!(
                    "`bucket: {}` {loc} is not a valid S3 bucket name: {why}",
                    ellipsize(&name)
                ),
                format!(
                    "write 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `{example}`"
                ),
            );
            return None;
        }
        Some(name)
    }

    /// `deploy.cloudformation`: `{ stack, template, bucket, parameters, capabilities,
    /// timeout }`.
    fn cloudformation_deploy(&mut self, e: Entry<'_>, label: &str) -> Option<CloudFormationDeploy> {
        let loc = format!("in `deploy.cloudformation` of {label}");
        let what = format!("`deploy.cloudformation` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, CLOUDFORMATION_KEYS)?;
        let stack = match self.req_text(&m, "stack", &loc, "stack: shop-api-production") {
            Some(s) if valid_stack_name(&s) => Some(s),
            Some(s) => {
                let pos = m.get("stack").map_or(m.pos, |e| e.pos());
                self.report(
                    pos,
                    format!(
                        "`stack: {}` {loc} is not a valid CloudFormation stack name",
                        ellipsize(&s)
                    ),
                    "start with a letter, then up to 127 letters, digits and `-`, like `stack: shop-api-production`",
                );
                None
            }
            None => None,
        };
        let template = if let Some(t) = m.get("template") {
            self.rel_path_of(
                t.value,
                t.pos(),
                &located("template", &loc),
                "template: cdk.out/shop-api.template.json",
            )
        } else {
            self.missing(
                &m,
                "template",
                &loc,
                "template: cdk.out/shop-api.template.json",
            );
            None
        };
        let bucket = self.bucket(&m, &loc, "bucket: shop-api-templates");
        let parameters = self.stack_parameters(&m, &loc);
        let capabilities = self.capabilities(&m, &loc);
        let timeout = self.duration(&m, "timeout", &loc, true);
        let bad_timeout = m.get("timeout").is_some() && timeout.is_none();
        if bad_timeout {
            return None;
        }
        Some(CloudFormationDeploy {
            stack: stack?,
            template: template?,
            bucket: bucket?,
            parameters: parameters?,
            capabilities: capabilities?,
            timeout: timeout.unwrap_or(Duration::from_secs(30 * 60)),
        })
    }

    /// `parameters`: `Key: value` lines; keys are CloudFormation parameter names
    /// (letters and digits).
    fn stack_parameters(&mut self, m: &Map<'_>, loc: &str) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let Some(e) = m.get("parameters") else {
            return Some(out);
        };
        let what = located("parameters", loc);
        let Kind::Map(pairs) = &e.value.kind else {
            if e.value.is_null() {
                return Some(out);
            }
            self.report(
                e.pos(),
                format!("{what} must be a mapping, found {}", e.value.describe()),
                "write `Name: value` lines indented under it, like `InstanceType: t3.small`",
            );
            return None;
        };
        let mut ok = true;
        let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
        for (k, v) in pairs {
            let Some(name) = k.scalar_text() else {
                self.report(
                    k.pos,
                    format!(
                        "a parameter name in {what} must be a word, found {}",
                        k.describe()
                    ),
                    "write `Name: value` lines, like `InstanceType: t3.small`",
                );
                ok = false;
                continue;
            };
            if let Some(line) = first_lines.get(name) {
                self.report(
                    k.pos,
                    format!("duplicate key `{name}` in {what} (first at line {line})"),
                    "keep one of them",
                );
                ok = false;
                continue;
            }
            first_lines.insert(name.to_string(), k.pos.line);
            if name.is_empty()
                || name.len() > 255
                || !name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                self.report(
                    k.pos,
                    format!("invalid parameter name `{}` in {what}", ellipsize(name)),
                    "CloudFormation parameter names are letters and digits only, like `InstanceType`",
                );
                ok = false;
                continue;
            }
            match &v.kind {
                Kind::Scalar { text, .. } => {
                    out.insert(name.to_string(), text.clone());
                }
                _ => {
                    self.report(
                        v.pos,
                        format!(
                            "the value of `{name}` in {what} must be a text value, found {}",
                            v.describe()
                        ),
                        format!(
                            "write it like `{name}: value` (a list parameter is one text: `a,b,c`)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `capabilities`: a list of [`CLOUDFORMATION_CAPABILITIES`].
    fn capabilities(&mut self, m: &Map<'_>, loc: &str) -> Option<Vec<String>> {
        let Some(e) = m.get("capabilities") else {
            return Some(Vec::new());
        };
        let had_list = matches!(e.value.kind, Kind::Seq(_))
            || e.value.is_null()
            || e.value.scalar_text().is_some();
        let items = self.texts(e, loc, "capabilities: [CAPABILITY_IAM]", true);
        let mut ok = had_list;
        let mut out: Vec<String> = Vec::new();
        let expected = match &e.value.kind {
            Kind::Seq(items) => items.len(),
            _ if e.value.is_null() => 0,
            _ => 1,
        };
        if items.len() != expected {
            ok = false;
        }
        for (cap, pos) in items {
            if !CLOUDFORMATION_CAPABILITIES.contains(&cap.as_str()) {
                let help = match closest(&cap, CLOUDFORMATION_CAPABILITIES)
                    .or_else(|| closest(&cap.to_ascii_uppercase(), CLOUDFORMATION_CAPABILITIES))
                {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("write one of {}", one_of(CLOUDFORMATION_CAPABILITIES)),
                };
                self.report(
                    pos,
                    format!(
                        "unknown capability `{}` in {}",
                        ellipsize(&cap),
                        located("capabilities", loc)
                    ),
                    help,
                );
                ok = false;
                continue;
            }
            if !out.contains(&cap) {
                out.push(cap);
            }
        }
        ok.then_some(out)
    }

    fn release(&mut self, e: Entry<'_>, label: &str, refs: &mut EnvRefs) -> Option<ReleaseDeploy> {
        let loc = format!("in `deploy.release` of {label}");
        let what = format!("`deploy.release` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, RELEASE_KEYS)?;
        let root = self.root(&m, &loc, refs);
        let start = self.text(&m, "start", &loc, "start: ./server --port 8080");
        let health = self.url(&m, "health", &loc, "http://127.0.0.1:8080/health", true);
        let health_timeout = self.duration(&m, "health_timeout", &loc, true);
        let keep = self.count(&m, "keep", &loc, 1);
        Some(ReleaseDeploy {
            root: root?,
            start,
            health,
            health_timeout: health_timeout.unwrap_or(Duration::from_secs(30)),
            keep: keep.map_or(5, |(k, _)| k),
        })
    }

    /// `root`: a folder of the environment's own (the other environments' are compared with it
    /// once all are read).
    fn root(&mut self, m: &Map<'_>, loc: &str, refs: &mut EnvRefs) -> Option<String> {
        let example = root_example(refs);
        let Some(e) = m.get("root") else {
            self.missing(m, "root", loc, &format!("root: {example}"));
            return None;
        };
        let what = located("root", loc);
        let help = format!("a release root must be a folder of its own, like `{example}`");
        if e.value.is_null() || e.value.scalar_text() == Some("") {
            self.report(e.pos(), format!("{what} is empty"), help);
            return None;
        }
        let root = self.text_of(e.value, e.pos(), &what, &format!("root: {example}"))?;
        let normalized = normalize_root(&root);
        let whole = match normalized.as_str() {
            "/" => "the filesystem root",
            "." => "the project folder itself",
            _ => {
                refs.root = Some(Root {
                    written: root.clone(),
                    normalized,
                    pos: e.pos(),
                });
                return Some(root);
            }
        };
        self.report(
            e.pos(),
            format!("{what} is `{}`, {whole}", ellipsize(&root)),
            help,
        );
        None
    }

    fn command_deploy(&mut self, e: Entry<'_>, label: &str) -> Option<CommandDeploy> {
        let loc = format!("in `deploy.command` of {label}");
        let what = format!("`deploy.command` of {label}");
        let m = self.map(e.value, e.pos(), &what, &loc, COMMAND_DEPLOY_KEYS)?;
        let run = self.req_text(&m, "run", &loc, "run: ./deploy.sh \"$FERRY_VERSION\"");
        let rollback = self.text(
            &m,
            "rollback",
            &loc,
            "rollback: ./deploy.sh \"$FERRY_PREVIOUS_VERSION\"",
        );
        let current_version = self.text(
            &m,
            "current_version",
            &loc,
            "current_version: ./deploy.sh --current",
        );
        let timeout = self.duration(&m, "timeout", &loc, true);
        Some(CommandDeploy {
            run: run?,
            rollback,
            current_version,
            timeout,
        })
    }

    fn monitor(
        &mut self,
        env: &Map<'_>,
        label: &str,
        refs: &mut EnvRefs,
    ) -> Option<Option<Monitor>> {
        let Some(e) = env.get("monitor") else {
            return Some(None);
        };
        let loc = format!("in `monitor` of {label}");
        let m = self.map(
            e.value,
            e.pos(),
            &format!("`monitor` of {label}"),
            &loc,
            MONITOR_KEYS,
        )?;
        let duration = if m.get("duration").is_some() {
            self.duration(&m, "duration", &loc, true)
        } else {
            self.missing(&m, "duration", &loc, "duration: 5m");
            None
        };
        let interval = self.duration(&m, "interval", &loc, true);
        if let (Some(d), Some(i), Some(ie)) = (duration, interval, m.get("interval"))
            && i > d
        {
            self.report(
                ie.pos(),
                format!(
                    "`interval` {loc} ({}) is longer than `duration` ({})",
                    format_duration(i),
                    format_duration(d)
                ),
                format!("write an interval of at most {}", format_duration(d)),
            );
        }
        let mut alarms = Vec::new();
        if let Some(a) = m.get("alarms") {
            for (name, pos) in self.texts(a, &loc, "alarms: [staging-health]", true) {
                refs.alarms.push((
                    Named {
                        name: name.clone(),
                        pos,
                    },
                    loc.clone(),
                ));
                alarms.push(name);
            }
        }
        let advisory = self.flag(&m, "advisory", &loc);
        let insufficient_data = self.choice(
            &m,
            "insufficient_data",
            &loc,
            &[
                ("fail", InsufficientData::Fail),
                ("pass", InsufficientData::Pass),
            ],
            &["fail", "pass"],
            " (`fail`: an alarm with no data for the whole window holds the promotion)",
        );
        let bad = (m.get("advisory").is_some() && advisory.is_none())
            || (m.get("insufficient_data").is_some() && insufficient_data.is_none());
        let duration = duration?;
        let interval = match (interval, m.get("interval")) {
            (Some(i), _) if i <= duration => i,
            (None, None) => duration.min(Duration::from_secs(10)),
            _ => return None,
        };
        if bad {
            return None;
        }
        Some(Some(Monitor {
            duration,
            interval,
            alarms,
            advisory: advisory.unwrap_or(false),
            insufficient_data: insufficient_data.unwrap_or_default(),
        }))
    }

    fn alarms(&mut self, top: &Map<'_>) -> (Vec<Alarm>, Vec<AlarmRef>) {
        let mut alarms = Vec::new();
        let mut refs = Vec::new();
        let Some(e) = top.get("alarms") else {
            return (alarms, refs);
        };
        let Some(items) = self.list(e, "") else {
            return (alarms, refs);
        };
        for (i, item) in items.iter().enumerate() {
            let label = match peek_name(item) {
                Some(n) => format!("alarm `{}`", ellipsize(n)),
                None => format!("alarm #{}", i + 1),
            };
            let (alarm, r) = self.alarm(item, &label);
            if let Some(r) = r {
                refs.push(r);
            }
            if let Some(a) = alarm {
                alarms.push(a);
            }
        }
        let names: Vec<Named> = refs
            .iter()
            .map(|r| Named {
                name: r.name.name.clone(),
                pos: r.name.pos,
            })
            .collect();
        self.duplicates(&names, "alarm", "");
        for n in &names {
            if n.name.starts_with("ferry.") {
                self.report(
                    n.pos,
                    format!(
                        "alarm name `{}` starts with `ferry.`, which is kept for the alarms on the pipeline itself (`ferry.failed_runs`, `ferry.rollbacks`)",
                        ellipsize(&n.name)
                    ),
                    "choose another name, like `staging-health`",
                );
            }
        }
        (alarms, refs)
    }

    fn alarm(&mut self, node: &Node, label: &str) -> (Option<Alarm>, Option<AlarmRef>) {
        let loc = format!("in {label}");
        let Some(m) = self.map(node, node.pos, label, &loc, ALARM_KEYS) else {
            return (None, None);
        };
        let named = self.name(&m, &loc, "alarm", "staging-health");
        let sources: Vec<Entry<'_>> = m
            .entries
            .iter()
            .filter(|e| ALARM_SOURCES.contains(&e.key))
            .copied()
            .collect();
        let source = match sources.as_slice() {
            [] if m.had_unknown => None,
            [] => {
                self.report(
                    m.pos,
                    format!("{label} needs a source: {}", one_of(ALARM_SOURCES)),
                    "add one, like `http: { url: http://127.0.0.1:8080/health }`",
                );
                None
            }
            [one] => self.alarm_source(*one, label),
            [first, rest @ ..] => {
                for extra in rest {
                    self.report(
                        extra.key_pos,
                        format!(
                            "{label} has more than one source: `{}` and `{}`",
                            first.key, extra.key
                        ),
                        "keep one of them; define another alarm for the other source",
                    );
                }
                None
            }
        };
        let period = self.duration(&m, "period", &loc, true);
        let evaluation = self.count(&m, "evaluation_periods", &loc, 1);
        let datapoints = self.count(&m, "datapoints_to_alarm", &loc, 1);
        let eval_n = evaluation.map_or(1, |(n, _)| n);
        let mut datapoints_ok = true;
        if let Some((d, pos)) = datapoints {
            let eval_given = m.get("evaluation_periods").is_some();
            if d > eval_n && (evaluation.is_some() || !eval_given) {
                datapoints_ok = false;
                let default = if eval_given { "" } else { ", the default" };
                self.report(
                    pos,
                    format!("`datapoints_to_alarm` {loc} ({d}) is more than `evaluation_periods` ({eval_n}{default})"),
                    format!(
                        "the alarm fires when `datapoints_to_alarm` of the last `evaluation_periods` datapoints breach; write at most {eval_n}, or raise `evaluation_periods`"
                    ),
                );
            }
        }
        let missing_data = self.choice(
            &m,
            "missing_data",
            &loc,
            &[
                ("missing", MissingData::Missing),
                ("breaching", MissingData::Breaching),
                ("not_breaching", MissingData::NotBreaching),
                ("notBreaching", MissingData::NotBreaching),
                ("ignore", MissingData::Ignore),
            ],
            &["missing", "breaching", "not_breaching", "ignore"],
            "",
        );
        let environment = self.text(&m, "environment", &loc, "environment: staging");
        let env_pos = m.get("environment").map(|e| e.pos());
        let advisory = self.flag(&m, "advisory", &loc);
        let advisory_bad = m.get("advisory").is_some() && advisory.is_none();
        let alarm_ref = named.as_ref().map(|n| AlarmRef {
            name: Named {
                name: n.name.clone(),
                pos: n.pos,
            },
            environment: environment
                .clone()
                .zip(env_pos)
                .map(|(name, pos)| Named { name, pos }),
            loc: loc.clone(),
        });
        if !datapoints_ok || advisory_bad {
            return (None, alarm_ref);
        }
        let alarm = match (named, source) {
            (Some(named), Some(source)) => Some(Alarm {
                name: named.name,
                source,
                period: period.unwrap_or(Duration::from_secs(60)),
                evaluation_periods: eval_n,
                datapoints_to_alarm: datapoints.map_or(eval_n, |(d, _)| d),
                missing_data: missing_data.unwrap_or_default(),
                environment,
                advisory: advisory.unwrap_or(false),
            }),
            _ => None,
        };
        (alarm, alarm_ref)
    }

    fn alarm_source(&mut self, e: Entry<'_>, label: &str) -> Option<AlarmSource> {
        let loc = format!("in `{}` of {label}", e.key);
        let what = format!("`{}` of {label}", e.key);
        let comparisons = [
            (">", Comparison::GreaterThan),
            (">=", Comparison::GreaterThanOrEqual),
            ("<", Comparison::LessThan),
            ("<=", Comparison::LessThanOrEqual),
            ("GreaterThanThreshold", Comparison::GreaterThan),
            (
                "GreaterThanOrEqualToThreshold",
                Comparison::GreaterThanOrEqual,
            ),
            ("LessThanThreshold", Comparison::LessThan),
            ("LessThanOrEqualToThreshold", Comparison::LessThanOrEqual),
        ];
        let shown = ["\">\"", "\">=\"", "\"<\"", "\"<=\""];
        let quote_help = " (quoted: a bare `>` starts a folded text in YAML)";
        match e.key {
            "external" => match e.value.kind {
                Kind::Scalar {
                    value: Value::Bool(true) | Value::Null,
                    ..
                } => Some(AlarmSource::External),
                Kind::Map(_) => {
                    self.map(e.value, e.pos(), &what, &loc, &[])?;
                    Some(AlarmSource::External)
                }
                _ => {
                    self.report(
                        e.pos(),
                        format!("{what} must be `true` or `{{}}`, found {}", e.value.describe()),
                        "write `external: true` for an alarm whose state is pushed to `ferry serve`",
                    );
                    None
                }
            },
            "http" => {
                let m = self.map(e.value, e.pos(), &what, &loc, HTTP_KEYS)?;
                let url = self.req_url(&m, "url", &loc, "url: http://127.0.0.1:8080/health", true);
                let status = match self.count(&m, "expect_status", &loc, 100) {
                    Some((s, pos)) => {
                        let status = u16::try_from(s).ok().filter(|s| *s <= 599);
                        if status.is_none() {
                            self.report(
                                pos,
                                format!("`expect_status` {loc} must be an http status between 100 and 599, found {s}"),
                                "write a status code, like `expect_status: 200`",
                            );
                        }
                        status
                    }
                    None => None,
                };
                let status_bad = m.get("expect_status").is_some() && status.is_none();
                let timeout = self.duration(&m, "timeout", &loc, true);
                let max_latency = self.duration(&m, "max_latency", &loc, true);
                if status_bad {
                    return None;
                }
                Some(AlarmSource::Http {
                    url: url?,
                    expect_status: status.unwrap_or(200),
                    timeout: timeout.unwrap_or(Duration::from_secs(5)),
                    max_latency,
                })
            }
            "prometheus" => {
                let m = self.map(e.value, e.pos(), &what, &loc, PROMETHEUS_KEYS)?;
                let url = self.req_url(&m, "url", &loc, "url: http://127.0.0.1:9090", false);
                let query =
                    self.req_text(&m, "query", &loc, "query: sum(rate(http_errors_total[1m]))");
                let threshold = if m.get("threshold").is_some() {
                    self.number(&m, "threshold", &loc, "5")
                } else {
                    self.missing(&m, "threshold", &loc, "threshold: 5");
                    None
                };
                let comparison =
                    self.choice(&m, "comparison", &loc, &comparisons, &shown, quote_help);
                let comparison_bad = m.get("comparison").is_some() && comparison.is_none();
                if comparison_bad {
                    return None;
                }
                Some(AlarmSource::Prometheus {
                    url: url?,
                    query: query?,
                    threshold: threshold?.0,
                    comparison: comparison.unwrap_or_default(),
                })
            }
            _ => {
                let m = self.map(e.value, e.pos(), &what, &loc, COMMAND_ALARM_KEYS)?;
                let run = self.req_text(&m, "run", &loc, "run: ./ci/error-rate.sh");
                let threshold = self.number(&m, "threshold", &loc, "5");
                let comparison =
                    self.choice(&m, "comparison", &loc, &comparisons, &shown, quote_help);
                let bad = (m.get("threshold").is_some() && threshold.is_none())
                    || (m.get("comparison").is_some() && comparison.is_none());
                if bad {
                    return None;
                }
                Some(AlarmSource::Command {
                    run: run?,
                    threshold: threshold.map(|(t, _)| t),
                    comparison: comparison.unwrap_or_default(),
                })
            }
        }
    }

    fn rollback(&mut self, top: &Map<'_>) -> Rollback {
        let mut rollback = Rollback::default();
        let Some(m) = self.sub_map(top, "rollback", "", ROLLBACK_KEYS) else {
            return rollback;
        };
        if let Some(v) = self.sub_map(&m, "validate", "in `rollback`", VALIDATE_KEYS) {
            let loc = "in `rollback.validate`";
            let defaults = RollbackValidate::default();
            rollback.validate = RollbackValidate {
                stabilize: self
                    .duration(&v, "stabilize", loc, false)
                    .unwrap_or(defaults.stabilize),
                health_timeout: self
                    .duration(&v, "health_timeout", loc, true)
                    .unwrap_or(defaults.health_timeout),
            };
        }
        if let Some(automatic) = self.flag(&m, "automatic", "in `rollback`") {
            rollback.automatic = automatic;
        }
        rollback
    }

    fn server(&mut self, top: &Map<'_>) -> Server {
        let mut server = Server::default();
        let loc = "in `server`";
        let Some(m) = self.sub_map(top, "server", "", SERVER_KEYS) else {
            return server;
        };
        if let Some(listen) = self.text(&m, "listen", loc, "listen: 127.0.0.1:8080") {
            let pos = m.get("listen").map_or(m.pos, |e| e.pos());
            if listen.parse::<std::net::SocketAddr>().is_ok() {
                server.listen = Some(listen);
            } else {
                self.report(
                    pos,
                    format!(
                        "`listen` {loc} must be an address and port, found `{}`",
                        ellipsize(&listen)
                    ),
                    "write it like `listen: 127.0.0.1:8080` (`0.0.0.0:8080` for every interface)",
                );
            }
        }
        server.url = self.url(&m, "url", loc, "url: http://127.0.0.1:8080", true);
        server.api_tokens_file = self.text(
            &m,
            "api_tokens_file",
            loc,
            "api_tokens_file: /etc/ferry/api-tokens",
        );
        for key in ["webhook_secret_file", "api_token_file"] {
            let example = format!(
                "{key}: /etc/ferry/{}",
                key.trim_end_matches("_file").replace('_', "-")
            );
            let path = self.text(&m, key, loc, &example);
            if key == "webhook_secret_file" {
                server.webhook_secret_file = path;
            } else {
                server.api_token_file = path;
            }
        }
        if let Some(e) = m.get("sns_topics") {
            let example = "sns_topics: [arn:aws:sns:eu-west-1:123456789012:ferry-alarms]";
            for (arn, pos) in self.texts(e, loc, example, true) {
                if is_sns_topic_arn(&arn) {
                    server.sns_topics.push(arn);
                } else {
                    self.report(
                        pos,
                        format!("`{}` is not an SNS topic ARN", ellipsize(&arn)),
                        "write it like `arn:aws:sns:eu-west-1:123456789012:ferry-alarms` (the topic's ARN from the SNS console)",
                    );
                }
            }
        }
        if let Some(e) = m.get("sns_certificate_urls") {
            let example =
                "sns_certificate_urls: [http://localhost.localstack.cloud:4566/_aws/sns/]";
            for (prefix, pos) in self.texts(e, loc, example, true) {
                if is_http_url(&prefix) && prefix.ends_with('/') {
                    server.sns_certificate_urls.push(prefix);
                } else {
                    self.report(
                        pos,
                        format!(
                            "`{}` in `sns_certificate_urls` must be an http:// or https:// URL prefix ending in `/`",
                            ellipsize(&prefix)
                        ),
                        "write the folder the certificates come from, like `http://localhost.localstack.cloud:4566/_aws/sns/`",
                    );
                }
            }
        }
        server
    }

    fn notifications(&mut self, top: &Map<'_>) -> Vec<Notification> {
        let mut out = Vec::new();
        let Some(e) = top.get("notifications") else {
            return out;
        };
        let Some(items) = self.list(e, "") else {
            return out;
        };
        let mut seen: Vec<(String, Pos)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let label = format!("notification #{}", i + 1);
            if let Some(n) = self.notification(item, &label) {
                let id = n.id();
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id) {
                    let line = first.line;
                    self.report(
                        item.pos,
                        format!(
                            "{label} is the same channel as the one on line {line} (id `{id}`)"
                        ),
                        "remove one, or give each its own `name:` if both are meant",
                    );
                }
                seen.push((id, item.pos));
                out.push(n);
            }
        }
        out
    }

    fn notification(&mut self, node: &Node, label: &str) -> Option<Notification> {
        let loc = format!("in {label}");
        let m = self.map(node, node.pos, label, &loc, CHANNELS)?;
        let e = match m.entries.as_slice() {
            [] if m.had_unknown => return None,
            [] => {
                self.report(
                    m.pos,
                    format!("{label} needs a channel: {}", one_of(CHANNELS)),
                    "write it like `- webhook: { url: http://127.0.0.1:9000/events }`",
                );
                return None;
            }
            [one] => *one,
            [first, rest @ ..] => {
                for extra in rest {
                    self.report(
                        extra.key_pos,
                        format!(
                            "{label} has more than one channel: `{}` and `{}`",
                            first.key, extra.key
                        ),
                        "write each channel as its own list item, starting with `- `",
                    );
                }
                return None;
            }
        };
        let loc = format!("in `{}` of {label}", e.key);
        let what = format!("`{}` of {label}", e.key);
        let allowed = match e.key {
            "email" => EMAIL_KEYS,
            "github" => GITHUB_KEYS,
            _ => URL_CHANNEL_KEYS,
        };
        let c = self.map(e.value, e.pos(), &what, &loc, allowed)?;
        let events: Vec<String> = match c.get("events") {
            Some(ev) => {
                let mut out = Vec::new();
                for (t, pos) in self.texts(ev, &loc, "events: [deployment_failed]", true) {
                    if EVENT_KINDS.contains(&t.as_str()) {
                        out.push(t);
                        continue;
                    }
                    let help = match closest(&t, EVENT_KINDS) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => format!(
                            "write event kinds like {}, or leave `events` out for the defaults",
                            one_of(DEFAULT_NOTIFY_EVENTS)
                        ),
                    };
                    self.report(
                        pos,
                        format!("unknown event kind `{}` {loc}", ellipsize(&t)),
                        help,
                    );
                }
                out
            }
            None => Vec::new(),
        };
        let name = match self.text(&c, "name", &loc, "name: team-webhook") {
            Some(n) => {
                let pos = c.get("name").map_or(c.pos, |e| e.pos());
                self.check_name(&n, pos, "channel", "team-webhook")
                    .then_some(n)
            }
            None => None,
        };
        match e.key {
            "email" => {
                let smtp = self.req_text(&c, "smtp", &loc, "smtp: smtp.example.com:587");
                let from = self.req_text(&c, "from", &loc, "from: ferry@example.com");
                let to = match c.get("to") {
                    Some(t) => {
                        let to: Vec<String> = self
                            .texts(t, &loc, "to: [team@example.com]", true)
                            .into_iter()
                            .map(|(t, _)| t)
                            .collect();
                        let empty = t.value.is_null()
                            || matches!(&t.value.kind, Kind::Seq(items) if items.is_empty());
                        if empty {
                            self.report(
                                t.pos(),
                                format!("{} is empty", located("to", &loc)),
                                "add at least one address, like `to: [team@example.com]`",
                            );
                        }
                        Some(to).filter(|t| !t.is_empty())
                    }
                    None => {
                        self.missing(&c, "to", &loc, "to: [team@example.com]");
                        None
                    }
                };
                let tls = match c.get("tls") {
                    Some(_) => self.choice(
                        &c,
                        "tls",
                        &loc,
                        &[
                            ("starttls", SmtpTls::Starttls),
                            ("tls", SmtpTls::Tls),
                            ("none", SmtpTls::None),
                        ],
                        &["starttls", "tls", "none"],
                        " (`starttls`: port 587; `tls`: port 465; `none`: a relay on this machine)",
                    ),
                    None => Some(SmtpTls::Starttls),
                };
                let smtp = smtp.filter(|s| match smtp_endpoint(s, tls.unwrap_or_default()) {
                    Ok(_) => true,
                    Err(why) => {
                        let pos = c.get("smtp").map_or(c.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!("`smtp` {loc} `{}` is not a server: {why}", ellipsize(s)),
                            "write `HOST:PORT` or a URL, like `smtp: smtp.example.com:587` or `smtp: smtps://smtp.example.com`",
                        );
                        false
                    }
                });
                let username = self.text(&c, "username", &loc, "username: ferry");
                let password_env = match self.text(
                    &c,
                    "password_env",
                    &loc,
                    "password_env: SMTP_PASSWORD",
                ) {
                    Some(t) if valid_env_var(&t) => Some(t),
                    Some(t) => {
                        let pos = c.get("password_env").map_or(c.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!("`password_env` {loc} must name an environment variable, found `{}`", ellipsize(&t)),
                            "write the variable's name, not the password, like `password_env: SMTP_PASSWORD`",
                        );
                        None
                    }
                    None => None,
                };
                if username.is_some() != password_env.is_some()
                    && c.get("username").is_some() != c.get("password_env").is_some()
                {
                    let (has, lacks, example) = if username.is_some() {
                        ("username", "password_env", "password_env: SMTP_PASSWORD")
                    } else {
                        ("password_env", "username", "username: ferry")
                    };
                    let pos = c.get(has).map_or(c.pos, |e| e.pos());
                    self.report(
                        pos,
                        format!("`{has}` {loc} needs `{lacks}` too"),
                        format!("add `{example}`, or remove `{has}` for a server without login"),
                    );
                }
                Some(Notification::Email {
                    name,
                    smtp: smtp?,
                    from: from?,
                    to: to?,
                    tls: tls?,
                    username,
                    password_env,
                    events,
                })
            }
            "github" => {
                let repo = self.req_text(&c, "repo", &loc, "repo: owner/name");
                let repo = repo.filter(|r| {
                    let ok = r.split('/').count() == 2 && r.split('/').all(valid_name);
                    if !ok {
                        let pos = c.get("repo").map_or(c.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!(
                                "`repo` {loc} must be `owner/name`, found `{}`",
                                ellipsize(r)
                            ),
                            "write it like `repo: acme/shop-api`",
                        );
                    }
                    ok
                });
                let token_env = match self.text(&c, "token_env", &loc, "token_env: GITHUB_TOKEN") {
                    Some(t) if valid_env_var(&t) => Some(t),
                    Some(t) => {
                        let pos = c.get("token_env").map_or(c.pos, |e| e.pos());
                        self.report(
                            pos,
                            format!("`token_env` {loc} must name an environment variable, found `{}`", ellipsize(&t)),
                            "write the variable's name, not the token, like `token_env: GITHUB_TOKEN`",
                        );
                        None
                    }
                    None if c.get("token_env").is_some() => None,
                    None => Some("GITHUB_TOKEN".to_string()),
                };
                let api_url = match c.get("api_url") {
                    Some(_) => self
                        .url(
                            &c,
                            "api_url",
                            &loc,
                            "api_url: https://github.example.com/api/v3",
                            false,
                        )
                        .map(|u| u.trim_end_matches('/').to_string()),
                    None => Some("https://api.github.com".to_string()),
                };
                Some(Notification::Github {
                    name,
                    repo: repo?,
                    token_env: token_env?,
                    api_url: api_url?,
                    events,
                })
            }
            "slack" => {
                let url = self.req_url(
                    &c,
                    "url",
                    &loc,
                    "url: https://hooks.slack.com/services/...",
                    false,
                );
                Some(Notification::Slack {
                    name,
                    url: url?,
                    events,
                })
            }
            _ => {
                let url = self.req_url(&c, "url", &loc, "url: http://127.0.0.1:9000/events", false);
                Some(Notification::Webhook {
                    name,
                    url: url?,
                    events,
                })
            }
        }
    }

    /// Alarms named by monitors must exist; environments named by alarms must exist.
    fn cross_references(&mut self, envs: &[EnvRefs], alarm_refs: &[AlarmRef]) {
        let alarm_names: Vec<&str> = alarm_refs.iter().map(|a| a.name.name.as_str()).collect();
        for env in envs {
            for (r, loc) in &env.alarms {
                if alarm_names.contains(&r.name.as_str()) {
                    continue;
                }
                let help = match closest(&r.name, &alarm_names) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None if alarm_names.is_empty() => format!(
                        "define it in the top-level `alarms:` list, like `- name: {}` with an `http:` source",
                        r.name
                    ),
                    None => format!(
                        "define it in the top-level `alarms:` list; defined alarms: {}",
                        listing(&alarm_names)
                    ),
                };
                self.report(
                    r.pos,
                    format!("unknown alarm `{}` {loc}", ellipsize(&r.name)),
                    help,
                );
            }
        }
        let env_names: Vec<&str> = envs
            .iter()
            .filter_map(|e| e.name.as_ref())
            .map(|n| n.name.as_str())
            .collect();
        for a in alarm_refs {
            let Some(env) = &a.environment else { continue };
            if env_names.contains(&env.name.as_str()) {
                continue;
            }
            let help = match closest(&env.name, &env_names) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("environments in this file: {}", listing(&env_names)),
            };
            self.report(
                env.pos,
                format!(
                    "unknown environment `{}` for `environment` {}",
                    ellipsize(&env.name),
                    a.loc
                ),
                help,
            );
        }
    }

    /// A `release` deploy unpacks the build artifact, so the build must pack one.
    fn releases_without_artifact(&mut self, envs: &[EnvRefs]) {
        for env in envs {
            let Some(pos) = env.release else { continue };
            self.report(
                pos,
                format!(
                    "{} deploys with `release`, which unpacks the build artifact, but `build.artifact` is not set",
                    env.label
                ),
                "add `artifact: dist` (the folder your build writes) under `build`, or deploy with `command`",
            );
        }
        for env in envs {
            let Some((pos, kind)) = env.artifact_kind else {
                continue;
            };
            self.report(
                pos,
                format!(
                    "{} deploys with `{kind}`, which uploads the build artifact, but `build.artifact` is not set",
                    env.label
                ),
                "add `artifact: dist` (the folder your build writes) under `build`",
            );
        }
    }

    /// Two environments in one release root would swap each other's `current` and prune
    /// each other's releases.
    fn shared_release_roots(&mut self, envs: &[EnvRefs]) {
        for (i, env) in envs.iter().enumerate() {
            let Some(root) = &env.root else { continue };
            let first = envs[..i].iter().find_map(|f| {
                f.root
                    .as_ref()
                    .filter(|r| r.normalized == root.normalized)
                    .map(|r| (f, r))
            });
            let Some((first, first_root)) = first else {
                continue;
            };
            self.report(
                root.pos,
                format!(
                    "{} shares its release root `{}` with {} (line {})",
                    env.label,
                    ellipsize(&root.written),
                    first.label,
                    first_root.pos.line
                ),
                format!(
                    "a release root must be a folder of its own, like `{}`",
                    root_example(env)
                ),
            );
        }
    }
}

/// The release root to suggest for an environment: `.ferry/envs/<name>`.
fn root_example(env: &EnvRefs) -> String {
    let name = env.name.as_ref().map_or("test", |n| n.name.as_str());
    format!(".ferry/envs/{name}")
}

/// The `in …` phrase for the keys under `key`: `in `build.gates``, `` in `x` of step `unit` ``.
fn sub_loc(key: &str, loc: &str) -> String {
    let rest = loc.strip_prefix("in ").unwrap_or(loc);
    if rest.is_empty() {
        return format!("in `{key}`");
    }
    match rest.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        Some(path) if !path.contains('`') => format!("in `{path}.{key}`"),
        _ => format!("in `{key}` of {rest}"),
    }
}

/// What an environment refers to, checked once every name is known.
#[derive(Default)]
struct EnvRefs {
    name: Option<Named>,
    /// `environment `test`` (or `environment #2`), for messages.
    label: String,
    /// Alarm names in `monitor.alarms`, with the `in …` phrase for messages.
    alarms: Vec<(Named, String)>,
    /// Where the `release` key is, when the environment deploys with `release`.
    release: Option<Pos>,
    /// Where the key of another kind that deploys the build artifact (`s3`) is.
    artifact_kind: Option<(Pos, &'static str)>,
    /// `deploy.release.root`, as written and normalised (see [`normalize_root`]).
    root: Option<Root>,
    /// Where the environment's `infrastructure` key is, if written.
    infrastructure: Option<Pos>,
}

struct Root {
    written: String,
    normalized: String,
    pos: Pos,
}

struct AlarmRef {
    name: Named,
    environment: Option<Named>,
    loc: String,
}

/// `arn:<partition>:sns:<region>:<12-digit account>:<topic name>`.
fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "sns", region, account, topic]
            if partition.starts_with("aws")
                && !region.is_empty()
                && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !topic.is_empty()
                && topic.len() <= 256
                && topic.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
}

/// `YYYY-MM-DD` naming a real day.
fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return false;
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || s.len() != 10 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}
