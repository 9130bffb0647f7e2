//! Finding the project (its `ferry.yml`, repository and state folder), opening the store
//! and wiring the local adapters to the engine's ports.

use crate::error::{CliError, CliResult};
use ferry_config::Pipeline;
use ferry_core::Timestamp;
use ferry_engine::ports::{Clock, DeployerFactory};
use ferry_store::SqliteStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the pipeline file, the repository and the state live.
#[derive(Debug, Clone)]
pub struct Project {
    /// The pipeline file, as given (`ferry.yml` by default).
    pub file: PathBuf,
    /// The folder the pipeline file is in: relative paths in it (release roots) are
    /// relative to this folder, and the repository is found from here.
    pub root: PathBuf,
    /// `.ferry/` next to the pipeline file unless `--state-dir` says otherwise.
    pub state: PathBuf,
}

impl Project {
    pub fn locate(file: &Path, state_dir: Option<&Path>) -> CliResult<Project> {
        let abs = if file.is_absolute() {
            file.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| CliError::environment(format!("cannot read the current folder: {e}")))?
                .join(file)
        };
        let root = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let state = match state_dir {
            Some(s) if s.is_absolute() => s.to_path_buf(),
            Some(s) => std::env::current_dir()
                .map(|d| d.join(s))
                .unwrap_or_else(|_| s.to_path_buf()),
            None => root.join(".ferry"),
        };
        Ok(Project {
            file: abs,
            root,
            state,
        })
    }

    /// Reads and validates the pipeline file; every problem in one error.
    pub fn pipeline(&self) -> CliResult<Pipeline> {
        self.load().map(|(p, _)| p)
    }

    /// The pipeline and the text it was read from (recorded in release sets).
    pub fn load(&self) -> CliResult<(Pipeline, String)> {
        let text = self.read_text()?;
        let shown = self.shown_file();
        let parsed = ferry_config::parse(&text, &shown).map_err(|diags| {
            let n = diags.len();
            let body: Vec<String> = diags.iter().map(ToString::to_string).collect();
            CliError::config(format!(
                "{}\n{n} problem{} in `{shown}`; fix {} and run `ferry validate` again",
                body.join("\n"),
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ))
        })?;
        if !crate::log::installed() {
            crate::log::install(&parsed);
        }
        Ok((parsed, text))
    }

    /// The pipeline file's text, with an error that says what is wrong with the file.
    pub fn read_text(&self) -> CliResult<String> {
        let shown = self.shown_file();
        if self.file.is_dir() {
            return Err(CliError::config(format!(
                "`{shown}` is a folder, not a pipeline file; pass `--file PATH` to the pipeline file"
            )));
        }
        let text = match std::fs::read(&self.file) {
            Ok(b) => String::from_utf8(b).map_err(|_| {
                CliError::config(format!("`{shown}` is not UTF-8 text; save it as UTF-8"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::config(format!(
                    "no pipeline file at `{shown}`; run `ferry init` to write a starter, or pass `--file PATH`"
                )));
            }
            Err(e) => return Err(CliError::config(format!("cannot read `{shown}`: {e}"))),
        };
        Ok(text)
    }

    /// The pipeline file's path as people typed it (relative to the current folder when
    /// possible).
    pub fn shown_file(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        self.file
            .strip_prefix(&cwd)
            .unwrap_or(&self.file)
            .display()
            .to_string()
    }

    pub fn db_path(&self) -> PathBuf {
        self.state.join("ferry.db")
    }

    pub fn open_store(&self) -> CliResult<SqliteStore> {
        let timeout = std::env::var("FERRY_BUSY_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(5));
        let store = SqliteStore::open_with_busy_timeout(&self.db_path(), timeout)?;
        // Secrets are redacted from what the store writes (DESIGN invariant 8); they come
        // from the pipeline file, read here if the command has not read it yet.
        if !crate::log::installed() {
            let _ = self.load();
        }
        store.set_redactor(crate::log::redactor());
        Ok(store)
    }

    /// The deployer factory of this project: the local kinds, and the AWS ones when
    /// ferry is built with `aws`.
    pub fn factory(&self) -> Deployers {
        Deployers::new(ferry_local::LocalDeployers {
            project: self.root.clone(),
            state: self.state.clone(),
        })
    }

    /// What each environment's deployer says is running now (`None` when nothing is, or
    /// when it cannot tell).
    pub fn running(&self, p: &Pipeline) -> BTreeMap<String, Option<String>> {
        let f = self.factory();
        p.environments
            .iter()
            .map(|e| {
                let v = f
                    .deployer(&e.name, &e.deploy)
                    .ok()
                    .and_then(|d| d.current_version().ok())
                    .flatten();
                (e.name.clone(), v)
            })
            .collect()
    }
}

/// The `ferry` binary's [`DeployerFactory`]: `release` and `command` are the local
/// runtime's ([`ferry_local::LocalDeployers`]); `s3` and `cloudformation` are
/// `ferry-aws`'s `S3Deployer` (given the artifact's files, unpacked from its tar) and
/// `CloudFormationDeployer` when the binary is built with
/// the `aws` feature (AWS settings from the standard environment: `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials, profiles), and otherwise a permanent error saying
/// how to build ferry with AWS support (nothing is deployed).
pub struct Deployers {
    local: ferry_local::LocalDeployers,
    /// Connected on the first AWS deploy kind asked for, then shared.
    #[cfg(feature = "aws")]
    aws: std::sync::OnceLock<Result<ferry_aws::Aws, ferry_engine::ports::PortError>>,
}

impl Deployers {
    /// Wraps the local factory.
    pub fn new(local: ferry_local::LocalDeployers) -> Deployers {
        Deployers {
            local,
            #[cfg(feature = "aws")]
            aws: std::sync::OnceLock::new(),
        }
    }

    #[cfg(feature = "aws")]
    fn aws(&self) -> ferry_engine::ports::PortResult<&ferry_aws::Aws> {
        self.aws
            .get_or_init(|| ferry_aws::Aws::connect(&ferry_aws::Settings::default()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl DeployerFactory for Deployers {
    fn deployer(
        &self,
        environment: &str,
        deploy: &ferry_config::Deploy,
    ) -> ferry_engine::ports::PortResult<Box<dyn ferry_engine::ports::Deployer + '_>> {
        #[cfg(feature = "aws")]
        match deploy {
            ferry_config::Deploy::S3(s) => {
                // The local artifact is one tar file: S3 gets its files.
                return Ok(Box::new(ferry_local::UnpackedArtifact {
                    inner: ferry_aws::s3::S3Deployer::new(
                        self.aws()?,
                        &s.bucket,
                        &s.prefix_for(environment),
                    ),
                    scratch: self.local.state.join("tmp"),
                }));
            }
            ferry_config::Deploy::CloudFormation(c) => {
                return Ok(Box::new(
                    ferry_aws::cloudformation::CloudFormationDeployer::new(
                        self.aws()?,
                        environment,
                        c,
                    ),
                ));
            }
            _ => {}
        }
        if deploy.needs_aws() {
            return Err(ferry_local::needs_aws(environment, deploy));
        }
        self.local.deployer(environment, deploy)
    }
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// `host:pid@start`, the lease holder's and run driver's name (see
/// `ferry_local::LocalLiveness`).
pub fn holder() -> String {
    ferry_local::holder_name(&ferry_local::LocalLiveness::here().host)
}

/// Who is approving: `--by`, else `$FERRY_USER`, `$USER`, `$LOGNAME`.
pub fn user(by: Option<&str>) -> String {
    by.map(str::to_string)
        .or_else(|| std::env::var("FERRY_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
