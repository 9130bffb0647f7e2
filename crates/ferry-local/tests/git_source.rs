//! `GitSource` against real repositories made with git2 in temporary folders.
#![allow(clippy::unwrap_used)]

mod common;

use common::write_exec;
use ferry_engine::ports::{PortErrorKind, Source};
use ferry_local::GitSource;
use git2::{IndexAddOption, Oid, Repository, RepositoryInitOptions, Signature};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

fn init(dir: &Path) -> Repository {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    Repository::init_opts(dir, &opts).unwrap()
}

fn commit_all(repo: &Repository, message: &str) -> Oid {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Ada Lovelace", "ada@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
}

/// A repository with two commits: v1 (app.txt "one", an executable script and a link),
/// then v2 (app.txt "two").
fn sample(dir: &Path) -> (Repository, Oid, Oid) {
    let repo = init(dir);
    fs::write(dir.join("app.txt"), "one\n").unwrap();
    fs::create_dir(dir.join("ci")).unwrap();
    write_exec(&dir.join("ci/lint.sh"), "#!/bin/sh\nexit 0\n");
    fs::write(dir.join("ci/plain.txt"), "not executable\n").unwrap();
    symlink("app.txt", dir.join("link")).unwrap();
    let first = commit_all(&repo, "first commit\n\nwith a body $(touch pwned)\n");
    fs::write(dir.join("app.txt"), "two\n").unwrap();
    let second = commit_all(&repo, "second commit");
    (repo, first, second)
}

#[test]
fn resolves_head_branches_and_short_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (_repo, first, second) = sample(dir.path());
    let src = GitSource::open(dir.path()).unwrap();
    let head = src.resolve("HEAD").unwrap();
    assert_eq!(head.sha, second.to_string());
    assert_eq!(head.message, "second commit");
    assert_eq!(head.author, "Ada Lovelace <ada@example.com>");
    assert_eq!(src.resolve("main").unwrap().sha, second.to_string());
    let short = &first.to_string()[..7];
    let c = src.resolve(short).unwrap();
    assert_eq!(c.sha, first.to_string());
    assert_eq!(c.message, "first commit\n\nwith a body $(touch pwned)");
    assert_eq!(src.resolve("HEAD~1").unwrap().sha, first.to_string());
    assert_eq!(src.head_branch().as_deref(), Some("main"));
}

#[test]
fn a_missing_commit_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let src = GitSource::open(dir.path()).unwrap();
    for rev in ["deadbeefdeadbeef", "no-such-branch"] {
        let e = src.resolve(rev).unwrap_err();
        assert_eq!(e.kind, PortErrorKind::NotFound, "{e}");
        assert!(
            e.message.contains(&format!("commit `{rev}` not found")),
            "{e}"
        );
        assert!(e.message.contains("git log"), "{e}");
        assert!(e.message.contains(&dir.path().display().to_string()), "{e}");
    }
    let dest = dir.path().join("out");
    let e = src.checkout("deadbeefdeadbeef", &dest).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);
}

#[test]
fn opening_a_folder_that_is_not_a_repository_says_git_init() {
    let dir = tempfile::tempdir().unwrap();
    let e = GitSource::open(dir.path()).unwrap_err();
    assert!(e.message.contains("git init"), "{e}");
    assert!(e.message.contains(&dir.path().display().to_string()), "{e}");
    let e = GitSource::open(dir.path().join("nope")).unwrap_err();
    assert!(e.message.contains("nope"), "{e}");
}

#[test]
fn checkout_writes_the_commit_not_the_dirty_working_tree() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    fs::create_dir(&repo_dir).unwrap();
    let (_repo, first, second) = sample(&repo_dir);
    // Uncommitted and untracked changes must not appear in a checkout.
    fs::write(repo_dir.join("app.txt"), "dirty\n").unwrap();
    fs::write(repo_dir.join("untracked.txt"), "x\n").unwrap();
    let index_before = fs::read(repo_dir.join(".git/index")).unwrap();
    let head_before = fs::read_to_string(repo_dir.join(".git/HEAD")).unwrap();

    let src = GitSource::open(&repo_dir).unwrap();
    let out = dir.path().join("checkout-2");
    src.checkout(&second.to_string(), &out).unwrap();
    assert_eq!(fs::read_to_string(out.join("app.txt")).unwrap(), "two\n");
    assert!(!out.join("untracked.txt").exists());
    assert!(!out.join(".git").exists());
    let mode = fs::metadata(out.join("ci/lint.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "exec bit lost: {mode:o}");
    let mode = fs::metadata(out.join("ci/plain.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "exec bit invented: {mode:o}");
    let link = fs::symlink_metadata(out.join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("app.txt")
    );
    assert_eq!(fs::read_to_string(out.join("link")).unwrap(), "two\n");

    let out1 = dir.path().join("checkout-1");
    src.checkout(&first.to_string(), &out1).unwrap();
    assert_eq!(fs::read_to_string(out1.join("app.txt")).unwrap(), "one\n");

    // The repository itself is untouched.
    assert_eq!(fs::read(repo_dir.join(".git/index")).unwrap(), index_before);
    assert_eq!(
        fs::read_to_string(repo_dir.join(".git/HEAD")).unwrap(),
        head_before
    );
    assert_eq!(
        fs::read_to_string(repo_dir.join("app.txt")).unwrap(),
        "dirty\n"
    );

    // A folder that already has files is refused.
    let e = src.checkout(&first.to_string(), &out1).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Conflict, "{e}");
}

#[test]
fn head_branch_is_none_when_detached() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, first, _) = sample(dir.path());
    repo.set_head_detached(first).unwrap();
    let src = GitSource::open(dir.path()).unwrap();
    assert_eq!(src.head_branch(), None);
    assert_eq!(src.resolve("HEAD").unwrap().sha, first.to_string());
}
