//! The `ferry` binary: parses the command line, runs one command, maps its outcome to a
//! documented exit code (`ferry_api::exit`).

mod commands;
mod context;
mod demo;
mod diff;
mod error;
mod findings;
mod guard;
mod log;
mod notify;
mod output;
mod progress;
mod recovery;
mod remote;
mod report;
mod sample;
mod scan;
mod serve;
mod shared;
mod signals;
mod sns;
mod step;
mod synth;
mod views;
mod windows;

use clap::{Parser, Subcommand};
use context::Project;
use error::CliError;
use ferry_api::exit;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0   success (for `run`: the run succeeded)
  1   the run failed, was rejected, timed out or was cancelled
  2   the command line is wrong
  3   ferry.yml is missing or invalid
  4   the state database cannot be used (locked, read-only, newer schema)
  5   not found (run, step, commit)
  6   conflict (e.g. approving a run that is not waiting for approval)
  7   the machine refused something ferry needs (no git repository, unwritable folder)
  8   not allowed: the approval rule does not let this person decide
  70  a bug in ferry
  130 a second Ctrl-C (the first cancels the run cleanly)";

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Continuous deployment: build, tests and gates, then test → staging → production with approval, health checks and rollback.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The pipeline file; its folder is the project folder.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "ferry.yml",
        env = "FERRY_FILE"
    )]
    file: PathBuf,
    /// Where ferry keeps its state (default: `.ferry/` next to the pipeline file).
    #[arg(long, global = true, env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How log lines (progress, server logs, warnings) are written: `text` for people,
    /// `json` for one JSON object per line (timestamp, level, message, run,
    /// environment, step). A command's `--json` output is not affected.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = log::LogFormat::Text)]
    log_format: log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Makes a sample repository and takes it through test → staging → production on
    /// this machine, approval included. Needs only ferry and git.
    Demo {
        /// Make the sample repository here instead of a temporary folder (kept).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave the sample services running when the demo ends.
        #[arg(long)]
        keep: bool,
    },
    /// Writes a commented starter ferry.yml.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Checks ferry.yml and reports every problem with its line and column.
    Validate,
    /// Runs the pipeline once for a commit, in the foreground.
    Run {
        /// The commit (SHA, branch, tag); default: the tip of `source.branch`.
        #[arg(long)]
        commit: Option<String>,
        /// The hotfix lane: straight to the last environment (test and staging are
        /// skipped), with at least two approvals there and its monitor window doubled.
        /// Only when ferry.yml says `hotfix: { allowed: true }`.
        #[arg(long)]
        hotfix: bool,
    },
    /// What is deployed where, and the runs in progress.
    Status,
    /// The notification outbox: deliveries pending and dead letters, and sending them
    /// again.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Past runs and deployments.
    History {
        /// Only deployments of this environment.
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The DORA measures of an environment: deployment frequency, lead time for
    /// changes, time to restore, change failure rate, deployment success rate.
    Report {
        /// The window: a duration back from now (`7d`, `30d`, `90d`, `12h`) or a UTC
        /// date (`2026-11-01`).
        #[arg(long, default_value = "30d")]
        since: String,
        /// The environment (default: the last one, production).
        #[arg(long)]
        env: Option<String>,
    },
    /// Step logs of a run.
    Logs {
        /// The run number.
        run: i64,
        /// `stage/step`, a step name, or a stage name; default: every step.
        step: Option<String>,
    },
    /// The security findings stored with a run: severity, how the gate treated each
    /// (blocks, warns, informs, allowlisted, expired), tool, id and aliases, where.
    Findings {
        /// The run number.
        run: i64,
        /// Also write them as SARIF 2.1.0 to this file (for GitHub code scanning).
        #[arg(long, value_name = "FILE")]
        sarif: Option<std::path::PathBuf>,
    },
    /// Approves a run waiting for approval (the production gate).
    Approve {
        run: i64,
        /// The environment, when the run waits for more than one.
        #[arg(long)]
        env: Option<String>,
        /// Who approves (default: $FERRY_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Rejects a run waiting for approval; the run fails and nothing is deployed.
    Reject {
        run: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Rolls an environment back through the same orchestrator as automatic rollbacks:
    /// to its last known good version, or to `--to VERSION` (one that succeeded there).
    Rollback {
        env: String,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Roll back even a rollback-unsafe deployment (its infrastructure change replaced
        /// or removed a stateful resource, or changed a migration): the data it holds may
        /// be lost or the schema incompatible. Without it such a rollback is refused.
        #[arg(long)]
        accept_data_loss: bool,
    },
    /// Pushes an alarm state (as CloudWatch or Alertmanager would). ALARM rolls back a
    /// deployment still in its environment's `watch` period.
    Alarm {
        name: String,
        /// OK, ALARM or INSUFFICIENT_DATA.
        #[arg(long)]
        state: String,
        #[arg(long, default_value = "pushed with ferry alarm")]
        reason: String,
    },
    /// Closes the incident that holds an environment after a failed rollback.
    Resolve {
        env: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Freezes an environment: runs reaching it are held (not failed) until the freeze
    /// ends or is lifted, then go on by themselves. Rollbacks are never held.
    Freeze {
        env: String,
        /// When it ends: a duration (`2h`, `3d`), an instant (`2026-12-24T08:00:00Z`) or a
        /// local time in the environment's `windows.timezone` (`2026-12-24 08:00`).
        #[arg(long)]
        until: String,
        /// Why (recorded and shown to everyone held).
        #[arg(long)]
        reason: String,
        /// Who freezes (default: $FERRY_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Lifts the freezes of an environment; held runs go on when the window allows.
    Unfreeze {
        env: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Break-glass: lets one run through a closed deployment window or a freeze. One
    /// person requests it with a reason; a second, different person confirms it with
    /// `--confirm`. Both are recorded.
    Override {
        run: i64,
        /// The environment (default: the one the run is held at).
        #[arg(long)]
        env: Option<String>,
        /// Why the window must be broken (required to request).
        #[arg(long, required_unless_present = "confirm")]
        reason: Option<String>,
        /// Confirm someone else's request (the second person).
        #[arg(long, conflicts_with = "reason")]
        confirm: bool,
        /// Who requests or confirms (default: $FERRY_USER or $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// The infrastructure files changed between two commits, the semantic difference of
    /// their synthesized CloudFormation templates, and the verdict: no change, meaningful
    /// (the infrastructure deploy runs) or rollback-unsafe (a stateful resource replaced
    /// or removed, or a migration). Needs an `infrastructure` section in ferry.yml.
    Diff {
        /// The commit to compare from; default: the version `--env` runs now.
        from: Option<String>,
        /// The commit to compare to; default: HEAD.
        to: Option<String>,
        /// The environment whose deployed version is FROM; default: the last one.
        #[arg(long)]
        env: Option<String>,
    },
    /// Runs ferry as a service: GitHub push webhooks start runs, alarm events roll
    /// back, and a JSON API shows and approves runs. Needs FERRY_WEBHOOK_SECRET and
    /// FERRY_API_TOKEN in the environment (or files named by `server.webhook_secret_file`
    /// and `server.api_token_file` in ferry.yml).
    Serve {
        /// The address to listen on (`127.0.0.1:0` picks a free port, printed on start);
        /// default `server.listen` from ferry.yml, else 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// The security gate on its own: cfn-guard policies (the seed's rules built in) and
    /// checks on CloudFormation templates, dependency audits (npm audit, cargo audit,
    /// pip-audit JSON), the allowlist. CRITICAL and HIGH findings block (exit 1).
    /// Reads `build.gates.security` from ferry.yml when there is one; flags replace it.
    Scan {
        /// CloudFormation templates (JSON or YAML), paths or globs (repeatable).
        #[arg(long = "templates", value_name = "GLOB")]
        templates: Vec<String>,
        /// cfn-guard rule files added to the built-in pack (repeatable).
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<String>,
        /// Audit reports (`npm audit --json`, `cargo audit --json`, `pip-audit -f json`).
        #[arg(long = "audit", value_name = "FILE")]
        audits: Vec<String>,
        /// Without the built-in rules (only `--rules`).
        #[arg(long)]
        no_builtin_rules: bool,
        /// Also write the findings as SARIF 2.1.0 to FILE.
        #[arg(long, value_name = "FILE")]
        sarif: Option<PathBuf>,
    },
    /// Writes what runs the pipeline elsewhere: `ferry synth aws --out DIR` writes the
    /// CloudFormation stacks for AWS CodePipeline and CodeBuild.
    Synth {
        #[command(subcommand)]
        target: synth::Target,
    },
    /// Runs one step of ferry.yml where a CI system runs it, one process per step: the
    /// CodeBuild projects of `ferry synth aws` call it for each step of their stage.
    /// STAGE is `build` or an environment; STEP a step's name, or one of ferry's own:
    /// `@gates`, `@artifact` (build), `@infrastructure`, `@deploy`, `@monitor`
    /// (environments). The stage's record is kept in `.ferry/step/` in the workspace;
    /// deployments go to the DynamoDB table named by FERRY_DEPLOYMENTS_TABLE (ferry
    /// built with `--features aws`), else to the project's store. Exit 0 when the step
    /// passed, 1 when it failed.
    Step {
        /// `STAGE/STEP`, e.g. `build/unit`, `build/@gates`, `production/@deploy`.
        spec: String,
    },
    /// A tiny HTTP service the demo deploys.
    #[command(name = "__sample-service", hide = true)]
    SampleService {
        #[arg(long)]
        port: u16,
    },
    /// Checks a deployed sample service and writes a JUnit report (the demo's tests).
    #[command(name = "__smoke", hide = true)]
    Smoke {
        url: String,
        #[arg(long)]
        junit: PathBuf,
        /// The text the home page must contain.
        #[arg(long)]
        expect: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum NotifyAction {
    /// Counts per channel, then the deliveries not yet delivered (dead letters first).
    List {
        /// Only dead letters.
        #[arg(long)]
        dead: bool,
        /// Only this channel (its id: `name:` in ferry.yml, or as `ferry notify list` shows).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Sends dead letters again now (all, a channel's, or the deliveries with these ids),
    /// as a fresh round of attempts. Exit 1 if some are still not delivered.
    Retry {
        /// Only this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Delivery ids (`ferry notify list`); also pending ones, sent at once.
        ids: Vec<i64>,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    log::set_format(cli.log_format);
    let as_json = cli.json;
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if as_json {
                output::json(&ferry_api::Error {
                    error: e.message.clone(),
                    exit_code: e.code,
                });
            }
            log::stderr(
                log::Level::Error,
                &log::Ctx::default(),
                &format!("error: {}", e.message),
            );
            e.code
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32, CliError> {
    let project = || Project::locate(&cli.file, cli.state_dir.as_deref());
    let j = cli.json;
    match &cli.command {
        Command::Demo { dir, keep } => demo::run(dir.as_deref(), *keep, j),
        Command::Init { force } => commands::init(&project()?, *force, j),
        Command::Validate => commands::validate(&project()?, j),
        Command::Run { commit, hotfix } => {
            let cancel = signals::cancel_on_interrupt();
            commands::run(&project()?, commit.as_deref(), *hotfix, j, cancel)
        }
        Command::Status => {
            let p = project()?;
            if let Some(r) = remote::configured(&p)?
                && let Some(code) = remote::status(&r, j)?
            {
                return Ok(code);
            }
            commands::status(&p, j)
        }
        Command::Notify { action } => match action {
            NotifyAction::List {
                dead,
                channel,
                limit,
            } => notify::list(&project()?, *dead, channel.as_deref(), *limit, j),
            NotifyAction::Retry { channel, ids } => {
                notify::retry(&project()?, channel.as_deref(), ids, j)
            }
        },
        Command::History { env, limit } => {
            commands::history(&project()?, env.as_deref(), *limit, j)
        }
        Command::Report { since, env } => report::command(&project()?, since, env.as_deref(), j),
        Command::Logs { run, step } => commands::logs(&project()?, *run, step.as_deref(), j),
        Command::Findings { run, sarif } => {
            findings::command(&project()?, *run, sarif.as_deref(), j)
        }
        Command::Approve { run, env, by } => {
            let p = project()?;
            if let Some(r) = remote::configured(&p)?
                && let Some(code) =
                    remote::decide(&r, *run, env.as_deref(), by.as_deref(), None, j)?
            {
                return Ok(code);
            }
            commands::decide(&p, *run, env.as_deref(), by.as_deref(), None, j)
        }
        Command::Reject {
            run,
            reason,
            env,
            by,
        } => {
            let p = project()?;
            if let Some(r) = remote::configured(&p)?
                && let Some(code) =
                    remote::decide(&r, *run, env.as_deref(), by.as_deref(), Some(reason), j)?
            {
                return Ok(code);
            }
            commands::decide(&p, *run, env.as_deref(), by.as_deref(), Some(reason), j)
        }
        Command::Rollback {
            env,
            to,
            reason,
            accept_data_loss,
        } => {
            let p = project()?;
            if let Some(r) = remote::configured(&p)?
                && let Some(code) = remote::rollback(
                    &r,
                    env,
                    to.as_deref(),
                    reason.as_deref(),
                    None,
                    *accept_data_loss,
                    j,
                )?
            {
                return Ok(code);
            }
            let cancel = signals::cancel_on_interrupt();
            // The rollback's events go out while it works (the outbox keeps the rest).
            let notifier = notify::start_for(&p);
            let done = recovery::rollback(
                &p,
                env,
                to.as_deref(),
                reason.as_deref(),
                *accept_data_loss,
                j,
                cancel,
            );
            notify::finish(notifier);
            done
        }
        Command::Alarm {
            name,
            state,
            reason,
        } => {
            let cancel = signals::cancel_on_interrupt();
            let p = project()?;
            let notifier = notify::start_for(&p);
            let done = recovery::alarm(&p, name, state, reason, j, cancel);
            notify::finish(notifier);
            done
        }
        Command::Resolve { env, by } => recovery::resolve(&project()?, env, by.as_deref(), j),
        Command::Freeze {
            env,
            until,
            reason,
            by,
        } => windows::freeze(&project()?, env, until, reason, by.as_deref(), j),
        Command::Unfreeze { env, by } => windows::unfreeze(&project()?, env, by.as_deref(), j),
        Command::Override {
            run,
            env,
            reason,
            confirm,
            by,
        } => windows::override_run(
            &project()?,
            *run,
            env.as_deref(),
            reason.as_deref(),
            *confirm,
            by.as_deref(),
            j,
        ),
        Command::Diff { from, to, env } => diff::run(
            &project()?,
            from.as_deref(),
            to.as_deref(),
            env.as_deref(),
            j,
        ),
        Command::Serve { listen } => serve::serve(&project()?, listen.as_deref()),
        Command::Scan {
            templates,
            rules,
            audits,
            no_builtin_rules,
            sarif,
        } => scan::command(
            &cli.file,
            &scan::Flags {
                templates: templates.clone(),
                rules: rules.clone(),
                audits: audits.clone(),
                no_builtin_rules: *no_builtin_rules,
                sarif: sarif.clone(),
            },
            j,
        ),
        Command::Synth { target } => synth::command(&project()?, target, j),
        Command::Step { spec } => step::command(&project()?, spec, j),
        Command::SampleService { port } => sample::serve(*port),
        Command::Smoke { url, junit, expect } => sample::smoke(url, junit, expect.as_deref()),
    }
}
