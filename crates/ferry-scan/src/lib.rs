//! The security gate of the build stage (seed §3.1.2, §3.7, Property 5): findings from
//! three scanners — cfn-guard policies on CloudFormation templates, template checks
//! that need no AWS, and dependency audits (`npm audit`, `cargo audit`, `pip-audit`) —
//! in one shape, the allowlist, the gate's verdict, and SARIF 2.1.0 output.
//!
//! Pure: every scanner takes bytes (a template, a rule file, an audit report) and
//! returns findings; reading files, globbing and running commands are the caller's.

pub mod finding;

pub use finding::{Finding, Location, Severity};
pub mod allowlist;
pub mod audit;
pub mod gate;
pub mod sarif;

pub use allowlist::{AllowEntry, AllowNote, AllowlistProblem, Date};
pub use audit::{AuditError, AuditFormat, parse_audit};
pub use gate::{Counts, Verdict, verdict};
pub use sarif::to_sarif;
pub mod guard;
pub mod template;

pub use guard::{Guard, GuardError, Limits};
pub use template::{TemplateError, check_template};
