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
        // libgit2 re-hashes every object it reads (SHA-1 with collision detection) unless
        // told not to; git does not. Reading ~2,000 trees that way costs twice git's time.
        git2::opts::strict_hash_verification(false);
        // libgit2 keeps every small object it reads in a process-wide cache (each tree of
        // up to 4 KiB); a tree diff reads each tree once, so caching only costs memory and
        // page faults (twice git's on a 100,000-file repository). Process-wide, like the
        // line above; nothing in ferry reads the same object often enough to miss it.
        git2::opts::enable_caching(false);
        let trees = Trees {
            odb: repo.odb().map_err(|e| {
                PortError::permanent(format!(
                    "cannot open the repository's objects: {}",
                    e.message()
                ))
            })?,
        };
        let mut raw = Vec::new();
        diff_trees(
            &trees,
            Some(a.tree_id().as_bytes()),
            Some(b.tree_id().as_bytes()),
            "",
            &mut raw,
        )?;

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
            let ta = a.tree().map_err(tree_error)?;
            let tb = b.tree().map_err(tree_error)?;
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

/// One entry of a tree object as stored: its mode (canonical, as git compares them), its
/// name and its object id, borrowed from the object's bytes.
#[derive(Clone, Copy)]
struct Entry<'a> {
    mode: u32,
    name: &'a [u8],
    id: &'a [u8],
}

const MODE_TREE: u32 = 0o040000;
const MODE_LINK: u32 = 0o120000;
const MODE_SUBMODULE: u32 = 0o160000;
/// Bytes of a (SHA-1) object id in a tree entry.
const ID_BYTES: usize = 20;

/// Git's canonical form of a mode (`canon_mode`): a regular file is 644 or 755 by its
/// owner's execute bit, whatever else an old tree recorded.
fn canon_mode(mode: u32) -> u32 {
    match mode & 0o170000 {
        0o100000 => 0o100000 | if mode & 0o100 != 0 { 0o755 } else { 0o644 },
        0o040000 => MODE_TREE,
        0o120000 => MODE_LINK,
        _ => MODE_SUBMODULE,
    }
}

/// The entries of a raw tree object (`<octal mode> <name>\0<20-byte id>`…), one at a
/// time in the order stored (git's order), without copying; an entry that is not
/// well-formed ends the walk with `Err`.
struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    fn next(&mut self) -> Option<Result<Entry<'a>, ()>> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = Self::parse(self.rest);
        match parsed {
            Some((entry, rest)) => {
                self.rest = rest;
                Some(Ok(entry))
            }
            None => {
                self.rest = &[];
                Some(Err(()))
            }
        }
    }

    fn parse(data: &'a [u8]) -> Option<(Entry<'a>, &'a [u8])> {
        let mut mode: u32 = 0;
        let mut at = 0;
        // At most 7 octal digits, then a space.
        loop {
            let b = *data.get(at)?;
            if b == b' ' && at > 0 {
                break;
            }
            if !(b'0'..=b'7').contains(&b) || at == 7 {
                return None;
            }
            mode = mode * 8 + u32::from(b - b'0');
            at += 1;
        }
        let rest = &data[at + 1..];
        let nul = rest.iter().position(|&b| b == 0)?;
        if nul == 0 {
            return None;
        }
        let id = rest.get(nul + 1..nul + 1 + ID_BYTES)?;
        let entry = Entry {
            mode: canon_mode(mode),
            name: &rest[..nul],
            id,
        };
        Some((entry, &rest[nul + 1 + ID_BYTES..]))
    }
}

/// Git's order of tree entries: by name bytes, a folder's name compared as if it ended
/// with `/`.
fn git_order(x: &Entry<'_>, y: &Entry<'_>) -> std::cmp::Ordering {
    if x.name == y.name {
        return std::cmp::Ordering::Equal;
    }
    let end = |e: &Entry<'_>| {
        if e.mode == MODE_TREE {
            Some(b'/')
        } else {
            None
        }
    };
    let common = x.name.len().min(y.name.len());
    match x.name[..common].cmp(&y.name[..common]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    // One name is a prefix of the other: compare the next byte, the implied `/` (or
    // nothing) of the shorter.
    let next = |e: &Entry<'_>| e.name.get(common).copied().or_else(|| end(e));
    next(x).cmp(&next(y))
}

/// Reads tree objects straight from the object database, without libgit2's parsed-tree
/// objects and object cache: a tree is read, compared and dropped.
struct Trees<'r> {
    odb: git2::Odb<'r>,
}

impl Trees<'_> {
    fn read(&self, id: &[u8]) -> PortResult<git2::OdbObject<'_>> {
        let error =
            |m: &str| PortError::permanent(format!("cannot read a tree of the repository: {m}"));
        let oid = git2::Oid::from_bytes(id).map_err(|e| error(e.message()))?;
        let object = self.odb.read(oid).map_err(|e| error(e.message()))?;
        if object.kind() != ObjectType::Tree {
            return Err(error(&format!("object {oid} is not a tree")));
        }
        Ok(object)
    }
}

fn next_entry<'a>(e: &mut Entries<'a>, prefix: &str) -> PortResult<Option<Entry<'a>>> {
    e.next().transpose().map_err(|()| malformed(prefix))
}

fn malformed(prefix: &str) -> PortError {
    PortError::permanent(format!(
        "the repository's tree for `{}` is malformed; run `git fsck`",
        if prefix.is_empty() { "/" } else { prefix }
    ))
}

/// Compares two trees by id (either may be absent: all added or all deleted), descending
/// only into sub-trees whose ids differ.
fn diff_trees(
    trees: &Trees<'_>,
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    prefix: &str,
    out: &mut Vec<RawChange>,
) -> PortResult<()> {
    let oa = a.map(|id| trees.read(id)).transpose()?;
    let ob = b.map(|id| trees.read(id)).transpose()?;
    let mut ea = Entries {
        rest: oa.as_ref().map(|o| o.data()).unwrap_or_default(),
    };
    let mut eb = Entries {
        rest: ob.as_ref().map(|o| o.data()).unwrap_or_default(),
    };
    // Both trees are in git's order: one merge pass.
    let (mut x, mut y) = (next_entry(&mut ea, prefix)?, next_entry(&mut eb, prefix)?);
    loop {
        let order = match (&x, &y) {
            (Some(x), Some(y)) => git_order(x, y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        let (x, y) = match order {
            std::cmp::Ordering::Less => (
                std::mem::replace(&mut x, next_entry(&mut ea, prefix)?),
                None,
            ),
            std::cmp::Ordering::Greater => (
                None,
                std::mem::replace(&mut y, next_entry(&mut eb, prefix)?),
            ),
            std::cmp::Ordering::Equal => (
                std::mem::replace(&mut x, next_entry(&mut ea, prefix)?),
                std::mem::replace(&mut y, next_entry(&mut eb, prefix)?),
            ),
        };
        if let (Some(x), Some(y)) = (x, y)
            && x.mode == y.mode
            && x.id == y.id
        {
            continue;
        }
        let name = x.or(y).map(|e| e.name).unwrap_or_default();
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let oid = |e: Entry<'_>| git2::Oid::from_bytes(e.id).map_err(|_| malformed(prefix));
        match (x, y) {
            (Some(x), Some(y)) if x.mode == MODE_TREE && y.mode == MODE_TREE => {
                diff_trees(trees, Some(x.id), Some(y.id), &format!("{path}/"), out)?;
            }
            (Some(x), Some(y)) if x.mode != MODE_TREE && y.mode != MODE_TREE => {
                let status = if (x.mode == MODE_LINK) != (y.mode == MODE_LINK)
                    || (x.mode == MODE_SUBMODULE) != (y.mode == MODE_SUBMODULE)
                {
                    FileStatus::Typechange
                } else {
                    FileStatus::Modified
                };
                out.push(RawChange {
                    path,
                    status,
                    oid: oid(y)?,
                });
            }
            _ => {
                // Gone, new, or a folder replaced by a file (or the reverse): the old side
                // is deleted and the new side added, file by file.
                if let Some(x) = x {
                    if x.mode == MODE_TREE {
                        diff_trees(trees, Some(x.id), None, &format!("{path}/"), out)?;
                    } else {
                        out.push(RawChange {
                            path: path.clone(),
                            status: FileStatus::Deleted,
                            oid: oid(x)?,
                        });
                    }
                }
                if let Some(y) = y {
                    if y.mode == MODE_TREE {
                        diff_trees(trees, None, Some(y.id), &format!("{path}/"), out)?;
                    } else {
                        out.push(RawChange {
                            path,
                            status: FileStatus::Added,
                            oid: oid(y)?,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(entries: &[(&str, &str, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (mode, name, id) in entries {
            out.extend_from_slice(mode.as_bytes());
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(&[*id; ID_BYTES]);
        }
        out
    }

    fn all(data: &[u8]) -> Result<Vec<(u32, String)>, ()> {
        let mut e = Entries { rest: data };
        let mut out = Vec::new();
        while let Some(x) = e.next() {
            let x = x?;
            out.push((x.mode, String::from_utf8_lossy(x.name).into_owned()));
        }
        Ok(out)
    }

    #[test]
    fn tree_entries_are_read_with_canonical_modes() {
        let data = raw(&[
            ("100644", "a.txt", 1),
            ("100664", "old-mode", 2),
            ("100755", "run.sh", 3),
            ("40000", "src", 4),
            ("120000", "link", 5),
            ("160000", "vendor", 6),
        ]);
        assert_eq!(
            all(&data).unwrap(),
            vec![
                (0o100644, "a.txt".into()),
                (0o100644, "old-mode".into()),
                (0o100755, "run.sh".into()),
                (MODE_TREE, "src".into()),
                (MODE_LINK, "link".into()),
                (MODE_SUBMODULE, "vendor".into()),
            ]
        );
        assert_eq!(all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_trees_are_errors_not_panics() {
        let good = raw(&[("100644", "a", 1)]);
        for bad in [
            &good[..good.len() - 1], // id cut short
            b"100644 name-without-nul".as_slice(),
            b"10x644 a\0aaaaaaaaaaaaaaaaaaaa",      // not octal
            b" a\0aaaaaaaaaaaaaaaaaaaa",            // no mode
            b"100644 \0aaaaaaaaaaaaaaaaaaaa",       // no name
            b"10000000644 a\0aaaaaaaaaaaaaaaaaaaa", // mode too long
            b"100644",
        ] {
            assert!(all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_folder_sorts_as_if_its_name_ended_with_a_slash() {
        let e = |mode, name: &'static str| Entry {
            mode,
            name: name.as_bytes(),
            id: &[0; ID_BYTES],
        };
        use std::cmp::Ordering::*;
        // `x.txt` < `x/` < `x0`; a file `x` sorts before `x-y`, a folder `x` after it.
        assert_eq!(git_order(&e(0o100644, "x.txt"), &e(MODE_TREE, "x")), Less);
        assert_eq!(git_order(&e(MODE_TREE, "x"), &e(0o100644, "x0")), Less);
        assert_eq!(git_order(&e(0o100644, "x"), &e(0o100644, "x-y")), Less);
        assert_eq!(git_order(&e(MODE_TREE, "x"), &e(0o100644, "x-y")), Greater);
        assert_eq!(git_order(&e(MODE_TREE, "x"), &e(0o100644, "x")), Equal);
        assert_eq!(git_order(&e(0o100644, "b"), &e(0o100644, "a")), Greater);
    }
}
