//! CloudFormation template checks that need no AWS: the template parses (JSON, or YAML
//! with the short-form intrinsic tags `!Ref`, `!GetAtt`, `!Sub`, …), every reference
//! points at something that exists, resources do not depend on each other in a circle,
//! and every condition is used.
//!
//! Findings (scanner `template`), by id:
//!
//! | id | severity | what |
//! |----|----------|------|
//! | `TEMPLATE_INVALID` | HIGH | not valid JSON/YAML, or not a template (no `Resources` mapping) |
//! | `TEMPLATE_DANGLING_REF` | HIGH | `Ref` / `Fn::Sub` `${X}` to no parameter, resource or pseudo parameter |
//! | `TEMPLATE_DANGLING_GETATT` | HIGH | `Fn::GetAtt` to no resource |
//! | `TEMPLATE_DANGLING_DEPENDS_ON` | HIGH | `DependsOn` to no resource |
//! | `TEMPLATE_DANGLING_CONDITION` | HIGH | `Condition` / `Fn::If` to no condition |
//! | `TEMPLATE_DANGLING_MAPPING` | HIGH | `Fn::FindInMap` to no mapping |
//! | `TEMPLATE_CIRCULAR_DEPENDENCY` | HIGH | resources that depend on each other in a circle (the cycle is named) |
//! | `TEMPLATE_UNUSED_CONDITION` | LOW | a condition nothing uses |
//!
//! The first six fail the deploy in CloudFormation, hence HIGH (they block); an unused
//! condition is harmless, hence LOW (informs). The logical id on a finding is the
//! resource, output or condition that holds the reference.

use std::collections::{BTreeMap, BTreeSet};

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value};

use crate::finding::{Finding, Location, Severity};
use crate::guard::{GuardError, Limits, check_bounds, refuse_aliases};

/// The scanner name on template findings.
pub const SCANNER: &str = "template";

/// CloudFormation's pseudo parameters: always defined.
pub const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

/// A template the checks refuse to look at (size or depth over the limits, YAML aliases).
pub type TemplateError = GuardError;

/// Checks one template (`file` names it in findings) with the default [`Limits`].
pub fn check_template(file: &str, text: &str) -> Result<Vec<Finding>, TemplateError> {
    check_template_with(file, text, Limits::default())
}

/// Checks one template with the given limits. A template over the limits is an error
/// (refused before parsing); everything else, including a template that does not
/// parse, is findings.
pub fn check_template_with(
    file: &str,
    text: &str,
    limits: Limits,
) -> Result<Vec<Finding>, TemplateError> {
    check_bounds(file, text.as_bytes(), limits)?;
    refuse_aliases(file, text)?;
    let mut c = Checker {
        file,
        findings: Vec::new(),
    };
    match parse(text) {
        Ok(doc) => c.template(&doc),
        Err((line, message)) => c.push(
            "TEMPLATE_INVALID",
            Severity::High,
            None,
            line,
            format!("not a valid JSON or YAML template: {message}"),
        ),
    }
    Ok(c.findings)
}

/// Parses JSON (when the text starts with `{`) or YAML into one JSON tree, the YAML
/// short forms turned into their long forms (`!Ref X` → `{"Ref": "X"}`, `!GetAtt A.B`
/// → `{"Fn::GetAtt": "A.B"}`, `!Condition C` → `{"Condition": "C"}`, `!Other` →
/// `{"Fn::Other": …}`). The error is a line (when known) and a message.
pub fn parse(text: &str) -> Result<Value, (Option<u32>, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| {
            (
                u32::try_from(e.line()).ok().filter(|&l| l > 0),
                e.to_string(),
            )
        });
    }
    let docs = Yaml::load_from_str(text)
        .map_err(|e| (u32::try_from(e.marker().line()).ok(), e.info().to_string()))?;
    match docs.len() {
        0 => Err((None, "the file is empty".into())),
        1 => yaml_to_json(&docs[0]).map_err(|m| (None, m)),
        n => Err((
            None,
            format!("{n} YAML documents in one file; a template is one document"),
        )),
    }
}

fn yaml_to_json(y: &Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Value(s) => scalar(s),
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match yaml_to_json(k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tag, inner) => {
            let inner = yaml_to_json(inner)?;
            if tag.handle != "!" {
                // `!!str` and other standard tags: the value as is.
                return Ok(inner);
            }
            let key = match tag.suffix.as_str() {
                "Ref" => "Ref".to_string(),
                "Condition" => "Condition".to_string(),
                other => format!("Fn::{other}"),
            };
            let mut out = Map::new();
            out.insert(key, inner);
            Value::Object(out)
        }
        Yaml::Alias(_) => {
            return Err("YAML aliases are not supported in CloudFormation templates".into());
        }
        Yaml::BadValue => Value::Null,
    })
}

fn scalar(s: &Scalar) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

/// What a name in a template is.
#[derive(Debug, Default)]
struct Names {
    parameters: BTreeSet<String>,
    resources: BTreeSet<String>,
    conditions: BTreeSet<String>,
    mappings: BTreeSet<String>,
}

struct Checker<'a> {
    file: &'a str,
    findings: Vec<Finding>,
}

impl Checker<'_> {
    fn push(
        &mut self,
        id: &str,
        severity: Severity,
        logical_id: Option<&str>,
        line: Option<u32>,
        message: String,
    ) {
        self.findings.push(Finding {
            scanner: SCANNER.to_string(),
            id: id.to_string(),
            aliases: Vec::new(),
            severity,
            location: Location {
                file: Some(self.file.to_string()),
                line,
                logical_id: logical_id.map(str::to_string),
                package: None,
                version: None,
            },
            message,
            allowed: None,
            expired: None,
        });
    }

    fn template(&mut self, doc: &Value) {
        let Some(top) = doc.as_object() else {
            self.push(
                "TEMPLATE_INVALID",
                Severity::High,
                None,
                None,
                "a template is a mapping with a `Resources` section; this file is not a mapping"
                    .into(),
            );
            return;
        };
        let section = |name: &str| top.get(name).and_then(Value::as_object);
        let Some(resources) = section("Resources") else {
            self.push(
                "TEMPLATE_INVALID",
                Severity::High,
                None,
                None,
                "no `Resources` mapping: a template declares at least one resource under `Resources:`"
                    .into(),
            );
            return;
        };
        let keys = |m: Option<&Map<String, Value>>| -> BTreeSet<String> {
            m.map(|m| m.keys().cloned().collect()).unwrap_or_default()
        };
        let names = Names {
            parameters: keys(section("Parameters")),
            resources: keys(Some(resources)),
            conditions: keys(section("Conditions")),
            mappings: keys(section("Mappings")),
        };
        let mut used_conditions = BTreeSet::new();
        let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();

        for (id, body) in resources {
            let mut refs = Refs::default();
            collect(body, &mut refs);
            if let Some(deps) = body.get("DependsOn") {
                let list: Vec<&str> = match deps {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                for d in list {
                    refs.depends_on.insert(d.to_string());
                }
            }
            if let Some(cond) = body.get("Condition").and_then(Value::as_str) {
                refs.conditions.insert(cond.to_string());
            }
            self.dangling(id, "resource", &refs, &names);
            used_conditions.extend(refs.conditions.iter().cloned());
            let deps = edges.entry(id.as_str()).or_default();
            for target in refs
                .refs
                .iter()
                .chain(&refs.subs)
                .chain(&refs.get_atts)
                .chain(&refs.depends_on)
            {
                if names.resources.contains(target) {
                    deps.insert(target.clone());
                }
            }
        }
        if let Some(outputs) = section("Outputs") {
            for (id, body) in outputs {
                let mut refs = Refs::default();
                collect(body, &mut refs);
                if let Some(cond) = body.get("Condition").and_then(Value::as_str) {
                    refs.conditions.insert(cond.to_string());
                }
                self.dangling(id, "output", &refs, &names);
                used_conditions.extend(refs.conditions.iter().cloned());
            }
        }
        if let Some(conditions) = section("Conditions") {
            for (id, body) in conditions {
                let mut refs = Refs::default();
                collect(body, &mut refs);
                self.dangling(id, "condition", &refs, &names);
                // A condition used only by itself is still unused.
                used_conditions.extend(refs.conditions.iter().filter(|c| *c != id).cloned());
            }
            for id in conditions.keys() {
                if !used_conditions.contains(id) {
                    self.push(
                        "TEMPLATE_UNUSED_CONDITION",
                        Severity::Low,
                        Some(id),
                        None,
                        format!(
                            "condition `{id}` is not used by any resource, output or other condition; remove it or reference it with `Condition: {id}` or `Fn::If`"
                        ),
                    );
                }
            }
        }
        for cycle in cycles(&edges) {
            let first = cycle[0].clone();
            let path = cycle
                .iter()
                .chain(std::iter::once(&first))
                .cloned()
                .collect::<Vec<_>>()
                .join(" -> ");
            self.push(
                "TEMPLATE_CIRCULAR_DEPENDENCY",
                Severity::High,
                Some(&first),
                None,
                format!(
                    "circular dependency between resources: {path}; CloudFormation cannot order them — break the cycle (drop a DependsOn, or move a property into a separate resource such as an AWS::IAM::Policy or a security group ingress rule)"
                ),
            );
        }
    }

    fn dangling(&mut self, holder: &str, kind: &str, refs: &Refs, names: &Names) {
        let known = |x: &str| {
            names.parameters.contains(x)
                || names.resources.contains(x)
                || PSEUDO_PARAMETERS.contains(&x)
        };
        for r in &refs.refs {
            if !known(r) {
                self.push(
                    "TEMPLATE_DANGLING_REF",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` references `{r}`, which is no parameter, resource or pseudo parameter{}",
                        suggest(r, names.parameters.iter().chain(&names.resources))
                    ),
                );
            }
        }
        for r in &refs.subs {
            if !known(r) {
                self.push(
                    "TEMPLATE_DANGLING_REF",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` uses `${{{r}}}` in Fn::Sub, but `{r}` is no parameter, resource, pseudo parameter or Fn::Sub variable (write `${{!{r}}}` for a literal){}",
                        suggest(r, names.parameters.iter().chain(&names.resources))
                    ),
                );
            }
        }
        for r in &refs.get_atts {
            if !names.resources.contains(r) {
                self.push(
                    "TEMPLATE_DANGLING_GETATT",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` uses Fn::GetAtt on `{r}`, which is no resource in this template{}",
                        suggest(r, names.resources.iter())
                    ),
                );
            }
        }
        for r in &refs.depends_on {
            if !names.resources.contains(r) {
                self.push(
                    "TEMPLATE_DANGLING_DEPENDS_ON",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` has DependsOn `{r}`, which is no resource in this template{}",
                        suggest(r, names.resources.iter())
                    ),
                );
            }
        }
        for r in &refs.conditions {
            if !names.conditions.contains(r) {
                self.push(
                    "TEMPLATE_DANGLING_CONDITION",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` uses condition `{r}`, which is not declared under `Conditions`{}",
                        suggest(r, names.conditions.iter())
                    ),
                );
            }
        }
        for r in &refs.mappings {
            if !names.mappings.contains(r) {
                self.push(
                    "TEMPLATE_DANGLING_MAPPING",
                    Severity::High,
                    Some(holder),
                    None,
                    format!(
                        "{kind} `{holder}` uses Fn::FindInMap on `{r}`, which is not declared under `Mappings`{}",
                        suggest(r, names.mappings.iter())
                    ),
                );
            }
        }
    }
}

/// ` (did you mean `X`?)` for the closest name, when one is close.
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    let lower = name.to_ascii_lowercase();
    candidates
        .filter(|c| {
            let cl = c.to_ascii_lowercase();
            cl == lower || edit_distance(&cl, &lower) <= 2.max(name.len() / 5)
        })
        .min_by_key(|c| edit_distance(&c.to_ascii_lowercase(), &lower))
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The names a piece of a template refers to.
#[derive(Debug, Default)]
struct Refs {
    refs: BTreeSet<String>,
    subs: BTreeSet<String>,
    get_atts: BTreeSet<String>,
    depends_on: BTreeSet<String>,
    conditions: BTreeSet<String>,
    mappings: BTreeSet<String>,
}

/// Collects intrinsic-function references anywhere under `v`.
fn collect(v: &Value, out: &mut Refs) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(map) => {
            if map.len() == 1
                && let Some((k, arg)) = map.iter().next()
            {
                match k.as_str() {
                    "Ref" => {
                        if let Some(s) = arg.as_str() {
                            out.refs.insert(s.to_string());
                            return;
                        }
                    }
                    "Fn::GetAtt" => {
                        let target = match arg {
                            Value::String(s) => s.split('.').next().map(str::to_string),
                            Value::Array(a) => {
                                a.first().and_then(Value::as_str).map(str::to_string)
                            }
                            _ => None,
                        };
                        if let Some(t) = target {
                            out.get_atts.insert(t);
                        }
                        collect(arg, out);
                        return;
                    }
                    "Fn::Sub" => {
                        let (text, vars) = match arg {
                            Value::String(s) => (Some(s.as_str()), None),
                            Value::Array(a) => (
                                a.first().and_then(Value::as_str),
                                a.get(1).and_then(Value::as_object),
                            ),
                            _ => (None, None),
                        };
                        if let Some(text) = text {
                            for name in sub_names(text) {
                                if !vars.is_some_and(|m| m.contains_key(&name)) {
                                    out.subs.insert(name);
                                }
                            }
                        }
                        if let Some(vars) = vars {
                            vars.values().for_each(|v| collect(v, out));
                        }
                        return;
                    }
                    "Fn::FindInMap" => {
                        if let Some(m) = arg
                            .as_array()
                            .and_then(|a| a.first())
                            .and_then(Value::as_str)
                        {
                            out.mappings.insert(m.to_string());
                        }
                        collect(arg, out);
                        return;
                    }
                    "Fn::If" => {
                        if let Some(c) = arg
                            .as_array()
                            .and_then(|a| a.first())
                            .and_then(Value::as_str)
                        {
                            out.conditions.insert(c.to_string());
                        }
                        if let Some(a) = arg.as_array() {
                            a.iter().skip(1).for_each(|v| collect(v, out));
                        }
                        return;
                    }
                    "Condition" => {
                        // Inside Fn::And/Or/Not: a reference to another condition.
                        if let Some(c) = arg.as_str() {
                            out.conditions.insert(c.to_string());
                            return;
                        }
                    }
                    _ => {}
                }
            }
            for (k, v) in map {
                // Resource attributes handled by the caller; Metadata is free-form.
                if k == "DependsOn" || k == "Metadata" {
                    continue;
                }
                if k == "Condition" && v.is_string() {
                    continue;
                }
                collect(v, out);
            }
        }
        _ => {}
    }
}

/// The names in `${Name}` / `${Name.Attr}` of a Fn::Sub string (not `${!Literal}`).
fn sub_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find('}') else { break };
        let inner = rest[..end].trim();
        rest = &rest[end + 1..];
        if inner.starts_with('!') || inner.is_empty() {
            continue;
        }
        // `${Res.Attr}` is a GetAtt on Res; `${AWS::Region}` keeps its `::`.
        let name = if inner.starts_with("AWS::") {
            inner
        } else {
            inner.split('.').next().unwrap_or(inner)
        };
        out.push(name.to_string());
    }
    out
}

/// The cycles among resources: one per strongly connected component with more than one
/// member or a self-loop, as a path in dependency order starting at its smallest id.
/// Iterative (Tarjan), so a long chain of resources cannot overflow the stack.
fn cycles(edges: &BTreeMap<&str, BTreeSet<String>>) -> Vec<Vec<String>> {
    let ids: Vec<&str> = edges.keys().copied().collect();
    let index_of: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let adj: Vec<Vec<usize>> = ids
        .iter()
        .map(|id| {
            edges[id]
                .iter()
                .filter_map(|t| index_of.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    let n = ids.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut sccs: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if *i < adj[v].len() {
                let w = adj[v][*i];
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 || adj[v].contains(&v) {
                        sccs.push(comp);
                    }
                }
            }
        }
    }
    let mut out: Vec<Vec<String>> = sccs
        .into_iter()
        .map(|comp| {
            let members: BTreeSet<usize> = comp.iter().copied().collect();
            let start = comp.iter().copied().min().unwrap_or(0);
            cycle_path(start, &adj, &members)
                .into_iter()
                .map(|i| ids[i].to_string())
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// A shortest path start -> … -> start inside one component (breadth first).
fn cycle_path(start: usize, adj: &[Vec<usize>], members: &BTreeSet<usize>) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if w == start {
                let mut path = vec![v];
                let mut cur = v;
                while cur != start {
                    cur = prev[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if members.contains(&w) && !prev.contains_key(&w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_names_skip_literals_and_keep_pseudo() {
        assert_eq!(
            sub_names("arn:${AWS::Partition}:s3:::${Bucket}/${!Literal}/${Role.Arn}"),
            vec!["AWS::Partition", "Bucket", "Role"]
        );
    }

    #[test]
    fn edit_distance_counts() {
        assert_eq!(edit_distance("bucket", "bucket"), 0);
        assert_eq!(edit_distance("bucket", "buckt"), 1);
    }
}
