//! ferry's pure core: the run state machine, gates, promotion order, deployment records
//! and events.
//!
//! Architecture invariant: nothing in this crate performs I/O, reads a clock, spawns a
//! thread or depends on an async runtime. Every function takes `now` and observations as
//! arguments and returns a decision or a list of [`Change`]s for the engine to persist
//! and act on. `tests/tidy.rs` keeps I/O crates out of this crate's manifest.

pub mod alarm;
pub mod approval;
pub mod changes;
pub mod concurrency;
pub mod deployment;
pub mod dora;
pub mod events;
pub mod findings;
pub mod gates;
pub mod infra;
pub mod model;
pub mod monitor;
pub mod notify;
pub mod pipeline_alarm;
pub mod plan;
pub mod redact;
pub mod retry;
pub mod rollback;
pub mod run;
pub mod time;
pub mod window;

pub use changes::Change;
pub use deployment::DeploymentRecord;
pub use events::{Event, EventKind};
pub use model::*;
pub use plan::{RunPlan, StageKind, StagePlan, StepKind, StepPlan};
pub use redact::Redactor;
pub use run::{Next, Recovery, Run, StepOutcome, StepRef};
pub use time::Timestamp;
