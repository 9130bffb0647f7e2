//! A fake repository: commits known by sha (and optional aliases such as `main`), and a
//! record of every checkout asked for.

use ferry_core::Commit;
use ferry_engine::ports::{PortError, PortResult, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct Inner {
    commits: BTreeMap<String, Commit>,
    aliases: BTreeMap<String, String>,
    checkouts: Vec<(String, PathBuf)>,
    fail_checkout: Option<PortError>,
}

/// A [`Source`] over commits added with [`FakeSource::add`]. `resolve` knows a commit by
/// its full sha or an alias; anything else is `NotFound`, as is a checkout of an unknown
/// sha. Checkouts write nothing: they are recorded.
#[derive(Default)]
pub struct FakeSource {
    inner: Mutex<Inner>,
}

impl FakeSource {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) a commit.
    pub fn add(&self, sha: &str, message: &str, author: &str) -> Commit {
        let c = Commit {
            sha: sha.to_string(),
            message: message.to_string(),
            author: author.to_string(),
        };
        self.lock().commits.insert(sha.to_string(), c.clone());
        c
    }

    /// Adds a commit with a made-up message and author unless `sha` is already known.
    pub fn ensure(&self, sha: &str) -> Commit {
        if let Some(c) = self.lock().commits.get(sha) {
            return c.clone();
        }
        self.add(sha, &format!("commit {sha}"), "Dev <dev@example.com>")
    }

    /// Makes `rev` (a branch name, `HEAD`) resolve to `sha`.
    pub fn alias(&self, rev: &str, sha: &str) {
        self.lock().aliases.insert(rev.to_string(), sha.to_string());
    }

    /// Every checkout asked for: `(sha, destination)`, in order.
    pub fn checkouts(&self) -> Vec<(String, PathBuf)> {
        self.lock().checkouts.clone()
    }

    /// Makes every checkout from now on fail with `error` (`None` heals).
    pub fn fail_checkout(&self, error: Option<PortError>) {
        self.lock().fail_checkout = error;
    }
}

impl Source for FakeSource {
    fn resolve(&self, rev: &str) -> PortResult<Commit> {
        let g = self.lock();
        let sha = g.aliases.get(rev).map_or(rev, String::as_str);
        g.commits.get(sha).cloned().ok_or_else(|| {
            PortError::not_found(format!("revision `{rev}` is not in the repository"))
        })
    }

    fn checkout(&self, sha: &str, dest: &Path) -> PortResult<()> {
        let mut g = self.lock();
        g.checkouts.push((sha.to_string(), dest.to_path_buf()));
        if let Some(e) = &g.fail_checkout {
            return Err(e.clone());
        }
        if !g.commits.contains_key(sha) {
            return Err(PortError::not_found(format!(
                "commit {sha} is not in the repository"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::ports::PortErrorKind;

    #[test]
    fn resolves_known_commits_and_aliases_only() {
        let s = FakeSource::new();
        s.add("abc123", "fix", "Ann");
        s.alias("main", "abc123");
        assert_eq!(s.resolve("main").map(|c| c.sha), Ok("abc123".to_string()));
        assert_eq!(
            s.resolve("nope").map_err(|e| e.kind),
            Err(PortErrorKind::NotFound)
        );
        assert!(s.checkout("abc123", Path::new("/w")).is_ok());
        assert_eq!(
            s.checkout("zzz", Path::new("/w")).map_err(|e| e.kind),
            Err(PortErrorKind::NotFound)
        );
        assert_eq!(s.checkouts().len(), 2);
    }
}
