//! Keeps the crate what it says it is: every file opens with a `//!` line, and the
//! library reaches for no file, socket, process, thread, clock or async runtime, and has
//! no way to panic on its input.

#[test]
fn every_file_opens_with_a_doc_line_and_the_library_stays_pure() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["src", "tests"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("folder is readable") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            assert!(
                text.starts_with("//!"),
                "{} does not open with a `//!` line saying what it is for",
                path.display()
            );
            if dir == "src" {
                for banned in [
                    "SystemTime",
                    "Instant",
                    "std::fs",
                    "std::net",
                    "std::process",
                    "std::thread",
                    "std::env",
                    "async ",
                    ".await",
                    "tokio",
                    ".unwrap()",
                    ".expect(",
                    "panic!",
                    "unreachable!",
                    "todo!",
                    "unimplemented!",
                ] {
                    assert!(!text.contains(banned), "{} uses `{banned}`", path.display());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} files checked");
}
