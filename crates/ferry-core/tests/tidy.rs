//! Keeps the core pure: no I/O, async runtime, database, HTTP or process crates in its
//! manifest, and no use of the wall clock, files, sockets or processes in its source.

#[test]
fn the_core_depends_on_no_io_crate() {
    let manifest = include_str!("../Cargo.toml");
    for banned in [
        "tokio", "rusqlite", "reqwest", "ureq", "git2", "gix", "aws-", "axum", "hyper", "libc",
    ] {
        assert!(
            !manifest.contains(banned),
            "ferry-core's Cargo.toml mentions `{banned}`: the core must stay free of I/O"
        );
    }
}

#[test]
fn the_core_source_reads_no_clock_and_touches_no_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        for banned in [
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::process",
            "std::thread",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses `{banned}`: the core is handed time and observations, it does not fetch them",
                path.display()
            );
        }
        assert!(
            text.starts_with("//!"),
            "{} does not open with a `//!` line saying what it is for",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 10);
}
