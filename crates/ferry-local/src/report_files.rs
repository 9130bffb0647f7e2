//! Reads the report files a step wrote, by path or by glob (`*`, `?`, `**`), relative to
//! the run's checkout. Paths never escape the checkout.

use ferry_engine::ports::{PortError, PortResult, ReportFiles};
use std::path::{Component, Path, PathBuf};

/// The local [`ReportFiles`]: the checkout on disk.
pub struct LocalReportFiles;

/// A report larger than this is refused rather than read into memory.
const MAX_REPORT_BYTES: u64 = 256 * 1024 * 1024;

impl ReportFiles for LocalReportFiles {
    fn read(&self, base: &Path, pattern: &str) -> PortResult<Vec<(PathBuf, Vec<u8>)>> {
        let rel = Path::new(pattern);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(PortError::permanent(format!(
                "report path `{pattern}` leaves the checkout; write a path relative to the repository root"
            )));
        }
        let paths = if has_glob(pattern) {
            let mut found = Vec::new();
            walk(base, &mut found);
            found.retain(|p| {
                p.strip_prefix(base)
                    .ok()
                    .and_then(|r| r.to_str())
                    .is_some_and(|r| glob_match(pattern, r))
            });
            found.sort();
            found
        } else {
            let p = base.join(rel);
            if p.is_file() { vec![p] } else { Vec::new() }
        };
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let shown = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if len > MAX_REPORT_BYTES {
                return Err(PortError::permanent(format!(
                    "report `{shown}` is {len} bytes, more than ferry reads ({MAX_REPORT_BYTES}); split it"
                )));
            }
            let bytes = std::fs::read(&p)
                .map_err(|e| PortError::permanent(format!("cannot read report `{shown}`: {e}")))?;
            out.push((p, bytes));
        }
        Ok(out)
    }
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                if p.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                walk(&p, out);
            }
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// The one glob matcher of the project (pure, in the core): `*` and `?` stay within one
/// segment, `**` spans any number of segments.
pub use ferry_core::infra::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("reports/*.xml", "reports/unit.xml"));
        assert!(!glob_match("reports/*.xml", "reports/sub/unit.xml"));
        assert!(glob_match("reports/**/*.xml", "reports/sub/unit.xml"));
        assert!(glob_match("reports/**/*.xml", "reports/unit.xml"));
        assert!(glob_match(
            "**/TEST-*.xml",
            "target/surefire-reports/TEST-a.xml"
        ));
        assert!(glob_match("r?.txt", "r1.txt"));
        assert!(!glob_match("r?.txt", "r12.txt"));
    }

    #[test]
    fn refuses_paths_outside_the_checkout() {
        let e = LocalReportFiles.read(Path::new("/tmp"), "../etc/passwd");
        assert!(e.is_err());
    }
}
