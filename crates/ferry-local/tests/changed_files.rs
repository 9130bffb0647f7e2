//! `GitSource::changed_files` against the git command line on real repositories: every
//! kind of change, renames (exact and edited), folders that become files, and a property
//! test over random histories (the same paths and statuses as `git diff --name-status
//! --no-renames`, renames expanded).
#![allow(clippy::unwrap_used)]

use ferry_core::infra::{ChangedFile, FileStatus};
use ferry_local::GitSource;
use git2::{IndexAddOption, Oid, Repository, RepositoryInitOptions, Signature};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

fn init(dir: &Path) -> Repository {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    Repository::init_opts(dir, &opts).unwrap()
}

/// Commits the work tree as it is (additions, edits and removals).
fn commit_all(repo: &Repository, message: &str) -> Oid {
    let mut index = repo.index().unwrap();
    index.clear().unwrap();
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

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, text).unwrap();
}

/// `git diff --name-status --no-renames FROM TO` as (status letter, path), sorted.
fn git_no_renames(dir: &Path, from: Oid, to: Oid) -> BTreeSet<(char, String)> {
    let out = Command::new("git")
        .args(["diff", "--name-status", "--no-renames"])
        .arg(from.to_string())
        .arg(to.to_string())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, p) = l.split_once('\t').unwrap();
            (s.chars().next().unwrap(), p.to_string())
        })
        .collect()
}

/// ferry's list with renames expanded into a deletion and an addition.
fn expanded(files: &[ChangedFile]) -> BTreeSet<(char, String)> {
    let mut out = BTreeSet::new();
    for f in files {
        match (&f.status, &f.old_path) {
            (FileStatus::Renamed, Some(old)) => {
                out.insert(('D', old.clone()));
                out.insert(('A', f.path.clone()));
            }
            (s, _) => {
                out.insert((s.letter(), f.path.clone()));
            }
        }
    }
    out
}

fn sorted(files: &[ChangedFile]) -> bool {
    files.windows(2).all(|w| w[0].path <= w[1].path)
}

fn find<'a>(files: &'a [ChangedFile], path: &str) -> &'a ChangedFile {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in {files:?}"))
}

#[test]
fn added_modified_deleted_in_nested_folders_match_git() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = init(d);
    write(d, "a.txt", "a\n");
    write(d, "src/lib.rs", "lib\n");
    write(d, "src/deep/x/y.rs", "y\n");
    write(d, "src/same.rs", "same\n");
    write(d, "docs/gone.md", "gone\n");
    let from = commit_all(&repo, "one");
    write(d, "a.txt", "a, edited\n");
    write(d, "src/deep/x/y.rs", "y, edited\n");
    write(d, "src/deep/new.rs", "new\n");
    write(d, "b.txt", "b\n");
    fs::remove_dir_all(d.join("docs")).unwrap();
    let to = commit_all(&repo, "two");

    let src = GitSource::open(d).unwrap();
    let files = src
        .changed_files(&from.to_string(), &to.to_string())
        .unwrap();
    assert!(sorted(&files));
    assert_eq!(expanded(&files), git_no_renames(d, from, to));
    assert_eq!(find(&files, "src/deep/new.rs").status, FileStatus::Added);
    assert_eq!(find(&files, "docs/gone.md").status, FileStatus::Deleted);
    assert_eq!(find(&files, "a.txt").status, FileStatus::Modified);
    // Nothing changed between a commit and itself.
    assert!(src.changed_files("main", "main").unwrap().is_empty());
}

#[test]
fn exact_and_edited_renames_are_reported_with_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = init(d);
    let body: String = (0..40)
        .map(|i| format!("line {i} of the module\n"))
        .collect();
    write(d, "old/exact.rs", "the exact same content\n");
    write(d, "old/edited.rs", &body);
    write(d, "keep.txt", "keep\n");
    let from = commit_all(&repo, "one");
    fs::remove_dir_all(d.join("old")).unwrap();
    write(d, "new/place/exact.rs", "the exact same content\n");
    write(d, "new/edited.rs", &format!("{body}one more line\n"));
    let to = commit_all(&repo, "two");

    let src = GitSource::open(d).unwrap();
    let files = src
        .changed_files(&from.to_string(), &to.to_string())
        .unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let exact = find(&files, "new/place/exact.rs");
    assert_eq!(exact.status, FileStatus::Renamed);
    assert_eq!(exact.old_path.as_deref(), Some("old/exact.rs"));
    let edited = find(&files, "new/edited.rs");
    assert_eq!(edited.status, FileStatus::Renamed);
    assert_eq!(edited.old_path.as_deref(), Some("old/edited.rs"));
    assert_eq!(expanded(&files), git_no_renames(d, from, to));
}

#[test]
fn an_unrelated_addition_and_deletion_are_not_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = init(d);
    write(d, "gone.txt", "completely different words here\n");
    let from = commit_all(&repo, "one");
    fs::remove_file(d.join("gone.txt")).unwrap();
    write(d, "new.txt", "0123456789\n");
    let to = commit_all(&repo, "two");
    let files = GitSource::open(d)
        .unwrap()
        .changed_files(&from.to_string(), &to.to_string())
        .unwrap();
    assert_eq!(find(&files, "gone.txt").status, FileStatus::Deleted);
    assert_eq!(find(&files, "new.txt").status, FileStatus::Added);
}

#[test]
fn folders_becoming_files_links_and_modes_match_git() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = init(d);
    write(d, "thing/inside.txt", "inside\n");
    write(d, "script.sh", "#!/bin/sh\n");
    write(d, "target.txt", "target\n");
    write(d, "link", "a plain file first\n");
    let from = commit_all(&repo, "one");
    fs::remove_dir_all(d.join("thing")).unwrap();
    write(d, "thing", "now a file\n");
    fs::set_permissions(d.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(d.join("link")).unwrap();
    symlink("target.txt", d.join("link")).unwrap();
    let to = commit_all(&repo, "two");

    let files = GitSource::open(d)
        .unwrap()
        .changed_files(&from.to_string(), &to.to_string())
        .unwrap();
    assert!(sorted(&files));
    assert_eq!(expanded(&files), git_no_renames(d, from, to));
    assert_eq!(find(&files, "link").status, FileStatus::Typechange);
    assert_eq!(find(&files, "script.sh").status, FileStatus::Modified);
    assert_eq!(find(&files, "thing").status, FileStatus::Added);
    assert_eq!(find(&files, "thing/inside.txt").status, FileStatus::Deleted);
}

/// One edit of a random history: write a file (new or existing) or remove one.
#[derive(Debug, Clone)]
enum Edit {
    Write(usize, u8),
    Remove(usize),
    Move(usize, usize),
}

/// A small space of paths so that edits collide: folders nest, names repeat.
/// `x.txt`, `x-y` and the folder `x` test git's order (a folder sorts as `x/`).
const PATHS: &[&str] = &[
    "a",
    "b.txt",
    "c/a",
    "c/b.txt",
    "c/d/e",
    "c/d/f.txt",
    "d.txt",
    "e/c",
    "e/c2/x",
    "z/z/z/z",
    "x.txt",
    "x-y",
    "x/y",
    "x/y.txt/z",
    "x0",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..PATHS.len(), any::<u8>()).prop_map(|(p, v)| Edit::Write(p, v)),
        (0..PATHS.len()).prop_map(Edit::Remove),
        (0..PATHS.len(), 0..PATHS.len()).prop_map(|(a, b)| Edit::Move(a, b)),
    ]
}

/// Applies an edit to the work tree when the paths allow it (a file where a folder must
/// go, or the reverse, skips it).
fn apply(d: &Path, e: &Edit) {
    let free = |p: &str| {
        let path = d.join(p);
        !path.is_dir()
            && Path::new(p)
                .ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .all(|a| !d.join(a).is_file())
    };
    match e {
        Edit::Write(p, v) if free(PATHS[*p]) => {
            // Long enough for similarity detection to have something to compare.
            let text: String = (0..20).map(|i| format!("{p} {v} line {i}\n")).collect();
            write(d, PATHS[*p], &text);
        }
        Edit::Remove(p) if d.join(PATHS[*p]).is_file() => {
            fs::remove_file(d.join(PATHS[*p])).unwrap();
        }
        Edit::Move(a, b)
            if a != b && d.join(PATHS[*a]).is_file() && free(PATHS[*b]) && {
                let (pa, pb) = (PATHS[*a], PATHS[*b]);
                !pb.starts_with(&format!("{pa}/"))
            } =>
        {
            let text = fs::read(d.join(PATHS[*a])).unwrap();
            fs::remove_file(d.join(PATHS[*a])).unwrap();
            let p = d.join(PATHS[*b]);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the two commits, ferry lists the same paths with the same statuses as
    /// git (renames counted as a deletion and an addition), sorted by path, and every
    /// rename pairs a path that went with one that came.
    #[test]
    fn changed_files_agree_with_git(
        before in proptest::collection::vec(edit(), 0..12),
        after in proptest::collection::vec(edit(), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let repo = init(d);
        write(d, "root.txt", "always here\n");
        for e in &before {
            apply(d, e);
        }
        let from = commit_all(&repo, "one");
        for e in &after {
            apply(d, e);
        }
        let to = commit_all(&repo, "two");
        let files = GitSource::open(d)
            .unwrap()
            .changed_files(&from.to_string(), &to.to_string())
            .unwrap();
        prop_assert!(sorted(&files));
        let git = git_no_renames(d, from, to);
        prop_assert_eq!(expanded(&files), git.clone());
        for f in files.iter().filter(|f| f.status == FileStatus::Renamed) {
            let old = f.old_path.clone().unwrap_or_default();
            prop_assert!(git.contains(&('D', old)));
            prop_assert!(git.contains(&('A', f.path.clone())));
        }
    }
}
