//! Test support for ferry: a fake for every port of the engine, and [`Sim`], a
//! deterministic simulation of the engine built from a `ferry.yml` text and those fakes,
//! with faults injected on demand (failing steps, low coverage, flaky or lying deployers,
//! tampered artifacts, alarms going off, approvals rejected or never given, the store
//! going away).
//!
//! Architecture invariant: nothing here touches a file, a socket or a process, or reads
//! the wall clock. Time is a [`FakeClock`] that moves only when someone sleeps on it, so
//! a 24 h approval timeout or a 5 min monitor window pass in microseconds and always the
//! same way (only [`FakeClock::pace`], opt-in, makes those sleeps also wait a scaled-down
//! real time, for runs on several threads to overlap). Every fake is `Send + Sync` (state behind a `Mutex`), so several runs can be
//! driven on several threads against one shared world.
//!
//! [`invariants`] checks the seed's correctness properties (§12) and DESIGN.md's
//! invariants over a world after runs were driven.

pub mod artifacts;
pub mod clock;
pub mod deployer;
pub mod executor;
pub mod files;
pub mod invariants;
pub mod ledger_suite;
pub mod liveness;
pub mod observer;
pub mod pipelines;
pub mod probe;
pub mod sim;
pub mod source;
pub mod store;

pub use artifacts::FakeArtifacts;
pub use clock::{FakeClock, START, Ticks};
pub use deployer::{CallKind, DeployEntry, DeployResult, FakeDeployer, Timeline};
pub use executor::{Outcome, ReportPaths, ScriptedExecutor};
pub use files::{FakeFiles, junit, lcov, lcov_lines};
pub use liveness::FakeLiveness;
pub use observer::RecordingObserver;
pub use probe::FakeProbe;
pub use sim::{FakeInfra, FakeScanner, Sim, Verdict};
pub use source::FakeSource;
pub use store::MemoryStore;
