//! `GitSource`: the repository on disk through libgit2 (git2). Resolves revisions to
//! commits and writes exactly a commit's tree into a fresh folder, never touching the
//! working tree, the index or HEAD.

use ferry_core::Commit;
use ferry_core::infra::{ChangedFile, FileStatus, glob_match};
use ferry_engine::ports::{PortError, PortResult, Source};
use git2::{ErrorCode, ObjectType, Repository, Tree};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A file read from a commit by [`GitSource::files_matching`] larger than this is refused.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

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

    /// The files changed from commit `from` to commit `to`, sorted by path: a
    /// tree-to-tree comparison (never the working tree) that, like git, descends only into
    /// sub-trees whose ids differ, so its cost follows the change, not the repository.
    /// Renames: an added and a deleted file with the same content pair up at once; the
    /// rest (when both kinds remain) go through libgit2's similarity detection
    /// (`find_similar`), limited to those paths.
    pub fn changed_files(&self, from: &str, to: &str) -> PortResult<Vec<ChangedFile>> {
        let repo = self.lock();
        let a = self.find(&repo, from)?;
        let b = self.find(&repo, to)?;
        let tree_error = |e: git2::Error| {
            PortError::permanent(format!("cannot read a commit's tree: {}", e.message()))
        };
        let ta = a.tree().map_err(tree_error)?;
        let tb = b.tree().map_err(tree_error)?;
        // libgit2 re-hashes every object it reads (SHA-1 with collision detection) unless
        // told not to; git does not. Reading ~2,000 trees that way costs twice git's time.
        git2::opts::strict_hash_verification(false);
        let mut raw = Vec::new();
        diff_trees(&repo, Some(&ta), Some(&tb), "", &mut raw)?;

        // Exact renames: the same blob deleted at one path and added at another.
        let mut deleted: std::collections::HashMap<git2::Oid, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, r) in raw.iter().enumerate() {
            if r.status == FileStatus::Deleted {
                deleted.entry(r.oid).or_default().push(i);
            }
        }
        let mut gone = vec![false; raw.len()];
        let mut out = Vec::with_capacity(raw.len());
        for i in 0..raw.len() {
            if raw[i].status != FileStatus::Added {
                continue;
            }
            if let Some(j) = deleted.get_mut(&raw[i].oid).and_then(|v| v.pop()) {
                gone[i] = true;
                gone[j] = true;
                out.push(ChangedFile {
                    path: raw[i].path.clone(),
                    status: FileStatus::Renamed,
                    old_path: Some(raw[j].path.clone()),
                });
            }
        }
        // Similar renames among what is left.
        let left_added: Vec<usize> = (0..raw.len())
            .filter(|&i| !gone[i] && raw[i].status == FileStatus::Added)
            .collect();
        let left_deleted: Vec<usize> = (0..raw.len())
            .filter(|&i| !gone[i] && raw[i].status == FileStatus::Deleted)
            .collect();
        if !left_added.is_empty() && !left_deleted.is_empty() {
            let mut opts = git2::DiffOptions::new();
            opts.skip_binary_check(true).disable_pathspec_match(true);
            for &i in left_added.iter().chain(&left_deleted) {
                opts.pathspec(raw[i].path.as_str());
            }
            let mut diff = repo
                .diff_tree_to_tree(Some(&ta), Some(&tb), Some(&mut opts))
                .map_err(|e| {
                    PortError::permanent(format!(
                        "cannot compare commits `{from}` and `{to}`: {}",
                        e.message()
                    ))
                })?;
            let mut find = git2::DiffFindOptions::new();
            find.renames(true);
            diff.find_similar(Some(&mut find)).map_err(|e| {
                PortError::permanent(format!("cannot detect renames: {}", e.message()))
            })?;
            let index: std::collections::HashMap<(&str, FileStatus), usize> = left_added
                .iter()
                .chain(&left_deleted)
                .map(|&i| ((raw[i].path.as_str(), raw[i].status), i))
                .collect();
            for d in diff.deltas() {
                if d.status() != git2::Delta::Renamed {
                    continue;
                }
                let path_of = |f: git2::DiffFile<'_>| {
                    f.path_bytes()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default()
                };
                let (old, new) = (path_of(d.old_file()), path_of(d.new_file()));
                let (Some(&j), Some(&i)) = (
                    index.get(&(old.as_str(), FileStatus::Deleted)),
                    index.get(&(new.as_str(), FileStatus::Added)),
                ) else {
                    continue;
                };
                if gone[i] || gone[j] {
                    continue;
                }
                gone[i] = true;
                gone[j] = true;
                out.push(ChangedFile {
                    path: new,
                    status: FileStatus::Renamed,
                    old_path: Some(old),
                });
            }
        }
        for (i, r) in raw.into_iter().enumerate() {
            if !gone[i] {
                out.push(ChangedFile {
                    path: r.path,
                    status: r.status,
                    old_path: None,
                });
            }
        }
        out.sort_by(|x, y| x.path.cmp(&y.path));
        Ok(out)
    }

    /// The files of commit `sha` whose path matches one of `globs`, with their content
    /// (read from the commit's tree, never the working tree), sorted by path.
    pub fn files_matching(
        &self,
        sha: &str,
        globs: &[String],
    ) -> PortResult<Vec<(String, Vec<u8>)>> {
        let repo = self.lock();
        let commit = self.find(&repo, sha)?;
        let tree = commit.tree().map_err(|e| {
            PortError::permanent(format!("cannot read the tree of `{sha}`: {}", e.message()))
        })?;
        let mut out = Vec::new();
        let mut failed = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return git2::TreeWalkResult::Ok;
            }
            let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
            if globs.iter().any(|g| glob_match(g, &path)) {
                match entry.to_object(&repo).ok().and_then(|o| o.into_blob().ok()) {
                    Some(blob) if blob.size() as u64 > MAX_FILE_BYTES => {
                        failed = Some(format!(
                            "`{path}` is {} bytes, more than ferry reads ({MAX_FILE_BYTES})",
                            blob.size()
                        ));
                        return git2::TreeWalkResult::Abort;
                    }
                    Some(blob) => out.push((path, blob.content().to_vec())),
                    None => {
                        failed = Some(format!("cannot read `{path}`"));
                        return git2::TreeWalkResult::Abort;
                    }
                }
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|e| {
            PortError::permanent(format!("cannot read the tree of `{sha}`: {}", e.message()))
        })
        .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
        if let Some(path) = failed {
            return Err(PortError::permanent(format!(
                "cannot read `{path}` of commit `{sha}`"
            )));
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(out)
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

/// One changed file before rename pairing, with the blob id it has (added, modified) or
/// had (deleted).
struct RawChange {
    path: String,
    status: FileStatus,
    oid: git2::Oid,
}

/// Git's order of tree entries: by name bytes, a folder's name compared as if it ended
/// with `/`.
fn git_order(x: &git2::TreeEntry<'_>, y: &git2::TreeEntry<'_>) -> std::cmp::Ordering {
    let key = |e: &git2::TreeEntry<'_>| {
        let slash: &[u8] = if is_tree(e.filemode()) { b"/" } else { b"" };
        e.name_bytes()
            .iter()
            .chain(slash)
            .copied()
            .collect::<Vec<u8>>()
    };
    let (nx, ny) = (x.name_bytes(), y.name_bytes());
    if nx == ny {
        return std::cmp::Ordering::Equal;
    }
    key(x).cmp(&key(y))
}

/// Whether a tree entry's mode is a folder.
fn is_tree(mode: i32) -> bool {
    mode == 0o040000
}

/// Compares two trees (either may be absent: all added or all deleted), descending only
/// into sub-trees whose ids differ.
fn diff_trees(
    repo: &Repository,
    a: Option<&Tree<'_>>,
    b: Option<&Tree<'_>>,
    prefix: &str,
    out: &mut Vec<RawChange>,
) -> PortResult<()> {
    // Both trees' entries are in git's order (names compared as bytes, a folder's name
    // with a `/` after it): one merge pass, no copies.
    let ea: Vec<git2::TreeEntry<'_>> = a.map(|t| t.iter().collect()).unwrap_or_default();
    let eb: Vec<git2::TreeEntry<'_>> = b.map(|t| t.iter().collect()).unwrap_or_default();
    let find_tree = |oid: git2::Oid| {
        repo.find_tree(oid).map_err(|e| {
            PortError::permanent(format!(
                "cannot read a tree of the repository: {}",
                e.message()
            ))
        })
    };
    let (mut i, mut j) = (0, 0);
    while i < ea.len() || j < eb.len() {
        let order = match (ea.get(i), eb.get(j)) {
            (Some(x), Some(y)) => git_order(x, y),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (x, y, name) = match order {
            std::cmp::Ordering::Less => {
                i += 1;
                (Some(&ea[i - 1]), None, ea[i - 1].name_bytes())
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (None, Some(&eb[j - 1]), eb[j - 1].name_bytes())
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (Some(&ea[i - 1]), Some(&eb[j - 1]), ea[i - 1].name_bytes())
            }
        };
        let x = x.map(|e| (e.id(), e.filemode()));
        let y = y.map(|e| (e.id(), e.filemode()));
        if x == y {
            continue;
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let sub = format!("{path}/");
        match (x, y) {
            (Some((ox, mx)), Some((oy, my))) if is_tree(mx) && is_tree(my) => {
                let (tx, ty) = (find_tree(ox)?, find_tree(oy)?);
                diff_trees(repo, Some(&tx), Some(&ty), &sub, out)?;
            }
            (Some((ox, mx)), Some((oy, my))) if !is_tree(mx) && !is_tree(my) => {
                let status = if (mx == 0o120000) != (my == 0o120000)
                    || (mx == 0o160000) != (my == 0o160000)
                {
                    FileStatus::Typechange
                } else {
                    let _ = ox;
                    FileStatus::Modified
                };
                out.push(RawChange {
                    path,
                    status,
                    oid: oy,
                });
            }
            _ => {
                // Gone, new, or a folder replaced by a file (or the reverse): the old side
                // is deleted and the new side added, file by file.
                if let Some((ox, mx)) = x {
                    if is_tree(mx) {
                        let t = find_tree(ox)?;
                        diff_trees(repo, Some(&t), None, &sub, out)?;
                    } else {
                        out.push(RawChange {
                            path: path.clone(),
                            status: FileStatus::Deleted,
                            oid: ox,
                        });
                    }
                }
                if let Some((oy, my)) = y {
                    if is_tree(my) {
                        let t = find_tree(oy)?;
                        diff_trees(repo, None, Some(&t), &sub, out)?;
                    } else {
                        out.push(RawChange {
                            path,
                            status: FileStatus::Added,
                            oid: oy,
                        });
                    }
                }
            }
        }
    }
    Ok(())
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
