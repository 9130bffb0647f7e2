//! "Real-world" templates in the shapes AWS documents: a CDK-synthesized stack of several
//! hundred resources (JSON, CDK metadata, bootstrap rule), and a hand-written two-tier
//! web stack (YAML short forms), with the findings both scanners must report.

use ferry_scan::guard::Guard;
use ferry_scan::template::check_template;
use ferry_scan::{Finding, Severity};
use serde_json::{Value, json};

const VPC_WEB: &str = include_str!("fixtures/templates/vpc-web.yaml");

/// Services in the synthetic CDK app; each has 8 resources.
const SERVICES: usize = 50;

/// A CDK-shaped template: per service a bucket (+ policy), a table, a DLQ, a role, a
/// function, a log group and an event-source mapping; five services break one rule each.
fn cdk_app() -> Value {
    let mut resources = serde_json::Map::new();
    for i in 0..SERVICES {
        let p = format!("Svc{i:02}");
        let meta = |what: &str| json!({"aws:cdk:path": format!("App/{p}/{what}/Resource")});
        let mut bucket_props = json!({
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true,
                "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
            "Tags": [{"Key": "service", "Value": p}],
        });
        if i == 7 {
            bucket_props
                .as_object_mut()
                .map(|m| m.remove("BucketEncryption"));
        }
        if i == 42 {
            bucket_props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = json!(false);
        }
        resources.insert(format!("{p}Bucket1A2B3C4D"), json!({
            "Type": "AWS::S3::Bucket", "Properties": bucket_props,
            "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Retain", "Metadata": meta("Bucket")}));
        resources.insert(format!("{p}BucketPolicy5E6F"), json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": {"Ref": format!("{p}Bucket1A2B3C4D")},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    "Resource": [{"Fn::GetAtt": [format!("{p}Bucket1A2B3C4D"), "Arn"]},
                        {"Fn::Join": ["", [{"Fn::GetAtt": [format!("{p}Bucket1A2B3C4D"), "Arn"]}, "/*"]]}]}]}},
            "Metadata": meta("Bucket/Policy")}));
        resources.insert(format!("{p}Table9A8B"), json!({
            "Type": "AWS::DynamoDB::Table",
            "Properties": {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": i != 13}},
            "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Retain", "Metadata": meta("Table")}));
        resources.insert(
            format!("{p}DeadLetterQueueC0D1"),
            json!({
            "Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": true},
            "Metadata": meta("DeadLetterQueue")}),
        );
        let statement = if i == 33 {
            json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}])
        } else {
            json!([
                {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                 "Resource": [{"Fn::GetAtt": [format!("{p}Table9A8B"), "Arn"]}]},
                {"Effect": "Allow", "Action": "sqs:SendMessage",
                 "Resource": {"Fn::GetAtt": [format!("{p}DeadLetterQueueC0D1"), "Arn"]}},
                {"Effect": "Allow", "Action": ["s3:GetObject*", "s3:PutObject"],
                 "Resource": {"Fn::Sub": format!("${{{p}Bucket1A2B3C4D.Arn}}/*")}}])
        };
        resources.insert(format!("{p}HandlerServiceRoleE2F3"), json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Action": "sts:AssumeRole", "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"}}]},
                "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                    ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}],
                "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Version": "2012-10-17", "Statement": statement}}]},
            "Metadata": meta("Handler/ServiceRole")}));
        let mut fn_props = json!({
            "Code": {"S3Bucket": {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"},
                     "S3Key": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.zip"},
            "Role": {"Fn::GetAtt": [format!("{p}HandlerServiceRoleE2F3"), "Arn"]},
            "Handler": "index.handler", "Runtime": "nodejs20.x",
            "Environment": {"Variables": {"TABLE": {"Ref": format!("{p}Table9A8B")},
                                          "BUCKET": {"Ref": format!("{p}Bucket1A2B3C4D")}}},
            "DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": [format!("{p}DeadLetterQueueC0D1"), "Arn"]}},
        });
        if i == 21 {
            fn_props
                .as_object_mut()
                .map(|m| m.remove("DeadLetterConfig"));
        }
        resources.insert(format!("{p}Handler4A5B"), json!({
            "Type": "AWS::Lambda::Function", "Properties": fn_props,
            "DependsOn": [format!("{p}HandlerServiceRoleE2F3")],
            "Metadata": {"aws:cdk:path": format!("App/{p}/Handler/Resource"), "aws:asset:path": "asset.0123", "aws:asset:property": "Code"}}));
        resources.insert(format!("{p}HandlerLogGroup6C7D"), json!({
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Fn::Join": ["", ["/aws/lambda/", {"Ref": format!("{p}Handler4A5B")}]]},
                           "RetentionInDays": 30},
            "UpdateReplacePolicy": "Delete", "DeletionPolicy": "Delete"}));
        resources.insert(
            format!("{p}HandlerEventSource8E9F"),
            json!({
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {"FunctionName": {"Ref": format!("{p}Handler4A5B")},
                "EventSourceArn": {"Fn::GetAtt": [format!("{p}DeadLetterQueueC0D1"), "Arn"]}}}),
        );
    }
    resources.insert("CDKMetadata".into(), json!({
        "Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v2:deflate64:H4sIAAAAAAAA"},
        "Metadata": {"aws:cdk:path": "App/CDKMetadata/Default"}, "Condition": "CDKMetadataAvailable"}));
    json!({
        "Description": "A synthesized CDK app",
        "Resources": resources,
        "Conditions": {"CDKMetadataAvailable": {"Fn::Or": [
            {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]},
            {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}]}},
        "Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/cdk-bootstrap/hnb659fds/version"}},
        "Outputs": {"Svc00HandlerArn": {"Value": {"Fn::GetAtt": ["Svc00Handler4A5B", "Arn"]}}},
        "Rules": {"CheckBootstrapVersion": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [
            ["1", "2", "3", "4", "5"], {"Ref": "BootstrapVersion"}]}]},
            "AssertDescription": "CDK bootstrap stack version 6 required."}]}}
    })
}

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

#[test]
fn a_cdk_app_of_several_hundred_resources_has_exactly_the_planted_violations() {
    let doc = cdk_app();
    let count = doc["Resources"].as_object().map_or(0, |m| m.len());
    assert_eq!(count, SERVICES * 8 + 1);
    let text = serde_json::to_string_pretty(&doc).expect("json");
    let findings = Guard::default_pack()
        .check("cdk.out/App.template.json", &text)
        .expect("judged");
    assert_eq!(
        ids(&findings),
        vec![
            ("Svc07Bucket1A2B3C4D".into(), "s3_bucket_encryption".into()),
            ("Svc13Table9A8B".into(), "dynamodb_encryption".into()),
            ("Svc21Handler4A5B".into(), "lambda_dlq".into()),
            (
                "Svc33HandlerServiceRoleE2F3".into(),
                "iam_no_wildcard".into()
            ),
            (
                "Svc42Bucket1A2B3C4D".into(),
                "s3_bucket_public_access".into()
            ),
        ]
    );
    assert!(
        findings
            .iter()
            .all(|f| f.location.file.as_deref() == Some("cdk.out/App.template.json"))
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .count(),
        1
    );
    // The template itself is sound.
    assert_eq!(
        check_template("cdk.out/App.template.json", &text).expect("checked"),
        vec![]
    );
}

#[test]
fn a_cdk_app_with_a_broken_reference_and_a_cycle_is_caught() {
    let mut doc = cdk_app();
    doc["Resources"]["Svc05Handler4A5B"]["Properties"]["Environment"]["Variables"]["TABLE"] =
        json!({"Ref": "Svc05Table9A8C"});
    doc["Resources"]["Svc09Table9A8B"]["DependsOn"] = json!("Svc09HandlerEventSource8E9F");
    let text = serde_json::to_string(&doc).expect("json");
    let findings = check_template("App.template.json", &text).expect("checked");
    assert_eq!(
        ids(&findings),
        vec![
            ("Svc05Handler4A5B".into(), "TEMPLATE_DANGLING_REF".into()),
            (
                "Svc09Handler4A5B".into(),
                "TEMPLATE_CIRCULAR_DEPENDENCY".into()
            ),
        ]
    );
    assert!(
        findings[0]
            .message
            .contains("did you mean `Svc05Table9A8B`"),
        "{}",
        findings[0].message
    );
    assert!(
        findings[1].message.contains("Svc09Table9A8B"),
        "{}",
        findings[1].message
    );
}

#[test]
fn the_two_tier_web_stack_in_yaml() {
    let guard = Guard::default_pack()
        .check("web.yaml", VPC_WEB)
        .expect("judged");
    // The log bucket has no public access block; the instance role allows Action `*`
    // on one queue: the seed's rule checks Action and Resource separately, so a
    // wildcard action fails even with a narrow resource.
    assert_eq!(
        ids(&guard),
        vec![
            ("InstanceRole".into(), "iam_no_wildcard".into()),
            ("LogBucket".into(), "s3_bucket_public_access".into()),
        ]
    );
    assert_eq!(
        check_template("web.yaml", VPC_WEB).expect("checked"),
        vec![]
    );
}
