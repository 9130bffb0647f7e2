//! Template checks that need no AWS: parsing (JSON, YAML short forms), dangling
//! references, cycles, unused conditions, bounds.

use ferry_scan::guard::{GuardError, Limits};
use ferry_scan::template::{check_template, check_template_with, parse};
use ferry_scan::{Finding, Severity};

const COMPLIANT: &str = include_str!("fixtures/templates/compliant.yaml");
const VIOLATING: &str = include_str!("fixtures/templates/violating.yaml");
const BROKEN_REFS: &str = include_str!("fixtures/templates/broken-refs.json");
const CYCLE: &str = include_str!("fixtures/templates/cycle.yaml");
const NOT_YAML: &str = include_str!("fixtures/templates/not-yaml.yaml");

fn summary(findings: &[Finding]) -> Vec<(String, String, Severity)> {
    let mut out: Vec<_> = findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.location.logical_id.clone().unwrap_or_default(),
                f.severity,
            )
        })
        .collect();
    out.sort();
    out
}

fn check(text: &str) -> Vec<Finding> {
    check_template("t", text).expect("within limits")
}

#[test]
fn well_formed_templates_have_no_findings() {
    assert_eq!(check(COMPLIANT), vec![]);
    assert_eq!(check(VIOLATING), vec![]);
}

#[test]
fn yaml_short_forms_become_their_long_forms() {
    let doc = parse(
        "A: !Ref X\nB: !GetAtt R.Arn\nC: !Sub '${X}'\nD: !If [C, 1, 2]\nE: !Condition K\nF: !Join ['', [a, !Ref Y]]\nG: !!str 3\n",
    )
    .expect("parses");
    assert_eq!(
        doc,
        serde_json::json!({
            "A": {"Ref": "X"},
            "B": {"Fn::GetAtt": "R.Arn"},
            "C": {"Fn::Sub": "${X}"},
            "D": {"Fn::If": ["C", 1, 2]},
            "E": {"Condition": "K"},
            "F": {"Fn::Join": ["", ["a", {"Ref": "Y"}]]},
            "G": "3",
        })
    );
}

#[test]
fn short_form_references_are_checked() {
    let text = "Resources:\n  Fn:\n    Type: AWS::Lambda::Function\n    Properties:\n      Role: !GetAtt Rol.Arn\n      Handler: !Ref Handlr\n      Description: !Sub '${AWS::Region} ${Role}'\n  Role:\n    Type: AWS::IAM::Role\n";
    let findings = check(text);
    assert_eq!(
        summary(&findings),
        vec![
            (
                "TEMPLATE_DANGLING_GETATT".into(),
                "Fn".into(),
                Severity::High
            ),
            ("TEMPLATE_DANGLING_REF".into(), "Fn".into(), Severity::High),
        ]
    );
    let getatt = &findings
        .iter()
        .find(|f| f.id == "TEMPLATE_DANGLING_GETATT")
        .expect("getatt")
        .message;
    assert!(
        getatt.contains("`Rol`") && getatt.contains("did you mean `Role`"),
        "{getatt}"
    );
}

#[test]
fn dangling_references_in_resources_outputs_and_conditions() {
    let findings = check(BROKEN_REFS);
    assert_eq!(
        summary(&findings),
        vec![
            (
                "TEMPLATE_DANGLING_CONDITION".into(),
                "IsBig".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_CONDITION".into(),
                "Nothing".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_DEPENDS_ON".into(),
                "Queue".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_GETATT".into(),
                "Nothing".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_GETATT".into(),
                "Topic".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_MAPPING".into(),
                "Topic".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_REF".into(),
                "Queue".into(),
                Severity::High
            ),
            (
                "TEMPLATE_DANGLING_REF".into(),
                "Queue".into(),
                Severity::High
            ),
            (
                "TEMPLATE_UNUSED_CONDITION".into(),
                "NeverUsed".into(),
                Severity::Low
            ),
        ]
    );
    let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    for needle in [
        "`Stag`",
        "`Topik`",
        "`Missing`",
        "`Qeue`",
        "`Gone`",
        "`IsLarge`",
        "`IsTiny`",
        "`Regions`",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(needle)),
            "{needle} in {messages:#?}"
        );
    }
    assert!(
        !messages.iter().any(|m| m.contains("Literal")),
        "${{!Literal}} is text"
    );
    assert!(
        findings
            .iter()
            .all(|f| f.scanner == "template" && f.location.file.as_deref() == Some("t"))
    );
}

#[test]
fn circular_dependencies_are_named() {
    let findings = check(CYCLE);
    assert_eq!(
        summary(&findings),
        vec![
            (
                "TEMPLATE_CIRCULAR_DEPENDENCY".into(),
                "Loner".into(),
                Severity::High
            ),
            (
                "TEMPLATE_CIRCULAR_DEPENDENCY".into(),
                "SecurityGroupA".into(),
                Severity::High
            ),
        ]
    );
    let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m
                .contains("SecurityGroupA -> SecurityGroupB -> SecurityGroupC -> SecurityGroupA")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("Loner -> Loner")),
        "{messages:#?}"
    );
}

#[test]
fn a_long_chain_of_resources_is_no_cycle_and_does_not_overflow() {
    let mut text = String::from("{\"Resources\": {");
    let n = 20_000;
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        if i + 1 < n {
            text.push_str(&format!(
                "\"R{i}\": {{\"Type\": \"AWS::SQS::Queue\", \"DependsOn\": \"R{}\"}}",
                i + 1
            ));
        } else {
            text.push_str(&format!(
                "\"R{i}\": {{\"Type\": \"AWS::SQS::Queue\", \"DependsOn\": \"R0\"}}"
            ));
        }
    }
    text.push_str("}}");
    let findings = check(&text);
    assert_eq!(findings.len(), 1, "one cycle through all");
    assert!(
        findings[0]
            .message
            .starts_with("circular dependency between resources: R0 -> R1 -> ")
    );
}

#[test]
fn invalid_templates_are_high_findings() {
    for (text, needle) in [
        (NOT_YAML, ""),
        ("{\"Resources\": {\"A\": }", "line 1"),
        ("", "empty"),
        ("just a string", "not a mapping"),
        ("Description: no resources\n", "Resources"),
        ("Resources: {}\n---\nResources: {}\n", "2 YAML documents"),
    ] {
        let findings = check(text);
        assert_eq!(findings.len(), 1, "{text:?}: {findings:#?}");
        assert_eq!(findings[0].id, "TEMPLATE_INVALID");
        assert_eq!(findings[0].severity, Severity::High);
        assert!(
            findings[0].message.contains(needle),
            "{}",
            findings[0].message
        );
    }
    let findings = check(NOT_YAML);
    assert!(findings[0].location.line.is_some(), "{findings:?}");
}

#[test]
fn oversized_and_deep_templates_are_refused() {
    let limits = Limits {
        max_bytes: 1000,
        max_depth: 10,
    };
    let big = format!(
        "Resources:\n  A:\n    Type: X\n    Description: '{}'\n",
        "x".repeat(2000)
    );
    assert!(matches!(
        check_template_with("big.yaml", &big, limits),
        Err(GuardError::TooLarge { .. })
    ));
    let deep = format!(
        "{{\"Resources\": {}{}}}",
        "{\"a\":".repeat(50),
        "1".to_string() + &"}".repeat(50)
    );
    assert!(matches!(
        check_template_with("deep.json", &deep, limits),
        Err(GuardError::TooDeep { .. })
    ));
    let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nResources:\n  A: {Type: X}\n";
    assert_eq!(
        check_template_with("bomb.yaml", bomb, limits),
        Err(GuardError::Alias {
            file: "bomb.yaml".into(),
            line: 2,
            name: "a".into()
        })
    );
    // The default depth limit is far above what real templates use.
    assert_eq!(check(COMPLIANT), vec![]);
}
