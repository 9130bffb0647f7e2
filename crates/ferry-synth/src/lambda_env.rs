//! The rollback Lambda's contract with the monitoring stack: the environment variables
//! the stack sets on the function and `ferry-lambda` (crate `ferry-aws`) reads. Both
//! sides use these constants; `ferry-aws`'s `tests/stack_contract.rs` checks the
//! synthesized templates against what the Lambda reads.

/// The pipeline file bundled in the function's zip, relative to the function's folder
/// (the Lambda's working directory). Optional for the Lambda: [`CONFIG_DEFAULT`].
pub const CONFIG: &str = "FERRY_CONFIG";
/// What the Lambda reads when [`CONFIG`] is not set, and what the stack sets it to.
pub const CONFIG_DEFAULT: &str = "ferry.yml";
/// The deployments table (seed §3.5.1). Required.
pub const TABLE: &str = "FERRY_DEPLOYMENTS_TABLE";
/// The stack's artifacts bucket. The Lambda no longer uses it (and starts without it):
/// it rolls back only `s3:` environments (each to its own bucket and prefix) and
/// `cloudformation:` ones; `release:` and `command:` environments deploy on the machine
/// running `ferry step`, and the Lambda records their rollback `not_performed`. Still
/// set by the stack, and listed in [`REQUIRED`] for stacks and Lambdas of earlier
/// versions.
pub const DEPLOY_BUCKET: &str = "FERRY_DEPLOY_BUCKET";
/// The SNS topic the Lambda publishes every event of a rollback to. Optional.
pub const ROLLBACKS_TOPIC: &str = "FERRY_ROLLBACKS_TOPIC";
/// The `pipeline:` name of the file the stack was synthesized from (its alarm name
/// prefixes start with it): the Lambda refuses a bundled `ferry.yml` of another
/// pipeline, whose alarms the stack's rules would not route to it. Optional.
pub const PIPELINE: &str = "FERRY_PIPELINE";
/// The deployments topic (set for the Lambda's logs; the Lambda publishes to
/// [`ROLLBACKS_TOPIC`]).
pub const DEPLOYMENTS_TOPIC: &str = "FERRY_DEPLOYMENTS_TOPIC";
/// The namespace of ferry's custom metrics (§9.2).
pub const METRICS_NAMESPACE: &str = "FERRY_METRICS_NAMESPACE";

/// Every variable the Lambda reads.
pub const READ: [&str; 5] = [CONFIG, TABLE, DEPLOY_BUCKET, ROLLBACKS_TOPIC, PIPELINE];
/// The ones it cannot start without.
pub const REQUIRED: [&str; 2] = [TABLE, DEPLOY_BUCKET];

/// The custom metric (§9.2) the Lambda counts a rollback it performed in: one JSON log
/// line `{"metric": "RollbackCount", "value": 1}`, which the monitoring stack's metric
/// filter on the Lambda's log group turns into the metric its rollback alarm watches.
pub const ROLLBACK_METRIC: &str = "RollbackCount";
