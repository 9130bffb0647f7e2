//! The pipeline model: what a valid `ferry.yml` means, with every default filled in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::windows::Windows;

/// A whole `ferry.yml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    /// Key `pipeline`.
    pub name: String,
    pub source: Source,
    pub build: Build,
    /// In promotion order (the order of the file).
    pub environments: Vec<Environment>,
    pub alarms: Vec<Alarm>,
    pub rollback: Rollback,
    pub notifications: Vec<Notification>,
    /// Key `server`: how `ferry serve` runs and how other commands find it.
    pub server: Server,
    /// Key `hotfix`: whether `ferry run --hotfix` may skip to the last environment.
    pub hotfix: Hotfix,
    /// Key `execution_mode`: what happens when several runs want the same environment
    /// (CodePipeline V2's execution modes). Default [`ExecutionMode::Superseded`].
    pub execution_mode: ExecutionMode,
    /// Key `infrastructure`: which files are infrastructure, how templates are synthesized
    /// and which changes are migrations (`ferry diff`). `None`: no infrastructure
    /// detection runs at all.
    pub infrastructure: Option<Infrastructure>,
    /// Key `secrets`: names of environment variables (of the `ferry` process) whose
    /// values are secrets, redacted as `***` from step logs, events, notifications and
    /// terminal output, in addition to those found on their own (see
    /// [`Pipeline::secret_env_names`]). Names only: never the secret itself.
    pub secrets: Vec<String>,
}

impl Pipeline {
    /// Every environment variable whose value ferry must redact: the `secrets` list, then
    /// the names ferry itself reads secrets from (`FERRY_WEBHOOK_SECRET`,
    /// `FERRY_API_TOKEN`). Step `env` values whose names look secret are added by
    /// [`Pipeline::secret_step_values`]. Notification channels that read credentials
    /// from the environment add the names they read here.
    pub fn secret_env_names(&self) -> Vec<String> {
        let mut names = self.secrets.clone();
        let mut add = |n: &str| {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        };
        for n in ["FERRY_WEBHOOK_SECRET", "FERRY_API_TOKEN"] {
            add(n);
        }
        // The credentials notification channels read from the environment.
        for channel in &self.notifications {
            match channel {
                Notification::Github { token_env, .. } => add(token_env),
                Notification::Email {
                    password_env: Some(v),
                    ..
                } => add(v),
                _ => {}
            }
        }
        names
    }

    /// Secret values written in the file itself: a Slack incoming-webhook URL is the
    /// channel's credential (anyone holding it can post), and so is a generic webhook
    /// URL with a query or user information; they are redacted like secrets.
    pub fn secret_config_values(&self) -> Vec<String> {
        self.notifications
            .iter()
            .filter_map(|n| match n {
                Notification::Slack { url, .. } => Some(url.clone()),
                // A generic webhook's URL is a credential only when it carries one: a
                // query (`?token=…`) or user information (`https://user:pass@…`).
                Notification::Webhook { url, .. }
                    if url.contains('?')
                        || url.split_once("://").is_some_and(|(_, rest)| {
                            rest.split('/').next().is_some_and(|h| h.contains('@'))
                        }) =>
                {
                    Some(url.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Every step's `env` value (build steps and environment tests) whose name is in
    /// `secrets` or passes `looks_secret` (the caller's rule: names containing TOKEN,
    /// SECRET, PASSWORD, KEY, CREDENTIAL …).
    pub fn secret_step_values(&self, looks_secret: impl Fn(&str) -> bool) -> Vec<String> {
        self.build
            .steps
            .iter()
            .chain(self.environments.iter().flat_map(|e| e.tests.iter()))
            .flat_map(|s| s.env.iter())
            .filter(|(k, _)| looks_secret(k) || self.secrets.iter().any(|n| n == *k))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Top-level key `infrastructure`: infrastructure change detection (`ferry diff`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Infrastructure {
    /// Key `paths`: globs (`*`, `?`, `**`) of the files that are infrastructure, relative
    /// to the repository root, like `infrastructure/**`. At least one.
    pub paths: Vec<String>,
    /// Key `synth`: a command run at the root of a checkout that writes the templates
    /// (like `npx cdk synth --quiet`). `None`: the templates are committed files, read
    /// straight from each commit.
    pub synth: Option<String>,
    /// Key `synth_timeout`: how long `synth` may run before its process group is stopped
    /// and the comparison fails (closed). `None`: [`DEFAULT_SYNTH_TIMEOUT`].
    pub synth_timeout: Option<std::time::Duration>,
    /// Key `templates`: globs of the CloudFormation templates (JSON) to compare, like
    /// `infrastructure/cdk.out/*.template.json`. Required with `synth`.
    pub templates: Vec<String>,
    /// Key `migrations`: globs of files whose change marks a migration (like
    /// `migrations/**`); a changed file matching one makes the change rollback-unsafe.
    pub migrations: Vec<String>,
}

/// How long `infrastructure.synth` may run when `synth_timeout` is not set.
pub const DEFAULT_SYNTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Key `infrastructure` of an environment: how infrastructure is deployed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentInfrastructure {
    /// Key `deploy`: the command that deploys the synthesized templates, run at the root of
    /// the checkout only when the infrastructure changed meaningfully.
    pub deploy: String,
}

/// How runs share the environments (top-level key `execution_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// A newer run overtakes an older one waiting for the same environment: the older
    /// run ends `superseded`, and the newest commit is what ends deployed.
    #[default]
    Superseded,
    /// Runs enter each environment strictly in the order they were queued; none is
    /// superseded.
    Queued,
}

impl ExecutionMode {
    /// The yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Superseded => "superseded",
            ExecutionMode::Queued => "queued",
        }
    }
}

/// Key `hotfix`: the hotfix lane. `ferry run --hotfix` deploys straight to the last
/// environment (skipping test and staging) only when the file allows it; it then needs
/// at least two distinct approvals there and doubles that environment's monitor window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Hotfix {
    /// `hotfix: { allowed: true }`. Default `false`: `ferry run --hotfix` is refused.
    pub allowed: bool,
}

/// A hotfix needs at least this many distinct approvals at the last environment.
pub const HOTFIX_APPROVALS: u32 = 2;

impl Pipeline {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The alarm called `name`.
    pub fn alarm(&self, name: &str) -> Option<&Alarm> {
        self.alarms.iter().find(|a| a.name == name)
    }

    /// The environment that comes before `name` in promotion order.
    pub fn previous_environment(&self, name: &str) -> Option<&Environment> {
        let i = self.environments.iter().position(|e| e.name == name)?;
        i.checked_sub(1).and_then(|p| self.environments.get(p))
    }

    /// The alarms an environment watches: those its `monitor` lists, then those that name
    /// it with `environment:`, each once, in that order.
    pub fn alarms_for(&self, environment: &str) -> Vec<&Alarm> {
        let mut out: Vec<&Alarm> = Vec::new();
        if let Some(m) = self
            .environment(environment)
            .and_then(|e| e.monitor.as_ref())
        {
            for name in &m.alarms {
                if let Some(a) = self.alarm(name)
                    && !out.iter().any(|o| o.name == a.name)
                {
                    out.push(a);
                }
            }
        }
        for a in &self.alarms {
            if a.environment.as_deref() == Some(environment)
                && !out.iter().any(|o| o.name == a.name)
            {
                out.push(a);
            }
        }
        out
    }
}

/// `ferry serve`'s settings (yaml key `server`); every key optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Server {
    /// Where `ferry serve` listens when `--listen` is not given.
    pub listen: Option<String>,
    /// Where a running `ferry serve` answers (`http://host:port`): `ferry approve`,
    /// `reject`, `rollback` and `status` then go through its API instead of the store.
    pub url: Option<String>,
    /// A file holding the GitHub webhook secret (used when `FERRY_WEBHOOK_SECRET` is not
    /// set); relative paths are from the repository root.
    pub webhook_secret_file: Option<String>,
    /// A file holding the API bearer token (used when `FERRY_API_TOKEN` is not set).
    pub api_token_file: Option<String>,
    /// A file of personal API tokens, one `name token` per line: a call made with one
    /// acts as that person (approvals, rejections and break-glass overrides then need
    /// one; the shared token cannot say who decides).
    pub api_tokens_file: Option<String>,
    /// SNS topics (ARNs) whose deliveries to `/hooks/alarms` are accepted on their
    /// verified SNS signature alone, without the bearer token.
    pub sns_topics: Vec<String>,
    /// URL prefixes SNS signing certificates may also come from (an SNS emulator such
    /// as LocalStack); by default only `https://sns.<region>.amazonaws.com/…`.
    pub sns_certificate_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// Runs start for commits on this branch only. Default `main`.
    pub branch: String,
    /// Poll the repository this often; `None`: only webhooks (or explicit runs) start runs.
    pub poll: Option<Duration>,
    /// Key `repository`: the repository's web address (`https://github.com/owner/repo`),
    /// used for commit links in approval requests. `None`: derived from the `origin`
    /// remote when it is a GitHub or GitLab URL, otherwise no link.
    pub repository: Option<String>,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            branch: "main".to_string(),
            poll: None,
            repository: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Build {
    pub steps: Vec<Step>,
    pub gates: Gates,
    /// A relative path inside the checkout (no `..`), packed once after the steps.
    pub artifact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Gates {
    /// Minimum line coverage in percent, `0..=100`.
    pub coverage_min: Option<f64>,
    /// The security gate (seed §3.7): CRITICAL and HIGH findings block the run.
    pub security: Option<Security>,
}

/// `build.gates.security`: what `ferry scan` and the build stage's security gate scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Security {
    /// CloudFormation templates (JSON or YAML), paths or globs in the checkout.
    pub templates: Vec<String>,
    /// cfn-guard rule files in the checkout, added to the built-in pack.
    pub rules: Vec<String>,
    /// Whether the built-in pack (the seed's `security-rules.guard`) applies. Default
    /// true.
    pub builtin_rules: bool,
    /// Dependency audit reports (`npm audit --json`, `cargo audit --json`,
    /// `pip-audit -f json`).
    pub audits: Vec<AuditSource>,
    /// Findings accepted on purpose, each with a reason.
    pub allow: Vec<Allow>,
    /// Where the build stage writes the run's findings as SARIF 2.1.0 after the scan
    /// (relative to the repository root, e.g. `reports/ferry.sarif`), for a CI job to
    /// upload to GitHub code scanning; none when absent (the API serves it anyway).
    pub sarif: Option<String>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            templates: Vec::new(),
            rules: Vec::new(),
            builtin_rules: true,
            audits: Vec::new(),
            allow: Vec::new(),
            sarif: None,
        }
    }
}

/// Where an audit report comes from (yaml: exactly one of `run`, `file`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    /// A command (`/bin/sh -c`, in the checkout) whose standard output is the report.
    Run(String),
    /// A report file in the checkout.
    File(String),
}

/// One allowlist entry: a finding (an advisory or rule id, for one package or all)
/// that does not block, for a written reason, until it expires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allow {
    pub id: String,
    pub package: Option<String>,
    /// Why it is accepted (required).
    pub reason: String,
    /// `YYYY-MM-DD`: the entry holds through that day; from the next day on the finding
    /// blocks again.
    pub expires: Option<String>,
}

/// One command, in `build.steps` or an environment's `tests`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub name: String,
    /// Run by `/bin/sh -c` in the run's checkout.
    pub run: String,
    pub timeout: Option<Duration>,
    pub reports: Reports,
    pub env: BTreeMap<String, String>,
    pub suite: Option<Suite>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Reports {
    /// JUnit XML paths or globs, relative to the checkout (yaml: a string or a list).
    pub junit: Vec<String>,
    /// An LCOV or Cobertura file, relative to the checkout.
    pub coverage: Option<String>,
}

/// Which test results a step's JUnit reports count as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    Unit,
    Integration,
    E2e,
}

impl Suite {
    /// The yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Unit => "unit",
            Suite::Integration => "integration",
            Suite::E2e => "e2e",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: String,
    /// A manual approval before anything is deployed here.
    pub approval: Option<Approval>,
    pub deploy: Deploy,
    /// Steps run after the deploy, against the deployed version.
    pub tests: Vec<Step>,
    /// A health window after the tests: any ALARM inside it fails the stage (unless the
    /// monitor or the alarm is advisory).
    pub monitor: Option<Monitor>,
    /// After the stage succeeded, the environment's alarms are still watched this long; an
    /// ALARM then still rolls the deployment back. `Some(0s)` (`watch: 0s`) watches nothing
    /// after success, the same as no `watch`.
    pub watch: Option<Duration>,
    /// Deployment windows: when a run may deploy here (weekly local-time ranges in a
    /// named time zone). A run reaching a closed window is held, not failed, and goes on
    /// by itself when it opens. Rollbacks are never held.
    pub windows: Option<Windows>,
    /// Key `infrastructure`: `{ deploy: COMMAND }`, the infrastructure deploy here. Needs
    /// the top-level `infrastructure` section.
    pub infrastructure: Option<EnvironmentInfrastructure>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// No decision by then: the run fails and nothing is deployed. Default 24h.
    pub timeout: Duration,
    /// Key `approvers`: who may approve or reject. Empty (the default): anyone who can
    /// run `ferry approve` or holds the API token.
    pub approvers: Vec<String>,
    /// Key `required`: how many distinct people must approve (N of M). Default 1; at
    /// least 1 and at most the number of `approvers` when they are listed.
    pub required: u32,
    /// Key `separation_of_duties`: the commit's author and whoever triggered the run may
    /// not decide. Default `true`.
    pub separation_of_duties: bool,
    /// Key `remind_before`: an `approval_reminder` event this long before the timeout,
    /// once. Default none (no reminder); shorter than `timeout`.
    pub remind_before: Option<Duration>,
}

impl Default for Approval {
    fn default() -> Self {
        Approval {
            timeout: Duration::from_secs(24 * 3600),
            approvers: Vec::new(),
            required: 1,
            separation_of_duties: true,
            remind_before: None,
        }
    }
}

/// How a version is put into an environment (yaml: exactly one of `release`, `command`,
/// `s3`, `cloudformation`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deploy {
    Release(ReleaseDeploy),
    Command(CommandDeploy),
    /// Key `s3`: the artifact synced to a versioned prefix of a bucket (needs ferry built
    /// with the `aws` feature).
    S3(S3Deploy),
    /// Key `cloudformation`: a template of the checkout deployed to a stack with change
    /// sets (needs ferry built with the `aws` feature).
    #[serde(rename = "cloudformation")]
    CloudFormation(CloudFormationDeploy),
}

impl Deploy {
    /// `release`, `command`, `s3` or `cloudformation`.
    pub fn kind(&self) -> &'static str {
        match self {
            Deploy::Release(_) => "release",
            Deploy::Command(_) => "command",
            Deploy::S3(_) => "s3",
            Deploy::CloudFormation(_) => "cloudformation",
        }
    }

    /// Whether this kind deploys to AWS (and so needs ferry built with AWS support).
    pub fn needs_aws(&self) -> bool {
        matches!(self, Deploy::S3(_) | Deploy::CloudFormation(_))
    }

    /// The URL that must answer 2xx after a deploy, if any.
    pub fn health(&self) -> Option<&str> {
        match self {
            Deploy::Release(r) => r.health.as_deref(),
            Deploy::Command(_) | Deploy::S3(_) | Deploy::CloudFormation(_) => None,
        }
    }

    /// Whether ferry can roll back without rebuilding: always for `release` (it swaps the
    /// `current` link back), `s3` (it points `current` back at the kept prefix) and
    /// `cloudformation` (it deploys the kept template again); for `command` only with a
    /// `rollback` command.
    pub fn can_roll_back(&self) -> bool {
        match self {
            Deploy::Release(_) | Deploy::S3(_) | Deploy::CloudFormation(_) => true,
            Deploy::Command(c) => c.rollback.is_some(),
        }
    }
}

/// Sync the artifact to `s3://{bucket}/{prefix}/releases/{version}/` and point
/// `s3://{bucket}/{prefix}/current` at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct S3Deploy {
    /// Key `bucket`: the bucket's name (S3 naming rules: 3–63 lowercase letters, digits,
    /// `-` and `.`).
    pub bucket: String,
    /// Key `prefix`: where in the bucket; `None` (the default) means the environment's
    /// name. Written without leading or trailing `/`.
    pub prefix: Option<String>,
}

impl S3Deploy {
    /// The prefix this environment deploys under: `prefix`, else the environment's name.
    pub fn prefix_for(&self, environment: &str) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| environment.to_string())
    }
}

/// The CloudFormation capabilities a change set may be given.
pub const CLOUDFORMATION_CAPABILITIES: &[&str] = &[
    "CAPABILITY_IAM",
    "CAPABILITY_NAMED_IAM",
    "CAPABILITY_AUTO_EXPAND",
];

/// Deploy a template of the run's checkout to a CloudFormation stack with a change set,
/// only when it changes something meaningful; every deployed template is kept at
/// `s3://{bucket}/{env}/stacks/{version}/template.json` so a rollback deploys it again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudFormationDeploy {
    /// Key `stack`: the stack's name (`[A-Za-z][A-Za-z0-9-]{0,127}`).
    pub stack: String,
    /// Key `template`: the template's path, relative to the run's checkout.
    pub template: String,
    /// Key `bucket`: where ferry keeps each deployed version's template and `current`.
    pub bucket: String,
    /// Key `parameters`: the stack's parameter values (default none).
    pub parameters: BTreeMap<String, String>,
    /// Key `capabilities`: what the change set acknowledges, from
    /// [`CLOUDFORMATION_CAPABILITIES`] (default none).
    pub capabilities: Vec<String>,
    /// Key `timeout`: how long to wait for the change set and the stack. Default 30m.
    pub timeout: Duration,
}

/// Unpack the artifact into `<root>/<env>/releases/<version>` and swap `current`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseDeploy {
    pub root: String,
    /// A supervised service, started in `current`.
    pub start: Option<String>,
    /// An `http://` URL (ferry's built-in client speaks plain HTTP only) that must answer
    /// 2xx before the deploy counts.
    pub health: Option<String>,
    /// Default 30s.
    pub health_timeout: Duration,
    /// Releases kept on disk, at least 1. Default 5.
    pub keep: u32,
}

/// User commands for deploy and rollback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandDeploy {
    pub run: String,
    pub rollback: Option<String>,
    /// A command printing the version running now.
    pub current_version: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitor {
    pub duration: Duration,
    /// Default 10s (or `duration`, if shorter); never longer than `duration`.
    pub interval: Duration,
    /// Names of top-level alarms, all defined.
    pub alarms: Vec<String>,
    /// The window's alarms are evaluated, recorded and notified, but never fail the stage.
    /// Default false.
    pub advisory: bool,
    /// What an alarm that stays INSUFFICIENT_DATA for the whole window means. Default
    /// [`InsufficientData::Fail`].
    pub insufficient_data: InsufficientData,
}

/// What a monitor window does with an alarm that never left INSUFFICIENT_DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InsufficientData {
    /// Fail closed: the alarm holds the promotion, as an ALARM would.
    #[default]
    Fail,
    /// The alarm counts as OK.
    Pass,
}

impl InsufficientData {
    /// The yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InsufficientData::Fail => "fail",
            InsufficientData::Pass => "pass",
        }
    }
}

/// A named condition with CloudWatch semantics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub name: String,
    pub source: AlarmSource,
    /// One datapoint per period. Default 60s.
    pub period: Duration,
    /// Default 1.
    pub evaluation_periods: u32,
    /// At most `evaluation_periods`; default `evaluation_periods`.
    pub datapoints_to_alarm: u32,
    pub missing_data: MissingData,
    /// The environment the alarm belongs to, if any (a defined environment).
    pub environment: Option<String>,
    /// Evaluated, recorded and notified, but never fails a stage. Default false.
    pub advisory: bool,
}

/// Where an alarm's datapoints come from (yaml: exactly one of these keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmSource {
    /// Breaching: no answer, a status other than `expect_status`, or slower than
    /// `max_latency`.
    Http {
        url: String,
        expect_status: u16,
        timeout: Duration,
        max_latency: Option<Duration>,
    },
    /// Breaching: the query's value compared with `threshold` holds.
    Prometheus {
        url: String,
        query: String,
        threshold: f64,
        comparison: Comparison,
    },
    /// With a threshold: the number the command prints, compared; without: a non-zero exit.
    Command {
        run: String,
        threshold: Option<f64>,
        comparison: Comparison,
    },
    /// State pushed from outside (CloudWatch or Alertmanager events to `ferry serve`).
    External,
}

impl AlarmSource {
    /// `http`, `prometheus`, `command` or `external`.
    pub fn kind(&self) -> &'static str {
        match self {
            AlarmSource::Http { .. } => "http",
            AlarmSource::Prometheus { .. } => "prometheus",
            AlarmSource::Command { .. } => "command",
            AlarmSource::External => "external",
        }
    }
}

/// How a value is compared with a threshold; breaching when `value <op> threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    #[default]
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThan => value > threshold,
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }

    /// `>`, `>=`, `<` or `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::GreaterThan => ">",
            Comparison::GreaterThanOrEqual => ">=",
            Comparison::LessThan => "<",
            Comparison::LessThanOrEqual => "<=",
        }
    }

    /// The CloudWatch `ComparisonOperator` name.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Comparison::GreaterThan => "GreaterThanThreshold",
            Comparison::GreaterThanOrEqual => "GreaterThanOrEqualToThreshold",
            Comparison::LessThan => "LessThanThreshold",
            Comparison::LessThanOrEqual => "LessThanOrEqualToThreshold",
        }
    }
}

/// CloudWatch's `TreatMissingData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingData {
    #[default]
    Missing,
    Breaching,
    NotBreaching,
    Ignore,
}

impl MissingData {
    /// The yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingData::Missing => "missing",
            MissingData::Breaching => "breaching",
            MissingData::NotBreaching => "not_breaching",
            MissingData::Ignore => "ignore",
        }
    }

    /// The CloudWatch `TreatMissingData` value.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            MissingData::Missing => "missing",
            MissingData::Breaching => "breaching",
            MissingData::NotBreaching => "notBreaching",
            MissingData::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollback {
    pub validate: RollbackValidate,
    /// A failure rolls the deployment back by itself. When false, only `ferry rollback`
    /// does. Default true.
    pub automatic: bool,
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            validate: RollbackValidate::default(),
            automatic: true,
        }
    }
}

/// How a rollback is checked: wait `stabilize`, then alarms clear, health 2xx and the
/// running version matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackValidate {
    /// Default 60s.
    pub stabilize: Duration,
    /// How long the health URL may take to answer 2xx after a rollback. Default 30s.
    pub health_timeout: Duration,
}

impl Default for RollbackValidate {
    fn default() -> Self {
        RollbackValidate {
            stabilize: Duration::from_secs(60),
            health_timeout: Duration::from_secs(30),
        }
    }
}

/// The event kinds a notification channel gets when its `events:` list is empty: the
/// seed's notification messages (§3.6.2) and the alarms on the pipeline itself (§9.3).
pub const DEFAULT_NOTIFY_EVENTS: &[&str] = &[
    "deployment_started",
    "deployment_succeeded",
    "deployment_failed",
    "approval_requested",
    "rollback_initiated",
    "rollback_succeeded",
    "rollback_failed",
    "incident_opened",
    "pipeline_alarm",
];

/// Every event kind a channel's `events:` may name (the core's `EventKind`s, checked by a
/// test in `ferry-core`, plus `pipeline_alarm`).
pub const EVENT_KINDS: &[&str] = &[
    "run_queued",
    "run_started",
    "run_succeeded",
    "run_failed",
    "run_cancelled",
    "run_superseded",
    "run_resumed",
    "stage_started",
    "stage_succeeded",
    "stage_failed",
    "stage_cancelled",
    "step_started",
    "step_succeeded",
    "step_failed",
    "step_retried",
    "gate_passed",
    "gate_failed",
    "artifact_built",
    "deployment_started",
    "deployment_succeeded",
    "deployment_failed",
    "approval_requested",
    "approval_granted",
    "approval_rejected",
    "approval_timed_out",
    "approval_reminder",
    "approval_voided",
    "approval_refused",
    "rollback_initiated",
    "rollback_succeeded",
    "rollback_failed",
    "incident_opened",
    "incident_resolved",
    "infrastructure_assessed",
    "alarm_state_changed",
    "subscription_confirmation_required",
    "freeze_set",
    "freeze_lifted",
    "run_held",
    "window_opened",
    "break_glass_requested",
    "break_glass_confirmed",
    "pipeline_alarm",
];

/// How ferry talks TLS to an SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No TLS at all: only for a relay on this machine (port 25).
    None,
}

/// A channel the events it wants are sent to, through the durable outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Notification {
    Webhook {
        /// The channel's id in `ferry notify` and the outbox (default `webhook-<hash>`).
        name: Option<String>,
        url: String,
        /// Event kinds sent; empty = [`DEFAULT_NOTIFY_EVENTS`].
        events: Vec<String>,
    },
    Slack {
        /// The channel's id (default `slack-<hash>`).
        name: Option<String>,
        /// The incoming webhook's URL (a secret: never printed).
        url: String,
        /// Event kinds sent; empty = [`DEFAULT_NOTIFY_EVENTS`].
        events: Vec<String>,
    },
    Email {
        /// The channel's id (default `email-<hash>`).
        name: Option<String>,
        /// `host:port` of the SMTP server (or a `smtp://` / `smtps://` URL).
        smtp: String,
        from: String,
        to: Vec<String>,
        /// `starttls` (default), `tls` (`smtps://`) or `none`.
        tls: SmtpTls,
        /// The SMTP user name, if the server wants one.
        username: Option<String>,
        /// The environment variable holding the SMTP password (with `username`).
        password_env: Option<String>,
        /// Event kinds sent; empty = [`DEFAULT_NOTIFY_EVENTS`].
        events: Vec<String>,
    },
    Github {
        /// The channel's id (default `github-<hash>`).
        name: Option<String>,
        /// `owner/name`.
        repo: String,
        /// The environment variable holding the token. Default `GITHUB_TOKEN`.
        token_env: String,
        /// The API's base URL. Default `https://api.github.com` (GitHub Enterprise:
        /// `https://HOST/api/v3`).
        api_url: String,
        /// Event kinds sent; empty = [`DEFAULT_NOTIFY_EVENTS`].
        events: Vec<String>,
    },
}

impl Notification {
    /// `webhook`, `slack`, `email` or `github`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Webhook { .. } => "webhook",
            Notification::Slack { .. } => "slack",
            Notification::Email { .. } => "email",
            Notification::Github { .. } => "github",
        }
    }

    /// The event kinds listed in `events:` (empty: the defaults).
    pub fn events(&self) -> &[String] {
        match self {
            Notification::Webhook { events, .. }
            | Notification::Slack { events, .. }
            | Notification::Email { events, .. }
            | Notification::Github { events, .. } => events,
        }
    }

    /// The event kinds this channel gets: its `events:`, or [`DEFAULT_NOTIFY_EVENTS`].
    pub fn wanted(&self) -> Vec<String> {
        let events = self.events();
        if events.is_empty() {
            DEFAULT_NOTIFY_EVENTS
                .iter()
                .map(|k| (*k).to_string())
                .collect()
        } else {
            events.to_vec()
        }
    }

    /// Whether an event of kind `kind` goes to this channel.
    pub fn wants(&self, kind: &str) -> bool {
        let events = self.events();
        if events.is_empty() {
            DEFAULT_NOTIFY_EVENTS.contains(&kind)
        } else {
            events.iter().any(|e| e == kind)
        }
    }

    /// The channel's stable id: its `name:`, or `<kind>-<hash of its target>` (the
    /// target itself may hold a secret, so it is not shown). Its outbox cursor and
    /// deliveries are kept under this id.
    pub fn id(&self) -> String {
        let (name, target) = match self {
            Notification::Webhook { name, url, .. } | Notification::Slack { name, url, .. } => {
                (name, url.clone())
            }
            Notification::Email { name, smtp, to, .. } => {
                (name, format!("{smtp} {}", to.join(",")))
            }
            Notification::Github {
                name,
                repo,
                api_url,
                ..
            } => (name, format!("{api_url} {repo}")),
        };
        match name {
            Some(n) => n.clone(),
            None => format!("{}-{}", self.kind(), short_hash(&target)),
        }
    }
}

/// A short stable hash (FNV-1a, 64 bits, the high 32 in hex) of a text.
pub fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h >> 32)
}

/// Where an email channel connects: `(host, port, tls)` from its `smtp:` text and `tls:`
/// key. `smtps://HOST` means TLS from the first byte whatever `tls:` says; a missing port
/// is 465 with TLS, 587 with STARTTLS, 25 without TLS. The error says what is wrong.
pub fn smtp_endpoint(smtp: &str, tls: SmtpTls) -> Result<(String, u16, SmtpTls), String> {
    let (rest, tls) = if let Some(r) = smtp.strip_prefix("smtps://") {
        (r, SmtpTls::Tls)
    } else if let Some(r) = smtp.strip_prefix("smtp://") {
        (r, tls)
    } else if smtp.contains("://") {
        return Err("its scheme is not `smtp://` or `smtps://`".into());
    } else {
        (smtp, tls)
    };
    let rest = rest.trim_end_matches('/');
    let default_port = match tls {
        SmtpTls::Tls => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(port) if port > 0 => (h, port),
            _ => return Err(format!("`{p}` is not a port number (1-65535)")),
        },
        None => (rest, default_port),
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err("it names no host".into());
    }
    Ok((host.to_string(), port, tls))
}
