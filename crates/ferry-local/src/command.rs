//! `CommandDeployer`: the `command` deploy kind. The user's own commands (kubectl, helm,
//! terraform, cdk …) deploy and roll back; ferry records which version it deployed in
//! `<state_dir>/<env>.version`, or asks the `current_version` command.

use crate::process::{ProcessExecutor, capture, explain_exit};
use ferry_config::CommandDeploy;
use ferry_core::gates::ExitObservation;
use ferry_engine::ports::{DeployRequest, Deployer, Executor, PortError, PortResult, StepRequest};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deploy and rollback commands without their own timeout get this one.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The `current_version` command gets this long.
const VERSION_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Deploys with user commands (see module docs).
#[derive(Debug, Clone)]
pub struct CommandDeployer {
    environment: String,
    run: String,
    rollback: Option<String>,
    current_version: Option<String>,
    timeout: Duration,
    project_root: PathBuf,
    state_dir: PathBuf,
    executor: ProcessExecutor,
}

impl CommandDeployer {
    /// A deployer of `environment`. `current_version` and `rollback` commands run in
    /// `project_root`; the deployed version is recorded in `<state_dir>/<environment>.version`.
    pub fn new(
        cfg: &CommandDeploy,
        environment: &str,
        project_root: &Path,
        state_dir: &Path,
    ) -> Self {
        CommandDeployer {
            environment: environment.to_owned(),
            run: cfg.run.clone(),
            rollback: cfg.rollback.clone(),
            current_version: cfg.current_version.clone(),
            timeout: cfg.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            project_root: project_root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            executor: ProcessExecutor::new(),
        }
    }

    /// Where the deployed version is recorded.
    pub fn version_file(&self) -> PathBuf {
        self.state_dir.join(format!("{}.version", self.environment))
    }

    /// Where rollback commands write their output.
    pub fn rollback_log(&self) -> PathBuf {
        self.state_dir
            .join(format!("{}.rollback.log", self.environment))
    }

    /// Runs the `rollback` command to put `version` back (with `FERRY_VERSION` set to it),
    /// in the project folder, logging to [`Self::rollback_log`]; records the version.
    pub fn rollback(&self, version: &str, env: &BTreeMap<String, String>) -> PortResult<()> {
        let Some(command) = &self.rollback else {
            return Err(PortError::permanent(format!(
                "environment `{}` has no `deploy.command.rollback`; add one so ferry can roll it back",
                self.environment
            )));
        };
        let mut env = env.clone();
        env.insert("FERRY_VERSION".to_owned(), version.to_owned());
        let log = self.rollback_log();
        self.run_command("rollback", command, &self.project_root, &env, &log)?;
        self.record(version)
    }

    fn run_command(
        &self,
        what: &str,
        command: &str,
        cwd: &Path,
        env: &BTreeMap<String, String>,
        log: &Path,
    ) -> PortResult<()> {
        let exit = self.executor.run(&StepRequest {
            command: command.to_owned(),
            cwd: cwd.to_path_buf(),
            env: env.clone(),
            timeout: self.timeout,
            log: log.to_path_buf(),
        });
        let env_name = &self.environment;
        let log = log.display();
        let why = match exit.how {
            ExitObservation::Code(0) => return Ok(()),
            ExitObservation::Code(c) => match explain_exit(c) {
                Some(hint) => format!("exited with status {c} ({hint})"),
                None => format!("exited with status {c}"),
            },
            ExitObservation::Signal(s) => format!("was killed by signal {s}"),
            ExitObservation::TimedOut { after_secs } => {
                format!("timed out after {after_secs}s; its process group was killed")
            }
            ExitObservation::NotStarted(why) => format!("could not start: {why}"),
        };
        Err(PortError::permanent(format!(
            "{what} command for `{env_name}` {why}; see `{log}`"
        )))
    }

    fn record(&self, version: &str) -> PortResult<()> {
        let path = self.version_file();
        let tmp = self
            .state_dir
            .join(format!(".{}.version.tmp", self.environment));
        fs::create_dir_all(&self.state_dir)
            .and_then(|()| fs::write(&tmp, format!("{version}\n")))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| PortError::permanent(format!("cannot write `{}`: {e}", path.display())))
    }
}

impl Deployer for CommandDeployer {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()> {
        self.run_command("deploy", &self.run, &req.cwd, &req.env, &req.log)?;
        self.record(&req.version)
    }

    /// The `rollback` command when there is one; otherwise the deploy command again,
    /// with the target version's variables and artifact.
    fn rollback(&self, req: &DeployRequest) -> PortResult<()> {
        match &self.rollback {
            Some(command) => {
                self.run_command("rollback", command, &self.project_root, &req.env, &req.log)?;
                self.record(&req.version)
            }
            None => self.deploy(req),
        }
    }

    fn current_version(&self) -> PortResult<Option<String>> {
        if let Some(command) = &self.current_version {
            let out = capture(
                command,
                &self.project_root,
                &BTreeMap::new(),
                VERSION_COMMAND_TIMEOUT,
            );
            let fail = |why: String| {
                let stderr = out.stderr.trim();
                if stderr.is_empty() {
                    format!("current_version command for `{}` {why}", self.environment)
                } else {
                    format!(
                        "current_version command for `{}` {why}: {}",
                        self.environment,
                        stderr.lines().last().unwrap_or(stderr)
                    )
                }
            };
            return match &out.how {
                ExitObservation::Code(0) => {
                    let v = out.stdout.trim();
                    Ok((!v.is_empty()).then(|| v.to_owned()))
                }
                ExitObservation::Code(c @ (126 | 127)) => Err(PortError::permanent(fail(format!(
                    "exited with status {c} ({})",
                    explain_exit(*c).unwrap_or("")
                )))),
                ExitObservation::Code(c) => Err(PortError::transient(fail(format!(
                    "exited with status {c}"
                )))),
                ExitObservation::Signal(s) => Err(PortError::transient(fail(format!(
                    "was killed by signal {s}"
                )))),
                ExitObservation::TimedOut { after_secs } => Err(PortError::transient(fail(
                    format!("timed out after {after_secs}s"),
                ))),
                ExitObservation::NotStarted(why) => Err(PortError::permanent(fail(format!(
                    "could not start: {why}"
                )))),
            };
        }
        let path = self.version_file();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let v = text.trim();
                Ok((!v.is_empty()).then(|| v.to_owned()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PortError::permanent(format!(
                "cannot read `{}`: {e}",
                path.display()
            ))),
        }
    }
}
