//! The SQLite store against the port's contract: one test binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod alarms;
mod approvals;
mod changes;
mod deliveries;
mod findings;
mod incidents;
mod leases;
mod ledger_model;
mod metrics;
mod migration;
mod open;
mod outbox;
mod pages;
mod property;
mod rollbacks;
mod support;
mod windows;
