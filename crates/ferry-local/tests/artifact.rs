//! `TarArtifactStore`: deterministic packing, digests, and the missing-folder error.
#![allow(clippy::unwrap_used)]

mod common;

use common::write_exec;
use ferry_core::RunId;
use ferry_engine::ports::{ArtifactStore, PortErrorKind};
use ferry_local::TarArtifactStore;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn make_dist(dir: &Path) {
    fs::create_dir_all(dir.join("static/css")).unwrap();
    fs::write(dir.join("index.html"), "<h1>hi</h1>\n").unwrap();
    fs::write(dir.join("static/css/site.css"), "body{}\n").unwrap();
    write_exec(&dir.join("server.sh"), "#!/bin/sh\nexec true\n");
    symlink("index.html", dir.join("home.html")).unwrap();
    let long = "a".repeat(120);
    fs::create_dir_all(dir.join(&long)).unwrap();
    fs::write(dir.join(&long).join(&long), "long path\n").unwrap();
}

#[test]
fn identical_folders_give_identical_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_dist(&a);
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_dist(&b);
    let store = TarArtifactStore::new(tmp.path().join("artifacts"));
    let x = store.package(&a, RunId(1)).unwrap();
    let y = store.package(&b, RunId(2)).unwrap();
    assert!(
        x.digest.starts_with("sha256:") && x.digest.len() == 7 + 64,
        "{}",
        x.digest
    );
    assert_eq!(x.digest, y.digest);
    assert_eq!(x.size, y.size);
    assert!(x.location.ends_with("run-1.tar"), "{}", x.location);
    assert!(y.location.ends_with("run-2.tar"), "{}", y.location);
    assert_eq!(fs::metadata(&x.location).unwrap().len(), x.size);
    assert_eq!(store.digest(&x.location).unwrap(), x.digest);
    assert_eq!(
        fs::read(&x.location).unwrap(),
        fs::read(&y.location).unwrap()
    );
}

#[test]
fn the_archive_keeps_modes_and_links_with_fixed_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = tmp.path().join("dist");
    make_dist(&dist);
    let store = TarArtifactStore::new(tmp.path().join("artifacts"));
    let art = store.package(&dist, RunId(7)).unwrap();
    let mut archive = tar::Archive::new(fs::File::open(&art.location).unwrap());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "server.sh" {
            assert_eq!(h.mode().unwrap() & 0o111, 0o111);
        }
        if path == "home.html" {
            assert!(h.entry_type().is_symlink());
            assert_eq!(
                entry.link_name().unwrap().unwrap().to_string_lossy(),
                "index.html"
            );
        }
        names.push(path);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        names.iter().any(|n| n.len() > 200),
        "the long path is missing"
    );
}

#[test]
fn the_digest_changes_with_content_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = tmp.path().join("dist");
    make_dist(&dist);
    let store = TarArtifactStore::new(tmp.path().join("artifacts"));
    let first = store.package(&dist, RunId(1)).unwrap().digest;
    fs::write(dist.join("index.html"), "<h1>changed</h1>\n").unwrap();
    let second = store.package(&dist, RunId(2)).unwrap().digest;
    assert_ne!(first, second);
    write_exec(&dist.join("index.html"), "<h1>changed</h1>\n");
    let third = store.package(&dist, RunId(3)).unwrap().digest;
    assert_ne!(second, third);
    // Re-packing the same run replaces the file.
    let again = store.package(&dist, RunId(3)).unwrap();
    assert_eq!(again.digest, third);
    assert_eq!(store.digest(&again.location).unwrap(), third);
}

#[test]
fn a_missing_artifact_folder_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TarArtifactStore::new(tmp.path().join("artifacts"));
    let e = store
        .package(&tmp.path().join("dist"), RunId(1))
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Permanent);
    assert!(e.message.contains("dist"), "{e}");
    assert!(
        e.message.contains("does not exist after the build steps"),
        "{e}"
    );
    assert!(e.message.contains("build.artifact"), "{e}");
    let e = store
        .digest(&tmp.path().join("nope.tar").to_string_lossy())
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);
}
