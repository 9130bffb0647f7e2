//! The SQLite store against the port's contract: one test binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod alarms;
mod approvals;
mod changes;
mod deliveries;
mod incidents;
mod leases;
mod migration;
mod open;
mod pages;
mod property;
mod rollbacks;
mod support;
mod windows;
