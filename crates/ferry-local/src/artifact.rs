//! `TarArtifactStore`: packs the artifact folder into a deterministic tar file (sorted
//! paths, mtime 0, owner 0, modes kept, symlinks as symlinks) and digests it with SHA-256
//! while writing, so the same folder always gives the same `sha256:` digest.

use ferry_core::{Artifact, RunId};
use ferry_engine::ports::{ArtifactStore, PortError, PortResult};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Artifacts as tar files in one folder (the CLI uses `.ferry/artifacts`).
#[derive(Debug, Clone)]
pub struct TarArtifactStore {
    root: PathBuf,
}

impl TarArtifactStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TarArtifactStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact of `run` is (or will be) written.
    pub fn location_of(&self, run: RunId) -> PathBuf {
        self.root.join(format!("run-{}.tar", run.0))
    }
}

/// `sha256:<hex>` of a file's bytes, read in a stream.
pub fn file_digest(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Every path under `dir`, relative to it, sorted.
fn collect(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        out.push(path.clone());
        if is_dir {
            collect(dir, &path, out)?;
        }
    }
    Ok(())
}

fn base_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(mode & 0o7777);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn pack(dir: &Path, out: File) -> io::Result<(String, u64)> {
    let mut paths = Vec::new();
    collect(dir, Path::new(""), &mut paths)?;
    paths.sort();
    let writer = Hashing {
        inner: BufWriter::new(out),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut builder = tar::Builder::new(writer);
    for rel in &paths {
        let full = dir.join(rel);
        let meta = fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode();
        if ft.is_symlink() {
            let target = fs::read_link(&full)?;
            let mut h = base_header(tar::EntryType::Symlink, 0o777, 0);
            builder.append_link(&mut h, rel, target)?;
        } else if ft.is_dir() {
            let mut h = base_header(tar::EntryType::Directory, mode, 0);
            builder.append_data(&mut h, rel, io::empty())?;
        } else if ft.is_file() {
            let mut h = base_header(tar::EntryType::Regular, mode, meta.len());
            let f = File::open(&full)?;
            builder.append_data(&mut h, rel, f.take(meta.len()))?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is neither a file, a folder nor a symbolic link",
                    full.display()
                ),
            ));
        }
    }
    let mut writer = builder.into_inner()?;
    writer.flush()?;
    let digest = format!("sha256:{}", hex::encode(writer.hasher.finalize()));
    let file = writer.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((digest, writer.size))
}

impl ArtifactStore for TarArtifactStore {
    fn package(&self, dir: &Path, run: RunId) -> PortResult<Artifact> {
        if !dir.is_dir() {
            return Err(PortError::permanent(format!(
                "artifact folder `{}` does not exist after the build steps; make a build step create it or remove `build.artifact`",
                dir.display()
            )));
        }
        fs::create_dir_all(&self.root).map_err(|e| {
            PortError::permanent(format!(
                "cannot create the artifacts folder `{}`: {e}",
                self.root.display()
            ))
        })?;
        let location = std::path::absolute(self.location_of(run)).map_err(|e| {
            PortError::permanent(format!("cannot resolve `{}`: {e}", self.root.display()))
        })?;
        let tmp = location.with_extension(format!("tar.tmp-{}", std::process::id()));
        let result = File::create(&tmp).and_then(|f| pack(dir, f));
        let (digest, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(PortError::permanent(format!(
                    "cannot pack artifact folder `{}` into `{}`: {e}",
                    dir.display(),
                    location.display()
                )));
            }
        };
        fs::rename(&tmp, &location).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            PortError::permanent(format!("cannot write `{}`: {e}", location.display()))
        })?;
        Ok(Artifact {
            digest,
            location: location.to_string_lossy().into_owned(),
            size,
        })
    }

    fn digest(&self, location: &str) -> PortResult<String> {
        file_digest(Path::new(location)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                PortError::not_found(format!("artifact `{location}` does not exist"))
            }
            _ => PortError::permanent(format!("cannot read artifact `{location}`: {e}")),
        })
    }
}
