//! Infrastructure change detection (`ferry diff`, seed §3.2): which changed files are
//! infrastructure, the semantic difference between two sets of synthesized CloudFormation
//! templates, and the verdict: no change, a meaningful change, or a rollback-unsafe one.
//!
//! Pure: the caller lists the changed files (git) and reads the templates (synth); this
//! module only compares values.
//!
//! What is ignored, so that a re-synth with nothing really changed compares equal:
//! - key order (JSON objects compare as maps);
//! - every resource's `Metadata` (CDK paths, `aws:asset:*` keys) and the
//!   `AWS::CDK::Metadata` resource itself (CDK version analytics);
//! - parameters whose name starts with `AssetParameters` (CDK v1 asset hashes), and
//!   references to them;
//! - content-hashed asset keys: any string that is 64 hex digits, optionally followed
//!   by an extension (`3f…9a.zip`), such as the `S3Key` of a Lambda function's `Code`.
//!
//! "Meaningful" is any remaining difference in resources, parameters or outputs, or in
//! the sections they read ([`RESOLVING_SECTIONS`]: `Mappings`, `Conditions`, `Rules`,
//! `Transform`, `Globals`) — a changed mapping value changes every resource that
//! `Fn::FindInMap`s it while the resource's own text stays the same.
//! "Rollback-unsafe" is a [stateful](STATEFUL_TYPES) resource replaced or removed, or a
//! changed file matching a `migrations` glob.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// Resource types that hold data: replacing or removing one loses it, so a deployment
/// doing that is not rolled back automatically.
pub const STATEFUL_TYPES: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::DynamoDB::GlobalTable",
    "AWS::S3::Bucket",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::DocDB::DBCluster",
    "AWS::Neptune::DBCluster",
    "AWS::Redshift::Cluster",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::Kinesis::Stream",
    "AWS::EFS::FileSystem",
    "AWS::FSx::FileSystem",
    "AWS::KMS::Key",
    "AWS::SecretsManager::Secret",
    "AWS::ElastiCache::CacheCluster",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::OpenSearchService::Domain",
    "AWS::Elasticsearch::Domain",
    "AWS::Cognito::UserPool",
    "AWS::Logs::LogGroup",
    "AWS::ECR::Repository",
    "AWS::Backup::BackupVault",
    "AWS::Timestream::Table",
];

/// Top-level template sections besides `Resources`, `Parameters` and `Outputs` whose
/// change changes what CloudFormation deploys (through `Fn::FindInMap`, `Condition`,
/// parameter rules, macros and SAM globals), so a difference there is meaningful.
pub const RESOLVING_SECTIONS: &[&str] =
    &["Mappings", "Conditions", "Rules", "Transform", "Globals"];

/// Properties whose change makes CloudFormation replace the resource (a small table from
/// the CloudFormation reference's "Update requires: Replacement"), by resource type.
pub const REPLACEMENT_PROPERTIES: &[(&str, &[&str])] = &[
    (
        "AWS::DynamoDB::Table",
        &["TableName", "KeySchema", "LocalSecondaryIndexes"],
    ),
    ("AWS::S3::Bucket", &["BucketName"]),
    (
        "AWS::RDS::DBInstance",
        &[
            "Engine",
            "DBInstanceIdentifier",
            "DBName",
            "StorageEncrypted",
            "KmsKeyId",
            "CharacterSetName",
        ],
    ),
    (
        "AWS::RDS::DBCluster",
        &[
            "Engine",
            "DBClusterIdentifier",
            "DatabaseName",
            "StorageEncrypted",
            "KmsKeyId",
        ],
    ),
    ("AWS::SQS::Queue", &["QueueName", "FifoQueue"]),
    ("AWS::SNS::Topic", &["TopicName", "FifoTopic"]),
    ("AWS::Kinesis::Stream", &["Name"]),
    (
        "AWS::EFS::FileSystem",
        &[
            "Encrypted",
            "KmsKeyId",
            "PerformanceMode",
            "AvailabilityZoneName",
        ],
    ),
    ("AWS::ElastiCache::CacheCluster", &["ClusterName", "Engine"]),
    ("AWS::Logs::LogGroup", &["LogGroupName"]),
    ("AWS::ECR::Repository", &["RepositoryName"]),
    ("AWS::Cognito::UserPool", &["UserPoolName"]),
    ("AWS::SecretsManager::Secret", &["Name"]),
    ("AWS::Lambda::Function", &["FunctionName"]),
    ("AWS::IAM::Role", &["RoleName", "Path"]),
];

/// Whether a resource of this type holds data (see [`STATEFUL_TYPES`]).
pub fn is_stateful(resource_type: &str) -> bool {
    STATEFUL_TYPES.contains(&resource_type)
}

/// Whether changing `property` (a top-level property name) of a `resource_type` replaces
/// the resource (see [`REPLACEMENT_PROPERTIES`]).
pub fn requires_replacement(resource_type: &str, property: &str) -> bool {
    REPLACEMENT_PROPERTIES
        .iter()
        .any(|(t, props)| *t == resource_type && props.contains(&property))
}

/// Matches `/`-separated paths: `*` and `?` stay within one segment, `**` spans any
/// number of segments (also none).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| match_segments(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_one(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_one(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((b'*', pr)), _) => (0..=s.len()).any(|i| match_one(pr, &s[i..])),
        (Some((b'?', pr)), Some((_, sr))) => match_one(pr, sr),
        (Some((pc, pr)), Some((sc, sr))) => pc == sc && match_one(pr, sr),
        _ => false,
    }
}

/// How a file changed between two commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Added,
    Deleted,
    Modified,
    /// Moved (and perhaps edited); [`ChangedFile::old_path`] is where it was.
    Renamed,
    /// Its type changed (a file became a link, …).
    Typechange,
}

impl FileStatus {
    /// One letter, as `git diff --name-status` prints it.
    pub fn letter(self) -> char {
        match self {
            FileStatus::Added => 'A',
            FileStatus::Deleted => 'D',
            FileStatus::Modified => 'M',
            FileStatus::Renamed => 'R',
            FileStatus::Typechange => 'T',
        }
    }
}

/// One file changed between two commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    /// The path now (for a deleted file: the path it had).
    pub path: String,
    pub status: FileStatus,
    /// For a rename: the path before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
}

impl ChangedFile {
    /// Whether the file, under its new or its old path, matches one of `globs`.
    pub fn matches(&self, globs: &[String]) -> bool {
        globs.iter().any(|g| {
            glob_match(g, &self.path) || self.old_path.as_deref().is_some_and(|o| glob_match(g, o))
        })
    }
}

/// The files among `files` that match one of `globs`.
pub fn matching<'a>(files: &'a [ChangedFile], globs: &[String]) -> Vec<&'a ChangedFile> {
    files.iter().filter(|f| f.matches(globs)).collect()
}

/// What happened to a resource, parameter or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Only resources: its type or a replacement-requiring property changed.
    Replaced,
    Modified,
}

impl ChangeKind {
    /// The word printed (`added`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Replaced => "replaced",
            ChangeKind::Modified => "modified",
        }
    }
}

/// One resource that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChange {
    /// The template's name (its path).
    pub template: String,
    pub logical_id: String,
    /// The type now (for a removed resource: the type it had).
    pub resource_type: String,
    pub kind: ChangeKind,
    /// The paths that changed, like `Properties.BillingMode` or `Properties.Tags[0].Value`
    /// (empty for added and removed resources).
    pub paths: Vec<String>,
    /// Why it is replaced: `type AWS::X -> AWS::Y` or the replacement-requiring property.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_because: Option<String>,
    /// Whether it holds data (see [`STATEFUL_TYPES`]), for the old type on a type change.
    pub stateful: bool,
}

impl ResourceChange {
    /// A stateful resource replaced or removed: its data would be lost.
    pub fn loses_data(&self) -> bool {
        self.stateful && matches!(self.kind, ChangeKind::Removed | ChangeKind::Replaced)
    }
}

/// One parameter or output that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryChange {
    pub template: String,
    pub name: String,
    pub kind: ChangeKind,
    /// The paths that changed inside it (for `modified`).
    pub paths: Vec<String>,
}

/// The semantic difference between two sets of templates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateDiff {
    pub resources: Vec<ResourceChange>,
    pub parameters: Vec<EntryChange>,
    pub outputs: Vec<EntryChange>,
    /// Entries of [`RESOLVING_SECTIONS`] that differ, named `Section.Entry` (like
    /// `Mappings.RegionMap`), or the section itself when it is not a map (`Transform`).
    pub sections: Vec<EntryChange>,
}

impl TemplateDiff {
    /// No difference that matters.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
            && self.parameters.is_empty()
            && self.outputs.is_empty()
            && self.sections.is_empty()
    }
}

/// Compares two sets of templates (name → parsed JSON); a template present on one side
/// only counts as all its resources, parameters and outputs added or removed.
pub fn diff_templates(
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
) -> TemplateDiff {
    let mut out = TemplateDiff::default();
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let empty = Value::Object(serde_json::Map::new());
    for name in names {
        let a = old.get(name).unwrap_or(&empty);
        let b = new.get(name).unwrap_or(&empty);
        diff_one(name, a, b, &mut out);
    }
    out
}

fn section<'a>(template: &'a Value, key: &str) -> BTreeMap<&'a str, &'a Value> {
    template
        .get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn diff_one(name: &str, a: &Value, b: &Value, out: &mut TemplateDiff) {
    // Resources.
    let ra = resources(a);
    let rb = resources(b);
    let ids: BTreeSet<&str> = ra.keys().chain(rb.keys()).copied().collect();
    for id in ids {
        let change = match (ra.get(id), rb.get(id)) {
            (None, Some(new)) => Some(ResourceChange {
                template: name.to_string(),
                logical_id: id.to_string(),
                resource_type: type_of(new).to_string(),
                kind: ChangeKind::Added,
                paths: Vec::new(),
                replaced_because: None,
                stateful: is_stateful(type_of(new)),
            }),
            (Some(old), None) => Some(ResourceChange {
                template: name.to_string(),
                logical_id: id.to_string(),
                resource_type: type_of(old).to_string(),
                kind: ChangeKind::Removed,
                paths: Vec::new(),
                replaced_because: None,
                stateful: is_stateful(type_of(old)),
            }),
            (Some(old), Some(new)) => resource_change(name, id, old, new),
            (None, None) => None,
        };
        out.resources.extend(change);
    }
    // Parameters and outputs.
    let keep_param = |k: &str| !k.starts_with("AssetParameters");
    entries(
        name,
        &section(a, "Parameters"),
        &section(b, "Parameters"),
        keep_param,
        &mut out.parameters,
    );
    entries(
        name,
        &section(a, "Outputs"),
        &section(b, "Outputs"),
        |_| true,
        &mut out.outputs,
    );
    // The sections resources read: mappings, conditions, rules, macros, SAM globals.
    for key in RESOLVING_SECTIONS {
        let (x, y) = (a.get(*key), b.get(*key));
        if x.is_none_or(Value::is_object) && y.is_none_or(Value::is_object) {
            let mut changes = Vec::new();
            entries(
                name,
                &section(a, key),
                &section(b, key),
                |_| true,
                &mut changes,
            );
            for mut c in changes {
                c.name = format!("{key}.{}", c.name);
                out.sections.push(c);
            }
        } else if x.map(normalize) != y.map(normalize) {
            out.sections.push(EntryChange {
                template: name.to_string(),
                name: (*key).to_string(),
                kind: match (x, y) {
                    (None, _) => ChangeKind::Added,
                    (_, None) => ChangeKind::Removed,
                    _ => ChangeKind::Modified,
                },
                paths: Vec::new(),
            });
        }
    }
}

/// The resources that count: all but `AWS::CDK::Metadata`, each normalised.
fn resources(template: &Value) -> BTreeMap<&str, Value> {
    section(template, "Resources")
        .into_iter()
        .filter(|(_, r)| type_of(r) != "AWS::CDK::Metadata")
        .map(|(k, r)| (k, normalize_resource(r)))
        .collect()
}

fn type_of(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

fn normalize_resource(r: &Value) -> Value {
    match r {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "Metadata")
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        other => normalize(other),
    }
}

/// Replaces content hashes and asset parameter references by a constant.
fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) if is_asset_hash(s) || s.starts_with("AssetParameters") => {
            Value::String("<asset>".into())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// 64 hex digits, optionally with an extension: a CDK asset's content hash.
fn is_asset_hash(s: &str) -> bool {
    let (stem, _ext) = s.split_once('.').unwrap_or((s, ""));
    stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resource_change(template: &str, id: &str, old: &Value, new: &Value) -> Option<ResourceChange> {
    if old == new {
        return None;
    }
    let (ta, tb) = (type_of(old), type_of(new));
    let mut paths = Vec::new();
    value_paths("", old, new, &mut paths);
    let replaced_because = if ta != tb {
        Some(format!("type {ta} -> {tb}"))
    } else {
        paths.iter().find_map(|p| {
            let prop = p.strip_prefix("Properties.")?;
            let top = prop.split(['.', '[']).next().unwrap_or(prop);
            requires_replacement(tb, top).then(|| format!("{top} requires replacement"))
        })
    };
    Some(ResourceChange {
        template: template.to_string(),
        logical_id: id.to_string(),
        resource_type: tb.to_string(),
        kind: if replaced_because.is_some() {
            ChangeKind::Replaced
        } else {
            ChangeKind::Modified
        },
        paths,
        replaced_because,
        stateful: is_stateful(ta) || is_stateful(tb),
    })
}

fn entries(
    template: &str,
    a: &BTreeMap<&str, &Value>,
    b: &BTreeMap<&str, &Value>,
    keep: impl Fn(&str) -> bool,
    out: &mut Vec<EntryChange>,
) {
    let names: BTreeSet<&str> = a
        .keys()
        .chain(b.keys())
        .copied()
        .filter(|k| keep(k))
        .collect();
    for name in names {
        let (kind, paths) = match (a.get(name), b.get(name)) {
            (None, Some(_)) => (ChangeKind::Added, Vec::new()),
            (Some(_), None) => (ChangeKind::Removed, Vec::new()),
            (Some(x), Some(y)) => {
                let (x, y) = (normalize(x), normalize(y));
                if x == y {
                    continue;
                }
                let mut paths = Vec::new();
                value_paths("", &x, &y, &mut paths);
                (ChangeKind::Modified, paths)
            }
            (None, None) => continue,
        };
        out.push(EntryChange {
            template: template.to_string(),
            name: name.to_string(),
            kind,
            paths,
        });
    }
}

/// The deepest paths at which `a` and `b` differ (objects by key, arrays by index).
fn value_paths(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => value_paths(&join(k), v, w, out),
                    _ => out.push(join(k)),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                value_paths(&format!("{prefix}[{i}]"), v, w, out);
            }
        }
        _ => out.push(if prefix.is_empty() {
            "(root)".into()
        } else {
            prefix.to_string()
        }),
    }
}

/// The overall verdict of a diff (seed §3.2, issue 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No infrastructure file changed, or the templates are the same after what is
    /// ignored: the infrastructure deploy is skipped.
    NoChange,
    /// Resources, parameters or outputs differ: the infrastructure deploy runs.
    Meaningful,
    /// A stateful resource is replaced or removed, or a migration changed: the deploy
    /// runs (when meaningful) but the deployment is never rolled back automatically.
    RollbackUnsafe,
}

impl Verdict {
    /// `no-change`, `meaningful` or `rollback-unsafe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoChange => "no-change",
            Verdict::Meaningful => "meaningful",
            Verdict::RollbackUnsafe => "rollback-unsafe",
        }
    }
}

/// A diff's assessment: whether to deploy the infrastructure and whether a rollback is safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    pub verdict: Verdict,
    /// The templates differ meaningfully: the infrastructure deploy should run.
    pub meaningful: bool,
    /// Why a rollback would be unsafe (empty when it is safe), one sentence each.
    pub unsafe_reasons: Vec<String>,
}

/// Judges a diff: `migrations` are the changed files that matched a `migrations` glob.
pub fn assess(diff: &TemplateDiff, migrations: &[&ChangedFile]) -> Assessment {
    let mut reasons = Vec::new();
    for r in diff.resources.iter().filter(|r| r.loses_data()) {
        reasons.push(format!(
            "stateful resource {} ({}) in {} is {}",
            r.logical_id,
            r.resource_type,
            r.template,
            r.kind.as_str()
        ));
    }
    for f in migrations {
        reasons.push(format!("migration {} changed", f.path));
    }
    let meaningful = !diff.is_empty();
    let verdict = if !reasons.is_empty() {
        Verdict::RollbackUnsafe
    } else if meaningful {
        Verdict::Meaningful
    } else {
        Verdict::NoChange
    };
    Assessment {
        verdict,
        meaningful,
        unsafe_reasons: reasons,
    }
}

/// What an environment's infrastructure step does with a comparison (issue 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepDecision {
    /// Run the environment's `infrastructure.deploy` command.
    pub deploy: bool,
    /// `no-change`, `meaningful`, `rollback-unsafe`, or `first-deployment`.
    pub verdict: &'static str,
    /// Why the deployment is rollback-unsafe (empty when it is safe).
    pub unsafe_reasons: Vec<String>,
    /// One line for the log and the event.
    pub summary: String,
}

/// The infrastructure step's decision: `assessment` is the comparison of the
/// environment's deployed version with the run's commit, `None` when nothing is deployed
/// there yet (the first deployment deploys the infrastructure). The deploy command runs
/// exactly when the verdict is not `no-change`.
pub fn step_decision(assessment: Option<&Assessment>) -> StepDecision {
    match assessment {
        None => StepDecision {
            deploy: true,
            verdict: "first-deployment",
            unsafe_reasons: Vec::new(),
            summary: "nothing is deployed here yet: the infrastructure is deployed".to_string(),
        },
        Some(a) => {
            let deploy = a.verdict != Verdict::NoChange;
            let summary = match a.verdict {
                Verdict::NoChange => "no meaningful change since the deployed version: nothing deployed (the infrastructure deploy is skipped)".to_string(),
                Verdict::Meaningful => "meaningful change: the infrastructure is deployed".to_string(),
                Verdict::RollbackUnsafe => format!(
                    "rollback-unsafe change ({}): the infrastructure is deployed, and this deployment will not be rolled back automatically",
                    a.unsafe_reasons.join("; ")
                ),
            };
            StepDecision {
                deploy,
                verdict: a.verdict.as_str(),
                unsafe_reasons: a.unsafe_reasons.clone(),
                summary,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(t: Value) -> BTreeMap<String, Value> {
        BTreeMap::from([("stack.template.json".to_string(), t)])
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "infrastructure/**",
            "infrastructure/lib/stack.ts"
        ));
        assert!(glob_match("infra/*.json", "infra/a.json"));
        assert!(!glob_match("infra/*.json", "infra/sub/a.json"));
        assert!(glob_match("**/*.sql", "db/migrations/001.sql"));
    }

    #[test]
    fn metadata_and_asset_hashes_are_ignored() {
        let hash = "a".repeat(64);
        let a = json!({"Resources": {"Fn": {"Type": "AWS::Lambda::Function",
            "Metadata": {"aws:asset:path": "asset.1"},
            "Properties": {"Code": {"S3Key": format!("{hash}.zip")}}},
            "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v1"}}},
            "Parameters": {"AssetParametersabc": {"Type": "String"}}});
        let b = json!({"Resources": {"Fn": {"Type": "AWS::Lambda::Function",
            "Metadata": {"aws:asset:path": "asset.2"},
            "Properties": {"Code": {"S3Key": format!("{}.zip", "b".repeat(64))}}},
            "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v2"}}},
            "Parameters": {"AssetParametersdef": {"Type": "String"}}});
        let d = diff_templates(&one(a), &one(b));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(assess(&d, &[]).verdict, Verdict::NoChange);
    }

    #[test]
    fn mappings_conditions_and_transform_changes_are_meaningful() {
        let res = json!({"Q": {"Type": "AWS::SQS::Queue",
            "Properties": {"VisibilityTimeout": {"Fn::FindInMap": ["Env", "prod", "Timeout"]}}}});
        let a = json!({"Resources": res, "Mappings": {"Env": {"prod": {"Timeout": 30}}},
            "Conditions": {"IsProd": {"Fn::Equals": ["a", "a"]}}});
        // Only the mapping's value changes: the resource's own text is the same.
        let b = json!({"Resources": res, "Mappings": {"Env": {"prod": {"Timeout": 60}}},
            "Conditions": {"IsProd": {"Fn::Equals": ["a", "a"]}}});
        let d = diff_templates(&one(a.clone()), &one(b));
        assert!(d.resources.is_empty(), "{d:?}");
        assert_eq!(d.sections.len(), 1, "{d:?}");
        assert_eq!(d.sections[0].name, "Mappings.Env");
        assert_eq!(d.sections[0].kind, ChangeKind::Modified);
        assert_eq!(d.sections[0].paths, vec!["prod.Timeout"]);
        assert_eq!(assess(&d, &[]).verdict, Verdict::Meaningful);
        // A condition added, a transform (a string, not a map) added.
        let mut c = a.clone();
        c["Conditions"]["IsDev"] = json!({"Fn::Equals": ["a", "b"]});
        c["Transform"] = json!("AWS::Serverless-2016-10-31");
        let d = diff_templates(&one(a.clone()), &one(c));
        let names: Vec<(&str, ChangeKind)> = d
            .sections
            .iter()
            .map(|e| (e.name.as_str(), e.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Conditions.IsDev", ChangeKind::Added),
                ("Transform", ChangeKind::Added)
            ]
        );
        assert_eq!(assess(&d, &[]).verdict, Verdict::Meaningful);
        // The same sections in another key order: nothing.
        let d = diff_templates(&one(a.clone()), &one(a));
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn replacement_of_a_table_is_rollback_unsafe() {
        let a = json!({"Resources": {"T": {"Type": "AWS::DynamoDB::Table",
            "Properties": {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}}}});
        let b = json!({"Resources": {"T": {"Type": "AWS::DynamoDB::Table",
            "Properties": {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}}}});
        let d = diff_templates(&one(a), &one(b));
        assert_eq!(d.resources.len(), 1);
        assert_eq!(d.resources[0].kind, ChangeKind::Replaced);
        assert_eq!(
            d.resources[0].paths,
            vec!["Properties.KeySchema[0].AttributeName"]
        );
        assert_eq!(assess(&d, &[]).verdict, Verdict::RollbackUnsafe);
    }

    #[test]
    fn modified_property_is_meaningful() {
        let a = json!({"Resources": {"T": {"Type": "AWS::DynamoDB::Table",
            "Properties": {"BillingMode": "PROVISIONED"}}}, "Outputs": {"O": {"Value": "x"}}});
        let b = json!({"Resources": {"T": {"Type": "AWS::DynamoDB::Table",
            "Properties": {"BillingMode": "PAY_PER_REQUEST"}}}, "Outputs": {"O": {"Value": "y"}}});
        let d = diff_templates(&one(a), &one(b));
        assert_eq!(d.resources[0].kind, ChangeKind::Modified);
        assert_eq!(d.resources[0].paths, vec!["Properties.BillingMode"]);
        assert_eq!(d.outputs[0].paths, vec!["Value"]);
        assert_eq!(assess(&d, &[]).verdict, Verdict::Meaningful);
    }

    #[test]
    fn a_migration_alone_is_rollback_unsafe() {
        let f = ChangedFile {
            path: "migrations/002.sql".into(),
            status: FileStatus::Added,
            old_path: None,
        };
        let a = assess(&TemplateDiff::default(), &[&f]);
        assert_eq!(a.verdict, Verdict::RollbackUnsafe);
        assert!(!a.meaningful);
    }

    #[test]
    fn renamed_file_matches_by_either_path() {
        let f = ChangedFile {
            path: "infra/new.ts".into(),
            status: FileStatus::Renamed,
            old_path: Some("infrastructure/old.ts".into()),
        };
        assert!(f.matches(&["infrastructure/**".into()]));
        assert!(f.matches(&["infra/**".into()]));
        assert!(!f.matches(&["src/**".into()]));
    }
}
