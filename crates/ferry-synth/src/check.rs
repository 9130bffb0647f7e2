//! Checks on synthesized stacks that need no AWS, used by the tests (and usable on any
//! template): imports that resolve across the stacks, no wildcard action in an `Allow`,
//! no `Allow` on every resource in an IAM role, and a `DeletionPolicy` on every stateful
//! resource. References inside one template are checked by `ferry-scan`'s template checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Resource types that hold data: each needs a `DeletionPolicy`.
pub const STATEFUL: &[&str] = &[
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::Logs::LogGroup",
    "AWS::SQS::Queue",
];

/// Every `Fn::ImportValue` in `stacks` whose name no stack exports. Names are compared
/// after putting each stack's own name for `${AWS::StackName}` and the `CoreStackName`
/// parameter's default for `${CoreStackName}`.
pub fn unresolved_imports(stacks: &BTreeMap<String, Value>) -> Vec<String> {
    let mut exports = BTreeSet::new();
    for (name, t) in stacks {
        if let Some(outputs) = t.get("Outputs").and_then(Value::as_object) {
            for o in outputs.values() {
                if let Some(e) = o.pointer("/Export/Name") {
                    exports.insert(text(e, name, t));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for (name, t) in stacks {
        let mut found = Vec::new();
        walk(t, &mut |v| {
            if let Some(i) = v.get("Fn::ImportValue") {
                found.push(text(i, name, t));
            }
        });
        for f in found {
            if !exports.contains(&f) {
                missing.push(format!("{name}: imports `{f}`, which no stack exports"));
            }
        }
    }
    missing
}

/// `Allow` statements (in any policy of any resource) whose action has a `*`, and
/// `Allow` statements of IAM roles on `Resource: "*"` (the seed's `iam_no_wildcard`).
/// Each problem names the resource.
pub fn wildcard_permissions(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return problems;
    };
    for (id, r) in resources {
        let is_role = r.get("Type").and_then(Value::as_str) == Some("AWS::IAM::Role");
        walk(r, &mut |v| {
            if v.get("Effect").and_then(Value::as_str) != Some("Allow") {
                return;
            }
            for a in strings(v.get("Action")) {
                if a.contains('*') {
                    problems.push(format!("{id}: allows the wildcard action `{a}`"));
                }
            }
            if v.get("NotAction").is_some() {
                problems.push(format!("{id}: allows with NotAction"));
            }
            if is_role && strings(v.get("Resource")).iter().any(|r| r == "*") {
                problems.push(format!("{id}: allows on every resource (`*`)"));
            }
        });
    }
    problems
}

/// Stateful resources (see [`STATEFUL`]) without a `DeletionPolicy`.
pub fn missing_deletion_policies(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(resources) = template.get("Resources").and_then(Value::as_object) {
        for (id, r) in resources {
            let ty = r.get("Type").and_then(Value::as_str).unwrap_or_default();
            if STATEFUL.contains(&ty) && r.get("DeletionPolicy").is_none() {
                problems.push(format!("{id} ({ty}) has no DeletionPolicy"));
            }
        }
    }
    problems
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// A name expression as text: a string, or `Fn::Sub` of a string with the stack's own
/// name and its `CoreStackName` default put in.
fn text(v: &Value, stack: &str, template: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other
            .get("Fn::Sub")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), String::from),
    };
    let core = template
        .pointer("/Parameters/CoreStackName/Default")
        .and_then(Value::as_str)
        .unwrap_or("${CoreStackName}");
    raw.replace("${AWS::StackName}", stack)
        .replace("${CoreStackName}", core)
}

fn walk(v: &Value, f: &mut impl FnMut(&Value)) {
    f(v);
    match v {
        Value::Object(m) => m.values().for_each(|x| walk(x, f)),
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}
