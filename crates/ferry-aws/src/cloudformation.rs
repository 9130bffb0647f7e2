//! A [`Deployer`] on CloudFormation (`deploy: cloudformation:`): a deployment reads the
//! template from the run's checkout, keeps it at
//! `s3://{bucket}/{env}/stacks/{version}/template.json`, compares it with the template
//! the stack runs now (`GetTemplate`) with the comparison `ferry diff` uses
//! (`ferry_core::infra`), and **only on a meaningful change** creates a change set
//! (CREATE for a new stack, UPDATE otherwise), waits for it, executes it and waits for
//! the stack to settle within the section's `timeout`. Then the object
//! `s3://{bucket}/{env}/stacks/current` is pointed at the version: its body is what runs.
//! A rollback deploys the kept template of the earlier version the same way.
//!
//! Templates are JSON (what `cdk synth`, `ferry synth aws` and most generators write).

use crate::{Aws, port_error};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Parameter};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use ferry_config::CloudFormationDeploy;
use ferry_core::infra::{Verdict, assess, diff_templates};
use ferry_engine::ports::{DeployRequest, Deployer, PortError, PortResult};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The reason CloudFormation gives a change set that changes nothing.
const NO_CHANGES: &[&str] = &["didn't contain changes", "no updates are to be performed"];

/// Deploys one environment's stack.
pub struct CloudFormationDeployer {
    aws: Aws,
    cf: Client,
    s3: aws_sdk_s3::Client,
    environment: String,
    spec: CloudFormationDeploy,
    poll: Duration,
}

/// What one comparison and change set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The stack was created.
    Created,
    /// The stack was updated.
    Updated,
    /// Nothing meaningful changed: no change set was executed.
    Unchanged,
}

/// A stack as `DescribeStacks` tells it.
struct StackState {
    status: String,
    reason: Option<String>,
}

/// Appends lines to the step's log; a log that cannot be written is not a failed deploy.
struct Log(Option<std::fs::File>);

impl Log {
    fn open(path: &Path) -> Log {
        Log(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok())
    }
    fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.0 {
            let _ = writeln!(f, "cloudformation: {text}");
        }
    }
}

fn parse_template(text: &str, what: &str) -> PortResult<Value> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        PortError::permanent(format!(
            "{what} is not a JSON CloudFormation template ({e}): ferry's cloudformation deploy takes JSON templates (`cdk synth --json`, `ferry synth aws`, or convert a YAML one)"
        ))
    })?;
    if !v.is_object() {
        return Err(PortError::permanent(format!(
            "{what} is not a CloudFormation template: its JSON is not an object"
        )));
    }
    Ok(v)
}

/// A change set name (`[A-Za-z][-A-Za-z0-9]*`, at most 128) for a version.
fn change_set_name(version: &str) -> String {
    let clean: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ferry-{clean}-{nanos}")
}

fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    format!("{}", DisplayErrorContext(e))
}

impl CloudFormationDeployer {
    /// Deploys `spec` for `environment` (templates kept under `{environment}/stacks/` in
    /// `spec.bucket`).
    pub fn new(aws: &Aws, environment: &str, spec: &CloudFormationDeploy) -> Self {
        let mut cfg = aws_sdk_s3::config::Builder::from(aws.config());
        if aws.config().endpoint_url().is_some() {
            // moto and other stand-ins answer on one host: path-style addressing.
            cfg = cfg.force_path_style(true);
        }
        CloudFormationDeployer {
            aws: aws.clone(),
            cf: Client::new(aws.config()),
            s3: aws_sdk_s3::Client::from_conf(cfg.build()),
            environment: environment.to_string(),
            spec: spec.clone(),
            poll: Duration::from_secs(5),
        }
    }

    /// How often the change set and the stack are polled (default 5 s; the first look is
    /// immediate).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Creates the template bucket (for tests and a first try against an empty account).
    pub fn create_bucket(&self) -> PortResult<()> {
        let req = self.s3.create_bucket().bucket(&self.spec.bucket);
        self.aws
            .block_on(req.send())
            .map_err(|e| port_error("S3", "CreateBucket", &e))?;
        Ok(())
    }

    /// `{env}/stacks/{version}/template.json`, where a version's template is kept.
    pub fn template_key(&self, version: &str) -> String {
        format!("{}/stacks/{version}/template.json", self.environment)
    }

    fn pointer(&self) -> String {
        format!("{}/stacks/current", self.environment)
    }

    fn stack_error(
        &self,
        service: &str,
        call: &str,
        e: &(dyn std::error::Error + 'static),
    ) -> PortError {
        let inner = port_error(service, call, e);
        PortError::new(
            inner.kind,
            format!("stack {}: {}", self.spec.stack, inner.message),
        )
    }

    fn get_object(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        let req = self.s3.get_object().bucket(&self.spec.bucket).key(key);
        match self.aws.block_on(req.send()) {
            Ok(out) => {
                let body = self
                    .aws
                    .block_on(out.body.collect())
                    .map_err(|e| port_error("S3", "GetObject", &e))?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(None),
            Err(e) => Err(port_error("S3", "GetObject", &e)),
        }
    }

    fn put_object(&self, key: &str, body: Vec<u8>, content_type: &str) -> PortResult<()> {
        let req = self
            .s3
            .put_object()
            .bucket(&self.spec.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        self.aws
            .block_on(req.send())
            .map_err(|e| port_error("S3", "PutObject", &e))?;
        Ok(())
    }

    fn point_at(&self, version: &str) -> PortResult<()> {
        self.put_object(&self.pointer(), version.as_bytes().to_vec(), "text/plain")
    }

    /// The stack's status, `None` when there is no such stack.
    fn stack(&self) -> PortResult<Option<StackState>> {
        let req = self.cf.describe_stacks().stack_name(&self.spec.stack);
        match self.aws.block_on(req.send()) {
            Ok(out) => Ok(out.stacks().first().map(|s| StackState {
                status: s
                    .stack_status()
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_default(),
                reason: s.stack_status_reason().map(str::to_string),
            })),
            Err(e) if error_text(&e).contains("does not exist") => Ok(None),
            Err(e) => Err(self.stack_error("CloudFormation", "DescribeStacks", &e)),
        }
    }

    /// The template the stack runs now (`GetTemplate`, stage `Original`).
    fn running_template(&self) -> PortResult<Option<String>> {
        let req = self.cf.get_template().stack_name(&self.spec.stack);
        match self.aws.block_on(req.send()) {
            Ok(out) => Ok(out.template_body().map(str::to_string)),
            Err(e) if error_text(&e).contains("does not exist") => Ok(None),
            Err(e) => Err(self.stack_error("CloudFormation", "GetTemplate", &e)),
        }
    }

    /// The reasons of the failed resource events of the stack's last operation.
    fn failure_reasons(&self) -> Vec<String> {
        let req = self.cf.describe_stack_events().stack_name(&self.spec.stack);
        let Ok(out) = self.aws.block_on(req.send()) else {
            return Vec::new();
        };
        let mut reasons = Vec::new();
        for e in out.stack_events() {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
            let logical = e.logical_resource_id().unwrap_or_default();
            if logical == self.spec.stack
                && matches!(status, "CREATE_IN_PROGRESS" | "UPDATE_IN_PROGRESS")
            {
                break; // the start of the last operation
            }
            if (status.ends_with("_FAILED") || status.contains("ROLLBACK"))
                && let Some(r) = e.resource_status_reason()
                && !r.is_empty()
            {
                let line = format!("{logical} {status}: {r}");
                if !reasons.contains(&line) {
                    reasons.push(line);
                }
            }
        }
        reasons.reverse();
        reasons
    }

    /// Compares `body` with what the stack runs and, on a meaningful change, deploys it
    /// with a change set and waits for the stack.
    pub fn apply(&self, body: &str, version: &str, log: &Path) -> PortResult<Applied> {
        let mut log = Log::open(log);
        let stack = &self.spec.stack;
        let new = parse_template(body, &format!("the template for {version}"))?;
        // One deadline for the whole deploy: waiting for a busy stack, then the update.
        let deadline = Instant::now() + self.spec.timeout;
        let state = self.settled(deadline, &mut log)?;
        let creating = match &state {
            None => true,
            Some(s) if s.status == "REVIEW_IN_PROGRESS" => true,
            Some(s) if s.status == "ROLLBACK_COMPLETE" || s.status == "ROLLBACK_FAILED" => {
                return Err(PortError::permanent(format!(
                    "stack {stack} is {} (its creation failed{}) and cannot be updated: delete it (aws cloudformation delete-stack --stack-name {stack}), then deploy again",
                    s.status,
                    s.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )));
            }
            Some(s) if s.status.ends_with("_IN_PROGRESS") => {
                return Err(PortError::transient(format!(
                    "stack {stack} is busy ({}): wait for it to finish, then deploy again",
                    s.status
                )));
            }
            Some(_) => false,
        };
        if creating {
            log.line(&format!("stack {stack} does not exist yet: creating it"));
        } else {
            let running = self.running_template()?;
            let old = running
                .as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok());
            match old {
                Some(old) => {
                    let diff = diff_templates(
                        &BTreeMap::from([(stack.clone(), old)]),
                        &BTreeMap::from([(stack.clone(), new.clone())]),
                    );
                    let verdict = assess(&diff, &[]);
                    if verdict.verdict == Verdict::NoChange {
                        log.line(&format!(
                            "no meaningful change to stack {stack} (only descriptions, metadata or formatting differ): no change set created"
                        ));
                        return Ok(Applied::Unchanged);
                    }
                    log.line(&format!(
                        "stack {stack}: {} ({} resources, {} parameters, {} outputs differ)",
                        verdict.verdict.as_str(),
                        diff.resources.len(),
                        diff.parameters.len(),
                        diff.outputs.len()
                    ));
                    for r in &verdict.unsafe_reasons {
                        log.line(&format!("rollback-unsafe: {r}"));
                    }
                }
                None => log.line(&format!(
                    "stack {stack} runs a template ferry cannot read as JSON: deploying"
                )),
            }
        }
        let name = change_set_name(version);
        let mut req = self
            .cf
            .create_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .template_body(body)
            .change_set_type(if creating {
                ChangeSetType::Create
            } else {
                ChangeSetType::Update
            })
            .description(format!("ferry: {} {version}", self.environment));
        for (k, v) in &self.spec.parameters {
            req = req.parameters(
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build(),
            );
        }
        for c in &self.spec.capabilities {
            req = req.capabilities(Capability::from(c.as_str()));
        }
        self.aws
            .block_on(req.send())
            .map_err(|e| self.stack_error("CloudFormation", "CreateChangeSet", &e))?;
        log.line(&format!(
            "change set {name} ({}) created for stack {stack}",
            if creating { "CREATE" } else { "UPDATE" }
        ));
        if !self.wait_for_change_set(&name, deadline, &mut log)? {
            return Ok(Applied::Unchanged);
        }
        let req = self
            .cf
            .execute_change_set()
            .stack_name(stack)
            .change_set_name(&name);
        self.aws
            .block_on(req.send())
            .map_err(|e| self.stack_error("CloudFormation", "ExecuteChangeSet", &e))?;
        log.line(&format!("change set {name} executing"));
        let status = self.wait_for_stack(deadline)?;
        log.line(&format!("stack {stack} is {status}"));
        Ok(if creating {
            Applied::Created
        } else {
            Applied::Updated
        })
    }

    /// Waits for the change set to be created. `false`: it changes nothing (then it is
    /// deleted).
    fn wait_for_change_set(
        &self,
        name: &str,
        deadline: Instant,
        log: &mut Log,
    ) -> PortResult<bool> {
        let stack = &self.spec.stack;
        loop {
            let req = self
                .cf
                .describe_change_set()
                .stack_name(stack)
                .change_set_name(name);
            let out = self
                .aws
                .block_on(req.send())
                .map_err(|e| self.stack_error("CloudFormation", "DescribeChangeSet", &e))?;
            let status = out.status().map(|s| s.as_str()).unwrap_or_default();
            let reason = out.status_reason().unwrap_or_default().to_string();
            match status {
                "CREATE_COMPLETE" => return Ok(true),
                "FAILED" => {
                    let lower = reason.to_ascii_lowercase();
                    if NO_CHANGES.iter().any(|n| lower.contains(n)) {
                        log.line(&format!(
                            "change set {name} contains no changes for stack {stack}: deleting it, nothing deployed"
                        ));
                        let req = self
                            .cf
                            .delete_change_set()
                            .stack_name(stack)
                            .change_set_name(name);
                        self.aws.block_on(req.send()).map_err(|e| {
                            self.stack_error("CloudFormation", "DeleteChangeSet", &e)
                        })?;
                        return Ok(false);
                    }
                    return Err(PortError::permanent(format!(
                        "stack {stack}: change set {name} failed: {reason}"
                    )));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(PortError::permanent(format!(
                    "stack {stack}: change set {name} was still {status} after the deploy's timeout ({}s)",
                    self.spec.timeout.as_secs()
                )));
            }
            std::thread::sleep(self.poll);
        }
    }

    /// The stack's state once no operation is in progress on it: an update still
    /// running (one a stopped rollback Lambda began, or a person's) is waited for within
    /// the section's `timeout`, then judged as it ended, instead of failing this deploy
    /// at once. `REVIEW_IN_PROGRESS` (created, never executed) is not waited for.
    fn settled(&self, deadline: Instant, log: &mut Log) -> PortResult<Option<StackState>> {
        let stack = &self.spec.stack;
        let mut told = false;
        loop {
            let state = self.stack()?;
            let busy = state.as_ref().is_some_and(|s| {
                s.status.ends_with("_IN_PROGRESS") && s.status != "REVIEW_IN_PROGRESS"
            });
            let Some(s) = state.as_ref().filter(|_| busy) else {
                return Ok(state);
            };
            if Instant::now() >= deadline {
                // Permanent: the whole timeout was spent waiting already.
                return Err(PortError::permanent(format!(
                    "stack {stack} is busy ({}) and stayed so for the deploy's timeout ({}s): wait for it to finish, then deploy again",
                    s.status,
                    self.spec.timeout.as_secs()
                )));
            }
            if !told {
                log.line(&format!(
                    "stack {stack} is busy ({}): waiting for it to finish first",
                    s.status
                ));
                told = true;
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Waits for the stack to settle; `CREATE_COMPLETE` or `UPDATE_COMPLETE` is success,
    /// anything else an error quoting the failed events.
    fn wait_for_stack(&self, deadline: Instant) -> PortResult<String> {
        let stack = &self.spec.stack;
        loop {
            let state = self.stack()?.ok_or_else(|| {
                PortError::permanent(format!(
                    "stack {stack} disappeared while its change set was executing"
                ))
            })?;
            let settling = state.status.ends_with("_IN_PROGRESS");
            if !settling {
                if matches!(state.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
                    return Ok(state.status);
                }
                let mut reasons = self.failure_reasons();
                if reasons.is_empty()
                    && let Some(r) = state.reason
                {
                    reasons.push(r);
                }
                return Err(PortError::permanent(format!(
                    "stack {stack} ended {}{}",
                    state.status,
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", reasons.join("; "))
                    }
                )));
            }
            if Instant::now() >= deadline {
                return Err(PortError::permanent(format!(
                    "stack {stack} was still {} after the deploy's timeout ({}s): see its events in the CloudFormation console",
                    state.status,
                    self.spec.timeout.as_secs()
                )));
            }
            std::thread::sleep(self.poll);
        }
    }
}

impl Deployer for CloudFormationDeployer {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()> {
        let path = req.cwd.join(&self.spec.template);
        let body = std::fs::read_to_string(&path).map_err(|e| {
            PortError::permanent(format!(
                "cannot read the template {} of stack {} ({e}): `deploy.cloudformation.template` is relative to the checkout; does the build or synth write it?",
                path.display(),
                self.spec.stack
            ))
        })?;
        parse_template(&body, &path.display().to_string())?;
        let key = self.template_key(&req.version);
        self.put_object(&key, body.clone().into_bytes(), "application/json")?;
        Log::open(&req.log).line(&format!(
            "template {} kept at s3://{}/{key}",
            self.spec.template, self.spec.bucket
        ));
        self.apply(&body, &req.version, &req.log)?;
        self.point_at(&req.version)
    }

    fn rollback(&self, req: &DeployRequest) -> PortResult<()> {
        let key = self.template_key(&req.version);
        let bytes = self.get_object(&key)?.ok_or_else(|| {
            PortError::not_found(format!(
                "s3://{}/{key} does not exist, so stack {} cannot be put back to {}: ferry keeps each deployed version's template there (was the object deleted, or the version never deployed to {} by ferry?)",
                self.spec.bucket, self.spec.stack, req.version, self.environment
            ))
        })?;
        let body = String::from_utf8(bytes).map_err(|_| {
            PortError::permanent(format!("s3://{}/{key} is not UTF-8 text", self.spec.bucket))
        })?;
        Log::open(&req.log).line(&format!(
            "putting back the template of {} from s3://{}/{key}",
            req.version, self.spec.bucket
        ));
        self.apply(&body, &req.version, &req.log)?;
        self.point_at(&req.version)
    }

    fn current_version(&self) -> PortResult<Option<String>> {
        Ok(self.get_object(&self.pointer())?.and_then(|b| {
            let text = String::from_utf8_lossy(&b).trim().to_string();
            (!text.is_empty()).then_some(text)
        }))
    }
}
