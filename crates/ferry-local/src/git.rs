//! `GitSource`: the repository on disk through libgit2 (git2). Resolves revisions to
//! commits and writes exactly a commit's tree into a fresh folder, never touching the
//! working tree, the index or HEAD.

use ferry_core::Commit;
use ferry_engine::ports::{PortError, PortResult, Source};
use git2::{ErrorCode, ObjectType, Repository, Tree};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A git repository on disk (see [`Source`]).
pub struct GitSource {
    path: PathBuf,
    // `git2::Repository` is `Send` but not `Sync`; one lock makes the source shareable.
    repo: Mutex<Repository>,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("path", &self.path)
            .finish()
    }
}

impl GitSource {
    /// Opens the repository in `repo_dir` (its work tree or a bare repository).
    pub fn open(repo_dir: impl AsRef<Path>) -> PortResult<Self> {
        let path = repo_dir.as_ref().to_path_buf();
        if !path.is_dir() {
            return Err(PortError::not_found(format!(
                "folder `{}` does not exist; ferry needs the project's git repository",
                path.display()
            )));
        }
        let repo = Repository::open(&path).map_err(|e| {
            PortError::permanent(format!(
                "folder `{}` is not a git repository ({}); run `git init` there and commit your files",
                path.display(),
                e.message()
            ))
        })?;
        Ok(GitSource {
            path,
            repo: Mutex::new(repo),
        })
    }

    /// The folder the source was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The branch HEAD points to (`main`), `None` when HEAD is detached or unborn.
    pub fn head_branch(&self) -> Option<String> {
        let repo = self.lock();
        let head = repo.head().ok()?;
        if !head.is_branch() {
            return None;
        }
        head.shorthand().ok().map(str::to_owned)
    }

    /// Whether the repository has a remote called `name`.
    pub fn has_remote(&self, name: &str) -> bool {
        self.lock().find_remote(name).is_ok()
    }

    /// Fetches `branch` from `remote` into `refs/remotes/<remote>/<branch>` with the git
    /// command line, so credentials, ssh agents and proxies work as the user set them up
    /// (never prompting: a fetch that needs a password fails). Bounded by `timeout`.
    pub fn fetch(&self, remote: &str, branch: &str, timeout: Duration) -> PortResult<()> {
        if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
            || branch.starts_with('-')
        {
            return Err(PortError::permanent(format!(
                "`{branch}` is not a branch name git can fetch"
            )));
        }
        let refspec = format!("+refs/heads/{branch}:refs/remotes/{remote}/{branch}");
        let mut child = std::process::Command::new("git")
            .args(["fetch", "--quiet", "--no-tags", "--", remote, &refspec])
            .current_dir(&self.path)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                PortError::permanent(format!("cannot run `git fetch`: {e}; is git installed?"))
            })?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    return if status.success() {
                        Ok(())
                    } else {
                        Err(PortError::transient(format!(
                            "`git fetch {remote} {branch}` failed: {}",
                            err.trim()
                        )))
                    };
                }
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PortError::transient(format!(
                        "`git fetch {remote} {branch}` took longer than {} s and was stopped",
                        timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(PortError::transient(format!("`git fetch`: {e}"))),
            }
        }
    }

    /// The commit `branch` points to: `<remote>/<branch>` when that remote-tracking
    /// branch exists, else the local branch; `None` when neither does.
    pub fn branch_tip(&self, remote: &str, branch: &str) -> Option<String> {
        let repo = self.lock();
        [
            format!("refs/remotes/{remote}/{branch}"),
            format!("refs/heads/{branch}"),
        ]
        .iter()
        .find_map(|r| {
            repo.find_reference(r)
                .ok()?
                .peel_to_commit()
                .ok()
                .map(|c| c.id().to_string())
        })
    }

    fn lock(&self) -> MutexGuard<'_, Repository> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(&self, rev: &str) -> PortError {
        PortError::not_found(format!(
            "commit `{rev}` not found in repository `{}`; check `git log`",
            self.path.display()
        ))
    }

    fn find<'r>(&self, repo: &'r Repository, rev: &str) -> PortResult<git2::Commit<'r>> {
        // What a person typed, shortened for messages (a revision can be anything).
        let shown: String = if rev.chars().count() > 80 {
            format!("{}…", rev.chars().take(80).collect::<String>())
        } else {
            rev.to_string()
        };
        let object = repo.revparse_single(rev).map_err(|e| match e.code() {
            ErrorCode::Ambiguous => PortError::not_found(format!(
                "`{shown}` names more than one commit in repository `{}`; give more digits of the commit id",
                self.path.display()
            )),
            // Anything else libgit2 cannot make a commit of is, to the user, a revision
            // that does not exist (too long, malformed, unborn, unknown).
            _ => self.not_found(&shown),
        })?;
        object.peel_to_commit().map_err(|_| self.not_found(&shown))
    }
}

impl Source for GitSource {
    fn origin_url(&self) -> Option<String> {
        let repo = self.lock();
        let remote = repo.find_remote("origin").ok()?;
        remote.url().ok().map(str::to_string)
    }

    fn resolve(&self, rev: &str) -> PortResult<Commit> {
        let repo = self.lock();
        let commit = self.find(&repo, rev)?;
        let author = commit.author();
        let name = String::from_utf8_lossy(author.name_bytes());
        let email = String::from_utf8_lossy(author.email_bytes());
        Ok(Commit {
            sha: commit.id().to_string(),
            message: String::from_utf8_lossy(commit.message_bytes())
                .trim_end()
                .to_owned(),
            author: format!("{name} <{email}>"),
        })
    }

    fn checkout(&self, sha: &str, dest: &Path) -> PortResult<()> {
        let repo = self.lock();
        let commit = self.find(&repo, sha)?;
        let tree = commit.tree().map_err(|e| {
            PortError::permanent(format!(
                "cannot read the tree of commit `{sha}`: {}",
                e.message()
            ))
        })?;
        if dest.exists() {
            let empty = fs::read_dir(dest)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(PortError::conflict(format!(
                    "checkout folder `{}` already exists and is not empty; remove it first",
                    dest.display()
                )));
            }
        }
        fs::create_dir_all(dest).map_err(|e| write_error(dest, &e))?;
        write_tree(&repo, &tree, dest)
    }
}

fn write_error(path: &Path, e: &std::io::Error) -> PortError {
    PortError::permanent(format!("cannot write `{}`: {e}", path.display()))
}

/// Writes `tree` into the existing folder `dir`: blobs as files (mode 755 or 644, as git
/// records them), links as symbolic links, sub-trees as folders, submodules as empty
/// folders.
fn write_tree(repo: &Repository, tree: &Tree<'_>, dir: &Path) -> PortResult<()> {
    for entry in tree.iter() {
        let name = entry.name_bytes();
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Err(PortError::permanent(format!(
                "the commit contains an unsafe path `{}`; refusing to check it out",
                String::from_utf8_lossy(name)
            )));
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        let mode = entry.filemode();
        let object = || {
            entry.to_object(repo).map_err(|e| {
                PortError::permanent(format!(
                    "cannot read `{}` from the repository: {}",
                    path.display(),
                    e.message()
                ))
            })
        };
        match entry.kind() {
            Some(ObjectType::Tree) => {
                fs::create_dir(&path).map_err(|e| write_error(&path, &e))?;
                let obj = object()?;
                let sub = obj
                    .as_tree()
                    .ok_or_else(|| PortError::permanent("a tree entry is not a tree"))?;
                write_tree(repo, sub, &path)?;
            }
            Some(ObjectType::Blob) => {
                let obj = object()?;
                let blob = obj
                    .as_blob()
                    .ok_or_else(|| PortError::permanent("a blob entry is not a blob"))?;
                if mode == 0o120000 {
                    let target = std::ffi::OsStr::from_bytes(blob.content());
                    symlink(target, &path).map_err(|e| write_error(&path, &e))?;
                } else {
                    let perms = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(perms)
                        .open(&path)
                        .map_err(|e| write_error(&path, &e))?;
                    f.write_all(blob.content())
                        .map_err(|e| write_error(&path, &e))?;
                }
            }
            // A submodule (a commit inside a tree): git leaves an empty folder too.
            Some(ObjectType::Commit) => {
                fs::create_dir(&path).map_err(|e| write_error(&path, &e))?;
            }
            _ => {}
        }
    }
    Ok(())
}
