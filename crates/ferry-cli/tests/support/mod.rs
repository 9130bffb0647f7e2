//! Helpers for the integration tests of the real `ferry` binary: temporary git
//! repositories, running `ferry` in them (in the foreground or as a background child),
//! free loopback ports, a tiny HTTP client, and cleanup that stops every service a test
//! started (process groups named by `.ferry/envs/*/service.pid`).
#![allow(dead_code)]

pub mod moto;
pub mod serve;
pub mod webdriver;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// The binary's path single-quoted for `/bin/sh`, inside a YAML double-quoted scalar
/// this is safe as long as the path has no `"` or `\` (checked).
pub fn ferry_sh() -> String {
    let p = ferry_bin().display().to_string();
    assert!(
        !p.contains(['\'', '"', '\\']),
        "the test binary path has quotes: {p}"
    );
    format!("'{p}'")
}

/// A `ferry` command with the environment cleaned of settings that would move the state
/// or the pipeline file, run in `dir`.
pub fn ferry_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(ferry_bin());
    c.args(args)
        .current_dir(dir)
        .env_remove("FERRY_STATE_DIR")
        .env_remove("FERRY_FILE")
        .env_remove("FERRY_BUSY_TIMEOUT_MS")
        .env_remove("FERRY_SERVER")
        .env_remove("FERRY_API_TOKEN")
        .env_remove("FERRY_WEBHOOK_SECRET")
        .env("FERRY_USER", "integration-test")
        .stdin(Stdio::null());
    c
}

/// Runs `ferry args` in `dir` to completion (bounded: killed after `LONG`).
pub fn ferry_in(dir: &Path, args: &[&str]) -> Output {
    Running::spawn(ferry_cmd(dir, args), args).wait(LONG)
}

/// The longest any single `ferry` invocation may take before a test gives up on it.
pub const LONG: Duration = Duration::from_secs(300);

/// A scratch folder that may or may not be a git repository. On drop it kills every
/// `ferry` child it spawned that is still running, then every service started under it.
pub struct Repo {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    /// An empty repository: `git init -b main`.
    pub fn new() -> Repo {
        let r = Repo::plain();
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    /// A plain folder, not a git repository.
    pub fn plain() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("ferry-it-")
            .tempdir()
            .expect("temporary folder");
        let root = dir.path().canonicalize().expect("canonical temp path");
        Repo { dir, root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<root>/<rel>`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The default state folder.
    pub fn state(&self) -> PathBuf {
        self.root.join(".ferry")
    }

    /// Writes a file (creating folders), mode 0644.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("create folder");
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        set_mode(&p, 0o644);
    }

    /// Writes an executable file (mode 0755).
    pub fn write_exec(&self, rel: &str, text: &str) {
        self.write(rel, text);
        set_mode(&self.root.join(rel), 0o755);
    }

    pub fn read(&self, rel: &str) -> String {
        let p = self.root.join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Runs git in the repository with a fixed identity; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Ivy Integration",
                "-c",
                "user.email=ivy@example.com",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.fileMode=true",
            ])
            .args(args)
            .current_dir(&self.root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `git add -A && git commit -m message`; returns the new commit's SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs `ferry args` here to completion.
    pub fn ferry(&self, args: &[&str]) -> Output {
        ferry_in(&self.root, args)
    }

    /// Runs `ferry args` here with extra environment variables.
    pub fn ferry_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = ferry_cmd(&self.root, args);
        for (k, v) in env {
            c.env(k, v);
        }
        Running::spawn(c, args).wait(LONG)
    }

    /// Starts `ferry args` here in the background.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::spawn(ferry_cmd(&self.root, args), args)
    }

    /// `ferry status --json`, which must succeed.
    pub fn status(&self) -> Value {
        let out = self.ferry(&["status", "--json"]);
        assert_code(&out, 0, "ferry status --json");
        json(&out)
    }

    /// `ferry history --json`, which must succeed.
    pub fn history(&self) -> Value {
        let out = self.ferry(&["history", "--json", "--limit", "100"]);
        assert_code(&out, 0, "ferry history --json");
        json(&out)
    }

    /// Polls `ferry status --json` until a run is `awaiting_approval`; returns its id.
    /// Panics (with what the background run said) if `run` ends first or `within` passes.
    pub fn wait_for_approval(&self, run: &mut Running, within: Duration) -> i64 {
        let deadline = Instant::now() + within;
        loop {
            let st = self.status();
            if let Some(r) = st["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["status"] == "awaiting_approval")
            {
                return r["id"].as_i64().expect("run id is a number");
            }
            if run.finished() {
                let out = run.wait(LONG);
                panic!(
                    "`ferry {}` ended before asking for approval: {}",
                    run.what,
                    describe(&out)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no run awaited approval within {within:?}; last status: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every `service.pid` under `<root>/.ferry/envs/*/` (and one level deeper, for
    /// state folders placed elsewhere under the root).
    fn service_pid_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut roots = vec![self.root.join(".ferry").join("envs")];
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                roots.push(e.path().join(".ferry").join("envs"));
            }
        }
        for envs in roots {
            let Ok(entries) = std::fs::read_dir(&envs) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path().join("service.pid");
                if p.is_file() {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Kills every service (its whole process group) named by a `service.pid` here.
    pub fn stop_services(&self) {
        for p in self.service_pid_files() {
            if let Some(pid) = std::fs::read_to_string(&p)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                kill_group(pid);
            }
        }
    }

    /// Whether a service recorded under `.ferry/envs/<env>/service.pid` is alive.
    pub fn service_running(&self, env: &str) -> bool {
        let p = self.state().join("envs").join(env).join("service.pid");
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some_and(group_alive)
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        self.stop_services();
        // The folder itself goes with `self.dir`.
        let _ = &self.dir;
    }
}

#[allow(unsafe_code)]
mod sys {
    /// SIGKILLs the process group `pgid`, if `pgid` still leads its own group (a stale pid
    /// file whose pid was reused by an unrelated process is left alone).
    pub fn kill_group(pgid: i32) {
        if pgid <= 1 {
            return;
        }
        // SAFETY: plain integer arguments; no memory of ours is touched.
        let group = unsafe { libc::getpgid(pgid) };
        if group != pgid {
            return;
        }
        // SAFETY: `-pgid` with pgid > 1 addresses exactly that process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }

    /// Sends SIGINT to one process.
    pub fn interrupt(pid: i32) {
        if pid <= 1 {
            return;
        }
        // SAFETY: plain integer arguments; no memory of ours is touched.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }

    /// Whether any process is in the group `pgid`.
    pub fn group_alive(pgid: i32) -> bool {
        if pgid <= 1 {
            return false;
        }
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(-pgid, 0) == 0 }
    }
}

pub use sys::{group_alive, kill_group};

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// A `ferry` process in the background, its output collected by reader threads. Killed
/// on drop if still running.
pub struct Running {
    child: Option<Child>,
    pub what: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Running {
    pub fn spawn(mut cmd: Command, args: &[&str]) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ferry {args:?}: {e}"));
        let stdout = child.stdout.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = s.read_to_end(&mut b);
                b
            })
        });
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = s.read_to_end(&mut b);
                b
            })
        });
        Running {
            child: Some(child),
            what: args.join(" "),
            stdout,
            stderr,
            status: None,
        }
    }

    /// Sends SIGINT, as Ctrl-C on a terminal would.
    pub fn interrupt(&self) {
        if let Some(c) = self.child.as_ref() {
            sys::interrupt(i32::try_from(c.id()).unwrap_or(0));
        }
    }

    /// Whether the process has exited.
    pub fn finished(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(st))) => {
                self.status = Some(st);
                true
            }
            _ => false,
        }
    }

    /// Waits for the process (killing it and panicking after `within`) and returns its
    /// output.
    pub fn wait(&mut self, within: Duration) -> Output {
        let deadline = Instant::now() + within;
        while !self.finished() {
            if Instant::now() >= deadline {
                if let Some(c) = self.child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let out = self.collect(None);
                panic!(
                    "`ferry {}` did not finish within {within:?}; so far: {}",
                    self.what,
                    describe(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let st = self.status;
        self.collect(st)
    }

    fn collect(&mut self, status: Option<ExitStatus>) -> Output {
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let status = status
            .or_else(|| self.child.as_mut().and_then(|c| c.wait().ok()))
            .expect("an exit status");
        self.child = None;
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut()
            && self.status.is_none()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Whether something accepts connections on 127.0.0.1:port.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("address"),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// A plain HTTP/1.0 GET on 127.0.0.1; returns (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, body.to_string())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout parsed as JSON.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(o)))
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// Asserts the exit code.
#[track_caller]
pub fn assert_code(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: expected exit {code}; {}",
        describe(o)
    );
}

/// Every path under `dir` (recursively; symbolic links are not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A YAML double-quoted scalar holding `s` exactly.
pub fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Copies a workspace without its `.git` (and without symlinks): what CodePipeline hands
/// the next CodeBuild action (`ferry step` tests).
pub fn copy_workspace(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_name() == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type().expect("file type");
        if ft.is_symlink() {
            continue;
        } else if ft.is_dir() {
            copy_workspace(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}
