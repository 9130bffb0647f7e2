//! `ProcessExecutor`: steps as `/bin/sh -c` child processes, each in its own process
//! group, logged to a file, killed as a group on timeout and cleaned up after exit.

use crate::sys;
use ferry_core::gates::ExitObservation;
use ferry_engine::ports::{Executor, StepExit, StepRequest};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a timed-out group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// What a shell exit status usually means, for the exits that confuse people.
pub fn explain_exit(code: i32) -> Option<&'static str> {
    match code {
        126 => Some("a file it runs is not executable: `chmod +x` it"),
        127 => Some("command not found"),
        _ => None,
    }
}

/// Runs steps as `/bin/sh -c <command>` child processes (see [`Executor`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessExecutor {
    cancel: Option<&'static AtomicBool>,
}

impl ProcessExecutor {
    pub fn new() -> Self {
        ProcessExecutor { cancel: None }
    }

    /// An executor that stops the running step's process group (SIGTERM, then SIGKILL
    /// after [`KILL_GRACE`]) as soon as `flag` is set (Ctrl-C on `ferry run`).
    pub fn with_cancel(flag: &'static AtomicBool) -> Self {
        ProcessExecutor { cancel: Some(flag) }
    }
}

impl Executor for ProcessExecutor {
    fn run(&self, req: &StepRequest) -> StepExit {
        let started = Instant::now();
        let how = run_step(req, self.cancel);
        StepExit {
            how,
            duration: started.elapsed(),
        }
    }
}

/// Opens `path` for appending, creating it and its parent folders.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// A `/bin/sh -c` command in its own process group with stdin closed.
pub(crate) fn shell(command: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env)
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

fn run_step(req: &StepRequest, cancel: Option<&AtomicBool>) -> ExitObservation {
    if !req.cwd.is_dir() {
        return ExitObservation::NotStarted(format!(
            "working folder `{}` does not exist",
            req.cwd.display()
        ));
    }
    let log = match open_append(&req.log) {
        Ok(f) => f,
        Err(e) => {
            return ExitObservation::NotStarted(format!(
                "cannot open log file `{}`: {e}",
                req.log.display()
            ));
        }
    };
    let log2 = match log.try_clone() {
        Ok(f) => f,
        Err(e) => return ExitObservation::NotStarted(format!("cannot share the log file: {e}")),
    };
    let mut cmd = shell(&req.command, &req.cwd, &req.env);
    sys::die_with_parent(&mut cmd);
    let redactor = crate::redaction::redactor();
    let mut copier = None;
    if redactor.is_empty() {
        cmd.stdout(log).stderr(log2);
    } else {
        // Secrets to hide: the output goes through a pipe and is redacted on its way
        // into the log file (DESIGN invariant 8), a secret split across reads included.
        drop(log2);
        match crate::redaction::pipe_into(&mut cmd, log, redactor) {
            Ok(c) => copier = Some(c),
            Err(e) => {
                return ExitObservation::NotStarted(format!(
                    "cannot make a pipe for the step's output: {e}"
                ));
            }
        }
    }
    let child = cmd.spawn();
    // The parent's copies of the pipe's write end go with the command, so the copier
    // sees the end of the output when the step's processes are gone.
    drop(cmd);
    let child = match child {
        Ok(c) => c,
        Err(e) => return ExitObservation::NotStarted(format!("cannot start /bin/sh: {e}")),
    };
    let waited = wait_group(child, req.timeout, cancel);
    if let Some(c) = copier {
        c.finish();
    }
    match waited {
        Waited::Exited(status) => observe(status),
        Waited::TimedOut => ExitObservation::TimedOut {
            after_secs: req.timeout.as_secs(),
        },
        Waited::Cancelled => ExitObservation::Signal(libc::SIGTERM),
        Waited::Lost(e) => ExitObservation::NotStarted(format!("lost track of the process: {e}")),
    }
}

fn observe(status: ExitStatus) -> ExitObservation {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitObservation::Code(c),
        (None, Some(s)) => ExitObservation::Signal(s),
        (None, None) => ExitObservation::Code(-1),
    }
}

pub(crate) enum Waited {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    Lost(io::Error),
}

/// Waits for `child` (a process group leader) without polling: a waiter thread blocks in
/// `wait` and reports over a channel. On timeout the group gets SIGTERM, then SIGKILL
/// after [`KILL_GRACE`]. Whatever is left in the group afterwards is SIGKILLed too, so
/// background children never outlive their step.
pub(crate) fn wait_group(
    mut child: Child,
    timeout: Duration,
    cancel: Option<&AtomicBool>,
) -> Waited {
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = thread::Builder::new()
        .name("ferry-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    if let Err(e) = spawned {
        // Without a waiter thread there is no way to honour the timeout: stop the group.
        let _ = sys::signal_group(pgid, libc::SIGKILL);
        return Waited::Lost(e);
    }
    // The exit arrives over the channel at once; the slices only bound how late a
    // cancel request is noticed.
    let deadline = Instant::now() + timeout;
    let slice = if cancel.is_some() {
        Duration::from_millis(100)
    } else {
        timeout
    };
    let stop = |why: Waited| {
        let _ = sys::signal_group(pgid, libc::SIGTERM);
        if rx.recv_timeout(KILL_GRACE).is_err() {
            let _ = sys::signal_group(pgid, libc::SIGKILL);
            let _ = rx.recv();
        }
        why
    };
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(slice)) {
            Ok(Ok(status)) => break Waited::Exited(status),
            Ok(Err(e)) => break Waited::Lost(e),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Waited::Lost(io::Error::other("the waiter thread stopped"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                    break stop(Waited::Cancelled);
                }
                if Instant::now() >= deadline {
                    break stop(Waited::TimedOut);
                }
            }
        }
    };
    // The shell is gone (and reaped); its group may still hold background children.
    let _ = sys::signal_group(pgid, libc::SIGKILL);
    result
}

/// What [`capture`] saw.
pub(crate) struct Captured {
    pub how: ExitObservation,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a `/bin/sh -c` command and collects its stdout and stderr (for small outputs such
/// as a version string), with the same group handling as steps.
pub(crate) fn capture(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Captured {
    let fail = |why: String| Captured {
        how: ExitObservation::NotStarted(why),
        stdout: String::new(),
        stderr: String::new(),
    };
    if !cwd.is_dir() {
        return fail(format!("working folder `{}` does not exist", cwd.display()));
    }
    let mut cmd = shell(command, cwd, env);
    sys::die_with_parent(&mut cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start /bin/sh: {e}")),
    };
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let how = match wait_group(child, timeout, None) {
        Waited::Exited(status) => observe(status),
        Waited::TimedOut | Waited::Cancelled => ExitObservation::TimedOut {
            after_secs: timeout.as_secs(),
        },
        Waited::Lost(e) => ExitObservation::NotStarted(format!("lost track of the process: {e}")),
    };
    let join =
        |h: Option<thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Captured {
        how,
        stdout: join(out),
        stderr: join(err),
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.by_ref().take(1 << 20).read_to_end(&mut buf);
        // Keep draining so a chatty command never blocks on a full pipe.
        let _ = io::copy(&mut r, &mut io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}
