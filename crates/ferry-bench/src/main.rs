//! Orchestration overhead: a pipeline of 12 steps across three environments (a command
//! deploy and three tests each; no monitor windows, no approval) run by `ferry run`,
//! against the same 12 commands run by a plain shell script, alternating in one run.
//! Prints medians, the ratio and the added time. See BENCHMARKS.md.
//!
//! Usage: `cargo build --release && target/release/ferry-bench [--iterations N]
//! [--step 'true'] [--ferry PATH]`
//!
//! `ferry-bench mttr [--iterations N]` measures mean time to recovery instead (see
//! `mttr.rs`); `ferry-bench serve [--sizes …] [--duration S]` loads `ferry serve` with
//! wrk (see `load.rs`); `ferry-bench diff [--iterations N] [--files N] [--changed N]`
//! times `ferry diff`'s changed-file listing against `git diff --name-only` on a
//! synthetic 100,000-file repository (see `diff.rs`; the ferry binary next to
//! ferry-bench, or `$FERRY_BIN`); `ferry-bench guard [--iterations N] [--mb 10]
//! [--cfn-guard PATH]` times `ferry scan` with the built-in policy pack on a generated
//! 10 MB CloudFormation template against the `cfn-guard` command line, wall time and
//! peak memory (see `guard.rs`); `ferry-bench dashboard [--deployments N] [--runs N]
//! [--requests N]` times the dashboard's pages and the main API endpoints of `ferry
//! serve` with 100 k deployments and 10 k runs in the store (see `dashboard.rs`).

#[cfg(feature = "aws")]
mod aws;
mod dashboard;
mod diff;
mod guard;
mod load;
mod mttr;
mod sys;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    if std::env::args().nth(1).as_deref() == Some("mttr") {
        return mttr::run(std::env::args().skip(2).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("diff") {
        let ferry = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ferry");
        let ferry = std::env::var_os("FERRY_BIN").map_or(ferry, PathBuf::from);
        return diff::run(std::env::args().skip(2).collect(), ferry);
    }
    if std::env::args().nth(1).as_deref() == Some("guard") {
        let ferry = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ferry");
        let ferry = std::env::var_os("FERRY_BIN").map_or(ferry, PathBuf::from);
        return guard::run(std::env::args().skip(2).collect(), ferry);
    }
    if std::env::args().nth(1).as_deref() == Some("dashboard") {
        let ferry = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ferry");
        let ferry = std::env::var_os("FERRY_BIN").map_or(ferry, PathBuf::from);
        return dashboard::run(std::env::args().skip(2).collect(), &ferry);
    }
    if std::env::args().nth(1).as_deref() == Some("aws") {
        #[cfg(feature = "aws")]
        {
            let lambda = std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("ferry-lambda");
            return aws::run(std::env::args().skip(2).collect(), lambda);
        }
        #[cfg(not(feature = "aws"))]
        return Err("`ferry-bench aws` needs the `aws` feature: cargo build --release -p ferry-bench --features aws".into());
    }
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return load::run(std::env::args().skip(2).collect());
    }
    let mut iterations = 20usize;
    let mut step = "true".to_string();
    let mut ferry: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--iterations needs a number")?
            }
            "--step" => step = args.next().ok_or("--step needs a command")?,
            "--ferry" => ferry = Some(PathBuf::from(args.next().ok_or("--ferry needs a path")?)),
            "-h" | "--help" => {
                println!("ferry-bench [--iterations N] [--step COMMAND] [--ferry PATH]");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    let ferry = match ferry {
        Some(f) => f,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ferry"),
    };
    if !ferry.exists() {
        return Err(format!(
            "no ferry binary at `{}`; run `cargo build --release` first or pass --ferry PATH",
            ferry.display()
        ));
    }

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = dir.path();
    let q = step.replace('\'', "'\\''");
    let mut yml = String::from("pipeline: bench\nenvironments:\n");
    let mut script = String::from("#!/bin/sh\nset -e\n");
    for env in ["test", "staging", "production"] {
        yml.push_str(&format!(
            "  - name: {env}\n    deploy:\n      command:\n        run: '{q}'\n    tests:\n"
        ));
        script.push_str(&format!("/bin/sh -c '{q}'\n"));
        for t in 1..=3 {
            yml.push_str(&format!("      - name: t{t}\n        run: '{q}'\n"));
            script.push_str(&format!("/bin/sh -c '{q}'\n"));
        }
    }
    std::fs::write(repo.join("ferry.yml"), yml).map_err(|e| e.to_string())?;
    std::fs::write(repo.join("script.sh"), script).map_err(|e| e.to_string())?;
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(
        repo,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-qm",
            "bench",
        ],
    )?;

    // One warm-up each (page cache, database creation).
    time(repo, &ferry, true)?;
    time(repo, &ferry, false)?;
    let mut f = Vec::with_capacity(iterations);
    let mut s = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        f.push(time(repo, &ferry, true)?);
        s.push(time(repo, &ferry, false)?);
    }
    let (fm, sm) = (median(&mut f), median(&mut s));
    let added = fm.as_secs_f64() - sm.as_secs_f64();
    println!(
        "steps: 12 × `{step}` across test, staging, production; {iterations} alternating iterations"
    );
    println!("plain shell script  median {:>8.1} ms", ms(sm));
    println!("ferry run           median {:>8.1} ms", ms(fm));
    println!(
        "ratio {:.3}×, added {:.1} ms per run ({:.2} ms per step)",
        fm.as_secs_f64() / sm.as_secs_f64(),
        added * 1000.0,
        added * 1000.0 / 12.0
    );
    Ok(())
}

fn time(repo: &Path, ferry: &Path, use_ferry: bool) -> Result<Duration, String> {
    let mut cmd = if use_ferry {
        let mut c = Command::new(ferry);
        c.arg("run");
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.arg("script.sh");
        c
    };
    cmd.current_dir(repo);
    let t = Instant::now();
    let out = cmd.output().map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            if use_ferry { "ferry run" } else { "script.sh" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
