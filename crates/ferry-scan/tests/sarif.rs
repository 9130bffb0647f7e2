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

#[path = "support/sarif_schema.rs"]
mod sarif_schema;
use sarif_schema::validate;

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
        aliases: Vec::new(),
        expired: None,
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
