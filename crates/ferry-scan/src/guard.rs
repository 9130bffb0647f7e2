//! Policy as code on CloudFormation templates with the cfn-guard rule language (seed
//! §3.7.1), evaluated in-process by the `cfn-guard` crate.
//!
//! The crate's `validate` command runs as a library in payload mode (rule text and
//! template text in, the structured JSON report out; no files), and every rule that
//! fails on a resource becomes one [`Finding`] (scanner `cfn-guard`, id = the rule's
//! name, location = the template's name and the resource's logical id).
//!
//! Severity, a ferry convention: a comment line `# severity: CRITICAL` (or `HIGH`,
//! `MODERATE`/`MEDIUM`, `LOW`) in the comment block right above a `rule` sets the
//! severity of that rule's findings; a rule without one is HIGH. An unknown word is a
//! rule-file error, never a silent default. The message is the rule's custom message
//! (`<< ... >>`) when it has one, else cfn-guard's own explanation.
//!
//! Bounds: a template larger than [`Limits::max_bytes`] or nested deeper than
//! [`Limits::max_depth`] is refused by a linear scan of its bytes before any parser
//! sees it ([`check_bounds`]), so a hostile template costs bounded time and memory.

use std::collections::BTreeMap;
use std::io::Cursor;

use cfn_guard::commands::Executable;
use cfn_guard::commands::validate::{OutputFormatType, ShowSummaryType, parse_rules};
use cfn_guard::utils::reader::{ReadBuffer, Reader};
use cfn_guard::utils::writer::{WriteBuffer, Writer};
use cfn_guard::{CommandBuilder, ValidateBuilder};
use serde_json::Value;

use crate::finding::{Finding, Location, Severity};

/// The scanner name on guard findings.
pub const SCANNER: &str = "cfn-guard";

/// The built-in policy pack: the seed's `security-rules.guard` (S3 encryption, S3 public
/// access block, DynamoDB encryption, Lambda DLQ, no IAM wildcards).
pub const DEFAULT_RULES: &str = include_str!("rules/security-rules.guard");

/// The name the built-in pack goes by in findings and errors.
pub const DEFAULT_RULES_NAME: &str = "ferry:security-rules.guard";

/// How much of a template the scanners accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest template in bytes (default 16 MiB). The cfn-guard crate needs about 80
    /// times a template's size while it evaluates (each value carries its full path, and
    /// the document is cloned per evaluation): 890 MiB for 10.9 MB, 3.9 GiB for 48.8 MB
    /// (BENCHMARKS.md), so 16 MiB bounds a scan near 1.3 GiB. CloudFormation itself
    /// accepts at most 1 MB per template.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences (default 64).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why the guard could not judge a template or load a rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A rule file that does not parse.
    #[error("{}", rule_parse_message(.file, *.line, *.column, .rule.as_deref(), .message))]
    RuleParse {
        /// The rule file's name.
        file: String,
        /// 1-based line of the problem, when cfn-guard says.
        line: Option<u32>,
        /// 1-based column of the problem, when cfn-guard says.
        column: Option<u32>,
        /// The rule the problem is in, when the line falls inside one.
        rule: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A rule file with a bad `# severity:` comment.
    #[error(
        "{file}:{line}: unknown severity `{word}`; write `# severity: CRITICAL`, `HIGH`, `MODERATE` or `LOW`"
    )]
    BadSeverity {
        /// The rule file's name.
        file: String,
        /// 1-based line of the comment.
        line: u32,
        /// The word found.
        word: String,
    },
    /// A template over the size limit.
    #[error(
        "{file}: template is {size} bytes, over the limit of {limit} bytes; split the stack into nested stacks (CloudFormation itself accepts at most 1 MB per template)"
    )]
    TooLarge {
        /// The template's name.
        file: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A template nested deeper than the limit.
    #[error(
        "{file}:{line}: template nests deeper than {limit} levels; CloudFormation templates are shallow — is this file generated wrongly?"
    )]
    TooDeep {
        /// The template's name.
        file: String,
        /// 1-based line where the limit was passed.
        line: u32,
        /// The limit.
        limit: usize,
    },
    /// A YAML template with an alias (`*name`): aliases can expand exponentially
    /// ("billion laughs"), so they are refused before any tree is built.
    #[error(
        "{file}:{line}: YAML alias `*{name}` refused: aliases can expand without bound; write the value out in full"
    )]
    Alias {
        /// The template's name.
        file: String,
        /// 1-based line of the alias.
        line: u32,
        /// The alias's name.
        name: String,
    },
    /// A template that is not JSON or YAML (cfn-guard's words).
    #[error("{file}: not a valid JSON or YAML template: {message}")]
    InvalidTemplate {
        /// The template's name.
        file: String,
        /// cfn-guard's explanation.
        message: String,
    },
    /// cfn-guard failed or printed something that is not its report: the gate must fail
    /// closed on this.
    #[error("cfn-guard failed on {file}: {message}")]
    Engine {
        /// The template's name.
        file: String,
        /// What happened.
        message: String,
    },
}

fn rule_parse_message(
    file: &str,
    line: Option<u32>,
    column: Option<u32>,
    rule: Option<&str>,
    message: &str,
) -> String {
    let mut s = file.to_string();
    if let Some(l) = line {
        s.push_str(&format!(":{l}"));
        if let Some(c) = column {
            s.push_str(&format!(":{c}"));
        }
    }
    s.push_str(": rule file does not parse");
    if let Some(r) = rule {
        s.push_str(&format!(" (in rule `{r}`)"));
    }
    s.push_str(": ");
    s.push_str(message);
    s.push_str("; see https://docs.aws.amazon.com/cfn-guard/latest/ug/writing-rules.html");
    s
}

/// One rule file, parsed once and kept as text for cfn-guard.
#[derive(Debug, Clone)]
struct RuleFile {
    name: String,
    text: String,
    /// Severity per rule name, from `# severity:` comments.
    severities: BTreeMap<String, Severity>,
}

/// A set of cfn-guard rule files, checked at load, ready to evaluate templates.
#[derive(Debug, Clone)]
pub struct Guard {
    files: Vec<RuleFile>,
    limits: Limits,
}

impl Guard {
    /// The built-in pack alone.
    pub fn default_pack() -> Guard {
        // The built-in pack is tested to parse; failing here would be a build defect.
        Guard::new(&[]).unwrap_or_else(|e| panic!("the built-in policy pack must parse: {e}"))
    }

    /// The built-in pack plus the user's rule files (`(name, text)`).
    pub fn new(user_files: &[(&str, &str)]) -> Result<Guard, GuardError> {
        let mut all = vec![(DEFAULT_RULES_NAME, DEFAULT_RULES)];
        all.extend_from_slice(user_files);
        Guard::only(&all)
    }

    /// Exactly these rule files (`(name, text)`), without the built-in pack. Every file
    /// is parsed; the first that does not parse is the error.
    pub fn only(files: &[(&str, &str)]) -> Result<Guard, GuardError> {
        let mut out = Vec::with_capacity(files.len());
        for (name, text) in files {
            if let Err(e) = parse_rules(text, name) {
                return Err(rule_parse_error(name, text, &e.to_string()));
            }
            out.push(RuleFile {
                name: (*name).to_string(),
                text: (*text).to_string(),
                severities: severities(name, text)?,
            });
        }
        Ok(Guard {
            files: out,
            limits: Limits::default(),
        })
    }

    /// The same rules with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Guard {
        self.limits = limits;
        self
    }

    /// The names of the rule files, in order.
    pub fn rule_files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.name.as_str())
    }

    /// Evaluates every rule on one template (JSON or YAML) named `file`; one finding per
    /// failing rule and resource, sorted by logical id then rule.
    pub fn check(&self, file: &str, template: &str) -> Result<Vec<Finding>, GuardError> {
        check_bounds(file, template.as_bytes(), self.limits)?;
        refuse_aliases(file, template)?;
        let payload = serde_json::json!({
            "rules": self.files.iter().map(|f| f.text.as_str()).collect::<Vec<_>>(),
            "data": [template],
        })
        .to_string();
        let report = run_validate(file, payload)?;
        let mut findings = Vec::new();
        let entries = report.as_array().ok_or_else(|| GuardError::Engine {
            file: file.to_string(),
            message: "the report is not a JSON list".into(),
        })?;
        for entry in entries {
            let failing = entry
                .get("not_compliant")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for item in failing {
                let Some(rule) = item.get("Rule") else {
                    continue;
                };
                let name = rule
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("unnamed")
                    .to_string();
                let severity = self
                    .files
                    .iter()
                    .find_map(|f| f.severities.get(&name).copied())
                    .unwrap_or(Severity::High);
                let mut resources = BTreeMap::new();
                walk(rule, &Messages::default(), &mut resources);
                if resources.is_empty() {
                    let msgs = Messages::default().under(rule);
                    resources.insert(String::new(), msgs);
                }
                for (logical_id, msgs) in resources {
                    let message = msgs.text(&name, &logical_id);
                    findings.push(Finding {
                        scanner: SCANNER.to_string(),
                        id: name.clone(),
                        aliases: Vec::new(),
                        severity,
                        location: Location {
                            file: Some(file.to_string()),
                            line: msgs.line,
                            logical_id: (!logical_id.is_empty()).then_some(logical_id),
                            package: None,
                            version: None,
                        },
                        message,
                        allowed: None,
                        expired: None,
                    });
                }
            }
        }
        findings
            .sort_by(|a, b| (&a.location.logical_id, &a.id).cmp(&(&b.location.logical_id, &b.id)));
        findings.dedup();
        Ok(findings)
    }

    /// Evaluates every rule on many templates (`(name, text)`); the first template that
    /// cannot be judged is the error (it names the file).
    pub fn check_all(&self, templates: &[(&str, &str)]) -> Result<Vec<Finding>, GuardError> {
        let mut out = Vec::new();
        for (name, text) in templates {
            out.extend(self.check(name, text)?);
        }
        Ok(out)
    }
}

fn run_validate(file: &str, payload: String) -> Result<Value, GuardError> {
    let engine = |message: String| GuardError::Engine {
        file: file.to_string(),
        message,
    };
    let cmd = ValidateBuilder::default()
        .payload(true)
        .output_format(OutputFormatType::JSON)
        .show_summary(vec![ShowSummaryType::None])
        .structured(true)
        .try_build()
        .map_err(|e| engine(e.to_string()))?;
    let mut writer = Writer::new_with_err(WriteBuffer::Vec(vec![]), WriteBuffer::Vec(vec![]))
        .map_err(|e| engine(e.to_string()))?;
    let mut reader = Reader::new(ReadBuffer::Cursor(Cursor::new(payload.into_bytes())));
    let code = match cmd.execute(&mut writer, &mut reader) {
        Ok(code) => code,
        Err(e) => {
            let message = e.to_string();
            return Err(
                if message.contains("Parser Error") || message.contains("parsing data") {
                    GuardError::InvalidTemplate {
                        file: file.to_string(),
                        message,
                    }
                } else {
                    engine(message)
                },
            );
        }
    };
    let out = writer.into_string().map_err(|e| engine(e.to_string()))?;
    // 0: all pass, 19: some rule failed; anything else is an error.
    if code != 0 && code != 19 {
        return Err(engine(format!("exit code {code}: {}", out.trim())));
    }
    serde_json::from_str(&out).map_err(|e| engine(format!("the report is not JSON ({e})")))
}

/// The messages in force at a point of the report, and the first line seen.
#[derive(Debug, Clone, Default)]
struct Messages {
    custom: Option<String>,
    error: Option<String>,
    line: Option<u32>,
}

impl Messages {
    fn under(&self, node: &Value) -> Messages {
        let mut m = self.clone();
        if let Some(msgs) = node.get("messages") {
            let get = |k: &str| {
                msgs.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            if let Some(c) = get("custom_message") {
                m.custom = Some(c);
            }
            if let Some(e) = get("error_message") {
                m.error = Some(e);
            }
        }
        m
    }

    fn text(&self, rule: &str, logical_id: &str) -> String {
        if let Some(c) = &self.custom {
            return c.clone();
        }
        if let Some(e) = &self.error {
            return format!("{rule}: {}", short(e));
        }
        if logical_id.is_empty() {
            format!("{rule} is not compliant")
        } else {
            format!("{rule} is not compliant on {logical_id}")
        }
    }
}

/// cfn-guard's explanation without the traversed value (which can be a whole resource),
/// at most 300 characters.
fn short(e: &str) -> String {
    let cut = e.find(" Value traversed to").unwrap_or(e.len());
    let mut s: String = e[..cut].chars().take(300).collect();
    if s.len() < cut {
        s.push('…');
    }
    s
}

/// Collects, per resource logical id (from paths `/Resources/<id>/…`), the messages in
/// force where the report reaches that resource.
fn walk(node: &Value, msgs: &Messages, out: &mut BTreeMap<String, Messages>) {
    match node {
        Value::Object(map) => {
            let here = msgs.under(node);
            if let Some(path) = map.get("path").and_then(Value::as_str)
                && let Some(rest) = path.strip_prefix("/Resources/")
            {
                let id = rest.split('/').next().unwrap_or(rest).to_string();
                let mut m = here.clone();
                m.line = m.line.or_else(|| line_in(&here));
                let slot = out.entry(id).or_insert_with(|| m.clone());
                if slot.custom.is_none() && m.custom.is_some() {
                    *slot = m;
                }
            }
            let has_path = map.contains_key("path");
            for (k, v) in map {
                // The traversed template value can be large and is data, not report.
                if k == "messages" || (has_path && k == "value") {
                    continue;
                }
                walk(v, &here, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(v, msgs, out);
            }
        }
        _ => {}
    }
}

/// A line from cfn-guard's `[L:5,C:6]` marks in its message (0 for JSON input: none).
fn line_in(m: &Messages) -> Option<u32> {
    let text = m.error.as_deref()?;
    let start = text.find("[L:")? + 3;
    let end = start + text[start..].find(',')?;
    text[start..end].parse().ok().filter(|&l| l > 0)
}

fn rule_parse_error(file: &str, text: &str, raw: &str) -> GuardError {
    let number_after = |key: &str| -> Option<u32> {
        let at = raw.find(key)? + key.len();
        let digits: String = raw[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let line = number_after("at line ");
    let column = number_after("at column ");
    let message = raw
        .find("when handling ")
        .map(|at| {
            let rest = &raw[at + "when handling ".len()..];
            let what = rest.split(", fragment").next().unwrap_or(rest).trim();
            let fragment = rest
                .split(", fragment")
                .nth(1)
                .map(|f| f.trim().trim_end_matches('`').trim())
                .unwrap_or("");
            match (what.is_empty(), fragment.is_empty()) {
                (true, true) => "syntax error".to_string(),
                (true, false) => format!("unexpected `{}`", first_line(fragment)),
                (false, true) => what.to_string(),
                (false, false) => format!("{what}, near `{}`", first_line(fragment)),
            }
        })
        .unwrap_or_else(|| raw.trim().to_string());
    let rule = line.and_then(|l| rule_at(text, l));
    GuardError::RuleParse {
        file: file.to_string(),
        line,
        column,
        rule,
        message,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// The name of the last `rule NAME` that starts at or before 1-based `line`.
fn rule_at(text: &str, line: u32) -> Option<String> {
    text.lines()
        .take(line as usize)
        .filter_map(rule_name)
        .last()
}

fn rule_name(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("rule")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Severities from `# severity: WORD` comments in the comment block right above a rule.
fn severities(file: &str, text: &str) -> Result<BTreeMap<String, Severity>, GuardError> {
    let mut out = BTreeMap::new();
    let mut pending: Option<Severity> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.trim();
            if let Some(word) = comment
                .strip_prefix("severity:")
                .or_else(|| comment.strip_prefix("Severity:"))
            {
                let sev = Severity::parse(word).ok_or_else(|| GuardError::BadSeverity {
                    file: file.to_string(),
                    line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    word: word.trim().to_string(),
                })?;
                pending = Some(sev);
            }
            continue;
        }
        if let Some(name) = rule_name(trimmed) {
            if let Some(sev) = pending.take() {
                out.insert(name, sev);
            }
            continue;
        }
        if !trimmed.is_empty() {
            pending = None;
        }
    }
    Ok(out)
}

/// Refuses a YAML template with an alias, by a streaming pass over the parser's events
/// (linear time, memory bounded by the nesting). JSON has no aliases; a text that does
/// not parse passes here and is reported by the parser that builds the tree.
pub fn refuse_aliases(file: &str, text: &str) -> Result<(), GuardError> {
    if text.trim_start().starts_with('{') {
        return Ok(());
    }
    for event in saphyr_parser::Parser::new_from_str(text) {
        match event {
            Ok((saphyr_parser::Event::Alias(_), span)) => {
                let start = span.start.index();
                let name: String = text
                    .get(start..)
                    .unwrap_or("")
                    .trim_start_matches('*')
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                    .collect();
                return Err(GuardError::Alias {
                    file: file.to_string(),
                    line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
                    name,
                });
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Refuses, before any parsing, a template over the size limit or nested deeper than the
/// depth limit. Linear in the input, constant memory. Depth counts JSON/YAML flow
/// brackets outside strings plus YAML block indentation levels (including `- ` items).
pub fn check_bounds(file: &str, bytes: &[u8], limits: Limits) -> Result<(), GuardError> {
    if bytes.len() > limits.max_bytes {
        return Err(GuardError::TooLarge {
            file: file.to_string(),
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let too_deep = |line: usize| GuardError::TooDeep {
        file: file.to_string(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        limit: limits.max_depth,
    };
    let mut flow: usize = 0;
    // Block indentation stack (YAML); bounded by max_depth since we refuse beyond it.
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        if flow == 0 {
            // Block context: measure the indentation, `- ` items count as a level each.
            let mut col = 0;
            while col < line.len() && line[col] == b' ' {
                col += 1;
            }
            let content = &line[col..];
            if !content.is_empty() && content[0] != b'#' && content != b"\r" {
                while indents.last().is_some_and(|&top| top >= col) {
                    indents.pop();
                }
                indents.push(col);
                let mut c = content;
                let mut extra = col;
                while c.len() >= 2 && c[0] == b'-' && (c[1] == b' ') {
                    let mut skip = 1;
                    while skip < c.len() && c[skip] == b' ' {
                        skip += 1;
                    }
                    extra += skip;
                    indents.push(extra);
                    c = &c[skip..];
                }
                if indents.len() > limits.max_depth {
                    return Err(too_deep(line_no));
                }
            }
        }
        // Quotes open a string, and `#` a comment, only after a separator (so `don't`
        // and `a#b` in plain YAML scalars stay text). Templates' strings do not span
        // lines (JSON escapes newlines); a stray quote must not swallow the file.
        let mut prev_sep = true;
        let mut in_str: Option<u8> = None;
        let mut escaped = false;
        for &b in line {
            if let Some(q) = in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' && q == b'"' {
                    escaped = true;
                } else if b == q {
                    in_str = None;
                }
                prev_sep = false;
                continue;
            }
            match b {
                b'"' | b'\'' if prev_sep => in_str = Some(b),
                b'#' if prev_sep && flow == 0 => break,
                b'{' | b'[' => {
                    flow += 1;
                    if flow + indents.len() > limits.max_depth {
                        return Err(too_deep(line_no));
                    }
                }
                b'}' | b']' => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev_sep = matches!(b, b' ' | b'\t' | b':' | b'-' | b',' | b'[' | b'{' | b'?');
        }
    }
    Ok(())
}
