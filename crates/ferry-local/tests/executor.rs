//! `ProcessExecutor` with real processes: exit codes, environment, logs, timeouts and
//! process-group cleanup.
#![allow(clippy::unwrap_used)]

mod common;

use common::{eventually, group_members, pid_alive, read_pid};
use ferry_core::gates::ExitObservation;
use ferry_engine::ports::{Executor, StepRequest};
use ferry_local::{ProcessExecutor, explain_exit};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn req(dir: &Path, command: &str) -> StepRequest {
    StepRequest {
        command: command.to_owned(),
        cwd: dir.to_path_buf(),
        env: BTreeMap::new(),
        timeout: Duration::from_secs(30),
        log: dir.join("logs/step.log"),
    }
}

fn run(r: &StepRequest) -> ExitObservation {
    ProcessExecutor::new().run(r).how
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(&req(dir.path(), "true")), ExitObservation::Code(0));
    assert_eq!(run(&req(dir.path(), "exit 3")), ExitObservation::Code(3));
    assert_eq!(
        run(&req(dir.path(), "kill -9 $$")),
        ExitObservation::Signal(9)
    );
}

#[test]
fn env_vars_reach_the_command_and_are_never_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let message = "fix: $(touch pwned) and `touch pwned2`; touch pwned3 \"quoted\" 'single'";
    let mut r = req(
        dir.path(),
        r#"printf '%s' "$FERRY_COMMIT_MESSAGE" > msg.txt; printf '%s' "$FERRY_ENV" > env.txt; printf '%s' "$HOME" > home.txt"#,
    );
    r.env.insert("FERRY_COMMIT_MESSAGE".into(), message.into());
    r.env.insert("FERRY_ENV".into(), "staging".into());
    assert_eq!(run(&r), ExitObservation::Code(0));
    assert_eq!(
        fs::read_to_string(dir.path().join("msg.txt")).unwrap(),
        message
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("env.txt")).unwrap(),
        "staging"
    );
    // The inherited environment is there too.
    assert_eq!(
        fs::read_to_string(dir.path().join("home.txt")).unwrap(),
        std::env::var("HOME").unwrap_or_default()
    );
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(
            !dir.path().join(f).exists(),
            "{f} was created: the message was executed"
        );
    }
}

#[test]
fn stdout_and_stderr_are_appended_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let r = req(dir.path(), "echo to-stdout; echo to-stderr >&2");
    assert_eq!(run(&r), ExitObservation::Code(0));
    assert_eq!(
        run(&req(dir.path(), "echo second-run")),
        ExitObservation::Code(0)
    );
    let log = fs::read_to_string(dir.path().join("logs/step.log")).unwrap();
    assert_eq!(log, "to-stdout\nto-stderr\nsecond-run\n");
}

#[test]
fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = req(
        dir.path(),
        "sleep 100 & echo $! > bg.pid; echo $$ > sh.pid; sleep 100",
    );
    r.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let exit = ProcessExecutor::new().run(&r);
    let took = started.elapsed();
    assert_eq!(exit.how, ExitObservation::TimedOut { after_secs: 0 });
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM should have sufficed: {took:?}"
    );
    let bg = read_pid(&dir.path().join("bg.pid"));
    let sh = read_pid(&dir.path().join("sh.pid"));
    assert!(eventually(Duration::from_secs(2), || !pid_alive(bg) && !pid_alive(sh)));
    assert!(eventually(Duration::from_secs(2), || group_members(sh).is_empty()));
}

#[test]
fn a_group_ignoring_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = req(
        dir.path(),
        "trap '' TERM; echo $$ > sh.pid; sleep 100 & echo $! > bg.pid; sleep 100",
    );
    r.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let exit = ProcessExecutor::new().run(&r);
    let took = started.elapsed();
    assert!(matches!(exit.how, ExitObservation::TimedOut { .. }));
    assert!(
        took >= Duration::from_secs(2),
        "the grace was skipped: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    let sh = read_pid(&dir.path().join("sh.pid"));
    let bg = read_pid(&dir.path().join("bg.pid"));
    assert!(eventually(Duration::from_secs(2), || !pid_alive(bg)));
    assert!(eventually(Duration::from_secs(2), || group_members(sh).is_empty()));
}

#[test]
fn background_children_do_not_outlive_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let r = req(
        dir.path(),
        "sleep 100 & echo $! > bg.pid; echo $$ > sh.pid; exit 0",
    );
    let started = Instant::now();
    assert_eq!(run(&r), ExitObservation::Code(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    let bg = read_pid(&dir.path().join("bg.pid"));
    let sh = read_pid(&dir.path().join("sh.pid"));
    assert!(
        eventually(Duration::from_secs(2), || !pid_alive(bg)),
        "background child leaked"
    );
    assert!(eventually(Duration::from_secs(2), || group_members(sh).is_empty()));
}

#[test]
fn a_non_executable_script_is_126_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lint.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let exit = run(&req(dir.path(), "./lint.sh"));
    assert_eq!(exit, ExitObservation::Code(126));
    assert!(explain_exit(126).unwrap().contains("chmod +x"));
    let exit = run(&req(dir.path(), "no-such-command-ferry-test"));
    assert_eq!(exit, ExitObservation::Code(127));
    assert_eq!(explain_exit(127), Some("command not found"));
    assert_eq!(explain_exit(1), None);
}

#[test]
fn a_missing_working_folder_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = req(dir.path(), "true");
    r.cwd = dir.path().join("missing");
    match run(&r) {
        ExitObservation::NotStarted(why) => assert!(why.contains("missing"), "{why}"),
        other => panic!("expected NotStarted, got {other:?}"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn per_step_overhead_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let exec = ProcessExecutor::new();
    let r = req(dir.path(), "true");
    let mut ours = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        assert_eq!(exec.run(&r).how, ExitObservation::Code(0));
        ours.push(t.elapsed());
        let t = Instant::now();
        let st = Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .unwrap();
        assert!(st.success());
        direct.push(t.elapsed());
    }
    let (ours, direct) = (median(ours), median(direct));
    // The target is < 5 ms; the bound here is loose so a loaded CI machine passes.
    assert!(
        ours.saturating_sub(direct) < Duration::from_millis(25),
        "executor {ours:?} vs direct {direct:?}"
    );
}
