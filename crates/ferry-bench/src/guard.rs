//! The guard on a large template (issue 5's benchmark): generates a realistic
//! CloudFormation template of about 10 MB (S3 buckets with their policies, DynamoDB
//! tables, Lambda functions with their roles, dead-letter queues, log groups, topics and
//! security groups — the kinds the built-in pack checks, some compliant and some not,
//! every `Ref`/`Fn::GetAtt`/`DependsOn` pointing at something that exists), then times
//! on that one file, alternating in one run:
//!
//! - `ferry scan --templates <file> --json` (release binary: the built-in pack through
//!   the cfn-guard crate, plus ferry's own template checks);
//! - `cfn-guard validate --rules <the built-in pack> --data <file>` (the command line of
//!   the same crate version, default output);
//! - `cfn-guard validate … --structured --output-format json --show-summary none` (the
//!   same command as ferry asks the crate for, in-process);
//!
//! and reports per command the median wall time and the median peak resident memory
//! (`wait4`'s `ru_maxrss`), and the ratios. Without the `cfn-guard` binary (`--cfn-guard
//! PATH`, else `cfn-guard` on `PATH`) the command line is skipped with a message that
//! says how to install it. A last section times ferry's stages in this process (bounds
//! scan, alias scan, the guard, the template checks) to show where the time goes.

use crate::{median, ms};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn run(args: Vec<String>, ferry: PathBuf) -> Result<(), String> {
    let mut iterations = 5usize;
    let mut mb = 10usize;
    let mut cfn_guard: Option<PathBuf> = None;
    let mut keep: Option<PathBuf> = None;
    let mut timeout = Duration::from_secs(600);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--iterations needs a number")?
            }
            "--mb" => {
                mb = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--mb needs a number of megabytes")?
            }
            "--cfn-guard" => {
                cfn_guard = Some(PathBuf::from(
                    it.next()
                        .ok_or("--cfn-guard needs the path of the binary")?,
                ))
            }
            "--keep" => keep = Some(PathBuf::from(it.next().ok_or("--keep needs a folder")?)),
            "--timeout" => {
                timeout = Duration::from_secs(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--timeout needs a number of seconds")?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "ferry-bench guard [--iterations N] [--mb 10] [--cfn-guard PATH] [--keep DIR] [--timeout SECONDS]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if iterations == 0 || mb == 0 {
        return Err("need --iterations > 0 and --mb > 0".into());
    }
    if !ferry.exists() {
        return Err(format!(
            "no ferry binary at `{}`; run `cargo build --release` first",
            ferry.display()
        ));
    }
    let cli = match cfn_guard {
        Some(p) if p.exists() => Some(p),
        Some(p) => {
            return Err(format!("--cfn-guard `{}` does not exist", p.display()));
        }
        None => on_path("cfn-guard"),
    };

    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (text, counts) = template(mb * 1_000_000);
    let template = dir.join("template.json");
    std::fs::write(&template, &text).map_err(|e| e.to_string())?;
    let rules = dir.join("security-rules.guard");
    std::fs::write(&rules, ferry_scan::guard::DEFAULT_RULES).map_err(|e| e.to_string())?;
    eprintln!(
        "generated {} ({:.1} MB, {} resources: {counts}) in {:.1}s",
        template.display(),
        text.len() as f64 / 1e6,
        resource_count(&text),
        started.elapsed().as_secs_f64()
    );

    let ferry_cmd = || {
        let mut c = Command::new(&ferry);
        c.args(["scan", "--templates", "template.json", "--json"])
            .current_dir(&dir);
        c
    };
    let cli_cmd = |structured: bool| {
        cli.as_ref().map(|p| {
            let mut c = Command::new(p);
            c.arg("validate")
                .arg("--rules")
                .arg(&rules)
                .arg("--data")
                .arg(&template);
            if structured {
                c.args([
                    "--structured",
                    "--output-format",
                    "json",
                    "--show-summary",
                    "none",
                ]);
            }
            c.current_dir(&dir);
            c
        })
    };

    // One run each to check they agree that the template fails, and to warm caches.
    let first = measure(&mut ferry_cmd(), Some(timeout))?;
    let report: Value = serde_json::from_slice(&first.stdout)
        .map_err(|e| format!("ferry scan --json printed no JSON report: {e}"))?;
    let errors = report["verdict"]["errors"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    if errors > 0 || first.code != 1 {
        return Err(format!(
            "ferry scan should block on findings, with no scan errors; exit {}, errors: {}",
            first.code, report["verdict"]["errors"]
        ));
    }
    let findings = report["findings"].as_array().map(Vec::len).unwrap_or(0);
    let guard_findings = report["findings"]
        .as_array()
        .map(|f| f.iter().filter(|x| x["scanner"] == "cfn-guard").count())
        .unwrap_or(0);
    eprintln!(
        "ferry scan: {findings} findings ({guard_findings} from cfn-guard), exit {} ({:.1}s, {:.0} MiB)",
        first.code,
        first.wall.as_secs_f64(),
        first.maxrss_kib as f64 / 1024.0
    );
    // The command line's default output can be much slower than its structured one: when
    // its first run takes longer than a minute (or is stopped at --timeout) it is not
    // repeated, and its one run is what the table shows.
    let mut default_once: Option<Measured> = None;
    match cli_cmd(false) {
        Some(mut c) => {
            let r = measure(&mut c, Some(timeout))?;
            // 19: some rule failed (documented by cfn-guard); anything else is a failure.
            if !r.timed_out && r.code != 19 {
                return Err(format!(
                    "cfn-guard validate should exit 19 (rules failed), exited {}: {}",
                    r.code,
                    String::from_utf8_lossy(&r.stderr)
                ));
            }
            eprintln!(
                "cfn-guard validate: {} ({:.1}s, {:.0} MiB, {} bytes of output)",
                if r.timed_out {
                    format!("stopped after {} s", timeout.as_secs())
                } else {
                    format!("exit {}", r.code)
                },
                r.wall.as_secs_f64(),
                r.maxrss_kib as f64 / 1024.0,
                r.stdout.len()
            );
            if r.timed_out || r.wall > Duration::from_secs(60) {
                default_once = Some(r);
            }
        }
        None => eprintln!(
            "cfn-guard command line not found: skipping it. Install the version in Cargo.lock with\n  cargo install cfn-guard --version ={} --locked --root /tmp/cfn-guard-cli\nand pass --cfn-guard /tmp/cfn-guard-cli/bin/cfn-guard",
            locked_version().unwrap_or_else(|| "<see Cargo.lock>".into())
        ),
    }

    let mut rows: Vec<(&str, Vec<Duration>, Vec<u64>)> = vec![
        ("ferry scan --templates (release)", vec![], vec![]),
        ("cfn-guard validate (default output)", vec![], vec![]),
        ("cfn-guard validate --structured -o json", vec![], vec![]),
    ];
    for i in 0..iterations {
        let default = if default_once.is_some() {
            None
        } else {
            cli_cmd(false)
        };
        let mut cmds: Vec<Option<Command>> = vec![Some(ferry_cmd()), default, cli_cmd(true)];
        for (k, c) in cmds.iter_mut().enumerate() {
            if let Some(c) = c {
                let r = measure(c, Some(timeout))?;
                if r.timed_out {
                    return Err(format!(
                        "`{}` took longer than --timeout {} s",
                        rows[k].0,
                        timeout.as_secs()
                    ));
                }
                rows[k].1.push(r.wall);
                rows[k].2.push(r.maxrss_kib);
            }
        }
        eprintln!("iteration {}/{iterations} done", i + 1);
    }
    println!(
        "template: {:.1} MB JSON, {} resources; built-in pack; {iterations} alternating runs",
        text.len() as f64 / 1e6,
        resource_count(&text)
    );
    println!("| command | runs | median wall | median peak RSS |");
    println!("|---|---:|---:|---:|");
    if let Some(r) = &default_once {
        rows[1].1.push(r.wall);
        rows[1].2.push(r.maxrss_kib);
    }
    let mut medians = Vec::new();
    for (k, (name, walls, rss)) in rows.iter_mut().enumerate() {
        if k == 1
            && let Some(r) = &default_once
        {
            println!(
                "| {name} | 1 (not repeated) | {}{:.0} ms | {:.0} MiB |",
                if r.timed_out { "> " } else { "" },
                ms(r.wall),
                r.maxrss_kib as f64 / 1024.0
            );
            medians.push(Some((r.wall, r.maxrss_kib)));
            continue;
        }
        if walls.is_empty() {
            println!("| {name} | 0 | skipped | skipped |");
            medians.push(None);
            continue;
        }
        rss.sort_unstable();
        let r = rss[rss.len() / 2];
        let w = median(walls);
        println!(
            "| {name} | {} | {:.0} ms | {:.0} MiB |",
            walls.len(),
            ms(w),
            r as f64 / 1024.0
        );
        medians.push(Some((w, r)));
    }
    if let (Some(Some((fw, fr))), Some(Some((cw, cr)))) = (medians.first(), medians.get(1)) {
        let stopped = default_once.as_ref().is_some_and(|r| r.timed_out);
        println!(
            "ratio ferry / cfn-guard (default output): time {}{:.3}x, peak memory {:.2}x{}",
            if stopped { "< " } else { "" },
            fw.as_secs_f64() / cw.as_secs_f64(),
            *fr as f64 / *cr as f64,
            if stopped {
                " (the command line was stopped at --timeout; its memory is what it had reached)"
            } else {
                ""
            }
        );
    }
    if let (Some(Some((fw, fr))), Some(Some((cw, cr)))) = (medians.first(), medians.get(2)) {
        println!(
            "ratio ferry / cfn-guard (--structured): time {:.2}x, peak memory {:.2}x",
            fw.as_secs_f64() / cw.as_secs_f64(),
            *fr as f64 / *cr as f64
        );
    }

    // Where ferry's time goes, in this process (one run each, after the above).
    let guard = ferry_scan::Guard::default_pack();
    let limits = ferry_scan::Limits::default();
    let t = Instant::now();
    ferry_scan::guard::check_bounds("template.json", text.as_bytes(), limits)
        .map_err(|e| e.to_string())?;
    let bounds = t.elapsed();
    let t = Instant::now();
    ferry_scan::guard::refuse_aliases("template.json", &text).map_err(|e| e.to_string())?;
    let aliases = t.elapsed();
    let t = Instant::now();
    let g = guard
        .check("template.json", &text)
        .map_err(|e| e.to_string())?;
    let guard_time = t.elapsed();
    let t = Instant::now();
    let c = ferry_scan::check_template("template.json", &text).map_err(|e| e.to_string())?;
    let checks = t.elapsed();
    println!(
        "in-process stages: size and depth scan {:.0} ms, alias scan {:.0} ms, guard (default pack, bounds included) {:.0} ms → {} findings, template checks {:.0} ms → {} findings",
        ms(bounds),
        ms(aliases),
        ms(guard_time),
        g.len(),
        ms(checks),
        c.len()
    );
    Ok(())
}

/// One finished child: wall time, peak resident memory, exit code and output.
struct Measured {
    wall: Duration,
    maxrss_kib: u64,
    code: i32,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` to its end (killed after `timeout`), reading its output on two threads,
/// and reaps it with `wait4` for its own peak resident memory.
fn measure(cmd: &mut Command, timeout: Option<Duration>) -> Result<Measured, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let ended = crate::sys::wait4(child.id(), timeout.map(|d| t + d))?;
    let wall = t.elapsed();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    // The child is reaped: `Child` must not wait for it again (dropping it does not).
    drop(child);
    Ok(Measured {
        wall,
        maxrss_kib: ended.maxrss_kib,
        code: ended.code,
        timed_out: ended.timed_out,
        stdout,
        stderr,
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The cfn-guard version in the workspace's Cargo.lock, when it can be found.
fn locked_version() -> Option<String> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(lock).ok()?;
    let at = text.find("name = \"cfn-guard\"")?;
    let rest = &text[at..];
    let v = rest.split("version = \"").nth(1)?;
    Some(v.split('"').next()?.to_string())
}

fn resource_count(text: &str) -> usize {
    text.matches("\"Type\": \"AWS::").count()
}

/// What a generated template holds, for the log.
struct Counts {
    units: usize,
    violating: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} services of 10 resources, {} with a policy violation",
            self.units, self.violating
        )
    }
}

/// A CDK-shaped template of about `bytes` bytes (pretty JSON, as `cdk synth` writes).
fn template(bytes: usize) -> (String, Counts) {
    // The services differ (which rule each breaks): size twenty to find how many fit.
    let twenty: serde_json::Map<String, Value> = (1000..1020).flat_map(unit).collect();
    let one = serde_json::to_string_pretty(&json!({ "Resources": twenty }))
        .map(|s| s.len() / 20)
        .unwrap_or(1)
        .max(1);
    let units = (bytes / one).max(1);
    let mut resources = serde_json::Map::new();
    let mut violating = 0;
    for i in 0..units {
        if !i.is_multiple_of(4) {
            violating += 1;
        }
        resources.extend(unit(i));
    }
    let doc = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "ferry-bench: a large synthetic service stack",
        "Parameters": {
            "Stage": { "Type": "String", "Default": "prod", "AllowedValues": ["test", "staging", "prod"] },
            "BootstrapVersion": { "Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version" }
        },
        "Resources": Value::Object(resources),
        "Outputs": {
            "FirstBucket": { "Value": { "Ref": "Bucket0" } },
            "FirstFunction": { "Value": { "Fn::GetAtt": ["Function0", "Arn"] } }
        }
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    (text, Counts { units, violating })
}

/// Ten resources of one service `i`. Three in four services break one rule of the pack
/// (in turn: bucket encryption, public access block, table encryption, dead-letter queue,
/// an IAM wildcard); the rest comply.
fn unit(i: usize) -> Vec<(String, Value)> {
    let bad = if i.is_multiple_of(4) {
        None
    } else {
        Some(i % 5)
    };
    let path = |what: &str| json!({ "aws:cdk:path": format!("Service{i}/{what}/Resource") });
    let mut bucket_props = json!({
        "VersioningConfiguration": { "Status": "Enabled" },
        "LifecycleConfiguration": { "Rules": [
            { "Id": "expire-old", "Status": "Enabled", "ExpirationInDays": 365,
              "NoncurrentVersionExpiration": { "NoncurrentDays": 30 } }
        ] },
        "Tags": [
            { "Key": "service", "Value": format!("service-{i}") },
            { "Key": "owner", "Value": "platform-team" }
        ]
    });
    if bad != Some(0) {
        bucket_props["BucketEncryption"] = json!({ "ServerSideEncryptionConfiguration": [
            { "ServerSideEncryptionByDefault": { "SSEAlgorithm": if i.is_multiple_of(2) { "aws:kms" } else { "AES256" } } }
        ] });
    }
    bucket_props["PublicAccessBlockConfiguration"] = json!({
        "BlockPublicAcls": true,
        "BlockPublicPolicy": bad != Some(1),
        "IgnorePublicAcls": true,
        "RestrictPublicBuckets": true
    });
    let mut table_props = json!({
        "KeySchema": [
            { "AttributeName": "pk", "KeyType": "HASH" },
            { "AttributeName": "sk", "KeyType": "RANGE" }
        ],
        "AttributeDefinitions": [
            { "AttributeName": "pk", "AttributeType": "S" },
            { "AttributeName": "sk", "AttributeType": "S" }
        ],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": { "PointInTimeRecoveryEnabled": true }
    });
    if bad != Some(2) {
        table_props["SSESpecification"] = json!({ "SSEEnabled": true });
    }
    let (action, resource) = if bad == Some(4) {
        (json!("*"), json!("*"))
    } else {
        (
            json!([
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem"
            ]),
            json!([{ "Fn::GetAtt": [format!("Table{i}"), "Arn"] }]),
        )
    };
    let mut function_props = json!({
        "Code": {
            "S3Bucket": { "Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}" },
            "S3Key": format!("{:064x}.zip", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
        },
        "Role": { "Fn::GetAtt": [format!("Role{i}"), "Arn"] },
        "Handler": "index.handler",
        "Runtime": "nodejs20.x",
        "MemorySize": 512,
        "Timeout": 30,
        "Environment": { "Variables": {
            "TABLE_NAME": { "Ref": format!("Table{i}") },
            "BUCKET_NAME": { "Ref": format!("Bucket{i}") },
            "TOPIC_ARN": { "Ref": format!("Topic{i}") },
            "STAGE": { "Ref": "Stage" }
        } },
        "TracingConfig": { "Mode": "Active" }
    });
    if bad != Some(3) {
        function_props["DeadLetterConfig"] =
            json!({ "TargetArn": { "Fn::GetAtt": [format!("Dlq{i}"), "Arn"] } });
    }
    vec![
        (
            format!("Bucket{i}"),
            json!({ "Type": "AWS::S3::Bucket", "Properties": bucket_props,
                    "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Retain",
                    "Metadata": path("Bucket") }),
        ),
        (
            format!("BucketPolicy{i}"),
            json!({ "Type": "AWS::S3::BucketPolicy", "Properties": {
                "Bucket": { "Ref": format!("Bucket{i}") },
                "PolicyDocument": { "Version": "2012-10-17", "Statement": [{
                    "Action": "s3:*", "Effect": "Deny",
                    "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                    "Principal": { "AWS": "*" },
                    "Resource": [
                        { "Fn::GetAtt": [format!("Bucket{i}"), "Arn"] },
                        { "Fn::Join": ["", [{ "Fn::GetAtt": [format!("Bucket{i}"), "Arn"] }, "/*"]] }
                    ]
                }] }
            }, "Metadata": path("Bucket/Policy") }),
        ),
        (
            format!("Table{i}"),
            json!({ "Type": "AWS::DynamoDB::Table", "Properties": table_props,
                    "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Retain",
                    "Metadata": path("Table") }),
        ),
        (
            format!("Role{i}"),
            json!({ "Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": { "Version": "2012-10-17", "Statement": [{
                    "Action": "sts:AssumeRole", "Effect": "Allow",
                    "Principal": { "Service": "lambda.amazonaws.com" }
                }] },
                "ManagedPolicyArns": [{ "Fn::Join": ["", [
                    "arn:", { "Ref": "AWS::Partition" },
                    ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                ]] }],
                "Policies": [{
                    "PolicyName": format!("service-{i}-data"),
                    "PolicyDocument": { "Version": "2012-10-17", "Statement": [
                        { "Action": action, "Effect": "Allow", "Resource": resource },
                        { "Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow",
                          "Resource": [{ "Fn::Join": ["", [{ "Fn::GetAtt": [format!("Bucket{i}"), "Arn"] }, "/*"]] }] },
                        { "Action": "sqs:SendMessage", "Effect": "Allow",
                          "Resource": { "Fn::GetAtt": [format!("Dlq{i}"), "Arn"] } },
                        { "Action": "sns:Publish", "Effect": "Allow", "Resource": { "Ref": format!("Topic{i}") } }
                    ] }
                }]
            }, "Metadata": path("Role") }),
        ),
        (
            format!("Function{i}"),
            json!({ "Type": "AWS::Lambda::Function", "Properties": function_props,
                    "DependsOn": [format!("Role{i}")],
                    "Metadata": {
                        "aws:cdk:path": format!("Service{i}/Function/Resource"),
                        "aws:asset:path": format!("asset.{i:08}"),
                        "aws:asset:property": "Code"
                    } }),
        ),
        (
            format!("Dlq{i}"),
            json!({ "Type": "AWS::SQS::Queue", "Properties": {
                "MessageRetentionPeriod": 1_209_600,
                "KmsMasterKeyId": "alias/aws/sqs"
            }, "UpdateReplacePolicy": "Delete", "DeletionPolicy": "Delete",
               "Metadata": path("Dlq") }),
        ),
        (
            format!("Topic{i}"),
            json!({ "Type": "AWS::SNS::Topic", "Properties": {
                "DisplayName": format!("service {i} events"),
                "KmsMasterKeyId": "alias/aws/sns"
            }, "Metadata": path("Topic") }),
        ),
        (
            format!("LogGroup{i}"),
            json!({ "Type": "AWS::Logs::LogGroup", "Properties": {
                "LogGroupName": { "Fn::Join": ["", ["/aws/lambda/", { "Ref": format!("Function{i}") }]] },
                "RetentionInDays": 30
            }, "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Retain",
               "Metadata": path("LogGroup") }),
        ),
        (
            format!("SecurityGroup{i}"),
            json!({ "Type": "AWS::EC2::SecurityGroup", "Properties": {
                "GroupDescription": format!("service {i}"),
                "SecurityGroupEgress": [{ "CidrIp": "0.0.0.0/0", "Description": "all outbound", "IpProtocol": "-1" }],
                "SecurityGroupIngress": [{ "CidrIp": "10.0.0.0/16", "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp",
                                           "Description": "https from the VPC" }],
                "VpcId": "vpc-0123456789abcdef0"
            }, "Metadata": path("SecurityGroup") }),
        ),
        (
            format!("Alarm{i}"),
            json!({ "Type": "AWS::CloudWatch::Alarm", "Properties": {
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "EvaluationPeriods": 1, "Threshold": 1, "Period": 60, "Statistic": "Sum",
                "MetricName": "Errors", "Namespace": "AWS/Lambda",
                "Dimensions": [{ "Name": "FunctionName", "Value": { "Ref": format!("Function{i}") } }],
                "AlarmActions": [{ "Ref": format!("Topic{i}") }]
            }, "Metadata": path("Errors") }),
        ),
    ]
}
