//! A step's output reaches its log file redacted once the process-wide redactor knows a
//! secret (its own test binary: the redactor is process-wide).
#![allow(clippy::unwrap_used)]

use ferry_core::Redactor;
use ferry_core::gates::ExitObservation;
use ferry_engine::ports::{Executor, StepRequest};
use ferry_local::ProcessExecutor;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn secrets_printed_by_a_step_never_reach_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-Value-42";
    ferry_local::set_redactor(Redactor::new([secret]));
    let log = dir.path().join("logs/step.log");
    // The secret printed whole, on stderr, and in two writes with a pause between them
    // (so it arrives split across two reads of the pipe); plus a lot of other output.
    let command = r#"echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2; printf 's3cr3t-'; sleep 0.3; printf 'Value-42\n'; seq 1 20000 | tr -d '\n' | head -c 50000; echo; echo done"#;
    let exit = ProcessExecutor::new().run(&StepRequest {
        command: command.into(),
        cwd: dir.path().to_path_buf(),
        env: BTreeMap::from([("API_TOKEN".to_string(), secret.to_string())]),
        timeout: Duration::from_secs(30),
        log: log.clone(),
    });
    assert_eq!(exit.how, ExitObservation::Code(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret), "{}", &text[..200.min(text.len())]);
    assert!(
        text.starts_with("token=***\n***\n***\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.trim_end().ends_with("done"));
}
