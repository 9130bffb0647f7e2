//! SARIF 2.1.0 output, checked against the requirements of the official schema
//! (oasis-tcs/sarif-spec `sarif-schema-2.1.0.json`) that matter for what ferry writes:
//! every object's allowed and required properties (the schema forbids additional
//! properties), enum values, minimums, uri-reference format and unique arrays. The
//! tables below are transcribed from the schema's definitions.

use ferry_scan::allowlist::apply;
use ferry_scan::sarif::{SARIF_SCHEMA, level};
use ferry_scan::{AllowEntry, Finding, Location, Severity, parse_audit, to_sarif};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

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
fn validate(doc: &Value) -> Vec<String> {
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

fn all_findings() -> Vec<Finding> {
    let mut f = Vec::new();
    for name in ["npm7.json", "cargo.json", "pip.json"] {
        f.extend(
            parse_audit(
                &fixture(&format!("audit/{name}")),
                &format!("reports/{name}"),
            )
            .expect("parses"),
        );
    }
    f.push(Finding {
        scanner: "cfn-guard".into(),
        id: "S3_BUCKET_ENCRYPTION".into(),
        severity: Severity::High,
        location: Location {
            file: Some("infrastructure/cdk.out/Shop Stack.template.json".into()),
            line: Some(12),
            logical_id: Some("AssetsBucket".into()),
            ..Location::default()
        },
        message: "S3 bucket must have encryption enabled".into(),
        allowed: None,
    });
    let entries: Vec<AllowEntry> =
        serde_json::from_slice(&fixture("allowlist.json")).expect("deserializes");
    apply(&mut f, &entries, "2026-11-26".parse().expect("a date"));
    f
}

#[test]
fn the_checker_catches_what_the_schema_forbids() {
    let bad = json!({
        "version": "2.0.0",
        "runs": [{
            "tool": {"driver": {"rules": [{"id": "A"}, {"id": "A"}]}},
            "results": [{
                "ruleId": "A", "ruleIndex": 1, "level": "critical", "msg": "x",
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a b.json"}, "region": {"startLine": 0}}}],
                "suppressions": [{"status": "approved"}]
            }]
        }]
    });
    let errors = validate(&bad);
    for expected in [
        "$.version: \"2.0.0\" is not one of [\"2.1.0\"]",
        "$.runs[0].tool.driver: toolComponent requires `name`",
        "$.runs[0].tool.driver.rules[1]: the schema requires unique items",
        "$.runs[0].results[0]: result does not allow property `msg`",
        "$.runs[0].results[0]: result requires `message`",
        "$.runs[0].results[0].level: \"critical\" is not one of [\"none\", \"note\", \"warning\", \"error\"]",
        "$.runs[0].results[0].locations[0].physicalLocation.artifactLocation.uri: \"a b.json\" is not a uri-reference",
        "$.runs[0].results[0].locations[0].physicalLocation.region.startLine: 0 must be an integer >= 1",
        "$.runs[0].results[0].suppressions[0]: suppression requires `kind`",
        "$.runs[0].results[0].suppressions[0].status: \"approved\" is not one of [\"accepted\", \"underReview\", \"rejected\"]",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "missing {expected} in {errors:#?}"
        );
    }
}

#[test]
fn sarif_output_satisfies_the_schema() {
    let doc = to_sarif(
        &all_findings(),
        &[
            "cfn-guard",
            "template",
            "npm-audit",
            "cargo-audit",
            "pip-audit",
        ],
    );
    assert_eq!(validate(&doc), Vec::<String>::new());
    assert_eq!(doc["$schema"], SARIF_SCHEMA);
    assert_eq!(doc["version"], "2.1.0");
    let names: Vec<&str> = doc["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["tool"]["driver"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "cfn-guard",
            "template",
            "npm-audit",
            "cargo-audit",
            "pip-audit"
        ]
    );
    // A scanner with nothing to say still has its run, with no results.
    assert_eq!(doc["runs"][1]["results"], json!([]));
    // It round-trips through text.
    let text = serde_json::to_string_pretty(&doc).expect("serializes");
    let back: Value = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, doc);
}

#[test]
fn results_carry_level_location_and_suppression() {
    let doc = to_sarif(&all_findings(), &[]);
    let guard = &doc["runs"][3];
    assert_eq!(guard["tool"]["driver"]["name"], "cfn-guard");
    assert_eq!(
        guard["results"][0],
        json!({
            "ruleId": "S3_BUCKET_ENCRYPTION",
            "ruleIndex": 0,
            "level": "error",
            "message": {"text": "S3 bucket must have encryption enabled"},
            "properties": {"severity": "HIGH"},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": "infrastructure/cdk.out/Shop%20Stack.template.json"},
                    "region": {"startLine": 12}
                },
                "logicalLocations": [{"name": "AssetsBucket", "kind": "resource"}]
            }]
        })
    );
    let cargo = &doc["runs"][1];
    assert_eq!(cargo["tool"]["driver"]["name"], "cargo-audit");
    let yanked = cargo["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "YANKED")
        .expect("yanked");
    assert_eq!(yanked["level"], "warning");
    assert_eq!(
        yanked["suppressions"],
        json!([{"kind": "external", "status": "accepted", "justification": "upgrade scheduled with tokio bump"}])
    );
    assert_eq!(
        yanked["locations"][0]["logicalLocations"],
        json!([{"name": "futures-util@0.3.29", "kind": "module"}])
    );
    assert!(
        yanked["locations"][0]["physicalLocation"]
            .get("region")
            .is_none()
    );
    let instant = cargo["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "RUSTSEC-2024-0384")
        .expect("instant");
    assert_eq!(instant["level"], "note");
    let rules = cargo["tool"]["driver"]["rules"].as_array().expect("rules");
    let h2 = rules
        .iter()
        .find(|r| r["id"] == "RUSTSEC-2024-0332")
        .expect("rule");
    assert_eq!(
        h2["shortDescription"]["text"],
        "Degradation of service in h2 servers with CONTINUATION Flood"
    );
    assert_eq!(h2["defaultConfiguration"]["level"], "error");
    assert_eq!(h2["properties"]["security-severity"], "8.0");
}

#[test]
fn levels_follow_the_gate() {
    assert_eq!(level(Severity::Critical), "error");
    assert_eq!(level(Severity::High), "error");
    assert_eq!(level(Severity::Moderate), "warning");
    assert_eq!(level(Severity::Low), "note");
}

#[test]
fn no_findings_and_no_scanners_is_a_valid_empty_log() {
    let doc = to_sarif(&[], &[]);
    assert_eq!(validate(&doc), Vec::<String>::new());
    assert_eq!(doc["runs"], json!([]));
}
