//! A fake artifact store: each run's "package" is a small byte blob kept in memory, and
//! its digest is computed from those bytes, so [`FakeArtifacts::tamper`] changes what
//! `digest(location)` returns, as a modified file would (OWASP CI/CD-SEC-9).

use ferry_core::{Artifact, RunId};
use ferry_engine::ports::{ArtifactStore, PortError, PortResult};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct Inner {
    blobs: BTreeMap<String, Vec<u8>>,
    fail_package: Option<PortError>,
    fail_digest: Option<PortError>,
}

/// An [`ArtifactStore`] in memory. Locations are `mem://artifacts/run-<id>.tar`.
#[derive(Default)]
pub struct FakeArtifacts {
    inner: Mutex<Inner>,
}

impl FakeArtifacts {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the bytes at `location` (someone replaced the artifact after it was
    /// built). False if there is nothing there.
    pub fn tamper(&self, location: &str) -> bool {
        match self.lock().blobs.get_mut(location) {
            Some(b) => {
                b.extend_from_slice(b"\n#tampered");
                true
            }
            None => false,
        }
    }

    /// Tampers with every artifact packaged so far.
    pub fn tamper_all(&self) {
        for b in self.lock().blobs.values_mut() {
            b.extend_from_slice(b"\n#tampered");
        }
    }

    /// Makes `package` fail from now on with `error` (`None` heals).
    pub fn fail_package(&self, error: Option<PortError>) {
        self.lock().fail_package = error;
    }

    /// Makes `digest` fail from now on with `error` (`None` heals).
    pub fn fail_digest(&self, error: Option<PortError>) {
        self.lock().fail_digest = error;
    }

    /// The locations packaged so far.
    pub fn locations(&self) -> Vec<String> {
        self.lock().blobs.keys().cloned().collect()
    }
}

impl ArtifactStore for FakeArtifacts {
    fn package(&self, dir: &Path, run: RunId) -> PortResult<Artifact> {
        let mut g = self.lock();
        if let Some(e) = &g.fail_package {
            return Err(e.clone());
        }
        let location = format!("mem://artifacts/run-{run}.tar");
        let blob =
            format!("ferry fake artifact\nrun: {run}\nfrom: {}\n", dir.display()).into_bytes();
        let artifact = Artifact {
            digest: digest(&blob),
            location: location.clone(),
            size: blob.len() as u64,
        };
        g.blobs.insert(location, blob);
        Ok(artifact)
    }

    fn digest(&self, location: &str) -> PortResult<String> {
        let g = self.lock();
        if let Some(e) = &g.fail_digest {
            return Err(e.clone());
        }
        g.blobs
            .get(location)
            .map(|b| digest(b))
            .ok_or_else(|| PortError::not_found(format!("artifact `{location}` does not exist")))
    }
}

/// `sha256:` and 64 hex digits computed from `bytes`, shaped like a SHA-256 digest. It is
/// four FNV-1a hashes with different seeds, not SHA-256: enough to tell bytes apart in a
/// simulation, worthless against an attacker.
pub fn digest(bytes: &[u8]) -> String {
    let mut out = String::from("sha256:");
    for seed in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_changes_the_digest() {
        let a = FakeArtifacts::new();
        let art = a.package(Path::new("/w/run-1/dist"), RunId(1)).ok();
        let art = art.as_ref();
        let loc = art.map(|a| a.location.clone()).unwrap_or_default();
        assert_eq!(
            a.digest(&loc).ok().as_deref(),
            art.map(|a| a.digest.as_str())
        );
        assert_eq!(art.map(|a| a.digest.len()), Some(7 + 64));
        assert!(a.tamper(&loc));
        assert_ne!(
            a.digest(&loc).ok().as_deref(),
            art.map(|a| a.digest.as_str())
        );
        assert!(a.digest("mem://nothing").is_err());
    }
}
