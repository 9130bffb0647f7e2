//! cfn-guard policies: the seed's five rules, user rule files, severities, bounds.

use ferry_scan::guard::{DEFAULT_RULES_NAME, Guard, GuardError, Limits, check_bounds};
use ferry_scan::{Finding, Severity};

const COMPLIANT: &str = include_str!("fixtures/templates/compliant.yaml");
const VIOLATING: &str = include_str!("fixtures/templates/violating.yaml");
const TEAM: &str = include_str!("fixtures/templates/team.guard");
const BAD: &str = include_str!("fixtures/templates/bad.guard");

fn ids(findings: &[Finding]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f.location.logical_id.clone().unwrap_or_default(),
                f.id.clone(),
            )
        })
        .collect()
}

fn check(template: &str) -> Vec<Finding> {
    Guard::default_pack()
        .check("t.yaml", template)
        .expect("the guard judges the template")
}

#[test]
fn the_compliant_template_passes_the_default_pack() {
    assert_eq!(check(COMPLIANT), vec![]);
}

#[test]
fn each_of_the_seeds_five_rules_is_caught_on_the_violating_template() {
    let findings = check(VIOLATING);
    assert_eq!(
        ids(&findings),
        vec![
            ("AdminRole".into(), "iam_no_wildcard".into()),
            ("NoDlqFunction".into(), "lambda_dlq".into()),
            ("OpenBucket".into(), "s3_bucket_public_access".into()),
            ("PlainBucket".into(), "s3_bucket_encryption".into()),
            ("PlainTable".into(), "dynamodb_encryption".into()),
        ]
    );
    for f in &findings {
        assert_eq!(f.scanner, "cfn-guard");
        assert_eq!(f.location.file.as_deref(), Some("t.yaml"));
        assert!(!f.message.is_empty());
        let want = if f.id == "iam_no_wildcard" {
            Severity::Critical
        } else {
            Severity::High
        };
        assert_eq!(f.severity, want, "{f:?}");
    }
    let message = |id: &str| {
        findings
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        message("s3_bucket_public_access"),
        "S3 bucket must block public access: BlockPublicPolicy must be true"
    );
    assert_eq!(
        message("lambda_dlq"),
        "Lambda function must have a dead-letter queue: set DeadLetterConfig.TargetArn"
    );
    assert!(message("iam_no_wildcard").starts_with("IAM role must not allow"));
    // YAML input: cfn-guard knows the line of the resource's properties.
    let bucket = findings
        .iter()
        .find(|f| f.id == "s3_bucket_encryption")
        .expect("bucket finding");
    assert!(bucket.location.line.is_some_and(|l| l > 1), "{bucket:?}");
}

/// Each rule alone: one resource breaking it is caught, the compliant twin passes.
#[test]
fn each_rule_caught_alone_and_passed_alone() {
    let enc = "      BucketEncryption:\n        ServerSideEncryptionConfiguration:\n          - ServerSideEncryptionByDefault:\n              SSEAlgorithm: AES256\n";
    let pab = |v: &str| {
        format!(
            "      PublicAccessBlockConfiguration:\n        BlockPublicAcls: true\n        BlockPublicPolicy: {v}\n        IgnorePublicAcls: true\n        RestrictPublicBuckets: true\n"
        )
    };
    let bucket = |props: String| {
        format!("Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n{props}")
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "s3_bucket_encryption",
            bucket(pab("true")),
            bucket(format!("{enc}{}", pab("true"))),
        ),
        (
            "s3_bucket_public_access",
            bucket(format!("{enc}{}", pab("false"))),
            bucket(format!("{enc}{}", pab("true"))),
        ),
        (
            "dynamodb_encryption",
            "Resources:\n  B:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST\n".into(),
            "Resources:\n  B:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      SSESpecification:\n        SSEEnabled: true\n".into(),
        ),
        (
            "lambda_dlq",
            "Resources:\n  B:\n    Type: AWS::Lambda::Function\n    Properties:\n      Runtime: nodejs20.x\n".into(),
            "Resources:\n  B:\n    Type: AWS::Lambda::Function\n    Properties:\n      DeadLetterConfig:\n        TargetArn: arn:aws:sqs:eu-west-1:1:q\n".into(),
        ),
        (
            "iam_no_wildcard",
            "Resources:\n  B:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        - PolicyName: p\n          PolicyDocument:\n            Statement:\n              - Effect: Allow\n                Action: s3:GetObject\n                Resource: '*'\n".into(),
            "Resources:\n  B:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        - PolicyName: p\n          PolicyDocument:\n            Statement:\n              - Effect: Allow\n                Action: s3:GetObject\n                Resource: arn:aws:s3:::b/*\n              - Effect: Deny\n                Action: '*'\n                Resource: '*'\n".into(),
        ),
    ];
    for (rule, bad, good) in cases {
        assert_eq!(
            ids(&check(&bad)),
            vec![("B".to_string(), rule.to_string())],
            "{rule} on\n{bad}"
        );
        assert_eq!(check(&good), vec![], "{rule} on\n{good}");
    }
}

#[test]
fn the_same_rules_judge_json_templates() {
    let json = r#"{"Resources": {"Logs": {"Type": "AWS::S3::Bucket", "Properties": {}},
                   "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"DeadLetterConfig": {"TargetArn": "x"}}}}}"#;
    let findings = check(json);
    assert_eq!(
        ids(&findings),
        vec![
            ("Logs".into(), "s3_bucket_encryption".into()),
            ("Logs".into(), "s3_bucket_public_access".into()),
        ]
    );
}

#[test]
fn user_rules_add_to_the_pack_with_severity_comments_and_custom_messages() {
    let guard = Guard::new(&[("team.guard", TEAM)]).expect("team rules parse");
    assert_eq!(
        guard.rule_files().collect::<Vec<_>>(),
        vec![DEFAULT_RULES_NAME, "team.guard"]
    );
    let findings = guard.check("app.yaml", COMPLIANT).expect("judged");
    assert_eq!(
        ids(&findings),
        vec![
            ("DataBucket".into(), "s3_tagged".into()),
            ("DeadLetters".into(), "sqs_retention".into()),
        ]
    );
    assert_eq!(findings[0].severity, Severity::High);
    assert_eq!(findings[0].message, "every bucket needs a cost-centre tag");
    assert_eq!(findings[1].severity, Severity::Moderate);
    assert!(
        findings[1].message.contains("MessageRetentionPeriod"),
        "{}",
        findings[1].message
    );

    let only = Guard::only(&[("team.guard", TEAM)]).expect("parse");
    assert_eq!(only.check("v.yaml", VIOLATING).expect("judged").len(), 2);
}

#[test]
fn many_templates_are_judged_each_under_its_name() {
    let guard = Guard::default_pack();
    let findings = guard
        .check_all(&[("a.yaml", COMPLIANT), ("b.yaml", VIOLATING)])
        .expect("judged");
    assert_eq!(findings.len(), 5);
    assert!(
        findings
            .iter()
            .all(|f| f.location.file.as_deref() == Some("b.yaml"))
    );
}

#[test]
fn a_rule_file_that_does_not_parse_names_file_line_and_rule() {
    let err = Guard::new(&[("rules/bad.guard", BAD)]).expect_err("must not parse");
    match &err {
        GuardError::RuleParse {
            file, line, rule, ..
        } => {
            assert_eq!(file, "rules/bad.guard");
            assert_eq!(*line, Some(10));
            assert_eq!(rule.as_deref(), Some("versioned_buckets"));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("rules/bad.guard:10:"), "{text}");
    assert!(text.contains("versioned_buckets"), "{text}");
}

#[test]
fn an_unknown_severity_word_is_an_error_not_a_default() {
    let rules = "# severity: severe\nrule r { Resources exists }\n";
    let err = Guard::new(&[("x.guard", rules)]).expect_err("unknown severity");
    assert_eq!(
        err,
        GuardError::BadSeverity {
            file: "x.guard".into(),
            line: 1,
            word: "severe".into()
        }
    );
    assert!(err.to_string().contains("CRITICAL"));
}

#[test]
fn a_template_that_is_not_yaml_is_an_error_naming_it() {
    let err = Guard::default_pack()
        .check("broken.yaml", "Resources: [unclosed\n  - {")
        .expect_err("invalid");
    assert!(
        matches!(&err, GuardError::InvalidTemplate { file, .. } | GuardError::Engine { file, .. } if file == "broken.yaml"),
        "{err:?}"
    );
}

#[test]
fn an_oversized_template_is_refused_before_parsing() {
    let limits = Limits::default();
    let big = vec![b' '; limits.max_bytes + 1];
    let err = check_bounds("huge.json", &big, limits).expect_err("too large");
    assert!(matches!(err, GuardError::TooLarge { size, .. } if size == limits.max_bytes + 1));
    assert!(err.to_string().contains("huge.json"));

    let small = Guard::default_pack().with_limits(Limits {
        max_bytes: 100,
        max_depth: 64,
    });
    let err = small
        .check("v.yaml", VIOLATING)
        .expect_err("over 100 bytes");
    assert!(matches!(err, GuardError::TooLarge { .. }), "{err:?}");
}

#[test]
fn a_deeply_nested_template_is_refused_before_parsing() {
    let guard = Guard::default_pack();
    let deep_json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let err = guard.check("deep.json", &deep_json).expect_err("too deep");
    assert!(
        matches!(err, GuardError::TooDeep { line: 1, .. }),
        "{err:?}"
    );

    let mut deep_yaml = String::from("Resources:\n");
    for level in 1..100 {
        deep_yaml.push_str(&" ".repeat(level * 2));
        deep_yaml.push_str(&format!("k{level}:\n"));
    }
    let err = guard.check("deep.yaml", &deep_yaml).expect_err("too deep");
    assert!(matches!(err, GuardError::TooDeep { .. }), "{err:?}");
    assert!(err.to_string().starts_with("deep.yaml:"), "{err}");

    let mut deep_seq = String::from("Resources:\n");
    deep_seq.push_str(&"- ".repeat(100));
    deep_seq.push_str("x\n");
    assert!(matches!(
        guard.check("seq.yaml", &deep_seq),
        Err(GuardError::TooDeep { .. })
    ));
}

#[test]
fn quotes_and_comments_do_not_confuse_the_depth_scan() {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 8,
    };
    let text = "Resources:\n  A:\n    Type: \"[[[[[[[[[[\" # {{{{{{{{{{\n    Note: don't [[[ worry\n    Q: '{{{{{{{{{'\n";
    // `don't [[[` is a plain scalar with brackets: 3 levels of flow at most.
    check_bounds("ok.yaml", text.as_bytes(), limits).expect("within limits");
}
