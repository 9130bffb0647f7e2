//! The SQLite store against the port's contract: one test binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod approvals;
mod changes;
mod leases;
mod open;
mod property;
mod support;
