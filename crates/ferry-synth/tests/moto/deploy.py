"""Deploys the core and monitoring stacks of `ferry synth aws` into moto's CloudFormation
(endpoint in argv[1], template folder in argv[2], core and monitoring stack names in
argv[3], argv[4]) and prints, as one JSON object, what the AWS APIs then report.

Run by crates/ferry-synth/tests/moto.rs with the venv of .ci/aws-setup (boto3 comes
with moto). Only reads and creates on the loopback endpoint it is given."""

import io
import json
import sys
import time
import zipfile

import boto3

endpoint, folder, core_name, monitoring_name = sys.argv[1:5]
kw = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
cfn = boto3.client("cloudformation", **kw)


def deploy(name, params):
    with open(f"{folder}/{name}.template.json") as f:
        body = f.read()
    cfn.create_stack(
        StackName=name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    for _ in range(600):
        s = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not s["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.1)
    resources = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {
        "status": s["StackStatus"],
        "reason": s.get("StackStatusReason"),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])},
        "resources": {r["LogicalResourceId"]: r["ResourceType"] for r in resources},
    }


out = {"core": deploy(core_name, {})}
core = out["core"]["outputs"]

# The rollback Lambda's code must exist before its stack: a tiny zip with `bootstrap`.
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("bootstrap", "#!/bin/sh\n")
s3 = boto3.client("s3", **kw)
s3.put_object(Bucket=core["ArtifactsBucketName"], Key="lambda/ferry-rollback.zip", Body=buf.getvalue())

out["monitoring"] = deploy(monitoring_name, {"CoreStackName": core_name})

ddb = boto3.client("dynamodb", **kw).describe_table(TableName=core["DeploymentsTableName"])["Table"]
out["table"] = {
    "billing": ddb.get("BillingModeSummary", {}).get("BillingMode"),
    "indexes": [i["IndexName"] for i in ddb.get("GlobalSecondaryIndexes", [])],
    "stream": ddb.get("StreamSpecification", {}).get("StreamViewType"),
    "sse": ddb.get("SSEDescription", {}).get("Status"),
}
kms = boto3.client("kms", **kw)
key_id = core["KeyArn"].split("/")[-1]
out["key"] = {"rotation": kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]}
logs = boto3.client("logs", **kw)
out["log_groups"] = {
    g["logGroupName"]: g.get("retentionInDays")
    for g in logs.describe_log_groups()["logGroups"]
}
out["topics"] = sorted(t["TopicArn"].split(":")[-1] for t in boto3.client("sns", **kw).list_topics()["Topics"])
fn = boto3.client("lambda", **kw).get_function(FunctionName=out["monitoring"]["outputs"]["RollbackFunctionArn"])["Configuration"]
out["function"] = {
    "runtime": fn.get("Runtime"),
    "handler": fn.get("Handler"),
    "dlq": fn.get("DeadLetterConfig", {}).get("TargetArn"),
}
events = boto3.client("events", **kw)
rules = events.list_rules()["Rules"]
out["rules"] = {
    r["Name"]: {
        "pattern": json.loads(r["EventPattern"]),
        "targets": [t["Arn"] for t in events.list_targets_by_rule(Rule=r["Name"])["Targets"]],
    }
    for r in rules
}
out["queues"] = boto3.client("sqs", **kw).list_queues().get("QueueUrls", [])
print(json.dumps(out))
