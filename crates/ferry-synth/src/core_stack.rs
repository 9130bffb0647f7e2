//! The core stack (seed §8.1 phase 1): KMS key, artifacts bucket, deployments table, log
//! groups, and the exports the other two stacks import.

use ferry_config::Pipeline;
use serde_json::{Map, Value, json};

use crate::{Names, arn, get_att, r#ref, sub};

/// Days before artifacts move to Infrequent Access, and before they expire (§3.8.3).
pub const ARTIFACT_IA_DAYS: u32 = 30;
/// See [`ARTIFACT_IA_DAYS`].
pub const ARTIFACT_EXPIRY_DAYS: u32 = 90;
/// Log retention (§9.4).
pub const LOG_RETENTION_DAYS: u32 = 90;

/// What the key's own account may do with it: administration and use, each action
/// named (no `kms:*`).
const KEY_ACCOUNT_ACTIONS: &[&str] = &[
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
];

pub(crate) fn template(pipeline: &Pipeline, names: &Names) -> Value {
    let mut resources = Map::new();
    let key_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersAndUsesTheKey",
                "Effect": "Allow",
                "Principal": { "AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") },
                "Action": KEY_ACCOUNT_ACTIONS,
                "Resource": "*"
            },
            {
                "Sid": "LogsEncryptThisPipelinesLogGroups",
                "Effect": "Allow",
                "Principal": { "Service": sub("logs.${AWS::Region}.amazonaws.com") },
                "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"],
                "Resource": "*",
                "Condition": { "ArnLike": { "kms:EncryptionContext:aws:logs:arn": [
                    arn("logs", &format!("log-group:{}", names.build_log_group())),
                    arn("logs", &format!("log-group:{}", names.function_log_group())),
                ] } }
            },
            {
                "Sid": "AlarmsAndEventsPublishToEncryptedTopicsAndQueues",
                "Effect": "Allow",
                "Principal": { "Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"] },
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": { "StringEquals": { "aws:SourceAccount": r#ref("AWS::AccountId") } }
            }
        ]
    });
    resources.insert(
        "PipelineKey".into(),
        json!({
            "Type": "AWS::KMS::Key",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": format!("ferry pipeline {}: artifacts, deployments table, logs, topics, queue", names.base()),
                "EnableKeyRotation": true,
                "KeyPolicy": key_policy
            }
        }),
    );
    resources.insert(
        "PipelineKeyAlias".into(),
        json!({
            "Type": "AWS::KMS::Alias",
            "Properties": { "AliasName": names.key_alias(), "TargetKeyId": r#ref("PipelineKey") }
        }),
    );
    resources.insert(
        "ArtifactsBucket".into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketEncryption": { "ServerSideEncryptionConfiguration": [{
                    "ServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": get_att("PipelineKey", "Arn")
                    },
                    "BucketKeyEnabled": true
                }] },
                "VersioningConfiguration": { "Status": "Enabled" },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true,
                    "RestrictPublicBuckets": true
                },
                "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
                "LifecycleConfiguration": { "Rules": [
                    {
                        "Id": "TransitionToIA",
                        "Status": "Enabled",
                        "Transitions": [{ "StorageClass": "STANDARD_IA", "TransitionInDays": ARTIFACT_IA_DAYS }]
                    },
                    // Only what pipeline executions write expires: CodePipeline's
                    // artifacts (under the first 20 characters of the pipeline's name)
                    // and the builds ferry keeps (`ferry/artifacts/`). The `ferry`
                    // binary (`tools/`) and the Lambda's code (`lambda/`) stay.
                    {
                        "Id": "DeleteOldArtifacts",
                        "Status": "Enabled",
                        "Prefix": format!("{}/", names.pipeline().chars().take(20).collect::<String>()),
                        "ExpirationInDays": ARTIFACT_EXPIRY_DAYS,
                        "NoncurrentVersionExpiration": { "NoncurrentDays": ARTIFACT_EXPIRY_DAYS },
                        "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 7 }
                    },
                    {
                        "Id": "DeleteOldBuilds",
                        "Status": "Enabled",
                        "Prefix": "ferry/artifacts/",
                        "ExpirationInDays": ARTIFACT_EXPIRY_DAYS,
                        "NoncurrentVersionExpiration": { "NoncurrentDays": ARTIFACT_EXPIRY_DAYS },
                        "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 7 }
                    }
                ] }
            }
        }),
    );
    resources.insert(
        "DeploymentsTable".into(),
        json!({
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": names.table(),
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    { "AttributeName": "deploymentId", "AttributeType": "S" },
                    { "AttributeName": "environment", "AttributeType": "S" },
                    { "AttributeName": "status", "AttributeType": "S" }
                ],
                "KeySchema": [{ "AttributeName": "deploymentId", "KeyType": "HASH" }],
                "GlobalSecondaryIndexes": [{
                    "IndexName": "EnvironmentStatusIndex",
                    "KeySchema": [
                        { "AttributeName": "environment", "KeyType": "HASH" },
                        { "AttributeName": "status", "KeyType": "RANGE" }
                    ],
                    "Projection": { "ProjectionType": "ALL" }
                }],
                "SSESpecification": {
                    "SSEEnabled": true,
                    "SSEType": "KMS",
                    "KMSMasterKeyId": get_att("PipelineKey", "Arn")
                },
                "PointInTimeRecoverySpecification": { "PointInTimeRecoveryEnabled": true },
                "TimeToLiveSpecification": { "AttributeName": "expiresAt", "Enabled": true },
                "StreamSpecification": { "StreamViewType": "NEW_AND_OLD_IMAGES" },
                "DeletionProtectionEnabled": true
            }
        }),
    );
    for (id, name) in [
        ("BuildLogGroup", names.build_log_group()),
        ("RollbackLogGroup", names.function_log_group()),
    ] {
        resources.insert(
            id.into(),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "LogGroupName": name,
                    "RetentionInDays": LOG_RETENTION_DAYS,
                    "KmsKeyId": get_att("PipelineKey", "Arn")
                }
            }),
        );
    }

    let outputs = [
        (
            "KeyArn",
            get_att("PipelineKey", "Arn"),
            "The KMS key of every encrypted resource",
        ),
        (
            "ArtifactsBucketName",
            r#ref("ArtifactsBucket"),
            "The artifacts bucket",
        ),
        (
            "ArtifactsBucketArn",
            get_att("ArtifactsBucket", "Arn"),
            "The artifacts bucket's ARN",
        ),
        (
            "DeploymentsTableName",
            r#ref("DeploymentsTable"),
            "The deployments table (seed §3.5.1)",
        ),
        (
            "DeploymentsTableArn",
            get_att("DeploymentsTable", "Arn"),
            "The deployments table's ARN",
        ),
        (
            "DeploymentsTableStreamArn",
            get_att("DeploymentsTable", "StreamArn"),
            "The deployments table's stream",
        ),
        (
            "BuildLogGroupName",
            r#ref("BuildLogGroup"),
            "The log group of the CodeBuild projects",
        ),
        (
            "BuildLogGroupArn",
            get_att("BuildLogGroup", "Arn"),
            "Its ARN",
        ),
        (
            "RollbackLogGroupName",
            r#ref("RollbackLogGroup"),
            "The rollback Lambda's log group",
        ),
        (
            "RollbackLogGroupArn",
            get_att("RollbackLogGroup", "Arn"),
            "Its ARN",
        ),
    ];
    let mut out = Map::new();
    for (id, value, description) in outputs {
        out.insert(
            id.into(),
            json!({
                "Description": description,
                "Value": value,
                "Export": { "Name": sub(&format!("${{AWS::StackName}}-{id}")) }
            }),
        );
    }

    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ferry {} core: KMS key, artifacts bucket, deployments table, log groups (synthesized by `ferry synth aws`; seed section 8.1 phase 1)", pipeline.name),
        "Resources": resources,
        "Outputs": out
    })
}
