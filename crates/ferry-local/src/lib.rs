//! ferry's local runtime: the adapters that implement the engine's ports on one machine.
//!
//! - [`ProcessExecutor`] runs steps as `/bin/sh -c` child processes, one process group
//!   each, logged to a file, killed as a group on timeout.
//! - [`GitSource`] resolves revisions and writes a commit's tree into a folder (libgit2).
//! - [`TarArtifactStore`] packs the artifact folder into a deterministic tar file with a
//!   SHA-256 digest.
//! - [`ReleaseDeployer`] and [`CommandDeployer`] are the `release` and `command` deploy
//!   kinds.
//! - [`http_get_status`] is the plain-HTTP client used by health checks and probes.
//! - [`LocalInfraInspector`] compares two commits' infrastructure (`ferry diff`, the
//!   infrastructure steps).

mod artifact;
mod command;
mod git;
pub mod http;
pub mod infra;
pub mod probe;
mod process;
mod redaction;
mod release;
pub mod report_files;
mod sys;

pub use artifact::{TarArtifactStore, file_digest};
pub use command::{CommandDeployer, DEFAULT_COMMAND_TIMEOUT};
pub use git::GitSource;
pub use http::{http_get, http_get_status, http_request};
pub use infra::LocalInfraInspector;
pub use process::{KILL_GRACE, ProcessExecutor, explain_exit};
pub use redaction::{redactor, set_redactor};
pub use release::{ReleaseDeployer, STOP_GRACE};

/// The local [`DeployerFactory`](ferry_engine::ports::DeployerFactory): `release`
/// sections become [`ReleaseDeployer`]s (roots relative to the project folder),
/// `command` sections [`CommandDeployer`]s (versions recorded under `state/envs`);
/// `s3` and `cloudformation` sections are a permanent error ([`needs_aws`]): the AWS
/// deployers live in `ferry-aws`, which the `ferry` binary wires in with its `aws`
/// feature.
pub struct LocalDeployers {
    pub project: std::path::PathBuf,
    pub state: std::path::PathBuf,
}

impl ferry_engine::ports::DeployerFactory for LocalDeployers {
    fn deployer(
        &self,
        environment: &str,
        deploy: &ferry_config::Deploy,
    ) -> ferry_engine::ports::PortResult<Box<dyn ferry_engine::ports::Deployer + '_>> {
        Ok(match deploy {
            ferry_config::Deploy::Release(r) => Box::new(ReleaseDeployer::new(r, &self.project)),
            ferry_config::Deploy::Command(c) => Box::new(CommandDeployer::new(
                c,
                environment,
                &self.project,
                &self.state.join("envs"),
            )),
            other => return Err(needs_aws(environment, other)),
        })
    }
}

/// The error for a deploy kind that needs ferry's AWS runtime (`s3`, `cloudformation`)
/// in a ferry built without it: permanent, naming the environment, the kind and the fix.
pub fn needs_aws(
    environment: &str,
    deploy: &ferry_config::Deploy,
) -> ferry_engine::ports::PortError {
    ferry_engine::ports::PortError::permanent(format!(
        "environment {environment} deploys with `{}:`, which needs ferry built with AWS support: cargo install --path crates/ferry-cli --features aws (or cargo build --features ferry-cli/aws)",
        deploy.kind()
    ))
}

/// Tells whether a `host:pid@start` holder on this machine is still running: `/proc/<pid>`
/// exists, is not a zombie, and started at `start` (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`), so a PID used again — a container restarted as PID 1, a reboot —
/// is not taken for the process that died. Holders on other hosts cannot be told; a
/// `host:pid` holder without a start time is judged by the PID alone.
pub struct LocalLiveness {
    pub host: String,
}

impl LocalLiveness {
    /// For this machine (hostname from `/proc/sys/kernel/hostname`).
    pub fn here() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        LocalLiveness { host }
    }
}

/// This process's holder name: `host:pid@start`.
pub fn holder_name(host: &str) -> String {
    let pid = std::process::id();
    match start_ticks(pid) {
        Some(start) => format!("{host}:{pid}@{start}"),
        None => format!("{host}:{pid}"),
    }
}

/// The state letter and start time of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name: state is the first (field 3),
    // start time the 20th (field 22).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.to_string();
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

impl ferry_engine::ports::Liveness for LocalLiveness {
    fn alive(&self, holder: &str) -> Option<bool> {
        // A holder with a deadline (a Lambda invocation) is judged by it, wherever it ran.
        if ferry_engine::ports::holder_deadline(holder).is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            return ferry_engine::ports::alive_by_deadline(holder, ferry_core::Timestamp(now));
        }
        let (host, process) = holder.rsplit_once(':')?;
        if host != self.host {
            return None;
        }
        let (pid, start) = match process.split_once('@') {
            Some((pid, start)) => (pid.parse::<u32>().ok()?, Some(start.parse::<u64>().ok()?)),
            None => (process.parse::<u32>().ok()?, None),
        };
        match stat(pid) {
            Some((state, started)) => {
                Some(state != "Z" && state != "X" && start.is_none_or(|s| s == started))
            }
            None => Some(false),
        }
    }
}

/// Wraps a deployer that syncs a folder (the S3 deployer) so it gets the local
/// artifact's files: a `TarArtifactStore` artifact (one tar file) is unpacked into a
/// scratch folder under `scratch` for the call, and removed after it. A location that is
/// already a folder, or no longer exists, is passed on as it is (the inner deployer says
/// what is missing).
pub struct UnpackedArtifact<D> {
    pub inner: D,
    pub scratch: std::path::PathBuf,
}

impl<D: ferry_engine::ports::Deployer> UnpackedArtifact<D> {
    fn with_files<T>(
        &self,
        req: &ferry_engine::ports::DeployRequest,
        f: impl FnOnce(&ferry_engine::ports::DeployRequest) -> ferry_engine::ports::PortResult<T>,
    ) -> ferry_engine::ports::PortResult<T> {
        use ferry_engine::ports::PortError;
        let location = std::path::Path::new(&req.artifact.location);
        if !location.is_file() {
            return f(req);
        }
        std::fs::create_dir_all(&self.scratch).map_err(|e| {
            PortError::permanent(format!("cannot create {}: {e}", self.scratch.display()))
        })?;
        let dir = tempfile::Builder::new()
            .prefix(".unpacked-")
            .tempdir_in(&self.scratch)
            .map_err(|e| {
                PortError::permanent(format!(
                    "cannot create a folder in {}: {e}",
                    self.scratch.display()
                ))
            })?;
        let unpacked = std::fs::File::open(location).and_then(|file| {
            let mut archive = tar::Archive::new(std::io::BufReader::new(file));
            archive.set_preserve_mtime(false);
            archive.unpack(dir.path())
        });
        unpacked.map_err(|e| {
            PortError::permanent(format!(
                "cannot unpack artifact `{}` into `{}`: {e}",
                req.artifact.location,
                dir.path().display()
            ))
        })?;
        let mut files = req.clone();
        files.artifact.location = dir.path().display().to_string();
        f(&files)
    }
}

impl<D: ferry_engine::ports::Deployer> ferry_engine::ports::Deployer for UnpackedArtifact<D> {
    fn deploy(
        &self,
        req: &ferry_engine::ports::DeployRequest,
    ) -> ferry_engine::ports::PortResult<()> {
        self.with_files(req, |r| self.inner.deploy(r))
    }
    fn rollback(
        &self,
        req: &ferry_engine::ports::DeployRequest,
    ) -> ferry_engine::ports::PortResult<()> {
        self.with_files(req, |r| self.inner.rollback(r))
    }
    fn current_version(&self) -> ferry_engine::ports::PortResult<Option<String>> {
        self.inner.current_version()
    }
    fn healthy(&self, within: std::time::Duration) -> ferry_engine::ports::PortResult<()> {
        self.inner.healthy(within)
    }
}
