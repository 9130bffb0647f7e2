//! A fake file system for step reports: the [`ScriptedExecutor`](crate::ScriptedExecutor)
//! "writes" JUnit and coverage bytes here and the engine reads them back through
//! [`ReportFiles`]. Also builders for the bytes of such reports.

use ferry_engine::ports::{PortError, PortResult, ReportFiles};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// In-memory files by absolute path. `read` takes a path or a glob (`*`, `?`, `**`)
/// relative to a base, like the local adapter, and refuses patterns that leave the base.
#[derive(Default)]
pub struct FakeFiles {
    files: Mutex<BTreeMap<PathBuf, Vec<u8>>>,
}

impl FakeFiles {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Vec<u8>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes (or overwrites) a file.
    pub fn write(&self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) {
        self.lock().insert(path.into(), bytes.into());
    }

    /// Removes a file; true if it existed.
    pub fn remove(&self, path: &Path) -> bool {
        self.lock().remove(path).is_some()
    }

    /// Every file, by path.
    pub fn all(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.lock().clone()
    }
}

impl ReportFiles for FakeFiles {
    fn read(&self, base: &Path, pattern: &str) -> PortResult<Vec<(PathBuf, Vec<u8>)>> {
        let rel = Path::new(pattern);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(PortError::permanent(format!(
                "report path `{pattern}` leaves the checkout; write a path relative to the repository root"
            )));
        }
        let files = self.lock();
        if !pattern.contains(['*', '?']) {
            let p = base.join(rel);
            return Ok(files
                .get(&p)
                .map(|b| vec![(p, b.clone())])
                .unwrap_or_default());
        }
        Ok(files
            .iter()
            .filter(|(p, _)| {
                p.strip_prefix(base)
                    .ok()
                    .and_then(Path::to_str)
                    .is_some_and(|r| glob_match(pattern.as_bytes(), r.as_bytes()))
            })
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect())
    }
}

/// `*` and `?` stay inside one path segment; `**` matches any number of segments.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob_match(rest, text)
                || (0..text.len()).any(|i| text[i] == b'/' && glob_match(rest, &text[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        [b'*', rest @ ..] => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob_match(rest, &text[i..])),
        [b'?', rest @ ..] => {
            text.first().is_some_and(|&c| c != b'/') && glob_match(rest, &text[1..])
        }
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// The bytes of a JUnit XML report with `passed` passing and `failed` failing tests.
pub fn junit(passed: u32, failed: u32) -> Vec<u8> {
    let mut x = format!(
        "<?xml version=\"1.0\"?>\n<testsuite name=\"sim\" tests=\"{}\" failures=\"{failed}\">\n",
        passed + failed
    );
    for i in 0..passed {
        x.push_str(&format!(
            "  <testcase classname=\"sim.Suite\" name=\"passes_{i}\"/>\n"
        ));
    }
    for i in 0..failed {
        x.push_str(&format!(
            "  <testcase classname=\"sim.Suite\" name=\"fails_{i}\"><failure message=\"assertion failed\">boom</failure></testcase>\n"
        ));
    }
    x.push_str("</testsuite>\n");
    x.into_bytes()
}

/// The bytes of an LCOV tracefile whose line coverage is `percent` (to 0.01 %).
pub fn lcov(percent: f64) -> Vec<u8> {
    let found = 10_000u64;
    let hit = (percent.clamp(0.0, 100.0) * 100.0).round() as u64;
    lcov_lines(hit, found)
}

/// The bytes of an LCOV tracefile with `hit` of `found` lines covered.
pub fn lcov_lines(hit: u64, found: u64) -> Vec<u8> {
    format!("TN:\nSF:src/lib.rs\nLF:{found}\nLH:{hit}\nend_of_record\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_builders_parse_as_intended() {
        let r = ferry_reports::parse_junit(&junit(3, 1)).ok();
        assert_eq!(r.map(|r| (r.total, r.passed, r.failed)), Some((4, 3, 1)));
        let c = ferry_reports::parse_coverage(&lcov(82.5)).ok();
        assert_eq!(c.map(|c| c.percent()), Some(82.5));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"reports/*.xml", b"reports/unit.xml"));
        assert!(!glob_match(b"reports/*.xml", b"reports/a/unit.xml"));
        assert!(glob_match(b"**/*.xml", b"reports/a/unit.xml"));
        assert!(glob_match(b"**/*.xml", b"unit.xml"));
        assert!(glob_match(b"r?ports/unit.xml", b"reports/unit.xml"));
    }

    #[test]
    fn reads_by_path_and_glob_relative_to_the_base() {
        let f = FakeFiles::new();
        f.write("/w/run-1/reports/unit.xml", b"a".to_vec());
        f.write("/w/run-2/reports/unit.xml", b"b".to_vec());
        let base = Path::new("/w/run-1");
        assert_eq!(f.read(base, "reports/unit.xml").map(|v| v.len()), Ok(1));
        assert_eq!(f.read(base, "reports/*.xml").map(|v| v.len()), Ok(1));
        assert_eq!(f.read(base, "missing.xml").map(|v| v.len()), Ok(0));
        assert!(f.read(base, "../run-2/reports/unit.xml").is_err());
    }
}
