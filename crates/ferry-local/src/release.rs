//! `ReleaseDeployer`: the `release` deploy kind. Each version is unpacked into
//! `<root>/releases/<version>/`, `<root>/current` is a relative symbolic link swapped
//! atomically, and an optional supervised service (started in `current`, tracked by
//! `<root>/service.pid`, logging to `<root>/service.log`) is restarted and health-checked.

use crate::artifact::file_digest;
use crate::http::http_get_status;
use crate::process::{open_append, shell};
use crate::sys::{self, Reap};
use ferry_config::ReleaseDeploy;
use ferry_engine::ports::{DeployRequest, Deployer, PortError, PortResult};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long a stopping service gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Time between two health requests.
const HEALTH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait for one health request.
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Without a health URL, how long a freshly started service must stay up to count.
const START_GRACE: Duration = Duration::from_millis(200);
/// Lines of `service.log` quoted in a failure.
const LOG_TAIL_LINES: usize = 5;

/// Releases in folders with an atomically swapped `current` link (see module docs).
#[derive(Debug)]
pub struct ReleaseDeployer {
    root: PathBuf,
    start: Option<String>,
    health: Option<String>,
    health_timeout: Duration,
    keep: u32,
    lock: Mutex<()>,
}

/// Lines describing what a deployment did, appended to the request's log.
struct Journal(Option<File>);

impl Journal {
    fn line(&mut self, msg: impl AsRef<str>) {
        if let Some(f) = &mut self.0 {
            let _ = writeln!(f, "[ferry release] {}", msg.as_ref());
        }
    }
}

impl ReleaseDeployer {
    /// A deployer for `cfg`; a relative `cfg.root` is taken relative to `project_root`.
    pub fn new(cfg: &ReleaseDeploy, project_root: &Path) -> Self {
        let joined = project_root.join(&cfg.root);
        let root = std::path::absolute(&joined).unwrap_or(joined);
        ReleaseDeployer {
            root,
            start: cfg.start.clone(),
            health: cfg.health.clone(),
            health_timeout: cfg.health_timeout,
            keep: cfg.keep.max(1),
            lock: Mutex::new(()),
        }
    }

    /// The environment's folder (`releases/`, `current`, `service.pid`, `service.log`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }
    fn pid_file(&self) -> PathBuf {
        self.root.join("service.pid")
    }
    /// The supervised service's stdout and stderr.
    pub fn service_log(&self) -> PathBuf {
        self.root.join("service.log")
    }
    fn order_file(&self) -> PathBuf {
        self.root.join("release-order")
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes an existing release current again and restarts the service (with its
    /// health check): what a rollback does, without rebuilding. Doing it for the version
    /// that is already current and running only re-checks health.
    pub fn activate(&self, version: &str, env: &BTreeMap<String, String>) -> PortResult<()> {
        let _g = self.guard();
        let mut j = Journal(None);
        check_version(version)?;
        let dir = self.releases_dir().join(version);
        if !dir.is_dir() {
            return Err(PortError::not_found(format!(
                "release `{version}` is not in `{}`; it was never deployed here or was pruned (keep: {})",
                self.releases_dir().display(),
                self.keep
            )));
        }
        if self.read_current()?.as_deref() == Some(version) && self.service_running() {
            return self.check_health(None, &mut j);
        }
        self.switch_to(version, env, &mut j)
    }

    /// Stops the supervised service, if one is running.
    pub fn stop(&self) -> PortResult<()> {
        let _g = self.guard();
        self.stop_service(&mut Journal(None))
    }

    /// The releases on disk, oldest deployment first.
    pub fn releases(&self) -> PortResult<Vec<String>> {
        let dir = self.releases_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &dir, &e)),
        };
        let order = self.read_order();
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("read", &dir, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let rank = order.iter().rposition(|v| *v == name);
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((rank, mtime, name));
        }
        // Releases missing from the order file (made by hand) count as the oldest.
        found.sort();
        Ok(found.into_iter().map(|(_, _, name)| name).collect())
    }

    /// The supervised service's process id, when its process group is still running.
    pub fn service_pid(&self) -> Option<i32> {
        let pid = self.read_pid()?;
        pid_running(pid).then_some(pid)
    }

    fn service_running(&self) -> bool {
        self.start.is_none() || self.service_pid().is_some()
    }

    fn read_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.pid_file()).ok()?;
        text.trim().parse::<i32>().ok().filter(|p| *p > 1)
    }

    fn read_current(&self) -> PortResult<Option<String>> {
        let link = self.current_link();
        match fs::read_link(&link) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                Err(PortError::permanent(format!(
                    "`{}` is not a symbolic link; move it away so ferry can manage releases",
                    link.display()
                )))
            }
            Err(e) => Err(io_err("read", &link, &e)),
        }
    }

    fn read_order(&self) -> Vec<String> {
        fs::read_to_string(self.order_file())
            .map(|t| {
                t.lines()
                    .map(str::to_owned)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record_order(&self, version: &str) -> PortResult<()> {
        let path = self.order_file();
        let mut f = open_append(&path).map_err(|e| io_err("write", &path, &e))?;
        writeln!(f, "{version}").map_err(|e| io_err("write", &path, &e))
    }

    /// Unpacks the artifact into `releases/<version>`, replacing a release of the same
    /// name.
    fn unpack(&self, req: &DeployRequest, j: &mut Journal) -> PortResult<()> {
        let releases = self.releases_dir();
        fs::create_dir_all(&releases).map_err(|e| io_err("create", &releases, &e))?;
        // Leftovers of an interrupted deployment.
        if let Ok(entries) = fs::read_dir(&releases) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".incoming-") || name.starts_with(".replaced-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let pid = std::process::id();
        let incoming = releases.join(format!(".incoming-{}-{pid}", req.version));
        fs::create_dir(&incoming).map_err(|e| io_err("create", &incoming, &e))?;
        let unpacked = File::open(&req.artifact.location).and_then(|f| {
            let mut archive = tar::Archive::new(io::BufReader::new(f));
            archive.set_preserve_mtime(false);
            archive.set_overwrite(true);
            archive.unpack(&incoming)
        });
        if let Err(e) = unpacked {
            let _ = fs::remove_dir_all(&incoming);
            return Err(PortError::permanent(format!(
                "cannot unpack artifact `{}` into `{}`: {e}",
                req.artifact.location,
                incoming.display()
            )));
        }
        let target = releases.join(&req.version);
        if target.exists() {
            let replaced = releases.join(format!(".replaced-{}-{pid}", req.version));
            fs::rename(&target, &replaced).map_err(|e| io_err("move", &target, &e))?;
            let _ = fs::remove_dir_all(&replaced);
            j.line(format!(
                "replaced the existing folder releases/{}",
                req.version
            ));
        }
        fs::rename(&incoming, &target).map_err(|e| {
            let _ = fs::remove_dir_all(&incoming);
            io_err("move into place", &target, &e)
        })?;
        j.line(format!(
            "unpacked {} into {}",
            req.artifact.location,
            target.display()
        ));
        Ok(())
    }

    /// Stops the old service, points `current` at `version`, starts and checks the new
    /// service.
    fn switch_to(
        &self,
        version: &str,
        env: &BTreeMap<String, String>,
        j: &mut Journal,
    ) -> PortResult<()> {
        self.stop_service(j)?;
        self.swap_current(version)?;
        j.line(format!("current -> releases/{version}"));
        self.record_order(version)?;
        let started = match &self.start {
            Some(cmd) => Some(self.start_service(cmd, version, env, j)?),
            None => None,
        };
        self.check_health(started, j)
    }

    fn swap_current(&self, version: &str) -> PortResult<()> {
        let link = self.current_link();
        let tmp = self
            .root
            .join(format!("current.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(Path::new("releases").join(version), &tmp)
            .map_err(|e| io_err("create", &tmp, &e))?;
        fs::rename(&tmp, &link).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            if link.is_dir() && !link.is_symlink() {
                PortError::permanent(format!(
                    "`{}` is a folder, not a symbolic link; move it away so ferry can manage releases",
                    link.display()
                ))
            } else {
                io_err("replace", &link, &e)
            }
        })
    }

    fn stop_service(&self, j: &mut Journal) -> PortResult<()> {
        let Some(pid) = self.read_pid() else {
            return Ok(());
        };
        let pid_file = self.pid_file();
        if !pid_running(pid) {
            let _ = fs::remove_file(&pid_file);
            return Ok(());
        }
        if let Some(group) = sys::process_group_of(pid)
            && group != pid
        {
            // The pid was reused by some unrelated process: not ours to stop.
            j.line(format!(
                "pid {pid} from service.pid is no longer the service; not signalling it"
            ));
            let _ = fs::remove_file(&pid_file);
            return Ok(());
        }
        if let Err(e) = sys::signal_group(pid, libc::SIGTERM)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            return Err(PortError::permanent(format!(
                "cannot stop the service (process group {pid}): {e}"
            )));
        }
        let mut how = "SIGTERM";
        if !wait_gone(pid, STOP_GRACE) {
            let _ = sys::signal_group(pid, libc::SIGKILL);
            how = "SIGKILL";
            if !wait_gone(pid, Duration::from_secs(2)) {
                return Err(PortError::permanent(format!(
                    "the service (process group {pid}) is still running after SIGKILL"
                )));
            }
        }
        let _ = fs::remove_file(&pid_file);
        j.line(format!("stopped the service (pid {pid}, {how})"));
        Ok(())
    }

    fn start_service(
        &self,
        command: &str,
        version: &str,
        env: &BTreeMap<String, String>,
        j: &mut Journal,
    ) -> PortResult<i32> {
        let log_path = self.service_log();
        let mut log = open_append(&log_path).map_err(|e| io_err("open", &log_path, &e))?;
        let _ = writeln!(log, "--- ferry: starting version {version}: {command}");
        let log2 = log.try_clone().map_err(|e| io_err("open", &log_path, &e))?;
        let mut cmd = shell(command, &self.current_link(), env);
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        let child = cmd.spawn().map_err(|e| {
            PortError::permanent(format!("cannot start the service `{command}`: {e}"))
        })?;
        let pid = i32::try_from(child.id())
            .map_err(|_| PortError::permanent("the service's process id is out of range"))?;
        // Not waited for here and not killed on drop: the service outlives this process and
        // is supervised through the pid file.
        drop(child);
        let pid_file = self.pid_file();
        let tmp = self.root.join("service.pid.tmp");
        fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| fs::rename(&tmp, &pid_file))
            .map_err(|e| io_err("write", &pid_file, &e))?;
        j.line(format!(
            "started `{command}` (pid {pid}); output in {}",
            log_path.display()
        ));
        Ok(pid)
    }

    /// Waits for the health URL to answer 2xx (or, without one, for a freshly started
    /// service to stay up a moment). A service that exits fails the check at once.
    fn check_health(&self, started: Option<i32>, j: &mut Journal) -> PortResult<()> {
        self.check_health_within(started, j, self.health_timeout)
    }

    fn check_health_within(
        &self,
        started: Option<i32>,
        j: &mut Journal,
        health_timeout: Duration,
    ) -> PortResult<()> {
        let mut watch = started.map(ServiceWatch::new);
        let Some(url) = &self.health else {
            if let Some(w) = &mut watch {
                thread::sleep(START_GRACE);
                if let Some(why) = w.exited() {
                    return Err(self.failure(&format!("the service {why} right after starting")));
                }
            }
            return Ok(());
        };
        let begin = Instant::now();
        let deadline = begin + health_timeout;
        let mut last;
        loop {
            if let Some(w) = &mut watch
                && let Some(why) = w.exited()
            {
                return Err(self.failure(&format!("the service {why} before `{url}` answered 2xx")));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match http_get_status(
                url,
                left.clamp(Duration::from_millis(50), HEALTH_REQUEST_TIMEOUT),
            ) {
                Ok(code) if (200..300).contains(&code) => {
                    j.line(format!(
                        "healthy: {url} answered {code} after {:.1}s",
                        begin.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                Ok(code) => last = format!("status {code}"),
                Err(e) => last = e,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::sleep(left.min(HEALTH_INTERVAL));
        }
        let msg = format!(
            "health check `{url}` did not answer 2xx within {}s (last: {last})",
            health_timeout.as_secs_f64()
        );
        Err(self.failure(&msg))
    }

    /// A Permanent error quoting the end of `service.log`.
    fn failure(&self, what: &str) -> PortError {
        let tail = log_tail(&self.service_log(), LOG_TAIL_LINES);
        if tail.is_empty() {
            PortError::permanent(format!(
                "{what}; `{}` is empty",
                self.service_log().display()
            ))
        } else {
            PortError::permanent(format!(
                "{what}; last lines of `{}`:\n{}",
                self.service_log().display(),
                tail.iter()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        }
    }

    /// Keeps the newest `keep` releases (by deployment order) and always the current one.
    fn prune(&self, j: &mut Journal) -> PortResult<()> {
        let all = self.releases()?;
        let current = self.read_current()?;
        let keep = usize::try_from(self.keep).unwrap_or(usize::MAX);
        let mut excess = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for v in &all {
            if excess == 0 {
                break;
            }
            if Some(v) == current.as_ref() {
                continue;
            }
            let dir = self.releases_dir().join(v);
            fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, &e))?;
            removed.push(v.clone());
            excess -= 1;
        }
        if !removed.is_empty() {
            j.line(format!(
                "pruned {} (keep: {})",
                removed.join(", "),
                self.keep
            ));
        }
        // Rewrite the order file compactly: the kept releases, oldest first.
        let kept: Vec<&String> = all.iter().filter(|v| !removed.contains(v)).collect();
        let mut text = String::new();
        for v in kept {
            text.push_str(v);
            text.push('\n');
        }
        let path = self.order_file();
        let tmp = self.root.join("release-order.tmp");
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| io_err("write", &path, &e))
    }
}

impl Deployer for ReleaseDeployer {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()> {
        let _g = self.guard();
        check_version(&req.version)?;
        let log = open_append(&req.log).map_err(|e| io_err("open", &req.log, &e))?;
        let mut j = Journal(Some(log));
        let result = self.deploy_locked(req, &mut j);
        if let Err(e) = &result {
            j.line(format!("failed: {}", e.message));
        }
        result
    }

    /// Swaps back to the kept release when it is still there (no unpacking: the fastest
    /// way back); unpacks the recorded artifact again, verified, when it was pruned.
    fn rollback(&self, req: &DeployRequest) -> PortResult<()> {
        let kept = self.releases_dir().join(&req.version).is_dir();
        if kept {
            let _g = self.guard();
            check_version(&req.version)?;
            let log = open_append(&req.log).map_err(|e| io_err("open", &req.log, &e))?;
            let mut j = Journal(Some(log));
            j.line(format!(
                "rolling back {} to the kept release {}",
                req.environment, req.version
            ));
            let result = if self.read_current()?.as_deref() == Some(req.version.as_str())
                && self.service_running()
            {
                self.check_health(None, &mut j)
            } else {
                self.switch_to(&req.version, &req.env, &mut j)
            };
            if let Err(e) = &result {
                j.line(format!("failed: {}", e.message));
            }
            return result;
        }
        self.deploy(req)
    }

    fn current_version(&self) -> PortResult<Option<String>> {
        self.read_current()
    }

    fn healthy(&self, within: Duration) -> PortResult<()> {
        if self.health.is_none() {
            return Ok(());
        }
        self.check_health_within(None, &mut Journal(None), within)
    }
}

impl ReleaseDeployer {
    fn deploy_locked(&self, req: &DeployRequest, j: &mut Journal) -> PortResult<()> {
        j.line(format!(
            "deploying version {} to {} in {}",
            req.version,
            req.environment,
            self.root.display()
        ));
        let found = file_digest(Path::new(&req.artifact.location)).map_err(|e| {
            PortError::permanent(format!(
                "cannot read artifact `{}`: {e}; refusing to deploy",
                req.artifact.location
            ))
        })?;
        if found != req.artifact.digest {
            let msg = format!(
                "artifact `{}` changed since it was built (expected {}, found {found}); refusing to deploy",
                req.artifact.location, req.artifact.digest
            );
            return Err(PortError::permanent(msg));
        }
        j.line(format!("artifact {} verified", req.artifact.digest));
        let release_dir = self.releases_dir().join(&req.version);
        if self.read_current()?.as_deref() == Some(req.version.as_str()) && release_dir.is_dir() {
            if self.service_running() {
                j.line(format!(
                    "version {} is already current; nothing to change",
                    req.version
                ));
                return self.check_health(None, j);
            }
            j.line(format!(
                "version {} is already current but its service is not running; starting it",
                req.version
            ));
            return self.switch_to(&req.version, &req.env, j);
        }
        self.unpack(req, j)?;
        self.switch_to(&req.version, &req.env, j)?;
        self.prune(j)
    }
}

/// Watches a service this process has just started: its leader is our child, so its exit
/// is seen (and reaped) at once.
struct ServiceWatch {
    pid: i32,
    leader_exit: Option<i32>,
}

impl ServiceWatch {
    fn new(pid: i32) -> Self {
        ServiceWatch {
            pid,
            leader_exit: None,
        }
    }

    /// `Some("exited with status N")` once the service is gone (or its leader failed).
    fn exited(&mut self) -> Option<String> {
        self.reap();
        if let Some(code) = self.leader_exit
            && code != 0
        {
            return Some(format!("exited with status {code}"));
        }
        // A start command may hand over to children in its group and exit 0.
        if group_alive(self.pid) {
            return None;
        }
        // The leader may have exited between the two looks: pick up its status.
        self.reap();
        Some(match self.leader_exit {
            Some(code) => format!("exited with status {code}"),
            None => "is no longer running".to_owned(),
        })
    }

    fn reap(&mut self) {
        if self.leader_exit.is_none()
            && let Reap::Exited(code) = sys::try_reap(self.pid)
        {
            self.leader_exit = Some(code);
        }
    }
}

/// Whether the service group `pid` still has a live process (reaping the leader if it is
/// our exited child).
fn pid_running(pid: i32) -> bool {
    let _ = sys::try_reap(pid);
    group_alive(pid)
}

/// Whether the process group `pgid` has a member that is not a zombie. A leader started by
/// another ferry process that has not reaped it yet stays a zombie in its group; it must
/// not count as a running service.
fn group_alive(pgid: i32) -> bool {
    if !sys::group_exists(pgid) {
        return false;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    let wanted = pgid.to_string();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).unwrap_or("");
        if pgrp == wanted && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pid_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` non-empty lines of a file (read from its last 8 KiB).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// A version must be usable as one folder name.
fn check_version(version: &str) -> PortResult<()> {
    let bad = version.is_empty()
        || version.starts_with('.')
        || version.contains(['/', '\\', '\0'])
        || version.chars().any(char::is_control);
    if bad {
        return Err(PortError::permanent(format!(
            "version `{}` cannot be a release folder name (no `/`, no leading `.`)",
            version.escape_debug()
        )));
    }
    Ok(())
}

fn io_err(what: &str, path: &Path, e: &io::Error) -> PortError {
    PortError::permanent(format!("cannot {what} `{}`: {e}", path.display()))
}
