//! Keeps the kit honest: every module says what it is for, and the kit reaches for no
//! file, socket, process or wall clock (it is a simulation).

#[test]
fn every_source_file_opens_with_a_doc_line_and_stays_off_the_outside_world() {
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
                    "Instant::now",
                    "std::fs",
                    "std::net",
                    "std::process",
                ] {
                    assert!(!text.contains(banned), "{} uses `{banned}`", path.display());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} files checked");
}
