//! `ferry diff`'s changed-file listing on a large repository (issue 5's benchmark): a
//! synthetic repository of 100,000 files (1,000 folders of 100) and a commit touching
//! 1,000 of them, built with `git fast-import`. Times `ferry diff FROM TO --json` (with
//! an `infrastructure` section whose paths match none of the changed files, so only the
//! listing and the glob matching run) against `git diff --name-only FROM TO`,
//! alternating in one run, and prints the medians and their ratio.

use crate::{git, median, ms};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn run(args: Vec<String>, ferry: PathBuf) -> Result<(), String> {
    let mut iterations = 15usize;
    let mut files = 100_000usize;
    let mut changed = 1_000usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(format!("{what} needs a number"))
        };
        match a.as_str() {
            "--iterations" => iterations = num("--iterations")?,
            "--files" => files = num("--files")?,
            "--changed" => changed = num("--changed")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if changed == 0 || changed > files || iterations == 0 {
        return Err("need 0 < --changed <= --files and --iterations > 0".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"])?;
    let started = Instant::now();
    import(repo, files, changed)?;
    std::fs::write(
        repo.join("ferry.yml"),
        "pipeline: bench\nbuild:\n  steps:\n    - name: build\n      run: 'true'\nenvironments:\n  - name: test\n    deploy:\n      command:\n        run: 'true'\ninfrastructure:\n  paths: [infrastructure/**]\n",
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "built a repository of {files} files and a commit changing {changed} in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Both must list the same files; warm the caches once.
    let listed = git_names(repo)?;
    if listed != changed {
        return Err(format!(
            "git lists {listed} changed files, expected {changed}"
        ));
    }
    let report = ferry_diff(repo, &ferry)?;
    if !report.contains(&format!("\"changedFiles\": {changed}")) {
        return Err(format!(
            "ferry diff did not count {changed} files: {report}"
        ));
    }

    let (mut f, mut g) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let t = Instant::now();
        ferry_diff(repo, &ferry)?;
        f.push(t.elapsed());
        let t = Instant::now();
        git_names(repo)?;
        g.push(t.elapsed());
    }
    let (fm, gm) = (median(&mut f), median(&mut g));
    println!(
        "ferry diff (changed files, {iterations} runs): median {:.1} ms",
        ms(fm)
    );
    println!(
        "git diff --name-only ({iterations} runs):     median {:.1} ms",
        ms(gm)
    );
    println!("ratio ferry/git: {:.2}x", ratio(fm, gm));
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        f64::INFINITY
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// Two commits: `files` files, then `changed` of them (evenly spread) modified.
fn import(repo: &Path, files: usize, changed: usize) -> Result<(), String> {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git fast-import: {e}"))?;
    let mut s = Vec::with_capacity(files * 80);
    let path = |i: usize| format!("src/d{:04}/f{:03}.txt", i / 100, i % 100);
    let commit = |s: &mut Vec<u8>, n: usize, msg: &str, parent: bool| {
        let _ = write!(
            s,
            "commit refs/heads/main\nmark :{n}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{msg}\n",
            1_700_000_000 + n,
            msg.len() + 1
        );
        if parent {
            let _ = writeln!(s, "from :{}", n - 1);
        }
    };
    commit(&mut s, 1, "many files", false);
    for i in 0..files {
        let body = format!("file {i}\n");
        let _ = write!(
            s,
            "M 100644 inline {}\ndata {}\n{body}\n",
            path(i),
            body.len()
        );
    }
    commit(&mut s, 2, "change some", true);
    let step = files / changed;
    for k in 0..changed {
        let i = k * step;
        let body = format!("file {i}, changed\n");
        let _ = write!(
            s,
            "M 100644 inline {}\ndata {}\n{body}\n",
            path(i),
            body.len()
        );
    }
    {
        let stdin = child.stdin.as_mut().ok_or("no stdin for git fast-import")?;
        stdin
            .write_all(&s)
            .map_err(|e| format!("git fast-import: {e}"))?;
    }
    drop(child.stdin.take());
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("git fast-import failed".into());
    }
    git(repo, &["reset", "-q", "--hard", "main"])
}

fn git_names(repo: &Path) -> Result<usize, String> {
    let out = Command::new("git")
        .args(["diff", "--name-only", "main~1", "main"])
        .current_dir(repo)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "git diff failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout.iter().filter(|b| **b == b'\n').count())
}

fn ferry_diff(repo: &Path, ferry: &Path) -> Result<String, String> {
    let out = Command::new(ferry)
        .args(["diff", "main~1", "main", "--json"])
        .current_dir(repo)
        .output()
        .map_err(|e| format!("cannot run ferry: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ferry diff failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
