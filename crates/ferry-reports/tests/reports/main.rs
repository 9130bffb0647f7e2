//! Integration tests of ferry-reports: real-shaped reports of each tool, bad inputs, and
//! property tests that render random reports in each dialect and read them back.
#![allow(clippy::unwrap_used)]

mod coverage;
mod errors;
mod junit;
mod props;

/// A fixture file's bytes, embedded at compile time.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
        .as_slice()
    };
}
pub(crate) use fixture;
