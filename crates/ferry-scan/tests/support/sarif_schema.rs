//! The SARIF 2.1.0 schema checks, shared by `ferry-scan`'s SARIF tests and the CLI's
//! tests of the SARIF file a run writes (included with `#[path]`): the requirements of
//! the official schema (oasis-tcs/sarif-spec `sarif-schema-2.1.0.json`) that matter for
//! what ferry writes: every object's allowed and required properties (the schema
//! forbids additional properties), enum values, minimums, uri-reference format and
//! unique arrays. The tables below are transcribed from the schema's definitions.

use serde_json::Value;

/// (definition, allowed properties, required properties, at least one of).
type ObjectRule = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const OBJECTS: &[ObjectRule] = &[
    (
        "sarifLog",
        &[
            "$schema",
            "version",
            "runs",
            "inlineExternalProperties",
            "properties",
        ],
        &["version", "runs"],
        &[],
    ),
    (
        "run",
        &[
            "addresses",
            "artifacts",
            "automationDetails",
            "baselineGuid",
            "columnKind",
            "conversion",
            "defaultEncoding",
            "defaultSourceLanguage",
            "externalPropertyFileReferences",
            "graphs",
            "invocations",
            "language",
            "logicalLocations",
            "newlineSequences",
            "originalUriBaseIds",
            "policies",
            "properties",
            "redactionTokens",
            "results",
            "runAggregates",
            "specialLocations",
            "taxonomies",
            "threadFlowLocations",
            "tool",
            "translations",
            "versionControlProvenance",
            "webRequests",
            "webResponses",
        ],
        &["tool"],
        &[],
    ),
    (
        "tool",
        &["driver", "extensions", "properties"],
        &["driver"],
        &[],
    ),
    (
        "toolComponent",
        &[
            "associatedComponent",
            "contents",
            "dottedQuadFileVersion",
            "downloadUri",
            "fullDescription",
            "fullName",
            "globalMessageStrings",
            "guid",
            "informationUri",
            "isComprehensive",
            "language",
            "localizedDataSemanticVersion",
            "locations",
            "minimumRequiredLocalizedDataSemanticVersion",
            "name",
            "notifications",
            "organization",
            "product",
            "productSuite",
            "properties",
            "releaseDateUtc",
            "rules",
            "semanticVersion",
            "shortDescription",
            "supportedTaxonomies",
            "taxa",
            "translationMetadata",
            "version",
        ],
        &["name"],
        &[],
    ),
    (
        "reportingDescriptor",
        &[
            "defaultConfiguration",
            "deprecatedGuids",
            "deprecatedIds",
            "deprecatedNames",
            "fullDescription",
            "guid",
            "help",
            "helpUri",
            "id",
            "messageStrings",
            "name",
            "properties",
            "relationships",
            "shortDescription",
        ],
        &["id"],
        &[],
    ),
    (
        "reportingConfiguration",
        &["enabled", "level", "parameters", "properties", "rank"],
        &[],
        &[],
    ),
    (
        "multiformatMessageString",
        &["markdown", "properties", "text"],
        &["text"],
        &[],
    ),
    (
        "result",
        &[
            "analysisTarget",
            "attachments",
            "baselineState",
            "codeFlows",
            "correlationGuid",
            "fingerprints",
            "fixes",
            "graphTraversals",
            "graphs",
            "guid",
            "hostedViewerUri",
            "kind",
            "level",
            "locations",
            "message",
            "occurrenceCount",
            "partialFingerprints",
            "properties",
            "provenance",
            "rank",
            "relatedLocations",
            "rule",
            "ruleId",
            "ruleIndex",
            "stacks",
            "suppressions",
            "taxa",
            "webRequest",
            "webResponse",
            "workItemUris",
        ],
        &["message"],
        &[],
    ),
    (
        "message",
        &["arguments", "id", "markdown", "properties", "text"],
        &[],
        &["text", "id"],
    ),
    (
        "location",
        &[
            "annotations",
            "id",
            "logicalLocations",
            "message",
            "physicalLocation",
            "properties",
            "relationships",
        ],
        &[],
        &[],
    ),
    (
        "physicalLocation",
        &[
            "address",
            "artifactLocation",
            "contextRegion",
            "properties",
            "region",
        ],
        &[],
        &["address", "artifactLocation"],
    ),
    (
        "artifactLocation",
        &["description", "index", "properties", "uri", "uriBaseId"],
        &[],
        &[],
    ),
    (
        "region",
        &[
            "byteLength",
            "byteOffset",
            "charLength",
            "charOffset",
            "endColumn",
            "endLine",
            "message",
            "properties",
            "snippet",
            "sourceLanguage",
            "startColumn",
            "startLine",
        ],
        &[],
        &["startLine", "charOffset", "byteOffset"],
    ),
    (
        "logicalLocation",
        &[
            "decoratedName",
            "fullyQualifiedName",
            "index",
            "kind",
            "name",
            "parentIndex",
            "properties",
        ],
        &[],
        &[],
    ),
    (
        "suppression",
        &[
            "guid",
            "justification",
            "kind",
            "location",
            "properties",
            "status",
        ],
        &["kind"],
        &[],
    ),
];

/// Checks `v` as the schema's definition `def`, recursing into the parts ferry writes;
/// pushes every violation to `errors` with its JSON path.
fn check(def: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = v.as_object() else {
        errors.push(format!("{path}: {def} must be an object"));
        return;
    };
    let Some((_, allowed, required, any_of)) = OBJECTS.iter().find(|o| o.0 == def) else {
        errors.push(format!("{path}: no table for {def}"));
        return;
    };
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(format!("{path}: {def} does not allow property `{k}`"));
        }
    }
    for r in *required {
        if !obj.contains_key(*r) {
            errors.push(format!("{path}: {def} requires `{r}`"));
        }
    }
    if !any_of.is_empty() && !any_of.iter().any(|k| obj.contains_key(*k)) {
        errors.push(format!("{path}: {def} needs one of {any_of:?}"));
    }
    let mut sub = |key: &str, d: &str| {
        if let Some(x) = obj.get(key) {
            check(d, x, &format!("{path}.{key}"), errors);
        }
    };
    match def {
        "run" => sub("tool", "tool"),
        "tool" => sub("driver", "toolComponent"),
        "reportingDescriptor" => {
            sub("shortDescription", "multiformatMessageString");
            sub("fullDescription", "multiformatMessageString");
            sub("defaultConfiguration", "reportingConfiguration");
        }
        "result" => sub("message", "message"),
        "location" => sub("physicalLocation", "physicalLocation"),
        "physicalLocation" => {
            sub("artifactLocation", "artifactLocation");
            sub("region", "region");
        }
        _ => {}
    }
    let mut array = |key: &str, d: &str, unique: bool| {
        let Some(x) = obj.get(key) else { return };
        let Some(items) = x.as_array() else {
            errors.push(format!("{path}.{key}: must be an array"));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            if unique && items[..i].contains(item) {
                errors.push(format!(
                    "{path}.{key}[{i}]: the schema requires unique items"
                ));
            }
            if !d.is_empty() {
                check(d, item, &format!("{path}.{key}[{i}]"), errors);
            }
        }
    };
    match def {
        "sarifLog" => array("runs", "run", false),
        "run" => array("results", "result", false),
        "toolComponent" => array("rules", "reportingDescriptor", true),
        "result" => {
            array("locations", "location", false);
            array("suppressions", "suppression", true);
        }
        "location" => array("logicalLocations", "logicalLocation", true),
        "propertyBag" => array("tags", "", true),
        _ => {}
    }
    let enum_of = |key: &str, values: &[&str], errors: &mut Vec<String>| {
        if let Some(x) = obj.get(key)
            && !x.as_str().is_some_and(|s| values.contains(&s))
        {
            errors.push(format!("{path}.{key}: {x} is not one of {values:?}"));
        }
    };
    let min = |key: &str, m: i64, errors: &mut Vec<String>| {
        if let Some(x) = obj.get(key)
            && x.as_i64().is_none_or(|n| n < m)
        {
            errors.push(format!("{path}.{key}: {x} must be an integer >= {m}"));
        }
    };
    let string = |key: &str, errors: &mut Vec<String>| {
        if let Some(x) = obj.get(key)
            && !x.is_string()
        {
            errors.push(format!("{path}.{key}: {x} must be a string"));
        }
    };
    match def {
        "sarifLog" => {
            enum_of("version", &["2.1.0"], errors);
            string("$schema", errors);
        }
        "reportingConfiguration" => enum_of("level", &["none", "note", "warning", "error"], errors),
        "result" => {
            enum_of("level", &["none", "note", "warning", "error"], errors);
            enum_of(
                "kind",
                &[
                    "notApplicable",
                    "pass",
                    "fail",
                    "review",
                    "open",
                    "informational",
                ],
                errors,
            );
            min("ruleIndex", -1, errors);
            string("ruleId", errors);
        }
        "suppression" => {
            enum_of("kind", &["inSource", "external"], errors);
            enum_of("status", &["accepted", "underReview", "rejected"], errors);
            string("justification", errors);
        }
        "region" => min("startLine", 1, errors),
        "artifactLocation" => {
            if let Some(uri) = obj.get("uri") {
                match uri.as_str() {
                    Some(u) if is_uri_reference(u) => {}
                    _ => errors.push(format!("{path}.uri: {uri} is not a uri-reference")),
                }
            }
        }
        "toolComponent" | "multiformatMessageString" | "logicalLocation" => {
            for key in ["name", "text", "kind", "fullyQualifiedName"] {
                string(key, errors);
            }
        }
        _ => {}
    }
    if let Some(p) = obj.get("properties") {
        check_property_bag(p, &format!("{path}.properties"), errors);
    }
}

fn check_property_bag(v: &Value, path: &str, errors: &mut Vec<String>) {
    match v.as_object() {
        None => errors.push(format!("{path}: must be an object")),
        Some(o) => {
            if let Some(tags) = o.get("tags") {
                let ok = tags.as_array().is_some_and(|t| {
                    t.iter().all(Value::is_string)
                        && t.iter().enumerate().all(|(i, x)| !t[..i].contains(x))
                });
                if !ok {
                    errors.push(format!("{path}.tags: must be unique strings"));
                }
            }
        }
    }
}

/// RFC 3986 characters only, and `%` followed by two hex digits.
fn is_uri_reference(u: &str) -> bool {
    let b = u.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

/// All checks, plus SARIF's rule that a result's `ruleIndex` points at the rule with its
/// `ruleId` in the same run.
pub fn validate(doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check("sarifLog", doc, "$", &mut errors);
    for (r, run) in doc["runs"].as_array().into_iter().flatten().enumerate() {
        let rules = run["tool"]["driver"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, result) in run["results"].as_array().into_iter().flatten().enumerate() {
            if let Some(idx) = result["ruleIndex"].as_u64() {
                let rule_id = rules.get(idx as usize).map(|x| &x["id"]);
                if rule_id != Some(&result["ruleId"]) {
                    errors.push(format!(
                        "$.runs[{r}].results[{i}]: ruleIndex {idx} is not rule {}",
                        result["ruleId"]
                    ));
                }
            }
        }
    }
    errors
}
