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

mod artifact;
mod command;
mod git;
pub mod http;
pub mod probe;
mod process;
mod release;
pub mod report_files;
mod sys;

pub use artifact::{TarArtifactStore, file_digest};
pub use command::{CommandDeployer, DEFAULT_COMMAND_TIMEOUT};
pub use git::GitSource;
pub use http::{http_get, http_get_status, http_request};
pub use process::{KILL_GRACE, ProcessExecutor, explain_exit};
pub use release::{ReleaseDeployer, STOP_GRACE};

/// The local [`DeployerFactory`](ferry_engine::ports::DeployerFactory): `release`
/// sections become [`ReleaseDeployer`]s (roots relative to the project folder),
/// `command` sections [`CommandDeployer`]s (versions recorded under `state/envs`).
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
        })
    }
}

/// Tells whether a `host:pid` holder on this machine is still running (`/proc/<pid>`
/// exists and is not a zombie); holders on other hosts cannot be told.
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

impl ferry_engine::ports::Liveness for LocalLiveness {
    fn alive(&self, holder: &str) -> Option<bool> {
        let (host, pid) = holder.rsplit_once(':')?;
        if host != self.host {
            return None;
        }
        let pid: u32 = pid.parse().ok()?;
        if pid == std::process::id() {
            return Some(true);
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the field after the parenthesised command name.
            Ok(stat) => Some(
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X"),
            ),
            Err(_) => Some(false),
        }
    }
}
