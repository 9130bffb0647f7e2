//! Measures `ProcessExecutor`'s per-step overhead: N × `true` through the executor
//! against N × `/bin/sh -c true` spawned directly, medians.
//!
//! `cargo run --release -p ferry-local --example executor_overhead [N]`

use ferry_engine::ports::{Executor, StepRequest};
use ferry_local::ProcessExecutor;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("ferry-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let req = StepRequest {
        command: "true".into(),
        cwd: dir.clone(),
        env: BTreeMap::from([("FERRY_ENV".to_owned(), "bench".to_owned())]),
        timeout: Duration::from_secs(60),
        log: dir.join("step.log"),
    };
    let exec = ProcessExecutor::new();
    let (mut ours, mut direct) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        exec.run(&req);
        ours.push(t.elapsed());
        let t = Instant::now();
        Command::new("/bin/sh").args(["-c", "true"]).status()?;
        direct.push(t.elapsed());
    }
    let (o, d) = (median(ours), median(direct));
    println!(
        "{n} runs: executor median {:.3} ms, direct sh -c median {:.3} ms, overhead {:.3} ms/step",
        o.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        (o.as_secs_f64() - d.as_secs_f64()) * 1e3
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
