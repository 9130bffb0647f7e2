//! ferry's engine: the ports adapters implement ([`ports`]) and the driver that performs
//! the core's decisions through them ([`driver`]).
//!
//! Architecture invariant: the engine decides nothing on its own. It asks the core what
//! to do next, commits the core's intent to the [`ports::Store`], performs the side
//! effect through a port, then commits the outcome. It never touches a file, a socket or
//! a process directly; adapters do.

pub mod driver;
pub mod notify;
pub mod pipeline_alarms;
pub mod ports;
pub mod rollback;
pub mod split;
pub mod watch;

pub use driver::{Engine, Layout, Ports, Settings};
